"""The Slintel-style v2.0 emulator over a real socket with httpx: every endpoint, limits, credits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import EmulatorOptions, load_emulators
from connector.sandbox.server import EmulatorServer
from connector.sandbox.slintel import (
    DOC_SAMPLE_COMPANY,
    DOC_SAMPLE_LEAD,
    DOC_SAMPLE_SEARCH_LEAD,
    SANDBOX_API_KEY,
    SlintelEmulator,
    create_slintel_emulator,
    mask_email,
)

AUTH = {"x-api-key": SANDBOX_API_KEY}
LEAD = "/v2.0/lead/enrich"
COMPANY = "/v2.0/company/enrich"
CREDITS = "/v2.0/api-credits"
SEARCH = "/v2.0/lead/search"

# Key lists copied by hand from the doc's sample responses, in the doc's order.
DOC_COMPANY_KEYS = [
    "id", "technologies", "company_funding_range", "company_website", "company_country",
    "company_products_services", "company_address", "company_linkedin_url", "industry",
    "company_state", "company_sector", "company_name", "company_twitter_url", "company_city",
    "company_phone_number", "company_facebook_url", "zip_code", "company_homepage_url",
    "company_size", "last_funded_on",
]
DOC_LEAD_KEYS = [
    "id", "continent", "country", "education", "decision_making_power", "city", "company_website",
    "technologies", "company_linkedin_url", "skills", "company_state", "function", "company_city",
    "state", "email", "divison", "company_id", "lead_title", "company_country",
    "company_products_services", "company_phone_number", "industry", "company_sector",
    "company_name", "company_twitter_url", "name", "company_facebook_url", "linkedin_url",
    "company_size", "last_funded_on",
]
DOC_SEARCH_KEYS = [
    "id", "company_id", "email_confidence", "lead_title", "company_name", "company_website", "name",
    "linkedin_url", "email",
]
DOC_TECHNOLOGY_KEYS = {"technology", "sub_category", "last_detected", "confidence_score", "sources", "category"}
DOC_EDUCATION_KEYS = {"end_date", "school_location", "school_website", "school_name", "degrees", "start_date"}
DOC_SEARCH_BODY = {
    "payload": {"titles": ["cxo", "vp"], "company_websites": ["amazon.com"], "location": ["california", "united states"]},
    "page": 1,
}
MASKED = re.compile(r"^[^@*]\*{5}[^@*]?@[^@*]+$")
FORBIDDEN = {"message": "Forbidden"}
BURST = {"message": "Too Many Requests Exception"}
DAILY = {"message": "Limit Exceeded"}


def make(state_dir: Path | None = None, time_scale: float = 1.0, now: datetime | None = None,
         **extra: Any) -> SlintelEmulator:
    return create_slintel_emulator(
        EmulatorOptions(state_dir=state_dir, now=now, time_scale=time_scale, extra=extra)
    )


@contextmanager
def serve(emulator: SlintelEmulator) -> Iterator[httpx.Client]:
    server = EmulatorServer(emulator.app).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10, headers=AUTH) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def emulator() -> SlintelEmulator:
    return make(burst=[1000, 1])


@pytest.fixture
def client(emulator: SlintelEmulator) -> Iterator[httpx.Client]:
    with serve(emulator) as c:
        yield c


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SlintelEmulator, httpx.Client]]:
    """One server for tests that only read answers (no limit or credit assertions across tests)."""
    emulator = make(burst=[10_000, 1], daily_limit=1_000_000)
    with serve(emulator) as c:
        yield emulator, c


def lead(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get(LEAD, params=params)


def company(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get(COMPANY, params=params)


# --- interface -----------------------------------------------------------------------------------------


def test_interface_and_settings_overrides(emulator: SlintelEmulator) -> None:
    assert emulator.vendor == "slintel" and emulator.tls is False
    assert emulator.settings_overrides("http://127.0.0.1:9", None) == {
        "providers": {"slintel": {"base_url": "http://127.0.0.1:9", "api_key": SANDBOX_API_KEY}}
    }
    assert emulator.credits_spent == 0 and emulator.charges == []
    assert isinstance(load_emulators()["slintel"](EmulatorOptions(state_dir=None)), SlintelEmulator)


def test_default_clock_follows_options_now() -> None:
    now = datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC)
    emulator = make(now=now)
    assert abs(emulator.clock() - now.timestamp()) < 5


# --- company enrichment -----------------------------------------------------------------------------


@pytest.mark.parametrize("website", ["slintel.com", "aliaxis.com", "https://www.Slintel.com/about"])
def test_company_doc_sample_served_verbatim(shared: tuple[SlintelEmulator, httpx.Client], website: str) -> None:
    _, client = shared
    response = company(client, company_website=website)
    assert response.status_code == 200
    data = response.json()["data"]
    assert list(data) == DOC_COMPANY_KEYS
    assert data == DOC_SAMPLE_COMPANY
    assert data["last_funded_on"] == "Last 6 months"  # text here, epoch seconds in the lead reply
    assert data["company_twitter_url"].startswith("https://www.facebook.com/")  # the doc's quirk
    assert "retry-after" not in response.headers


def test_company_seeded_mapped_to_doc_fields(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared
    data = company(client, company_website="HTTPS://WWW.ACME-ROBOTICS.COM/products?x=1").json()["data"]
    assert list(data) == DOC_COMPANY_KEYS
    assert data["company_name"] == "Acme Robotics" and data["company_website"] == "acme-robotics.com"
    assert data["industry"] == "Manufacturing" and data["company_size"] == "1001-5000"
    assert data["company_country"] == "United States" and data["company_city"] == "Austin"
    assert data["company_address"] == "1 Main St,Austin, Texas, United States,73301"
    assert data["company_homepage_url"] == "https://www.acme-robotics.com/"
    assert isinstance(data["last_funded_on"], str)
    assert re.fullmatch(r"[0-9a-f]{24}", data["id"])
    assert data["technologies"] and all(set(t) == DOC_TECHNOLOGY_KEYS for t in data["technologies"])
    sprockets = company(client, company_website="sprockets.example").json()["data"]
    assert sprockets["company_size"] == "10001+" and sprockets["company_country"] == "United Kingdom"
    assert company(client, company_website="acme-robotics.com").json()["data"] == data  # deterministic


def test_company_by_name_and_website_precedence(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared
    by_name = company(client, company_name="  société générale d'ELECTRONIQUE ").json()["data"]
    assert by_name["company_website"] == "electronique.example"
    both = company(client, company_website="initech.example", company_name="Globex Corporation").json()["data"]
    assert both["company_name"] == "Initech"
    fallback = company(client, company_website="nowhere.example", company_name="Globex Corporation").json()["data"]
    assert fallback["company_website"] == "globex.example"
    assert company(client, company_name="6sense").json()["data"] == DOC_SAMPLE_COMPANY


@pytest.mark.parametrize(
    "params",
    [
        {"company_website": "unknown-startup.example"},
        {"company_website": "blankco.example"},
        {"company_website": "gmail.com"},
        {"company_name": "Gray Matter"},
    ],
)
def test_company_no_match_is_empty_data_and_free(
    shared: tuple[SlintelEmulator, httpx.Client], params: dict[str, str]
) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    response = company(client, **params)
    assert response.status_code == 200 and response.json() == {"data": {}}
    assert emulator.credits_spent == spent


def test_company_without_parameters_400(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared
    for params in ({}, {"company_website": "  "}):
        response = company(client, **params)
        assert response.status_code == 400
        assert list(response.json()) == ["message"] and response.json()["message"].startswith("Bad Request")


# --- lead enrichment -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"email": "deepak@slintel.com"},
        {"linkedin_url": "http://www.linkedin.com/in/deepak-anchala-0043707"},
        {"linkedin_url": "https://linkedin.com/in/Deepak-Anchala-0043707/"},
        {"lead_id": "5dc164616d4235090c39736b"},
        {"name": "Deepak Anchala", "company_name": "6sense", "location": ["California", "United States"]},
        {"name": "deepak  anchala", "company_name": "6SENSE"},
    ],
)
def test_lead_doc_sample_by_every_identifier(
    shared: tuple[SlintelEmulator, httpx.Client], params: dict[str, Any]
) -> None:
    _, client = shared
    response = lead(client, **params)
    assert response.status_code == 200
    data = response.json()["data"]
    assert list(data) == DOC_LEAD_KEYS
    assert data == DOC_SAMPLE_LEAD
    assert data["divison"] == "General" and "division" not in data  # the doc's misspelling
    assert data["last_funded_on"] == 1576108800  # epoch seconds here, text in the company reply
    assert all(set(e) == DOC_EDUCATION_KEYS for e in data["education"])


def test_lead_seeded_by_email_then_linkedin_and_id(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared
    data = lead(client, email="  Alice.Smith@ACME-ROBOTICS.COM  ").json()["data"]
    assert list(data) == DOC_LEAD_KEYS
    assert data["email"] == "alice.smith@acme-robotics.com" and data["name"] == "Alice Smith"
    assert data["lead_title"] == "VP Operations" and data["decision_making_power"] == "High"
    assert data["company_name"] == "Acme Robotics" and data["company_size"] == "1001-5000"
    assert isinstance(data["last_funded_on"], int) and "divison" in data
    assert re.fullmatch(r"http://www\.linkedin\.com/in/alice-smith-\d{7}", data["linkedin_url"])
    assert set(data["technologies"][0]) == DOC_TECHNOLOGY_KEYS
    assert lead(client, linkedin_url=data["linkedin_url"]).json()["data"] == data
    assert lead(client, lead_id=data["id"]).json()["data"] == data
    company_data = company(client, company_website="acme-robotics.com").json()["data"]
    assert data["company_id"] == company_data["id"] and data["technologies"] == company_data["technologies"]


def test_lead_made_up_title_foreign_country_and_unicode(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared
    carla = lead(client, email="carla.diaz@acme-robotics.com").json()["data"]
    assert carla["lead_title"]  # blank in the seed, made up deterministically
    assert carla["country"] == "Spain" and carla["continent"] == "Europe" and carla["city"] == "Madrid"
    assert carla["company_country"] == "United States"
    assert "carla-diaz" in carla["linkedin_url"]
    zoe = lead(client, name="Zoe Angstrom", company_name="Société Générale d'Électronique").json()["data"]
    assert zoe["name"] == "Zoë Ångström" and zoe["email"] == "zoe@electronique.example"
    frank = lead(client, email="frank.o'brien@globex.example").json()["data"]
    assert frank["lead_title"] == "CTO" and "frank-obrien" in frank["linkedin_url"]
    # The duplicate email belongs to its first lead.
    assert lead(client, email="bob.jones@acme-robotics.com").json()["data"]["name"] == "Bob Jones"


@pytest.mark.parametrize(
    "params",
    [
        {"email": "walter@unknown-startup.example"},
        {"email": "uma.thurman@gmail.com"},
        {"email": "xena@blankco.example"},
        {"email": "sybil.fawlty"},
        {"email": "trent@@nin.example"},
        {"linkedin_url": "http://www.linkedin.com/in/nobody-0000000"},
        {"lead_id": "000000000000000000000000"},
        {"name": "Deepak Anchala", "company_name": "6sense", "location": ["Germany"]},
        {"name": "Alice Smith", "company_name": "Acme"},
    ],
)
def test_lead_no_match_is_empty_data_and_free(
    shared: tuple[SlintelEmulator, httpx.Client], params: dict[str, Any]
) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    response = lead(client, **params)
    assert response.status_code == 200 and response.json() == {"data": {}}
    assert emulator.credits_spent == spent


@pytest.mark.parametrize("params", [{}, {"email": " "}, {"name": "Deepak Anchala"}, {"company_name": "6sense"}])
def test_lead_bad_parameters_400(shared: tuple[SlintelEmulator, httpx.Client], params: dict[str, str]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    response = lead(client, **params)
    assert response.status_code == 400
    assert response.json()["message"].startswith("Bad Request")
    assert emulator.credits_spent == spent


# --- credits ------------------------------------------------------------------------------------------


def test_credits_charged_for_every_answer_repeats_included() -> None:
    emulator = make(credits=5)
    with serve(emulator) as client:
        assert client.get(CREDITS).json() == {"available_credits": 5, "consumed_credits": 0}
        for _ in range(2):
            assert lead(client, email="judy@6sense.com").json()["data"]["name"] == "Judy Chen"
        assert company(client, company_website="6sense.com").json()["data"]["company_name"] == "6sense"
        assert lead(client, email="nobody@unknown-startup.example").json() == {"data": {}}
        assert emulator.credits_spent == 3
        assert [c["endpoint"] for c in emulator.charges] == ["lead", "lead", "company"]
        assert emulator.charges[0]["key"] == emulator.charges[1]["key"] == "email:judy@6sense.com"
        assert client.get(CREDITS).json() == {"available_credits": 2, "consumed_credits": 3}
        assert emulator.credits_spent == 3  # api-credits is free


def test_no_credits_left_is_400_and_charges_nothing() -> None:
    emulator = make(credits=1)
    with serve(emulator) as client:
        assert lead(client, email="judy@6sense.com").status_code == 200
        refused = lead(client, email="judy@6sense.com")
        assert refused.status_code == 400
        assert refused.json() == {
            "message": "Bad Request: The action could not be processed, no API credits available"
        }
        assert company(client, company_website="globex.example").status_code == 400
        # Answers without data need no credit; search and api-credits are free.
        assert lead(client, email="walter@unknown-startup.example").json() == {"data": {}}
        assert client.post(SEARCH, json=DOC_SEARCH_BODY).status_code == 200
        assert client.get(CREDITS).json() == {"available_credits": 0, "consumed_credits": 1}
        assert emulator.credits_spent == 1
        emulator.set_credits(10)
        assert lead(client, email="judy@6sense.com").status_code == 200
        assert client.get(CREDITS).json() == {"available_credits": 9, "consumed_credits": 2}


# --- auth -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "f7c59c6b-83de-4e80-8011-0fbd6846c695"},
        {"Authorization": f"Bearer {SANDBOX_API_KEY}"},
        {"x-api-key": SANDBOX_API_KEY.upper()},
    ],
)
def test_bad_or_missing_key_403(headers: dict[str, str]) -> None:
    emulator = make(daily_limit=1)
    server = EmulatorServer(emulator.app).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for path in (LEAD + "?email=judy@6sense.com", CREDITS):
                response = client.get(path, headers=headers)
                assert response.status_code == 403 and response.json() == FORBIDDEN
            assert client.post(SEARCH, json=DOC_SEARCH_BODY, headers=headers).json() == FORBIDDEN
            # 403s count toward nothing: the one daily call is still there.
            assert client.get(CREDITS, headers=AUTH).status_code == 200
    finally:
        server.stop()
    assert emulator.credits_spent == 0


# --- limits --------------------------------------------------------------------------------------------


def test_burst_and_daily_429_bodies_told_apart() -> None:
    emulator = make(burst=[3, 60], daily_limit=5)
    with serve(emulator) as client:
        assert [client.get(CREDITS).status_code for _ in range(3)] == [200] * 3
        burst = client.get(CREDITS)
        assert burst.status_code == 429 and burst.json() == BURST
        assert "retry-after" not in burst.headers
        assert emulator.daily_calls == 3  # the refusal did not count
    emulator = make(burst=[100, 1], daily_limit=2)
    with serve(emulator) as client:
        assert lead(client, email="").status_code == 400  # errors count toward the day
        assert client.get(CREDITS).status_code == 200
        daily = lead(client, email="judy@6sense.com")
        assert daily.status_code == 429 and daily.json() == DAILY
        assert "retry-after" not in daily.headers
        assert daily.json() != BURST
    assert emulator.credits_spent == 0 and emulator.daily_calls == 2


def test_in_flight_cap_answers_burst_429() -> None:
    emulator = make(burst=[100, 1], max_in_flight=2, latency_seconds=0.4)
    server = EmulatorServer(emulator.app).start()
    try:
        def call(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.base_url, timeout=10, headers=AUTH) as c:
                return c.get(CREDITS)

        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(call, range(3)))
    finally:
        server.stop()
    assert sorted(r.status_code for r in responses) == [200, 200, 429]
    assert [r.json() for r in responses if r.status_code == 429] == [BURST]
    assert emulator.in_flight.peak == 2 and emulator.daily_calls == 2


def test_daily_limit_resets_exactly_once_at_midnight_gmt() -> None:
    emulator = make(burst=[1000, 1], daily_limit=3)
    t = [datetime(2024, 3, 1, 23, 59, 58, tzinfo=UTC).timestamp()]
    emulator.clock = lambda: t[0]
    with serve(emulator) as client:
        def statuses(n: int) -> list[int]:
            return [client.get(CREDITS).status_code for _ in range(n)]

        assert statuses(4) == [200, 200, 200, 429]
        t[0] = datetime(2024, 3, 1, 23, 59, 59, 999000, tzinfo=UTC).timestamp()
        assert client.get(CREDITS).json() == DAILY
        t[0] = datetime(2024, 3, 2, 0, 0, 0, tzinfo=UTC).timestamp()  # 2 s after the first call
        assert statuses(4) == [200, 200, 200, 429]
        assert emulator.daily_calls == 3
        for moment in (datetime(2024, 3, 2, 0, 0, 3), datetime(2024, 3, 2, 12, 0), datetime(2024, 3, 2, 23, 59, 59)):
            t[0] = moment.replace(tzinfo=UTC).timestamp()
            assert client.get(CREDITS).json() == DAILY  # no second reset inside the day
        t[0] = datetime(2024, 3, 3, 0, 0, 1, tzinfo=UTC).timestamp()
        assert statuses(1) == [200]
    assert [e.status for e in emulator.log.entries(path_prefix=CREDITS)].count(200) == 7


def test_time_scale_shortens_the_day() -> None:
    emulator = make(time_scale=24, burst=[1000, 1], daily_limit=1)  # a "day" of 3600 s
    t = [datetime(2024, 3, 1, 10, 59, 59, tzinfo=UTC).timestamp()]
    emulator.clock = lambda: t[0]
    with serve(emulator) as client:
        assert [client.get(CREDITS).status_code for _ in range(2)] == [200, 429]
        t[0] += 1.0  # 11:00:00: a new scaled day
        assert client.get(CREDITS).status_code == 200


# --- lead search -----------------------------------------------------------------------------------------


def test_search_doc_request_answers_the_doc_sample(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent
    response = client.post(SEARCH, json=DOC_SEARCH_BODY)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["data", "total"] and body["total"] == 442
    assert len(body["data"]) == 50
    assert all(list(item) == DOC_SEARCH_KEYS for item in body["data"])
    assert body["data"][0] == DOC_SAMPLE_SEARCH_LEAD
    assert all(MASKED.match(item["email"]) for item in body["data"])
    assert emulator.credits_spent == spent  # search is free


def test_search_paging_limits(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared
    payload = DOC_SEARCH_BODY["payload"]
    seen: list[str] = []
    for page in range(1, 10):
        body = client.post(SEARCH, json={"payload": payload, "page": page}).json()
        assert body["total"] == 442
        seen += [item["id"] for item in body["data"]]
    assert len(seen) == len(set(seen)) == 442  # 8 full pages and 42 on page 9
    assert client.post(SEARCH, json={"payload": payload, "page": 10}).json() == {"data": [], "total": 442}
    assert client.post(SEARCH, json={"payload": payload, "page": 200}).json()["data"] == []
    assert client.post(SEARCH, json={"payload": payload}).json()["data"][0]["name"] == "Steve Sarner"
    for page in (201, 0, -1, "1", 1.5, True):
        response = client.post(SEARCH, json={"payload": payload, "page": page})
        assert response.status_code == 400 and "page" in response.json()["message"]


def test_search_filters(shared: tuple[SlintelEmulator, httpx.Client]) -> None:
    _, client = shared

    def search(**payload: Any) -> dict[str, Any]:
        response = client.post(SEARCH, json={"payload": payload, "page": 1})
        assert response.status_code == 200, response.text
        return response.json()

    amazon_all = search(company_websites=["https://www.amazon.com/"])
    assert amazon_all["total"] == 600
    assert search(company_websites=["amazon.com"], titles=["cxo", "vp"])["total"] == 500
    assert search(company_websites=["amazon.com"], location=["India", "united kingdom"])["total"] == 58
    acme = search(company_websites=["acme-robotics.com"])
    assert {i["name"] for i in acme["data"]} == {"Alice Smith", "Bob Jones", "Carla Díaz", "Dmitri Ivanov", "Eve Adams"}
    alice = next(i for i in acme["data"] if i["name"] == "Alice Smith")
    assert alice["email"] == "a*****h@acme-robotics.com" == mask_email("alice.smith@acme-robotics.com")
    procurement = search(titles=["procurement"])
    assert {i["name"] for i in procurement["data"]} >= {"Judy Chen"}
    assert all("procurement" in i["lead_title"].lower() for i in procurement["data"])
    assert {i["name"] for i in search(location=["germany"])["data"]} == {"Heidi Klum"}
    assert search(company_websites=["unknown-startup.example"]) == {"data": [], "total": 0}


def test_search_result_ids_enrich_with_the_full_email(client: httpx.Client, emulator: SlintelEmulator) -> None:
    item = client.post(SEARCH, json=DOC_SEARCH_BODY).json()["data"][0]
    full = lead(client, lead_id=item["id"]).json()["data"]
    assert full["email"] == "stevesarner@amazon.com" and mask_email(full["email"]) == item["email"]
    assert full["name"] == item["name"] and full["linkedin_url"] == item["linkedin_url"]
    assert emulator.credits_spent == 1


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"page": 1},
        {"payload": {}, "page": 1},
        {"payload": {"titles": []}, "page": 1},
        {"payload": {"titles": "vp"}, "page": 1},
        {"payload": {"company_websites": [1]}, "page": 1},
        {"payload": {"unknown": ["x"]}, "page": 1},
    ],
)
def test_search_bad_body_400(shared: tuple[SlintelEmulator, httpx.Client], body: Any) -> None:
    _, client = shared
    content = b"" if body is None else json.dumps(body).encode()
    response = client.post(SEARCH, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["message"].startswith("Bad Request")


# --- persistence -------------------------------------------------------------------------------------------


def test_credits_and_daily_calls_persist(tmp_path: Path) -> None:
    t = [datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp()]
    first = make(state_dir=tmp_path, credits=10, daily_limit=3)
    first.clock = lambda: t[0]
    with serve(first) as client:
        assert lead(client, email="judy@6sense.com").status_code == 200
        assert lead(client, email="judy@6sense.com").status_code == 200
    saved = json.loads((tmp_path / "slintel.json").read_text(encoding="utf-8"))
    assert saved["available_credits"] == 8 and saved["consumed_credits"] == 2 and saved["day_calls"] == 2

    second = make(state_dir=tmp_path, credits=10, daily_limit=3)  # the file wins over `credits`
    second.clock = lambda: t[0]
    assert second.credits_spent == 2 and second.available_credits == 8
    with serve(second) as client:
        assert client.get(CREDITS).json() == {"available_credits": 8, "consumed_credits": 2}
        assert client.get(CREDITS).json() == DAILY  # the same GMT day: 3 calls used
