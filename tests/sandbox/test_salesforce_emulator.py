"""The Salesforce emulator, driven by the real simple-salesforce client over a real TLS socket."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connector.sandbox import EmulatorOptions, load_emulators
from connector.sandbox.salesforce import (
    HUMAN_USER_ID,
    INTEGRATION_USER_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    SalesforceEmulator,
    create_salesforce_emulator,
)
from connector.sandbox.seed import LONG_COMPANY_NAME, NEW_LEADS, OLD_LEADS
from connector.sandbox.server import EmulatorServer, TlsFiles, make_tls_files

NOW = datetime(2026, 3, 10, 2, 0, 0, tzinfo=timezone.utc)


class Running:
    def __init__(self, emulator: SalesforceEmulator, server: EmulatorServer, tls: TlsFiles) -> None:
        self.sessions: list[requests.Session] = []
        self.emu = emulator
        self.server = server
        self.base_url = server.base_url
        self.ca = str(tls.ca_bundle)
        self.token_url = f"{self.base_url}/services/oauth2/token"

    def token(self, **overrides: str) -> str:
        data = {"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SANDBOX_CLIENT_SECRET, **overrides}
        response = requests.post(self.token_url, data=data, verify=self.ca, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def client(self, token: str | None = None) -> Salesforce:
        session = requests.Session()
        session.verify = self.ca
        # Else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override session.verify.
        session.trust_env = False
        self.sessions.append(session)
        return Salesforce(session_id=token or self.token(), instance_url=self.base_url, session=session)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def start(tls: TlsFiles) -> Iterator[Callable[..., Running]]:
    runs: list[Running] = []

    def _start(state_dir: Path | None = None, now: datetime | None = NOW, time_scale: float = 1.0,
               **extra: Any) -> Running:
        emulator = create_salesforce_emulator(EmulatorOptions(state_dir, now, time_scale, extra))
        run = Running(emulator, EmulatorServer(emulator.app, tls=tls).start(), tls)
        runs.append(run)
        return run

    yield _start
    for run in runs:
        for session in run.sessions:
            session.close()
        # On Python 3.11 a TLS connection the client closed without close_notify lingers on the
        # server side (asyncio's 30 s SSL shutdown timeout), and uvicorn's graceful shutdown waits
        # for it: EmulatorServer.stop() would give up only after its 10 s join timeout. Nothing is
        # in flight at teardown, so skip the graceful wait.
        run.server._server.force_exit = True
        run.server.stop()


@pytest.fixture
def sf(start: Callable[..., Running]) -> Running:
    return start()


def soql_datetime(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return exc.value.content[0]["errorCode"]


# ---- registration, seeding, overrides ----------------------------------------------------------


def test_registered_and_seeded() -> None:
    assert load_emulators()["salesforce"] is create_salesforce_emulator
    emulator = create_salesforce_emulator(EmulatorOptions(None, NOW))
    leads = emulator.leads()
    assert len(leads) == len(OLD_LEADS) + len(NEW_LEADS)
    assert [lead["Id"] for lead in leads[:2]] == ["00Q000000000001AAA", "00Q000000000002AAA"]
    assert all(len(lead["Id"]) == 18 for lead in leads)
    by_name = {(lead["FirstName"], lead["LastName"]): lead for lead in leads}
    alice = by_name[("Alice", "Smith")]
    assert alice["Email"] == "  Alice.Smith@ACME-ROBOTICS.COM  "
    assert alice["LeadSource"] == "Web" and alice["Status"] == "Open - Not Contacted"
    assert alice["LastModifiedById"] == HUMAN_USER_ID
    assert alice["SixSense_Intent_Score__c"] is None
    assert alice["CreatedDate"] == alice["LastModifiedDate"] == alice["SystemModstamp"]
    assert by_name[("Rupert", "Giles")]["Email"] == ""
    assert by_name[("Eve", "Adams")]["Industry"] == "Aerospace"
    assert by_name[("Quinn", "Fabray")]["NumberOfEmployees"] == 5
    overrides = emulator.settings_overrides("https://127.0.0.1:1234", Path("/x/ca.pem"))
    assert overrides == {"sources": {"salesforce": {
        "token_url": "https://127.0.0.1:1234/services/oauth2/token",
        "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
        "username": SANDBOX_USERNAME, "password": SANDBOX_PASSWORD,
        "http": {"ca_bundle": "/x/ca.pem"}}}}
    assert emulator.settings_overrides("https://h", None)["sources"]["salesforce"]["http"] == {"ca_bundle": None}


# ---- OAuth -------------------------------------------------------------------------------------


def test_oauth_flows_and_bad_credentials(sf: Running) -> None:
    post = lambda **kw: requests.post(sf.token_url, verify=sf.ca, timeout=5, **kw)  # noqa: E731

    body = post(data={"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID,
                      "client_secret": SANDBOX_CLIENT_SECRET}).json()
    assert body["instance_url"] == sf.base_url
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("00D") and "!" in body["access_token"]
    assert body["id"].endswith(f"/{INTEGRATION_USER_ID}") and "/id/00D" in body["id"]
    assert body["issued_at"].isdigit() and base64.b64decode(body["signature"])
    assert "expires_in" not in body

    basic = base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()).decode()
    via_header = post(data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"})
    assert via_header.status_code == 200

    password = post(data={"grant_type": "password", "client_id": SANDBOX_CLIENT_ID,
                          "client_secret": SANDBOX_CLIENT_SECRET, "username": SANDBOX_USERNAME,
                          "password": SANDBOX_PASSWORD})
    assert password.status_code == 200
    tokens = {body["access_token"], via_header.json()["access_token"], password.json()["access_token"]}
    assert len(tokens) == 3
    for token in tokens:
        assert sf.client(token).limits()["DailyApiRequests"]["Max"] == 15000

    bad_secret = post(data={"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID,
                            "client_secret": "nope"})
    assert bad_secret.status_code == 400
    assert bad_secret.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}
    bad_basic = base64.b64encode(f"{SANDBOX_CLIENT_ID}:wrong".encode()).decode()
    assert post(data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {bad_basic}"}).json()["error"] == "invalid_client"

    bad_password = post(data={"grant_type": "password", "client_id": SANDBOX_CLIENT_ID,
                              "client_secret": SANDBOX_CLIENT_SECRET, "username": SANDBOX_USERNAME,
                              "password": "wrong"})
    assert bad_password.status_code == 400
    assert bad_password.json() == {"error": "invalid_grant", "error_description": "authentication failure"}

    unsupported = post(data={"grant_type": "authorization_code", "code": "x"})
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"


def test_data_calls_need_a_valid_session(sf: Running) -> None:
    versions = requests.get(f"{sf.base_url}/services/data/", verify=sf.ca, timeout=5)
    assert versions.status_code == 200
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions.json()
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = requests.get(f"{sf.base_url}/services/data/v59.0/limits/", headers=headers,
                                verify=sf.ca, timeout=5)
        assert response.status_code == 401
        assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        assert response.headers["Sforce-Limit-Info"] == "api-usage=0/15000"
    client = sf.client()
    with pytest.raises(SalesforceResourceNotFound) as exc:
        client.restful("no/such/resource")
    assert error_code(exc) == "NOT_FOUND"


def test_session_expiry_by_ttl_and_by_helper(start: Callable[..., Running]) -> None:
    run = start(session_ttl_seconds=3600, time_scale=3600 / 0.3)  # sessions last 0.3 s
    client = run.client()
    client.limits()
    time.sleep(0.4)
    with pytest.raises(SalesforceExpiredSession) as exc:
        client.limits()
    assert error_code(exc) == "INVALID_SESSION_ID"
    assert run.client().limits()  # a new token works

    # expire_all_sessions invalidates every token already issued
    other = start()
    first, second = other.client(), other.client()
    first.limits()
    other.emu.expire_all_sessions()
    for client in (first, second):
        with pytest.raises(SalesforceExpiredSession) as exc:
            client.query("SELECT Id FROM Lead")
        assert error_code(exc) == "INVALID_SESSION_ID"
    assert other.client().query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


# ---- query -------------------------------------------------------------------------------------


def test_incremental_query_pages_across_the_watermark(start: Callable[..., Running]) -> None:
    run = start(max_page_size=5)
    client = run.client()
    watermark = NOW - timedelta(hours=24)
    soql = (f"SELECT Id, Email, CreatedDate, SystemModstamp FROM Lead WHERE CreatedDate >= "
            f"{soql_datetime(watermark)} ORDER BY CreatedDate, Id")

    first = client.query(soql)
    assert first["done"] is False and first["totalSize"] == len(NEW_LEADS)
    assert len(first["records"]) == 5
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    assert first["nextRecordsUrl"].endswith("-5")
    record = first["records"][0]
    assert record["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{record['Id']}"}
    assert list(record) == ["attributes", "Id", "Email", "CreatedDate", "SystemModstamp"]
    assert len(record["CreatedDate"]) == 28 and record["CreatedDate"].endswith(".000+0000")

    run.emu.log.clear()
    everything = client.query_all(soql)
    rows = everything["records"]
    assert len(rows) == len(NEW_LEADS)
    pages = run.emu.log.entries(path_prefix="/services/data/v59.0/query")
    assert len(pages) == -(-len(NEW_LEADS) // 5)
    keys = [(r["CreatedDate"], r["Id"]) for r in rows]
    assert keys == sorted(keys)
    assert len({r["Id"] for r in rows}) == len(rows)
    assert {r["Email"] for r in rows} >= {"  Alice.Smith@ACME-ROBOTICS.COM  ", ""}
    assert min(r["CreatedDate"] for r in rows) >= watermark.strftime("%Y-%m-%dT%H:%M:%S")

    parsed = run.emu.parsed_queries[-1]
    assert parsed["object"] == "Lead"
    assert parsed["fields"] == ["Id", "Email", "CreatedDate", "SystemModstamp"]
    assert parsed["literals"] == [watermark]

    # batchSize within 200..2000 cannot raise the page above max_page_size
    capped = client.query(soql, headers={"Sforce-Query-Options": "batchSize=200"})
    assert len(capped["records"]) == 5

    # an unknown or stale locator
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query_more("01g999999999999AAA-5")
    assert error_code(exc) == "INVALID_QUERY_LOCATOR"


def test_batch_size_header_sets_the_page(start: Callable[..., Running]) -> None:
    run = start()
    for i in range(230):
        run.emu.add_lead(LastName=f"Bulk{i}", Company="Bulk Co", Email=f"b{i}@bulk.example")
    client = run.client()
    page = client.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=200"})
    assert len(page["records"]) == 200 and page["done"] is False
    whole = client.query("SELECT Id FROM Lead")
    assert whole["done"] is True and len(whole["records"]) == 230 + len(OLD_LEADS) + len(NEW_LEADS)
    assert client.query("SELECT COUNT() FROM Lead WHERE Company = 'bulk co'")["totalSize"] == 230


def test_datetime_literal_forms_are_equivalent(sf: Running) -> None:
    client = sf.client()
    watermark = NOW - timedelta(hours=24)
    base = watermark.strftime("%Y-%m-%dT%H:%M:%S")
    counts = set()
    for literal in (f"{base}Z", f"{base}.000Z", f"{base}+0000", f"{base}+00:00",
                    (watermark - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S") + "-05:00"):
        counts.add(client.query(f"SELECT Id FROM Lead WHERE CreatedDate >= {literal}")["totalSize"])
        assert sf.emu.parsed_queries[-1]["literals"] == [watermark]
    assert counts == {len(NEW_LEADS)}
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query(f"SELECT Id FROM Lead WHERE CreatedDate >= {watermark.isoformat(timespec='microseconds')}")
    assert error_code(exc) == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query(f"SELECT Id FROM Lead WHERE CreatedDate >= '{base}Z'")
    assert error_code(exc) == "INVALID_FIELD"


def test_string_literals_with_escapes(sf: Running) -> None:
    client = sf.client()
    result = client.query(r"SELECT Id, LastName FROM Lead WHERE LastName = 'O\'Brien'")
    assert [r["LastName"] for r in result["records"]] == ["O'Brien"]
    assert sf.emu.parsed_queries[-1]["literals"] == ["O'Brien"]

    result = client.query(r"SELECT Email FROM Lead WHERE Email LIKE 'frank.o\'brien@%'")
    assert [r["Email"] for r in result["records"]] == ["frank.o'brien@globex.example"]

    client.query(r"SELECT Id FROM Lead WHERE LastName IN ('a\\b', 'tab\there', 'x\_y', 'p\%', 'q\"')")
    assert sf.emu.parsed_queries[-1]["literals"] == ["a\\b", "tab\there", "x_y", "p%", 'q"']

    # \_ is a literal underscore in LIKE, _ a wildcard
    sf.emu.add_lead(LastName="snake_case", Company="C")
    sf.emu.add_lead(LastName="snakeXcase", Company="C")
    wild = client.query("SELECT LastName FROM Lead WHERE LastName LIKE 'snake_case'")
    assert {r["LastName"] for r in wild["records"]} == {"snake_case", "snakeXcase"}
    exact = client.query(r"SELECT LastName FROM Lead WHERE LastName LIKE 'snake\_case'")
    assert [r["LastName"] for r in exact["records"]] == ["snake_case"]

    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query(r"SELECT Id FROM Lead WHERE LastName = 'bad\q'")
    assert error_code(exc) == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead WHERE LastName = 'unterminated")
    assert error_code(exc) == "MALFORMED_QUERY"


def test_where_expressions(sf: Running) -> None:
    client = sf.client()

    def names(where: str) -> set[str]:
        return {r["FirstName"] for r in client.query_all(f"SELECT FirstName FROM Lead WHERE {where}")["records"]}

    assert names("Company = 'ACME ROBOTICS' AND (Title = 'Engineer' OR Title = 'VP Operations')") == {
        "Alice", "Bob"}
    assert names("Company = 'Globex' AND NOT Title = 'CTO'") == {"Grace", "Zed", "Ancient"}
    assert names("Country IN ('FR', 'ES') AND FirstName NOT IN ('Zoë', 'José')") == {"Carla", "Amélie"}
    assert names("Industry != null") == {"Eve"}
    assert names("NumberOfEmployees > 1 AND NumberOfEmployees <= 5") == {"Quinn"}
    assert "Eve" not in names("Company = 'Acme' AND Industry != 'Aerospace'")
    assert names("Company = 'Umbrella' AND Title = null") == {"Oscar", "Peggy", "Quinn"}
    ids = client.query("SELECT Id FROM Lead ORDER BY CreatedDate DESC LIMIT 2")["records"]
    assert len(ids) == 2
    assert names(f"Id = '{ids[0]['Id'][:15]}'") == names(f"Id = '{ids[0]['Id']}'")
    assert sf.emu.parsed_queries[-1]["literals"] == [ids[0]["Id"]]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead WHERE Company = 'a' AND Title = 'b' OR Title = 'c'")
    assert error_code(exc) == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead WHERE Id = 'short'")
    assert error_code(exc) == "INVALID_QUERY_FILTER_OPERATOR"


def test_query_errors(sf: Running) -> None:
    client = sf.client()
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id, Favourite_Colour__c FROM Lead")
    assert error_code(exc) == "INVALID_FIELD"
    assert "No such column 'Favourite_Colour__c' on entity 'Lead'" in exc.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead WHERE Colour = 'x'")
    assert error_code(exc) == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead ORDER BY BY Id")
    assert error_code(exc) == "MALFORMED_QUERY"
    assert "unexpected token: 'BY'" in exc.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead WHERE")
    assert error_code(exc) == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Leads")
    assert error_code(exc) == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.query("SELECT Id FROM Lead WHERE NumberOfEmployees > '5'")
    assert error_code(exc) == "INVALID_FIELD"
    # field names are case-insensitive; keys come back canonical
    row = client.query("select id, EMAIL from lead where email = 'JUDY@6sense.com'")["records"][0]
    assert list(row) == ["attributes", "Id", "Email"] and row["Email"] == "judy@6sense.com"


# ---- describe and limits -----------------------------------------------------------------------


def test_describe(sf: Running) -> None:
    described = sf.client().Lead.describe()
    assert described["name"] == "Lead" and described["updateable"] is True
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["Id"]["type"] == "id" and fields["Id"]["updateable"] is False
    assert fields["Company"]["length"] == 255 and fields["FirstName"]["length"] == 40
    assert fields["CreatedDate"]["type"] == "datetime" and not fields["CreatedDate"]["updateable"]
    assert fields["LastModifiedById"]["type"] == "reference"
    name = fields["SixSense_Company_Name__c"]
    assert (name["custom"], name["updateable"], name["length"], name["type"]) == (True, True, 80, "string")
    industry = {v["value"] for v in fields["Industry"]["picklistValues"]}
    assert {"Software and Technology", "Manufacturing", "Financial Services", "Aerospace"} <= industry
    stage = fields["SixSense_Buying_Stage__c"]["picklistValues"]
    assert [v["value"] for v in stage] == ["Purchase", "Decision", "Consideration", "Awareness", "Target"]
    assert set(stage[0]) == {"value", "label", "active", "defaultValue"}
    assert fields["SixSense_Intent_Score__c"]["type"] == "double"
    assert fields["NumberOfEmployees"]["type"] == "int"
    assert fields["AnnualRevenue"]["type"] == "currency"
    for f in described["fields"]:
        assert {"name", "label", "type", "length", "updateable", "createable", "nillable", "custom",
                "picklistValues"} <= set(f)


def test_limit_info_header_and_daily_limit(start: Callable[..., Running]) -> None:
    run = start(daily_api_limit=4)
    client = run.client()
    client.query("SELECT Id FROM Lead LIMIT 1")
    assert client.api_usage["api-usage"].used == 1 and client.api_usage["api-usage"].total == 4
    assert client.limits()["DailyApiRequests"] == {"Max": 4, "Remaining": 2}
    assert client.api_usage["api-usage"].used == 2
    with pytest.raises(SalesforceMalformedRequest):
        client.query("SELECT Nope FROM Lead")  # errors count too
    client.restful("sobjects/Lead/describe")  # (sf.Lead.describe() tracks usage on the SFType)
    assert client.api_usage["api-usage"].used == 4
    with pytest.raises(SalesforceRefusedRequest) as exc:
        client.query("SELECT Id FROM Lead")
    assert exc.value.status == 403
    assert exc.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    refused = requests.get(f"{run.base_url}/services/data/v59.0/limits/", verify=run.ca, timeout=5,
                           headers={"Authorization": f"Bearer {run.token()}"})
    assert refused.status_code == 403 and refused.headers["Sforce-Limit-Info"] == "api-usage=4/4"


def test_usage_window_rolls(start: Callable[..., Running]) -> None:
    # the 24 h window lasts 0.3 s; sessions scale too, so give them a long unscaled TTL
    run = start(daily_api_limit=2, session_ttl_seconds=86400 * 100, time_scale=86400 / 0.3)
    client = run.client()
    client.limits()
    client.limits()
    with pytest.raises(SalesforceRefusedRequest):
        client.limits()
    time.sleep(0.35)
    assert client.limits()["DailyApiRequests"] == {"Max": 2, "Remaining": 1}


# ---- composite write-back ----------------------------------------------------------------------


def _record(lead_id: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "id": lead_id, **fields}


def test_composite_update_one_record_fails_alone(sf: Running) -> None:
    client = sf.client()
    a, b, c = (lead["Id"] for lead in sf.emu.leads()[3:6])
    body = {"allOrNone": False, "records": [
        _record(a, SixSense_Intent_Score__c=87, SixSense_Buying_Stage__c="Decision", Industry="Manufacturing"),
        _record(b, SixSense_Company_Name__c=LONG_COMPANY_NAME, SixSense_Domain__c="sprockets.example"),
        _record(c, NumberOfEmployees=1192, AnnualRevenue=104000000, SixSense_Company_Name__c="6sense"),
    ]}
    before = sf.emu.lead(b)
    results = client.restful("composite/sobjects", method="PATCH", json=body)
    assert results[0] == {"id": a, "success": True, "errors": []}
    assert results[2] == {"id": c, "success": True, "errors": []}
    assert results[1]["success"] is False and results[1]["id"] == b
    (error,) = results[1]["errors"]
    assert error["statusCode"] == "STRING_TOO_LONG"
    assert error["fields"] == ["SixSense_Company_Name__c"]
    assert error["message"] == f"Company Name: data value too large: {LONG_COMPANY_NAME[:20]}... (max length=80)"

    assert sf.emu.lead(b) == before  # untouched, including the valid Domain in the same record
    stored = sf.emu.lead(a)
    assert stored["SixSense_Intent_Score__c"] == 87 and stored["SixSense_Buying_Stage__c"] == "Decision"
    assert stored["LastModifiedById"] == INTEGRATION_USER_ID
    assert stored["LastModifiedDate"] == stored["SystemModstamp"] > stored["CreatedDate"]
    assert [w["id"] for w in sf.emu.applied_writes] == [a, c]
    assert sf.emu.applied_writes[1]["fields"] == {
        "NumberOfEmployees": 1192, "AnnualRevenue": 104000000.0, "SixSense_Company_Name__c": "6sense"}
    assert isinstance(sf.emu.applied_writes[0]["at"], float)
    assert client.api_usage["api-usage"].used == 1


def test_composite_per_record_errors(sf: Running) -> None:
    client = sf.client()
    ids = [lead["Id"] for lead in sf.emu.leads()]
    records = [
        _record("00Q999999999999AAA", Industry="Banking"),
        _record(ids[0], Favourite_Colour__c="blue"),
        _record(ids[1], CreatedDate="2020-01-01T00:00:00.000+0000"),
        _record(ids[2], NumberOfEmployees="1192"),
        _record(ids[3], SixSense_Intent_Score__c=True),
        _record(ids[4], SixSense_Profile_Fit__c="Excellent"),
        _record(ids[5], LastName=None),
        _record(ids[6], industry="Banking", sixsense_segments__c="Tier 1;ICP"),
        _record(ids[6], Industry="Electronics"),
        {"attributes": {"type": "Lead"}, "Industry": "Banking"},
    ]
    results = client.restful("composite/sobjects", method="PATCH", json={"records": records})
    codes = [[e["statusCode"] for e in r["errors"]] for r in results]
    assert codes == [
        ["INVALID_CROSS_REFERENCE_KEY"], ["INVALID_FIELD"], ["INVALID_FIELD_FOR_INSERT_UPDATE"],
        ["INVALID_TYPE_ON_FIELD_IN_RECORD"], ["INVALID_TYPE_ON_FIELD_IN_RECORD"],
        ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"], ["REQUIRED_FIELD_MISSING"], [], ["DUPLICATE_VALUE"],
        ["MISSING_ARGUMENT"],
    ]
    assert results[0]["errors"][0]["message"] == "invalid cross reference id"
    assert results[3]["errors"][0]["fields"] == ["NumberOfEmployees"]
    assert [r["success"] for r in results].count(True) == 1
    assert sf.emu.lead(ids[6])["Industry"] == "Banking"
    assert sf.emu.lead(ids[6])["SixSense_Segments__c"] == "Tier 1;ICP"
    assert [w["id"] for w in sf.emu.applied_writes] == [ids[6]]


def test_composite_all_or_none_rolls_back(sf: Running) -> None:
    client = sf.client()
    a, b = (lead["Id"] for lead in sf.emu.leads()[:2])
    before = sf.emu.leads()
    results = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": [
        _record(a, SixSense_Intent_Score__c=50),
        _record(b, SixSense_Employee_Range__c="x" * 41),
    ]})
    assert results[0] == {"id": a, "success": False, "errors": [{
        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "message": "Record rolled back because not all records were valid and the request was using "
                   "AllOrNone header", "fields": []}]}
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert sf.emu.leads() == before and sf.emu.applied_writes == []


def test_composite_request_level_errors(sf: Running) -> None:
    client = sf.client()
    lead_id = sf.emu.leads()[0]["Id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.restful("composite/sobjects", method="PATCH",
                       json={"records": [_record(lead_id, Industry="Banking")] * 201})
    assert error_code(exc) == "EXCEEDED_ID_LIMIT"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        client.restful("composite/sobjects", method="PATCH", data="{not json")
    assert error_code(exc) == "JSON_PARSER_ERROR"
    assert sf.emu.applied_writes == []


# ---- human edits and persistence ----------------------------------------------------------------


def test_human_edit(sf: Running) -> None:
    client = sf.client()
    lead_id = sf.emu.leads()[4]["Id"]
    client.restful("composite/sobjects", method="PATCH",
                   json={"records": [_record(lead_id, SixSense_Segments__c="ours")]})
    assert sf.emu.lead(lead_id)["LastModifiedById"] == INTEGRATION_USER_ID
    written = sf.emu.lead(lead_id)["LastModifiedDate"]
    time.sleep(0.002)
    sf.emu.human_edit(lead_id, "SixSense_Segments__c", "a person's own")
    edited = sf.emu.lead(lead_id)
    assert edited["SixSense_Segments__c"] == "a person's own"
    assert edited["LastModifiedById"] == HUMAN_USER_ID
    assert edited["LastModifiedDate"] == edited["SystemModstamp"] > written
    row = client.query(f"SELECT LastModifiedById, SixSense_Segments__c FROM Lead WHERE Id = '{lead_id}'")
    assert row["records"][0]["LastModifiedById"] == HUMAN_USER_ID


def test_state_persists_across_emulators(start: Callable[..., Running], tmp_path: Path) -> None:
    first = start(state_dir=tmp_path)
    assert (tmp_path / "salesforce.json").exists()
    lead_id = first.emu.leads()[7]["Id"]
    results = first.client().restful("composite/sobjects", method="PATCH", json={"records": [
        _record(lead_id, SixSense_Intent_Score__c=42.5, SixSense_Contact_Grade__c="B")]})
    assert results[0]["success"] is True
    added = first.emu.add_lead(LastName="Later", Company="Later Inc", Email="later@x.example")
    first.emu.human_edit(lead_id, "Title", "Edited by hand")

    second = start(state_dir=tmp_path, now=NOW + timedelta(days=1))
    again = second.emu.lead(lead_id)
    assert again == first.emu.lead(lead_id)
    assert again["SixSense_Intent_Score__c"] == 42.5 and again["Title"] == "Edited by hand"
    assert second.emu.lead(added)["Email"] == "later@x.example"
    assert len(second.emu.leads()) == len(first.emu.leads())
    newer = second.emu.add_lead(LastName="Newer", Company="N")
    assert newer not in {lead["Id"] for lead in first.emu.leads()}
    rows = second.client().query(
        f"SELECT SixSense_Contact_Grade__c, CreatedDate FROM Lead WHERE Id = '{lead_id}'")["records"]
    assert rows[0]["SixSense_Contact_Grade__c"] == "B"
    assert rows[0]["CreatedDate"] == first.emu.lead(lead_id)["CreatedDate"]


def test_memory_only_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    emulator = create_salesforce_emulator(EmulatorOptions(None, NOW))
    emulator.add_lead(LastName="X", Company="Y")
    assert list(tmp_path.iterdir()) == []
