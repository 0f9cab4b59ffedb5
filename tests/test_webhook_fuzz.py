"""Schemathesis against the webhook's served schema (/openapi.json), over a real socket: at least
1,000 generated calls, none answered 5xx, every reply conforming to the schema (status code,
content type, headers, body). The pipeline behind it is real (Marketo and 6sense emulators,
the ledger on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connector.sandbox.server import EmulatorServer
from connector.services import open_services
from connector.webhook import create_app

SECRET = "fuzz-secret-0123456789-abcdef"
AUTH = {"Authorization": f"Token {SECRET}"}
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_headers_conformance, response_schema_conformance]
# Generated calls per kind (healthz takes no input: one call); 1,021 in all.
COUNTS = {"lead, signed in": 300, "not a lead, signed in": 500, "lead, no or a generated secret": 220, "healthz": 1}
FAST = {"requests": 1_000_000, "per_seconds": 1}


@pytest.fixture
def served(make_sandbox, make_settings, ledger_url) -> Iterator[tuple[str, list[str]]]:
    box = make_sandbox(vendors=["marketo", "sixsense"], extra={
        "sixsense": {"rate_limit": [1_000_000, 1]}, "marketo": {"rate": [1_000_000, 1], "concurrency": 1000}})
    settings = make_settings(box, ledger_url, webhook={"secrets": [SECRET], "budget_seconds": 5}, providers={
        "sixsense": {"rate_limit": FAST}}, sources={"marketo": {"rate_limit": FAST, "max_in_flight": 1000}})
    services = open_services(settings, auto_migrate=True)
    submitted: list[str] = []
    app = create_app(settings, services, submitted.append)
    server = EmulatorServer(app).start()
    try:
        yield server.base_url, submitted
    finally:
        app.state.webhook.close()
        server.stop()


def test_generated_calls_get_no_server_error_and_conform_to_the_schema(served):
    base_url, _ = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    lead = schema["/webhook/marketo/lead"]["POST"]
    health = schema["/healthz"]["GET"]
    session = requests.Session()
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    def call(kind: str, case: schemathesis.Case, headers: dict[str, str] | None = None,
             checks: list[Any] = CONFORMANCE) -> None:
        response = case.call(session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=checks)
        seen[kind] += 1
        statuses[response.status_code] += 1

    def fuzz(kind: str, strategy: Any, body: Callable[[schemathesis.Case], None]) -> None:
        settings(max_examples=COUNTS[kind], deadline=None, database=None, derandomize=True,
                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                 )(given(case=strategy)(body))()
        assert seen[kind] == COUNTS[kind], f"{kind}: {seen[kind]} calls"

    fuzz("lead, signed in", lead.as_strategy(GenerationMode.POSITIVE),
         lambda case: call("lead, signed in", case, AUTH))
    # Schema-invalid calls must be refused (4xx), never accepted, never a 5xx.
    fuzz("not a lead, signed in", lead.as_strategy(GenerationMode.NEGATIVE),
         lambda case: call("not a lead, signed in", case, AUTH, CONFORMANCE + [negative_data_rejection]))
    fuzz("lead, no or a generated secret", lead.as_strategy(GenerationMode.POSITIVE),
         lambda case: call("lead, no or a generated secret", case))
    fuzz("healthz", health.as_strategy(), lambda case: call("healthz", case))

    assert sum(seen.values()) >= 1000, seen
    # Every kind of answer was reached, not just refusals.
    assert statuses[200] > 50 and statuses[422] > 50 and statuses[403] + statuses[401] > 50, statuses
    assert not any(status >= 500 for status in statuses), statuses
