"""The vendor-neutral night: plan → poll → claim → enrich → map → diff → write → record.

The pipeline sees a `Source`, a `Mapping` and named `Provider`s; it never knows which vendor
is behind them. Every lead ends in a ledger state with a reason, and every field decision is
recorded, so `connector explain` can answer for each lead and field.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from email_validator import EmailNotValidError, validate_email

from connector.budgets import Budgets, read_balances, read_balances_before_night
from connector.decisions import BadValue, Decision, accepts, canonical, decide, protected_reason
from connector.enrichment import Enricher, NeedsCredits
from connector.errors import (
    ConfigError,
    ConnectorError,
    MappingError,
    QuotaExhausted,
    RateLimited,
    TransientError,
    WindowClosed,
)
from connector.heartbeat import keep_alive
from connector.ledger import Ledger, idempotency_key
from connector.ledger.store import FieldHistory, LeadHistory, StateChange
from connector.ledger.tables import FieldWrite, SyncRun
from connector.limiter import Limiter
from connector.mapping import Mapping, check_providers, load_mapping
from connector.models import CrmField, CrmLead, ProviderAnswer, RecordUpdate
from connector.providers.base import Provider
from connector.redaction import redact
from connector.registry import PROVIDER_SETTINGS, PROVIDERS, SOURCES, load_all
from connector.settings import Settings
from connector.sources.base import Source, VendorContext

log = logging.getLogger(__name__)
RETRY_DELAY = timedelta(minutes=15)


@dataclass(frozen=True)
class Window:
    kind: str  # night or manual
    start: datetime
    end: datetime
    key: str

    @property
    def deadline(self) -> float:
        return self.end.timestamp()


def current_window(settings: Settings, now: datetime | None = None, *, scheduled: bool = False) -> Window:
    """The window a run started now works in.

    Scheduled inside tonight's window: that night's run (its key makes a second start a no-op).
    By hand: a run of its own, ending with tonight's window when started inside it, else lasting
    the configured length from now."""
    now = now or datetime.now(timezone.utc)
    length = timedelta(minutes=settings.window.length_minutes)
    start = datetime.combine(now.date(), settings.window.start, tzinfo=timezone.utc)
    for candidate in (start - timedelta(days=1), start):
        if candidate <= now < candidate + length:
            if scheduled:
                return Window("night", candidate, candidate + length, f"night:{candidate:%Y-%m-%d}")
            return Window("manual", now, candidate + length, f"manual:{uuid.uuid4().hex[:12]}")
    return Window("manual", now, now + length, f"manual:{uuid.uuid4().hex[:12]}")


def planned_night(settings: Settings, window: Window) -> str:
    """The night a plan is for: `window`'s when it is tonight's, else the next one to start."""
    if window.kind == "night":
        return f"{window.start:%Y-%m-%d}"
    now = datetime.now(timezone.utc)
    start = datetime.combine(now.date(), settings.window.start, tzinfo=timezone.utc)
    return f"{start if start > now else start + timedelta(days=1):%Y-%m-%d}"


@dataclass
class Runtime:
    """Everything one source's run needs, built from settings."""

    settings: Settings
    ledger: Ledger
    source: Source
    mapping: Mapping
    providers: dict[str, Provider]
    crm_fields: dict[str, CrmField]

    def close(self) -> None:
        self.source.close()
        for provider in self.providers.values():
            provider.close()


def enabled_sources(settings: Settings) -> list[str]:
    load_all()
    return [name for name in SOURCES if getattr(getattr(settings.sources, name, None), "enabled", False)]


def batch_night(window: Window) -> str | None:
    """The night whose budget a run's paid calls count against: the date a batch run (nightly or
    `connector run`) started; None for the webhook and re-syncs (their calls count by month)."""
    return f"{window.start:%Y-%m-%d}" if window.kind in ("night", "manual") else None


def check_mapping_fields(mapping: Mapping, crm_fields: dict[str, CrmField]) -> None:
    """Every mapped and identity field must exist on the CRM object; mapped ones must be writable."""
    import yaml  # noqa: PLC0415

    from connector.mapping import _line_of  # noqa: PLC0415  (line numbers for the message)

    root = yaml.compose(mapping.file.read_text(encoding="utf-8"))
    for key, crm_name in mapping.identity.items():
        if crm_name not in crm_fields:
            line = _line_of(root, ["identity", key])
            raise MappingError(
                f"{mapping.file}, line {line}: identity '{key}' names field '{crm_name}', which {mapping.object} lacks",
                fix=f"use one of the CRM's fields, e.g. {', '.join(sorted(crm_fields)[:8])}",
            )
    for target in mapping.fields:
        line = _line_of(root, ["fields", target])
        if target not in crm_fields:
            raise MappingError(
                f"{mapping.file}, line {line}: field '{target}' does not exist on {mapping.object}",
                fix="correct the field's API name (check the CRM's object manager) or remove it",
            )
        if not crm_fields[target].updateable:
            raise MappingError(
                f"{mapping.file}, line {line}: field '{target}' is read-only in the CRM",
                fix="map into a writable field, or ask the admin to grant edit access to the integration user",
            )


def build_runtime(settings: Settings, ledger: Ledger, limiter: Limiter, source_name: str, *,
                  context: VendorContext | None = None) -> Runtime:
    """Load the mapping and vendors for one source and check the mapping against the live schema,
    all before any enrichment call is made."""
    load_all()
    context = context or VendorContext(settings, limiter)
    source_settings = getattr(settings.sources, source_name)
    mapping = load_mapping(settings.resolved_mappings_dir / source_settings.mapping)
    if mapping.source != source_name:
        raise MappingError(
            f"{mapping.file}: 'source: {mapping.source}' but it is configured for source '{source_name}'",
            fix=f"set 'source: {source_name}' in the file or point sources.{source_name}.mapping at the right file",
        )
    enabled = {n for n in PROVIDERS
               if getattr(getattr(settings.providers, PROVIDER_SETTINGS[n], None), "enabled", False)}
    check_providers(mapping, enabled)
    source = SOURCES[source_name](context)
    providers: dict[str, Provider] = {}
    try:
        first_choices = {rule.providers[0] for rule in mapping.fields.values()}
        for name in mapping.providers:
            try:
                providers[name] = PROVIDERS[name](context)
            except ConfigError as exc:
                if name in first_choices:
                    raise
                log.warning("%s is a fallback in %s and is not configured (%s); fields fall back past it",
                            name, mapping.file.name, exc.message)
        crm_fields = source.describe(deadline=None)
        check_mapping_fields(mapping, crm_fields)
    except BaseException:
        source.close()
        for provider in providers.values():
            provider.close()
        raise
    return Runtime(settings, ledger, source, mapping, providers, crm_fields)


def valid_email(raw: str) -> str | None:
    email = raw.strip()
    if not email:
        return None
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@dataclass
class LeadWork:
    """One claimed lead on its way through the pipeline."""

    lead_id: int
    crm: CrmLead
    identity: Any = None
    history: LeadHistory | None = None
    decisions: list[Decision] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    outcomes: dict[str, Any] = field(default_factory=dict)
    writes: list[FieldWrite] = field(default_factory=list)
    # A provider failed but others gave values: the lead is written, then waits for that provider.
    unfinished: StateChange | None = None

    def written(self, detail: str) -> StateChange:
        """The lead's state once its writes landed: done, or still waiting for a failed provider
        (so the next run asks it again for the fields it did not fill)."""
        if self.unfinished is None:
            return StateChange(self.lead_id, "done", "written", detail)
        u = self.unfinished
        return StateChange(self.lead_id, u.state, u.reason, f"{detail}; waiting for {u.detail}",
                           retryable=True, next_attempt_at=u.next_attempt_at)


@dataclass
class LeadPreview:
    """Dry run: what the night would do with one lead, and the credits it would need."""

    record_id: str
    email: str
    outcome: str
    detail: str
    decisions: list[Decision]
    needs_credits: dict[str, int]


@dataclass
class RunReport:
    source: str
    run_id: int
    run_key: str
    window: Window
    states: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    fields_written: int = 0
    seconds: float = 0.0
    status: str = "finished"
    polled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "states": self.states, "calls": self.calls, "credits": self.credits,
            "fields_written": self.fields_written, "seconds": round(self.seconds, 2), "polled": self.polled,
        }


Progress = Callable[[int, int], None]
Submit = Callable[[int, list[str]], None]  # hands (run id, a batch of record ids) to a worker
CHUNK = 200  # leads that move through the phases together: one ledger transaction per phase


class SourceRun:
    """One source's run inside one window. Leads move in chunks, phase by phase, so the ledger
    sees a few transactions per chunk rather than many per lead, and provider calls of a chunk
    run in parallel under the limiter."""

    def __init__(self, rt: Runtime, *, run: SyncRun, window: Window, via: str = "night",
                 progress: Progress | None = None, mode: str = "write", batch_size: int = CHUNK) -> None:
        """`mode`: write (the night), respond (decide and record, but the caller writes: the
        webhook's respond mode), dry_run (no paid call, no ledger or CRM write: a forecast)."""
        assert run.id is not None
        assert mode in ("write", "respond", "dry_run")
        self.mode = mode
        self.batch_size = batch_size  # record ids per submitted batch (many workers)
        self.responses: dict[str, dict[str, Any]] = {}
        self.preview: list[LeadPreview] = []
        self.forecast_calls: set[tuple[str, str]] = set()
        self.balances: dict[str, int] = {}  # dry run: the vendors' credit balances, read now
        self.rt, self.run_id, self.window, self.via = rt, run.id, window, via
        self.source_name = rt.source.name
        self.enricher = Enricher(ledger=rt.ledger, providers=rt.providers,
                                 claim_ttl=timedelta(seconds=min(rt.settings.claim_ttl_seconds, 30)),
                                 budgets=Budgets(rt.settings, night=batch_night(window),
                                                 realtime=via == "webhook").periods)
        self.progress = progress or (lambda done, total: None)
        self.done = 0
        self.total = 0
        self.fields_written = 0
        self.polled = 0
        self.stopped_by: ConnectorError | None = None

    # ---- the run ----------------------------------------------------------------------------

    def execute(self, submit: Submit | None = None) -> None:
        """Retry what is due, then poll new leads. With `submit` (many workers), each batch of
        record ids is handed to it instead of being processed here."""
        with ThreadPoolExecutor(max_workers=self.rt.settings.workers, thread_name_prefix="enrich") as pool:
            self.pool = pool
            due = self.rt.ledger.leads_due(source=self.source_name, now=datetime.now(timezone.utc))
            if due:
                self.total += len(due)
                ids = [l.record_id for l in due]
                if submit is not None:
                    for start in range(0, len(ids), self.batch_size):
                        submit(self.run_id, ids[start : start + self.batch_size])
                else:
                    self.process_records(ids)
            self._poll(submit)

    def process_records(self, record_ids: Sequence[str]) -> None:
        """Read the records' current values from the CRM and process them (a worker's batch)."""
        if not hasattr(self, "pool"):
            with ThreadPoolExecutor(max_workers=self.rt.settings.workers, thread_name_prefix="enrich") as pool:
                self.pool = pool
                self.process_records(record_ids)
                return
        current = self.rt.source.read(record_ids=list(record_ids), fields=self.rt.mapping.crm_fields_to_read,
                                      deadline=self.window.deadline)
        found = {c.record_id for c in current}
        missing = [rid for rid in record_ids if rid not in found]
        if missing:
            known = {l.record_id: l.id for rid in missing for l in self.rt.ledger.find_leads(key=rid)
                     if l.source == self.source_name}
            self._apply_states([StateChange(known[rid], "skipped", "not_found",
                                            "the record no longer exists in the CRM") for rid in missing if rid in known])
        self.process(current)

    def _poll(self, submit: Submit | None) -> None:
        settings, ledger, deadline = self.rt.settings, self.rt.ledger, self.window.deadline
        cursor = ledger.get_cursor(source=self.source_name)
        moves_cursor = self.mode != "dry_run"
        if cursor is None:
            cursor = settings.initial_watermark or (self.window.start - timedelta(hours=24))
            if moves_cursor:
                ledger.set_cursor(source=self.source_name, watermark=cursor)
        since = cursor - timedelta(minutes=settings.poll_overlap_minutes)
        try:
            for page in self.rt.source.poll_new(since=since, fields=self.rt.mapping.crm_fields_to_read,
                                                deadline=deadline):
                self.polled += len(page)
                self.total += len(page)
                if submit is None:
                    self.process(page)
                else:
                    self._queue(page, submit)
                if page and moves_cursor:
                    ledger.set_cursor(source=self.source_name, watermark=max(l.created_at for l in page))
                if time.time() >= deadline:
                    break
        except WindowClosed:
            log.info("%s: the window ended while polling; the rest waits for the next night", self.source_name)
        except QuotaExhausted as exc:
            self.stopped_by = exc
            log.warning("%s: %s; the leads not yet polled wait for the next night", self.source_name, exc.message)

    def _queue(self, page: list[CrmLead], submit: Submit) -> None:
        email_field = self.rt.mapping.identity["email"]
        unique = list({c.record_id: c for c in page}.values())
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            # Recorded before it is queued (a lost task loses no lead), batch by batch so the
            # workers start while the rest of the page is still being recorded.
            self.rt.ledger.register_leads(source=self.source_name, run_id=self.run_id, leads=[
                (c.record_id, str(c.values.get(email_field) or "").strip()[:320], c.created_at) for c in batch])
            submit(self.run_id, [c.record_id for c in batch])

    def process(self, leads: Sequence[CrmLead]) -> None:
        unique = list({crm.record_id: crm for crm in leads}.values())
        for start in range(0, len(unique), CHUNK):
            self._process_chunk(unique[start : start + CHUNK])
        self.total -= len(leads) - len(unique)

    def _process_chunk(self, leads: list[CrmLead]) -> None:
        if self.mode == "dry_run":
            self._preview_chunk(leads)
            return
        rt = self.rt
        email_field = rt.mapping.identity["email"]
        ttl = timedelta(seconds=rt.settings.claim_ttl_seconds)
        owned = rt.ledger.claim_leads(
            source=self.source_name, run_id=self.run_id, ttl=ttl, via=self.via,
            leads=[(c.record_id, str(c.values.get(email_field) or "").strip()[:320], c.created_at) for c in leads],
        )
        self.total -= len(leads) - len(owned)
        # The claims are renewed while the chunk runs (a slow CRM write, a long limiter wait): only
        # a dead worker's leads expire and go to another worker.
        with keep_alive(lambda: rt.ledger.refresh_lead_claims(lead_ids=list(owned.values()), run_id=self.run_id,
                                                             ttl=ttl),
                        every=ttl.total_seconds() / 3, name="lead-claims"):
            self._work_chunk([LeadWork(owned[c.record_id], c) for c in leads if c.record_id in owned])

    def _work_chunk(self, works: list[LeadWork]) -> None:
        rt = self.rt
        histories = rt.ledger.field_histories(lead_ids=[w.lead_id for w in works])
        for work in works:
            work.history = histories[work.lead_id]
        self._reconcile_planned(works)
        changes: list[StateChange] = []
        enrichable = [w for w in works if self._plan_fields(w, changes)]
        self._enrich(enrichable)
        ready = self._decide(enrichable, changes)
        if self.mode == "respond":
            # The caller's reply carries the values (Marketo's response mapping writes them); the
            # writes stay `planned` until a later read of the CRM confirms them.
            for work in ready:
                self.responses[work.crm.record_id] = {r.field: r.new_value for r in work.writes}
            changes = [c for c in changes if c.state != "writing"]
            changes += [StateChange(w.lead_id, "done", "responded", "values returned in the webhook reply: "
                                    + ", ".join(r.field for r in w.writes)) for w in ready]
            self._apply_states(changes)
            return
        self._apply_states(changes)
        size = rt.source.write_batch_size
        for start in range(0, len(ready), size):
            self._write(ready[start : start + size])

    def _preview_chunk(self, leads: list[CrmLead]) -> None:
        """Dry run: the decisions the night would take, from cached or free answers only."""
        rt = self.rt
        known = rt.ledger.lead_ids(source=self.source_name, record_ids=[c.record_id for c in leads])
        histories = rt.ledger.field_histories(lead_ids=list(known.values()))
        works = []
        for index, crm in enumerate(leads):
            lead_id = known.get(crm.record_id, -(index + 1))  # not in the ledger yet
            work = LeadWork(lead_id, crm)
            work.history = histories.get(lead_id, LeadHistory({}, []))
            works.append(work)
        changes: list[StateChange] = []
        enrichable = [w for w in works if self._plan_fields(w, changes)]
        self._enrich(enrichable)
        settled = {c.lead_id: c for c in changes}
        for work in works:
            if work.lead_id in settled:
                change = settled[work.lead_id]
                self.preview.append(LeadPreview(work.crm.record_id, str(work.identity.email if work.identity else ""),
                                                f"{change.state}({change.reason})", change.detail, [], {}))
                continue
            needs = {o.pool: 0 for o in work.outcomes.values() if isinstance(o, NeedsCredits)}
            for outcome in work.outcomes.values():
                if isinstance(outcome, NeedsCredits):
                    needs[outcome.pool] += outcome.credits
                    self.forecast_calls.add((outcome.provider, outcome.key))
            paying = {p for p, o in work.outcomes.items() if isinstance(o, NeedsCredits)}
            answers = {p: o for p, o in work.outcomes.items() if not isinstance(o, NeedsCredits)}
            work.outcomes = answers
            pending, work.pending = work.pending, [
                t for t in work.pending if not set(rt.mapping.fields[t].providers) <= paying]
            state = self._decide_one(work) if work.pending else None
            for target in pending:
                if target not in work.pending:
                    work.decisions.append(Decision(field=target, write=False, reason="needs_credits",
                                                   current_value=work.crm.values.get(target),
                                                   rule=rt.mapping.fields[target].rule_text,
                                                   detail="the answer is not cached and would cost credits"))
            label = f"{state.state}({state.reason})" if state else ("needs_credits" if paying else "would_write"
                                                                    if any(d.write for d in work.decisions) else "up_to_date")
            self.preview.append(LeadPreview(work.crm.record_id, work.identity.email, label,
                                            state.detail if state else "", work.decisions, needs))

    # ---- phases -----------------------------------------------------------------------------

    def _apply_states(self, changes: list[StateChange]) -> None:
        changes = [StateChange(c.lead_id, c.state, c.reason, redact(c.detail), c.retryable, c.next_attempt_at)
                   for c in changes]
        self.rt.ledger.set_states(changes=changes, run_id=self.run_id, via=self.via,
                                  claim_ttl=timedelta(seconds=self.rt.settings.claim_ttl_seconds))
        finished = sum(1 for c in changes if c.state not in ("enriching", "writing"))
        if finished:
            self.done += finished
            self.progress(self.done, max(self.total, self.done))

    def _reconcile_planned(self, works: list[LeadWork]) -> None:
        """A write recorded `planned` whose value the CRM already holds was applied before a crash
        or a lost reply: confirm it without writing again."""
        confirm: list[int] = []
        for work in works:
            assert work.history is not None
            for row in work.history.planned:
                crm_field = self.rt.crm_fields.get(row.field)
                if crm_field is not None and _canonical_or_raw(work.crm.values.get(row.field), crm_field) == row.new_value:
                    confirm.append(row.id)  # type: ignore[arg-type]
                    before = work.history.fields.get(row.field, FieldHistory(None, 0))
                    work.history.fields[row.field] = FieldHistory(row.new_value, before.confirmed + 1)
        self.rt.ledger.mark_writes(ids=confirm, state="confirmed")

    def _plan_fields(self, work: LeadWork, changes: list[StateChange]) -> bool:
        """Validate the lead and sort its fields into protected (decided now) and pending (need a
        provider). False when the lead is settled without any call."""
        rt = self.rt
        try:
            work.identity = rt.mapping.identity_of(work.crm.values)
            if valid_email(work.identity.email) is None:
                raw = work.identity.email.strip()
                what = "blank" if not raw else f"'{raw[:80]}' is not a valid address"
                changes.append(StateChange(work.lead_id, "skipped", "invalid_email",
                                           f"email {what}; no vendor was called"))
                return False
            assert work.history is not None
            for target, rule in rt.mapping.fields.items():
                crm_field = rt.crm_fields[target]
                past = work.history.fields.get(target)
                last = past.last_written if past else None
                current = work.crm.values.get(target)
                if protected_reason(policy=rule.policy, field=crm_field, current=current, last_written=last) is None:
                    work.pending.append(target)
                else:
                    work.decisions.append(decide(field=crm_field, policy=rule.policy, candidate=None, current=current,
                                                 last_written=last, rule=rule.rule_text))
            return True
        except Exception as exc:  # one lead's surprise must not end the night; it stays traceable
            log.exception("lead %s failed unexpectedly", work.crm.record_id)
            changes.append(_internal_error(work, exc))
            return False

    def _next_provider(self, work: LeadWork, target: str) -> str | None:
        """The provider to ask next for a field: none once a value is in hand, else the first
        provider in the field's precedence not asked yet (after a failure or a no-match)."""
        rule = self.rt.mapping.fields[target]
        payloads = {p: o.payload for p, o in work.outcomes.items() if isinstance(o, ProviderAnswer)}
        picked = rule.pick(payloads, accept=accepts(self.rt.crm_fields[target]))
        if picked is not None and not picked.error:  # a refused value: a fallback provider may do better
            return None
        return next((p for p in rule.providers if p not in work.outcomes and p in self.rt.providers), None)

    def _enrich(self, works: list[LeadWork]) -> None:
        """Ask providers rank by rank: a provider is called only for leads with a field that still
        needs it, so a fallback costs nothing when the first choice answered."""
        ask = self.enricher.preview_many if self.mode == "dry_run" else self.enricher.answer_many
        while True:
            by_provider: dict[str, list[LeadWork]] = {}
            for work in works:
                wanted = {self._next_provider(work, t) for t in work.pending} - {None}
                for provider in wanted:
                    by_provider.setdefault(provider, []).append(work)  # type: ignore[arg-type]
            if not by_provider:
                return
            for provider, items in by_provider.items():
                outcomes = ask(provider, [w.identity for w in items], deadline=self.window.deadline,
                               executor=self.pool)
                for work, outcome in zip(items, outcomes, strict=True):
                    work.outcomes[provider] = outcome

    def _decide(self, works: list[LeadWork], changes: list[StateChange]) -> list[LeadWork]:
        """Decide every pending field, record all decisions, and settle the leads with nothing to
        write. Returns the leads with writes to send."""
        skips: list[dict[str, Any]] = []
        writes: list[dict[str, Any]] = []
        owners: list[LeadWork] = []
        settled: dict[int, StateChange] = {}
        for work in works:
            try:
                state = self._decide_one(work)
            except Exception as exc:  # noqa: BLE001  (kept traceable in the ledger)
                log.exception("lead %s failed unexpectedly", work.crm.record_id)
                settled[work.lead_id] = _internal_error(work, exc)
                continue
            if state is not None and state.reason == "window_end":
                settled[work.lead_id] = state  # nothing decided: the lead is retried whole
                continue
            lead_skips, lead_writes = self._decision_rows(work)
            skips.extend(lead_skips)
            writes.extend(lead_writes)
            owners.extend(work for _ in lead_writes)
            if state is not None:
                settled[work.lead_id] = state
        rows = self.rt.ledger.record_decisions_bulk(run_id=self.run_id, via=self.via, skips=skips, writes=writes)
        already = [(row, work) for row, work in zip(rows, owners, strict=True) if row.state == "confirmed"]
        if already:
            self.rt.ledger.record_decisions_bulk(run_id=self.run_id, via=self.via, writes=[], skips=[
                {"lead_id": row.lead_id, "field": row.field, "old_value": row.old_value, "new_value": row.new_value,
                 "provider": row.provider, "rule": row.rule, "reason": "already_written",
                 "detail": "this exact change was confirmed before; not sent again"} for row, _ in already])
        self.rt.ledger.mark_writes(ids=[r.id for r in rows if r.state == "failed"], state="planned")  # type: ignore[misc]
        for row, work in zip(rows, owners, strict=True):
            if row.state != "confirmed":
                work.writes.append(row)
        ready: list[LeadWork] = []
        for work in works:
            if work.lead_id in settled:
                changes.append(settled[work.lead_id])
            elif work.writes:
                ready.append(work)
            else:
                reason = "up_to_date" if work.pending else "all_fields_protected"
                changes.append(StateChange(work.lead_id, "done", reason, self._summary(work.decisions)))
        changes.extend(StateChange(w.lead_id, "writing") for w in ready)
        return ready

    def _decide_one(self, work: LeadWork) -> StateChange | None:
        """Fill work.decisions for the pending fields; return the lead's final state when it
        will not be written (no match, provider failure), else None."""
        rt = self.rt
        needed = list(work.outcomes)  # the providers actually asked for this lead
        payloads: dict[str, Any] = {}
        no_match: dict[str, str] = {}
        failures: dict[str, ConnectorError] = {}
        for provider in needed:
            outcome = work.outcomes.get(provider)
            if isinstance(outcome, WindowClosed):
                return StateChange(work.lead_id, "deferred", "window_end", outcome.message, retryable=True)
            if isinstance(outcome, ConnectorError):
                failures[provider] = outcome
            elif outcome is not None:
                payloads[provider] = outcome.payload
                if outcome.payload is None:
                    no_match[provider] = outcome.detail or "no match"
        assert work.history is not None
        for target in work.pending:
            rule = rt.mapping.fields[target]
            past = work.history.fields.get(target)
            work.decisions.append(decide(
                field=rt.crm_fields[target], policy=rule.policy, candidate=rule.pick(payloads, accept=accepts(rt.crm_fields[target])),
                current=work.crm.values.get(target), last_written=past.last_written if past else None,
                rule=rule.rule_text,
            ))
        writes_any = any(d.write for d in work.decisions)
        if needed and not any(payloads.get(p) for p in needed):
            if failures:
                return self._failure_state(work, failures)
            details = "; ".join(f"{p}: {no_match.get(p, 'no match')}" for p in needed)
            return StateChange(work.lead_id, "skipped", "no_match", details)
        if failures and not writes_any:
            return self._failure_state(work, failures)
        if failures:
            unfinished = self._failure_state(work, failures)
            work.unfinished = unfinished if unfinished.retryable else None
        return None

    def _decision_rows(self, work: LeadWork) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        assert work.history is not None
        skips: list[dict[str, Any]] = []
        writes: list[dict[str, Any]] = []
        for d in work.decisions:
            current_c = _canonical_or_raw(d.current_value, self.rt.crm_fields[d.field])
            common = {"lead_id": work.lead_id, "field": d.field, "old_value": current_c, "new_value": d.new_value,
                      "provider": d.provider, "rule": d.rule, "reason": d.reason}
            if not d.write:
                skips.append({**common, "detail": d.detail[:2000]})
                continue
            past = work.history.fields.get(d.field)
            key = idempotency_key(source=self.source_name, record_id=work.crm.record_id, field=d.field,
                                  before=current_c, after=d.new_value, generation=past.confirmed if past else 0)
            writes.append({**common, "idempotency_key": key})
        return skips, writes

    @staticmethod
    def _failure_state(work: LeadWork, failures: dict[str, ConnectorError]) -> StateChange:
        error = next(iter(failures.values()))
        detail = "; ".join(f"{p}: {e.message}" for p, e in failures.items())
        if isinstance(error, QuotaExhausted):
            return StateChange(work.lead_id, "deferred", error.reason, detail, retryable=True)
        if isinstance(error, ConfigError):
            return StateChange(work.lead_id, "deferred", "config_error", detail, retryable=True)
        if isinstance(error, RateLimited):
            return StateChange(work.lead_id, "deferred", "rate_limited", detail, retryable=True)
        if isinstance(error, TransientError):
            return StateChange(work.lead_id, "failed", "vendor_unavailable", detail, retryable=True,
                               next_attempt_at=datetime.now(timezone.utc) + RETRY_DELAY)
        return StateChange(work.lead_id, "failed", error.reason, detail, retryable=error.retryable)

    @staticmethod
    def _summary(decisions: list[Decision]) -> str:
        counts: dict[str, int] = {}
        for d in decisions:
            counts[d.reason] = counts.get(d.reason, 0) + 1
        return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))

    # ---- batch write ------------------------------------------------------------------------

    def _confirm_on_reread(self, batch: list[LeadWork]) -> list[LeadWork]:
        """After a write whose outcome is unknown: confirm what the CRM holds, return the rest."""
        fields = [r.field for w in batch for r in w.writes]
        current = {c.record_id: c for c in self.rt.source.read(
            record_ids=[w.crm.record_id for w in batch], fields=list(dict.fromkeys(fields)),
            deadline=self.window.deadline)}
        remaining: list[LeadWork] = []
        confirmed: list[LeadWork] = []
        for work in batch:
            crm = current.get(work.crm.record_id)
            holds = crm is not None and all(
                _canonical_or_raw(crm.values.get(r.field), self.rt.crm_fields[r.field]) == r.new_value
                for r in work.writes
            )
            (confirmed if holds else remaining).append(work)
        self.rt.ledger.mark_writes(ids=[r.id for w in confirmed for r in w.writes], state="confirmed")  # type: ignore[misc]
        self.fields_written += sum(len(w.writes) for w in confirmed)
        self._apply_states([w.written("confirmed on re-read after a lost CRM reply: " + ", ".join(r.field for r in w.writes))
                            for w in confirmed])
        return remaining

    def _write(self, batch: list[LeadWork], *, attempt: int = 1) -> None:
        updates = [RecordUpdate(w.crm.record_id, {r.field: r.new_value for r in w.writes}) for w in batch]
        try:
            results = self.rt.source.write_batch(updates=updates, deadline=self.window.deadline)
        except TransientError as exc:
            if attempt >= 3:
                self._unconfirmed(batch, exc)
                return
            try:
                remaining = self._confirm_on_reread(batch)
            except ConnectorError:
                self._unconfirmed(batch, exc)
                return
            if remaining:
                self._write(remaining, attempt=attempt + 1)
            return
        except ConnectorError as exc:
            self._unconfirmed(batch, exc)
            return
        self._apply_results(batch, results)

    def _unconfirmed(self, batch: list[LeadWork], exc: ConnectorError) -> None:
        """The outcome is unknown (or nothing was sent): writes stay `planned`, and the next
        attempt confirms on re-read what the CRM did apply."""
        state, retry_at = "failed", datetime.now(timezone.utc) + RETRY_DELAY
        if isinstance(exc, (QuotaExhausted, WindowClosed)):
            state, retry_at = "deferred", None
        self._apply_states([StateChange(w.lead_id, state, exc.reason, f"write not confirmed: {exc.message}",
                                        retryable=True, next_attempt_at=retry_at) for w in batch])

    def _apply_results(self, batch: list[LeadWork], results: list[Any]) -> None:
        by_id = {r.record_id: r for r in results}
        confirmed: list[int] = []
        changes: list[StateChange] = []
        for work in batch:
            result = by_id.get(work.crm.record_id)
            ids = [r.id for r in work.writes]
            if result is not None and result.ok:
                confirmed.extend(ids)  # type: ignore[arg-type]
                changes.append(work.written(f"{len(ids)} field(s) written: " + ", ".join(r.field for r in work.writes)))
            else:
                message = redact(result.message if result else "the CRM returned no result for this record")
                self.rt.ledger.mark_writes(ids=ids, state="failed", error=message)  # type: ignore[arg-type]
                retryable = bool(result and result.retryable)
                changes.append(StateChange(work.lead_id, "failed", "crm_rejected", message, retryable=retryable,
                                           next_attempt_at=datetime.now(timezone.utc) + RETRY_DELAY if retryable else None))
        self.rt.ledger.mark_writes(ids=confirmed, state="confirmed")
        self.fields_written += len(confirmed)
        self._apply_states(changes)


def _internal_error(work: LeadWork, exc: Exception) -> StateChange:
    return StateChange(work.lead_id, "failed", "internal_error", f"{type(exc).__name__}: {exc}", retryable=True,
                       next_attempt_at=datetime.now(timezone.utc) + RETRY_DELAY)


def _canonical_or_raw(value: Any, crm_field: CrmField) -> Any:
    try:
        return canonical(value, crm_field)
    except BadValue:
        return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def run_source(
    settings: Settings, ledger: Ledger, limiter: Limiter, source_name: str, *, window: Window,
    via: str = "night", progress: Progress | None = None, context: VendorContext | None = None,
    submit: Submit | None = None,
) -> RunReport | None:
    """Run one source inside `window`; None when this night's run for the source already exists
    (finished, or polled by a live poller). A run whose poller died (its poll claim expired) is
    taken over and polled again from the cursor: what was already queued is skipped by the lead
    claims. With `submit`, polled batches are handed to workers instead of processed here."""
    run_key = f"{source_name}:{window.key}"
    poll_ttl = timedelta(seconds=settings.claim_ttl_seconds)
    run = (ledger.start_run(run_key=run_key, source=source_name, kind=window.kind, window_start=window.start,
                            window_end=window.end, poll_ttl=poll_ttl)
           or ledger.take_over_run(run_key=run_key, ttl=poll_ttl))
    if run is None:
        return None  # the run finished, or its poller is alive: a duplicate kick-off
    assert run.id is not None
    run_id = run.id
    with keep_alive(lambda: ledger.refresh_poll(run_id=run_id, ttl=poll_ttl), every=poll_ttl.total_seconds() / 3,
                    name="poll-claim"):
        return _run_source(settings, ledger, limiter, source_name, run, window=window, via=via, progress=progress,
                           context=context, submit=submit)


def _run_source(
    settings: Settings, ledger: Ledger, limiter: Limiter, source_name: str, run: SyncRun, *, window: Window,
    via: str, progress: Progress | None, context: VendorContext | None, submit: Submit | None,
) -> RunReport:
    assert run.id is not None
    started = time.monotonic()
    report = RunReport(source_name, run.id, run.run_key, window)
    rt: Runtime | None = None
    try:
        rt = build_runtime(settings, ledger, limiter, source_name, context=context)
        night = batch_night(window)
        if night is not None:
            read_balances_before_night(ledger, rt.providers, night=night, window_end=window.end,
                                       deadline=window.deadline)
        source_run = SourceRun(rt, run=run, window=window, via=via, progress=progress,
                               batch_size=settings.celery.batch_size)
        source_run.execute(submit)
        report.calls = {**source_run.enricher.calls, source_name: getattr(rt.source, "session", None) and rt.source.session.calls or 0}  # type: ignore[attr-defined]
        report.credits = dict(source_run.enricher.credits)
        report.fields_written = source_run.fields_written
        report.polled = source_run.polled
    except ConnectorError as exc:
        report.status = "failed"
        _record_failed_run(ledger, run, exc)
        raise
    finally:
        if rt is not None:
            rt.close()
    report.seconds = time.monotonic() - started
    if submit is not None:
        report.status = "dispatched"  # the workers finish it; the ledger counts as they go
    report.states = ledger.count_states(run_id=run.id)
    ledger.finish_run(run_id=run.id, status=report.status, report=report.as_dict())
    return report


def _record_failed_run(ledger: Ledger, run: SyncRun, exc: ConnectorError) -> None:
    """A run stopped by an error is finished as failed, with why (a dry run has no ledger row)."""
    if run.id:
        ledger.finish_run(run_id=run.id, status="failed", report={"error": redact(str(exc))})


def run_once(
    settings: Settings, ledger: Ledger, limiter: Limiter, source_name: str, *, via: str,
    record_ids: Sequence[str] | None = None, leads: Sequence[CrmLead] | None = None, mode: str = "write",
    context: VendorContext | None = None, budget_seconds: float | None = None,
) -> SourceRun:
    """Process given leads now, outside the night (webhook, re-sync): a run of their own, through
    the same limiter and ledger. `leads` are taken as they are (a webhook payload's values);
    `record_ids` are read from the CRM first."""
    now = datetime.now(timezone.utc)
    seconds = budget_seconds if budget_seconds is not None else settings.window.length_minutes * 60
    window = Window(via, now, now + timedelta(seconds=seconds), f"{via}:{uuid.uuid4().hex[:12]}")
    if mode == "dry_run":
        run = SyncRun(id=0, run_key=window.key, source=source_name, kind=via, window_start=window.start,
                      window_end=window.end, started_at=now)
    else:
        started = ledger.start_run(run_key=f"{source_name}:{window.key}", source=source_name, kind=via,
                                   window_start=window.start, window_end=window.end)
        assert started is not None
        run = started
    try:
        rt = build_runtime(settings, ledger, limiter, source_name, context=context)
    except ConnectorError as exc:
        _record_failed_run(ledger, run, exc)
        raise
    try:
        source_run = SourceRun(rt, run=run, window=window, via=via, mode=mode)
        if mode == "dry_run":
            source_run.balances = read_balances(rt.providers, deadline=window.deadline)
        with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="enrich") as pool:
            source_run.pool = pool
            if leads is not None:
                source_run.process(list(leads))
            elif record_ids is not None:
                source_run.process_records(list(record_ids))
            else:
                source_run.execute()
    except ConnectorError as exc:
        _record_failed_run(ledger, run, exc)
        raise
    finally:
        rt.close()
    if mode != "dry_run":
        assert run.id is not None
        ledger.finish_run(run_id=run.id, status="finished", report={
            "states": ledger.count_states(run_id=run.id), "credits": source_run.enricher.credits,
            "calls": source_run.enricher.calls, "fields_written": source_run.fields_written})
    return source_run
