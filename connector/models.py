"""Plain typed records passed between the sources, the providers and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class CrmField:
    """One writable (or not) field of a CRM object, as the CRM describes it.

    The limits are the ones the CRM enforces on a write (it refuses the whole record otherwise),
    so the connector refuses a value that breaks one for that field alone (bad_value)."""

    name: str
    type: str  # string, textarea, picklist, email, url, phone, int, double, currency, percent, boolean, ...
    length: int | None = None
    updateable: bool = True
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False  # the CRM refuses a value outside picklist_values
    min_value: Decimal | None = None  # numbers: the range the CRM accepts (None: unbounded)
    max_value: Decimal | None = None
    scale: int | None = None  # decimals the CRM keeps (it rounds the rest); None: as given


@dataclass(frozen=True)
class CrmLead:
    """A lead as the CRM holds it now: its id, creation time and the field values we read."""

    record_id: str
    created_at: datetime
    values: dict[str, Any]


@dataclass(frozen=True)
class LeadIdentity:
    """What providers may use to find a lead; vendor-neutral names, filled through the mapping."""

    email: str = ""
    country: str = ""
    company: str = ""
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    website: str = ""
    lead_source: str = ""
    industry: str = ""
    linkedin_url: str = ""
    ip_address: str = ""


IDENTITY_KEYS: tuple[str, ...] = tuple(LeadIdentity.__dataclass_fields__)


@dataclass(frozen=True)
class RecordUpdate:
    record_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class WriteResult:
    """The CRM's answer for one record of a batch write."""

    record_id: str
    ok: bool
    reason: str = ""
    message: str = ""
    fields: tuple[str, ...] = ()
    retryable: bool = False


@dataclass
class ProviderAnswer:
    """A provider's payload for one lead, or a no-match; `credits` is what this answer cost."""

    provider: str
    payload: dict[str, Any] | None
    credits: int = 0
    cached: bool = False
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def matched(self) -> bool:
        return self.payload is not None
