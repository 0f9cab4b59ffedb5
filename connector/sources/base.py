"""The Source protocol: what the pipeline needs from a CRM, and nothing vendor-specific."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from connector.limiter import Limiter, LimitSpec
from connector.models import CrmField, CrmLead, RecordUpdate, WriteResult
from connector.settings import Settings


@dataclass(frozen=True)
class VendorContext:
    """What every source and provider is built with, besides its own settings."""

    settings: Settings
    limiter: Limiter
    # Called after each call counted against a vendor's daily quota, so the ledger keeps the
    # day's spend (the Redis day key is seeded from it after a restart).
    record_call: Callable[[LimitSpec], None] | None = None
    # True for the real-time webhook: it may spend the share of each quota kept for it.
    realtime: bool = False


class Source(Protocol):
    name: ClassVar[str]
    write_batch_size: int

    def describe(self, *, deadline: float | None) -> dict[str, CrmField]:
        """The CRM object's fields (type, length, writable)."""
        ...

    def poll_new(
        self, *, since: datetime, fields: Sequence[str], deadline: float | None
    ) -> Iterator[list[CrmLead]]:
        """Pages of leads created at or after `since`, oldest first (ties in a stable order)."""
        ...

    def read(self, *, record_ids: Sequence[str], fields: Sequence[str], deadline: float | None) -> list[CrmLead]:
        """Current values of the given records (missing ones are left out)."""
        ...

    def write_batch(self, *, updates: Sequence[RecordUpdate], deadline: float | None) -> list[WriteResult]:
        """Write at most `write_batch_size` records; one result per record, in order.
        Must not resend on its own after a transient failure (the CRM may have applied the
        write): raise TransientError and let the pipeline re-read and confirm."""
        ...

    def close(self) -> None: ...


def chunked(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
