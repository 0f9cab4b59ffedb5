"""Chaos on real Celery workers (reliability guide, section 7, tests 1 and 2): workers SIGKILLed
all through a night of 2,000 leads, and a CRM write slower than the broker's visibility timeout.

Both run real worker processes on a Redis broker, the shared Redis limiter, the ledger on
PostgreSQL and the sandbox emulators over sockets, and assert over the ledger and over what the
CRM emulator applied (`applied_writes`) and served (its request log).

Test 1, worker kill chaos. Three workers (two pool processes each); every 4 s one of them, picked
at random, loses its whole process group to SIGKILL and a fresh worker takes its place, until
every lead is terminal. What a dead worker leaves behind comes back by the product's own paths:
its claims expire (`claim_ttl_seconds`) and the sweeper (sent every second, as beat would) queues
those leads again; its unacknowledged messages come back past the visibility timeout; its limiter
leases expire (`limiter.lease_seconds`, 3 s here: at the 60 s default one dead worker can hold
all 8 of 6sense's in-flight slots for a minute, and the night stalls). The kills start once the
poller has queued every batch; a poller killed mid-poll has a test of its own (the last one here):
its poll claim expires, the sweeper sends the poll again and the new poller takes the run over.

Test 2, slow task vs visibility timeout: the guide's 10 s timeout and 15 s write, on the real clock
(the compressed vendor clock does not apply to the broker). The second delivery finds the leads
claimed and does nothing; that holds because the claim (`claim_ttl_seconds`) outlasts the write:
with a claim shorter than the write the second delivery re-claims the leads and writes them again.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from connector.ledger import open_ledger
from connector.ledger.tables import FieldWrite, Lead, LeadEvent, SyncRun
from connector.sandbox.seed import seed_companies
from connector.sandbox.server import Fault
from tests.distributed.conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
TERMINAL = {"done", "skipped", "failed", "deferred"}
SEEDED_WRITTEN, SEEDED_SKIPPED = 21, 7  # the sandbox's 28 seeded leads: 21 get values, 7 cannot

# Test 1. On a 60x clock (emulators and limiter alike) 6sense's 100 calls per minute, one per
# lead, become 100 a second: more than two cores get through, so the night runs at CPU speed.
CHAOS_LEADS = 2000
CHAOS_TIME_SCALE = 60.0
KILL_EVERY_SECONDS = 4.0
CHAOS_SEED = 7
# Several times the longest phase a live worker holds a claim for (a batch of 25 leads: 2-3 s on a
# loaded 2-core box, printed), and short enough that a dead worker's claims expire within the run.
CLAIM_TTL_SECONDS = 10


def ledger_rows(url: str) -> tuple[list[Lead], list[FieldWrite], list[SyncRun]]:
    ledger = open_ledger(url, auto_migrate=False)
    try:
        with ledger.session() as s:
            return list(s.exec(select(Lead))), list(s.exec(select(FieldWrite))), list(s.exec(select(SyncRun)))
    finally:
        ledger.engine.dispose()


def state_counts(url: str) -> Counter[str]:
    ledger = open_ledger(url, auto_migrate=False)
    try:
        with ledger.session() as s:
            rows = s.exec(select(Lead.state, Lead.reason)).all()
    finally:
        ledger.engine.dispose()
    return Counter(f"{state}({reason})" if reason else state for state, reason in rows)


def all_terminal(counts: Counter[str], expected: int) -> bool:
    return sum(counts.values()) == expected and all(k.split("(")[0] in TERMINAL for k in counts)


def window_args() -> list[str]:
    now = datetime.now(UTC)
    return ["manual", f"manual:test-{now.timestamp()}", now.isoformat(), (now + timedelta(hours=2)).isoformat()]


def batch_reads(crm: Any) -> list[float]:
    """When the CRM served each batch task's read of its records (`WHERE Id IN (...)`): one per
    execution of a batch, so a count of deliveries as the vendor saw them."""
    return [e.at for e in crm.log.entries(path_prefix="/services/data/v59.0/query")
            if "Id+IN" in e.query or "Id%20IN" in e.query]


def longest_claimed_phase(url: str) -> float:
    """The longest time a live worker held a claim without renewing it: from a lead's `enriching`
    (or `writing`) event to its next event, when that is not a re-claim after a kill. The claim
    TTL must exceed it, or the sweeper hands a lead to a second worker while the first still works."""
    ledger = open_ledger(url, auto_migrate=False)
    try:
        with ledger.session() as s:
            events = s.exec(select(LeadEvent.lead_id, LeadEvent.state, LeadEvent.at).order_by(LeadEvent.id)).all()
    finally:
        ledger.engine.dispose()
    last: dict[int, tuple[str, datetime]] = {}
    longest = 0.0
    for lead_id, state, at in events:
        before = last.get(lead_id)
        if before is not None and before[0] in ("enriching", "writing") and state != "enriching":
            longest = max(longest, (at - before[1]).total_seconds())
        last[lead_id] = (state, at)
    return longest


def run_status(url: str) -> str | None:
    ledger = open_ledger(url, auto_migrate=False)
    try:
        with ledger.session() as s:
            run = s.exec(select(SyncRun)).first()
            return run.status if run else None
    finally:
        ledger.engine.dispose()


def test_workers_killed_every_few_seconds_lose_no_lead_and_write_each_record_once(make_sandbox, cluster,
                                                                                   postgres_url):
    box = make_sandbox(time_scale=CHAOS_TIME_SCALE,
                       extra={"sixsense": {"enrichment_credits": 10**6}, "salesforce": {"daily_api_limit": 10**7}})
    crm = box["salesforce"]
    domains = sorted(d for d, c in seed_companies().items() if not c.blank_answer)
    for i in range(CHAOS_LEADS):
        crm.add_lead(FirstName=f"Chaos{i}", LastName="Lead", Company="Chaos Co", Country="US",
                     Email=f"chaos{i}@{domains[i % len(domains)]}")
    expected = CHAOS_LEADS + SEEDED_WRITTEN + SEEDED_SKIPPED
    c = cluster(box, time_scale=CHAOS_TIME_SCALE, claim_ttl_seconds=CLAIM_TTL_SECONDS,
                celery={"batch_size": 25, "visibility_timeout_seconds": 20, "queued_grace_seconds": 30,
                        "sweep_every_seconds": 1},
                limiter={"lease_seconds": 3},
                sources={"salesforce": {"rate_limit": {"requests": 1000, "per_seconds": 1}}})
    for _ in range(3):
        c.start_worker(concurrency=2)
    rng = random.Random(CHAOS_SEED)
    started = time.monotonic()
    c.send("connector.poll_source", "salesforce", *window_args())
    wait_for(lambda: run_status(postgres_url) == "dispatched", timeout=60, on_timeout=c.logs)

    kills, next_kill, next_sweep, next_trace = 0, time.monotonic() + KILL_EVERY_SECONDS, 0.0, 0.0
    deadline = time.monotonic() + 150
    trace: list[str] = []
    counts = state_counts(postgres_url)
    while not all_terminal(counts, expected):
        now = time.monotonic()
        if now >= next_trace:
            trace.append(f"{now - started:5.1f} s, {kills} kills: {dict(counts)}")
            next_trace = now + 5
        assert now < deadline, "the run did not finish:\n" + "\n".join(trace) + f"\n{counts}\n{c.logs()}"
        if now >= next_kill:
            c.kill(rng.choice(c.live_workers()))
            c.start_worker(concurrency=2)
            kills += 1
            next_kill = now + KILL_EVERY_SECONDS
        if now >= next_sweep:  # what beat sends every `sweep_every_seconds`, to the same queue
            c.send("connector.sweep")
            next_sweep = now + 1.0
        time.sleep(0.25)
        counts = state_counts(postgres_url)
    duration = time.monotonic() - started
    c.drain()  # a worker still busy with a batch (say, on a stale claim) finishes it before we count

    _, writes, runs = ledger_rows(postgres_url)
    applied = Counter(w["id"] for w in crm.applied_writes)
    print(f"\nworker kill chaos: {expected} leads, {kills} kills, {sum(applied.values())} writes on "
          f"{len(applied)} records (max {max(applied.values())} per record), {duration:.1f} s; "
          f"6sense calls {len(box['sixsense'].log.entries(path_prefix='/v2/people/full'))}, "
          f"batch reads {len(batch_reads(crm))}, longest claimed phase {longest_claimed_phase(postgres_url):.1f} s "
          f"(claim TTL {CLAIM_TTL_SECONDS} s); {dict(counts)}")
    assert kills >= 3
    assert len(runs) == 1
    assert counts["done(written)"] + counts["done(up_to_date)"] == CHAOS_LEADS + SEEDED_WRITTEN, counts
    assert counts["skipped(invalid_email)"] + counts["skipped(no_match)"] == SEEDED_SKIPPED, counts
    # A lead whose write landed just before its worker died is confirmed on re-read (up_to_date):
    # the CRM still applied exactly one write to every record that gets values.
    assert max(applied.values()) == 1, [rid for rid, n in applied.items() if n > 1][:10]
    assert len(applied) == CHAOS_LEADS + SEEDED_WRITTEN
    assert [w.id for w in writes if w.decision == "write" and w.state != "confirmed"] == [], "a write left unconfirmed"
    confirmed = Counter((w.lead_id, w.field) for w in writes if w.state == "confirmed")
    assert max(confirmed.values()) == 1
    wrong = [r["Id"] for r in crm.leads() if (r["Email"] or "").startswith("chaos")
             and r["SixSense_Domain__c"] != r["Email"].split("@", 1)[1]]
    assert wrong == [], f"{len(wrong)} records without their mapped value"


# Test 2.
VISIBILITY_TIMEOUT = 10
SLOW_WRITE_SECONDS = 15.0
WRITE_PATH = "/services/data/v59.0/composite/sobjects"
RECEIVED = re.compile(r"Task connector\.process_batch\[([0-9a-f-]+)\] received")
FINISHED = re.compile(r"Task connector\.process_batch\[([0-9a-f-]+)\] (?:succeeded|failed|raised|retry)")


def batch_runs(log: str) -> tuple[int, int]:
    """(deliveries, finished executions) of the batch tasks, from the workers' INFO logs."""
    return len(RECEIVED.findall(log)), len(FINISHED.findall(log))


def batches_settled(log: str) -> bool:
    delivered, finished = batch_runs(log)
    return delivered == finished >= 1


def test_a_write_slower_than_the_visibility_timeout_is_delivered_twice_and_applied_once(sandbox, cluster,
                                                                                         postgres_url):
    crm = sandbox["salesforce"]
    # The lead claims last 6 s, less than the write: the worker renews them while it waits, so the
    # second delivery finds them held. The workers look for messages past the visibility timeout
    # every second instead of kombu's default of every ~100 s.
    c = cluster(sandbox, claim_ttl_seconds=6, celery={"visibility_timeout_seconds": VISIBILITY_TIMEOUT},
                transport_options={"unacked_restore_interval": 1, "unacked_restore_throttle": 1})
    crm.faults.add(Fault(path_prefix=WRITE_PATH, method="PATCH", status=0, delay_seconds=SLOW_WRITE_SECONDS))
    c.start_worker(concurrency=1, loglevel="info")
    c.start_worker(concurrency=1, loglevel="info")
    c.send("connector.poll_source", "salesforce", *window_args())
    wait_for(lambda: all_terminal(state_counts(postgres_url), 28), timeout=90, every=0.5, on_timeout=c.logs)
    # Every delivery of the batch has returned, the slow one included: no write is still in flight.
    wait_for(lambda: batches_settled(c.logs(tail=None)), timeout=SLOW_WRITE_SECONDS + 15, every=0.5,
             on_timeout=lambda: f"{batch_runs(c.logs(tail=None))}\n{c.logs()}")

    counts = state_counts(postgres_url)
    assert counts == Counter({"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}), counts
    writes_sent = crm.log.entries(path_prefix=WRITE_PATH, method="PATCH")
    assert len(writes_sent) == 1, "the CRM write was sent again"
    applied = Counter(w["id"] for w in crm.applied_writes)
    assert len(applied) == 21 and max(applied.values()) == 1, applied
    _, rows, _ = ledger_rows(postgres_url)
    confirmed = Counter((r.lead_id, r.field) for r in rows if r.decision == "write" and r.state == "confirmed")
    assert confirmed and max(confirmed.values()) == 1, "a field write was confirmed twice"
    assert [r for r in rows if r.decision == "write" and r.state != "confirmed"] == []
    assert sum(confirmed.values()) == sum(len(w["fields"]) for w in crm.applied_writes)

    # Delivered twice: the worker logs receive the batch task twice, and the CRM served the second
    # delivery's read of the batch while the first delivery's write was still in flight.
    deliveries = Counter(RECEIVED.findall(c.logs(tail=None)))
    assert sorted(deliveries.values()) == [2], deliveries
    write_done = writes_sent[0].at
    reads = batch_reads(crm)
    assert len(reads) == 2 and reads[1] < write_done, (reads, write_done)
    print(f"\nslow write vs visibility timeout: the batch task delivered {max(deliveries.values())} times, "
          f"its reads {[round(r - write_done, 1) for r in reads]} s from the end of the {SLOW_WRITE_SECONDS:g} s "
          f"write; {len(writes_sent)} write sent, {sum(applied.values())} records applied once each, "
          f"{sum(confirmed.values())} field writes confirmed once each")


def test_a_poller_killed_mid_poll_is_taken_over_and_no_lead_waits_for_the_next_night(make_sandbox, cluster,
                                                                                     postgres_url):
    """The worker polling the CRM dies between two pages. Its poll claim on the run stops being
    renewed; the sweeper sees it expire and sends the poll again; the new poller takes the run over
    from the cursor. Every lead of the night ends terminal, each record written once, one run."""
    box = make_sandbox(time_scale=CHAOS_TIME_SCALE, extra={"sixsense": {"enrichment_credits": 10**6}})
    crm = box["salesforce"]
    domains = sorted(d for d, c in seed_companies().items() if not c.blank_answer)
    extra = 400
    for i in range(extra):
        crm.add_lead(FirstName=f"Poll{i}", LastName="Lead", Company="Poll Co", Country="US",
                     Email=f"poll{i}@{domains[i % len(domains)]}")
    expected = extra + SEEDED_WRITTEN + SEEDED_SKIPPED
    # Pages of 200: the poller records the first, then waits 30 s for the second (we kill it then).
    crm.faults.add(Fault(path_prefix="/services/data/v59.0/query/01g", status=0, delay_seconds=30))
    c = cluster(box, time_scale=CHAOS_TIME_SCALE, claim_ttl_seconds=3, limiter={"lease_seconds": 3},
                celery={"batch_size": 50, "sweep_every_seconds": 1},
                sources={"salesforce": {"query_page_size": 200}})
    poller = c.start_worker(concurrency=1)
    c.send("connector.poll_source", "salesforce", *window_args())
    wait_for(lambda: 0 < sum(state_counts(postgres_url).values()) < expected, timeout=30, on_timeout=c.logs)
    time.sleep(1.0)  # the poller is waiting on the second page
    assert run_status(postgres_url) == "running"
    c.kill(poller)
    polled_before_kill = sum(state_counts(postgres_url).values())
    assert polled_before_kill < expected

    for _ in range(2):
        c.start_worker(concurrency=2)
    deadline = time.monotonic() + 90
    counts = state_counts(postgres_url)
    while not all_terminal(counts, expected):
        assert time.monotonic() < deadline, f"the night did not finish: {counts}\n{c.logs()}"
        c.send("connector.sweep")
        time.sleep(1.0)
        counts = state_counts(postgres_url)
    c.drain()

    leads, writes, runs = ledger_rows(postgres_url)
    assert len(runs) == 1 and runs[0].status == "dispatched"  # one run, taken over, finished
    assert len(leads) == expected and all(lead.state in TERMINAL for lead in leads)
    applied = Counter(w["id"] for w in crm.applied_writes)
    assert len(applied) == extra + SEEDED_WRITTEN and max(applied.values()) == 1
    assert "lost its poller" in c.logs(tail=None)
    print(f"\npoller killed mid-poll: {polled_before_kill}/{expected} leads recorded before the kill; "
          f"after the takeover {len(leads)} terminal, {sum(applied.values())} writes on {len(applied)} records")
