"""6sense: every enrichment API of the reference, one provider per endpoint, one token, one limit.

All of them share `providers.sixsense` (settings_section="sixsense"), the `Authorization: Token
<api token>` header and ONE limiter key per token (`sixsense_limit_spec`): 6sense's 100
requests/minute is per token across every endpoint on all three hosts.

Registered providers (name -> endpoint, host, credit pool):

- "sixsense": Lead Scoring and Firmographics, POST {scribe}/v2/people/full (detailed below).
- "sixsense_score": Lead Scoring, POST {scribe}/v2/people/score; no credit (credit_pool None).
  Answer `{"scores": [...]}`; an empty scores list is a no-match. Free answers are cached for
  `score_cache_days` (scores move faster than firmographics).
- "sixsense_company": Company Firmographics v3, POST {api}/v1/enrichment/company, keyed by the
  company DOMAIN: we send only `domain` (the registrable domain of the lead's email, or of its
  website when the email is at a free-mail provider; connector/domains.py), so 6sense charges
  the record "domain:<domain>" once per 30 days and twenty leads at one company cost one credit,
  not twenty. Answer `{"company", "segments"}` with the sample's camelCase keys
  (employeeCount/annualRevenue as numeric strings).
- "sixsense_company_v2": Company Firmographics v2, POST {scribe}/v2/people/enrichment (email only,
  keyed by the normalised email); the same answer shape as v3. 6sense calls v3 the current version;
  v2 is kept for accounts whose token still points there.
- "sixsense_people": People Enrichment, POST {api}/v1/enrichment/people with the lead's `email`
  and, when it has one, its `linkedinUrl` in the same form: 6sense tries email first and falls
  back to the LinkedIn URL itself, so one call covers both. Keyed by the normalised email (or
  "linkedin:<url>" for a lead without one). 204 = no match. Answer `{"person", "company"}`.
  `search_people` (POST {api}/v1/search/people) and `people_dictionary` (GET
  {api}/v1/dictionary/peopleSearch) are helper methods on it: free, never cached, never mapped
  (People Search masks names: "A******* S****"); use them to list an account's people.
- "sixsense_ip": Company Identification, GET {epsilon}/v3/company/details with `X-Forwarded-For:
  <the lead's IPv4>` (LeadIdentity.ip_address; lookup_key None without a valid IPv4, so no call),
  and `X-6s-CustomID: <custom_id>` when that setting is set (partners). Only company_match "Match"
  is a match; "No Match" / "Non-actionable Match" / the blank answer of an invalid IP are no-matches
  (the additional_comment is recorded). Credit pool "sixsense:company_identification", charge
  window 365 days (6sense: one credit per IP per contract year).

Credits: "sixsense:enrichment" is shared by people/full, company v2/v3 and people enrichment;
6sense does not charge a record again within 30 days of its first charge, counted from that
charge, by the record's key (the normalised email; "domain:<d>" for a v3 domain lookup). Every
provider of the pool exposes that key as `credit_key()`, and the ledger counts charges per
(credit_pool, credit_key) in `credit_charge`: a record charged by /v2/people/full and then fetched
by /v1/enrichment/people within 30 days is free at 6sense and free in the ledger too. A 402 stops
the whole pool (every endpoint above that shares it), not Lead Scoring or Company Identification.

Every documented code, on every endpoint (`classify_response`):
- 400: RejectedRequest (a required field blank): never retried as is.
- 401 / 403: ConfigError naming providers.sixsense.api_token (403: the token lacks that API).
- 402: QuotaExhausted(reason="credits_exhausted"): the circuit stays open until an operator
  clears it (6sense documents no reset).
- 404 and "No data found" in any 4xx body: NoMatch.
- 422: RejectedRequest (validation error).
- 429: RateLimited; no Retry-After is documented, so unless one is sent the token pauses for the
  vendor's window.
- 5xx, timeouts, non-JSON 200 bodies: TransientError, retried with backoff.

"sixsense" (POST {scribe}/v2/people/full), in detail:

Request: form-encoded, `Authorization: Token <api token>`. We send the email and whatever else
the lead has of the documented inputs (country, company, website, title, leadsource, firstname,
lastname, industry). The reference calls `country` optional while the OpenAPI file marks it
required: we always send one, the lead's or `default_country`.

Answers, as the reference documents them (choices where it is silent are marked *):
- 200 with company/scores/segments: a match. Numbers may arrive as strings ("1192"), as in the
  reference's sample; the mapping's transforms and the canonical comparison handle both.
- 200 whose company fields are all blank, with no scores and no segments: no match (the
  reference: "In case of invalid email Address, you will get blank data").
- 204*: no match.
- 404 "Invalid email ID" and "No data found" (the reference gives no status for the latter;
  we read it on any 4xx body*): no match, recorded.
- 400 (a required field blank): the request was wrong; never retried as is.
- 401 / 403: the token is bad or lacks the package: a configuration error that stops 6sense.
- 402: quota exhausted: stop paying; the circuit stays open until an operator clears it
  (6sense documents no daily reset).
- 422: validation error, the lead's request is rejected.
- 429: rate limited (100 requests/minute per token). No Retry-After is documented, so unless one
  is sent we pause the token for the vendor's window.
- 5xx, timeouts, non-JSON bodies*: transient, retried with backoff.

Credits: the Enrichment credit pool. A record re-enriched within 30 days of its first charge is
not charged again, so the 30 days count from the first charge, keyed by the normalised email.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Any, ClassVar

import httpx

from connector.domains import company_domain as lead_company_domain
from connector.domains import registrable_domain
from connector.errors import (
    ConfigError,
    ConnectorError,
    NoMatch,
    QuotaExhausted,
    RateLimited,
    RejectedRequest,
    TransientError,
)
from connector.http import (
    RetryPolicy,
    build_httpx_client,
    credential_tag,
    metered_http,
    retry_after_seconds,
)
from connector.limiter import LimitSpec
from connector.models import LeadIdentity
from connector.providers.base import ChargedPerAnswer
from connector.registry import register_provider
from connector.settings import SixSenseSettings, required_secret
from connector.sources.base import VendorContext
from connector.transforms import is_empty

CHARGE_WINDOW = timedelta(days=30)
CONTRACT_YEAR = timedelta(days=365)
ENRICHMENT_POOL = "sixsense:enrichment"
IDENTIFICATION_POOL = "sixsense:company_identification"
TOKEN_SETTING = "providers.sixsense.api_token"

def normalise_email(email: str) -> str:
    return email.strip().lower()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:200]


def is_blank_answer(payload: dict[str, Any]) -> bool:
    company = payload.get("company") or {}
    segments = payload.get("segments") or {}
    return is_empty(company) and is_empty(payload.get("scores") or []) and is_empty(segments)


def normalise_domain(raw: str) -> str:
    """The registrable domain of a host or URL (connector/domains.py), "" when it has none."""
    return registrable_domain(raw) or ""


def company_domain(identity: LeadIdentity) -> str:
    """The lead's company domain (connector/domains.py: its website's, else its email's unless
    that is free mail); "" when neither gives one."""
    return lead_company_domain(identity.website, identity.email) or ""


def normalise_linkedin_url(raw: str) -> str:
    """"linkedin.com/in/<slug>" for any spelling of a profile URL, else ""."""
    url = raw.strip().lower()
    url = re.sub(r"^https?://", "", url)
    url = re.split(r"[?#]", url, maxsplit=1)[0].rstrip("/")
    match = re.fullmatch(r"(?:[a-z]{2,3}\.)?linkedin\.com/in/([^/\s]+)", url)
    return f"linkedin.com/in/{match.group(1)}" if match else ""


def valid_email(raw: str) -> str:
    """The normalised email when it has one "@", a local part and a dotted domain, else ""."""
    email = normalise_email(raw)
    if email.count("@") != 1:
        return ""
    local, domain = email.split("@")
    return email if local and "." in domain else ""


def require_token(settings: SixSenseSettings) -> str:
    return required_secret(settings.api_token, TOKEN_SETTING)


def sixsense_limit_spec(settings: SixSenseSettings, token: str, time_scale: float) -> LimitSpec:
    """The one limit of a 6sense token: 100 requests/minute across every endpoint and host."""
    return LimitSpec(
        key=f"sixsense:{credential_tag(token)}",
        requests=settings.rate_limit.requests,
        per_seconds=settings.rate_limit.per_seconds / time_scale,
        max_in_flight=settings.max_in_flight,
    )


def classify_response(response: httpx.Response, *, package: str, time_scale: float) -> ConnectorError | None:
    """Every documented 6sense status, as it means, for any endpoint (see the module docstring)."""
    status = response.status_code
    if status in (200, 204):
        if status == 200:
            try:
                response.json()
            except ValueError:
                return TransientError("6sense answered 200 with a body that is not JSON")
        return None
    message = _message(response)
    if status == 400:
        return RejectedRequest(f"6sense rejected the request (400): {message}")
    if status in (401, 403):
        return ConfigError(
            f"6sense refused the API token {TOKEN_SETTING} (HTTP {status}: {message})",
            fix=f"check the token, and that it has the {package} package",
        )
    if status == 402:
        return QuotaExhausted(f"6sense quota exhausted (402): {message}", reason="credits_exhausted")
    if status == 404 or "no data found" in message.lower():
        return NoMatch(f"6sense: {message or 'not found'}")
    if status == 422:
        return RejectedRequest(f"6sense validation error (422): {message}")
    if status == 429:
        return RateLimited("6sense rate limit (429)", retry_after=retry_after_seconds(response.headers, time_scale))
    if status >= 500:
        return TransientError(f"6sense server error (HTTP {status})")
    return RejectedRequest(f"6sense answered HTTP {status}: {message}")


def lead_form(identity: LeadIdentity, default_country: str) -> dict[str, str]:
    """The documented lead inputs of 6sense's scribe endpoints, blanks left out; a country always."""
    form = {
        "email": identity.email,
        "country": identity.country.strip() or default_country,
        "company": identity.company,
        "website": identity.website,
        "title": identity.title,
        "leadsource": identity.lead_source,
        "firstname": identity.first_name,
        "lastname": identity.last_name,
        "industry": identity.industry,
    }
    return {k: v.strip() for k, v in form.items() if v and v.strip()}


# --- the other 6sense endpoints ---------------------------------------------------------------


class _SixSenseEndpoint(ChargedPerAnswer):
    """What every 6sense endpoint shares: the token, the host's client and the token's one limit."""

    name: ClassVar[str]
    endpoint: ClassVar[str]
    host_setting: ClassVar[str]  # scribe_url, api_url or epsilon_url
    package: ClassVar[str]  # the 6sense API a 403 means the token lacks
    credit_pool: str | None = ENRICHMENT_POOL

    def __init__(self, settings: SixSenseSettings, context: VendorContext) -> None:
        token = require_token(settings)
        self.settings = settings
        scale = context.settings.time_scale
        self.time_scale = scale
        self.cache_ttl = timedelta(days=settings.cache_days) / scale
        self.charge_window: timedelta | None = CHARGE_WINDOW / scale if self.credit_pool else None
        client = build_httpx_client(
            settings.http,
            base_url=getattr(settings, self.host_setting),
            headers={"Authorization": f"Token {token}"},
            max_connections=settings.max_in_flight,
        )
        self.http = metered_http(
            context, client=client, spec=sixsense_limit_spec(settings, token, scale), classify=self.classify,
            policy=RetryPolicy(transient_attempts=settings.retries_on_server_error + 1),
        )

    def classify(self, response: httpx.Response) -> ConnectorError | None:
        return classify_response(response, package=self.package, time_scale=self.time_scale)

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        return valid_email(identity.email) or None

    def credit_key(self, identity: LeadIdentity) -> str | None:
        """The key 6sense charges this lookup by (the same record on any endpoint of the pool)."""
        return self.lookup_key(identity)

    def lead_form(self, identity: LeadIdentity) -> dict[str, str]:
        return lead_form(identity, self.settings.default_country)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 204:
            raise NoMatch(f"{self.name}: no content (204)")
        payload = response.json()
        if not isinstance(payload, dict):
            raise TransientError(f"{self.name}: the answer is not a JSON object")
        return payload

    def close(self) -> None:
        self.http.close()


class SixSensePeopleFull(_SixSenseEndpoint):
    name: ClassVar[str] = "sixsense"
    endpoint = "sixsense:people_full"
    host_setting = "scribe_url"
    package = "Lead Scoring and Firmographics"

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        email = normalise_email(identity.email)
        return email or None

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        response = self.http.request("POST", "/v2/people/full", data=self.lead_form(identity), deadline=deadline)
        if response.status_code == 204:
            raise NoMatch("6sense: no content (204)")
        payload = response.json()
        if not isinstance(payload, dict) or is_blank_answer(payload):
            raise NoMatch("6sense answered with blank fields")
        return payload

    def probe(self, identity: LeadIdentity, *, deadline: float | None) -> bool:
        """For the dry run's forecast: does 6sense know this lead? Asked of Lead Scoring
        (/v2/people/score), which costs no credit, on the same token and limiter; a lead it
        scores is taken as a paid match of /v2/people/full, one it does not know as a free no-match."""
        try:
            response = self.http.request("POST", "/v2/people/score", data=self.lead_form(identity),
                                         deadline=deadline)
        except NoMatch:
            return False
        if response.status_code == 204:
            return False
        payload = response.json()
        return isinstance(payload, dict) and bool(payload.get("scores"))


@register_provider("sixsense")
def create_sixsense_provider(context: VendorContext) -> SixSensePeopleFull:
    return SixSensePeopleFull(context.settings.providers.sixsense, context)


class SixSenseLeadScore(_SixSenseEndpoint):
    """Lead Scoring (POST {scribe}/v2/people/score): scores only, never charged."""

    name: ClassVar[str] = "sixsense_score"
    endpoint = "sixsense:people_score"
    host_setting = "scribe_url"
    package = "Lead Scoring"
    credit_pool: str | None = None

    def __init__(self, settings: SixSenseSettings, context: VendorContext) -> None:
        super().__init__(settings, context)
        self.cache_ttl = timedelta(days=settings.score_cache_days) / self.time_scale

    def credit_key(self, identity: LeadIdentity) -> str | None:
        return None

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        payload = self._json(self.http.request("POST", "/v2/people/score", data=self.lead_form(identity),
                                               deadline=deadline))
        if is_empty(payload.get("scores") or []):
            raise NoMatch("6sense answered with no scores")
        return payload


class SixSenseCompanyV3(_SixSenseEndpoint):
    """Company Firmographics v3 (POST {api}/v1/enrichment/company), asked by domain only."""

    name: ClassVar[str] = "sixsense_company"
    endpoint = "sixsense:company_v3"
    host_setting = "api_url"
    package = "Company Firmographics"

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        return company_domain(identity) or None

    def credit_key(self, identity: LeadIdentity) -> str | None:
        domain = company_domain(identity)
        return f"domain:{domain}" if domain else None  # 6sense's key for a request without email

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        domain = company_domain(identity)
        if not domain:
            raise NoMatch("the lead has no company domain")
        payload = self._json(self.http.request("POST", "/v1/enrichment/company", data={"domain": domain},
                                               deadline=deadline))
        if is_empty(payload.get("company") or {}):
            raise NoMatch("6sense answered with blank company fields")
        return payload


class SixSenseCompanyV2(_SixSenseEndpoint):
    """Company Firmographics v2 (POST {scribe}/v2/people/enrichment), by email."""

    name: ClassVar[str] = "sixsense_company_v2"
    endpoint = "sixsense:company_v2"
    host_setting = "scribe_url"
    package = "Company Firmographics"

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        payload = self._json(self.http.request("POST", "/v2/people/enrichment", data=self.lead_form(identity),
                                               deadline=deadline))
        if is_empty(payload.get("company") or {}):
            raise NoMatch("6sense answered with blank company fields")
        return payload


class SixSensePeople(_SixSenseEndpoint):
    """People Enrichment (POST {api}/v1/enrichment/people) by email, else LinkedIn URL; and the
    free People Search and its dictionary as helper methods."""

    name: ClassVar[str] = "sixsense_people"
    endpoint = "sixsense:people_v1"
    host_setting = "api_url"
    package = "People Enrichment"
    search_page_size = 50  # People Search's maximum

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        email = valid_email(identity.email)
        if email:
            return email
        linkedin = normalise_linkedin_url(identity.linkedin_url)
        return f"linkedin:{linkedin}" if linkedin else None

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        form = {"email": valid_email(identity.email), "linkedinUrl": identity.linkedin_url.strip()}
        form = {k: v for k, v in form.items() if v}
        if not form:
            raise NoMatch("the lead has neither an email nor a LinkedIn URL")
        payload = self._json(self.http.request("POST", "/v1/enrichment/people", data=form, deadline=deadline))
        if is_empty(payload.get("person") or {}):
            raise NoMatch("6sense answered with a blank person")
        return payload

    def search_people(
        self, domain: str, *, titles: list[str] | None = None, country: list[str] | None = None,
        state: list[str] | None = None, city: list[str] | None = None, industry: str | None = None,
        max_pages: int = 10, deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """Every People Search record of an account (names masked by 6sense), all pages up to
        `max_pages`; [] when 6sense knows nobody (204). Free; not cached."""
        body: dict[str, Any] = {"domain": normalise_domain(domain) or domain.strip(), "pageSize": self.search_page_size}
        for key, values in (("titles", titles), ("country", country), ("state", state), ("city", city)):
            if values:
                body[key] = list(values)[:10]  # at most 10 values per filter
        if industry:
            body["industry"] = industry
        records: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            response = self.http.request("POST", "/v1/search/people", json={**body, "pageNo": page}, deadline=deadline)
            if response.status_code == 204:
                break
            answer = response.json()
            records.extend(r for r in answer.get("data") or [] if isinstance(r, dict))
            if page >= int(answer.get("totalPage") or 0):
                break
        return records

    def people_dictionary(self, domain: str, *, deadline: float | None = None) -> dict[str, list[str]]:
        """The account's People Search vocabulary: city, state, country, titles, industry (all
        pages); {} when 6sense knows nobody there (204). Free; not cached."""
        out: dict[str, list[str]] = {}
        page, pages = 1, 1
        while page <= pages:
            response = self.http.request(
                "GET", "/v1/dictionary/peopleSearch", deadline=deadline,
                params={"domainName": normalise_domain(domain) or domain.strip(), "pageNumber": page, "pageSize": 1000},
            )
            if response.status_code == 204:
                return {}
            answer = response.json()
            for key in ("city", "state", "country", "titles", "industry"):
                out.setdefault(key, []).extend(v for v in answer.get(key) or [] if v not in out.get(key, []))
            pages = int(answer.get("totalPage") or 1)
            page += 1
        return out


class SixSenseCompanyIdentification(_SixSenseEndpoint):
    """Company Identification (GET {epsilon}/v3/company/details) from the lead's IPv4."""

    name: ClassVar[str] = "sixsense_ip"
    endpoint = "sixsense:company_details"
    host_setting = "epsilon_url"
    package = "Company Identification"
    credit_pool: str | None = IDENTIFICATION_POOL

    def __init__(self, settings: SixSenseSettings, context: VendorContext) -> None:
        super().__init__(settings, context)
        self.charge_window = CONTRACT_YEAR / self.time_scale
        self.custom_id = settings.custom_id.get_secret_value().strip() if settings.custom_id else ""

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        try:
            return str(ipaddress.IPv4Address(identity.ip_address.strip()))
        except ValueError:
            return None  # none, IPv6 or garbage: 6sense supports IPv4 only

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        ip = self.lookup_key(identity)
        if ip is None:
            raise NoMatch("the lead has no IPv4 address")
        headers = {"X-Forwarded-For": ip}
        if self.custom_id:
            headers["X-6s-CustomID"] = self.custom_id
        payload = self._json(self.http.request("GET", "/v3/company/details", headers=headers, deadline=deadline))
        company = payload.get("company") or {}
        match = str(company.get("company_match") or "")
        if match != "Match":
            comment = str(company.get("additional_comment") or "") or "blank answer (invalid IP)"
            raise NoMatch(f"6sense: {match or 'no match'}: {comment}")
        return payload


@register_provider("sixsense_score", settings_section="sixsense")
def create_sixsense_score_provider(context: VendorContext) -> SixSenseLeadScore:
    return SixSenseLeadScore(context.settings.providers.sixsense, context)


@register_provider("sixsense_company", settings_section="sixsense")
def create_sixsense_company_provider(context: VendorContext) -> SixSenseCompanyV3:
    return SixSenseCompanyV3(context.settings.providers.sixsense, context)


@register_provider("sixsense_company_v2", settings_section="sixsense")
def create_sixsense_company_v2_provider(context: VendorContext) -> SixSenseCompanyV2:
    return SixSenseCompanyV2(context.settings.providers.sixsense, context)


@register_provider("sixsense_people", settings_section="sixsense")
def create_sixsense_people_provider(context: VendorContext) -> SixSensePeople:
    return SixSensePeople(context.settings.providers.sixsense, context)


@register_provider("sixsense_ip", settings_section="sixsense")
def create_sixsense_ip_provider(context: VendorContext) -> SixSenseCompanyIdentification:
    return SixSenseCompanyIdentification(context.settings.providers.sixsense, context)
