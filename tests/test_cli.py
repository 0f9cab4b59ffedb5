"""The `connector` command from the outside: a subprocess, its exit code and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connector.sandbox.salesforce import SANDBOX_CLIENT_SECRET


def connector(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "connector", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_main_command_runs_a_night_on_embedded_defaults_from_any_directory(tmp_path):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    env = {"CONNECTOR_DATA_DIR": str(tmp_path / "data")}
    first = connector("run", cwd=elsewhere, env=env)
    assert first.returncode == 0, first.stderr
    assert "sandbox emulators" in first.stdout
    for crm in ("salesforce", "hubspot", "marketo"):  # the sandbox stands in for all three CRMs
        assert f"{crm}: run " in first.stdout
    assert "written" in first.stdout and "invalid_email" in first.stdout and "no_match" in first.stdout
    assert "fields written: 264" in first.stdout
    assert (tmp_path / "data" / "ledger.db").exists()
    assert (tmp_path / "data" / "sandbox" / "salesforce.json").exists()

    # The second run meets the CRM the first left: nothing to write.
    second = connector("run", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "fields written: 0" in second.stdout

    story = connector("explain", "eve@acme-robotics.com", cwd=tmp_path, env=env)
    assert story.returncode == 0, story.stderr
    assert "human_edited" in story.stdout and "Aerospace" in story.stdout
    assert "sixsense.scores[product=6sense].company_intent_score" in story.stdout
    assert "done (written)" in story.stdout


def test_explain_tells_the_story_of_a_skipped_lead(sandbox, write_config, tmp_path):
    config = write_config(sandbox, f"sqlite:///{tmp_path / 'l.db'}")
    assert connector("run", "--config", str(config), cwd=tmp_path).returncode == 0
    story = connector("explain", "walter@unknown-startup.example", "--config", str(config), cwd=tmp_path)
    assert story.returncode == 0
    assert "skipped (no_match)" in story.stdout and "No data found" in story.stdout
    unknown = connector("explain", "nobody@nowhere.example", "--config", str(config), cwd=tmp_path)
    assert unknown.returncode == 2 and "not polled yet" in unknown.stdout


@pytest.mark.postgres
def test_migrate_then_run_on_postgres(sandbox, write_config, tmp_path, postgres_url):
    config = write_config(sandbox, postgres_url)
    before = connector("run", "--config", str(config), cwd=tmp_path)
    assert before.returncode == 2 and "connector migrate" in before.stderr
    migrated = connector("migrate", "--config", str(config), cwd=tmp_path)
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    from connector.ledger import alembic_config  # noqa: PLC0415

    head = ScriptDirectory.from_config(alembic_config(postgres_url)).get_current_head()
    assert migrated.returncode == 0 and f"ledger at migration {head}" in migrated.stdout
    run = connector("run", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "written" in run.stdout


def test_a_settings_file_that_is_not_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("sources:\n  salesforce:\n    enabled: [true\n")
    result = connector("run", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "line" in result.stderr and "fix:" in result.stderr


def test_a_bad_setting_names_the_key_and_the_fix_without_echoing_secrets(tmp_path):
    bad = tmp_path / "bad.yaml"
    canary = "canary-token-7f3e9a1b2c"
    bad.write_text(yaml.safe_dump({
        "sandbox": {"enabled": False},
        "sources": {"salesforce": {"query_page_size": 50, "client_secret": canary}},
        "providers": {"sixsense": {"api_tokn": canary}},
    }))
    result = connector("run", "--config", str(bad), cwd=tmp_path,
                       env={"CONNECTOR_WORKERS": "many", "CONNECTOR_PROVIDERS__SIXSENSE__API_TOKEN": canary})
    assert result.returncode == 2
    err = result.stderr
    assert "sources.salesforce.query_page_size" in err
    assert "providers.sixsense.api_tokn" in err and "unknown key" in err
    assert "environment variable CONNECTOR_WORKERS" in err
    assert "fix:" in err
    assert canary not in err and canary not in result.stdout


def test_a_missing_credential_fails_at_start_naming_the_key(tmp_path):
    config = tmp_path / "prod.yaml"
    config.write_text(yaml.safe_dump({"sandbox": {"enabled": False}, "data_dir": str(tmp_path / "d")}))
    result = connector("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "sources.salesforce: missing client_id, client_secret" in result.stderr
    assert "CONNECTOR_SOURCES__SALESFORCE__" in result.stderr


def test_a_broken_mapping_fails_before_any_vendor_call_naming_file_line_and_fix(sandbox, write_config, tmp_path):
    mappings = tmp_path / "maps"
    mappings.mkdir()
    (mappings / "salesforce.lead.yaml").write_text(
        "version: 1\nsource: salesforce\nobject: Lead\nidentity: {email: Email}\nfields:\n"
        "  Industry: {from: sixsense.company.industry}\n"
        "  NumberOfEmployees: {from: sixsense.company.employeeCount, transform: to_integer}\n"
    )
    config = write_config(sandbox, f"sqlite:///{tmp_path / 'l.db'}", mappings_dir=str(mappings))
    result = connector("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "salesforce.lead.yaml, line 7" in result.stderr
    assert "unknown transform 'to_integer'" in result.stderr and "to_int" in result.stderr
    assert "fix:" in result.stderr
    assert sandbox["sixsense"].log.entries() == []
    assert sandbox["salesforce"].log.entries() == []


def test_a_wrong_salesforce_secret_is_a_config_error_and_never_printed(sandbox, write_config, tmp_path):
    wrong = "wrong-secret-canary-55aa"
    config = write_config(sandbox, f"sqlite:///{tmp_path / 'l.db'}",
                          sources={"salesforce": {"client_secret": wrong}}, log_level="DEBUG")
    result = connector("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "Salesforce refused the client_credentials login" in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert SANDBOX_CLIENT_SECRET not in result.stderr + result.stdout
