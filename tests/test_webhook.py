"""The Marketo webhook over a real socket: the app under uvicorn (EmulatorServer), real HTTP with
httpx, the Marketo and 6sense emulators, the ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from connector import webhook as webhook_module
from connector.ledger import Ledger
from connector.mapping import load_mapping
from connector.sandbox import Sandbox
from connector.sandbox.seed import seed_companies
from connector.sandbox.server import EmulatorServer
from connector.services import Services, open_services
from connector.settings import Settings, bundled_path
from connector.webhook import InProcessQueue, create_app, sign

SECRET = "wh-secret-0123456789-abcdef-canary"
OLD_SECRET = "wh-old-secret-9876543210-zyxwvu"
SIGNING = "sig-secret-0123456789-abcdefghij"
PATH = "/webhook/marketo/lead"
ENRICH = "/v2/people/full"
GLOBEX = seed_companies()["globex.example"].firmographics
MAPPED = set(load_mapping(bundled_path("mappings", "marketo.lead.yaml")).fields)


class SubmitSpy:
    """Records every submit; forwards to the real in-process queue when given one."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.forward: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, record_id: str) -> None:
        with self._lock:
            self.calls.append(record_id)
        if self.forward is not None:
            self.forward(record_id)


@dataclass
class Hook:
    box: Sandbox
    settings: Settings
    services: Services
    server: EmulatorServer
    spy: SubmitSpy
    queue: InProcessQueue
    client: httpx.Client
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def ledger(self) -> Ledger:
        return self.services.ledger

    def post(self, body: Any, *, secret: str | None = SECRET, headers: dict[str, str] | None = None,
             client: httpx.Client | None = None) -> httpx.Response:
        sent = {"Authorization": f"Token {secret}"} if secret else {}
        sent.update(headers or {})
        if isinstance(body, (bytes, str)):
            return (client or self.client).post(PATH, content=body, headers=sent)
        return (client or self.client).post(PATH, json=body, headers=sent)

    def enrichments(self) -> int:
        return len(self.box["sixsense"].log.entries(path_prefix=ENRICH))

    def writes_of(self, lead_id: int) -> list[dict[str, Any]]:
        return [w for w in self.box["marketo"].applied_writes if w["id"] == lead_id]

    def new_lead(self, email: str = "pat@globex.example", **fields: Any) -> int:
        return self.box["marketo"].add_lead(email=email, firstName="Pat", lastName="Lee", company="Globex", **fields)

    def second_process(self) -> tuple[httpx.Client, SubmitSpy]:
        """Another webhook process on the same ledger (its own services, pools and socket)."""
        services = open_services(self.settings, auto_migrate=True)
        spy = SubmitSpy()
        queue = InProcessQueue(self.settings, services)
        spy.forward = queue
        app = create_app(self.settings, services, spy)
        server = EmulatorServer(app).start()
        client = httpx.Client(base_url=server.base_url, timeout=30)
        self.closers += [client.close, app.state.webhook.close, queue.close, server.stop]
        return client, spy


@pytest.fixture
def start_hook(make_sandbox, make_settings, ledger_url) -> Iterator[Callable[..., Hook]]:
    hooks: list[Hook] = []

    def start(*, mode: str = "respond", latency: float = 0.0, budget: float = 10.0, forward: bool = True,
              default_queue: bool = False, overrides: dict[str, Any] | None = None, time_scale: float = 1.0,
              **webhook: Any) -> Hook:
        box = make_sandbox(vendors=["marketo", "sixsense"], extra={"sixsense": {"latency_seconds": latency}},
                           time_scale=time_scale)
        settings = make_settings(box, ledger_url, webhook={"secrets": [SECRET, OLD_SECRET], "mode": mode,
                                                           "budget_seconds": budget, **webhook},
                                 time_scale=time_scale, **(overrides or {}))
        services = open_services(settings, auto_migrate=True)
        spy = SubmitSpy()
        queue = InProcessQueue(settings, services)
        if forward:
            spy.forward = queue
        # default_queue: no submit given, as serve() does (the app's own in-process queue).
        app = create_app(settings, services, None if default_queue else spy)
        server = EmulatorServer(app).start()
        hook = Hook(box, settings, services, server, spy, queue, httpx.Client(base_url=server.base_url, timeout=30))
        hook.closers += [hook.client.close, app.state.webhook.close, queue.close, server.stop]
        hooks.append(hook)
        return hook

    yield start
    for hook in hooks:
        for close in hook.closers:
            close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def lead_state(hook: Hook, lead_id: int) -> tuple[str, str]:
    [lead] = [found for found in hook.ledger.find_leads(key=str(lead_id)) if found.source == "marketo"]
    return lead.state, lead.reason


def assert_unmappable(body: dict[str, Any]) -> None:
    """Marketo maps any 2xx: an acknowledgement has no key a response attribute can name."""
    assert body and all(key.startswith("@") for key in body), body


# ---- respond mode ---------------------------------------------------------------------------


def test_respond_mode_answers_the_mapped_fields_that_pass_within_the_budget(start_hook):
    hook = start_hook(budget=10)
    lead_id = hook.new_lead(industry="Aerospace (set by sales)")
    started = time.monotonic()
    reply = hook.post({"id": lead_id, "email": "pat@globex.example", "firstName": "Pat", "company": "Globex",
                       "industry": "Aerospace (set by sales)", "numberOfEmployees": None, "ip": "203.0.113.9"})
    elapsed = time.monotonic() - started

    assert reply.status_code == 200, reply.text
    assert elapsed < hook.settings.webhook.budget_seconds
    body = reply.json()
    assert set(body) <= MAPPED  # flat, mapped fields only
    assert body["numberOfEmployees"] == int(GLOBEX["employeeCount"])
    assert body["annualRevenue"] == float(GLOBEX["annualRevenue"])
    assert body["sixsenseCompanyName"] == GLOBEX["name"]
    assert body["sixsenseDomain"] == GLOBEX["domain"]
    assert body["sixsenseSegments"] == "Mid-Market"
    # The payload shows a person's industry: the policy keeps it, so it is not in the reply.
    assert "industry" not in body
    assert hook.enrichments() == 1
    assert hook.box["marketo"].applied_writes == []  # Marketo's response mapping writes, not us
    assert hook.spy.calls == []
    assert lead_state(hook, lead_id) == ("done", "responded")


def test_a_form_encoded_call_is_read_like_a_json_one(start_hook):
    hook = start_hook()
    lead_id = hook.new_lead(email="grace.h@globex.example")
    reply = hook.post(f"id={lead_id}&email=grace.h%40globex.example&company=Globex&industry=&ip=203.0.113.9",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["industry"] == GLOBEX["industry"]  # blank in the payload: filled
    assert body["sixsenseCompanyName"] == GLOBEX["name"]


def test_a_lead_without_a_match_gets_an_acknowledgement_without_mappable_keys(start_hook):
    hook = start_hook()
    lead_id = hook.new_lead(email="walter@unknown-startup.example")
    reply = hook.post({"id": lead_id, "email": "walter@unknown-startup.example"})
    assert reply.status_code == 200
    assert_unmappable(reply.json())
    assert reply.json()["@status"] == "skipped"


def test_a_slow_provider_gets_202_and_the_lead_is_written_once_through_marketo(start_hook):
    hook = start_hook(latency=1.5, budget=0.5)
    lead_id = hook.new_lead()
    started = time.monotonic()
    reply = hook.post({"id": lead_id, "email": "pat@globex.example", "company": "Globex"})
    elapsed = time.monotonic() - started

    assert reply.status_code == 202, reply.text
    assert elapsed < 0.5 + 1.0  # the budget, plus slack for a loaded test machine
    assert_unmappable(reply.json())
    assert reply.json()["@status"] == "queued"
    writes = wait_for(lambda: hook.writes_of(lead_id))
    wait_for(lambda: lead_state(hook, lead_id) == ("done", "written"))
    time.sleep(0.5)  # nothing else arrives later
    assert len(hook.writes_of(lead_id)) == 1
    assert writes[0]["fields"]["sixsenseCompanyName"] == GLOBEX["name"]
    assert writes[0]["fields"]["numberOfEmployees"] == int(GLOBEX["employeeCount"])
    assert hook.spy.calls == [str(lead_id)]
    assert hook.enrichments() == 1  # the queued task reused the answer the late attempt bought


# Guide §7 test 11. "Later" is ten minutes on a compressed clock: time_scale divides the vendors'
# windows and the connector's own waits alike. The replay guard itself has no window (the ledger
# keeps every lead it has seen), so the replay comes once every short-lived piece of the webhook's
# state is past: the in-process guard (released with the reply), the delivery's window
# (webhook.budget_seconds) and the shared runtime with its Marketo schema and token, rebuilt after
# 10 minutes (webhook.SCHEMA_TTL_SECONDS / time_scale). A second lead sent with the replay shows
# that horizon was crossed: its runtime is built afresh (a new leads/describe call).
TIME_SCALE = 300.0
TEN_MINUTES = 600.0
LATER = TEN_MINUTES / TIME_SCALE + 0.5  # in real seconds, with a margin
DESCRIBE = "/rest/v1/leads/describe"


@pytest.mark.parametrize("mode", ["respond", "writeback"])
def test_five_concurrent_deliveries_enrich_once_and_write_once(start_hook, mode):
    assert webhook_module.SCHEMA_TTL_SECONDS <= TEN_MINUTES
    hook = start_hook(mode=mode, latency=0.3, budget=TEN_MINUTES / TIME_SCALE, time_scale=TIME_SCALE)
    lead_id = hook.new_lead()
    payload = {"id": lead_id, "email": "pat@globex.example", "company": "Globex"}
    barrier = threading.Barrier(5)
    replies: list[httpx.Response] = []

    def deliver() -> None:
        with httpx.Client(base_url=hook.server.base_url, timeout=30) as client:
            barrier.wait()
            replies.append(hook.post(payload, client=client))

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.status_code for r in replies) == [200] * 5
    duplicates = [r.json() for r in replies if r.json().get("@status") == "duplicate"]
    assert len(duplicates) == 4
    for body in duplicates:
        assert_unmappable(body)
    [first] = [r.json() for r in replies if r.json().get("@status") != "duplicate"]
    if mode == "respond":  # the one reply Marketo's response mapping writes from
        assert first["sixsenseCompanyName"] == GLOBEX["name"]
        assert hook.box["marketo"].applied_writes == []
    else:
        assert first == {"@status": "done", "@lead": str(lead_id), "@reason": "written"}
        [write] = hook.writes_of(lead_id)
        assert write["fields"]["sixsenseCompanyName"] == GLOBEX["name"]
    assert hook.enrichments() == 1

    # Delivered once more, ten minutes later: a no-op too, which touches no vendor and no run.
    time.sleep(LATER)
    runs_before = len(hook.ledger.runs(limit=100))
    marketo_before = len(hook.box["marketo"].log.entries())
    again = hook.post(payload)
    assert again.status_code == 200 and again.json() == {"@status": "duplicate", "@lead": str(lead_id),
                                                         "@reason": "already_received"}
    assert len(hook.box["marketo"].log.entries()) == marketo_before
    assert len(hook.ledger.runs(limit=100)) == runs_before
    assert hook.enrichments() == 1
    assert len(hook.writes_of(lead_id)) == (0 if mode == "respond" else 1)
    assert lead_state(hook, lead_id) == ("done", "responded" if mode == "respond" else "written")
    assert hook.spy.calls == []

    # The clock really moved ten connector minutes: a new lead now gets a freshly built runtime.
    describes = len(hook.box["marketo"].log.entries(path_prefix=DESCRIBE))
    other = hook.new_lead(email="grace.h@globex.example")
    assert hook.post({"id": other, "email": "grace.h@globex.example"}).status_code == 200
    assert len(hook.box["marketo"].log.entries(path_prefix=DESCRIBE)) == describes + 1
    assert hook.enrichments() == 2  # the other lead's; still one for the replayed lead

    # One delivery recorded (the replay guard) and one pipeline run per lead, for seven deliveries.
    runs = [r for r in hook.ledger.runs(limit=100) if r.kind == "webhook"]
    assert len(hook.ledger.runs(limit=100)) == 4
    guards = {r.run_key: r for r in runs if r.run_key.startswith("marketo:webhook-lead:")}
    expected = "done(responded)" if mode == "respond" else "done(written)"
    assert guards[f"marketo:webhook-lead:{lead_id}"].report["outcome"] == expected
    print(f"\ntest 11 ({mode}): 6 deliveries, statuses {sorted(r.status_code for r in replies)} + "
          f"{again.status_code}, 6sense calls for the lead 1, Marketo writes {len(hook.writes_of(lead_id))}, "
          f"the replay {LATER:.1f} s later = {LATER * TIME_SCALE / 60:.1f} min on the clock")


def test_concurrent_deliveries_to_two_processes_write_once(start_hook):
    hook = start_hook(mode="writeback", latency=0.3)
    other, other_spy = hook.second_process()
    lead_id = hook.new_lead()
    payload = {"id": lead_id, "email": "pat@globex.example"}
    barrier = threading.Barrier(6)
    replies: list[httpx.Response] = []

    def deliver(client_url: str) -> None:
        with httpx.Client(base_url=client_url, timeout=30) as client:
            barrier.wait()
            replies.append(hook.post(payload, client=client))

    urls = [hook.server.base_url] * 3 + [str(other.base_url)] * 3
    threads = [threading.Thread(target=deliver, args=(url,)) for url in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert all(200 <= r.status_code < 300 for r in replies)
    for reply in replies:
        assert_unmappable(reply.json())
    assert sorted(r.json()["@status"] for r in replies).count("duplicate") == 5
    wait_for(lambda: lead_state(hook, lead_id) == ("done", "written"))
    assert len(hook.writes_of(lead_id)) == 1
    assert hook.enrichments() == 1
    assert hook.spy.calls == [] and other_spy.calls == []


def test_a_delivery_that_raced_past_the_ledger_check_is_stopped_by_the_delivery_run(start_hook, monkeypatch):
    """Process B checked the ledger before process A claimed the lead, and reaches the claim only
    after A has finished (the lead is claimable again): the unique delivery run stops B."""
    hook = start_hook()
    other, _ = hook.second_process()
    lead_id = hook.new_lead()
    payload = {"id": lead_id, "email": "pat@globex.example"}
    first = hook.post(payload)
    assert first.status_code == 200 and "sixsenseCompanyName" in first.json()
    monkeypatch.setattr(Ledger, "lead_ids", lambda self, **_: {})  # B's stale view
    late = hook.post(payload, client=other)
    assert late.status_code == 200 and late.json()["@status"] == "duplicate"
    assert hook.enrichments() == 1
    assert [r.run_key for r in hook.ledger.runs(limit=100) if r.run_key.startswith("marketo:webhook-lead:")] \
        == [f"marketo:webhook-lead:{lead_id}"]


# ---- writeback mode -------------------------------------------------------------------------


def test_writeback_mode_writes_through_marketo_and_answers_200_without_mappable_keys(start_hook):
    hook = start_hook(mode="writeback")
    lead_id = hook.new_lead()
    reply = hook.post({"id": lead_id, "email": "pat@globex.example"})
    assert reply.status_code == 200, reply.text
    assert_unmappable(reply.json())
    assert reply.json() == {"@status": "done", "@lead": str(lead_id), "@reason": "written"}
    [write] = hook.writes_of(lead_id)
    assert write["fields"]["industry"] == GLOBEX["industry"]
    assert write["fields"]["sixsenseDomain"] == GLOBEX["domain"]
    assert hook.spy.calls == []

    # A replay later is a no-op: no enrichment, no second write.
    again = hook.post({"id": lead_id, "email": "pat@globex.example"})
    assert again.status_code == 200 and again.json()["@status"] == "duplicate"
    assert len(hook.writes_of(lead_id)) == 1 and hook.enrichments() == 1


def test_writeback_mode_answers_202_when_slow_and_writes_once(start_hook):
    hook = start_hook(mode="writeback", latency=1.5, budget=0.5, default_queue=True)
    lead_id = hook.new_lead()
    reply = hook.post({"id": lead_id, "email": "pat@globex.example"})
    assert reply.status_code == 202
    assert_unmappable(reply.json())
    wait_for(lambda: lead_state(hook, lead_id) == ("done", "written"))
    time.sleep(0.3)
    assert len(hook.writes_of(lead_id)) == 1
    assert hook.enrichments() == 1


def test_a_lead_the_night_already_has_is_a_no_op(start_hook):
    hook = start_hook(mode="writeback")
    lead_id = hook.new_lead()
    hook.ledger.upsert_lead(source="marketo", record_id=str(lead_id), email="pat@globex.example",
                            crm_created_at=datetime.now(timezone.utc))
    reply = hook.post({"id": lead_id, "email": "pat@globex.example"})
    assert reply.status_code == 200 and reply.json()["@status"] == "duplicate"
    assert hook.enrichments() == 0 and hook.writes_of(lead_id) == []


# ---- refused calls --------------------------------------------------------------------------

BIG = 70_000


def bad_calls(lead_id: int) -> list[tuple[str, dict[str, Any], int, str | None]]:
    """(name, request kwargs, status, field named)."""
    good = {"id": lead_id, "email": "pat@globex.example"}
    token = {"Authorization": f"Token {SECRET}"}
    json_ct = {**token, "Content-Type": "application/json"}

    def streamed() -> Iterator[bytes]:
        yield b'{"id": 1, "email": "a@b.example", "pad": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    return [
        ("no Authorization", {"json": good}, 401, None),
        ("empty Authorization", {"json": good, "headers": {"Authorization": ""}}, 401, None),
        ("wrong secret", {"json": good, "headers": {"Authorization": "Token wrong-secret-000000000"}}, 403, None),
        ("secret with a suffix", {"json": good, "headers": {"Authorization": f"Token {SECRET}x"}}, 403, None),
        ("another scheme", {"json": good, "headers": {"Authorization": f"Bearer {SECRET}"}}, 403, None),
        ("secret in the URL", {"json": good, "params": {"token": SECRET}}, 401, None),
        ("body over the cap", {"content": json.dumps({**good, "pad": "x" * BIG}), "headers": json_ct}, 413, None),
        ("streamed body over the cap", {"content": streamed(), "headers": json_ct}, 413, None),
        ("not JSON", {"content": b"<lead><id>1</id></lead>", "headers": json_ct}, 422, "body"),
        ("a JSON list", {"json": [good], "headers": token}, 422, "body"),
        ("duplicate key", {"content": b'{"id": 1, "id": 2, "email": "a@b.example"}', "headers": json_ct}, 422, "body"),
        ("no email", {"json": {"id": lead_id}, "headers": token}, 422, "email"),
        ("blank email", {"json": {"id": lead_id, "email": "  "}, "headers": token}, 422, "email"),
        ("malformed email", {"json": {"id": lead_id, "email": "trent@@nin.example"}, "headers": token}, 422, "email"),
        ("email not a string", {"json": {"id": lead_id, "email": ["a@b.example"]}, "headers": token}, 422, "email"),
        ("no id", {"json": {"email": "pat@globex.example"}, "headers": token}, 422, "id"),
        ("id not an integer", {"json": {"id": "abc", "email": "pat@globex.example"}, "headers": token}, 422, "id"),
        ("id a fraction", {"json": {"id": 1.5, "email": "pat@globex.example"}, "headers": token}, 422, "id"),
        ("id a boolean", {"json": {"id": True, "email": "pat@globex.example"}, "headers": token}, 422, "id"),
        ("id negative", {"json": {"id": -5001, "email": "pat@globex.example"}, "headers": token}, 422, "id"),
        ("a field that is an object", {"json": {**good, "company": {"name": "Globex"}}, "headers": token}, 422, "company"),
        ("form id not digits", {"content": b"id=50x1&email=a%40b.example",
                                "headers": {**token, "Content-Type": "application/x-www-form-urlencoded"}}, 422, "id"),
        ("form without email", {"content": f"id={lead_id}".encode(),
                                "headers": {**token, "Content-Type": "application/x-www-form-urlencoded"}}, 422, "email"),
    ]


def test_bad_calls_are_refused_with_their_status_and_nothing_is_enqueued_or_spent(start_hook):
    hook = start_hook()
    lead_id = hook.new_lead()
    marketo_calls = len(hook.box["marketo"].log.entries())
    for name, kwargs, status, named in bad_calls(lead_id):
        reply = hook.client.post(PATH, **kwargs)
        assert reply.status_code == status, f"{name}: {reply.status_code} {reply.text}"
        body = reply.json()
        assert set(body) == {"error", "detail", "field"}, name
        assert body["field"] == named, f"{name}: {body}"
        if status == 401:
            assert reply.headers["WWW-Authenticate"] == "Token"
    assert hook.spy.calls == []
    assert hook.enrichments() == 0 and hook.box["sixsense"].log.entries() == []
    assert len(hook.box["marketo"].log.entries()) == marketo_calls
    assert hook.ledger.runs() == [] and hook.ledger.lead_ids(source="marketo", record_ids=[str(lead_id)]) == {}


def test_the_previous_secret_still_works_while_it_is_rotated(start_hook):
    hook = start_hook()
    lead_id = hook.new_lead()
    assert hook.post({"id": lead_id, "email": "pat@globex.example"}, secret=OLD_SECRET).status_code == 200


def test_signed_calls_need_a_valid_fresh_signature(start_hook):
    hook = start_hook(signing_secret=SIGNING)
    lead_id = hook.new_lead()
    body = json.dumps({"id": lead_id, "email": "pat@globex.example"}).encode()
    json_ct = {"Content-Type": "application/json"}
    cases = [
        ("no signature", {}, 401),
        ("tampered body", {"X-Connector-Signature": sign(SIGNING, body.replace(b"pat@", b"eve@"))}, 401),
        ("stale", {"X-Connector-Signature": sign(SIGNING, body, int(time.time()) - 400)}, 401),
        ("from the future", {"X-Connector-Signature": sign(SIGNING, body, int(time.time()) + 400)}, 401),
        ("another key", {"X-Connector-Signature": sign("not-the-signing-secret-000", body)}, 401),
        ("malformed", {"X-Connector-Signature": "v1=abc"}, 401),
    ]
    for name, headers, status in cases:
        reply = hook.post(body, headers={**json_ct, **headers})
        assert reply.status_code == status, f"{name}: {reply.status_code}"
    # A valid signature without the token is still refused: both are checked.
    assert hook.post(body, secret=None, headers={**json_ct, "X-Connector-Signature": sign(SIGNING, body)}
                     ).status_code == 401
    assert hook.spy.calls == [] and hook.enrichments() == 0
    reply = hook.post(body, headers={**json_ct, "X-Connector-Signature": sign(SIGNING, body)})
    assert reply.status_code == 200 and reply.json()["sixsenseCompanyName"] == GLOBEX["name"]


def test_the_secrets_never_appear_in_replies_or_logs(start_hook, caplog):
    caplog.set_level(logging.DEBUG)
    hook = start_hook(signing_secret=SIGNING)
    lead_id = hook.new_lead()
    body = json.dumps({"id": lead_id, "email": "pat@globex.example"}).encode()
    replies = [
        hook.post(body, secret=SECRET[:-1]),
        hook.post(body, secret=f"{SECRET} {SECRET}"),
        hook.post(body, headers={"Content-Type": "application/json", "X-Connector-Signature": f"t=1,v1={SIGNING}"}),
        hook.post(json.dumps({"id": lead_id, "email": SECRET}).encode(),
                  headers={"X-Connector-Signature": sign(SIGNING, json.dumps({"id": lead_id, "email": SECRET}).encode())}),
        hook.post(body, headers={"X-Connector-Signature": sign(SIGNING, body)}),
        hook.client.get("/openapi.json"),
        hook.client.get("/healthz"),
    ]
    assert [r.status_code for r in replies[:5]] == [403, 403, 401, 422, 200]
    for reply in replies:
        text = reply.text + json.dumps(dict(reply.headers))
        for secret in (SECRET, OLD_SECRET, SIGNING):
            assert secret not in text
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (SECRET, OLD_SECRET, SIGNING):
        assert secret not in logged


def test_tokens_and_signatures_are_compared_in_constant_time():
    for function in (webhook_module.check_token, webhook_module.check_signature):
        source = inspect.getsource(function)
        assert "hmac.compare_digest" in source
        assert " == secret" not in source and " == expected" not in source


# ---- the schema -----------------------------------------------------------------------------


def test_the_schema_declares_every_status_code_and_healthz_answers(start_hook):
    hook = start_hook()
    schema = hook.client.get("/openapi.json").json()
    operation = schema["paths"][PATH]["post"]
    assert set(operation["responses"]) == {"200", "202", "401", "403", "413", "422", "503"}
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    assert schema["components"]["securitySchemes"]["MarketoToken"]["name"] == "Authorization"
    assert hook.client.get("/healthz").json() == {"status": "ok", "mode": "respond"}


def test_a_mapping_the_crm_cannot_take_answers_503_and_queues_nothing(start_hook, tmp_path):
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    text = bundled_path("mappings", "marketo.lead.yaml").read_text()
    (mappings / "marketo.lead.yaml").write_text(text + "  noSuchField:            {from: sixsense.company.name}\n")
    hook = start_hook(overrides={"mappings_dir": str(mappings)})
    lead_id = hook.new_lead()
    reply = hook.post({"id": lead_id, "email": "pat@globex.example"})
    assert reply.status_code == 503 and reply.json()["error"] == "misconfigured"
    assert hook.spy.calls == [] and hook.enrichments() == 0


def test_the_webhook_will_not_start_without_a_secret(make_sandbox, make_settings, ledger_url):
    box = make_sandbox(vendors=["marketo", "sixsense"])
    settings = make_settings(box, ledger_url)
    services = open_services(settings, auto_migrate=True)
    with pytest.raises(webhook_module.ConfigError, match="webhook.secrets"):
        create_app(settings, services)
