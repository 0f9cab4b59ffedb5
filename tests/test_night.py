"""One night end to end: Salesforce (HTTPS, trustme CA) → 6sense → mapping → write-back → ledger,
over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from connector.errors import MappingError
from connector.ledger import Ledger, open_ledger
from connector.limiter import MemoryLimiter
from connector.pipeline import RunReport, Window, current_window, run_source
from connector.sandbox import Sandbox
from connector.sandbox.seed import NEW_LEADS, OLD_LEADS, seed_companies
from connector.settings import Settings

VALID_EMAIL_LEADS = {"", "sybil.fawlty", "trent@@nin.example"}


def night(settings: Settings, ledger: Ledger, **kwargs: Any) -> RunReport:
    report = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings), **kwargs)
    assert report is not None
    return report


def expected_fields(lead_email: str) -> dict[str, Any] | None:
    """What the mapping should write for a seeded lead, from the seeded 6sense company."""
    email = lead_email.strip().lower()
    if email in VALID_EMAIL_LEADS or "@" not in email:
        return None
    company = seed_companies().get(email.split("@", 1)[1])
    if company is None or company.blank_answer:
        return None
    f = company.firmographics
    return {
        "Industry": f["industry"],
        "NumberOfEmployees": int(f["employeeCount"]),
        "AnnualRevenue": float(f["annualRevenue"]),
        "SixSense_Company_Name__c": f["name"][:80],
        "SixSense_Domain__c": f["domain"],
        "SixSense_Segments__c": ";".join(name for _, name in company.segments)[:255] or None,
    }


def by_email(box: Sandbox) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for lead in box["salesforce"].leads():
        out.setdefault(lead["Email"], []).append(lead)
    return out


def test_a_night_writes_the_mapped_values_for_every_lead_that_has_them(sandbox, make_settings, ledger_url):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    report = night(settings, ledger)

    leads = by_email(sandbox)
    checked = 0
    for seed in NEW_LEADS:
        expected = expected_fields(seed.email)
        for record in leads[seed.email]:
            if expected is None:
                continue
            for field, value in expected.items():
                if field in seed.prefilled:
                    assert record[field] == seed.prefilled[field], f"{seed.email}: a person's {field} was overwritten"
                elif value is None:
                    assert record[field] is None
                else:
                    assert record[field] == value, f"{seed.email} {field}: {record[field]!r} != {value!r}"
                checked += 1
    assert checked > 100

    # The long company name was cut to the field's 80 characters, not rejected.
    sprockets = leads["mallory@sprockets.example"][0]
    assert len(sprockets["SixSense_Company_Name__c"]) == 80
    # Unicode and apostrophes survive the round trip.
    assert leads["zoe@electronique.example"][0]["SixSense_Company_Name__c"] == "Société Générale d'Électronique"
    assert leads["frank.o'brien@globex.example"][0]["SixSense_Domain__c"] == "globex.example"

    assert report.states == {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
    # Two leads share bob.jones@...: one credit; the blank-answer and unknown domains cost nothing.
    assert report.credits["sixsense"] == 20
    assert sandbox["sixsense"].credits_spent["enrichment"] == 20


def test_invalid_emails_and_unknown_domains_end_in_the_ledger_with_their_reason(sandbox, make_settings, ledger_url):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    night(settings, ledger)
    sixsense_log = sandbox["sixsense"].log.entries(path_prefix="/v2/people/full")
    assert len(sixsense_log) == 24  # 28 new leads - 3 invalid emails - 1 duplicate email (cached)

    def state_of(email: str) -> tuple[str, str, str]:
        [lead] = [l for l in ledger.find_leads(key=email) if l.email == email.strip()] or ledger.find_leads(key=email)
        return lead.state, lead.reason, lead.detail

    for record in sandbox["salesforce"].leads():
        if record["Email"] in ("", "sybil.fawlty", "trent@@nin.example"):
            [lead] = ledger.find_leads(key=record["Id"])
            assert (lead.state, lead.reason) == ("skipped", "invalid_email")
            assert "no vendor was called" in lead.detail
    assert state_of("walter@unknown-startup.example")[:2] == ("skipped", "no_match")
    assert "No data found" in state_of("walter@unknown-startup.example")[2]
    assert state_of("xena@blankco.example")[:2] == ("skipped", "no_match")
    assert "blank" in state_of("xena@blankco.example")[2]
    assert state_of("uma.thurman@gmail.com")[:2] == ("skipped", "no_match")


def test_leads_created_before_the_watermark_are_untouched(sandbox, make_settings, ledger_url):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    night(settings, ledger)
    old_emails = {l.email for l in OLD_LEADS}
    for record in sandbox["salesforce"].leads():
        if record["Email"] in old_emails:
            assert ledger.find_leads(key=record["Id"]) == []
            assert record["SixSense_Company_Name__c"] is None
    written_ids = {w["id"] for w in sandbox["salesforce"].applied_writes}
    assert not written_ids & {r["Id"] for r in sandbox["salesforce"].leads() if r["Email"] in old_emails}


def test_a_rewound_second_run_rereads_every_lead_and_writes_nothing(sandbox, make_settings, ledger_url):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    first = night(settings, ledger)
    writes_after_first = len(sandbox["salesforce"].applied_writes)
    calls_after_first = len(sandbox["sixsense"].log.entries(path_prefix="/v2/people/full"))
    assert writes_after_first == 21

    watermark = current_window(settings).start - timedelta(hours=24)
    ledger.rewind_cursor(source="salesforce", watermark=watermark)
    second = night(settings, ledger)

    assert len(sandbox["salesforce"].applied_writes) == writes_after_first  # 0 identical rewrites
    assert second.fields_written == 0
    assert second.polled == first.polled == 28
    # Answers came from the ledger's cache: no new paid call.
    assert len(sandbox["sixsense"].log.entries(path_prefix="/v2/people/full")) == calls_after_first
    assert second.credits.get("sixsense") == 0 and sum(second.credits.values()) == 0
    assert second.states == {"done(up_to_date)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
    # The ledger says why, field by field, for every lead that was enriched.
    for record in sandbox["salesforce"].leads():
        leads = ledger.find_leads(key=record["Id"])
        if not leads or leads[0].reason != "up_to_date":
            continue
        latest = [w for w in ledger.field_writes(lead_id=leads[0].id) if w.run_id == second.run_id]
        assert len(latest) == 13
        assert {w.reason for w in latest} <= {"unchanged", "human_edited", "no_value"}
        assert all(w.decision == "skip" for w in latest)


def test_a_field_a_person_edited_after_our_write_is_not_overwritten(sandbox, make_settings, ledger_url):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    night(settings, ledger)
    crm = sandbox["salesforce"]
    [judy] = [r for r in crm.leads() if r["Email"] == "judy@6sense.com"]
    assert judy["NumberOfEmployees"] == 1192  # the sample's "1192" string, written as a number
    crm.human_edit(judy["Id"], "NumberOfEmployees", 1500)
    crm.human_edit(judy["Id"], "SixSense_Company_Name__c", "")  # emptied: ours to fill again

    ledger.rewind_cursor(source="salesforce", watermark=current_window(settings).start - timedelta(hours=24))
    second = night(settings, ledger)

    assert crm.lead(judy["Id"])["NumberOfEmployees"] == 1500
    assert crm.lead(judy["Id"])["SixSense_Company_Name__c"] == "6sense"
    [lead] = ledger.find_leads(key=judy["Id"])
    decisions = {w.field: w for w in ledger.field_writes(lead_id=lead.id) if w.run_id == second.run_id}
    assert decisions["NumberOfEmployees"].reason == "human_edited"
    assert decisions["NumberOfEmployees"].decision == "skip"
    assert decisions["SixSense_Company_Name__c"].decision == "write"
    assert decisions["SixSense_Company_Name__c"].state == "confirmed"
    assert second.fields_written == 1


def test_a_429_from_6sense_pauses_and_the_night_still_finishes(make_sandbox, make_settings, ledger_url):
    box = make_sandbox()
    box["sixsense"].faults.add(_fault("/v2/people/full", 429, {"status": "error", "message": "Too Many Requests"},
                                      {"Retry-After": "1"}, count=2))
    settings = make_settings(box, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    statuses = [e.status for e in box["sixsense"].log.entries(path_prefix="/v2/people/full")]
    assert statuses.count(429) == 2
    assert report.states == {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
    # After a 429 with Retry-After: 1 the token paused: calls already on the wire may land just
    # after it, but none was sent during the following second.
    entries = box["sixsense"].log.entries(path_prefix="/v2/people/full")
    last_429 = max(e.at for e in entries if e.status == 429)
    assert not [e for e in entries if last_429 + 0.1 < e.at < last_429 + 0.95]
    assert [e for e in entries if e.at >= last_429 + 0.95]


def test_6sense_rate_limit_is_kept_by_the_limiter_not_the_vendor(make_sandbox, make_settings, ledger_url):
    """With a tight limit on both sides, the limiter paces calls: the emulator answers no 429."""
    box = make_sandbox(extra={"sixsense": {"rate_limit": [5, 1]}})
    settings = make_settings(box, ledger_url, providers={"sixsense": {"rate_limit": {"requests": 5, "per_seconds": 1}}})
    report = night(settings, open_ledger(ledger_url, auto_migrate=True))
    entries = box["sixsense"].log.entries(path_prefix="/v2/people/full")
    assert [e.status for e in entries].count(429) == 0
    assert len(entries) == 24
    for i, entry in enumerate(entries):
        window = [e for e in entries[i:] if e.at - entry.at < 1.0]
        assert len(window) <= 5
    assert report.states["done(written)"] == 21


def test_an_expired_salesforce_session_mid_run_is_renewed(sandbox, make_settings, ledger_url):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    crm = sandbox["salesforce"]
    expired = []

    def expire_once(done: int, total: int) -> None:
        if not expired:  # the first leads are settled; the writes are still to come
            crm.expire_all_sessions()
            expired.append(done)

    report = night(settings, ledger, progress=expire_once)
    assert expired
    token_calls = crm.log.entries(path_prefix="/services/oauth2/token")
    assert len(token_calls) == 2
    assert any(e.status == 401 for e in crm.log.entries(path_prefix="/services/data"))
    assert report.states == {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
    assert len(crm.applied_writes) == 21


def test_a_lost_reply_after_the_crm_applied_a_write_is_confirmed_not_resent(make_sandbox, make_settings, ledger_url):
    box = make_sandbox()
    crm = box["salesforce"]
    crm.faults.add(_fault("/services/data/v59.0/composite/sobjects", 503, [{"errorCode": "SERVER_UNAVAILABLE",
                                                                       "message": "try later"}], when="after"))
    settings = make_settings(box, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    assert report.states["done(written)"] == 21
    assert len(crm.applied_writes) == 21  # applied once, never re-sent
    ids = [w["id"] for w in crm.applied_writes]
    assert len(ids) == len(set(ids))
    details = {l.detail for r in crm.leads() for l in ledger.find_leads(key=r["Id"])}
    assert any("confirmed on re-read" in d for d in details)
    for r in crm.leads():
        for lead in ledger.find_leads(key=r["Id"]):
            assert all(w.state in ("confirmed", "recorded") for w in ledger.field_writes(lead_id=lead.id))


def test_a_crash_between_planned_and_confirmed_never_writes_twice(sandbox, make_settings, ledger_url, monkeypatch):
    settings = make_settings(sandbox, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    original = Ledger.mark_writes

    class Crash(BaseException):
        pass

    def crash_on_confirm(self, *, ids, state, error=""):
        if state == "confirmed" and ids:
            raise Crash()
        return original(self, ids=ids, state=state, error=error)

    monkeypatch.setattr(Ledger, "mark_writes", crash_on_confirm)
    with pytest.raises(Crash):
        night(settings, ledger)
    monkeypatch.setattr(Ledger, "mark_writes", original)
    applied = len(sandbox["salesforce"].applied_writes)
    assert applied > 0
    planned = [w for r in sandbox["salesforce"].leads() for l in ledger.find_leads(key=r["Id"])
               for w in ledger.field_writes(lead_id=l.id) if w.state == "planned"]
    assert planned

    # The crashed worker's claim expires; the next run retries the lead.
    ledger.rewind_cursor(source="salesforce", watermark=current_window(settings).start - timedelta(hours=24))
    _expire_claims(ledger)
    night(settings, ledger)
    assert len(sandbox["salesforce"].applied_writes) == 21  # only the leads never written got written
    still_planned = [w for r in sandbox["salesforce"].leads() for l in ledger.find_leads(key=r["Id"])
                     for w in ledger.field_writes(lead_id=l.id) if w.state == "planned"]
    assert still_planned == []
    assert applied <= 21


def test_the_connector_trusts_only_the_configured_ca_bundle(sandbox, make_settings, ledger_url, tmp_path):
    """The Salesforce emulator serves HTTPS from a throw-away CA: without the bundle, no trust."""
    settings = make_settings(sandbox, ledger_url, sources={"salesforce": {"http": {"ca_bundle": None}}})
    ledger = open_ledger(ledger_url, auto_migrate=True)
    from connector.errors import TransientError
    with pytest.raises(TransientError, match="SSLError"):
        night(settings, ledger)
    assert sandbox["salesforce"].log.entries() == []


def test_a_mapping_naming_a_field_the_crm_lacks_fails_before_any_vendor_call(sandbox, make_settings, tmp_path):
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "salesforce.lead.yaml").write_text(
        "version: 1\nsource: salesforce\nobject: Lead\nidentity: {email: Email}\nfields:\n"
        "  Industry: {from: sixsense.company.industry}\n  Shoe_Size__c: {from: sixsense.company.name}\n"
    )
    settings = make_settings(sandbox, f"sqlite:///{tmp_path / 'l.db'}", mappings_dir=str(mappings))
    with pytest.raises(MappingError) as info:
        night(settings, open_ledger(settings.ledger_url))
    message = str(info.value)
    assert "salesforce.lead.yaml, line 7" in message and "Shoe_Size__c" in message and "fix:" in message
    assert sandbox["sixsense"].log.entries() == []


def _fault(path: str, status: int, body: Any, headers: dict[str, str] | None = None, *, count: int = 1,
           when: str = "before"):
    from connector.sandbox.server import Fault

    return Fault(path_prefix=path, status=status, body=body, headers=headers or {}, count=count, when=when)


def _expire_claims(ledger: Ledger) -> None:
    from sqlalchemy import update

    from connector.ledger.tables import Lead

    with ledger.session() as s:
        s.execute(update(Lead).values(claimed_until=datetime.now(timezone.utc) - timedelta(seconds=1)))
