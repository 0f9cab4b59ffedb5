"""Credit accounting in the ledger: which records a pool has charged (and when, for the vendor's
no-recharge window), and budgets reserved before paid calls, shared by every worker."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import Session, col, select

from connector.ledger.tables import CreditBudgetUse, CreditCharge


@dataclass(frozen=True)
class BudgetPeriod:
    """One budget a paid call counts against: its period key and cap (None: the cap stored on the
    row, e.g. a balance read before the night, or unlimited)."""

    period: str
    cap: int | None
    setting: str = ""  # where the cap comes from, for the error a refusal gives


class _HasSessions(Protocol):
    def session(self) -> AbstractContextManager[Session]: ...
    def _insert(self, table: Any) -> Any: ...


class CreditAccounts:
    """Mixed into Ledger."""

    def charge_records(self: _HasSessions, *, pool: str, keys: list[str], window: timedelta,
                       now: datetime) -> set[str]:
        """Count a charge for each record key, unless it was charged within `window` (0: every
        answer is charged). Returns the keys charged now. Atomic per key across workers."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return set()
        table = CreditCharge.__table__  # type: ignore[attr-defined]
        stmt = self._insert(CreditCharge).values(
            [{"pool": pool, "charge_key": k, "first_charged_at": now, "charges": 1} for k in unique])
        stmt = stmt.on_conflict_do_update(
            index_elements=["pool", "charge_key"],
            set_={"first_charged_at": stmt.excluded.first_charged_at, "charges": table.c.charges + 1},
            where=table.c.first_charged_at <= now - window,
        ).returning(table.c.charge_key)
        with self.session() as s:
            return {row[0] for row in s.connection().execute(stmt)}

    def charged_since(self: _HasSessions, *, pool: str, keys: list[str], since: datetime) -> set[str]:
        """The keys whose charge started after `since` (a new ask for them is free)."""
        if not keys:
            return set()
        with self.session() as s:
            rows = s.exec(select(CreditCharge.charge_key).where(
                CreditCharge.pool == pool, col(CreditCharge.charge_key).in_(keys),
                CreditCharge.first_charged_at > since)).all()
        return set(rows)

    def reserve_credits(self: _HasSessions, *, pool: str, periods: list[BudgetPeriod], wanted: int,
                        now: datetime) -> tuple[int, BudgetPeriod | None]:
        """Reserve up to `wanted` credits in every period at once. Returns (granted, the period
        that limited the grant or None). One transaction: the rows are locked (PostgreSQL) or the
        database is (SQLite's write lock, taken by the first insert), so two workers never both
        spend the last credit."""
        if wanted <= 0 or not periods:
            return max(wanted, 0), None
        table = CreditBudgetUse.__table__  # type: ignore[attr-defined]
        names = [p.period for p in periods]
        with self.session() as s:
            conn = s.connection()
            conn.execute(self._insert(CreditBudgetUse).values(
                [{"pool": pool, "period": p.period, "cap": p.cap, "used": 0, "updated_at": now} for p in periods]
            ).on_conflict_do_nothing(index_elements=["pool", "period"]))
            query = select(table.c.period, table.c.cap, table.c.used).where(
                table.c.pool == pool, table.c.period.in_(names))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            rows = {r.period: r for r in conn.execute(query)}
            granted, limited_by = wanted, None
            for period in periods:
                row = rows[period.period]
                cap = period.cap if period.cap is not None else row.cap
                if cap is not None and cap - row.used < granted:
                    granted, limited_by = max(cap - row.used, 0), period
                if period.cap is not None and row.cap != period.cap:
                    conn.execute(update(table).where(table.c.pool == pool, table.c.period == period.period)
                                 .values(cap=period.cap))
            if granted:
                conn.execute(update(table).where(table.c.pool == pool, table.c.period.in_(names))
                             .values(used=table.c.used + granted, updated_at=now))
        return granted, limited_by

    def release_credits(self: _HasSessions, *, pool: str, periods: list[BudgetPeriod], unused: int,
                        now: datetime) -> None:
        """Give back reserved credits the calls did not cost (no-match, free re-ask, failure); a
        negative `unused` adds what the answers cost beyond the reservation."""
        if unused == 0 or not periods:
            return
        table = CreditBudgetUse.__table__  # type: ignore[attr-defined]
        with self.session() as s:
            s.connection().execute(update(table).where(
                table.c.pool == pool, table.c.period.in_([p.period for p in periods])
            ).values(used=table.c.used - unused, updated_at=now))

    def set_budget_cap(self: _HasSessions, *, pool: str, period: str, cap: int, now: datetime) -> int:
        """Record a cap for a period once (the first reader of a night's balance wins); returns
        the cap in force."""
        with self.session() as s:
            conn = s.connection()
            conn.execute(self._insert(CreditBudgetUse).values(
                pool=pool, period=period, cap=cap, used=0, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["pool", "period"]))
            row = s.get(CreditBudgetUse, (pool, period))
            assert row is not None
            if row.cap is None:
                row.cap = cap
                s.add(row)
            return row.cap

    def budget_use(self: _HasSessions, *, pool: str | None = None) -> list[CreditBudgetUse]:
        with self.session() as s:
            query = select(CreditBudgetUse)
            if pool:
                query = query.where(CreditBudgetUse.pool == pool)
            return list(s.exec(query.order_by(col(CreditBudgetUse.period).desc(), col(CreditBudgetUse.pool))))


