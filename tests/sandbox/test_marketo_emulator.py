"""The Marketo emulator over a real socket with httpx: identity, limits, activities, leads, Sync Leads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import EmulatorOptions, load_emulators
from connector.sandbox.marketo import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    MarketoEmulator,
    create_marketo_emulator,
    decode_paging_token,
)
from connector.sandbox.seed import NEW_LEADS, OLD_LEADS
from connector.sandbox.server import EmulatorServer

NOW = datetime(2026, 3, 10, 2, 0, 0, tzinfo=UTC)
CREDENTIALS = {"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID,
               "client_secret": SANDBOX_CLIENT_SECRET}
TYPES = "/rest/v1/activities/types.json"


class Api:
    """An httpx client on a running emulator, with a token helper."""

    def __init__(self, emu: MarketoEmulator, client: httpx.Client) -> None:
        self.emu = emu
        self.client = client
        self._token: str | None = None

    def identity(self, method: str = "GET", **params: str) -> httpx.Response:
        return self.client.request(method, "/identity/oauth/token", params={**CREDENTIALS, **params})

    def token(self) -> str:
        response = self.identity()
        assert response.status_code == 200, response.text
        self._token = response.json()["access_token"]
        return self._token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self._token or self.token()}"}

    def get(self, path: str, params: Any = None, token: str | None = None) -> dict[str, Any]:
        response = self.client.get(path, params=params, headers=self.headers(token))
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, json: Any, token: str | None = None) -> dict[str, Any]:
        response = self.client.post(path, json=json, headers=self.headers(token))
        assert response.status_code == 200, response.text
        return response.json()


def make(state_dir: Path | None = None, now: datetime | None = NOW, **extra: Any) -> MarketoEmulator:
    return create_marketo_emulator(EmulatorOptions(state_dir, now, 1.0, extra))


@pytest.fixture
def start() -> Iterator[Callable[..., Api]]:
    running: list[tuple[EmulatorServer, httpx.Client]] = []

    def _start(emu: MarketoEmulator | None = None, **extra: Any) -> Api:
        emu = emu or make(**extra)
        server = EmulatorServer(emu.app).start()
        client = httpx.Client(base_url=server.base_url, timeout=10)
        running.append((server, client))
        return Api(emu, client)

    yield _start
    for server, client in running:
        client.close()
        server.stop()


@pytest.fixture
def api(start: Callable[..., Api]) -> Api:
    return start()


def frozen_clock(emu: MarketoEmulator, moment: datetime) -> list[float]:
    """Replace the emulator clock; move time by assigning to the returned cell."""
    cell = [moment.timestamp()]
    emu.clock = lambda: cell[0]
    return cell


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    assert body["success"] is False and "result" not in body, body
    assert "#" in body["requestId"]
    (error,) = body["errors"]
    return error["code"], error["message"]


def new_lead_type_id(api: Api) -> int:
    types = api.get(TYPES)["result"]
    return next(t["id"] for t in types if t["name"] == "New Lead")


# ---- registration, seed, overrides -------------------------------------------------------------


def test_registered_seeded_and_overrides() -> None:
    assert load_emulators()["marketo"] is create_marketo_emulator
    emu = make()
    assert emu.vendor == "marketo" and emu.tls is False
    leads = emu.leads()
    assert len(leads) == len(OLD_LEADS) + len(NEW_LEADS)
    assert [lead["id"] for lead in leads] == list(range(5001, 5001 + len(leads)))
    by_name = {(lead["firstName"], lead["lastName"]): lead for lead in leads}
    alice = by_name[("Alice", "Smith")]
    assert alice["email"] == "  Alice.Smith@ACME-ROBOTICS.COM  "
    assert alice["createdAt"] == alice["updatedAt"] and alice["createdAt"].endswith("Z")
    assert alice["sixsenseIntentScore"] is None
    assert by_name[("Rupert", "Giles")]["email"] is None
    assert by_name[("Eve", "Adams")]["industry"] == "Aerospace"
    assert by_name[("Quinn", "Fabray")]["numberOfEmployees"] == 5
    new_leads = [a for a in emu.activities() if a["activityTypeId"] == 12]
    assert sorted(a["leadId"] for a in new_leads) == [lead["id"] for lead in leads]
    assert all(a["activityDate"] == emu.lead(a["leadId"])["createdAt"] for a in new_leads)
    assert emu.settings_overrides("http://127.0.0.1:9", None) == {"sources": {"marketo": {"enabled": True, 
        "rest_url": "http://127.0.0.1:9/rest", "identity_url": "http://127.0.0.1:9/identity",
        "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET}}}


# ---- identity and auth errors ------------------------------------------------------------------


def test_token_reuse_expiry_and_bad_credentials(api: Api) -> None:
    cell = frozen_clock(api.emu, NOW)
    first = api.identity().json()
    assert first["token_type"] == "bearer" and first["expires_in"] == 3599
    assert first["scope"] == "api@sandbox.example" and first["access_token"].endswith(":ab")
    cell[0] += 100
    again = api.identity(method="POST").json()
    assert again["access_token"] == first["access_token"] and again["expires_in"] == 3499
    assert api.get(TYPES, token=first["access_token"])["success"] is True

    bad = api.client.get("/identity/oauth/token", params={**CREDENTIALS, "client_secret": "nope"})
    assert bad.status_code == 401
    assert bad.json() == {"error": "unauthorized", "error_description": "Bad client credentials"}

    calls = api.emu.daily_calls
    cell[0] += 3500  # 3600 s after issue
    assert error_of(api.get(TYPES, token=first["access_token"])) == ("602", "Access token expired")
    assert api.emu.daily_calls == calls  # 602 does not count
    fresh = api.identity().json()
    assert fresh["access_token"] != first["access_token"] and fresh["expires_in"] == 3599
    assert api.get(TYPES, token=fresh["access_token"])["success"] is True

    api.emu.expire_tokens()
    assert error_of(api.get(TYPES, token=fresh["access_token"]))[0] == "602"
    newest = api.identity().json()["access_token"]
    assert newest != fresh["access_token"]
    assert api.get(TYPES, token=newest)["success"] is True


def test_missing_and_invalid_tokens(api: Api) -> None:
    no_header = api.client.get(TYPES)
    assert no_header.status_code == 200
    assert error_of(no_header.json()) == ("600", "Access token not specified")
    assert error_of(api.get(TYPES, token="0000-bogus:ab")) == ("601", "Access token invalid")
    assert api.emu.daily_calls == 0
    # The deprecated query parameter works until 2026-08-31, then it is as if no token was sent.
    token = api.token()
    assert api.client.get(TYPES, params={"access_token": token}).json()["success"] is True
    frozen_clock(api.emu, datetime(2026, 9, 1, tzinfo=UTC))
    late = api.token()
    assert error_of(api.client.get(TYPES, params={"access_token": late}).json())[0] == "600"
    assert api.get(TYPES, token=late)["success"] is True


# ---- limits ------------------------------------------------------------------------------------


def test_rate_limit_606(start: Callable[..., Api]) -> None:
    api = start(rate=[3, 20])
    for _ in range(3):
        assert api.get(TYPES)["success"] is True
    assert error_of(api.get(TYPES)) == ("606", "Max rate limit '3' exceeded with in '20' secs")
    assert api.emu.daily_calls == 4  # a 606 is not starred in the error table: it counts


def test_concurrency_615(start: Callable[..., Api]) -> None:
    api = start(concurrency=1, latency_seconds=0.5)
    api.token()
    slow: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: slow.update(api.get(TYPES)))
    worker.start()
    deadline = time.monotonic() + 2
    while api.emu.in_flight.current == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    api.emu.latency_seconds = 0
    assert error_of(api.get(TYPES)) == ("615", "Concurrent access limit reached")
    worker.join()
    assert slow["success"] is True
    assert api.emu.in_flight.peak == 1
    assert api.get(TYPES)["success"] is True


def test_daily_quota_607_and_reset_at_midnight_chicago(start: Callable[..., Api]) -> None:
    api = start(daily_quota=3)
    # 2026-03-11 00:00 in Chicago (CDT, UTC-5) is 05:00 UTC; UTC midnight is no boundary.
    cell = frozen_clock(api.emu, datetime(2026, 3, 10, 23, 59, 58, tzinfo=UTC))
    api.token()
    assert api.get(TYPES)["success"] is True
    cell[0] += 4  # past UTC midnight
    assert api.get(TYPES)["success"] is True
    cell[0] = datetime(2026, 3, 11, 4, 59, 50, tzinfo=UTC).timestamp()
    api.token()
    assert api.get(TYPES)["success"] is True
    assert error_of(api.get(TYPES)) == ("607", "Daily quota reached")
    assert api.emu.daily_calls == 3
    cell[0] = datetime(2026, 3, 11, 5, 0, 1, tzinfo=UTC).timestamp()
    assert api.emu.daily_calls == 0
    assert api.get(TYPES)["success"] is True
    assert api.emu.daily_calls == 1
    # In winter (CST, UTC-6) the day ends at 06:00 UTC.
    cell[0] = datetime(2026, 1, 15, 5, 30, tzinfo=UTC).timestamp()
    api.emu.daily_calls = 2
    cell[0] += 29 * 60
    assert api.emu.daily_calls == 2
    cell[0] += 2 * 60
    assert api.emu.daily_calls == 0


def test_unknown_path_and_wrong_method(api: Api) -> None:
    assert error_of(api.get("/rest/v1/nothing.json")) == ("610", "Requested resource not found")
    response = api.client.delete(TYPES, headers=api.headers())
    assert error_of(response.json()) == ("605", "HTTP Method not supported")
    assert api.emu.daily_calls == 1  # 610 counts, 605 does not


# ---- activities --------------------------------------------------------------------------------


def test_activity_types(api: Api) -> None:
    body = api.get(TYPES)
    assert body["success"] is True
    by_id = {t["id"]: t for t in body["result"]}
    assert by_id[12]["name"] == "New Lead" and by_id[1]["name"] == "Visit Webpage"
    assert by_id[13]["name"] == "Change Data Value"
    assert all({"id", "name", "description", "attributes"} <= set(t) for t in body["result"])
    assert new_lead_type_id(api) == 12


def test_paging_token_and_new_lead_activities(api: Api) -> None:
    since = (NOW - timedelta(hours=24)).isoformat()  # "+00:00" offset; httpx encodes the "+"
    token_body = api.get("/rest/v1/activities/pagingtoken.json", {"sinceDatetime": since})
    assert token_body["success"] is True
    token = token_body["nextPageToken"]
    assert decode_paging_token(token) == (int((NOW - timedelta(hours=24)).timestamp()) * 1000, 0)

    type_id = new_lead_type_id(api)
    seen: list[dict[str, Any]] = []
    empty_while_more = 0
    for _ in range(60):
        page = api.get("/rest/v1/activities.json",
                       {"nextPageToken": token, "activityTypeIds": str(type_id), "batchSize": "300"})
        assert page["success"] is True and page["nextPageToken"]
        if page["moreResult"] and not page.get("result"):
            empty_while_more += 1
            assert "result" not in page
        seen.extend(page.get("result", []))
        token = page["nextPageToken"]
        if not page["moreResult"]:
            break
    else:
        pytest.fail("moreResult never became false")
    assert empty_while_more >= 3  # the first hours of the window hold no New Lead
    new_ids = {lead["id"] for lead in api.emu.leads()[len(OLD_LEADS):]}
    assert [a["leadId"] for a in seen] == sorted(a["leadId"] for a in seen)
    assert {a["leadId"] for a in seen} == new_ids and len(seen) == len(NEW_LEADS)
    for activity in seen:
        assert activity["activityTypeId"] == 12 and activity["marketoGUID"] == str(activity["id"])
        assert activity["primaryAttributeValueId"] == activity["leadId"]
        assert {"activityDate", "attributes"} <= set(activity)

    # The last token is the watermark: a lead added afterwards is found from it.
    added = api.emu.add_lead(email="late@globex.example", firstName="Late", lastName="Comer")
    page = api.get("/rest/v1/activities.json", {"nextPageToken": token, "activityTypeIds": "12"})
    assert [a["leadId"] for a in page["result"]] == [added] and page["moreResult"] is False


def test_activities_scan_cap_and_parameter_errors(api: Api) -> None:
    first_new = api.emu.lead(5001 + len(OLD_LEADS))
    since = datetime.fromisoformat(first_new["createdAt"]) - timedelta(minutes=5)
    token = api.get("/rest/v1/activities/pagingtoken.json",
                    {"sinceDatetime": since.strftime("%Y-%m-%dT%H:%M:%SZ")})["nextPageToken"]
    # batchSize=1 scans one activity of any type: the Visit Webpage before the New Lead.
    page = api.get("/rest/v1/activities.json",
                   {"nextPageToken": token, "activityTypeIds": "12", "batchSize": "1"})
    assert page["moreResult"] is True and "result" not in page
    page = api.get("/rest/v1/activities.json",
                   {"nextPageToken": page["nextPageToken"], "activityTypeIds": "12", "batchSize": "1"})
    assert [a["leadId"] for a in page["result"]] == [first_new["id"]]
    # Repeated and comma-separated type ids both work.
    both = api.get("/rest/v1/activities.json",
                   [("nextPageToken", token), ("activityTypeIds", "1"), ("activityTypeIds", "12")])
    assert {a["activityTypeId"] for a in both["result"]} == {1, 12}

    eleven = ",".join(str(i) for i in range(1, 12))
    assert error_of(api.get("/rest/v1/activities.json",
                            {"nextPageToken": token, "activityTypeIds": eleven}))[0] == "1003"
    assert error_of(api.get("/rest/v1/activities.json", {"nextPageToken": token}))[0] == "701"
    assert error_of(api.get("/rest/v1/activities.json",
                            {"nextPageToken": "not-a-token", "activityTypeIds": "12"}))[0] == "1003"
    unencoded = api.client.get("/rest/v1/activities/pagingtoken.json?sinceDatetime=2026-03-09T00:00:00+05:00",
                               headers=api.headers())
    assert error_of(unencoded.json()) == ("704", "Invalid date format")
    naive = api.get("/rest/v1/activities/pagingtoken.json", {"sinceDatetime": "2026-03-09T20:00:00"})
    assert decode_paging_token(naive["nextPageToken"])[0] == int(
        datetime(2026, 3, 10, 1, 0, tzinfo=UTC).timestamp() * 1000)  # read as CDT


# ---- leads -------------------------------------------------------------------------------------


def test_leads_by_id_fields_and_limits(api: Api) -> None:
    rupert = next(lead for lead in api.emu.leads() if lead["firstName"] == "Rupert")
    alice = next(lead for lead in api.emu.leads() if lead["firstName"] == "Alice")
    body = api.get("/rest/v1/leads.json", {"filterType": "id",
                                           "filterValues": f"{rupert['id']},{alice['id']},999999",
                                           "fields": "email,firstName,company,industry"})
    assert body["success"] is True
    assert body["result"] == [
        {"id": alice["id"], "email": alice["email"], "firstName": "Alice", "company": "Acme Robotics"},
        {"id": rupert["id"], "firstName": "Rupert", "company": "Sunnydale Library"},  # nulls omitted
    ]
    default = api.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": str(alice["id"])})
    assert set(default["result"][0]) == {"id", "email", "updatedAt", "createdAt", "firstName", "lastName"}
    dupes = api.get("/rest/v1/leads.json", {"filterType": "email", "filterValues": "BOB.JONES@acme-robotics.com"})
    assert len(dupes["result"]) == 2

    ids = ",".join(str(5001 + i) for i in range(300))
    assert len(api.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": ids})["result"]) == 31
    too_many = ids + ",9999"
    assert error_of(api.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": too_many}))[0] == "1003"
    assert error_of(api.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": "1",
                                                    "fields": "email,shoeSize"})) == (
        "1006", "Field 'shoeSize' not found")
    assert error_of(api.get("/rest/v1/leads.json", {"filterType": "firstName", "filterValues": "Alice"}))[0] == "1011"
    page = api.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": ids, "batchSize": "20"})
    assert len(page["result"]) == 20 and page["moreResult"] is True
    rest = api.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": ids, "batchSize": "20",
                                           "nextPageToken": page["nextPageToken"]})
    assert [r["id"] for r in rest["result"]] == list(range(5021, 5032)) and "moreResult" not in rest
    single = api.get(f"/rest/v1/lead/{alice['id']}.json", {"fields": "company"})
    assert single["result"] == [{"id": alice["id"], "company": "Acme Robotics"}]


def test_uri_too_long_414_then_post_with_method_get(api: Api) -> None:
    emails = ",".join(f"someone.with.a.long.address{i:03d}@example.com" for i in range(250))
    query = {"filterType": "email", "filterValues": emails + ",judy@6sense.com", "fields": "email"}
    response = api.client.get("/rest/v1/leads.json", params=query, headers=api.headers())
    assert response.status_code == 414
    assert api.emu.daily_calls == 0
    response = api.client.post("/rest/v1/leads.json", params={"_method": "GET"}, data=query,
                               headers=api.headers())
    assert response.status_code == 200
    assert [r["email"] for r in response.json()["result"]] == ["judy@6sense.com"]


def test_update_only_results_skips_and_applied_writes(api: Api) -> None:
    alice, bob = api.emu.leads()[3], api.emu.leads()[4]
    frozen_clock(api.emu, NOW + timedelta(minutes=5))
    body = api.post("/rest/v1/leads.json", {"action": "updateOnly", "lookupField": "id", "input": [
        {"id": alice["id"], "industry": "Manufacturing", "numberOfEmployees": 2400,
         "annualRevenue": 310000000, "sixsenseSegments": "x" * 1000, "sixsenseIntentScore": "87"},
        {"id": 999999, "industry": "Retail"},
        {"id": bob["id"], "sixsenseCompanyName": "y" * 256},
        {"id": bob["id"], "shoeSize": 44},
        {"id": bob["id"], "numberOfEmployees": "lots"},
        {"industry": "Retail"},
    ]})
    assert body["success"] is True
    results = body["result"]
    assert results[0] == {"id": alice["id"], "status": "updated"}
    assert results[1] == {"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}
    assert results[2]["status"] == "skipped" and results[2]["reasons"][0]["code"] == "1003"
    assert "sixsenseCompanyName" in results[2]["reasons"][0]["message"]
    assert results[3]["reasons"] == [{"code": "1006", "message": "Field 'shoeSize' not found"}]
    assert results[4]["reasons"][0]["code"] == "1001"
    assert results[5]["reasons"][0]["code"] == "1002"

    assert [w["id"] for w in api.emu.applied_writes] == [alice["id"]]
    write = api.emu.applied_writes[0]
    assert write["fields"]["sixsenseIntentScore"] == 87 and write["at"] == (NOW + timedelta(minutes=5)).timestamp()
    stored = api.emu.lead(alice["id"])
    assert stored["industry"] == "Manufacturing" and stored["sixsenseSegments"] == "x" * 1000
    assert stored["updatedAt"] == "2026-03-10T02:05:00Z" != alice["updatedAt"]
    assert api.emu.lead(bob["id"]) == bob
    changes = [a for a in api.emu.activities() if a["activityTypeId"] == 13 and a["leadId"] == alice["id"]]
    assert {a["primaryAttributeValue"] for a in changes} >= {"Industry", "6sense Segments"}

    too_many = {"action": "updateOnly", "lookupField": "id", "input": [{"id": alice["id"]}] * 301}
    assert error_of(api.post("/rest/v1/leads.json", too_many))[0] == "1003"
    huge = {"action": "updateOnly", "lookupField": "id",
            "input": [{"id": alice["id"], "sixsenseSegments": "z" * 60000}] * 20}
    assert api.client.post("/rest/v1/leads.json", json=huge, headers=api.headers()).status_code == 413
    form = api.client.post("/rest/v1/leads.json", data={"action": "updateOnly"}, headers=api.headers())
    assert error_of(form.json())[0] == "612"


def test_describe_and_describe2(api: Api) -> None:
    fields = {f["rest"]["name"]: f for f in api.get("/rest/v1/leads/describe.json")["result"]}
    for name in ("id", "email", "firstName", "lastName", "company", "country", "title", "website",
                 "createdAt", "updatedAt"):
        assert name in fields
    assert fields["updatedAt"]["rest"]["readOnly"] is True and fields["createdAt"]["dataType"] == "datetime"
    assert fields["industry"]["dataType"] == "string" and fields["industry"]["length"] == 255
    assert fields["numberOfEmployees"]["dataType"] == "integer"
    assert fields["annualRevenue"]["dataType"] == "currency"
    assert fields["sixsenseSegments"]["dataType"] == "text" and fields["sixsenseSegments"]["length"] == 65535
    assert fields["sixsenseIntentScore"]["dataType"] == "integer"
    assert fields["sixsenseCompanyName"]["soap"] == {"name": "sixsenseCompanyName", "readOnly": False}
    assert fields["company"]["soap"]["name"] == "Company"
    (lead_object,) = api.get("/rest/v1/leads/describe2.json")["result"]
    assert lead_object["name"] == "API Lead" and ["email"] in lead_object["searchableFields"]
    updateable = {f["name"]: f["updateable"] for f in lead_object["fields"]}
    assert updateable["sixsenseProfileFit"] is True and updateable["createdAt"] is False


# ---- persistence -------------------------------------------------------------------------------


def test_state_persists_across_instances(start: Callable[..., Api], tmp_path: Path) -> None:
    first = start(make(tmp_path))
    assert (tmp_path / "marketo.json").exists()
    target = first.emu.leads()[5]["id"]
    first.post("/rest/v1/leads.json", {"action": "updateOnly", "lookupField": "id",
                                       "input": [{"id": target, "sixsenseBuyingStage": "Decision"}]})
    added = first.emu.add_lead(email="new@initech.example", firstName="Nia", company="Initech")
    first.emu.human_edit(target, "Title", "Chief Widget Officer")
    calls = first.emu.daily_calls
    assert calls == 1

    second = start(make(tmp_path))
    stored = second.emu.lead(target)
    assert stored["sixsenseBuyingStage"] == "Decision" and stored["title"] == "Chief Widget Officer"
    assert second.emu.lead(added)["email"] == "new@initech.example"
    assert second.emu.daily_calls == calls
    assert second.emu.add_lead(email="another@initech.example") == added + 1
    assert any(a["leadId"] == added and a["activityTypeId"] == 12 for a in second.emu.activities())
    found = second.get("/rest/v1/leads.json", {"filterType": "id", "filterValues": str(added)})
    assert found["result"][0]["email"] == "new@initech.example"
    assert second.emu.applied_writes == []
