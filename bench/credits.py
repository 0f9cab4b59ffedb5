"""Credits spent per unique paid lookup over a night and a re-run of the same leads (target 1.00).

A fresh sandbox (Salesforce, 6sense, Slintel, the contacts API) holds the seeded new leads plus
N more spread over the seeded companies (many leads per company domain, some at companies only
Slintel knows). The night runs the shipped Salesforce mapping with its per-field precedence lines
switched on (6sense people/full first, then the company lookups by domain: the contacts API and
Slintel), so each lead needs several providers. The cursor is then rewound and the same
leads run again inside the freshness period.

A unique paid lookup is one matched (endpoint, lookup key) in the ledger whose provider has a
credit pool: one record the vendor may charge for. Credits are read from the emulators' own
counters (what the vendors would bill), and from the ledger.

    .venv/bin/python bench/credits.py [--leads 300] [--workers 8] [--ledger sqlite|postgres]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlmodel import select

from connector.ledger import open_ledger
from connector.ledger.tables import Enrichment
from connector.limiter import MemoryLimiter
from connector.pipeline import current_window, run_source
from connector.sandbox import Sandbox, deep_merge
from connector.sandbox.seed import seed_companies
from connector.settings import bundled_path, load_settings

UNLIMITED = {"requests": 1_000_000, "per_seconds": 1}
ONLY_SLINTEL = ["slintel.com", "amazon.com"]  # companies 6sense and the contacts API do not know


def precedence_mapping(directory: Path) -> Path:
    """The shipped mapping with its commented per-field precedence lines switched on."""
    text = bundled_path("mappings", "salesforce.lead.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        found = re.match(r"#\s+(\w+):\s+(\{from: \[.*)$", line)
        if found:
            field, rule = found.groups()
            text = re.sub(rf"^  {field}:\s+\{{from: [^\n]*$", f"  {field}: {rule}", text, count=1, flags=re.MULTILINE)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "salesforce.lead.yaml").write_text(text, encoding="utf-8")
    return directory


def start_sandbox(leads: int, tmp: Path) -> Sandbox:
    box = Sandbox(state_dir=None, vendors=["salesforce", "sixsense", "slintel", "contacts_api"], tls_dir=tmp / "tls",
                  extra={"sixsense": {"rate_limit": [1_000_000, 1], "enrichment_credits": 1_000_000},
                         "slintel": {"burst": [1_000_000, 1], "max_in_flight": 1000, "credits": 1_000_000},
                         "contacts_api": {"rate_limit": [1_000_000, 1], "credits": 1_000_000},
                         "salesforce": {"daily_api_limit": 10_000_000}}).start()
    domains = [d for d, c in seed_companies().items() if not c.blank_answer] + ONLY_SLINTEL
    crm = box["salesforce"]
    for i in range(leads):
        crm.add_lead(FirstName=f"First{i}", LastName=f"Last{i}", Company="Bench Co",
                     Email=f"person{i}@{domains[i % len(domains)]}", Country="US")
    return box


def vendor_credits(box: Sandbox) -> dict[str, int]:
    return {
        "sixsense": sum(box["sixsense"].credits_spent.values()),
        "slintel": box["slintel"].credits_spent,
        "contacts_api": box["contacts_api"].credits_spent,
    }


def unique_paid_lookups(ledger: Any) -> Counter[str]:
    with ledger.session() as s:
        rows = s.exec(select(Enrichment).where(Enrichment.status == "matched")).all()
    return Counter(r.provider for r in rows if r.credit_pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-credits-") as tmpdir:
        tmp = Path(tmpdir)
        pg_name = None
        if args.ledger == "postgres":
            pg_name = f"bench_credits_{int(time.time())}"
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_name}"')
            ledger_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
        else:
            ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
        box = start_sandbox(args.leads, tmp)
        try:
            overrides = {
                "data_dir": str(tmp / "data"), "ledger": {"url": ledger_url}, "sandbox": {"enabled": False},
                "workers": args.workers, "mappings_dir": str(precedence_mapping(tmp / "mappings")),
                "providers": {"sixsense": {"rate_limit": UNLIMITED}, "slintel": {"rate_limit": UNLIMITED,
                              "max_in_flight": 32}, "contacts_api": {"rate_limit": UNLIMITED}},
            }
            settings = load_settings(bundled_path("settings.example.yaml"), **deep_merge(overrides, box.overrides()))
            ledger = open_ledger(ledger_url, auto_migrate=True)
            limiter = MemoryLimiter()

            started = time.monotonic()
            night = run_source(settings, ledger, limiter, "salesforce", window=current_window(settings))
            after_night = vendor_credits(box)
            assert night is not None
            ledger.rewind_cursor(source="salesforce", watermark=current_window(settings).start - timedelta(hours=24))
            rerun = run_source(settings, ledger, limiter, "salesforce", window=current_window(settings))
            seconds = time.monotonic() - started
            after_rerun = vendor_credits(box)
            unique = unique_paid_lookups(ledger)
            assert night is not None and rerun is not None
        finally:
            box.stop()
            if pg_name:
                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')

    leads = night.polled
    vendor_of = {"sixsense": "sixsense", "sixsense_company": "sixsense", "slintel": "slintel",
                 "slintel_company": "slintel", "contacts_company": "contacts_api"}
    print(f"bench/credits.py: {leads} leads ({args.leads} generated), ledger {args.ledger}, "
          f"workers {args.workers}, {seconds:.1f} s for night + re-run")
    print(f"{'provider':<18}{'calls night':>12}{'calls re-run':>13}{'unique paid':>12}{'ledger credits':>15}")
    for name in sorted(night.calls):
        if name == "salesforce":
            continue
        print(f"{name:<18}{night.calls.get(name, 0):>12}{rerun.calls.get(name, 0):>13}{unique.get(name, 0):>12}"
              f"{night.credits.get(name, 0) + rerun.credits.get(name, 0):>15}")
    print(f"{'vendor':<18}{'credits night':>14}{'credits re-run':>15}{'unique paid':>12}")
    for vendor in ("sixsense", "slintel", "contacts_api"):
        paid = sum(n for p, n in unique.items() if vendor_of.get(p) == vendor)
        print(f"{vendor:<18}{after_night[vendor]:>14}{after_rerun[vendor] - after_night[vendor]:>15}{paid:>12}")
    total_unique = sum(unique.values())
    total_spent = sum(after_rerun.values())
    ledger_spent = sum(night.credits.values()) + sum(rerun.credits.values())
    ratio = total_spent / total_unique if total_unique else float("nan")
    print(f"credits spent (vendors) {total_spent}, counted by the ledger {ledger_spent}, "
          f"unique paid lookups {total_unique}")
    print(f"credits per unique lookup: {ratio:.2f} (target 1.00)")


if __name__ == "__main__":
    main()
