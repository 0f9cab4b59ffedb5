"""The tasks: each takes ids, calls the connector, and is safe to run twice (the ledger decides)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from celery.signals import worker_process_init

from connector.errors import TransientError
from connector.pipeline import (
    Runtime,
    SourceRun,
    Window,
    build_runtime,
    current_window,
    enabled_sources,
    run_once,
    run_source,
)
from connector.services import Services, open_services
from tasks.app import app
from tasks.queues import Queue

log = logging.getLogger(__name__)
_services: Services | None = None
_runtimes: dict[str, Runtime] = {}


@worker_process_init.connect
def _fresh_services_after_fork(**_: object) -> None:
    global _services  # noqa: PLW0603  (one set of connections per worker process, never shared over fork)
    _services = None
    _runtimes.clear()


def services() -> Services:
    global _services  # noqa: PLW0603
    if _services is None:
        _services = open_services(app.conf.connector_settings, auto_migrate=False)
    return _services


def submit_batch(source: str) -> callable:  # type: ignore[valid-type]
    def submit(run_id: int, record_ids: list[str]) -> None:
        process_batch.apply_async(args=[source, run_id, record_ids], queue=Queue.NIGHT.value)

    return submit


@app.task(name="connector.nightly_kickoff")
def nightly_kickoff(scheduled: bool = True) -> list[str]:
    """Start tonight's run of every enabled source (a duplicate kick-off finds the runs exist)."""
    settings = services().settings
    window = current_window(settings, scheduled=scheduled)
    if scheduled and window.kind != "night":
        log.warning("the nightly kick-off arrived outside the window; nothing started")
        return []
    for source in enabled_sources(settings):
        poll_source.apply_async(args=[source, window.kind, window.key, window.start.isoformat(),
                                      window.end.isoformat()], queue=Queue.NIGHT.value)
    return enabled_sources(settings)


@app.task(name="connector.poll_source", autoretry_for=(TransientError,), max_retries=3, retry_backoff=True)
def poll_source(source: str, kind: str, key: str, start: str, end: str) -> int | None:
    """Poll one source's new leads into the ledger and fan them out as batches."""
    svc = services()
    window = Window(kind, datetime.fromisoformat(start), datetime.fromisoformat(end), key)
    report = run_source(svc.settings, svc.ledger, svc.limiter, source, window=window,
                        context=svc.context(), submit=submit_batch(source))
    return None if report is None else report.run_id


@app.task(name="connector.process_batch", autoretry_for=(TransientError,), max_retries=3, retry_backoff=True)
def process_batch(source: str, run_id: int, record_ids: list[str]) -> int:
    """Enrich and write one batch of leads (at most a few hundred) of a run."""
    svc = services()
    run = svc.ledger.run(run_id=run_id)
    if run is None:
        log.error("batch for unknown run %s dropped", run_id)
        return 0
    window = Window(run.kind, run.window_start, run.window_end, run.run_key)
    source_run = SourceRun(runtime(source), run=run, window=window, via="night" if run.kind == "night" else run.kind)
    source_run.process_records(record_ids)
    return source_run.done


def runtime(source: str) -> Runtime:
    """One runtime per source and worker process: the mapping is checked against the CRM's schema
    once, and the vendors' connection pools are reused from batch to batch."""
    if source not in _runtimes:
        svc = services()
        _runtimes[source] = build_runtime(svc.settings, svc.ledger, svc.limiter, source, context=svc.context())
    return _runtimes[source]


@app.task(name="connector.sweep")
def sweep() -> int:
    """Queue again the leads whose task was lost or whose worker died (their claim expired), and
    the polls whose poller died."""
    svc = services()
    now = datetime.now(timezone.utc)
    queued_before = now - timedelta(seconds=svc.settings.celery.queued_grace_seconds)
    requeued = 0
    sources = enabled_sources(svc.settings)
    size = svc.settings.celery.batch_size
    for source in sources:
        by_run: dict[int, list[str]] = defaultdict(list)
        for record_id, run_id in svc.ledger.requeue_stale_leads(source=source, queued_before=queued_before, now=now):
            if run_id is not None:
                by_run[run_id].append(record_id)
        submit = submit_batch(source)
        for run_id, ids in by_run.items():
            for start in range(0, len(ids), size):
                submit(run_id, ids[start : start + size])
            requeued += len(ids)
    for run in svc.ledger.runs_with_lost_poller(now=now):
        if run.source in sources and run.window_end > now:
            # Its poller died mid-poll: a new poll_source takes the run over from the cursor.
            log.warning("run %s lost its poller; polling it again", run.run_key)
            poll_source.apply_async(args=[run.source, run.kind, run.run_key.split(":", 1)[1],
                                          run.window_start.isoformat(), run.window_end.isoformat()],
                                    queue=Queue.NIGHT.value)
    if requeued:
        log.info("sweeper queued %d lead(s) again", requeued)
    return requeued


@app.task(name="connector.webhook_lead", autoretry_for=(TransientError,), max_retries=3, retry_backoff=True)
def webhook_lead(source: str, record_id: str) -> None:
    """Finish a webhook lead the reply could not wait for: write it through the source, spending
    from the real-time share of each budget."""
    svc = services()
    run_once(svc.settings, svc.ledger, svc.limiter, source, via="webhook", record_ids=[record_id], mode="write",
             context=svc.context(realtime=True))
