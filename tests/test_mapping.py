"""Mapping files, paths, transforms and per-field decisions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from connector.decisions import accepts, canonical, decide
from connector.errors import MappingError
from connector.mapping import Candidate, FieldRule, load_mapping, parse_path
from connector.models import CrmField
from connector.redaction import register_secrets
from connector.sandbox.salesforce import FIELDS_BY_LOWER, coerce_value
from connector.sandbox.seed import SIXSENSE_SAMPLE_COMPANY, SIXSENSE_SAMPLE_SEGMENTS
from connector.settings import bundled_path

SAMPLE = {
    "company": dict(SIXSENSE_SAMPLE_COMPANY),
    "scores": [
        {"product": "other", "company_intent_score": 12},
        {"product": "6sense", "company_intent_score": 81, "company_buying_stage": "Purchase"},
    ],
    "segments": {"ids": [i for i, _ in SIXSENSE_SAMPLE_SEGMENTS], "names": [n for _, n in SIXSENSE_SAMPLE_SEGMENTS],
                 "list": [{"id": i, "name": n} for i, n in SIXSENSE_SAMPLE_SEGMENTS]},
}


@pytest.mark.parametrize("path, expected", [
    ("sixsense.company.industry", "Software and Technology"),
    ("sixsense.company.employeeCount", "1192"),
    ("sixsense.scores[product=6sense].company_intent_score", 81),
    ("sixsense.scores[0].company_intent_score", 12),
    ("sixsense.scores[-1].company_buying_stage", "Purchase"),
    ("sixsense.scores.company_intent_score", 12),  # through a list without a selector: first entry
    ("sixsense.segments.list[id=28237].name", "6s for 6s: Keyword_Sales Intelligence"),
    ("sixsense.segments.names", [n for _, n in SIXSENSE_SAMPLE_SEGMENTS]),  # ends on a list: whole list
    ("sixsense.scores[product=nope].company_intent_score", None),
    ("sixsense.scores[9].company_intent_score", None),
    ("sixsense.company.missing.deeper", None),
])
def test_paths_resolve_as_documented(path, expected):
    assert parse_path(path).resolve(SAMPLE) == expected


@pytest.mark.parametrize("bad", ["sixsense", "sixsense.scores[]", "sixsense.scores[a b]", "sixsense.x[=1]"])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(ValueError):
        parse_path(bad)


def test_the_shipped_salesforce_mapping_loads_and_maps_the_reference_sample():
    mapping = load_mapping(bundled_path("mappings", "salesforce.lead.yaml"))
    assert mapping.providers[0] == "sixsense"
    assert set(mapping.providers) == {"sixsense", "contacts_company", "slintel_company"}
    picked = {t: rule.pick({"sixsense": SAMPLE}) for t, rule in mapping.fields.items()}
    assert picked["NumberOfEmployees"].value == 1192
    assert picked["AnnualRevenue"].value == 104000000.0
    assert picked["SixSense_Intent_Score__c"].value == 81
    assert picked["SixSense_Segments__c"].value == ";".join(n for _, n in SIXSENSE_SAMPLE_SEGMENTS)
    assert picked["SixSense_Segments__c"].path == "sixsense.segments.names"


def test_empty_answers_never_win_a_precedence(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nsource: salesforce\nobject: Lead\nidentity: {email: Email}\nfields:\n"
                    "  Industry: {from: [a.industry, b.industry, c.industry]}\n")
    rule = load_mapping(path).fields["Industry"]
    assert rule.pick({"a": {"industry": "  "}, "b": {"industry": None}, "c": {"industry": "Retail"}}) == \
        Candidate("Retail", "c", "c.industry")
    assert rule.pick({"a": {"industry": ""}, "b": None}) is None


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "salesforce.lead.yaml"
    path.write_text("version: 1\nsource: salesforce\nobject: Lead\nidentity: {email: Email}\nfields:\n" + body)
    return path


@pytest.mark.parametrize("body, line, words", [
    ("  Industry: {from: sixsense.company.industry, transform: to_integer}\n", 6, ["unknown transform 'to_integer'", "to_int"]),
    ("  Industry: {from: sixsense.company.industry, policy: always}\n", 6, ["policy", "ours_only"]),
    ("  Industry: {form: sixsense.company.industry}\n", 6, ["form"]),
    ("  Industry: {from: sixsense}\n", 6, ["needs a provider and a key"]),
    ("  Industry: {from: sixsense.company.industry, transform: {truncate: {length: -1}}}\n", 6, ["truncate", "length"]),
    ("  Industry: {from: sixsense.company.industry, transform: {join: {separator: x}}}\n", 6, ["join", "separator"]),
])
def test_a_bad_mapping_names_the_file_the_line_and_the_fix(tmp_path, body, line, words):
    path = _write(tmp_path, body)
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    message = str(info.value)
    assert f"{path}, line {line}" in message
    assert "fix:" in message
    for word in words:
        assert word in message


def test_a_mapping_that_is_not_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "  Industry: {from: [sixsense.company.industry}\n")
    with pytest.raises(MappingError, match=r"line \d+: not valid YAML"):
        load_mapping(path)


TEXT80 = CrmField("SixSense_Company_Name__c", "string", 80)
INT = CrmField("NumberOfEmployees", "int")
DOUBLE = CrmField("AnnualRevenue", "currency")


def test_values_compare_in_canonical_form():
    assert canonical("1192", INT) == canonical(1192, INT) == canonical(1192.0, INT) == canonical("1,192", INT)
    assert canonical("104000000", DOUBLE) == canonical(104000000, DOUBLE)
    long_name = "x" * 120
    assert canonical(long_name, TEXT80) == "x" * 80
    assert canonical("  ", TEXT80) is None


def test_a_truncated_value_is_not_rewritten_every_night():
    long_name = "y" * 120
    d = decide(field=TEXT80, policy="ours_only", candidate=Candidate(long_name, "sixsense", "p"),
               current="y" * 80, last_written="y" * 80, rule="p")
    assert (d.write, d.reason) == (False, "unchanged")


def test_the_overwrite_policies():
    c = Candidate("Acme", "sixsense", "p")
    common = {"field": TEXT80, "candidate": c, "rule": "p"}
    assert decide(policy="ours_only", current=None, last_written=None, **common).reason == "fill_blank"
    assert decide(policy="ours_only", current="Old", last_written="Old", **common).reason == "update_ours"
    assert decide(policy="ours_only", current="Typed by Ann", last_written="Old", **common).reason == "human_edited"
    assert decide(policy="ours_only", current="Typed by Ann", last_written=None, **common).reason == "human_edited"
    assert decide(policy="fill_blank", current="Anything", last_written=None, **common).reason == "kept_existing"
    assert decide(policy="overwrite", current="Typed by Ann", last_written=None, **common).reason == "overwrite"
    assert decide(policy="overwrite", current="Acme", last_written=None, **common).reason == "unchanged"
    # Empty answers never clear a field.
    empty = decide(field=TEXT80, policy="overwrite", candidate=None, current="Acme", last_written="Acme", rule="p")
    assert (empty.write, empty.reason) == (False, "no_value")
    bad = decide(field=INT, policy="overwrite", candidate=Candidate("lots", "s", "p"), current=None,
                 last_written=None, rule="p")
    assert (bad.write, bad.reason) == (False, "bad_value")


# ---- values the CRM would refuse: bad_value for the field alone ----------------------------------

EMPLOYEES = CrmField("NumberOfEmployees", "int", min_value=Decimal(-99_999_999), max_value=Decimal(99_999_999),
                     scale=0)
SCORE = CrmField("SixSense_Intent_Score__c", "double", min_value=-Decimal("9999999999999999.99"),
                 max_value=Decimal("9999999999999999.99"), scale=2)
FIT = CrmField("SixSense_Profile_Fit__c", "picklist", 255, picklist_values=("Strong", "Moderate", "Weak"),
               restricted_picklist=True)
OPEN_PICKLIST = CrmField("Industry", "picklist", 255, picklist_values=("Banking", "Retail"))
TAGS = CrmField("Tags__c", "multipicklist", 4099, picklist_values=("a", "b", "c"), restricted_picklist=True)


def _decide(field: CrmField, value: object, current: object = None) -> object:
    return decide(field=field, policy="overwrite", candidate=Candidate(value, "sixsense", "sixsense.x"),
                  current=current, last_written=None, rule="sixsense.x")


@pytest.mark.parametrize("field, value, words", [
    (EMPLOYEES, 100_000_000, ["NumberOfEmployees", "100000000", "outside", "-99,999,999 to 99,999,999"]),
    (EMPLOYEES, "-3,000,000,000", ["NumberOfEmployees", "-3000000000", "-99,999,999 to 99,999,999"]),
    (SCORE, 1e16, ["SixSense_Intent_Score__c", "1e+16", "9,999,999,999,999,999.99"]),
    (FIT, "Excellent", ["SixSense_Profile_Fit__c", "'Excellent'", "restricted picklist", "Strong, Moderate, Weak",
                        "map_values"]),
    (FIT, "strong", ["did you mean 'Strong'?"]),
    (TAGS, "a;zz;b", ["Tags__c", "'zz'", "a, b, c"]),
])
def test_a_value_outside_the_fields_range_or_picklist_is_a_bad_value_naming_what_is_allowed(field, value, words):
    d = _decide(field, value)
    assert (d.write, d.reason, d.provider) == (False, "bad_value", "sixsense")
    for word in words:
        assert word in d.detail, (word, d.detail)


@pytest.mark.parametrize("field, value, stored", [
    (EMPLOYEES, 99_999_999, 99_999_999), (EMPLOYEES, "-99,999,999", -99_999_999),
    (SCORE, "9999999999999998", 9999999999999998.0), (FIT, "Weak", "Weak"),
    (OPEN_PICKLIST, "Robotics", "Robotics"),  # an unrestricted picklist takes any value
    (TAGS, "a;c", "a;c"),
])
def test_a_value_at_the_edge_of_what_the_field_allows_is_written(field, value, stored):
    d = _decide(field, value)
    assert (d.write, d.reason, d.new_value) == (True, "fill_blank", stored)


def test_decimals_are_rounded_half_up_to_the_scale_as_the_crm_stores_them_so_the_next_night_is_unchanged():
    salesforce_field = FIELDS_BY_LOWER["sixsense_intent_score__c"]
    for value in (87.455, 0.125, -2.675, 1234.5):
        d = _decide(SCORE, value)
        stored, error = coerce_value(salesforce_field, d.new_value)  # the emulator, as Salesforce, rounds to 2
        assert error is None and stored == d.new_value, (value, stored, d.new_value)
        assert _decide(SCORE, value, current=stored).reason == "unchanged"
    assert _decide(SCORE, 87.455).new_value == 87.46


def test_a_bad_value_reason_never_echoes_a_secret():
    register_secrets(["sk-live-4f9a8b7c6d5e"])
    d = _decide(FIT, "token sk-live-4f9a8b7c6d5e")
    assert d.reason == "bad_value" and "sk-live-4f9a8b7c6d5e" not in d.detail and "[REDACTED]" in d.detail


def test_a_value_the_field_refuses_falls_through_to_the_next_provider_in_the_fields_precedence():
    rule = FieldRule("SixSense_Profile_Fit__c", (parse_path("sixsense.fit"), parse_path("slintel.fit")), (),
                     "overwrite")
    check = accepts(FIT)
    both = {"sixsense": {"fit": "Excellent"}, "slintel": {"fit": "Strong"}}
    assert rule.pick(both, accept=check) == Candidate("Strong", "slintel", "slintel.fit")
    # Without the field's check, precedence alone picks the first (the CRM would refuse the record).
    assert rule.pick(both).value == "Excellent"
    # Only refused values: the first refusal, with its reason, which decide() records as bad_value.
    refused = rule.pick({"sixsense": {"fit": "Excellent"}}, accept=check)
    assert refused is not None and refused.provider == "sixsense" and "restricted picklist" in refused.error
    d = decide(field=FIT, policy="overwrite", candidate=refused, current=None, last_written=None, rule="r")
    assert (d.reason, d.detail) == ("bad_value", refused.error)
    # A value of the wrong type falls through the same way.
    rule_int = FieldRule("NumberOfEmployees", (parse_path("sixsense.n"), parse_path("slintel.n")), (), "ours_only")
    picked = rule_int.pick({"sixsense": {"n": 10**12}, "slintel": {"n": "1,192"}}, accept=accepts(EMPLOYEES))
    assert picked == Candidate("1,192", "slintel", "slintel.n")
