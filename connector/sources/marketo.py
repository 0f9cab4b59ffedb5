"""Marketo lead source on httpx, every call through MeteredHttp (limiter permit per attempt).

Auth: an identity token by client credentials (GET {identity_url}/oauth/token). Marketo answers
601 (invalid) / 602 (expired) in an HTTP 200 body when a token dies; the source fetches a new one
and repeats the call once (such refusals are not executed), so the lead does not fail for it.

New leads: the "New Lead" activity type id is read from activities/types.json (never assumed),
then pagingtoken.json?sinceDatetime= gives the first token and activities.json is read with
nextPageToken until moreResult is false; pages without results (or with zero results while
moreResult is true) are normal. The lead ids are then hydrated with leads.json?filterType=id
(at most 300 ids a call; POST with _method=GET when the URI would pass 8 KB). CrmLead.created_at
is the lead's createdAt.

Writes: leads.json action updateOnly, lookupField id, at most 300 records; results come in input
order with status updated / skipped (+ reasons): a skipped record fails alone. After a timeout or a
5xx a write is never resent by the source (TransientError; the pipeline re-reads and confirms).

Errors arrive in HTTP 200 bodies (success: false): 606 rate -> RateLimited with the vendor's
window, 615 concurrency -> RateLimited with a short backoff (both pause the shared limiter key,
every worker's, then retry), 607 daily quota -> QuotaExhausted(reason="quota", reset_at = Marketo's
next midnight). An HTTP 429 is read the same way: the code in its body when it has one, else a
rate limit pausing the key for Retry-After or the vendor's window; never a plain transient error,
so it is neither retried at once nor counted as an outage. 601/602 -> renew the token and retry
once, 600/603 -> ConfigError, 604/608/611/613/614/713 and 5xx -> TransientError, request-shape
codes -> RejectedRequest (1006 on a read -> MappingError). success: false is never taken for
success. Record ids are whole numbers: a malformed one is InvalidRecordId before any call.

Quota: Marketo sends no usage headers. The limiter spec carries `daily_quota = daily_quota x
(1 - daily_reserve_fraction)` on Marketo's day (midnight America/Chicago), so the limiter counts
every REST call (identity calls are not counted by Marketo and go on a spec of their own) and
refuses with QuotaExhausted before the reserve is eaten; with the Redis limiter the count is
shared by every worker. The spec also carries max_in_flight.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from connector.errors import (
    ConfigError,
    ConnectorError,
    MappingError,
    QuotaExhausted,
    RateLimited,
    RejectedRequest,
    TransientError,
)
from connector.http import MeteredHttp, RetryPolicy, build_httpx_client, credential_tag, retry_after_seconds
from connector.limiter import LimitSpec, vendor_day
from connector.models import CrmField, CrmLead, RecordUpdate, WriteResult
from connector.registry import register_source
from connector.settings import MarketoSettings
from connector.sources.base import RecordIdForm, VendorContext, chunked

log = logging.getLogger(__name__)

MARKETO_TIMEZONE = "America/Chicago"  # the Marketo day starts at midnight US Central
NEW_LEAD_TYPE = "New Lead"
BATCH_LIMIT = 300
MAX_URI_BYTES = 8192
INT_MAX = Decimal(2**31 - 1)
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RECORD_IDS = RecordIdForm("marketo", re.compile(r"[0-9]{1,16}"), "the lead's id: a whole number, like 5001")
_RATE_WINDOW = re.compile(r"with\s*in\s*'?(\d+(?:\.\d+)?)'?\s*sec", re.IGNORECASE)
_TRANSIENT_CODES = {"502", "604", "608", "611", "613", "614", "713"}
_CONFIG_CODES = {"600", "603"}
_TOKEN_CODES = {"601", "602"}
_TYPES = {
    "integer": "int",
    "float": "double",
    "currency": "double",
    "string": "string",
    "text": "string",
    "email": "string",
    "url": "string",
    "phone": "string",
    "boolean": "boolean",
    "datetime": "datetime",
    "date": "date",
}


class _TokenRejected(ConnectorError):
    """601/602: the token is dead; the request was not executed."""

    reason = "token_rejected"


class _CallCount:
    """`source.session.calls`: what the pipeline reports as this CRM's calls."""

    def __init__(self) -> None:
        self.calls = 0


def parse_mkto_datetime(value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _first_error(body: dict[str, Any]) -> tuple[str, str]:
    errors = body.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    return str(first.get("code", "")), str(first.get("message", ""))[:300]


class MarketoSource:
    name: ClassVar[str] = "marketo"
    object_name = "lead"

    def __init__(self, settings: MarketoSettings, context: VendorContext) -> None:
        self.settings = settings
        self.time_scale = context.settings.time_scale
        self.write_batch_size = settings.write_batch_size
        missing = [k for k in ("client_id", "client_secret") if getattr(settings, k) is None]
        if missing:
            raise ConfigError(
                f"sources.marketo: missing {', '.join(missing)}",
                fix="set them in the settings file or as CONNECTOR_SOURCES__MARKETO__<KEY> variables",
            )
        assert settings.client_id is not None
        tag = credential_tag(settings.client_id.get_secret_value())
        # REST calls: 100 per 20 s, max_in_flight at once, and the daily quota less the reserve,
        # counted by the limiter per Marketo day (midnight America/Chicago) and refused past it.
        self.spec = LimitSpec(
            key=f"marketo:{tag}", requests=settings.rate_limit.requests,
            per_seconds=settings.rate_limit.per_seconds / self.time_scale, max_in_flight=settings.max_in_flight,
            daily_quota=int(settings.daily_quota * (1 - settings.daily_reserve_fraction)),
            quota_timezone=MARKETO_TIMEZONE, day_seconds=86400.0 / self.time_scale,
            realtime_reserve=context.settings.limiter.realtime_reserve,
        )
        # Identity calls count against no Marketo limit; they are paced like the REST calls.
        self.identity_spec = LimitSpec(key=f"marketo-identity:{tag}", requests=settings.rate_limit.requests,
                                       per_seconds=settings.rate_limit.per_seconds / self.time_scale)
        self.session = _CallCount()
        self.client = build_httpx_client(settings.http, base_url=settings.rest_url, headers={"Accept": "application/json"},
                                         max_connections=settings.max_in_flight)
        record = context.record_call

        def counted() -> None:
            self.session.calls += 1
            if record is not None:
                record(self.spec)

        def uncounted() -> None:
            self.session.calls += 1

        common = {"client": self.client, "limiter": context.limiter, "time_scale": self.time_scale,
                  "realtime": context.realtime}
        self._identity = MeteredHttp(spec=self.identity_spec, classify=self._classify_identity, on_call=uncounted,
                                     **common)
        self._reads = MeteredHttp(spec=self.spec, classify=self._classify, on_call=counted, **common)
        # A write is sent once: after a timeout or a 5xx the pipeline re-reads and confirms.
        self._writes = MeteredHttp(spec=self.spec, classify=self._classify, on_call=counted,
                                   policy=RetryPolicy(transient_attempts=1), **common)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._new_lead_type: int | None = None

    # ---- classification -----------------------------------------------------------------------

    def _classify_identity(self, response: httpx.Response) -> ConnectorError | None:
        if response.status_code == 200:
            return None
        if response.status_code == 429:  # the identity key pauses (its window, or Retry-After)
            return RateLimited("Marketo identity endpoint answered HTTP 429",
                               retry_after=retry_after_seconds(response.headers, self.time_scale))
        if response.status_code >= 500:
            return TransientError(f"Marketo identity endpoint answered HTTP {response.status_code}")
        try:
            error = response.json().get("error", "")
        except ValueError:
            error = ""
        return ConfigError(
            f"Marketo refused the client-credentials token request (HTTP {response.status_code} {error})",
            fix="check sources.marketo client_id/client_secret and identity_url (Admin > Web Services)",
        )

    def _classify(self, response: httpx.Response) -> ConnectorError | None:
        status = response.status_code
        if status == 414:
            return RejectedRequest("Marketo refused a URI over 8 KB (414)")
        if status == 413:
            return RejectedRequest("Marketo refused a request body over 1 MB (413)")
        if status == 429:
            return self._classify_429(response)
        if status != 200:
            return TransientError(f"Marketo answered HTTP {status}")
        try:
            body = response.json()
        except ValueError:
            return TransientError("Marketo answered HTTP 200 without a JSON body")
        if not isinstance(body, dict):
            return TransientError("Marketo answered with an unexpected body")
        if body.get("success") is True:
            return None
        code, message = _first_error(body)
        limited = self._limit_error(code, message, retry_after=None)
        if limited is not None:
            return limited
        if code in _TOKEN_CODES:
            return _TokenRejected(f"Marketo {code}: {message}")
        if code in _CONFIG_CODES:
            return ConfigError(f"Marketo refused the request ({code}: {message})",
                               fix="check the API user's role (Read-Write Lead) and the IP allow list")
        if code in _TRANSIENT_CODES:
            return TransientError(f"Marketo {code}: {message}")
        if code == "702":  # no data found: an empty answer, not an error
            return None
        if not code:
            return TransientError("Marketo answered success: false without an error code")
        return RejectedRequest(f"Marketo {code}: {message}")

    def _limit_error(self, code: str, message: str, *, retry_after: float | None) -> ConnectorError | None:
        """Marketo's limit codes: 606 rate and 615 concurrency pause the shared limiter key (the
        RateLimited's retry_after, which MeteredHttp hands to limiter.pause), 607 is the day's quota."""
        if code == "606":
            match = _RATE_WINDOW.search(message)
            window = float(match.group(1)) / self.time_scale if match else self.spec.per_seconds
            return RateLimited(f"Marketo 606: {message}", retry_after=max(window, retry_after or 0.0))
        if code == "615":
            return RateLimited(f"Marketo 615: {message}", retry_after=max(0.5 / self.time_scale, retry_after or 0.0))
        if code == "607":
            return QuotaExhausted(f"Marketo 607: {message}", reason="quota",
                                  reset_at=vendor_day(self.spec, time.time())[1])
        return None

    def _classify_429(self, response: httpx.Response) -> ConnectorError:
        """HTTP 429 (a gateway in front of the REST API): the Marketo code in its body when there
        is one, else a rate limit for Retry-After or, without it, the vendor's window."""
        retry_after = retry_after_seconds(response.headers, self.time_scale)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            limited = self._limit_error(*_first_error(body), retry_after=retry_after)
            if limited is not None:
                return limited
        return RateLimited("Marketo answered HTTP 429",
                           retry_after=retry_after if retry_after is not None else self.spec.per_seconds)

    # ---- auth and requests ------------------------------------------------------------------

    def _fetch_token(self, *, deadline: float | None) -> str:
        s = self.settings
        assert s.client_id is not None and s.client_secret is not None
        params = {"grant_type": "client_credentials", "client_id": s.client_id.get_secret_value(),
                  "client_secret": s.client_secret.get_secret_value()}
        response = self._identity.request("GET", f"{s.identity_url.rstrip('/')}/oauth/token", params=params,
                                          deadline=deadline)
        token = response.json().get("access_token")
        if not token:
            raise TransientError("Marketo identity endpoint answered without an access token")
        return str(token)

    def _authorization(self, *, deadline: float | None, renew: bool = False) -> dict[str, str]:
        with self._lock:
            if self._token is None or renew:
                self._token = self._fetch_token(deadline=deadline)
            return {"Authorization": f"Bearer {self._token}"}

    def _rest(self, method: str, path: str, *, deadline: float | None, params: list[tuple[str, str]] | None = None,
              json: Any = None, write: bool = False) -> dict[str, Any]:
        """One REST call; a GET whose URI would pass 8 KB goes as POST with _method=GET."""
        http = self._writes if write else self._reads
        url = f"/v1/{path}"
        kwargs: dict[str, Any] = {}
        if method == "GET" and params:
            probe = httpx.URL(self.settings.rest_url.rstrip("/") + url, params=params)
            if len(probe.raw_path) > MAX_URI_BYTES - 256:
                method, kwargs["data"] = "POST", dict(_merge(params)) | {"_method": "GET"}
                kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded"}
            else:
                kwargs["params"] = params
        if json is not None:
            kwargs["json"] = json
        renewed = False
        while True:
            headers = {**kwargs.get("headers", {}), **self._authorization(deadline=deadline)}
            try:
                response = http.request(method, url, deadline=deadline, **{**kwargs, "headers": headers})
            except _TokenRejected as exc:
                if renewed:
                    raise ConfigError(f"Marketo rejected a freshly issued token ({exc.message})",
                                      fix="check the API user and the LaunchPoint service") from None
                log.info("Marketo: %s; fetching a new token", exc.message)
                self._authorization(deadline=deadline, renew=True)
                renewed = True
                continue
            return dict(response.json())

    # ---- protocol ---------------------------------------------------------------------------

    def describe(self, *, deadline: float | None) -> dict[str, CrmField]:
        body = self._rest("GET", "leads/describe.json", deadline=deadline)
        out: dict[str, CrmField] = {}
        for item in body.get("result") or []:
            rest = item.get("rest")
            if not isinstance(rest, dict) or not rest.get("name"):
                continue  # not usable through the REST API
            data_type = str(item.get("dataType") or "string")
            kind = _TYPES.get(data_type, data_type)
            length = item.get("length") if kind == "string" else None
            # An integer field holds a 32-bit number: Marketo skips the record (1001) past it.
            limits = {"min_value": -INT_MAX, "max_value": INT_MAX, "scale": 0} if kind == "int" else {}
            out[rest["name"]] = CrmField(name=rest["name"], type=kind, length=int(length) if length else None,
                                         updateable=not rest.get("readOnly", False), **limits)
        return out

    def _new_lead_type_id(self, *, deadline: float | None) -> int:
        if self._new_lead_type is None:
            body = self._rest("GET", "activities/types.json", deadline=deadline)
            for item in body.get("result") or []:
                if str(item.get("name", "")).strip().lower() == NEW_LEAD_TYPE.lower():
                    self._new_lead_type = int(item["id"])
                    break
            else:
                raise ConfigError("Marketo lists no 'New Lead' activity type (activities/types.json)",
                                  fix="check the API user's Read-Only Activity permission")
        return self._new_lead_type

    def _fields(self, fields: Sequence[str]) -> list[str]:
        names = list(dict.fromkeys(["id", "createdAt", *fields]))
        bad = [f for f in names if not _FIELD_NAME.match(f)]
        if bad:
            raise MappingError(f"not a Marketo field name: {bad}", fix="correct the mapping file")
        return names

    def _to_lead(self, record: dict[str, Any], names: Sequence[str]) -> CrmLead:
        values = {name: record.get(name) for name in names}  # a field not returned is null
        return CrmLead(RECORD_IDS.returned(str(record["id"])), parse_mkto_datetime(str(record["createdAt"])), values)

    def _leads_by_id(self, ids: Sequence[str], names: list[str], *, deadline: float | None) -> list[CrmLead]:
        found: list[CrmLead] = []
        for chunk in chunked(list(dict.fromkeys(str(i) for i in ids)), BATCH_LIMIT):
            params = [("filterType", "id"), ("filterValues", ",".join(chunk)), ("fields", ",".join(names)),
                      ("batchSize", str(BATCH_LIMIT))]
            seen_tokens: set[str] = set()
            while True:
                try:
                    body = self._rest("GET", "leads.json", params=params, deadline=deadline)
                except RejectedRequest as exc:
                    if "1006" in exc.message:
                        raise MappingError(f"Marketo: {exc.message}",
                                           fix="check that every mapped field exists on the lead (REST API name)") from None
                    raise
                found.extend(self._to_lead(r, names) for r in body.get("result") or [] if r.get("createdAt"))
                token = body.get("nextPageToken")
                if not body.get("moreResult") or not token:
                    break
                if token in seen_tokens:
                    raise TransientError("Marketo repeated a leads.json page token")
                seen_tokens.add(token)
                params = [p for p in params if p[0] != "nextPageToken"] + [("nextPageToken", token)]
        return found

    def poll_new(self, *, since: datetime, fields: Sequence[str], deadline: float | None) -> Iterator[list[CrmLead]]:
        names = self._fields(fields)
        type_id = self._new_lead_type_id(deadline=deadline)
        since_text = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # floor: never later
        token = self._rest("GET", "activities/pagingtoken.json", params=[("sinceDatetime", since_text)],
                           deadline=deadline).get("nextPageToken")
        pending: list[str] = []
        seen: set[str] = set()
        repeats = 0
        while True:
            if not token:
                raise TransientError("Marketo answered without a nextPageToken")
            body = self._rest("GET", "activities.json", deadline=deadline, params=[
                ("activityTypeIds", str(type_id)), ("nextPageToken", str(token)), ("batchSize", str(BATCH_LIMIT))])
            for activity in body.get("result") or []:  # an empty page has no result at all
                lead_id = str(activity.get("leadId") or "")
                if lead_id and lead_id not in seen:
                    RECORD_IDS.returned(lead_id)
                    seen.add(lead_id)
                    pending.append(lead_id)
            more = bool(body.get("moreResult"))
            while len(pending) >= BATCH_LIMIT or (pending and not more):
                batch, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
                leads = [lead for lead in self._leads_by_id(batch, names, deadline=deadline) if lead.created_at >= since]
                leads.sort(key=lambda lead: (lead.created_at, int(lead.record_id)))
                if leads:
                    yield leads
            if not more:
                return
            following = body.get("nextPageToken")
            repeats = repeats + 1 if following == token else 0
            if repeats >= 3:
                raise TransientError("Marketo kept answering the same activities page token")
            token = following

    def read(self, *, record_ids: Sequence[str], fields: Sequence[str], deadline: float | None) -> list[CrmLead]:
        RECORD_IDS.check(record_ids)
        return self._leads_by_id(list(record_ids), self._fields(fields), deadline=deadline)

    def write_batch(self, *, updates: Sequence[RecordUpdate], deadline: float | None) -> list[WriteResult]:
        if len(updates) > self.write_batch_size:
            raise ValueError(f"at most {self.write_batch_size} records per Marketo batch")
        return RECORD_IDS.send_well_formed(updates, lambda good: self._write_records(good, deadline=deadline))

    def _write_records(self, updates: Sequence[RecordUpdate], *, deadline: float | None) -> list[WriteResult]:
        body = {
            "action": "updateOnly",
            "lookupField": "id",
            "input": [{**u.values, "id": int(u.record_id) if u.record_id.isdigit() else u.record_id} for u in updates],
        }
        # No blind retry of a write: after a timeout or a lost reply Marketo may have applied it.
        answer = self._rest("POST", "leads.json", json=body, deadline=deadline, write=True)
        results = answer.get("result") or []
        out: list[WriteResult] = []
        for i, update_ in enumerate(updates):
            result = results[i] if i < len(results) and isinstance(results[i], dict) else None
            if result is None:
                out.append(WriteResult(update_.record_id, False, reason="crm_rejected",
                                       message="Marketo returned no result for this record", retryable=True))
            elif result.get("status") in ("updated", "created"):
                out.append(WriteResult(update_.record_id, True))
            else:
                reasons = result.get("reasons") or [{"code": "", "message": f"status {result.get('status')}"}]
                named = [m.group(1) for r in reasons for m in re.finditer(r"[Ff]ield '([^']+)'", str(r.get("message")))]
                out.append(WriteResult(
                    update_.record_id, False, reason="crm_rejected",
                    message="; ".join(f"{r.get('code')}: {r.get('message')}" for r in reasons)[:2000],
                    fields=tuple(dict.fromkeys(n for n in named if n in update_.values)),
                ))
        return out

    def close(self) -> None:
        self.client.close()


def _merge(params: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for key, value in params:
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged


@register_source("marketo")
def create_marketo_source(context: VendorContext) -> MarketoSource:
    return MarketoSource(context.settings.sources.marketo, context)
