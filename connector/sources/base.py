"""The Source protocol: what the pipeline needs from a CRM, and nothing vendor-specific."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from connector.errors import InvalidRecordId
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
        """Current values of the given records (missing ones are left out). A malformed id is
        InvalidRecordId before any request (see RecordIdForm)."""
        ...

    def write_batch(self, *, updates: Sequence[RecordUpdate], deadline: float | None) -> list[WriteResult]:
        """Write at most `write_batch_size` records; one result per record, in order (a record
        with a malformed id fails alone, unsent).
        Must not resend on its own after a transient failure (the CRM may have applied the
        write): raise TransientError and let the pipeline re-read and confirm."""
        ...

    def close(self) -> None: ...


def chunked(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class RecordIdForm:
    """What one CRM's record ids look like. A malformed id is refused before it reaches the CRM,
    whose answer (a 400 about the query, or an empty result) would not say what is wrong."""

    source: str
    pattern: re.Pattern[str]
    expected: str  # for the message, e.g. "15 or 18 letters and digits, like 00Q5e000001AbCdEAK"

    def error(self, record_id: str, *, returned: bool = False) -> InvalidRecordId | None:
        if self.pattern.fullmatch(record_id):
            return None
        return InvalidRecordId(record_id, source=self.source, expected=self.expected, returned=returned)

    def check(self, record_ids: Iterable[str]) -> None:
        """Raise InvalidRecordId for the first malformed id given to the connector."""
        for record_id in record_ids:
            error = self.error(str(record_id))
            if error is not None:
                raise error

    def send_well_formed(self, updates: Sequence[RecordUpdate],
                         send: Callable[[list[RecordUpdate]], list[WriteResult]]) -> list[WriteResult]:
        """`send` the updates whose ids are well-formed; each malformed one fails alone, unsent,
        with the reason. One result per update, in order."""
        good = [u for u in updates if self.error(u.record_id) is None]
        sent = iter(send(good) if good else [])
        out: list[WriteResult] = []
        for update in updates:
            error = self.error(update.record_id)
            if error is not None:
                out.append(WriteResult(update.record_id, False, reason="crm_rejected", message=str(error)))
            else:
                out.append(next(sent, WriteResult(update.record_id, False, reason="crm_rejected", retryable=True,
                                                  message=f"{self.source} returned no result for this record")))
        return out

    def returned(self, record_id: str) -> str:
        """An id the CRM answered with: returned as is, or InvalidRecordId naming the settings."""
        error = self.error(record_id, returned=True)
        if error is not None:
            raise error
        return record_id
