"""The shared Redis limiter under several real processes, against the 6sense emulator's own log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import redis

from connector.errors import QuotaExhausted
from connector.limiter import LimitSpec
from connector.limiter.redis import RedisLimiter
from connector.sandbox.server import Fault
from connector.sandbox.sixsense import SANDBOX_API_TOKEN

pytestmark = pytest.mark.redis
REDIS = "redis://127.0.0.1:6379/0"
HAMMER = Path(__file__).with_name("hammer.py")


def hammer(box, *, processes: int, threads: int, seconds: float, requests: int, per_seconds: float,
           prefix: str, key: str = "sixsense:shared", **extra) -> list[subprocess.Popen[str]]:
    args = {"redis": REDIS, "prefix": prefix, "key": key, "requests": requests, "per_seconds": per_seconds,
            "url": box.servers["sixsense"].base_url, "token": SANDBOX_API_TOKEN, "threads": threads,
            "seconds": seconds, **extra}
    return [subprocess.Popen([sys.executable, str(HAMMER), json.dumps(args)], stdout=subprocess.PIPE, text=True)
            for _ in range(processes)]


def results(procs: list[subprocess.Popen[str]]) -> list[dict]:
    return [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]


def test_four_processes_share_one_token_window_without_a_429(make_sandbox):
    box = make_sandbox(vendors=["sixsense"], extra={"sixsense": {"rate_limit": [10, 1], "enrichment_credits": 10**6}})
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    seconds = 5.0
    procs = hammer(box, processes=4, threads=4, seconds=seconds, requests=10, per_seconds=1.0, prefix=prefix)
    done = results(procs)
    entries = box["sixsense"].log.entries(path_prefix="/v2/people/full")
    assert sum(r["429"] for r in done) == 0
    assert [e.status for e in entries].count(429) == 0
    stamps = sorted(e.at for e in entries)
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t - start < 1.0) <= 10, "a 1 s window held more than 10 calls"
    # Throughput: the calls fill the allowed rate over the busy span.
    span = stamps[-1] - stamps[0]
    assert len(stamps) >= 0.95 * 10 * span, f"{len(stamps)} calls in {span:.2f} s at 10/s allowed"
    # Every request the vendor saw passed the limiter: its grants equal the vendor's count.
    limiter = RedisLimiter(REDIS, prefix=prefix)
    assert limiter.grants("sixsense:shared") == len(entries) == sum(r["calls"] for r in done)


def test_a_429_with_retry_after_pauses_every_worker(make_sandbox, make_settings, tmp_path):
    from connector.models import LeadIdentity
    from connector.providers.sixsense import SixSensePeopleFull
    from connector.sources.base import VendorContext

    box = make_sandbox(vendors=["sixsense"], extra={"sixsense": {"enrichment_credits": 10**6}})
    box["sixsense"].faults.add(Fault(path_prefix="/v2/people/full", status=429, headers={"Retry-After": "2"},
                                     body={"status": "error", "message": "Too Many Requests"}))
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    settings = make_settings(box, f"sqlite:///{tmp_path / 'l.db'}")
    providers = [SixSensePeopleFull(settings.providers.sixsense,
                                    VendorContext(settings, RedisLimiter(REDIS, prefix=prefix))) for _ in range(3)]

    def work(provider: SixSensePeopleFull, n: int) -> None:
        for i in range(4):
            provider.fetch(LeadIdentity(email=f"w{n}-{i}@globex.example"), deadline=time.time() + 30)

    threads = [threading.Thread(target=work, args=(p, n)) for n, p in enumerate(providers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = box["sixsense"].log.entries(path_prefix="/v2/people/full")
    t429 = next(e.at for e in entries if e.status == 429)
    assert not [e for e in entries if t429 + 0.1 < e.at < t429 + 1.95], "a worker called during the pause"
    assert len([e for e in entries if e.status == 200]) == 12


def test_a_lease_held_by_a_killed_worker_is_reclaimed(make_sandbox):
    box = make_sandbox(vendors=["sixsense"])
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    [holder] = hammer(box, processes=1, threads=1, seconds=60, requests=100, per_seconds=1.0, prefix=prefix,
                      max_in_flight=1, lease=2, hold_forever=True)
    assert json.loads(holder.stdout.readline()) == {"holding": True}
    limiter = RedisLimiter(REDIS, prefix=prefix, lease_seconds=2)
    spec = LimitSpec(key="sixsense:shared", requests=100, per_seconds=1.0, max_in_flight=1)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed = time.time()
    with limiter.acquire(spec, deadline=killed + 10):
        reclaimed_after = time.time() - killed
    assert reclaimed_after <= 2 + 1.0


def test_the_daily_quota_resets_exactly_once_across_midnight_gmt():
    seconds, micros = redis.Redis.from_url(REDIS).time()
    server_now = seconds + micros / 1e6
    midnight = datetime.fromtimestamp(server_now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    target = (midnight + timedelta(days=1)).timestamp() - 1.5  # 23:59:58.5 GMT on the limiter's clock
    limiter = RedisLimiter(REDIS, prefix=f"test:{uuid.uuid4().hex[:8]}", clock_offset_seconds=target - server_now)
    spec = LimitSpec(key="slintel:k", requests=1000, per_seconds=1.0, daily_quota=5, quota_timezone="UTC")
    granted, refused = 0, 0
    end = time.time() + 4.0  # 23:59:58.5 -> 00:00:02.5
    while time.time() < end:
        try:
            limiter.acquire(spec).release()
            granted += 1
        except QuotaExhausted:
            refused += 1
            time.sleep(0.05)
    assert granted == 10, "one reset at midnight GMT: 5 calls on each side, no more"
    assert refused > 0


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
    raise RuntimeError("test redis did not start")


def test_redis_down_means_no_call_without_a_grant_and_recovery_without_a_step(make_sandbox, tmp_path):
    box = make_sandbox(vendors=["sixsense"], extra={"sixsense": {"enrichment_credits": 10**6, "rate_limit": [20, 1]}})
    port = _free_port()
    server = _start_redis(port, tmp_path)
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", prefix="t", unreachable_wait_seconds=30,
                           socket_timeout=0.5)
    spec = LimitSpec(key="sixsense:outage", requests=20, per_seconds=1.0, max_in_flight=4)
    stop = time.time() + 8
    calls: list[float] = []

    def work() -> None:
        with httpx.Client(base_url=box.servers["sixsense"].base_url,
                          headers={"Authorization": f"Token {SANDBOX_API_TOKEN}"}) as client:
            n = 0
            while time.time() < stop:
                with limiter.acquire(spec, deadline=stop + 30):
                    client.post("/v2/people/full", data={"email": f"o{n}@globex.example"})
                    calls.append(time.time())
                n += 1

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(1.5)
    server.send_signal(signal.SIGKILL)
    server.wait()
    down_at = time.time()
    time.sleep(3)
    server = _start_redis(port, tmp_path)
    up_at = time.time()
    worker.join(timeout=60)
    server.terminate()
    assert not [t for t in calls if down_at + 0.6 < t < up_at], "a call was made while Redis was down"
    assert [t for t in calls if t > up_at], "the worker did not recover by itself"
    assert [t for t in calls if t < down_at]
    statuses = [e.status for e in box["sixsense"].log.entries(path_prefix="/v2/people/full")]
    assert statuses.count(429) == 0, "a vendor limit was exceeded around the outage"
