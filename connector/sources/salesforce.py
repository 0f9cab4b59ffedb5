"""Salesforce Lead source on simple-salesforce.

simple-salesforce logs in only to *.salesforce.com, so the connector fetches the OAuth token
itself from the configured token URL (client credentials, or username-password) and builds
`Salesforce(session_id=..., instance_url=..., session=...)` with its own requests session. That
session passes the limiter before every request and has no retries of its own; with a bare
session id simple-salesforce does not re-login either, so every request on the wire is one the
connector decided to make. SalesforceExpiredSession (401 INVALID_SESSION_ID) fetches a new token
and repeats the call once.

Polling: `WHERE CreatedDate >= :since ORDER BY CreatedDate, Id`, paged through nextRecordsUrl.
The pipeline re-reads a few minutes back and the ledger drops what this run already claimed, so
leads sharing the last timestamp are never skipped. Values reach SOQL only through
simple-salesforce's `format_soql` quoting; field names only from the mapping, checked against
describe (an allow list).

Writes: PATCH composite/sobjects, at most 200 records, allOrNone false: a bad record fails alone.

Quota: the rolling-24h allowance is read from Sforce-Limit-Info after every call; the source
stops before it eats into the reserve kept for other integrations. REQUEST_LIMIT_EXCEEDED is the
daily total ("TotalRequests": defer) or too many long concurrent requests ("ConcurrentRequests":
back off and retry).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from simple_salesforce.format import format_soql

from connector.errors import (
    ConfigError,
    InvalidRecordId,
    MappingError,
    QuotaExhausted,
    RateLimited,
    TransientError,
    WindowClosed,
)
from connector.http import build_requests_session, credential_tag
from connector.limiter import Limiter, LimitSpec
from connector.models import CrmField, CrmLead, RecordUpdate, WriteResult
from connector.registry import register_source
from connector.settings import SalesforceSettings
from connector.sources.base import RecordIdForm, VendorContext, chunked

T = TypeVar("T")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RECORD_IDS = RecordIdForm("salesforce", re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?"),
                          "15 or 18 letters and digits, like 00Q5e000001AbCdEAK")
# What Salesforce says about a malformed id in a query (INVALID_QUERY_FILTER_OPERATOR) or a
# record (MALFORMED_ID): a backstop, as ids are checked before they are sent.
_MALFORMED_ID = re.compile(r"(?:invalid ID field|id value of incorrect type): (.+)")
# Record-level errors a later attempt may get past without a change on our side.
_RETRYABLE_RECORD_ERRORS = {"UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUEST_RUNNING_TOO_LONG"}


class MeteredSession(requests.Session):
    """A requests session whose every request first takes a limiter permit."""

    def __init__(self, limiter: Limiter, spec: LimitSpec, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.limiter, self.spec, self.timeout = limiter, spec, timeout
        self.deadline: float | None = None
        self.calls = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        # simple-salesforce sets no timeout of its own; a stuck socket must not stall the night.
        kwargs.setdefault("timeout", self.timeout)
        # Passed per request: requests would let REQUESTS_CA_BUNDLE override session.verify.
        kwargs.setdefault("verify", self.verify)
        with self.limiter.acquire(self.spec, deadline=self.deadline):
            self.calls += 1
            return super().request(method, url, *args, **kwargs)


def parse_sf_datetime(value: str) -> datetime:
    """'2026-01-02T03:04:05.000+0000' (or ...Z) to an aware UTC datetime."""
    text = value.replace("Z", "+0000")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).astimezone(timezone.utc)
        except ValueError:
            continue
    raise ValueError(f"unrecognised Salesforce datetime {value!r}")


class SalesforceSource:
    name: ClassVar[str] = "salesforce"
    object_name = "Lead"

    def __init__(self, settings: SalesforceSettings, context: VendorContext) -> None:
        self.settings = settings
        self.time_scale = context.settings.time_scale
        self.write_batch_size = settings.write_batch_size
        missing = [k for k in ("client_id", "client_secret") if getattr(settings, k) is None]
        if settings.auth_flow == "password":
            missing += [k for k in ("username", "password") if getattr(settings, k) is None]
        if missing:
            raise ConfigError(
                f"sources.salesforce: missing {', '.join(missing)} for the {settings.auth_flow} flow",
                fix="set them in the settings file or as CONNECTOR_SOURCES__SALESFORCE__<KEY> variables",
            )
        assert settings.client_id is not None
        spec = LimitSpec(
            key=f"salesforce:{credential_tag(settings.client_id.get_secret_value())}",
            requests=settings.rate_limit.requests,
            per_seconds=settings.rate_limit.per_seconds / self.time_scale,
        )
        timeout = (settings.http.connect_timeout_seconds, settings.http.read_timeout_seconds)
        self.session = MeteredSession(context.limiter, spec, timeout)
        plain = build_requests_session(settings.http)
        self.session.verify = plain.verify
        for prefix, adapter in plain.adapters.items():
            self.session.mount(prefix, adapter)
        self._lock = threading.RLock()
        self._sf: Salesforce | None = None
        self._usage: tuple[int, int] | None = None

    # ---- auth -------------------------------------------------------------------------------

    def _token_request(self) -> dict[str, Any]:
        s = self.settings
        assert s.client_id is not None and s.client_secret is not None
        data = {"grant_type": "client_credentials", "client_id": s.client_id.get_secret_value(),
                "client_secret": s.client_secret.get_secret_value()}
        if s.auth_flow == "password":
            assert s.password is not None
            data.update(grant_type="password", username=s.username or "", password=s.password.get_secret_value())
        try:
            response = self.session.post(s.token_url, data=data)
        except requests.RequestException as exc:
            raise TransientError(f"Salesforce token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise TransientError(f"Salesforce token endpoint answered HTTP {response.status_code}")
        if response.status_code != 200:
            try:
                error = response.json().get("error", "")
            except ValueError:
                error = ""
            raise ConfigError(
                f"Salesforce refused the {s.auth_flow} login at {s.token_url} (HTTP {response.status_code} {error})",
                fix="check sources.salesforce client_id/client_secret (and username/password) and token_url",
            )
        return dict(response.json())

    def _client(self, *, renew: bool = False) -> Salesforce:
        with self._lock:
            if self._sf is None or renew:
                token = self._token_request()
                instance = self.settings.instance_url or token["instance_url"]
                self._sf = Salesforce(
                    session_id=token["access_token"], instance_url=instance,
                    session=self.session, version=self.settings.api_version,
                )
            return self._sf

    # ---- calls ------------------------------------------------------------------------------

    def _check_reserve(self) -> None:
        if self._usage is None:
            return
        used, total = self._usage
        allowed = int(total * (1 - self.settings.daily_reserve_fraction))
        if used >= allowed:
            raise QuotaExhausted(
                f"Salesforce API usage {used}/{total}: the rest is reserved for other integrations "
                f"(daily_reserve_fraction={self.settings.daily_reserve_fraction})",
                reason="quota",
            )

    def _call(self, action: Callable[[Salesforce], T], *, deadline: float | None, transient_attempts: int = 3) -> T:
        transient_left, backoff = transient_attempts, 0.5 / self.time_scale
        renewed = renew = False
        while True:
            if deadline is not None and time.time() >= deadline:
                raise WindowClosed("the window ended before the Salesforce call could start")
            self._check_reserve()
            self.session.deadline = deadline
            try:
                sf = self._client(renew=renew)
            except TransientError:  # the token endpoint failed (5xx, dropped connection): retried like a call
                transient_left -= 1
                if transient_left <= 0:
                    raise
                time.sleep(backoff)
                backoff *= 2
                continue
            renew = False
            try:
                result = action(sf)
                self._record_usage(sf)
                return result
            except SalesforceExpiredSession:
                if renewed:
                    raise ConfigError("Salesforce rejected a freshly issued session",
                                      fix="check the integration user's API permissions") from None
                renew = renewed = True
            except SalesforceRefusedRequest as exc:
                self._record_usage(sf)
                code, message = _first_error(exc)
                if code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" not in message.lower():
                    raise QuotaExhausted(f"Salesforce daily API limit reached: {message}", reason="quota") from None
                if code == "REQUEST_LIMIT_EXCEEDED":
                    error: TransientError = RateLimited(f"Salesforce: {message}", retry_after=backoff)
                else:
                    raise ConfigError(f"Salesforce refused the request: {code} {message}",
                                      fix="grant the integration user access to Lead and the mapped fields") from None
                transient_left -= 1
                if transient_left <= 0:
                    raise error from None
                time.sleep(backoff)
                backoff *= 2
            except SalesforceMalformedRequest as exc:
                code, message = _first_error(exc)
                malformed = _MALFORMED_ID.search(message)
                if malformed:
                    raise InvalidRecordId(malformed.group(1).strip(), source=self.name,
                                          expected=RECORD_IDS.expected) from None
                raise MappingError(f"Salesforce rejected the request: {code}: {message}",
                                   fix="check that every mapped field exists on Lead (connector check-mappings)") from None
            except (SalesforceError, requests.RequestException) as exc:
                transient_left -= 1
                if transient_left <= 0:
                    raise TransientError(f"Salesforce unavailable ({type(exc).__name__})") from None
                time.sleep(backoff)
                backoff *= 2

    def _record_usage(self, sf: Salesforce) -> None:
        usage = (sf.api_usage or {}).get("api-usage")
        if usage is not None:
            self._usage = (int(usage.used), int(usage.total))

    # ---- protocol ---------------------------------------------------------------------------

    def describe(self, *, deadline: float | None) -> dict[str, CrmField]:
        raw = self._call(lambda sf: getattr(sf, self.object_name).describe(), deadline=deadline)
        return {
            f["name"]: CrmField(
                name=f["name"], type=f["type"], length=f.get("length") or None,
                updateable=bool(f.get("updateable")),
                picklist_values=tuple(p["value"] for p in f.get("picklistValues") or [] if p.get("active", True)),
                restricted_picklist=bool(f.get("restrictedPicklist")),
                **_number_limits(f),
            )
            for f in raw["fields"]
        }

    def _select(self, fields: Sequence[str]) -> str:
        names = ["Id", "CreatedDate", *[f for f in fields if f not in ("Id", "CreatedDate")]]
        bad = [f for f in names if not _FIELD_NAME.match(f)]
        if bad:
            raise MappingError(f"not a Salesforce field name: {bad}", fix="correct the mapping file")
        return ", ".join(names)

    def _to_lead(self, record: dict[str, Any]) -> CrmLead:
        values = {k: v for k, v in record.items() if k != "attributes"}
        return CrmLead(RECORD_IDS.returned(str(record["Id"])), parse_sf_datetime(record["CreatedDate"]), values)

    def poll_new(self, *, since: datetime, fields: Sequence[str], deadline: float | None) -> Iterator[list[CrmLead]]:
        soql = format_soql(
            f"SELECT {self._select(fields)} FROM {self.object_name} "
            "WHERE CreatedDate >= {since} ORDER BY CreatedDate, Id",
            since=since.astimezone(timezone.utc),
        )
        headers = {"Sforce-Query-Options": f"batchSize={self.settings.query_page_size}"}
        page = self._call(lambda sf: sf.query(soql, headers=headers), deadline=deadline)
        seen_locators: set[str] = set()
        while True:
            yield [self._to_lead(r) for r in page["records"]]
            locator = page.get("nextRecordsUrl")
            if page.get("done", True) or not locator:
                return
            if locator in seen_locators:  # a server repeating a page must not loop us forever
                raise TransientError(f"Salesforce repeated query page {locator}")
            seen_locators.add(locator)
            page = self._call(lambda sf: sf.query_more(locator, identifier_is_url=True, headers=headers),
                              deadline=deadline)

    def read(self, *, record_ids: Sequence[str], fields: Sequence[str], deadline: float | None) -> list[CrmLead]:
        RECORD_IDS.check(record_ids)
        found: list[CrmLead] = []
        for ids in chunked(list(record_ids), 200):
            soql = format_soql(f"SELECT {self._select(fields)} FROM {self.object_name} WHERE Id IN {{ids}}", ids=list(ids))
            result = self._call(lambda sf: sf.query_all(soql), deadline=deadline)
            found.extend(self._to_lead(r) for r in result["records"])
        return found

    def write_batch(self, *, updates: Sequence[RecordUpdate], deadline: float | None) -> list[WriteResult]:
        if len(updates) > self.write_batch_size:
            raise ValueError(f"at most {self.write_batch_size} records per Salesforce batch")
        return RECORD_IDS.send_well_formed(updates, lambda good: self._write_records(good, deadline=deadline))

    def _write_records(self, updates: Sequence[RecordUpdate], *, deadline: float | None) -> list[WriteResult]:
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": self.object_name}, "id": u.record_id, **u.values} for u in updates],
        }
        # No blind retry of a write: after a timeout or a lost reply the CRM may have applied it.
        # The pipeline re-reads the records and confirms what is there before sending again.
        results = self._call(lambda sf: sf.restful("composite/sobjects", method="PATCH", json=body),
                             deadline=deadline, transient_attempts=1)
        out: list[WriteResult] = []
        for update_, result in zip(updates, results or [], strict=False):
            if result.get("success"):
                out.append(WriteResult(update_.record_id, True))
                continue
            errors = result.get("errors") or [{}]
            codes = [e.get("statusCode", "UNKNOWN") for e in errors]
            out.append(WriteResult(
                update_.record_id, False,
                reason="crm_rejected",
                message="; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors),
                fields=tuple(f for e in errors for f in e.get("fields") or []),
                retryable=all(c in _RETRYABLE_RECORD_ERRORS for c in codes),
            ))
        return out

    def close(self) -> None:
        self.session.close()


def _number_limits(f: dict[str, Any]) -> dict[str, Any]:
    """A number field's range and scale from describe: an int holds `digits` digits; a double,
    currency or percent `precision` digits of which `scale` are decimals (Salesforce answers
    NUMBER_OUTSIDE_VALID_RANGE past them, and rounds extra decimals half up)."""
    kind = str(f.get("type", "")).lower()
    if kind == "int":
        digits = int(f.get("digits") or 0)
        return {"min_value": -Decimal(10**digits - 1), "max_value": Decimal(10**digits - 1), "scale": 0} if digits else {}
    if kind in ("double", "currency", "percent"):
        precision, scale = int(f.get("precision") or 0), int(f.get("scale") or 0)
        if not precision:
            return {}
        high = Decimal(10) ** (precision - scale) - Decimal(10) ** -scale
        return {"min_value": -high, "max_value": high, "scale": scale}
    return {}


def _first_error(exc: SalesforceError) -> tuple[str, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "")), str(content[0].get("message", ""))
    return "", str(content)[:200]


@register_source("salesforce")
def create_salesforce_source(context: VendorContext) -> SalesforceSource:
    return SalesforceSource(context.settings.sources.salesforce, context)
