"""Leads per second through a whole night, vendor limits off, against a raw-httpx baseline.

Both sides run against fresh sandbox emulators holding the same N new leads and make the same
vendor calls with the same concurrency and connection pooling: one token, the SOQL poll with its
pages, one 6sense /v2/people/full call per lead, and composite/sobjects writes of 200 records.
The baseline has no ledger, no mapping, no diff and no limiter; the connector has all of them.
Rounds alternate baseline/connector; medians are reported with their ratio.

    .venv/bin/python bench/pipeline.py [--leads 2000] [--rounds 3] [--workers 8] [--ledger sqlite|postgres]

Target: connector >= 0.5 x baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg

from connector.ledger import open_ledger
from connector.limiter import MemoryLimiter
from connector.pipeline import current_window, run_source
from connector.sandbox import Sandbox, deep_merge
from connector.sandbox.salesforce import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from connector.sandbox.seed import seed_companies
from connector.settings import bundled_path, load_settings

UNLIMITED = {"requests": 1_000_000, "per_seconds": 1}
FIELDS = ["Id", "CreatedDate", "Email", "Country", "Company", "FirstName", "LastName", "Title", "Website",
          "LeadSource", "Industry", "NumberOfEmployees", "AnnualRevenue"]


def start_sandbox(leads: int, tmp: Path) -> Sandbox:
    box = Sandbox(state_dir=None, vendors=["salesforce", "sixsense"], tls_dir=tmp / "tls",
                  extra={"sixsense": {"rate_limit": [1_000_000, 1], "enrichment_credits": 10_000_000},
                         "salesforce": {"daily_api_limit": 10_000_000}}).start()
    domains = [d for d, c in seed_companies().items() if not c.blank_answer]
    crm = box["salesforce"]
    for i in range(leads):
        crm.add_lead(FirstName=f"First{i}", LastName=f"Last{i}", Company="Bench Co",
                     Email=f"person{i}@{domains[i % len(domains)]}", Country="US")
    return box


def baseline(box: Sandbox, workers: int) -> int:
    """The same vendor calls, written by hand with httpx: no ledger, no mapping, no limiter."""
    ca = str(box.tls.ca_bundle) if box.tls else True
    sf_base = box.servers["salesforce"].base_url
    six_base = box.servers["sixsense"].base_url
    token_from = box["sixsense"].settings_overrides(six_base, None)["providers"]["sixsense"]["api_token"]
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    with httpx.Client(verify=ca, limits=limits) as sf, httpx.Client(base_url=six_base, limits=limits,
                                                                      headers={"Authorization": f"Token {token_from}"}) as six:
        token = sf.post(f"{sf_base}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
        }).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Sforce-Query-Options": "batchSize=2000"}
        soql = f"SELECT {', '.join(FIELDS)} FROM Lead WHERE CreatedDate >= 2000-01-01T00:00:00Z ORDER BY CreatedDate, Id"
        page = sf.get(f"{sf_base}/services/data/v59.0/query", params={"q": soql}, headers=headers).json()
        records = list(page["records"])
        while not page["done"]:
            page = sf.get(sf_base + page["nextRecordsUrl"], headers=headers).json()
            records.extend(page["records"])
        records = [r for r in records if r.get("Email") and "@" in r["Email"] and r["Company"] == "Bench Co"]

        def enrich(record: dict[str, Any]) -> dict[str, Any] | None:
            answer = six.post("/v2/people/full", data={"email": record["Email"], "country": record["Country"] or "US"})
            if answer.status_code != 200:
                return None
            company = answer.json()["company"]
            return {"attributes": {"type": "Lead"}, "id": record["Id"], "Industry": company["industry"],
                    "NumberOfEmployees": int(company["employeeCount"]),
                    "SixSense_Company_Name__c": company["name"][:80]}

        with ThreadPoolExecutor(max_workers=workers) as pool:
            updates = [u for u in pool.map(enrich, records) if u]
        for start in range(0, len(updates), 200):
            sf.patch(f"{sf_base}/services/data/v59.0/composite/sobjects",
                     json={"allOrNone": False, "records": updates[start : start + 200]}, headers=headers).raise_for_status()
        return len(records)


def connector_night(box: Sandbox, workers: int, ledger_url: str, tmp: Path) -> int:
    settings = load_settings(bundled_path("settings.example.yaml"), **deep_merge(box.overrides(), {
        "data_dir": str(tmp / "data"), "sandbox": {"enabled": False}, "ledger": {"url": ledger_url},
        "workers": workers,
        "sources": {"salesforce": {"rate_limit": UNLIMITED, "daily_reserve_fraction": 0}},
        "providers": {"sixsense": {"rate_limit": UNLIMITED, "max_in_flight": workers}},
    }))
    ledger = open_ledger(ledger_url, auto_migrate=True)
    report = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings))
    assert report is not None
    ledger.engine.dispose()
    return report.polled


def fresh_ledger(kind: str, tmp: Path, round_no: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'ledger{round_no}.db'}"
    name = f"connector_bench_{round_no}_{int(time.time())}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    base_rates, conn_rates = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for round_no in range(args.rounds):
            box = start_sandbox(args.leads, tmp / f"b{round_no}")
            try:
                started = time.perf_counter()
                n = baseline(box, args.workers)
                base_rates.append(n / (time.perf_counter() - started))
            finally:
                box.stop()
            box = start_sandbox(args.leads, tmp / f"c{round_no}")
            try:
                url = fresh_ledger(args.ledger, tmp, round_no)
                started = time.perf_counter()
                n = connector_night(box, args.workers, url, tmp / f"c{round_no}")
                conn_rates.append(n / (time.perf_counter() - started))
            finally:
                box.stop()
            print(f"round {round_no + 1}: baseline {base_rates[-1]:.1f} leads/s, connector {conn_rates[-1]:.1f} leads/s",
                  flush=True)
    base, conn = statistics.median(base_rates), statistics.median(conn_rates)
    print(f"leads={args.leads} workers={args.workers} ledger={args.ledger}")
    print(f"baseline (raw httpx): {base:.1f} leads/s (median of {args.rounds})")
    print(f"connector night:      {conn:.1f} leads/s (median of {args.rounds})")
    print(f"ratio connector/baseline: {conn / base:.2f} (target >= 0.50)")


if __name__ == "__main__":
    main()
