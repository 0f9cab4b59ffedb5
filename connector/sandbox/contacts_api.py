"""Contacts/companies search API emulator (contacts-companies-api.txt): the data/meta/errors envelope.

The doc names the fields, the envelope, Bearer auth and the error items, but gives no base URL,
paths, methods, limits, credit rules or record shapes. Every one of those is our choice, listed
below; a connector provider should follow this docstring.

Routes (the server root is ``base_url``)
-----------------------------------------
* ``GET /v1/companies/search``: companies. Filters: ``added_after``, ``added_before``,
  ``locations``, ``functions``, ``industries``, ``tlds``, ``technologies``; ``page``, ``per_page``.
* ``GET /v1/contacts/search``: contacts. Filters: the company ones above plus ``job_titles``,
  ``departments``, ``seniorities``, ``has_personal_emails``, ``has_linkedin_profile``,
  ``is_decision_maker``; ``page``, ``per_page``.

Options: ``state_dir`` (None: memory only; else ``state_dir/"contacts_api.json"`` holds the credit
balance and credits spent, saved after each charge or ``set_credits``), ``time_scale`` (divides the
rate-limit window), ``extra``: ``rate_limit`` ([requests, per_seconds], default [60, 60]),
``credits`` (default 10000, the starting balance), ``latency_seconds`` (default 0).

Public: ``SANDBOX_API_TOKEN``, ``ContactsApiEmulator`` (``vendor``, ``tls``, ``app``, ``log``,
``faults``, ``credits_spent``, ``credits_remaining``, ``charges`` [{"endpoint", "contact_ids",
"at"}], ``companies``, ``contacts``, ``set_credits(n)``, ``settings_overrides``),
``create_contacts_api_emulator``.

Choices
-------
1. Parameters are URL query parameters. An array is the key repeated (``tlds=a.com&tlds=b.com``);
   ``tlds[]=a.com`` is accepted too. Values are never split on commas. Booleans are ``true`` /
   ``false`` (also ``1`` / ``0``, any case). Timestamps are ISO 8601 (``2021-01-01T00:00:00Z``,
   an offset, or a date meaning midnight UTC); one without an offset is read as UTC. A scalar
   given twice, an empty array value, an unknown parameter, or a contacts-only filter sent to the
   companies endpoint is an ``invalid_input`` error (strict, so a client's typo is not silently
   ignored).
2. Envelope, always all three keys: success ``{"data": [...], "meta": {"page", "per_page",
   "total", "total_pages", "credits_charged", "credits_remaining"}, "errors": []}``; failure
   ``{"data": null, "meta": {}, "errors": [{"id", "code", "details"}, ...]}`` with the HTTP status
   of the first error. All input errors of a request are reported together, one item each.
   Error ids: ``invalid_input`` 400, ``unauthorized`` 401, ``insufficient_credits`` 402,
   ``not_found`` 404 and ``method_not_allowed`` 405 (any unknown path/method, also enveloped),
   ``rate_limited`` 429.
3. Auth: ``Authorization: Bearer <token>``; the scheme word case-insensitive, the token exact.
   Missing, other scheme or wrong token -> 401 ``unauthorized`` with ``WWW-Authenticate: Bearer``.
   401s count against no limit.
4. Rate limit: 60 requests per 60 s (divided by time_scale) per token, a sliding window over
   accepted requests; every authenticated request counts (400s included), refused ones do not.
   Refusal: 429 ``rate_limited``, no ``Retry-After`` header (clients must back off on their own).
5. Order: auth, rate limit, latency, input validation, search, credits.
6. Paging: ``page`` >= 1 (default 1), ``per_page`` 1..100 (default 25); out of range or not an
   integer -> ``invalid_input`` (e.g. ``per_page`` 101). A page past the end is ``[]``;
   ``total_pages`` is ``ceil(total / per_page)``. Results come in seed order, stable across pages.
7. Credits: contacts cost 1 credit per contact returned, every time it is returned (repeats and
   re-reads of a page included); an empty page costs nothing; companies are free. When the page
   needs more credits than remain -> 402 ``insufficient_credits``, nothing charged, nothing
   returned (no partial page). ``meta.credits_charged`` / ``credits_remaining`` report it.
8. Matching (AND across filters, OR within one array):
   * ``job_titles``: case-insensitive substring of the contact's ``job_title`` (the doc's own rule).
   * ``departments``, ``seniorities``: case-insensitive whole-value match ("exact" in the doc is
     read as whole value, not case-sensitive). Vocabularies: departments ``executive``,
     ``engineering``, ``finance``, ``sales``, ``marketing``, ``operations``, ``procurement``,
     ``information_technology``, ``human_resources``, ``other``; seniorities ``c_suite``, ``vp``,
     ``director``, ``manager``, ``senior``, ``entry``.
   * ``has_personal_emails``, ``has_linkedin_profile``, ``is_decision_maker``: ``true`` keeps only
     such contacts; ``false`` filters nothing (the doc only defines true).
   * ``added_after`` / ``added_before``: the company's ``created_at``, inclusive.
   * ``locations``: ``city:<city>||<state>||<country>``, ``state:<state>||<country>``,
     ``country:<country>``; an empty part matches anything (``city:London||||United Kingdom``);
     case- and accent-insensitive whole-value match against the company's location. Another
     prefix, a missing first part or too many parts -> ``invalid_input``.
   * ``functions``: the company's ``functions`` = the departments its contacts work in.
   * ``industries``: case-insensitive whole-value match on the company's industry.
   * ``tlds``: normalised (scheme, ``www.``, path, leading dot dropped, lower-cased); a company
     matches when its domain equals the value or ends with "." + value, so both
     ``tlds=acme-robotics.com`` and ``tlds=com`` work (the doc calls it a "top-level domain
     filter"). A suffix such as ``com`` or ``.com`` therefore answers with every seeded .com
     company, 6sense.com first: the answer a client must not take for the company it asked about.
   * ``technologies``: any overlap with the company's technologies, case-insensitive.
9. Records (the doc shows none). Company: ``id`` ("cmp_" + 12 hex), ``name``, ``domain``,
   ``website``, ``industry``, ``employee_count``, ``annual_revenue``, ``location`` {``city``,
   ``state``, ``country``}, ``functions``, ``technologies``, ``linkedin_url``, ``created_at``
   (``YYYY-MM-DDTHH:MM:SSZ``). Contact: ``id`` ("con_" + 12 hex), ``first_name``, ``last_name``,
   ``full_name``, ``job_title``, ``department``, ``seniority``, ``is_decision_maker``, ``email``,
   ``personal_emails`` (list), ``linkedin_url`` (null when none), ``location``, ``company``
   {``id``, ``name``, ``domain``}.
10. Data: companies are ``seed.seed_companies()`` minus the blank-answer ones (blankco, personal
    mail domains), numbers coerced to integers. Contacts: ``seed.NEW_LEADS`` with a valid email at
    such a company (email stripped and lower-cased; the first of a duplicate wins; a blank title
    made up), then three decision makers per domain made up deterministically (a CEO and two of
    CFO/CTO/VP Sales/VP Marketing/Director of Procurement/Head of IT/VP People). Seniority and
    department follow the title; decision maker = c_suite, vp or director. Personal emails,
    LinkedIn URLs, technologies and ``created_at`` (2019-01-01 plus up to ~5 years) come from
    ``stable_int``, not from ``options.now``. A contact's location is the company's unless the
    seed's country differs (then that country's capital).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import math
import threading
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.limits import SlidingWindow
from connector.sandbox.seed import NEW_LEADS, SeedCompany, seed_companies, stable_int
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

SANDBOX_API_TOKEN = "cak_live_7Hq2mV9xR4tL8nB3wZ6pK1sD5fJ0gY"

COMPANIES_PATH = "/v1/companies/search"
CONTACTS_PATH = "/v1/contacts/search"
STATE_FILE_NAME = "contacts_api.json"
STATE_VERSION = 1
DEFAULT_RATE_LIMIT = (60, 60.0)
DEFAULT_CREDITS = 10_000
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100

COMPANY_ARRAYS = ("locations", "functions", "industries", "tlds", "technologies")
COMPANY_TIMES = ("added_after", "added_before")
CONTACT_ARRAYS = ("job_titles", "departments", "seniorities")
CONTACT_BOOLEANS = ("has_personal_emails", "has_linkedin_profile", "is_decision_maker")
PAGING = ("page", "per_page")
COMPANY_PARAMS = COMPANY_ARRAYS + COMPANY_TIMES + PAGING
CONTACT_PARAMS = COMPANY_PARAMS + CONTACT_ARRAYS + CONTACT_BOOLEANS
ARRAY_PARAMS = COMPANY_ARRAYS + CONTACT_ARRAYS

DEPARTMENTS = (
    "executive", "engineering", "finance", "sales", "marketing", "operations", "procurement",
    "information_technology", "human_resources", "other",
)
SENIORITIES = ("c_suite", "vp", "director", "manager", "senior", "entry")
DECISION_MAKER_SENIORITIES = frozenset({"c_suite", "vp", "director"})

_TECH_POOL = [
    "Salesforce", "HubSpot", "Marketo", "Slack", "Zendesk", "Google Ads", "Amazon Web Services",
    "Microsoft Azure", "Snowflake", "Workday", "SAP", "Jira",
]
_TITLE_POOL = [
    "Software Engineer", "Marketing Manager", "Operations Analyst", "Account Executive",
    "Procurement Specialist", "Finance Manager", "Director of Operations", "Senior Data Engineer",
]
_DECISION_MAKER_ROLES = [
    "Chief Financial Officer", "Chief Technology Officer", "VP Sales", "VP Marketing",
    "Director of Procurement", "Head of IT", "VP People",
]
_FIRST_NAMES = [
    "Ada", "Bilal", "Chiara", "Darius", "Elena", "Farid", "Greta", "Hamza", "Isla", "Jonas",
    "Keiko", "Leon", "Mira", "Nils", "Odile", "Pavel", "Rania", "Soren", "Talia", "Viktor",
]
_LAST_NAMES = [
    "Andersen", "Bauer", "Cohen", "Duarte", "Engel", "Fontaine", "Grant", "Horvath", "Iqbal",
    "Jovanovic", "Klein", "Laurent", "Moreau", "Novak", "Ortega", "Petersen", "Ricci", "Schmidt",
    "Torres", "Weber",
]
_COUNTRIES = {
    "US": ("United States", "Washington", "District of Columbia"),
    "CA": ("Canada", "Ottawa", "Ontario"),
    "GB": ("United Kingdom", "London", "England"),
    "FR": ("France", "Paris", "Île-de-France"),
    "DE": ("Germany", "Berlin", "Berlin"),
    "ES": ("Spain", "Madrid", "Community of Madrid"),
}
# (keywords, department); first match wins; keywords match whole words of the lower-cased title.
_DEPARTMENT_KEYWORDS: list[tuple[tuple[str, ...], str]] = [
    (("chief executive", "ceo", "founder", "president"), "executive"),
    (("procurement", "purchasing"), "procurement"),
    (("cto", "chief technology", "engineer", "engineering", "developer", "software"), "engineering"),
    (("cfo", "chief financial", "finance", "financial", "controller"), "finance"),
    (("it", "information", "data", "security"), "information_technology"),
    (("people", "hr", "human", "talent", "recruiter"), "human_resources"),
    (("marketing", "cmo", "brand"), "marketing"),
    (("sales", "account", "business development"), "sales"),
    (("operations", "coo", "supply"), "operations"),
]
CREATED_EPOCH = datetime(2019, 1, 1, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------------


def _words(text: str) -> str:
    return " " + " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split()) + " "


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split()).casefold()


def ascii_slug(text: str, joiner: str = "-") -> str:
    folded = fold(text).replace("'", "")
    return joiner.join("".join(ch if ch.isalnum() else " " for ch in folded).split())


def short_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("|".join(("contacts_api",) + parts).encode()).hexdigest()[:12]


def seniority_of(title: str) -> str:
    words = _words(title)
    if any(f" {w} " in words for w in ("chief", "ceo", "cto", "cfo", "coo", "cmo", "founder", "president")) \
            and " vice " not in words:
        return "c_suite"
    if any(f" {w} " in words for w in ("vp", "vice", "svp", "evp")):
        return "vp"
    if any(f" {w} " in words for w in ("director", "head")):
        return "director"
    if " manager " in words:
        return "manager"
    if any(f" {w} " in words for w in ("senior", "lead", "principal")):
        return "senior"
    return "entry"


def department_of(title: str) -> str:
    words = _words(title)
    for keywords, department in _DEPARTMENT_KEYWORDS:
        if any(f" {k} " in words for k in keywords):
            return department
    return "other"


def normalise_tld(raw: str) -> str:
    value = raw.strip().lower()
    for prefix in ("https://", "http://"):
        value = value.removeprefix(prefix)
    value = value.split("/", 1)[0]
    value = value.removeprefix("www.")
    return value.strip(".")


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(raw: str) -> datetime | None:
    value = raw.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "zZ" else value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_location(raw: str) -> tuple[str, list[str]] | None:
    """`city:San Francisco||California||United States` -> ("city", [city, state, country])."""
    kind, sep, rest = raw.partition(":")
    kind = kind.strip().lower()
    sizes = {"city": 3, "state": 2, "country": 1}
    if not sep or kind not in sizes:
        return None
    parts = [p.strip() for p in rest.split("||")]
    if len(parts) > sizes[kind] or not parts[0]:
        return None
    return kind, parts + [""] * (sizes[kind] - len(parts))


def location_matches(location: dict[str, str], spec: tuple[str, list[str]]) -> bool:
    kind, parts = spec
    fields = {"city": ("city", "state", "country"), "state": ("state", "country"), "country": ("country",)}[kind]
    return all(not want or fold(want) == fold(location[field]) for field, want in zip(fields, parts))


def envelope_error(status: int, items: list[tuple[str, str]], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"data": None, "meta": {}, "errors": [{"id": i, "code": status, "details": d} for i, d in items]},
        status_code=status,
        headers=headers,
    )


class _Unauthorized(Exception):
    """Raised by the admission check; answered 401 with WWW-Authenticate."""


class ApiError(Exception):
    def __init__(self, status: int, items: list[tuple[str, str]]) -> None:
        super().__init__(items[0][1] if items else "")
        self.status = status
        self.items = items


def _parse_rate_limit(value: Any) -> tuple[int, float]:
    if value is None:
        return DEFAULT_RATE_LIMIT
    if isinstance(value, dict):
        return int(value["requests"]), float(value["per_seconds"])
    requests, per_seconds = value
    return int(requests), float(per_seconds)


# --- data -------------------------------------------------------------------------------------------------


def build_world() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    companies: list[dict[str, Any]] = []
    by_domain: dict[str, dict[str, Any]] = {}
    for seed in seed_companies().values():
        if seed.blank_answer or not seed.firmographics:
            continue
        record = _company(seed)
        companies.append(record)
        by_domain[seed.domain] = record

    contacts: list[dict[str, Any]] = []
    emails: set[str] = set()

    def add(company: dict[str, Any], first: str, last: str, email: str, title: str, iso: str) -> None:
        if email in emails:
            return
        emails.add(email)
        country, capital, capital_state = _COUNTRIES.get(iso, _COUNTRIES["US"])
        if country == company["location"]["country"]:
            location = dict(company["location"])
        else:
            location = {"city": capital, "state": capital_state, "country": country}
        seniority = seniority_of(title)
        personal = []
        if stable_int(f"contacts_api|personal|{email}", 0, 2) == 0:
            number = stable_int(f"contacts_api|personal-n|{email}", 1, 99)
            personal = [f"{ascii_slug(first, '')}.{ascii_slug(last, '')}{number}@gmail.com"]
        linkedin = None
        if stable_int(f"contacts_api|linkedin|{email}", 0, 3) != 0:
            linkedin = f"https://www.linkedin.com/in/{ascii_slug(first + ' ' + last)}-{stable_int(f'contacts_api|li|{email}', 1000, 9999)}"
        contacts.append(
            {
                "id": short_id("con_", email),
                "first_name": first,
                "last_name": last,
                "full_name": f"{first} {last}",
                "job_title": title,
                "department": department_of(title),
                "seniority": seniority,
                "is_decision_maker": seniority in DECISION_MAKER_SENIORITIES,
                "email": email,
                "personal_emails": personal,
                "linkedin_url": linkedin,
                "location": location,
                "company": {"id": company["id"], "name": company["name"], "domain": company["domain"]},
            }
        )

    for lead in NEW_LEADS:
        email = lead.email.strip().lower()
        if email.count("@") != 1 or not email.split("@")[0]:
            continue
        company = by_domain.get(email.split("@")[1])
        if company is None:
            continue
        title = lead.title or _TITLE_POOL[stable_int(f"contacts_api|title|{email}", 0, len(_TITLE_POOL) - 1)]
        add(company, lead.first_name, lead.last_name, email, title, lead.country)

    for company in companies:
        domain = company["domain"]
        start = stable_int(f"contacts_api|roles|{domain}", 0, len(_DECISION_MAKER_ROLES) - 1)
        step = stable_int(f"contacts_api|step|{domain}", 1, len(_DECISION_MAKER_ROLES) - 1)
        roles = ["Chief Executive Officer", _DECISION_MAKER_ROLES[start],
                 _DECISION_MAKER_ROLES[(start + step) % len(_DECISION_MAKER_ROLES)]]
        iso = _country_iso(company["location"]["country"])
        for role in roles:
            first = _FIRST_NAMES[stable_int(f"contacts_api|first|{domain}|{role}", 0, len(_FIRST_NAMES) - 1)]
            last = _LAST_NAMES[stable_int(f"contacts_api|last|{domain}|{role}", 0, len(_LAST_NAMES) - 1)]
            add(company, first, last, f"{first.lower()}.{last.lower()}@{domain}", role, iso)

    for company in companies:
        company["functions"] = sorted(
            {c["department"] for c in contacts if c["company"]["id"] == company["id"]}
        )
    return companies, contacts


def _country_iso(country: str) -> str:
    for iso, (name, _, _) in _COUNTRIES.items():
        if name == country:
            return iso
    return "US"


def _company(seed: SeedCompany) -> dict[str, Any]:
    f = seed.firmographics
    domain = seed.domain
    count = stable_int(f"contacts_api|techcount|{domain}", 2, 4)
    start = stable_int(f"contacts_api|techstart|{domain}", 0, len(_TECH_POOL) - 1)
    technologies = [_TECH_POOL[(start + 5 * i) % len(_TECH_POOL)] for i in range(count)]
    created = CREATED_EPOCH + timedelta(
        days=stable_int(f"contacts_api|created|{domain}", 0, 1800),
        seconds=stable_int(f"contacts_api|created-s|{domain}", 0, 86399),
    )
    return {
        "id": short_id("cmp_", domain),
        "name": f["name"],
        "domain": domain,
        "website": f"https://www.{domain}",
        "industry": f["industry"],
        "employee_count": int(f["employeeCount"]),
        "annual_revenue": int(f["annualRevenue"]),
        "location": {"city": f["city"], "state": f["state"], "country": f["country"]},
        "functions": [],
        "technologies": technologies,
        "linkedin_url": f"https://www.linkedin.com/company/{ascii_slug(f['name'])[:40]}",
        "created_at": iso_z(created),
    }


# --- the emulator ---------------------------------------------------------------------------------------


class ContactsApiEmulator:
    """Bearer auth, the envelope, filters, paging, a rate limit and a contact-credit ledger."""

    vendor = "contacts_api"
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
        self.latency_seconds = float(extra.get("latency_seconds", 0) or 0)
        self.api_token = SANDBOX_API_TOKEN

        self.companies, self.contacts = build_world()
        self._company_by_id = {c["id"]: c for c in self.companies}

        self._lock = threading.Lock()
        self._windows: dict[str, SlidingWindow] = {}
        self.credits_remaining = int(extra.get("credits", DEFAULT_CREDITS))
        self.credits_spent = 0
        self.charges: list[dict[str, Any]] = []

        path = Path(options.state_dir) / STATE_FILE_NAME if options.state_dir is not None else None
        self._state = JsonStateFile(path)
        document = self._state.load()
        if document:
            self.credits_remaining = int(document["credits_remaining"])
            self.credits_spent = int(document["credits_spent"])

        self.app = FastAPI(title="Contacts API sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        self.log = RequestLog()
        self.faults = FaultQueue()
        self._install_error_handlers()
        instrument(self.app, self.log, self.faults)
        self._add_routes()

    # --- the Emulator protocol ------------------------------------------------------------------------

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {"providers": {"contacts_api": {"base_url": base_url, "api_token": SANDBOX_API_TOKEN}}}

    # --- credits ------------------------------------------------------------------------------------------

    def set_credits(self, credits: int) -> None:
        with self._lock:
            self.credits_remaining = int(credits)
            self._save()

    def _save(self) -> None:
        """Caller holds the lock."""
        self._state.save(
            {"version": STATE_VERSION, "credits_remaining": self.credits_remaining, "credits_spent": self.credits_spent}
        )

    def _charge(self, contact_ids: list[str]) -> tuple[int, int]:
        with self._lock:
            cost = len(contact_ids)
            if cost > self.credits_remaining:
                raise ApiError(
                    402,
                    [("insufficient_credits",
                      (f"This page needs {cost} credits (1 per contact) but {self.credits_remaining} remain. "
                       "Request fewer contacts with per_page or add credits."))],
                )
            if cost:
                self.credits_remaining -= cost
                self.credits_spent += cost
                self.charges.append({"endpoint": "contacts", "contact_ids": list(contact_ids), "at": time.time()})
                self._save()
            return cost, self.credits_remaining

    # --- request handling --------------------------------------------------------------------------------

    def _install_error_handlers(self) -> None:
        @self.app.exception_handler(ApiError)
        async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
            return envelope_error(exc.status, exc.items)

        @self.app.exception_handler(_Unauthorized)
        async def _unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
            return envelope_error(
                401,
                [("unauthorized",
                  ("Missing or invalid API key. Send it as 'Authorization: Bearer YOUR_API_KEY'; "
                   "tokens are managed in user settings under API tokens."))],
                headers={"WWW-Authenticate": "Bearer"},
            )

        @self.app.exception_handler(StarletteHTTPException)
        async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
            error_id = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            details = {
                404: f"No such endpoint: {request.method} {request.url.path}.",
                405: f"{request.method} is not allowed on {request.url.path}; use GET.",
            }.get(exc.status_code, str(exc.detail))
            return envelope_error(exc.status_code, [(error_id, details)], headers=getattr(exc, "headers", None))

    def _window_for(self, token: str) -> SlidingWindow:
        with self._lock:
            window = self._windows.get(token)
            if window is None:
                window = SlidingWindow(self.rate_limit_requests, self.rate_limit_window_seconds)
                self._windows[token] = window
            return window

    async def _admit(self, request: Request) -> None:
        parts = request.headers.get("authorization", "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer" or parts[1] != self.api_token:
            raise _Unauthorized()
        if self._window_for(parts[1]).try_accept() is not None:
            raise ApiError(
                429,
                [("rate_limited",
                  (f"Rate limit of {self.rate_limit_requests} requests per "
                   f"{self.rate_limit_window_seconds:g} seconds exceeded. Slow down and retry later."))],
            )
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)

    def _add_routes(self) -> None:
        app = self.app

        @app.get(COMPANIES_PATH)
        async def companies_search(request: Request) -> JSONResponse:
            await self._admit(request)
            query = parse_query(request, COMPANY_PARAMS, CONTACT_PARAMS)
            rows = [c for c in self.companies if company_matches(c, query)]
            page_rows, meta = paginate(rows, query)
            meta.update(credits_charged=0, credits_remaining=self.credits_remaining)
            return JSONResponse({"data": page_rows, "meta": meta, "errors": []})

        @app.get(CONTACTS_PATH)
        async def contacts_search(request: Request) -> JSONResponse:
            await self._admit(request)
            query = parse_query(request, CONTACT_PARAMS, CONTACT_PARAMS)
            rows = [
                c for c in self.contacts
                if contact_matches(c, query) and company_matches(self._company_by_id[c["company"]["id"]], query)
            ]
            page_rows, meta = paginate(rows, query)
            charged, remaining = self._charge([c["id"] for c in page_rows])
            meta.update(credits_charged=charged, credits_remaining=remaining)
            return JSONResponse({"data": page_rows, "meta": meta, "errors": []})


# --- query parsing and matching ------------------------------------------------------------------------


def parse_query(request: Request, allowed: tuple[str, ...], known: tuple[str, ...]) -> dict[str, Any]:
    """The validated query, or ApiError(400) listing every problem."""
    errors: list[tuple[str, str]] = []
    raw: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        name = key.removesuffix("[]")
        raw.setdefault(name, []).append(value)

    for name in raw:
        if name not in allowed:
            if name in known:
                errors.append(("invalid_input", f"'{name}' is a contacts filter; companies do not accept it."))
            else:
                errors.append(("invalid_input", f"Unknown parameter '{name}'. Accepted: {', '.join(allowed)}."))

    query: dict[str, Any] = {}
    for name in ARRAY_PARAMS:
        if name not in allowed or name not in raw:
            continue
        values = raw[name]
        if any(not v.strip() for v in values):
            errors.append(("invalid_input", f"'{name}' must not contain empty values."))
            continue
        if name == "locations":
            specs = []
            for value in values:
                spec = parse_location(value)
                if spec is None:
                    errors.append(
                        ("invalid_input",
                         (f"Invalid location '{value}'. Use city:<city>||<state>||<country>, "
                          "state:<state>||<country> or country:<country>."))
                    )
                else:
                    specs.append(spec)
            query[name] = specs
        else:
            query[name] = [v.strip() for v in values]

    def single(name: str) -> str | None:
        values = raw.get(name)
        if values is None or name not in allowed:
            return None
        if len(values) > 1:
            errors.append(("invalid_input", f"'{name}' must be given once."))
            return None
        return values[0]

    for name in COMPANY_TIMES:
        value = single(name)
        if value is None:
            continue
        moment = parse_timestamp(value)
        if moment is None:
            errors.append(("invalid_input", f"'{name}' must be a UTC ISO 8601 timestamp, e.g. 2021-01-01T00:00:00Z."))
        else:
            query[name] = moment

    for name in CONTACT_BOOLEANS:
        value = single(name)
        if value is None:
            continue
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            query[name] = True
        elif lowered in ("false", "0"):
            query[name] = False
        else:
            errors.append(("invalid_input", f"'{name}' must be true or false."))

    for name, default, low, high in (("page", 1, 1, None), ("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)):
        value = single(name)
        query[name] = default
        if value is None:
            continue
        try:
            number = int(value.strip())
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            errors.append(("invalid_input", f"'{name}' must be an integer {bound}; got '{value}'."))
        else:
            query[name] = number

    if errors:
        raise ApiError(400, errors)
    return query


def company_matches(company: dict[str, Any], query: dict[str, Any]) -> bool:
    created = parse_timestamp(company["created_at"])
    assert created is not None
    if "added_after" in query and created < query["added_after"]:
        return False
    if "added_before" in query and created > query["added_before"]:
        return False
    if "locations" in query and not any(location_matches(company["location"], s) for s in query["locations"]):
        return False
    if "functions" in query:
        wanted = {v.lower() for v in query["functions"]}
        if not wanted & {f.lower() for f in company["functions"]}:
            return False
    if "industries" in query and fold(company["industry"]) not in {fold(v) for v in query["industries"]}:
        return False
    if "tlds" in query:
        domain = company["domain"]
        if not any(domain == t or domain.endswith("." + t) for t in (normalise_tld(v) for v in query["tlds"]) if t):
            return False
    if "technologies" in query:
        wanted = {v.lower() for v in query["technologies"]}
        if not wanted & {t.lower() for t in company["technologies"]}:
            return False
    return True


def contact_matches(contact: dict[str, Any], query: dict[str, Any]) -> bool:
    if "job_titles" in query:
        title = contact["job_title"].lower()
        if not any(v.lower() in title for v in query["job_titles"]):
            return False
    if "departments" in query and contact["department"] not in {v.lower() for v in query["departments"]}:
        return False
    if "seniorities" in query and contact["seniority"] not in {v.lower() for v in query["seniorities"]}:
        return False
    if query.get("has_personal_emails") and not contact["personal_emails"]:
        return False
    if query.get("has_linkedin_profile") and not contact["linkedin_url"]:
        return False
    return not (query.get("is_decision_maker") and not contact["is_decision_maker"])


def paginate(rows: list[dict[str, Any]], query: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    page, per_page = query["page"], query["per_page"]
    start = (page - 1) * per_page
    page_rows = copy.deepcopy(rows[start:start + per_page])
    meta = {
        "page": page,
        "per_page": per_page,
        "total": len(rows),
        "total_pages": math.ceil(len(rows) / per_page),
    }
    return page_rows, meta


@register_emulator("contacts_api")
def create_contacts_api_emulator(options: EmulatorOptions) -> ContactsApiEmulator:
    return ContactsApiEmulator(options)
