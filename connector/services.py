"""Build the shared services (ledger, limiter) the same way for the CLI, the workers and the webhook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from connector.ledger import Ledger, open_ledger
from connector.limiter import Limiter, LimitSpec, build_limiter, vendor_day
from connector.settings import Settings
from connector.sources.base import VendorContext


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    limiter: Limiter

    def record_call(self, spec: LimitSpec) -> None:
        """Count one call against the vendor's day in the ledger (durable beside Redis)."""
        now = datetime.now(timezone.utc).timestamp() + self.settings.limiter.clock_offset_seconds
        day, _ = vendor_day(spec, now)
        self.ledger.add_spend(vendor=spec.key, pool="calls", day=day, calls=1)

    def quota_seed(self, spec: LimitSpec, day: str) -> int:
        """Calls the ledger counted on that vendor day (seeds a missing Redis day key)."""
        return sum(row.calls for row in self.ledger.spend(vendor=spec.key) if row.day == day and row.pool == "calls")

    def context(self, *, realtime: bool = False) -> VendorContext:
        return VendorContext(self.settings, self.limiter, record_call=self.record_call, realtime=realtime)


def open_services(settings: Settings, *, auto_migrate: bool | None = None) -> Services:
    ledger = open_ledger(settings.ledger_url, auto_migrate=auto_migrate)
    services = Services(settings, ledger, limiter=None)  # type: ignore[arg-type]
    limiter_settings = settings.limiter
    services.limiter = build_limiter(
        limiter_settings.url,
        prefix=limiter_settings.prefix,
        lease_seconds=limiter_settings.lease_seconds,
        clock_offset_seconds=limiter_settings.clock_offset_seconds,
        unreachable_wait_seconds=limiter_settings.unreachable_wait_seconds,
        quota_seed=services.quota_seed,
    )
    return services
