"""Vendor limits under many processes with unlimited demand, judged by the emulators' own logs.

Guide tests 3 (6sense shared limit) and 4 (Slintel compound limits and a lost lease). Each test
starts real worker processes (`hammer.py`) that call one vendor through its real provider and the
shared Redis limiter as fast as the limiter lets them; then it reads the emulator's request log
(server-side arrival and answer times) and the limiter's grant counter.
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from connector.http import credential_tag
from connector.limiter.redis import RedisLimiter
from connector.sandbox.server import LoggedRequest
from connector.sandbox.sixsense import SANDBOX_API_TOKEN
from connector.sandbox.slintel import SANDBOX_API_KEY
from connector.settings import LimiterSettings

pytestmark = pytest.mark.redis
REDIS = "redis://127.0.0.1:6379/0"
HAMMER = Path(__file__).with_name("hammer.py")


# ---- processes -------------------------------------------------------------------------------


class Hammers:
    """Hammer processes started together: each loads its settings, says ready, then waits for go."""

    def __init__(self, config: Path, provider: str, *, processes: int, threads: int | list[int],
                 announce: int | None) -> None:
        per_process = threads if isinstance(threads, list) else [threads] * processes
        self.procs = [
            subprocess.Popen([sys.executable, str(HAMMER), json.dumps(
                {"config": str(config), "provider": provider, "threads": per_process[i], "tag": f"p{i}",
                 "announce": i == announce})],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for i in range(processes)
        ]
        for proc in self.procs:
            line = proc.stdout.readline()
            assert json.loads(line) == {"ready": True}, f"a hammer did not start: {line!r}"

    def go(self, seconds: float, clock_offset_seconds: float = 0.0) -> float:
        started = time.time()
        for proc in self.procs:
            proc.stdin.write(json.dumps({"seconds": seconds, "clock_offset_seconds": clock_offset_seconds}) + "\n")
            proc.stdin.flush()
        return started

    def results(self) -> list[dict[str, int] | None]:
        """Each process's counts; None for one that was killed."""
        out: list[dict[str, int] | None] = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=60)
            out.append(json.loads(stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None)
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def hammers():
    started: list[Hammers] = []

    def start(config: Path, provider: str, *, processes: int, threads: int | list[int],
              announce: int | None = None) -> Hammers:
        group = Hammers(config, provider, processes=processes, threads=threads, announce=announce)
        started.append(group)
        return group

    yield start
    for group in started:
        group.stop()


# ---- reading the emulator's log ----------------------------------------------------------------


def most_in_any_window(starts: list[float], seconds: float) -> int:
    """The most arrivals in any window (t - seconds, t]: what a server-side sliding window counts."""
    stamps, first, best = sorted(starts), 0, 0
    for last, t in enumerate(stamps):
        while stamps[first] <= t - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def in_flight_timeline(entries: list[LoggedRequest]) -> list[tuple[float, int]]:
    """(time, requests being served just after it) at every arrival, from [started, at] intervals;
    an answer at the same instant as an arrival counts as gone first."""
    events = sorted([(e.started, 1) for e in entries] + [(e.at, -1) for e in entries], key=lambda x: (x[0], x[1]))
    level, timeline = 0, []
    for t, step in events:
        level += step
        if step == 1:
            timeline.append((t, level))
    return timeline


def hammer_config(write_config, box, prefix: str, *, lease_seconds: float = 60.0, **overrides: Any) -> Path:
    """A settings file for the hammers: the sandbox's URLs and credentials, the shared Redis limiter."""
    return write_config(box, None, limiter={"url": REDIS, "prefix": prefix, "lease_seconds": lease_seconds},
                        **overrides)


# ---- guide test 3 -------------------------------------------------------------------------------


def test_6sense_four_processes_of_16_threads_fill_one_token_window_without_a_429(make_sandbox, write_config,
                                                                                hammers):
    """10 calls per 6 s of vendor time, compressed 6 times (1 s windows): 4 x 16 threads on one
    token for 5 windows and more. Every window the emulator saw holds at most 10, none answered
    429, the first 5 windows carried at least 95% of the 50 calls allowed, and the limiter's
    grants equal the emulator's request count."""
    scale, limit, vendor_window = 6.0, 10, 6.0
    window, windows = vendor_window / scale, 5
    box = make_sandbox(vendors=["sixsense"], time_scale=scale,
                       extra={"sixsense": {"rate_limit": [limit, vendor_window], "enrichment_credits": 10**6}})
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    config = hammer_config(write_config, box, prefix, time_scale=scale,
                           providers={"sixsense": {"rate_limit": {"requests": limit, "per_seconds": vendor_window}}})
    group = hammers(config, "sixsense", processes=4, threads=16)
    group.go(seconds=window * windows + 0.6)
    done = group.results()

    entries = box["sixsense"].log.entries()
    starts = [e.started for e in entries]
    assert all(r is not None and set(r) <= {"answered"} for r in done), done
    assert [e.status for e in entries].count(429) == 0
    assert most_in_any_window(starts, window) <= limit
    first = min(starts)
    busy = sum(1 for t in starts if t < first + windows * window)
    allowed = windows * limit
    assert busy >= 0.95 * allowed, f"{busy} of {allowed} allowed calls in the first {windows} windows"
    grants = RedisLimiter(REDIS, prefix=prefix).grants(f"sixsense:{credential_tag(SANDBOX_API_TOKEN)}")
    assert grants == len(entries) == sum(r["answered"] for r in done)
    print(f"\n6sense: {len(entries)} calls, {busy}/{allowed} in the first {windows} windows of {window} s, "
          f"max {most_in_any_window(starts, window)} per window, grants {grants}")


# ---- guide test 4 ---------------------------------------------------------------------------------


def test_slintel_compound_limits_hold_under_unlimited_demand_and_a_killed_holders_permits_come_back(
        make_sandbox, write_config, hammers):
    """Slintel's 10 calls/s and 10 in flight on both sides; 4 processes (8, 8, 8 and 16 threads)
    with unlimited demand. Fast answers first (the 1 s window binds), then 1.2 s answers; in that
    phase one process is SIGKILLed just after it was granted a call. From the emulator's log: never
    more than 10 in flight, never more than 10 arrivals in a 1 s window, no 429. From Redis: every
    permit the dead process held (its lease and its window slot) is gone within the lease TTL + 1 s."""
    ttl, slow = 2.4, 1.2  # the lease outlives a call by more than its refresh period (ttl / 3)
    box = make_sandbox(vendors=["slintel"], extra={"slintel": {"burst": [10, 1], "max_in_flight": 10,
                                                               "daily_limit": 10**6, "credits": 0}})
    emulator = box["slintel"]
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    config = hammer_config(write_config, box, prefix, lease_seconds=ttl,
                           providers={"slintel": {"lead_fallbacks": [], "daily_limit": 10**6}})
    group = hammers(config, "slintel", processes=4, threads=[8, 8, 8, 16], announce=3)
    victim = group.procs[3]
    said: queue.Queue[dict[str, Any]] = queue.Queue()
    reader = threading.Thread(target=lambda: [said.put(json.loads(line)) for line in victim.stdout], daemon=True)
    reader.start()
    heard: list[dict[str, Any]] = []
    t0 = group.go(seconds=7.0)
    time.sleep(max(0.0, t0 + 1.5 - time.time()))
    emulator.latency_seconds = slow
    slow_from = time.time()

    def fresh_grant() -> bool:
        last = heard[-1] if heard else {}
        return "granted" in last and last["at"] > slow_from + 0.3 and time.time() - last["at"] < 0.05

    # In the slow phase, kill the victim just after it was granted a call.
    while not fresh_grant():
        heard.append(said.get(timeout=5))
    time.sleep(0.05)  # the call reaches the emulator
    victim.kill()
    victim.wait()
    killed = time.time()
    reader.join(timeout=5)
    while not said.empty():
        heard.append(said.get())
    held = {h["granted"] for h in heard if "granted" in h} - {h["released"] for h in heard if "released" in h}
    assert held, "the killed process held no permit"

    # The dead permits' scores are final (nothing refreshes or releases them): a lease stops
    # counting at its score, a window slot one window (1 s) after its score.
    base = f"{prefix}:{{slintel:{credential_tag(SANDBOX_API_KEY)}}}"
    client = redis.Redis.from_url(REDIS)
    leases = [client.zscore(f"{base}:fly", m) for m in held]
    slots = [client.zscore(f"{base}:win", m) for m in held]
    assert None not in leases + slots, "a dead permit vanished at once"
    free_after = {"lease": max(leases) / 1000 - killed, "slot": max(slots) / 1000 + 1.0 - killed}
    while time.time() < killed + ttl + 3.0 and any(
            client.zscore(f"{base}:{name}", m) is not None for name in ("fly", "win") for m in held):
        time.sleep(0.05)
    gone_after = time.time() - killed
    done = group.results()

    assert max(free_after.values()) <= ttl + 1.0, f"dead permits counted too long: {free_after}"
    assert gone_after < ttl + 3.0, "the dead permits were never removed"
    entries = emulator.log.entries()
    starts = [e.started for e in entries]
    assert [e.status for e in entries].count(429) == 0
    assert all(r is not None and set(r) <= {"no_match"} for r in done[:3]), done
    peak = max(level for _, level in in_flight_timeline(entries))
    assert peak <= 10 and emulator.in_flight.peak <= 10
    assert most_in_any_window(starts, 1.0) <= 10
    assert most_in_any_window([t for t in starts if t < slow_from], 1.0) == 10, "the fast phase never filled a window"
    assert [t for t in starts if t > killed + max(free_after.values())], "the survivors stopped"
    grants = RedisLimiter(REDIS, prefix=prefix).grants(f"slintel:{credential_tag(SANDBOX_API_KEY)}")
    assert len(entries) <= grants
    print(f"\nSlintel: {len(entries)} calls, grants {grants}, peak in flight {peak}, max "
          f"{most_in_any_window(starts, 1.0)} per 1 s, {len(held)} permits held at the kill: leases free after "
          f"{free_after['lease']:.2f} s, window slots after {free_after['slot']:.2f} s, removed after "
          f"{gone_after:.2f} s (TTL {ttl} s)")


def test_slintel_daily_quota_resets_exactly_once_across_midnight_gmt(make_sandbox, write_config, hammers):
    """A daily limit of 40 on both sides and unlimited demand from 3 processes x 8 threads across
    23:59:30 -> 00:00:30 GMT (the vendor's day compressed 15 times: 4 s; the emulator's and the
    limiter's clocks shifted there, nothing sleeps till midnight). Exactly the batch share of 40 calls on each GMT day
    by the emulator's clock less the webhook's share (36), the second day's only after midnight, no 429."""
    scale, quota = 15.0, 40
    day = 86400 / scale
    box = make_sandbox(vendors=["slintel"], time_scale=scale,
                       extra={"slintel": {"burst": [10, 1], "max_in_flight": 10, "daily_limit": quota, "credits": 0}})
    emulator = box["slintel"]
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    config = hammer_config(write_config, box, prefix, time_scale=scale,
                           providers={"slintel": {"lead_fallbacks": [], "daily_limit": quota}})
    group = hammers(config, "slintel", processes=3, threads=8)
    # The vendor's clock at "go" reads 23:59:30: 30 vendor seconds (2 s here) before a midnight. The
    # offset is whole milliseconds, as the limiter keeps it, so its clock is never ahead of the emulator's.
    midnight = (math.floor(time.time() / day) + 1) * day
    offset = math.floor((midnight - 30 / scale - time.time()) * 1000) / 1000
    emulator.clock = lambda: time.time() + offset
    group.go(seconds=60 / scale, clock_offset_seconds=offset)
    done = group.results()

    entries = emulator.log.entries()
    vendor = [e.started + offset for e in entries]  # the emulator's clock at each arrival
    per_day: dict[int, int] = {}
    for v in vendor:
        per_day[math.floor(v / day)] = per_day.get(math.floor(v / day), 0) + 1
    assert [e.status for e in entries].count(429) == 0
    # Batch callers stop at the quota less the share kept for the webhook (limiter.realtime_reserve).
    batch_share = int(quota * (1 - LimiterSettings().realtime_reserve))
    assert batch_share < quota
    assert sorted(per_day.items()) == [(round(midnight / day) - 1, batch_share), (round(midnight / day), batch_share)]
    assert all(r is not None and set(r) <= {"no_match", "quota"} for r in done), done
    assert sum(r.get("quota", 0) for r in done) > 0, "the demand never met the quota"
    first_after = min(v for v in vendor if v >= midnight)
    assert most_in_any_window([e.started for e in entries], 1 / scale) <= 10
    grants = RedisLimiter(REDIS, prefix=prefix).grants(f"slintel:{credential_tag(SANDBOX_API_KEY)}")
    assert grants == len(entries) == 2 * batch_share
    print(f"\nmidnight: {per_day[round(midnight / day) - 1]} calls before it, {per_day[round(midnight / day)]} after, "
          f"the first {(first_after - midnight) * scale:.2f} vendor s after 00:00:00; "
          f"{sum(r.get('quota', 0) for r in done)} quota refusals before the wire")
