"""Guide §7 test 12: Schemathesis against the served schema (/openapi.json) of the webhook and of
the admin API beside it, over a real socket: at least 1,000 generated calls in all, none answered
5xx, every reply conforming to the schema (status code, content type, headers, body), and every
schema-invalid call refused. The pipeline behind it is real (Marketo and 6sense emulators, the
ledger on SQLite and PostgreSQL); only the admin API's re-syncs are recorded instead of run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
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
ADMIN_TOKEN = "fuzz-admin-token-0123456789-abcdef"
AUTH = {"Authorization": f"Token {SECRET}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_headers_conformance, response_schema_conformance]
REFUSED = CONFORMANCE + [negative_data_rejection]
# Generated calls per kind, at most (Hypothesis stops early when an operation has fewer distinct
# inputs: GET /admin/states has a handful): 1,051 at most; the test requires 1,000.
WEBHOOK = {"lead, signed in": 200, "not a lead, signed in": 250, "lead, no or a generated secret": 100,
           "healthz": 1}
ADMIN_OPS = {  # operation: (valid with the token, invalid with the token, valid without it)
    ("/admin/leads/{source}/{record_id}", "GET"): (100, 40, 10),
    ("/admin/resync", "POST"): (150, 60, 10),
    ("/admin/runs", "GET"): (60, 20, 10),
    ("/admin/states", "GET"): (10, 20, 10),
}
FAST = {"requests": 1_000_000, "per_seconds": 1}


@pytest.fixture
def served(make_sandbox, make_settings, ledger_url) -> Iterator[tuple[str, list[tuple[str, list[str]]]]]:
    box = make_sandbox(vendors=["marketo", "sixsense"], extra={
        "sixsense": {"rate_limit": [1_000_000, 1]}, "marketo": {"rate": [1_000_000, 1], "concurrency": 1000}})
    settings = make_settings(box, ledger_url, webhook={"secrets": [SECRET], "budget_seconds": 5,
                                                       "admin_token": ADMIN_TOKEN}, providers={
        "sixsense": {"rate_limit": FAST}}, sources={"marketo": {"rate_limit": FAST, "max_in_flight": 1000}})
    services = open_services(settings, auto_migrate=True)
    resyncs: list[tuple[str, list[str]]] = []
    app = create_app(settings, services, lambda _: None, resync=lambda source, ids: resyncs.append((source, ids)))
    server = EmulatorServer(app).start()
    try:
        yield server.base_url, resyncs
    finally:
        app.state.webhook.close()
        app.state.admin.close()
        server.stop()


def test_generated_calls_get_no_server_error_and_conform_to_the_schema(served):
    base_url, resyncs = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    lead = schema["/webhook/marketo/lead"]["POST"]
    health = schema["/healthz"]["GET"]
    session = requests.Session()
    seen: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()

    def call(kind: str, case: schemathesis.Case, headers: dict[str, str] | None = None,
             checks: list[Any] = CONFORMANCE) -> None:
        response = case.call(session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=checks)
        seen[kind] += 1
        statuses[(kind.split(",")[0], response.status_code)] += 1
        if response.status_code == 200 and case.operation.path.startswith("/admin/leads/"):
            statuses[("lead stories", 200)] += 1

    def fuzz(kind: str, count: int, strategy: Any, headers: dict[str, str] | None = None,
             checks: list[Any] = CONFORMANCE) -> None:
        def body(case: schemathesis.Case) -> None:
            call(kind, case, headers, checks)

        settings(max_examples=count, deadline=None, database=None, derandomize=True,
                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                 )(given(case=strategy)(body))()

    for kind, headers, mode, checks in [
        ("lead, signed in", AUTH, GenerationMode.POSITIVE, CONFORMANCE),
        # Schema-invalid calls must be refused (4xx), never accepted, never a 5xx.
        ("not a lead, signed in", AUTH, GenerationMode.NEGATIVE, REFUSED),
        ("lead, no or a generated secret", None, GenerationMode.POSITIVE, CONFORMANCE),
    ]:
        fuzz(kind, WEBHOOK[kind], lead.as_strategy(mode), headers, checks)
        assert seen[kind] == WEBHOOK[kind], f"{kind}: {seen[kind]} calls"
    fuzz("healthz", 1, health.as_strategy())

    # Leads the webhook calls created: half the generated story lookups ask for one of them, so
    # the 200 answer (a whole LeadStory) is checked against the schema too.
    known = sorted(set(_ledger_record_ids(base_url)))
    assert known, "the webhook's valid calls left no lead in the ledger"
    for (path, method), (valid, invalid, anonymous) in ADMIN_OPS.items():
        operation = schema[path][method]
        # The token is a fixed header of the signed-in cases, so an invalid case is invalid elsewhere.
        signed_in = operation.as_strategy(GenerationMode.POSITIVE, headers=ADMIN)
        if path.startswith("/admin/leads/"):
            signed_in = st.tuples(signed_in, st.sampled_from(known), st.booleans()).map(_known_lead)
        for kind, count, strategy, checks in [
            (f"admin, signed in: {method} {path}", valid, signed_in, CONFORMANCE),
            (f"admin invalid, signed in: {method} {path}", invalid,
             operation.as_strategy(GenerationMode.NEGATIVE, headers=ADMIN), REFUSED),
            (f"admin, no or a generated token: {method} {path}", anonymous,
             operation.as_strategy(GenerationMode.POSITIVE), CONFORMANCE),
        ]:
            fuzz(kind, count, strategy, None, checks)
            assert seen[kind] > 0, kind

    total = sum(seen.values())
    admin_calls = sum(n for kind, n in seen.items() if kind.startswith("admin"))
    print(f"\ntest 12: {total} calls ({total - admin_calls} webhook, {admin_calls} admin API); "
          f"statuses {dict(sorted(statuses.items()))}; re-syncs queued {len(resyncs)}")
    assert total >= 1000, seen
    assert not any(status >= 500 for _, status in statuses), statuses
    # Every kind of answer was reached, not just refusals.
    webhook_ok = statuses[("lead", 200)]
    assert webhook_ok > 50 and statuses[("not a lead", 422)] > 50, statuses
    assert statuses[("lead", 403)] + statuses[("lead", 401)] > 50, statuses
    assert statuses[("admin", 200)] > 50 and statuses[("admin", 202)] > 5 and statuses[("admin", 404)] > 5, statuses
    assert statuses[("lead stories", 200)] > 10, statuses  # whole LeadStory answers, checked against the schema
    assert statuses[("admin invalid", 422)] > 50, statuses
    assert statuses[("admin", 401)] + statuses[("admin", 403)] >= 30, statuses
    assert resyncs, "no generated re-sync was queued"


def _ledger_record_ids(base_url: str) -> list[str]:
    runs = requests.get(f"{base_url}/admin/runs", params={"limit": 500}, headers=ADMIN, timeout=30).json()
    return [r["report"]["record_id"] for r in runs if r["run_key"].startswith("marketo:webhook-lead:")]


def _known_lead(drawn: tuple[schemathesis.Case, str, bool]) -> schemathesis.Case:
    case, record_id, use_known = drawn
    if use_known:
        case.path_parameters = {"source": "marketo", "record_id": record_id}
    return case
