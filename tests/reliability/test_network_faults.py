"""Faults on the wire between the connector and its vendors (issue item 1; the reliability guide's
section 7, test 8, with the in-test proxy of test 7), made by `tests.reliability.tcp_proxy` put
between the connector and the Salesforce (HTTPS) and 6sense (HTTP) emulators:

* added latency: the night ends as usual;
* connections dropped for 1 s (and 2.5 s): every lead still ends in a terminal ledger state with its
  reason, nothing is written twice, and a second run finishes the leads the drop failed;
* a reset after the CRM applied a write and before its reply reached the connector (a lost
  acknowledgement): the write is applied once, the ledger says `confirmed` (not `failed`), and the
  final field values are those of a clean night;
* the same lost reply on the 6sense link: the lead is still written once and no credit is paid twice.

Each test runs on the SQLite and the PostgreSQL ledger.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from connector.ledger import Ledger, open_ledger
from connector.ledger.tables import Lead
from connector.limiter import MemoryLimiter
from connector.mapping import load_mapping
from connector.pipeline import RunReport, current_window, run_source
from connector.sandbox import Sandbox, deep_merge
from connector.settings import Settings
from tests.reliability.tcp_proxy import TcpProxy

NIGHT_STATES = {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
TERMINAL = {"done", "skipped", "failed", "deferred"}
WRITE_PATH = "/services/data/v59.0/composite/sobjects"
# A composite/sobjects PATCH of 8 or more leads is over 4 KiB through TLS; every other call of a
# night (token, describe, query, re-read of a batch's ids) stays under 2.5 KiB (measured: token
# 388 B, describe 396 B, poll query 955 B, PATCH of 21 leads 12,041 B).
WRITE_MIN_BYTES = 4000


@pytest.fixture
def proxies() -> Iterator[Callable[[int, str], TcpProxy]]:
    started: list[TcpProxy] = []

    def make(port: int, name: str) -> TcpProxy:
        proxy = TcpProxy(port, name=name).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def through(box: Sandbox, sf: TcpProxy | None = None, sixsense: TcpProxy | None = None) -> dict[str, Any]:
    """Settings overrides that send the connector's Salesforce and/or 6sense traffic via proxies."""
    overrides: dict[str, Any] = {}
    if sf is not None:
        base = f"https://127.0.0.1:{sf.port}"
        # instance_url overrides the token answer's (the emulator would name the proxy anyway).
        overrides["sources"] = {"salesforce": {"token_url": f"{base}/services/oauth2/token", "instance_url": base}}
    if sixsense is not None:
        base = f"http://127.0.0.1:{sixsense.port}"
        overrides["providers"] = {"sixsense": {"scribe_url": base, "api_url": base, "epsilon_url": base}}
    return overrides


def night(settings: Settings, ledger: Ledger, **kwargs: Any) -> RunReport:
    report = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings), **kwargs)
    assert report is not None
    return report


def mapped_fields(settings: Settings) -> list[str]:
    return list(load_mapping(settings.resolved_mappings_dir / "salesforce.lead.yaml").fields)


def values_by_id(box: Sandbox, fields: list[str]) -> dict[str, dict[str, Any]]:
    return {r["Id"]: {f: r[f] for f in fields} for r in box["salesforce"].leads()}


def clean_night_values(make_sandbox, make_settings, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The mapped values a night without any fault leaves in a fresh Salesforce emulator."""
    box = make_sandbox()
    settings = make_settings(box, f"sqlite:///{tmp_path / 'clean-ledger.db'}")
    report = night(settings, open_ledger(settings.ledger_url, auto_migrate=True))
    assert report.states == NIGHT_STATES
    return values_by_id(box, mapped_fields(settings))


def ledger_leads(ledger: Ledger, box: Sandbox) -> list[Lead]:
    return [lead for r in box["salesforce"].leads() for lead in ledger.find_leads(key=r["Id"])
            if lead.record_id == r["Id"]]


def assert_every_lead_terminal(ledger: Ledger, box: Sandbox) -> Counter[str]:
    leads = ledger_leads(ledger, box)
    assert len(leads) == 28
    for lead in leads:
        assert lead.state in TERMINAL, f"{lead.record_id} left in {lead.state}"
        assert lead.reason, f"{lead.record_id} ({lead.state}) has no reason"
    return Counter(f"{lead.state}({lead.reason})" for lead in leads)


def assert_no_duplicate_write(box: Sandbox) -> list[str]:
    ids = [w["id"] for w in box["salesforce"].applied_writes]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"written more than once: {duplicates}"
    return ids


def write_rows(ledger: Ledger, box: Sandbox) -> list[Any]:
    return [w for lead in ledger_leads(ledger, box) for w in ledger.field_writes(lead_id=lead.id)
            if w.decision == "write"]


def make_failed_leads_due(ledger: Ledger) -> int:
    """Failed-retryable leads wait RETRY_DELAY (15 min): move their next attempt into the past."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with ledger.session() as s:
        result = s.execute(update(Lead).where(Lead.state.in_(("failed", "deferred")), Lead.retryable.is_(True))
                           .values(next_attempt_at=past))
        return int(result.rowcount or 0)


def when(condition: Callable[[], bool], action: Callable[[], None], *, timeout: float = 30.0) -> threading.Thread:
    """Run `action` once `condition` holds (polled every 5 ms, for at most `timeout` seconds)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, name="fault-trigger", daemon=True)
    thread.start()
    return thread


# ---- latency -------------------------------------------------------------------------------------


def test_200ms_latency_on_the_salesforce_link_changes_nothing_but_time(
        make_sandbox, make_settings, ledger_url, proxies):
    box = make_sandbox()
    sf = proxies(box.servers["salesforce"].port, "salesforce")
    sf.set_latency(downstream=0.2)
    settings = make_settings(box, ledger_url, **through(box, sf=sf))
    ledger = open_ledger(ledger_url, auto_migrate=True)

    report = night(settings, ledger)

    assert report.states == NIGHT_STATES
    assert len(assert_no_duplicate_write(box)) == 21
    crm_log = box["salesforce"].log.entries()
    assert [e.status for e in crm_log] == [200] * len(crm_log)  # token, describe, poll, write
    # Every reply came 200 ms late (TLS handshake included): the night is at least that much slower.
    assert sf.stats.exchanges and len(sf.stats.exchanges) >= len(crm_log)
    assert report.seconds >= 0.2 * len(sf.stats.exchanges) * 0.95
    assert all(w.state == "confirmed" for w in write_rows(ledger, box))


# ---- dropped connections -------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "seconds"), [("mid_enrichment", 1.0), ("before_the_write", 1.0),
                                                 ("before_the_write", 2.5)])
def test_dropped_connections_leave_every_lead_terminal_and_nothing_written_twice(
        moment, seconds, make_sandbox, make_settings, ledger_url, proxies):
    """Both links drop every connection (open and new) for `seconds`, either while 6sense answers
    the night's lookups or just before the Salesforce write; then a second run retries what failed.

    One second is inside the retries' backoff (Salesforce reads: 3 tries over 1.5 s; 6sense: 4
    over 3.5 s), so the night usually ends as a clean one; 2.5 s outlasts the re-read after the
    failed write, so the batch fails (retryable, its writes left `planned`) and the second run
    writes it."""
    box = make_sandbox()
    sf = proxies(box.servers["salesforce"].port, "salesforce")
    six = proxies(box.servers["sixsense"].port, "sixsense")
    settings = make_settings(box, ledger_url, **through(box, sf=sf, sixsense=six))
    ledger = open_ledger(ledger_url, auto_migrate=True)
    dropped_at: list[float] = []

    def drop() -> None:
        if not dropped_at:
            dropped_at.append(time.time())
            sf.drop_for(seconds)
            six.drop_for(seconds)

    progress = None
    if moment == "mid_enrichment":
        watcher = when(lambda: len(box["sixsense"].log.entries(path_prefix="/v2/people/full")) >= 6, drop)
    else:
        watcher = None
        progress = lambda done, total: drop()

    first = night(settings, ledger, progress=progress)
    if watcher is not None:
        watcher.join(timeout=5)
    assert dropped_at, "the drop never happened"

    states = assert_every_lead_terminal(ledger, box)
    applied_first = assert_no_duplicate_write(box)
    assert sf.stats.dropped + six.stats.dropped + sf.stats.refused + six.stats.refused > 0
    assert set(first.states) <= {"done(written)", "skipped(invalid_email)", "skipped(no_match)",
                                 "failed(vendor_unavailable)", "deferred(rate_limited)"}, first.states
    # Nothing stays half-done: a write is confirmed, or still planned for the next run to check.
    assert all(w.state in ("confirmed", "planned") for w in write_rows(ledger, box))
    if seconds > 2:
        assert first.states.get("failed(vendor_unavailable)", 0) > 0, first.states

    # The next run (the cursor rewound, failed leads due now) finishes the rest: 21 leads written,
    # each exactly once over both runs.
    deadline = time.monotonic() + seconds + 5
    while (sf.dropping or six.dropping) and time.monotonic() < deadline:  # the outage is over
        time.sleep(0.05)
    assert not (sf.dropping or six.dropping)
    due = make_failed_leads_due(ledger)
    ledger.rewind_cursor(source="salesforce", watermark=current_window(settings).start - timedelta(hours=24))
    night(settings, ledger)
    assert_every_lead_terminal(ledger, box)
    applied = assert_no_duplicate_write(box)
    assert len(applied) == 21
    final = Counter(f"{lead.state}({lead.reason})" for lead in ledger_leads(ledger, box))
    # Written in the first run: up to date in the second; failed in the first: written now.
    assert final == +Counter({"done(up_to_date)": len(applied_first), "done(written)": 21 - len(applied_first),
                              "skipped(invalid_email)": 3, "skipped(no_match)": 4}), final
    assert all(w.state == "confirmed" for w in write_rows(ledger, box))
    print(f"\n[{moment} {seconds}s] first run {dict(states)}; due for retry {due}; "
          f"salesforce proxy {sf.describe()}; 6sense proxy {six.describe()}")


# ---- lost replies --------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "skip"), [(200, 0), (8, 1)], ids=["one_batch", "second_of_three_batches"])
def test_a_reset_after_the_crm_applied_a_write_is_confirmed_not_resent(
        batch_size, skip, make_sandbox, make_settings, ledger_url, proxies, tmp_path):
    clean = clean_night_values(make_sandbox, make_settings, tmp_path)
    box = make_sandbox()
    crm = box["salesforce"]
    sf = proxies(box.servers["salesforce"].port, "salesforce")
    sf.reset_on_reply(min_request_bytes=WRITE_MIN_BYTES, skip=skip, skip_handshake_exchanges=2)
    settings = make_settings(box, ledger_url, **deep_merge(
        through(box, sf=sf), {"sources": {"salesforce": {"write_batch_size": batch_size}}}))
    ledger = open_ledger(ledger_url, auto_migrate=True)

    report = night(settings, ledger)

    # The proxy cut exactly one connection, on the reply to a write the emulator had answered 200.
    assert sf.stats.resets == 1
    [cut] = [e for e in sf.stats.exchanges if e.reset]
    assert cut.request_bytes >= WRITE_MIN_BYTES
    patches = crm.log.entries(path_prefix=WRITE_PATH, method="PATCH")
    batches = -(-21 // batch_size)
    assert len(patches) == batches and {e.status for e in patches} == {200}  # no batch sent twice
    # Applied once per lead, and the lost reply did not fail anything.
    assert report.states == NIGHT_STATES
    ids = assert_no_duplicate_write(box)
    assert len(ids) == 21
    leads = ledger_leads(ledger, box)
    reread = [l for l in leads if "confirmed on re-read" in l.detail]
    assert len(reread) == min(batch_size, 21 - skip * batch_size)
    rows = write_rows(ledger, box)
    assert rows and all(w.state == "confirmed" for w in rows), Counter(w.state for w in rows)
    assert {w.lead_id for w in rows} >= {l.id for l in reread}
    # The final values are exactly those of a night without the fault.
    assert values_by_id(box, mapped_fields(settings)) == clean
    print(f"\n[{batch_size}/{skip}] reset a {cut.request_bytes}-byte request; {len(reread)} leads confirmed "
          f"on re-read; PATCHes {len(patches)}; proxy {sf.describe()}")


def test_a_reset_after_6sense_answered_costs_no_second_credit_and_the_lead_is_written_once(
        make_sandbox, make_settings, ledger_url, proxies):
    """6sense (plain HTTP) answered a paid lookup and the reply was lost: the provider asks again
    (6sense does not charge a record twice within 30 days) and the lead is written once."""
    box = make_sandbox()
    six = proxies(box.servers["sixsense"].port, "sixsense")
    six.reset_on_reply(marker=b"POST /v2/people/full", skip=2)
    settings = make_settings(box, ledger_url, **through(box, sixsense=six))
    ledger = open_ledger(ledger_url, auto_migrate=True)

    report = night(settings, ledger)

    assert six.stats.resets == 1
    calls = box["sixsense"].log.entries(path_prefix="/v2/people/full")
    # 24 lookups, one of them asked twice because its answer was lost on the way back.
    assert len(calls) == 25
    assert Counter(e.status for e in calls)[429] == 0
    assert report.states == NIGHT_STATES
    assert box["sixsense"].credits_spent["enrichment"] == 20  # the resend was free at 6sense
    assert report.credits["sixsense"] == 20  # and the ledger counted the credit once
    ids = assert_no_duplicate_write(box)
    assert len(ids) == 21
    assert all(w.state == "confirmed" for w in write_rows(ledger, box))
