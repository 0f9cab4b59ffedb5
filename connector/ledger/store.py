"""Ledger operations. Each method is one short transaction; arguments are keyword-only.

The ledger, not a lock, is what makes a write correct: claims are conditional UPDATEs or
INSERT ... ON CONFLICT, and a field write is recorded `planned` before the CRM call and
`confirmed` after it, keyed by an idempotency key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from connector.ledger.credits import CreditAccounts
from connector.ledger.tables import (
    Enrichment,
    FieldWrite,
    Lead,
    LeadEvent,
    ProviderCircuit,
    SourceCursor,
    SpendDay,
    SyncRun,
    utcnow,
)

IN_FLIGHT = ("enriching", "writing")
TERMINAL = ("done", "skipped", "failed", "deferred")


def idempotency_key(*, source: str, record_id: str, field: str, before: Any, after: Any, generation: int = 0) -> str:
    """The key of one field write. `generation` counts the confirmed writes of this field before
    it: a retry of the same decision gets the same key, while the same change made again later
    (a person emptied the field, or a value went A -> C -> A) gets a new one."""
    material = json.dumps([source, record_id, field, before, after, generation], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class FieldHistory:
    last_written: Any | None
    confirmed: int


@dataclass(frozen=True)
class LeadHistory:
    fields: dict[str, FieldHistory]
    planned: list[FieldWrite]


@dataclass(frozen=True)
class StateChange:
    lead_id: int
    state: str
    reason: str = ""
    detail: str = ""
    retryable: bool = False
    next_attempt_at: datetime | None = None


class Ledger(CreditAccounts):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def _insert(self, table: Any) -> Any:
        return pg_insert(table) if self.engine.dialect.name == "postgresql" else sqlite_insert(table)

    # ---- runs and cursors -------------------------------------------------------------------

    def start_run(
        self, *, run_key: str, source: str, kind: str, window_start: datetime, window_end: datetime,
        poll_ttl: timedelta | None = None,
    ) -> SyncRun | None:
        """Create the run, or return None when `run_key` already exists (a duplicate kick-off).
        `poll_ttl`: the run polls, and its creator holds the poll claim that long."""
        now = utcnow()
        stmt = (
            self._insert(SyncRun)
            .values(
                run_key=run_key,
                source=source,
                kind=kind,
                status="running",
                window_start=window_start,
                window_end=window_end,
                started_at=now,
                report={},
                poll_claimed_until=now + poll_ttl if poll_ttl else None,
            )
            .on_conflict_do_nothing(index_elements=["run_key"])
            .returning(SyncRun.id)
        )
        with self.session() as s:
            if s.connection().execute(stmt).first() is None:
                return None
            return s.exec(select(SyncRun).where(SyncRun.run_key == run_key)).one()

    def finish_run(self, *, run_id: int, status: str, report: dict[str, Any]) -> None:
        with self.session() as s:
            run = s.get(SyncRun, run_id)
            assert run is not None
            run.status, run.report, run.finished_at = status, report, utcnow()
            run.poll_claimed_until = None
            s.add(run)

    def take_over_run(self, *, run_key: str, ttl: timedelta) -> SyncRun | None:
        """Take a run whose poller died (still `running`, its poll claim expired) and hold its
        poll claim; None when the run finished or its poller is alive (a duplicate kick-off)."""
        now = utcnow()
        with self.session() as s:
            taken = s.connection().execute(
                update(SyncRun).where(SyncRun.run_key == run_key, SyncRun.status == "running",
                                      col(SyncRun.poll_claimed_until) < now)
                .values(poll_claimed_until=now + ttl).returning(SyncRun.id)).first()
            return s.get(SyncRun, taken[0]) if taken else None

    def refresh_poll(self, *, run_id: int, ttl: timedelta) -> None:
        with self.session() as s:
            s.connection().execute(update(SyncRun).where(col(SyncRun.id) == run_id, SyncRun.status == "running")
                                   .values(poll_claimed_until=utcnow() + ttl))

    def runs_with_lost_poller(self, *, now: datetime) -> list[SyncRun]:
        """Runs still polling on paper whose poller stopped renewing its claim."""
        with self.session() as s:
            return list(s.exec(select(SyncRun).where(SyncRun.status == "running",
                                                     col(SyncRun.poll_claimed_until) < now)))

    def runs(self, *, limit: int = 20) -> list[SyncRun]:
        with self.session() as s:
            return list(s.exec(select(SyncRun).order_by(col(SyncRun.id).desc()).limit(limit)))

    def get_cursor(self, *, source: str) -> datetime | None:
        with self.session() as s:
            row = s.get(SourceCursor, source)
            return row.watermark if row else None

    def set_cursor(self, *, source: str, watermark: datetime) -> None:
        """Move the watermark forward only; use `rewind_cursor` to go back on purpose."""
        with self.session() as s:
            row = s.get(SourceCursor, source)
            if row is None:
                s.add(SourceCursor(source=source, watermark=watermark, updated_at=utcnow()))
            elif watermark > row.watermark:
                row.watermark, row.updated_at = watermark, utcnow()
                s.add(row)

    def rewind_cursor(self, *, source: str, watermark: datetime) -> None:
        with self.session() as s:
            row = s.get(SourceCursor, source) or SourceCursor(source=source, watermark=watermark, updated_at=utcnow())
            row.watermark, row.updated_at = watermark, utcnow()
            s.add(row)

    # ---- leads ------------------------------------------------------------------------------

    def upsert_lead(self, *, source: str, record_id: str, email: str, crm_created_at: datetime | None) -> int:
        now = utcnow()
        stmt = (
            self._insert(Lead)
            .values(
                source=source, record_id=record_id, email=email, crm_created_at=crm_created_at,
                state="new", reason="", detail="", retryable=False, attempts=0, updated_at=now,
            )
            .on_conflict_do_update(index_elements=["source", "record_id"], set_={"email": email})
        )
        with self.session() as s:
            s.connection().execute(stmt)
            lead_id = s.exec(
                select(Lead.id).where(Lead.source == source, Lead.record_id == record_id)
            ).one()
            assert lead_id is not None
            return lead_id

    def claim_leads(
        self, *, source: str, leads: list[tuple[str, str, datetime | None]], run_id: int, ttl: timedelta, via: str
    ) -> dict[str, int]:
        """Upsert a page of (record id, email, created) and claim them for this run in one
        transaction; returns record id -> lead id for the leads this run now owns (not those
        this run already had, nor those another worker holds)."""
        if not leads:
            return {}
        now = utcnow()
        upsert = self._insert(Lead).values([
            {"source": source, "record_id": rid, "email": email, "crm_created_at": created, "state": "new",
             "reason": "", "detail": "", "retryable": False, "attempts": 0, "updated_at": now}
            for rid, email, created in leads
        ])
        upsert = upsert.on_conflict_do_update(index_elements=["source", "record_id"],
                                              set_={"email": upsert.excluded.email})
        record_ids = [rid for rid, _, _ in leads]
        with self.session() as s:
            conn = s.connection()
            conn.execute(upsert)
            claimed = conn.execute(
                update(Lead)
                .where(
                    Lead.source == source,
                    col(Lead.record_id).in_(record_ids),
                    or_(
                        Lead.state == "new",
                        col(Lead.state).not_in(IN_FLIGHT)
                        & or_(col(Lead.run_id).is_(None), col(Lead.run_id) != run_id),
                        col(Lead.state).in_(IN_FLIGHT) & (col(Lead.claimed_until) < now),
                    ),
                )
                .values(state="enriching", run_id=run_id, claimed_until=now + ttl,
                        attempts=Lead.attempts + 1, updated_at=now)
                .returning(Lead.id, Lead.record_id)
            ).all()
            if claimed:
                conn.execute(insert(LeadEvent), [
                    {"lead_id": lead_id, "run_id": run_id, "at": now, "via": via, "state": "enriching",
                     "reason": "", "detail": ""} for lead_id, _ in claimed])
            return {record_id: lead_id for lead_id, record_id in claimed}

    def refresh_lead_claims(self, *, lead_ids: list[int], run_id: int, ttl: timedelta) -> None:
        """Keep this run's claims on leads it is still working on."""
        if not lead_ids:
            return
        with self.session() as s:
            s.connection().execute(
                update(Lead).where(col(Lead.id).in_(lead_ids), Lead.run_id == run_id, col(Lead.state).in_(IN_FLIGHT))
                .values(claimed_until=utcnow() + ttl))

    def register_leads(self, *, source: str, leads: list[tuple[str, str, datetime | None]], run_id: int) -> None:
        """Record polled leads before their work is queued, so a lost task loses no lead: the
        sweeper finds them still `new`. Leads already known keep their state."""
        if not leads:
            return
        now = utcnow()
        stmt = self._insert(Lead).values([
            {"source": source, "record_id": rid, "email": email, "crm_created_at": created, "state": "new",
             "reason": "", "detail": "", "retryable": False, "attempts": 0, "updated_at": now, "run_id": run_id}
            for rid, email, created in leads
        ])
        stmt = stmt.on_conflict_do_update(index_elements=["source", "record_id"], set_={"email": stmt.excluded.email})
        with self.session() as s:
            s.connection().execute(stmt)

    def lead_ids(self, *, source: str, record_ids: list[str]) -> dict[str, int]:
        """record id -> lead id for the records the ledger knows (reads only)."""
        if not record_ids:
            return {}
        with self.session() as s:
            rows = s.exec(select(Lead.record_id, Lead.id).where(Lead.source == source,
                                                                col(Lead.record_id).in_(record_ids))).all()
        return {record_id: lead_id for record_id, lead_id in rows}

    def select_leads(
        self, *, source: str | None = None, states: tuple[str, ...] = (), reason: str | None = None,
        created_from: datetime | None = None, created_to: datetime | None = None, limit: int = 100_000,
    ) -> list[Lead]:
        """Leads for an operator's re-sync, oldest first."""
        with self.session() as s:
            query = select(Lead)
            if source:
                query = query.where(Lead.source == source)
            if states:
                query = query.where(col(Lead.state).in_(states))
            if reason:
                query = query.where(Lead.reason == reason)
            if created_from:
                query = query.where(col(Lead.crm_created_at) >= created_from)
            if created_to:
                query = query.where(col(Lead.crm_created_at) < created_to)
            return list(s.exec(query.order_by(col(Lead.crm_created_at), col(Lead.id)).limit(limit)))

    def state_counts(self, *, source: str | None = None) -> list[tuple[str, str, str, int]]:
        """(source, state, reason, leads) over the whole ledger."""
        with self.session() as s:
            query = select(Lead.source, Lead.state, Lead.reason, func.count()).group_by(Lead.source, Lead.state, Lead.reason)
            if source:
                query = query.where(Lead.source == source)
            return [tuple(row) for row in s.exec(query.order_by(Lead.source, Lead.state)).all()]  # type: ignore[misc]

    def requeue_stale_leads(self, *, source: str, queued_before: datetime, now: datetime,
                            limit: int = 5000) -> list[tuple[str, int | None]]:
        """Take back the leads whose work was lost: still `new` since before `queued_before` (a
        lost task), or in flight with an expired claim (a dead worker). They become `new` again,
        queued as of `now`, so the next sweep leaves them alone for another grace period. Returns
        (record id, run id) of each, oldest first, for the caller to queue."""
        stale = or_((Lead.state == "new") & (col(Lead.updated_at) < queued_before),
                    col(Lead.state).in_(IN_FLIGHT) & (col(Lead.claimed_until) < now))
        with self.session() as s:
            conn = s.connection()
            ids = [row[0] for row in conn.execute(
                select(Lead.id).where(Lead.source == source, stale)
                .order_by(col(Lead.crm_created_at), col(Lead.id)).limit(limit))]
            if not ids:
                return []
            # The condition again: a worker may have claimed one since the select.
            taken = conn.execute(
                update(Lead).where(col(Lead.id).in_(ids), stale)
                .values(state="new", claimed_until=None, updated_at=now)
                .returning(Lead.id, Lead.record_id, Lead.run_id, Lead.crm_created_at)).all()
            if taken:
                conn.execute(insert(LeadEvent), [
                    {"lead_id": lead_id, "run_id": run_id, "at": now, "via": "sweep", "state": "new",
                     "reason": "requeued", "detail": "queued again: its task was lost or its worker stopped"}
                    for lead_id, _, run_id, _ in taken])
        ordered = sorted(taken, key=lambda r: (r.crm_created_at is None, r.crm_created_at or now, r.id))
        return [(record_id, run_id) for _, record_id, run_id, _ in ordered]

    def run(self, *, run_id: int) -> SyncRun | None:
        with self.session() as s:
            return s.get(SyncRun, run_id)

    def claim_lead(self, *, lead_id: int, run_id: int, ttl: timedelta, via: str) -> bool:
        """Take the lead for this run: not when this run already has it, nor while another
        worker's claim is alive. Returns whether we own it now."""
        now = utcnow()
        stmt = (
            update(Lead)
            .where(
                col(Lead.id) == lead_id,
                or_(
                    col(Lead.state).not_in(IN_FLIGHT)
                    & or_(col(Lead.run_id).is_(None), col(Lead.run_id) != run_id),
                    col(Lead.state).in_(IN_FLIGHT) & (col(Lead.claimed_until) < now),
                ),
            )
            .values(
                state="enriching", run_id=run_id, claimed_until=now + ttl,
                attempts=Lead.attempts + 1, updated_at=now,
            )
        )
        with self.session() as s:
            won = s.connection().execute(stmt).rowcount == 1
            if won:
                s.add(LeadEvent(lead_id=lead_id, run_id=run_id, at=now, via=via, state="enriching"))
            return won

    def set_lead_state(
        self,
        *,
        lead_id: int,
        run_id: int | None,
        via: str,
        state: str,
        reason: str = "",
        detail: str = "",
        retryable: bool = False,
        next_attempt_at: datetime | None = None,
    ) -> None:
        now = utcnow()
        with self.session() as s:
            lead = s.get(Lead, lead_id)
            assert lead is not None
            lead.state, lead.reason, lead.detail = state, reason, detail[:2000]
            lead.retryable, lead.next_attempt_at, lead.updated_at = retryable, next_attempt_at, now
            if state not in IN_FLIGHT:
                lead.claimed_until = None
            s.add(lead)
            s.add(LeadEvent(lead_id=lead_id, run_id=run_id, at=now, via=via, state=state,
                            reason=reason, detail=detail[:2000]))

    def set_states(self, *, changes: list[StateChange], run_id: int | None, via: str,
                   claim_ttl: timedelta = timedelta(minutes=10)) -> None:
        """Many leads' new states, with their history events, in one transaction. An in-flight
        state renews the claim for `claim_ttl` (the run's claim_ttl_seconds), so a lead whose
        worker dies while writing is retried when that claim expires, like any other claim."""
        if not changes:
            return
        now = utcnow()
        rows = [{
            "v_id": c.lead_id, "v_state": c.state, "v_reason": c.reason, "v_detail": c.detail[:2000],
            "v_retryable": c.retryable, "v_next": c.next_attempt_at, "v_now": now,
            "v_claim": now + claim_ttl if c.state in IN_FLIGHT else None,
        } for c in changes]
        stmt = (update(Lead).where(col(Lead.id) == bindparam("v_id"))
                .values(state=bindparam("v_state"), reason=bindparam("v_reason"), detail=bindparam("v_detail"),
                        retryable=bindparam("v_retryable"), next_attempt_at=bindparam("v_next"),
                        updated_at=bindparam("v_now"), claimed_until=bindparam("v_claim")))
        events = [{"lead_id": c.lead_id, "run_id": run_id, "at": now, "via": via, "state": c.state,
                   "reason": c.reason, "detail": c.detail[:2000]} for c in changes]
        with self.session() as s:
            conn = s.connection()
            conn.execute(stmt, rows)
            conn.execute(insert(LeadEvent), events)

    def field_histories(self, *, lead_ids: list[int]) -> dict[int, LeadHistory]:
        """For each lead: per field the value we last wrote (or planned) and the count of confirmed
        writes, and the writes still `planned` (a crash or lost reply left them unconfirmed)."""
        histories = {lead_id: LeadHistory({}, []) for lead_id in lead_ids}
        if not lead_ids:
            return histories
        table = FieldWrite.__table__  # type: ignore[attr-defined]
        with self.session() as s:
            rows = s.connection().execute(
                select(table)
                .where(table.c.lead_id.in_(lead_ids), table.c.decision == "write",
                       table.c.state.in_(("planned", "confirmed")))
                .order_by(table.c.id)
            ).all()
        for row in rows:
            history = histories[row.lead_id]
            if row.state == "planned":
                # Not known to have landed: it is ours only once a read of the CRM confirms it.
                history.planned.append(row)
                continue
            before = history.fields.get(row.field, FieldHistory(None, 0))
            history.fields[row.field] = FieldHistory(row.new_value, before.confirmed + 1)
        return histories

    def record_decisions_bulk(
        self, *, run_id: int | None, via: str, skips: list[dict[str, Any]], writes: list[dict[str, Any]]
    ) -> list[FieldWrite]:
        """Record many leads' field decisions in one transaction (each dict has lead_id). Writes
        are inserted `planned` unless their idempotency key exists; returns the write rows, new
        or existing, in the order given (their state says whether the write must still happen)."""
        now = utcnow()
        base = {"run_id": run_id, "via": via, "created_at": now, "error": "", "written_at": None}
        with self.session() as s:
            conn = s.connection()
            if skips:
                conn.execute(insert(FieldWrite), [
                    {**base, "detail": "", "idempotency_key": None, **skip, "decision": "skip", "state": "recorded"}
                    for skip in skips])
            if not writes:
                return []
            keys = [w["idempotency_key"] for w in writes]
            table = FieldWrite.__table__  # type: ignore[attr-defined]
            key_column = table.c.idempotency_key
            existing = {row[0] for row in conn.execute(select(key_column).where(key_column.in_(keys)))}
            fresh = [w for w in writes if w["idempotency_key"] not in existing]
            if fresh:
                conn.execute(insert(FieldWrite), [
                    {**base, "detail": "", **w, "decision": "write", "state": "planned"} for w in fresh])
            # Plain rows (not ORM objects): read back in bulk on the hot path of every night.
            by_key = {row.idempotency_key: row for row in conn.execute(select(table).where(key_column.in_(keys)))}
            return [by_key[k] for k in keys]

    def leads_due(self, *, source: str, now: datetime, limit: int = 10_000) -> list[Lead]:
        """Failed-retryable and deferred leads whose time has come, oldest first, plus in-flight
        leads whose claim expired (a worker died)."""
        with self.session() as s:
            query = (
                select(Lead)
                .where(
                    Lead.source == source,
                    or_(
                        (col(Lead.state).in_(("failed", "deferred")) & (col(Lead.retryable).is_(True))
                         & or_(col(Lead.next_attempt_at).is_(None), col(Lead.next_attempt_at) <= now)),
                        (col(Lead.state).in_(IN_FLIGHT) & (col(Lead.claimed_until) < now)),
                    ),
                )
                .order_by(col(Lead.crm_created_at), col(Lead.id))
                .limit(limit)
            )
            return list(s.exec(query))

    def find_leads(self, *, key: str) -> list[Lead]:
        """Leads whose record id, or whose email (case-insensitive), is `key`."""
        with self.session() as s:
            query = select(Lead).where(
                or_(Lead.record_id == key, func.lower(Lead.email) == key.strip().lower())
            )
            return list(s.exec(query.order_by(col(Lead.id))))

    def lead(self, *, lead_id: int) -> Lead | None:
        with self.session() as s:
            return s.get(Lead, lead_id)

    def lead_events(self, *, lead_id: int) -> list[LeadEvent]:
        with self.session() as s:
            return list(s.exec(select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(col(LeadEvent.id))))

    def count_states(self, *, run_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(
                select(Lead.state, Lead.reason, func.count()).where(Lead.run_id == run_id).group_by(Lead.state, Lead.reason)
            ).all()
        counts: dict[str, int] = {}
        for state, reason, n in rows:
            label = f"{state}({reason})" if reason else state
            counts[label] = counts.get(label, 0) + n
        return counts

    # ---- field decisions and writes ---------------------------------------------------------

    def field_history(self, *, lead_id: int) -> dict[str, FieldHistory]:
        """Per field: the value we last wrote or planned to write, and how many writes were confirmed."""
        with self.session() as s:
            rows = s.exec(
                select(FieldWrite.field, FieldWrite.state, FieldWrite.new_value)
                .where(FieldWrite.lead_id == lead_id, FieldWrite.decision == "write",
                       col(FieldWrite.state).in_(("planned", "confirmed")))
                .order_by(col(FieldWrite.id))
            ).all()
        history: dict[str, FieldHistory] = {}
        for field, state, value in rows:
            before = history.get(field, FieldHistory(None, 0))
            history[field] = FieldHistory(value, before.confirmed + (state == "confirmed"))
        return history

    def record_decisions(
        self, *, lead_id: int, run_id: int | None, via: str, skips: list[dict[str, Any]], writes: list[dict[str, Any]]
    ) -> list[FieldWrite]:
        """Record a lead's field decisions in one transaction. Writes are inserted `planned`
        unless their idempotency key exists; the existing row is returned then (its state says
        whether the write still has to happen)."""
        now = utcnow()
        with self.session() as s:
            for skip in skips:
                s.add(FieldWrite(lead_id=lead_id, run_id=run_id, via=via, decision="skip", state="recorded",
                                 created_at=now, **skip))
            keys = [w["idempotency_key"] for w in writes]
            existing = {row.idempotency_key: row for row in s.exec(
                select(FieldWrite).where(col(FieldWrite.idempotency_key).in_(keys)))} if keys else {}
            rows: list[FieldWrite] = []
            for write in writes:
                row = existing.get(write["idempotency_key"])
                if row is None:
                    row = FieldWrite(lead_id=lead_id, run_id=run_id, via=via, decision="write", state="planned",
                                     created_at=now, **write)
                    s.add(row)
                rows.append(row)
            s.flush()
            return rows

    def confirmed_count(self, *, lead_id: int, field: str) -> int:
        with self.session() as s:
            return int(s.exec(
                select(func.count()).select_from(FieldWrite).where(
                    FieldWrite.lead_id == lead_id, FieldWrite.field == field, FieldWrite.state == "confirmed")
            ).one())

    def planned_writes(self, *, lead_id: int) -> list[FieldWrite]:
        with self.session() as s:
            return list(
                s.exec(select(FieldWrite).where(FieldWrite.lead_id == lead_id, FieldWrite.state == "planned"))
            )

    def record_skip(
        self, *, lead_id: int, run_id: int | None, via: str, field: str, reason: str, detail: str = "",
        old_value: Any = None, new_value: Any = None, provider: str | None = None, rule: str | None = None,
    ) -> None:
        with self.session() as s:
            s.add(FieldWrite(
                lead_id=lead_id, run_id=run_id, via=via, field=field, old_value=old_value,
                new_value=new_value, provider=provider, rule=rule, decision="skip", reason=reason,
                detail=detail[:2000], state="recorded", created_at=utcnow(),
            ))

    def plan_write(
        self, *, lead_id: int, run_id: int | None, via: str, key: str, field: str, old_value: Any,
        new_value: Any, provider: str | None, rule: str | None, reason: str,
    ) -> FieldWrite:
        """Record the write as planned; when the key exists already, return that row instead
        (a retry of the same decision): its state says whether the write still has to happen."""
        with self.session() as s:
            existing = s.exec(select(FieldWrite).where(FieldWrite.idempotency_key == key)).first()
            if existing is not None:
                return existing
        row = FieldWrite(
            lead_id=lead_id, run_id=run_id, via=via, field=field, old_value=old_value,
            new_value=new_value, provider=provider, rule=rule, decision="write", reason=reason,
            idempotency_key=key, state="planned", created_at=utcnow(),
        )
        try:
            with self.session() as s:
                s.add(row)
            return row
        except IntegrityError:
            with self.session() as s:
                return s.exec(select(FieldWrite).where(FieldWrite.idempotency_key == key)).one()

    def mark_writes(self, *, ids: list[int], state: str, error: str = "") -> None:
        if not ids:
            return
        values: dict[str, Any] = {"state": state, "error": error[:2000]}
        if state == "confirmed":
            values["written_at"] = utcnow()
        with self.session() as s:
            s.connection().execute(update(FieldWrite).where(col(FieldWrite.id).in_(ids)).values(**values))

    def field_writes(self, *, lead_id: int) -> list[FieldWrite]:
        with self.session() as s:
            return list(s.exec(select(FieldWrite).where(FieldWrite.lead_id == lead_id).order_by(col(FieldWrite.id))))

    def count_writes(self, *, run_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(
                select(FieldWrite.decision, FieldWrite.reason, FieldWrite.state, func.count())
                .where(FieldWrite.run_id == run_id)
                .group_by(FieldWrite.decision, FieldWrite.reason, FieldWrite.state)
            ).all()
        return {f"{d}:{r}:{st}": n for d, r, st, n in rows}

    # ---- enrichment cache and credit claims -------------------------------------------------

    def claim_lookups(
        self, *, provider: str, endpoint: str, keys: list[str], credit_pool: str | None,
        fresh_after: datetime, ttl: timedelta, token: str,
    ) -> tuple[dict[str, Enrichment], set[str], set[str]]:
        """Claim many lookups at once with one token. Returns (fresh cached rows by key, keys
        this caller now owns and must call, keys another worker is calling right now)."""
        now = utcnow()
        cached: dict[str, Enrichment] = {}
        owned: set[str] = set()
        busy: set[str] = set()
        if not keys:
            return cached, owned, busy
        insert_stmt = (
            self._insert(Enrichment)
            .values([{"provider": provider, "endpoint": endpoint, "lookup_key": k, "credit_pool": credit_pool,
                      "status": "claimed", "claim_token": token, "claimed_until": now + ttl, "detail": "",
                      "credits_spent": 0, "calls": 0} for k in keys])
            .on_conflict_do_nothing(index_elements=["endpoint", "lookup_key"])
            .returning(Enrichment.lookup_key)
        )
        with self.session() as s:
            conn = s.connection()
            owned = {row[0] for row in conn.execute(insert_stmt)}
            others = [k for k in keys if k not in owned]
            if not others:
                return cached, owned, busy
            rows = s.exec(select(Enrichment).where(Enrichment.endpoint == endpoint,
                                                   col(Enrichment.lookup_key).in_(others))).all()
            for row in rows:
                if row.status in ("matched", "no_match") and row.fetched_at and row.fetched_at >= fresh_after:
                    cached[row.lookup_key] = row
                elif row.status == "claimed" and row.claimed_until and row.claimed_until > now:
                    busy.add(row.lookup_key)
                else:
                    taken = conn.execute(
                        update(Enrichment)
                        .where(col(Enrichment.id) == row.id, Enrichment.claim_token == row.claim_token,
                               Enrichment.status == row.status)
                        .values(status="claimed", claim_token=token, claimed_until=now + ttl)
                    ).rowcount == 1
                    (owned if taken else busy).add(row.lookup_key)
        return cached, owned, busy

    def store_answers(
        self, *, endpoint: str, token: str, answers: dict[str, tuple[str, dict[str, Any] | None, str]],
        charges: dict[str, int],
    ) -> None:
        """Store claimed lookups' answers {key: (status, payload, detail)} with the credits each
        cost ({key: credits}; see `charge_records` for who decides)."""
        if not answers:
            return
        now = utcnow()
        table = Enrichment.__table__  # type: ignore[attr-defined]
        with self.session() as s:
            conn = s.connection()
            rows = conn.execute(select(table.c.id, table.c.lookup_key, table.c.first_charged_at)
                                .where(table.c.endpoint == endpoint, table.c.lookup_key.in_(list(answers)),
                                       table.c.claim_token == token)).all()
            updates = []
            for row in rows:
                status, payload, detail = answers[row.lookup_key]
                charge = charges.get(row.lookup_key, 0)
                updates.append({"v_id": row.id, "v_status": status, "v_payload": payload, "v_detail": detail[:2000],
                                "v_now": now, "v_first": now if charge else row.first_charged_at,
                                "v_charge": charge})
            if updates:
                conn.execute(
                    update(table).where(table.c.id == bindparam("v_id")).values(
                        status=bindparam("v_status"), payload=bindparam("v_payload"), detail=bindparam("v_detail"),
                        fetched_at=bindparam("v_now"), claimed_until=None, claim_token="",
                        first_charged_at=bindparam("v_first"), credits_spent=table.c.credits_spent + bindparam("v_charge"),
                        calls=table.c.calls + 1),
                    updates)

    def release_lookups(self, *, endpoint: str, token: str, details: dict[str, str]) -> None:
        """Give claims back after failed calls, so another worker (or a retry) may try."""
        if not details:
            return
        with self.session() as s:
            s.connection().execute(
                update(Enrichment)
                .where(Enrichment.endpoint == endpoint, Enrichment.lookup_key == bindparam("v_key"),
                       Enrichment.claim_token == token)
                .values(status="failed", claimed_until=None, claim_token="", detail=bindparam("v_detail")),
                [{"v_key": k, "v_detail": d[:2000]} for k, d in details.items()],
            )

    def refresh_lookups(self, *, endpoint: str, token: str, keys: list[str], ttl: timedelta) -> None:
        """Keep our claims alive while their calls run (a dead worker's claims expire instead)."""
        with self.session() as s:
            s.connection().execute(
                update(Enrichment)
                .where(Enrichment.endpoint == endpoint, col(Enrichment.lookup_key).in_(keys),
                       Enrichment.claim_token == token)
                .values(claimed_until=utcnow() + ttl))

    def answers_for(self, *, endpoint: str, keys: list[str]) -> dict[str, Enrichment]:
        with self.session() as s:
            rows = s.exec(select(Enrichment).where(Enrichment.endpoint == endpoint,
                                                   col(Enrichment.lookup_key).in_(keys))).all()
        return {r.lookup_key: r for r in rows}

    def credits_spent(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(
                select(Enrichment.provider, func.coalesce(func.sum(Enrichment.credits_spent), 0)).group_by(Enrichment.provider)
            ).all()
        return {provider: int(total) for provider, total in rows}

    # ---- circuits and spend -----------------------------------------------------------------

    def open_circuit(self, *, provider: str, reason: str, detail: str, until: datetime | None) -> None:
        with self.session() as s:
            row = s.get(ProviderCircuit, provider) or ProviderCircuit(provider=provider, reason=reason, opened_at=utcnow())
            row.reason, row.detail, row.until = reason, detail[:2000], until
            s.add(row)

    def open_circuits(self, *, now: datetime) -> dict[str, ProviderCircuit]:
        with self.session() as s:
            rows = s.exec(select(ProviderCircuit)).all()
        return {r.provider: r for r in rows if r.until is None or r.until > now}

    def clear_circuits(self, *, name: str) -> list[str]:
        """Clear the circuit `name` and, for a vendor, those of its credit pools ("<name>:..."). Returns the keys cleared."""
        with self.session() as s:
            rows = s.exec(select(ProviderCircuit).where(or_(
                ProviderCircuit.provider == name, col(ProviderCircuit.provider).startswith(f"{name}:")))).all()
            for row in rows:
                s.delete(row)
            return sorted(r.provider for r in rows)

    def add_spend(self, *, vendor: str, pool: str, day: str, calls: int = 0, credits: int = 0) -> None:
        stmt = (
            self._insert(SpendDay)
            .values(vendor=vendor, pool=pool, day=day, calls=calls, credits=credits)
            .on_conflict_do_update(
                index_elements=["vendor", "pool", "day"],
                set_={"calls": SpendDay.calls + calls, "credits": SpendDay.credits + credits},
            )
        )
        with self.session() as s:
            s.connection().execute(stmt)

    def spend(self, *, vendor: str | None = None) -> list[SpendDay]:
        with self.session() as s:
            query = select(SpendDay)
            if vendor:
                query = query.where(SpendDay.vendor == vendor)
            return list(s.exec(query.order_by(col(SpendDay.day), col(SpendDay.vendor))))
