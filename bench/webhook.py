"""Latency of valid Marketo webhook calls at 20 concurrent senders, against a bare endpoint.

Three processes, as in a deployment: the vendors (the Marketo and 6sense emulators), the
senders (threads, one keep-alive httpx client each, timing every call), and the one under test,
which serves two apps the same way (uvicorn on 127.0.0.1, EmulatorServer) one after the other,
each getting the same number of calls from the same senders:

* bare: a FastAPI endpoint that only reads and parses the body (the floor of the stack);
* webhook: connector.webhook in the configured mode, with the real pipeline behind it (Marketo
  and 6sense emulators, 6sense answering after --provider-latency seconds, the ledger, the
  limiter with vendor limits off).

Every call is a new lead at a seeded company (so every call is a paid 6sense lookup, no cache).
A short warm-up is not counted. Reports p50/p95/p99 per side and the target check.

    .venv/bin/python bench/webhook.py [--calls 400] [--senders 20] [--provider-latency 0.2]
                                      [--mode respond|writeback] [--ledger sqlite|postgres]

Target: webhook p95 < 1 s + provider latency.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connector.sandbox import Sandbox, deep_merge
from connector.sandbox.seed import seed_companies
from connector.sandbox.server import EmulatorServer
from connector.services import open_services
from connector.settings import bundled_path, load_settings
from connector.webhook import LEAD_PATH, create_app

SECRET = "bench-secret-0123456789abcdef"
UNLIMITED = {"requests": 1_000_000, "per_seconds": 1}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post(LEAD_PATH)
    async def parse_only(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        return JSONResponse({"@status": "done", "@lead": str(body["id"])})

    return app


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def drive(base_url: str, payloads: list[dict[str, Any]], senders: int) -> tuple[list[float], Counter[int]]:
    """Send every payload once from `senders` threads; latency of each call in seconds."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    queue = list(reversed(payloads))
    start = threading.Barrier(senders)

    def sender() -> None:
        with httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": f"Token {SECRET}"}) as client:
            start.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    payload = queue.pop()
                began = time.perf_counter()
                response = client.post(LEAD_PATH, json=payload)
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] += 1

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses


def ledger_url(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'ledger.db'}", lambda: None
    name = f"connector_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def vendors(conn: Connection, provider_latency: float, tls_dir: str) -> None:
    """The vendors' process: serves the emulators and answers the bench's requests."""
    box = Sandbox(state_dir=None, vendors=["marketo", "sixsense"], tls_dir=Path(tls_dir), extra={
        "sixsense": {"latency_seconds": provider_latency, "rate_limit": [1_000_000, 1],
                     "enrichment_credits": 10_000_000},
        "marketo": {"rate": [1_000_000, 1], "concurrency": 1000, "daily_quota": 10_000_000},
    }).start()
    conn.send(box.overrides())
    domains = [d for d, c in seed_companies().items() if not c.blank_answer and d.endswith((".com", ".example"))]
    while True:
        command, *args = conn.recv()
        if command == "leads":  # new Marketo leads, each at a seeded company: a paid 6sense lookup each
            n, tag = args
            out = []
            for i in range(n):
                email = f"{tag}{i}@{domains[i % len(domains)]}"
                lead_id = box["marketo"].add_lead(email=email, firstName=f"F{i}", lastName=f"L{i}", company="Bench Co")
                out.append({"id": lead_id, "email": email, "firstName": f"F{i}", "lastName": f"L{i}",
                            "company": "Bench Co", "country": "US"})
            conn.send(out)
        elif command == "counts":
            conn.send({"enrichments": len(box["sixsense"].log.entries(path_prefix="/v2/people/full")),
                       "marketo_writes": len(box["marketo"].applied_writes)})
        else:
            box.stop()
            conn.send("stopped")
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--provider-latency", type=float, default=0.2)
    parser.add_argument("--mode", choices=["respond", "writeback"], default="respond")
    parser.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    ours, theirs = spawn.Pipe()
    vendor_process = spawn.Process(target=vendors, args=(theirs, args.provider_latency, str(tmp / "tls")), daemon=True)
    vendor_process.start()
    overrides = ours.recv()
    url, drop = ledger_url(args.ledger, tmp)
    senders = args.senders
    settings = load_settings(bundled_path("settings.example.yaml"), **deep_merge(deep_merge(
        {"data_dir": str(tmp / "data"), "ledger": {"url": url}, "sandbox": {"enabled": False}, "workers": 8},
        overrides), {
        "webhook": {"secrets": [SECRET], "mode": args.mode},
        "providers": {"sixsense": {"rate_limit": UNLIMITED, "max_in_flight": 1000}},
        "sources": {"marketo": {"rate_limit": UNLIMITED, "max_in_flight": 1000, "daily_quota": 10_000_000}},
    }))
    services = open_services(settings, auto_migrate=True)
    webhook = create_app(settings, services)
    servers = {"bare": EmulatorServer(bare_app()).start(), "webhook": EmulatorServer(webhook).start()}

    def payloads(n: int, tag: str) -> list[dict[str, Any]]:
        ours.send(("leads", n, tag))
        return ours.recv()

    results: dict[str, tuple[list[float], Counter[int]]] = {}
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as sender_process:
            for side in ("bare", "webhook"):
                base = servers[side].base_url
                sender_process.submit(drive, base, payloads(args.warmup, f"warm-{side}-"), senders).result()
                results[side] = sender_process.submit(drive, base, payloads(args.calls, f"{side}-"), senders).result()
        time.sleep(0.5)  # writeback: let the last writes land before counting
        ours.send(("counts",))
        counts = ours.recv()
    finally:
        webhook.state.webhook.close()
        for server in servers.values():
            server.stop()
        ours.send(("stop",))
        ours.recv()
        vendor_process.join(timeout=10)
        services.ledger.engine.dispose()
        drop()

    print(f"webhook bench: {args.calls} calls, {senders} concurrent senders, mode={args.mode}, "
          f"ledger={args.ledger}, 6sense latency {args.provider_latency * 1000:.0f} ms")
    print(f"{'':8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}  statuses")
    for side, (latencies, statuses) in results.items():
        ms = [v * 1000 for v in latencies]
        print(f"{side:8} {percentile(ms, 50):8.1f} {percentile(ms, 95):8.1f} {percentile(ms, 99):8.1f} "
              f"{max(ms):8.1f} {statistics.fmean(ms):8.1f}  {dict(sorted(statuses.items()))}")
    print(f"6sense enrichment calls: {counts['enrichments']} (warm-up included), "
          f"Marketo writes: {counts['marketo_writes']}")
    p95 = percentile(results["webhook"][0], 95)
    target = 1.0 + args.provider_latency
    verdict = "PASS" if p95 < target and set(results["webhook"][1]) == {200} else "FAIL"
    print(f"target: webhook p95 {p95 * 1000:.0f} ms < 1 s + provider latency = {target * 1000:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
