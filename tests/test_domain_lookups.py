"""Issue #12 point 3, over real sockets to the emulators: a company lookup keyed by domain asks only
a registrable domain, and an answer about another domain is a no-match, never "the first row".

The contacts API's `tlds` filter is a suffix match (the emulator follows the doc's "top-level
domain filter"), so before the fix a lead with a gmail address and Website ".com" was asked as
`tlds=.com` and got 6sense's firmographics. Such a lead is now never looked up: its lookup key is
None, and the Enricher records a no-match without a call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.errors import NoMatch
from connector.ledger import open_ledger
from connector.limiter import MemoryLimiter
from connector.models import LeadIdentity
from connector.pipeline import current_window, run_source
from connector.registry import PROVIDERS, load_all
from connector.sandbox import Sandbox, deep_merge
from connector.sandbox.contacts_api import SANDBOX_API_TOKEN
from connector.sandbox.server import Fault
from connector.settings import Settings, bundled_path, load_settings
from connector.sources.base import VendorContext

load_all()

GMAIL_DOT_COM = LeadIdentity(email="pat@gmail.com", website=".com", company="Pat's Bakery")
GMAIL_ACME_SITE = LeadIdentity(email="rob@gmail.com", website="https://www.acme-robotics.com/x")
FIRMOGRAPHIC_FIELDS = ("Industry", "NumberOfEmployees", "AnnualRevenue", "SixSense_Company_Name__c",
                       "SixSense_Domain__c")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    extra = {"slintel": {"burst": [1_000_000, 1], "max_in_flight": 100},
             "contacts_api": {"rate_limit": [1_000_000, 60]}}
    with Sandbox(state_dir=None, vendors=["slintel", "contacts_api"], extra=extra,
                 tls_dir=tmp_path_factory.mktemp("tls")) as sandbox:
        yield sandbox


@pytest.fixture
def emulators(box: Sandbox) -> Iterator[Sandbox]:
    for emulator in box.emulators.values():
        emulator.faults.clear()
        emulator.log.clear()
    yield box
    for emulator in box.emulators.values():
        emulator.faults.clear()


@pytest.fixture
def make_provider(emulators: Sandbox, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    base = {"data_dir": str(tmp_path / "data"), "sandbox": {"enabled": False},
            "providers": {"contacts_api": {"rate_limit": {"requests": 1000, "per_seconds": 1}}}}
    settings = load_settings(bundled_path("settings.example.yaml"), **deep_merge(base, emulators.overrides()))
    made: list[Any] = []

    def make(name: str) -> Any:
        provider = PROVIDERS[name](VendorContext(settings, MemoryLimiter()))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def queries(box: Sandbox, vendor: str, path: str) -> list[str]:
    return [e.query for e in box[vendor].log.entries(path_prefix=path)]


def envelope(rows: list[dict[str, Any]]) -> dict[str, Any]:
    meta = {"page": 1, "per_page": 10, "total": len(rows), "total_pages": 1, "credits_charged": 0,
            "credits_remaining": 10_000}
    return {"data": rows, "meta": meta, "errors": []}


# --- the emulator keeps the vendor's suffix filter ------------------------------------------------


def test_the_contacts_emulator_answers_a_bare_suffix_with_other_companies(emulators):
    """The premise of the bug: `tlds=.com` is a suffix filter, and its first row is 6sense's."""
    with httpx.Client(base_url=emulators.servers["contacts_api"].base_url,
                      headers={"Authorization": f"Bearer {SANDBOX_API_TOKEN}"}) as client:
        body = client.get("/v1/companies/search", params={"tlds": ".com", "per_page": 10}).json()
    domains = [row["domain"] for row in body["data"]]
    assert domains[0] == "6sense.com" and "acme-robotics.com" in domains


# --- contacts API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["contacts_company", "contacts_people"])
def test_a_gmail_lead_with_website_dot_com_is_never_looked_up(name, emulators, make_provider):
    provider = make_provider(name)
    assert provider.lookup_key(GMAIL_DOT_COM) is None
    with pytest.raises(NoMatch, match="no company domain"):
        provider.fetch(GMAIL_DOT_COM, deadline=time.time() + 30)
    assert emulators["contacts_api"].log.entries() == []


@pytest.mark.parametrize("website", ["https://www.acme-robotics.com/x",
                                     "https://shop.Acme-Robotics.com/cart"])
def test_a_website_is_looked_up_by_its_registrable_domain(website, emulators, make_provider):
    provider = make_provider("contacts_company")
    lead = LeadIdentity(email="rob@gmail.com", website=website)
    assert provider.lookup_key(lead) == "acme-robotics.com"
    payload = provider.fetch(lead, deadline=time.time() + 30)
    assert payload["company"]["domain"] == "acme-robotics.com"
    assert payload["company"]["employee_count"] == 2400
    [query] = queries(emulators, "contacts_api", "/v1/companies/search")
    assert "tlds=acme-robotics.com&" in query + "&"


def test_a_company_answer_about_another_domain_is_no_match(emulators, make_provider):
    emulator = emulators["contacts_api"]
    globex = next(c for c in emulator.companies if c["domain"] == "globex.example")
    emulator.faults.add(Fault(path_prefix="/v1/companies/search", status=200, body=envelope([globex])))
    with pytest.raises(NoMatch) as info:
        make_provider("contacts_company").fetch(GMAIL_ACME_SITE, deadline=time.time() + 30)
    assert "acme-robotics.com" in info.value.message and "globex.example" in info.value.message


def test_decision_makers_at_another_domain_are_no_match(emulators, make_provider):
    emulator = emulators["contacts_api"]
    others = [c for c in emulator.contacts if c["company"]["domain"] == "globex.example"][:2]
    emulator.faults.add(Fault(path_prefix="/v1/contacts/search", status=200, body=envelope(others)))
    with pytest.raises(NoMatch, match="globex.example"):
        make_provider("contacts_people").fetch(GMAIL_ACME_SITE, deadline=time.time() + 30)


def test_decision_makers_at_another_domain_are_dropped_from_a_mixed_answer(emulators, make_provider):
    emulator = emulators["contacts_api"]
    acme = [c for c in emulator.contacts if c["company"]["domain"] == "acme-robotics.com"][:2]
    globex = [c for c in emulator.contacts if c["company"]["domain"] == "globex.example"][:1]
    emulator.faults.add(Fault(path_prefix="/v1/contacts/search", status=200, body=envelope(globex + acme)))
    payload = make_provider("contacts_people").fetch(GMAIL_ACME_SITE, deadline=time.time() + 30)
    assert [c["email"] for c in payload["contacts"]] == [c["email"] for c in acme]
    assert payload["credits_charged"] == 3  # the vendor charged every contact it returned


# --- Slintel company enrichment -------------------------------------------------------------------


def test_slintel_answering_for_another_domain_is_no_match(emulators, make_provider):
    """The doc's own request: asked for aliaxis.com, Slintel answers with the slintel.com company."""
    provider = make_provider("slintel_company")
    lead = LeadIdentity(email="x@gmail.com", website="https://www.aliaxis.com/")
    assert provider.lookup_key(lead) == "aliaxis.com"
    with pytest.raises(NoMatch) as info:
        provider.fetch(lead, deadline=time.time() + 30)
    assert "aliaxis.com" in info.value.message and "slintel.com" in info.value.message
    assert queries(emulators, "slintel", "/v2.0/company/enrich") == ["company_website=aliaxis.com"]


def test_slintel_is_asked_by_the_registrable_domain_and_its_answer_kept(emulators, make_provider):
    provider = make_provider("slintel_company")
    company = provider.fetch(LeadIdentity(email="x@yahoo.com", website="https://WWW.Slintel.com/about"),
                             deadline=time.time() + 30)
    assert company["company_name"] == "6sense" and company["company_website"] == "slintel.com"
    assert queries(emulators, "slintel", "/v2.0/company/enrich") == ["company_website=slintel.com"]


def test_slintel_never_asks_a_bare_suffix(emulators, make_provider):
    provider = make_provider("slintel_company")
    assert provider.lookup_key(LeadIdentity(email="pat@gmail.com", website=".com")) is None
    # With a company name and no domain, the documented name lookup is used, never "com".
    assert provider.lookup_key(GMAIL_DOT_COM) == "name:pat's bakery"
    with pytest.raises(NoMatch):
        provider.fetch(GMAIL_DOT_COM, deadline=time.time() + 30)
    assert queries(emulators, "slintel", "/v2.0/company/enrich") == ["company_name=Pat%27s+Bakery"]


# --- a night ----------------------------------------------------------------------------------------


def night_with(settings: Settings, ledger: Any) -> None:
    run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings))


def test_a_night_writes_no_other_companys_data_to_a_gmail_lead_with_website_dot_com(
        make_sandbox, make_settings, ledger_url):
    box = make_sandbox(vendors=["salesforce", "sixsense", "contacts_api"])
    crm = box["salesforce"]
    pat = crm.add_lead(LastName="Doe", FirstName="Pat", Company="Pat's Bakery", Email="pat@gmail.com",
                       Website=".com")
    rob = crm.add_lead(LastName="Roe", FirstName="Rob", Company="Acme Robotics", Email="rob@gmail.com",
                       Website="https://www.acme-robotics.com/x")
    ledger = open_ledger(ledger_url, auto_migrate=True)
    night_with(make_settings(box, ledger_url), ledger)

    records = {r["Id"]: r for r in crm.leads()}

    # Pat: nothing written, skipped as a no-match, never asked of the contacts API.
    assert {f: records[pat][f] for f in FIRMOGRAPHIC_FIELDS} == dict.fromkeys(FIRMOGRAPHIC_FIELDS)
    [lead] = ledger.find_leads(key=pat)
    assert (lead.state, lead.reason) == ("skipped", "no_match")
    assert not [w for w in ledger.field_writes(lead_id=lead.id) if w.provider == "contacts_company"]
    asked = queries(box, "contacts_api", "/v1/companies/search")
    assert not any("tlds=com" in q or "tlds=.com" in q or "tlds=%2Ecom" in q for q in asked), asked

    # Rob: his website's registrable domain was asked, and Acme's firmographics written.
    assert any("tlds=acme-robotics.com" in q for q in asked)
    [lead] = ledger.find_leads(key=rob)
    assert (lead.state, lead.reason) == ("done", "written")
    assert records[rob]["NumberOfEmployees"] == 2400 and records[rob]["Industry"] == "Manufacturing"
    assert records[rob]["SixSense_Domain__c"] == "acme-robotics.com"
    written = {w.field: w.provider for w in ledger.field_writes(lead_id=lead.id) if w.state == "confirmed"}
    assert written["NumberOfEmployees"] == "contacts_company"
