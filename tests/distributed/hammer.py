"""A worker process for the limiter tests: threads that call one vendor through its real provider
(the provider's LimitSpec, MeteredHttp, classification and retries) and the shared Redis limiter,
with unlimited demand: each thread asks again as soon as its previous call is over.

Usage: `python hammer.py '{"config": PATH, "provider": "sixsense" | "slintel", "threads": N,
"tag": "p0", "announce": false}'`. The process loads the settings, prints `{"ready": true}` and
waits for one JSON line on stdin, `{"seconds": S, "clock_offset_seconds": X}` (sent at "go", so a
test can align the limiter's clock with an emulator's at the moment the run starts). It then calls
for S seconds and prints one JSON line: calls answered, no-matches, quota refusals and any other
error by type. Emails carry the tag (`<tag>-<thread>-<n>@globex.example`), so the Slintel log (it
keeps the query string) tells the processes apart. With "announce", the process also prints every
permit as it is granted and released (see AnnouncingLimiter).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Self

from connector.errors import NoMatch, QuotaExhausted, WindowClosed
from connector.limiter import LimitSpec, Permit
from connector.limiter.redis import RedisLimiter
from connector.models import LeadIdentity
from connector.providers.sixsense import create_sixsense_provider
from connector.providers.slintel import create_slintel_provider
from connector.settings import load_settings
from connector.sources.base import VendorContext

FACTORIES = {"sixsense": create_sixsense_provider, "slintel": create_slintel_provider}


class AnnouncingLimiter(RedisLimiter):
    """Prints every permit it grants and releases, so a test knows which ones the process holds
    when it is killed: `{"granted": member, "at": epoch}`, `{"released": member}` (the member is
    the permit's entry in the Redis window and lease sets)."""

    _out = threading.Lock()

    def say(self, line: dict[str, object]) -> None:
        with self._out:  # one whole line at a time, whatever the threads do
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    def acquire(self, spec: LimitSpec, *, deadline: float | None = None, realtime: bool = False) -> Permit:
        permit = super().acquire(spec, deadline=deadline, realtime=realtime)
        self.say({"granted": permit.member, "at": time.time()})  # type: ignore[attr-defined]
        return _Announced(permit, self)


class _Announced:
    def __init__(self, permit: Permit, limiter: AnnouncingLimiter) -> None:
        self.permit, self.limiter = permit, limiter

    def release(self) -> None:
        self.permit.release()
        self.limiter.say({"released": self.permit.member})  # type: ignore[attr-defined]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def main() -> None:
    args = json.loads(sys.argv[1])
    settings = load_settings(Path(args["config"]))
    print(json.dumps({"ready": True}), flush=True)
    go = json.loads(sys.stdin.readline())
    lock = threading.Lock()
    limiter_class = AnnouncingLimiter if args.get("announce") else RedisLimiter
    limiter = limiter_class(settings.limiter.url, prefix=settings.limiter.prefix,
                            lease_seconds=settings.limiter.lease_seconds,
                            clock_offset_seconds=go.get("clock_offset_seconds", 0.0),
                            unreachable_wait_seconds=settings.limiter.unreachable_wait_seconds)
    provider = FACTORIES[args["provider"]](VendorContext(settings, limiter))
    stop_at = time.time() + go["seconds"]
    counts: Counter[str] = Counter()

    def run(thread: int) -> None:
        n = 0
        while time.time() < stop_at:
            identity = LeadIdentity(email=f"{args['tag']}-{thread}-{n}@globex.example")
            n += 1
            try:
                provider.fetch(identity, deadline=stop_at)
                outcome = "answered"
            except NoMatch:
                outcome = "no_match"
            except WindowClosed:
                return
            except QuotaExhausted as exc:
                outcome = "quota"
                # Demand stays unlimited: ask again as soon as the quota may have reset.
                time.sleep(max(0.005, min((exc.reset_at or 0) - time.time(), stop_at - time.time(), 0.2)))
            except Exception as exc:  # noqa: BLE001  (reported to the test, which fails on it)
                outcome = type(exc).__name__
            with lock:
                counts[outcome] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(dict(counts)), flush=True)


if __name__ == "__main__":
    main()
