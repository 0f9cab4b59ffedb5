"""6sense emulator: the "scribe" host's Lead Scoring and Firmographics API (`POST /v2/people/full`).

A FastAPI app that `EmulatorServer` serves over real HTTP on 127.0.0.1. It owns the things every
6sense endpoint shares, so later endpoints (Company Firmographics `/v3/company/details`, Company
Identification, People Enrichment, ...) only add a route:

* `SixSenseEmulator.admit`: a FastAPI dependency that checks `Authorization: Token <token>` and
  the per-token sliding-window rate limit; a route takes `token: str = Depends(self.admit)`.
* `SixSenseError`: raise it anywhere in a route to answer `{"status": "error", "message": ...}`.
* `SixSenseEmulator.charge(pool, key)`: the credit ledger (balances, charges, the 30-day
  no-recharge period), atomic under one lock and persisted with `JsonStateFile`.
* `SixSenseEmulator.lookup_company(domain)`: the seeded companies (`seed.seed_companies()`).
* `SixSenseEmulator.delay()`: the artificial per-answer latency (`extra["latency_seconds"]`).

Options: `state_dir` (None keeps the ledger in memory; else `state_dir/"sixsense.json"`),
`time_scale` (divides the rate-limit window and the 30-day no-recharge period), `extra`:
`rate_limit` ([requests, per_seconds], default [100, 60]), `enrichment_credits` (default 10000),
`company_identification_credits` (default 10000, for the Company Identification pool that later
endpoints will charge), `latency_seconds` (default 0).

Choices made where the 6sense reference (and its OpenAPI file) is unclear or silent:

1. Authentication: the header must be `Authorization: Token <token>`. The scheme word is matched
   case-insensitively (as Django REST framework's TokenAuthentication, which the "Token" scheme
   suggests, does); the token itself exactly. A missing header, another scheme (`Bearer`), extra
   words or a wrong token all get the same 401 `{"status": "error", "message": "Invalid API
   token. ..."}`; the wording is ours (the reference only describes the 401) and never echoes the
   token.
2. Order of checks: authentication, then rate limit, then the latency delay, then the body.
   401s are not counted against any token's rate limit (they cannot be attributed to one); every
   authenticated request that is not refused with 429 counts, including those answered 400/404.
3. Rate limit: 100 requests per 60 s per token (the reference's "100 requests per minute
   interval"), as a sliding window over accepted requests, enforced server-side. Refusals are 429
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
14. Ledger persistence: `{"version": 1, "balances": {...}, "charges": [{"pool", "key", "at"}]}`
    saved after every charge and every `set_credit_balance`. `at` is wall-clock epoch seconds
    (`time.time()`), so a second emulator instance on the same state_dir honours the 30-day
    period across processes. When the file exists its balances win over `enrichment_credits`;
    `credits_spent` is recomputed from the charges. `options.now` is not used by the ledger.
15. Latency: `latency_seconds` is slept (asynchronously) after authentication and rate limiting,
    before the body is handled, for every answer of the endpoint that got that far; 401 and 429
    refusals are immediate (a gateway refuses before the application is reached).
16. Routes outside 6sense's API (wrong method, unknown path) keep FastAPI's default answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.limits import SlidingWindow
from connector.sandbox.seed import SeedCompany, seed_companies, stable_int
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

# 40 alphanumeric characters, like a token from 6sense's API Token Management page.
SANDBOX_API_TOKEN = "sxa5098fec81dc636997586f377021c39ffc80db"

ENRICHMENT_POOL = "enrichment"
COMPANY_IDENTIFICATION_POOL = "company_identification"
CREDIT_POOLS = (ENRICHMENT_POOL, COMPANY_IDENTIFICATION_POOL)

NO_RECHARGE_SECONDS = 30 * 24 * 3600
DEFAULT_RATE_LIMIT = (100, 60.0)
DEFAULT_CREDITS = 10_000
STATE_FILE_NAME = "sixsense.json"
STATE_VERSION = 1

MSG_UNAUTHORIZED = (
    "Invalid API token. Please make sure you have sent a valid token in the Authorization header."
)
MSG_TOO_MANY_REQUESTS = "Too Many Requests"
MSG_BLANK_EMAIL = "Email ID is mandatory and can’t be blank"
MSG_INVALID_EMAIL = "Invalid email ID. Please make sure you have sent a valid email address in email field."
MSG_NO_DATA = "No data found. Please contact 6sense support, if you think this is an unexpected error."
MSG_QUOTA_EXHAUSTED = (
    "Quota Exhausted. Your allocated Quota is exhausted, please upgrade/top-up your API limit by "
    "reaching out to your CSM."
)

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


class SixSenseEmulator:
    """6sense's scribe host: auth, rate limit, credit ledger and the seeded companies."""

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
        self.latency_seconds = float(extra.get("latency_seconds", 0) or 0)
        self.api_token = SANDBOX_API_TOKEN
        # Wall clock for the ledger (persisted, so comparable across processes); replaceable.
        self.clock = time.time

        self.companies: dict[str, SeedCompany] = seed_companies()

        self._lock = threading.Lock()
        self._windows: dict[str, SlidingWindow] = {}
        self.credit_balances: dict[str, int] = {
            ENRICHMENT_POOL: int(extra.get("enrichment_credits", DEFAULT_CREDITS)),
            COMPANY_IDENTIFICATION_POOL: int(extra.get("company_identification_credits", DEFAULT_CREDITS)),
        }
        self.credits_spent: dict[str, int] = {pool: 0 for pool in CREDIT_POOLS}
        self.charges: list[dict[str, Any]] = []
        self._last_charge: dict[tuple[str, str], float] = {}

        path = Path(options.state_dir) / STATE_FILE_NAME if options.state_dir is not None else None
        self._state = JsonStateFile(path)
        self._load_ledger()

        self.app = FastAPI(title="6sense sandbox (scribe)", docs_url=None, redoc_url=None, openapi_url=None)
        self.log = RequestLog()
        self.faults = FaultQueue()
        self._install_error_handler()
        self._add_routes()
        instrument(self.app, self.log, self.faults)

    # --- the Emulator protocol -------------------------------------------------------------------

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {"providers": {"sixsense": {"scribe_url": base_url, "api_token": SANDBOX_API_TOKEN}}}

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
        """Charge 1 credit for `key` unless charged within the no-recharge period.

        Returns True if a credit was taken, False if the record was free (inside the period);
        raises SixSenseError(402) if a charge is needed and the pool is empty.
        """
        with self._lock:
            now = self.clock()
            last = self._last_charge.get((pool, key))
            if last is not None and now - last < self.no_recharge_seconds:
                return False
            if self.credit_balances.get(pool, 0) <= 0:
                raise SixSenseError(402, MSG_QUOTA_EXHAUSTED)
            self.credit_balances[pool] -= 1
            self.credits_spent[pool] = self.credits_spent.get(pool, 0) + 1
            self.charges.append({"pool": pool, "key": key, "at": now})
            self._last_charge[(pool, key)] = now
            self._save_ledger()
            return True

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

    def _save_ledger(self) -> None:
        """Caller holds the lock."""
        self._state.save(
            {
                "version": STATE_VERSION,
                "balances": dict(self.credit_balances),
                "charges": [dict(c) for c in self.charges],
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

    def _install_error_handler(self) -> None:
        @self.app.exception_handler(SixSenseError)
        async def _sixsense_error(request: Request, exc: SixSenseError) -> JSONResponse:
            return error_response(exc.status_code, exc.message, exc.headers)

    # --- routes ----------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        app = self.app

        @app.post("/v2/people/full")
        async def people_full(request: Request, token: str = Depends(self.admit)) -> JSONResponse:
            await self.delay()
            return JSONResponse(self.lead_scoring_and_firmographics(await self.form_field(request, "email")))

    def lead_scoring_and_firmographics(self, raw_email: str | None) -> dict[str, Any]:
        """The body of a 200 for `POST /v2/people/full`, or SixSenseError."""
        if raw_email is None or not raw_email.strip():
            raise SixSenseError(400, MSG_BLANK_EMAIL)
        email = normalise_email(raw_email)
        if is_malformed_email(email):
            raise SixSenseError(404, MSG_INVALID_EMAIL)
        domain = email.split("@", 1)[1]
        company = self.lookup_company(domain)
        if company is None:
            raise SixSenseError(404, MSG_NO_DATA)
        if company.blank_answer:
            return blank_answer_body()
        self.charge(ENRICHMENT_POOL, email)
        return {
            "company": dict(company.firmographics),
            "scores": [product_scores(company.domain, email)],
            "segments": segments_body(company.segments),
        }


@register_emulator("sixsense")
def create_sixsense_emulator(options: EmulatorOptions) -> SixSenseEmulator:
    return SixSenseEmulator(options)
