"""Per-field decisions: compare in canonical form and apply the overwrite policy.

Canonical form is the value as the CRM would store it: converted to the field's type and cut to
its length. So "1192" against 1192, or a name we truncated last night, is "unchanged", not a
rewrite every night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from connector.mapping import Candidate, Policy
from connector.models import CrmField
from connector.transforms import NoArgs, TransformFailed, is_empty, to_float, to_int

INTEGER_TYPES = {"int", "integer", "number_integer"}
DECIMAL_TYPES = {"double", "currency", "percent", "number", "float"}
BOOLEAN_TYPES = {"boolean", "bool", "booleancheckbox"}


class BadValue(ValueError):
    """The value cannot be stored in the field (type mismatch)."""


def canonical(value: Any, field: CrmField) -> Any:
    """The value as `field` would hold it; None for an empty value. Raises BadValue."""
    if is_empty(value):
        return None
    kind = field.type.lower()
    try:
        if kind in INTEGER_TYPES:
            return to_int(value, NoArgs())
        if kind in DECIMAL_TYPES:
            number = to_float(value, NoArgs())
            if not math.isfinite(number):
                raise BadValue(f"{value!r} is not a finite number")
            return round(number, 6)
    except TransformFailed as exc:
        raise BadValue(str(exc)) from None
    if kind in BOOLEAN_TYPES:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise BadValue(f"{str(value)[:40]!r} is not true or false")
    if isinstance(value, (dict, list)):
        raise BadValue("an object or list cannot be stored in a text field; use join or a deeper path")
    text = str(value).strip()
    if field.length:
        text = text[: field.length].rstrip()  # a cut may end in a space: strip again, or it is rewritten nightly
    return text or None


@dataclass(frozen=True)
class Decision:
    field: str
    write: bool
    reason: str
    new_value: Any = None
    current_value: Any = None
    provider: str | None = None
    rule: str | None = None
    detail: str = ""


# Reasons, as the ledger and `explain` show them.
FILL = "fill_blank"  # the field was empty
UPDATE_OURS = "update_ours"  # the field held our last value; the provider's answer changed
OVERWRITE = "overwrite"  # policy overwrite, value differs
UNCHANGED = "unchanged"
HUMAN_EDITED = "human_edited"
KEPT_EXISTING = "kept_existing"  # fill_blank and the field already has a value
NO_VALUE = "no_value"  # no provider gave a value; empty answers never clear a field
BAD_VALUE = "bad_value"
NOT_WRITABLE = "not_writable"


def protected_reason(
    *, policy: Policy, field: CrmField, current: Any, last_written: Any | None
) -> str | None:
    """Why a field must be left alone whatever the providers say (so no call is needed), or None."""
    if not field.updateable:
        return NOT_WRITABLE
    try:
        current_c = canonical(current, field)
    except BadValue:
        current_c = current
    if current_c is None or policy == "overwrite":
        return None
    if policy == "fill_blank":
        return KEPT_EXISTING
    ours = _safe_canonical(last_written, field)
    if ours is None or ours != current_c:
        return HUMAN_EDITED
    return None


def _safe_canonical(value: Any, field: CrmField) -> Any:
    try:
        return canonical(value, field)
    except BadValue:
        return None


def decide(
    *,
    field: CrmField,
    policy: Policy,
    candidate: Candidate | None,
    current: Any,
    last_written: Any | None,
    rule: str,
) -> Decision:
    """What to do with one field of one lead."""
    base = {"field": field.name, "current_value": current, "rule": rule}
    protected = protected_reason(policy=policy, field=field, current=current, last_written=last_written)
    if protected is not None:
        detail = {
            HUMAN_EDITED: "the field holds a value we did not write (a person's or another tool's)",
            KEPT_EXISTING: "policy fill_blank: the field already has a value",
            NOT_WRITABLE: "the CRM says this field is not updateable",
        }[protected]
        return Decision(write=False, reason=protected, detail=detail, **base)
    if candidate is None:
        return Decision(write=False, reason=NO_VALUE, detail="no provider gave a value", **base)
    if candidate.error:
        return Decision(write=False, reason=BAD_VALUE, detail=candidate.error, provider=candidate.provider, **base)
    try:
        new = canonical(candidate.value, field)
    except BadValue as exc:
        return Decision(
            write=False, reason=BAD_VALUE, detail=str(exc), provider=candidate.provider, **base
        )
    if new is None:
        return Decision(write=False, reason=NO_VALUE, provider=candidate.provider, **base)
    current_c = _safe_canonical(current, field)
    common = {"new_value": new, "provider": candidate.provider, **base, "rule": candidate.path}
    if current_c == new:
        return Decision(write=False, reason=UNCHANGED, **common)
    if current_c is None:
        return Decision(write=True, reason=FILL, **common)
    if policy == "overwrite":
        return Decision(write=True, reason=OVERWRITE, **common)
    return Decision(write=True, reason=UPDATE_OURS, **common)
