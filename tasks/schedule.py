"""The beat schedule, in one place.

The nightly kick-off starts at the window's start (00:00 UTC by default: 6sense's CRM/MAP pulls run
between midnight and 2 AM UTC) and expires at the window's end, so a kick-off delivered late is
dropped rather than run in daylight. The sweeper runs every minute so a lead whose worker died is
back in the queue within minutes, not after the broker's visibility timeout.

The schedule lives in Redis (redbeat, see tasks/app.py): every beat writes these entries at start,
keeping the time each last ran, and only the beat holding the lock sends them.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab, schedule

from connector.settings import Settings
from tasks.queues import Queue


def kickoff_schedule(settings: Settings) -> crontab | schedule:
    """Nightly at window.start; every `celery.kickoff_every_seconds` when a test compresses it."""
    every = settings.celery.kickoff_every_seconds
    if every is not None:
        return schedule(every)
    start = settings.window.start
    return crontab(hour=start.hour, minute=start.minute)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    window_seconds = settings.window.length_minutes * 60
    return {
        "nightly-kickoff": {
            "task": "connector.nightly_kickoff",
            "schedule": kickoff_schedule(settings),
            "options": {"queue": Queue.NIGHT.value, "expires": window_seconds},
        },
        "sweep-lost-leads": {
            "task": "connector.sweep",
            "schedule": float(settings.celery.sweep_every_seconds),
            # Not behind the night's backlog: a sweep must run while the batches wait.
            "options": {"queue": Queue.ADMIN.value, "expires": settings.celery.sweep_every_seconds},
        },
    }
