"""A malformed CRM record id from the command line: an input error naming the id, the CRM and the
fix, exit code 2 (bad input, nothing spent), never a mapping error and never a request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BAD_ID = "00Q[/b]' OR Id != '"  # rich markup and SOQL quoting in one id


def connector(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env["COLUMNS"] = "300"
    return subprocess.run([sys.executable, "-m", "connector", *args], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=120)


def test_resync_of_a_malformed_record_id_is_an_input_error_with_the_bad_input_exit_code(
        sandbox, write_config, tmp_path):
    config = write_config(sandbox, f"sqlite:///{tmp_path / 'ledger.db'}")
    result = connector("resync", "--source", "salesforce", BAD_ID, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = " ".join(result.stderr.split())
    assert f"salesforce: record id {BAD_ID!r} is not a salesforce record id" in message
    assert "15 or 18 letters and digits" in message and "fix: give the record's id exactly as salesforce" in message
    assert "mapping" not in message.lower() and "Traceback" not in result.stderr
    # Refused before any lead was read or enriched.
    assert not sandbox["salesforce"].log.entries(path_prefix="/services/data/v59.0/query")
    assert not sandbox["sixsense"].log.entries()
    # The re-sync's run is finished as failed, with why, not left running forever.
    from connector.ledger import open_ledger  # noqa: PLC0415

    [run] = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").runs()
    assert run.kind == "resync" and run.status == "failed" and "is not a salesforce record id" in run.report["error"]
