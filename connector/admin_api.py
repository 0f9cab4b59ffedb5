"""The admin API: `connector explain`, `resync` and `ledger runs / states` over HTTP, served by the
webhook's app (connector.webhook.create_app mounts it when webhook.admin_token is set).

    GET  /admin/leads/{source}/{record_id}   a lead's story field by field, as `connector explain`
    POST /admin/resync                        re-sync leads by ids/emails, or by state (and reason)
                                              and created dates, as `connector resync`
    GET  /admin/runs?limit=                   the latest runs, as `connector ledger runs`
    GET  /admin/states?source=                leads per source, state and reason, as `ledger states`

Every call needs `Authorization: Bearer <webhook.admin_token>`, checked before anything else (a
refused call's body is not even parsed): 401 without the header, 403 with another scheme or token.
The token is compared with hmac.compare_digest and never logged or echoed.

A re-sync answers at once with what it took: 202 with the number of leads per source and the
keys the ledger does not know. The leads are then re-synced in the background, one re-sync after
another, by the CLI's own code (connector.admin.resync_now: a run of their own through the same
limiter and ledger); GET /admin/runs and each lead's story show how it went. With `dry_run` the
answer is 200 with the same counts and nothing is re-synced. Stopping the process waits for the
re-syncs already accepted.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, some of which
# (the source names) are built per app in AdminApi._router.
import hmac
import logging
import re
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    create_model,
    model_validator,
)

from connector.admin import LeadStory, lead_story, resync_now, select_for_resync
from connector.errors import ConfigError
from connector.pipeline import enabled_sources
from connector.redaction import redact
from connector.registry import SOURCES, load_all
from connector.services import Services
from connector.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "/admin"
MAX_KEYS = 1000
RECORD_ID = r"^[A-Za-z0-9_-]{1,100}$"
# (source, record ids): how POST /admin/resync hands its leads on (default: ResyncQueue).
ResyncSubmit = Callable[[str, list[str]], None]


def _iso_day(value: Any) -> Any:
    """Only the YYYY-MM-DD text the schema promises (pydantic would also take a number or a datetime)."""
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]
# A record id or an email address: printable text (PostgreSQL refuses NUL; pydantic refuses a
# lone surrogate).
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320,
                                       pattern=r"^[^\x00-\x1f\x7f]+$")]


class Problem(BaseModel):
    """Every refusal: what is wrong and how to fix it."""

    detail: str


class ResyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads: list[Key] = Field(default=[], max_length=MAX_KEYS, description="Record ids or email addresses.")
    source: str | None = None  # an enabled source: narrowed to their names by AdminApi
    states: list[Literal["failed", "deferred"]] = Field(default=[], max_length=2,
                                                        description="Every lead in these states.")
    reason: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,50}$",
                               description="With states or dates: only this reason, e.g. credits_exhausted.")
    created_from: Day | None = Field(default=None, description="Leads created on or after this day (UTC).")
    created_to: Day | None = Field(default=None, description="... and before this day.")
    dry_run: StrictBool = Field(default=False, description="Count the leads, re-sync nothing.")

    @model_validator(mode="after")
    def _says_which(self) -> "ResyncRequest":
        if not (self.leads or self.states or self.created_from or self.created_to):
            raise ValueError("say which leads: leads (ids or emails), states, created_from or created_to")
        return self


class ResyncCounts(BaseModel):
    leads: int = Field(description="Leads taken, in all.")
    by_source: dict[str, int]
    unknown: list[str] = Field(description="Keys the ledger does not know (give `source` to re-sync them by "
                                           "record id).")
    queued: bool = Field(description="False for a dry run, or when no lead matched.")


class RunInfo(BaseModel):
    id: int
    run_key: str
    source: str
    kind: str
    status: str
    window_start: datetime
    window_end: datetime
    started_at: datetime
    finished_at: datetime | None
    report: dict[str, Any]


class StateCount(BaseModel):
    source: str
    state: str
    reason: str
    leads: int


class ResyncQueue:
    """The default ResyncSubmit: one background thread, so re-syncs run one after another and a
    burst of requests cannot multiply the vendor calls in flight."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings, self.services = settings, services
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-resync")

    def __call__(self, source: str, record_ids: list[str]) -> None:
        self.pool.submit(self._run, source, record_ids)

    def _run(self, source: str, record_ids: list[str]) -> None:
        try:
            states = resync_now(self.settings, self.services, source, record_ids)
            log.info("admin: re-synced %d %s lead(s): %s", len(record_ids), source, states)
        except Exception as exc:  # noqa: BLE001  (the ledger keeps every lead's state; ask again)
            log.error("admin: the re-sync of %d %s lead(s) failed: %s", len(record_ids), source, redact(str(exc)))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def check_bearer(header: str | None, token: bytes) -> JSONResponse | None:
    """None when `Authorization: Bearer <token>`; else the refusal: 401 without the header, 403 otherwise."""
    if header is None or not header.strip():
        return JSONResponse({"detail": "send the admin token as 'Authorization: Bearer <token>'"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    scheme, _, given = header.strip().partition(" ")
    matched = hmac.compare_digest(given.strip().encode("latin-1", "replace"), token)
    if scheme.lower() != "bearer" or not matched:
        return JSONResponse({"detail": "the Authorization header does not carry the admin token"}, status_code=403)
    return None


def _guarded(token: bytes) -> type[APIRoute]:
    """A route class that checks the bearer token before FastAPI reads the body or parameters, so
    an unauthenticated caller learns nothing (not even that its body is malformed)."""

    class AdminRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                refused = check_bearer(request.headers.get("authorization"), token)
                if refused is not None:
                    log.warning("admin: refused %s %s: %d", request.method, request.url.path, refused.status_code)
                    return refused
                return await handler(request)

            return guarded

    return AdminRoute


def _day(value: date | None) -> datetime | None:
    return None if value is None else datetime.combine(value, time(), tzinfo=UTC)


class AdminApi:
    """The router and the queue behind it; `close()` waits for the re-syncs accepted."""

    def __init__(self, settings: Settings, services: Services, resync: ResyncSubmit | None = None) -> None:
        if settings.webhook.admin_token is None:
            raise ConfigError("webhook.admin_token is not set: the admin API would accept anyone",
                              fix="set CONNECTOR_WEBHOOK__ADMIN_TOKEN to a random value of 16+ characters")
        self.settings, self.services = settings, services
        self.queue = ResyncQueue(settings, services) if resync is None else None
        self.resync: ResyncSubmit = resync if resync is not None else self.queue  # type: ignore[assignment]
        self.router = self._router(settings.webhook.admin_token.get_secret_value().encode())

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()

    def _router(self, token: bytes) -> APIRouter:
        load_all()
        known: Any = Literal[tuple(sorted(SOURCES))]  # type: ignore[valid-type]
        names = tuple(enabled_sources(self.settings))
        enabled: Any = Literal[names] | None if names else None  # type: ignore[valid-type]
        body: Any = create_model("ResyncRequest", __base__=ResyncRequest, source=(enabled, Field(
            default=None, description="Only this CRM; a key the ledger never saw is taken as one of its record ids.")))
        ledger = self.services.ledger
        problem = {"model": Problem}
        router = APIRouter(
            prefix=PREFIX, tags=["admin"], route_class=_guarded(token),
            dependencies=[Security(HTTPBearer(auto_error=False, scheme_name="AdminToken",
                                              description="webhook.admin_token"))],
            responses={401: {**problem, "description": "No Authorization header.",
                             "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
                       403: {**problem, "description": "Another scheme, or not the admin token."}},
        )

        @router.get("/leads/{source}/{record_id}", operation_id="adminLead", response_model=LeadStory,
                    summary="A lead's story (connector explain)",
                    responses={404: {**problem, "description": "The ledger has no such lead."}})
        def lead(source: known,
                 record_id: Annotated[str, Path(pattern=RECORD_ID, description="The lead's CRM record id.")]
                 ) -> LeadStory:
            for found in ledger.find_leads(key=record_id):
                if found.source == source and found.record_id == record_id:
                    return lead_story(ledger, found)
            raise HTTPException(404, f"no {source} lead with record id {record_id} is in the ledger; it was "
                                     "not polled yet, or the id is wrong")

        @router.post("/resync", operation_id="adminResync", response_model=ResyncCounts, status_code=202,
                     summary="Re-sync leads (connector resync)",
                     responses={200: {"model": ResyncCounts, "description": "A dry run, or no lead matched: "
                                                                            "nothing queued."},
                                400: {**problem, "description": "The body is not JSON text."}})
        def resync(request: Annotated[body, Body()], response: Response) -> ResyncCounts:
            selection = select_for_resync(ledger, request.leads, source=request.source, states=tuple(request.states),
                                          reason=request.reason, created_from=_day(request.created_from),
                                          created_to=_day(request.created_to))
            queued = bool(selection.by_source) and not request.dry_run
            if queued:
                for name, ids in selection.by_source.items():
                    self.resync(name, ids)
            else:
                response.status_code = 200
            return ResyncCounts(leads=selection.count, by_source={k: len(v) for k, v in selection.by_source.items()},
                                unknown=selection.unknown, queued=queued)

        @router.get("/runs", operation_id="adminRuns", response_model=list[RunInfo],
                    summary="The latest runs (connector ledger runs)")
        def runs(limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[RunInfo]:
            return [RunInfo(id=r.id, run_key=r.run_key, source=r.source, kind=r.kind, status=r.status,
                            window_start=r.window_start, window_end=r.window_end, started_at=r.started_at,
                            finished_at=r.finished_at, report=r.report or {})
                    for r in ledger.runs(limit=limit) if r.id is not None]

        @router.get("/states", operation_id="adminStates", response_model=list[StateCount],
                    summary="Leads per source, state and reason (connector ledger states)")
        def states(source: known | None = None) -> list[StateCount]:
            return [StateCount(source=src, state=state, reason=reason, leads=count)
                    for src, state, reason, count in ledger.state_counts(source=source)]

        return router
