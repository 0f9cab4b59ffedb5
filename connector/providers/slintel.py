"""Slintel v2.0 enrichment (the "6sense API" at apiv2.slintel.com/v2.0): leads and companies.

Both providers share `providers.slintel` (settings_section="slintel"), the `x-api-key` header and
ONE limiter key per key: 10 calls per second, 10 in flight, 10,000 calls per GMT day
(`daily_quota`, `quota_timezone="UTC"`: the doc's "refreshed at 12am (midnight) GMT").

- "slintel": lead enrichment, GET {base}/v2.0/lead/enrich. One input per call (the API uses the
  first it is given), tried in order until one matches: `email` (the normalised email), then the
  `lead_fallbacks` setting's steps: `linkedin_url` (the lead's LinkedIn URL), then `name` +
  `company_name` (first and last name, and the lead's company). No `location` is sent: the CRM's
  country spelling ("US") need not match Slintel's ("United States") and would only lose matches.
  A no-match costs no credit, only one call of the day's 10,000, so trying the next input is cheap;
  a name match can be a namesake, so operators who cannot accept that set `lead_fallbacks: []`.
  lookup_key: the normalised email, else "linkedin:<url>", else "name:<name>|<company>" (folded).
- "slintel_company": company enrichment, GET {base}/v2.0/company/enrich, keyed by the company
  domain, a registrable domain (connector/domains.py: the lead's website's, else its email's
  unless that is free mail) sent as `company_website`; only without a domain by `company_name`
  (lookup_key "name:<folded name>"). Never both: a domain that misses must not silently become a
  name match with another company of that name. An answer asked by domain must be about that
  domain: its `company_website` (the doc sample's field, a bare domain) or, when that is blank,
  its `company_homepage_url`, compared as registrable domains; otherwise (a missing one included)
  it is NoMatch naming the domain that came back. The doc's own request shows why: asked for
  `aliaxis.com`, it answers with the company at `slintel.com`. Slintel charges such an answer; the
  ledger, which counts only matched answers, does not see that credit (the balance read before the
  next night does).

Answers. The payload is the `data` object itself (flat keys: `slintel.industry`,
`slintel_company.company_size`), normalised as follows, raw values kept:
- No match: the doc shows none; the emulator (and, we assume, the vendor) answers 200 with an empty
  `data` object (`{"data": {}}`; null or a missing `data` read the same): NoMatch, no credit.
- `divison` (sic, in the lead sample): copied to `division` when that key is absent.
- `last_funded_on` arrives as text ("Last 6 months", companies) or epoch seconds (1576108800,
  leads): kept raw, and `last_funded_on_date` is added: the ISO date (YYYY-MM-DD, UTC) for epoch
  seconds (or milliseconds, or an ISO date string), None for relative text, which names no date.
- Masked emails ("s*****r@amazon.com", as lead search returns them) are blanked to "" wherever a
  key named `email` holds one, so they can never be mapped; `search_leads` does the same.
- `company_twitter_url` that is not a Twitter/X URL (the company sample holds a Facebook URL) is
  blanked, so a Facebook page is never written as a Twitter handle.

Errors (the doc lists codes, no bodies; the API Gateway shape `{"message": ...}` is assumed):
- 403: ConfigError naming providers.slintel.api_key (also 401, undocumented).
- 429 "Too Many Requests" (the burst): RateLimited; no Retry-After is documented, so the key
  pauses for the vendor's window, 1 second, then retries.
- 429 "Limit Exceeded" (the day's 10,000): QuotaExhausted(reason="quota") with reset_at = the next
  midnight GMT; the circuit stays open until then.
- 400 "... no API credits available": QuotaExhausted(reason="credits_exhausted"): credits do not
  refill at midnight, an operator must act. Any other 400: RejectedRequest.
- 404/405 (no such route: a wrong base_url): ConfigError. 5xx, timeouts: TransientError.

Credits: every successful answer costs one, the same question again included, so nothing is
asked twice inside `freshness_days` (cache_ttl) and every fetch is charged (charge_window 0: the
ledger counts a re-fetch after the freshness period as a new charge). Pool "slintel:credits".
`remaining_credits()` reads GET /v2.0/api-credits (one call of the day; the doc's sample has a
trailing comma, tolerated): before each night the balance caps what the night may spend, and a
balance of zero means no Slintel call that night (connector/budgets.py).
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from datetime import UTC, date, datetime, timedelta
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
from connector.http import (
    RetryPolicy,
    build_httpx_client,
    credential_tag,
    metered_http,
    retry_after_seconds,
)
from connector.limiter import LimitSpec, vendor_day
from connector.models import LeadIdentity
from connector.providers.base import ChargedPerAnswer
from connector.providers.sixsense import normalise_linkedin_url, valid_email
from connector.registry import register_provider
from connector.settings import SlintelSettings, required_secret
from connector.sources.base import VendorContext

CREDIT_POOL = "slintel:credits"
KEY_SETTING = "providers.slintel.api_key"
BURST_WINDOW_SECONDS = 1.0  # "10 calls/sec": the window a burst 429 refers to
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def parse_json(text: str) -> Any:
    """JSON, tolerating the trailing commas of the doc's own samples."""
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text))


def _message(response: httpx.Response) -> str:
    try:
        body = parse_json(response.text)
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or "")
    return str(body)[:200]


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split()).casefold()


def require_key(settings: SlintelSettings) -> str:
    return required_secret(settings.api_key, KEY_SETTING)


def slintel_limit_spec(settings: SlintelSettings, key: str, time_scale: float) -> LimitSpec:
    """One key's limits: 10/s, 10 in flight, 10,000 calls per GMT day."""
    return LimitSpec(
        key=f"slintel:{credential_tag(key)}",
        requests=settings.rate_limit.requests,
        per_seconds=settings.rate_limit.per_seconds / time_scale,
        max_in_flight=settings.max_in_flight,
        daily_quota=settings.daily_limit,
        quota_timezone="UTC",
        day_seconds=86400.0 / time_scale,
    )


def classify_response(response: httpx.Response, *, spec: LimitSpec, time_scale: float) -> ConnectorError | None:
    status = response.status_code
    if status == 200:
        try:
            body = parse_json(response.text)
        except ValueError:
            return TransientError("Slintel answered 200 with a body that is not JSON")
        return None if isinstance(body, dict) else TransientError("Slintel answered 200 without a JSON object")
    message = _message(response)
    lowered = message.lower()
    if status == 400:
        if "no api credits" in lowered:
            return QuotaExhausted(f"Slintel has no API credits left (400): {message}", reason="credits_exhausted")
        return RejectedRequest(f"Slintel rejected the request (400): {message}")
    if status in (401, 403):
        return ConfigError(f"Slintel refused the API key {KEY_SETTING} (HTTP {status}: {message})",
                           fix="check the key (API tokens in the Slintel/6sense app) and that it is sent as x-api-key")
    if status == 429:
        if "limit exceeded" in lowered:
            _, midnight = vendor_day(spec, time.time())
            return QuotaExhausted(f"Slintel's daily call limit is used up (429 {message}); it resets at midnight GMT",
                                  reason="quota", reset_at=midnight)
        retry_after = retry_after_seconds(response.headers, time_scale)
        return RateLimited(f"Slintel burst limit (429 {message})",
                           retry_after=retry_after if retry_after is not None else BURST_WINDOW_SECONDS / time_scale)
    if status in (404, 405):
        return ConfigError(f"Slintel has no such route (HTTP {status}: {message})",
                           fix="check providers.slintel.base_url: the API host, e.g. https://apiv2.slintel.com")
    if status >= 500:
        return TransientError(f"Slintel server error (HTTP {status})")
    return RejectedRequest(f"Slintel answered HTTP {status}: {message}")


# --- answers ---------------------------------------------------------------------------------


def is_masked_email(value: Any) -> bool:
    return isinstance(value, str) and "*" in value


def blank_masked_emails(value: Any) -> Any:
    """A copy where every `email`-named string holding a masked address is ""."""
    if isinstance(value, list):
        return [blank_masked_emails(v) for v in value]
    if isinstance(value, dict):
        return {k: ("" if k.lower().endswith("email") and is_masked_email(v) else blank_masked_emails(v))
                for k, v in value.items()}
    return value


def funded_date(value: Any) -> str | None:
    """`last_funded_on` as an ISO date: epoch seconds (or ms), digit strings and ISO dates; None
    for relative text such as "Last 6 months"."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{9,13}", text):
            value = int(text)
        else:
            try:
                return date.fromisoformat(text[:10]).isoformat()
            except ValueError:
                return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC).date().isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def normalise_answer(data: dict[str, Any]) -> dict[str, Any]:
    """The provider payload for one `data` object (see the module docstring)."""
    payload = blank_masked_emails(data)
    if "divison" in payload and "division" not in payload:
        payload["division"] = payload["divison"]
    if "last_funded_on" in payload:
        payload["last_funded_on_date"] = funded_date(payload["last_funded_on"])
    twitter = payload.get("company_twitter_url")
    if isinstance(twitter, str) and twitter and not re.search(r"(^|[/.])(twitter|x)\.com/", twitter.lower()):
        payload["company_twitter_url"] = ""
    return payload


# --- providers -------------------------------------------------------------------------------


API_CREDITS_PATH = "/v2.0/api-credits"


class _SlintelEndpoint(ChargedPerAnswer):
    name: ClassVar[str]
    endpoint: ClassVar[str]
    credit_pool: str | None = CREDIT_POOL

    def __init__(self, settings: SlintelSettings, context: VendorContext) -> None:
        key = require_key(settings)
        self.settings = settings
        scale = context.settings.time_scale
        self.time_scale = scale
        self.cache_ttl = timedelta(days=settings.freshness_days) / scale
        # Every fetch is charged: a zero window makes the ledger count each one (None would mean
        # "charged once, never again").
        self.charge_window: timedelta | None = timedelta(0)
        self.spec = slintel_limit_spec(settings, key, scale)
        client = build_httpx_client(settings.http, base_url=settings.base_url, headers={"x-api-key": key},
                                    max_connections=settings.max_in_flight)
        self.http = metered_http(context, client=client, spec=self.spec, classify=self.classify,
                                 policy=RetryPolicy(transient_attempts=3))

    def classify(self, response: httpx.Response) -> ConnectorError | None:
        return classify_response(response, spec=self.spec, time_scale=self.time_scale)

    def credit_key(self, identity: LeadIdentity) -> str | None:
        return self.lookup_key(identity)

    def api_credits(self, *, deadline: float | None) -> dict[str, int]:
        """{"available_credits", "consumed_credits"} from GET /v2.0/api-credits, through the shared
        limiter: the call counts toward the day's 10,000."""
        return parse_api_credits(self.http.request("GET", API_CREDITS_PATH, deadline=deadline).text)

    def remaining_credits(self, *, deadline: float | None) -> int:
        """Credits still available on the account; read before each night (connector/budgets.py)."""
        return self.api_credits(deadline=deadline)["available_credits"]

    def lookup_key(self, identity: LeadIdentity) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _data(self, path: str, params: dict[str, str], deadline: float | None) -> dict[str, Any] | None:
        """The answer's `data` object, None for the empty object of a no-match."""
        body = parse_json(self.http.request("GET", path, params=params, deadline=deadline).text)
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return None
        return data

    def close(self) -> None:
        self.http.close()


class SlintelLead(_SlintelEndpoint):
    name: ClassVar[str] = "slintel"
    endpoint = "slintel:lead"

    def attempts(self, identity: LeadIdentity) -> list[tuple[str, dict[str, str]]]:
        """The inputs to try, in order: (label, query parameters)."""
        out: list[tuple[str, dict[str, str]]] = []
        email = valid_email(identity.email)
        if email:
            out.append(("email", {"email": email}))
        for step in self.settings.lead_fallbacks:
            if step == "linkedin_url" and normalise_linkedin_url(identity.linkedin_url):
                out.append(("linkedin_url", {"linkedin_url": identity.linkedin_url.strip()}))
            name = " ".join(p for p in (identity.first_name.strip(), identity.last_name.strip()) if p)
            if step == "name_company" and identity.first_name.strip() and identity.last_name.strip() \
                    and identity.company.strip():
                out.append(("name_company", {"name": name, "company_name": identity.company.strip()}))
        return out

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        attempts = self.attempts(identity)
        if not attempts:
            return None
        label, params = attempts[0]
        if label == "email":
            return params["email"]
        if label == "linkedin_url":
            return f"linkedin:{normalise_linkedin_url(params['linkedin_url'])}"
        return f"name:{fold(params['name'])}|{fold(params['company_name'])}"

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        tried: list[str] = []
        for label, params in self.attempts(identity):
            data = self._data("/v2.0/lead/enrich", params, deadline)
            if data is not None:
                payload = normalise_answer(data)
                payload["matched_by"] = label
                return payload
            tried.append(label)
        if not tried:
            raise NoMatch("the lead has no email, LinkedIn URL or name and company Slintel can look up")
        raise NoMatch(f"Slintel: empty data object (no match) by {', then '.join(tried)}")

    def search_leads(self, *, titles: list[str] | None = None, company_websites: list[str] | None = None,
                     location: list[str] | None = None, page: int = 1,
                     deadline: float | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page (50) of POST /v2.0/lead/search and the total. Free; emails come masked and are
        blanked here, so a search record never carries a mappable email."""
        payload = {k: v for k, v in (("titles", titles), ("company_websites", company_websites),
                                     ("location", location)) if v}
        body = parse_json(self.http.request("POST", "/v2.0/lead/search", json={"payload": payload, "page": page},
                                            deadline=deadline).text)
        records = [blank_masked_emails(r) for r in body.get("data") or [] if isinstance(r, dict)]
        return records, int(body.get("total") or 0)


class SlintelCompany(_SlintelEndpoint):
    name: ClassVar[str] = "slintel_company"
    endpoint = "slintel:company"

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        domain = company_domain(identity.website, identity.email)
        if domain:
            return domain
        name = fold(identity.company)
        return f"name:{name}" if name else None

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        domain = company_domain(identity.website, identity.email)
        params = {"company_website": domain} if domain else {"company_name": identity.company.strip()}
        if not any(params.values()):
            raise NoMatch("the lead has no company domain or name")
        data = self._data("/v2.0/company/enrich", params, deadline)
        if data is None:
            raise NoMatch(f"Slintel: empty data object (no match) by {next(iter(params))}")
        if domain:
            answered = answer_domain(data)
            if not same_registrable_domain(domain, answered):
                raise NoMatch(f"Slintel: asked for {domain}, answered with the company at "
                              f"{registrable_domain(answered) or answered[:80] or 'no company_website'}")
        return normalise_answer(data)


def answer_domain(data: dict[str, Any]) -> str:
    """The domain a company answer is about: `company_website`, else `company_homepage_url`."""
    return str(data.get("company_website") or data.get("company_homepage_url") or "").strip()


@register_provider("slintel", settings_section="slintel")
def create_slintel_provider(context: VendorContext) -> SlintelLead:
    return SlintelLead(context.settings.providers.slintel, context)


@register_provider("slintel_company", settings_section="slintel")
def create_slintel_company_provider(context: VendorContext) -> SlintelCompany:
    return SlintelCompany(context.settings.providers.slintel, context)


# --- the pre-night credit check --------------------------------------------------------------


def parse_api_credits(text: str) -> dict[str, int]:
    body = parse_json(text)
    try:
        return {"available_credits": int(body["available_credits"]), "consumed_credits": int(body["consumed_credits"])}
    except (KeyError, TypeError, ValueError):
        raise TransientError("Slintel's api-credits answer lacks available_credits/consumed_credits") from None
