"""The admin API from the outside: the webhook's app under uvicorn on a real socket, httpx, the
Marketo and 6sense emulators, the ledger on SQLite and PostgreSQL. It must tell the same story as
`connector explain`, re-sync like `connector resync`, and refuse anyone without the admin token
before reading a byte of the request."""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from connector import admin_api
from connector.ledger import Ledger
from connector.sandbox import Sandbox
from connector.sandbox.seed import seed_companies
from connector.sandbox.server import EmulatorServer
from connector.services import open_services
from connector.settings import Settings
from connector.webhook import LEAD_PATH, create_app
from tests.test_cli import connector

SECRET = "wh-secret-for-the-admin-tests-0123"
ADMIN = "admin-token-0123456789-abcdefghij"
GLOBEX = seed_companies()["globex.example"].firmographics


@dataclass
class Served:
    box: Sandbox
    settings: Settings
    ledger: Ledger
    client: httpx.Client
    resyncs: list[tuple[str, list[str]]] | None  # what the recorder got (None: the real background queue)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def admin(self, method: str, path: str, *, token: str | None = ADMIN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)

    def deliver(self, lead_id: int, email: str) -> httpx.Response:
        return self.client.post(LEAD_PATH, json={"id": lead_id, "email": email},
                                headers={"Authorization": f"Token {SECRET}"})

    def writes_of(self, lead_id: int) -> list[dict[str, Any]]:
        return [w for w in self.box["marketo"].applied_writes if w["id"] == lead_id]


@pytest.fixture
def serve(make_sandbox, make_settings) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(ledger: str, *, admin_token: str | None = ADMIN, record: bool = False) -> Served:
        box = make_sandbox(vendors=["marketo", "sixsense"])
        settings = make_settings(box, ledger, webhook={"secrets": [SECRET], "mode": "writeback",
                                                       "admin_token": admin_token})
        services = open_services(settings, auto_migrate=True)
        resyncs: list[tuple[str, list[str]]] | None = [] if record else None
        app = create_app(settings, services, submit=lambda _: None,
                         resync=(lambda source, ids: resyncs.append((source, ids))) if record else None)
        server = EmulatorServer(app).start()
        served = Served(box, settings, services.ledger, httpx.Client(base_url=server.base_url, timeout=30), resyncs)
        served.closers += [served.client.close, app.state.webhook.close, server.stop]
        if app.state.admin is not None:
            served.closers.append(app.state.admin.close)
        started.append(served)
        return served

    yield start
    for served in started:
        for close in served.closers:
            close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_without_an_admin_token_there_is_no_admin_api(serve, tmp_path):
    served = serve(f"sqlite:///{tmp_path / 'l.db'}", admin_token=None)
    assert served.admin("GET", "/admin/runs").status_code == 404
    assert not [p for p in served.client.get("/openapi.json").json()["paths"] if p.startswith("/admin")]


def test_only_the_admin_token_opens_the_admin_api_and_it_is_checked_first(serve, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    served = serve(f"sqlite:///{tmp_path / 'l.db'}", record=True)
    malformed = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    cases = [
        ("no header", "GET", "/admin/runs", None, {}, 401),
        ("empty header", "GET", "/admin/states", None, {"headers": {"Authorization": ""}}, 401),
        ("wrong token", "GET", "/admin/runs", "wrong-token-0000000000000000", {}, 403),
        ("the token with a suffix", "GET", "/admin/runs", f"{ADMIN}x", {}, 403),
        ("the webhook's secret", "GET", "/admin/runs", SECRET, {}, 403),
        ("another scheme", "GET", "/admin/runs", None, {"headers": {"Authorization": f"Token {ADMIN}"}}, 403),
        ("token in the URL", "GET", "/admin/runs", None, {"params": {"token": ADMIN}}, 401),
        ("a lead, no header", "GET", "/admin/leads/marketo/5001", None, {}, 401),
        ("malformed body, no header", "POST", "/admin/resync", None, malformed, 401),
        ("malformed body, wrong token", "POST", "/admin/resync", "wrong-token-0000000000000000", malformed, 403),
        ("a re-sync, wrong token", "POST", "/admin/resync", "wrong-token-0000000000000000",
         {"json": {"states": ["failed"]}}, 403),
        ("malformed body, the token", "POST", "/admin/resync", ADMIN, malformed, 422),
    ]
    replies = []
    for name, method, path, token, kwargs, status in cases:
        reply = served.admin(method, path, token=token, **kwargs)
        assert reply.status_code == status, f"{name}: {reply.status_code} {reply.text}"
        if status == 401:
            assert reply.headers["WWW-Authenticate"] == "Bearer", name
        if status in (401, 403):
            assert set(reply.json()) == {"detail"}, name
        replies.append(reply)
    # The admin token is not the webhook's secret either.
    assert served.client.post(LEAD_PATH, json={"id": 1, "email": "a@b.example"},
                              headers={"Authorization": f"Token {ADMIN}"}).status_code == 403
    assert served.resyncs == [] and served.ledger.runs() == []
    for reply in [*replies, served.client.get("/openapi.json")]:
        assert ADMIN not in reply.text + json.dumps(dict(reply.headers))
    # The server's log records (the test's own httpx client logs the URL it was asked to call).
    served_logs = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert served_logs and ADMIN not in "".join(f"{r.getMessage()} {r.__dict__}" for r in served_logs)
    assert "hmac.compare_digest" in inspect.getsource(admin_api.check_bearer)


def test_explain_resync_runs_and_states_over_http(serve, ledger_url, write_config, tmp_path):
    served = serve(ledger_url)
    box = served.box
    lead_id = box["marketo"].add_lead(email="pat@globex.example", firstName="Pat", lastName="Lee", company="Globex")
    assert served.deliver(lead_id, "pat@globex.example").json()["@reason"] == "written"
    [night_write] = served.writes_of(lead_id)

    # The lead's story: the same decisions `connector explain` prints.
    story = served.admin("GET", f"/admin/leads/marketo/{lead_id}").json()
    assert (story["source"], story["record_id"], story["state"], story["reason"]) == \
        ("marketo", str(lead_id), "done", "written")
    assert story["history"] and {e["via"] for e in story["history"]} == {"webhook"}
    writes = {f["field"]: f for f in story["fields"] if f["decision"] == "write"}
    assert set(writes) == set(night_write["fields"])
    assert all(f["write_state"] == "confirmed" for f in writes.values())
    assert writes["sixsenseCompanyName"]["new_value"] == GLOBEX["name"]
    config = write_config(box, ledger_url)
    explained = connector("explain", str(lead_id), "--config", str(config), cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    for decision in story["fields"]:
        assert any(decision["field"] in line and f" {decision['decision']} " in line and decision["reason"] in line
                   for line in lines), f"`connector explain` lacks {decision}"
    assert served.admin("GET", "/admin/leads/marketo/999999").status_code == 404
    assert served.admin("GET", f"/admin/leads/zoho/{lead_id}").status_code == 422

    # A person empties a field we wrote: a re-sync by email fills it again, once, in the background.
    box["marketo"].human_edit(lead_id, "sixsenseCompanyName", None)
    reply = served.admin("POST", "/admin/resync", json={"leads": ["Pat@Globex.example"]})
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"leads": 1, "by_source": {"marketo": 1}, "unknown": [], "queued": True}
    wait_for(lambda: len(served.writes_of(lead_id)) == 2)
    resynced = wait_for(lambda: [e for e in served.admin("GET", f"/admin/leads/marketo/{lead_id}").json()["history"]
                                 if e["via"] == "resync" and e["state"] == "done"])
    assert resynced[-1]["reason"] == "written"
    assert served.writes_of(lead_id)[-1]["fields"] == {"sixsenseCompanyName": GLOBEX["name"]}
    assert len(box["sixsense"].log.entries(path_prefix="/v2/people/full")) == 1  # the answer came from the ledger

    # Selections that take nothing, a dry run and bad requests: 200 or 422, nothing re-synced.
    runs_before = len(served.ledger.runs(limit=100))
    for body, expected in [
        ({"states": ["failed", "deferred"]}, {"leads": 0, "by_source": {}, "unknown": [], "queued": False}),
        ({"leads": ["nobody@nowhere.example"]},
         {"leads": 0, "by_source": {}, "unknown": ["nobody@nowhere.example"], "queued": False}),
        ({"leads": [str(lead_id)], "dry_run": True},
         {"leads": 1, "by_source": {"marketo": 1}, "unknown": [], "queued": False}),
    ]:
        reply = served.admin("POST", "/admin/resync", json=body)
        assert (reply.status_code, reply.json()) == (200, expected), body
    for body in [{}, {"leads": []}, {"leads": [" "]}, {"source": "zoho", "leads": ["1"]}, {"states": ["done"]},
                 {"created_from": "yesterday"}, {"leads": ["1"], "extra": True}]:
        assert served.admin("POST", "/admin/resync", json=body).status_code == 422, body
    time.sleep(0.3)
    assert len(served.ledger.runs(limit=100)) == runs_before and len(served.writes_of(lead_id)) == 2

    runs = served.admin("GET", "/admin/runs", params={"limit": 50}).json()
    assert runs[0]["kind"] == "resync" and runs[0]["report"]["states"] == {"done(written)": 1}
    assert {r["kind"] for r in runs} == {"webhook", "resync"}
    assert served.admin("GET", "/admin/runs", params={"limit": 0}).status_code == 422
    assert served.admin("GET", "/admin/states").json() == [
        {"source": "marketo", "state": "done", "reason": "written", "leads": 1}]
    assert served.admin("GET", "/admin/states", params={"source": "salesforce"}).json() == []
