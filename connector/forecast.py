"""The dry run's forecast: calls per vendor, credits per pool, and the time at the configured limits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from connector.budgets import Budgets, headroom
from connector.pipeline import LeadPreview, SourceRun
from connector.registry import PROVIDER_SETTINGS
from connector.settings import Settings


@dataclass
class Forecast:
    leads: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # per pool: credits the budgets and balances still allow tonight (None: unlimited), and what limits it
    credits_left: dict[str, tuple[int | None, str]] = field(default_factory=dict)

    def credits_short(self) -> dict[str, int]:
        """Credits needed beyond what each pool may spend tonight."""
        return {pool: need - left for pool, need in self.credits.items()
                if (left := self.credits_left.get(pool, (None, ""))[0]) is not None and need > left}

    @property
    def total_seconds(self) -> float:
        # Vendors are called in parallel: the slowest one sets the pace.
        return max(self.seconds.values(), default=0.0)


def forecast(settings: Settings, source: str, run: SourceRun, *, night: str | None = None) -> Forecast:
    """`night`: the date of the night planned for, whose budgets (and the vendors' balances) the
    credits are set against."""
    previews: list[LeadPreview] = run.preview
    result = Forecast(leads=len(previews))
    for provider, _key in run.forecast_calls:
        result.calls[provider] = result.calls.get(provider, 0) + 1
    for preview in previews:
        for pool, credits in preview.needs_credits.items():
            result.credits[pool] = result.credits.get(pool, 0) + credits
    source_settings = getattr(settings.sources, source)
    writers = sum(1 for p in previews if p.needs_credits or any(d.write for d in p.decisions))
    result.calls[source] = 1 + math.ceil(len(previews) / 2000) + math.ceil(writers / source_settings.write_batch_size)
    for vendor, calls in result.calls.items():
        section = getattr(settings.sources, vendor, None) or getattr(settings.providers, PROVIDER_SETTINGS.get(vendor, vendor))
        limit = section.rate_limit
        result.seconds[vendor] = calls * limit.per_seconds / limit.requests
    budgets = Budgets(settings, night=night)
    for pool in result.credits:
        periods = budgets.pool_periods(pool, reads_balance=pool in run.balances)
        result.credits_left[pool] = headroom(run.rt.ledger, pool, periods, balance=run.balances.get(pool))
    return result
