"""Salesforce emulator: the REST API parts a lead-sync connector uses, served over HTTPS.

Real `simple-salesforce` talks to it unchanged: it forces https, so the emulator runs with TLS on
127.0.0.1 and the client is built with `Salesforce(session_id=..., instance_url=base_url,
session=<requests.Session with verify=ca_bundle>)`.

Routes
------
* ``POST /services/oauth2/token``: client-credentials (secret in the body or an HTTP Basic header)
  and username-password grants.
* ``GET  /services/data/``: API versions (no session needed).
* ``GET  /services/data/vXX.X/``: resource directory.
* ``GET  /services/data/vXX.X/limits/``: ``DailyApiRequests``.
* ``GET  /services/data/vXX.X/query?q=SOQL`` (and ``queryAll``), ``GET .../query/<locator>-<offset>``.
* ``GET  /services/data/vXX.X/sobjects/``, ``.../sobjects/Lead/``, ``.../sobjects/Lead/describe``.
* ``GET|PATCH /services/data/vXX.X/sobjects/Lead/<Id>``: one record.
* ``PATCH /services/data/vXX.X/composite/sobjects``: sObject Collections update.
* anything else under ``/services/data`` is 404 ``NOT_FOUND``.

Choices made where the reference (crm-apis.md) is unsure or silent
-------------------------------------------------------------------
Auth and sessions
* Bad client id or secret, in either grant, is 400 ``invalid_client`` / "invalid client
  credentials" (real Salesforce distinguishes ``invalid_client_id`` for an unknown id); a bad username
  or password is 400 ``invalid_grant`` / "authentication failure". A missing or other grant type is
  400 ``unsupported_grant_type`` / "grant type not supported".
* Token parameters are read from the form body, with the URL query string as a fallback (Salesforce
  accepts both). In the Basic header, id and secret are tried raw and form-url-decoded (RFC 6749).
* Tokens expire a fixed ``session_ttl_seconds / time_scale`` after they are issued (Salesforce's
  timeout is inactivity-based; the emulator does not extend a session on use). Sessions are not
  persisted: a second emulator on the same state_dir needs a new token. ``Authorization: OAuth <t>``
  is accepted like ``Bearer <t>``.
* The token response has no ``expires_in``; ``signature`` is base64(HMAC-SHA256(client_secret,
  id + issued_at)) as Salesforce documents; the org id is ``00D000000000001EAA`` and the user is
  INTEGRATION_USER_ID for both grants.

API usage
* Every authorised call under ``/services/data/vXX.X/...`` counts one request against a rolling
  window of ``86400 / time_scale`` seconds, errors (400/404) included, before the route runs. A call
  refused with 403 ``REQUEST_LIMIT_EXCEEDED`` (refused when ``used >= daily_api_limit``) and a 401 are
  not counted. The usage is kept in memory only (not persisted across emulator instances).
* ``Sforce-Limit-Info: api-usage=N/M`` is on every ``/services/data`` response, 401/403 included,
  and, because the brief asks for it, also on the unauthenticated versions list ``/services/data/``
  (real Salesforce omits it there). The versions list needs no session and is not counted. A
  response produced by an injected fault (FaultQueue) carries only the fault's own headers.
* OAuth token requests never count.

SOQL
* Supported: ``SELECT f, ... | COUNT() FROM Lead [WHERE ...] [ORDER BY f [ASC|DESC] [NULLS FIRST|
  LAST], ...] [LIMIT n] [OFFSET n]``. Not supported (MALFORMED_QUERY): relationship paths (these
  give INVALID_FIELD), subqueries, aggregates other than COUNT(), GROUP BY, date literals such as
  TODAY / LAST_N_DAYS:n, bind variables, ``NOT LIKE`` (write ``NOT f LIKE ...``).
* As in Salesforce, AND and OR may not be mixed at one level without parentheses (MALFORMED_QUERY).
* Datetime literals: ``YYYY-MM-DDThh:mm:ss[.SSS](Z|+hhmm|+hh:mm|-...)``; a fraction must have exactly
  three digits (a Python ``isoformat()`` with microseconds is rejected as MALFORMED_QUERY).
* A literal of the wrong kind for its field (quoted datetime, number in a text field, ...) is 400
  INVALID_FIELD "value of filter criterion for field 'X' must be of type ...". An Id literal that is
  not 15/18 alphanumerics is 400 INVALID_QUERY_FILTER_OPERATOR "invalid ID field: ...". ``<``,
  ``<=``, ``>``, ``>=`` or LIKE against null, and LIKE on a non-text field, are also
  INVALID_QUERY_FILTER_OPERATOR.
* Text comparisons (=, !=, <, IN, LIKE, ORDER BY) are case-insensitive; ``''`` and null are the same
  value; ``!=`` and ``NOT IN`` match null values (SOQL semantics, unlike SQL). Ids compare on their
  first 15 characters (case-sensitive), so a 15-character Id literal matches.
* Without ORDER BY, rows come in creation (Id) order. ASC sorts nulls first, DESC nulls last.
* Selecting one field twice is MALFORMED_QUERY "duplicate field selected: X". Record keys use the
  field's canonical API name, whatever case the query used, in SELECT order after ``attributes``.
* The query cursor is a snapshot of the matching rows taken when the query runs; it lives for 15
  minutes (scaled) after its last use, then ``query/<locator>`` is 400 INVALID_QUERY_LOCATOR.
* Page size: ``min(max_page_size, batchSize)`` when ``Sforce-Query-Options: batchSize=N`` has N in
  200..2000, else ``max_page_size``; an out-of-range batchSize is ignored.
* ``parsed_queries`` records only queries that parsed and validated (not the 400s).

Writes (composite/sobjects and sobjects/Lead/<Id>)
* More than 200 records: the whole request is 400 ``EXCEEDED_ID_LIMIT`` "record limit reached.
  cannot submit more than 200 records into this call". A body that is not a JSON object with a list
  ``records`` of objects (or a non-boolean ``allOrNone``) is 400 ``JSON_PARSER_ERROR``.
* Per-record checks, all errors of a record collected: missing ``attributes.type`` or a type other
  than Lead -> INVALID_TYPE; missing id -> MISSING_ARGUMENT; an id that matches no lead (malformed
  ids included) -> INVALID_CROSS_REFERENCE_KEY "invalid cross reference id" (then no other check);
  the same id twice in one request -> the later ones fail with DUPLICATE_VALUE "Duplicate id in
  list: <id>"; unknown field -> INVALID_FIELD "No such column 'X' on sobject of type Lead";
  non-updateable field -> INVALID_FIELD_FOR_INSERT_UPDATE; too long -> STRING_TOO_LONG
  "<Label>: data value too large: <first 20 chars>... (max length=N)"; non-number (strings and
  booleans included, even "1192") into int/double/currency, or a non-integral number into an int ->
  INVALID_TYPE_ON_FIELD_IN_RECORD "<Label>: value not of required type: <value>"; a number with
  more integer digits than the field allows -> NUMBER_OUTSIDE_VALID_RANGE; a value outside a
  restricted picklist (the SixSense_* picklists are restricted; Industry, LeadSource and Status are
  not) -> INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST; a malformed address into Email ->
  INVALID_EMAIL_ADDRESS; null (or "") into a non-nillable field (LastName, Company, Status) ->
  REQUIRED_FIELD_MISSING.
* Text fields take numbers (stored as their ``str()``); booleans, lists and objects are
  INVALID_TYPE_ON_FIELD_IN_RECORD. ``""`` is stored as null (Salesforce keeps no empty strings).
  An int field's number is stored as given; a double, currency or percent number is rounded half
  up to the field's scale (Salesforce keeps no more decimals than the scale), then range-checked.
* A failed record's result echoes the id it was sent with (null when none); a success returns the
  stored 18-character Id. With allOrNone, records without their own error get
  ALL_OR_NONE_OPERATION_ROLLED_BACK and nothing is applied.
* An applied record gets LastModifiedDate = SystemModstamp = now and LastModifiedById =
  INTEGRATION_USER_ID even when no value changed; ``applied_writes`` gets ``{"id", "fields", "at"}``
  with the stored (coerced) values and ``at`` the emulator clock as epoch seconds.

Data and clock
* Lead Ids are "00Q" + 12-digit counter + "AAA" (the brief's form, not the real checksum suffix).
* The emulator clock is ``options.now`` (default: real now) advanced by real elapsed time, so
  writes made right after seeding are later than the seeded timestamps. Datetimes are kept at
  millisecond precision, UTC.
* Seeded Email is kept exactly as given (padding, case, ""); a seed's empty Title/Website is null.
* ``lead()``/``leads()`` return copies with datetimes in the API's wire format
  ``2026-01-02T03:04:05.000+0000``, like the query results.
* The state file holds the leads and the Id counter only; sessions, usage, cursors,
  ``applied_writes`` and ``parsed_queries`` belong to one emulator instance.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import hmac
import json
import math
import re
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from connector.sandbox import EmulatorOptions, register_emulator
from connector.sandbox.seed import lead_created_times
from connector.sandbox.server import FaultQueue, RequestLog, instrument
from connector.sandbox.state import JsonStateFile

SANDBOX_CLIENT_ID = "sandbox-sf-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-sf-client-secret-5f0c2d"
SANDBOX_USERNAME = "integration@sandbox.example"
SANDBOX_PASSWORD = "sandbox-sf-password-91ab"
INTEGRATION_USER_ID = "005000000000001AAA"  # LastModifiedById after our API writes
HUMAN_USER_ID = "005000000000002AAA"  # LastModifiedById after human_edit()

ORG_ID = "00D000000000001EAA"
DEFAULT_DAILY_API_LIMIT = 15000
DEFAULT_SESSION_TTL_SECONDS = 7200
DEFAULT_MAX_PAGE_SIZE = 2000
MAX_COLLECTION_RECORDS = 200
QUERY_CURSOR_IDLE_SECONDS = 15 * 60
MIN_API_VERSION = 20
MAX_API_VERSION = 66

__all__ = [
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_USERNAME",
    "SANDBOX_PASSWORD",
    "INTEGRATION_USER_ID",
    "HUMAN_USER_ID",
    "LEAD_FIELDS",
    "FieldDef",
    "SalesforceEmulator",
    "create_salesforce_emulator",
    "format_datetime",
]


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

TEXT_TYPES = frozenset({"string", "email", "url", "picklist", "textarea", "phone"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})


@dataclass(frozen=True)
class FieldDef:
    name: str
    label: str
    type: str
    length: int = 0
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    custom: bool = False
    picklist: tuple[str, ...] = ()
    picklist_default: str | None = None
    restricted: bool = False
    precision: int = 0
    scale: int = 0
    digits: int = 0
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None

    @property
    def category(self) -> str:
        if self.type in TEXT_TYPES:
            return "text"
        if self.type in ID_TYPES:
            return "id"
        if self.type in NUMBER_TYPES:
            return "number"
        return self.type  # datetime, date, boolean

    @property
    def soap_type(self) -> str:
        return {
            "int": "integer",
            "double": "double",
            "currency": "currency",
            "percent": "percent",
            "datetime": "dateTime",
            "date": "date",
            "boolean": "boolean",
        }.get(self.type, "string")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": "xsd:" + self.soap_type if self.type not in ID_TYPES else "tns:ID",
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "digits": self.digits,
            "updateable": self.updateable,
            "createable": self.createable,
            "nillable": self.nillable,
            "custom": self.custom,
            "filterable": True,
            "sortable": True,
            "restrictedPicklist": self.restricted,
            "defaultValue": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "picklistValues": [
                {"value": v, "label": v, "active": True, "defaultValue": v == self.picklist_default}
                for v in self.picklist
            ],
        }


INDUSTRY_VALUES = (
    "Aerospace", "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
    "Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering",
    "Entertainment", "Environmental", "Finance", "Financial Services", "Food & Beverage",
    "Government", "Healthcare", "Hospitality", "Insurance", "Machinery", "Manufacturing", "Media",
    "Not For Profit", "Recreation", "Retail", "Shipping", "Software and Technology", "Technology",
    "Telecommunications", "Transportation", "Utilities", "Other",
)
LEAD_SOURCE_VALUES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
LEAD_STATUS_VALUES = (
    "Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted",
)
DEFAULT_STATUS = "Open - Not Contacted"

_AUDIT = {"updateable": False, "createable": False, "nillable": False}

LEAD_FIELDS: tuple[FieldDef, ...] = (
    FieldDef("Id", "Lead ID", "id", 18, updateable=False, createable=False, nillable=False),
    FieldDef("FirstName", "First Name", "string", 40),
    FieldDef("LastName", "Last Name", "string", 80, nillable=False),
    FieldDef("Email", "Email", "email", 80),
    FieldDef("Company", "Company", "string", 255, nillable=False),
    FieldDef("Country", "Country", "string", 80),
    FieldDef("Title", "Title", "string", 128),
    FieldDef("Website", "Website", "url", 255),
    FieldDef("LeadSource", "Lead Source", "picklist", 255, picklist=LEAD_SOURCE_VALUES),
    FieldDef("Status", "Status", "picklist", 255, nillable=False, picklist=LEAD_STATUS_VALUES,
             picklist_default=DEFAULT_STATUS),
    FieldDef("Industry", "Industry", "picklist", 255, picklist=INDUSTRY_VALUES),
    FieldDef("NumberOfEmployees", "Employees", "int", 0, digits=8),
    FieldDef("AnnualRevenue", "Annual Revenue", "currency", 0, precision=18, scale=0),
    FieldDef("CreatedDate", "Created Date", "datetime", **_AUDIT),
    FieldDef("LastModifiedDate", "Last Modified Date", "datetime", **_AUDIT),
    FieldDef("SystemModstamp", "System Modstamp", "datetime", **_AUDIT),
    FieldDef("LastModifiedById", "Last Modified By ID", "reference", 18, reference_to=("User",),
             relationship_name="LastModifiedBy", **_AUDIT),
    FieldDef("SixSense_Company_Name__c", "Company Name", "string", 80, custom=True),
    FieldDef("SixSense_Domain__c", "Domain", "string", 255, custom=True),
    FieldDef("SixSense_Intent_Score__c", "Intent Score", "double", 0, custom=True,
             precision=18, scale=2),
    FieldDef("SixSense_Buying_Stage__c", "Buying Stage", "picklist", 255, custom=True, restricted=True,
             picklist=("Purchase", "Decision", "Consideration", "Awareness", "Target")),
    FieldDef("SixSense_Profile_Fit__c", "Profile Fit", "picklist", 255, custom=True, restricted=True,
             picklist=("Strong", "Moderate", "Weak")),
    FieldDef("SixSense_Profile_Score__c", "Profile Score", "double", 0, custom=True,
             precision=18, scale=2),
    FieldDef("SixSense_Contact_Grade__c", "Contact Grade", "picklist", 255, custom=True,
             restricted=True, picklist=("A", "B", "C", "D")),
    FieldDef("SixSense_Segments__c", "Segments", "string", 255, custom=True),
    FieldDef("SixSense_Employee_Range__c", "Employee Range", "string", 40, custom=True),
    FieldDef("SixSense_Revenue_Range__c", "Revenue Range", "string", 40, custom=True),
)
FIELDS_BY_LOWER: dict[str, FieldDef] = {f.name.lower(): f for f in LEAD_FIELDS}
DATETIME_FIELDS = tuple(f.name for f in LEAD_FIELDS if f.type == "datetime")

_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# --------------------------------------------------------------------------------------------
# Datetimes
# --------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_datetime(moment: datetime) -> str:
    """Salesforce's wire format: ``2026-01-02T03:04:05.000+0000``."""
    moment = _utc(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """The wire format or any ISO-8601 datetime; naive means UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    match = re.fullmatch(r"(.*[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?)([+-]\d{2})(\d{2})", value)
    if match:
        value = f"{match.group(1)}{match.group(2)}:{match.group(3)}"
    return _utc(datetime.fromisoformat(value))


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class SalesforceApiError(Exception):
    """A REST error answer: the status and the JSON array body Salesforce sends."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None):
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


def _not_found() -> SalesforceApiError:
    return SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")


# --------------------------------------------------------------------------------------------
# SOQL: tokenizer, parser, validation, evaluation
# --------------------------------------------------------------------------------------------

_KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE",
})
_STRING_ESCAPES = {
    "'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
    "_": "_", "%": "%",
}
_DATETIME_TOKEN = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3}))?(?!\d)(Z|[+-]\d{2}:?\d{2})(?![\w:.])"
)
_DATE_TOKEN = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![\w:.])")
_NUMBER_TOKEN = re.compile(r"\d+(?:\.\d+)?(?![\w.])")
_IDENT_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")


@dataclass
class _Token:
    kind: str  # IDENT KW STRING NUMBER DATETIME DATE OP LPAREN RPAREN COMMA MINUS EOF
    text: str
    pos: int
    value: Any = None
    parts: tuple[tuple[str, bool], ...] = ()  # STRING: (character, was-escaped)


class SoqlError(SalesforceApiError):
    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(400, error_code, message)


def _positioned(soql: str, pos: int, text: str) -> str:
    """Salesforce's error text: the offending line, a caret, the row and column, the reason."""
    pos = max(0, min(pos, len(soql)))
    line_start = soql.rfind("\n", 0, pos) + 1
    line_end = soql.find("\n", pos)
    line = soql[line_start: len(soql) if line_end < 0 else line_end]
    row = soql.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    return f"{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{text}"


def _malformed(soql: str, pos: int, text: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", _positioned(soql, pos, text))


def _tokenize(soql: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(soql)
    while i < n:
        c = soql[i]
        if c.isspace():
            i += 1
        elif c == "'":
            parts: list[tuple[str, bool]] = []
            j = i + 1
            while True:
                if j >= n:
                    raise _malformed(soql, i, f"unterminated string literal starting at column {i + 1}")
                ch = soql[j]
                if ch == "\\":
                    escaped = soql[j + 1] if j + 1 < n else ""
                    if escaped not in _STRING_ESCAPES or not escaped:
                        raise _malformed(
                            soql, j,
                            f"Invalid string literal '{soql[i + 1:j + 2]}'. Illegal character sequence "
                            f"'\\{escaped}' in string literal.",
                        )
                    parts.append((_STRING_ESCAPES[escaped], escaped in "_%"))
                    j += 2
                elif ch == "'":
                    j += 1
                    break
                else:
                    parts.append((ch, False))
                    j += 1
            tokens.append(_Token("STRING", soql[i:j], i, "".join(p for p, _ in parts), tuple(parts)))
            i = j
        elif c in "0123456789":
            if m := _DATETIME_TOKEN.match(soql, i):
                year, month, day, hour, minute, second, millis, zone = m.groups()
                if zone == "Z":
                    offset = timedelta(0)
                else:
                    sign = -1 if zone[0] == "-" else 1
                    digits = zone[1:].replace(":", "")
                    offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                try:
                    local = datetime(int(year), int(month), int(day), int(hour), int(minute),
                                     int(second), int(millis or 0) * 1000, tzinfo=timezone(offset))
                except ValueError:
                    raise _malformed(soql, i, f"invalid datetime literal: {m.group(0)}") from None
                tokens.append(_Token("DATETIME", m.group(0), i, local.astimezone(timezone.utc)))
                i = m.end()
            elif m := _DATE_TOKEN.match(soql, i):
                try:
                    value = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                except ValueError:
                    raise _malformed(soql, i, f"invalid date literal: {m.group(0)}") from None
                tokens.append(_Token("DATE", m.group(0), i, value))
                i = m.end()
            elif m := _NUMBER_TOKEN.match(soql, i):
                text = m.group(0)
                tokens.append(_Token("NUMBER", text, i, float(text) if "." in text else int(text)))
                i = m.end()
            else:
                end = i
                while end < n and not soql[end].isspace() and soql[end] not in "(),":
                    end += 1
                raise _malformed(soql, i, f"unexpected token: '{soql[i:end]}'")
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _IDENT_TOKEN.match(soql, i)
            assert m is not None
            text = m.group(0)
            if text.upper() in _KEYWORDS:
                tokens.append(_Token("KW", text, i, text.upper()))
            else:
                tokens.append(_Token("IDENT", text, i, text))
            i = m.end()
        elif c == "(":
            tokens.append(_Token("LPAREN", c, i))
            i += 1
        elif c == ")":
            tokens.append(_Token("RPAREN", c, i))
            i += 1
        elif c == ",":
            tokens.append(_Token("COMMA", c, i))
            i += 1
        elif c == "-":
            tokens.append(_Token("MINUS", c, i))
            i += 1
        else:
            for op in _OPERATORS:
                if soql.startswith(op, i):
                    tokens.append(_Token("OP", op, i, "!=" if op == "<>" else op))
                    i += len(op)
                    break
            else:
                raise _malformed(soql, i, f"unexpected token: '{c}'")
    tokens.append(_Token("EOF", "<EOF>", n))
    return tokens


@dataclass
class _Literal:
    kind: str  # string number datetime date null boolean
    value: Any
    token: _Token
    parts: tuple[tuple[str, bool], ...] = ()


@dataclass
class _Condition:
    field_token: _Token
    op: str  # = != < <= > >= IN NOT IN LIKE
    literals: list[_Literal]
    fdef: FieldDef | None = None
    normalized: list[Any] = field(default_factory=list)
    pattern: re.Pattern[str] | None = None


@dataclass
class _BoolOp:
    op: str  # AND / OR
    items: list[Any]


@dataclass
class _Not:
    item: Any


@dataclass
class _OrderItem:
    field_token: _Token
    descending: bool
    nulls_first: bool
    fdef: FieldDef | None = None


@dataclass
class ParsedQuery:
    soql: str
    object_token: _Token
    field_tokens: list[_Token]
    count_only: bool
    where: Any
    order_by: list[_OrderItem]
    limit: int | None
    offset: int | None
    literals: list[Any]
    fields: list[FieldDef] = field(default_factory=list)


class _Parser:
    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.tokens = _tokenize(soql)
        self.i = 0
        self.literals: list[Any] = []

    # -- token helpers --
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def at_kw(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "KW" and token.value in words

    def unexpected(self, token: _Token | None = None) -> SoqlError:
        token = token or self.peek()
        shown = "<EOF>" if token.kind == "EOF" else f"'{token.text}'"
        return _malformed(self.soql, token.pos, f"unexpected token: {shown}")

    def expect_kw(self, word: str) -> _Token:
        if not self.at_kw(word):
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> _Token:
        if self.peek().kind != kind:
            raise self.unexpected()
        return self.advance()

    # -- grammar --
    def parse(self) -> ParsedQuery:
        if not self.soql.strip():
            raise SoqlError("MALFORMED_QUERY", "A query string has to be specified")
        self.expect_kw("SELECT")
        count_only = False
        field_tokens: list[_Token] = []
        if (self.peek().kind == "IDENT" and self.peek().text.upper() == "COUNT"
                and self.peek(1).kind == "LPAREN"):
            self.advance()
            self.advance()
            self.expect("RPAREN")
            count_only = True
        else:
            field_tokens.append(self.expect("IDENT"))
            while self.peek().kind == "COMMA":
                self.advance()
                field_tokens.append(self.expect("IDENT"))
        self.expect_kw("FROM")
        object_token = self.expect("IDENT")
        where = None
        if self.at_kw("WHERE"):
            self.advance()
            where = self.expression()
        order_by: list[_OrderItem] = []
        if self.at_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order_by.append(self.order_item())
            while self.peek().kind == "COMMA":
                self.advance()
                order_by.append(self.order_item())
        limit = offset = None
        if self.at_kw("LIMIT"):
            self.advance()
            limit = self.integer()
        if self.at_kw("OFFSET"):
            self.advance()
            offset = self.integer()
        if self.peek().kind != "EOF":
            raise self.unexpected()
        return ParsedQuery(self.soql, object_token, field_tokens, count_only, where, order_by,
                           limit, offset, self.literals)

    def integer(self) -> int:
        token = self.expect("NUMBER")
        if not isinstance(token.value, int):
            raise self.unexpected(token)
        return token.value

    def order_item(self) -> _OrderItem:
        token = self.expect("IDENT")
        descending = False
        if self.at_kw("ASC", "DESC"):
            descending = self.advance().value == "DESC"
        nulls_first = not descending
        if self.at_kw("NULLS"):
            self.advance()
            if not self.at_kw("FIRST", "LAST"):
                raise self.unexpected()
            nulls_first = self.advance().value == "FIRST"
        return _OrderItem(token, descending, nulls_first)

    def expression(self) -> Any:
        items = [self.unary()]
        connective: str | None = None
        while self.at_kw("AND", "OR"):
            token = self.advance()
            if connective is not None and token.value != connective:
                # SOQL needs parentheses to mix AND and OR.
                raise self.unexpected(token)
            connective = token.value
            items.append(self.unary())
        return items[0] if connective is None else _BoolOp(connective, items)

    def unary(self) -> Any:
        if self.at_kw("NOT"):
            self.advance()
            return _Not(self.unary())
        if self.peek().kind == "LPAREN":
            self.advance()
            inner = self.expression()
            self.expect("RPAREN")
            return inner
        return self.condition()

    def condition(self) -> _Condition:
        field_token = self.expect("IDENT")
        token = self.peek()
        if token.kind == "OP":
            self.advance()
            return _Condition(field_token, token.value, [self.literal()])
        if self.at_kw("LIKE"):
            self.advance()
            return _Condition(field_token, "LIKE", [self.literal()])
        if self.at_kw("IN"):
            self.advance()
            return _Condition(field_token, "IN", self.literal_list())
        if self.at_kw("NOT") and self.peek(1).kind == "KW" and self.peek(1).value == "IN":
            self.advance()
            self.advance()
            return _Condition(field_token, "NOT IN", self.literal_list())
        raise self.unexpected()

    def literal_list(self) -> list[_Literal]:
        self.expect("LPAREN")
        values = [self.literal()]
        while self.peek().kind == "COMMA":
            self.advance()
            values.append(self.literal())
        self.expect("RPAREN")
        return values

    def literal(self) -> _Literal:
        token = self.peek()
        if token.kind == "MINUS":
            self.advance()
            number = self.expect("NUMBER")
            result = _Literal("number", -number.value, token)
        elif token.kind == "STRING":
            self.advance()
            result = _Literal("string", token.value, token, token.parts)
        elif token.kind == "NUMBER":
            self.advance()
            result = _Literal("number", token.value, token)
        elif token.kind == "DATETIME":
            self.advance()
            result = _Literal("datetime", token.value, token)
        elif token.kind == "DATE":
            self.advance()
            result = _Literal("date", token.value, token)
        elif token.kind == "KW" and token.value == "NULL":
            self.advance()
            result = _Literal("null", None, token)
        elif token.kind == "KW" and token.value in ("TRUE", "FALSE"):
            self.advance()
            result = _Literal("boolean", token.value == "TRUE", token)
        else:
            raise self.unexpected()
        self.literals.append(result.value)
        return result


_EXPECTED_LITERAL = {
    "text": "string", "id": "string", "number": "number", "datetime": "datetime", "date": "date",
    "boolean": "boolean",
}


def _normalize(fdef: FieldDef, value: Any) -> Any:
    """The comparable form of a stored or literal value for one field."""
    if value is None or value == "":
        return None
    category = fdef.category
    if category == "text":
        return str(value).casefold()
    if category == "id":
        return str(value)[:15]
    return value


def _like_pattern(parts: tuple[tuple[str, bool], ...]) -> re.Pattern[str]:
    regex = []
    for char, escaped in parts:
        if char == "%" and not escaped:
            regex.append(".*")
        elif char == "_" and not escaped:
            regex.append(".")
        else:
            regex.append(re.escape(char))
    return re.compile("".join(regex), re.IGNORECASE | re.DOTALL)


def _resolve_field(query: ParsedQuery, token: _Token) -> FieldDef:
    fdef = FIELDS_BY_LOWER.get(token.text.lower())
    if fdef is None:
        raise SoqlError("INVALID_FIELD", _positioned(
            query.soql, token.pos,
            f"No such column '{token.text}' on entity 'Lead'. If you are attempting to use a custom "
            "field, be sure to append the '__c' after the custom field name. Please reference your "
            "WSDL or the describe call for the appropriate names."))
    return fdef


def _resolve_condition(query: ParsedQuery, cond: _Condition) -> None:
    fdef = _resolve_field(query, cond.field_token)
    cond.fdef = fdef
    category = fdef.category
    for literal in cond.literals:
        where = literal.token.pos
        if literal.kind == "null":
            if cond.op not in ("=", "!=", "IN", "NOT IN"):
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", _positioned(
                    query.soql, where, f"invalid operator on null value for field '{fdef.name}'"))
            continue
        if cond.op == "LIKE" and category != "text":
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", _positioned(
                query.soql, cond.field_token.pos, f"invalid operator on {fdef.type} field"))
        expected = _EXPECTED_LITERAL[category]
        if literal.kind != expected:
            quoted = "should be enclosed in quotes" if expected == "string" else (
                "should not be enclosed in quotes")
            raise SoqlError("INVALID_FIELD", _positioned(
                query.soql, where,
                f"value of filter criterion for field '{fdef.name}' must be of type "
                f"{fdef.soap_type} and {quoted}"))
        if category == "id" and not _ID_RE.fullmatch(literal.value):
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", _positioned(
                query.soql, where, f"invalid ID field: {literal.value}"))
    cond.normalized = [_normalize(fdef, lit.value) for lit in cond.literals]
    if cond.op == "LIKE":
        cond.pattern = _like_pattern(cond.literals[0].parts)


def _resolve_expression(query: ParsedQuery, node: Any) -> None:
    if isinstance(node, _Condition):
        _resolve_condition(query, node)
    elif isinstance(node, _BoolOp):
        for item in node.items:
            _resolve_expression(query, item)
    elif isinstance(node, _Not):
        _resolve_expression(query, node.item)


def parse_soql(soql: str) -> ParsedQuery:
    """Parse and validate one SOQL query against the Lead schema; raise SoqlError (HTTP 400)."""
    query = _Parser(soql).parse()
    if query.object_token.text.lower() != "lead":
        raise SoqlError("INVALID_TYPE", _positioned(
            soql, query.object_token.pos,
            f"sObject type '{query.object_token.text}' is not supported. If you are attempting to use "
            "a custom object, be sure to append the '__c' after the entity name. Please reference your "
            "WSDL or the describe call for the appropriate names."))
    seen: set[str] = set()
    for token in query.field_tokens:
        fdef = _resolve_field(query, token)
        if fdef.name in seen:
            raise _malformed(soql, token.pos, f"duplicate field selected: {fdef.name}")
        seen.add(fdef.name)
        query.fields.append(fdef)
    if query.where is not None:
        _resolve_expression(query, query.where)
    for item in query.order_by:
        item.fdef = _resolve_field(query, item.field_token)
    return query


def _matches(node: Any, record: dict[str, Any]) -> bool:
    if node is None:
        return True
    if isinstance(node, _BoolOp):
        if node.op == "AND":
            return all(_matches(item, record) for item in node.items)
        return any(_matches(item, record) for item in node.items)
    if isinstance(node, _Not):
        return not _matches(node.item, record)
    cond: _Condition = node
    assert cond.fdef is not None
    raw = record.get(cond.fdef.name)
    if cond.op == "LIKE":
        return raw not in (None, "") and cond.pattern is not None and bool(
            cond.pattern.fullmatch(str(raw)))
    value = _normalize(cond.fdef, raw)
    if cond.op == "IN":
        return any(value == other for other in cond.normalized)
    if cond.op == "NOT IN":
        return all(value != other for other in cond.normalized)
    other = cond.normalized[0]
    if cond.op == "=":
        return value == other
    if cond.op == "!=":
        return value != other
    if value is None or other is None:
        return False
    if cond.op == "<":
        return value < other
    if cond.op == "<=":
        return value <= other
    if cond.op == ">":
        return value > other
    return value >= other


def run_query(query: ParsedQuery, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matching records, ordered, offset and limited (the stored dicts themselves)."""
    rows = [r for r in records if _matches(query.where, r)]
    for item in reversed(query.order_by):
        fdef = item.fdef
        assert fdef is not None
        # Sorted with reverse=descending: a null rank below every value lands first when ascending.
        null_rank = 0 if item.nulls_first != item.descending else 2

        def key(row: dict[str, Any], fdef: FieldDef = fdef, null_rank: int = null_rank) -> tuple:
            value = _normalize(fdef, row.get(fdef.name)) if fdef.category == "text" else row.get(fdef.name)
            return (null_rank,) if value in (None, "") else (1, value)

        rows.sort(key=key, reverse=item.descending)
    if query.offset:
        rows = rows[query.offset:]
    if query.limit is not None:
        rows = rows[: query.limit]
    return rows


# --------------------------------------------------------------------------------------------
# Write validation
# --------------------------------------------------------------------------------------------


def _error(status_code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {"statusCode": status_code, "message": message, "fields": fields}


def _round_to_scale(value: float, scale: int) -> float:
    """Salesforce keeps `scale` decimals of a number field and rounds the rest half up."""
    with decimal.localcontext() as context:
        context.prec = 400
        exponent = decimal.Decimal(1).scaleb(-scale)
        return float(decimal.Decimal(repr(value)).quantize(exponent, rounding=decimal.ROUND_HALF_UP))


def coerce_value(fdef: FieldDef, value: Any) -> tuple[Any, dict[str, Any] | None]:
    """The value as it would be stored, or the per-record error Salesforce would give."""
    if value is None or (value == "" and isinstance(value, str)):
        if not fdef.nillable:
            return None, _error("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{fdef.name}]",
                                [fdef.name])
        return None, None
    wrong_type = _error("INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{fdef.label}: value not of required type: {value}", [fdef.name])
    category = fdef.category
    if category == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, wrong_type
        if isinstance(value, float) and not math.isfinite(value):
            return None, wrong_type
        if fdef.type == "int":
            if isinstance(value, float) and not value.is_integer():
                return None, wrong_type
            value = int(value)
            max_digits = fdef.digits or 9
        else:
            value = _round_to_scale(float(value), fdef.scale) if fdef.precision else float(value)
            max_digits = (fdef.precision - fdef.scale) if fdef.precision else 18
        if abs(value) >= 10 ** max_digits:
            return None, _error("NUMBER_OUTSIDE_VALID_RANGE",
                                f"{fdef.label}: value outside of valid range on numeric field: {value}",
                                [fdef.name])
        return value, None
    if category == "text":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return None, wrong_type
        text = value if isinstance(value, str) else str(value)
        if fdef.length and len(text) > fdef.length:
            return None, _error("STRING_TOO_LONG",
                                f"{fdef.label}: data value too large: {text[:20]}... "
                                f"(max length={fdef.length})", [fdef.name])
        if fdef.type == "picklist" and fdef.restricted and text not in fdef.picklist:
            return None, _error("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                f"{fdef.label}: bad value for restricted picklist field: {text}",
                                [fdef.name])
        if fdef.type == "email" and not _EMAIL_RE.fullmatch(text):
            return None, _error("INVALID_EMAIL_ADDRESS", f"{fdef.label}: invalid email address: {text}",
                                [fdef.name])
        return text, None
    return None, wrong_type  # no other type is updateable in this schema


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


def _api_version_label(major: int) -> str:
    # v59.0 is Winter '24; three releases a year.
    steps = major - 59
    season = ("Winter", "Spring", "Summer")[steps % 3]
    return f"{season} '{24 + steps // 3:02d}"


_TOKEN_ALPHABET = string.ascii_letters + string.digits + "._"


class SalesforceEmulator:
    vendor = "salesforce"
    tls = True

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        scale = options.time_scale or 1.0
        extra = options.extra or {}
        self.daily_api_limit = int(extra.get("daily_api_limit", DEFAULT_DAILY_API_LIMIT))
        self.session_ttl = float(extra.get("session_ttl_seconds", DEFAULT_SESSION_TTL_SECONDS)) / scale
        self.max_page_size = int(extra.get("max_page_size", DEFAULT_MAX_PAGE_SIZE))
        self.usage_window = 24 * 3600 / scale
        self.cursor_idle = QUERY_CURSOR_IDLE_SECONDS / scale

        self._lock = threading.RLock()
        self._seed_now = _utc(options.now or datetime.now(timezone.utc))
        self._wall_start = time.time()
        self._records: dict[str, dict[str, Any]] = {}
        self._next_seq = 1
        self._sessions: dict[str, float] = {}  # token -> monotonic expiry
        self._usage: deque[float] = deque()
        self._cursors: dict[str, dict[str, Any]] = {}
        self._next_cursor = 1
        self.applied_writes: list[dict[str, Any]] = []
        self.parsed_queries: list[dict[str, Any]] = []

        self._state = JsonStateFile(options.state_dir / "salesforce.json" if options.state_dir else None)
        document = self._state.load()
        if document is None:
            self._seed()
            self._save()
        else:
            self._load(document)

        self.log = RequestLog()
        self.faults = FaultQueue()
        self.app = FastAPI(title="Salesforce sandbox", openapi_url=None, docs_url=None, redoc_url=None)
        instrument(self.app, self.log, self.faults)
        self._add_routes()

    # ---- settings ----

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        return {
            "sources": {
                "salesforce": {
                    "token_url": f"{base_url}/services/oauth2/token",
                    "client_id": SANDBOX_CLIENT_ID,
                    "client_secret": SANDBOX_CLIENT_SECRET,
                    "username": SANDBOX_USERNAME,
                    "password": SANDBOX_PASSWORD,
                    "http": {"ca_bundle": str(ca_bundle) if ca_bundle else None},
                }
            }
        }

    # ---- clock and storage ----

    def now(self) -> datetime:
        """The emulator's clock: options.now (or the start time) plus real elapsed time."""
        return _utc(self._seed_now + timedelta(seconds=time.time() - self._wall_start))

    def _new_id(self) -> str:
        lead_id = f"00Q{self._next_seq:012d}AAA"
        self._next_seq += 1
        return lead_id

    def _blank_record(self) -> dict[str, Any]:
        return {f.name: None for f in LEAD_FIELDS}

    def _seed(self) -> None:
        for seed_lead, created in lead_created_times(self._seed_now):
            record = self._blank_record()
            created = _utc(created)
            record.update({
                "Id": self._new_id(),
                "FirstName": seed_lead.first_name or None,
                "LastName": seed_lead.last_name,
                "Email": seed_lead.email,
                "Company": seed_lead.company,
                "Country": seed_lead.country or None,
                "Title": seed_lead.title or None,
                "Website": seed_lead.website or None,
                "LeadSource": "Web",
                "Status": DEFAULT_STATUS,
                "CreatedDate": created,
                "LastModifiedDate": created,
                "SystemModstamp": created,
                "LastModifiedById": HUMAN_USER_ID,
            })
            for name, value in seed_lead.prefilled.items():
                record[self._field(name).name] = value
            self._records[record["Id"]] = record

    def _load(self, document: dict[str, Any]) -> None:
        for stored in document.get("leads", []):
            record = self._blank_record()
            for name, value in stored.items():
                fdef = FIELDS_BY_LOWER.get(name.lower())
                if fdef is None:
                    continue
                record[fdef.name] = parse_datetime(value) if fdef.type == "datetime" and value else value
            self._records[record["Id"]] = record
        highest = max((int(i[3:15]) for i in self._records if i[3:15].isdigit()), default=0)
        self._next_seq = max(int(document.get("next_seq", 1)), highest + 1)

    def _save(self) -> None:
        if self._state.path is None:
            return  # in memory only: serialising every lead on each change made seeding N leads O(N^2)
        self._state.save({
            "format": 1,
            "next_seq": self._next_seq,
            "leads": [{k: _wire(v) for k, v in r.items()} for r in self._records.values()],
        })

    @staticmethod
    def _field(name: str) -> FieldDef:
        fdef = FIELDS_BY_LOWER.get(name.lower())
        if fdef is None:
            raise KeyError(f"no field {name!r} on Lead")
        return fdef

    def _find(self, lead_id: str) -> dict[str, Any] | None:
        if not isinstance(lead_id, str):
            return None
        record = self._records.get(lead_id)
        if record is None and len(lead_id) in (15, 18):
            for candidate_id, candidate in self._records.items():
                if candidate_id[:15] == lead_id[:15]:
                    return candidate
        return record

    # ---- in-process helpers for tests ----

    def lead(self, lead_id: str) -> dict[str, Any]:
        """The current record, every field, datetimes in the wire format."""
        with self._lock:
            record = self._find(lead_id)
            if record is None:
                raise KeyError(lead_id)
            return {k: _wire(v) for k, v in record.items()}

    def leads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: _wire(v) for k, v in r.items()} for r in self._records.values()]

    def _python_value(self, fdef: FieldDef, value: Any) -> Any:
        if fdef.type == "datetime" and isinstance(value, str):
            return parse_datetime(value)
        if fdef.type == "datetime" and isinstance(value, datetime):
            return _utc(value)
        return value

    def human_edit(self, lead_id: str, field: str, value: Any) -> None:
        """A person edits a field in the CRM UI."""
        with self._lock:
            record = self._find(lead_id)
            if record is None:
                raise KeyError(lead_id)
            fdef = self._field(field)
            now = self.now()
            record[fdef.name] = self._python_value(fdef, value)
            record["LastModifiedById"] = HUMAN_USER_ID
            record["LastModifiedDate"] = now
            record["SystemModstamp"] = now
            self._save()

    def add_lead(self, **fields: Any) -> str:
        """A new lead (as a person or a form would create it); returns its Id."""
        with self._lock:
            record = self._blank_record()
            record["Status"] = DEFAULT_STATUS
            for name, value in fields.items():
                fdef = self._field(name)
                record[fdef.name] = self._python_value(fdef, value)
            record["Id"] = self._new_id()
            record["CreatedDate"] = record["CreatedDate"] or self.now()
            record["LastModifiedDate"] = record["LastModifiedDate"] or record["CreatedDate"]
            record["SystemModstamp"] = record["SystemModstamp"] or record["LastModifiedDate"]
            record["LastModifiedById"] = record["LastModifiedById"] or HUMAN_USER_ID
            self._records[record["Id"]] = record
            self._save()
            return record["Id"]

    def expire_all_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()

    def api_usage(self) -> tuple[int, int]:
        """(requests used in the rolling window, daily limit)."""
        with self._lock:
            self._purge_usage()
            return len(self._usage), self.daily_api_limit

    # ---- sessions and usage ----

    def _issue_token(self) -> str:
        token = f"{ORG_ID[:15]}!AQ" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(94))
        with self._lock:
            self._sessions[token] = time.monotonic() + self.session_ttl
        return token

    def _session_valid(self, token: str | None) -> bool:
        if not token:
            return False
        expiry = self._sessions.get(token)
        if expiry is None:
            return False
        if time.monotonic() >= expiry:
            del self._sessions[token]
            return False
        return True

    def _purge_usage(self) -> None:
        now = time.monotonic()
        while self._usage and now - self._usage[0] >= self.usage_window:
            self._usage.popleft()

    def _limit_info(self) -> str:
        with self._lock:
            self._purge_usage()
            return f"api-usage={len(self._usage)}/{self.daily_api_limit}"

    # ---- HTTP ----

    def _respond(self, status: int, body: Any) -> Response:
        headers = {"Sforce-Limit-Info": self._limit_info()}
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def _add_routes(self) -> None:
        app = self.app

        @app.post("/services/oauth2/token")
        async def token(request: Request) -> Response:
            raw = (await request.body()).decode("utf-8", "replace")
            return self._token(request, raw)

        @app.api_route("/services/data{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
        async def data(request: Request, rest: str) -> Response:
            raw = await request.body() if request.method in ("POST", "PATCH", "PUT") else b""
            return self._data(request, rest, raw)

    # -- OAuth --

    def _token(self, request: Request, raw_body: str) -> Response:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        grant = params.get("grant_type", "")
        headers = {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}

        def fail(error: str, description: str) -> Response:
            return JSONResponse({"error": error, "error_description": description}, status_code=400,
                                headers=headers)

        if grant not in ("client_credentials", "password"):
            return fail("unsupported_grant_type", "grant type not supported")
        candidates: list[tuple[str, str]] = []
        if "client_id" in params and "client_secret" in params:
            candidates.append((params["client_id"], params["client_secret"]))
        authorization = request.headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if ":" in decoded:
                client_id, _, secret = decoded.partition(":")
                candidates.append((client_id, secret))
                candidates.append((unquote_plus(client_id), unquote_plus(secret)))
        expected = (SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)
        if not any(hmac.compare_digest("\0".join(c), "\0".join(expected)) for c in candidates):
            return fail("invalid_client", "invalid client credentials")
        if grant == "password" and not (
            hmac.compare_digest(params.get("username", ""), SANDBOX_USERNAME)
            and hmac.compare_digest(params.get("password", ""), SANDBOX_PASSWORD)
        ):
            return fail("invalid_grant", "authentication failure")
        base_url = str(request.base_url).rstrip("/")
        identity = f"{base_url}/id/{ORG_ID}/{INTEGRATION_USER_ID}"
        issued_at = str(int(self.now().timestamp() * 1000))
        signature = base64.b64encode(
            hmac.new(SANDBOX_CLIENT_SECRET.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return JSONResponse(
            {
                "access_token": self._issue_token(),
                "instance_url": base_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": signature,
            },
            headers=headers,
        )

    # -- data API --

    def _data(self, request: Request, rest: str, raw_body: bytes) -> Response:
        if rest and not rest.startswith("/"):
            return self._respond(404, _not_found().body())
        path = rest.strip("/")
        if path == "":
            if request.method != "GET":
                return self._respond(405, self._method_not_allowed(request.method, "GET").body())
            return self._respond(200, self._versions())
        authorization = request.headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        token = credential.strip() if scheme.lower() in ("bearer", "oauth") else None
        with self._lock:
            if not self._session_valid(token):
                return self._respond(401, [{"message": "Session expired or invalid",
                                            "errorCode": "INVALID_SESSION_ID"}])
            self._purge_usage()
            if len(self._usage) >= self.daily_api_limit:
                return self._respond(403, [{"message": "TotalRequests Limit exceeded.",
                                            "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
            self._usage.append(time.monotonic())
        try:
            status, body = self._dispatch(request, path, raw_body)
        except SalesforceApiError as exc:
            status, body = exc.status, exc.body()
        return self._respond(status, body)

    @staticmethod
    def _method_not_allowed(method: str, allowed: str) -> SalesforceApiError:
        return SalesforceApiError(405, "METHOD_NOT_ALLOWED",
                                  f"HTTP Method '{method}' not allowed. Allowed are {allowed}")

    def _versions(self) -> list[dict[str, str]]:
        return [
            {"label": _api_version_label(major), "url": f"/services/data/v{major}.0", "version": f"{major}.0"}
            for major in range(31, MAX_API_VERSION + 1)
        ]

    def _dispatch(self, request: Request, path: str, raw_body: bytes) -> tuple[int, Any]:
        segments = path.split("/")
        match = re.fullmatch(r"v(\d+)\.(\d)", segments[0])
        if not match or not MIN_API_VERSION <= int(match.group(1)) <= MAX_API_VERSION:
            raise _not_found()
        version = f"{match.group(1)}.{match.group(2)}"
        rest = segments[1:]
        method = request.method

        def only(*allowed: str) -> None:
            if method not in allowed:
                raise self._method_not_allowed(method, ",".join(allowed))

        base = f"/services/data/v{version}"
        if not rest:
            only("GET")
            return 200, {
                "sobjects": f"{base}/sobjects", "query": f"{base}/query", "queryAll": f"{base}/queryAll",
                "limits": f"{base}/limits", "composite": f"{base}/composite",
            }
        head = rest[0]
        if head == "limits" and len(rest) == 1:
            only("GET")
            used, limit = self.api_usage()
            return 200, {"DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)}}
        if head in ("query", "queryAll") and len(rest) == 1:
            only("GET")
            return 200, self._query(request, version)
        if head in ("query", "queryAll") and len(rest) == 2:
            only("GET")
            return 200, self._query_more(rest[1])
        if head == "sobjects":
            return self._sobjects(request, version, rest[1:], raw_body)
        if head == "composite" and rest[1:] == ["sobjects"]:
            only("PATCH")
            return 200, self._collection_update(raw_body)
        raise _not_found()

    # -- query --

    def _page_size(self, request: Request) -> int:
        size = self.max_page_size
        for option in request.headers.get("sforce-query-options", "").split(","):
            name, _, value = option.partition("=")
            if name.strip().lower() == "batchsize" and value.strip().isdigit():
                batch = int(value.strip())
                if 200 <= batch <= 2000:
                    size = min(size, batch)
        return max(1, size)

    def _query(self, request: Request, version: str) -> dict[str, Any]:
        soql = request.query_params.get("q")
        if soql is None or not soql.strip():
            raise SoqlError("MALFORMED_QUERY", "A query string has to be specified")
        query = parse_soql(soql)
        with self._lock:
            self.parsed_queries.append({
                "soql": soql,
                "object": "Lead",
                "fields": [f.name for f in query.fields] if not query.count_only else [],
                "literals": list(query.literals),
                "order_by": [(i.fdef.name if i.fdef else "", "DESC" if i.descending else "ASC")
                             for i in query.order_by],
                "limit": query.limit,
            })
            rows = run_query(query, list(self._records.values()))
            if query.count_only:
                return {"totalSize": len(rows), "done": True, "records": []}
            base = f"/services/data/v{version}"
            records = []
            for row in rows:
                out: dict[str, Any] = {"attributes": {"type": "Lead", "url": f"{base}/sobjects/Lead/{row['Id']}"}}
                for fdef in query.fields:
                    out[fdef.name] = _wire(row.get(fdef.name))
                records.append(out)
            page = self._page_size(request)
            if len(records) <= page:
                return {"totalSize": len(records), "done": True, "records": records}
            locator = f"01g{self._next_cursor:012d}AAA"
            self._next_cursor += 1
            self._purge_cursors()
            self._cursors[locator] = {
                "records": records, "page": page, "version": version, "touched": time.monotonic(),
            }
            return self._page(locator, 0)

    def _purge_cursors(self) -> None:
        now = time.monotonic()
        for locator in [k for k, c in self._cursors.items() if now - c["touched"] >= self.cursor_idle]:
            del self._cursors[locator]

    def _page(self, locator: str, offset: int) -> dict[str, Any]:
        cursor = self._cursors[locator]
        cursor["touched"] = time.monotonic()
        records, page = cursor["records"], cursor["page"]
        chunk = records[offset: offset + page]
        result: dict[str, Any] = {"totalSize": len(records), "done": offset + page >= len(records)}
        if not result["done"]:
            result["nextRecordsUrl"] = f"/services/data/v{cursor['version']}/query/{locator}-{offset + page}"
        result["records"] = chunk
        return result

    def _query_more(self, identifier: str) -> dict[str, Any]:
        locator, _, offset_text = identifier.rpartition("-")
        with self._lock:
            self._purge_cursors()
            cursor = self._cursors.get(locator)
            if cursor is None or not offset_text.isdigit() or int(offset_text) > len(cursor["records"]):
                raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._page(locator, int(offset_text))

    # -- sobjects --

    def _describe(self) -> dict[str, Any]:
        return {
            "name": "Lead", "label": "Lead", "labelPlural": "Leads", "keyPrefix": "00Q",
            "custom": False, "createable": True, "updateable": True, "deletable": True,
            "queryable": True, "retrieveable": True, "searchable": True,
            "fields": [f.describe() for f in LEAD_FIELDS],
        }

    def _sobjects(self, request: Request, version: str, rest: list[str], raw_body: bytes) -> tuple[int, Any]:
        method = request.method
        base = f"/services/data/v{version}/sobjects/Lead"
        summary = {
            "name": "Lead", "label": "Lead", "labelPlural": "Leads", "keyPrefix": "00Q",
            "custom": False, "createable": True, "updateable": True, "queryable": True,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }
        if not rest:
            if method != "GET":
                raise self._method_not_allowed(method, "GET")
            return 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [summary]}
        if rest[0].lower() != "lead":
            raise _not_found()
        if len(rest) == 1:
            if method != "GET":
                raise self._method_not_allowed(method, "GET")
            return 200, {"objectDescribe": summary, "recentItems": []}
        if len(rest) == 2 and rest[1] == "describe":
            if method != "GET":
                raise self._method_not_allowed(method, "GET")
            return 200, self._describe()
        if len(rest) != 2:
            raise _not_found()
        lead_id = rest[1]
        if method == "GET":
            with self._lock:
                record = self._find(lead_id)
                if record is None:
                    raise _not_found()
                wanted = request.query_params.get("fields")
                names = [self._field_or_400(n).name for n in wanted.split(",")] if wanted else [
                    f.name for f in LEAD_FIELDS]
                out: dict[str, Any] = {"attributes": {"type": "Lead", "url": f"{base}/{record['Id']}"}}
                out.update({n: _wire(record[n]) for n in names})
                return 200, out
        if method == "PATCH":
            body = self._json_body(raw_body)
            if not isinstance(body, dict):
                raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            record = {"attributes": {"type": "Lead"}, **body, "id": lead_id}
            with self._lock:
                if self._find(lead_id) is None:
                    raise _not_found()
                (result,) = self._apply_records([record], all_or_none=True)
            if not result["success"]:
                raise SalesforceApiError(400, result["errors"][0]["statusCode"], result["errors"][0]["message"],
                                         result["errors"][0]["fields"])
            return 204, None
        raise self._method_not_allowed(method, "GET,PATCH")

    @staticmethod
    def _field_or_400(name: str) -> FieldDef:
        fdef = FIELDS_BY_LOWER.get(name.strip().lower())
        if fdef is None:
            raise SalesforceApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Lead")
        return fdef

    # -- composite/sobjects --

    @staticmethod
    def _json_body(raw_body: bytes) -> Any:
        try:
            return json.loads(raw_body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None

    def _collection_update(self, raw_body: bytes) -> list[dict[str, Any]]:
        body = self._json_body(raw_body)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR",
                                     "The request body must be an object with a 'records' array")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        records = body["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            raise SalesforceApiError(400, "EXCEEDED_ID_LIMIT",
                                     "record limit reached. cannot submit more than 200 records into this call")
        if not all(isinstance(r, dict) for r in records):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
        with self._lock:
            return self._apply_records(records, all_or_none)

    def _check_record(self, record: dict[str, Any], seen: set[str]
                      ) -> tuple[Any, str | None, dict[str, Any], list[dict[str, Any]]]:
        """(id as sent, stored Id, coerced changes, errors) for one record of an update."""
        errors: list[dict[str, Any]] = []
        sent_id = None
        id_keys = [k for k in record if k.lower() == "id"]
        if id_keys:
            sent_id = record[id_keys[-1]]
        attributes = record.get("attributes")
        object_type = attributes.get("type") if isinstance(attributes, dict) else None
        if not object_type:
            errors.append(_error("INVALID_TYPE", "Must send a concrete entity type.", []))
        elif not isinstance(object_type, str) or object_type.lower() != "lead":
            errors.append(_error("INVALID_TYPE", f"sObject type '{object_type}' is not supported.", []))
        if sent_id in (None, ""):
            errors.append(_error("MISSING_ARGUMENT", "Id not specified in an update call", []))
            return sent_id, None, {}, errors
        stored = self._find(sent_id) if isinstance(sent_id, str) else None
        if stored is None:
            errors.append(_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []))
            return sent_id, None, {}, errors
        lead_id = stored["Id"]
        if lead_id in seen:
            errors.append(_error("DUPLICATE_VALUE", f"Duplicate id in list: {sent_id}", []))
            return sent_id, lead_id, {}, errors
        seen.add(lead_id)
        changes: dict[str, Any] = {}
        for key, value in record.items():
            if key == "attributes" or key.lower() == "id":
                continue
            fdef = FIELDS_BY_LOWER.get(key.lower())
            if fdef is None:
                errors.append(_error("INVALID_FIELD", f"No such column '{key}' on sobject of type Lead", []))
                continue
            if not fdef.updateable:
                errors.append(_error(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {fdef.name}. Please check the security settings of "
                    "this field and verify that it is read/write for your profile or permission set.",
                    [fdef.name]))
                continue
            coerced, error = coerce_value(fdef, value)
            if error is not None:
                errors.append(error)
            else:
                changes[fdef.name] = coerced
        return sent_id, lead_id, changes, errors

    def _apply_records(self, records: list[dict[str, Any]], all_or_none: bool) -> list[dict[str, Any]]:
        """Validate every record, then apply the valid ones (or none); caller holds the lock."""
        seen: set[str] = set()
        checked = [self._check_record(r, seen) for r in records]
        failed = any(errors for *_, errors in checked)
        results: list[dict[str, Any]] = []
        if all_or_none and failed:
            for sent_id, _, _, errors in checked:
                results.append({"id": sent_id, "success": False, "errors": errors or [_error(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using "
                    "AllOrNone header", [])]})
            return results
        now = self.now()
        applied = False
        for sent_id, lead_id, changes, errors in checked:
            if errors or lead_id is None:
                results.append({"id": sent_id, "success": False, "errors": errors})
                continue
            stored = self._records[lead_id]
            stored.update(changes)
            stored["LastModifiedDate"] = now
            stored["SystemModstamp"] = now
            stored["LastModifiedById"] = INTEGRATION_USER_ID
            self.applied_writes.append({"id": lead_id, "fields": dict(changes), "at": now.timestamp()})
            results.append({"id": lead_id, "success": True, "errors": []})
            applied = True
        if applied:
            self._save()
        return results


@register_emulator("salesforce")
def create_salesforce_emulator(options: EmulatorOptions) -> SalesforceEmulator:
    return SalesforceEmulator(options)
