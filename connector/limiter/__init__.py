"""One limiter protocol for every vendor call; the backend is chosen by the `limiter.url` setting.

A `LimitSpec` holds what one vendor key (vendor + credential) allows: requests per sliding
window, calls in flight (leases), a daily quota counted on the vendor's own clock with a share
reserved for the real-time webhook, and a shared cooldown after a 429. `acquire` blocks until
every part grants, or raises `WindowClosed` when the deadline (the night's end) comes first, or
`QuotaExhausted` when the day's quota is spent. The grant is a `Permit` whose release frees its
in-flight slot and stamps its window slot with the time the call ended (the vendor stamps
arrival, later than our grant by the network's latency, so counting from the end keeps both
views of the window within the limit).

Backends: `memory://` (threads of one process, the one-box default) and `redis://host:port/db`
(every worker, the webhook and the admin commands share one budget; each acquire is one atomic
Lua script that reads the Redis server's clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from connector.errors import ConfigError


@dataclass(frozen=True)
class LimitSpec:
    key: str  # vendor and credential tag, e.g. "sixsense:1a2b3c4d5e"
    requests: int
    per_seconds: float  # already divided by the time scale
    max_in_flight: int | None = None
    daily_quota: int | None = None
    quota_timezone: str = "UTC"  # the vendor's clock: its day starts at midnight there
    # Share of the daily quota the nightly batch leaves to the real-time webhook.
    realtime_reserve: float = 0.0
    # Seconds in a vendor "day" (86400 / time scale): tests cross midnight without waiting a day.
    day_seconds: float = 86400.0


class Permit(Protocol):
    def release(self) -> None: ...

    def __enter__(self) -> Permit: ...

    def __exit__(self, *exc: object) -> None: ...


class Limiter(Protocol):
    def acquire(self, spec: LimitSpec, *, deadline: float | None = None, realtime: bool = False) -> Permit:
        """Block until `spec` allows one more call; `deadline` is a wall-clock epoch second.
        `realtime` callers (the webhook) may use the reserved share of the daily quota."""
        ...

    def pause(self, key: str, seconds: float) -> None:
        """Stop every caller of `key` for `seconds` (extends, never shortens, a cooldown)."""
        ...

    def grants(self, key: str) -> int:
        """How many calls were granted for `key` (this process, or for Redis everyone)."""
        ...

    def used_today(self, spec: LimitSpec) -> int:
        """Calls counted against today's quota on the vendor's clock."""
        ...


def vendor_day(spec: LimitSpec, epoch: float) -> tuple[str, float]:
    """The vendor's current day label and the epoch second it ends, on its own clock.

    With a compressed day (day_seconds < 86400) days are numbered from midnight of the vendor's
    time zone, scaled, so tests can cross midnight without waiting."""
    zone = ZoneInfo(spec.quota_timezone)
    if spec.day_seconds >= 86400:
        local = datetime.fromtimestamp(epoch, zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1)).replace(tzinfo=None)
        end_epoch = datetime.combine(end.date(), end.time(), zone).timestamp()
        return start.strftime("%Y-%m-%d"), end_epoch
    offset = datetime.fromtimestamp(epoch, zone).utcoffset() or timedelta(0)
    local_epoch = epoch + offset.total_seconds()
    index = int(local_epoch // spec.day_seconds)
    return f"d{index}", (index + 1) * spec.day_seconds - offset.total_seconds()


def batch_quota(spec: LimitSpec, realtime: bool) -> int | None:
    if spec.daily_quota is None:
        return None
    if realtime:
        return spec.daily_quota
    return int(spec.daily_quota * (1 - spec.realtime_reserve))


def build_limiter(url: str, **options: object) -> Limiter:
    if url.startswith("memory://"):
        return MemoryLimiter(clock_offset_seconds=float(options.get("clock_offset_seconds", 0.0)))  # type: ignore[arg-type]
    if url.startswith(("redis://", "rediss://", "unix://")):
        from connector.limiter.redis import RedisLimiter  # noqa: PLC0415

        return RedisLimiter(url, **options)  # type: ignore[arg-type]
    raise ConfigError(
        f"limiter.url must start with memory:// or redis://, got '{url.split('://')[0]}://...'",
        fix="use memory:// on one box, redis://host:6379/0 for many workers",
    )


__all__ = ["Limiter", "LimitSpec", "Permit", "build_limiter", "vendor_day", "batch_quota"]

from connector.limiter.memory import MemoryLimiter  # noqa: E402  (after the names it imports)

__all__ += ["MemoryLimiter"]
