"""The contacts/companies API emulator over a real socket with httpx: filters, paging, envelope, credits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import EmulatorOptions, load_emulators
from connector.sandbox.contacts_api import (
    SANDBOX_API_TOKEN,
    ContactsApiEmulator,
    create_contacts_api_emulator,
)
from connector.sandbox.server import EmulatorServer

AUTH = {"Authorization": f"Bearer {SANDBOX_API_TOKEN}"}
COMPANIES = "/v1/companies/search"
CONTACTS = "/v1/contacts/search"
COMPANY_KEYS = {
    "id", "name", "domain", "website", "industry", "employee_count", "annual_revenue", "location",
    "functions", "technologies", "linkedin_url", "created_at",
}
CONTACT_KEYS = {
    "id", "first_name", "last_name", "full_name", "job_title", "department", "seniority",
    "is_decision_maker", "email", "personal_emails", "linkedin_url", "location", "company",
}
META_KEYS = ["page", "per_page", "total", "total_pages", "credits_charged", "credits_remaining"]
Params = list[tuple[str, Any]]


def make(state_dir: Path | None = None, time_scale: float = 1.0, **extra: Any) -> ContactsApiEmulator:
    return create_contacts_api_emulator(EmulatorOptions(state_dir=state_dir, time_scale=time_scale, extra=extra))


@contextmanager
def serve(emulator: ContactsApiEmulator) -> Iterator[httpx.Client]:
    server = EmulatorServer(emulator.app).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10, headers=AUTH) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[ContactsApiEmulator, httpx.Client]]:
    emulator = make(rate_limit=[100_000, 60], credits=10_000_000)
    with serve(emulator) as c:
        yield emulator, c


@pytest.fixture
def client(shared: tuple[ContactsApiEmulator, httpx.Client]) -> httpx.Client:
    return shared[1]


def ok(client: httpx.Client, path: str, params: Params | None = None) -> dict[str, Any]:
    response = client.get(path, params=params or [])
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["data", "meta", "errors"] and body["errors"] == []
    return body


def domains(client: httpx.Client, params: Params) -> list[str]:
    return [c["domain"] for c in ok(client, COMPANIES, params + [("per_page", 100)])["data"]]


def contacts(client: httpx.Client, params: Params) -> list[dict[str, Any]]:
    return ok(client, CONTACTS, params + [("per_page", 100)])["data"]


def error_of(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["data", "meta", "errors"]
    assert body["data"] is None and body["meta"] == {}
    assert body["errors"] and all(list(e) == ["id", "code", "details"] for e in body["errors"])
    assert all(e["code"] == status and e["details"] for e in body["errors"])
    return body["errors"]


ALL_DOMAINS = [
    "6sense.com", "acme-robotics.com", "globex.example", "initech.example", "sprockets.example",
    "electronique.example", "umbrella.example",
]

# --- interface and envelope ------------------------------------------------------------------------------


def test_interface_and_settings_overrides() -> None:
    emulator = make()
    assert emulator.vendor == "contacts_api" and emulator.tls is False
    assert emulator.settings_overrides("http://127.0.0.1:7", None) == {
        "providers": {"contacts_api": {"base_url": "http://127.0.0.1:7", "api_token": SANDBOX_API_TOKEN}}
    }
    assert emulator.credits_spent == 0
    assert isinstance(load_emulators()["contacts_api"](EmulatorOptions(state_dir=None)), ContactsApiEmulator)


def test_companies_envelope_and_record_shape(shared: tuple[ContactsApiEmulator, httpx.Client]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    body = ok(client, COMPANIES)
    assert list(body["meta"]) == META_KEYS
    assert body["meta"]["page"] == 1 and body["meta"]["per_page"] == 25
    assert body["meta"]["total"] == 7 and body["meta"]["total_pages"] == 1
    assert body["meta"]["credits_charged"] == 0 and emulator.credits_spent == spent  # companies are free
    assert [c["domain"] for c in body["data"]] == ALL_DOMAINS  # blank-answer seeds are not served
    acme = body["data"][1]
    assert set(acme) == COMPANY_KEYS
    assert acme["name"] == "Acme Robotics" and acme["industry"] == "Manufacturing"
    assert acme["employee_count"] == 2400 and acme["annual_revenue"] == 310_000_000
    assert acme["location"] == {"city": "Austin", "state": "Texas", "country": "United States"}
    assert acme["id"].startswith("cmp_") and acme["created_at"].endswith("Z")
    assert body["data"][0]["employee_count"] == 1192  # the 6sense sample's string, coerced


def test_contacts_envelope_and_record_shape(shared: tuple[ContactsApiEmulator, httpx.Client]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    body = ok(client, CONTACTS, [("tlds", "acme-robotics.com")])
    assert list(body["meta"]) == META_KEYS
    data = body["data"]
    assert all(set(c) == CONTACT_KEYS for c in data)
    assert body["meta"]["credits_charged"] == len(data) == body["meta"]["total"] == 8
    assert emulator.credits_spent == spent + 8
    alice = next(c for c in data if c["full_name"] == "Alice Smith")
    assert alice["email"] == "alice.smith@acme-robotics.com" and alice["job_title"] == "VP Operations"
    assert alice["seniority"] == "vp" and alice["is_decision_maker"] is True
    assert alice["company"]["domain"] == "acme-robotics.com" and set(alice["company"]) == {"id", "name", "domain"}
    carla = next(c for c in data if c["full_name"] == "Carla Díaz")
    assert carla["location"]["country"] == "Spain" and carla["job_title"]
    # Three made-up decision makers per domain, a CEO among them.
    made_up = [c for c in data if c["email"] not in {
        "alice.smith@acme-robotics.com", "bob.jones@acme-robotics.com", "carla.diaz@acme-robotics.com",
        "dmitri@acme-robotics.com", "eve@acme-robotics.com"}]
    assert len(made_up) == 3 and all(c["is_decision_maker"] for c in made_up)
    assert "Chief Executive Officer" in {c["job_title"] for c in made_up}


# --- company filters ---------------------------------------------------------------------------------------


def test_filter_tlds(client: httpx.Client) -> None:
    assert domains(client, [("tlds", "acme-robotics.com")]) == ["acme-robotics.com"]
    assert domains(client, [("tlds", "https://www.Globex.example/about"), ("tlds", "initech.example")]) == [
        "globex.example", "initech.example"
    ]
    assert domains(client, [("tlds", "com")]) == ["6sense.com", "acme-robotics.com"]
    assert domains(client, [("tlds[]", ".example")]) == ALL_DOMAINS[2:]
    assert domains(client, [("tlds", "unknown-startup.example")]) == []
    assert domains(client, [("tlds", "gmail.com")]) == []


def test_filter_industries(client: httpx.Client) -> None:
    assert domains(client, [("industries", "manufacturing")]) == ["acme-robotics.com", "sprockets.example"]
    assert domains(client, [("industries", "Healthcare"), ("industries", "Electronics")]) == [
        "electronique.example", "umbrella.example"
    ]
    assert domains(client, [("industries", "Manufact")]) == []  # whole value, not partial


def test_filter_locations(client: httpx.Client) -> None:
    austin = [("locations", "city:Austin||Texas||United States")]
    assert domains(client, austin) == ["acme-robotics.com", "globex.example", "umbrella.example"]
    assert domains(client, [("locations", "city:Manchester||||United Kingdom")]) == ["sprockets.example"]
    assert domains(client, [("locations", "city:manchester")]) == ["sprockets.example"]
    assert domains(client, [("locations", "state:California||United States")]) == ["6sense.com"]
    assert domains(client, [("locations", "state:new york||united states")]) == ["initech.example"]
    assert domains(client, [("locations", "country:France")]) == ["electronique.example"]
    assert domains(client, [("locations", "state:auvergne-rhone-alpes")]) == ["electronique.example"]
    assert domains(client, [("locations", "country:Brazil")]) == []
    assert domains(client, [("locations", "country:France"), ("locations", "city:London||||United Kingdom")]) == [
        "electronique.example"
    ]
    assert domains(client, [("locations", "city:San Francisco||California||United States"),
                            ("locations", "country:United Kingdom")]) == ["6sense.com", "sprockets.example"]


def test_filter_functions_and_technologies(client: httpx.Client) -> None:
    everything = ok(client, COMPANIES)["data"]
    with_hr = [c["domain"] for c in everything if "human_resources" in c["functions"]]
    assert with_hr and domains(client, [("functions", "Human_Resources")]) == with_hr
    # A company's functions are the departments of its contacts.
    for company in everything:
        people = contacts(client, [("tlds", company["domain"])])
        assert company["functions"] == sorted({p["department"] for p in people})
    tech = everything[0]["technologies"][0]
    expected = [c["domain"] for c in everything if tech in c["technologies"]]
    assert domains(client, [("technologies", tech.upper()), ("technologies", "NoSuchTech")]) == expected
    assert domains(client, [("technologies", "NoSuchTech")]) == []


def test_filter_added_after_and_before_inclusive(client: httpx.Client) -> None:
    everything = ok(client, COMPANIES)["data"]
    ordered = sorted(everything, key=lambda c: c["created_at"])
    middle = ordered[3]["created_at"]
    after = domains(client, [("added_after", middle)])
    before = domains(client, [("added_before", middle)])
    assert set(after) == {c["domain"] for c in ordered[3:]}
    assert set(before) == {c["domain"] for c in ordered[:4]}
    assert domains(client, [("added_after", middle), ("added_before", middle)]) == [ordered[3]["domain"]]
    moment = datetime.fromisoformat(middle)
    just_after = (moment + timedelta(seconds=1)).isoformat()  # "+00:00" offset form
    assert set(domains(client, [("added_after", just_after)])) == {c["domain"] for c in ordered[4:]}
    assert set(domains(client, [("added_before", moment.strftime("%Y-%m-%d"))])) == {
        c["domain"] for c in ordered[:3]
    }
    # Contacts: the company's creation time.
    people = contacts(client, [("added_after", middle)])
    assert people and {p["company"]["domain"] for p in people} == set(after)


# --- contact filters --------------------------------------------------------------------------------------


def test_filter_job_titles_partial_case_insensitive(client: httpx.Client) -> None:
    managers = contacts(client, [("job_titles", "manager")])
    assert managers and all("manager" in c["job_title"].lower() for c in managers)
    assert "Finance Manager" in {c["job_title"] for c in managers}  # the doc's example
    either = contacts(client, [("job_titles", "CHIEF"), ("job_titles", "cto")])
    assert {c["job_title"] for c in either} >= {"Chief Executive Officer", "CTO"}


def test_filter_departments_and_seniorities_exact(client: httpx.Client) -> None:
    engineering = contacts(client, [("departments", "engineering")])
    assert engineering and all(c["department"] == "engineering" for c in engineering)
    assert contacts(client, [("departments", "engineer")]) == []  # whole value only
    assert contacts(client, [("departments", "ENGINEERING")]) == engineering
    suite = contacts(client, [("seniorities", "c_suite"), ("seniorities", "vp")])
    assert suite and {c["seniority"] for c in suite} == {"c_suite", "vp"}
    both = contacts(client, [("seniorities", "c_suite"), ("departments", "engineering")])
    assert both and all(c["seniority"] == "c_suite" and c["department"] == "engineering" for c in both)


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("has_personal_emails", lambda c: bool(c["personal_emails"])),
        ("has_linkedin_profile", lambda c: bool(c["linkedin_url"])),
        ("is_decision_maker", lambda c: c["is_decision_maker"] is True),
    ],
)
def test_boolean_filters(client: httpx.Client, name: str, check: Any) -> None:
    everyone = contacts(client, [])
    kept = contacts(client, [(name, "true")])
    assert kept == [c for c in everyone if check(c)]
    assert 0 < len(kept) < len(everyone)
    assert contacts(client, [(name, "TRUE")]) == kept and contacts(client, [(name, "1")]) == kept
    assert contacts(client, [(name, "false")]) == everyone  # false filters nothing


def test_contacts_company_filters_combine(client: httpx.Client) -> None:
    people = contacts(client, [("tlds", "electronique.example"), ("is_decision_maker", "true")])
    assert len(people) == 3 and {p["company"]["domain"] for p in people} == {"electronique.example"}
    french = contacts(client, [("locations", "country:France"), ("job_titles", "engineer")])
    assert {p["full_name"] for p in french} == {"Zoë Ångström", "Amélie Poulain"}
    assert contacts(client, [("industries", "Healthcare"), ("seniorities", "c_suite")])[0]["company"]["domain"] == (
        "umbrella.example"
    )


# --- paging ---------------------------------------------------------------------------------------------------


def test_paging(client: httpx.Client) -> None:
    first = ok(client, CONTACTS)
    total = first["meta"]["total"]
    assert total > 25 and len(first["data"]) == 25 and first["meta"]["total_pages"] == -(-total // 25)
    seen: list[str] = []
    page = 1
    while True:
        body = ok(client, CONTACTS, [("page", page), ("per_page", 7)])
        assert body["meta"]["page"] == page and body["meta"]["per_page"] == 7
        if not body["data"]:
            break
        assert body["meta"]["credits_charged"] == len(body["data"])
        seen += [c["id"] for c in body["data"]]
        page += 1
    assert len(seen) == len(set(seen)) == total and page - 1 == -(-total // 7)
    past = ok(client, CONTACTS, [("page", 99)])
    assert past["data"] == [] and past["meta"]["total"] == total and past["meta"]["credits_charged"] == 0
    assert len(ok(client, CONTACTS, [("per_page", 100)])["data"]) == total
    assert ok(client, COMPANIES, [("per_page", 2), ("page", 4)])["data"][0]["domain"] == "umbrella.example"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ([("per_page", 101)], "per_page"),
        ([("per_page", 0)], "per_page"),
        ([("per_page", "ten")], "per_page"),
        ([("page", 0)], "page"),
        ([("page", "2.5")], "page"),
        ([("page", 1), ("page", 2)], "page"),
    ],
)
def test_paging_errors(shared: tuple[ContactsApiEmulator, httpx.Client], params: Params, name: str) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    for path in (COMPANIES, CONTACTS):
        [error] = error_of(client.get(path, params=params), 400)
        assert error["id"] == "invalid_input" and name in error["details"]
    assert emulator.credits_spent == spent


# --- input errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        (CONTACTS, [("is_decision_maker", "yes")], "is_decision_maker"),
        (CONTACTS, [("added_after", "last tuesday")], "added_after"),
        (COMPANIES, [("added_before", "2021-13-01")], "added_before"),
        (COMPANIES, [("locations", "San Francisco")], "location"),
        (COMPANIES, [("locations", "planet:Mars")], "location"),
        (COMPANIES, [("locations", "state:A||B||C")], "location"),
        (COMPANIES, [("tld", "acme-robotics.com")], "tld"),
        (COMPANIES, [("job_titles", "ceo")], "job_titles"),
        (COMPANIES, [("is_decision_maker", "true")], "is_decision_maker"),
        (CONTACTS, [("tlds", "")], "tlds"),
    ],
)
def test_invalid_input(client: httpx.Client, path: str, params: Params, fragment: str) -> None:
    [error] = error_of(client.get(path, params=params), 400)
    assert error["id"] == "invalid_input" and fragment in error["details"]


def test_every_input_error_reported_together(client: httpx.Client) -> None:
    errors = error_of(
        client.get(CONTACTS, params=[("per_page", 500), ("has_personal_emails", "maybe"), ("nope", "1")]), 400
    )
    assert len(errors) == 3 and {e["id"] for e in errors} == {"invalid_input"}
    assert any("per_page" in e["details"] for e in errors)


def test_unknown_route_and_method_enveloped(client: httpx.Client) -> None:
    [error] = error_of(client.get("/v1/people/search"), 404)
    assert error["id"] == "not_found"
    [error] = error_of(client.post(COMPANIES, json={"tlds": ["acme-robotics.com"]}), 405)
    assert error["id"] == "method_not_allowed"


# --- auth and rate limit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Token {SANDBOX_API_TOKEN}"},
        {"Authorization": SANDBOX_API_TOKEN},
        {"Authorization": f"Bearer {SANDBOX_API_TOKEN} extra"},
        {"x-api-key": SANDBOX_API_TOKEN},
    ],
)
def test_auth_error_401(shared: tuple[ContactsApiEmulator, httpx.Client], headers: dict[str, str]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    response = client.get(CONTACTS, params={"tlds": "acme-robotics.com"},
                          headers={"Authorization": ""} | headers)
    [error] = error_of(response, 401)
    assert error["id"] == "unauthorized" and "Bearer" in error["details"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert SANDBOX_API_TOKEN not in response.text
    assert emulator.credits_spent == spent


def test_bearer_scheme_case_insensitive(client: httpx.Client) -> None:
    response = client.get(COMPANIES, headers={"Authorization": f"bearer {SANDBOX_API_TOKEN}"})
    assert response.status_code == 200


def test_rate_limit_429_in_envelope() -> None:
    emulator = make(rate_limit=[3, 60])
    with serve(emulator) as client:
        for _ in range(2):
            assert client.get(COMPANIES, headers={"Authorization": "Bearer nope"}).status_code == 401  # not counted
        assert client.get(COMPANIES).status_code == 200
        assert client.get(COMPANIES, params={"per_page": 101}).status_code == 400  # counted
        assert client.get(CONTACTS, params={"tlds": "6sense.com"}).status_code == 200
        refused = client.get(CONTACTS, params={"tlds": "6sense.com"})
        [error] = error_of(refused, 429)
        assert error["id"] == "rate_limited"
        assert "retry-after" not in refused.headers
    assert emulator.credits_spent == 5  # the refused request charged nothing


def test_rate_limit_time_scaled() -> None:
    emulator = make(time_scale=200, rate_limit=[2, 60])  # 2 per 0.3 s
    with serve(emulator) as client:
        assert [client.get(COMPANIES).status_code for _ in range(3)] == [200, 200, 429]
        time.sleep(0.35)
        assert client.get(COMPANIES).status_code == 200


# --- credits ----------------------------------------------------------------------------------------------------


def test_credits_per_returned_contact_repeats_included() -> None:
    emulator = make(credits=20)
    with serve(emulator) as client:
        params = [("tlds", "globex.example"), ("per_page", 4)]
        first = ok(client, CONTACTS, params)
        assert first["meta"]["credits_charged"] == 4 and first["meta"]["credits_remaining"] == 16
        again = ok(client, CONTACTS, params)
        assert again["data"] == first["data"] and again["meta"]["credits_remaining"] == 12
        assert ok(client, COMPANIES, [("tlds", "globex.example")])["meta"]["credits_remaining"] == 12
        assert ok(client, CONTACTS, [("tlds", "nowhere.example")])["meta"]["credits_charged"] == 0
        last = ok(client, CONTACTS, params + [("page", 2)])
        assert last["meta"]["credits_charged"] == 2  # 6 globex contacts: 4 + 2
        assert emulator.credits_spent == 10 and emulator.credits_remaining == 10
        assert [len(c["contact_ids"]) for c in emulator.charges] == [4, 4, 2]


def test_insufficient_credits_402_charges_nothing() -> None:
    emulator = make(credits=3)
    with serve(emulator) as client:
        [error] = error_of(client.get(CONTACTS, params={"tlds": "globex.example", "per_page": 4}), 402)
        assert error["id"] == "insufficient_credits"
        assert emulator.credits_spent == 0 and emulator.credits_remaining == 3
        assert ok(client, CONTACTS, [("tlds", "globex.example"), ("per_page", 3)])["meta"]["credits_remaining"] == 0
        assert ok(client, COMPANIES)["meta"]["total"] == 7  # companies are free
        assert client.get(CONTACTS, params={"tlds": "globex.example", "per_page": 1}).status_code == 402
        emulator.set_credits(5)
        assert ok(client, CONTACTS, [("tlds", "globex.example"), ("per_page", 1)])["meta"]["credits_remaining"] == 4


def test_credits_persist_across_instances(tmp_path: Path) -> None:
    first = make(state_dir=tmp_path, credits=50)
    with serve(first) as client:
        ok(client, CONTACTS, [("tlds", "6sense.com")])
    saved = json.loads((tmp_path / "contacts_api.json").read_text(encoding="utf-8"))
    assert saved["credits_spent"] == 5 and saved["credits_remaining"] == 45
    second = make(state_dir=tmp_path, credits=50)
    assert second.credits_spent == 5 and second.credits_remaining == 45
