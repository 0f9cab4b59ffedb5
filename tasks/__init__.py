"""Celery tasks: thin, named wrappers over `connector`; the only package that imports Celery."""
