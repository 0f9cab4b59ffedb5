"""Credit budgets: the periods a paid call counts against, and the balance read before a night.

Three kinds of period per credit pool, all counted in the ledger's `credit_budget` table so every
worker, the webhook and the admin commands share one count:

- "month:<YYYY-MM>" (UTC): every paid call, whatever started it; capped by
  `providers.<vendor>.budgets.<pool>.per_month`.
- "night:<YYYY-MM-DD>": the paid calls of that night's runs; capped by `...per_night`.
- "balance:<YYYY-MM-DD>": for a vendor with a balance endpoint (Slintel's api-credits), the
  credits it reported before the night. Only the night's calls count against it: a webhook call
  in the night is not, and if it spends the last credits the vendor's own "no credits" answer
  stops the provider.

A worker reserves a call's most expensive cost before it (`max_credits_per_call`) and gives back
what the answer did not cost (no match, a re-ask inside the no-recharge window, a failure).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.errors import ConnectorError, QuotaExhausted
from connector.ledger import BudgetPeriod, Ledger
from connector.providers.base import Provider
from connector.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budgets:
    """The budgets of one run's paid calls. `night`: the night's date for a batch run;
    `realtime`: the webhook, which may spend the `limiter.realtime_reserve` share of the month's
    budget that batch runs leave to it."""

    settings: Settings
    night: str | None = None
    realtime: bool = False

    def periods(self, provider: Provider) -> list[BudgetPeriod]:
        if provider.credit_pool is None:
            return []
        return self.pool_periods(provider.credit_pool, reads_balance=callable(getattr(provider, "remaining_credits", None)))

    def pool_periods(self, pool: str, *, reads_balance: bool) -> list[BudgetPeriod]:
        section, _, short = pool.partition(":")
        budget = getattr(getattr(self.settings.providers, section, None), "budgets", {}).get(short)
        setting = f"providers.{section}.budgets.{short}"
        now = datetime.now(UTC)
        month = budget.per_month if budget else None
        if month is not None and not self.realtime:
            month = int(month * (1 - self.settings.limiter.realtime_reserve))
        periods = [BudgetPeriod(f"month:{now:%Y-%m}", month, f"{setting}.per_month")]
        if self.night is not None:
            periods.append(BudgetPeriod(f"night:{self.night}", budget.per_night if budget else None,
                                        f"{setting}.per_night"))
            if reads_balance:
                periods.append(BudgetPeriod(f"balance:{self.night}", None,
                                            f"the {section} credit balance read before the night"))
        return periods


def budget_refusal(pool: str, period: BudgetPeriod) -> QuotaExhausted:
    kind = period.period.split(":", 1)[0]
    return QuotaExhausted(
        f"{pool}: the {kind} budget is spent ({period.setting}); the lead waits for the next "
        f"{'month' if kind == 'month' else 'night'} or `connector resync --deferred --reason credits_exhausted`",
        reason="credits_exhausted",
    )


def read_balances(providers: dict[str, Provider], *, deadline: float | None) -> dict[str, int]:
    """Each credit pool's balance, for the vendors that report one (a free call). A balance that
    cannot be read is left out: the vendor's own answers will tell."""
    balances: dict[str, int] = {}
    for name, provider in providers.items():
        pool = provider.credit_pool
        read = getattr(provider, "remaining_credits", None)
        if pool is None or pool in balances or not callable(read):
            continue
        try:
            balances[pool] = max(int(read(deadline=deadline)), 0)
        except ConnectorError as exc:
            log.warning("%s: could not read the credit balance (%s)", name, exc.message)
    return balances


def read_balances_before_night(ledger: Ledger, providers: dict[str, Provider], *, night: str,
                               window_end: datetime, deadline: float | None) -> dict[str, int]:
    """Read each pool's balance once before the night (first reader wins, so every worker and a
    second source share one figure). A pool at zero gets a circuit until the window ends: no call
    is made for it tonight. Returns {pool: balance in force}."""
    now = datetime.now(UTC)
    balances = {}
    for pool, available in read_balances(providers, deadline=deadline).items():
        balances[pool] = ledger.set_budget_cap(pool=pool, period=f"balance:{night}", cap=available, now=now)
        if balances[pool] <= 0:
            ledger.open_circuit(provider=pool, reason="credits_exhausted",
                                detail=f"{pool} reported no credits available before the night", until=window_end)
    return balances


def headroom(ledger: Ledger, pool: str, periods: list[BudgetPeriod],
             balance: int | None = None) -> tuple[int | None, str]:
    """Credits the pool may still spend under its budgets (None: unlimited) and what limits it.
    `balance`: a balance just read from the vendor, for a night whose balance row is not written yet."""
    rows = {row.period: row for row in ledger.budget_use(pool=pool)}
    left: int | None = None
    limit = "no budget"
    for period in periods:
        row = rows.get(period.period)
        cap = period.cap if period.cap is not None else (row.cap if row else None)
        if cap is None and period.period.startswith("balance:"):
            cap = balance
        if cap is None:
            continue
        remaining = max(cap - (row.used if row else 0), 0)
        if left is None or remaining < left:
            left, limit = remaining, period.setting
    return left, limit
