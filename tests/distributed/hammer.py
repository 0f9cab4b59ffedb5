"""A worker process for limiter tests: threads that acquire the shared limiter and call the
6sense emulator, until a deadline. Prints one JSON line with what it did."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

from connector.limiter import LimitSpec
from connector.limiter.redis import RedisLimiter


def main() -> None:
    args = json.loads(sys.argv[1])
    limiter = RedisLimiter(args["redis"], prefix=args["prefix"], lease_seconds=args.get("lease", 10))
    spec = LimitSpec(key=args["key"], requests=args["requests"], per_seconds=args["per_seconds"],
                     max_in_flight=args.get("max_in_flight"))
    stop_at = time.time() + args["seconds"]
    counts = {"calls": 0, "429": 0}
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(base_url=args["url"], headers={"Authorization": f"Token {args['token']}"}) as client:
            n = 0
            while time.time() < stop_at:
                try:
                    permit = limiter.acquire(spec, deadline=stop_at)
                except Exception:  # noqa: BLE001  (the deadline came first)
                    return
                with permit:
                    status = client.post("/v2/people/full", data={"email": f"p{n}@globex.example"}).status_code
                n += 1
                with lock:
                    counts["calls"] += 1
                    counts["429"] += status == 429
                if args.get("hold_forever"):
                    print(json.dumps({"holding": True}), flush=True)
                    time.sleep(3600)

    threads = [threading.Thread(target=run) for _ in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
