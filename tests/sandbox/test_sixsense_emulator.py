"""The 6sense emulator over a real socket: POST /v2/people/full, auth, rate limit and credits."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from connector.sandbox import EmulatorOptions, load_emulators
from connector.sandbox.server import EmulatorServer, Fault
from connector.sandbox.sixsense import (
    COMPANY_FIELDS,
    SANDBOX_API_TOKEN,
    SixSenseEmulator,
    create_sixsense_emulator,
)

SPEC_PATH = (
    Path(__file__).resolve().parents[2]
    / "connector/sandbox/specs/6sense-lead-scoring-firmographics.openapi.yml"
)
PATH = "/v2/people/full"
AUTH = {"Authorization": f"Token {SANDBOX_API_TOKEN}"}

BLANK_MESSAGE = "Email ID is mandatory and can’t be blank"
INVALID_MESSAGE = "Invalid email ID. Please make sure you have sent a valid email address in email field."
NO_DATA_MESSAGE = "No data found. Please contact 6sense support, if you think this is an unexpected error."
QUOTA_MESSAGE = (
    "Quota Exhausted. Your allocated Quota is exhausted, please upgrade/top-up your API limit by "
    "reaching out to your CSM."
)


def make(state_dir: Path | None = None, time_scale: float = 1.0, **extra: Any) -> SixSenseEmulator:
    return create_sixsense_emulator(EmulatorOptions(state_dir=state_dir, time_scale=time_scale, extra=extra))


@contextmanager
def serve(emulator: SixSenseEmulator) -> Iterator[httpx.Client]:
    server = EmulatorServer(emulator.app).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            yield client
    finally:
        server.stop()


def post(client: httpx.Client, email: str | None = None, headers: dict[str, str] | None = None,
         **fields: str) -> httpx.Response:
    data = dict(fields)
    if email is not None:
        data["email"] = email
    return client.post(PATH, data=data, headers=AUTH if headers is None else headers)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def response_validator(spec: dict[str, Any]) -> OAS30Validator:
    ref = spec["paths"][PATH]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    return OAS30Validator({**ref, "components": spec["components"]})


@pytest.fixture
def emulator() -> SixSenseEmulator:
    return make()


@pytest.fixture
def client(emulator: SixSenseEmulator) -> Iterator[httpx.Client]:
    with serve(emulator) as c:
        yield c


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SixSenseEmulator, httpx.Client]]:
    """One server for the tests that only need "this request charged nothing" (each stop costs ~0.2 s)."""
    emulator = make()
    with serve(emulator) as c:
        yield emulator, c


# --- interface ------------------------------------------------------------------------------------


def test_token_and_settings_overrides(emulator: SixSenseEmulator) -> None:
    assert len(SANDBOX_API_TOKEN) == 40 and SANDBOX_API_TOKEN.isalnum() and SANDBOX_API_TOKEN.startswith("sx")
    assert emulator.vendor == "sixsense" and emulator.tls is False
    assert emulator.settings_overrides("http://127.0.0.1:1", None) == {
        "providers": {"sixsense": {"scribe_url": "http://127.0.0.1:1", "api_url": "http://127.0.0.1:1",
                                   "epsilon_url": "http://127.0.0.1:1", "api_token": SANDBOX_API_TOKEN}}
    }
    assert emulator.credits_spent == {"enrichment": 0, "company_identification": 0}
    assert emulator.charges == []


def test_registered_with_the_sandbox() -> None:
    factory = load_emulators()["sixsense"]
    assert isinstance(factory(EmulatorOptions(state_dir=None)), SixSenseEmulator)


def test_blank_company_keys_are_the_schema_company_properties(spec: dict[str, Any]) -> None:
    assert list(spec["components"]["schemas"]["Company"]["properties"]) == list(COMPANY_FIELDS)


# --- answers ----------------------------------------------------------------------------------------


def test_known_company_validates_against_openapi(
    client: httpx.Client, emulator: SixSenseEmulator, response_validator: OAS30Validator, spec: dict[str, Any]
) -> None:
    # No country: the reference calls it optional although the OpenAPI file marks it required.
    response = post(client, "  Alice.Smith@ACME-ROBOTICS.COM \n", title="VP Operations", firstname="Alice")
    assert response.status_code == 200, response.text
    body = response.json()
    response_validator.validate(body)
    assert list(body) == ["company", "scores", "segments"]
    company = body["company"]
    assert company["domain"] == "acme-robotics.com" and company["name"] == "Acme Robotics"
    assert company["employeeCount"] == 2400 and company["annualRevenue"] == 310_000_000
    assert set(company) <= set(spec["components"]["schemas"]["Company"]["properties"])
    [score] = body["scores"]
    assert list(score) == [
        "product", "company_intent_score", "company_buying_stage", "company_profile_score",
        "company_profile_fit", "contact_intent_score", "contact_grade", "contact_profile_score",
        "contact_profile_fit",
    ]
    assert score["product"] == "6sense"
    numbers = (
        "company_intent_score", "company_profile_score", "contact_intent_score", "contact_profile_score"
    )
    for key in numbers:
        assert 0 <= score[key] <= 100
    assert body["segments"] == {
        "ids": [9001, 9002],
        "names": ["Robotics ICP", "Tier 1 Accounts"],
        "list": [{"name": "Robotics ICP", "id": 9001}, {"name": "Tier 1 Accounts", "id": 9002}],
    }
    assert emulator.credits_spent["enrichment"] == 1
    assert emulator.charges[0]["key"] == "alice.smith@acme-robotics.com"


def test_all_optional_fields_accepted(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    _, client = shared
    response = post(
        client, "grace@globex.example", country="US", website="globex.example", company="Globex",
        title="CTO", leadsource="Website form", firstname="Grace", lastname="Hopper",
        role="Procurement Manager", industry="Software and Technology",
    )
    assert response.status_code == 200
    assert response.json()["company"]["name"] == "Globex Corporation"


def test_sixsense_sample_numeric_strings_quirk(
    client: httpx.Client, response_validator: OAS30Validator
) -> None:
    response = post(client, "judy@6sense.com", country="US")
    assert response.status_code == 200
    body = response.json()
    company = body["company"]
    # The documented quirk: the reference's sample sends these numbers as strings.
    assert company["employeeCount"] == "1192" and company["annualRevenue"] == "104000000"
    assert not response_validator.is_valid(body)
    fixed = copy.deepcopy(body)
    fixed["company"]["employeeCount"] = int(company["employeeCount"])
    fixed["company"]["annualRevenue"] = int(company["annualRevenue"])
    response_validator.validate(fixed)
    assert company["streetAddress"] == "450 Mission St," and company["naicscode"] == "511210"
    assert body["segments"]["ids"] == [4713, 28237, 218915, 53685]
    assert body["segments"]["list"][0] == {"name": "Net New Logo Website Engagement Last 30 Days", "id": 4713}


def test_scores_deterministic_company_level_shared(client: httpx.Client) -> None:
    first = post(client, "bob.jones@acme-robotics.com").json()["scores"][0]
    again = post(client, "BOB.JONES@acme-robotics.com").json()["scores"][0]
    other = post(client, "dmitri@acme-robotics.com").json()["scores"][0]
    assert first == again
    company_level = (
        "company_intent_score", "company_buying_stage", "company_profile_score", "company_profile_fit"
    )
    for key in company_level:
        assert first[key] == other[key]
    with serve(make()) as second_client:
        assert post(second_client, "bob.jones@acme-robotics.com").json()["scores"][0] == first


@pytest.mark.parametrize("data", [{}, {"email": ""}, {"email": "   \t "}, {"country": "US"}])
def test_blank_email_400(shared: tuple[SixSenseEmulator, httpx.Client], data: dict[str, str]) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    response = client.post(PATH, data=data, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"status": "error", "message": BLANK_MESSAGE}
    assert len(emulator.charges) == charged


def test_json_body_is_not_a_form(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    _, client = shared
    response = client.post(PATH, json={"email": "bob.jones@acme-robotics.com"}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["message"] == BLANK_MESSAGE


@pytest.mark.parametrize(
    "email",
    [
        "sybil.fawlty", "trent@@nin.example", "a@b@acme-robotics.com", "@acme-robotics.com",
        "x@localhost", "x@",
    ],
)
def test_malformed_email_404(shared: tuple[SixSenseEmulator, httpx.Client], email: str) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    response = post(client, email)
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": INVALID_MESSAGE}
    assert len(emulator.charges) == charged


def test_unknown_domain_no_data(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent["enrichment"]
    response = post(client, "walter@unknown-startup.example")
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": NO_DATA_MESSAGE}
    assert emulator.credits_spent["enrichment"] == spent


@pytest.mark.parametrize("email", ["xena@blankco.example", "Uma.Thurman@GMAIL.com"])
def test_blank_answer_200_without_charge(shared: tuple[SixSenseEmulator, httpx.Client], email: str) -> None:
    emulator, client = shared
    spent, charged = emulator.credits_spent["enrichment"], len(emulator.charges)
    response = post(client, email)
    assert response.status_code == 200
    body = response.json()
    assert list(body["company"]) == list(COMPANY_FIELDS)
    assert all(value == "" for value in body["company"].values())
    assert body["scores"] == []
    assert body["segments"] == {"ids": [], "names": [], "list": []}
    assert emulator.credits_spent["enrichment"] == spent and len(emulator.charges) == charged


# --- auth and rate limit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Token wrongwrongwrongwrongwrongwrongwrongwrong"},
        {"Authorization": f"Bearer {SANDBOX_API_TOKEN}"},
        {"Authorization": SANDBOX_API_TOKEN},
        {"Authorization": f"Token {SANDBOX_API_TOKEN} extra"},
    ],
)
def test_bad_token_401(shared: tuple[SixSenseEmulator, httpx.Client], headers: dict[str, str]) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    response = post(client, "carla.diaz@acme-robotics.com", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "error" and "token" in body["message"].lower()
    assert SANDBOX_API_TOKEN not in response.text and "wrongwrong" not in response.text
    assert len(emulator.charges) == charged


def test_token_scheme_case_insensitive(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    _, client = shared
    lower_case_scheme = {"Authorization": f"token {SANDBOX_API_TOKEN}"}
    response = post(client, "bob.jones@acme-robotics.com", headers=lower_case_scheme)
    assert response.status_code == 200


def test_rate_limit_429_without_retry_after() -> None:
    emulator = make(rate_limit=[5, 60])
    with serve(emulator) as client:
        statuses = [post(client, "bob.jones@acme-robotics.com").status_code for _ in range(5)]
        assert statuses == [200] * 5
        refused = post(client, "bob.jones@acme-robotics.com")
        assert refused.status_code == 429
        assert refused.json() == {"status": "error", "message": "Too Many Requests"}
        assert "retry-after" not in refused.headers
        # Errors count too: the limit is on requests, not on answers.
        assert post(client, "").status_code == 429
    assert [e.status for e in emulator.log.entries(path_prefix=PATH)] == [200] * 5 + [429, 429]


def test_rate_limit_scaled_and_refusals_do_not_count() -> None:
    # 2 per 60 s with time_scale 120: 2 per 0.5 s.
    emulator = make(time_scale=120, rate_limit=[2, 60])
    with serve(emulator) as client:
        start = time.monotonic()
        assert [post(client, "").status_code for _ in range(2)] == [400, 400]
        time.sleep(max(0.0, 0.25 - (time.monotonic() - start)))
        assert post(client, "").status_code == 429  # refused at ~0.25 s: must not take a slot
        time.sleep(max(0.0, 0.6 - (time.monotonic() - start)))
        # The first two expired at ~0.5 s; had the refusal counted it would hold a slot until ~0.75 s.
        assert [post(client, "").status_code for _ in range(2)] == [400, 400]


def test_bad_token_does_not_use_the_rate_limit() -> None:
    emulator = make(rate_limit=[2, 60])
    with serve(emulator) as client:
        for _ in range(3):
            assert post(client, "bob.jones@acme-robotics.com", headers={}).status_code == 401
        assert [post(client, "bob.jones@acme-robotics.com").status_code for _ in range(2)] == [200, 200]


# --- credits -------------------------------------------------------------------------------------------


def test_same_email_charged_once_other_email_charged_again(
    client: httpx.Client, emulator: SixSenseEmulator
) -> None:
    before = emulator.credit_balance("enrichment")
    assert post(client, "bob.jones@acme-robotics.com").status_code == 200
    assert post(client, "  BOB.JONES@acme-robotics.com ").status_code == 200
    assert emulator.credits_spent == {"enrichment": 1, "company_identification": 0}
    assert post(client, "carla.diaz@acme-robotics.com").status_code == 200
    assert emulator.credits_spent["enrichment"] == 2
    assert emulator.credit_balance("enrichment") == before - 2
    assert [(c["pool"], c["key"]) for c in emulator.charges] == [
        ("enrichment", "bob.jones@acme-robotics.com"),
        ("enrichment", "carla.diaz@acme-robotics.com"),
    ]
    assert all(isinstance(c["at"], float) for c in emulator.charges)


def test_quota_exhausted_402_charges_nothing(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    assert post(client, "bob.jones@acme-robotics.com").status_code == 200
    emulator.set_credit_balance("enrichment", 0)
    response = post(client, "carla.diaz@acme-robotics.com")
    assert response.status_code == 402
    assert response.json() == {"status": "error", "message": QUOTA_MESSAGE}
    assert emulator.credits_spent["enrichment"] == 1 and len(emulator.charges) == 1
    assert emulator.credit_balance("enrichment") == 0
    # No charge needed: a re-enrichment inside 30 days and a blank answer still succeed.
    assert post(client, "bob.jones@acme-robotics.com").status_code == 200
    assert post(client, "xena@blankco.example").status_code == 200
    assert post(client, "walter@unknown-startup.example").status_code == 404
    assert emulator.credits_spent["enrichment"] == 1


def test_enrichment_credits_option() -> None:
    emulator = make(enrichment_credits=1)
    with serve(emulator) as client:
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
        assert post(client, "grace@globex.example").status_code == 402
    assert emulator.credits_spent["enrichment"] == 1


def test_set_credit_balance_rejects_unknown_pool(emulator: SixSenseEmulator) -> None:
    emulator.set_credit_balance("company_identification", 7)
    assert emulator.credit_balance("company_identification") == 7
    with pytest.raises(ValueError):
        emulator.set_credit_balance("people_search", 1)


def test_ledger_persists_across_instances(tmp_path: Path) -> None:
    first = make(state_dir=tmp_path, enrichment_credits=100)
    with serve(first) as client:
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
        assert post(client, "grace@globex.example").status_code == 200
    state_file = tmp_path / "sixsense.json"
    saved = json.loads(state_file.read_text(encoding="utf-8"))
    assert saved["balances"]["enrichment"] == 98
    assert [c["key"] for c in saved["charges"]] == ["bob.jones@acme-robotics.com", "grace@globex.example"]

    second = make(state_dir=tmp_path, enrichment_credits=100)  # the file's balance wins
    assert second.credits_spent["enrichment"] == 2
    assert second.charges == first.charges
    assert second.credit_balance("enrichment") == 98
    with serve(second) as client:
        assert post(client, "BOB.JONES@acme-robotics.com").status_code == 200  # within 30 days: free
        assert post(client, "heidi@initech.example").status_code == 200
    assert second.credits_spent["enrichment"] == 3
    assert second.credit_balance("enrichment") == 97

    second.set_credit_balance("enrichment", 0)
    third = make(state_dir=tmp_path)
    assert third.credit_balance("enrichment") == 0 and len(third.charges) == 3


def test_memory_only_without_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    emulator = make()
    with serve(emulator) as client:
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
    assert list(tmp_path.iterdir()) == []


def test_time_scale_shortens_the_30_day_period() -> None:
    # 30 days / 12,960,000 = 0.2 s.
    emulator = make(time_scale=30 * 24 * 3600 / 0.2)
    with serve(emulator) as client:
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
        assert emulator.credits_spent["enrichment"] == 1
        time.sleep(0.25)
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
        assert emulator.credits_spent["enrichment"] == 2
    assert emulator.charges[1]["at"] - emulator.charges[0]["at"] >= 0.2


def test_concurrent_requests_charge_each_email_once(emulator: SixSenseEmulator, client: httpx.Client) -> None:
    emails = [f"person{i % 10}@acme-robotics.com" for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda e: post(client, e).status_code, emails))
    assert statuses == [200] * 40
    assert emulator.credits_spent["enrichment"] == 10
    assert sorted(c["key"] for c in emulator.charges) == sorted(set(emails))


# --- shared sandbox machinery ----------------------------------------------------------------------


def test_latency_option() -> None:
    emulator = make(latency_seconds=0.2)
    with serve(emulator) as client:
        start = time.monotonic()
        assert post(client, "bob.jones@acme-robotics.com").status_code == 200
        assert time.monotonic() - start >= 0.2


def test_request_log_and_fault_injection(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    emulator.faults.add(Fault(path_prefix=PATH, status=503, body={"status": "error", "message": "down"}))
    assert post(client, "bob.jones@acme-robotics.com").status_code == 503
    assert emulator.charges == []  # a "before" fault never reaches the emulator
    assert post(client, "bob.jones@acme-robotics.com").status_code == 200
    entries = emulator.log.entries(path_prefix=PATH)
    assert [(e.method, e.status, e.faulted) for e in entries] == [("POST", 503, True), ("POST", 200, False)]
    assert entries[0].auth_fingerprint and SANDBOX_API_TOKEN not in entries[0].auth_fingerprint
    logged = client.get("/__sandbox/requests", params={"path_prefix": PATH}).json()
    assert len(logged) == 2
