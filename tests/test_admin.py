"""Admin commands through the CLI entry point against the sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from connector.ledger import open_ledger
from tests.test_cli import connector


def _config(sandbox, write_config, ledger_url, **overrides):
    open_ledger(ledger_url, auto_migrate=True).engine.dispose()  # PostgreSQL is migrated by `connector migrate`
    return str(write_config(sandbox, ledger_url, **overrides))


def test_dry_run_spends_nothing_writes_nothing_and_shows_diffs(sandbox, write_config, ledger_url, tmp_path):
    config = _config(sandbox, write_config, ledger_url)
    result = connector("run", "--dry-run", "--config", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sandbox["sixsense"].log.entries() == [] or all(
        e.path != "/v2/people/full" for e in sandbox["sixsense"].log.entries())
    assert sandbox["salesforce"].applied_writes == []
    assert "needs 1 credit(s)" in result.stdout
    assert "invalid_email" in result.stdout
    assert "credits needed: sixsense:enrichment:" in result.stdout
    # after a real night, a dry run shows every field left alone, with why, from the cache
    assert connector("run", "--config", config, cwd=tmp_path).returncode == 0
    again = connector("resync", "eve@acme-robotics.com", "--dry-run", "--config", config, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "human_edited" in again.stdout and "unchanged" in again.stdout
    assert "credits needed: none" in again.stdout


def test_resync_by_email_and_by_state_goes_through_the_ledger(make_sandbox, write_config, ledger_url, tmp_path):
    box = make_sandbox(extra={"sixsense": {"enrichment_credits": 3}})
    config = _config(box, write_config, ledger_url)
    night = connector("run", "--config", config, cwd=tmp_path)
    assert night.returncode == 3  # the credits ran out: leads deferred
    assert "credits_exhausted" in night.stdout
    states = connector("ledger", "states", "--config", config, cwd=tmp_path)
    assert "credits_exhausted" in states.stdout
    circuits = connector("ledger", "circuits", "--config", config, cwd=tmp_path)
    assert "sixsense:enrichment: stopped" in circuits.stdout  # the credit pool, shared by its endpoints
    box["sixsense"].set_credit_balance("enrichment", 1000)
    cleared = connector("ledger", "circuits", "--clear", "sixsense", "--config", config, cwd=tmp_path)
    assert cleared.returncode == 0 and "sixsense:enrichment: cleared" in cleared.stdout
    resync = connector("resync", "--deferred", "--reason", "credits_exhausted", "--config", config, cwd=tmp_path)
    assert resync.returncode == 0, resync.stdout + resync.stderr
    assert "done(written)" in resync.stdout
    writes = [w["id"] for w in box["salesforce"].applied_writes]
    assert len(writes) == len(set(writes)) == 21
    single = connector("resync", "judy@6sense.com", "--config", config, cwd=tmp_path)
    assert single.returncode == 0 and "done(up_to_date) 1" in single.stdout
    assert len(box["salesforce"].applied_writes) == 21
    runs = connector("ledger", "runs", "--config", config, cwd=tmp_path)
    assert "resync" in runs.stdout
    spend = connector("ledger", "spend", "--config", config, cwd=tmp_path)
    assert "sixsense" in spend.stdout
    story = connector("explain", "judy@6sense.com", "--config", config, cwd=tmp_path)
    assert "resync" in story.stdout


def test_the_dry_run_forecast_is_within_5_percent_of_the_night(sandbox, write_config, tmp_path):
    config = _config(sandbox, write_config, f"sqlite:///{tmp_path / 'l.db'}")
    forecast = connector("run", "--dry-run", "--config", config, cwd=tmp_path)
    line = next(l for l in forecast.stdout.splitlines() if l.startswith("credits needed:"))
    predicted = int(line.split("sixsense:enrichment:")[1].split("·")[0].strip())
    assert connector("run", "--config", config, cwd=tmp_path).returncode == 0
    spent = sandbox["sixsense"].credits_spent["enrichment"]
    assert abs(predicted - spent) <= 0.05 * spent, f"forecast {predicted} credits, the night spent {spent}"


def test_check_mappings_names_the_file_field_and_fix(sandbox, write_config, ledger_url, tmp_path):
    mappings = tmp_path / "maps"
    mappings.mkdir()
    (mappings / "salesforce.lead.yaml").write_text(
        "version: 1\nsource: salesforce\nobject: Lead\nidentity: {email: Email}\nfields:\n"
        "  NumberOfEmployees: {from: sixsense.company.employeeRange, transform: {join: {sep: ','}}}\n")
    config = _config(sandbox, write_config, ledger_url, mappings_dir=str(mappings))
    result = connector("check-mappings", "--config", config, cwd=tmp_path)
    assert result.returncode == 2
    assert "salesforce.lead.yaml: field 'NumberOfEmployees'" in result.stderr and "fix:" in result.stderr
    run = connector("run", "--config", config, cwd=tmp_path)  # `connector run` checks first
    assert run.returncode == 2 and "field 'NumberOfEmployees'" in run.stderr
    assert not [e for e in sandbox["sixsense"].log.entries() if e.path == "/v2/people/full"]
    assert sandbox["salesforce"].applied_writes == []
    good = _config(sandbox, write_config, f"sqlite:///{tmp_path / 'l2.db'}")
    ok = connector("check-mappings", "--config", good, cwd=tmp_path)
    assert ok.returncode == 0 and "mapping fits the CRM schema" in ok.stdout


def test_plan_prints_the_night_without_spending(sandbox, write_config, ledger_url, tmp_path):
    config = _config(sandbox, write_config, ledger_url)
    result = connector("plan", "--config", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "28 lead(s) to process" in result.stdout and "credits:" in result.stdout
    assert not [e for e in sandbox["sixsense"].log.entries() if e.path == "/v2/people/full"]


def test_resync_from_a_file_and_a_created_date_range(sandbox, write_config, ledger_url, tmp_path):
    from datetime import datetime, timedelta, timezone

    config = _config(sandbox, write_config, ledger_url)
    assert connector("run", "--config", config, cwd=tmp_path).returncode == 0
    crm = sandbox["salesforce"]
    [judy] = [r for r in crm.leads() if r["Email"] == "judy@6sense.com"]
    crm.human_edit(judy["Id"], "SixSense_Company_Name__c", "")  # emptied: ours to fill again
    listing = tmp_path / "leads.txt"
    listing.write_text(f"{judy['Id']}\nnobody@nowhere.example\n")
    by_file = connector("resync", "--file", str(listing), "--config", config, cwd=tmp_path)
    assert by_file.returncode == 0, by_file.stderr
    assert "re-synced 1 lead(s): done(written) 1" in by_file.stdout
    assert "'nobody@nowhere.example' is not in the ledger" in by_file.stdout
    assert crm.lead(judy["Id"])["SixSense_Company_Name__c"] == "6sense"
    today = datetime.now(timezone.utc).date()
    by_dates = connector("resync", "--from", str(today - timedelta(days=2)), "--to", str(today + timedelta(days=1)),
                         "--config", config, cwd=tmp_path)
    assert by_dates.returncode == 0, by_dates.stderr
    assert "re-synced 28 lead(s)" in by_dates.stdout and "done(up_to_date) 21" in by_dates.stdout
    writes = [w["id"] for w in crm.applied_writes]
    assert len(writes) == 22  # the night's 21, and Judy's emptied field once
    bad = connector("resync", "--from", "yesterday", "--config", config, cwd=tmp_path)
    assert bad.returncode == 2 and "--from 'yesterday' is not a date" in bad.stderr


def test_the_sweeper_takes_a_lost_lead_back_once_per_grace_period(ledger_url):
    """A lead still `new` past the grace (a lost task) or in flight with an expired claim (a dead
    worker) is handed back once; the next sweep leaves it alone until another grace has passed."""
    from datetime import datetime, timedelta, timezone  # noqa: PLC0415

    ledger = open_ledger(ledger_url, auto_migrate=True)
    now = datetime.now(timezone.utc)
    run = ledger.start_run(run_key="salesforce:night:test", source="salesforce", kind="night",
                           window_start=now, window_end=now + timedelta(hours=2))
    ledger.register_leads(source="salesforce", run_id=run.id, leads=[
        ("00Q000000000001AAA", "a@x.example", now - timedelta(days=1)),
        ("00Q000000000002AAA", "b@x.example", now - timedelta(days=2)),
        ("00Q000000000003AAA", "c@x.example", now)])
    claimed = ledger.claim_leads(source="salesforce", run_id=run.id, ttl=timedelta(seconds=-1), via="night",
                                 leads=[("00Q000000000003AAA", "c@x.example", now)])  # a worker that died
    assert list(claimed) == ["00Q000000000003AAA"]

    later = now + timedelta(minutes=11)
    first = ledger.requeue_stale_leads(source="salesforce", queued_before=later - timedelta(minutes=10), now=later)
    assert first == [("00Q000000000002AAA", run.id), ("00Q000000000001AAA", run.id), ("00Q000000000003AAA", run.id)]
    again = ledger.requeue_stale_leads(source="salesforce", queued_before=later - timedelta(minutes=10),
                                       now=later + timedelta(seconds=60))
    assert again == []  # queued a minute ago: not again before the grace has passed
    much_later = later + timedelta(minutes=11)
    assert len(ledger.requeue_stale_leads(source="salesforce", queued_before=much_later - timedelta(minutes=10),
                                          now=much_later)) == 3
    [lead] = ledger.find_leads(key="00Q000000000003AAA")
    assert lead.state == "new" and [e.via for e in ledger.lead_events(lead_id=lead.id)][-1] == "sweep"
    ledger.engine.dispose()


def test_check_mappings_flags_a_cached_value_the_field_would_refuse(make_sandbox, write_config, tmp_path):
    """After a night in which 6sense gave Globex 3 billion employees (refused as bad_value), the
    mapping check names the field, the value, the range and the fix."""
    from dataclasses import replace  # noqa: PLC0415

    box = make_sandbox()
    globex = box["sixsense"].companies["globex.example"]
    box["sixsense"].companies["globex.example"] = replace(
        globex, firmographics={**globex.firmographics, "employeeCount": 3_000_000_000})
    config = _config(box, write_config, f"sqlite:///{tmp_path / 'ledger.db'}")
    assert connector("run", "--config", config, cwd=tmp_path).returncode == 0
    result = connector("check-mappings", "--config", config, cwd=tmp_path)
    message = " ".join((result.stdout + result.stderr).split())
    assert "field 'NumberOfEmployees'" in message and "3000000000" in message
    assert "-99,999,999 to 99,999,999" in message and "fix:" in message
