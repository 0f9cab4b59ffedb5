"""The shared Redis limiter under faults, against the emulators' own logs.

Guide tests 5 (a shared 429 cooldown, on three Celery workers) and 7 (a Redis outage, then latency,
under a night through the pipeline), and the quota seeding of a missing day key. Tests 3 and 4
(limits under unlimited demand) are in test_limits_at_scale.py.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from connector.errors import QuotaExhausted
from connector.http import credential_tag
from connector.limiter import LimitSpec
from connector.limiter.redis import RedisLimiter
from connector.models import LeadIdentity
from connector.pipeline import RunReport, current_window, run_source
from connector.providers.sixsense import SixSensePeopleFull
from connector.sandbox.salesforce import SANDBOX_CLIENT_ID
from connector.sandbox.server import Fault
from connector.sandbox.sixsense import SANDBOX_API_TOKEN
from connector.services import open_services
from connector.sources.base import VendorContext
from tests.distributed.conftest import wait_for
from tests.distributed.test_celery_night import all_terminal, lead_states, window_args
from tests.distributed.test_limits_at_scale import most_in_any_window
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis
REDIS = "redis://127.0.0.1:6379/0"
NIGHT = {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}


def test_a_missing_day_key_is_seeded_from_the_ledger():
    seeds = []

    def seed(spec: LimitSpec, day: str) -> int:
        seeds.append(day)
        return 4

    limiter = RedisLimiter(REDIS, prefix=f"test:{uuid.uuid4().hex[:8]}", quota_seed=seed)
    spec = LimitSpec(key="marketo:k", requests=100, per_seconds=1.0, daily_quota=5, quota_timezone="America/Chicago")
    limiter.acquire(spec).release()
    with pytest.raises(QuotaExhausted):
        limiter.acquire(spec)
    assert len(seeds) == 1 and limiter.used_today(spec) == 5


def test_a_call_that_outlives_the_window_keeps_its_slot_until_it_ends():
    """The vendor counts a call when it arrives, which can be any time up to its end (a thread that
    sends late, a slow network). So a call still running when its window has passed keeps its slot:
    the next grant comes one window after that call ended, not one window after it was granted."""
    limiter = RedisLimiter(REDIS, prefix=f"test:{uuid.uuid4().hex[:8]}", lease_seconds=5)
    spec = LimitSpec(key="slow:k", requests=1, per_seconds=0.2)
    first = limiter.acquire(spec)
    granted: list[float] = []

    def second_call() -> None:
        with limiter.acquire(spec, deadline=time.time() + 5):
            granted.append(time.time())

    waiter = threading.Thread(target=second_call)
    waiter.start()
    time.sleep(0.35)  # the first call runs past its 0.2 s window
    ended = time.time()
    first.release()
    waiter.join(timeout=5)
    assert granted, "the second call was never granted"
    assert granted[0] >= ended + 0.2 - 0.005, f"granted {granted[0] - ended:+.3f} s after the first call ended"


# ---- guide test 5 ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_429_with_retry_after_7_stops_three_workers_for_7_s_and_every_lead_is_written_once(
        make_sandbox, cluster, postgres_url):
    """A night on 3 Celery workers (batches of 4 leads, so all three enrich at once). 6sense answers
    one call `429 Retry-After: 7`: from then on no worker sends 6sense anything for 7 s, calls
    resume within 1 s of the pause's end, and the night ends with every lead written once."""
    box = make_sandbox(extra={"sixsense": {"latency_seconds": 0.1}})
    # The fault's seeded generator (probability 0.2, seed 10) picks the 8th call: the workers are busy by then.
    box["sixsense"].faults.add(Fault(path_prefix="/v2/people/full", status=429, headers={"Retry-After": "7"},
                                     body={"status": "error", "message": "Too Many Requests"},
                                     probability=0.2, seed=10, count=1))
    c = cluster(box, celery={"batch_size": 4})
    for _ in range(3):
        c.start_worker(concurrency=1)
    # All three take batches from the start: the night is sent once every worker answers a ping.
    wait_for(lambda: len(c.app.control.ping(timeout=0.5)) == 3, timeout=60, on_timeout=c.logs)
    c.send("connector.poll_source", "salesforce", *window_args())
    wait_for(lambda: all_terminal(postgres_url, 28), timeout=90, on_timeout=c.logs)

    entries = box["sixsense"].log.entries()
    [hit] = [e for e in entries if e.status == 429]
    before = [e for e in entries if e.started < hit.started]
    # Calls granted before the pause was set may still arrive within 0.1 s of the 429.
    during = [e for e in entries if hit.at + 0.1 < e.started < hit.at + 7.0]
    after = sorted(e.started for e in entries if e.started >= hit.at + 7.0)
    assert len(before) == 7
    assert during == [], "a worker called 6sense during the pause"
    assert after and after[0] <= hit.at + 8.0, "calls did not resume within 1 s of the pause's end"
    assert lead_states(postgres_url) == Counter(NIGHT)
    writes = Counter(w["id"] for w in box["salesforce"].applied_writes)
    assert len(writes) == 21 and max(writes.values()) == 1, "a lead was written twice (or not at all)"
    for worker in c.workers:
        c.kill(worker)  # the night is over: no need for a warm shutdown
    on_the_wire = [e for e in entries if hit.at <= e.started <= hit.at + 0.1 and e is not hit]
    print(f"\n429: {len(before)} calls before it, {len(on_the_wire)} within 0.1 s of it, {len(during)} during the "
          f"7 s, {len(after)} after; "
          f"first call {after[0] - hit.at:.2f} s after the 429")


# ---- guide test 7 ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("test redis did not start")


@pytest.fixture
def redis_behind_proxy(tmp_path: Path):
    """A test-owned redis-server on a random port (never the machine's), reached through a TCP proxy."""
    port = _free_port()
    server = _start_redis(port, tmp_path)
    with TcpProxy(port, name="redis") as proxy:
        yield port, proxy
    server.kill()
    server.wait()


def test_redis_down_10_s_then_slow_no_call_without_a_grant_and_the_night_ends_whole(
        make_sandbox, make_settings, tmp_path, redis_behind_proxy):
    """A night through the pipeline on the Redis limiter (6sense at 6 calls/s on both sides). Mid-run
    the proxy cuts Redis off for 10 s, then adds 500 ms to every reply for 3 s; meanwhile a fresh
    process (its limiter never reached Redis) starts a 6sense call. No vendor call starts while
    Redis is away, every call had a grant, no limit is exceeded, everyone resumes by itself and
    the night ends with every lead written exactly once."""
    port, proxy = redis_behind_proxy
    box = make_sandbox(extra={"sixsense": {"rate_limit": [6, 1], "enrichment_credits": 10**6}})
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    settings = make_settings(box, f"sqlite:///{tmp_path / 'ledger.db'}",
                             limiter={"url": f"redis://{proxy.address}/0", "prefix": prefix},
                             providers={"sixsense": {"rate_limit": {"requests": 6, "per_seconds": 1}}})
    services = open_services(settings, auto_migrate=True)
    reports: list[RunReport | None] = []
    night = threading.Thread(target=lambda: reports.append(run_source(
        settings, services.ledger, services.limiter, "salesforce", window=current_window(settings),
        context=services.context())), daemon=True)
    late: list[object] = []

    def late_starter() -> None:
        provider = SixSensePeopleFull(settings.providers.sixsense, VendorContext(settings, RedisLimiter(
            settings.limiter.url, prefix=prefix, unreachable_wait_seconds=30)))
        try:
            late.append(provider.fetch(LeadIdentity(email="late.starter@globex.example"), deadline=time.time() + 60))
        except Exception as exc:  # noqa: BLE001  (the assertion below shows it)
            late.append(exc)

    sixsense = box["sixsense"].log
    night.start()
    wait_for(lambda: len(sixsense.entries()) >= 4, timeout=30)
    proxy.drop()
    down = time.time()
    time.sleep(1.0)
    starter = threading.Thread(target=late_starter, daemon=True)
    starter.start()
    time.sleep(max(0.0, down + 10.0 - time.time()))
    proxy.set_latency(downstream=0.5)
    proxy.restore()
    up = time.time()
    time.sleep(3.0)
    proxy.set_latency()
    slow_until = time.time()
    night.join(timeout=90)
    starter.join(timeout=30)

    calls = sixsense.entries() + box["salesforce"].log.entries()
    assert not [e for e in calls if down + 0.25 < e.started < up], "a vendor call was made while Redis was away"
    assert [e for e in sixsense.entries() if e.started < down] and \
        [e for e in sixsense.entries() if up < e.started < slow_until], "no 6sense call before the cut or while slow"
    assert isinstance(late[0], dict), f"the process that started during the outage did not recover: {late[0]!r}"
    # Every call had a grant (a grant whose reply the cut lost is counted without a call).
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", prefix=prefix)
    sixsense_grants = limiter.grants(f"sixsense:{credential_tag(SANDBOX_API_TOKEN)}")
    salesforce_grants = limiter.grants(f"salesforce:{credential_tag(SANDBOX_CLIENT_ID)}")
    assert len(sixsense.entries()) <= sixsense_grants
    assert len(box["salesforce"].log.entries()) <= salesforce_grants
    assert [e.status for e in calls].count(429) == 0
    assert most_in_any_window([e.started for e in sixsense.entries()], 1.0) <= 6
    [report] = reports
    assert report is not None and report.states == NIGHT
    writes = Counter(w["id"] for w in box["salesforce"].applied_writes)
    assert len(writes) == 21 and max(writes.values()) == 1
    print(f"\noutage: {len(sixsense.entries())} 6sense calls / {sixsense_grants} grants, "
          f"{len(box['salesforce'].log.entries())} Salesforce calls / {salesforce_grants} grants, "
          f"{len([e for e in sixsense.entries() if up < e.started < slow_until])} 6sense calls while slow, "
          f"first call {min(e.started for e in calls if e.started > up) - up:.2f} s after Redis came back")
