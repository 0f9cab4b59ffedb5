"""Contacts/Companies search API (contacts-companies-api.txt): a company by domain, and its
decision makers.

The doc gives the fields, the data/meta/errors envelope, Bearer auth and the error items, but no
base URL, paths, methods, limits, credit rules or record shapes. We follow the choices the sandbox
emulator documents (connector/sandbox/contacts_api.py), as the only written contract we have:

- Paths: GET {base}/v1/companies/search and GET {base}/v1/contacts/search; filters are query
  parameters, an array is the key repeated (`tlds=a.com&tlds=b.com`), booleans `true`/`false`.
- Auth: `Authorization: Bearer <providers.contacts_api.api_token>`.
- Limits: 60 requests per 60 s per token, no Retry-After on a 429: the token pauses for the
  window. `per_page` is at most 100.
- Credits: companies are free; contacts cost one credit per contact returned, every time.

Both providers share `providers.contacts_api` (settings_section="contacts_api") and one limiter key.

Lookup key: the lead's company domain, a registrable domain (connector/domains.py: its
website's, else its email's unless that is free mail). A lead without one is never looked up: the
doc calls `tlds` a "top-level domain filter" and the API matches it as a suffix, so `tlds=com`
would answer with every .com company and the first of them is someone else's.

Which company an answer is about: the doc shows no record. We read a company's `domain` (its
`website` when it has no `domain`) and a contact's `company.domain` (its `email`'s domain when that
is missing), as the emulator serves them, and compare registrable domains with the one asked.

- "contacts_company": the company at the lead's domain through `tlds=<domain>`, `per_page=10`.
  The record whose `domain` equals the asked one wins, else the first at the same registrable
  domain (a sub-domain record such as `eu.acme.com`); an answer with none at that domain is
  NoMatch naming the domains that came back, never "the first row". Payload
  `{"company": {...}, "matches": <total>}` (`contacts_company.company.industry`,
  `.employee_count`, `.annual_revenue`, `.location.city`). Free (credit_pool None); cached
  `freshness_days`. Empty `data`: NoMatch.
- "contacts_people": the decision makers at the lead's company: `tlds=<domain>`,
  `is_decision_maker=true` (the API marks c_suite, vp and director), `departments=` each of
  `decision_maker_departments` when set, `per_page=decision_makers_per_company` (default 3, at
  most 100): one page, the API's own order; contacts at another registrable domain are dropped
  (none left: NoMatch; the vendor has charged them all the same, and the ledger, which counts
  only matched answers, does not see that charge). Keyed by the domain, so every lead at one company
  shares one answer (one paid page per company per `freshness_days`). Payload `{"contacts": [...],
  "decision_makers": ["Name (Title)", ...], "total", "credits_charged"}`
  (`contacts_people.decision_makers` with `join`, `contacts_people.contacts[seniority=c_suite].full_name`).
  Credit pool "contacts_api:credits", every fetch charged (charge_window 0), one credit per
  CONTACT returned: the ledger counts the answer's `credits_charged` (the vendor's meta figure; the
  number of contacts when it is absent), and budgets reserve `per_page` credits before the call.

Errors: every failure carries the `errors` array; each item's `id`, `code` and `details` go into
the raised error's message (and so into the ledger): "contacts_api: invalid_input (400): ...".
400 RejectedRequest; 401/403 ConfigError naming providers.contacts_api.api_token; 402
insufficient_credits QuotaExhausted(reason="credits_exhausted"); 404/405 ConfigError (a wrong
base_url: search never answers 404 for a no-match); 429 RateLimited; 5xx and non-JSON answers
TransientError.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import httpx

from connector.domains import company_domain, registrable_domain, same_registrable_domain
from connector.errors import (
    ConfigError,
    ConnectorError,
    NoMatch,
    QuotaExhausted,
    RateLimited,
    RejectedRequest,
    TransientError,
)
from connector.http import RetryPolicy, build_httpx_client, credential_tag, metered_http, retry_after_seconds
from connector.limiter import LimitSpec
from connector.models import LeadIdentity
from connector.providers.base import ChargedPerAnswer
from connector.registry import register_provider
from connector.settings import ContactsApiSettings, required_secret
from connector.sources.base import VendorContext

TOKEN_SETTING = "providers.contacts_api.api_token"
CREDIT_POOL = "contacts_api:credits"
COMPANIES_PATH = "/v1/companies/search"
CONTACTS_PATH = "/v1/contacts/search"
MAX_PER_PAGE = 100
NO_DOMAIN = "the lead has no company domain (no registrable website domain, no email domain but free mail)"


def company_record_domain(row: dict[str, Any]) -> str:
    return str(row.get("domain") or row.get("website") or "")


def contact_company_domain(contact: dict[str, Any]) -> str:
    company = contact.get("company")
    domain = company.get("domain") if isinstance(company, dict) else None
    if domain:
        return str(domain)
    email = str(contact.get("email") or "")
    return email.rpartition("@")[2] if "@" in email else ""


def pick_company(rows: list[dict[str, Any]], domain: str) -> dict[str, Any] | None:
    """The record at exactly `domain`, else the first at its registrable domain, else None."""
    for row in rows:
        if company_record_domain(row).strip().lower() == domain:
            return row
    return next((r for r in rows if same_registrable_domain(domain, company_record_domain(r))), None)


def answered_domains(domains: Any) -> str:
    """A short, readable list of the (registrable) domains an answer was about."""
    seen: list[str] = []
    for raw in domains:
        name = registrable_domain(raw) or (str(raw).strip()[:60] or "no domain")
        if name not in seen:
            seen.append(name)
    shown = ", ".join(seen[:5])
    return shown + (f" and {len(seen) - 5} more" if len(seen) > 5 else "")


def error_items(response: httpx.Response) -> str:
    """The envelope's errors as "id (code): details; ...", or the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return str(body)[:200]
    parts = []
    for item in errors:
        if isinstance(item, dict):
            parts.append(f"{item.get('id', 'error')} ({item.get('code', response.status_code)}): {item.get('details', '')}")
        else:
            parts.append(str(item))
    return "; ".join(parts)


def classify_response(response: httpx.Response, *, time_scale: float) -> ConnectorError | None:
    status = response.status_code
    if status == 200:
        try:
            body = response.json()
        except ValueError:
            return TransientError("contacts_api answered 200 with a body that is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            return TransientError("contacts_api answered 200 without the data/meta/errors envelope")
        if body.get("errors"):
            return RejectedRequest(f"contacts_api: {error_items(response)}")
        return None
    detail = f"contacts_api: {error_items(response)}"
    if status == 400:
        return RejectedRequest(detail)
    if status in (401, 403):
        return ConfigError(f"{detail} (the token {TOKEN_SETTING} was refused)",
                           fix="check the token (API tokens in the user settings) and that it is sent as a Bearer token")
    if status == 402:
        return QuotaExhausted(detail, reason="credits_exhausted")
    if status in (404, 405):
        return ConfigError(detail, fix="check providers.contacts_api.base_url (the API's root)")
    if status == 429:
        return RateLimited(detail, retry_after=retry_after_seconds(response.headers, time_scale))
    if status >= 500:
        return TransientError(f"{detail} (HTTP {status})")
    return RejectedRequest(f"{detail} (HTTP {status})")


def require_token(settings: ContactsApiSettings) -> str:
    return required_secret(settings.api_token, TOKEN_SETTING)


def contacts_limit_spec(settings: ContactsApiSettings, token: str, time_scale: float) -> LimitSpec:
    return LimitSpec(
        key=f"contacts_api:{credential_tag(token)}",
        requests=settings.rate_limit.requests,
        per_seconds=settings.rate_limit.per_seconds / time_scale,
        max_in_flight=settings.max_in_flight,
    )


class _ContactsEndpoint(ChargedPerAnswer):
    name: ClassVar[str]
    endpoint: ClassVar[str]
    credit_pool: str | None = None

    def __init__(self, settings: ContactsApiSettings, context: VendorContext) -> None:
        token = require_token(settings)
        self.settings = settings
        scale = context.settings.time_scale
        self.time_scale = scale
        self.cache_ttl = timedelta(days=settings.freshness_days) / scale
        self.charge_window: timedelta | None = timedelta(0) if self.credit_pool else None
        client = build_httpx_client(settings.http, base_url=settings.base_url,
                                    headers={"Authorization": f"Bearer {token}"},
                                    max_connections=settings.max_in_flight)
        self.http = metered_http(context, client=client, spec=contacts_limit_spec(settings, token, scale),
                                 classify=self.classify, policy=RetryPolicy(transient_attempts=3))

    def classify(self, response: httpx.Response) -> ConnectorError | None:
        return classify_response(response, time_scale=self.time_scale)

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        return company_domain(identity.website, identity.email)

    def domain_of(self, identity: LeadIdentity) -> str:
        domain = self.lookup_key(identity)
        if domain is None:
            raise NoMatch(NO_DOMAIN)
        return domain

    def credit_key(self, identity: LeadIdentity) -> str | None:
        return self.lookup_key(identity) if self.credit_pool else None

    def search(self, path: str, params: list[tuple[str, str]], deadline: float | None) -> dict[str, Any]:
        return self.http.request("GET", path, params=params, deadline=deadline).json()

    def close(self) -> None:
        self.http.close()


class ContactsCompany(_ContactsEndpoint):
    name: ClassVar[str] = "contacts_company"
    endpoint = "contacts_api:company"

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        domain = self.domain_of(identity)
        body = self.search(COMPANIES_PATH, [("tlds", domain), ("per_page", "10")], deadline)
        rows = [r for r in body["data"] if isinstance(r, dict)]
        if not rows:
            raise NoMatch(f"contacts_api: no company at {domain} (empty data)")
        company = pick_company(rows, domain)
        if company is None:
            raise NoMatch(f"contacts_api: asked for {domain}, the answer's companies are at "
                          f"{answered_domains(company_record_domain(r) for r in rows)}")
        return {"company": company, "matches": int((body.get("meta") or {}).get("total") or len(rows))}


class ContactsPeople(_ContactsEndpoint):
    name: ClassVar[str] = "contacts_people"
    endpoint = "contacts_api:decision_makers"
    credit_pool: str | None = CREDIT_POOL

    @property
    def max_credits_per_call(self) -> int:  # type: ignore[override]
        return min(self.settings.decision_makers_per_company, MAX_PER_PAGE)

    def credits_for(self, payload: dict[str, Any]) -> int:
        """One credit per contact returned: the vendor's `credits_charged` when it sends one."""
        return int(payload.get("credits_charged") or len(payload.get("contacts") or []))

    def params(self, domain: str) -> list[tuple[str, str]]:
        params = [("tlds", domain), ("is_decision_maker", "true")]
        params += [("departments", d) for d in self.settings.decision_maker_departments if d.strip()]
        params.append(("per_page", str(min(self.settings.decision_makers_per_company, MAX_PER_PAGE))))
        return params

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        domain = self.domain_of(identity)
        body = self.search(CONTACTS_PATH, self.params(domain), deadline)
        returned = [c for c in body["data"] if isinstance(c, dict)]
        if not returned:
            raise NoMatch(f"contacts_api: no decision makers at {domain} (empty data)")
        contacts = [c for c in returned if same_registrable_domain(domain, contact_company_domain(c))]
        if not contacts:
            raise NoMatch(f"contacts_api: asked for decision makers at {domain}, the answer's contacts "
                          f"work at {answered_domains(contact_company_domain(c) for c in returned)}")
        meta = body.get("meta") or {}
        return {
            "contacts": contacts,
            "decision_makers": [f"{c.get('full_name', '')} ({c.get('job_title', '')})".strip() for c in contacts],
            "total": int(meta.get("total") or len(contacts)),
            "credits_charged": int(meta.get("credits_charged") or len(returned)),
        }


@register_provider("contacts_company", settings_section="contacts_api")
def create_contacts_company_provider(context: VendorContext) -> ContactsCompany:
    return ContactsCompany(context.settings.providers.contacts_api, context)


@register_provider("contacts_people", settings_section="contacts_api")
def create_contacts_people_provider(context: VendorContext) -> ContactsPeople:
    return ContactsPeople(context.settings.providers.contacts_api, context)
