"""Guide §7 test 9: a single nightly kick-off, with two redbeat schedulers, a duplicate kick-off
message and the beat leader SIGKILLed.

Two `celery -A tasks.app beat` processes start at once on one Redis (a key prefix of their own),
with the kick-off compressed to every second (celery.kickoff_every_seconds) inside a nightly window
that holds now. While no worker runs, the kick-off messages stay on the broker's `night` list, so
the test reads each one there: when it arrived and which process sent it (Celery's `origin`
header). Then the leader is SIGKILLed, the standby must take over once the dead leader's lock has
expired, a duplicate kick-off is sent by hand, and a worker drains the queue.

Pass: only one beat sends at a time (every kick-off before the kill from the leader, none while
its lock lives on, then the standby's, never two in one period); the standby's first kick-off
comes within the lock timeout plus one poll of the standby; the ledger holds exactly one run per
(night, source) after every kick-off has run.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlmodel import select

from connector.ledger import open_ledger
from connector.ledger.tables import SyncRun
from connector.pipeline import current_window
from tests.distributed.conftest import Cluster, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
REPO = Path(__file__).resolve().parents[2]
LOCK_TIMEOUT = 3  # seconds; the beats tick (and the standby polls) every fifth of it
POLL = LOCK_TIMEOUT / 5
EVERY = 1.0  # the compressed kick-off period
KICKOFF = "connector.nightly_kickoff"
MEASURED: dict[str, float] = {}


@dataclass(frozen=True)
class Sent:
    at: float  # time.monotonic() when the test first saw the message on the broker
    origin: str  # "gen<pid>@<host>": the process that sent it


class KickoffWatcher:
    """Reads the broker's `night` list (without consuming it) and records each kick-off once."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sent: dict[str, Sent] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for raw in self.client.lrange("night", 0, -1):
                headers = json.loads(raw)["headers"]
                if headers["task"] == KICKOFF and headers["id"] not in self.sent:
                    self.sent[headers["id"]] = Sent(now, headers["origin"])
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def by(self, pid: int) -> list[float]:
        return sorted(s.at for s in list(self.sent.values()) if s.origin.startswith(f"gen{pid}@"))

    def all(self) -> list[Sent]:
        return sorted(self.sent.values(), key=lambda s: s.at)


def start_beat(c: Cluster, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env["CONNECTOR_CONFIG"] = str(c.config)
    env["PYTHONPATH"] = str(REPO)
    log = open(c.tmp / f"{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "-l", "info"],
                            cwd=c.tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def beat_logs(c: Cluster) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in c.tmp.glob("beat*.log"))


def runs(url: str) -> list[tuple[str, str, str]]:
    ledger = open_ledger(url, auto_migrate=False)
    with ledger.session() as s:
        rows = [(r.source, r.run_key, r.status) for r in s.exec(select(SyncRun)).all()]
    ledger.engine.dispose()
    return rows


def test_two_beats_kick_off_once_and_the_standby_takes_over_after_the_leader_is_killed(
        make_sandbox, cluster, postgres_url):
    box = make_sandbox(vendors=["salesforce", "hubspot", "sixsense"])
    now = datetime.now(UTC)
    prefix = f"test:beat:{uuid.uuid4().hex[:8]}:"
    c = cluster(box, window={"start": f"{now - timedelta(minutes=1):%H:%M}", "length_minutes": 120},
                # No lead is new: the kick-offs' runs poll nothing, so the test is about the runs alone.
                initial_watermark=(now + timedelta(days=1)).isoformat(),
                celery={"kickoff_every_seconds": EVERY, "beat_lock_timeout_seconds": LOCK_TIMEOUT,
                        "beat_key_prefix": prefix, "sweep_every_seconds": 3600})
    assert c.settings.sources.salesforce.enabled and c.settings.sources.hubspot.enabled
    night = current_window(c.settings, scheduled=True)
    assert night.kind == "night"
    broker = redis.Redis.from_url(c.settings.celery.broker_url)
    watcher = KickoffWatcher(broker)
    beats = [start_beat(c, "beat-a"), start_beat(c, "beat-b")]
    try:
        wait_for(lambda: len(watcher.sent) >= 4, timeout=60, on_timeout=lambda: beat_logs(c))
        [leader] = [b for b in beats if watcher.by(b.pid)]  # exactly one beat has sent
        [standby] = [b for b in beats if b is not leader]
        assert standby.poll() is None, "the standby exited instead of waiting for the lock"
        lock = f"{prefix}:lock"
        lock_left = broker.pttl(lock) / 1000
        os.killpg(leader.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        leader.wait(timeout=10)
        assert 0 < lock_left <= LOCK_TIMEOUT  # the dead leader's lock outlives it by this much

        wait_for(lambda: len(watcher.by(standby.pid)) >= 3, timeout=LOCK_TIMEOUT * 3 + 10,
                 on_timeout=lambda: beat_logs(c))
        took_over = watcher.by(standby.pid)[0] - killed_at
        MEASURED.update({"lock left at the kill (s)": lock_left, "standby's first kick-off after the kill (s)": took_over})
        # The standby respected the lock (nothing while it lived on), then took over within the
        # lock timeout plus one of its polls (and our 50 ms read of the broker).
        assert took_over >= lock_left - 0.2, f"the standby sent {took_over:.2f} s after the kill, under a live lock"
        assert took_over <= LOCK_TIMEOUT + POLL + 0.5, f"the standby took {took_over:.2f} s to take over"
    finally:
        for beat in beats:
            if beat.poll() is None:
                os.killpg(beat.pid, signal.SIGTERM)
                beat.wait(timeout=15)
        watcher.stop()

    sent = watcher.all()
    leader_sent, standby_sent = watcher.by(leader.pid), watcher.by(standby.pid)
    assert len(leader_sent) + len(standby_sent) == len(sent), "a third process sent kick-offs"
    assert max(leader_sent) < killed_at < min(standby_sent)
    gaps = [b.at - a.at for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= EVERY / 2, f"two kick-offs {min(gaps):.2f} s apart: both beats sent"
    MEASURED.update({"kick-offs by the leader": len(leader_sent), "kick-offs by the standby": len(standby_sent)})

    # A duplicate kick-off message on top, then one worker runs them all.
    c.send(KICKOFF)
    c.start_worker(concurrency=2)
    expected = {(source, f"{source}:{night.key}") for source in ("salesforce", "hubspot")}

    def drained() -> bool:
        rows = runs(postgres_url)
        return (broker.llen("night") == 0 and broker.hlen("unacked") == 0 and len(rows) >= len(expected)
                and all(status != "running" for _, _, status in rows))

    wait_for(drained, timeout=60, every=0.5, on_timeout=c.logs)
    time.sleep(1.0)  # a last poll_source still in flight would show up as a second run
    rows = runs(postgres_url)
    assert {(source, key) for source, key, _ in rows} == expected
    assert len(rows) == len(expected), rows
    assert all(status == "dispatched" for _, _, status in rows), rows  # polled, batches handed to workers
    MEASURED["kick-offs run by the worker"] = len(sent) + 1
    broker.delete(*broker.keys(f"{prefix}*"))  # the schedule's entries and lock: this test's own keys
    print(f"\ntest 9 figures: {MEASURED}")
