"""Mapping files, paths, transforms and per-field decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.decisions import canonical, decide
from connector.errors import MappingError
from connector.mapping import Candidate, load_mapping, parse_path
from connector.models import CrmField
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
