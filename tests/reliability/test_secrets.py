"""Guide §7 test 14: secret canaries.

Every credential setting (every SecretStr in connector.settings: the Salesforce client id, secret
and password, the HubSpot token, client and refresh token, the Marketo client, the 6sense token
and custom id, the Slintel key, the contacts API token, the webhook secrets and signing secret)
gets a unique canary value, and the emulators are made to accept exactly those values. Then we
force 401s (wrong secrets), timeouts (a fault delaying past a small read timeout), exceptions,
vendor error bodies that echo the credential back (faults whose body holds the canary) and
DEBUG logging, and run nights in process (caplog at DEBUG, the library loggers at DEBUG too)
and through the CLI in a subprocess. Pass: 0 canary hits in the captured logs, the subprocess's
stdout and stderr, exception messages and tracebacks, and every column of every row of every
ledger table. Also a static test that secrets are compared with hmac.compare_digest.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import connector
import connector.ledger.tables  # registers every ledger table on SQLModel.metadata
from connector.ledger import open_ledger
from connector.limiter import MemoryLimiter
from connector.pipeline import RunReport, current_window, run_source
from connector.redaction import install_log_redaction, redact, register_secrets
from connector.sandbox import Sandbox, deep_merge
from connector.sandbox import contacts_api as contacts_emulator
from connector.sandbox import hubspot as hubspot_emulator
from connector.sandbox import marketo as marketo_emulator
from connector.sandbox import salesforce as salesforce_emulator
from connector.sandbox import sixsense as sixsense_emulator
from connector.sandbox import slintel as slintel_emulator
from connector.sandbox.server import Fault
from connector.settings import Settings

CONNECTOR_DIR = Path(connector.__file__).resolve().parent
VENDORS = ["salesforce", "sixsense", "slintel", "contacts_api", "hubspot", "marketo"]
LIBRARY_LOGGERS = ("urllib3", "httpx", "httpcore", "requests", "simple_salesforce", "hubspot", "connector",
                   "sqlalchemy.engine", "alembic")
MEASURED: dict[str, int] = {}


def secret_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every SecretStr setting (lists of secrets included), as dotted paths."""
    found: list[str] = []
    for name, info in model.model_fields.items():
        annotation = str(info.annotation)
        if "SecretStr" in annotation:
            found.append(prefix + name)
            continue
        default = info.default
        if isinstance(default, BaseModel):
            found += secret_paths(type(default), f"{prefix}{name}.")
    return found


def canary(name: str) -> str:
    return f"CANARY{name.replace('.', '_').upper()}{uuid.uuid4().hex[:20]}"


def nested(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


@dataclass
class Canaries:
    values: dict[str, str]  # setting path -> canary (webhook.secrets holds two)

    def all(self) -> list[str]:
        return list(self.values.values())

    def hits(self, text: str) -> list[str]:
        return [path for path, value in self.values.items() if value in text]

    def assert_absent(self, where: str, text: str) -> None:
        found = self.hits(text)
        MEASURED["texts scanned"] = MEASURED.get("texts scanned", 0) + 1
        assert not found, f"canary of {found} found in {where}: ...{_around(text, self.values[found[0]])}..."

    def settings(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for path, value in self.values.items():
            if path.startswith("webhook.secrets"):
                continue
            document = deep_merge(document, nested(path, value))
        document = deep_merge(document, {"webhook": {"secrets": [self.values["webhook.secrets#0"],
                                                                  self.values["webhook.secrets#1"]]}})
        return document


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 120): at + len(needle) + 40]


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch) -> Canaries:
    """A canary for every secret setting; the emulators' expected credentials become the canaries."""
    values = {path: canary(path) for path in secret_paths() if path != "webhook.secrets"}
    values["webhook.secrets#0"] = canary("webhook0")
    values["webhook.secrets#1"] = canary("webhook1")
    expected = {
        (salesforce_emulator, "SANDBOX_CLIENT_ID"): "sources.salesforce.client_id",
        (salesforce_emulator, "SANDBOX_CLIENT_SECRET"): "sources.salesforce.client_secret",
        (salesforce_emulator, "SANDBOX_PASSWORD"): "sources.salesforce.password",
        (hubspot_emulator, "SANDBOX_PRIVATE_APP_TOKEN"): "sources.hubspot.access_token",
        (hubspot_emulator, "SANDBOX_CLIENT_ID"): "sources.hubspot.client_id",
        (hubspot_emulator, "SANDBOX_CLIENT_SECRET"): "sources.hubspot.client_secret",
        (hubspot_emulator, "SANDBOX_REFRESH_TOKEN"): "sources.hubspot.refresh_token",
        (marketo_emulator, "SANDBOX_CLIENT_ID"): "sources.marketo.client_id",
        (marketo_emulator, "SANDBOX_CLIENT_SECRET"): "sources.marketo.client_secret",
        (sixsense_emulator, "SANDBOX_API_TOKEN"): "providers.sixsense.api_token",
        (slintel_emulator, "SANDBOX_API_KEY"): "providers.slintel.api_key",
        (contacts_emulator, "SANDBOX_API_TOKEN"): "providers.contacts_api.api_token",
    }
    for (module, name), path in expected.items():
        monkeypatch.setattr(module, name, values[path])
    return Canaries(values)


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """DEBUG everywhere, library loggers included; levels restored afterwards."""
    saved = {name: logging.getLogger(name).level for name in ("", *LIBRARY_LOGGERS)}
    yield caplog
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def enable_debug(caplog: pytest.LogCaptureFixture, settings: Settings) -> None:
    """What an entry point does (register the secrets, install the redacting filter), at DEBUG,
    then every library logger at DEBUG as well, stricter than the product's defaults."""
    caplog.set_level(logging.DEBUG)
    register_secrets(settings.secret_values())
    install_log_redaction("DEBUG")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)


def scan_ledger(canaries: Canaries, url: str) -> int:
    """Every column of every row of every ledger table; returns the number of rows read."""
    engine = create_engine(url)
    rows_read = 0
    tables = {t.name for t in SQLModel.metadata.sorted_tables}
    assert {"sync_run", "lead", "lead_event", "enrichment", "field_write", "provider_circuit", "spend_day",
            "source_cursor"} <= tables
    try:
        with engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                for row in conn.execute(table.select()):
                    rows_read += 1
                    for column, value in row._mapping.items():
                        text = value if isinstance(value, str) else json.dumps(value, default=str)
                        canaries.assert_absent(f"ledger {table.name}.{column}", text)
    finally:
        engine.dispose()
    MEASURED["ledger rows scanned"] = MEASURED.get("ledger rows scanned", 0) + rows_read
    return rows_read


def scan_exception(canaries: Canaries, exc: BaseException | None) -> None:
    if exc is None:
        return
    canaries.assert_absent("exception message", f"{exc}\n{exc!r}\n{getattr(exc, 'fix', '')}")
    canaries.assert_absent("exception traceback", "".join(traceback.format_exception(exc)))


def scan_logs(canaries: Canaries, caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged at DEBUG"
    MEASURED["log records scanned"] = MEASURED.get("log records scanned", 0) + len(caplog.records)
    canaries.assert_absent("captured logs", caplog.text)
    for record in caplog.records:
        canaries.assert_absent(f"log record {record.name}",
                               f"{record.getMessage()} {record.exc_text or ''} {record.stack_info or ''}")


def night(settings: Settings, url: str, source: str) -> tuple[RunReport | None, BaseException | None]:
    ledger = open_ledger(url, auto_migrate=True)
    try:
        return run_source(settings, ledger, MemoryLimiter(), source, window=current_window(settings)), None
    except Exception as exc:  # noqa: BLE001  (scanned by the caller)
        return None, exc


def echo(canaries: Canaries, path: str) -> str:
    return f"credential rejected: {canaries.values[path]} (Authorization Token {canaries.values[path]})"


def fault(path: str, status: int, body: Any, *, count: int = 1, delay: float = 0.0, **kwargs: Any) -> Fault:
    return Fault(path_prefix=path, status=status, body=body, count=count, delay_seconds=delay, **kwargs)


def echoing_faults(box: Sandbox, canaries: Canaries) -> None:
    """Vendor answers that echo the credential back, a timeout, a 401, on every provider."""
    token = "providers.sixsense.api_token"
    six = box["sixsense"].faults
    six.add(fault("/v2/people/full", 404, {"status": "error", "message": f"No data found: {echo(canaries, token)}"}))
    six.add(fault("/v2/people/full", 422, {"status": "error", "message": echo(canaries, token)}))
    six.add(fault("/v2/people/full", 500, f"<html><body>{echo(canaries, token)}</body></html>", count=2))
    six.add(fault("/v2/people/full", 0, None, delay=1.5, count=2))  # past the 0.3 s read timeout
    six.add(fault("/v2/people/full", 401, {"status": "error", "message": f"Invalid API token. {echo(canaries, token)}"}))
    box["slintel"].faults.add(fault("", 403, {"message": echo(canaries, "providers.slintel.api_key")}))
    box["contacts_api"].faults.add(fault("", 500, {"error": echo(canaries, "providers.contacts_api.api_token")}))
    box["contacts_api"].faults.add(fault("", 401, {"error": "unauthorized",
                                                   "message": echo(canaries, "providers.contacts_api.api_token")}))


def vendor_settings(box: Sandbox, canaries: Canaries, tmp: Path, name: str, **extra: Any) -> dict[str, Any]:
    fast = {"http": {"read_timeout_seconds": 0.3}, "retries_on_server_error": 1}
    base = deep_merge(box.overrides(), canaries.settings())
    base = deep_merge(base, {
        "data_dir": str(tmp / f"data-{name}"), "ledger": {"url": f"sqlite:///{tmp / f'{name}.db'}"},
        "sandbox": {"enabled": False}, "log_level": "DEBUG", "workers": 4,
        "sources": {"salesforce": {"auth_flow": "password"}, "hubspot": {"auth": "oauth"}},
        "providers": {"sixsense": fast},
    })
    return deep_merge(base, extra)


@pytest.fixture
def canary_box(make_sandbox: Callable[..., Sandbox], canaries: Canaries) -> Sandbox:
    return make_sandbox(vendors=VENDORS)


def test_every_secret_setting_has_a_canary_and_is_registered_for_redaction(canaries):
    paths = set(secret_paths())
    assert {"sources.salesforce.client_secret", "sources.salesforce.password", "providers.sixsense.api_token",
            "sources.hubspot.access_token", "sources.marketo.client_secret", "providers.slintel.api_key",
            "providers.contacts_api.api_token", "webhook.secrets", "webhook.signing_secret"} <= paths
    from connector.settings import load_settings

    for value in canaries.all():  # fresh values: nothing registered them yet
        assert redact(f"x {value} y") == f"x {value} y"
    settings = load_settings(Path(os.devnull), **canaries.settings())
    assert set(settings.secret_values()) == set(canaries.all())
    # Loading the settings registered every secret for redaction by value (a Celery worker
    # calls no entry point that would do it).
    for value in canaries.all():
        assert redact(f"x {value} y") == "x [REDACTED] y"
    MEASURED["secret settings"] = len(paths)


@pytest.mark.parametrize("source", ["salesforce", "hubspot", "marketo"])
def test_a_night_full_of_echoing_vendor_errors_timeouts_and_401s_leaks_no_canary(
        source, canary_box, canaries, debug_logging, make_settings, tmp_path):
    box = canary_box
    echoing_faults(box, canaries)
    crm = box[source].faults
    if source == "salesforce":
        sf_secret = echo(canaries, "sources.salesforce.client_secret")
        crm.add(fault("/services/data/v59.0/query", 500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": sf_secret}]))
        crm.add(fault("/services/data/v59.0/composite/sobjects", 400,
                      [{"errorCode": "INVALID_FIELD", "message": echo(canaries, "sources.salesforce.password")}]))
    elif source == "hubspot":
        crm.add(fault("/crm/v3/objects/contacts/batch/update", 500,
                      {"status": "error", "message": echo(canaries, "sources.hubspot.refresh_token")}))
    else:
        crm.add(fault("/rest/v1/leads.json", 0, None, delay=1.0, method="POST"))  # past the 0.5 s read timeout
    settings = _load(vendor_settings(box, canaries, tmp_path, source, sources={source: {
        "enabled": True, "http": {"read_timeout_seconds": 0.5}}}))
    enable_debug(debug_logging, settings)
    report, error = night(settings, settings.ledger_url, source)
    scan_exception(canaries, error)
    assert error is None, f"the night did not finish: {error}"
    assert report is not None and report.polled == 28
    MEASURED[f"{source}: leads"] = sum(report.states.values())
    # The faults were served: the credential really was echoed back and the calls really failed.
    statuses = [e.status for e in box["sixsense"].log.entries(path_prefix="/v2/people/full")]
    assert {404, 422, 500, 401} <= set(statuses), statuses
    scan_logs(canaries, debug_logging)
    scan_ledger(canaries, settings.ledger_url)


@pytest.mark.parametrize("vendor", ["salesforce", "sixsense", "hubspot", "marketo", "salesforce_echo"])
def test_wrong_secrets_give_401s_and_no_canary_anywhere(vendor, canary_box, canaries, debug_logging, tmp_path):
    box = canary_box
    wrong = {path: canary(f"wrong_{path}") for path in canaries.values}
    source = vendor if vendor in ("hubspot", "marketo") else "salesforce"
    extra: dict[str, Any] = {"sources": {source: {"enabled": True}}}
    if vendor in ("salesforce", "salesforce_echo"):
        extra = deep_merge(extra, {"sources": {"salesforce": {"client_secret": wrong["sources.salesforce.client_secret"],
                                                              "password": wrong["sources.salesforce.password"]}}})
    if vendor == "salesforce_echo":  # the token endpoint echoes what it was sent
        box["salesforce"].faults.add(fault("/services/oauth2/token", 400, {
            "error": f"invalid_client {wrong['sources.salesforce.client_secret']}",
            "error_description": echo(canaries, "sources.salesforce.client_secret")}))
    if vendor == "sixsense":
        extra = deep_merge(extra, {"providers": {"sixsense": {"api_token": wrong["providers.sixsense.api_token"]}}})
    if vendor == "hubspot":
        extra = deep_merge(extra, {"sources": {"hubspot": {"client_secret": wrong["sources.hubspot.client_secret"]}}})
    if vendor == "marketo":
        extra = deep_merge(extra, {"sources": {"marketo": {"client_secret": wrong["sources.marketo.client_secret"]}}})
    settings = _load(vendor_settings(box, canaries, tmp_path, vendor, **extra))
    everything = Canaries({**canaries.values, **{f"wrong:{k}": v for k, v in wrong.items()}})
    enable_debug(debug_logging, settings)
    report, error = night(settings, settings.ledger_url, source)
    scan_exception(everything, error)
    if vendor == "sixsense":
        assert error is None and report is not None
        assert 401 in {e.status for e in box["sixsense"].log.entries()}
        assert any(k.startswith("deferred(config_error)") for k in report.states), report.states
    else:
        assert error is not None and getattr(error, "reason", "") == "config_error", error
    scan_logs(everything, debug_logging)
    scan_ledger(everything, settings.ledger_url)
    MEASURED["401 runs"] = MEASURED.get("401 runs", 0) + 1


def test_an_unexpected_exception_carrying_a_secret_is_redacted_in_logs_and_ledger(
        canary_box, canaries, debug_logging, tmp_path, monkeypatch):
    """A bug deep in the pipeline raises an exception whose text holds a credential (as a library
    error quoting a request might): the lead fails as internal_error, the night goes on, and the
    traceback logged at ERROR (exc_info) and the ledger row show no canary."""
    import connector.pipeline as pipeline_module

    real_decide = pipeline_module.decide
    secret = canaries.values["providers.sixsense.api_token"]

    def decide(**kwargs: Any) -> Any:
        if kwargs["field"].name == "SixSense_Domain__c" and kwargs.get("candidate") is not None:
            raise RuntimeError(f"request failed: headers={{'Authorization': 'Token {secret}'}} token {secret}")
        return real_decide(**kwargs)

    monkeypatch.setattr(pipeline_module, "decide", decide)
    settings = _load(vendor_settings(canary_box, canaries, tmp_path, "bug"))
    enable_debug(debug_logging, settings)
    report, error = night(settings, settings.ledger_url, "salesforce")
    scan_exception(canaries, error)
    assert error is None and report is not None
    assert report.states.get("failed(internal_error)", 0) >= 1, report.states
    assert any(r.exc_text or r.exc_info for r in debug_logging.records if r.levelno >= logging.ERROR)
    scan_logs(canaries, debug_logging)
    scan_ledger(canaries, settings.ledger_url)


def test_the_cli_at_debug_prints_no_canary(canary_box, canaries, tmp_path):
    box = canary_box
    echoing_faults(box, canaries)
    box["salesforce"].faults.add(fault("/services/data/v59.0/composite/sobjects", 400, [{
        "errorCode": "INVALID_FIELD", "message": echo(canaries, "sources.salesforce.client_secret")}]))
    document = vendor_settings(box, canaries, tmp_path, "cli")
    document["providers"]["sixsense"].pop("custom_id")  # given by the environment instead
    config = tmp_path / "canary-settings.yaml"
    config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    env = {"CONNECTOR_PROVIDERS__SIXSENSE__CUSTOM_ID": canaries.values["providers.sixsense.custom_id"]}
    outputs = [cli("run", "--config", str(config), cwd=tmp_path, env=env)]
    assert outputs[0].returncode == 3, outputs[0].stdout + outputs[0].stderr  # finished, some leads failed
    assert "fields written" in outputs[0].stdout
    for email in ("eve@acme-robotics.com", "walter@unknown-startup.example", "judy@6sense.com"):
        outputs.append(cli("explain", email, "--config", str(config), cwd=tmp_path))
    # A wrong Salesforce secret, echoed back by the token endpoint, at DEBUG.
    box["salesforce"].faults.add(fault("/services/oauth2/token", 400, {
        "error": f"invalid_client {canaries.values['sources.salesforce.client_secret']}"}))
    outputs.append(cli("run", "--config", str(config), cwd=tmp_path, env=env))
    assert outputs[-1].returncode == 2, outputs[-1].stderr
    assert "Salesforce refused" in outputs[-1].stderr
    for out in outputs:
        assert out.stdout or out.stderr
        canaries.assert_absent("CLI stdout", out.stdout)
        canaries.assert_absent("CLI stderr", out.stderr)
    MEASURED["CLI runs"] = len(outputs)
    scan_ledger(canaries, document["ledger"]["url"])


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "connector", *args], check=False, cwd=cwd, env=full_env,
                          capture_output=True,
                          text=True, timeout=180)


def _load(document: dict[str, Any]) -> Settings:
    from connector.settings import load_settings

    return load_settings(Path(os.devnull), **document)


# ---- static: secrets are compared in constant time -------------------------------------------

SECRET_NAMES = ("secret", "password", "api_key", "api_token", "access_token", "refresh_token", "signature",
                "presented", "expected")


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    return ""


def test_every_secret_comparison_in_the_connector_uses_hmac_compare_digest():
    offenders = []
    compared = 0
    for path in sorted(CONNECTOR_DIR.rglob("*.py")):
        if "sandbox" in path.relative_to(CONNECTOR_DIR).parts:
            continue  # the emulators stand in for the vendors; they are not the connector
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in ("hmac.compare_digest", "secrets.compare_digest"):
                compared += 1
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
                if not isinstance(op, (ast.Eq, ast.NotEq)):
                    continue
                if any(isinstance(side, ast.Constant) for side in (left, right)):
                    continue  # against a literal (None, "", a scheme word): not a secret comparison
                names = f"{_name(left)} {_name(right)}".lower()
                if any(word in names for word in SECRET_NAMES):
                    offenders.append(f"{path.relative_to(CONNECTOR_DIR.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "secrets compared with ==/!= (use hmac.compare_digest):\n" + "\n".join(offenders)
    webhook = CONNECTOR_DIR / "webhook.py"
    assert webhook.exists()
    tree = ast.parse(webhook.read_text(encoding="utf-8"))
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    for name in ("check_token", "check_signature"):
        calls = [_name(n.func) for n in ast.walk(functions[name]) if isinstance(n, ast.Call)]
        assert "hmac.compare_digest" in calls, f"{name} does not use hmac.compare_digest"
    assert compared >= 2
    MEASURED["constant-time comparisons found"] = compared


def teardown_module() -> None:
    print("\nsecret canaries:", dict(sorted(MEASURED.items())))


CANARY_VALUE = re.compile(r"CANARY[A-Z0-9_]+[0-9a-f]{20}")


def test_pytests_own_output_of_the_canary_tests_holds_no_canary(tmp_path):
    """The pytest output of the canary tests themselves (run in a subprocess at DEBUG, every log
    line printed live, the captured output of passing tests shown too) holds no canary value."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"{Path(__file__)}::test_an_unexpected_exception_carrying_a_secret_is_redacted_in_logs_and_ledger",
         f"{Path(__file__)}::test_a_night_full_of_echoing_vendor_errors_timeouts_and_401s_leaks_no_canary[salesforce]",
         "-p", "no:cacheprovider", "-rA", "-o", "log_cli=true", "--log-cli-level=DEBUG", "--basetemp", str(tmp_path / "t")],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=240, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "2 passed" in output and "DEBUG" in output  # the tests ran, and their debug logs were printed
    assert CANARY_VALUE.findall(output) == []
