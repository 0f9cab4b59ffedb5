"""The shared Redis limiter: grants per second as a fraction of the allowed rate with 1, 4 and 8
worker processes (and window violations), and acquire latency against a bare Redis round trip.

    .venv/bin/python bench/limiter.py [--rate 200] [--seconds 5] [--redis redis://127.0.0.1:6379/0]

Targets: >= 0.97 of the allowed rate, 0 violations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid

import redis

from connector.limiter import LimitSpec
from connector.limiter.redis import RedisLimiter

WINDOW = 1.0


def worker(args: dict) -> None:
    """One process: 4 threads acquiring as fast as the limiter grants, recording grant times."""
    import threading

    limiter = RedisLimiter(args["redis"], prefix=args["prefix"])
    spec = LimitSpec(key="bench:key", requests=args["rate"], per_seconds=WINDOW)
    stamps: list[float] = []
    lock = threading.Lock()
    stop = time.time() + args["seconds"]

    def run() -> None:
        while True:
            try:
                permit = limiter.acquire(spec, deadline=stop)
            except Exception:  # noqa: BLE001  (the deadline)
                return
            permit.release()
            with lock:
                stamps.append(permit.granted_at)  # the server's clock: what the limit is about

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(stamps))


def throughput(url: str, processes: int, rate: int, seconds: float) -> tuple[float, int]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    args = {"redis": url, "prefix": prefix, "rate": rate, "seconds": seconds}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(args)], stdout=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    stamps = sorted(t for p in procs for t in json.loads(p.communicate()[0]))
    # Violations: any 1 s window of grants (on the Redis server's clock) above the rate.
    violations, j = 0, 0
    for i, start in enumerate(stamps):
        while j < len(stamps) and stamps[j] - start < WINDOW:
            j += 1
        if j - i > rate:
            violations += 1
    span = stamps[-1] - stamps[0]
    allowed = rate * span / WINDOW
    # A sliding window admits `rate` calls at once when it opens; count the steady part only.
    return (len(stamps) - rate) / allowed, violations


def latency(url: str, samples: int = 2000) -> tuple[list[float], list[float]]:
    client = redis.Redis.from_url(url)
    limiter = RedisLimiter(url, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    spec = LimitSpec(key="bench:latency", requests=10**9, per_seconds=1.0)
    acquire, ping = [], []
    for _ in range(samples):
        t = time.perf_counter()
        limiter.acquire(spec).release()
        acquire.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.ping()
        ping.append(time.perf_counter() - t)
    return acquire, ping


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    print(f"allowed rate {args.rate}/s, {args.seconds:.0f} s per measurement, 4 threads per process")
    for processes in (1, 4, 8):
        fraction, violations = throughput(args.redis, processes, args.rate, args.seconds)
        print(f"{processes} process(es): granted {fraction:.3f} of the allowed rate, {violations} window violations "
              f"(target >= 0.97, 0)")
    acquire, ping = latency(args.redis)
    print(f"acquire (grant + release) p50 {pct(acquire, 50):.3f} ms, p99 {pct(acquire, 99):.3f} ms; "
          f"bare Redis PING p50 {pct(ping, 50):.3f} ms, p99 {pct(ping, 99):.3f} ms; "
          f"ratio p50 {pct(acquire, 50) / pct(ping, 50):.1f}x")


if __name__ == "__main__":
    main()
