"""The night on real Celery worker processes: Redis broker, shared Redis limiter, PostgreSQL ledger."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select

from connector.ledger import open_ledger
from connector.ledger.tables import FieldWrite, Lead, SyncRun
from tests.distributed.conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
TERMINAL = {"done", "skipped", "failed", "deferred"}


def lead_states(url: str) -> Counter[str]:
    ledger = open_ledger(url, auto_migrate=False)
    with ledger.session() as s:
        rows = s.exec(select(Lead.state, Lead.reason)).all()
    ledger.engine.dispose()
    return Counter(f"{state}({reason})" if reason else state for state, reason in rows)


def all_terminal(url: str, expected: int) -> bool:
    states = lead_states(url)
    return sum(states.values()) == expected and all(k.split("(")[0] in TERMINAL for k in states)


def window_args() -> list[str]:
    now = datetime.now(timezone.utc)
    return ["manual", f"manual:test-{now.timestamp()}", now.isoformat(), (now + timedelta(hours=2)).isoformat()]


def test_a_night_on_two_workers_writes_every_lead_once(sandbox, cluster, postgres_url):
    c = cluster(sandbox)
    c.start_worker()
    c.start_worker()
    args = window_args()
    c.send("connector.poll_source", "salesforce", *args)
    c.send("connector.poll_source", "salesforce", *args)  # a duplicate kick-off: one run
    wait_for(lambda: all_terminal(postgres_url, 28), timeout=90, on_timeout=c.logs)
    assert lead_states(postgres_url) == Counter({"done(written)": 21, "skipped(invalid_email)": 3,
                                                 "skipped(no_match)": 4})
    writes = [w["id"] for w in sandbox["salesforce"].applied_writes]
    assert len(writes) == 21 and len(set(writes)) == 21
    assert len(sandbox["sixsense"].log.entries(path_prefix="/v2/people/full")) == 24
    ledger = open_ledger(postgres_url, auto_migrate=False)
    with ledger.session() as s:
        assert len(s.exec(select(SyncRun)).all()) == 1


def test_a_worker_killed_mid_run_loses_no_lead_and_writes_nothing_twice(make_sandbox, cluster, postgres_url):
    box = make_sandbox(extra={"sixsense": {"latency_seconds": 0.4}})
    c = cluster(box, workers=2, celery={"sweep_every_seconds": 1, "queued_grace_seconds": 3})
    doomed = c.start_worker(concurrency=2)
    c.send("connector.poll_source", "salesforce", *window_args())
    wait_for(lambda: len(box["sixsense"].log.entries(path_prefix="/v2/people/full")) >= 3, timeout=60,
             on_timeout=c.logs)
    c.kill(doomed)
    c.start_worker(concurrency=2)

    def recovered() -> bool:
        c.send("connector.sweep")
        return all_terminal(postgres_url, 28)

    wait_for(recovered, timeout=120, every=1.0, on_timeout=lambda: f"{lead_states(postgres_url)}\n{c.logs()}")
    states = lead_states(postgres_url)
    # A lead whose write landed before the kill is confirmed on re-read and ends up_to_date.
    assert states["done(written)"] + states["done(up_to_date)"] == 21, states
    writes = Counter(w["id"] for w in box["salesforce"].applied_writes)
    assert writes and max(writes.values()) == 1, "a CRM record was written twice"
    assert len(writes) == 21
    ledger = open_ledger(postgres_url, auto_migrate=False)
    with ledger.session() as s:
        unconfirmed = s.exec(select(FieldWrite).where(FieldWrite.state == "planned")).all()
    assert unconfirmed == [], "a write applied before the kill was never confirmed"
