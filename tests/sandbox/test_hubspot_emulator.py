"""The HubSpot emulator over a real socket, driven by the real hubspot-api-client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.oauth.exceptions import ApiException as OAuthApiException
from urllib3.util.retry import Retry

from connector.sandbox import EmulatorOptions, load_emulators
from connector.sandbox.hubspot import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PRIVATE_APP_TOKEN,
    SANDBOX_REFRESH_TOKEN,
    HubSpotEmulator,
    create_hubspot_emulator,
)
from connector.sandbox.seed import NEW_LEADS, OLD_LEADS
from connector.sandbox.server import EmulatorServer, Fault

NOW = datetime(2026, 3, 10, 2, 0, 0, tzinfo=timezone.utc)
SEEDED = len(OLD_LEADS) + len(NEW_LEADS)
RATE_HEADERS = ("X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Remaining",
                "X-HubSpot-RateLimit-Interval-Milliseconds")
DAILY_HEADERS = ("X-HubSpot-RateLimit-Daily", "X-HubSpot-RateLimit-Daily-Remaining")


class Running:
    def __init__(self, emulator: HubSpotEmulator, server: EmulatorServer) -> None:
        self.emu = emulator
        self.server = server
        self.base_url = server.base_url

    def client(self, token: str | None = SANDBOX_PRIVATE_APP_TOKEN) -> HubSpot:
        return HubSpot(access_token=token, host=self.base_url, retry=Retry(total=0))

    def refresh(self, **overrides: str) -> Any:
        params = {"grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
                  "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": SANDBOX_REFRESH_TOKEN, **overrides}
        return self.client(None).oauth.tokens_api.create(**params)


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    runs: list[Running] = []

    def _start(state_dir: Path | None = None, now: datetime | None = NOW, time_scale: float = 1.0,
               **extra: Any) -> Running:
        emulator = create_hubspot_emulator(EmulatorOptions(state_dir, now, time_scale, extra))
        run = Running(emulator, EmulatorServer(emulator.app).start())
        runs.append(run)
        return run

    yield _start
    for run in runs:
        run.server.stop()


@pytest.fixture
def hs(start: Callable[..., Running]) -> Running:
    # Most tests search more than 5 times a second; test_search_rate_limit_429 checks that limit.
    return start(search_per_second=1000)


def search(client: HubSpot, body: dict[str, Any]) -> Any:
    return client.crm.contacts.search_api.do_search(public_object_search_request=body)


def search_ids(client: HubSpot, **body: Any) -> list[str]:
    return [r.id for r in search(client, {"limit": 200, **body}).results]


def gt(prop: str, op: str, value: Any = None, **more: Any) -> dict[str, Any]:
    flt: dict[str, Any] = {"propertyName": prop, "operator": op}
    if value is not None:
        flt["value"] = value
    flt.update(more)
    return {"filterGroups": [{"filters": [flt]}]}


def error_body(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    return json.loads(exc.value.body)


def epoch_ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def update(client: HubSpot, inputs: list[tuple[str, dict[str, Any]]]) -> Any:
    batch = BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=i, properties=p) for i, p in inputs])
    return client.crm.contacts.batch_api.update_with_http_info(
        batch_input_simple_public_object_batch_input=batch)


# ---- registration, seeding, overrides ----------------------------------------------------------


def test_registered_seeded_and_overrides() -> None:
    assert load_emulators()["hubspot"] is create_hubspot_emulator
    emu = create_hubspot_emulator(EmulatorOptions(None, NOW))
    contacts = emu.contacts()
    assert len(contacts) == SEEDED
    assert [c["id"] for c in contacts[:3]] == ["1001", "1002", "1003"]
    by_name = {(c["properties"]["firstname"], c["properties"]["lastname"]): c for c in contacts}
    alice = by_name[("Alice", "Smith")]["properties"]
    assert alice["email"] == "  Alice.Smith@ACME-ROBOTICS.COM  "
    assert alice["jobtitle"] == "VP Operations" and alice["company"] == "Acme Robotics"
    assert alice["country"] == "US" and alice["sixsense_intent_score"] is None
    assert alice["createdate"].endswith(".000Z") and alice["lastmodifieddate"] == alice["createdate"]
    assert by_name[("Rupert", "Giles")]["properties"]["email"] is None
    assert by_name[("Eve", "Adams")]["properties"]["industry"] == "Aerospace"
    assert by_name[("Quinn", "Fabray")]["properties"]["numberofemployees"] == "5"
    assert emu.contact("1001")["properties"]["hs_object_id"] == "1001"
    assert SANDBOX_PRIVATE_APP_TOKEN.startswith("pat-na1-") and len(SANDBOX_PRIVATE_APP_TOKEN) == 44
    assert emu.settings_overrides("http://127.0.0.1:9", None) == {"sources": {"hubspot": {"enabled": True, 
        "base_url": "http://127.0.0.1:9", "access_token": SANDBOX_PRIVATE_APP_TOKEN,
        "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
        "refresh_token": SANDBOX_REFRESH_TOKEN}}}

    filled = create_hubspot_emulator(EmulatorOptions(None, NOW, extra={"filler_contacts": 5}))
    all_contacts = filled.contacts()
    assert len(all_contacts) == SEEDED + 5
    oldest_seed = min(c["properties"]["createdate"] for c in all_contacts[:SEEDED])
    assert all(c["properties"]["createdate"] < oldest_seed for c in all_contacts[SEEDED:])
    assert all_contacts[SEEDED]["id"] == str(1001 + SEEDED)


# ---- search -------------------------------------------------------------------------------------


def test_search_incremental_paging_and_shape(hs: Running) -> None:
    client = hs.client()
    since = NOW - timedelta(hours=24)
    request = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="createdate", operator="GT",
                                                   value=epoch_ms(since))])],
        sorts=["createdate"], properties=["email", "company", "numberofemployees"], limit=10, after="0")
    data, status, headers = client.crm.contacts.search_api.do_search_with_http_info(
        public_object_search_request=request)
    assert status == 200 and data.total == len(NEW_LEADS)
    assert not any(h in headers for h in RATE_HEADERS + DAILY_HEADERS)
    first = data.results[0]
    assert set(first.properties) == {"email", "company", "numberofemployees", "hs_object_id", "createdate",
                                     "lastmodifieddate"}
    assert first.properties["numberofemployees"] is None and first.archived is False
    assert first.properties["hs_object_id"] == first.id
    assert data.paging.next.after == "10" and data.paging.next.link == "?after=10"
    seen = [r.id for r in data.results]
    after = data.paging.next.after
    while after:
        request.after = after
        page = client.crm.contacts.search_api.do_search(public_object_search_request=request)
        seen += [r.id for r in page.results]
        after = page.paging.next.after if page.paging else None
    assert len(seen) == len(NEW_LEADS) == len(set(seen))
    stamps = [hs.emu.contact(i)["properties"]["createdate"] for i in seen]
    assert stamps == sorted(stamps)
    assert hs.emu.search_requests[0]["filterGroups"][0]["filters"][0] == {
        "propertyName": "createdate", "operator": "GT", "value": epoch_ms(since)}
    assert len(hs.emu.search_requests) == 3
    # Default limit 10 and default properties.
    default = search(client, {})
    assert len(default.results) == 10 and default.total == SEEDED
    assert set(default.results[0].properties) == {"email", "firstname", "lastname", "hs_object_id",
                                                  "createdate", "lastmodifieddate"}


def test_search_operators_dates_and_sorts(start: Callable[..., Running]) -> None:
    hs = start(search_per_second=1000)
    client = hs.client()
    since = NOW - timedelta(hours=24)
    iso = since.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert set(search_ids(client, **gt("createdate", "GT", iso))) == set(
        search_ids(client, **gt("createdate", "GT", epoch_ms(since))))
    asc = search_ids(client, sorts=[{"propertyName": "createdate", "direction": "ASCENDING"}])
    desc = search_ids(client, sorts=["-createdate"])
    desc_obj = search_ids(client, sorts=[{"propertyName": "createdate", "direction": "DESCENDING"}])
    assert desc == desc_obj and asc[0] == "1001" and desc[-1] == "1001"
    assert [hs.emu.contact(i)["properties"]["createdate"] for i in desc] == sorted(
        (hs.emu.contact(i)["properties"]["createdate"] for i in asc), reverse=True)

    rupert = search_ids(client, **gt("email", "NOT_HAS_PROPERTY"))
    assert [hs.emu.contact(i)["properties"]["firstname"] for i in rupert] == ["Rupert"]
    assert len(search_ids(client, **gt("email", "HAS_PROPERTY"))) == SEEDED - 1
    assert len(search_ids(client, **gt("email", "EQ", "BOB.JONES@acme-robotics.com"))) == 2
    assert len(search_ids(client, **gt("company", "NEQ", "Globex"))) == SEEDED - 4
    umbrella = search_ids(client, **gt("company", "IN", values=["umbrella", "Initech"]))
    assert len(umbrella) == 3 + 4
    assert len(search_ids(client, **gt("company", "NOT_IN", values=["Umbrella"]))) == SEEDED - 3
    assert len(search_ids(client, **gt("email", "CONTAINS_TOKEN", "globex"))) == 4
    assert len(search_ids(client, **gt("email", "CONTAINS_TOKEN", "acme*"))) == 7
    window = gt("createdate", "BETWEEN", epoch_ms(NOW - timedelta(hours=26)),
                highValue=(NOW - timedelta(hours=4)).isoformat())
    between = search_ids(client, **window)
    assert between and all(
        NOW - timedelta(hours=26) <= datetime.fromisoformat(hs.emu.contact(i)["properties"]["createdate"])
        <= NOW - timedelta(hours=4) for i in between)
    # OR of groups, AND inside a group.
    either = {"filterGroups": [
        {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "Alice"}]},
        {"filters": [{"propertyName": "company", "operator": "EQ", "value": "Initech"},
                     {"propertyName": "country", "operator": "EQ", "value": "DE"}]}]}
    names = sorted(hs.emu.contact(i)["properties"]["firstname"] for i in search_ids(client, **either))
    assert names == ["Alice", "Heidi"]
    assert len(search_ids(client, **gt("hs_object_id", "LTE", "1003"))) == 3
    assert search_ids(client, query="hopper") == [search_ids(client, **gt("lastname", "EQ", "Hopper"))[0]]


def test_search_validation_errors(start: Callable[..., Running]) -> None:
    hs = start(search_per_second=1000)
    client = hs.client()
    for body in ({"limit": 201}, gt("no_such_property", "EQ", "x"), gt("createdate", "GT", "yesterday"),
                 gt("email", "LIKE", "x"), {"sorts": ["-nope"]},
                 {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}] * 6}):
        with pytest.raises(ContactsApiException) as exc:
            search(client, body)
        assert exc.value.status == 400
        assert error_body(exc)["category"] == "VALIDATION_ERROR" and error_body(exc)["status"] == "error"
    assert len(hs.emu.search_requests) == 6  # 400s are recorded too


def test_search_ten_thousand_cap(start: Callable[..., Running]) -> None:
    hs = start(filler_contacts=10_000, search_per_second=1000)
    client = hs.client()
    near = search(client, {"limit": 200, "after": "9800", "sorts": ["createdate"]})
    assert near.total == 10_000 + SEEDED and len(near.results) == 200
    assert near.paging.next.after == "10000"
    with pytest.raises(ContactsApiException) as exc:
        search(client, {"limit": 200, "after": "9900"})
    assert exc.value.status == 400
    body = error_body(exc)
    assert body["category"] == "VALIDATION_ERROR" and body["status"] == "error" and "10,000" in body["message"]
    with pytest.raises(ContactsApiException):
        search(client, {"limit": 1, "after": near.paging.next.after})
    # The documented way out: restart the query from the last createdate seen.
    last = near.results[-1].properties["createdate"]
    rest = search(client, {"limit": 200, "sorts": ["createdate"], **gt("createdate", "GT", last)})
    assert rest.total == SEEDED


def test_search_rate_limit_429(start: Callable[..., Running]) -> None:
    hs = start(search_per_second=2)
    client = hs.client()
    search(client, {})
    search(client, {})
    with pytest.raises(ContactsApiException) as exc:
        search(client, {})
    assert exc.value.status == 429
    body = error_body(exc)
    assert body["message"] == "You have reached your secondly limit."
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY" and body["correlationId"]
    assert not any(h in exc.value.headers for h in RATE_HEADERS + DAILY_HEADERS)
    assert len(hs.emu.search_requests) == 2
    # Search does not use the burst window nor the daily count.
    assert hs.emu.daily_usage()[0] == 0
    time.sleep(1.05)
    assert search(client, {}).total == SEEDED


# ---- batch update and read ----------------------------------------------------------------------


def test_batch_update_all_ok_200(hs: Running) -> None:
    client = hs.client()
    before = hs.emu.contact("1004")["properties"]["lastmodifieddate"]
    data, status, headers = update(client, [
        ("1004", {"sixsense_intent_score": "87", "sixsense_buying_stage": "Decision", "industry": "Manufacturing"}),
        ("1005", {"numberofemployees": 2400, "annualrevenue": "3.1e8"}),
    ])
    assert status == 200 and data.status == "COMPLETE" and len(data.results) == 2
    assert all(h in headers for h in RATE_HEADERS + DAILY_HEADERS)
    stored = hs.emu.contact("1004")["properties"]
    assert stored["sixsense_intent_score"] == "87" and stored["sixsense_buying_stage"] == "Decision"
    assert stored["lastmodifieddate"] > before
    assert hs.emu.contact("1005")["properties"]["numberofemployees"] == "2400"
    assert [w["id"] for w in hs.emu.applied_writes] == ["1004", "1005"]
    assert hs.emu.applied_writes[1]["properties"] == {"numberofemployees": "2400", "annualrevenue": "3.1e8"}
    result = {r.id: r for r in data.results}["1004"]
    assert result.properties["industry"] == "Manufacturing" and result.properties["hs_object_id"] == "1004"


def test_batch_update_partial_207(hs: Running) -> None:
    client = hs.client()
    hs.emu.human_edit("1006", "industry", "Aerospace")
    data, status, _ = update(client, [
        ("1004", {"sixsense_profile_fit": "Strong", "sixsense_profile_score": "72.5"}),
        ("999999", {"industry": "Software"}),
        ("1005", {"no_such_prop": "x", "createdate": "2020-01-01", "sixsense_contact_grade": "E",
                  "sixsense_intent_score": "high", "annualrevenue": "1.2.3"}),
        ("1006", {"industry": ""}),
    ])
    assert status == 207 and data.num_errors == 2 and data.status == "COMPLETE"
    assert sorted(r.id for r in data.results) == ["1004", "1006"]
    errors = {e.context["ids"][0]: e for e in data.errors}
    assert errors["999999"].category == "OBJECT_NOT_FOUND" and errors["999999"].status == "error"
    invalid = errors["1005"]
    assert invalid.category == "VALIDATION_ERROR"
    codes = {d._in: d.code for d in invalid.errors}
    assert codes == {"no_such_prop": "PROPERTY_DOESNT_EXIST", "createdate": "READ_ONLY_VALUE",
                     "sixsense_contact_grade": "INVALID_OPTION", "sixsense_intent_score": "INVALID_INTEGER",
                     "annualrevenue": "INVALID_FLOAT"}
    assert hs.emu.contact("1005")["properties"]["sixsense_contact_grade"] is None
    assert hs.emu.contact("1004")["properties"]["sixsense_profile_score"] == "72.5"
    assert hs.emu.contact("1006")["properties"]["industry"] is None  # "" clears
    assert [w["id"] for w in hs.emu.applied_writes] == ["1004", "1006"]


def test_batch_limits_and_read(hs: Running) -> None:
    client = hs.client()
    with pytest.raises(ContactsApiException) as exc:
        update(client, [(str(1001 + i % 30), {"industry": "x"}) for i in range(101)])
    assert exc.value.status == 400 and error_body(exc)["category"] == "VALIDATION_ERROR"
    assert hs.emu.applied_writes == []
    read = BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id="1002"), SimplePublicObjectId(id="424242")],
        properties=["email", "company"], properties_with_history=[])
    data, status, _ = client.crm.contacts.batch_api.read_with_http_info(
        batch_read_input_simple_public_object_id=read)
    assert status == 207 and data.num_errors == 1 and data.errors[0].context == {"ids": ["424242"]}
    assert data.results[0].properties["email"] == "mariner@globex.example"
    one = client.crm.contacts.basic_api.get_by_id(contact_id="1002", properties=["company"])
    assert one.properties["company"] == "Globex"


# ---- properties ---------------------------------------------------------------------------------


def test_properties_metadata(hs: Running) -> None:
    client = hs.client()
    data, status, headers = client.crm.properties.core_api.get_all_with_http_info(object_type="contacts")
    assert status == 200
    props = {p.name: p for p in data.results}
    assert {"email", "hs_lead_status", "createdate", "industry", "numberofemployees", "annualrevenue",
            "sixsense_buying_stage", "sixsense_segments"} <= set(props)
    assert props["createdate"].modification_metadata.read_only_value is True
    assert props["hs_object_id"].type == "number"
    assert props["sixsense_intent_score"].type == "number"
    assert props["sixsense_intent_score"].modification_metadata.read_only_value is False
    stage = props["sixsense_buying_stage"]
    assert stage.type == "enumeration" and [o.value for o in stage.options] == [
        "Purchase", "Decision", "Consideration", "Awareness", "Target"]
    assert [o.value for o in props["sixsense_contact_grade"].options] == ["A", "B", "C", "D"]
    assert all(p.calculated is False for p in data.results)
    assert headers["X-HubSpot-RateLimit-Daily"] == "250000"
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "249999"
    assert headers["X-HubSpot-RateLimit-Max"] == "100" and headers["X-HubSpot-RateLimit-Remaining"] == "99"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    single = client.crm.properties.core_api.get_by_name(object_type="contacts", property_name="industry")
    assert single.type == "string"


# ---- burst and daily limits ---------------------------------------------------------------------


def test_burst_limit_429(start: Callable[..., Running]) -> None:
    hs = start(burst=[3, 10])
    client = hs.client()
    for _ in range(3):
        client.crm.properties.core_api.get_all(object_type="contacts")
    with pytest.raises(PropertiesApiException) as exc:
        client.crm.properties.core_api.get_all(object_type="contacts")
    assert exc.value.status == 429
    body = error_body(exc)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert body["status"] == "error" and body["correlationId"]
    assert exc.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert hs.emu.daily_usage()[0] == 3  # the refused request is not counted


def test_daily_limit_and_midnight_reset(start: Callable[..., Running]) -> None:
    local_now = datetime(2026, 3, 9, 23, 59, 50, tzinfo=ZoneInfo("America/New_York"))
    hs = start(now=local_now, time_scale=10, daily_limit=2)
    client = hs.client()
    began = time.monotonic()
    client.crm.properties.core_api.get_all(object_type="contacts")
    _, _, headers = client.crm.properties.core_api.get_all_with_http_info(object_type="contacts")
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    with pytest.raises(PropertiesApiException) as exc:
        client.crm.properties.core_api.get_all(object_type="contacts")
    assert exc.value.status == 429 and error_body(exc)["policyName"] == "DAILY"
    assert error_body(exc)["message"] == "You have reached your daily limit."
    # 10 quota seconds later (1 real second at time_scale 10) it is midnight in New York.
    time.sleep(max(0.0, 1.1 - (time.monotonic() - began)))
    _, _, headers = client.crm.properties.core_api.get_all_with_http_info(object_type="contacts")
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "1"


# ---- auth ---------------------------------------------------------------------------------------


def test_token_auth_failures(hs: Running) -> None:
    for token in (None, "pat-na1-00000000-0000-0000-0000-000000000000"):
        client = hs.client(token)
        with pytest.raises(ContactsApiException) as exc:
            search(client, {})
        assert exc.value.status == 401
        body = error_body(exc)
        assert body["category"] == "INVALID_AUTHENTICATION" and body["status"] == "error"
        assert body["message"].startswith("Authentication credentials not found") and body["correlationId"]
        with pytest.raises(PropertiesApiException) as exc2:
            client.crm.properties.core_api.get_all(object_type="contacts")
        assert exc2.value.status == 401 and "X-HubSpot-RateLimit-Max" not in exc2.value.headers
    assert hs.emu.search_requests == [] and hs.emu.daily_usage()[0] == 0


def test_oauth_refresh_headers_and_expiry(start: Callable[..., Running]) -> None:
    hs = start(time_scale=3600)  # 1800 s TTL -> 0.5 s
    tokens = hs.refresh()
    assert tokens.token_type == "bearer" and tokens.refresh_token == SANDBOX_REFRESH_TOKEN
    assert tokens.expires_in == 0
    client = hs.client(tokens.access_token)
    _, _, headers = client.crm.properties.core_api.get_all_with_http_info(object_type="contacts")
    assert all(h in headers for h in RATE_HEADERS)
    assert not any(h in headers for h in DAILY_HEADERS)
    assert search(client, {}).total == SEEDED
    time.sleep(0.6)
    with pytest.raises(ContactsApiException) as exc:
        search(client, {})
    assert exc.value.status == 401 and error_body(exc)["category"] == "EXPIRED_AUTHENTICATION"
    # A fresh token works again.
    assert search(hs.client(hs.refresh().access_token), {}).total == SEEDED


def test_oauth_expire_and_bad_refresh(hs: Running) -> None:
    tokens = hs.refresh()
    assert tokens.expires_in == 1800
    client = hs.client(tokens.access_token)
    assert client.crm.properties.core_api.get_all(object_type="contacts").results
    hs.emu.expire_oauth_tokens()
    with pytest.raises(PropertiesApiException) as exc:
        client.crm.properties.core_api.get_all(object_type="contacts")
    assert exc.value.status == 401 and error_body(exc)["category"] == "EXPIRED_AUTHENTICATION"
    for override, status in (({"refresh_token": "na1-nope"}, "BAD_REFRESH_TOKEN"),
                             ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET"),
                             ({"client_id": "wrong"}, "BAD_CLIENT_ID")):
        with pytest.raises(OAuthApiException) as oauth_exc:
            hs.refresh(**override)
        assert oauth_exc.value.status == 400 and error_body(oauth_exc)["status"] == status


# ---- helpers, persistence, faults ---------------------------------------------------------------


def test_human_edit_add_contact_and_state(start: Callable[..., Running], tmp_path: Path) -> None:
    hs = start(state_dir=tmp_path)
    client = hs.client()
    new_id = hs.emu.add_contact(email="new@globex.example", firstname="Nina", company="Globex")
    assert new_id == str(1001 + SEEDED)
    assert search_ids(client, **gt("email", "EQ", "new@globex.example")) == [new_id]
    hs.emu.human_edit(new_id, "jobtitle", "CFO")
    update(client, [(new_id, {"sixsense_segments": "Mid-Market"})])
    again = create_hubspot_emulator(EmulatorOptions(tmp_path, NOW))
    props = again.contact(new_id)["properties"]
    assert props["jobtitle"] == "CFO" and props["sixsense_segments"] == "Mid-Market"
    assert again.add_contact(firstname="Next") == str(1002 + SEEDED)
    with pytest.raises(KeyError):
        hs.emu.human_edit(new_id, "nope", "x")


def test_fault_injection_and_log(hs: Running) -> None:
    hs.emu.faults.add(Fault(path_prefix="/crm/v3/objects/contacts/search", status=502, body={"oops": 1}))
    client = hs.client()
    with pytest.raises(ContactsApiException) as exc:
        search(client, {})
    assert exc.value.status == 502
    assert search(client, {}).total == SEEDED
    entries = hs.emu.log.entries(path_prefix="/crm/v3/objects/contacts/search")
    assert [e.status for e in entries] == [502, 200] and entries[0].faulted
