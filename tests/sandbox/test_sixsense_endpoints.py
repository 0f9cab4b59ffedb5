"""The 6sense emulator's other endpoints over a real socket, against the reference's samples.

Lead Scoring, Company Firmographics v2/v3, People Enrichment, People Search and its dictionary,
Company Identification: shapes, error codes, entitlements, the shared rate limit and both credit
pools. /v2/people/full itself is covered by test_sixsense_emulator.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import EmulatorOptions
from connector.sandbox.server import EmulatorServer
from connector.sandbox.sixsense import (
    APIS,
    SANDBOX_API_TOKEN,
    SixSenseEmulator,
    SixSensePerson,
    create_sixsense_emulator,
    seed_identification_ips,
)

AUTH = {"Authorization": f"Token {SANDBOX_API_TOKEN}"}

BLANK_EMAIL = "Email ID is mandatory and can’t be blank"
BLANK_DOMAIN = "Domain is mandatory and can’t be blank"
INVALID_EMAIL = "Invalid email ID. Please make sure you have sent a valid email address in email field."
NO_DATA = "No data found. Please contact 6sense support, if you think this is an unexpected error."
QUOTA = (
    "Quota Exhausted. Your allocated Quota is exhausted, please upgrade/top-up your API limit by "
    "reaching out to your CSM."
)
FORBIDDEN = (
    "Forbidden. You do not have the appropriate user rights to access the request. Do not repeat "
    "the request."
)
DAY = 24 * 3600.0

# --- the reference's sample responses (copied from 6sense-api-reference.txt) ---------------------

SAMPLE_SEGMENTS = {
    "ids": [4713, 28237, 218915, 53685],
    "names": [
        "Net New Logo Website Engagement Last 30 Days",
        "6s for 6s: Keyword_Sales Intelligence",
        "Cvent: Researching Virtual Events",
        "EY - Enterprise Accounts (DemandGen)",
    ],
    "list": [
        {"name": "Net New Logo Website Engagement Last 30 Days", "id": 4713},
        {"name": "6s for 6s: Keyword_Sales Intelligence", "id": 28237},
        {"name": "Cvent: Researching Virtual Events", "id": 218915},
        {"name": "EY - Enterprise Accounts (DemandGen)", "id": 53685},
    ],
}

SAMPLE_IDENTIFICATION = {
    "company": {
        "company_match": "Match",
        "additional_comment": "Company name or domain match was found",
        "domain": "g.ucla.edu",
        "name": "UCLA",
        "region": "Northern America",
        "country": "United States",
        "state": "California",
        "city": "Los Angeles",
        "industry": "Education",
        "country_iso_code": "US",
        "address": "308 Charles E. Young Drive North A210 Fowler Building/Box 951510",
        "zip": "90095",
        "phone": "(310) 825-4321",
        "employee_range": "10,000+",
        "revenue_range": "$5B+",
        "employee_count": "22000",
        "annual_revenue": "7449000000",
        "is_blacklisted": False,
        "is_6qa": True,
        "geoIP_country": "United States",
        "geoIP_state": "California",
        "geoIP_city": "San Jose",
        "state_code": "CA",
        "industry_v2": [{"industry": "Education", "subindustry": "Colleges & Universities"}],
        "sic_description": "",
        "sic": "",
        "naics": "6113",
        "naics_description": "Colleges, Universities, and Professional Schools",
    },
    "scores": [
        {
            "is_6qa": True,
            "product": "6sense",
            "product_display_name": "6sense",
            "intent_score": 63,
            "buying_stage": "Consideration",
            "profile_score": 9,
            "profile_fit": "Weak",
        }
    ],
    "segments": SAMPLE_SEGMENTS,
    "confidence": "Very High",
}

SAMPLE_FIRMOGRAPHICS = {
    "company": {
        "domain": "6sense.com",
        "name": "6sense",
        "region": "Northern America",
        "country": "United States",
        "countryISOCode": "US",
        "state": "California",
        "city": "San Francisco",
        "streetAddress": "450 Mission St,",
        "postalCode": "94105",
        "companyPhone": "415-212-9225",
        "industry": "Software and Technology",
        "employeeRange": "1,000 - 4,999",
        "revenueRange": "$100M - $250M",
        "employeeCount": "1192",
        "annualRevenue": "104000000",
        "titleLevel": "staff",
        "titleFunction": "engineering",
        "sicdescription": "Prepackaged Software",
        "siccode": "7372",
        "naicscode": "511210",
        "naicsdescription": "Software Publishers",
    },
    "segments": {"ids": [], "names": [], "list": []},
}

SAMPLE_LEAD_SCORING = {
    "scores": [
        {
            "product": "6sense",
            "company_intent_score": 0,
            "company_buying_stage": "Target",
            "company_profile_score": 81,
            "company_profile_fit": "Strong",
            "contact_intent_score": 0,
            "contact_grade": "D",
            "contact_profile_score": 58,
            "contact_profile_fit": "Moderate",
        }
    ]
}

SAMPLE_PEOPLE_ENRICHMENT = {
    "person": {
        "id": "d121d17f-fc27-4edc-9d19-ce83137c8213",
        "email": "abc.xyze@6sense.com",
        "emailConfidence": "A+",
        "fullName": "ABC XYZ",
        "firstName": "ABC",
        "lastName": "XYZ",
        "title": "senior product manager",
        "function": "Product Management",
        "level": "Senior",
        "division": "Product Management",
        "education": [],
        "skills": ["Seo", "Digital Marketing", "Marketing Strategy"],
        "city": "Pune",
        "state": "Maharashtra",
        "country": "India",
        "postalCode": "",
        "phone": "",
        "workPhone": "",
        "linkedinUrl": "https://www.linkedin.com/in/naveentitare/",
        "twitterUrl": "",
        "facebookUrl": "https://www.facebook.com/naveen.titare",
    },
    "company": {
        "domain": "6sense.com",
        "name": "6sense",
        "region": "Southern Asia",
        "country": "India",
        "state": "Maharashtra",
    },
}

SAMPLE_PEOPLE_SEARCH = {
    "domain": "6sense.com",
    "city": ["Bangalore", "Pune"],
    "state": ["Karnataka", "Maharashtra"],
    "country": ["India"],
    "titles": ["senior product manager"],
    "totalRecordCount": 8,
    "totalPage": 1,
    "pageNumber": 1,
    "pageSize": 50,
    "data": [
        {
            "peopleId": "xxx-xxx-xxx-xx-xx",
            "hasEmail": True,
            "fullName": "A******* S****",
            "firstName": "A*******",
            "lastName": "S****",
            "hasPhone": False,
            "city": "Bangalore",
            "state": "Karnataka",
            "country": "India",
            "function": "Product Management",
            "division": "Product Management",
            "seniorityLevel": "Senior",
        }
    ],
}

SAMPLE_DICTIONARY = {
    "city": ["Auckland", "Barcelona", "Kharkiv", "Kolding"],
    "state": ["Auckland", "Catalonia", "Kharkiv", "South Denmark"],
    "country": ["Denmark", "Libya", "New Zealand", "Spain", "Ukraine"],
    "titles": ["account manager", "business development representative smb uk ireland", "customer engineer"],
    "industry": ["Business Services", "Information Technology", "Internet", "Software"],
    "totalRecordCount": 146975,
    "totalPage": 29395,
    "pageNumber": 1,
    "pageSize": 5,
}

# --- helpers -----------------------------------------------------------------------------------------


def make(state_dir: Path | None = None, time_scale: float = 1.0, **extra: Any) -> SixSenseEmulator:
    return create_sixsense_emulator(EmulatorOptions(state_dir=state_dir, time_scale=time_scale, extra=extra))


@contextmanager
def serve(emulator: SixSenseEmulator) -> Iterator[httpx.Client]:
    server = EmulatorServer(emulator.app).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10, headers=AUTH) as client:
            yield client
    finally:
        server.stop()


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def score(client: httpx.Client, email: str | None, **kw: Any) -> httpx.Response:
    return client.post("/v2/people/score", data={} if email is None else {"email": email}, **kw)


def full(client: httpx.Client, email: str) -> httpx.Response:
    return client.post("/v2/people/full", data={"email": email})


def firmo_v2(client: httpx.Client, email: str | None, **kw: Any) -> httpx.Response:
    return client.post("/v2/people/enrichment", data={} if email is None else {"email": email}, **kw)


def firmo_v3(client: httpx.Client, **data: str) -> httpx.Response:
    return client.post("/v1/enrichment/company", data=data)


def people(client: httpx.Client, **data: str) -> httpx.Response:
    return client.post("/v1/enrichment/people", data=data)


def search(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/v1/search/people", json=body)


def dictionary(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get("/v1/dictionary/peopleSearch", params=params)


def identify(client: httpx.Client, ip: str | None = None, **headers: str) -> httpx.Response:
    if ip is not None:
        headers["X-Forwarded-For"] = ip
    return client.get("/v3/company/details", headers=headers)


def error(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


def person_at(emulator: SixSenseEmulator, **where: Any) -> SixSensePerson:
    def ok(p: SixSensePerson) -> bool:
        for key, value in where.items():
            actual = getattr(p.office, key[7:]) if key.startswith("office_") else getattr(p, key)
            if callable(value) and not value(actual) or not callable(value) and actual != value:
                return False
        return True

    return next(p for p in emulator.people if ok(p))


def keys_of(value: dict[str, Any]) -> list[str]:
    return list(value)


@pytest.fixture
def emulator() -> SixSenseEmulator:
    return make()


@pytest.fixture
def client(emulator: SixSenseEmulator) -> Iterator[httpx.Client]:
    with serve(emulator) as c:
        yield c


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SixSenseEmulator, httpx.Client]]:
    """One server for tests that only read, or only check "this request charged nothing"."""
    emulator = make()
    with serve(emulator) as c:
        yield emulator, c


# --- interface -------------------------------------------------------------------------------------


def test_settings_overrides_point_all_three_hosts_at_the_emulator(emulator: SixSenseEmulator) -> None:
    assert emulator.settings_overrides("http://127.0.0.1:9", None) == {
        "providers": {
            "sixsense": {
                "scribe_url": "http://127.0.0.1:9",
                "api_url": "http://127.0.0.1:9",
                "epsilon_url": "http://127.0.0.1:9",
                "api_token": SANDBOX_API_TOKEN,
            }
        }
    }


def test_documented_ip_mapping() -> None:
    assert seed_identification_ips() == {
        "203.0.113.1": "6sense.com",
        "203.0.113.2": "acme-robotics.com",
        "203.0.113.3": "globex.example",
        "203.0.113.4": "initech.example",
        "203.0.113.5": "sprockets.example",
        "203.0.113.6": "electronique.example",
        "203.0.113.7": "umbrella.example",
    }


def test_seeded_people_are_deterministic_and_include_the_leads() -> None:
    first, second = make(), make()
    assert [(p.people_id, p.email, p.linkedin_url) for p in first.people] == [
        (p.people_id, p.email, p.linkedin_url) for p in second.people
    ]
    emails = {p.email for p in first.people}
    assert {"alice.smith@acme-robotics.com", "judy@6sense.com", "zoe@electronique.example"} <= emails
    assert not {"uma.thurman@gmail.com", "walter@unknown-startup.example", "xena@blankco.example"} & emails
    assert len({p.people_id for p in first.people}) == len(first.people)
    assert len({p.linkedin_url for p in first.people}) == len(first.people)
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(uuid_like.fullmatch(p.people_id) for p in first.people)
    assert any(not p.email for p in first.people)  # some people have no email
    carla = person_at(first, email="carla.diaz@acme-robotics.com")
    assert (carla.first_name, carla.last_name) == ("Carla", "Díaz")
    assert carla.linkedin_url.startswith("https://www.linkedin.com/in/carladiaz")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        make(apis=["people_search"])
    with pytest.raises(ValueError):
        make(ip_companies={"10.0.0.1": "unknown-startup.example"})
    with pytest.raises(ValueError):
        make(ip_companies={"10.0.0.1": "gmail.com"})


# --- Lead Scoring ----------------------------------------------------------------------------------


def test_lead_scoring_sample_shape_same_scores_as_people_full_and_free(client: httpx.Client,
                                                                       emulator: SixSenseEmulator) -> None:
    response = score(client, "  Bob.Jones@acme-robotics.com ", headers={**AUTH, "Cache-Control": "no-cache"})
    assert response.status_code == 200
    body = response.json()
    assert keys_of(body) == keys_of(SAMPLE_LEAD_SCORING)
    assert keys_of(body["scores"][0]) == keys_of(SAMPLE_LEAD_SCORING["scores"][0])
    assert emulator.credits_spent["enrichment"] == 0 and emulator.charges == []
    assert full(client, "bob.jones@acme-robotics.com").json()["scores"] == body["scores"]
    emulator.set_credit_balance("enrichment", 0)
    assert score(client, "carla.diaz@acme-robotics.com").status_code == 200  # costs nothing


def test_lead_scoring_errors(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    assert error(score(client, None)) == (400, {"status": "error", "message": BLANK_EMAIL})
    assert error(score(client, "  ")) == (400, {"status": "error", "message": BLANK_EMAIL})
    assert error(score(client, "sybil.fawlty")) == (404, {"status": "error", "message": INVALID_EMAIL})
    assert error(score(client, "walter@unknown-startup.example")) == (
        404, {"status": "error", "message": NO_DATA})
    blank = score(client, "uma.thurman@gmail.com")
    assert blank.status_code == 200 and blank.json() == {"scores": []}
    assert len(emulator.charges) == charged


# --- Company Firmographics v2 and v3 ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_firmographics_sample_shape(shared: tuple[SixSenseEmulator, httpx.Client], version: str) -> None:
    _, client = shared
    email = "judy@6sense.com"
    response = firmo_v2(client, email) if version == "v2" else firmo_v3(client, email=email)
    assert response.status_code == 200
    body = response.json()
    assert keys_of(body) == keys_of(SAMPLE_FIRMOGRAPHICS)
    assert body["company"] == SAMPLE_FIRMOGRAPHICS["company"]  # the sample company, field for field
    assert body["segments"] == SAMPLE_SEGMENTS
    other = (firmo_v2(client, "grace@globex.example") if version == "v2"
             else firmo_v3(client, email="grace@globex.example")).json()
    assert keys_of(other["company"]) == keys_of(SAMPLE_FIRMOGRAPHICS["company"])
    assert keys_of(other["segments"]) == keys_of(SAMPLE_FIRMOGRAPHICS["segments"])
    # Numbers as strings, as the sample sends them, for every company.
    assert other["company"]["employeeCount"] == "180" and other["company"]["annualRevenue"] == "14000000"
    assert other["segments"]["list"] == [{"name": "Mid-Market", "id": 9003}]


def test_firmographics_v2_charges_and_errors(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    assert firmo_v2(client, "bob.jones@acme-robotics.com").status_code == 200
    assert firmo_v2(client, "BOB.JONES@acme-robotics.com ").status_code == 200
    assert [(c["pool"], c["key"]) for c in emulator.charges] == [
        ("enrichment", "bob.jones@acme-robotics.com")]
    assert error(firmo_v2(client, None)) == (400, {"status": "error", "message": BLANK_EMAIL})
    assert error(firmo_v2(client, "trent@@nin.example")) == (
        404, {"status": "error", "message": INVALID_EMAIL})
    assert error(firmo_v2(client, "walter@unknown-startup.example"))[0] == 404
    blank = firmo_v2(client, "xena@blankco.example").json()
    assert keys_of(blank["company"]) == keys_of(SAMPLE_FIRMOGRAPHICS["company"])
    assert all(v == "" for v in blank["company"].values())
    assert blank["segments"] == {"ids": [], "names": [], "list": []}
    assert emulator.credits_spent["enrichment"] == 1


def test_firmographics_v3_email_first_then_domain(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    by_domain = firmo_v3(client, domain=" https://www.Globex.example/about-us ")
    assert by_domain.status_code == 200 and by_domain.json()["company"]["domain"] == "globex.example"
    # Email wins over the domain.
    both = firmo_v3(client, email="ivan@initech.example", domain="globex.example")
    assert both.json()["company"]["domain"] == "initech.example"
    # The domain is the fallback for an unknown, a malformed and a personal-mail email.
    assert firmo_v3(client, email="walter@unknown-startup.example", domain="acme-robotics.com").json()[
        "company"]["domain"] == "acme-robotics.com"
    assert firmo_v3(client, email="sybil.fawlty", domain="umbrella.example").json()[
        "company"]["domain"] == "umbrella.example"
    assert firmo_v3(client, email="uma.thurman@gmail.com", domain="electronique.example").json()[
        "company"]["name"] == "Société Générale d'Électronique"
    assert [c["key"] for c in emulator.charges] == [
        "domain:globex.example",
        "ivan@initech.example",
        "walter@unknown-startup.example",
        "domain:umbrella.example",
        "uma.thurman@gmail.com",
    ]
    # The other documented inputs are accepted.
    extra = firmo_v3(client, email="grace@globex.example", country="US", company="Globex", industry="x",
                     title="CTO", role="Buyer", firstname="Grace", lastname="Hopper", leadsource="Web")
    assert extra.status_code == 200


def test_firmographics_v3_errors(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    assert error(firmo_v3(client)) == (400, {"status": "error", "message": BLANK_EMAIL})
    assert error(firmo_v3(client, email=" ", domain="")) == (400, {"status": "error", "message": BLANK_EMAIL})
    assert error(firmo_v3(client, email="x@")) == (404, {"status": "error", "message": INVALID_EMAIL})
    assert error(firmo_v3(client, domain="unknown-startup.example")) == (
        404, {"status": "error", "message": NO_DATA})
    assert error(firmo_v3(client, email="walter@unknown-startup.example"))[0] == 404
    assert error(firmo_v3(client, email="sybil.fawlty", domain="nowhere.example"))[1]["message"] == NO_DATA
    blank = firmo_v3(client, domain="gmail.com")
    assert blank.status_code == 200 and set(blank.json()["company"].values()) == {""}
    assert len(emulator.charges) == charged


# --- People Enrichment ----------------------------------------------------------------------------------


def test_people_enrichment_by_email_sample_shape(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    response = people(client, email="  Alice.Smith@ACME-ROBOTICS.COM ")
    assert response.status_code == 200
    body = response.json()
    assert keys_of(body) == keys_of(SAMPLE_PEOPLE_ENRICHMENT)
    assert keys_of(body["person"]) == keys_of(SAMPLE_PEOPLE_ENRICHMENT["person"])
    assert keys_of(body["company"]) == keys_of(SAMPLE_PEOPLE_ENRICHMENT["company"])
    person = body["person"]
    assert (person["email"], person["fullName"], person["title"]) == (
        "alice.smith@acme-robotics.com", "Alice Smith", "vp operations")
    assert person["emailConfidence"] in ("A+", "A", "B")
    assert isinstance(person["skills"], list) and isinstance(person["education"], list)
    assert all(isinstance(person[k], str) for k in person if k not in ("skills", "education"))
    assert body["company"]["name"] == "Acme Robotics"
    assert [(c["pool"], c["key"]) for c in emulator.charges] == [
        ("enrichment", "alice.smith@acme-robotics.com")]


def test_people_enrichment_company_is_the_persons_office(
    shared: tuple[SixSenseEmulator, httpx.Client],
) -> None:
    emulator, client = shared
    pune = person_at(emulator, domain="6sense.com", office_city="Pune", email=bool)
    body = people(client, email=pune.email).json()
    assert (body["person"]["city"], body["person"]["country"]) == ("Pune", "India")
    assert body["company"] == {
        "domain": "6sense.com", "name": "6sense", "region": "Southern Asia", "country": "India",
        "state": "Maharashtra",
    }


def test_people_enrichment_by_linkedin_and_people_id_is_one_record(
    client: httpx.Client, emulator: SixSenseEmulator
) -> None:
    bob = person_at(emulator, email="bob.jones@acme-robotics.com")
    slug = bob.linkedin_url.rstrip("/").rsplit("/", 1)[1]
    answers = [
        people(client, email="bob.jones@acme-robotics.com"),
        people(client, linkedinUrl=bob.linkedin_url),
        people(client, linkedinUrl=f"http://linkedin.com/in/{slug.upper()}"),
        people(client, linkedinUrl=f"linkedin.com/in/{slug}?trk=profile"),
        people(client, linkedinUrl=f"https://uk.linkedin.com/in/{slug}/"),
        people(client, peopleId=bob.people_id),
        people(client, peopleId=f"  {bob.people_id.upper()} "),
    ]
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert {a.json()["person"]["id"] for a in answers} == {bob.people_id}
    # One person, one record: charged once, and people/full of the same email is free too.
    assert full(client, "bob.jones@acme-robotics.com").status_code == 200
    assert [c["key"] for c in emulator.charges] == ["bob.jones@acme-robotics.com"]
    # A person without an email is keyed by the people id.
    nameless = person_at(emulator, email="")
    body = people(client, peopleId=nameless.people_id).json()
    assert body["person"]["email"] == "" and body["person"]["emailConfidence"] == ""
    assert emulator.charges[-1]["key"] == f"people:{nameless.people_id}"


def test_people_enrichment_inputs_in_order(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    grace = person_at(emulator, email="grace@globex.example")
    heidi = person_at(emulator, email="heidi@initech.example")
    assert people(client, email="grace@globex.example", peopleId=heidi.people_id).json()[
        "person"]["id"] == grace.people_id
    # A malformed or unmatched email falls through to the next input.
    assert people(client, email="sybil.fawlty", linkedinUrl=heidi.linkedin_url).json()[
        "person"]["id"] == heidi.people_id
    assert people(client, email="nobody@acme-robotics.com", peopleId=grace.people_id).json()[
        "person"]["id"] == grace.people_id


@pytest.mark.parametrize(
    "data",
    [
        {"email": "nobody@acme-robotics.com"},  # a known company, nobody by that email
        {"email": "uma.thurman@gmail.com"},
        {"email": "walter@unknown-startup.example"},
        {"email": "xena@blankco.example"},
        {"linkedinUrl": "https://www.linkedin.com/in/nobody-at-all/"},
        {"linkedinUrl": "not a linkedin url"},
        {"peopleId": "hlud-asdsad-asd9as7-28323"},
    ],
)
def test_people_enrichment_no_match_is_204(shared: tuple[SixSenseEmulator, httpx.Client],
                                            data: dict[str, str]) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    response = people(client, **data)
    assert response.status_code == 204
    assert response.content == b""
    assert len(emulator.charges) == charged


def test_people_enrichment_errors(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    _, client = shared
    assert error(people(client)) == (400, {"status": "error", "message": BLANK_EMAIL})
    assert error(people(client, email=" ", linkedinUrl="", peopleId=" ")) == (
        400, {"status": "error", "message": BLANK_EMAIL})
    assert error(people(client, email="trent@@nin.example")) == (
        404, {"status": "error", "message": INVALID_EMAIL})


# --- People Search ---------------------------------------------------------------------------------------


def test_people_search_sample_request_and_shape(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    spent = dict(emulator.credits_spent)
    response = search(client, {
        "domain": "6sense.com",
        "industry": "Software and Technology",
        "city": ["Austin", "Bangalore", "pune"],
        "state": ["karnataka", "England", "maharashtra"],
    })
    assert response.status_code == 200
    body = response.json()
    assert keys_of(body) == keys_of(SAMPLE_PEOPLE_SEARCH)
    for record in body["data"]:
        assert keys_of(record) == keys_of(SAMPLE_PEOPLE_SEARCH["data"][0])
        assert record["city"] in ("Bangalore", "Pune") and record["country"] == "India"
        assert isinstance(record["hasEmail"], bool) and isinstance(record["hasPhone"], bool)
        assert re.fullmatch(r"\w\** \w\**", record["fullName"])
        assert record["fullName"] == f'{record["firstName"]} {record["lastName"]}'
    # Like the sample: the matching values, in the data's spelling.
    assert body["city"] == ["Bangalore", "Pune"]
    assert body["state"] == ["Karnataka", "Maharashtra"] and body["country"] == ["India"]
    expected = [p for p in emulator.people if p.domain == "6sense.com" and p.office.country == "India"]
    assert body["totalRecordCount"] == len(expected) and body["totalPage"] == 1
    assert (body["pageNumber"], body["pageSize"]) == (1, 50)
    assert [r["peopleId"] for r in body["data"]] == sorted(p.people_id for p in expected)
    assert body["titles"] == sorted({p.title for p in expected})
    assert emulator.credits_spent == spent  # People Search costs nothing


def test_people_search_then_enrich_by_people_id(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    found = search(client, {"domain": "globex.example", "titles": ["CTO"]}).json()
    [record] = found["data"]
    assert record["firstName"] == "F****"
    enriched = people(client, peopleId=record["peopleId"]).json()["person"]
    assert enriched["email"] == "frank.o'brien@globex.example" and enriched["fullName"] == "Frank O'Brien"
    assert emulator.credits_spent["enrichment"] == 1


def test_people_search_default_page_size_and_pages(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    total = sum(1 for p in emulator.people if p.domain == "initech.example")
    assert total == 55
    first = search(client, {"domain": "initech.example"}).json()
    assert (first["totalRecordCount"], first["totalPage"], first["pageSize"]) == (55, 2, 50)
    assert len(first["data"]) == 50
    second = search(client, {"domain": "initech.example", "pageNo": 2}).json()
    assert second["pageNumber"] == 2 and len(second["data"]) == 5
    ids = [r["peopleId"] for r in first["data"] + second["data"]]
    assert len(set(ids)) == 55 and ids == sorted(ids)
    small = search(client, {"domain": "initech.example", "pageSize": "20", "pageNo": "3"}).json()
    assert (small["totalPage"], small["pageNumber"], small["pageSize"], len(small["data"])) == (3, 3, 20, 15)
    past = search(client, {"domain": "initech.example", "pageNo": 3})
    assert past.status_code == 200 and past.json()["data"] == [] and past.json()["totalRecordCount"] == 55


@pytest.mark.parametrize(
    "body",
    [
        {"domain": "initech.example", "pageSize": 51},
        {"domain": "initech.example", "pageSize": 0},
        {"domain": "initech.example", "pageSize": "100"},
        {"domain": "initech.example", "pageSize": 10.5},
        {"domain": "initech.example", "pageSize": True},
        {"domain": "initech.example", "pageNo": 0},
        {"domain": "initech.example", "pageNo": "first"},
        {"domain": "initech.example", "city": [f"City {i}" for i in range(11)]},
        {"domain": "initech.example", "titles": ",".join(f"t{i}" for i in range(11))},
        {"domain": "initech.example", "state": [1, 2]},
        {"domain": "initech.example", "country": {"name": "US"}},
        {"domain": "initech.example", "industry": ["Financial Services"]},
        {"domain": ["initech.example"]},
    ],
)
def test_people_search_validation_422(
    shared: tuple[SixSenseEmulator, httpx.Client], body: dict[str, Any]
) -> None:
    _, client = shared
    status, payload = error(search(client, body))
    assert status == 422
    assert payload["status"] == "error" and payload["message"].startswith("Validation error. ")


def test_people_search_filters(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    cities = [f"City {i}" for i in range(9)] + ["manchester"]
    ten = search(client, {"domain": "sprockets.example", "city": cities})
    assert ten.status_code == 200 and ten.json()["city"] == ["Manchester"]  # 10 values are accepted
    by_iso = search(client, {"domain": "sprockets.example", "country": "GB"}).json()
    by_name = search(client, {"domain": "sprockets.example", "country": "united kingdom, Narnia"}).json()
    assert by_iso["totalRecordCount"] == by_name["totalRecordCount"] > 0
    assert by_iso["country"] == ["United Kingdom"]
    titled = search(client, {"domain": "acme-robotics.com", "titles": ["VP Operations", "engineer"]}).json()
    assert titled["titles"] == ["engineer", "vp operations"]
    expected = sum(1 for p in emulator.people if p.domain == "acme-robotics.com"
                   and p.title in ("engineer", "vp operations"))
    assert titled["totalRecordCount"] == expected
    assert search(client, {"domain": "acme-robotics.com", "industry": "manufacturing"}).status_code == 200
    assert search(client, {"domain": "acme-robotics.com", "industry": "Software"}).status_code == 204
    assert search(client, {"domain": "acme-robotics.com", "city": ["Atlantis"]}).status_code == 204
    unknown_field = search(client, {"domain": "globex.example", "pageNumber": 2, "colour": "blue"}).json()
    assert unknown_field["pageNumber"] == 1


def test_people_search_no_match_and_blank_domain(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    _, client = shared
    for domain in ("unknown-startup.example", "gmail.com", "blankco.example"):
        response = search(client, {"domain": domain})
        assert response.status_code == 204 and response.content == b""
    assert error(search(client, {})) == (400, {"status": "error", "message": BLANK_DOMAIN})
    assert error(search(client, {"domain": "  "}))[0] == 400
    form = client.post("/v1/search/people", data={"domain": "6sense.com"})  # not a JSON body
    assert error(form) == (400, {"status": "error", "message": BLANK_DOMAIN})


# --- People Search Dictionary ----------------------------------------------------------------------------


def test_dictionary_sample_shape_and_paging(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    whole = dictionary(client, domainName="6sense.com")
    assert whole.status_code == 200
    body = whole.json()
    assert keys_of(body) == keys_of(SAMPLE_DICTIONARY)
    staff = [p for p in emulator.people if p.domain == "6sense.com"]
    assert body["city"] == sorted({p.office.city for p in staff}) == ["Bangalore", "Pune", "San Francisco"]
    assert body["country"] == ["India", "United States"]
    assert body["titles"] == sorted({p.title for p in staff})
    assert body["industry"] == ["Software and Technology"]
    assert (body["pageNumber"], body["pageSize"], body["totalPage"]) == (1, 1000, 1)
    assert body["totalRecordCount"] == len(body["titles"])
    paged = dictionary(client, domainName="https://www.6sense.com", pageNumber=2, pageSize=2).json()
    assert paged["titles"] == body["titles"][2:4] and paged["city"] == ["San Francisco"]
    assert paged["country"] == [] and paged["industry"] == []
    assert paged["totalPage"] == -(-len(body["titles"]) // 2)


def test_dictionary_errors(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    _, client = shared
    assert error(dictionary(client)) == (400, {"status": "error", "message": BLANK_DOMAIN})
    assert error(dictionary(client, domainName=" ")) == (400, {"status": "error", "message": BLANK_DOMAIN})
    for params in ({"pageSize": 1001}, {"pageSize": 0}, {"pageNumber": 0}, {"pageNumber": "x"}):
        status, payload = error(dictionary(client, domainName="6sense.com", **params))
        assert status == 422 and payload["message"].startswith("Validation error. ")
    assert dictionary(client, domainName="6sense.com", pageSize=1000).status_code == 200
    assert dictionary(client, domainName="unknown-startup.example").status_code == 204
    assert dictionary(client, domainName="yahoo.com").status_code == 204


# --- Company Identification ---------------------------------------------------------------------------


def test_company_identification_sample_shape(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    response = identify(client, "203.0.113.1", **{"X-6s-CustomID": "acmepartner-customer-token123"})
    assert response.status_code == 200
    body = response.json()
    assert keys_of(body) == keys_of(SAMPLE_IDENTIFICATION)
    company = body["company"]
    assert keys_of(company) == keys_of(SAMPLE_IDENTIFICATION["company"])
    assert keys_of(body["scores"][0]) == keys_of(SAMPLE_IDENTIFICATION["scores"][0])
    assert keys_of(body["segments"]) == keys_of(SAMPLE_IDENTIFICATION["segments"])
    assert company["company_match"] == "Match"
    assert company["additional_comment"] == "Company name or domain match was found"
    assert (company["domain"], company["name"], company["address"], company["zip"]) == (
        "6sense.com", "6sense", "450 Mission St,", "94105")
    # Numbers as strings, as the sample sends them; booleans as booleans.
    assert company["employee_count"] == "1192" and company["annual_revenue"] == "104000000"
    assert company["is_blacklisted"] is False and isinstance(company["is_6qa"], bool)
    assert company["state_code"] == "CA" and company["industry_v2"] == [
        {"industry": "Software and Technology", "subindustry": "Software"}]
    assert body["segments"] == SAMPLE_SEGMENTS
    assert body["confidence"] in ("Very High", "High", "Moderate", "Low")
    [product] = body["scores"]
    company_scores = full(client, "judy@6sense.com").json()["scores"][0]
    pairs = {
        "intent_score": "company_intent_score", "buying_stage": "company_buying_stage",
        "profile_score": "company_profile_score", "profile_fit": "company_profile_fit",
    }
    assert {key: product[key] for key in pairs} == {
        key: company_scores[other] for key, other in pairs.items()}
    assert product["is_6qa"] == company["is_6qa"] == (product["buying_stage"] in ("Decision", "Purchase"))
    assert emulator.custom_ids == ["acmepartner-customer-token123"]
    assert ("company_identification", "203.0.113.1") in [(c["pool"], c["key"]) for c in emulator.charges]


def test_company_identification_charges_each_ip_once(
    client: httpx.Client, emulator: SixSenseEmulator
) -> None:
    assert identify(client, "203.0.113.2").json()["company"]["domain"] == "acme-robotics.com"
    assert identify(client, "203.0.113.2").status_code == 200
    assert emulator.credits_spent == {"enrichment": 0, "company_identification": 1}
    # Another IP of the same company is another identification.
    emulator.ip_companies["203.0.113.200"] = "acme-robotics.com"
    assert identify(client, "203.0.113.200").json()["company"]["domain"] == "acme-robotics.com"
    assert identify(client, "203.0.113.3").json()["company"]["domain"] == "globex.example"
    assert emulator.credits_spent["company_identification"] == 3
    assert emulator.identified_ips == {"203.0.113.2", "203.0.113.200", "203.0.113.3"}
    assert emulator.credit_balance("company_identification") == 10_000 - 3


def test_company_identification_x_forwarded_for_and_socket_peer(client: httpx.Client,
                                                                 emulator: SixSenseEmulator) -> None:
    # The left-most X-Forwarded-For entry is the visitor.
    chained = identify(client, "203.0.113.4 , 203.0.113.5, 10.0.0.1")
    assert chained.json()["company"]["domain"] == "initech.example"
    # Without the header the socket peer (127.0.0.1) is the visitor: not a seeded company.
    peer = identify(client).json()
    assert peer["company"]["company_match"] == "No Match"
    assert peer["company"]["additional_comment"] == "No company name or domain was found"
    assert emulator.identified_ips == {"203.0.113.4"}


def test_company_identification_socket_peer_mapped_by_option() -> None:
    emulator = make(ip_companies={"127.0.0.1": "umbrella.example"})
    with serve(emulator) as client:
        assert identify(client).json()["company"]["name"] == "Umbrella Health"
        assert identify(client, "203.0.113.6").json()["company"]["domain"] == "electronique.example"
    assert emulator.identified_ips == {"127.0.0.1", "203.0.113.6"}


def test_company_identification_non_matches_are_free(shared: tuple[SixSenseEmulator, httpx.Client]) -> None:
    emulator, client = shared
    spent = emulator.credits_spent["company_identification"]
    cases = (("8.8.8.8", "No Match"), ("203.0.113.99", "No Match"), ("198.51.100.7", "Non-actionable Match"))
    for ip, match in cases:
        body = identify(client, ip).json()
        assert keys_of(body) == keys_of(SAMPLE_IDENTIFICATION)
        company = body["company"]
        assert keys_of(company) == keys_of(SAMPLE_IDENTIFICATION["company"])
        assert company["company_match"] == match and company["domain"] == ""
        assert company["is_blacklisted"] is False and company["is_6qa"] is False
        assert (body["scores"], body["confidence"]) == ([], "")
    assert identify(client, "198.51.100.7").json()["company"]["additional_comment"].startswith(
        "There is no valid B2B use case")
    # Invalid addresses (IPv6 is not supported): blank data for every variable.
    for ip in ("2001:db8::1", "not-an-ip", "203.0.113.256", ""):
        body = identify(client, ip).json()
        assert keys_of(body["company"]) == keys_of(SAMPLE_IDENTIFICATION["company"])
        assert {k: v for k, v in body["company"].items() if k != "industry_v2"} == {
            k: "" for k in SAMPLE_IDENTIFICATION["company"] if k != "industry_v2"}
        assert body["company"]["industry_v2"] == [] and body["scores"] == [] and body["confidence"] == ""
    assert emulator.credits_spent["company_identification"] == spent


def test_company_identification_402_and_contract_year() -> None:
    clock = FakeClock(1_000_000.0)
    emulator = make(contract_start=clock.now - 10, company_identification_credits=1)
    emulator.clock = clock
    year = 365 * DAY
    with serve(emulator) as client:
        assert identify(client, "203.0.113.1").status_code == 200
        assert error(identify(client, "203.0.113.2")) == (402, {"status": "error", "message": QUOTA})
        assert identify(client, "203.0.113.1").status_code == 200  # identified this year: free at 0
        assert identify(client, "8.8.8.8").status_code == 200  # no match: nothing to charge
        assert emulator.identified_ips == {"203.0.113.1"}
        clock.now += year - 20  # still the first contract year
        assert identify(client, "203.0.113.1").status_code == 200
        clock.now += 20  # the second contract year: the IP costs again
        assert emulator.identified_ips == set()
        assert error(identify(client, "203.0.113.1"))[0] == 402
        emulator.set_credit_balance("company_identification", 5)
        assert identify(client, "203.0.113.1").status_code == 200
    assert [c["key"] for c in emulator.charges] == ["203.0.113.1", "203.0.113.1"]
    assert emulator.credits_spent["company_identification"] == 2


def test_blacklisted_domains_option() -> None:
    emulator = make(blacklisted_domains=["Globex.example"])
    with serve(emulator) as client:
        assert identify(client, "203.0.113.3").json()["company"]["is_blacklisted"] is True
        assert identify(client, "203.0.113.2").json()["company"]["is_blacklisted"] is False


def test_contract_year_scaled_and_persisted(tmp_path: Path) -> None:
    scale = 365 * DAY / 0.4  # a contract year of 0.4 s
    first = make(state_dir=tmp_path, time_scale=scale)
    with serve(first) as client:
        assert identify(client, "203.0.113.5").status_code == 200
    saved = json.loads((tmp_path / "sixsense.json").read_text(encoding="utf-8"))
    assert saved["contract_start"] == first.contract_start
    assert saved["charges"][0]["pool"] == "company_identification"
    second = make(state_dir=tmp_path, time_scale=scale)
    assert second.contract_start == first.contract_start
    second.clock = FakeClock(first.contract_start + 0.2)
    assert second.identified_ips == {"203.0.113.5"}
    with serve(second) as client:
        assert identify(client, "203.0.113.5").status_code == 200
        assert second.credits_spent["company_identification"] == 1
        second.clock = FakeClock(first.contract_start + 0.45)
        assert identify(client, "203.0.113.5").status_code == 200
    assert second.credits_spent["company_identification"] == 2


# --- the Enrichment pool across its APIs -------------------------------------------------------------


def test_enrichment_pool_shared_and_30_day_rule_across_apis() -> None:
    clock = FakeClock()
    emulator = make()
    emulator.clock = clock
    with serve(emulator) as client:
        assert full(client, "ivan@initech.example").status_code == 200
        assert firmo_v2(client, "Ivan@Initech.example").status_code == 200
        assert firmo_v3(client, email="ivan@initech.example").status_code == 200
        assert people(client, email="ivan@initech.example").status_code == 200
        assert emulator.credits_spent["enrichment"] == 1
        clock.now += 29 * DAY
        assert firmo_v3(client, email="ivan@initech.example", domain="initech.example").status_code == 200
        assert emulator.credits_spent["enrichment"] == 1
        clock.now += 1 * DAY + 1  # 30 days after the charge: the next one pays again
        assert people(client, linkedinUrl=person_at(emulator, email="ivan@initech.example").linkedin_url
                      ).status_code == 200
        assert emulator.credits_spent["enrichment"] == 2
        assert firmo_v2(client, "ivan@initech.example").status_code == 200  # the new period
        assert firmo_v3(client, domain="initech.example").status_code == 200  # another record
        assert emulator.credits_spent["enrichment"] == 3
    assert [c["key"] for c in emulator.charges] == [
        "ivan@initech.example", "ivan@initech.example", "domain:initech.example"]


def test_enrichment_pool_empty_402_on_every_enrichment_api(client: httpx.Client,
                                                            emulator: SixSenseEmulator) -> None:
    assert firmo_v3(client, email="zed@globex.example").status_code == 200
    emulator.set_credit_balance("enrichment", 0)
    quota = (402, {"status": "error", "message": QUOTA})
    assert error(full(client, "cosmo@initech.example")) == quota
    assert error(firmo_v2(client, "cosmo@initech.example")) == quota
    assert error(firmo_v3(client, domain="umbrella.example")) == quota
    assert error(people(client, email="cosmo@initech.example")) == quota
    # Free answers still work at balance 0.
    assert people(client, email="zed@globex.example").status_code == 200  # within 30 days
    assert people(client, email="nobody@globex.example").status_code == 204
    assert score(client, "cosmo@initech.example").status_code == 200
    assert search(client, {"domain": "initech.example"}).status_code == 200
    assert dictionary(client, domainName="initech.example").status_code == 200
    assert identify(client, "203.0.113.4").status_code == 200  # the other pool
    assert emulator.credits_spent == {"enrichment": 1, "company_identification": 1}


# --- auth, entitlements, rate limit ------------------------------------------------------------------


ENDPOINT_CALLS = {
    "lead_scoring": lambda c, **kw: c.post(
        "/v2/people/score", data={"email": "bob.jones@acme-robotics.com"}, **kw),
    "firmographics_v2": lambda c, **kw: c.post(
        "/v2/people/enrichment", data={"email": "grace@globex.example"}, **kw),
    "firmographics_v3": lambda c, **kw: c.post(
        "/v1/enrichment/company", data={"domain": "globex.example"}, **kw),
    "people_enrichment": lambda c, **kw: c.post(
        "/v1/enrichment/people", data={"email": "grace@globex.example"}, **kw),
    "people_search": lambda c, **kw: c.post("/v1/search/people", json={"domain": "globex.example"}, **kw),
    "dictionary": lambda c, **kw: c.get(
        "/v1/dictionary/peopleSearch", params={"domainName": "globex.example"}, **kw),
    "company_identification": lambda c, **kw: c.get("/v3/company/details", **kw),
}
ENDPOINT_API = {
    "lead_scoring": "lead_scoring",
    "firmographics_v2": "company_firmographics",
    "firmographics_v3": "company_firmographics",
    "people_enrichment": "people_enrichment",
    "people_search": "people_enrichment",
    "dictionary": "people_enrichment",
    "company_identification": "company_identification",
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_CALLS))
@pytest.mark.parametrize(
    "authorization", [None, "Token wrongwrongwrongwrongwrongwrongwrongwrong", f"Bearer {SANDBOX_API_TOKEN}"]
)
def test_bad_token_401_on_every_endpoint(shared: tuple[SixSenseEmulator, httpx.Client], endpoint: str,
                                         authorization: str | None) -> None:
    emulator, client = shared
    charged = len(emulator.charges)
    headers = {"Authorization": authorization or ""}
    status, body = error(ENDPOINT_CALLS[endpoint](client, headers=headers))
    assert status == 401 and body["status"] == "error" and "token" in body["message"].lower()
    assert len(emulator.charges) == charged


@pytest.mark.parametrize("entitled", [["company_identification"], ["people_enrichment"], ["lead_scoring"]])
def test_entitlements_403(entitled: list[str]) -> None:
    emulator = make(apis=entitled)
    with serve(emulator) as client:
        for endpoint, call in ENDPOINT_CALLS.items():
            charged = len(emulator.charges)
            response = call(client)
            if ENDPOINT_API[endpoint] in entitled:
                assert response.status_code in (200, 204), endpoint
            else:
                assert error(response) == (403, {"status": "error", "message": FORBIDDEN}), endpoint
                assert len(emulator.charges) == charged
        assert error(full(client, "bob.jones@acme-robotics.com"))[0] == 403


def test_all_apis_entitled_by_default(emulator: SixSenseEmulator) -> None:
    assert emulator.entitled_apis == frozenset(APIS)


def test_rate_limit_window_shared_by_all_endpoints_and_hosts() -> None:
    emulator = make(rate_limit=[7, 60])
    with serve(emulator) as client:
        statuses = [call(client).status_code for call in ENDPOINT_CALLS.values()]
        assert all(s in (200, 204) for s in statuses)
        refused = [
            full(client, "bob.jones@acme-robotics.com"),
            ENDPOINT_CALLS["people_search"](client),
            ENDPOINT_CALLS["company_identification"](client),
        ]
        for response in refused:
            assert error(response) == (429, {"status": "error", "message": "Too Many Requests"})
            assert "retry-after" not in response.headers
    assert emulator.credits_spent == {"enrichment": 2, "company_identification": 0}


def test_forbidden_requests_count_against_the_rate_limit() -> None:
    emulator = make(apis=["lead_scoring"], rate_limit=[2, 60])
    with serve(emulator) as client:
        assert ENDPOINT_CALLS["people_search"](client).status_code == 403
        assert ENDPOINT_CALLS["lead_scoring"](client).status_code == 200
        assert ENDPOINT_CALLS["lead_scoring"](client).status_code == 429


def test_request_log_covers_the_new_routes(client: httpx.Client, emulator: SixSenseEmulator) -> None:
    identify(client, "203.0.113.1")
    search(client, {"domain": "globex.example"})
    assert [(e.method, e.path, e.status) for e in emulator.log.entries()] == [
        ("GET", "/v3/company/details", 200), ("POST", "/v1/search/people", 200)]
