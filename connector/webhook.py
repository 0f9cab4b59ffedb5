"""The real-time webhook: Marketo's "Person is Created" call, one lead per call.

    POST /webhook/marketo/lead      the lead's tokens, JSON or form-encoded (Marketo REST names)
    GET  /healthz                   liveness
    GET  /openapi.json              the schema, accurate for every status code below
    /admin/...                      the admin API (connector.admin_api), when webhook.admin_token is set

Every call is checked before anything else happens, in this order, and a refused call never
enqueues work, never spends a credit and never echoes a secret:

    401  no `Authorization` header (or a missing/tampered/stale signature, when signing is on)
    403  `Authorization` present but not `Token <one of webhook.secrets>` (hmac.compare_digest)
    413  body over webhook.max_body_bytes (Content-Length checked first; a streamed body is read
         only up to the cap)
    422  not a lead: body not a JSON object / form, `id` not a positive integer, `email` missing or
         malformed, a known field that is not a scalar; the reply names the field

Modes (webhook.mode, one per deployment):

* respond: the lead is built from the payload (CrmLead(id, now, the payload's known fields)) and
  processed with run_once's mode="respond": the overwrite policy is judged on the values the
  payload carries (a field the payload shows holding a person's value is kept), the decisions
  are recorded, nothing is written to Marketo. Done within webhook.budget_seconds: 200 with a
  FLAT JSON object of exactly the mapped fields that pass, for Marketo's response mappings.
* writeback: mode="write" for record_ids=[id]: the lead is read from Marketo and written through
  the Marketo source; done within the budget: 200 with an acknowledgement.

Leads are processed by `webhook.workers` threads, each taking every lead waiting (up to 50) as one
chunk (`Batcher`), on a Runtime built once (`LeadRunner`; run_once builds one per call).

Not done within the budget: 202, and once the in-process attempt has stopped (it starts no
vendor call after the budget) the lead is handed to `submit(record_id)`, which finishes it as
a queued task writing through the Marketo source (the answer already bought is reused from the
ledger's cache, so the lead is enriched once).

Acknowledgements carry no mappable key. Marketo maps any 2xx, and a response attribute may only
hold letters, digits, `-`, `_`, `:` and spaces, so every acknowledgement key starts with `@`:
`{"@status": "queued", "@lead": "5001"}`. The body is never empty (Marketo logs an empty body as
webhook error 1001).

Duplicates (replay protection on (lead id, "created"), since Marketo signs nothing):
1. a delivery of a lead this process is working on answers 200 `{"@status": "duplicate"}` at once;
2. a lead the ledger already knows (a night, a queued task or an earlier delivery got it) too;
3. the first delivery of a lead creates the run `marketo:webhook-lead:<id>` in the ledger (the
   run key is unique: the same arbiter as the nightly kick-off; it is finished with the
   delivery's outcome), so of concurrent deliveries to several processes exactly one goes on;
   the others answer `duplicate`;
4. the ledger's lead claim still arbitrates against the night (a lead another caller holds is
   not claimed twice).

Deployments: `serve(settings)` runs uvicorn with an in-process queue (`InProcessQueue`: a thread
pool running mode="write"). Celery deployments pass `submit=celery_submit()`, which enqueues the
task `connector.webhook_lead(source, record_id)` on the realtime queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from connector.admin_api import AdminApi, ResyncSubmit
from connector.errors import ConfigError, ConnectorError, MappingError
from connector.ledger.store import IN_FLIGHT
from connector.ledger.tables import SyncRun
from connector.mapping import Mapping, load_mapping
from connector.models import CrmLead
from connector.pipeline import Runtime, SourceRun, Window, build_runtime, valid_email
from connector.redaction import install_log_redaction, redact, register_secrets
from connector.services import Services, open_services
from connector.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "marketo"
LEAD_PATH = "/webhook/marketo/lead"
SIGNATURE_HEADER = "X-Connector-Signature"
MAX_ID = 10**16 - 1
_FORM_ID = re.compile(r"[1-9][0-9]{0,15}")
MAX_EMAIL = 320
SCHEMA_TTL_SECONDS = 600.0  # the shared runtime (Marketo schema and token) is rebuilt this often
ACK_STATUSES = ("queued", "done", "skipped", "failed", "duplicate")
MISCONFIGURED = {"error": "misconfigured", "detail": "the connector cannot process leads: see its log", "field": None}
UNAVAILABLE = {"error": "unavailable", "detail": "the lead could not be taken now (its log says why); "
               "the nightly run picks it up", "field": None}
Submit = Callable[[str], None]


# ---- acknowledgements and errors ------------------------------------------------------------


def ack(status: str, record_id: str, reason: str = "") -> dict[str, str]:
    """A 2xx body no Marketo response mapping can reach (every key starts with '@')."""
    body = {"@status": status, "@lead": record_id}
    if reason:
        body["@reason"] = reason
    return body


class Refused(Exception):
    """A call refused before any work: its status, error code, message and the field named."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.field = status, error, detail, field

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Token"} if self.status == 401 else None
        return JSONResponse({"error": self.error, "detail": self.detail, "field": self.field},
                            status_code=self.status, headers=headers)


# ---- the payload ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadPayload:
    record_id: str
    values: dict[str, Any]  # known Marketo fields only (identity and mapped targets)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Refused(422, "invalid_body", f"the key '{key[:60]}' appears twice", "body")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise Refused(422, "invalid_body", f"{name} is not a JSON number", "body")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_lead(body: bytes, content_type: str | None, known_fields: frozenset[str]) -> LeadPayload:
    """The lead in a JSON or form-encoded body; raises Refused(422) naming the field."""
    form = _media_type(content_type) == "application/x-www-form-urlencoded"
    if form:
        try:
            text = body.decode("utf-8")
            document: Any = _no_duplicates(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                                                     errors="strict"))
        except (UnicodeDecodeError, ValueError):
            raise Refused(422, "invalid_body", "the body is not a UTF-8 form (application/x-www-form-urlencoded)",
                          "body") from None
    else:
        try:
            document = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refused(422, "invalid_body", "the body is neither JSON nor a form (set Content-Type to "
                          "application/json or application/x-www-form-urlencoded)", "body") from None
    if not isinstance(document, dict):
        raise Refused(422, "invalid_body", "the body must be one object of lead fields", "body")

    raw_id = document.get("id")
    if raw_id is None:
        raise Refused(422, "missing_field", "'id' (the Marketo lead id) is required", "id")
    record_id = _lead_id(raw_id, form=form)
    raw_email = document.get("email")
    if raw_email is None or (isinstance(raw_email, str) and not raw_email.strip()):
        raise Refused(422, "missing_field", "'email' is required", "email")
    if not isinstance(raw_email, str):
        raise Refused(422, "invalid_field", "'email' must be a string", "email")
    if len(raw_email) > MAX_EMAIL or valid_email(raw_email) is None:
        raise Refused(422, "invalid_field", "'email' is not a valid address", "email")

    values: dict[str, Any] = {}
    for name in known_fields:
        if name not in document:
            continue
        value = document[name]
        if form:
            value = value if value != "" else None
        elif isinstance(value, (dict, list)):
            raise Refused(422, "invalid_field", f"'{name}' must be a string, number, boolean or null", name)
        values[name] = value
    values["email"] = raw_email
    return LeadPayload(record_id, values)


def _lead_id(raw: Any, *, form: bool) -> str:
    """JSON: an integer (Marketo's {{lead.Id}} token is unquoted); a form: its digits."""
    number: int | None = None
    if form:
        if isinstance(raw, str) and _FORM_ID.fullmatch(raw):
            number = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, float) and raw.is_integer():  # 5001.0 is an integer to JSON Schema too
        number = int(raw)
    if number is None or not 1 <= number <= MAX_ID:
        raise Refused(422, "invalid_field", "'id' must be the Marketo lead id, a positive integer", "id")
    return str(number)


# ---- authentication -------------------------------------------------------------------------


def check_token(header: str | None, secrets: list[bytes]) -> None:
    """`Authorization: Token <secret>`: missing -> 401, anything else but a configured secret -> 403."""
    if header is None or not header.strip():
        raise Refused(401, "unauthorized", "send the shared secret as 'Authorization: Token <secret>'")
    scheme, _, given = header.strip().partition(" ")
    presented = given.strip().encode("latin-1", "replace")
    matched = False
    for secret in secrets:  # every secret is compared, so the time taken does not tell which matched
        matched |= hmac.compare_digest(presented, secret)
    if scheme.lower() != "token" or not matched:
        raise Refused(403, "forbidden", "the Authorization header does not carry a valid secret")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Connector-Signature value a sender computes (also used by the tests)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def check_signature(header: str | None, body: bytes, secret: bytes, tolerance: float, now: float | None = None) -> None:
    """Stripe-style: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>; 401 otherwise."""
    if not header:
        raise Refused(401, "unauthorized", f"the {SIGNATURE_HEADER} header is required")
    stamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            stamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().encode("latin-1", "replace"))
    if stamp is None or not candidates:
        raise Refused(401, "unauthorized", f"the {SIGNATURE_HEADER} header is malformed")
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        raise Refused(401, "unauthorized", "the signature's timestamp is outside the tolerance")
    expected = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest().encode()
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        raise Refused(401, "unauthorized", "the signature does not match the body")


async def read_body(request: Request, cap: int) -> bytes:
    """The raw body, refused with 413 past `cap` bytes: by Content-Length, else while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise Refused(413, "too_large", f"the body is over {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise Refused(413, "too_large", f"the body is over {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ---- running one lead -----------------------------------------------------------------------


class LeadRunner:
    """`run_once` for the webhook's leads, on a Runtime shared by every call.

    run_once builds a Runtime per call: the mapping's YAML parsed twice, two TLS contexts, a
    Marketo token and a leads/describe call (one call of Marketo's daily quota per lead). That is
    ~130 ms of CPU per call, which 20 concurrent senders queue behind. This does what run_once
    does (a run of its own, the same SourceRun and ledger calls) on a Runtime built once and
    rebuilt after `schema_ttl` seconds (default 10 minutes, divided by time_scale like every other
    wait), so a field added in Marketo is seen. To be replaced by `run_once(..., runtime=...)` once
    the pipeline takes one."""

    def __init__(self, settings: Settings, services: Services, *, schema_ttl: float | None = None) -> None:
        self.settings, self.services = settings, services
        self.schema_ttl = schema_ttl if schema_ttl is not None else SCHEMA_TTL_SECONDS / settings.time_scale
        self._lock = threading.Lock()
        self._current: _Slot | None = None
        self._closed = False

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        with self._lock:
            if self._closed:
                raise ConfigError("the webhook is shutting down")
            slot = self._current
            if slot is None or time.monotonic() - slot.built > self.schema_ttl:
                fresh = _Slot(build_runtime(self.settings, self.services.ledger, self.services.limiter, SOURCE,
                                            context=self.services.context(realtime=True)))
                if slot is not None:
                    slot.retire()
                self._current = slot = fresh
            slot.users += 1
        try:
            yield slot.rt
        finally:
            with self._lock:
                slot.users -= 1
                slot.close_if_idle()

    def run(self, *, mode: str, leads: Sequence[CrmLead] | None = None, record_ids: Sequence[str] | None = None,
            budget_seconds: float | None = None, run: tuple[SyncRun, Window] | None = None,
            report: dict[str, Any] | None = None, later: list[Callable[[], None]] | None = None) -> SourceRun:
        """As run_once(settings, ledger, limiter, "marketo", via="webhook", ...), in `run` (a run
        already started, with its window) or a run of its own. With `later`, finishing the run
        (its report) is appended there instead of done here, to run after the replies."""
        settings, ledger = self.settings, self.services.ledger
        if run is None:
            now = datetime.now(timezone.utc)
            seconds = budget_seconds if budget_seconds is not None else settings.window.length_minutes * 60
            window = Window("webhook", now, now + timedelta(seconds=seconds), f"webhook:{uuid.uuid4().hex[:12]}")
            started = ledger.start_run(run_key=f"{SOURCE}:{window.key}", source=SOURCE, kind="webhook",
                                       window_start=window.start, window_end=window.end)
            assert started is not None
            run = (started, window)
        sync_run, window = run
        assert sync_run.id is not None
        try:
            with self.runtime() as rt:
                source_run = SourceRun(rt, run=sync_run, window=window, via="webhook", mode=mode)
                with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="enrich") as pool:
                    source_run.pool = pool
                    if leads is not None:
                        source_run.process(list(leads))
                    else:
                        source_run.process_records(list(record_ids or []))
        except BaseException as exc:
            try:
                ledger.finish_run(run_id=sync_run.id, status="failed",
                                  report={**(report or {}), "error": type(exc).__name__})
            except Exception:  # noqa: BLE001  (the original error matters more)
                log.warning("webhook: could not finish run %s", sync_run.id)
            raise
        run_id = sync_run.id

        def finish() -> None:
            ledger.finish_run(run_id=run_id, status="finished", report={
                **(report or {}), "states": ledger.count_states(run_id=run_id), "credits": source_run.enricher.credits,
                "calls": source_run.enricher.calls, "fields_written": source_run.fields_written})

        if later is None:
            finish()
        else:
            later.append(finish)
        return source_run

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._current is not None:
                self._current.retire()
                self._current = None


class _Slot:
    def __init__(self, rt: Runtime) -> None:
        self.rt, self.built, self.users, self.retired = rt, time.monotonic(), 0, False

    def retire(self) -> None:
        self.retired = True
        self.close_if_idle()

    def close_if_idle(self) -> None:
        if self.retired and self.users == 0:
            self.rt.close()


# ---- the queue behind 202 -------------------------------------------------------------------


class InProcessQueue:
    """The default `submit`: finishes a lead in a background thread pool with run_once(mode="write")
    semantics, reading it from Marketo and writing through the Marketo source. A lead already
    queued here is not queued twice."""

    def __init__(self, settings: Settings, services: Services, *, workers: int | None = None,
                 runner: LeadRunner | None = None) -> None:
        self.settings, self.services = settings, services
        self.runner = runner or LeadRunner(settings, services)
        self._own_runner = runner is None
        self.pool = ThreadPoolExecutor(max_workers=workers or max(2, settings.webhook.workers // 2),
                                       thread_name_prefix="webhook-queue")
        self._lock = threading.Lock()
        self._queued: set[str] = set()

    def __call__(self, record_id: str) -> None:
        with self._lock:
            if record_id in self._queued:
                return
            self._queued.add(record_id)
        self.pool.submit(self._run, record_id)

    def _run(self, record_id: str) -> None:
        try:
            self.runner.run(mode="write", record_ids=[record_id], report={"record_id": record_id, "queued": True})
        except Exception as exc:  # noqa: BLE001  (the ledger keeps the lead; the night retries it)
            log.error("webhook: the queued lead %s failed: %s", record_id, redact(str(exc)))
        finally:
            with self._lock:
                self._queued.discard(record_id)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self._own_runner:
            self.runner.close()


def celery_submit(task_name: str = "connector.webhook_lead", queue: str = "realtime") -> Submit:
    """The hook for Celery deployments: `create_app(settings, services, submit=celery_submit())`.
    Enqueues `task_name(source, record_id)`; the worker runs run_once(mode="write") for the lead."""
    from tasks.app import app as celery_app  # only Celery deployments import it

    def submit(record_id: str) -> None:
        celery_app.send_task(task_name, args=[SOURCE, record_id], queue=queue)

    return submit


# ---- batches ------------------------------------------------------------------------------

MAX_BATCH = 50


@dataclass
class _Delivery:
    lead: LeadPayload
    run: SyncRun  # the delivery's own run, marketo:webhook-lead:<id> (the replay guard)
    window: Window  # arrival + budget
    future: Future[Outcome] = field(default_factory=Future)


class Batcher:
    """`loops` threads; each takes every delivery waiting (up to MAX_BATCH) and processes them as
    one chunk: the pipeline moves a chunk phase by phase with one ledger transaction per phase,
    so concurrent calls share the ledger's work instead of queueing behind it. An idle webhook
    sends a lone lead through at once (no lingering)."""

    def __init__(self, process: Callable[[list[_Delivery]], tuple[list[Outcome], Callable[[], None]]],
                 *, loops: int) -> None:
        self.process = process
        self._ready = threading.Condition()
        self._waiting: deque[_Delivery] = deque()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"webhook-batch-{i}", daemon=True)
                         for i in range(loops)]
        for thread in self._threads:
            thread.start()

    def submit(self, delivery: _Delivery) -> Future[Outcome]:
        with self._ready:
            if self._closed:
                raise RuntimeError("the webhook is shutting down")
            self._waiting.append(delivery)
            self._ready.notify()
        return delivery.future

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                batch = [self._waiting.popleft() for _ in range(min(MAX_BATCH, len(self._waiting)))]
            batch = [d for d in batch if d.future.set_running_or_notify_cancel()]
            try:
                outcomes, finish = self.process(batch)
            except BaseException as exc:  # noqa: BLE001  (every caller of the batch gets the error)
                for delivery in batch:
                    delivery.future.set_exception(exc)
                continue
            for delivery, outcome in zip(batch, outcomes, strict=True):
                delivery.future.set_result(outcome)
            try:
                finish()  # after the replies: bookkeeping off the callers' path
            except Exception:
                log.warning("webhook: could not record a batch's deliveries", exc_info=True)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)


# ---- the service ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one in-process attempt ended with."""

    fields: dict[str, Any] | None = None  # respond mode: the values that pass
    state: str = ""
    reason: str = ""
    follow_up: bool = False  # not settled: the queue must finish it


class Webhook:
    """The endpoint's work: checks, replay guard, the batcher, the budget and the 202 path."""

    def __init__(self, settings: Settings, services: Services, submit: Submit | None) -> None:
        hook = settings.webhook
        if not hook.secrets:
            raise ConfigError("webhook.secrets is empty: the webhook would accept anyone",
                              fix="set CONNECTOR_WEBHOOK__SECRETS='[\"<random, 16+ characters>\"]' and the same "
                                  "value in Marketo's custom header 'Authorization: Token <secret>'")
        marketo = settings.sources.marketo
        if marketo.client_id is None or marketo.client_secret is None:
            raise ConfigError("sources.marketo: client_id and client_secret are needed by the webhook",
                              fix="set CONNECTOR_SOURCES__MARKETO__CLIENT_ID / __CLIENT_SECRET")
        self.settings, self.services, self.hook = settings, services, hook
        self.secrets = [s.get_secret_value().encode() for s in hook.secrets]
        self.signing_secret = hook.signing_secret.get_secret_value().encode() if hook.signing_secret else None
        register_secrets([s.get_secret_value() for s in hook.secrets]
                         + ([hook.signing_secret.get_secret_value()] if hook.signing_secret else []))
        self.mapping: Mapping = load_mapping(settings.resolved_mappings_dir / marketo.mapping)
        if self.mapping.source != SOURCE:
            raise MappingError(f"{self.mapping.file}: 'source: {self.mapping.source}', the webhook needs a marketo mapping")
        self.known_fields = frozenset(self.mapping.crm_fields_to_read) - {"id"}
        self.runner = LeadRunner(settings, services)
        self.own_queue = InProcessQueue(settings, services, runner=self.runner) if submit is None else None
        self.submit: Submit = submit if submit is not None else self.own_queue  # type: ignore[assignment]
        self.batcher = Batcher(self._attempt_many, loops=hook.workers)
        self._lock = threading.Lock()
        self._active: set[str] = set()

    def close(self) -> None:
        self.batcher.close()
        if self.own_queue is not None:
            self.own_queue.close()
        self.runner.close()

    # ---- the call -----------------------------------------------------------------------------

    async def receive(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            check_token(request.headers.get("authorization"), self.secrets)
            body = await read_body(request, self.hook.max_body_bytes)
            if self.signing_secret is not None:
                check_signature(request.headers.get(SIGNATURE_HEADER), body, self.signing_secret,
                                self.hook.signature_tolerance_seconds)
            lead = parse_lead(body, request.headers.get("content-type"), self.known_fields)
        except Refused as refused:
            log.warning("webhook: refused a call from %s: %d %s (%s)", request.client.host if request.client else "?",
                        refused.status, refused.error, refused.field or "-")
            return refused.response()
        status, reply = await self.handle(lead)
        log.info("webhook: lead %s answered %d %s in %.0f ms", lead.record_id, status,
                 reply.get("@status", f"{len(reply)} field(s)"), (time.monotonic() - started) * 1000)
        return JSONResponse(reply, status_code=status)

    async def handle(self, lead: LeadPayload) -> tuple[int, dict[str, Any]]:
        rid = lead.record_id
        with self._lock:
            if rid in self._active:
                return 200, ack("duplicate", rid, "in_progress")
            self._active.add(rid)
        try:
            delivery = await run_in_threadpool(self._first_delivery, rid)
            if delivery is None:
                self._release(rid)
                return 200, ack("duplicate", rid, "already_received")
            future = self.batcher.submit(_Delivery(lead, *delivery))
        except Exception:
            self._release(rid)
            log.exception("webhook: lead %s could not be taken", rid)
            return 503, UNAVAILABLE
        future.add_done_callback(lambda _: self._release(rid))
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no asyncio warning
        await asyncio.wait({waiter}, timeout=self.hook.budget_seconds)
        if not future.done():
            future.add_done_callback(lambda f: self._after_late(rid, f))
            return 202, ack("queued", rid, "over_budget")
        try:
            outcome = future.result()
        except (ConfigError, MappingError) as exc:
            log.error("webhook: lead %s: %s", rid, redact(str(exc)))
            return 503, MISCONFIGURED
        except ConnectorError as exc:  # e.g. Marketo unreachable while reading its schema
            log.warning("webhook: lead %s: %s; queued", rid, redact(exc.message))
            return await self._queued(rid, exc.reason)
        except Exception:
            log.exception("webhook: lead %s failed", rid)
            return 503, UNAVAILABLE
        if outcome.fields:
            return 200, dict(outcome.fields)
        if outcome.follow_up:
            return await self._queued(rid, outcome.reason)
        if outcome.state in IN_FLIGHT:
            return 200, ack("duplicate", rid, "in_progress")
        return 200, ack(outcome.state or "done", rid, outcome.reason)

    async def _queued(self, rid: str, reason: str) -> tuple[int, dict[str, Any]]:
        try:
            await run_in_threadpool(self.submit, rid)
        except Exception as exc:  # noqa: BLE001  (the night polls the lead; nothing was written)
            log.error("webhook: could not queue lead %s: %s", rid, redact(str(exc)))
            return 503, UNAVAILABLE
        return 202, ack("queued", rid, reason)

    def _release(self, rid: str) -> None:
        with self._lock:
            self._active.discard(rid)

    # ---- worker-thread parts ------------------------------------------------------------------

    def _first_delivery(self, rid: str) -> tuple[SyncRun, Window] | None:
        """The delivery's run (`marketo:webhook-lead:<id>`, unique) when this is the lead's first
        delivery, else None. The lead is processed in this run; its window is the budget."""
        if self.services.ledger.lead_ids(source=SOURCE, record_ids=[rid]):
            return None  # a night, a queued task or an earlier delivery has it
        now = datetime.now(timezone.utc)
        window = Window("webhook", now, now + timedelta(seconds=self.hook.budget_seconds), f"webhook-lead:{rid}")
        run = self.services.ledger.start_run(run_key=f"{SOURCE}:{window.key}", source=SOURCE, kind="webhook",
                                             window_start=window.start, window_end=window.end)
        return None if run is None else (run, window)

    def _lead_state(self, rid: str) -> tuple[str, str, bool]:
        for lead in self.services.ledger.find_leads(key=rid):
            if lead.source == SOURCE and lead.record_id == rid:
                return lead.state, lead.reason, lead.retryable
        return "", "", False

    def _attempt_many(self, batch: list[_Delivery]) -> tuple[list[Outcome], Callable[[], None]]:
        """Process a batch of first deliveries in one run; each lead's outcome, and the recording
        of each delivery (its run finished with the outcome) to do once the replies are out."""
        ledger = self.services.ledger
        now = datetime.now(timezone.utc)
        end = min(d.window.end for d in batch)  # the earliest caller's budget
        window = Window("webhook", now, max(end, now), f"webhook:{uuid.uuid4().hex[:12]}")
        started = ledger.start_run(run_key=f"{SOURCE}:{window.key}", source=SOURCE, kind="webhook",
                                   window_start=window.start, window_end=window.end)
        assert started is not None
        ids = [d.lead.record_id for d in batch]
        report = {"record_ids": ids, "mode": self.hook.mode}
        later: list[Callable[[], None]] = []
        try:
            if self.hook.mode == "respond":
                leads = [CrmLead(d.lead.record_id, now, dict(d.lead.values)) for d in batch]
                run = self.runner.run(mode="respond", leads=leads, run=(started, window), report=report, later=later)
            else:
                run = self.runner.run(mode="write", record_ids=ids, run=(started, window), report=report, later=later)
        except BaseException as exc:
            self._finish_deliveries(batch, {d.lead.record_id: f"error: {type(exc).__name__}" for d in batch},
                                    started.id)
            raise
        outcomes: list[Outcome] = []
        for delivery in batch:
            rid = delivery.lead.record_id
            fields = run.responses.get(rid)
            if fields:
                outcomes.append(Outcome(fields=fields, state="done", reason="responded"))
                continue
            state, reason, retryable = self._lead_state(rid)
            # Not settled here (deferred, a retryable failure, unknown to the ledger): the queue finishes it.
            follow_up = state in ("", "deferred") or (state == "failed" and retryable)
            outcomes.append(Outcome(state=state, reason=reason, follow_up=follow_up))
        labels = {d.lead.record_id: f"{o.state}({o.reason})" if o.state else "not_found"
                  for d, o in zip(batch, outcomes, strict=True)}

        def finish() -> None:
            for step in later:
                step()
            self._finish_deliveries(batch, labels, started.id)

        return outcomes, finish

    def _finish_deliveries(self, batch: list[_Delivery], outcomes: dict[str, str], run_id: int | None) -> None:
        for delivery in batch:
            assert delivery.run.id is not None
            self.services.ledger.finish_run(run_id=delivery.run.id, status="finished", report={
                "record_id": delivery.lead.record_id, "run_id": run_id, "outcome": outcomes[delivery.lead.record_id]})

    def _after_late(self, rid: str, future: Future[Outcome]) -> None:
        """The attempt ended after a 202 went out: hand the lead to the queue unless it is settled
        (values decided for the reply that never carried them must still be written)."""
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001
            log.warning("webhook: lead %s: the late attempt failed (%s); queued", rid, redact(str(exc)))
            outcome = Outcome(follow_up=True)
        if outcome.fields or outcome.follow_up:
            try:
                self.submit(rid)
            except Exception as exc:  # noqa: BLE001  (the night polls the lead anyway)
                log.error("webhook: could not queue lead %s: %s", rid, redact(str(exc)))


# ---- the app --------------------------------------------------------------------------------


def create_app(settings: Settings, services: Services, submit: Submit | None = None, *,
               resync: ResyncSubmit | None = None) -> FastAPI:
    """The webhook app. `submit(record_id)` finishes a lead after a 202 (default: an in-process
    thread pool; Celery deployments pass `celery_submit()`). `app.state.webhook.close()` stops
    the pools (the lifespan does it under uvicorn). With webhook.admin_token set it also serves the
    admin API (connector.admin_api; `resync(source, record_ids)` runs its re-syncs, default: a
    background thread; `app.state.admin.close()` waits for them)."""
    webhook = Webhook(settings, services, submit)
    admin = AdminApi(settings, services, resync) if settings.webhook.admin_token is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        yield
        webhook.close()
        if admin is not None:
            admin.close()

    app = FastAPI(title="CRM enrichment connector: webhook", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.webhook = webhook
    app.state.admin = admin
    if admin is not None:
        app.include_router(admin.router)

    @app.post(LEAD_PATH, operation_id="marketoLeadCreated", summary="Marketo 'Person is Created' webhook")
    async def marketo_lead(request: Request) -> Response:
        return await webhook.receive(request)

    @app.get("/healthz", operation_id="healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "mode": settings.webhook.mode}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=(__doc__ or "").split("\n\n", 1)[0])
            _describe(schema, webhook)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_SCALAR = {"type": ["string", "number", "boolean", "null"]}


def _describe(schema: dict[str, Any], webhook: Webhook) -> None:
    """Declare the body, the security and every status code the webhook answers."""
    known = sorted(webhook.known_fields - {"email"})
    targets = sorted(webhook.mapping.fields)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update({
        "MarketoLead": {
            "type": "object", "required": ["id", "email"], "additionalProperties": True,
            "description": "The lead's tokens, keyed by Marketo REST field names; other keys are ignored.",
            "properties": {
                "id": {"type": "integer", "minimum": 1, "maximum": MAX_ID, "description": "The Marketo lead id."},
                "email": {"type": "string", "format": "email", "maxLength": MAX_EMAIL},
                **{name: _SCALAR for name in known},
            },
        },
        "MarketoLeadForm": {
            "type": "object", "required": ["id", "email"], "additionalProperties": {"type": "string"},
            "properties": {
                "id": {"type": "string", "pattern": f"^{_FORM_ID.pattern}$"},
                "email": {"type": "string", "format": "email", "maxLength": MAX_EMAIL},
                **{name: {"type": "string"} for name in known},
            },
        },
        "MappedFields": {
            "type": "object", "minProperties": 1, "additionalProperties": False,
            "description": "Respond mode: the mapped fields whose values pass the overwrite policy, flat.",
            "properties": {name: {"type": ["string", "number", "boolean"]} for name in targets},
        },
        "Acknowledgement": {
            "type": "object", "required": ["@status", "@lead"], "additionalProperties": False,
            "description": "No key can be named by a Marketo response mapping (they all start with '@').",
            "properties": {"@status": {"type": "string", "enum": list(ACK_STATUSES)},
                           "@lead": {"type": "string"}, "@reason": {"type": "string"}},
        },
        "Error": {
            "type": "object", "required": ["error", "detail", "field"], "additionalProperties": False,
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"},
                           "field": {"type": ["string", "null"]}},
        },
    })
    components.setdefault("securitySchemes", {})["MarketoToken"] = {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "'Token <secret>', a Marketo custom header; one of webhook.secrets."}

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def error(description: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref("Error")}}, **extra}

    ok = {"anyOf": [ref("MappedFields"), ref("Acknowledgement")]} if webhook.hook.mode == "respond" \
        else ref("Acknowledgement")
    operation = schema["paths"][LEAD_PATH]["post"]
    operation["security"] = [{"MarketoToken": []}]
    operation["parameters"] = [{
        "name": SIGNATURE_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
        "description": "t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>; required when webhook.signing_secret is set.",
    }]
    operation["requestBody"] = {"required": True, "content": {
        "application/json": {"schema": ref("MarketoLead")},
        "application/x-www-form-urlencoded": {"schema": ref("MarketoLeadForm")},
    }}
    operation["responses"] = {
        "200": {"description": "Done within the budget (respond mode: the mapped values that pass; else an "
                               "acknowledgement), or a duplicate delivery (acknowledgement, a no-op).",
                "content": {"application/json": {"schema": ok}}},
        "202": {"description": "Not done within the budget: queued, finished through the Marketo source.",
                "content": {"application/json": {"schema": ref("Acknowledgement")}}},
        "401": error("No Authorization header, or a missing, tampered or stale signature.",
                     headers={"WWW-Authenticate": {"schema": {"type": "string"}}}),
        "403": error("The Authorization header does not carry a configured secret."),
        "413": error("The body is over webhook.max_body_bytes."),
        "422": error("Not a lead: the reply's `field` names what is wrong."),
        "503": error("The connector is misconfigured or its ledger is unreachable (its log says why); "
                     "nothing was done and the nightly run picks the lead up."),
    }
    health = schema["paths"]["/healthz"]["get"]
    health["responses"] = {"200": {"description": "Alive.", "content": {"application/json": {"schema": {
        "type": "object", "required": ["status", "mode"], "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["ok"]},
                       "mode": {"type": "string", "enum": ["respond", "writeback"]}}}}}}}


def serve(settings: Settings, *, submit: Submit | None = None) -> None:
    """Run the webhook under uvicorn on webhook.host:port (blocks). The 202 path uses an
    in-process queue unless `submit` is given (Celery: `submit=celery_submit()`)."""
    import uvicorn

    register_secrets(settings.secret_values())
    install_log_redaction(settings.log_level)
    services = open_services(settings)
    app = create_app(settings, services, submit)
    # log_config=None: uvicorn's loggers propagate to the root handler, which redacts secrets.
    uvicorn.run(app, host=settings.webhook.host, port=settings.webhook.port, log_level=settings.log_level.lower(),
                log_config=None, server_header=False, proxy_headers=False)


__all__ = ["LEAD_PATH", "InProcessQueue", "ack", "celery_submit", "check_signature", "check_token", "create_app",
           "parse_lead", "serve", "sign"]
