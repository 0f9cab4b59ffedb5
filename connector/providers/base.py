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

    max_credits_per_call: int  # the most one call can cost (reserved from budgets before it)

    def lookup_key(self, identity: LeadIdentity) -> str | None:
        """The normalised key this lookup is cached and claimed by; None if the lead lacks it."""
        ...

    def credit_key(self, identity: LeadIdentity) -> str | None:
        """The key the vendor charges by, shared by every endpoint of the credit pool (its
        no-recharge window counts per pool and key, whichever endpoint asked)."""
        ...

    def credits_for(self, payload: dict[str, Any]) -> int:
        """The credits a charged answer cost."""
        ...

    def fetch(self, identity: LeadIdentity, *, deadline: float | None) -> dict[str, Any]:
        """The vendor's payload. Raises NoMatch (with the vendor's own signal in its message)
        or another ConnectorError subclass."""
        ...

    def close(self) -> None: ...


class ChargedPerAnswer:
    """The usual credit rule: a charged answer costs one credit."""

    max_credits_per_call: int = 1

    def credits_for(self, payload: dict[str, Any]) -> int:
        return 1
