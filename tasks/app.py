"""The Celery app, built from the connector's settings (Redis broker).

Reliability settings, each for a reason: acks_late + reject_on_worker_lost (a killed worker's task
is delivered again), prefetch 1 (a dead worker takes no reserved tasks with it), a visibility
timeout longer than the longest task (a slow batch is not delivered twice), no results stored
(the ledger is the record). Redelivery is safe: tasks take ids and the ledger makes effects
idempotent.

Beat runs on redbeat (`celery -A tasks.app beat` picks it from beat_scheduler): the schedule and a
lock live in Redis, so two beats can run and only the lock holder sends. The leader renews the lock
every tick (at most a fifth of the lock timeout apart); a standby polls for it as often and takes
over once a dead leader's lock expires. The ledger still makes a duplicate kick-off a no-op.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu import Exchange
from kombu import Queue as KombuQueue

from connector.redaction import RedactingFilter
from connector.settings import Settings, load_settings
from tasks.queues import Queue
from tasks.schedule import beat_schedule


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    celery_settings = settings.celery
    lock_timeout = celery_settings.beat_lock_timeout_seconds
    app = Celery("connector", broker=celery_settings.broker_url, include=["tasks.sync"])
    transport = {"visibility_timeout": celery_settings.visibility_timeout_seconds}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=Queue.NIGHT.value,
        task_queues=[KombuQueue(q.value, Exchange(q.value), routing_key=q.value) for q in Queue],
        task_time_limit=celery_settings.task_time_limit_seconds,
        task_soft_time_limit=max(1, celery_settings.task_time_limit_seconds - 30),
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
        beat_scheduler="redbeat.RedBeatScheduler",
        beat_max_loop_interval=lock_timeout / 5,
        redbeat_redis_url=celery_settings.beat_redis_url or celery_settings.broker_url,
        redbeat_key_prefix=celery_settings.beat_key_prefix,
        redbeat_lock_timeout=lock_timeout,
        redbeat_redis_options={},  # not the broker's transport options
        timezone="UTC",
        enable_utc=True,
    )
    app.conf.connector_settings = settings
    return app


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_worker_logs(logger: logging.Logger, **_: object) -> None:
    """Workers log through Celery's handlers: they get the same secret redaction as the CLI."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


app = create_app()
