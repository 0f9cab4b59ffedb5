"""One contract every CRM source keeps, run against its emulator over real sockets.

The suite is parametrised over `connector.registry.SOURCES` (after `load_all()`), so a new source
is covered as soon as it registers; it then needs an entry in ADAPTERS below, which names the
emulator's test helpers (they differ per vendor) and the faults that mean "slow down" there.
The emulator's vendor name is the source's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.decisions import canonical, fit_problem
from connector.errors import InvalidRecordId, MappingError, QuotaExhausted
from connector.limiter import LimitSpec, MemoryLimiter, Permit, vendor_day
from connector.mapping import load_mapping
from connector.models import CrmLead, RecordUpdate
from connector.pipeline import check_mapping_fields
from connector.registry import SOURCES, load_all
from connector.sandbox import Sandbox
from connector.sandbox.server import Fault
from connector.settings import Settings
from connector.sources.base import Source, VendorContext

load_all()
SOURCE_NAMES = sorted(SOURCES)
TIME_SCALE = 10.0  # vendor windows and waits run ten times faster, in the emulators and the limiter


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    text = str(value).replace("Z", "+00:00")
    if text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass
class Adapter:
    """What differs between the emulators: their test helpers and their "slow down" answers."""

    add: Callable[[Any, str, datetime], str]  # (emulator, email, created) -> record id
    records: Callable[[Any], list[tuple[str, datetime]]]  # every record: (id, created)
    value: Callable[[Any, str, str], Any]  # (emulator, record id, field) -> stored value
    expire: Callable[[Any], None]  # every issued token/session is dead from now on
    token_path: str
    unknown_id: str
    text_field: str  # a mapped, writable text field with a length the CRM enforces
    rate_faults: list[Fault]  # one on the poll path, one on the read path
    expired_status: int | None = 401  # what the CRM answers to a dead token (None: HTTP 200 body)
    settings: dict[str, Any] = field(default_factory=dict)
    number_field: str | None = None  # a mapped number field whose range the CRM enforces (None: none is)
    picklist_field: str | None = None  # a mapped restricted picklist (None: the CRM has none)
    malformed_id: str = "not-an-id"  # a record id this CRM cannot have


def _sf_add(emu: Any, email: str, created: datetime) -> str:
    return emu.add_lead(Email=email, LastName="Contract", Company="Contract Co", CreatedDate=created)


def _hs_add(emu: Any, email: str, created: datetime) -> str:
    return emu.add_contact(email=email, lastname="Contract", company="Contract Co", createdate=created)


def _mk_add(emu: Any, email: str, created: datetime) -> str:
    return str(emu.add_lead(email=email, lastName="Contract", company="Contract Co", createdAt=created))


ADAPTERS: dict[str, Adapter] = {
    "salesforce": Adapter(
        add=_sf_add,
        records=lambda emu: [(r["Id"], _utc(r["CreatedDate"])) for r in emu.leads()],
        value=lambda emu, rid, f: emu.lead(rid)[f],
        expire=lambda emu: emu.expire_all_sessions(),
        token_path="/services/oauth2/token",
        unknown_id="00Q999999999999AAA",
        text_field="SixSense_Company_Name__c",
        rate_faults=[Fault(path_prefix="/services/data/v59.0/query", status=403, count=1, body=[{
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
            "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded."}])] * 2,
        settings={"query_page_size": 200},  # ties must straddle a page boundary
        number_field="NumberOfEmployees",
        picklist_field="SixSense_Profile_Fit__c",
        malformed_id="00Q' OR Id != '",
    ),
    "hubspot": Adapter(
        add=_hs_add,
        records=lambda emu: [(c["id"], _utc(c["properties"]["createdate"])) for c in emu.contacts()],
        value=lambda emu, rid, f: emu.contact(rid)["properties"][f],
        expire=lambda emu: emu.expire_oauth_tokens(),
        token_path="/oauth/v1/token",
        unknown_id="999999999",
        text_field="sixsense_company_name",
        rate_faults=[
            Fault(path_prefix="/crm/v3/objects/contacts/search", status=429, body={
                "status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                "correlationId": "c0ffee", "policyName": "SECONDLY"}),
            Fault(path_prefix="/crm/v3/objects/contacts/batch/read", status=429, body={
                "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": "r1"}),
        ],
        settings={"auth": "oauth"},  # private-app tokens never expire; the contract needs one that does
        picklist_field="sixsense_profile_fit",  # HubSpot numbers have no range
        malformed_id="51; DROP",
    ),
    "marketo": Adapter(
        add=_mk_add,
        records=lambda emu: [(str(r["id"]), _utc(r["createdAt"])) for r in emu.leads()],
        value=lambda emu, rid, f: emu.lead(int(rid))[f],
        expire=lambda emu: emu.expire_tokens(),
        token_path="/identity/oauth/token",
        unknown_id="999999",
        text_field="sixsenseCompanyName",
        rate_faults=[
            Fault(path_prefix="/rest/v1/activities.json", method="GET", status=200, body={
                "requestId": "e0e0#1", "success": False,
                "errors": [{"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}]}),
            Fault(path_prefix="/rest/v1/leads.json", method="GET", status=200, body={
                "requestId": "e0e0#2", "success": False,
                "errors": [{"code": "615", "message": "Concurrent access limit reached"}]}),
        ],
        expired_status=None,  # 602 comes in an HTTP 200 body
        number_field="numberOfEmployees",  # Marketo has no picklists through the REST API
        malformed_id="5001,5002",
    ),
}


class RecordingLimiter(MemoryLimiter):
    """The in-process limiter, remembering which keys it granted."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()

    def acquire(self, spec: LimitSpec, *, deadline: float | None = None, realtime: bool = False) -> Permit:
        self.keys.add(spec.key)
        return super().acquire(spec, deadline=deadline, realtime=realtime)

    def total_grants(self) -> int:
        return sum(self.grants(k) for k in self.keys)


@dataclass
class Crm:
    name: str
    box: Sandbox
    emu: Any
    settings: Settings
    limiter: RecordingLimiter
    source: Source
    adapter: Adapter

    @property
    def fields(self) -> list[str]:
        return list(load_mapping(self.settings.resolved_mappings_dir
                                 / getattr(self.settings.sources, self.name).mapping).crm_fields_to_read)

    def poll(self, since: datetime) -> list[CrmLead]:
        return [lead for page in self.source.poll_new(since=since, fields=self.fields, deadline=None) for lead in page]


@pytest.fixture(params=SOURCE_NAMES)
def crm(request: pytest.FixtureRequest, make_sandbox, make_settings, tmp_path) -> Iterator[Crm]:
    name = request.param
    adapter = ADAPTERS.get(name)
    if adapter is None:
        pytest.fail(f"source '{name}' is registered but tests/contract/test_sources.py has no adapter for "
                    "its emulator: add one to ADAPTERS")
    box = make_sandbox(vendors=[name], time_scale=TIME_SCALE)
    settings = make_settings(box, f"sqlite:///{tmp_path / 'unused.db'}", time_scale=TIME_SCALE,
                             sources={name: {"enabled": True, **adapter.settings}})
    limiter = RecordingLimiter()
    source = SOURCES[name](VendorContext(settings, limiter))
    try:
        yield Crm(name, box, box[name], settings, limiter, source, adapter)
    finally:
        source.close()


def _ids(leads: list[CrmLead]) -> list[str]:
    return [lead.record_id for lead in leads]


def test_poll_finds_exactly_the_leads_created_after_the_watermark(crm: Crm):
    since = datetime.now(UTC) - timedelta(hours=24)
    leads = crm.poll(since)
    expected = {rid for rid, created in crm.adapter.records(crm.emu) if created >= since}
    older = {rid for rid, created in crm.adapter.records(crm.emu) if created < since}
    assert len(expected) == 28 and len(older) == 3
    assert len(_ids(leads)) == len(set(_ids(leads))), "a lead was returned twice"
    assert set(_ids(leads)) == expected
    created = [lead.created_at for lead in leads]
    assert created == sorted(created), "pages must come oldest first"
    assert all(lead.created_at.tzinfo is not None for lead in leads)

    # Leads created after a later watermark, and nothing else.
    watermark = datetime.now(UTC) - timedelta(minutes=10)
    added = [crm.adapter.add(crm.emu, f"new{i}@contract.example", watermark + timedelta(minutes=1 + i))
             for i in range(3)]
    later = crm.poll(watermark)
    assert sorted(_ids(later)) == sorted(added)
    assert all(set(crm.fields) <= set(lead.values) for lead in later)


def test_no_lead_is_lost_when_many_share_one_creation_time(crm: Crm):
    tie = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)
    # More than one page of HubSpot search (200), Salesforce (200 here) and Marketo (300).
    added = {crm.adapter.add(crm.emu, f"tie{i}@contract.example", tie) for i in range(305)}
    leads = crm.poll(tie)
    assert len(_ids(leads)) == len(set(_ids(leads)))
    assert set(_ids(leads)) == added
    assert {lead.created_at for lead in leads} == {tie}


def test_a_bad_record_in_a_batch_write_fails_alone(crm: Crm):
    described = crm.source.describe(deadline=None)
    limit = described[crm.adapter.text_field].length
    assert limit, f"{crm.adapter.text_field} should have a length"
    since = datetime.now(UTC) - timedelta(hours=24)
    good = [lead.record_id for lead in crm.poll(since)][:3]
    f = crm.adapter.text_field
    updates = [
        RecordUpdate(good[0], {f: "Contract Co One"}),
        RecordUpdate(crm.adapter.unknown_id, {f: "Nobody"}),
        RecordUpdate(good[1], {f: "x" * (limit + 1)}),
        RecordUpdate(good[2], {f: "Contract Co Three"}),
    ]
    before = crm.adapter.value(crm.emu, good[1], f)
    results = crm.source.write_batch(updates=updates, deadline=None)
    assert [r.record_id for r in results] == [u.record_id for u in updates]
    assert [r.ok for r in results] == [True, False, False, True]
    for failed in (results[1], results[2]):
        assert failed.reason == "crm_rejected" and failed.message
        assert not failed.retryable
    assert f in results[2].fields
    assert crm.adapter.value(crm.emu, good[0], f) == "Contract Co One"
    assert crm.adapter.value(crm.emu, good[2], f) == "Contract Co Three"
    assert crm.adapter.value(crm.emu, good[1], f) == before


def test_a_token_that_expires_mid_run_is_renewed_without_failing(crm: Crm):
    since = datetime.now(UTC) - timedelta(hours=24)
    leads = crm.poll(since)
    assert len(crm.emu.log.entries(path_prefix=crm.adapter.token_path)) == 1
    crm.adapter.expire(crm.emu)

    current = crm.source.read(record_ids=_ids(leads)[:5], fields=crm.fields, deadline=None)
    assert sorted(_ids(current)) == sorted(_ids(leads)[:5])
    crm.adapter.expire(crm.emu)
    f = crm.adapter.text_field
    [result] = crm.source.write_batch(updates=[RecordUpdate(leads[0].record_id, {f: "Renewed Co"})], deadline=None)
    assert result.ok, result.message
    assert crm.adapter.value(crm.emu, leads[0].record_id, f) == "Renewed Co"
    assert len(crm.emu.log.entries(path_prefix=crm.adapter.token_path)) == 3
    if crm.adapter.expired_status is not None:
        assert [e.status for e in crm.emu.log.entries()].count(crm.adapter.expired_status) == 2


def test_a_rate_limit_reply_pauses_and_the_call_succeeds(crm: Crm):
    for fault in crm.adapter.rate_faults:
        crm.emu.faults.add(Fault(**fault.__dict__))
    since = datetime.now(UTC) - timedelta(hours=24)
    leads = crm.poll(since)
    assert len(leads) == 28
    current = crm.source.read(record_ids=_ids(leads), fields=crm.fields, deadline=None)
    assert sorted(_ids(current)) == sorted(_ids(leads))
    assert sum(1 for e in crm.emu.log.entries() if e.faulted) == len(crm.adapter.rate_faults)


def test_describe_returns_the_mapping_fields_as_writable(crm: Crm):
    fields = crm.source.describe(deadline=None)
    mapping = load_mapping(crm.settings.resolved_mappings_dir / getattr(crm.settings.sources, crm.name).mapping)
    assert mapping.source == crm.name
    for target in mapping.fields:
        assert target in fields, f"{target} is not described"
        assert fields[target].updateable, f"{target} should be writable"
    for crm_name in mapping.identity.values():
        assert crm_name in fields
    check_mapping_fields(mapping, fields)  # what the pipeline checks before a night
    read_only = [f for f in fields.values() if not f.updateable]
    assert read_only, "the CRM's system fields (ids, creation dates) are read-only"
    for f in fields.values():
        if f.type == "picklist":
            assert f.picklist_values


def test_every_request_the_crm_receives_was_granted_by_the_limiter(crm: Crm):
    crm.source.describe(deadline=None)
    leads = crm.poll(datetime.now(UTC) - timedelta(hours=24))
    crm.source.read(record_ids=_ids(leads), fields=crm.fields, deadline=None)
    crm.adapter.expire(crm.emu)
    crm.source.write_batch(updates=[RecordUpdate(leads[0].record_id, {crm.adapter.text_field: "Metered"})],
                           deadline=None)
    received = len(crm.emu.log.entries())
    assert received > 3
    assert crm.limiter.total_grants() == received
    assert crm.source.session.calls == received  # what the night's report shows  # type: ignore[attr-defined]


def test_the_limits_describe_reports_are_the_ones_the_crm_enforces(crm: Crm):
    """decide() refuses a value past a number field's range or outside a restricted picklist, as
    describe reports them; the CRM refuses exactly past the same limits, so a value decide() lets
    through never makes the CRM reject a record."""
    fields = crm.source.describe(deadline=None)
    ids = _ids(crm.poll(datetime.now(UTC) - timedelta(hours=24)))[:4]
    cases: list[tuple[str, Any, Any, bool]] = []  # (record id, field, value, the CRM takes it)
    if crm.adapter.number_field:
        number = fields[crm.adapter.number_field]
        assert number.min_value == -number.max_value and number.max_value is not None
        cases += [(ids[0], number, int(number.max_value), True), (ids[1], number, int(number.max_value) + 1, False)]
    if crm.adapter.picklist_field:
        picklist = fields[crm.adapter.picklist_field]
        assert picklist.restricted_picklist and len(picklist.picklist_values) == 3
        allowed = picklist.picklist_values[-1]
        cases += [(ids[2], picklist, allowed, True), (ids[3], picklist, f"{allowed} Plus", False)]
    for _, crm_field, value, taken in cases:
        assert (fit_problem(canonical(value, crm_field), crm_field) is None) is taken, (crm_field.name, value)
    results = crm.source.write_batch(
        updates=[RecordUpdate(rid, {crm_field.name: value}) for rid, crm_field, value, _ in cases], deadline=None)
    assert [r.ok for r in results] == [taken for *_, taken in cases], [r.message for r in results]


def test_a_malformed_record_id_is_an_input_error_naming_it_and_is_never_sent(crm: Crm):
    leads = crm.poll(datetime.now(UTC) - timedelta(hours=24))
    bad = crm.adapter.malformed_id
    before = len(crm.emu.log.entries())
    with pytest.raises(InvalidRecordId) as info:
        crm.source.read(record_ids=[leads[0].record_id, bad], fields=crm.fields, deadline=None)
    error = info.value
    assert not isinstance(error, MappingError)
    assert (error.record_id, error.source, error.reason) == (bad, crm.name, "invalid_record_id")
    assert f"{crm.name}: record id {bad!r} is not a {crm.name} record id" in str(error) and error.fix
    assert len(crm.emu.log.entries()) == before, "the malformed id reached the CRM"
    # In a batch write the malformed record fails alone, unsent; the others are written.
    f = crm.adapter.text_field
    results = crm.source.write_batch(updates=[RecordUpdate(bad, {f: "Never Co"}),
                                              RecordUpdate(leads[1].record_id, {f: "Written Co"})], deadline=None)
    assert [r.ok for r in results] == [False, True]
    assert repr(bad) in results[0].message and not results[0].retryable
    assert crm.adapter.value(crm.emu, leads[1].record_id, f) == "Written Co"
    assert len(crm.emu.log.entries()) == before + 1


def test_salesforce_answering_with_a_malformed_record_id_is_an_input_error_naming_the_settings(
        make_sandbox, make_settings, tmp_path):
    box = make_sandbox(vendors=["salesforce"], time_scale=TIME_SCALE)
    settings = make_settings(box, f"sqlite:///{tmp_path / 'unused.db'}", time_scale=TIME_SCALE)
    box["salesforce"].faults.add(Fault(path_prefix="/services/data/v59.0/query", status=200, body={
        "totalSize": 1, "done": True, "records": [{"attributes": {"type": "Lead"}, "Id": "<b>lead</b>",
                                                   "CreatedDate": "2026-01-02T03:04:05.000+0000"}]}))
    source = SOURCES["salesforce"](VendorContext(settings, MemoryLimiter()))
    try:
        with pytest.raises(InvalidRecordId) as info:
            list(source.poll_new(since=datetime.now(UTC) - timedelta(hours=24), fields=["Email"], deadline=None))
    finally:
        source.close()
    assert "salesforce answered with record id '<b>lead</b>'" in str(info.value)
    assert "sources.salesforce" in str(info.value.fix)


# ---- Marketo only: rate limits answered as HTTP 429 ----------------------------------------------


class PauseRecordingLimiter(RecordingLimiter):
    """The in-process limiter, remembering every cooldown it was asked for: (key, seconds, when)."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[tuple[str, float, float]] = []

    def pause(self, key: str, seconds: float) -> None:
        self.pauses.append((key, seconds, time.time()))
        super().pause(key, seconds)


def _marketo(make_sandbox, make_settings, tmp_path, **extra: Any) -> tuple[Any, Any, PauseRecordingLimiter]:
    # One activities page covers the day, so a poll is a handful of calls.
    box = make_sandbox(vendors=["marketo"], time_scale=TIME_SCALE,
                       extra={"marketo": {"activity_page_span_seconds": 3 * 86400, **extra}})
    settings = make_settings(box, f"sqlite:///{tmp_path / 'unused.db'}", time_scale=TIME_SCALE,
                             sources={"marketo": {"enabled": True}})
    limiter = PauseRecordingLimiter()
    return box["marketo"], SOURCES["marketo"](VendorContext(settings, limiter)), limiter


def test_marketo_http_429s_pause_the_shared_limiter_key_and_the_calls_succeed(make_sandbox, make_settings, tmp_path):
    """Marketo allows 3 calls per 20 s (2 s here) and answers 606 as HTTP 429 with Retry-After; the
    connector's own window (100 per 20 s) lets more through, so only the 429s can slow it."""
    emu, source, limiter = _marketo(make_sandbox, make_settings, tmp_path, rate=[3, 20], limit_status=429)
    try:
        leads = [lead for page in source.poll_new(since=datetime.now(UTC) - timedelta(hours=24),
                                                  fields=["email", "company"], deadline=None) for lead in page]
        current = source.read(record_ids=_ids(leads), fields=["email"], deadline=None)
        # A 429 without a Marketo body (a gateway's page) pauses for its Retry-After.
        emu.faults.add(Fault(path_prefix="/rest/v1/leads.json", method="GET", status=429,
                             body="<html>Too Many Requests</html>", headers={"Retry-After": "3"}))
        again = source.read(record_ids=_ids(leads)[:5], fields=["email"], deadline=None)
    finally:
        source.close()
    assert len(leads) == 28 and sorted(_ids(current)) == sorted(_ids(leads)) and len(again) == 5
    log = emu.log.entries(path_prefix="/rest/")
    limited = [i for i, e in enumerate(log) if e.status == 429]
    assert len(limited) >= 2 and log[limited[-1]].faulted
    assert [(key, round(seconds, 3)) for key, seconds, _ in limiter.pauses] == \
        [(source.spec.key, 2.0)] * (len(limited) - 1) + [(source.spec.key, 0.3)]
    for index, (_, seconds, paused_at) in zip(limited, limiter.pauses, strict=True):
        assert log[index + 1].started >= paused_at + seconds - 0.02, "a call went out during the cooldown"
    assert limiter.total_grants() == len(emu.log.entries())  # every request on the wire was granted


def test_marketo_daily_quota_answered_as_http_429_stops_until_marketos_midnight(make_sandbox, make_settings,
                                                                                tmp_path):
    emu, source, limiter = _marketo(make_sandbox, make_settings, tmp_path, daily_quota=2, limit_status=429)
    try:
        with pytest.raises(QuotaExhausted) as info:
            list(source.poll_new(since=datetime.now(UTC) - timedelta(hours=24), fields=["email"], deadline=None))
    finally:
        source.close()
    assert info.value.reason == "quota" and "607" in info.value.message
    assert info.value.reset_at == pytest.approx(vendor_day(source.spec, time.time())[1], abs=1)
    assert [e.status for e in emu.log.entries(path_prefix="/rest/")] == [200, 200, 429]  # never retried
    assert limiter.pauses == []


# ---- HubSpot only: the 10,000-result cap of CRM search -----------------------------------------


def test_hubspot_search_past_ten_thousand_results_restarts_without_losing_ties(make_sandbox, make_settings, tmp_path):
    box = make_sandbox(vendors=["hubspot"], time_scale=TIME_SCALE,
                       extra={"hubspot": {"filler_contacts": 9_890, "search_per_second": 1000}})
    settings = make_settings(box, f"sqlite:///{tmp_path / 'unused.db'}", time_scale=TIME_SCALE, sources={
        "hubspot": {"enabled": True, "search_rate_limit": {"requests": 1000, "per_seconds": 1}}})
    emu = box["hubspot"]
    contacts = emu.contacts()
    fillers = [c for c in contacts if (c["properties"]["email"] or "").startswith("filler")]
    first = _utc(fillers[0]["properties"]["createdate"])
    # 300 contacts share one timestamp right after the fillers: results 9,890..10,189, across the cap.
    tie = _utc(fillers[-1]["properties"]["createdate"]) + timedelta(seconds=1)
    tied = {emu.add_contact(email=f"tie{i}@cap.example", createdate=tie) for i in range(300)}
    source = SOURCES["hubspot"](VendorContext(settings, MemoryLimiter()))
    try:
        leads = [lead for page in source.poll_new(since=first, fields=["email"], deadline=None) for lead in page]
    finally:
        source.close()
    ids = _ids(leads)
    assert len(ids) == len(set(ids)) == len(emu.contacts()) == 9_890 + 300 + 31
    assert tied <= set(ids)
    searches = emu.search_requests
    assert all(int(s.get("after") or 0) + s["limit"] <= 10_000 for s in searches)
    restarted = [s for s in searches if len(s["filterGroups"]) == 2]
    assert restarted, "the query should have restarted from the last createdate seen"
    assert statuses_ok(emu)


def statuses_ok(emu: Any) -> bool:
    return all(e.status == 200 for e in emu.log.entries())


def test_hubspot_a_400_naming_a_property_fails_its_records_and_sends_the_others_once(make_sandbox, make_settings,
                                                                                     tmp_path):
    """Real HubSpot refuses a whole batch update (400, nothing applied) for an unknown or read-only
    property; the emulator answers 207 per record, so the 400 is injected."""
    box = make_sandbox(vendors=["hubspot"], time_scale=TIME_SCALE)
    settings = make_settings(box, f"sqlite:///{tmp_path / 'unused.db'}", time_scale=TIME_SCALE,
                             sources={"hubspot": {"enabled": True}})
    emu = box["hubspot"]
    listed = '[{"isValid":false,"message":"Property \\"shoe_size\\" does not exist","error":"PROPERTY_DOESNT_EXIST",' \
             '"name":"shoe_size"}]'
    emu.faults.add(Fault(path_prefix="/crm/v3/objects/contacts/batch/update", status=400, body={
        "status": "error", "category": "VALIDATION_ERROR", "correlationId": "c0ffee",
        "message": f"Property values were not valid: {listed}"}))
    ids = [c["id"] for c in emu.contacts()][:3]
    source = SOURCES["hubspot"](VendorContext(settings, MemoryLimiter()))
    try:
        results = source.write_batch(updates=[
            RecordUpdate(ids[0], {"sixsense_company_name": "Kept Co"}),
            RecordUpdate(ids[1], {"sixsense_company_name": "Bad Co", "shoe_size": "44"}),
            RecordUpdate(ids[2], {"sixsense_domain": "kept.example"}),
        ], deadline=None)
    finally:
        source.close()
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].fields == ("shoe_size",) and "PROPERTY_DOESNT_EXIST" in results[1].message
    assert [w["id"] for w in emu.applied_writes] == [ids[0], ids[2]]
    assert [e.status for e in emu.log.entries(path_prefix="/crm/v3/objects/contacts/batch/update")] == [400, 200]
