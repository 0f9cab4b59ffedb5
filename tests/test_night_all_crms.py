"""One night end to end for every CRM: its emulator -> 6sense -> mapping -> write-back -> ledger,
over real sockets, on SQLite and PostgreSQL. The seeded world is the same in every CRM, so the
expected outcome is too; only field names and how each CRM stores values differ."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

import connector.sandbox.sixsense as sixsense_emulator
from connector.ledger import Ledger, open_ledger
from connector.limiter import MemoryLimiter
from connector.pipeline import RunReport, current_window, run_source
from connector.sandbox import Sandbox
from connector.sandbox.seed import NEW_LEADS, OLD_LEADS, seed_companies
from connector.sandbox.server import Fault
from connector.settings import Settings

INVALID_EMAILS = {"", "sybil.fawlty", "trent@@nin.example"}
NIGHT_STATES = {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
LOGICAL = ("industry", "employees", "revenue", "name", "domain", "segments")
SEED_PREFILLED = {"Industry": "industry", "NumberOfEmployees": "employees"}


@dataclass(frozen=True)
class CrmView:
    """How the test reads one CRM's emulator."""

    fields: dict[str, str]  # logical name -> the CRM's field
    lengths: dict[str, int]  # logical text field -> the CRM's length (values are cut to it)
    records: Callable[[Any], list[tuple[str, str | None, dict[str, Any]]]]  # (id, email, values)
    applied: Callable[[Any], list[str]]  # ids of every applied write, in order
    usage: Callable[[Any], int]  # calls the CRM counted against today's quota
    quota: dict[str, Any]  # the CRM's daily limit, and the sandbox extra and settings making it small
    write: tuple[str, str]  # (method, path) of the batch write


VIEWS: dict[str, CrmView] = {
    "salesforce": CrmView(
        write=("PATCH", "/services/data/v59.0/composite/sobjects"),
        fields={"industry": "Industry", "employees": "NumberOfEmployees", "revenue": "AnnualRevenue",
                "name": "SixSense_Company_Name__c", "domain": "SixSense_Domain__c", "segments": "SixSense_Segments__c"},
        lengths={"name": 80, "segments": 255},
        records=lambda emu: [(r["Id"], r["Email"], r) for r in emu.leads()],
        applied=lambda emu: [w["id"] for w in emu.applied_writes],
        usage=lambda emu: emu.api_usage()[0],
        quota={"limit": 10, "extra": {"daily_api_limit": 10},
               "settings": {"daily_reserve_fraction": 0.5, "write_batch_size": 5}},
    ),
    "hubspot": CrmView(
        write=("POST", "/crm/v3/objects/contacts/batch/update"),
        fields={"industry": "industry", "employees": "numberofemployees", "revenue": "annualrevenue",
                "name": "sixsense_company_name", "domain": "sixsense_domain", "segments": "sixsense_segments"},
        lengths={"name": 65536, "segments": 65536},
        records=lambda emu: [(c["id"], c["properties"]["email"], c["properties"]) for c in emu.contacts()],
        applied=lambda emu: [w["id"] for w in emu.applied_writes],
        usage=lambda emu: emu.daily_usage()[0],
        quota={"limit": 10, "extra": {"daily_limit": 10},
               "settings": {"daily_limit": 10, "daily_reserve_fraction": 0.5, "write_batch_size": 5}},
    ),
    "marketo": CrmView(
        write=("POST", "/rest/v1/leads.json"),
        fields={"industry": "industry", "employees": "numberOfEmployees", "revenue": "annualRevenue",
                "name": "sixsenseCompanyName", "domain": "sixsenseDomain", "segments": "sixsenseSegments"},
        lengths={"name": 255, "segments": 65535},
        records=lambda emu: [(str(r["id"]), r["email"], r) for r in emu.leads()],
        applied=lambda emu: [str(w["id"]) for w in emu.applied_writes],
        usage=lambda emu: emu.daily_calls,
        # One activities page covers the whole day, so the poll costs a known handful of calls.
        quota={"limit": 20, "extra": {"daily_quota": 20, "activity_page_span_seconds": 3 * 86400},
               "settings": {"daily_quota": 20, "daily_reserve_fraction": 0.5, "write_batch_size": 4}},
    ),
}
CRMS = sorted(VIEWS)


def boot(make_sandbox, make_settings, crm: str, ledger_url: str, *, extra: dict[str, Any] | None = None,
         **source_settings: Any) -> tuple[Sandbox, Settings, Ledger]:
    box = make_sandbox(vendors=[crm, "sixsense"], extra={crm: extra or {}})
    settings = make_settings(box, ledger_url, sources={crm: {"enabled": True, **source_settings}})
    return box, settings, open_ledger(ledger_url, auto_migrate=True)


def night(settings: Settings, ledger: Ledger, crm: str, **kwargs: Any) -> RunReport:
    report = run_source(settings, ledger, MemoryLimiter(), crm, window=current_window(settings), **kwargs)
    assert report is not None
    return report


def expected(lead_email: str | None, lengths: dict[str, int]) -> dict[str, Any] | None:
    """What the mapping should write for a seeded lead (by logical field), from 6sense's company."""
    email = (lead_email or "").strip().lower()
    if email in INVALID_EMAILS or "@" not in email:
        return None
    company = seed_companies().get(email.split("@", 1)[1])
    if company is None or company.blank_answer:
        return None
    f = company.firmographics
    return {
        "industry": f["industry"],
        "employees": int(f["employeeCount"]),
        "revenue": float(f["annualRevenue"]),
        "name": f["name"][: lengths["name"]],
        "domain": f["domain"],
        "segments": ";".join(name for _, name in company.segments)[: lengths["segments"]] or None,
    }


def same(stored: Any, wanted: Any) -> bool:
    """Equal as the CRM stores it: HubSpot keeps numbers as text, Marketo and Salesforce as numbers."""
    if wanted is None or stored is None:
        return stored == wanted
    if isinstance(wanted, (int, float)):
        try:
            return float(stored) == float(wanted)
        except (TypeError, ValueError):
            return False
    return str(stored) == str(wanted)


@pytest.mark.parametrize("crm", CRMS)
def test_a_night_writes_the_mapped_values_for_every_lead_with_a_known_company(
        crm, make_sandbox, make_settings, ledger_url):
    box, settings, ledger = boot(make_sandbox, make_settings, crm, ledger_url)
    report = night(settings, ledger, crm)
    view = VIEWS[crm]
    records = view.records(box[crm])
    prefilled = {lead.email: lead.prefilled for lead in NEW_LEADS}

    checked = 0
    for record_id, email, values in records:
        key = email if email in prefilled else next((e for e in prefilled if (e or None) == email), None)
        wanted = expected(email, view.lengths) if key is not None else None
        if wanted is None:
            continue
        people = {SEED_PREFILLED[k]: v for k, v in prefilled[key].items()}
        for logical in LOGICAL:
            stored = values[view.fields[logical]]
            if logical in people:
                assert same(stored, people[logical]), f"{crm} {email}: a person's {logical} was overwritten"
            else:
                assert same(stored, wanted[logical]), f"{crm} {email} {logical}: {stored!r} != {wanted[logical]!r}"
            checked += 1
    assert checked >= 21 * len(LOGICAL)
    assert report.states == NIGHT_STATES
    assert report.credits == {"sixsense": 20}
    assert report.fields_written == 264
    # Every written lead was written once; the old leads (before the watermark) never.
    applied = view.applied(box[crm])
    assert len(applied) == len(set(applied)) == 21
    old_emails = {lead.email for lead in OLD_LEADS}
    assert not set(applied) & {rid for rid, email, _ in records if email in old_emails}
    for rid, email, _ in records:
        if email in old_emails:
            assert ledger.find_leads(key=rid) == []


@pytest.mark.parametrize("crm", CRMS)
def test_invalid_emails_are_skipped_without_a_vendor_call(crm, make_sandbox, make_settings, ledger_url):
    box, settings, ledger = boot(make_sandbox, make_settings, crm, ledger_url)
    night(settings, ledger, crm)
    invalid = [rid for rid, email, _ in VIEWS[crm].records(box[crm]) if (email or "") in INVALID_EMAILS]
    assert len(invalid) == 3
    for rid in invalid:
        [lead] = ledger.find_leads(key=rid)
        assert (lead.state, lead.reason) == ("skipped", "invalid_email")
        assert "no vendor was called" in lead.detail
    assert not set(invalid) & set(VIEWS[crm].applied(box[crm]))
    # 28 new leads - 3 invalid emails - 1 duplicate email answered from the cache.
    assert len(box["sixsense"].log.entries(path_prefix="/v2/people/full")) == 24


@pytest.mark.parametrize("crm", CRMS)
def test_a_rewound_second_run_writes_nothing(crm, make_sandbox, make_settings, ledger_url):
    box, settings, ledger = boot(make_sandbox, make_settings, crm, ledger_url)
    first = night(settings, ledger, crm)
    writes_after_first = len(VIEWS[crm].applied(box[crm]))
    paid_after_first = len(box["sixsense"].log.entries(path_prefix="/v2/people/full"))
    assert writes_after_first == 21

    ledger.rewind_cursor(source=crm, watermark=current_window(settings).start - timedelta(hours=24))
    second = night(settings, ledger, crm)

    assert len(VIEWS[crm].applied(box[crm])) == writes_after_first  # no identical rewrite
    assert second.fields_written == 0
    assert second.polled == first.polled == 28
    assert len(box["sixsense"].log.entries(path_prefix="/v2/people/full")) == paid_after_first
    assert second.states == {"done(up_to_date)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}


QUOTA_CASES = [pytest.param(crm, {}, id=crm) for crm in CRMS if crm != "hubspot"] + [
    # Private app: the configured daily_limit is far too high; only the Daily headers (the
    # account's real limit and use) can stop the source in time.
    pytest.param("hubspot", {"auth": "private_app", "daily_limit": 100_000}, id="hubspot-private_app"),
    pytest.param("hubspot", {"auth": "oauth"}, id="hubspot-oauth"),  # no headers: the limiter's own count
]


@pytest.mark.parametrize(("crm", "overrides"), QUOTA_CASES)
def test_a_small_daily_quota_stops_the_source_before_the_reserve_and_defers_the_rest(
        crm, overrides, make_sandbox, make_settings, ledger_url):
    view = VIEWS[crm]
    box, settings, ledger = boot(make_sandbox, make_settings, crm, ledger_url, extra=view.quota["extra"],
                                 **{**view.quota["settings"], **overrides})
    allowed = int(view.quota["limit"] * (1 - getattr(settings.sources, crm).daily_reserve_fraction))

    report = night(settings, ledger, crm)

    used = view.usage(box[crm])
    assert 0 < used <= allowed, f"{crm} used {used} calls; the reserve starts after {allowed}"
    written = report.states.get("done(written)", 0)
    deferred = report.states.get("deferred(quota)", 0)
    assert written > 0 and deferred > 0
    assert written + deferred == 21
    assert report.states.get("skipped(invalid_email)") == 3
    assert len(view.applied(box[crm])) == written
    # The CRM never had to refuse a call: the source stopped on its own count.
    assert not [e for e in box[crm].log.entries() if e.status in (403, 429)]
    for rid, _, _ in view.records(box[crm]):
        for lead in ledger.find_leads(key=rid):
            if lead.state == "deferred":
                assert lead.reason == "quota" and lead.detail


@pytest.mark.parametrize("crm", CRMS)
def test_a_lost_reply_after_the_crm_applied_a_write_is_confirmed_not_resent(
        crm, make_sandbox, make_settings, ledger_url):
    box, settings, ledger = boot(make_sandbox, make_settings, crm, ledger_url)
    method, path = VIEWS[crm].write
    box[crm].faults.add(Fault(path_prefix=path, method=method, status=503, body="upstream timeout", when="after"))
    report = night(settings, ledger, crm)
    assert report.states == NIGHT_STATES
    applied = VIEWS[crm].applied(box[crm])
    assert len(applied) == len(set(applied)) == 21  # applied once, never re-sent
    assert [e.status for e in box[crm].log.entries(path_prefix=path, method=method)].count(503) == 1
    details = {lead.detail for rid, _, _ in VIEWS[crm].records(box[crm]) for lead in ledger.find_leads(key=rid)}
    assert any("confirmed on re-read" in d for d in details)


# What each CRM refuses of Globex's answer below (field -> words its bad_value reason must hold), and
# a field it takes from the same answer. HubSpot numbers have no range; Marketo has no picklists.
REFUSED = {
    "salesforce": {"NumberOfEmployees": ["3000000000", "-99,999,999 to 99,999,999"],
                   "SixSense_Profile_Fit__c": ["'Excellent'", "Strong, Moderate, Weak"]},
    "hubspot": {"sixsense_profile_fit": ["'Excellent'", "Strong, Moderate, Weak"]},
    "marketo": {"numberOfEmployees": ["3000000000", "-2,147,483,647 to 2,147,483,647"]},
}


@pytest.mark.parametrize("crm", CRMS)
def test_a_value_the_crm_would_refuse_is_a_bad_value_and_the_leads_other_fields_are_written(
        crm, make_sandbox, make_settings, tmp_path, monkeypatch):
    """6sense answers Globex with 3 billion employees (past Salesforce's 8 digits and Marketo's
    32-bit integers) and a profile fit ("Excellent") the restricted picklists lack. Sent along, either
    would make the CRM reject the whole record; refused alone, the lead is written without them."""
    box, settings, ledger = boot(make_sandbox, make_settings, crm, f"sqlite:///{tmp_path / 'ledger.db'}")
    six = box["sixsense"]
    globex = six.companies["globex.example"]
    six.companies["globex.example"] = replace(globex, firmographics={**globex.firmographics,
                                                                      "employeeCount": 3_000_000_000})
    scores = sixsense_emulator.product_scores
    monkeypatch.setattr(sixsense_emulator, "product_scores", lambda domain, email: {
        **scores(domain, email), **({"company_profile_fit": "Excellent"} if domain == "globex.example" else {})})

    report = night(settings, ledger, crm)

    assert report.states == NIGHT_STATES, report.states  # not one failed(crm_rejected)
    view = VIEWS[crm]
    globex_leads = [(rid, values) for rid, email, values in view.records(box[crm])
                    if (email or "").endswith("@globex.example") and ledger.find_leads(key=rid)]
    assert len(globex_leads) == 3
    for rid, values in globex_leads:
        [lead] = ledger.find_leads(key=rid)
        assert (lead.state, lead.reason) == ("done", "written"), lead.detail
        decided = {w.field: w for w in ledger.field_writes(lead_id=lead.id) if w.run_id == report.run_id}
        for target, words in REFUSED[crm].items():
            assert (decided[target].reason, decided[target].provider) == ("bad_value", "sixsense"), target
            for word in [target, *words]:
                assert word in decided[target].detail, (target, word, decided[target].detail)
            assert values[target] is None, f"{crm}: the refused {target} reached the CRM"
        # Every other field of the answer was written.
        assert values[view.fields["name"]] == "Globex Corporation"
        assert values[view.fields["industry"]] == "Software and Technology"
        written = [d for d in decided.values() if d.state == "confirmed"]
        assert len(written) == len(decided) - len(REFUSED[crm]) > 5
    assert report.fields_written == 264 - 3 * len(REFUSED[crm])


def test_a_value_the_crm_refuses_falls_back_to_the_next_provider_of_the_field(make_sandbox, make_settings, tmp_path):
    """The shipped Salesforce mapping asks contacts_company after 6sense for NumberOfEmployees: when
    6sense's 3 billion does not fit the field, the contacts API's figure is written instead."""
    box = make_sandbox(vendors=["salesforce", "sixsense", "contacts_api"])
    settings = make_settings(box, f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = open_ledger(settings.ledger_url, auto_migrate=True)
    six = box["sixsense"]
    globex = six.companies["globex.example"]
    six.companies["globex.example"] = replace(globex, firmographics={**globex.firmographics,
                                                                      "employeeCount": 3_000_000_000})

    report = night(settings, ledger, "salesforce")

    globex_leads = [r for r in box["salesforce"].leads()
                    if (r.get("Email") or "").endswith("@globex.example") and ledger.find_leads(key=r["Id"])]
    assert len(globex_leads) == 3  # the night's leads (an older one is before the watermark)
    asked = box["contacts_api"].log.entries(path_prefix="/v1/companies/search")
    assert any("globex.example" in e.query for e in asked)
    for record in globex_leads:
        [lead] = ledger.find_leads(key=record["Id"])
        [employees] = [w for w in ledger.field_writes(lead_id=lead.id)
                       if w.run_id == report.run_id and w.field == "NumberOfEmployees"]
        assert employees.provider == "contacts_company" and employees.state == "confirmed"
        assert 0 < record["NumberOfEmployees"] < 100_000_000
        assert record["NumberOfEmployees"] == employees.new_value
        assert record["Industry"] == "Software and Technology"  # 6sense still first where it fits
