"""Leads per hour through a night on Celery workers against the sandbox at the published limits,
on a compressed clock, as a fraction of the binding vendor limit.

The binding limit is 6sense's 100 requests per minute per token (one /v2/people/full call per
lead), i.e. 6,000 leads per hour. With --time-scale 60 a vendor minute lasts one second, in the
emulator and in the limiter alike, so the night runs in seconds. Workers: Celery processes on
Redis, the shared Redis limiter, the ledger on PostgreSQL.

    .venv/bin/python bench/night.py [--leads 1500] [--time-scale 60] [--workers 2] [--concurrency 2]

Target: >= 0.95 of the binding limit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import redis
import yaml
from sqlmodel import func, select

from connector.ledger import open_ledger
from connector.ledger.tables import Lead, LeadEvent, SyncRun
from connector.sandbox import Sandbox, deep_merge
from connector.sandbox.seed import seed_companies
from connector.settings import bundled_path, load_settings
from tasks.app import create_app

PG = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1500)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-night-"))
    db = f"connector_bench_night_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    ledger_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    broker = "redis://127.0.0.1:6379/15"
    redis.Redis.from_url(broker).flushdb()
    box = Sandbox(state_dir=None, vendors=["salesforce", "sixsense"], time_scale=args.time_scale, tls_dir=tmp / "tls",
                  extra={"sixsense": {"enrichment_credits": 10**7}, "salesforce": {"daily_api_limit": 10**7}}).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        domains = [d for d, c in seed_companies().items() if not c.blank_answer]
        for i in range(args.leads):
            box["salesforce"].add_lead(FirstName=f"F{i}", LastName=f"L{i}", Company="Bench",
                                       Email=f"n{i}@{domains[i % len(domains)]}", Country="US")
        document = deep_merge(yaml.safe_load(bundled_path("settings.example.yaml").read_text()), {
            "data_dir": str(tmp / "data"), "sandbox": {"enabled": False}, "ledger": {"url": ledger_url},
            "time_scale": args.time_scale, "workers": 8,
            "limiter": {"url": "redis://127.0.0.1:6379/0", "prefix": f"bench:{uuid.uuid4().hex[:8]}"},
            "celery": {"broker_url": broker},
            # Salesforce publishes no per-second limit; 6sense binds.
            "sources": {"salesforce": {"rate_limit": {"requests": 100000, "per_seconds": 1}}},
        })
        document = deep_merge(document, box.overrides())
        config = tmp / "settings.yaml"
        config.write_text(yaml.safe_dump(document))
        open_ledger(ledger_url, auto_migrate=True).engine.dispose()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
        env["CONNECTOR_CONFIG"] = str(config)
        for n in range(args.workers):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "night", "-c", str(args.concurrency),
                 "-n", f"bench{n}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "error"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        time.sleep(3)  # workers up
        app = create_app(load_settings(config))
        now = datetime.now(timezone.utc)
        started = time.time()
        app.send_task("connector.poll_source", args=["salesforce", "manual", f"manual:bench-{now.timestamp()}",
                                                     now.isoformat(), (now + timedelta(hours=2)).isoformat()],
                      queue="night")
        ledger = open_ledger(ledger_url, auto_migrate=False)
        while True:
            with ledger.session() as s:
                total = s.exec(select(func.count()).select_from(Lead)).one()
                finished = s.exec(select(func.count()).select_from(Lead).where(
                    Lead.state.in_(("done", "skipped", "failed", "deferred")))).one()  # type: ignore[attr-defined]
            if total >= args.leads and finished == total:
                break
            if time.time() - started > 600:
                raise SystemExit(f"the night did not finish: {finished}/{total}")
            time.sleep(0.2)
        elapsed = time.time() - started
        calls = box["sixsense"].log.entries(path_prefix="/v2/people/full")
        stamps = sorted(e.at for e in calls)
        refused = sum(1 for e in calls if e.status == 429)
        vendor_hours = elapsed * args.time_scale / 3600
        leads_per_hour = args.leads / vendor_hours
        binding = 6000.0
        busy_hours = (stamps[-1] - stamps[0]) * args.time_scale / 3600 + 100 / binding  # first window is free
        print(f"leads={args.leads} workers={args.workers}x{args.concurrency} time_scale={args.time_scale:g}")
        print(f"night: {elapsed:.1f} s wall = {vendor_hours * 60:.1f} vendor minutes, 6sense calls {len(calls)}, 429s {refused}")
        print(f"leads per vendor hour (whole night, from kick-off): {leads_per_hour:.0f} "
              f"= {leads_per_hour / binding:.3f} of the binding limit (6sense 6,000/h)")
        if os.environ.get("BENCH_DEBUG"):
            buckets: dict[int, int] = {}
            for t in stamps:
                buckets[int(t - stamps[0])] = buckets.get(int(t - stamps[0]), 0) + 1
            print("calls per second:", [buckets.get(i, 0) for i in range(int(stamps[-1] - stamps[0]) + 1)])
            print(f"first call {stamps[0] - started:.1f} s after the kick-off, last {stamps[-1] - started:.1f} s")
            with ledger.session() as s:
                run_started = s.exec(select(func.min(SyncRun.started_at))).one()
                first_claim = s.exec(select(func.min(LeadEvent.at)).where(LeadEvent.state == "enriching")).one()
            print(f"run row {run_started.timestamp() - started:.2f} s, first claim {first_claim.timestamp() - started:.2f} s "
                  "after the kick-off")
        print(f"6sense calls per vendor hour while calling: {len(calls) / busy_hours:.0f} "
              f"= {len(calls) / busy_hours / binding:.3f} of the limit (target >= 0.95)")
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        box.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
