"""Celery tasks (thin wrappers over connector)."""
