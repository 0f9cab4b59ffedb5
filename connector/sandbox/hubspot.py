"""HubSpot emulator: the CRM v3 contacts API a lead-sync connector uses, over plain HTTP.

Real `hubspot-api-client` talks to it unchanged: ``hubspot.HubSpot(access_token=T, host=base_url,
retry=Retry(total=0))`` (every extra keyword becomes a Configuration attribute; ``host`` may be
plain http).

Routes
------
* ``POST /oauth/v1/token``: the refresh_token grant (form-encoded) of one OAuth app.
* ``POST /crm/v3/objects/contacts/search``: CRM search (filters, sorts, properties, paging).
* ``POST /crm/v3/objects/contacts/batch/read`` and ``.../batch/update``: max 100 inputs.
* ``GET  /crm/v3/objects/contacts/{id}``: one contact (``?properties=a,b``).
* ``GET  /crm/v3/properties/contacts`` and ``.../contacts/{name}``: property definitions.
* anything else under ``/crm`` is 404 ``OBJECT_NOT_FOUND`` (after authentication and counting).

Options: ``state_dir`` (None keeps the contacts in memory; else ``state_dir/"hubspot.json"``),
``now`` (seed time), ``time_scale`` (divides the burst and search windows, the OAuth TTL and the
length of the quota day), ``extra``: ``burst`` ([100, 10]: requests per seconds per app),
``search_per_second`` (5), ``daily_limit`` (250000), ``oauth_ttl_seconds`` (1800),
``account_timezone`` ("America/New_York"), ``filler_contacts`` (0).

Public attributes and helpers beyond the Emulator protocol: ``applied_writes``, ``search_requests``,
``contact(id)``, ``contacts()``, ``human_edit(id, prop, value)``, ``add_contact(**props)``,
``expire_oauth_tokens()``, ``daily_usage()`` -> (used today, limit), ``now()``, ``quota_now()``.

Choices made where the reference (crm-apis.md section 2) is unsure or silent
-----------------------------------------------------------------------------
Auth
* ``Authorization: Bearer <token>`` (scheme case-insensitive). The private-app token never
  expires. A missing header, another scheme, or an unknown token: 401 INVALID_AUTHENTICATION
  "Authentication credentials not found. ...". An OAuth access token past its TTL (or expired by
  ``expire_oauth_tokens()``): 401 EXPIRED_AUTHENTICATION "The OAuth token used to make this call
  expired N second(s) ago.". 401s are not counted against any limit and carry no rate headers.
* ``POST /oauth/v1/token`` accepts only ``grant_type=refresh_token``; errors are 400
  ``{"status": "BAD_GRANT_TYPE"|"BAD_CLIENT_ID"|"BAD_CLIENT_SECRET"|"BAD_REFRESH_TOKEN",
  "message", "correlationId"}`` (checked in that order). The refresh token does not rotate: the
  answer carries the same refresh token. ``expires_in`` is the scaled TTL rounded down (so a client
  that trusts it never uses a dead token). Token requests are never rate limited or counted.
  Access tokens are in memory only (not persisted).
Limits
* Burst: a sliding window of ``burst[0]`` accepted requests per ``burst[1]/time_scale`` seconds,
  keyed by app: the private app is one key, every access token of the OAuth app shares another
  (HubSpot limits per app, and refreshing must not reset the window). Both use the ``burst`` knob
  (HubSpot's public-app figure of 110 is not modelled).
* Daily: one counter per account (all apps), reset at midnight in ``account_timezone``. The day
  runs on a quota clock ``now + elapsed * time_scale``, so with time_scale the day is
  ``86400/time_scale`` real seconds long. Refused (429) requests and 401s do not count; 400/404
  answers do. Usage is in memory only.
* Order: authentication, then daily, then burst. Search is outside both (it does not count toward
  the burst window or the daily total, as the brief says) and is limited by its own account-wide
  window of ``search_per_second`` per ``1/time_scale`` s; a refused search is 429
  ``{"status","message":"You have reached your secondly limit.","errorType":"RATE_LIMIT",
  "correlationId","policyName":"SECONDLY"}``. No 429 has a ``Retry-After`` header (unconfirmed).
* Non-search answers that passed authentication (429s included, with Remaining 0) carry
  ``X-HubSpot-RateLimit-Max``, ``-Remaining`` (after this request) and
  ``-Interval-Milliseconds`` (the scaled window), and for the private-app token only
  ``X-HubSpot-RateLimit-Daily`` / ``-Daily-Remaining``. Search answers carry none of them. Every
  API answer carries ``X-HubSpot-Correlation-Id``.
* The 429 bodies add a ``requestId`` to the reference's burst/daily shape; messages are "You have
  reached your ten_secondly_rolling limit." and "You have reached your daily limit.".
Search
* ``search_requests`` records the parsed body (a JSON object) of every search that passed
  authentication and the search limit, the ones answered 400 included (not 401/429s).
* Filter groups: at most 5 groups, 6 filters per group, 18 in total (the strictest of the
  conflicting sources), else 400 VALIDATION_ERROR. A group with no filters matches everything.
* Unknown ``propertyName`` in a filter or sort: 400 VALIDATION_ERROR. Unknown names in
  ``properties`` are silently left out. Without ``properties``: email, firstname, lastname;
  hs_object_id, createdate and lastmodifieddate are always returned. A requested property without
  a value is null.
* Comparisons follow the property type: number as floats, datetime/date as epoch ms (value as
  epoch-ms digits or ISO 8601, a date-only value is midnight UTC; a bad value is 400), everything
  else as case-insensitive text. A record without a value (null or "") never matches EQ, LT..GTE,
  BETWEEN (inclusive), IN or CONTAINS_TOKEN, and always matches NEQ, NOT_IN and
  NOT_CONTAINS_TOKEN. CONTAINS_TOKEN matches a whole value or one of its alphanumeric tokens,
  case-insensitively; ``*`` is a wildcard.
* ``query``: every whitespace-separated word must prefix a token of firstname, lastname, email or
  company (case-insensitive).
* ``sorts``: strings (``"createdate"``, ``"-createdate"``) and objects ``{"propertyName",
  "direction": "ASCENDING"|"DESCENDING"}``, several allowed; empty values sort last in both
  directions; ties (and no sorts) go by numeric id ascending.
* ``limit``: an integer 1..200 (default 10); ``after``: a non-negative integer offset (string or
  number); ``after + limit > 10000``: 400 VALIDATION_ERROR. ``total`` counts every match (it may
  exceed 10,000); ``paging.next`` is present whenever more matches follow, even when fetching that
  page would hit the cap.
Batch read/update
* More than 100 inputs, a body that is not an object with a list ``inputs`` of objects, an input
  without an ``id``, the same id twice in one update, or any ``idProperty`` other than
  hs_object_id: 400 VALIDATION_ERROR for the whole request.
* Each unknown id gets its own OBJECT_NOT_FOUND StandardError (context ``{"ids": [id]}``).
  Duplicate ids in a read are answered once.
* Update, per record: every property error of the record is collected into one StandardError
  (category VALIDATION_ERROR, message "Property values were not valid: ...", context
  ``{"ids": [id]}``, one ``errors[]`` entry per property with code, ``in`` = property name and
  context ``{"propertyName": [name]}``); a failing record applies nothing, the others are applied.
  Codes: PROPERTY_DOESNT_EXIST, READ_ONLY_VALUE, INVALID_OPTION, INVALID_INTEGER (a non-number
  without "."), INVALID_FLOAT (a non-number with "."), INVALID_EMAIL (into email: not
  ``x@y.z``), INVALID_DATETIME, INVALID_BOOLEAN, MAX_CHARACTERS (a string over 65,536
  characters), INVALID_VALUE (a list or object). These code names beyond the brief's are ours.
* Values are stored as strings: JSON numbers as their text (an integral float as an integer, 5.0
  -> "5"), booleans as "true"/"false"; numeric strings are kept as sent. ``""`` and null clear a
  value (stored as null).
* A record with at least one property is "applied" even when no value changes: lastmodifieddate
  becomes now and ``applied_writes`` gets ``{"id", "properties" (stored values), "at" (epoch
  seconds)}``. An empty ``properties`` object succeeds without touching the record.
* Results echo the written properties plus hs_object_id, createdate, lastmodifieddate; the batch
  ``status`` is COMPLETE; 200 when no error, else 207 with ``numErrors`` (also when all failed).
Data and clock
* The emulator clock is ``options.now`` (default: real now) plus real elapsed time; datetimes are
  ISO 8601 UTC with milliseconds and "Z". Seeded contacts get ``hs_lead_status`` NEW,
  ``lastmodifieddate = createdate``, ``website`` null unless the seed has one.
* Filler contacts (``filler_contacts``) get ids after the seeded ones, emails
  ``filler<n>@filler.example``, and createdate 400 days before the oldest seed lead plus n
  seconds, so they sort before every seed lead.
* ``contact()``/``contacts()`` return ``{"id", "properties"}`` with every defined property.
  ``human_edit``/``add_contact`` skip API validation (a person can type anything); unknown
  property names raise KeyError.
* The state file holds contacts and the id counter only; tokens, usage, ``applied_writes`` and
  ``search_requests`` belong to one emulator instance.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.limits import SlidingWindow
from connector.sandbox.seed import lead_created_times
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

SANDBOX_PRIVATE_APP_TOKEN = "pat-na1-7c1e5a3b-2d4f-4e8a-9b6c-0f1e2d3c4b5a"
SANDBOX_CLIENT_ID = "5e1c3f2a-8b7d-4c6e-9a0f-1b2c3d4e5f60"
SANDBOX_CLIENT_SECRET = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
SANDBOX_REFRESH_TOKEN = "na1-a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b4"

DEFAULT_BURST = (100, 10.0)
DEFAULT_SEARCH_PER_SECOND = 5
DEFAULT_DAILY_LIMIT = 250_000
DEFAULT_OAUTH_TTL_SECONDS = 1800
DEFAULT_ACCOUNT_TIMEZONE = "America/New_York"

MAX_SEARCH_LIMIT = 200
DEFAULT_SEARCH_LIMIT = 10
SEARCH_RESULT_CAP = 10_000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
MAX_BATCH_INPUTS = 100
MAX_STRING_LENGTH = 65_536
FIRST_CONTACT_ID = 1001
FILLER_AGE = timedelta(days=400)

ALWAYS_RETURNED = ("hs_object_id", "createdate", "lastmodifieddate")
DEFAULT_SEARCH_PROPERTIES = ("email", "firstname", "lastname")
QUERY_PROPERTIES = ("firstname", "lastname", "email", "company")

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)

__all__ = [
    "SANDBOX_PRIVATE_APP_TOKEN",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_REFRESH_TOKEN",
    "CONTACT_PROPERTIES",
    "PropertyDef",
    "HubSpotEmulator",
    "create_hubspot_emulator",
    "format_datetime",
]


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

FIELD_TYPES = {
    "string": "text",
    "number": "number",
    "enumeration": "select",
    "datetime": "date",
    "date": "date",
    "bool": "booleancheckbox",
}


@dataclass(frozen=True)
class PropertyDef:
    name: str
    label: str
    type: str  # string | number | enumeration | datetime | date | bool
    group: str = "contactinformation"
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    read_only: bool = False
    hubspot_defined: bool = True
    field_type: str | None = None
    description: str = ""
    has_unique_value: bool = False
    currency: bool = False

    def describe(self, display_order: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type or FIELD_TYPES[self.type],
            "groupName": self.group,
            "description": self.description,
            "options": [
                {"label": label, "value": value, "displayOrder": i, "hidden": False, "description": ""}
                for i, (value, label) in enumerate(self.options)
            ],
            "displayOrder": display_order,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": False,
            "hubspotDefined": self.hubspot_defined,
            "formField": not self.read_only,
            "archived": False,
            "createdAt": "2020-01-01T00:00:00.000Z",
            "updatedAt": "2020-01-01T00:00:00.000Z",
            "modificationMetadata": {
                "readOnlyValue": self.read_only,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyOptions": self.hubspot_defined and self.type == "enumeration",
                "archivable": not self.hubspot_defined,
            },
        }
        if self.type == "number":
            out["showCurrencySymbol"] = self.currency
        return out


def _opts(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


LEAD_STATUS_OPTIONS: tuple[tuple[str, str], ...] = (
    ("NEW", "New"), ("OPEN", "Open"), ("IN_PROGRESS", "In Progress"), ("OPEN_DEAL", "Open Deal"),
    ("UNQUALIFIED", "Unqualified"), ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
    ("CONNECTED", "Connected"), ("BAD_TIMING", "Bad Timing"),
)

_SIX = {"group": "sixsense", "hubspot_defined": False}

CONTACT_PROPERTIES: tuple[PropertyDef, ...] = (
    PropertyDef("email", "Email", "string", description="A contact's email address"),
    PropertyDef("firstname", "First Name", "string"),
    PropertyDef("lastname", "Last Name", "string"),
    PropertyDef("company", "Company Name", "string"),
    PropertyDef("country", "Country/Region", "string"),
    PropertyDef("jobtitle", "Job Title", "string"),
    PropertyDef("website", "Website URL", "string"),
    PropertyDef("hs_lead_status", "Lead Status", "enumeration", group="sales_properties",
                options=LEAD_STATUS_OPTIONS, field_type="radio"),
    PropertyDef("createdate", "Create Date", "datetime", read_only=True),
    PropertyDef("lastmodifieddate", "Last Modified Date", "datetime", read_only=True),
    PropertyDef("hs_object_id", "Record ID", "number", read_only=True, has_unique_value=True),
    PropertyDef("industry", "Industry", "string", group="companyinformation"),
    PropertyDef("numberofemployees", "Number of Employees", "number", group="companyinformation"),
    PropertyDef("annualrevenue", "Annual Revenue", "number", group="companyinformation", currency=True),
    PropertyDef("sixsense_company_name", "6sense Company Name", "string", **_SIX),
    PropertyDef("sixsense_domain", "6sense Domain", "string", **_SIX),
    PropertyDef("sixsense_employee_range", "6sense Employee Range", "string", **_SIX),
    PropertyDef("sixsense_revenue_range", "6sense Revenue Range", "string", **_SIX),
    PropertyDef("sixsense_intent_score", "6sense Intent Score", "number", **_SIX),
    PropertyDef("sixsense_buying_stage", "6sense Buying Stage", "enumeration",
                options=_opts("Purchase", "Decision", "Consideration", "Awareness", "Target"), **_SIX),
    PropertyDef("sixsense_profile_fit", "6sense Profile Fit", "enumeration",
                options=_opts("Strong", "Moderate", "Weak"), **_SIX),
    PropertyDef("sixsense_profile_score", "6sense Profile Score", "number", **_SIX),
    PropertyDef("sixsense_contact_grade", "6sense Contact Grade", "enumeration",
                options=_opts("A", "B", "C", "D"), **_SIX),
    PropertyDef("sixsense_segments", "6sense Segments", "string", **_SIX),
)
PROPERTIES_BY_NAME: dict[str, PropertyDef] = {p.name: p for p in CONTACT_PROPERTIES}
SEED_PREFILLED = {"Industry": "industry", "NumberOfEmployees": "numberofemployees"}

_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TOKEN_SPLIT = re.compile(r"[^\w]+", re.UNICODE)


# --------------------------------------------------------------------------------------------
# Datetimes and values
# --------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_datetime(moment: datetime) -> str:
    """HubSpot's wire format: ``2026-01-02T03:04:05.000Z``."""
    moment = _utc(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time_ms(value: Any) -> int | None:
    """Epoch milliseconds from epoch-ms digits or an ISO 8601 date/datetime; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return math.floor(moment.timestamp() * 1000)


def _ms_to_iso(ms: int) -> str:
    return format_datetime(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_text(value: Any) -> str | None:
    """How a person's value is stored (no validation): strings, None for empty."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(value)
    text = str(value)
    return text if text != "" else None


def _detail(prop: str, code: str, message: str) -> dict[str, Any]:
    return {"message": message, "code": code, "in": prop, "context": {"propertyName": [prop]}}


def coerce_value(pdef: PropertyDef | None, name: str, value: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(stored value, None) or (None, ErrorDetail) for one property of a batch update."""
    if pdef is None:
        return None, _detail(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
    if pdef.read_only:
        return None, _detail(name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
    if value is None or value == "":
        return None, None
    if isinstance(value, (list, dict)):
        return None, _detail(name, "INVALID_VALUE", f"{json.dumps(value)} is not a valid value for {name}")
    if pdef.type == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return _number_text(value), None
        text = _as_text(value) or ""
        if isinstance(value, str) and _NUMBER_RE.fullmatch(value):
            return value, None
        code = "INVALID_FLOAT" if "." in text else "INVALID_INTEGER"
        return None, _detail(name, code, f'"{text}" is not a valid number. Please enter a number.')
    if pdef.type == "enumeration":
        text = _as_text(value) or ""
        allowed = [v for v, _ in pdef.options]
        if text not in allowed:
            return None, _detail(name, "INVALID_OPTION",
                                 f'"{text}" was not one of the allowed options: {allowed}')
        return text, None
    if pdef.type in ("datetime", "date"):
        ms = parse_time_ms(value)
        if ms is None:
            return None, _detail(name, "INVALID_DATETIME", f'"{value}" is not a valid date or datetime')
        if pdef.type == "date":
            return _ms_to_iso(ms)[:10], None
        return _ms_to_iso(ms), None
    if pdef.type == "bool":
        text = str(value).lower() if not isinstance(value, bool) else ("true" if value else "false")
        if text not in ("true", "false"):
            return None, _detail(name, "INVALID_BOOLEAN", f'"{value}" is not a valid boolean')
        return text, None
    text = _as_text(value) or ""
    if len(text) > MAX_STRING_LENGTH:
        return None, _detail(name, "MAX_CHARACTERS",
                             f"value is too long. Must be at most {MAX_STRING_LENGTH} characters")
    if name == "email" and not _EMAIL_RE.fullmatch(text):
        return None, _detail(name, "INVALID_EMAIL", f"Email address {text} is invalid")
    return text, None


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class HubSpotApiError(Exception):
    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(f"{category}: {message}")
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra

    def body(self, correlation_id: str) -> dict[str, Any]:
        return {"status": "error", "message": self.message, "correlationId": correlation_id,
                "category": self.category, **self.extra}


def _validation(message: str) -> HubSpotApiError:
    return HubSpotApiError(400, "VALIDATION_ERROR", message)


# --------------------------------------------------------------------------------------------
# Search evaluation
# --------------------------------------------------------------------------------------------

COMPARE_OPS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE"})
ALL_OPS = COMPARE_OPS | {"BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
                         "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}


def _comparable(pdef: PropertyDef, value: Any, *, strict: bool) -> Any:
    """The value in the property's sort/compare domain; raise 400 (strict) or None on a bad value."""
    if value is None or value == "":
        return None
    if pdef.type == "number":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            if strict:
                raise _validation(f"{value!r} is not a valid number for property {pdef.name}") from None
            return None
    if pdef.type in ("datetime", "date"):
        ms = parse_time_ms(value)
        if ms is None and strict:
            raise _validation(f"{value!r} is not a valid date for property {pdef.name}: "
                              "use epoch milliseconds or ISO 8601")
        return ms
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


@dataclass
class _Filter:
    pdef: PropertyDef
    op: str
    value: Any = None
    high: Any = None
    values: tuple[Any, ...] = ()
    raw: str = ""

    def matches(self, props: dict[str, str | None]) -> bool:
        stored = props.get(self.pdef.name)
        present = stored is not None and stored != ""
        op = self.op
        if op == "HAS_PROPERTY":
            return present
        if op == "NOT_HAS_PROPERTY":
            return not present
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            hit = present and _contains_token(str(stored), self.raw)
            return hit if op == "CONTAINS_TOKEN" else not hit
        value = _comparable(self.pdef, stored, strict=False) if present else None
        if op in ("NEQ", "NOT_IN"):
            if value is None:
                return True
            return value != self.value if op == "NEQ" else value not in self.values
        if value is None:
            return False
        if op == "EQ":
            return value == self.value
        if op == "IN":
            return value in self.values
        if op == "BETWEEN":
            return self.value <= value <= self.high
        return {"LT": value < self.value, "LTE": value <= self.value,
                "GT": value > self.value, "GTE": value >= self.value}[op]


def _contains_token(stored: str, token: str) -> bool:
    needle = token.strip().lower()
    if not needle:
        return False
    haystack = [stored.strip().lower()] + [t for t in _TOKEN_SPLIT.split(stored.lower()) if t]
    if "*" in needle:
        return any(fnmatch.fnmatchcase(t, needle) for t in haystack)
    return needle in haystack


def _parse_filter(raw: Any, where: str) -> _Filter:
    if not isinstance(raw, dict):
        raise _validation(f"{where} must be an object")
    name = raw.get("propertyName")
    op = raw.get("operator")
    if not isinstance(name, str) or not name:
        raise _validation(f"{where}.propertyName is required")
    pdef = PROPERTIES_BY_NAME.get(name)
    if pdef is None:
        raise _validation(f"Property '{name}' does not exist on object type CONTACT")
    if op not in ALL_OPS:
        raise _validation(f"{where}.operator {op!r} is not one of {sorted(ALL_OPS)}")
    flt = _Filter(pdef, op)
    if op in COMPARE_OPS or op == "BETWEEN":
        if raw.get("value") in (None, ""):
            raise _validation(f"{where}: operator {op} requires a value")
        flt.value = _comparable(pdef, raw["value"], strict=True)
    if op == "BETWEEN":
        if raw.get("highValue") in (None, ""):
            raise _validation(f"{where}: operator BETWEEN requires a highValue")
        flt.high = _comparable(pdef, raw["highValue"], strict=True)
    if op in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise _validation(f"{where}: operator {op} requires a non-empty values list")
        flt.values = tuple(_comparable(pdef, v, strict=True) for v in values)
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        if raw.get("value") in (None, ""):
            raise _validation(f"{where}: operator {op} requires a value")
        flt.raw = str(raw["value"])
    return flt


def _parse_sorts(raw: Any) -> list[tuple[PropertyDef, bool]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _validation("sorts must be a list")
    out: list[tuple[PropertyDef, bool]] = []
    for item in raw:
        if isinstance(item, str):
            descending = item.startswith("-")
            name = item[1:] if descending else item
        elif isinstance(item, dict):
            name = item.get("propertyName")
            direction = item.get("direction", "ASCENDING")
            if direction not in ("ASCENDING", "DESCENDING"):
                raise _validation(f"sort direction {direction!r} must be ASCENDING or DESCENDING")
            descending = direction == "DESCENDING"
        else:
            raise _validation("each sort must be a property name or {propertyName, direction}")
        pdef = PROPERTIES_BY_NAME.get(name) if isinstance(name, str) else None
        if pdef is None:
            raise _validation(f"Cannot sort by property '{name}': it does not exist on object type CONTACT")
        out.append((pdef, descending))
    return out


def _query_matches(props: dict[str, str | None], words: list[str]) -> bool:
    tokens: list[str] = []
    for name in QUERY_PROPERTIES:
        value = props.get(name)
        if value:
            tokens.append(value.strip().lower())
            tokens.extend(t for t in _TOKEN_SPLIT.split(value.lower()) if t)
    return all(any(t.startswith(w) for t in tokens) for w in words)


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------


class _CountingWindow(SlidingWindow):
    """A SlidingWindow that can also say how many requests it holds now."""

    def used(self) -> int:
        with self._lock:
            now = time.monotonic()
            while self._accepted and now - self._accepted[0] >= self.window_seconds:
                self._accepted.popleft()
            return len(self._accepted)


@dataclass
class _Caller:
    kind: str  # "private" | "oauth"
    app_key: str


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class HubSpotEmulator:
    vendor = "hubspot"
    tls = False

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        if options.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = float(options.time_scale)
        extra = options.extra or {}
        burst = extra.get("burst", DEFAULT_BURST)
        self.burst_limit = int(burst[0])
        self.burst_window_seconds = float(burst[1]) / self.time_scale
        self.search_per_second = int(extra.get("search_per_second", DEFAULT_SEARCH_PER_SECOND))
        self.search_window_seconds = 1.0 / self.time_scale
        self.daily_limit = int(extra.get("daily_limit", DEFAULT_DAILY_LIMIT))
        self.oauth_ttl = float(extra.get("oauth_ttl_seconds", DEFAULT_OAUTH_TTL_SECONDS)) / self.time_scale
        self.account_timezone = ZoneInfo(str(extra.get("account_timezone", DEFAULT_ACCOUNT_TIMEZONE)))
        self.filler_contacts = int(extra.get("filler_contacts", 0))

        self._lock = threading.RLock()
        self._seed_now = _utc(options.now or datetime.now(timezone.utc))
        self._wall_start = time.time()
        self._contacts: dict[str, dict[str, str | None]] = {}
        self._next_id = FIRST_CONTACT_ID
        self._access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._burst: dict[str, _CountingWindow] = {}
        self._search_window = SlidingWindow(self.search_per_second, self.search_window_seconds)
        self._daily_day: date | None = None
        self._daily_used = 0
        self.applied_writes: list[dict[str, Any]] = []
        self.search_requests: list[dict[str, Any]] = []

        self._state = JsonStateFile(options.state_dir / "hubspot.json" if options.state_dir else None)
        document = self._state.load()
        if document is None:
            self._seed()
            self._save()
        else:
            self._load(document)

        self.log = RequestLog()
        self.faults = FaultQueue()
        self.app = FastAPI(title="HubSpot sandbox", openapi_url=None, docs_url=None, redoc_url=None)
        instrument(self.app, self.log, self.faults)
        self._add_routes()

    # ---- settings ----

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {
            "sources": {
                "hubspot": {
                    "enabled": True,  # the sandbox stands in for every CRM
                    "base_url": base_url,
                    "access_token": SANDBOX_PRIVATE_APP_TOKEN,
                    "client_id": SANDBOX_CLIENT_ID,
                    "client_secret": SANDBOX_CLIENT_SECRET,
                    "refresh_token": SANDBOX_REFRESH_TOKEN,
                }
            }
        }

    # ---- clocks and storage ----

    def now(self) -> datetime:
        """The emulator's clock: options.now (or the start time) plus real elapsed time."""
        return _utc(self._seed_now + timedelta(seconds=time.time() - self._wall_start))

    def quota_now(self) -> datetime:
        """The clock of the daily quota: elapsed time runs time_scale times faster."""
        return self._seed_now + timedelta(seconds=(time.time() - self._wall_start) * self.time_scale)

    def _new_id(self) -> str:
        contact_id = str(self._next_id)
        self._next_id += 1
        return contact_id

    def _blank(self) -> dict[str, str | None]:
        return {p.name: None for p in CONTACT_PROPERTIES}

    def _seed(self) -> None:
        seeded = lead_created_times(self._seed_now)
        for lead, created in seeded:
            props = self._blank()
            contact_id = self._new_id()
            stamp = format_datetime(created)
            props.update({
                "hs_object_id": contact_id,
                "email": lead.email or None,
                "firstname": lead.first_name or None,
                "lastname": lead.last_name or None,
                "company": lead.company or None,
                "country": lead.country or None,
                "jobtitle": lead.title or None,
                "website": lead.website or None,
                "hs_lead_status": "NEW",
                "createdate": stamp,
                "lastmodifieddate": stamp,
            })
            for key, value in lead.prefilled.items():
                props[SEED_PREFILLED.get(key, key.lower())] = _as_text(value)
            self._contacts[contact_id] = props
        oldest = min((_utc(created) for _, created in seeded), default=self._seed_now)
        base = oldest - FILLER_AGE
        for n in range(self.filler_contacts):
            props = self._blank()
            contact_id = self._new_id()
            stamp = format_datetime(base + timedelta(seconds=n))
            props.update({
                "hs_object_id": contact_id,
                "email": f"filler{n}@filler.example",
                "firstname": "Filler",
                "lastname": str(n),
                "company": "Filler Co",
                "country": "US",
                "hs_lead_status": "NEW",
                "createdate": stamp,
                "lastmodifieddate": stamp,
            })
            self._contacts[contact_id] = props

    def _load(self, document: dict[str, Any]) -> None:
        for contact_id, stored in document.get("contacts", {}).items():
            props = self._blank()
            props.update({k: v for k, v in stored.items() if k in PROPERTIES_BY_NAME})
            props["hs_object_id"] = contact_id
            self._contacts[contact_id] = props
        highest = max((int(i) for i in self._contacts if i.isdigit()), default=FIRST_CONTACT_ID - 1)
        self._next_id = max(int(document.get("next_id", FIRST_CONTACT_ID)), highest + 1)

    def _save(self) -> None:
        self._state.save({"format": 1, "next_id": self._next_id, "contacts": self._contacts})

    def _ordered_ids(self) -> list[str]:
        return sorted(self._contacts, key=lambda i: (len(i), i))

    # ---- in-process helpers for tests ----

    def contact(self, contact_id: str) -> dict[str, Any]:
        with self._lock:
            props = self._contacts.get(str(contact_id))
            if props is None:
                raise KeyError(contact_id)
            return {"id": str(contact_id), "properties": dict(props)}

    def contacts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": i, "properties": dict(self._contacts[i])} for i in self._ordered_ids()]

    @staticmethod
    def _property(name: str) -> PropertyDef:
        pdef = PROPERTIES_BY_NAME.get(name)
        if pdef is None:
            raise KeyError(f"no property {name!r} on contacts")
        return pdef

    def human_edit(self, contact_id: str, prop: str, value: Any) -> None:
        """A person edits a property in the CRM UI (no API validation)."""
        with self._lock:
            props = self._contacts.get(str(contact_id))
            if props is None:
                raise KeyError(contact_id)
            props[self._property(prop).name] = _as_text(value)
            props["lastmodifieddate"] = format_datetime(self.now())
            self._save()

    def add_contact(self, **properties: Any) -> str:
        """A new contact (as a person or a form would create it); returns its id."""
        with self._lock:
            props = self._blank()
            for name, value in properties.items():
                props[self._property(name).name] = _as_text(value)
            contact_id = self._new_id()
            props["hs_object_id"] = contact_id
            props["createdate"] = props["createdate"] or format_datetime(self.now())
            props["lastmodifieddate"] = props["lastmodifieddate"] or props["createdate"]
            self._contacts[contact_id] = props
            self._save()
            return contact_id

    def expire_oauth_tokens(self) -> None:
        """Every OAuth access token issued so far is expired from now on."""
        with self._lock:
            now = time.monotonic()
            for token, expiry in self._access_tokens.items():
                self._access_tokens[token] = min(expiry, now)

    def daily_usage(self) -> tuple[int, int]:
        """(requests counted today in the account's time zone, daily limit)."""
        with self._lock:
            self._roll_day()
            return self._daily_used, self.daily_limit

    # ---- auth and limits ----

    def _roll_day(self) -> None:
        today = self.quota_now().astimezone(self.account_timezone).date()
        if today != self._daily_day:
            self._daily_day = today
            self._daily_used = 0

    def _authenticate(self, request: Request) -> _Caller:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        token = credential.strip() if scheme.lower() == "bearer" else ""
        if token and secrets.compare_digest(token, SANDBOX_PRIVATE_APP_TOKEN):
            return _Caller("private", "private-app")
        expiry = self._access_tokens.get(token) if token else None
        if expiry is None:
            raise HubSpotApiError(401, "INVALID_AUTHENTICATION", AUTH_MESSAGE)
        now = time.monotonic()
        if now >= expiry:
            ago = max(1, int(now - expiry))
            raise HubSpotApiError(401, "EXPIRED_AUTHENTICATION",
                                  f"The OAuth token used to make this call expired {ago} second(s) ago.")
        return _Caller("oauth", f"oauth:{SANDBOX_CLIENT_ID}")

    def _burst_window(self, key: str) -> _CountingWindow:
        window = self._burst.get(key)
        if window is None:
            window = _CountingWindow(self.burst_limit, self.burst_window_seconds)
            self._burst[key] = window
        return window

    def _rate_headers(self, caller: _Caller) -> dict[str, str]:
        window = self._burst_window(caller.app_key)
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.burst_limit),
            "X-HubSpot-RateLimit-Remaining": str(max(0, self.burst_limit - window.used())),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(round(self.burst_window_seconds * 1000))),
        }
        if caller.kind == "private":
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily_limit - self._daily_used))
        return headers

    @staticmethod
    def _rate_limited(message: str, policy: str, *, request_id: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                                "correlationId": str(uuid.uuid4()), "policyName": policy}
        if request_id:
            body["requestId"] = str(uuid.uuid4())
        return body

    # ---- HTTP ----

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None,
              correlation_id: str | None = None) -> Response:
        cid = correlation_id or (body.get("correlationId") if isinstance(body, dict) else None) or str(uuid.uuid4())
        return JSONResponse(body, status_code=status,
                            headers={**(headers or {}), "X-HubSpot-Correlation-Id": cid})

    def _add_routes(self) -> None:
        app = self.app

        @app.post("/oauth/v1/token")
        async def token(request: Request) -> Response:
            raw = (await request.body()).decode("utf-8", "replace")
            return self._token(request, raw)

        @app.api_route("/crm/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
        async def crm(request: Request, rest: str) -> Response:
            raw = await request.body() if request.method in ("POST", "PATCH", "PUT") else b""
            return self._crm(request, rest, raw)

    # -- OAuth --

    def _token(self, request: Request, raw_body: str) -> Response:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))

        def fail(status: str, message: str) -> Response:
            return self._json(400, {"status": status, "message": message, "correlationId": str(uuid.uuid4())})

        if params.get("grant_type") != "refresh_token":
            return fail("BAD_GRANT_TYPE", "unsupported grant type: only refresh_token is accepted")
        if not secrets.compare_digest(params.get("client_id", ""), SANDBOX_CLIENT_ID):
            return fail("BAD_CLIENT_ID", "missing or invalid client id")
        if not secrets.compare_digest(params.get("client_secret", ""), SANDBOX_CLIENT_SECRET):
            return fail("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if not secrets.compare_digest(params.get("refresh_token", ""), SANDBOX_REFRESH_TOKEN):
            return fail("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        access_token = "CO" + secrets.token_urlsafe(96)
        with self._lock:
            self._access_tokens[access_token] = time.monotonic() + self.oauth_ttl
        return self._json(200, {
            "token_type": "bearer",
            "refresh_token": SANDBOX_REFRESH_TOKEN,
            "access_token": access_token,
            "expires_in": int(self.oauth_ttl),
        })

    # -- CRM --

    def _crm(self, request: Request, rest: str, raw_body: bytes) -> Response:
        path = "/" + rest.strip("/")
        is_search = request.method == "POST" and path == "/v3/objects/contacts/search"
        with self._lock:
            try:
                caller = self._authenticate(request)
            except HubSpotApiError as exc:
                cid = str(uuid.uuid4())
                return self._json(exc.status, exc.body(cid), correlation_id=cid)
            if is_search:
                if self._search_window.try_accept() is not None:
                    return self._json(429, self._rate_limited("You have reached your secondly limit.",
                                                              "SECONDLY", request_id=False))
                headers: dict[str, str] = {}
            else:
                self._roll_day()
                if self._daily_used >= self.daily_limit:
                    return self._json(429, self._rate_limited("You have reached your daily limit.", "DAILY"),
                                      self._rate_headers(caller))
                window = self._burst_window(caller.app_key)
                if window.try_accept() is not None:
                    return self._json(429, self._rate_limited(
                        "You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING"),
                        self._rate_headers(caller))
                self._daily_used += 1
                headers = self._rate_headers(caller)
        cid = str(uuid.uuid4())
        try:
            status, body = self._dispatch(request, path, raw_body, is_search)
        except HubSpotApiError as exc:
            status, body = exc.status, exc.body(cid)
        return self._json(status, body, headers, correlation_id=cid)

    @staticmethod
    def _body(raw_body: bytes) -> Any:
        try:
            return json.loads(raw_body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _validation(f"Invalid input JSON: {exc}") from None

    def _dispatch(self, request: Request, path: str, raw_body: bytes, is_search: bool) -> tuple[int, Any]:
        method = request.method
        if is_search:
            return 200, self._search(self._body(raw_body))
        if path == "/v3/objects/contacts/batch/read" and method == "POST":
            return self._batch_read(self._body(raw_body))
        if path == "/v3/objects/contacts/batch/update" and method == "POST":
            return self._batch_update(self._body(raw_body))
        if path == "/v3/properties/contacts" and method == "GET":
            return 200, self._properties(request)
        match = re.fullmatch(r"/v3/properties/contacts/([^/]+)", path)
        if match and method == "GET":
            pdef = PROPERTIES_BY_NAME.get(match.group(1))
            if pdef is None:
                raise HubSpotApiError(404, "OBJECT_NOT_FOUND",
                                      f"Unable to find property {match.group(1)} on object type CONTACT")
            return 200, pdef.describe(CONTACT_PROPERTIES.index(pdef))
        match = re.fullmatch(r"/v3/objects/contacts/([^/]+)", path)
        if match and method == "GET" and match.group(1) not in ("search", "batch"):
            return 200, self._get_one(match.group(1), request)
        raise HubSpotApiError(404, "OBJECT_NOT_FOUND", f"Resource not found: {method} /crm{path}")

    # -- shaping --

    def _public(self, contact_id: str, names: list[str] | None) -> dict[str, Any]:
        props = self._contacts[contact_id]
        wanted = list(names) if names is not None else list(DEFAULT_SEARCH_PROPERTIES)
        for always in ALWAYS_RETURNED:
            if always not in wanted:
                wanted.append(always)
        return {
            "id": contact_id,
            "properties": {n: props.get(n) for n in wanted if n in PROPERTIES_BY_NAME},
            "createdAt": props["createdate"],
            "updatedAt": props["lastmodifieddate"] or props["createdate"],
            "archived": False,
        }

    @staticmethod
    def _property_names(raw: Any, where: str) -> list[str] | None:
        if raw is None:
            return None
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            raise _validation(f"{where} must be a list of property names")
        return [n for n in raw if n] or None

    # -- search --

    def _search(self, body: Any) -> dict[str, Any]:
        with self._lock:
            if isinstance(body, dict):
                self.search_requests.append(json.loads(json.dumps(body)))
            if not isinstance(body, dict):
                raise _validation("Invalid input JSON: the search body must be an object")
            limit = body.get("limit", DEFAULT_SEARCH_LIMIT)
            if limit is None:
                limit = DEFAULT_SEARCH_LIMIT
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise _validation(f"limit must be an integer between 1 and {MAX_SEARCH_LIMIT}")
            if limit > MAX_SEARCH_LIMIT:
                raise _validation(f"limit must be less than or equal to {MAX_SEARCH_LIMIT} (got {limit})")
            after_raw = body.get("after")
            if after_raw in (None, ""):
                after = 0
            elif isinstance(after_raw, int) and not isinstance(after_raw, bool) and after_raw >= 0:
                after = after_raw
            elif isinstance(after_raw, str) and after_raw.isdigit():
                after = int(after_raw)
            else:
                raise _validation(f"after {after_raw!r} is not a valid paging cursor")
            if after + limit > SEARCH_RESULT_CAP:
                raise _validation(
                    f"The search endpoints are limited to {SEARCH_RESULT_CAP:,} total results for any given "
                    f"query (after={after}, limit={limit})."
                )
            groups_raw = body.get("filterGroups") or []
            if not isinstance(groups_raw, list):
                raise _validation("filterGroups must be a list")
            if len(groups_raw) > MAX_FILTER_GROUPS:
                raise _validation(f"Too many filter groups: at most {MAX_FILTER_GROUPS} are allowed")
            groups: list[list[_Filter]] = []
            total_filters = 0
            for g, group in enumerate(groups_raw):
                filters_raw = group.get("filters", []) if isinstance(group, dict) else None
                if not isinstance(filters_raw, list):
                    raise _validation(f"filterGroups[{g}].filters must be a list")
                if len(filters_raw) > MAX_FILTERS_PER_GROUP:
                    raise _validation(f"Too many filters in filterGroups[{g}]: at most {MAX_FILTERS_PER_GROUP}")
                total_filters += len(filters_raw)
                groups.append([_parse_filter(f, f"filterGroups[{g}].filters[{i}]")
                               for i, f in enumerate(filters_raw)])
            if total_filters > MAX_FILTERS_TOTAL:
                raise _validation(f"Too many filters: at most {MAX_FILTERS_TOTAL} in all groups")
            sorts = _parse_sorts(body.get("sorts"))
            names = self._property_names(body.get("properties"), "properties")
            query = body.get("query")
            words = str(query).lower().split() if query not in (None, "") else []

            matched = []
            for contact_id in self._ordered_ids():
                props = self._contacts[contact_id]
                if groups and not any(all(f.matches(props) for f in group) for group in groups):
                    continue
                if words and not _query_matches(props, words):
                    continue
                matched.append(contact_id)
            for pdef, descending in reversed(sorts):  # stable sorts, last key first
                keyed = [(i, _comparable(pdef, self._contacts[i].get(pdef.name), strict=False)) for i in matched]
                present = [(i, k) for i, k in keyed if k is not None]
                present.sort(key=lambda pair: pair[1], reverse=descending)
                matched = [i for i, _ in present] + [i for i, k in keyed if k is None]
            page = matched[after: after + limit]
            result: dict[str, Any] = {
                "total": len(matched),
                "results": [self._public(i, names) for i in page],
            }
            if after + len(page) < len(matched):
                next_after = str(after + len(page))
                result["paging"] = {"next": {"after": next_after, "link": f"?after={next_after}"}}
            return result

    # -- batch --

    def _inputs(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise _validation("Invalid input JSON: the body must be an object with a list 'inputs'")
        inputs = body["inputs"]
        if len(inputs) > MAX_BATCH_INPUTS:
            raise _validation(f"Batch input size {len(inputs)} exceeds the limit of {MAX_BATCH_INPUTS} inputs")
        id_property = body.get("idProperty")
        if id_property not in (None, "", "hs_object_id"):
            raise _validation(f"idProperty {id_property!r} is not supported (use record ids)")
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or item.get("id") in (None, ""):
                raise _validation(f"inputs[{i}] must be an object with an id")
            if item.get("idProperty") not in (None, "", "hs_object_id"):
                raise _validation(f"idProperty {item.get('idProperty')!r} is not supported (use record ids)")
        return inputs

    @staticmethod
    def _not_found(contact_id: str) -> dict[str, Any]:
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. "
                       "Check that ids are valid.",
            "context": {"ids": [contact_id]},
            "errors": [],
            "links": {},
        }

    def _batch_answer(self, started: datetime, results: list[dict[str, Any]],
                      errors: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        body["startedAt"] = format_datetime(started)
        body["completedAt"] = format_datetime(self.now())
        return (207 if errors else 200), body

    def _batch_read(self, body: Any) -> tuple[int, dict[str, Any]]:
        started = self.now()
        inputs = self._inputs(body)
        names = self._property_names(body.get("properties"), "properties")
        with self._lock:
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            seen: set[str] = set()
            for item in inputs:
                contact_id = str(item["id"])
                if contact_id in seen:
                    continue
                seen.add(contact_id)
                if contact_id in self._contacts:
                    results.append(self._public(contact_id, names))
                else:
                    errors.append(self._not_found(contact_id))
            return self._batch_answer(started, results, errors)

    def _batch_update(self, body: Any) -> tuple[int, dict[str, Any]]:
        started = self.now()
        inputs = self._inputs(body)
        ids = [str(item["id"]) for item in inputs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise _validation(f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique")
        for i, item in enumerate(inputs):
            if not isinstance(item.get("properties"), dict):
                raise _validation(f"inputs[{i}].properties must be an object")
        with self._lock:
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            now = self.now()
            stamp = format_datetime(now)
            applied = False
            for item in inputs:
                contact_id = str(item["id"])
                if contact_id not in self._contacts:
                    errors.append(self._not_found(contact_id))
                    continue
                changes: dict[str, str | None] = {}
                details: list[dict[str, Any]] = []
                for name, value in item["properties"].items():
                    stored, detail = coerce_value(PROPERTIES_BY_NAME.get(name), name, value)
                    if detail is not None:
                        details.append(detail)
                    else:
                        changes[name] = stored
                if details:
                    summary = [{"isValid": False, "message": d["message"], "error": d["code"], "name": d["in"]}
                               for d in details]
                    errors.append({
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": f"Property values were not valid: {json.dumps(summary)}",
                        "context": {"ids": [contact_id]},
                        "errors": details,
                        "links": {},
                    })
                    continue
                props = self._contacts[contact_id]
                if changes:
                    props.update(changes)
                    props["lastmodifieddate"] = stamp
                    self.applied_writes.append({"id": contact_id, "properties": dict(changes),
                                                "at": now.timestamp()})
                    applied = True
                results.append(self._public(contact_id, list(changes)))
            if applied:
                self._save()
            return self._batch_answer(started, results, errors)

    # -- single object and properties --

    def _get_one(self, contact_id: str, request: Request) -> dict[str, Any]:
        raw = request.query_params.get("properties")
        names = [n for n in raw.split(",") if n] if raw else None
        with self._lock:
            if contact_id not in self._contacts:
                raise HubSpotApiError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.",
                                      context={"id": [contact_id]})
            return self._public(contact_id, names)

    def _properties(self, request: Request) -> dict[str, Any]:
        if request.query_params.get("archived", "false").lower() == "true":
            return {"results": []}
        raw = request.query_params.get("properties")
        wanted = {n for n in raw.split(",") if n} if raw else None
        return {"results": [p.describe(i) for i, p in enumerate(CONTACT_PROPERTIES)
                            if wanted is None or p.name in wanted]}


@register_emulator("hubspot")
def create_hubspot_emulator(options: EmulatorOptions) -> HubSpotEmulator:
    return HubSpotEmulator(options)
