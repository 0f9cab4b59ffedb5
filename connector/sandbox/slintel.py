"""Slintel-style v2.0 enrichment API emulator (the "6sense API" at apiv2.slintel.com/v2.0).

Routes, all under the server root, so `base_url` is the host (the doc's `https://apiv2.slintel.com`):

* ``GET  /v2.0/lead/enrich?email=...``                      lead by email
* ``GET  /v2.0/lead/enrich?linkedin_url=...``               lead by LinkedIn URL
* ``GET  /v2.0/lead/enrich?lead_id=...``                    lead by id
* ``GET  /v2.0/lead/enrich?name=...&company_name=...&location=...&location=...``
* ``GET  /v2.0/company/enrich?company_website=...`` and/or ``company_name=...``
* ``GET  /v2.0/api-credits``                                ``{"available_credits", "consumed_credits"}``
* ``POST /v2.0/lead/search``  JSON ``{"payload": {"titles", "company_websites", "location"}, "page"}``
  -> ``{"data": [...], "total": N}``, 50 leads a page, pages 1..200.

Options: ``state_dir`` (None: memory only; else ``state_dir/"slintel.json"`` holds the credit balance,
the consumed credits and the current GMT day's call count, saved after each change), ``now`` (the
default clock is ``now`` advanced by real elapsed time; without it, the wall clock),
``time_scale`` (divides the burst window and the length of the "day"), ``extra``:
``burst`` ([calls, per_seconds], default [10, 1]), ``max_in_flight`` (10), ``daily_limit`` (10000),
``credits`` (10000, the starting available balance), ``latency_seconds`` (0, slept while the call is
in flight).

Public: ``SANDBOX_API_KEY``, ``SlintelEmulator`` (``vendor``, ``tls``, ``app``, ``log``, ``faults``,
``credits_spent``, ``charges`` [{"endpoint", "key", "at"}], ``available_credits``,
``consumed_credits``, ``daily_calls``, ``in_flight`` (``InFlight``, with ``peak``), ``clock``,
``set_credits(n)``, ``settings_overrides``), ``create_slintel_emulator``, ``DOC_SAMPLE_COMPANY``,
``DOC_SAMPLE_LEAD``, ``DOC_SAMPLE_SEARCH_LEAD``, ``mask_email``.

Choices made where the doc is unclear or silent:

1. Error bodies: the doc lists codes and names but shows no error body. The names it uses
   ("Limit Exceeded", "Too Many Requests Exception") are Amazon API Gateway's usage-plan names, so
   every error is the gateway's shape ``{"message": "<text>"}``: 403 ``{"message": "Forbidden"}``,
   429 ``{"message": "Too Many Requests Exception"}`` (burst), 429 ``{"message": "Limit
   Exceeded"}`` (daily), 400 ``{"message": "Bad Request: <why>"}``. No ``Retry-After`` header on
   any answer: the doc documents none.
2. Auth: header ``x-api-key`` must equal SANDBOX_API_KEY exactly; missing, empty or wrong -> 403.
   403s count against no limit.
3. Order of checks: key (403), in-flight cap (429 burst), burst window (429 burst), daily limit
   (429 Limit Exceeded), latency, then the request itself. Refused calls take no slot and do not
   count toward the day. Every other call counts one toward the day, 400s and api-credits
   included ("calls/day").
4. Burst: "10 calls/sec" and "burst limit of 10 concurrent calls per second" are enforced as both a
   sliding window of ``burst`` calls per ``per_seconds / time_scale`` and a cap of
   ``max_in_flight`` calls being served at once; both refusals answer the burst 429.
5. Daily: ``daily_limit`` calls per GMT day of the injectable ``clock`` (epoch seconds); the day
   index is ``floor(clock() / (86400 / time_scale))`` so with time_scale 1 it turns over exactly at
   00:00:00 GMT, once per day, not 24 h after the first call. Refusals end at the next midnight.
6. Credits: every 200 whose ``data`` is a non-empty object (lead or company enrichment) charges 1
   credit, the same request again included. Lead search and api-credits are free (the doc only
   charges the enrichment endpoints; search returns masked emails). A charge needed with 0
   available credits -> 400 ``{"message": "Bad Request: The action could not be processed, no API
   credits available"}`` (the doc's 400 "The action could not be processed"; not 429, which a
   client would retry after midnight although credits do not refill). An answer without data
   needs no credit and still succeeds at 0 credits. ``consumed_credits`` starts at 0 and equals
   ``credits_spent``; ``set_credits`` sets the available balance only.
7. api-credits: the doc's sample has a trailing comma (invalid JSON); the emulator sends valid JSON
   with the same two keys.
8. No match: 200 ``{"data": {}}`` (the doc shows none), no charge. Unknown people, unknown domains,
   the seed's blank-answer domains (blankco.example, personal mail providers), malformed emails
   and seeded leads whose company is unknown or blank all answer this way.
9. Lead enrichment parameters: the first present of ``email``, ``linkedin_url``, ``lead_id``, then
   ``name`` + ``company_name`` (both required together; ``location`` optional and repeatable) is
   used; none of them (or only one of name/company_name) -> 400. Matching: email stripped and
   lower-cased; LinkedIn URL without scheme, ``www.``, query and trailing "/", lower-cased; id
   exact; name and company name case-, accent- and whitespace-insensitive; ``location`` values
   match when ANY of them equals the lead's city, state or country (case-insensitive).
10. Company enrichment: ``company_website`` is normalised like a URL (scheme, ``www.``, path
    dropped); it wins when it matches, else ``company_name`` (case/accent-insensitive) is tried;
    neither given -> 400. Name "6sense" finds the doc's sample (first in the directory).
11. Doc samples served as they are, quirks included: ``company_website=slintel.com`` (and the doc's
    own request, ``aliaxis.com``, which the doc answers with the slintel.com company: an answer
    about another domain than the one asked, which a client must check) returns the
    doc's company sample, ``last_funded_on`` as text ("Last 6 months"), the Twitter field holding
    a Facebook URL. Lead id ``5dc164616d4235090c39736b``, its LinkedIn URL and "Deepak Anchala" at
    "6sense" return the doc's lead sample: ``divison`` (sic), ``last_funded_on`` as epoch seconds.
    The doc's emails were scrubbed by an e-mail obfuscator in our copy ("[email protected]"), so the
    sample lead's email is ``deepak@slintel.com`` and Steve Sarner's ``stevesarner@amazon.com``.
    Generated records carry the same quirks: leads have ``divison`` and epoch ``last_funded_on``,
    companies text ``last_funded_on``.
12. Seeded data: companies are ``seed.seed_companies()`` without the blank-answer ones, mapped to
    the doc's fields: name, domain (company_website, homepage), industry, employee count ->
    ``company_size`` (LinkedIn ranges), country/state/city/street/zip -> ``company_address`` in the
    sample's comma format, phone. Revenue has no field in the doc and is not served; sector,
    products/services, technologies, funding range, social URLs, last funding and 24-hex ids are
    made up deterministically (``stable_int``). People are ``seed.NEW_LEADS`` with a valid email at
    such a company, keyed by normalised email (the first of a duplicate wins); an empty seed
    title gets a made-up one; LinkedIn URLs are ``http://www.linkedin.com/in/<first>-<last>-<7
    digits>``; the person's own country (seed ISO code) decides country/continent, the city/state
    are the company's when the countries agree, else the country's capital.
13. Amazon (the search sample): amazon.com is a made-up company (the sample's company id) with
    600 people, the doc's Steve Sarner first; exactly 442 of them are cxo/vp located in the United
    States, so the doc's own search request answers ``total`` 442 with Steve Sarner first.
14. Lead search: ``payload`` must be an object with at least one non-empty filter among
    ``titles``, ``company_websites``, ``location`` (lists of strings; other keys are ignored);
    ``page`` an integer 1..200 (default 1); anything else -> 400. Within a list any value may match,
    across lists all must. ``titles`` values "cxo", "vp", "director", "manager", "staff" match the
    lead's level (derived from the title); other values match as case-insensitive substrings of
    ``lead_title``. ``company_websites`` normalised as in 10; ``location`` as in 9. Results in
    directory order; ``total`` counts every match even beyond page 200; a page past the end is
    ``[]``. Emails are masked as the sample: first character, ``*****``, last character of the
    local part, then ``@domain``.
15. Routes outside the doc keep FastAPI's default answers (404/405 ``{"detail": ...}``), without
    auth or counting. The charges list is kept in memory only.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.limits import InFlight, SlidingWindow
from connector.sandbox.seed import NEW_LEADS, SeedCompany, seed_companies, stable_int
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

# A UUID, like the doc's own example key.
SANDBOX_API_KEY = "5b1e0c57-3f6a-4d2e-9c1b-7a84d2f0e613"

API_PREFIX = "/v2.0"
STATE_FILE_NAME = "slintel.json"
STATE_VERSION = 1
DAY_SECONDS = 86400.0
DEFAULT_BURST = (10, 1.0)
DEFAULT_MAX_IN_FLIGHT = 10
DEFAULT_DAILY_LIMIT = 10_000
DEFAULT_CREDITS = 10_000
SEARCH_PAGE_SIZE = 50
SEARCH_MAX_PAGES = 200

MSG_FORBIDDEN = "Forbidden"
MSG_BURST = "Too Many Requests Exception"
MSG_DAILY = "Limit Exceeded"
MSG_NO_CREDITS = "Bad Request: The action could not be processed, no API credits available"
MSG_LEAD_PARAMS = "Bad Request: one of email, linkedin_url, lead_id, or name with company_name is required"
MSG_NAME_PAIR = "Bad Request: name and company_name must be given together"
MSG_COMPANY_PARAMS = "Bad Request: company_website or company_name is required"
MSG_SEARCH_BODY = "Bad Request: the body must be a JSON object with a payload object"
MSG_SEARCH_FILTERS = "Bad Request: payload needs at least one of titles, company_websites, location"
MSG_SEARCH_PAGE = f"Bad Request: page must be an integer from 1 to {SEARCH_MAX_PAGES}"

SEARCH_FILTERS = ("titles", "company_websites", "location")
TITLE_LEVELS = ("cxo", "vp", "director", "manager", "staff")

# --- the doc's samples, verbatim (emails de-obfuscated, see docstring 11) --------------------------

_DOC_TECHNOLOGIES: list[dict[str, Any]] = [
    {
        "technology": "Google Ads",
        "sub_category": "Search Marketing",
        "last_detected": 1608777889,
        "confidence_score": 55,
        "sources": ["Digital Footprint"],
        "category": "Marketing",
    },
    {
        "technology": "Slack",
        "sub_category": "Instant Messaging & Chat",
        "last_detected": 1613592005,
        "confidence_score": 75,
        "sources": ["Digital Footprint"],
        "category": "Collaboration",
    },
]
_DOC_PRODUCTS = [
    "Information and Communications Technology (ICT)",
    "Information Technology",
    "Marketing Automation",
    "Sales Automation",
]

DOC_SAMPLE_COMPANY: dict[str, Any] = {
    "id": "5c3b016dd55ae49f1b77d266",
    "technologies": _DOC_TECHNOLOGIES,
    "company_funding_range": "1-10m",
    "company_website": "slintel.com",
    "company_country": "United States",
    "company_products_services": _DOC_PRODUCTS,
    "company_address": "4515 Carlyle Ct,Santa Clara, California, United States,95054",
    "company_linkedin_url": "https://www.linkedin.com/company/6sense/",
    "industry": "Computer Software",
    "company_state": "California",
    "company_sector": "Technology",
    "company_name": "6sense",
    "company_twitter_url": "https://www.facebook.com/6senseinc/6senseInc",
    "company_city": "Santa Clara",
    "company_phone_number": "214-400-7300",
    "company_facebook_url": "https://www.facebook.com/6senseinc-1070643269715139/",
    "zip_code": "95054",
    "company_homepage_url": "https://www.slintel.com/",
    "company_size": "11-50",
    "last_funded_on": "Last 6 months",
}

DOC_SAMPLE_LEAD: dict[str, Any] = {
    "id": "5dc164616d4235090c39736b",
    "continent": "North America",
    "country": "United States",
    "education": [
        {
            "end_date": 2008,
            "school_location": "Indore, Madhya Pradesh, India",
            "school_website": "iimidr.ac.in",
            "school_name": "Indian Institute Of Management Indore",
            "degrees": ["Master Of Business Administration", "Masters"],
            "start_date": 2006,
        },
        {
            "end_date": 2006,
            "school_location": "Kharagpur, West Bengal, India",
            "school_website": "iitkgp.ac.in",
            "school_name": "Indian Institute Of Technology Kharagpur",
            "degrees": ["Bachelors"],
            "start_date": 2002,
        },
    ],
    "decision_making_power": "High",
    "city": "San Francisco",
    "company_website": "slintel.com",
    "technologies": _DOC_TECHNOLOGIES,
    "company_linkedin_url": "https://www.linkedin.com/company/6sense/",
    "skills": [
        "Business Strategy", "Portfolio Management", "Financial Modeling", "Management", "Banking",
        "Consulting", "Business Development", "Requirements Analysis", "Business Analytics",
        "Investments", "Business Analysis", "Team Management", "Pre Sales", "Business Intelligence",
        "Strategy", "Financial Services", "Sales", "Management Consulting",
    ],
    "company_state": "California",
    "function": "Ceo/founder/co-founder",
    "company_city": "Santa Clara",
    "state": "California",
    "email": "deepak@slintel.com",
    "divison": "General",
    "company_id": "5c3b016dd55ae49f1b77d266",
    "lead_title": "Founder",
    "company_country": "United States",
    "company_products_services": _DOC_PRODUCTS,
    "company_phone_number": "214-400-7300",
    "industry": "Computer Software",
    "company_sector": "Technology",
    "company_name": "6sense",
    "company_twitter_url": "https://www.facebook.com/6senseinc/6senseInc",
    "name": "Deepak Anchala",
    "company_facebook_url": "https://www.facebook.com/6senseinc-1070643269715139/",
    "linkedin_url": "http://www.linkedin.com/in/deepak-anchala-0043707",
    "company_size": "11-50",
    "last_funded_on": 1576108800,
}

DOC_SAMPLE_SEARCH_LEAD: dict[str, Any] = {
    "id": "607f5251efe2c7542c97661f",
    "company_id": "5c3b000ad55ae49f1b75f1a3",
    "email_confidence": "High",
    "lead_title": "Vice President Ad Sales And Program Management",
    "company_name": "Amazon",
    "company_website": "amazon.com",
    "name": "Steve Sarner",
    "linkedin_url": "http://www.linkedin.com/in/stevesarner",
    "email": "s*****r@amazon.com",
}
DOC_SAMPLE_SEARCH_TOTAL = 442
STEVE_SARNER_EMAIL = "stevesarner@amazon.com"

COMPANY_KEYS: tuple[str, ...] = tuple(DOC_SAMPLE_COMPANY)
LEAD_KEYS: tuple[str, ...] = tuple(DOC_SAMPLE_LEAD)
SEARCH_LEAD_KEYS: tuple[str, ...] = tuple(DOC_SAMPLE_SEARCH_LEAD)

# --- pools for made-up values --------------------------------------------------------------------

_TECH_POOL: list[tuple[str, str, str]] = [
    ("Google Ads", "Search Marketing", "Marketing"),
    ("Slack", "Instant Messaging & Chat", "Collaboration"),
    ("Salesforce", "CRM", "Sales"),
    ("HubSpot", "Marketing Automation", "Marketing"),
    ("Amazon Web Services", "Cloud Infrastructure", "IT Infrastructure"),
    ("Zendesk", "Help Desk", "Customer Support"),
    ("Jira", "Project Management", "Collaboration"),
    ("Workday", "HRMS", "Human Resources"),
    ("Marketo", "Marketing Automation", "Marketing"),
    ("SAP ERP", "ERP", "Finance"),
]
_SECTORS = {
    "Software and Technology": ("Technology", ["Information Technology", "Software Development", "Cloud Computing"]),
    "Manufacturing": ("Industrials", ["Industrial Automation", "Robotics", "Manufacturing"]),
    "Financial Services": ("Financials", ["Banking", "Payments", "Financial Services"]),
    "Electronics": ("Technology", ["Electronic Components", "Semiconductors"]),
    "Healthcare": ("Healthcare", ["Health Care", "Medical Devices", "Health Insurance"]),
    "Internet": ("Consumer Discretionary", ["E-Commerce", "Cloud Computing", "Retail"]),
}
_FUNDING_RANGES = ["1-10m", "10-50m", "50-100m", "100-250m", "250m+"]
_FUNDED_TEXT = ["Last 6 months", "Last 1 year", "1-2 years ago", "More than 2 years ago"]
_TITLE_POOL = [
    "Director of Operations", "Software Engineer", "Marketing Manager", "Chief Financial Officer",
    "Head of Procurement", "Sales Representative", "VP Engineering", "Data Analyst",
]
_SKILL_POOL = [
    "Business Strategy", "Management", "Sales", "Leadership", "Project Management", "Python",
    "Negotiation", "Marketing Strategy", "Operations Management", "Supply Chain Management",
    "Customer Relationship Management (CRM)", "Data Analysis", "Public Speaking", "Team Management",
]
_SCHOOLS = [
    ("University of Texas at Austin", "utexas.edu", "Austin, Texas, United States"),
    ("University of Manchester", "manchester.ac.uk", "Manchester, England, United Kingdom"),
    ("Universidad Complutense de Madrid", "ucm.es", "Madrid, Community of Madrid, Spain"),
    ("Technische Universität München", "tum.de", "Munich, Bavaria, Germany"),
    ("Université Lyon 1", "univ-lyon1.fr", "Lyon, Auvergne-Rhône-Alpes, France"),
    ("New York University", "nyu.edu", "New York, New York, United States"),
]
_COUNTRIES = {
    "US": ("United States", "North America", "Washington", "District of Columbia"),
    "CA": ("Canada", "North America", "Ottawa", "Ontario"),
    "GB": ("United Kingdom", "Europe", "London", "England"),
    "FR": ("France", "Europe", "Paris", "Île-de-France"),
    "DE": ("Germany", "Europe", "Berlin", "Berlin"),
    "ES": ("Spain", "Europe", "Madrid", "Community of Madrid"),
    "IN": ("India", "Asia", "Bengaluru", "Karnataka"),
}
# (keywords in a lower-cased title, function, division); first match wins.
_FUNCTIONS: list[tuple[tuple[str, ...], str, str]] = [
    (("founder", "co founder", "ceo", "chief executive", "owner"), "Ceo/founder/co-founder", "General"),
    (("cto", "engineer", "engineering", "technology", "developer", "software", "devices"), "Engineering", "Engineering"),
    (("cfo", "finance", "financial", "controller"), "Finance", "Finance"),
    (("procurement", "purchasing"), "Procurement", "Operations"),
    (("operations", "coo", "supply"), "Operations", "Operations"),
    (("marketing", "cmo", "brand", "advertising"), "Marketing", "Sales & Marketing"),
    (("sales", "account", "business development", "retail"), "Sales", "Sales & Marketing"),
    (("data", "analyst", "information", "security"), "Information Technology", "Engineering"),
]

_AMAZON = {
    "id": DOC_SAMPLE_SEARCH_LEAD["company_id"],
    "domain": "amazon.com",
    "name": "Amazon",
    "industry": "Internet",
    "employees": 1_500_000,
    "country": "United States",
    "state": "Washington",
    "city": "Seattle",
    "street": "410 Terry Ave N",
    "zip": "98109",
    "phone": "206-266-1000",
}
_AMAZON_PEOPLE = 600
_FIRST_NAMES = [
    "Aaron", "Beatriz", "Chen", "Dana", "Elif", "Femi", "Gita", "Hiro", "Ines", "Jamal", "Kira",
    "Luis", "Maya", "Nikhil", "Olga", "Priya", "Quentin", "Rosa", "Sanjay", "Tara", "Uri", "Vera",
    "Wes", "Ximena", "Yara", "Zane", "Anika", "Bruno", "Celia", "Dev",
]
_LAST_NAMES = [
    "Abbott", "Banerjee", "Castro", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Mehta", "Nakamura", "Okafor", "Park", "Quinn", "Rossi", "Sato",
    "Tanaka", "Usman", "Varga", "Wong", "Xu", "Yilmaz", "Zhang", "Adler", "Brooks", "Costa", "Diaz",
]
_AMAZON_CXO_TITLES = ["Chief Technology Officer, Devices", "Chief Marketing Officer, Retail"]
_AMAZON_VP_TITLES = [
    "VP Engineering", "Vice President, Retail", "VP Operations", "Vice President Finance",
    "SVP Devices & Services", "Vice President Advertising",
]
_AMAZON_OTHER_TITLES = ["Director of Product", "Senior Manager, Operations", "Software Development Engineer"]
_AMAZON_US_PLACES = [
    ("Seattle", "Washington"), ("San Francisco", "California"), ("New York", "New York"),
    ("Sunnyvale", "California"), ("Austin", "Texas"),
]


# --- helpers ---------------------------------------------------------------------------------------


class SlintelError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def message_response(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status_code)


def hex_id(*parts: str) -> str:
    return hashlib.sha256("|".join(("slintel",) + parts).encode()).hexdigest()[:24]


def fold(text: str) -> str:
    """Case-, accent- and whitespace-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.split()).casefold()


def slug(text: str) -> str:
    folded = fold(text).replace("'", "")
    return "-".join("".join(ch if ch.isalnum() else " " for ch in folded).split())


def normalise_email(raw: str) -> str:
    return raw.strip().lower()


def is_valid_email(email: str) -> bool:
    if email.count("@") != 1:
        return False
    local, domain = email.split("@")
    return bool(local) and "." in domain


def normalise_website(raw: str) -> str:
    value = raw.strip().lower()
    for prefix in ("https://", "http://"):
        value = value.removeprefix(prefix)
    for separator in ("/", "?", "#"):
        value = value.split(separator, 1)[0]
    value = value.removeprefix("www.")
    return value.rstrip(".")


def normalise_linkedin(raw: str) -> str:
    value = raw.strip().lower()
    for prefix in ("https://", "http://"):
        value = value.removeprefix(prefix)
    value = value.split("?", 1)[0].split("#", 1)[0]
    value = value.removeprefix("www.")
    return value.rstrip("/")


def mask_email(email: str) -> str:
    """The search sample's masking: first and last character of the local part around five stars."""
    local, _, domain = email.partition("@")
    if not local:
        return email
    return f"{local[0]}*****{local[-1] if len(local) > 1 else ''}@{domain}"


def title_level(title: str) -> str:
    lower = title.lower()
    words = set(_words(title).split())
    if "vice" in words or words & {"vp", "svp", "evp", "avp"}:
        return "vp"
    if "chief" in words or "founder" in lower or "president" in words or words & {"ceo", "cto", "cfo", "coo", "cmo"}:
        return "cxo"
    if words & {"director", "head"}:
        return "director"
    if words & {"manager", "lead"}:
        return "manager"
    return "staff"


def _words(title: str) -> str:
    """The title's lower-cased words, space-padded, so keywords match whole words only."""
    return " " + " ".join("".join(ch if ch.isalnum() else " " for ch in title.lower()).split()) + " "


def function_and_division(title: str) -> tuple[str, str]:
    words = _words(title)
    for keywords, function, division in _FUNCTIONS:
        if any(f" {k} " in words for k in keywords):
            return function, division
    return "Other", "General"


def company_size(employees: int) -> str:
    for upper, label in (
        (10, "1-10"), (50, "11-50"), (200, "51-200"), (500, "201-500"), (1000, "501-1000"),
        (5000, "1001-5000"), (10000, "5001-10000"),
    ):
        if employees <= upper:
            return label
    return "10001+"


def made_up_technologies(key: str) -> list[dict[str, Any]]:
    count = stable_int(f"slintel|techcount|{key}", 2, 4)
    start = stable_int(f"slintel|techstart|{key}", 0, len(_TECH_POOL) - 1)
    out = []
    for i in range(count):
        technology, sub_category, category = _TECH_POOL[(start + i * 3) % len(_TECH_POOL)]
        out.append(
            {
                "technology": technology,
                "sub_category": sub_category,
                "last_detected": 1_600_000_000 + stable_int(f"slintel|detected|{key}|{i}", 0, 60_000_000),
                "confidence_score": stable_int(f"slintel|confidence|{key}|{i}", 40, 95),
                "sources": ["Digital Footprint"] if i % 2 == 0 else ["Job Postings"],
                "category": category,
            }
        )
    return out


def _parse_pair(value: Any, default: tuple[int, float]) -> tuple[int, float]:
    if value is None:
        return default
    if isinstance(value, dict):
        return int(value["requests"]), float(value["per_seconds"])
    calls, per_seconds = value
    return int(calls), float(per_seconds)


# --- the directory ----------------------------------------------------------------------------------


def company_record(
    *, company_id: str, domain: str, name: str, industry: str, employees: int, country: str,
    state: str, city: str, street: str, zip_code: str, phone: str,
) -> dict[str, Any]:
    sector, products = _SECTORS.get(industry, ("Other", [industry]))
    name_slug = slug(name)[:40] or slug(domain)
    record = {
        "id": company_id,
        "technologies": made_up_technologies(domain),
        "company_funding_range": _FUNDING_RANGES[stable_int(f"slintel|funding|{domain}", 0, len(_FUNDING_RANGES) - 1)],
        "company_website": domain,
        "company_country": country,
        "company_products_services": list(products),
        "company_address": f"{street},{city}, {state}, {country},{zip_code}",
        "company_linkedin_url": f"https://www.linkedin.com/company/{name_slug}/",
        "industry": industry,
        "company_state": state,
        "company_sector": sector,
        "company_name": name,
        "company_twitter_url": f"https://twitter.com/{name_slug.replace('-', '')[:15]}",
        "company_city": city,
        "company_phone_number": phone,
        "company_facebook_url": f"https://www.facebook.com/{name_slug}/",
        "zip_code": zip_code,
        "company_homepage_url": f"https://www.{domain}/",
        "company_size": company_size(employees),
        "last_funded_on": _FUNDED_TEXT[stable_int(f"slintel|fundedtext|{domain}", 0, len(_FUNDED_TEXT) - 1)],
    }
    assert tuple(record) == COMPANY_KEYS
    return record


def company_from_seed(seed: SeedCompany) -> dict[str, Any]:
    f = seed.firmographics
    return company_record(
        company_id=hex_id("company", seed.domain), domain=seed.domain, name=f["name"],
        industry=f["industry"], employees=int(f["employeeCount"]), country=f["country"],
        state=f["state"], city=f["city"], street=str(f["streetAddress"]).rstrip(","),
        zip_code=str(f["postalCode"]), phone=f["companyPhone"],
    )


def lead_record(
    *, lead_id: str, company: dict[str, Any], first: str, last: str, email: str, title: str,
    country_iso: str, city: str | None = None, state: str | None = None, linkedin_url: str | None = None,
) -> dict[str, Any]:
    country, continent, capital, capital_state = _COUNTRIES.get(country_iso, _COUNTRIES["US"])
    if city is None or state is None:
        if country == company["company_country"]:
            city, state = company["company_city"], company["company_state"]
        else:
            city, state = capital, capital_state
    level = title_level(title)
    function, division = function_and_division(title)
    key = email
    school, school_site, school_place = _SCHOOLS[stable_int(f"slintel|school|{key}", 0, len(_SCHOOLS) - 1)]
    start = stable_int(f"slintel|edu|{key}", 1990, 2015)
    skills_start = stable_int(f"slintel|skills|{key}", 0, len(_SKILL_POOL) - 1)
    skills = [_SKILL_POOL[(skills_start + i) % len(_SKILL_POOL)] for i in range(stable_int(f"slintel|nskills|{key}", 3, 7))]
    if linkedin_url is None:
        linkedin_url = f"http://www.linkedin.com/in/{slug(first + ' ' + last)}-{stable_int(f'slintel|li|{key}', 0, 9_999_999):07d}"
    record = {
        "id": lead_id,
        "continent": continent,
        "country": country,
        "education": [
            {
                "end_date": start + 4,
                "school_location": school_place,
                "school_website": school_site,
                "school_name": school,
                "degrees": ["Bachelors"],
                "start_date": start,
            }
        ],
        "decision_making_power": {"cxo": "High", "vp": "High", "director": "Medium", "manager": "Medium"}.get(level, "Low"),
        "city": city,
        "company_website": company["company_website"],
        "technologies": copy.deepcopy(company["technologies"]),
        "company_linkedin_url": company["company_linkedin_url"],
        "skills": skills,
        "company_state": company["company_state"],
        "function": function,
        "company_city": company["company_city"],
        "state": state,
        "email": email,
        "divison": division,
        "company_id": company["id"],
        "lead_title": title,
        "company_country": company["company_country"],
        "company_products_services": list(company["company_products_services"]),
        "company_phone_number": company["company_phone_number"],
        "industry": company["industry"],
        "company_sector": company["company_sector"],
        "company_name": company["company_name"],
        "company_twitter_url": company["company_twitter_url"],
        "name": f"{first} {last}",
        "company_facebook_url": company["company_facebook_url"],
        "linkedin_url": linkedin_url,
        "company_size": company["company_size"],
        "last_funded_on": 1_420_070_400 + stable_int(f"slintel|funded|{company['company_website']}", 0, 300_000_000),
    }
    assert tuple(record) == LEAD_KEYS
    return record


class Directory:
    """Every company and person the emulator knows, with their lookup indexes."""

    def __init__(self) -> None:
        self.companies: list[dict[str, Any]] = []
        self.company_by_website: dict[str, dict[str, Any]] = {}
        self.company_by_name: dict[str, dict[str, Any]] = {}
        self.leads: list[dict[str, Any]] = []
        self.confidence: dict[str, str] = {}
        self.lead_by_email: dict[str, dict[str, Any]] = {}
        self.lead_by_linkedin: dict[str, dict[str, Any]] = {}
        self.lead_by_id: dict[str, dict[str, Any]] = {}
        self._build()

    def add_company(self, record: dict[str, Any], *websites: str) -> None:
        self.companies.append(record)
        for website in (record["company_website"], *websites):
            self.company_by_website.setdefault(normalise_website(website), record)
        self.company_by_name.setdefault(fold(record["company_name"]), record)

    def add_lead(self, record: dict[str, Any], confidence: str) -> None:
        email = normalise_email(record["email"])
        if email in self.lead_by_email or record["id"] in self.lead_by_id:
            return  # the first of a duplicate wins
        self.leads.append(record)
        self.confidence[record["id"]] = confidence
        self.lead_by_email[email] = record
        self.lead_by_linkedin.setdefault(normalise_linkedin(record["linkedin_url"]), record)
        self.lead_by_id[record["id"]] = record

    def _build(self) -> None:
        self.add_company(copy.deepcopy(DOC_SAMPLE_COMPANY), "aliaxis.com")
        self.add_lead(copy.deepcopy(DOC_SAMPLE_LEAD), "High")
        for seed in seed_companies().values():
            if seed.blank_answer or not seed.firmographics:
                continue
            self.add_company(company_from_seed(seed))
        for seed_lead in NEW_LEADS:
            email = normalise_email(seed_lead.email)
            if not is_valid_email(email):
                continue
            company = self.company_by_website.get(email.split("@", 1)[1])
            if company is None:
                continue
            title = seed_lead.title or _TITLE_POOL[stable_int(f"slintel|title|{email}", 0, len(_TITLE_POOL) - 1)]
            record = lead_record(
                lead_id=hex_id("lead", email), company=company, first=seed_lead.first_name,
                last=seed_lead.last_name, email=email, title=title, country_iso=seed_lead.country,
            )
            self.add_lead(record, ["High", "Medium", "Low"][stable_int(f"slintel|conf|{email}", 0, 2)])
        self._build_amazon()

    def _build_amazon(self) -> None:
        a = _AMAZON
        amazon = company_record(
            company_id=a["id"], domain=a["domain"], name=a["name"], industry=a["industry"],
            employees=a["employees"], country=a["country"], state=a["state"], city=a["city"],
            street=a["street"], zip_code=a["zip"], phone=a["phone"],
        )
        self.add_company(amazon)
        steve = lead_record(
            lead_id=DOC_SAMPLE_SEARCH_LEAD["id"], company=amazon, first="Steve", last="Sarner",
            email=STEVE_SARNER_EMAIL, title=DOC_SAMPLE_SEARCH_LEAD["lead_title"], country_iso="US",
            city="San Francisco", state="California", linkedin_url=DOC_SAMPLE_SEARCH_LEAD["linkedin_url"],
        )
        self.add_lead(steve, DOC_SAMPLE_SEARCH_LEAD["email_confidence"])
        # 1..441: cxo/vp in the US (with Steve, the doc's 442); 442..499: cxo/vp abroad; 500..: others.
        for i in range(1, _AMAZON_PEOPLE):
            first = _FIRST_NAMES[i % 30]
            last = _LAST_NAMES[(i % 30 + i // 30) % 30]
            email = f"{first.lower()}.{last.lower()}@amazon.com"
            if i < DOC_SAMPLE_SEARCH_TOTAL:
                pool = _AMAZON_CXO_TITLES if i % 10 == 0 else _AMAZON_VP_TITLES
                city, state = _AMAZON_US_PLACES[i % len(_AMAZON_US_PLACES)]
                iso = "US"
            elif i < 500:
                pool = _AMAZON_VP_TITLES
                iso = "GB" if i % 2 else "IN"
                _, _, city, state = _COUNTRIES[iso]
            else:
                pool = _AMAZON_OTHER_TITLES
                city, state = _AMAZON_US_PLACES[i % len(_AMAZON_US_PLACES)]
                iso = "US"
            record = lead_record(
                lead_id=hex_id("lead", email), company=amazon, first=first, last=last, email=email,
                title=pool[i % len(pool)], country_iso=iso, city=city, state=state,
            )
            self.add_lead(record, ["High", "Medium", "Low"][i % 3])

    def search_item(self, lead: dict[str, Any]) -> dict[str, Any]:
        item = {
            "id": lead["id"],
            "company_id": lead["company_id"],
            "email_confidence": self.confidence[lead["id"]],
            "lead_title": lead["lead_title"],
            "company_name": lead["company_name"],
            "company_website": lead["company_website"],
            "name": lead["name"],
            "linkedin_url": lead["linkedin_url"],
            "email": mask_email(lead["email"]),
        }
        return item


def _location_matches(lead: dict[str, Any], locations: list[str]) -> bool:
    wanted = {fold(v) for v in locations if v.strip()}
    if not wanted:
        return True
    return bool(wanted & {fold(lead["city"]), fold(lead["state"]), fold(lead["country"])})


def _titles_match(lead: dict[str, Any], titles: list[str]) -> bool:
    wanted = [t.strip().lower() for t in titles if t.strip()]
    if not wanted:
        return True
    title = lead["lead_title"].lower()
    level = title_level(lead["lead_title"])
    return any(w == level if w in TITLE_LEVELS else w in title for w in wanted)


# --- the emulator -----------------------------------------------------------------------------------


class SlintelEmulator:
    """Slintel-style v2.0: x-api-key auth, burst/in-flight/daily limits, credits and the directory."""

    vendor = "slintel"
    tls = False

    def __init__(self, options: EmulatorOptions) -> None:
        if options.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.options = options
        self.time_scale = float(options.time_scale)
        extra = options.extra or {}
        calls, per_seconds = _parse_pair(extra.get("burst"), DEFAULT_BURST)
        self.burst = SlidingWindow(calls, per_seconds / self.time_scale)
        self.in_flight = InFlight(int(extra.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT)))
        self.daily_limit = int(extra.get("daily_limit", DEFAULT_DAILY_LIMIT))
        self.day_seconds = DAY_SECONDS / self.time_scale
        self.latency_seconds = float(extra.get("latency_seconds", 0) or 0)
        self.api_key = SANDBOX_API_KEY

        if options.now is not None:
            seed_epoch = options.now.timestamp()
            wall_start = time.time()
            self.clock: Callable[[], float] = lambda: seed_epoch + (time.time() - wall_start)
        else:
            self.clock = time.time

        self.directory = Directory()

        self._lock = threading.Lock()
        self.available_credits = int(extra.get("credits", DEFAULT_CREDITS))
        self.consumed_credits = 0
        self.credits_spent = 0
        self.charges: list[dict[str, Any]] = []
        self._day: int | None = None
        self._day_calls = 0

        path = Path(options.state_dir) / STATE_FILE_NAME if options.state_dir is not None else None
        self._state = JsonStateFile(path)
        self._load()

        self.app = FastAPI(title="Slintel v2.0 sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        self.log = RequestLog()
        self.faults = FaultQueue()
        instrument(self.app, self.log, self.faults)
        self._add_routes()

    # --- the Emulator protocol -----------------------------------------------------------------------

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {"providers": {"slintel": {"base_url": base_url, "api_key": SANDBOX_API_KEY}}}

    # --- state ----------------------------------------------------------------------------------------

    def set_credits(self, credits: int) -> None:
        with self._lock:
            self.available_credits = int(credits)
            self._save()

    def _day_index(self) -> int:
        return math.floor(self.clock() / self.day_seconds)

    @property
    def daily_calls(self) -> int:
        """Calls counted toward the current GMT day of `clock`."""
        with self._lock:
            return self._day_calls if self._day == self._day_index() else 0

    def _load(self) -> None:
        document = self._state.load()
        if not document:
            return
        self.available_credits = int(document["available_credits"])
        self.consumed_credits = int(document["consumed_credits"])
        self.credits_spent = self.consumed_credits
        self._day = document.get("day")
        self._day_calls = int(document.get("day_calls", 0))

    def _save(self) -> None:
        """Caller holds the lock."""
        self._state.save(
            {
                "version": STATE_VERSION,
                "available_credits": self.available_credits,
                "consumed_credits": self.consumed_credits,
                "day": self._day,
                "day_calls": self._day_calls,
            }
        )

    def _count_call(self) -> bool:
        """Count one call toward today; False (nothing counted) when today's limit is used up."""
        with self._lock:
            day = self._day_index()
            if day != self._day:
                self._day, self._day_calls = day, 0
            if self._day_calls >= self.daily_limit:
                return False
            self._day_calls += 1
            self._save()
            return True

    def _charge(self, endpoint: str, key: str) -> None:
        with self._lock:
            if self.available_credits <= 0:
                raise SlintelError(400, MSG_NO_CREDITS)
            self.available_credits -= 1
            self.consumed_credits += 1
            self.credits_spent += 1
            self.charges.append({"endpoint": endpoint, "key": key, "at": self.clock()})
            self._save()

    # --- request handling -------------------------------------------------------------------------------

    async def _answer(self, request: Request, produce: Callable[[], Awaitable[Any]]) -> JSONResponse:
        key = request.headers.get("x-api-key")
        if not key or key != self.api_key:
            return message_response(403, MSG_FORBIDDEN)
        if not self.in_flight.enter():
            return message_response(429, MSG_BURST)
        try:
            if self.burst.try_accept() is not None:
                return message_response(429, MSG_BURST)
            if not self._count_call():
                return message_response(429, MSG_DAILY)
            if self.latency_seconds > 0:
                await asyncio.sleep(self.latency_seconds)
            try:
                return JSONResponse(await produce())
            except SlintelError as exc:
                return message_response(exc.status_code, exc.message)
        finally:
            self.in_flight.leave()

    def _add_routes(self) -> None:
        app = self.app

        @app.get(f"{API_PREFIX}/api-credits")
        async def api_credits(request: Request) -> JSONResponse:
            async def produce() -> dict[str, Any]:
                with self._lock:
                    return {"available_credits": self.available_credits, "consumed_credits": self.consumed_credits}

            return await self._answer(request, produce)

        @app.get(f"{API_PREFIX}/lead/enrich")
        async def lead_enrich(request: Request) -> JSONResponse:
            async def produce() -> dict[str, Any]:
                return self.enrich_lead(request.query_params)

            return await self._answer(request, produce)

        @app.get(f"{API_PREFIX}/company/enrich")
        async def company_enrich(request: Request) -> JSONResponse:
            async def produce() -> dict[str, Any]:
                return self.enrich_company(request.query_params)

            return await self._answer(request, produce)

        @app.post(f"{API_PREFIX}/lead/search")
        async def lead_search(request: Request) -> JSONResponse:
            async def produce() -> dict[str, Any]:
                raw = await request.body()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                return self.search_leads(body)

            return await self._answer(request, produce)

    # --- endpoints -------------------------------------------------------------------------------------------

    def _found(self, endpoint: str, key: str, record: dict[str, Any] | None) -> dict[str, Any]:
        if record is None:
            return {"data": {}}
        self._charge(endpoint, key)
        return {"data": copy.deepcopy(record)}

    def enrich_lead(self, params: Any) -> dict[str, Any]:
        def param(name: str) -> str:
            return (params.get(name) or "").strip()

        d = self.directory
        if param("email"):
            email = normalise_email(param("email"))
            return self._found("lead", f"email:{email}", d.lead_by_email.get(email))
        if param("linkedin_url"):
            url = normalise_linkedin(param("linkedin_url"))
            return self._found("lead", f"linkedin_url:{url}", d.lead_by_linkedin.get(url))
        if param("lead_id"):
            lead_id = param("lead_id")
            return self._found("lead", f"lead_id:{lead_id}", d.lead_by_id.get(lead_id))
        name, company_name = param("name"), param("company_name")
        if not name and not company_name:
            raise SlintelError(400, MSG_LEAD_PARAMS)
        if not name or not company_name:
            raise SlintelError(400, MSG_NAME_PAIR)
        locations = params.getlist("location")
        match = next(
            (
                lead
                for lead in d.leads
                if fold(lead["name"]) == fold(name)
                and fold(lead["company_name"]) == fold(company_name)
                and _location_matches(lead, locations)
            ),
            None,
        )
        return self._found("lead", f"name:{fold(name)}|{fold(company_name)}", match)

    def enrich_company(self, params: Any) -> dict[str, Any]:
        website = (params.get("company_website") or "").strip()
        name = (params.get("company_name") or "").strip()
        if not website and not name:
            raise SlintelError(400, MSG_COMPANY_PARAMS)
        d = self.directory
        record = d.company_by_website.get(normalise_website(website)) if website else None
        key = f"company_website:{normalise_website(website)}"
        if record is None and name:
            record = d.company_by_name.get(fold(name))
            key = f"company_name:{fold(name)}"
        return self._found("company", key, record)

    def search_leads(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
            raise SlintelError(400, MSG_SEARCH_BODY)
        payload = body["payload"]
        page = body.get("page", 1)
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= SEARCH_MAX_PAGES:
            raise SlintelError(400, MSG_SEARCH_PAGE)
        filters: dict[str, list[str]] = {}
        for key in SEARCH_FILTERS:
            value = payload.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SlintelError(400, f"Bad Request: payload.{key} must be a list of strings")
            cleaned = [v for v in value if v.strip()]
            if cleaned:
                filters[key] = cleaned
        if not filters:
            raise SlintelError(400, MSG_SEARCH_FILTERS)
        websites = {normalise_website(w) for w in filters.get("company_websites", [])}
        matches = [
            lead
            for lead in self.directory.leads
            if (not websites or lead["company_website"] in websites)
            and _titles_match(lead, filters.get("titles", []))
            and _location_matches(lead, filters.get("location", []))
        ]
        start = (page - 1) * SEARCH_PAGE_SIZE
        return {
            "data": [self.directory.search_item(lead) for lead in matches[start:start + SEARCH_PAGE_SIZE]],
            "total": len(matches),
        }


@register_emulator("slintel")
def create_slintel_emulator(options: EmulatorOptions) -> SlintelEmulator:
    return SlintelEmulator(options)
