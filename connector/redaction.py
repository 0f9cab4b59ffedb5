"""Keep secrets out of logs, error messages, the ledger and CLI output.

Redaction is by value (every configured secret is registered when settings load) and by shape
(Authorization headers, token=, api_key=, password= in text), so a vendor error body that
echoes a credential back is cleaned too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
_lock = threading.Lock()
_secrets: set[str] = set()

_SHAPES = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:token|bearer|basic)?\s*[^\s\"',;}]+"),
    re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|password|secret|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"),
]


def register_secrets(values: Iterable[str]) -> None:
    with _lock:
        # Very short values would mask ordinary words; a real credential is longer.
        _secrets.update(v for v in values if v and len(v) >= 6)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the message, redacts it and drops the args, so no formatter can rebuild it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not leak its arguments either
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(formatted)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(level: str = "INFO") -> None:
    """Attach the filter to every handler of the root logger (adding one if there is none)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    # Migrations and HTTP client chatter are not what an operator reads at INFO.
    for noisy in ("alembic", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
