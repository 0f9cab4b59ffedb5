"""6sense Lead Scoring and Firmographics (POST {scribe}/v2/people/full).

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

from datetime import timedelta
from typing import Any, ClassVar

import httpx

from connector.errors import (
    ConfigError,
    ConnectorError,
    NoMatch,
    QuotaExhausted,
    RateLimited,
    RejectedRequest,
    TransientError,
)
from connector.http import MeteredHttp, RetryPolicy, build_httpx_client, credential_tag, retry_after_seconds
from connector.limiter import LimitSpec
from connector.models import LeadIdentity
from connector.registry import register_provider
from connector.settings import SixSenseSettings
from connector.sources.base import VendorContext
from connector.transforms import is_empty

CHARGE_WINDOW = timedelta(days=30)


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


class SixSensePeopleFull:
    name: ClassVar[str] = "sixsense"
    endpoint = "sixsense:people_full"
    credit_pool: str | None = "sixsense:enrichment"

    def __init__(self, settings: SixSenseSettings, context: VendorContext) -> None:
        if settings.api_token is None or not settings.api_token.get_secret_value().strip():
            raise ConfigError(
                "providers.sixsense.api_token is not set",
                fix="set it in the settings file or as CONNECTOR_PROVIDERS__SIXSENSE__API_TOKEN",
            )
        self.settings = settings
        scale = context.settings.time_scale
        self.charge_window = CHARGE_WINDOW / scale
        self.cache_ttl = timedelta(days=settings.cache_days) / scale
        self.time_scale = scale
        token = settings.api_token.get_secret_value()
        client = build_httpx_client(
            settings.http,
            base_url=settings.scribe_url,
            headers={"Authorization": f"Token {token}"},
            max_connections=settings.max_in_flight,
        )
        spec = LimitSpec(
            key=f"sixsense:{credential_tag(token)}",
            requests=settings.rate_limit.requests,
            per_seconds=settings.rate_limit.per_seconds / scale,
            max_in_flight=settings.max_in_flight,
        )
        self.http = MeteredHttp(
            client=client, limiter=context.limiter, spec=spec, classify=self.classify,
            policy=RetryPolicy(transient_attempts=settings.retries_on_server_error + 1),
            time_scale=scale,
        )

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        email = normalise_email(identity.email)
        return email or None

    def classify(self, response: httpx.Response) -> ConnectorError | None:
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
                f"6sense refused the API token providers.sixsense.api_token (HTTP {status}: {message})",
                fix="check the token, and that it has the Lead Scoring and Firmographics package",
            )
        if status == 402:
            return QuotaExhausted(f"6sense quota exhausted (402): {message}", reason="credits_exhausted")
        if status == 404 or "no data found" in message.lower():
            return NoMatch(f"6sense: {message or 'not found'}")
        if status == 422:
            return RejectedRequest(f"6sense validation error (422): {message}")
        if status == 429:
            return RateLimited("6sense rate limit (429)", retry_after=retry_after_seconds(response.headers, self.time_scale))
        if status >= 500:
            return TransientError(f"6sense server error (HTTP {status})")
        return RejectedRequest(f"6sense answered HTTP {status}: {message}")

    def request_form(self, identity: LeadIdentity) -> dict[str, str]:
        form = {
            "email": identity.email.strip(),
            "country": identity.country.strip() or self.settings.default_country,
            "company": identity.company,
            "website": identity.website,
            "title": identity.title,
            "leadsource": identity.lead_source,
            "firstname": identity.first_name,
            "lastname": identity.last_name,
            "industry": identity.industry,
        }
        return {k: v.strip() for k, v in form.items() if v and v.strip()}

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        response = self.http.request("POST", "/v2/people/full", data=self.request_form(identity), deadline=deadline)
        if response.status_code == 204:
            raise NoMatch("6sense: no content (204)")
        payload = response.json()
        if not isinstance(payload, dict) or is_blank_answer(payload):
            raise NoMatch("6sense answered with blank fields")
        return payload

    def close(self) -> None:
        self.http.close()


@register_provider("sixsense")
def create_sixsense_provider(context: VendorContext) -> SixSensePeopleFull:
    return SixSensePeopleFull(context.settings.providers.sixsense, context)
