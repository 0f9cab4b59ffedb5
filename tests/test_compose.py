"""docker-compose.yml, checked statically (no docker engine here): services, commands, health,
ordering, secrets from the environment, and that every setting it passes exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.main import get_command

from connector.cli import app as cli_app
from connector.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_service_the_deployment_needs_is_there():
    assert {"redis", "postgres", "migrate", "worker", "beat", "webhook"} <= set(SERVICES)


def test_commands_are_real_entry_points():
    commands = set(get_command(cli_app).commands)  # type: ignore[attr-defined]
    assert SERVICES["migrate"]["command"] == ["connector", "migrate"] and "migrate" in commands
    assert SERVICES["webhook"]["command"][:2] == ["connector", "webhook"] and "webhook" in commands
    assert SERVICES["worker"]["command"][:4] == ["celery", "-A", "tasks.app", "worker"]
    assert SERVICES["beat"]["command"][:4] == ["celery", "-A", "tasks.app", "beat"]


def test_health_and_start_order():
    for name in ("redis", "postgres", "worker", "webhook"):
        assert "healthcheck" in SERVICES[name], f"{name} has no healthcheck"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker", "beat", "webhook"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"


def _setting_exists(env_name: str) -> bool:
    parts = env_name.removeprefix("CONNECTOR_").lower().split("__")
    model: type = Settings
    for part in parts:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) else type(None)
    return True


def test_every_setting_passed_exists_and_secrets_come_from_the_environment():
    text = (REPO / "docker-compose.yml").read_text()
    names = set(re.findall(r"\b(CONNECTOR_[A-Z0-9_]+)\s*:", text))
    assert names, "compose passes no settings"
    for name in names - {"CONNECTOR_CONFIG"}:
        assert _setting_exists(name), f"docker-compose.yml sets {name}, which is not a setting"
    for secret in ("POSTGRES_PASSWORD", "SALESFORCE_CLIENT_SECRET", "SIXSENSE_API_TOKEN", "WEBHOOK_SECRET"):
        assert re.search(r"\$\{" + secret + r":\?", text), f"{secret} must be required from the environment"
