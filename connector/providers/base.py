"""The Provider protocol: one enrichment lookup, vendor-neutral on the outside."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Protocol

from connector.models import LeadIdentity


class Provider(Protocol):
    name: ClassVar[str]
    endpoint: str  # "provider:endpoint", the cache and claim namespace
    credit_pool: str | None  # None: the lookup costs no credit
    charge_window: timedelta | None  # a re-fetch inside it is not charged again
    cache_ttl: timedelta  # answers younger than this are reused without a call

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        """The normalised key this lookup is paid and cached by; None if the lead lacks it."""
        ...

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        """The vendor's payload. Raises NoMatch (with the vendor's own signal in its message)
        or another ConnectorError subclass."""
        ...

    def close(self) -> None: ...
