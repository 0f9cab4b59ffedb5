"""Bad inputs end to end: settings files, mappings, vendor answers and CRM records that are wrong.

Each case either runs (on the defaults, or with the bad part recorded against its lead) or stops
with its named error: the file, what is wrong, and the fix. The night never crashes on one bad
answer or one bad lead, and every affected lead ends in the ledger with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.errors import ConfigError, MappingError
from connector.ledger import Ledger, open_ledger
from connector.limiter import MemoryLimiter
from connector.mapping import load_mapping
from connector.pipeline import RunReport, current_window, run_source
from connector.sandbox.salesforce import FIELDS_BY_LOWER
from connector.sandbox.server import Fault
from connector.settings import Settings, bundled_path, load_settings

SHIPPED_MAPPING = bundled_path("mappings", "salesforce.lead.yaml")
NIGHT = {"done(written)": 21, "skipped(invalid_email)": 3, "skipped(no_match)": 4}
ENRICH = "/v2/people/full"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "connector", *args], check=False, cwd=cwd, env=full_env,
                          capture_output=True,
                          text=True, timeout=180)


def night(settings: Settings, ledger: Ledger) -> RunReport:
    report = run_source(settings, ledger, MemoryLimiter(), "salesforce", window=current_window(settings))
    assert report is not None and report.status == "finished"
    return report


def same_email(box: Any, email: str) -> int:
    """How many CRM leads share this (normalised) email: they are answered by one lookup."""
    return sum(1 for r in box["salesforce"].leads() if (r["Email"] or "").strip().lower() == email.strip().lower())


def decisions(ledger: Ledger, record_id: str, run_id: int) -> dict[str, Any]:
    [lead] = ledger.find_leads(key=record_id)
    return {w.field: w for w in ledger.field_writes(lead_id=lead.id) if w.run_id == run_id}


# ---- settings files -------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n\n  \n", "# nothing but a comment\n", "---\n", "null\n", "~\n"])
def test_an_empty_settings_file_gives_exactly_the_defaults(tmp_path, content):
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    assert load_settings(path).model_dump() == Settings().model_dump()


def test_the_cli_runs_a_night_on_an_empty_settings_file(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    # Nothing in the file: the defaults, plus the environment pointing at the sandbox.
    result = cli("run", "--config", str(empty), cwd=tmp_path,
                 env={"CONNECTOR_SANDBOX__ENABLED": "true", "CONNECTOR_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert "salesforce: run" in result.stdout and "fields written:" in result.stdout
    assert "fields written: 0 " not in result.stdout
    assert (tmp_path / "data" / "ledger.db").exists()


CORRUPT = [
    ("binary garbage", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd garbage", "not UTF-8"),
    ("control characters", b"sources:\x00\x01\x02 salesforce", "not valid YAML"),
    ("a yaml list", b"- sources\n- providers\n", "not a list"),
    ("a yaml scalar", b"just some words\n", "not a str"),
    ("broken yaml", b"sources:\n  salesforce:\n    enabled: [true\n", "not valid YAML at line"),
    ("tabs", b"sources:\n\tsalesforce: {}\n", "not valid YAML"),
]


@pytest.mark.parametrize("name, content, words", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_corrupt_settings_file_gives_its_named_error(tmp_path, name, content, words):
    path = tmp_path / "corrupt.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message and words in message and "fix:" in message, message


@pytest.mark.parametrize("name, content, words", [CORRUPT[0], CORRUPT[2]], ids=["binary garbage", "a yaml list"])
def test_the_cli_names_a_corrupt_settings_file_and_exits_2(tmp_path, name, content, words):
    path = tmp_path / "corrupt.yaml"
    path.write_bytes(content)
    result = cli("run", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and words in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr


# ---- mappings -------------------------------------------------------------------------------------


def test_a_mapping_naming_a_field_the_crm_lacks_stops_the_cli_before_any_vendor_call(sandbox, write_config, tmp_path):
    mappings = tmp_path / "maps"
    mappings.mkdir()
    document = yaml.safe_load(SHIPPED_MAPPING.read_text())
    document["fields"]["Shoe_Size__c"] = {"from": "sixsense.company.name"}
    (mappings / "salesforce.lead.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    config = write_config(sandbox, f"sqlite:///{tmp_path / 'l.db'}", mappings_dir=str(mappings))
    result = cli("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "salesforce.lead.yaml, line" in result.stderr and "Shoe_Size__c" in result.stderr
    assert "does not exist on Lead" in result.stderr and "fix:" in result.stderr
    assert sandbox["sixsense"].log.entries() == []


def test_a_mapping_file_of_binary_garbage_gives_its_named_error(tmp_path):
    path = tmp_path / "salesforce.lead.yaml"
    path.write_bytes(b"\xff\xfe\x00v\x00e\x00r\x00\x80\x81")
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert str(path) in str(info.value) and "fix:" in str(info.value)


def test_a_provider_path_that_never_resolves_gives_no_value_and_the_night_finishes(sandbox, make_settings, tmp_path):
    mappings = tmp_path / "maps"
    mappings.mkdir()
    document = yaml.safe_load(SHIPPED_MAPPING.read_text())
    never = {
        "SixSense_Domain__c": "sixsense.company.websiteDomain",
        "SixSense_Company_Name__c": "sixsense.scores[product=nope].name",
        "SixSense_Segments__c": "sixsense.segments.list[id=-1].name[3].deeper",
    }
    for target, path in never.items():
        document["fields"][target]["from"] = path
    (mappings / "salesforce.lead.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    settings = make_settings(sandbox, f"sqlite:///{tmp_path / 'l.db'}", mappings_dir=str(mappings))
    ledger = open_ledger(settings.ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    assert report.states == NIGHT
    enriched = 0
    for record in sandbox["salesforce"].leads():
        leads = ledger.find_leads(key=record["Id"])
        if not leads or leads[0].reason != "written":
            continue
        enriched += 1
        decided = decisions(ledger, record["Id"], report.run_id)
        for target in never:
            assert (decided[target].decision, decided[target].reason) == ("skip", "no_value"), target
            assert record[target] is None
        assert decided["Industry"].decision == "write" or decided["Industry"].reason == "human_edited"
    assert enriched == 21


# ---- vendor answers -------------------------------------------------------------------------------

BROKEN_ANSWERS = [
    ("html with 200", 200, "<!doctype html><html><body><h1>Maintenance</h1></body></html>", "text/html",
     "failed", "vendor_unavailable", "not JSON"),
    ("truncated json", 200, '{"company": {', "application/json", "failed", "vendor_unavailable", "not JSON"),
    ("html with 502", 502, "<html><body>502 Bad Gateway</body></html>", "text/html",
     "failed", "vendor_unavailable", "HTTP 502"),
]


@pytest.mark.parametrize("name, status, body, content_type, state, reason, words", BROKEN_ANSWERS,
                         ids=[b[0] for b in BROKEN_ANSWERS])
def test_a_broken_vendor_answer_fails_only_its_lead_with_its_reason(make_sandbox, make_settings, tmp_path, name,
                                                                    status, body, content_type, state, reason, words):
    box = make_sandbox()
    # One lead's every attempt (two: retries_on_server_error=1) gets the broken answer; one worker,
    # so they are that lead's.
    box["sixsense"].faults.add(Fault(path_prefix=ENRICH, status=status, body=body, count=2,
                                     headers={"Content-Type": content_type}))
    settings = make_settings(box, f"sqlite:///{tmp_path / 'l.db'}", workers=1,
                             providers={"sixsense": {"retries_on_server_error": 1}})
    ledger = open_ledger(settings.ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    broken = [l for l in ledger.select_leads(source="salesforce", states=(state,)) if l.reason == reason]
    # One lookup failed: its lead (or the two seeded leads sharing one email, answered by one call).
    assert len({l.email.strip().lower() for l in broken}) == 1, report.states
    assert len(broken) == same_email(box, broken[0].email) and report.states[f"{state}({reason})"] == len(broken)
    assert sum(report.states.values()) == 28
    assert report.states.get("done(written)", 0) >= 21 - len(broken)
    for lead in broken:
        assert words in lead.detail and lead.retryable and lead.next_attempt_at is not None
    assert [e.status for e in box["sixsense"].log.entries(path_prefix=ENRICH)].count(status) >= 2


def test_junk_values_in_a_vendor_answer_are_bad_values_not_a_crashed_night(make_sandbox, make_settings, tmp_path):
    box = make_sandbox()
    junk = {
        "company": {"name": "Junk Co", "domain": "junk.example", "industry": "Retail", "employeeCount": "n/a",
                    "annualRevenue": "about a billion", "employeeRange": ["10", "50"]},
        "scores": [{"product": "6sense", "company_intent_score": "1e10000000", "company_profile_score": True,
                    "company_buying_stage": "Purchase"}],
        "segments": {"names": [{"id": 1, "name": "a segment as an object"}]},
    }
    box["sixsense"].faults.add(Fault(path_prefix=ENRICH, status=200, body=junk, count=1))
    settings = make_settings(box, f"sqlite:///{tmp_path / 'l.db'}", workers=1)
    ledger = open_ledger(settings.ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    assert sum(report.states.values()) == 28 and "failed(internal_error)" not in report.states, report.states
    found = []
    for record in box["salesforce"].leads():
        leads = ledger.find_leads(key=record["Id"])
        if not leads:
            continue
        decided = decisions(ledger, record["Id"], report.run_id)
        score = decided.get("SixSense_Intent_Score__c")
        if score is not None and score.reason == "bad_value":
            found.append((record, leads[0], decided))
    # One answer was junk: its lead's (or the two seeded leads sharing that email).
    assert len({lead.email.strip().lower() for _, lead, _ in found}) == 1
    assert len(found) == same_email(box, found[0][1].email)
    record, lead, decided = found[0]
    assert (lead.state, lead.reason) == ("done", "written")
    assert record["SixSense_Company_Name__c"] == "Junk Co" and record["SixSense_Buying_Stage__c"] == "Purchase"
    for target in ("SixSense_Intent_Score__c", "SixSense_Profile_Score__c", "SixSense_Segments__c"):
        assert decided[target].reason == "bad_value" and decided[target].detail, target
    for target in ("NumberOfEmployees", "AnnualRevenue"):
        assert decided[target].reason in ("bad_value", "human_edited"), (target, decided[target].reason)


def test_a_lead_with_a_10_kb_name_is_processed_and_values_are_cut_to_their_fields(make_sandbox, make_settings,
                                                                                   ledger_url):
    box = make_sandbox()
    crm = box["salesforce"]
    big = "Ж" + "Very Long Name Ω " * 600  # about 10 kB
    assert len(big.encode()) >= 10_000
    long_lead = crm.add_lead(FirstName=big, LastName=big, Company=big, Title=big, Email="tenk@globex.example")
    long_email = crm.add_lead(LastName="Mail", Company="Globex", Email=("x" * 10_000) + "@globex.example")
    answer = {
        "company": {"name": big, "domain": "GLOBEX.example" + "x" * 10_000, "industry": big, "employeeCount": "1,234",
                    "annualRevenue": 5.5e6, "employeeRange": big, "revenueRange": big},
        "scores": [{"product": "6sense", "company_intent_score": 50, "company_buying_stage": "Decision"}],
        "segments": {"names": [big, big]},
    }
    box["sixsense"].faults.add(Fault(path_prefix=ENRICH, status=200, body=answer, count=1000))
    settings = make_settings(box, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    assert report.polled == 30 and sum(report.states.values()) == 30, report.states
    assert report.states.get("skipped(invalid_email)") == 4
    [lead] = ledger.find_leads(key=long_lead)
    assert (lead.state, lead.reason) == ("done", "written"), lead.detail
    record = crm.lead(long_lead)
    decided = decisions(ledger, long_lead, report.run_id)
    cut = {"SixSense_Company_Name__c": big, "Industry": big, "SixSense_Employee_Range__c": big,
           "SixSense_Revenue_Range__c": big, "SixSense_Segments__c": f"{big};{big}"}
    for target, value in cut.items():
        length = FIELDS_BY_LOWER[target.lower()].length
        expected = value.strip()[:length].rstrip()
        assert record[target] == expected, target
        assert len(record[target]) <= length
        assert decided[target].new_value == expected and decided[target].state == "confirmed"
    assert record["NumberOfEmployees"] == 1234
    assert len(record["SixSense_Domain__c"]) == 255 and record["SixSense_Domain__c"].startswith("globex.example")
    # The lead's own 10 kB values are untouched, and the ledger rows stay within their columns.
    assert record["LastName"] == big
    [mail_lead] = ledger.find_leads(key=long_email)
    assert (mail_lead.state, mail_lead.reason) == ("skipped", "invalid_email")
    assert len(mail_lead.email) <= 320 and len(mail_lead.detail) <= 2000
    # A second night finds every cut value unchanged: nothing is rewritten.
    ledger.rewind_cursor(source="salesforce", watermark=current_window(settings).start - timedelta(hours=24))
    writes = len(crm.applied_writes)
    again = night(settings, ledger)
    assert again.fields_written == 0 and len(crm.applied_writes) == writes


def test_nul_bytes_in_crm_values_and_vendor_answers_do_not_break_the_ledger(make_sandbox, make_settings, ledger_url):
    """PostgreSQL text cannot hold NUL; a CRM value or a vendor body can. The night goes on and
    the ledger keeps what it can (NUL as U+FFFD on PostgreSQL)."""
    box = make_sandbox()
    crm = box["salesforce"]
    nul_mail = crm.add_lead(LastName="Nul\x00", Company="Globex", Email="nul\x00@globex.example")
    nul_answer = crm.add_lead(LastName="Answer", Company="Globex", Email="nulanswer@globex.example")
    box["sixsense"].faults.add(Fault(path_prefix=ENRICH, status=422, body={"message": "bad \x00 input"}, count=1000))
    settings = make_settings(box, ledger_url)
    ledger = open_ledger(ledger_url, auto_migrate=True)
    report = night(settings, ledger)
    assert sum(report.states.values()) == report.polled == 30, report.states
    [lead] = ledger.find_leads(key=nul_mail)
    assert (lead.state, lead.reason) == ("skipped", "invalid_email")
    assert "nul" in lead.email and "@globex.example" in lead.email
    [other] = ledger.find_leads(key=nul_answer)
    assert other.state == "failed" and "bad" in other.detail and "input" in other.detail
