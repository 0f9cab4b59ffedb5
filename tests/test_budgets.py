"""Credit budgets and charges, from the outside: nights, workers and the CLI against the sandbox
over sockets, on SQLite and PostgreSQL.

- a record charged by one endpoint of a 6sense pool is free on the others inside 30 days, in the
  ledger as at the vendor, and charged again once the window has passed;
- per-night and per-month budgets stop the pool (its leads wait as credits_exhausted, other
  providers go on) and the admin re-sync picks the leads up later;
- workers racing for the last credits never pass the budget;
- Slintel's balance is read before the night: at zero no enrichment call is made, above zero the
  night never spends more than it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.enrichment import Enricher
from connector.errors import QuotaExhausted
from connector.ledger import open_ledger
from connector.limiter import MemoryLimiter
from connector.models import LeadIdentity, ProviderAnswer
from connector.pipeline import current_window, run_source
from connector.registry import PROVIDERS, load_all
from connector.settings import ConfigError, bundled_path, load_settings
from connector.sources.base import VendorContext
from tests.test_cli import connector

load_all()


def _budget(pool: str, **limits: int) -> dict[str, Any]:
    return {"budgets": {pool: limits}}


def test_a_record_charged_by_one_endpoint_is_free_on_the_others_for_30_days(make_sandbox, make_settings, ledger_url):
    # 30 days in 3 s: the emulator and the connector share the compressed clock.
    scale = 30 * 24 * 3600 / 3
    box = make_sandbox(vendors=["sixsense"], time_scale=scale)
    settings = make_settings(box, ledger_url, time_scale=scale)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    context = VendorContext(settings, MemoryLimiter())
    providers = {name: PROVIDERS[name](context) for name in ("sixsense", "sixsense_people", "sixsense_company_v2")}
    judy = LeadIdentity(email="Judy@6sense.com", country="US")
    try:
        enricher = Enricher(ledger=ledger, providers=providers)
        credits = []
        for name in providers:
            [answer] = enricher.answer_many(name, [judy], deadline=time.time() + 30)
            assert isinstance(answer, ProviderAnswer) and answer.matched, answer
            credits.append(answer.credits)
        # people/full paid; people enrichment and company v2 for the same email within 30 days: free
        assert credits == [1, 0, 0]
        assert box["sixsense"].credits_spent["enrichment"] == 1
        assert sum(ledger.credits_spent().values()) == 1

        time.sleep(3.2)  # the 30 days (and the answers' freshness) pass
        [again] = Enricher(ledger=ledger, providers=providers).answer_many(
            "sixsense_people", [judy], deadline=time.time() + 30)
        assert isinstance(again, ProviderAnswer) and again.matched and not again.cached
        assert again.credits == 1
        assert box["sixsense"].credits_spent["enrichment"] == 2
        assert sum(ledger.credits_spent().values()) == 2
    finally:
        for provider in providers.values():
            provider.close()


def test_workers_racing_for_the_last_credits_never_pass_the_month_budget(make_sandbox, make_settings, ledger_url):
    box = make_sandbox(vendors=["sixsense"], extra={"sixsense": {"latency_seconds": 0.05}})
    budget = 5
    settings = make_settings(box, ledger_url, providers={"sixsense": _budget("enrichment", per_month=budget)})
    emails = [f"{name}@acme-robotics.com" for name in ("eve", "bob", "carol", "dan", "erin", "frank", "grace", "heidi")]
    emails += ["judy@6sense.com", "tom@globex.example", "ann@initech.example", "sam@umbrella.example"]
    limiter = MemoryLimiter()
    barrier = threading.Barrier(len(emails))
    outcomes: list[Any] = [None] * len(emails)

    open_ledger(ledger_url, auto_migrate=True).engine.dispose()
    ledgers = [open_ledger(ledger_url) for _ in emails]

    def worker(i: int) -> None:  # a worker of its own: provider, Enricher and ledger connection
        ledger = ledgers[i]
        provider = PROVIDERS["sixsense_people"](VendorContext(settings, limiter))
        from connector.budgets import Budgets  # noqa: PLC0415

        try:
            enricher = Enricher(ledger=ledger, providers={"sixsense_people": provider},
                                budgets=Budgets(settings).periods)
            barrier.wait(timeout=30)
            [outcomes[i]] = enricher.answer_many("sixsense_people", [LeadIdentity(email=emails[i])],
                                                 deadline=time.time() + 60)
        finally:
            provider.close()
            ledger.engine.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(emails))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    paid = [o for o in outcomes if isinstance(o, ProviderAnswer) and o.credits]
    refused = [o for o in outcomes if isinstance(o, QuotaExhausted)]
    batch_share = int(budget * (1 - settings.limiter.realtime_reserve))  # the rest is the webhook's
    assert box["sixsense"].credits_spent["enrichment"] <= batch_share
    assert sum(o.credits for o in paid) == box["sixsense"].credits_spent["enrichment"]
    assert refused and all(o.reason == "credits_exhausted" and "per_month" in o.message for o in refused)
    # every lead got an answer or a refusal; none of the refused ones reached the vendor
    assert len(paid) + len(refused) + sum(1 for o in outcomes if isinstance(o, ProviderAnswer) and not o.credits) \
        == len(emails)
    assert len(box["sixsense"].log.entries(path_prefix="/v1/enrichment/people")) == len(emails) - len(refused)
    [month] = open_ledger(ledger_url).budget_use(pool="sixsense:enrichment")
    assert month.period.startswith("month:") and month.cap == batch_share
    assert month.used == box["sixsense"].credits_spent["enrichment"]  # reservations settled to the real spend


def test_a_night_budget_stops_the_pool_defers_its_leads_and_the_resync_picks_them_up(
        make_sandbox, write_config, ledger_url, tmp_path):
    box = make_sandbox(vendors=["salesforce", "sixsense", "contacts_api"])
    open_ledger(ledger_url, auto_migrate=True).engine.dispose()
    config = write_config(box, ledger_url, providers={"sixsense": _budget("enrichment", per_night=2)})

    night = connector("run", "--config", str(config), cwd=tmp_path)
    assert night.returncode == 3, night.stdout + night.stderr  # leads deferred
    assert box["sixsense"].credits_spent["enrichment"] == 2  # never past the night's budget
    ledger = open_ledger(ledger_url)
    deferred = ledger.select_leads(source="salesforce", states=("deferred",), reason="credits_exhausted")
    assert deferred and all("per_night" in lead.detail for lead in deferred)
    # the other provider went on: the contacts API filled the fields it knows for those leads
    assert box["contacts_api"].log.entries(path_prefix="/v1/companies/search")
    budgets = connector("ledger", "budgets", "--config", str(config), cwd=tmp_path)
    assert "sixsense:enrichment" in budgets.stdout and "night:" in budgets.stdout

    # Next night's budget (here: a raised one) and the admin re-sync finish the deferred leads.
    raised = write_config(box, ledger_url, providers={"sixsense": _budget("enrichment", per_night=100)})
    resync = connector("resync", "--deferred", "--reason", "credits_exhausted", "--config", str(raised), cwd=tmp_path)
    assert resync.returncode == 0, resync.stdout + resync.stderr
    assert ledger.select_leads(source="salesforce", states=("deferred",), reason="credits_exhausted") == []
    # The night wrote what the contacts API knew; the re-sync adds 6sense's fields. Nothing twice:
    # no (record, field, value) was sent again.
    sent = [(w["id"], f, repr(v)) for w in box["salesforce"].applied_writes for f, v in w["fields"].items()]
    assert len(sent) == len(set(sent))
    # the ledger counted what the vendor charged: every record once
    assert sum(ledger.credits_spent().values()) == box["sixsense"].credits_spent["enrichment"] > 2


def _slintel_first_mapping(directory: Path) -> Path:
    text = bundled_path("mappings", "salesforce.lead.yaml").read_text(encoding="utf-8")
    old = "Industry:                 {from: [sixsense.company.industry, contacts_company.company.industry, slintel_company.industry]}"
    assert old in text
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "salesforce.lead.yaml").write_text(
        text.replace(old, "Industry: {from: [slintel_company.industry, sixsense.company.industry]}"), encoding="utf-8")
    return directory


@pytest.mark.parametrize("balance", [0, 2])
def test_slintels_balance_read_before_the_night_caps_what_the_night_spends(
        balance, make_sandbox, make_settings, ledger_url, tmp_path):
    box = make_sandbox(vendors=["salesforce", "sixsense", "slintel"], extra={"slintel": {"credits": balance}})
    settings = make_settings(box, ledger_url, mappings_dir=str(_slintel_first_mapping(tmp_path / "mappings")))
    ledger = open_ledger(ledger_url, auto_migrate=True)

    report = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings))
    assert report is not None
    slintel = box["slintel"].log.entries()
    assert [e.path for e in slintel if e.path.endswith("api-credits")] == ["/v2.0/api-credits"]  # read once
    enrich = [e for e in slintel if e.path == "/v2.0/company/enrich"]
    if balance == 0:
        assert enrich == []  # nothing is started that cannot be paid for
        assert ledger.open_circuits(now=current_window(settings).start)["slintel:credits"].reason == "credits_exhausted"
    assert box["slintel"].credits_spent == balance  # the whole balance, never more
    assert all(e.status == 200 for e in enrich)  # the vendor never had to refuse us
    # Industry fell back to 6sense for the leads Slintel could not be paid for
    industries = {r["Email"]: r.get("Industry") for r in box["salesforce"].leads()}
    assert industries["judy@6sense.com"] == "Software and Technology"


def test_a_budget_for_a_pool_the_vendor_lacks_is_refused_naming_the_setting(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("providers:\n  sixsense:\n    budgets:\n      enrichmnt: {per_night: 5}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value) + (caught.value.fix or "")
    assert "providers.sixsense.budgets.enrichmnt" in message
    assert "enrichment, company_identification" in message


def test_migration_0002_carries_the_charges_already_made_into_the_pool_ledger(ledger_url):
    from alembic import command  # noqa: PLC0415
    from sqlalchemy import text  # noqa: PLC0415

    from connector.ledger import alembic_config, make_engine  # noqa: PLC0415

    engine = make_engine(ledger_url)
    config = alembic_config(ledger_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO enrichment (provider, endpoint, lookup_key, credit_pool, status, claim_token, detail, "
            "fetched_at, first_charged_at, credits_spent, calls) VALUES "
            "('sixsense', 'sixsense:people_full', 'judy@6sense.com', 'sixsense:enrichment', 'matched', '', '', "
            ":at, :at, 1, 1), "
            "('sixsense_score', 'sixsense:people_score', 'judy@6sense.com', NULL, 'matched', '', '', :at, NULL, 0, 1)"),
            {"at": datetime(2026, 11, 20, 1, tzinfo=UTC)})
    engine.dispose()
    ledger = open_ledger(ledger_url, auto_migrate=True)
    charged = ledger.charged_since(pool="sixsense:enrichment", keys=["judy@6sense.com", "bob@x.com"],
                                   since=datetime(2026, 11, 1, tzinfo=UTC))
    assert charged == {"judy@6sense.com"}
    ledger.engine.dispose()


def test_the_plan_sets_the_credits_needed_against_every_budget_and_balance(
        make_sandbox, write_config, ledger_url, tmp_path):
    box = make_sandbox(vendors=["salesforce", "sixsense", "slintel"], extra={"slintel": {"credits": 1}})
    open_ledger(ledger_url, auto_migrate=True).engine.dispose()
    config = write_config(box, ledger_url, mappings_dir=str(_slintel_first_mapping(tmp_path / "mappings")),
                          providers={"sixsense": _budget("enrichment", per_night=3, per_month=50)})

    plan = connector("plan", "--config", str(config), cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    out = " ".join(plan.stdout.split())
    assert "credits for the night of" in out
    six = next(line for line in plan.stdout.splitlines() if "sixsense:enrichment" in line and "│" in line)
    cells = [c.strip() for c in six.split("│") if c.strip()]
    needed = int(cells[1])
    assert cells[2] == "3" and "per_night" in cells[3]
    assert needed > 3 and "sixsense:enrichment needs" in out and "will not fit" in out
    slintel = next(line for line in plan.stdout.splitlines() if "slintel:credits" in line and "│" in line)
    assert [c.strip() for c in slintel.split("│") if c.strip()][2] == "1"  # the balance read just now
    # nothing was spent: no paid call reached either vendor
    assert box["sixsense"].credits_spent["enrichment"] == 0 and box["slintel"].credits_spent == 0
    assert [e.path for e in box["slintel"].log.entries()] == ["/v2.0/api-credits"]


def test_the_webhook_keeps_its_share_of_each_daily_quota_and_month_budget(make_sandbox, make_settings, ledger_url):
    """limiter.realtime_reserve: batch runs leave that share of a vendor's daily quota and of each
    month's credit budget to the webhook."""
    from connector.budgets import Budgets  # noqa: PLC0415

    box = make_sandbox(vendors=["slintel"], extra={"slintel": {"daily_limit": 10}})
    settings = make_settings(box, ledger_url, limiter={"realtime_reserve": 0.2},
                             providers={"slintel": {"daily_limit": 10, **_budget("credits", per_month=5)}})
    ledger = open_ledger(ledger_url, auto_migrate=True)
    limiter = MemoryLimiter()
    companies = [LeadIdentity(email=f"ann@{d}") for d in (
        "acme-robotics.com", "globex.example", "initech.example", "umbrella.example", "6sense.com", "hooli.example")]

    def ask(realtime: bool, leads: list[LeadIdentity]) -> list[Any]:
        provider = PROVIDERS["slintel_company"](VendorContext(settings, limiter, realtime=realtime))
        try:
            enricher = Enricher(ledger=ledger, providers={"slintel_company": provider},
                                budgets=Budgets(settings, realtime=realtime).periods)
            return enricher.answer_many("slintel_company", leads, deadline=time.time() + 30)
        finally:
            provider.close()

    batch = ask(False, companies)
    paid = [o for o in batch if isinstance(o, ProviderAnswer) and o.credits]
    assert len(paid) == 4  # 80% of the month's 5 credits
    refused = [o for o in batch if isinstance(o, QuotaExhausted)]
    assert refused and all("per_month" in o.message for o in refused)
    assert len(paid) + len(refused) + sum(1 for o in batch if isinstance(o, ProviderAnswer) and not o.matched) == 6
    waiting = next(lead for lead, o in zip(companies, batch, strict=True) if isinstance(o, QuotaExhausted))
    webhook = ask(True, [waiting])
    assert isinstance(webhook[0], ProviderAnswer) and webhook[0].credits == 1  # the reserved credit
    assert box["slintel"].credits_spent == 5

    # The daily quota: 10 calls a day, of which batch callers may make 8.
    quota = PROVIDERS["slintel_company"](VendorContext(settings, limiter))
    try:
        calls = 0
        with pytest.raises(QuotaExhausted):
            for _ in range(20):
                quota.remaining_credits(deadline=time.time() + 10)
                calls += 1
    finally:
        quota.close()
    assert calls >= 1 and len(box["slintel"].log.entries()) == 8  # batch callers stop at 80% of the day's 10
    live = PROVIDERS["slintel_company"](VendorContext(settings, limiter, realtime=True))
    try:
        live.remaining_credits(deadline=time.time() + 10)  # the webhook still gets its share
    finally:
        live.close()
    assert len(box["slintel"].log.entries()) == 9 and all(e.status == 200 for e in box["slintel"].log.entries())
