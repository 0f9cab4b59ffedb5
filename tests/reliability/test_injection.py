"""Guide §7 test 13: SOQL injection, as a property test against the Salesforce emulator over HTTPS.

(a) Hostile strings (quotes, backslashes, % and _, unicode, `' OR Id != null`, newlines) ride
    in as record ids, the only strings the source puts into SOQL (`read(record_ids=[...])`), and
    datetimes of every offset and precision ride in as the watermark (`poll_new(since=...)`). The
    query the emulator received, parsed by the emulator's own SOQL parser, holds each value as
    exactly ONE literal equal to the input, and its shape is the one the source means to send
    (the same SELECT list, one `Id IN (...)` or `CreatedDate >= ...` condition, no other clause).

    A hostile string is not a valid Salesforce Id, so the source refuses it (InvalidRecordId)
    before any request: it never reaches SOQL. Values that are valid Ids are checked in
    `parsed_queries[-1]["literals"]` directly.
(b) Names are never data: a field name that is not an identifier is refused by the source
    before any request, and a mapping naming a field the CRM does not have (its allow list is
    the describe call) fails in build_runtime before any vendor call.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.errors import InvalidRecordId, MappingError
from connector.ledger import Ledger, open_ledger
from connector.limiter import MemoryLimiter
from connector.pipeline import build_runtime
from connector.sandbox import Sandbox
from connector.sandbox.salesforce import LEAD_FIELDS, _Condition, _Parser
from connector.settings import Settings, bundled_path, load_settings
from connector.sources.base import VendorContext
from connector.sources.salesforce import SalesforceSource

FIELDS = ["Email", "Company", "Industry", "SixSense_Company_Name__c"]
ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
QUERY_PATH = "/services/data/v59.0/query"
COUNTS: dict[str, int] = {}

HOSTILE = [
    "' OR Id != null OR Name = 'y", "'x' OR Id != null OR Name = 'y'", "x') OR (Id != null", "\\", "\\'", "''",
    "%", "_", "%_\\%", "a\nb", "\r\n' OR ''='", "'; DELETE FROM Lead", "00Q000000000001AAA' OR Id != '",
    "\u202e\u0000\u2028", "Société Générale d'Électronique", "日本'語", "\\\\'", "\"", "LIKE '%'", "\t",
]


@dataclass
class World:
    box: Sandbox
    settings: Settings
    source: SalesforceSource
    real_id: str
    tmp: Path
    ledger: Ledger

    @property
    def crm(self) -> Any:
        return self.box["salesforce"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("injection")
    with Sandbox(state_dir=None, vendors=["salesforce", "sixsense"], tls_dir=tmp / "tls") as box:
        settings = load_settings(bundled_path("settings.example.yaml"), **{
            **box.overrides(), "sandbox": {"enabled": False}, "data_dir": str(tmp / "data"),
            "ledger": {"url": f"sqlite:///{tmp / 'ledger.db'}"}})
        source = SalesforceSource(settings.sources.salesforce, VendorContext(settings, MemoryLimiter()))
        real_id = box["salesforce"].leads()[0]["Id"]
        try:
            yield World(box, settings, source, real_id, tmp, open_ledger(settings.ledger_url, auto_migrate=True))
        finally:
            source.close()
            print("\ninjection cases:", dict(sorted(COUNTS.items())))


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def _last_soql(world: World) -> str:
    [entry] = world.crm.log.entries(path_prefix=QUERY_PATH)[-1:]
    return parse_qs(entry.query, keep_blank_values=True)["q"][0]


def _shape(soql: str) -> tuple[list[str], _Condition, Any]:
    """The emulator's parse of `soql` without the schema check: SELECT list, the one WHERE condition."""
    query = _Parser(soql).parse()
    assert query.object_token.text == "Lead"
    assert isinstance(query.where, _Condition), f"more than one condition in {soql!r}"
    assert query.limit is None and query.offset is None
    return [t.text for t in query.field_tokens], query.where, query


hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(list("'\"\\%_ \n\r\t()=!<>,;ORANDor") + ["Id", "null", "LIKE", "é", "日"]),
             max_size=30).map("".join),
    st.text(max_size=40),
    st.from_regex(ID_RE, fullmatch=True),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text)
@example(value="' OR Id != null OR Name = 'y")
@example(value="%_\\'\n")
def test_a_hostile_record_id_reaches_soql_as_exactly_one_literal(world, value):
    before = len(world.crm.log.entries(path_prefix=QUERY_PATH))
    parsed_before = len(world.crm.parsed_queries)
    ids = [value, world.real_id]
    try:
        found = world.source.read(record_ids=ids, fields=FIELDS, deadline=None)
    except InvalidRecordId as exc:
        # Not a Salesforce Id: refused by the source as bad input before any request (it never
        # reaches SOQL; the emulator would refuse it as "invalid ID field" too).
        assert exc.record_id == value and not ID_RE.fullmatch(value)
        assert len(world.crm.log.entries(path_prefix=QUERY_PATH)) == before
        assert len(world.crm.parsed_queries) == parsed_before
        _count("refused_as_an_invalid_id")
        return
    else:
        assert ID_RE.fullmatch(value), f"{value!r} was accepted as an Id"
        assert world.real_id in {lead.record_id for lead in found}
        recorded = world.crm.parsed_queries[-1]
        assert recorded["literals"] == ids
        assert recorded["fields"] == ["Id", "CreatedDate", *FIELDS] and recorded["order_by"] == []
        _count("valid_id_in_parsed_queries")
    assert len(world.crm.log.entries(path_prefix=QUERY_PATH)) == before + 1  # one query, no retry
    fields, where, query = _shape(_last_soql(world))
    assert fields == ["Id", "CreatedDate", *FIELDS]
    assert (where.field_token.text, where.op) == ("Id", "IN")
    assert [lit.value for lit in where.literals] == ids
    assert [lit.kind for lit in where.literals] == ["string", "string"]
    assert query.literals == ids and query.order_by == []


offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(since=st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2099, 12, 30), timezones=offsets))
@example(since=datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))))
def test_a_watermark_reaches_soql_as_exactly_one_datetime_literal(world, since):
    pages = world.source.poll_new(since=since, fields=FIELDS, deadline=None)
    first = next(iter(pages))
    recorded = world.crm.parsed_queries[-1]
    [literal] = recorded["literals"]
    # format_soql drops the microseconds: the filter may start up to a second earlier, never later.
    assert literal == since.replace(microsecond=0)
    assert timedelta(0) <= since - literal < timedelta(seconds=1)
    assert recorded["fields"] == ["Id", "CreatedDate", *FIELDS]
    assert recorded["order_by"] == [("CreatedDate", "ASC"), ("Id", "ASC")]
    _, where, _ = _shape(recorded["soql"])
    assert (where.field_token.text, where.op, where.literals[0].kind) == ("CreatedDate", ">=", "datetime")
    assert all(lead.created_at >= literal for lead in first)
    _count("watermarks")


not_an_identifier = st.text(min_size=1, max_size=30).filter(lambda s: not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", s))


@settings(max_examples=50, deadline=None)
@given(name=st.one_of(st.sampled_from(["Id FROM Lead WHERE Id != null --", "Email, (SELECT Id FROM Contacts)",
                                       "Name)", "Email'", "COUNT()", "Owner.Password", "_Private", "1Field", ""]),
                      not_an_identifier))
def test_a_field_name_that_is_not_an_identifier_is_refused_before_any_call(world, name):
    calls = len(world.crm.log.entries())
    with pytest.raises(MappingError, match="not a Salesforce field name"):
        world.source.read(record_ids=[world.real_id], fields=["Email", name], deadline=None)
    with pytest.raises(MappingError, match="not a Salesforce field name"):
        next(iter(world.source.poll_new(since=datetime.now(UTC), fields=[name], deadline=None)))
    assert len(world.crm.log.entries()) == calls
    _count("bad_names_refused")


KNOWN = {f.name.lower() for f in LEAD_FIELDS}
unknown_field = st.one_of(
    st.sampled_from(["Password__c", "Owner", "Id FROM Lead", "Industry, Id", "SixSense_Company_Name__c2", "ıd"]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}(__c)?", fullmatch=True),
    st.text(min_size=1, max_size=20),
).filter(lambda s: s.strip() and s.lower() not in KNOWN)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=unknown_field)
@example(target="Shoe_Size__c")
def test_a_mapping_naming_a_field_the_crm_lacks_fails_in_build_runtime_before_any_vendor_call(world, target):
    mappings = world.tmp / f"maps-{next(_serial)}"
    mappings.mkdir()
    document = {"version": 1, "source": "salesforce", "object": "Lead", "identity": {"email": "Email"},
                "fields": {"Industry": {"from": "sixsense.company.industry"}, target: {"from": "sixsense.company.name"}}}
    (mappings / "salesforce.lead.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    settings_ = world.settings.model_copy(update={"mappings_dir": mappings})
    enrichment_calls = len(world.box["sixsense"].log.entries())
    crm_calls = len(world.crm.log.entries())
    with pytest.raises(MappingError) as info:
        build_runtime(settings_, world.ledger, MemoryLimiter(), "salesforce")
    assert "does not exist on Lead" in info.value.message and target in info.value.message
    assert info.value.fix
    assert len(world.box["sixsense"].log.entries()) == enrichment_calls == 0
    # No query was sent: the only Salesforce calls were the token and the describe (the allow list).
    paths = {e.path for e in world.crm.log.entries()[crm_calls:]}
    assert paths <= {"/services/oauth2/token", "/services/data/v59.0/sobjects/Lead/describe"}, paths
    _count("unknown_fields_refused")


_serial = itertools.count()


@settings(max_examples=200, deadline=None)
@given(value=hostile_text)
@example(value="' OR Id != null OR Name = 'y")
def test_the_soql_quoting_the_source_uses_keeps_any_string_one_literal(value):
    """Record ids are validated before they reach SOQL, so hostile text never gets that far; the
    quoting underneath (simple-salesforce's format_soql, as SalesforceSource.read calls it) must
    still hold for any string: the emulator's parser reads exactly one literal equal to the input."""
    from simple_salesforce.format import format_soql  # noqa: PLC0415

    soql = format_soql("SELECT Id, Email FROM Lead WHERE Id IN {ids}", ids=[value])
    fields, where, query = _shape(soql)
    assert fields == ["Id", "Email"]
    assert (where.field_token.text, where.op) == ("Id", "IN")
    assert [lit.value for lit in where.literals] == [value]
    assert [lit.kind for lit in where.literals] == ["string"]
