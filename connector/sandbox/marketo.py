"""Marketo Engage emulator: the identity endpoint and the Lead Database REST calls a lead-sync
connector uses, served over plain HTTP on 127.0.0.1 (the connector's Marketo source uses httpx).

Routes
------
* ``GET|POST /identity/oauth/token?grant_type=client_credentials&client_id=..&client_secret=..``
* ``GET  /rest/v1/activities/types.json``
* ``GET  /rest/v1/activities/pagingtoken.json?sinceDatetime=<ISO 8601>``
* ``GET  /rest/v1/activities.json?nextPageToken=..&activityTypeIds=12[&batchSize=..][&leadIds=..]``
* ``GET  /rest/v1/leads.json?filterType=..&filterValues=..[&fields=..][&batchSize=..][&nextPageToken=..]``
  (also ``POST`` with ``_method=GET`` and the parameters in a form body; this works for every GET route)
* ``GET  /rest/v1/lead/<id>.json[?fields=..]``
* ``POST /rest/v1/leads.json`` (Sync Leads: ``updateOnly``, ``createOnly``, ``createOrUpdate``,
  ``createDuplicate``)
* ``GET  /rest/v1/leads/describe.json`` and ``/rest/v1/leads/describe2.json``
* any other path under ``/rest`` is error 610; a known path with another method is 605.

Options
-------
``state_dir`` (None keeps everything in memory; else ``state_dir/"marketo.json"``), ``now`` (seed time
and start of the emulator clock), ``time_scale`` (divides the token TTL, the rate window and the
quota day), ``extra``:

* ``rate``: ``[calls, per_seconds]``, default ``[100, 20]`` (606 beyond it).
* ``concurrency``: requests in flight at once, default 10 (615 beyond it).
* ``daily_quota``: calls per day, default 50000 (607 when spent); the day ends at midnight
  America/Chicago.
* ``token_ttl_seconds``: access-token life, default 3600.
* ``activity_page_span_seconds``: how much activity time one ``activities.json`` page may cover,
  default 3600 (see "Activities" below; data time, not scaled).
* ``latency_seconds``: artificial time each admitted REST call holds its concurrency slot, default 0
  (also the public attribute ``latency_seconds``; lets a test provoke 615).
* ``limit_status``: the HTTP status of a 606/607/615 refusal, default 200 (the REST API's way).
  429 answers them as a gateway in front of the API does: HTTP 429 with the same JSON body, and
  for 606 ``Retry-After`` = the rate window in (unscaled) seconds. Also the public attribute.

Public attributes for tests: ``applied_writes`` (``{"id", "fields", "at"}`` per lead updated by Sync
Leads, ``at`` = emulator clock, epoch seconds), ``daily_calls`` (read/write; rolls over at the quota
day boundary), ``daily_quota``, ``clock`` (a callable returning epoch seconds; replace it to move
time), ``in_flight`` (``limits.InFlight``, ``.peak`` is the highest concurrency seen), ``rate_window``
(``limits.SlidingWindow``), ``latency_seconds``, ``log``, ``faults``.

Choices made where the reference (crm-apis.md section 3) is unclear or silent
-----------------------------------------------------------------------------
Auth
* One client (SANDBOX_CLIENT_ID/SECRET). Parameters are read from the query string and, for POST,
  from a form body. A missing or wrong client id/secret is HTTP 401 ``{"error": "unauthorized",
  "error_description": "Bad client credentials"}``; a missing grant_type is HTTP 400
  ``invalid_request`` "Missing grant type"; another grant type HTTP 400 ``unsupported_grant_type``.
  Identity calls never count against quota, rate or concurrency.
* Tokens are ``<uuid4>:ab``; the scope is ``api@sandbox.example``. While the current token is
  valid the identity call returns it again; ``expires_in`` is ``ceil(remaining) - 1`` (a fresh token
  says 3599 like the docs' example, and never more than its true remaining life). Expiry uses the
  emulator clock, so a test moves ``clock`` to expire a token. Tokens are not persisted: a second
  emulator on the same state_dir answers 601 to the first one's token.
* The token is read from ``Authorization: Bearer <t>`` (scheme case-insensitive). The deprecated
  ``access_token`` query (or ``_method=GET`` form) parameter is honoured only while the emulator
  clock is before 2026-08-31T00:00Z, the documented removal date; after it, such a call is 600.
  No token, an empty one or another scheme -> 600 "Access token not specified"; unknown -> 601
  "Access token invalid"; expired -> 602 "Access token expired". None of these is counted.

Limits and counting (errors are HTTP 200 bodies ``{"requestId", "success": false, "errors"}``)
* Order: 414/413 (HTTP level, before anything else, not counted) -> auth (600/601/602) -> 605 for a
  known path with an unsupported method (not counted) -> 615 concurrency -> 606 rate -> 607 quota.
* The reference's error table stars (= not counted) 601, 602, 604, 605, 608, 611 only, so a 615 or
  606 refusal counts one call against the daily quota (never past it); it does not enter the
  rate window (the window holds accepted calls only, so backing off ``rate[1]`` seconds always
  recovers). A 607
  is not counted (the quota is already spent). Every admitted call counts one, whatever it then
  answers (610, 609, 612, 1003, 1006, ...).
* 606 message: ``Max rate limit '100' exceeded with in '20' secs`` with the configured (unscaled)
  numbers; the window itself is ``rate[1] / time_scale`` seconds of real (monotonic) time.
* The quota day is ``floor(local_seconds * time_scale / 86400)`` where local_seconds is the
  emulator clock plus America/Chicago's UTC offset at that moment: at time_scale 1 the quota resets
  at local midnight in Chicago (CDT in summer, CST in winter; the docs say "12:00 AM CST").
  ``daily_calls`` and its day are persisted, so a second run on the same day shares the quota.
* requestId is ``<4 hex>#<clock in ms, hex>``, e.g. ``a1b2#19cd5a1e880``.
* URI (path + "?" + query) over 8192 bytes -> HTTP 414 with a text/html body; a request body over
  1,048,576 bytes -> HTTP 413 with a text/html body (a front-end server's answer, not JSON).

Activities
* Types: 1 Visit Webpage, 2 Fill Out Form, 6 Send Email, 7 Email Delivered, 12 New Lead,
  13 Change Data Value, in the vendor's types.json shape.
* Seeded activities: every lead gets a Visit Webpage 3 minutes before its creation and a New Lead at
  its creation; the three old leads also get an Email Delivered one day after creation. Activity ids
  are assigned in time order from 100001. ``add_lead`` and Sync Leads creates add a New Lead at
  createdAt; every changed field of an update (API or ``human_edit``) adds a Change Data Value.
* Paging tokens are base32 of ``"<yyyy-mm-ddThh:mm:ss.000+0000>,<activity id>"`` (the form Marketo's
  date tokens decode to) and mean "activities after (date, id)"; a sinceDatetime token uses id 0,
  so it includes activities at exactly that second.
* One ``activities.json`` page scans activities of every type in (date, id) order from the token,
  at most ``batchSize`` of them (default and max 300) and only those dated within
  ``activity_page_span_seconds`` of the token's time; it returns the scanned ones that match
  ``activityTypeIds`` (and ``leadIds``). If the span ended before "now", the next token is the span's
  end and ``moreResult`` is true, so stretches without matching activity give pages with no results
  while ``moreResult`` is true. When the batch cap is hit, the next token is the last scanned
  activity and ``moreResult`` is true (the next page may then be empty). When the scan reaches
  the present, ``moreResult`` is false and the token is the last scanned activity (or the input
  token if none): it is the watermark for the next run. ``nextPageToken`` is always present.
* A page with no matching activity has no ``result`` key at all (Marketo's habit); other endpoints
  always send ``result``.
* ``activityTypeIds`` may be comma-separated and/or repeated. Missing -> 701 "activityTypeIds cannot
  be blank"; more than 10 -> 1003 "Too many activityTypeIds, the maximum is 10"; non-integers -> 1001.
  Unknown integer type ids are accepted (they match nothing). ``leadIds`` more than 30 -> 1003.
  ``listId``/``assetIds`` are not emulated: ``listId`` is 1013 "List not found" (no static lists).
  A missing nextPageToken -> 701; an undecodable one -> 1003 "Invalid nextPageToken".
* ``sinceDatetime``: ISO 8601 with ``Z`` or an offset; a value without offset (or a date alone) is
  read in the subscription time zone, America/Chicago. Unparseable (e.g. an unencoded "+" that
  arrived as a space) -> 704 "Invalid date format"; missing -> 701.

Leads
* Lead records on the wire omit null fields ("If a requested field is not returned, its value is
  implied to be null"). Without ``fields`` a record has id, email, updatedAt, createdAt, firstName,
  lastName. Records come in ascending id order, each lead once.
* ``filterType``: id, email and the custom string/integer fields (the ``searchableFields`` of
  describe2); others -> 1011 "Field '<x>' not supported". Email matching is case-insensitive but not
  trimmed. Non-integer id values -> 1001. More than 300 values -> 1003 "Too many filterValues, the
  maximum is 300"; more than 1000 matches -> 1003 "Too many results match the filter". An unknown name
  in ``fields`` -> 1006 "Field '<x>' not found" (response level). Field names are case-sensitive
  REST names. ``batchSize`` 1..300 (else 1003); when more matches than one batch, the answer has
  ``moreResult`` and a position ``nextPageToken``. No match -> ``result: []``.
* ``GET /rest/v1/lead/<id>.json`` answers ``result: []`` for an unknown id.

Sync Leads (POST /rest/v1/leads.json)
* Needs ``Content-Type: application/json`` (else 612 "Invalid Content Type"); a body that is not a
  JSON object -> 609 "Invalid JSON". ``input`` missing/not a list -> 701 "input cannot be blank";
  more than 300 -> 1003 "Batch size exceeds the maximum of 300". An unknown ``action`` -> 1003.
  ``lookupField`` defaults to email; it may be id only with updateOnly (else 1003), and must be id,
  email or a searchable custom field (else 1011).
* Per record (results in input order; a record with any problem is skipped with all its reasons
  and nothing of it is applied):
  - no lookup value -> 1002 "Missing value for the required parameter '<lookupField>'";
  - no lead (updateOnly) -> 1004 "Lead not found"; several leads match -> 1007 "Multiple leads match
    the lookup criteria"; createOnly with a lead already at that email -> 1005 "Lead already exists";
    an ``id`` in a create action -> 1003 "Invalid data: id is only allowed with updateOnly";
  - unknown field -> 1006 "Field '<x>' not found" (record level, as the docs' table lists it);
  - read-only field (createdAt, updatedAt; id other than as the lookup) -> 1003 "Field '<x>' is
    read only";
  - a value of the wrong type -> 1001 "Invalid value '<v>'. Required of type '<dataType>'";
  - a string longer than the field's length (characters, not bytes) -> 1003 "Value for field
    '<x>' exceeds the maximum length of <n>" (Marketo documents no behaviour; we skip, we do not
    truncate);
  - an email value with non-ASCII characters -> 1003 "Invalid email address '<v>'".
* Coercion: null or "" clears a field. string/email/url/text take strings and numbers (stored as
  ``str()``); integer takes ints, integral floats and digit strings within 32-bit range; float and
  currency take numbers and numeric strings; boolean takes true/false, "true"/"false", 0/1;
  datetime takes ISO 8601 (stored as UTC ``...Z``). Everything else (bools into numbers, lists,
  objects) is 1001.
* An updated lead always gets ``updatedAt`` = now and an ``applied_writes`` entry (even if no value
  changed); each changed field adds a Change Data Value activity (Reason/Source "Web service API").
  The same lead twice in one request is applied twice, in order. Created leads (status "created")
  are not in ``applied_writes``.
* company, industry, numberOfEmployees and annualRevenue are plain lead fields here (a CRM-synced
  subscription without the Company object); the docs' "company fields need Sync Companies"
  (1021) rule is not emulated.

Schema (describe)
* Field ids are our own; ``length`` is sent for string-like types only; website is ``url`` (its
  real Marketo type), sixsenseSegments is ``text`` 65535, ``unsubscribed`` (boolean) is an extra
  standard field. Custom fields have the same REST and SOAP name. describe2's ``crmManaged`` is
  false everywhere.

Data and state
* Leads are seeded from ``seed.lead_created_times(now)`` with ids 5001, 5002, ...; the email is kept
  exactly as given ("" -> null), other blank seed strings are null; createdAt = updatedAt = the
  seed time; prefilled seed keys are matched case-insensitively to REST/SOAP names (Industry ->
  industry). ``unsubscribed`` is false.
* Datetimes are UTC at second precision, ``2026-01-02T03:04:05Z``.
* The clock is ``options.now`` (default real now) plus real elapsed time, unless a test replaces
  ``clock``. The state file holds leads, activities, id counters and the quota counter; tokens,
  ``applied_writes`` and the rate window belong to one emulator instance.
* ``lead()``/``leads()`` return copies with every field (nulls included); ``human_edit`` and
  ``add_lead`` accept REST or SOAP names, case-insensitively, without validation.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.limits import InFlight, SlidingWindow
from connector.sandbox.seed import lead_created_times
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

SANDBOX_CLIENT_ID = "sandbox-mkto-client-id-7c41e2"
SANDBOX_CLIENT_SECRET = "sandbox-mkto-client-secret-b93f0a5d"
API_USER = "api@sandbox.example"
POD = "ab"

DEFAULT_RATE = (100, 20.0)
DEFAULT_CONCURRENCY = 10
DEFAULT_DAILY_QUOTA = 50_000
DEFAULT_TOKEN_TTL_SECONDS = 3600
DEFAULT_PAGE_SPAN_SECONDS = 3600
MAX_BATCH = 300
MAX_ACTIVITY_TYPES = 10
MAX_LEAD_IDS = 30
MAX_FILTER_MATCHES = 1000
MAX_URI_BYTES = 8192
MAX_BODY_BYTES = 1_048_576
INT_MAX = 2_147_483_647
QUERY_TOKEN_CUTOFF = datetime(2026, 8, 31, tzinfo=UTC).timestamp()
SUBSCRIPTION_TZ = ZoneInfo("America/Chicago")
STATE_FILE_NAME = "marketo.json"
STATE_FORMAT = 1
FIRST_LEAD_ID = 5001
FIRST_ACTIVITY_ID = 100001

NEW_LEAD = 12
CHANGE_DATA_VALUE = 13
VISIT_WEBPAGE = 1
EMAIL_DELIVERED = 7

__all__ = [
    "ACTIVITY_TYPES",
    "LEAD_FIELDS",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "MarketoEmulator",
    "MarketoField",
    "create_marketo_emulator",
    "decode_paging_token",
    "encode_paging_token",
]


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

STRING_TYPES = frozenset({"string", "email", "url", "text", "phone"})


@dataclass(frozen=True)
class MarketoField:
    id: int
    name: str  # REST API name
    soap: str
    display: str
    type: str
    length: int | None = None
    read_only: bool = False
    custom: bool = False

    @property
    def searchable(self) -> bool:
        return self.name in ("id", "email") or (self.custom and self.type in ("string", "email", "integer"))

    def describe(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "displayName": self.display, "dataType": self.type}
        if self.length is not None:
            item["length"] = self.length
        item["rest"] = {"name": self.name, "readOnly": self.read_only}
        item["soap"] = {"name": self.soap, "readOnly": self.read_only}
        return item

    def describe2(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name, "displayName": self.display, "dataType": self.type}
        if self.length is not None:
            item["length"] = self.length
        item["updateable"] = not self.read_only
        item["crmManaged"] = False
        return item


def _custom(fid: int, name: str, display: str, dtype: str, length: int | None = None) -> MarketoField:
    return MarketoField(fid, name, name, display, dtype, length, custom=True)


LEAD_FIELDS: tuple[MarketoField, ...] = (
    MarketoField(1, "id", "Id", "Id", "integer", read_only=True),
    MarketoField(2, "company", "Company", "Company Name", "string", 255),
    MarketoField(3, "email", "Email", "Email Address", "email", 255),
    MarketoField(4, "firstName", "FirstName", "First Name", "string", 255),
    MarketoField(5, "lastName", "LastName", "Last Name", "string", 255),
    MarketoField(6, "country", "Country", "Country", "string", 255),
    MarketoField(7, "title", "Title", "Job Title", "string", 255),
    MarketoField(8, "website", "Website", "Website", "url", 255),
    MarketoField(9, "industry", "Industry", "Industry", "string", 255),
    MarketoField(10, "numberOfEmployees", "NumberOfEmployees", "Num Employees", "integer"),
    MarketoField(11, "annualRevenue", "AnnualRevenue", "Annual Revenue", "currency"),
    MarketoField(12, "unsubscribed", "Unsubscribed", "Unsubscribed", "boolean"),
    MarketoField(13, "createdAt", "CreatedAt", "Created At", "datetime", read_only=True),
    MarketoField(14, "updatedAt", "UpdatedAt", "Updated At", "datetime", read_only=True),
    _custom(1001, "sixsenseCompanyName", "6sense Company Name", "string", 255),
    _custom(1002, "sixsenseDomain", "6sense Domain", "string", 255),
    _custom(1003, "sixsenseEmployeeRange", "6sense Employee Range", "string", 255),
    _custom(1004, "sixsenseRevenueRange", "6sense Revenue Range", "string", 255),
    _custom(1005, "sixsenseIntentScore", "6sense Intent Score", "integer"),
    _custom(1006, "sixsenseBuyingStage", "6sense Buying Stage", "string", 255),
    _custom(1007, "sixsenseProfileFit", "6sense Profile Fit", "string", 255),
    _custom(1008, "sixsenseProfileScore", "6sense Profile Score", "integer"),
    _custom(1009, "sixsenseContactGrade", "6sense Contact Grade", "string", 255),
    _custom(1010, "sixsenseSegments", "6sense Segments", "text", 65535),
)
FIELDS: dict[str, MarketoField] = {f.name: f for f in LEAD_FIELDS}
FIELDS_LOOSE: dict[str, MarketoField] = {
    **{f.soap.lower(): f for f in LEAD_FIELDS},
    **{f.name.lower(): f for f in LEAD_FIELDS},
}
DEFAULT_LEAD_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")


def _attr(name: str, data_type: str) -> dict[str, str]:
    return {"name": name, "dataType": data_type}


ACTIVITY_TYPES: tuple[dict[str, Any], ...] = (
    {"id": VISIT_WEBPAGE, "name": "Visit Webpage", "description": "User visits a web page",
     "primaryAttribute": _attr("Webpage ID", "integer"),
     "attributes": [_attr("Client IP Address", "string"), _attr("Query Parameters", "string"),
                    _attr("Referrer URL", "string"), _attr("User Agent", "string"),
                    _attr("Webpage URL", "string")]},
    {"id": 2, "name": "Fill Out Form", "description": "User fills out and submits form on web page",
     "primaryAttribute": _attr("Webform ID", "integer"),
     "attributes": [_attr("Client IP Address", "string"), _attr("Form Fields", "text"),
                    _attr("Query Parameters", "string"), _attr("Referrer URL", "string"),
                    _attr("User Agent", "string"), _attr("Webpage ID", "integer")]},
    {"id": 6, "name": "Send Email", "description": "Send Marketo Email to a person",
     "primaryAttribute": _attr("Mailing ID", "integer"),
     "attributes": [_attr("Campaign Run ID", "integer"), _attr("Step ID", "integer")]},
    {"id": EMAIL_DELIVERED, "name": "Email Delivered",
     "description": "Marketo Email is delivered to a person",
     "primaryAttribute": _attr("Mailing ID", "integer"),
     "attributes": [_attr("Campaign Run ID", "integer"), _attr("Step ID", "integer")]},
    {"id": NEW_LEAD, "name": "New Lead", "description": "New person/record is added to the lead database",
     "primaryAttribute": _attr("Lead ID", "integer"),
     "attributes": [_attr("Api Method Name", "string"), _attr("Created Date", "date"),
                    _attr("Form Name", "string"), _attr("Lead Source", "string"),
                    _attr("Source Type", "string")]},
    {"id": CHANGE_DATA_VALUE, "name": "Change Data Value", "description": "Changed attribute value for a person",
     "primaryAttribute": _attr("Attribute Name", "integer"),
     "attributes": [_attr("New Value", "string"), _attr("Old Value", "string"),
                    _attr("Reason", "string"), _attr("Source", "string")]},
)


# --------------------------------------------------------------------------------------------
# Time and tokens
# --------------------------------------------------------------------------------------------


def format_datetime(epoch: float) -> str:
    """Marketo's REST datetime: UTC, second precision, ``Z``."""
    return datetime.fromtimestamp(math.floor(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def parse_since(text: str) -> datetime:
    """ISO 8601; no offset means the subscription's time zone (America/Chicago)."""
    value = text.strip()
    if not value:
        raise ValueError("empty")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SUBSCRIPTION_TZ)
    return moment


def encode_paging_token(ms: int, activity_id: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000,{activity_id}"
    return base64.b32encode(text.encode()).decode()


def decode_paging_token(token: str) -> tuple[int, int]:
    """(epoch ms, activity id) of an activity paging token; ValueError if it is not one."""
    raw = token.strip().upper()
    raw += "=" * (-len(raw) % 8)
    text = base64.b32decode(raw).decode("ascii")
    stamp, _, activity = text.rpartition(",")
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3})\+0000", stamp)
    if not match or not activity.lstrip("-").isdigit():
        raise ValueError("not an activity paging token")
    base = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    return int(base.timestamp()) * 1000 + int(match.group(2)), int(activity)


def _encode_position(kind: str, offset: int, key: str) -> str:
    return base64.b32encode(f"{kind}|{offset}|{key}".encode()).decode()


def _decode_position(kind: str, token: str, key: str) -> int:
    raw = token.strip().upper()
    raw += "=" * (-len(raw) % 8)
    got_kind, offset, got_key = base64.b32decode(raw).decode("ascii").split("|", 2)
    if got_kind != kind or got_key != key or not offset.isdigit():
        raise ValueError("token does not belong to this query")
    return int(offset)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class MarketoError(Exception):
    """A response-level error: HTTP 200 with ``success: false``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _reason(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _html(status: int, title: str) -> Response:
    body = f"<html><head><title>{status} {title}</title></head><body><h1>{title}</h1></body></html>"
    return Response(body, status_code=status, media_type="text/html")


def coerce_value(fdef: MarketoField, value: Any) -> tuple[Any, dict[str, str] | None]:
    """(stored value, None) or (None, record-level reason)."""
    if value is None or value == "":
        return None, None

    def wrong() -> tuple[Any, dict[str, str]]:
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        return None, _reason("1001", f"Invalid value '{shown}'. Required of type '{fdef.type}'")

    if fdef.type in STRING_TYPES:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return wrong()
        text = value if isinstance(value, str) else str(value)
        if fdef.length is not None and len(text) > fdef.length:
            return None, _reason(
                "1003", f"Value for field '{fdef.name}' exceeds the maximum length of {fdef.length}")
        if fdef.type == "email" and not text.isascii():
            return None, _reason("1003", f"Invalid email address '{text}'")
        return text, None
    if fdef.type == "integer":
        if isinstance(value, bool):
            return wrong()
        if isinstance(value, float):
            if not value.is_integer():
                return wrong()
            value = int(value)
        if isinstance(value, str):
            if not re.fullmatch(r"\s*[+-]?\d+\s*", value):
                return wrong()
            value = int(value)
        if not isinstance(value, int) or abs(value) > INT_MAX:
            return wrong()
        return value, None
    if fdef.type in ("float", "currency"):
        if isinstance(value, bool):
            return wrong()
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return wrong()
            if not math.isfinite(number):
                return wrong()
            return number, None
        if isinstance(value, (int, float)) and math.isfinite(value):
            return value, None
        return wrong()
    if fdef.type == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true", None
        return wrong()
    if fdef.type == "datetime":
        if not isinstance(value, str):
            return wrong()
        try:
            moment = parse_since(value)
        except ValueError:
            return wrong()
        return format_datetime(moment.timestamp()), None
    return wrong()


def _parse_rate(value: Any) -> tuple[int, float]:
    if value is None:
        return DEFAULT_RATE
    if isinstance(value, dict):
        return int(value["calls"]), float(value["per_seconds"])
    calls, per_seconds = value
    return int(calls), float(per_seconds)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class MarketoEmulator:
    vendor = "marketo"
    tls = False

    def __init__(self, options: EmulatorOptions) -> None:
        if options.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.options = options
        self.time_scale = float(options.time_scale)
        extra = options.extra or {}
        self.rate_calls, self.rate_seconds = _parse_rate(extra.get("rate"))
        self.concurrency = int(extra.get("concurrency", DEFAULT_CONCURRENCY))
        self.daily_quota = int(extra.get("daily_quota", DEFAULT_DAILY_QUOTA))
        self.token_ttl = float(extra.get("token_ttl_seconds", DEFAULT_TOKEN_TTL_SECONDS)) / self.time_scale
        self.page_span_ms = int(float(extra.get("activity_page_span_seconds", DEFAULT_PAGE_SPAN_SECONDS)) * 1000)
        self.latency_seconds = float(extra.get("latency_seconds", 0) or 0)
        self.limit_status = int(extra.get("limit_status", 200))

        seed_now = options.now or datetime.now(UTC)
        if seed_now.tzinfo is None:
            seed_now = seed_now.replace(tzinfo=UTC)
        self._seed_now = seed_now
        seed_epoch = seed_now.timestamp()
        wall_start = time.time()
        self.clock: Callable[[], float] = lambda: seed_epoch + (time.time() - wall_start)

        self.rate_window = SlidingWindow(self.rate_calls, self.rate_seconds / self.time_scale)
        self.in_flight = InFlight(self.concurrency)
        self.applied_writes: list[dict[str, Any]] = []

        self._lock = threading.RLock()
        self._tokens: dict[str, float] = {}  # token -> expiry (clock epoch)
        self._current_token: str | None = None
        self._leads: dict[int, dict[str, Any]] = {}
        self._activities: list[dict[str, Any]] = []
        self._next_lead_id = FIRST_LEAD_ID
        self._next_activity_id = FIRST_ACTIVITY_ID
        self._quota_day: int | None = None
        self._daily_calls = 0

        self._state = JsonStateFile(Path(options.state_dir) / STATE_FILE_NAME if options.state_dir else None)
        document = self._state.load()
        if document is None:
            self._seed()
            self._save()
        else:
            self._load(document)

        self.log = RequestLog()
        self.faults = FaultQueue()
        self.app = FastAPI(title="Marketo sandbox", openapi_url=None, docs_url=None, redoc_url=None)
        instrument(self.app, self.log, self.faults)
        self._add_routes()

    # ---- the Emulator protocol ----

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {"sources": {"marketo": {
            "enabled": True,  # the sandbox stands in for every CRM
            "rest_url": f"{base_url}/rest",
            "identity_url": f"{base_url}/identity",
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        }}}

    # ---- clock, quota and storage ----

    def now(self) -> float:
        return float(self.clock())

    def _quota_day_at(self, epoch: float) -> int:
        offset = datetime.fromtimestamp(epoch, SUBSCRIPTION_TZ).utcoffset() or timedelta(0)
        return math.floor((epoch + offset.total_seconds()) * self.time_scale / 86400)

    def _roll_quota(self) -> None:
        day = self._quota_day_at(self.now())
        if day != self._quota_day:
            self._quota_day = day
            self._daily_calls = 0

    @property
    def daily_calls(self) -> int:
        with self._lock:
            self._roll_quota()
            return self._daily_calls

    @daily_calls.setter
    def daily_calls(self, value: int) -> None:
        with self._lock:
            self._roll_quota()
            self._daily_calls = int(value)
            self._save()

    def _new_activity(self, lead_id: int, type_id: int, date: str, primary_id: Any = None,
                      primary_value: Any = None, attributes: list[dict[str, Any]] | None = None) -> None:
        activity_id = self._next_activity_id
        self._next_activity_id += 1
        activity: dict[str, Any] = {
            "id": activity_id,
            "marketoGUID": str(activity_id),
            "leadId": lead_id,
            "activityDate": date,
            "activityTypeId": type_id,
        }
        if primary_id is not None:
            activity["primaryAttributeValueId"] = primary_id
        if primary_value is not None:
            activity["primaryAttributeValue"] = primary_value
        activity["attributes"] = [a for a in (attributes or []) if a.get("value") not in (None, "")]
        self._activities.append(activity)

    @staticmethod
    def _full_name(record: dict[str, Any]) -> str:
        return " ".join(p for p in (record.get("firstName"), record.get("lastName")) if p) or str(record["id"])

    def _new_lead_activity(self, record: dict[str, Any], source: str, api_method: str | None = None) -> None:
        created = record["createdAt"]
        self._new_activity(record["id"], NEW_LEAD, created, record["id"], self._full_name(record), [
            {"name": "Api Method Name", "value": api_method},
            {"name": "Created Date", "value": created[:10]},
            {"name": "Form Name", "value": "Contact Us" if source == "Web form fillout" else None},
            {"name": "Source Type", "value": source},
        ])

    def _blank_record(self) -> dict[str, Any]:
        return {f.name: None for f in LEAD_FIELDS}

    def _seed(self) -> None:
        pending: list[tuple[str, int, dict[str, Any]]] = []  # (date, order, activity spec)
        for seed_lead, created in lead_created_times(self._seed_now):
            record = self._blank_record()
            when = format_datetime(created.timestamp())
            record.update({
                "id": self._next_lead_id,
                "email": seed_lead.email or None,
                "firstName": seed_lead.first_name or None,
                "lastName": seed_lead.last_name or None,
                "company": seed_lead.company or None,
                "country": seed_lead.country or None,
                "title": seed_lead.title or None,
                "website": seed_lead.website or None,
                "unsubscribed": False,
                "createdAt": when,
                "updatedAt": when,
            })
            self._next_lead_id += 1
            for name, value in seed_lead.prefilled.items():
                record[self._field(name).name] = value
            self._leads[record["id"]] = record
            visit = format_datetime(created.timestamp() - 180)
            pending.append((visit, len(pending), {"kind": "visit", "record": record, "date": visit}))
            pending.append((when, len(pending), {"kind": "new", "record": record}))
            if created < self._seed_now - timedelta(hours=25):
                mailed = format_datetime(created.timestamp() + 86400)
                pending.append((mailed, len(pending), {"kind": "mail", "record": record, "date": mailed}))
        for _, _, spec in sorted(pending, key=lambda p: (_epoch_ms(p[0]), p[1])):
            record = spec["record"]
            if spec["kind"] == "new":
                self._new_lead_activity(record, "Web form fillout")
            elif spec["kind"] == "visit":
                page_id = 40 + record["id"] % 7
                self._new_activity(record["id"], VISIT_WEBPAGE, spec["date"], page_id,
                                   f"www.sandbox.example/page-{page_id}.html", [
                                       {"name": "Client IP Address", "value": "203.0.113.7"},
                                       {"name": "Webpage URL", "value": f"/page-{page_id}.html"},
                                       {"name": "User Agent", "value": "Mozilla/5.0"},
                                   ])
            else:
                self._new_activity(record["id"], EMAIL_DELIVERED, spec["date"], 1201, "Welcome Email", [
                    {"name": "Campaign Run ID", "value": 77},
                    {"name": "Step ID", "value": 3},
                ])

    def _load(self, document: dict[str, Any]) -> None:
        for stored in document.get("leads", []):
            record = self._blank_record()
            record.update({k: v for k, v in stored.items() if k in FIELDS})
            self._leads[int(record["id"])] = record
        self._activities = [dict(a) for a in document.get("activities", [])]
        self._next_lead_id = max(int(document.get("next_lead_id", FIRST_LEAD_ID)),
                                 max(self._leads, default=FIRST_LEAD_ID - 1) + 1)
        self._next_activity_id = max(int(document.get("next_activity_id", FIRST_ACTIVITY_ID)),
                                     max((a["id"] for a in self._activities), default=FIRST_ACTIVITY_ID - 1) + 1)
        quota = document.get("quota") or {}
        if quota.get("day") is not None:
            self._quota_day = int(quota["day"])
            self._daily_calls = int(quota.get("calls", 0))

    def _save(self) -> None:
        with self._lock:
            self._state.save({
                "format": STATE_FORMAT,
                "next_lead_id": self._next_lead_id,
                "next_activity_id": self._next_activity_id,
                "quota": {"day": self._quota_day, "calls": self._daily_calls},
                "leads": [dict(r) for r in self._leads.values()],
                "activities": self._activities,
            })

    @staticmethod
    def _field(name: str) -> MarketoField:
        fdef = FIELDS_LOOSE.get(name.lower())
        if fdef is None:
            raise KeyError(f"no field {name!r} on the Marketo lead")
        return fdef

    # ---- in-process helpers for tests ----

    def lead(self, lead_id: int) -> dict[str, Any]:
        with self._lock:
            record = self._leads.get(int(lead_id))
            if record is None:
                raise KeyError(lead_id)
            return dict(record)

    def leads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self._leads[i]) for i in sorted(self._leads)]

    def activities(self) -> list[dict[str, Any]]:
        """Every stored activity (copies), in (date, id) order."""
        with self._lock:
            return [json.loads(json.dumps(a)) for a in self._ordered_activities()]

    def human_edit(self, lead_id: int, field: str, value: Any) -> None:
        """A person edits a field in the Marketo UI."""
        with self._lock:
            record = self._leads.get(int(lead_id))
            if record is None:
                raise KeyError(lead_id)
            fdef = self._field(field)
            now = format_datetime(self.now())
            old = record[fdef.name]
            record[fdef.name] = value
            record["updatedAt"] = now
            if old != value:
                self._change_activity(record["id"], fdef, old, value, now, "Changed by user", "Web UI")
            self._save()

    def add_lead(self, **fields: Any) -> int:
        """A new lead (a form fill-out); records a New Lead activity at its createdAt."""
        with self._lock:
            record = self._blank_record()
            record["unsubscribed"] = False
            for name, value in fields.items():
                fdef = self._field(name)
                if fdef.type == "datetime" and isinstance(value, datetime):
                    value = format_datetime(value.timestamp())
                record[fdef.name] = value
            record["id"] = self._next_lead_id
            self._next_lead_id += 1
            record["createdAt"] = record["createdAt"] or format_datetime(self.now())
            record["updatedAt"] = record["updatedAt"] or record["createdAt"]
            self._leads[record["id"]] = record
            self._new_lead_activity(record, "Web form fillout")
            self._save()
            return record["id"]

    def expire_tokens(self) -> None:
        """Every issued token is now expired (REST calls get 602; identity issues a new one)."""
        with self._lock:
            now = self.now()
            for token in self._tokens:
                self._tokens[token] = min(self._tokens[token], now)

    def _change_activity(self, lead_id: int, fdef: MarketoField, old: Any, new: Any, date: str,
                         reason: str, source: str) -> None:
        def text(v: Any) -> Any:
            if v is None:
                return None
            return json.dumps(v) if isinstance(v, bool) else str(v)

        self._new_activity(lead_id, CHANGE_DATA_VALUE, date, fdef.id, fdef.display, [
            {"name": "New Value", "value": text(new)},
            {"name": "Old Value", "value": text(old)},
            {"name": "Reason", "value": reason},
            {"name": "Source", "value": source},
        ])

    # ---- identity ----

    def _token_response(self) -> dict[str, Any]:
        with self._lock:
            now = self.now()
            token = self._current_token
            if token is None or self._tokens.get(token, 0) <= now:
                token = f"{uuid.uuid4()}:{POD}"
                self._tokens[token] = now + self.token_ttl
                self._current_token = token
            remaining = self._tokens[token] - now
            return {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": max(0, math.ceil(remaining) - 1),
                "scope": API_USER,
            }

    async def _identity(self, request: Request) -> Response:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method == "POST":
            content_type = request.headers.get("content-type", "")
            if "application/x-www-form-urlencoded" in content_type:
                body = (await request.body()).decode("utf-8", "replace")
                for key, value in parse_qsl(body, keep_blank_values=True):
                    params.setdefault(key, value)
        grant = params.get("grant_type")
        if not grant:
            return JSONResponse({"error": "invalid_request", "error_description": "Missing grant type"},
                                status_code=400)
        if grant != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": f"Unsupported grant type: {grant}"}, status_code=400)
        if not (secrets.compare_digest(params.get("client_id", ""), SANDBOX_CLIENT_ID)
                and secrets.compare_digest(params.get("client_secret", ""), SANDBOX_CLIENT_SECRET)):
            return JSONResponse({"error": "unauthorized", "error_description": "Bad client credentials"},
                                status_code=401)
        return JSONResponse(self._token_response(), headers={"Cache-Control": "no-store"})

    # ---- REST envelope ----

    def _request_id(self) -> str:
        return f"{secrets.token_hex(2)}#{int(self.now() * 1000):x}"

    def _ok(self, body: dict[str, Any]) -> JSONResponse:
        return JSONResponse({"requestId": self._request_id(), "success": True, **body})

    def _fail(self, code: str, message: str) -> JSONResponse:
        return JSONResponse({"requestId": self._request_id(), "success": False,
                             "errors": [{"code": code, "message": message}]})

    def _refuse(self, code: str, message: str) -> JSONResponse:
        """A limit refusal (606, 607, 615) with the configured HTTP status (see ``limit_status``)."""
        response = self._fail(code, message)
        if self.limit_status != 200:
            response.status_code = self.limit_status
            if code == "606":
                response.headers["Retry-After"] = str(math.ceil(self.rate_seconds))
        return response

    def _check_token(self, token: str | None) -> tuple[str, str] | None:
        if not token:
            return "600", "Access token not specified"
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return "601", "Access token invalid"
            if self.now() >= expiry:
                return "602", "Access token expired"
        return None

    def _count_refusal(self) -> None:
        """A 615/606 refusal counts one call, but never past the quota. Caller holds the lock."""
        if self._daily_calls < self.daily_quota:
            self._daily_calls += 1
            self._save()

    def _admit_counted(self) -> tuple[str, str] | None:
        """Rate and quota for a call that already holds a concurrency slot; counts it if due."""
        with self._lock:
            self._roll_quota()
            if self.rate_window.try_accept() is not None:
                self._count_refusal()
                return "606", (f"Max rate limit '{self.rate_calls}' exceeded with in "
                               f"'{_number_text(self.rate_seconds)}' secs")
            if self._daily_calls >= self.daily_quota:
                return "607", "Daily quota reached"
            self._daily_calls += 1
            self._save()
        return None

    def _routes(self) -> list[tuple[re.Pattern[str], dict[str, Callable[..., dict[str, Any]]]]]:
        return [
            (re.compile(r"v1/activities/types\.json"), {"GET": self._activity_types}),
            (re.compile(r"v1/activities/pagingtoken\.json"), {"GET": self._paging_token}),
            (re.compile(r"v1/activities\.json"), {"GET": self._get_activities}),
            (re.compile(r"v1/leads\.json"), {"GET": self._get_leads, "POST": self._sync_leads}),
            (re.compile(r"v1/lead/(\d+)\.json"), {"GET": self._get_lead}),
            (re.compile(r"v1/leads/describe\.json"), {"GET": self._describe}),
            (re.compile(r"v1/leads/describe2\.json"), {"GET": self._describe2}),
        ]

    def _add_routes(self) -> None:
        app = self.app
        routes = self._routes()

        @app.api_route("/identity/oauth/token", methods=["GET", "POST"])
        async def identity(request: Request) -> Response:
            return await self._identity(request)

        @app.api_route("/rest/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def rest(request: Request, path: str) -> Response:
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            query_bytes = request.scope.get("query_string") or b""
            if len(raw_path) + (1 + len(query_bytes) if query_bytes else 0) > MAX_URI_BYTES:
                return _html(414, "Request-URI Too Large")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return _html(413, "Request Entity Too Large")
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                return _html(413, "Request Entity Too Large")

            params: list[tuple[str, str]] = list(request.query_params.multi_items())
            content_type = request.headers.get("content-type", "")
            method = request.method
            query_method = dict(params).get("_method", "").upper()
            form: list[tuple[str, str]] = []
            if method == "POST" and "application/x-www-form-urlencoded" in content_type:
                form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                if query_method == "GET" or dict(form).get("_method", "").upper() == "GET":
                    method = "GET"
                    params = params + form
            elif method == "POST" and query_method == "GET":
                method = "GET"
            params = [(k, v) for k, v in params if k != "_method"]

            header = request.headers.get("authorization", "")
            scheme, _, credential = header.strip().partition(" ")
            token = credential.strip() if scheme.lower() == "bearer" else None
            if not header and self.now() < QUERY_TOKEN_CUTOFF:
                token = dict(params).get("access_token") or dict(form).get("access_token")
            failure = self._check_token(token)
            if failure is not None:
                return self._fail(*failure)
            params = [(k, v) for k, v in params if k != "access_token"]

            handler: Callable[..., dict[str, Any]] | None = None
            match: re.Match[str] | None = None
            known = False
            for pattern, methods in routes:
                match = pattern.fullmatch(path)
                if match:
                    known = True
                    handler = methods.get(method)
                    break
            if known and handler is None:
                return self._fail("605", "HTTP Method not supported")

            if not self.in_flight.enter():
                with self._lock:
                    self._roll_quota()
                    self._count_refusal()
                return self._refuse("615", "Concurrent access limit reached")
            try:
                refused = self._admit_counted()
                if refused is not None:
                    return self._refuse(*refused)
                if self.latency_seconds > 0:
                    await asyncio.sleep(self.latency_seconds)
                if handler is None or match is None:
                    return self._fail("610", "Requested resource not found")
                try:
                    result = handler(params=params, body=body, content_type=content_type, match=match)
                except MarketoError as exc:
                    return self._fail(exc.code, exc.message)
                return self._ok(result)
            finally:
                self.in_flight.leave()

    # ---- parameter helpers ----

    @staticmethod
    def _values(params: list[tuple[str, str]], name: str) -> list[str]:
        """Every comma-separated value of a (possibly repeated) parameter, blanks dropped."""
        out: list[str] = []
        for key, value in params:
            if key == name:
                out.extend(v.strip() for v in value.split(",") if v.strip())
        return out

    @staticmethod
    def _one(params: list[tuple[str, str]], name: str) -> str | None:
        for key, value in params:
            if key == name:
                return value
        return None

    def _batch_size(self, params: list[tuple[str, str]]) -> int:
        raw = self._one(params, "batchSize")
        if raw is None or raw.strip() == "":
            return MAX_BATCH
        if not raw.strip().isdigit():
            raise MarketoError("1001", f"Invalid value '{raw}'. Required of type 'Integer'")
        size = int(raw)
        if not 1 <= size <= MAX_BATCH:
            raise MarketoError("1003", f"Invalid batchSize '{raw}', it must be between 1 and {MAX_BATCH}")
        return size

    @staticmethod
    def _integers(values: list[str]) -> list[int]:
        out: list[int] = []
        for value in values:
            if not re.fullmatch(r"[+-]?\d+", value):
                raise MarketoError("1001", f"Invalid value '{value}'. Required of type 'Integer'")
            out.append(int(value))
        return out

    # ---- activities ----

    def _activity_types(self, **_: Any) -> dict[str, Any]:
        return {"result": json.loads(json.dumps(ACTIVITY_TYPES))}

    def _paging_token(self, params: list[tuple[str, str]], **_: Any) -> dict[str, Any]:
        raw = self._one(params, "sinceDatetime")
        if raw is None or not raw.strip():
            raise MarketoError("701", "sinceDatetime cannot be blank")
        try:
            since = parse_since(raw)
        except ValueError:
            raise MarketoError("704", "Invalid date format") from None
        return {"nextPageToken": encode_paging_token(math.floor(since.timestamp()) * 1000, 0)}

    @staticmethod
    def _position(activity: dict[str, Any]) -> tuple[int, int]:
        return _epoch_ms(activity["activityDate"]), int(activity["id"])

    def _ordered_activities(self) -> list[dict[str, Any]]:
        return sorted(self._activities, key=self._position)

    def _get_activities(self, params: list[tuple[str, str]], **_: Any) -> dict[str, Any]:
        token = self._one(params, "nextPageToken")
        if token is None or not token.strip():
            raise MarketoError("701", "nextPageToken cannot be blank")
        type_values = self._values(params, "activityTypeIds")
        if not type_values:
            raise MarketoError("701", "activityTypeIds cannot be blank")
        if len(type_values) > MAX_ACTIVITY_TYPES:
            raise MarketoError("1003", f"Too many activityTypeIds, the maximum is {MAX_ACTIVITY_TYPES}")
        type_ids = set(self._integers(type_values))
        lead_values = self._values(params, "leadIds")
        if len(lead_values) > MAX_LEAD_IDS:
            raise MarketoError("1003", f"Too many leadIds, the maximum is {MAX_LEAD_IDS}")
        lead_ids = set(self._integers(lead_values)) if lead_values else None
        if self._one(params, "listId") not in (None, ""):
            raise MarketoError("1013", "List not found")
        batch = self._batch_size(params)
        try:
            start = decode_paging_token(token)
        except (ValueError, UnicodeDecodeError):
            raise MarketoError("1003", "Invalid nextPageToken") from None

        with self._lock:
            now_ms = int(self.now() * 1000)
            span_end = start[0] + self.page_span_ms
            upper = min(span_end, now_ms + 1)
            scanned: list[dict[str, Any]] = []
            for activity in self._ordered_activities():
                position = self._position(activity)
                if position <= start:
                    continue
                if position[0] >= upper or len(scanned) >= batch:
                    break
                scanned.append(activity)
            if len(scanned) >= batch:
                next_position, more = self._position(scanned[-1]), True
            elif span_end <= now_ms:
                next_position, more = (span_end, 0), True
            else:
                next_position = self._position(scanned[-1]) if scanned else start
                more = False
            result = [
                json.loads(json.dumps(a)) for a in scanned
                if a["activityTypeId"] in type_ids and (lead_ids is None or a["leadId"] in lead_ids)
            ]
        body: dict[str, Any] = {"nextPageToken": encode_paging_token(*next_position), "moreResult": more}
        if result:
            body["result"] = result
        return body

    # ---- leads: read ----

    def _wire_lead(self, record: dict[str, Any], names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            value = record.get(name)
            if value is not None:
                out[name] = value
        return out

    def _fields_param(self, params: list[tuple[str, str]]) -> list[str]:
        wanted = self._values(params, "fields")
        if not wanted:
            return list(DEFAULT_LEAD_FIELDS)
        names = ["id"]
        for name in wanted:
            if name not in FIELDS:
                raise MarketoError("1006", f"Field '{name}' not found")
            if name not in names:
                names.append(name)
        return names

    def _matches(self, fdef: MarketoField, values: list[str]) -> list[dict[str, Any]]:
        if fdef.type == "integer":
            wanted_ints = set(self._integers(values))
            return [r for i, r in sorted(self._leads.items()) if r.get(fdef.name) in wanted_ints]
        wanted = {v.lower() for v in values}
        return [r for i, r in sorted(self._leads.items())
                if isinstance(r.get(fdef.name), str) and r[fdef.name].lower() in wanted]

    def _get_leads(self, params: list[tuple[str, str]], **_: Any) -> dict[str, Any]:
        filter_type = (self._one(params, "filterType") or "").strip()
        if not filter_type:
            raise MarketoError("701", "filterType cannot be blank")
        values = self._values(params, "filterValues")
        if not values:
            raise MarketoError("701", "filterValues cannot be blank")
        fdef = FIELDS.get(filter_type)
        if fdef is None or not fdef.searchable:
            raise MarketoError("1011", f"Field '{filter_type}' not supported")
        if len(values) > MAX_BATCH:
            raise MarketoError("1003", f"Too many filterValues, the maximum is {MAX_BATCH}")
        names = self._fields_param(params)
        batch = self._batch_size(params)
        key = f"{filter_type}:{','.join(values)}"
        with self._lock:
            matches = self._matches(fdef, values)
            if len(matches) > MAX_FILTER_MATCHES:
                raise MarketoError("1003", "Too many results match the filter")
            offset = 0
            token = self._one(params, "nextPageToken")
            if token:
                try:
                    offset = _decode_position("leads", token, key)
                except (ValueError, UnicodeDecodeError):
                    raise MarketoError("1003", "Invalid nextPageToken") from None
            page = [self._wire_lead(r, names) for r in matches[offset:offset + batch]]
        body: dict[str, Any] = {"result": page}
        if offset + batch < len(matches):
            body["moreResult"] = True
            body["nextPageToken"] = _encode_position("leads", offset + batch, key)
        return body

    def _get_lead(self, params: list[tuple[str, str]], match: re.Match[str], **_: Any) -> dict[str, Any]:
        names = self._fields_param(params)
        with self._lock:
            record = self._leads.get(int(match.group(1)))
            return {"result": [self._wire_lead(record, names)] if record else []}

    def _describe(self, **_: Any) -> dict[str, Any]:
        return {"result": [f.describe() for f in LEAD_FIELDS]}

    def _describe2(self, **_: Any) -> dict[str, Any]:
        return {"result": [{
            "name": "API Lead",
            "searchableFields": [[f.name] for f in LEAD_FIELDS if f.searchable],
            "fields": [f.describe2() for f in LEAD_FIELDS],
        }]}

    # ---- leads: Sync Leads ----

    def _sync_leads(self, body: bytes, content_type: str, **_: Any) -> dict[str, Any]:
        if "application/json" not in content_type.lower():
            raise MarketoError("612", "Invalid Content Type")
        try:
            document = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise MarketoError("609", "Invalid JSON") from None
        if not isinstance(document, dict):
            raise MarketoError("609", "Invalid JSON")
        action = document.get("action") or "createOrUpdate"
        if action not in ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate"):
            raise MarketoError("1003", f"Invalid action '{action}'")
        lookup = document.get("lookupField") or "email"
        if lookup == "id" and action != "updateOnly":
            raise MarketoError("1003", "lookupField 'id' is only allowed with action 'updateOnly'")
        lookup_field = FIELDS.get(lookup) if isinstance(lookup, str) else None
        if lookup_field is None or not lookup_field.searchable:
            raise MarketoError("1011", f"Field '{lookup}' not supported")
        records = document.get("input")
        if not isinstance(records, list) or not records:
            raise MarketoError("701", "input cannot be blank")
        if len(records) > MAX_BATCH:
            raise MarketoError("1003", f"Batch size exceeds the maximum of {MAX_BATCH}")
        with self._lock:
            results = [self._sync_one(record, action, lookup_field) for record in records]
            self._save()
        return {"result": results}

    def _sync_one(self, record: Any, action: str, lookup: MarketoField) -> dict[str, Any]:
        if not isinstance(record, dict):
            return {"status": "skipped", "reasons": [_reason("1003", "Invalid data")]}
        reasons: list[dict[str, str]] = []
        changes: dict[str, Any] = {}
        for key, value in record.items():
            fdef = FIELDS.get(key)
            if fdef is None:
                reasons.append(_reason("1006", f"Field '{key}' not found"))
                continue
            if key == "id" and action == "updateOnly" and lookup.name == "id":
                continue
            if key == "id" and action != "updateOnly":
                reasons.append(_reason("1003", "Invalid data: id is only allowed with updateOnly"))
                continue
            if fdef.read_only:
                reasons.append(_reason("1003", f"Field '{key}' is read only"))
                continue
            coerced, reason = coerce_value(fdef, value)
            if reason is not None:
                reasons.append(reason)
            else:
                changes[fdef.name] = coerced

        target: dict[str, Any] | None = None
        if action != "createDuplicate":
            key_value = record.get(lookup.name)
            if key_value in (None, ""):
                if action != "createOnly":
                    reasons.insert(0, _reason("1002", f"Missing value for the required parameter '{lookup.name}'"))
            else:
                found = self._lookup(lookup, key_value)
                if action == "createOnly":
                    if found and lookup.name == "email":
                        reasons.insert(0, _reason("1005", "Lead already exists"))
                elif len(found) > 1:
                    reasons.insert(0, _reason("1007", "Multiple leads match the lookup criteria"))
                elif found:
                    target = found[0]
                elif action == "updateOnly":
                    reasons.insert(0, _reason("1004", "Lead not found"))
        if reasons:
            return {"status": "skipped", "reasons": reasons}

        now = self.now()
        stamp = format_datetime(now)
        if target is not None:
            for name, value in changes.items():
                old = target.get(name)
                if old != value:
                    self._change_activity(target["id"], FIELDS[name], old, value, stamp,
                                          "Web service API", "Web service API")
                target[name] = value
            target["updatedAt"] = stamp
            self.applied_writes.append({"id": target["id"], "fields": dict(changes), "at": now})
            return {"id": target["id"], "status": "updated"}
        created = self._blank_record()
        created["unsubscribed"] = False
        created.update(changes)
        created["id"] = self._next_lead_id
        self._next_lead_id += 1
        created["createdAt"] = created["updatedAt"] = stamp
        self._leads[created["id"]] = created
        self._new_lead_activity(created, "Web service API", "syncLead")
        return {"id": created["id"], "status": "created"}

    def _lookup(self, fdef: MarketoField, value: Any) -> list[dict[str, Any]]:
        if fdef.type == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                wanted = value
            elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
                wanted = int(value)
            else:
                return []
            return [r for _, r in sorted(self._leads.items()) if r.get(fdef.name) == wanted]
        if not isinstance(value, str):
            value = str(value)
        return [r for _, r in sorted(self._leads.items())
                if isinstance(r.get(fdef.name), str) and r[fdef.name].lower() == value.lower()]


@register_emulator("marketo")
def create_marketo_emulator(options: EmulatorOptions) -> MarketoEmulator:
    return MarketoEmulator(options)
