"""The sync ledger's tables: runs, cursors, leads and their history, the enrichment cache,
every field decision and write, provider circuits and daily spend.

Every datetime is stored in UTC and read back timezone-aware, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"

    id: int | None = Field(default=None, primary_key=True)
    # "<source>:night:<date>" for the nightly run (unique: a duplicate kick-off is a no-op),
    # "<source>:manual:<uuid>" for a run started by hand.
    run_key: str = Field(unique=True, max_length=200)
    source: str = Field(index=True, max_length=50)
    kind: str = Field(max_length=20)
    status: str = Field(default="running", max_length=20)
    window_start: datetime = _ts(nullable=False)
    window_end: datetime = _ts(nullable=False)
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts()
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The poller's claim, renewed while it polls: a run still `running` whose claim expired lost
    # its poller (a killed worker), and the next kick-off or sweep takes the run over. NULL for
    # runs that poll nothing (webhook, re-sync).
    poll_claimed_until: datetime | None = _ts()


class SourceCursor(SQLModel, table=True):
    __tablename__ = "source_cursor"

    source: str = Field(primary_key=True, max_length=50)
    watermark: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Lead(SQLModel, table=True):
    __tablename__ = "lead"
    __table_args__ = (
        UniqueConstraint("source", "record_id", name="uq_lead_source_record"),
        Index("ix_lead_state_due", "source", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=50)
    record_id: str = Field(max_length=100)
    email: str = Field(default="", max_length=320, index=True)
    crm_created_at: datetime | None = _ts()
    # new, enriching, writing, done, skipped, failed, deferred
    state: str = Field(default="new", max_length=20)
    reason: str = Field(default="", max_length=50)
    detail: str = Field(default="", max_length=2000)
    retryable: bool = False
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    run_id: int | None = Field(default=None, foreign_key="sync_run.id")
    claimed_until: datetime | None = _ts()
    updated_at: datetime = _ts(nullable=False)


class LeadEvent(SQLModel, table=True):
    """The history of one lead: every state it passed through, by which entry point and run."""

    __tablename__ = "lead_event"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    run_id: int | None = Field(default=None, foreign_key="sync_run.id")
    at: datetime = _ts(nullable=False)
    via: str = Field(max_length=20)  # night, manual, webhook, resync
    state: str = Field(max_length=20)
    reason: str = Field(default="", max_length=50)
    detail: str = Field(default="", max_length=2000)


class Enrichment(SQLModel, table=True):
    """The provider answer cache, and the claim that keeps a paid lookup from being bought twice."""

    __tablename__ = "enrichment"
    __table_args__ = (UniqueConstraint("endpoint", "lookup_key", name="uq_enrichment_lookup"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=50)
    endpoint: str = Field(max_length=80)  # provider:endpoint, e.g. sixsense:people_full
    lookup_key: str = Field(max_length=500)  # normalised (lower-cased email, domain, ...)
    credit_pool: str | None = Field(default=None, max_length=80)
    # claimed (a worker is asking now), matched, no_match, failed
    status: str = Field(default="claimed", max_length=20)
    claim_token: str = Field(default="", max_length=64)
    claimed_until: datetime | None = _ts()
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    detail: str = Field(default="", max_length=2000)
    fetched_at: datetime | None = _ts()
    first_charged_at: datetime | None = _ts()
    credits_spent: int = 0
    calls: int = 0


class FieldWrite(SQLModel, table=True):
    """One field decision for one lead in one run; the decisions that write carry an idempotency key."""

    __tablename__ = "field_write"
    __table_args__ = (Index("ix_field_write_lead_field", "lead_id", "field"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    run_id: int | None = Field(default=None, foreign_key="sync_run.id")
    via: str = Field(default="night", max_length=20)
    field: str = Field(max_length=100)
    old_value: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    new_value: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    provider: str | None = Field(default=None, max_length=50)
    rule: str | None = Field(default=None, max_length=500)
    decision: str = Field(max_length=10)  # write, skip
    reason: str = Field(max_length=50)
    detail: str = Field(default="", max_length=2000)
    # hash of (source, record, field, value seen before, new value); NULL for decisions that skip
    idempotency_key: str | None = Field(default=None, unique=True, max_length=64)
    # planned, confirmed, failed (writes); recorded (skips)
    state: str = Field(max_length=20)
    error: str = Field(default="", max_length=2000)
    created_at: datetime = _ts(nullable=False)
    written_at: datetime | None = _ts()


class ProviderCircuit(SQLModel, table=True):
    """An open circuit stops every call to a provider until it is cleared (402, bad token)."""

    __tablename__ = "provider_circuit"

    provider: str = Field(primary_key=True, max_length=50)
    reason: str = Field(max_length=50)
    detail: str = Field(default="", max_length=2000)
    opened_at: datetime = _ts(nullable=False)
    # None: until an operator clears it (`connector circuits clear`); else until that time.
    until: datetime | None = _ts()


class SpendDay(SQLModel, table=True):
    """Calls and credits per provider (or CRM) and pool per day of the vendor's own clock."""

    __tablename__ = "spend_day"

    vendor: str = Field(primary_key=True, max_length=50)
    pool: str = Field(primary_key=True, max_length=80)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD on the vendor's clock
    calls: int = 0
    credits: int = 0


class CreditCharge(SQLModel, table=True):
    """When a vendor last started charging a record in a credit pool. Its no-recharge window counts
    from here, whichever endpoint of the pool asked (6sense: 30 days per normalised email across
    people/full, people and company enrichment)."""

    __tablename__ = "credit_charge"

    pool: str = Field(primary_key=True, max_length=80)
    charge_key: str = Field(primary_key=True, max_length=500)
    first_charged_at: datetime = _ts(nullable=False)
    charges: int = 0


class CreditBudgetUse(SQLModel, table=True):
    """Credits reserved and spent per pool and budget period: "night:<date>" (the night's runs),
    "month:<YYYY-MM>" (every entry point, UTC) and "balance:<date>" (the vendor's balance read
    before that night). A worker reserves before paid calls and gives back what they did not cost,
    so every worker and entry point shares one count."""

    __tablename__ = "credit_budget"

    pool: str = Field(primary_key=True, max_length=80)
    period: str = Field(primary_key=True, max_length=40)
    cap: int | None = None  # None: unlimited (counted only)
    used: int = 0
    updated_at: datetime = _ts(nullable=False)


__all__ = [
    "CreditCharge",
    "CreditBudgetUse",
    "SyncRun",
    "SourceCursor",
    "Lead",
    "LeadEvent",
    "Enrichment",
    "FieldWrite",
    "ProviderCircuit",
    "SpendDay",
    "UTCDateTime",
    "utcnow",
]
