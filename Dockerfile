FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY tasks ./tasks
COPY mappings ./mappings
COPY config ./config
RUN pip install --no-cache-dir . flower
USER nobody
