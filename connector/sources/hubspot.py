"""HubSpot contacts source on hubspot-api-client.

The client is built as `HubSpot(access_token=..., host=base_url, retry=Retry(total=0), ...)` with an
`api_factory` of our own. The factory builds each generated API once (the library would build a
new ApiClient and connection pool on every `client.crm.contacts.search_api` access) and replaces
the urllib3 pool manager of its REST client with `_MeteredPool`. Every HTTP request the library
makes passes through that pool, so every request first takes a limiter permit: searches on the
search spec (5/s per account), OAuth token refreshes on a token spec, everything else on the burst
spec. The number of requests HubSpot receives equals the limiter's grants on those keys. With
`Retry(total=0)` urllib3 never resends on its own.

Auth: a private-app token, or OAuth (client id/secret + refresh token against
{base_url}/oauth/v1/token). The OAuth token is renewed shortly before `expires_in` runs out and,
when HubSpot answers 401 (EXPIRED_AUTHENTICATION) anyway, renewed and the call repeated once: the
lead does not fail for it.

Polling: CRM search `createdate GTE since`, sorted by createdate then hs_object_id, 200 a page.
Search stops at 10,000 results per query, so before `after + limit` passes the cap the query
restarts from the last contact seen: `(createdate > last) OR (createdate = last AND
hs_object_id > last id)`. Contacts sharing that timestamp are neither lost nor repeated (ids
already yielded are dropped as well), however many share it.

Writes: batch update of at most 100 contacts. 200, or 207 with per-record StandardErrors
(OBJECT_NOT_FOUND, VALIDATION_ERROR): a bad record fails alone. A 400 naming unknown or read-only
properties fails the records that carry them and sends the others once more (a 400 applies
nothing). After a timeout or a 5xx the batch is never resent: TransientError, and the pipeline
re-reads and confirms.

Limits: 429 TEN_SECONDLY_ROLLING / SECONDLY pause the limiter key and retry (bounded); DAILY is
QuotaExhausted. Daily quota, two ways, and the source stops before eating into
`daily_reserve_fraction`: the burst spec carries `daily_quota = daily_limit x (1 - reserve)` on
the account's clock (`account_timezone`), so the limiter counts our counted calls per day (searches
and token refreshes do not count) and refuses past it; that is all OAuth apps have, as their calls
get no daily headers. Private apps also get X-HubSpot-RateLimit-Daily(-Remaining), the account's
use by every app: the source stops when that reaches the reserve too.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import urllib3
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.discovery.discovery_base import DiscoveryBase
from hubspot.oauth.exceptions import ApiException as OAuthApiException
from urllib3.util.retry import Retry

from connector.errors import (
    ConfigError,
    MappingError,
    QuotaExhausted,
    RateLimited,
    TransientError,
    WindowClosed,
)
from connector.http import credential_tag, retry_after_seconds
from connector.limiter import Limiter, LimitSpec, vendor_day
from connector.models import CrmField, CrmLead, RecordUpdate, WriteResult
from connector.registry import register_source
from connector.settings import HubSpotSettings
from connector.sources.base import RecordIdForm, VendorContext, chunked

log = logging.getLogger(__name__)
T = TypeVar("T")

API_ERRORS = (ContactsApiException, PropertiesApiException, OAuthApiException)
SEARCH_PAGE = 200
SEARCH_RESULT_CAP = 10_000
BATCH_LIMIT = 100
STRING_LENGTH = 65_536
RATE_LIMITED_ATTEMPTS = 6
_PROPERTY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RECORD_IDS = RecordIdForm("hubspot", re.compile(r"[0-9]{1,20}"), "the contact's record id: digits only, like 51")


class _BadRequest(Exception):
    """A 400 that the caller (write_batch) sorts out per record."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("message", ""))[:200])
        self.body = body


class _CallCount:
    """`source.session.calls`: what the pipeline reports as this CRM's calls."""

    def __init__(self) -> None:
        self.calls = 0


class _ObservedUsage:
    """The account's daily use as X-HubSpot-RateLimit-Daily(-Remaining) last reported it (private
    apps only), on the day of the account's clock it was reported."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.day = ""
        self.used = 0
        self.limit = 0

    def observe(self, day: str, limit: int, remaining: int) -> None:
        with self._lock:
            self.day, self.limit, self.used = day, limit, max(0, limit - remaining)

    def get(self, day: str) -> tuple[int, int] | None:
        with self._lock:
            return (self.used, self.limit) if self.day == day and self.limit else None


class _MeteredPool:
    """Stands in for the urllib3 pool manager of one generated ApiClient: every request the
    library sends goes through `HubSpotSource._send`, which takes a limiter permit first."""

    def __init__(self, pool: urllib3.PoolManager, source: HubSpotSource) -> None:
        self._pool = pool
        self._source = source

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._source.timeout
        path = urlsplit(url).path
        if path.rstrip("/").endswith("/oauth/v1/token"):
            kind = "token"
        elif method.upper() == "POST" and path.rstrip("/").endswith("/search"):
            kind = "search"
        else:
            kind = "api"
        return self._source._send(kind, lambda: self._pool.request(method, url, *args, **kwargs))

    def clear(self) -> None:
        self._pool.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def parse_hs_datetime(value: Any) -> datetime:
    """'2026-01-02T03:04:05.000Z' (or epoch ms digits) to an aware UTC datetime."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _epoch_ms(moment: datetime) -> int:
    return math.floor(moment.timestamp() * 1000)


def _wire(value: Any) -> str:
    """A value as HubSpot stores it: text; "" clears the property."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_body(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        body = json.loads(raw or "null")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


class HubSpotSource:
    name: ClassVar[str] = "hubspot"
    object_type = "contacts"

    def __init__(self, settings: HubSpotSettings, context: VendorContext) -> None:
        self.settings = settings
        self.limiter: Limiter = context.limiter
        self.time_scale = context.settings.time_scale
        self.write_batch_size = settings.write_batch_size
        if settings.auth == "private_app":
            missing = ["access_token"] if settings.access_token is None else []
        else:
            missing = [k for k in ("client_id", "client_secret", "refresh_token") if getattr(settings, k) is None]
        if missing:
            raise ConfigError(
                f"sources.hubspot: missing {', '.join(missing)} for auth {settings.auth}",
                fix="set them in the settings file or as CONNECTOR_SOURCES__HUBSPOT__<KEY> variables",
            )
        try:
            ZoneInfo(settings.account_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"sources.hubspot.account_timezone '{settings.account_timezone}' is not a time zone",
                              fix="use an IANA name such as America/New_York") from None
        secret = settings.access_token if settings.auth == "private_app" else settings.client_id
        assert secret is not None
        tag = credential_tag(secret.get_secret_value())
        # Counted calls (not searches, not token refreshes): the burst window per app, and the
        # daily allowance less the reserve, counted by the limiter on the account's clock (shared
        # by every worker with the Redis limiter). This is the count OAuth apps rely on.
        self.burst_spec = LimitSpec(
            key=f"hubspot:{tag}", requests=settings.rate_limit.requests,
            per_seconds=settings.rate_limit.per_seconds / self.time_scale,
            daily_quota=int(settings.daily_limit * (1 - settings.daily_reserve_fraction)),
            quota_timezone=settings.account_timezone, day_seconds=86400.0 / self.time_scale,
            realtime_reserve=context.settings.limiter.realtime_reserve,
        )
        self.search_spec = LimitSpec(key=f"hubspot-search:{tag}", requests=settings.search_rate_limit.requests,
                                     per_seconds=settings.search_rate_limit.per_seconds / self.time_scale)
        # Token refreshes count against no HubSpot limit; they are paced like the burst window.
        self.token_spec = LimitSpec(key=f"hubspot-oauth:{tag}", requests=settings.rate_limit.requests,
                                    per_seconds=settings.rate_limit.per_seconds / self.time_scale)
        self.observed = _ObservedUsage()
        self.realtime = context.realtime
        self.record_call = context.record_call
        self.timeout = urllib3.Timeout(connect=settings.http.connect_timeout_seconds,
                                       read=settings.http.read_timeout_seconds)
        self.session = _CallCount()
        self._local = threading.local()
        self._lock = threading.RLock()
        self._apis: dict[tuple[str, str], Any] = {}
        self._token: str | None = (settings.access_token.get_secret_value()
                                   if settings.auth == "private_app" and settings.access_token else None)
        self._token_expires_at = math.inf
        tls: dict[str, Any] = {"verify_ssl": settings.http.verify_tls}
        if settings.http.verify_tls and settings.http.ca_bundle is not None:
            tls["ssl_ca_cert"] = str(settings.http.ca_bundle)
        self.client = HubSpot(
            access_token=self._token,
            host=settings.base_url.rstrip("/"),
            retry=Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                        raise_on_status=False, respect_retry_after_header=False),
            api_factory=self._api_factory,
            client_side_validation=False,  # answers are read leniently; we check what we use
            **tls,
        )

    # ---- the client's plumbing ------------------------------------------------------------

    def _api_factory(self, package: Any, api_name: str, config: dict[str, Any]) -> Any:
        key = (package.__name__, api_name)
        with self._lock:
            api = self._apis.get(key)
            if api is None:
                api = DiscoveryBase._default_api_factory(package, api_name, config)
                rest = api.api_client.rest_client
                rest.pool_manager = _MeteredPool(rest.pool_manager, self)
                self._apis[key] = api
            if self._token is not None:
                api.api_client.configuration.access_token = self._token
            return api

    def _day(self) -> tuple[str, float]:
        """The account's current day (its label and when it ends), as the limiter counts it."""
        return vendor_day(self.burst_spec, time.time())

    def _check_reserve(self) -> None:
        """Private apps: stop when the account's use the headers reported reaches the reserve."""
        day, ends = self._day()
        seen = self.observed.get(day)
        if seen is None:
            return
        used, limit = seen
        allowed = int(limit * (1 - self.settings.daily_reserve_fraction))
        if used >= allowed:
            raise QuotaExhausted(
                f"HubSpot daily API usage {used}/{limit}: the rest is reserved for other integrations "
                f"(daily_reserve_fraction={self.settings.daily_reserve_fraction})",
                reason="quota", reset_at=ends,
            )

    def _send(self, kind: str, send: Callable[[], Any]) -> Any:
        """One HTTP request: the reserve check, a limiter permit (which also counts the day's
        calls and refuses past the quota), then the wire."""
        if kind == "api":
            self._check_reserve()
        spec = {"search": self.search_spec, "token": self.token_spec}.get(kind, self.burst_spec)
        with self.limiter.acquire(spec, deadline=getattr(self._local, "deadline", None), realtime=self.realtime):
            self.session.calls += 1
            if kind == "api" and self.record_call is not None:
                self.record_call(spec)
            response = send()
        if kind == "api":
            headers = getattr(response, "headers", None) or {}
            daily, remaining = headers.get("X-HubSpot-RateLimit-Daily"), headers.get("X-HubSpot-RateLimit-Daily-Remaining")
            if daily and remaining and daily.isdigit() and remaining.isdigit():
                self.observed.observe(self._day()[0], int(daily), int(remaining))
        return response

    # ---- auth -------------------------------------------------------------------------------

    def _set_token(self, token: str, expires_in: float | None) -> None:
        with self._lock:
            self._token = token
            self.client.access_token = token
            self._token_expires_at = time.time() + expires_in if expires_in else math.inf
            for api in self._apis.values():
                api.api_client.configuration.access_token = token

    def _renew(self) -> None:
        s = self.settings
        assert s.client_id is not None and s.client_secret is not None and s.refresh_token is not None
        try:
            answer = self.client.oauth.tokens_api.create(
                grant_type="refresh_token", client_id=s.client_id.get_secret_value(),
                client_secret=s.client_secret.get_secret_value(), refresh_token=s.refresh_token.get_secret_value(),
            )
        except API_ERRORS as exc:
            status = exc.status or 0
            if status == 0 or status >= 500 or status == 429:
                raise TransientError(f"HubSpot token endpoint answered HTTP {status}") from None
            code = _json_body(exc.body).get("status", "")
            raise ConfigError(
                f"HubSpot refused the OAuth refresh at {s.base_url}/oauth/v1/token (HTTP {status} {code})",
                fix="check sources.hubspot client_id, client_secret and refresh_token",
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"HubSpot token endpoint unreachable ({_cause(exc)})") from None
        if not getattr(answer, "access_token", None):
            raise TransientError("HubSpot token endpoint answered without an access token")
        expires_in = float(answer.expires_in) if getattr(answer, "expires_in", None) else None
        # Renew a little before the end, so a call never starts on a dying token.
        margin = min(60.0, expires_in / 10) if expires_in else 0.0
        self._set_token(answer.access_token, expires_in - margin if expires_in else None)

    def _ensure_token(self) -> None:
        if self.settings.auth != "oauth":
            return
        with self._lock:
            if self._token is None or time.time() >= self._token_expires_at:
                self._renew()

    # ---- calls ------------------------------------------------------------------------------

    def _call(self, action: Callable[[], T], *, deadline: float | None, what: str, search: bool = False,
              transient_attempts: int = 3, bad_request_to_caller: bool = False) -> T:
        transient_left, limited_left = transient_attempts, RATE_LIMITED_ATTEMPTS
        backoff = 0.5 / self.time_scale
        renewed = False
        while True:
            if deadline is not None and time.time() >= deadline:
                raise WindowClosed(f"the window ended before the HubSpot {what} could start")
            self._local.deadline = deadline
            error: TransientError
            try:
                self._ensure_token()
                return action()
            except API_ERRORS as exc:
                status = exc.status or 0
                body = _json_body(exc.body)
                category = str(body.get("category") or body.get("policyName") or "")
                message = str(body.get("message") or exc.reason or "")[:300]
                if status == 401:
                    if self.settings.auth == "oauth" and not renewed:
                        log.info("HubSpot: %s; renewing the OAuth token", category or "401")
                        with self._lock:
                            self._token_expires_at = 0.0
                        renewed = True
                        continue
                    raise ConfigError(f"HubSpot rejected the credentials ({category}: {message})",
                                      fix="check sources.hubspot access_token (or the OAuth app's refresh token)") from None
                if status == 429:
                    policy = str(body.get("policyName") or "")
                    if policy == "DAILY":
                        raise QuotaExhausted(f"HubSpot daily limit reached: {message}", reason="quota",
                                             reset_at=self._day()[1]) from None
                    spec = self.search_spec if (search or policy == "SECONDLY") else self.burst_spec
                    pause = retry_after_seconds(exc.headers, self.time_scale)
                    interval = (exc.headers or {}).get("X-HubSpot-RateLimit-Interval-Milliseconds")
                    if pause is None and interval and str(interval).isdigit() and not search:
                        pause = int(interval) / 1000
                    self.limiter.pause(spec.key, pause if pause is not None else spec.per_seconds)
                    limited_left -= 1
                    if limited_left <= 0:
                        raise RateLimited(f"HubSpot kept answering 429 {policy or ''}: {message}",
                                          retry_after=pause) from None
                    continue
                if status == 403:
                    raise ConfigError(f"HubSpot refused the {what} (403 {category}: {message})",
                                      fix="grant the app the crm.objects.contacts.read/write scopes") from None
                if status == 0 or status >= 500 or status == 408:
                    error = TransientError(f"HubSpot unavailable during the {what} "
                                           f"({'HTTP ' + str(status) if status else _reason(exc)})")
                elif status == 400 and bad_request_to_caller:
                    raise _BadRequest(body) from None
                elif status == 400 and category == "VALIDATION_ERROR":
                    raise MappingError(f"HubSpot rejected the {what}: {message}",
                                       fix="check that every mapped property exists on contacts "
                                           "(connector check-mappings)") from None
                else:
                    raise TransientError(f"HubSpot answered HTTP {status} to the {what}: {category} {message}") from None
            except urllib3.exceptions.HTTPError as exc:
                error = TransientError(f"HubSpot unavailable during the {what} ({_cause(exc)})")
            except TransientError as exc:  # the OAuth refresh failed (5xx, dropped connection): retried like a call
                error = exc
            transient_left -= 1
            if transient_left <= 0:
                raise error
            if deadline is not None and time.time() + backoff >= deadline:
                raise error
            time.sleep(backoff)
            backoff *= 2

    def _contacts(self) -> Any:
        return self.client.crm.contacts

    def _props(self, fields: Sequence[str]) -> list[str]:
        names = list(dict.fromkeys(["hs_object_id", "createdate", *fields]))
        bad = [f for f in names if not _PROPERTY_NAME.match(f)]
        if bad:
            raise MappingError(f"not a HubSpot property name: {bad}", fix="correct the mapping file")
        return names

    @staticmethod
    def _to_lead(obj: Any, props: Sequence[str]) -> CrmLead:
        properties = dict(getattr(obj, "properties", None) or {})
        created = properties.get("createdate") or getattr(obj, "created_at", None)
        values = {name: properties.get(name) for name in props}
        return CrmLead(RECORD_IDS.returned(str(obj.id)), parse_hs_datetime(created), values)

    # ---- protocol ---------------------------------------------------------------------------

    def describe(self, *, deadline: float | None) -> dict[str, CrmField]:
        properties_api = self.client.crm.properties.core_api
        answer = self._call(lambda: properties_api.get_all(object_type=self.object_type, archived=False),
                            deadline=deadline, what="properties read")
        out: dict[str, CrmField] = {}
        for prop in answer.results or []:
            meta = prop.modification_metadata
            read_only = bool(getattr(meta, "read_only_value", False)) or bool(prop.calculated)
            kind, length, options = str(prop.type or "string"), None, ()
            if kind == "number":
                # HubSpot has one number type; decimals are valid in every number property.
                kind = "double"
            elif kind == "enumeration":
                kind = "multipicklist" if prop.field_type == "checkbox" else "picklist"
                options = tuple(str(o.value) for o in prop.options or [] if not getattr(o, "hidden", False))
            elif kind in ("string", "phone_number"):
                kind, length = "string", STRING_LENGTH
            elif kind == "bool":
                kind = "boolean"
            # HubSpot refuses a value that is not one of an enumeration's options (INVALID_OPTION).
            out[prop.name] = CrmField(name=prop.name, type=kind, length=length, updateable=not read_only,
                                      picklist_values=options, restricted_picklist=kind.endswith("picklist"))
        return out

    def _search_body(self, props: list[str], since_ms: int, last: tuple[int, str] | None, after: int) -> dict[str, Any]:
        if last is None:
            groups = [{"filters": [{"propertyName": "createdate", "operator": "GTE", "value": str(since_ms)}]}]
        else:
            last_ms, last_id = last
            groups = [
                {"filters": [{"propertyName": "createdate", "operator": "GT", "value": str(last_ms)}]},
                {"filters": [{"propertyName": "createdate", "operator": "EQ", "value": str(last_ms)},
                             {"propertyName": "hs_object_id", "operator": "GT", "value": last_id}]},
            ]
        return {
            "filterGroups": groups,
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"},
                      {"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": props,
            "limit": SEARCH_PAGE,
            "after": str(after),
        }

    def poll_new(self, *, since: datetime, fields: Sequence[str], deadline: float | None) -> Iterator[list[CrmLead]]:
        props = self._props(fields)
        search_api = self._contacts().search_api
        since_ms = _epoch_ms(since)
        last: tuple[int, str] | None = None  # (createdate ms, id) of the last contact yielded
        restart_from: tuple[int, str] | None = None  # the lower bound of the current query
        seen: set[str] = set()
        after = 0
        while True:
            if after + SEARCH_PAGE > SEARCH_RESULT_CAP:
                # The next page would pass HubSpot's 10,000-result cap: restart from the last
                # contact seen (its timestamp, then ids above it), so ties are all kept.
                if last is None or last == restart_from:
                    raise TransientError("HubSpot search made no progress within 10,000 results")
                restart_from, after = last, 0
            body = self._search_body(props, since_ms, restart_from, after)
            page = self._call(lambda body=body: search_api.do_search(public_object_search_request=body),
                              deadline=deadline, what="contact search", search=True)
            leads: list[CrmLead] = []
            for obj in page.results or []:
                lead = self._to_lead(obj, props)
                if lead.record_id in seen:
                    continue
                seen.add(lead.record_id)
                leads.append(lead)
                key = (_epoch_ms(lead.created_at), lead.record_id)
                if last is None or (key[0], _id_order(key[1])) > (last[0], _id_order(last[1])):
                    last = key
            if leads:
                yield leads
            paging = getattr(page, "paging", None)
            following = getattr(getattr(paging, "next", None), "after", None)
            if following in (None, "") or not page.results:
                return
            after = int(following)

    def read(self, *, record_ids: Sequence[str], fields: Sequence[str], deadline: float | None) -> list[CrmLead]:
        RECORD_IDS.check(record_ids)
        props = self._props(fields)
        batch_api = self._contacts().batch_api
        found: list[CrmLead] = []
        for ids in chunked(list(dict.fromkeys(record_ids)), BATCH_LIMIT):
            body = BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=str(i)) for i in ids], properties=props, properties_with_history=[])
            answer = self._call(
                lambda body=body: batch_api.read(batch_read_input_simple_public_object_id=body, archived=False),
                deadline=deadline, what="batch read")
            found.extend(self._to_lead(obj, props) for obj in answer.results or [])
        return found

    def write_batch(self, *, updates: Sequence[RecordUpdate], deadline: float | None) -> list[WriteResult]:
        if len(updates) > self.write_batch_size:
            raise ValueError(f"at most {self.write_batch_size} records per HubSpot batch")
        return RECORD_IDS.send_well_formed(
            updates, lambda good: self._write(good, deadline=deadline, split_allowed=True))

    def _write(self, updates: list[RecordUpdate], *, deadline: float | None, split_allowed: bool) -> list[WriteResult]:
        batch_api = self._contacts().batch_api
        body = BatchInputSimplePublicObjectBatchInput(inputs=[
            SimplePublicObjectBatchInput(id=u.record_id, properties={k: _wire(v) for k, v in u.values.items()})
            for u in updates
        ])
        try:
            # No blind retry of a write: after a timeout or a lost reply HubSpot may have applied
            # it. The pipeline re-reads the records and confirms before sending again.
            answer = self._call(lambda: batch_api.update(batch_input_simple_public_object_batch_input=body),
                                deadline=deadline, what="batch update", transient_attempts=1,
                                bad_request_to_caller=True)
        except _BadRequest as exc:
            return self._sort_out_bad_request(updates, exc.body, deadline=deadline, split_allowed=split_allowed)
        raw = batch_api.api_client.sanitize_for_serialization(answer) or {}
        succeeded = {str(r.get("id")) for r in raw.get("results") or [] if isinstance(r, dict)}
        failures: dict[str, list[dict[str, Any]]] = {}
        for error in raw.get("errors") or []:
            for record_id in (error.get("context") or {}).get("ids") or []:
                failures.setdefault(str(record_id), []).append(error)
        out: list[WriteResult] = []
        for update_ in updates:
            errors = failures.get(update_.record_id)
            if errors:
                out.append(WriteResult(
                    update_.record_id, False, reason="crm_rejected",
                    message="; ".join(f"{e.get('category')}: {e.get('message')}" for e in errors)[:2000],
                    fields=tuple(dict.fromkeys(f for e in errors for f in _error_fields(e))),
                ))
            elif update_.record_id in succeeded:
                out.append(WriteResult(update_.record_id, True))
            else:
                out.append(WriteResult(update_.record_id, False, reason="crm_rejected",
                                       message="HubSpot returned no result for this record", retryable=True))
        return out

    def _sort_out_bad_request(self, updates: list[RecordUpdate], body: dict[str, Any], *, deadline: float | None,
                              split_allowed: bool) -> list[WriteResult]:
        """A 400 refuses the whole batch (nothing applied). When it names properties (unknown or
        read-only), the records carrying them fail and the others are sent once more."""
        message = f"{body.get('category', 'VALIDATION_ERROR')}: {body.get('message', '')}"[:2000]
        bad = set(_error_fields(body))
        results: dict[str, WriteResult] = {}
        clean: list[RecordUpdate] = []
        for update_ in updates:
            hit = tuple(f for f in update_.values if f in bad)
            if hit or not bad:
                results[update_.record_id] = WriteResult(update_.record_id, False, reason="crm_rejected",
                                                         message=message, fields=hit)
            else:
                clean.append(update_)
        if clean and split_allowed:
            for result in self._write(clean, deadline=deadline, split_allowed=False):
                results[result.record_id] = result
        elif clean:
            for update_ in clean:
                results[update_.record_id] = WriteResult(update_.record_id, False, reason="crm_rejected",
                                                         message=message)
        return [results[u.record_id] for u in updates]

    def close(self) -> None:
        with self._lock:
            for api in self._apis.values():
                try:
                    api.api_client.rest_client.pool_manager.clear()
                    api.api_client.close()
                except Exception as exc:  # noqa: BLE001  (closing must not hide the run's outcome)
                    log.debug("HubSpot: closing a client failed (%s)", type(exc).__name__)
            self._apis.clear()


def _id_order(record_id: str) -> tuple[int, int | str]:
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def _error_fields(error: dict[str, Any]) -> list[str]:
    """Property names a StandardError (or a 400 body) blames."""
    names: list[str] = []
    for detail in error.get("errors") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("in"):
            names.append(str(detail["in"]))
        for name in (detail.get("context") or {}).get("propertyName") or []:
            names.append(str(name))
    message = str(error.get("message") or "")
    _, _, listed = message.partition("Property values were not valid: ")
    if listed:
        try:
            for item in json.loads(listed):
                if isinstance(item, dict) and item.get("name"):
                    names.append(str(item["name"]))
        except ValueError:
            pass
    return list(dict.fromkeys(names))


def _cause(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__


def _reason(exc: Any) -> str:
    text = str(getattr(exc, "reason", "") or "")
    return text.split("\n", 1)[0][:120] or type(exc).__name__


@register_source("hubspot")
def create_hubspot_source(context: VendorContext) -> HubSpotSource:
    return HubSpotSource(context.settings.sources.hubspot, context)
