"""Credits are never paid twice: twenty leads at one company asked at once by separate workers
cost one company lookup, a re-run within the freshness period costs nothing, and a 402 stops
only the provider that got it. Over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from connector.enrichment import Enricher
from connector.errors import ConnectorError, QuotaExhausted
from connector.ledger import open_ledger
from connector.limiter import MemoryLimiter
from connector.models import LeadIdentity, ProviderAnswer
from connector.registry import PROVIDERS, load_all
from connector.sandbox import Sandbox, deep_merge
from connector.settings import Settings, bundled_path, load_settings
from connector.sources.base import VendorContext

load_all()

WORKERS = 20
DOMAIN = "initech.example"
LEADS = [LeadIdentity(email=f"person{i}@{DOMAIN}", country="US", company="Initech") for i in range(WORKERS)]


def _six(box: Sandbox) -> int:
    return box["sixsense"].credits_spent["enrichment"]


# provider, emulator, request path, vendor credit counter, vendor credits for the one company
COMPANY_LOOKUPS = [
    pytest.param("sixsense_company", "sixsense", "/v1/enrichment/company", _six, 1, id="sixsense_company"),
    pytest.param("slintel_company", "slintel", "/v2.0/company/enrich", lambda b: b["slintel"].credits_spent, 1,
                 id="slintel_company"),
    pytest.param("contacts_company", "contacts_api", "/v1/companies/search", lambda b: b["contacts_api"].credits_spent,
                 0, id="contacts_company"),  # companies are free: the point is one call
    pytest.param("contacts_people", "contacts_api", "/v1/contacts/search", lambda b: b["contacts_api"].credits_spent,
                 3, id="contacts_people"),  # one page of 3 decision makers, 1 credit per contact
]


def make_box(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    # Latency keeps the first call on the wire while the other workers arrive.
    return make_sandbox(vendors=["sixsense", "slintel", "contacts_api"], extra={
        "sixsense": {"latency_seconds": 0.3}, "slintel": {"latency_seconds": 0.3},
        "contacts_api": {"latency_seconds": 0.3}})


def settings_for(box: Sandbox, tmp_path: Path) -> Settings:
    base = {"data_dir": str(tmp_path / "data"), "sandbox": {"enabled": False}}
    return load_settings(bundled_path("settings.example.yaml"), **deep_merge(base, box.overrides()))


def run_workers(name: str, settings: Settings, ledger_url: str, leads: list[LeadIdentity]) -> list[tuple[Any, int]]:
    """One thread per lead, each a worker of its own (its own provider, Enricher and ledger
    connection), all started together; returns (outcome, credits the worker's Enricher counted)."""
    limiter = MemoryLimiter()  # one process: one limiter, as the pipeline shares it
    barrier = threading.Barrier(len(leads))
    results: list[tuple[Any, int] | None] = [None] * len(leads)
    ledgers = [open_ledger(ledger_url) for _ in leads]

    def work(i: int) -> None:
        provider = PROVIDERS[name](VendorContext(settings, limiter))
        try:
            enricher = Enricher(ledger=ledgers[i], providers={name: provider})
            barrier.wait(timeout=30)
            [outcome] = enricher.answer_many(name, [leads[i]], deadline=time.time() + 60)
            results[i] = (outcome, enricher.credits[name])
        finally:
            provider.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(leads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for ledger in ledgers:
        ledger.engine.dispose()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@pytest.mark.parametrize("name, emulator, path, vendor_credits, cost", COMPANY_LOOKUPS)
def test_twenty_leads_at_one_domain_asked_at_once_cost_one_company_lookup(
        name, emulator, path, vendor_credits, cost, make_sandbox, ledger_url, tmp_path):
    box = make_box(make_sandbox)
    settings = settings_for(box, tmp_path)
    open_ledger(ledger_url, auto_migrate=True)

    first = run_workers(name, settings, ledger_url, LEADS)
    answers = [outcome for outcome, _ in first]
    assert all(isinstance(a, ProviderAnswer) and a.matched for a in answers), answers
    assert len({repr(a.payload) for a in answers}) == 1  # everyone got the one answer
    assert len(box[emulator].log.entries(path_prefix=path)) == 1  # one call on the wire
    assert vendor_credits(box) == cost
    ledger = open_ledger(ledger_url)
    counted = cost  # the ledger counts what the vendor charges (contacts: one per contact returned)
    assert sum(credits for _, credits in first) == counted
    assert ledger.credits_spent().get(name, 0) == counted
    assert sum(1 for a in answers if not a.cached) <= 1

    # A re-run within the freshness period: every answer comes from the ledger, nothing is paid.
    second = run_workers(name, settings, ledger_url, LEADS)
    assert all(isinstance(o, ProviderAnswer) and o.matched and o.cached for o, _ in second)
    assert sum(credits for _, credits in second) == 0
    assert len(box[emulator].log.entries(path_prefix=path)) == 1
    assert vendor_credits(box) == cost
    ledger.engine.dispose()


def test_a_402_stops_that_credit_pool_while_other_pools_and_providers_go_on(make_sandbox, ledger_url, tmp_path):
    box = make_box(make_sandbox)
    box["sixsense"].set_credit_balance("enrichment", 0)
    settings = settings_for(box, tmp_path)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    limiter = MemoryLimiter()
    names = ("sixsense_company", "sixsense_people", "slintel_company", "sixsense_score")
    providers = {n: PROVIDERS[n](VendorContext(settings, limiter)) for n in names}
    leads = [LeadIdentity(email=f"ann@{d}") for d in ("acme-robotics.com", "globex.example", DOMAIN)]
    try:
        enricher = Enricher(ledger=ledger, providers=providers)
        outcomes = enricher.answer_many("sixsense_company", leads, deadline=time.time() + 60)
        assert all(isinstance(o, QuotaExhausted) and o.reason == "credits_exhausted" for o in outcomes)
        # The first 402 opened the circuit: the other leads were parked without a call.
        assert [e.status for e in box["sixsense"].log.entries(path_prefix="/v1/enrichment/company")] == [402]
        assert enricher.stopped("sixsense_company") is not None
        assert ledger.open_circuits(now=_now())["sixsense:enrichment"].reason == "credits_exhausted"
        # People Enrichment draws on the same pool: stopped too, without a call of its own.
        people = enricher.answer_many("sixsense_people", leads, deadline=time.time() + 60)
        assert all(isinstance(o, QuotaExhausted) and o.reason == "credits_exhausted" for o in people)
        assert box["sixsense"].log.entries(path_prefix="/v1/enrichment/people") == []

        # Another provider goes on: Slintel's company lookup, and 6sense's free Lead Scoring.
        slintel = enricher.answer_many("slintel_company", leads, deadline=time.time() + 60)
        assert all(isinstance(o, ProviderAnswer) and o.matched for o in slintel)
        assert box["slintel"].credits_spent == 3
        scores = enricher.answer_many("sixsense_score", leads, deadline=time.time() + 60)
        assert all(isinstance(o, ProviderAnswer) and o.matched for o in scores)

        # Another worker reads the open circuit from the ledger and never calls.
        other = Enricher(ledger=open_ledger(ledger_url), providers=providers)
        again = other.answer_many("sixsense_company", leads[:1], deadline=time.time() + 60)
        assert isinstance(again[0], ConnectorError) and again[0].reason == "credits_exhausted"
        assert len(box["sixsense"].log.entries(path_prefix="/v1/enrichment/company")) == 1
        assert box["sixsense"].credits_spent["enrichment"] == 0

        # An operator tops up and clears the circuit: the provider pays again, once per company.
        box["sixsense"].set_credit_balance("enrichment", 10)
        assert ledger.clear_circuits(name="sixsense:enrichment") == ["sixsense:enrichment"]
        resumed = Enricher(ledger=ledger, providers=providers).answer_many(
            "sixsense_company", leads, deadline=time.time() + 60)
        assert all(isinstance(o, ProviderAnswer) and o.matched for o in resumed)
        assert box["sixsense"].credits_spent["enrichment"] == 3
    finally:
        for provider in providers.values():
            provider.close()


def _now():
    from datetime import datetime

    return datetime.now(UTC)


def precedence_mapping(directory: Path) -> Path:
    """The shipped Salesforce mapping, which lists fallbacks after 6sense for several fields."""
    text = bundled_path("mappings", "salesforce.lead.yaml").read_text(encoding="utf-8")
    assert text.count("{from: [sixsense.") >= 3
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "salesforce.lead.yaml").write_text(text, encoding="utf-8")
    return directory


def test_a_night_with_per_field_precedence_keeps_6sense_first_and_pays_each_lookup_once(
        make_sandbox, ledger_url, tmp_path):
    from datetime import timedelta

    from connector.pipeline import current_window, run_source

    box = make_sandbox(vendors=["salesforce", "sixsense", "slintel", "contacts_api"])
    crm = box["salesforce"]
    amazon = crm.add_lead(FirstName="Jeff", LastName="B", Company="Amazon", Email="jeff@amazon.com", Country="US")
    base = {"data_dir": str(tmp_path / "data"), "sandbox": {"enabled": False}, "ledger": {"url": ledger_url},
            "workers": 4, "mappings_dir": str(precedence_mapping(tmp_path / "mappings"))}
    settings = load_settings(bundled_path("settings.example.yaml"), **deep_merge(base, box.overrides()))
    ledger = open_ledger(ledger_url, auto_migrate=True)

    def spent() -> int:
        return (sum(box["sixsense"].credits_spent.values()) + box["slintel"].credits_spent
                + box["contacts_api"].credits_spent)

    night = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings))
    assert night is not None
    leads = {r["Email"]: r for r in crm.leads()}
    # 6sense first: its values for the leads it knows, as in the single-provider night.
    assert leads["judy@6sense.com"]["SixSense_Company_Name__c"] == "6sense"
    assert leads["judy@6sense.com"]["Industry"] == "Software and Technology"
    assert leads["mallory@sprockets.example"]["NumberOfEmployees"] == 12000
    # A company 6sense does not know: the next provider in line fills the fields.
    record = crm.lead(amazon)
    assert record["SixSense_Company_Name__c"] == "Amazon"
    assert record["SixSense_Domain__c"] == "amazon.com"
    [lead] = ledger.find_leads(key=amazon)
    written = {w.field: w.provider for w in ledger.field_writes(lead_id=lead.id) if w.decision == "write"}
    assert written["SixSense_Company_Name__c"] == "slintel_company"
    # 6sense: one credit per email (20 as in the single-provider night); Slintel: one per company.
    assert box["sixsense"].credits_spent["enrichment"] == 20
    assert sum(night.credits.values()) == spent()

    ledger.rewind_cursor(source="salesforce", watermark=current_window(settings).start - timedelta(hours=24))
    before = spent()
    rerun = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings))
    assert rerun is not None and rerun.fields_written == 0
    assert spent() == before
    assert sum(rerun.credits.values()) == 0
