"""6sense emulator: every endpoint of the 6sense API reference, its three hosts served on one port.

A FastAPI app that `EmulatorServer` serves over real HTTP on 127.0.0.1. The real vendor spreads
its APIs over three hosts; the emulator serves all of them on one port (no route collides) and
`settings_overrides` points `scribe_url`, `api_url` and `epsilon_url` at it:

* scribe: `POST /v2/people/full` (Lead Scoring and Firmographics), `POST /v2/people/score`
  (Lead Scoring), `POST /v2/people/enrichment` (Company Firmographics v2).
* api: `POST /v1/enrichment/company` (Company Firmographics v3), `POST /v1/enrichment/people`
  (People Enrichment), `POST /v1/search/people` (People Search), `GET
  /v1/dictionary/peopleSearch` (People Search Dictionary).
* epsilon: `GET /v3/company/details` (Company Identification).

What the endpoints share:

* `SixSenseEmulator.admit`: a FastAPI dependency that checks `Authorization: Token <token>` and
  the per-token sliding-window rate limit; `admit_for(api)` adds the token's entitlement (403).
* `SixSenseError`: raise it anywhere in a route to answer `{"status": "error", "message": ...}`.
* `SixSenseEmulator.charge(pool, key)`: the credit ledger (balances, charges, the 30-day
  no-recharge period of the "enrichment" pool, the contract year of the "company_identification"
  pool), atomic under one lock and persisted with `JsonStateFile`.
* `SixSenseEmulator.lookup_company(domain)`: the seeded companies (`seed.seed_companies()`);
  `SixSenseEmulator.people`: the seeded people (see "Seeded people" below).
* `SixSenseEmulator.delay()`: the artificial per-answer latency (`extra["latency_seconds"]`).

Options: `state_dir` (None keeps the ledger in memory; else `state_dir/"sixsense.json"`),
`time_scale` (divides the rate-limit window, the 30-day no-recharge period and the 365-day
contract year), `extra`:
`rate_limit` ([requests, per_seconds], default [100, 60]), `enrichment_credits` (default 10000),
`company_identification_credits` (default 10000), `latency_seconds` (default 0),
`apis` (the APIs the sandbox token is entitled to, default all of `APIS`; others answer 403),
`ip_companies` ({ipv4: seeded domain}, added to and overriding `seed_identification_ips()`),
`blacklisted_domains` (domains Company Identification reports with `is_blacklisted: true`),
`contract_start` (epoch seconds the first contract year starts; default: see choice 28).

Seeded people (`SixSenseEmulator.people`, built deterministically with `seed.stable_int`): every
`seed.NEW_LEADS` lead whose email is well-formed and whose domain is a seeded company with data
(first lead wins on a duplicate email; names, email and title from the lead), plus made-up
colleagues per company: `max(3, min(75, employeeCount // 100))` of them (initech.example has 52
+ 3 leads = 55, more than one search page; sprockets.example 75 + 1). Each person has a UUID-like
people id, a LinkedIn URL `https://www.linkedin.com/in/<ascii first><ascii last><2 digits>/`, a
lower-case job title with function/level/division, an office (the company's HQ or one other
office; 6sense.com has Bangalore and Pune as in the reference's sample), skills, maybe an
education entry and phones. About one made-up person in five has no email and some have no phone.

Company Identification IP mapping (`seed_identification_ips()`): 203.0.113.N (TEST-NET-3) for
N = 1..7 identifies the seeded companies with data in `seed_companies()` order: .1 6sense.com,
.2 acme-robotics.com, .3 globex.example, .4 initech.example, .5 sprockets.example,
.6 electronique.example, .7 umbrella.example. 198.51.100.x (TEST-NET-2) is a "Non-actionable
Match" (a hosting provider / bot network). Every other IPv4 address (127.0.0.1 included, unless
`ip_companies` maps it) is "No Match"; anything that is not an IPv4 address is invalid.

Choices made where the 6sense reference (and its OpenAPI file) is unclear or silent. Choices
1-16 were made for `/v2/people/full` and hold for every endpoint unless a later one says
otherwise.

1. Authentication: the header must be `Authorization: Token <token>`. The scheme word is matched
   case-insensitively (as Django REST framework's TokenAuthentication, which the "Token" scheme
   suggests, does); the token itself exactly. A missing header, another scheme (`Bearer`), extra
   words or a wrong token all get the same 401 `{"status": "error", "message": "Invalid API
   token. ..."}`; the wording is ours (the reference only describes the 401) and never echoes the
   token.
2. Order of checks: authentication, then rate limit, then the token's entitlement (403, see
   17), then the latency delay, then the body. 401s are not counted against any token's rate
   limit (they cannot be attributed to one); every authenticated request that is not refused
   with 429 counts, including those answered 204/400/403/404/422.
3. Rate limit: 100 requests per 60 s per token (the reference's "100 requests per minute
   interval"), as a sliding window over accepted requests, enforced server-side, one window
   per token shared by every endpoint on all three hosts. Refusals are 429
   `{"status": "error", "message": "Too Many Requests"}` with no `Retry-After` header: 6sense
   documents none, so a client must not rely on one. Refused requests do not count.
4. Body: read as a form (`application/x-www-form-urlencoded`; multipart also parses, as it would
   in most frameworks). Any other content type (e.g. JSON) parses as an empty form, so it is
   answered as a blank email (400): the reference documents form encoding only. Unknown fields
   are ignored. The optional fields (country, website, company, title, leadsource, firstname,
   lastname, role, industry) are accepted and ignored: they do not change the match, which is by
   email domain only.
5. `country` is optional, as the reference's parameter table says, although the OpenAPI file
   lists it under `required`; a request without it is answered normally.
6. Email validation: missing, empty or whitespace-only -> 400 with the reference's exact text
   "Email ID is mandatory and can’t be blank" (typographic apostrophe). After stripping, an email
   that does not have exactly one "@", has an empty local part, or a domain without a dot -> 404
   with the reference's "Invalid email ID. ..." text. Nothing else is validated: other oddities
   (spaces, leading dots) pass and end as "No data found" because no seeded domain matches.
7. Normalisation: the email is stripped and lower-cased; the domain is the part after "@". The
   normalised email is the credit key (so "  Bob@X.com " and "bob@x.com" are one record).
8. Unknown domain -> 404 `"No data found. Please contact 6sense support, if you think this is an
   unexpected error."` (the reference's error example), no charge.
9. A known domain flagged `blank_answer` (personal mail providers, "blankco.example") -> 200 with
   every key of the OpenAPI Company schema (companyId included, schema order) set to "", `scores`
   [] and empty segments; no charge. This is the reference's "blank data for each of these
   variables". Note "" for employeeCount/annualRevenue does not satisfy the OpenAPI types; the
   reference's "empty list or null value" wording is not followed for scalar fields.
10. Matched company -> 200 `{"company", "scores", "segments"}` in the sample's key order. The
    company object is the seed's firmographics as they are: the 6sense.com sample carries
    employeeCount/annualRevenue as numeric strings exactly as the reference's sample response
    shows (contrary to the OpenAPI integer/number types); the other seeded companies send them as
    numbers. No `companyId` is sent (the sample has none). The reference's field table uses other
    names (employee_count, sic, ...); the sample's and OpenAPI's camelCase names win.
11. Scores: one entry with `product` "6sense" (the sample's). Company-level scores come from
    `stable_int` of the domain, contact-level ones from `stable_int` of the normalised email, so
    everyone at one company shares the company scores. Labels follow the numbers (our own
    thresholds, the reference gives none): buying stage Purchase >= 85, Decision >= 70,
    Consideration >= 50, Awareness >= 30, else Target; profile fit Strong >= 70, Moderate >= 40,
    else Weak; contact grade A >= 75, B >= 50, C >= 25, else D. All scores are integers 0-100
    (the reference's table calls contact_profile_score a String; the sample and OpenAPI an
    integer). The 6sense.com sample's exact scores are not reproduced.
12. Segments: the seed's (id, name) pairs as `ids`, `names` and `list` of `{"name", "id"}` (the
    sample's key order); empty arrays when the company has none.
13. Credits: a 200 with company data charges 1 credit from pool "enrichment" unless the same
    normalised email was charged less than 30 days (divided by time_scale) earlier, measured from
    that charge; free re-enrichments do not extend the period, and the first request after it
    charges again and opens a new period. A needed charge with a balance of 0 -> 402 "Quota
    Exhausted. ..." (the reference's 402 text) and nothing is charged; a re-enrichment inside
    the period and blank answers still succeed at balance 0. 400/401/404/429 never charge.
    The charge happens before the answer is sent: a reply lost in transit (a fault injected
    "after") has still been charged, as with the real vendor.
14. Ledger persistence: `{"version": 1, "balances": {...}, "charges": [{"pool", "key", "at"}],
    "contract_start": ...}` saved after every charge and every `set_credit_balance`. `at` is
    wall-clock epoch seconds (`time.time()`), so a second emulator instance on the same
    state_dir honours the 30-day period and the contract year across processes. When the file
    exists its balances (and contract_start) win over `enrichment_credits` (and the options);
    `credits_spent` is recomputed from the charges. `options.now` is not used by the ledger.
15. Latency: `latency_seconds` is slept (asynchronously) after authentication and rate limiting,
    before the body is handled, for every answer of the endpoint that got that far; 401, 403 and
    429 refusals are immediate (a gateway refuses before the application is reached).
16. Routes outside 6sense's API (wrong method, unknown path) keep FastAPI's default answers.
17. Entitlements: 6sense sells each API separately and a token only works on the APIs bought
    (the reference's 403 "You do not have the appropriate user rights"). `extra["apis"]` lists
    the sandbox token's APIs (names in `APIS`; default all). A call to another API answers 403
    "Forbidden. You do not have the appropriate user rights to access the request. Do not repeat
    the request." (the reference's title and text, as the 402 message is built). People Search
    and its dictionary need "people_enrichment" (the reference: the People Enrichment token works
    on People Search); v2 and v3 Company Firmographics are both "company_firmographics".
18. Lead Scoring (`/v2/people/score`): the input rules of choices 4-8, 404s included. The answer
    is `{"scores": [...]}` with exactly the scores `/v2/people/full` gives the same email; a
    blank-answer domain gives `{"scores": []}`. Never charged (the reference: lead scoring deducts
    no credits), so it answers at balance 0.
19. Company Firmographics v2 (`/v2/people/enrichment`): the input rules of choices 4-8. The
    answer is the sample's `{"company", "segments"}`: the sample's 21 company keys (no
    `companyId`, which only the people/full OpenAPI file has) and employeeCount/annualRevenue as
    numeric strings for every company, as the sample sends them and the field table types them
    (String). `/v2/people/full` keeps its own rule 10 for the same company. A blank-answer domain
    gives the 21 keys as "" and empty segments, uncharged.
20. Company Firmographics v3 (`/v1/enrichment/company`): the v2 answer, from `email` or `domain`.
    The email is tried first; the domain is the fallback when the email is blank, malformed,
    unknown or a blank-answer domain. Both blank -> 400 with the reference's only blank text,
    "Email ID is mandatory and can’t be blank". A malformed email with no domain -> 404 "Invalid
    email ID. ...", an unmatched email or domain -> 404 "No data found. ...", a blank-answer
    domain with no fallback -> the blank answer. The other fields (country, company, industry,
    title, role, firstname, lastname, leadsource) are accepted and ignored.
21. Domains (v3 `domain`, People Search `domain`, dictionary `domainName`) are stripped,
    lower-cased, and lose a scheme, a leading "www.", any path and a trailing dot; a domain that
    is still odd is not refused, it just matches nothing.
22. Enrichment credit keys (one record = one key, shared by all four Enrichment APIs, so a
    record enriched by any of them is free on all of them for 30 days from that charge, choice
    13): the normalised email for `/v2/people/full`, v2, and v3 whenever the request carried a
    well-formed email (also when v3 answered from its domain fallback); "domain:<domain>" for a
    v3 request with a domain and no well-formed email; for People Enrichment the matched
    person's normalised email whatever the input (email, LinkedIn URL or people id), or
    "people:<people id>" when the person has no email.
23. People Enrichment (`/v1/enrichment/people`): a form body, as the samples send (the
    "accepted as query parameters" sentence and the curl samples' `/v1/enrichment` paths are
    taken as copy errors: only the Endpoint line's path is served). Inputs are tried in the
    order the reference lists them, email, linkedinUrl, peopleId; the first that matches a
    person wins. All blank -> 400 "Email ID is mandatory and can’t be blank"; a malformed email
    and no other input -> 404 "Invalid email ID. ..."; nothing matched -> 204 with an empty body
    (also an email at a known company that names nobody: this API matches people, not domains),
    uncharged. LinkedIn URLs match case-insensitively with or without scheme, "www." (or a
    country subdomain), query and trailing slash; people ids case-insensitively. The answer has
    the sample's keys in its order; its `company` is the person's office (region, country,
    state), as the sample's Pune person gets India/Maharashtra; `education` is [] or one entry
    without empty keys; absent strings are "".
24. People Search (`/v1/search/people`): a JSON object body (the header table's content type; the
    form-like Python sample is a copy error). A body that is not a JSON object counts as empty.
    `domain` blank -> 400 "Domain is mandatory and can’t be blank" (our text, after the
    reference's); not a string -> 422. `city`, `state`, `titles` and `country` (typed String,
    yet "multiple values separated by comma") each take a JSON array of strings or one
    comma-separated string, at most 10 values, else 422. `industry` takes one string (an array
    -> 422). Matching is case-insensitive and exact (titles too: the dictionary's titles are the
    vocabulary); `country` also matches the ISO code; filters AND, values within one filter OR.
    `pageNo` (>= 1, default 1) and `pageSize` (1-50, default 50) are integers or digit strings,
    else 422: a pageSize above 50 is refused, not clamped. `pageNumber` is not an alias of
    `pageNo`; unknown fields are ignored. No match, an unknown or blank-answer domain -> 204 with
    an empty body; a page past the end -> 200 with `data: []` and the totals. The answer's
    `city`/`state`/`country`/`titles` are the distinct values of all matching records, sorted
    (the sample echoes only the requested values that matched, in the data's spelling).
    Records are sorted by peopleId. Names are masked as the sample does ("A******* S****").
    `hasWorkPhone` (in the field table, not in the sample) is not sent. Never charged.
25. People Search Dictionary (`/v1/dictionary/peopleSearch`): query parameters `domainName`
    (blank -> 400 as in 24), `pageNumber` (>= 1) and `pageSize` (1-1000, default 1000), else 422.
    Each of `city`, `state`, `country`, `titles` (the account's people's distinct values, sorted)
    and `industry` (the account's industry) is paged with the same slice; `totalRecordCount` is
    the longest of city/state/country/titles ("maximum number of records available for city,
    state, country and titles"), `totalPage` its page count (at least 1). Unknown or
    blank-answer domain -> 204. Never charged.
26. Company Identification (`/v3/company/details`): the visitor's IP is the left-most
    `X-Forwarded-For` entry when that header is present, else the socket peer. Only IPv4 is
    supported (the reference), so an IPv6 or garbage address is "invalid". `X-6s-CustomID` is
    accepted in any format and recorded in `custom_ids`; `EpsilonCookie`, the query string and a
    body are ignored.
27. Company Identification answers are 200s. "Match": the sample's keys in its order; the seeded
    firmographics under the reference's snake_case names (address, zip, phone, sic, naics, ...),
    employee_count/annual_revenue as numeric strings (as the sample); geoIP_* = the company's HQ;
    state_code from a small table ("" when unknown); industry_v2 one entry from a small
    subindustry table; `scores` one "6sense" product whose intent/profile numbers are the company
    numbers `/v2/people/full` gives that domain; is_6qa (product and company) = buying stage
    Decision or Purchase; `confidence` deterministic per IP. "No Match" and "Non-actionable
    Match": company_match and the reference's additional_comment, every other company string
    "", booleans false, industry_v2 [], `scores` [], empty segments, `confidence` "". Invalid IP:
    every company field "" (the reference's "blank data for each of these variables"),
    industry_v2 [], scores [], empty segments, confidence "".
28. Company Identification credits: only "Match" is a "matched response" (a non-actionable match
    identifies no company and is free). 1 credit from pool "company_identification" per IP per
    contract year: contract years are fixed 365-day (/ time_scale) periods counted from
    `contract_start` (saved with the ledger; default: when the emulator that first saved a
    ledger on that state_dir was created, or this instance's creation in memory). An
    IP already charged in the current contract year is free, also at balance 0; in the next
    year it is charged again. A needed charge at balance 0 -> 402 (choice 13's text).
    `identified_ips` is the per-IP charged set of the current contract year.
29. 422 answers (People Search and its dictionary only: the reference's generic "Validation
    error") carry "Validation error. <what was wrong>"; the error shape is choice 1's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.limits import SlidingWindow
from connector.sandbox.seed import NEW_LEADS, SeedCompany, seed_companies, stable_int
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

# 40 alphanumeric characters, like a token from 6sense's API Token Management page.
SANDBOX_API_TOKEN = "sxa5098fec81dc636997586f377021c39ffc80db"

ENRICHMENT_POOL = "enrichment"
COMPANY_IDENTIFICATION_POOL = "company_identification"
CREDIT_POOLS = (ENRICHMENT_POOL, COMPANY_IDENTIFICATION_POOL)

# The APIs a token can be entitled to (`extra["apis"]`, choice 17).
API_COMPANY_IDENTIFICATION = "company_identification"
API_COMPANY_FIRMOGRAPHICS = "company_firmographics"
API_LEAD_SCORING_AND_FIRMOGRAPHICS = "lead_scoring_and_firmographics"
API_LEAD_SCORING = "lead_scoring"
API_PEOPLE_ENRICHMENT = "people_enrichment"  # also People Search and its dictionary
APIS = (
    API_COMPANY_IDENTIFICATION,
    API_COMPANY_FIRMOGRAPHICS,
    API_LEAD_SCORING_AND_FIRMOGRAPHICS,
    API_LEAD_SCORING,
    API_PEOPLE_ENRICHMENT,
)

NO_RECHARGE_SECONDS = 30 * 24 * 3600
CONTRACT_YEAR_SECONDS = 365 * 24 * 3600
DEFAULT_RATE_LIMIT = (100, 60.0)
DEFAULT_CREDITS = 10_000
STATE_FILE_NAME = "sixsense.json"
STATE_VERSION = 1

PEOPLE_SEARCH_MAX_PAGE_SIZE = 50
PEOPLE_SEARCH_MAX_FILTER_VALUES = 10
DICTIONARY_MAX_PAGE_SIZE = 1000

# Company Identification's seeded IPs (module docstring): 203.0.113.N -> the N-th company with data.
IDENTIFICATION_NETWORK = "203.0.113."
NON_ACTIONABLE_NETWORK = "198.51.100."

MSG_UNAUTHORIZED = (
    "Invalid API token. Please make sure you have sent a valid token in the Authorization header."
)
MSG_TOO_MANY_REQUESTS = "Too Many Requests"
MSG_BLANK_EMAIL = "Email ID is mandatory and can’t be blank"
MSG_BLANK_DOMAIN = "Domain is mandatory and can’t be blank"
MSG_INVALID_EMAIL = "Invalid email ID. Please make sure you have sent a valid email address in email field."
MSG_NO_DATA = "No data found. Please contact 6sense support, if you think this is an unexpected error."
MSG_QUOTA_EXHAUSTED = (
    "Quota Exhausted. Your allocated Quota is exhausted, please upgrade/top-up your API limit by "
    "reaching out to your CSM."
)
MSG_FORBIDDEN = (
    "Forbidden. You do not have the appropriate user rights to access the request. Do not repeat "
    "the request."
)
MSG_VALIDATION = "Validation error. {}"

MATCH = "Match"
NON_ACTIONABLE_MATCH = "Non-actionable Match"
NO_MATCH = "No Match"
MATCH_COMMENTS = {
    MATCH: "Company name or domain match was found",
    NON_ACTIONABLE_MATCH: (
        "There is no valid B2B use case as this was matched to something other than a company "
        "name/domain (i.e.: bot, host, noisy signal, etc.)"
    ),
    NO_MATCH: "No company name or domain was found",
}

# Every property of the OpenAPI file's Company schema, in its order (the blank answer's keys).
COMPANY_FIELDS: tuple[str, ...] = (
    "companyId",
    "domain",
    "name",
    "region",
    "country",
    "countryISOCode",
    "state",
    "city",
    "streetAddress",
    "postalCode",
    "companyPhone",
    "industry",
    "employeeRange",
    "revenueRange",
    "employeeCount",
    "annualRevenue",
    "titleLevel",
    "titleFunction",
    "sicdescription",
    "siccode",
    "naicscode",
    "naicsdescription",
)

# The Company Firmographics (v2 and v3) sample's company keys, in its order (no companyId).
FIRMOGRAPHICS_FIELDS: tuple[str, ...] = COMPANY_FIELDS[1:]
FIRMOGRAPHICS_NUMERIC_STRINGS = ("employeeCount", "annualRevenue")

# The Company Identification sample's company keys, in its order.
IDENTIFICATION_COMPANY_FIELDS: tuple[str, ...] = (
    "company_match",
    "additional_comment",
    "domain",
    "name",
    "region",
    "country",
    "state",
    "city",
    "industry",
    "country_iso_code",
    "address",
    "zip",
    "phone",
    "employee_range",
    "revenue_range",
    "employee_count",
    "annual_revenue",
    "is_blacklisted",
    "is_6qa",
    "geoIP_country",
    "geoIP_state",
    "geoIP_city",
    "state_code",
    "industry_v2",
    "sic_description",
    "sic",
    "naics",
    "naics_description",
)
IDENTIFICATION_BOOLEANS = ("is_blacklisted", "is_6qa")
# The reference's snake_case name -> the seed's (sample's) camelCase name.
IDENTIFICATION_FROM_FIRMOGRAPHICS = {
    "domain": "domain",
    "name": "name",
    "region": "region",
    "country": "country",
    "state": "state",
    "city": "city",
    "industry": "industry",
    "country_iso_code": "countryISOCode",
    "address": "streetAddress",
    "zip": "postalCode",
    "phone": "companyPhone",
    "employee_range": "employeeRange",
    "revenue_range": "revenueRange",
    "employee_count": "employeeCount",
    "annual_revenue": "annualRevenue",
    "sic_description": "sicdescription",
    "sic": "siccode",
    "naics": "naicscode",
    "naics_description": "naicsdescription",
}
CONFIDENCE_LEVELS = ("Very High", "High", "Moderate", "Low")
STATE_CODES = {
    "California": "CA",
    "Texas": "TX",
    "New York": "NY",
    "England": "ENG",
    "Auvergne-Rhône-Alpes": "ARA",
    "Karnataka": "KA",
    "Maharashtra": "MH",
    "Ontario": "ON",
    "Berlin": "BE",
}
SUBINDUSTRIES = {
    "Software and Technology": "Software",
    "Manufacturing": "Industrial Machinery & Equipment",
    "Financial Services": "Banking",
    "Electronics": "Electronic Components",
    "Healthcare": "Hospitals & Clinics",
    "Education": "Colleges & Universities",
}

# People Enrichment's sample keys, in its order.
PERSON_FIELDS: tuple[str, ...] = (
    "id",
    "email",
    "emailConfidence",
    "fullName",
    "firstName",
    "lastName",
    "title",
    "function",
    "level",
    "division",
    "education",
    "skills",
    "city",
    "state",
    "country",
    "postalCode",
    "phone",
    "workPhone",
    "linkedinUrl",
    "twitterUrl",
    "facebookUrl",
)
PERSON_COMPANY_FIELDS: tuple[str, ...] = ("domain", "name", "region", "country", "state")
# People Search's sample record keys, in its order.
SEARCH_RECORD_FIELDS: tuple[str, ...] = (
    "peopleId",
    "hasEmail",
    "fullName",
    "firstName",
    "lastName",
    "hasPhone",
    "city",
    "state",
    "country",
    "function",
    "division",
    "seniorityLevel",
)

SCORE_PRODUCT = "6sense"


class SixSenseError(Exception):
    """Raise in a route to answer 6sense's error shape `{"status": "error", "message": ...}`."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


def error_response(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status_code, headers=headers)


def validation_error(detail: str) -> SixSenseError:
    return SixSenseError(422, MSG_VALIDATION.format(detail))


# --- score labels (our thresholds; the reference only lists the values) -------------------------


def buying_stage(intent_score: int) -> str:
    if intent_score >= 85:
        return "Purchase"
    if intent_score >= 70:
        return "Decision"
    if intent_score >= 50:
        return "Consideration"
    if intent_score >= 30:
        return "Awareness"
    return "Target"


def profile_fit(profile_score: int) -> str:
    if profile_score >= 70:
        return "Strong"
    if profile_score >= 40:
        return "Moderate"
    return "Weak"


def contact_grade(intent_score: int) -> str:
    if intent_score >= 75:
        return "A"
    if intent_score >= 50:
        return "B"
    if intent_score >= 25:
        return "C"
    return "D"


def product_scores(domain: str, email: str) -> dict[str, Any]:
    """The one product's scores: company-level from the domain, contact-level from the email."""
    company_intent = stable_int(f"sixsense|company_intent|{domain}", 0, 100)
    company_profile = stable_int(f"sixsense|company_profile|{domain}", 0, 100)
    contact_intent = stable_int(f"sixsense|contact_intent|{email}", 0, 100)
    contact_profile = stable_int(f"sixsense|contact_profile|{email}", 0, 100)
    return {
        "product": SCORE_PRODUCT,
        "company_intent_score": company_intent,
        "company_buying_stage": buying_stage(company_intent),
        "company_profile_score": company_profile,
        "company_profile_fit": profile_fit(company_profile),
        "contact_intent_score": contact_intent,
        "contact_grade": contact_grade(contact_intent),
        "contact_profile_score": contact_profile,
        "contact_profile_fit": profile_fit(contact_profile),
    }


def segments_body(segments: list[tuple[int, str]]) -> dict[str, Any]:
    return {
        "ids": [segment_id for segment_id, _ in segments],
        "names": [name for _, name in segments],
        "list": [{"name": name, "id": segment_id} for segment_id, name in segments],
    }


def blank_answer_body() -> dict[str, Any]:
    return {
        "company": {key: "" for key in COMPANY_FIELDS},
        "scores": [],
        "segments": segments_body([]),
    }


def normalise_email(raw: str) -> str:
    return raw.strip().lower()


def is_malformed_email(email: str) -> bool:
    """Not exactly one "@", an empty local part, or a domain without a dot (see docstring, 6)."""
    if email.count("@") != 1:
        return True
    local, domain = email.split("@")
    return not local or "." not in domain


def _parse_rate_limit(value: Any) -> tuple[int, float]:
    if value is None:
        return DEFAULT_RATE_LIMIT
    if isinstance(value, dict):
        return int(value["requests"]), float(value["per_seconds"])
    requests, per_seconds = value
    return int(requests), float(per_seconds)



# --- inputs --------------------------------------------------------------------------------------


def normalise_domain(raw: str) -> str:
    """Strip, lower-case, and drop a scheme, a leading "www.", a path and a trailing dot (21)."""
    domain = raw.strip().lower()
    domain = re.sub(r"^[a-z][a-z0-9+.-]*://", "", domain)
    domain = re.split(r"[/?#]", domain, maxsplit=1)[0]
    if domain.startswith("www."):
        domain = domain[4:]
    return domain.rstrip(".")


def normalise_linkedin_url(raw: str) -> str | None:
    """"linkedin.com/in/<slug>" for any spelling of a LinkedIn profile URL, else None (23)."""
    url = raw.strip().lower()
    url = re.sub(r"^https?://", "", url)
    url = re.split(r"[?#]", url, maxsplit=1)[0].rstrip("/")
    match = re.fullmatch(r"(?:[a-z]{2,3}\.)?linkedin\.com/in/([^/\s]+)", url)
    if match is None:
        return None
    return f"linkedin.com/in/{match.group(1)}"


def mask_name(name: str) -> str:
    """The People Search sample's masking: the first letter, then one "*" per other letter."""
    return name[:1] + "*" * (len(name) - 1) if name else ""


_NOT_DECOMPOSED = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ł": "l", "Ł": "L"})


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_NOT_DECOMPOSED)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def seed_identification_ips() -> dict[str, str]:
    """203.0.113.N -> the N-th seeded company with data, in `seed_companies()` order."""
    with_data = [c.domain for c in seed_companies().values() if not c.blank_answer]
    return {f"{IDENTIFICATION_NETWORK}{n}": domain for n, domain in enumerate(with_data, start=1)}


def firmographics_body(company: SeedCompany | None) -> dict[str, Any]:
    """Company Firmographics' answer (v2 and v3): the sample's keys, numbers as strings (19)."""
    if company is None or company.blank_answer:
        return {"company": {key: "" for key in FIRMOGRAPHICS_FIELDS}, "segments": segments_body([])}
    firmographics = company.firmographics
    body = {key: firmographics.get(key, "") for key in FIRMOGRAPHICS_FIELDS}
    for key in FIRMOGRAPHICS_NUMERIC_STRINGS:
        if isinstance(body[key], (int, float)) and not isinstance(body[key], bool):
            body[key] = str(body[key])
    return {"company": body, "segments": segments_body(company.segments)}


# --- seeded people -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Office:
    city: str
    state: str
    country: str
    country_iso: str
    region: str
    postal_code: str


@dataclass(frozen=True, eq=False)
class SixSensePerson:
    people_id: str
    domain: str
    email: str  # normalised; "" when 6sense has none
    email_confidence: str
    first_name: str
    last_name: str
    title: str  # lower-case, as the reference's samples
    function: str
    level: str
    division: str
    office: Office
    phone: str
    work_phone: str
    linkedin_url: str
    twitter_url: str
    facebook_url: str
    skills: tuple[str, ...]
    education: tuple[dict[str, Any], ...]

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


OTHER_OFFICES: tuple[Office, ...] = (
    Office("London", "England", "United Kingdom", "GB", "Northern Europe", "EC1A 1BB"),
    Office("Toronto", "Ontario", "Canada", "CA", "Northern America", "M5H 2N2"),
    Office("Berlin", "Berlin", "Germany", "DE", "Western Europe", "10115"),
    Office("Bangalore", "Karnataka", "India", "IN", "Southern Asia", "560001"),
    Office("Austin", "Texas", "United States", "US", "Northern America", "73301"),
)
SIXSENSE_OFFICES: tuple[Office, ...] = (
    Office("Bangalore", "Karnataka", "India", "IN", "Southern Asia", "560001"),
    Office("Pune", "Maharashtra", "India", "IN", "Southern Asia", "411001"),
)

# (title, function, level, division)
TITLES: tuple[tuple[str, str, str, str], ...] = (
    ("chief executive officer", "Executive", "C-Level", "Executive"),
    ("senior product manager", "Product Management", "Senior", "Product Management"),
    ("software engineer", "Engineering", "Staff", "Engineering"),
    ("account manager", "Sales", "Manager", "Sales"),
    ("marketing director", "Marketing", "Director", "Marketing"),
    ("procurement manager", "Purchasing", "Manager", "Operations"),
    ("it director", "Information Technology", "Director", "IT"),
    ("business development representative", "Sales", "Staff", "Sales"),
    ("customer success manager", "Customer Success", "Manager", "Customer Success"),
    ("vp finance", "Finance", "VP", "Finance"),
    ("abx manager", "Marketing", "Manager", "Marketing"),
    ("data analyst", "Engineering", "Staff", "Analytics"),
)
LEAD_TITLES = {
    "vp operations": ("Operations", "VP", "Operations"),
    "engineer": ("Engineering", "Staff", "Engineering"),
    "cto": ("Information Technology", "C-Level", "Executive"),
    "procurement manager": ("Purchasing", "Manager", "Operations"),
    "author": ("Media and Communications", "Staff", "General"),
}
FIRST_NAMES = (
    "Aarav", "Beatriz", "Chen", "Dagny", "Emeka", "Fatima", "Gustavo", "Hana", "Ingrid", "Jamal",
    "Kirsten", "Léa", "Mateo", "Nadia", "Ola", "Priya", "Quentin", "Rosa", "Søren", "Tomás",
    "Uchenna", "Valentina", "Wen", "Ximena", "Yosef", "Zainab",
)
LAST_NAMES = (
    "Anand", "Brennan", "Castillo", "Dubois", "Eriksen", "Fujita", "García", "Haddad", "Iyer",
    "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Neil", "Petrov", "Quispe",
    "Rossi", "Schmidt", "Takahashi", "Umarov", "Vasquez", "Wójcik", "Xu", "Yilmaz", "Zhang",
)
SKILLS = (
    "Seo", "Digital Marketing", "Marketing Strategy", "Product Management", "Project Management",
    "Html", "Product Requirements", "B2B Software", "It Strategy", "Strategy", "Business Development",
    "Business Strategy", "Consulting", "Python", "Negotiation", "Supply Chain", "Financial Modelling",
)
SCHOOLS = (
    ("Indian Institute Of Management", "iimidr.ac.in", "Indore, Madhya Pradesh, India",
     ["Master Of Business Administration", "Masters"]),
    ("University Of Texas At Austin", "utexas.edu", "Austin, Texas, United States",
     ["Bachelor Of Science", "Bachelors"]),
    ("University Of Manchester", "manchester.ac.uk", "Manchester, England, United Kingdom",
     ["Bachelor Of Engineering", "Bachelors"]),
)
EMAIL_CONFIDENCES = ("A+", "A", "B")


def _people_id(seed: str) -> str:
    digits = "".join(f"{stable_int(f'sixsense|people_id|{i}|{seed}', 0, 0xFFFFFFFF):08x}" for i in range(4))
    variant = "89ab"[int(digits[16], 16) % 4]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:32]}"


def _phone(seed: str) -> str:
    return f"({stable_int(f'{seed}|area', 201, 989)}) 555-{stable_int(f'{seed}|line', 0, 9999):04d}"


def _offices(company: SeedCompany) -> tuple[Office, ...]:
    f = company.firmographics
    hq = Office(f["city"], f["state"], f["country"], f["countryISOCode"], f["region"], f["postalCode"])
    if company.domain == "6sense.com":
        return (hq, *SIXSENSE_OFFICES)
    others = [o for o in OTHER_OFFICES if o.city != hq.city]
    return (hq, others[stable_int(f"sixsense|office|{company.domain}", 0, len(others) - 1)])


def _make_person(
    company: SeedCompany,
    seed: str,
    first: str,
    last: str,
    email: str,
    title: str | None,
    at_hq: bool,
) -> SixSensePerson:
    offices = _offices(company)
    if at_hq:
        office = offices[0]
    else:
        pick = stable_int(f"sixsense|person_office|{seed}", 0, 9)
        office = offices[0] if pick < 6 else offices[1 + pick % (len(offices) - 1)]
    if title is None:
        title, function, level, division = TITLES[stable_int(f"sixsense|title|{seed}", 0, len(TITLES) - 1)]
    else:
        title = title.strip().lower()
        function, level, division = LEAD_TITLES.get(title, ("", "Staff", "General"))
    skill_count = stable_int(f"sixsense|skill_count|{seed}", 0, 6)
    start = stable_int(f"sixsense|skill_start|{seed}", 0, len(SKILLS) - 1)
    skills = tuple(SKILLS[(start + i) % len(SKILLS)] for i in range(skill_count))
    education: tuple[dict[str, Any], ...] = ()
    if stable_int(f"sixsense|education|{seed}", 0, 1):
        name, website, location, degrees = SCHOOLS[stable_int(f"sixsense|school|{seed}", 0, len(SCHOOLS) - 1)]
        end = stable_int(f"sixsense|grad|{seed}", 1995, 2020)
        education = ({
            "startDate": end - 4, "endDate": end, "schoolLocation": location,
            "schoolWebsite": website, "schoolName": name, "degrees": list(degrees),
        },)
    slug = f"{_ascii_slug(first)}{_ascii_slug(last)}{stable_int(f'sixsense|linkedin|{seed}', 10, 99)}"
    has_phone = stable_int(f"sixsense|has_phone|{seed}", 0, 9) < 6
    has_work_phone = stable_int(f"sixsense|has_work_phone|{seed}", 0, 9) < 7
    has_facebook = stable_int(f"sixsense|has_facebook|{seed}", 0, 9) < 3
    has_twitter = stable_int(f"sixsense|has_twitter|{seed}", 0, 9) < 2
    return SixSensePerson(
        people_id=_people_id(seed),
        domain=company.domain,
        email=email,
        email_confidence=(
            EMAIL_CONFIDENCES[stable_int(f"sixsense|email_confidence|{seed}", 0, 2)] if email else ""
        ),
        first_name=first,
        last_name=last,
        title=title,
        function=function,
        level=level,
        division=division,
        office=office,
        phone=_phone(f"sixsense|phone|{seed}") if has_phone else "",
        work_phone=_phone(f"sixsense|work_phone|{seed}") if has_work_phone else "",
        linkedin_url=f"https://www.linkedin.com/in/{slug}/",
        twitter_url=f"https://twitter.com/{slug}" if has_twitter else "",
        facebook_url=(
            f"https://www.facebook.com/{_ascii_slug(first)}.{_ascii_slug(last)}" if has_facebook else ""
        ),
        skills=skills,
        education=education,
    )


def _employee_count(company: SeedCompany) -> int:
    try:
        return int(company.firmographics.get("employeeCount") or 0)
    except (TypeError, ValueError):
        return 0


def seed_people(companies: dict[str, SeedCompany]) -> list[SixSensePerson]:
    """The seeded people: the well-formed NEW_LEADS at companies with data, then made-up colleagues."""
    people: list[SixSensePerson] = []
    emails: set[str] = set()
    for lead in NEW_LEADS:
        email = normalise_email(lead.email)
        if not email or is_malformed_email(email) or email in emails:
            continue
        company = companies.get(email.split("@", 1)[1])
        if company is None or company.blank_answer:
            continue
        emails.add(email)
        people.append(
            _make_person(
                company, email, lead.first_name, lead.last_name, email, lead.title or None, at_hq=True
            )
        )
    for company in companies.values():
        if company.blank_answer:
            continue
        count = max(3, min(75, _employee_count(company) // 100))
        for index in range(count):
            seed = f"{company.domain}|{index}"
            first = FIRST_NAMES[stable_int(f"sixsense|first|{seed}", 0, len(FIRST_NAMES) - 1)]
            last = LAST_NAMES[stable_int(f"sixsense|last|{seed}", 0, len(LAST_NAMES) - 1)]
            email = ""
            if stable_int(f"sixsense|has_email|{seed}", 0, 4) != 0:
                local = f"{_ascii_slug(first)}.{_ascii_slug(last)}"
                email = f"{local}@{company.domain}"
                suffix = 2
                while email in emails:
                    email = f"{local}{suffix}@{company.domain}"
                    suffix += 1
                emails.add(email)
            people.append(_make_person(company, seed, first, last, email, None, at_hq=False))
    return people


def person_body(person: SixSensePerson, company: SeedCompany) -> dict[str, Any]:
    """People Enrichment's answer: the sample's keys; the company is the person's office (23)."""
    office = person.office
    values: dict[str, Any] = {
        "id": person.people_id,
        "email": person.email,
        "emailConfidence": person.email_confidence,
        "fullName": person.full_name,
        "firstName": person.first_name,
        "lastName": person.last_name,
        "title": person.title,
        "function": person.function,
        "level": person.level,
        "division": person.division,
        "education": [dict(entry) for entry in person.education],
        "skills": list(person.skills),
        "city": office.city,
        "state": office.state,
        "country": office.country,
        "postalCode": office.postal_code,
        "phone": person.phone,
        "workPhone": person.work_phone,
        "linkedinUrl": person.linkedin_url,
        "twitterUrl": person.twitter_url,
        "facebookUrl": person.facebook_url,
    }
    return {
        "person": {key: values[key] for key in PERSON_FIELDS},
        "company": {
            "domain": company.domain,
            "name": company.firmographics.get("name", ""),
            "region": office.region,
            "country": office.country,
            "state": office.state,
        },
    }


def search_record(person: SixSensePerson) -> dict[str, Any]:
    office = person.office
    return {
        "peopleId": person.people_id,
        "hasEmail": bool(person.email),
        "fullName": f"{mask_name(person.first_name)} {mask_name(person.last_name)}".strip(),
        "firstName": mask_name(person.first_name),
        "lastName": mask_name(person.last_name),
        "hasPhone": bool(person.phone),
        "city": office.city,
        "state": office.state,
        "country": office.country,
        "function": person.function,
        "division": person.division,
        "seniorityLevel": person.level,
    }


# --- request parsing for People Search and its dictionary ------------------------------------------


def parse_page_int(value: Any, name: str, default: int, high: int | None) -> int:
    """An integer or a digit string in [1, high]; else 422 (choices 24, 25)."""
    if value is None:
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 1 or (high is not None and number > high):
        bound = f"between 1 and {high}" if high is not None else "of at least 1"
        raise validation_error(f"{name} must be an integer {bound}.")
    return number


def parse_filter_values(value: Any, name: str) -> list[str]:
    """A JSON array of strings or one comma-separated string, at most 10 values (24)."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        raise validation_error(f"{name} must be a list of strings.")
    values = [item.strip() for item in items if item.strip()]
    if len(values) > PEOPLE_SEARCH_MAX_FILTER_VALUES:
        raise validation_error(f"{name} accepts at most {PEOPLE_SEARCH_MAX_FILTER_VALUES} values.")
    return values


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _page(items: list[Any], page: int, size: int) -> list[Any]:
    return items[(page - 1) * size : page * size]


def _distinct_sorted(values: Any) -> list[str]:
    return sorted({v for v in values if v}, key=lambda v: (v.casefold(), v))


class SixSenseEmulator:
    """6sense's three hosts: auth, entitlements, rate limit, credit ledger, seeded companies and people."""

    vendor = "sixsense"
    tls = False

    def __init__(self, options: EmulatorOptions) -> None:
        if options.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.options = options
        self.time_scale = float(options.time_scale)
        extra = options.extra or {}
        requests, per_seconds = _parse_rate_limit(extra.get("rate_limit"))
        self.rate_limit_requests = requests
        self.rate_limit_window_seconds = per_seconds / self.time_scale
        self.no_recharge_seconds = NO_RECHARGE_SECONDS / self.time_scale
        self.contract_year_seconds = CONTRACT_YEAR_SECONDS / self.time_scale
        self.latency_seconds = float(extra.get("latency_seconds", 0) or 0)
        self.api_token = SANDBOX_API_TOKEN
        # Wall clock for the ledger (persisted, so comparable across processes); replaceable.
        self.clock = time.time

        apis = extra.get("apis")
        self.entitled_apis: frozenset[str] = frozenset(APIS if apis is None else apis)
        unknown = self.entitled_apis - set(APIS)
        if unknown:
            raise ValueError(f"unknown 6sense APIs {sorted(unknown)}; expected names from {APIS}")

        self.companies: dict[str, SeedCompany] = seed_companies()
        self.people: list[SixSensePerson] = seed_people(self.companies)
        self._people_by_email = {p.email: p for p in self.people if p.email}
        self._people_by_linkedin = {normalise_linkedin_url(p.linkedin_url): p for p in self.people}
        self._people_by_id = {p.people_id: p for p in self.people}
        self._people_by_domain: dict[str, list[SixSensePerson]] = {}
        for person in sorted(self.people, key=lambda p: p.people_id):
            self._people_by_domain.setdefault(person.domain, []).append(person)

        self.ip_companies: dict[str, str] = seed_identification_ips()
        for ip, domain in (extra.get("ip_companies") or {}).items():
            company = self.lookup_company(domain)
            if company is None or company.blank_answer:
                raise ValueError(f"ip_companies: {domain!r} is not a seeded company with data")
            self.ip_companies[str(ipaddress.IPv4Address(ip.strip()))] = company.domain
        blacklisted = extra.get("blacklisted_domains") or ()
        self.blacklisted_domains = frozenset(normalise_domain(d) for d in blacklisted)
        # X-6s-CustomID headers Company Identification received, in order.
        self.custom_ids: list[str] = []

        self._lock = threading.Lock()
        self._windows: dict[str, SlidingWindow] = {}
        self.credit_balances: dict[str, int] = {
            ENRICHMENT_POOL: int(extra.get("enrichment_credits", DEFAULT_CREDITS)),
            COMPANY_IDENTIFICATION_POOL: int(extra.get("company_identification_credits", DEFAULT_CREDITS)),
        }
        self.credits_spent: dict[str, int] = {pool: 0 for pool in CREDIT_POOLS}
        self.charges: list[dict[str, Any]] = []
        self._last_charge: dict[tuple[str, str], float] = {}
        contract_start = extra.get("contract_start")
        self.contract_start: float = float(contract_start) if contract_start is not None else self.clock()

        path = Path(options.state_dir) / STATE_FILE_NAME if options.state_dir is not None else None
        self._state = JsonStateFile(path)
        self._load_ledger()

        self.app = FastAPI(
            title="6sense sandbox (scribe, api, epsilon)", docs_url=None, redoc_url=None, openapi_url=None
        )
        self.log = RequestLog()
        self.faults = FaultQueue()
        self._install_error_handler()
        self._add_routes()
        instrument(self.app, self.log, self.faults)

    # --- the Emulator protocol -------------------------------------------------------------------

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {
            "providers": {
                "sixsense": {
                    "scribe_url": base_url,
                    "api_url": base_url,
                    "epsilon_url": base_url,
                    "api_token": SANDBOX_API_TOKEN,
                }
            }
        }

    # --- credit ledger ---------------------------------------------------------------------------

    def set_credit_balance(self, pool: str, credits: int) -> None:
        if pool not in CREDIT_POOLS:
            raise ValueError(f"unknown 6sense credit pool {pool!r}; expected one of {CREDIT_POOLS}")
        with self._lock:
            self.credit_balances[pool] = int(credits)
            self._save_ledger()

    def credit_balance(self, pool: str) -> int:
        with self._lock:
            return self.credit_balances[pool]

    def charge(self, pool: str, key: str) -> bool:
        """Charge 1 credit for `key` unless it is still covered by an earlier charge.

        Covered: "enrichment" within the no-recharge period of the last charge; "company_identification"
        charged in the current contract year. Returns True if a credit was taken, False if the
        record was free; raises SixSenseError(402) if a charge is needed and the pool is empty.
        """
        with self._lock:
            now = self.clock()
            last = self._last_charge.get((pool, key))
            if last is not None and self._covered(pool, last, now):
                return False
            if self.credit_balances.get(pool, 0) <= 0:
                raise SixSenseError(402, MSG_QUOTA_EXHAUSTED)
            self.credit_balances[pool] -= 1
            self.credits_spent[pool] = self.credits_spent.get(pool, 0) + 1
            self.charges.append({"pool": pool, "key": key, "at": now})
            self._last_charge[(pool, key)] = now
            self._save_ledger()
            return True

    def contract_year(self, at: float) -> int:
        """The index of the contract year `at` falls in (0 = the one starting at contract_start)."""
        return math.floor((at - self.contract_start) / self.contract_year_seconds)

    def _covered(self, pool: str, last: float, now: float) -> bool:
        if pool == COMPANY_IDENTIFICATION_POOL:
            return self.contract_year(last) == self.contract_year(now)
        return now - last < self.no_recharge_seconds

    @property
    def identified_ips(self) -> set[str]:
        """The IPs charged for Company Identification in the current contract year."""
        with self._lock:
            year = self.contract_year(self.clock())
            return {
                key
                for (pool, key), at in self._last_charge.items()
                if pool == COMPANY_IDENTIFICATION_POOL and self.contract_year(at) == year
            }

    def _load_ledger(self) -> None:
        document = self._state.load()
        if not document:
            return
        for pool, balance in (document.get("balances") or {}).items():
            self.credit_balances[pool] = int(balance)
        for charge in document.get("charges") or []:
            entry = {"pool": charge["pool"], "key": charge["key"], "at": float(charge["at"])}
            self.charges.append(entry)
            self.credits_spent[entry["pool"]] = self.credits_spent.get(entry["pool"], 0) + 1
            slot = (entry["pool"], entry["key"])
            self._last_charge[slot] = max(entry["at"], self._last_charge.get(slot, entry["at"]))
        if document.get("contract_start") is not None:
            self.contract_start = float(document["contract_start"])

    def _save_ledger(self) -> None:
        """Caller holds the lock."""
        self._state.save(
            {
                "version": STATE_VERSION,
                "balances": dict(self.credit_balances),
                "charges": [dict(c) for c in self.charges],
                "contract_start": self.contract_start,
            }
        )

    # --- shared request handling -----------------------------------------------------------------

    def lookup_company(self, domain: str) -> SeedCompany | None:
        return self.companies.get(domain.strip().lower())

    def _window_for(self, token: str) -> SlidingWindow:
        with self._lock:
            window = self._windows.get(token)
            if window is None:
                window = SlidingWindow(self.rate_limit_requests, self.rate_limit_window_seconds)
                self._windows[token] = window
            return window

    async def admit(self, request: Request) -> str:
        """FastAPI dependency for every 6sense route: the token check, then the rate limit."""
        header = request.headers.get("authorization", "")
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "token" or parts[1] != self.api_token:
            raise SixSenseError(401, MSG_UNAUTHORIZED)
        token = parts[1]
        if self._window_for(token).try_accept() is not None:
            # 6sense documents no Retry-After, so none is sent.
            raise SixSenseError(429, MSG_TOO_MANY_REQUESTS)
        return token

    def admit_for(self, api: str) -> Callable[[Request], Awaitable[str]]:
        """`admit`, then the token's entitlement to `api` (403, choice 17)."""
        if api not in APIS:
            raise ValueError(f"unknown 6sense API {api!r}")

        async def dependency(request: Request) -> str:
            token = await self.admit(request)
            if api not in self.entitled_apis:
                raise SixSenseError(403, MSG_FORBIDDEN)
            return token

        return dependency

    async def delay(self) -> None:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)

    @staticmethod
    async def form_field(request: Request, name: str) -> str | None:
        form = await request.form()
        value = form.get(name)
        if value is None or not isinstance(value, str):
            return None
        return value

    @staticmethod
    async def json_object(request: Request) -> dict[str, Any]:
        """The body as a JSON object; anything else counts as an empty object (choice 24)."""
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return {}
        return body if isinstance(body, dict) else {}

    @staticmethod
    def visitor_ip(request: Request) -> str:
        """The left-most X-Forwarded-For entry when present, else the socket peer (choice 26)."""
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded is not None:
            return forwarded.split(",")[0].strip()
        return request.client.host if request.client is not None else ""

    def _install_error_handler(self) -> None:
        @self.app.exception_handler(SixSenseError)
        async def _sixsense_error(request: Request, exc: SixSenseError) -> JSONResponse:
            return error_response(exc.status_code, exc.message, exc.headers)

    # --- routes ----------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        app = self.app
        scoring_and_firmographics = Depends(self.admit_for(API_LEAD_SCORING_AND_FIRMOGRAPHICS))
        scoring = Depends(self.admit_for(API_LEAD_SCORING))
        firmographics = Depends(self.admit_for(API_COMPANY_FIRMOGRAPHICS))
        people = Depends(self.admit_for(API_PEOPLE_ENRICHMENT))
        identification = Depends(self.admit_for(API_COMPANY_IDENTIFICATION))

        # scribe.6sense.com
        @app.post("/v2/people/full")
        async def people_full(request: Request, token: str = scoring_and_firmographics) -> JSONResponse:
            await self.delay()
            return JSONResponse(self.lead_scoring_and_firmographics(await self.form_field(request, "email")))

        @app.post("/v2/people/score")
        async def people_score(request: Request, token: str = scoring) -> JSONResponse:
            await self.delay()
            return JSONResponse(self.lead_scoring(await self.form_field(request, "email")))

        @app.post("/v2/people/enrichment")
        async def people_enrichment_v2(request: Request, token: str = firmographics) -> JSONResponse:
            await self.delay()
            return JSONResponse(self.company_firmographics_v2(await self.form_field(request, "email")))

        # api.6sense.com
        @app.post("/v1/enrichment/company")
        async def enrichment_company(request: Request, token: str = firmographics) -> JSONResponse:
            await self.delay()
            email = await self.form_field(request, "email")
            domain = await self.form_field(request, "domain")
            return JSONResponse(self.company_firmographics_v3(email, domain))

        @app.post("/v1/enrichment/people")
        async def enrichment_people(request: Request, token: str = people) -> Response:
            await self.delay()
            body = self.people_enrichment(
                await self.form_field(request, "email"),
                await self.form_field(request, "linkedinUrl"),
                await self.form_field(request, "peopleId"),
            )
            return Response(status_code=204) if body is None else JSONResponse(body)

        @app.post("/v1/search/people")
        async def search_people(request: Request, token: str = people) -> Response:
            await self.delay()
            body = self.people_search(await self.json_object(request))
            return Response(status_code=204) if body is None else JSONResponse(body)

        @app.get("/v1/dictionary/peopleSearch")
        async def dictionary_people_search(request: Request, token: str = people) -> Response:
            await self.delay()
            body = self.people_search_dictionary(dict(request.query_params))
            return Response(status_code=204) if body is None else JSONResponse(body)

        # epsilon.6sense.com
        @app.get("/v3/company/details")
        async def company_details(request: Request, token: str = identification) -> JSONResponse:
            await self.delay()
            custom_id = request.headers.get("x-6s-customid")
            if custom_id is not None:
                with self._lock:
                    self.custom_ids.append(custom_id)
            return JSONResponse(self.company_identification(self.visitor_ip(request)))

    # --- Lead Scoring and Firmographics, Lead Scoring, Company Firmographics ----------------------

    def _company_for_email(self, raw_email: str | None) -> tuple[str, SeedCompany]:
        """Choices 6-8: (normalised email, known company) or SixSenseError 400/404."""
        if raw_email is None or not raw_email.strip():
            raise SixSenseError(400, MSG_BLANK_EMAIL)
        email = normalise_email(raw_email)
        if is_malformed_email(email):
            raise SixSenseError(404, MSG_INVALID_EMAIL)
        company = self.lookup_company(email.split("@", 1)[1])
        if company is None:
            raise SixSenseError(404, MSG_NO_DATA)
        return email, company

    def lead_scoring_and_firmographics(self, raw_email: str | None) -> dict[str, Any]:
        """The body of a 200 for `POST /v2/people/full`, or SixSenseError."""
        email, company = self._company_for_email(raw_email)
        if company.blank_answer:
            return blank_answer_body()
        self.charge(ENRICHMENT_POOL, email)
        return {
            "company": dict(company.firmographics),
            "scores": [product_scores(company.domain, email)],
            "segments": segments_body(company.segments),
        }

    def lead_scoring(self, raw_email: str | None) -> dict[str, Any]:
        """The body of a 200 for `POST /v2/people/score` (choice 18); never charged."""
        email, company = self._company_for_email(raw_email)
        if company.blank_answer:
            return {"scores": []}
        return {"scores": [product_scores(company.domain, email)]}

    def company_firmographics_v2(self, raw_email: str | None) -> dict[str, Any]:
        """The body of a 200 for `POST /v2/people/enrichment` (choice 19)."""
        email, company = self._company_for_email(raw_email)
        if company.blank_answer:
            return firmographics_body(None)
        self.charge(ENRICHMENT_POOL, email)
        return firmographics_body(company)

    def company_firmographics_v3(self, raw_email: str | None, raw_domain: str | None) -> dict[str, Any]:
        """The body of a 200 for `POST /v1/enrichment/company` (choices 20-22)."""
        email = normalise_email(raw_email or "")
        domain = normalise_domain(raw_domain or "")
        if not email and not domain:
            raise SixSenseError(400, MSG_BLANK_EMAIL)
        well_formed = bool(email) and not is_malformed_email(email)
        if email and not well_formed and not domain:
            raise SixSenseError(404, MSG_INVALID_EMAIL)
        candidates = []
        if well_formed:
            candidates.append(self.lookup_company(email.split("@", 1)[1]))
        if domain:
            candidates.append(self.lookup_company(domain))
        known = [c for c in candidates if c is not None]
        if not known:
            raise SixSenseError(404, MSG_NO_DATA)
        company = next((c for c in known if not c.blank_answer), None)
        if company is None:
            return firmographics_body(None)
        self.charge(ENRICHMENT_POOL, email if well_formed else f"domain:{domain}")
        return firmographics_body(company)

    # --- People Enrichment, People Search and its dictionary -----------------------------------------

    def find_person(
        self, raw_email: str | None, raw_linkedin: str | None, raw_people_id: str | None
    ) -> SixSensePerson | None:
        """Choice 23's lookup: email, then LinkedIn URL, then people id; SixSenseError 400/404."""
        email = normalise_email(raw_email or "")
        linkedin = (raw_linkedin or "").strip()
        people_id = (raw_people_id or "").strip().lower()
        if not email and not linkedin and not people_id:
            raise SixSenseError(400, MSG_BLANK_EMAIL)
        if email and is_malformed_email(email) and not linkedin and not people_id:
            raise SixSenseError(404, MSG_INVALID_EMAIL)
        if email and email in self._people_by_email:
            return self._people_by_email[email]
        if linkedin:
            key = normalise_linkedin_url(linkedin)
            if key is not None and key in self._people_by_linkedin:
                return self._people_by_linkedin[key]
        if people_id:
            return self._people_by_id.get(people_id)
        return None

    def people_enrichment(
        self, raw_email: str | None, raw_linkedin: str | None, raw_people_id: str | None
    ) -> dict[str, Any] | None:
        """The body of a 200 for `POST /v1/enrichment/people`, None for 204, or SixSenseError."""
        person = self.find_person(raw_email, raw_linkedin, raw_people_id)
        if person is None:
            return None
        self.charge(ENRICHMENT_POOL, person.email or f"people:{person.people_id}")
        return person_body(person, self.companies[person.domain])

    def _account_people(self, raw_domain: str) -> tuple[str, SeedCompany | None, list[SixSensePerson]]:
        domain = normalise_domain(raw_domain)
        company = self.lookup_company(domain)
        if company is None or company.blank_answer:
            return domain, None, []
        return domain, company, self._people_by_domain.get(company.domain, [])

    def people_search(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The body of a 200 for `POST /v1/search/people` (choice 24), None for 204."""
        raw_domain = body.get("domain")
        if raw_domain is None or (isinstance(raw_domain, str) and not raw_domain.strip()):
            raise SixSenseError(400, MSG_BLANK_DOMAIN)
        if not isinstance(raw_domain, str):
            raise validation_error("domain must be a string.")
        filters = {
            name: {_folded(v) for v in parse_filter_values(body.get(name), name)}
            for name in ("city", "state", "country", "titles")
        }
        industry = body.get("industry")
        if industry is not None and not isinstance(industry, str):
            raise validation_error("industry accepts a single value.")
        page_number = parse_page_int(body.get("pageNo"), "pageNo", 1, None)
        page_size = parse_page_int(
            body.get("pageSize"), "pageSize", PEOPLE_SEARCH_MAX_PAGE_SIZE, PEOPLE_SEARCH_MAX_PAGE_SIZE
        )
        domain, company, people = self._account_people(raw_domain)
        if company is None:
            return None
        if industry is not None and industry.strip():
            if _folded(industry) != _folded(str(company.firmographics.get("industry", ""))):
                return None

        def matches(person: SixSensePerson) -> bool:
            office = person.office
            return (
                (not filters["city"] or _folded(office.city) in filters["city"])
                and (not filters["state"] or _folded(office.state) in filters["state"])
                and (
                    not filters["country"]
                    or _folded(office.country) in filters["country"]
                    or _folded(office.country_iso) in filters["country"]
                )
                and (not filters["titles"] or _folded(person.title) in filters["titles"])
            )

        found = [p for p in people if matches(p)]
        if not found:
            return None
        return {
            "domain": company.domain,
            "city": _distinct_sorted(p.office.city for p in found),
            "state": _distinct_sorted(p.office.state for p in found),
            "country": _distinct_sorted(p.office.country for p in found),
            "titles": _distinct_sorted(p.title for p in found),
            "totalRecordCount": len(found),
            "totalPage": math.ceil(len(found) / page_size),
            "pageNumber": page_number,
            "pageSize": page_size,
            "data": [search_record(p) for p in _page(found, page_number, page_size)],
        }

    def people_search_dictionary(self, params: dict[str, str]) -> dict[str, Any] | None:
        """The body of a 200 for `GET /v1/dictionary/peopleSearch` (choice 25), None for 204."""
        raw_domain = params.get("domainName")
        if raw_domain is None or not raw_domain.strip():
            raise SixSenseError(400, MSG_BLANK_DOMAIN)
        page_number = parse_page_int(params.get("pageNumber"), "pageNumber", 1, None)
        page_size = parse_page_int(
            params.get("pageSize"), "pageSize", DICTIONARY_MAX_PAGE_SIZE, DICTIONARY_MAX_PAGE_SIZE
        )
        _, company, people = self._account_people(raw_domain)
        if company is None or not people:
            return None
        lists = {
            "city": _distinct_sorted(p.office.city for p in people),
            "state": _distinct_sorted(p.office.state for p in people),
            "country": _distinct_sorted(p.office.country for p in people),
            "titles": _distinct_sorted(p.title for p in people),
            "industry": _distinct_sorted([str(company.firmographics.get("industry", ""))]),
        }
        total = max(len(lists[name]) for name in ("city", "state", "country", "titles"))
        return {
            **{name: _page(values, page_number, page_size) for name, values in lists.items()},
            "totalRecordCount": total,
            "totalPage": max(1, math.ceil(total / page_size)),
            "pageNumber": page_number,
            "pageSize": page_size,
        }

    # --- Company Identification -------------------------------------------------------------------

    def identify(self, raw_ip: str) -> tuple[str | None, SeedCompany | None, str]:
        """(normalised IPv4 or None if invalid, company on a Match, company_match) for an address."""
        try:
            ip = str(ipaddress.IPv4Address(raw_ip.strip()))
        except ValueError:
            return None, None, ""
        domain = self.ip_companies.get(ip)
        if domain is not None:
            return ip, self.companies[domain], MATCH
        if ip.startswith(NON_ACTIONABLE_NETWORK):
            return ip, None, NON_ACTIONABLE_MATCH
        return ip, None, NO_MATCH

    def company_identification(self, raw_ip: str) -> dict[str, Any]:
        """The body of a 200 for `GET /v3/company/details` (choices 26-28)."""
        ip, company, match = self.identify(raw_ip)
        if ip is None:
            blank: dict[str, Any] = {key: "" for key in IDENTIFICATION_COMPANY_FIELDS}
            blank["industry_v2"] = []
            return {"company": blank, "scores": [], "segments": segments_body([]), "confidence": ""}
        if company is None:
            unmatched: dict[str, Any] = {key: "" for key in IDENTIFICATION_COMPANY_FIELDS}
            unmatched.update({key: False for key in IDENTIFICATION_BOOLEANS})
            unmatched.update(company_match=match, additional_comment=MATCH_COMMENTS[match], industry_v2=[])
            return {"company": unmatched, "scores": [], "segments": segments_body([]), "confidence": ""}
        self.charge(COMPANY_IDENTIFICATION_POOL, ip)
        scores = product_scores(company.domain, "")
        is_6qa = scores["company_buying_stage"] in ("Decision", "Purchase")
        firmographics = company.firmographics
        values: dict[str, Any] = {
            name: firmographics.get(source, "") for name, source in IDENTIFICATION_FROM_FIRMOGRAPHICS.items()
        }
        for key in ("employee_count", "annual_revenue"):
            values[key] = str(values[key])
        industry = str(firmographics.get("industry", ""))
        values.update(
            company_match=MATCH,
            additional_comment=MATCH_COMMENTS[MATCH],
            is_blacklisted=company.domain in self.blacklisted_domains,
            is_6qa=is_6qa,
            geoIP_country=firmographics.get("country", ""),
            geoIP_state=firmographics.get("state", ""),
            geoIP_city=firmographics.get("city", ""),
            state_code=STATE_CODES.get(str(firmographics.get("state", "")), ""),
            industry_v2=[{"industry": industry, "subindustry": SUBINDUSTRIES.get(industry, "")}],
        )
        confidence = CONFIDENCE_LEVELS[stable_int(f"sixsense|confidence|{ip}", 0, len(CONFIDENCE_LEVELS) - 1)]
        return {
            "company": {key: values[key] for key in IDENTIFICATION_COMPANY_FIELDS},
            "scores": [
                {
                    "is_6qa": is_6qa,
                    "product": SCORE_PRODUCT,
                    "product_display_name": SCORE_PRODUCT,
                    "intent_score": scores["company_intent_score"],
                    "buying_stage": scores["company_buying_stage"],
                    "profile_score": scores["company_profile_score"],
                    "profile_fit": scores["company_profile_fit"],
                }
            ],
            "segments": segments_body(company.segments),
            "confidence": confidence,
        }


@register_emulator("sixsense")
def create_sixsense_emulator(options: EmulatorOptions) -> SixSenseEmulator:
    return SixSenseEmulator(options)
