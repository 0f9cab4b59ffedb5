"""Per-field decisions: compare in canonical form, check the field's limits, apply the policy.

Canonical form is the value as the CRM would store it: converted to the field's type, cut to its
length and rounded to its scale. So "1192" against 1192, or a name we truncated last night, is
"unchanged", not a rewrite every night.

A value the CRM would refuse (outside a restricted picklist, outside a number field's range) is
refused here, for its field alone, as bad_value: sent along, it would make the CRM reject the
whole record, every other field of the lead with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import partial
from typing import Any

from connector.mapping import Candidate, Policy
from connector.models import CrmField
from connector.redaction import redact
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
            return _round(number, field.scale)
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


def _round(number: float, scale: int | None) -> float:
    """Half up to the field's scale, as the CRM rounds on save (6 places when it is unknown)."""
    if scale is None:
        return round(number, 6)
    with localcontext() as context:
        context.prec = 400  # a float has at most 309 integer digits: quantize never overflows
        return float(Decimal(repr(number)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP))


SHOWN_VALUES = 20  # allowed values listed in a reason; a long picklist is summarised


def _show(value: Any) -> str:
    text = str(value)
    return repr(text[:60] + ("..." if len(text) > 60 else "")) if isinstance(value, str) else text[:60]


def _range(low: Decimal | None, high: Decimal | None) -> str:
    def shown(bound: Decimal) -> str:
        return f"{bound.normalize():,f}"

    if low is not None and high is not None:
        return f"{shown(low)} to {shown(high)}"
    return f"at least {shown(low)}" if low is not None else f"at most {shown(high)}"  # type: ignore[arg-type]


def fit_problem(value: Any, field: CrmField) -> str | None:
    """Why the CRM would refuse `value` (already canonical) for `field`, or None when it fits.

    The reason names the field, what is wrong and what the field allows, so a person can fix the
    mapping (map_values, a deeper path) or the CRM (add the picklist value)."""
    if value is None:
        return None
    kind = field.type.lower()
    if kind in INTEGER_TYPES | DECIMAL_TYPES and isinstance(value, (int, float)) and not isinstance(value, bool):
        number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
        low, high = field.min_value, field.max_value
        if (low is not None and number < low) or (high is not None and number > high):
            return redact(f"{field.name}: {_show(value)} is outside the field's range ({_range(low, high)})")
        return None
    if field.restricted_picklist and isinstance(value, str):
        parts = [p.strip() for p in value.split(";") if p.strip()] if kind == "multipicklist" else [value]
        refused = [p for p in parts if p not in field.picklist_values]
        if not refused:
            return None
        allowed = ", ".join(field.picklist_values[:SHOWN_VALUES]) or "none"
        if len(field.picklist_values) > SHOWN_VALUES:
            allowed += f", ... ({len(field.picklist_values)} in all)"
        folded = {v.casefold(): v for v in field.picklist_values}
        hint = next((f" (did you mean {folded[p.casefold()]!r}?)" for p in refused if p.casefold() in folded), "")
        return redact(f"{field.name}: {_show(refused[0])} is not an allowed value of this restricted picklist "
                      f"(allowed: {allowed}){hint}; translate it with map_values, or add it to the picklist "
                      "in the CRM")
    return None


def refusal(value: Any, field: CrmField) -> str | None:
    """Why `field` cannot take a provider's (transformed) value, or None when it can."""
    try:
        return fit_problem(canonical(value, field), field)
    except BadValue as exc:
        return f"{field.name}: {exc}"


def accepts(field: CrmField) -> Callable[[Any], str | None]:
    """`refusal` bound to one field: what `FieldRule.pick(accept=...)` takes, so a value the field
    refuses falls through to the next provider in the field's precedence."""
    return partial(refusal, field=field)


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
        named = candidate.error if candidate.error.startswith(f"{field.name}: ") else f"{field.name}: {candidate.error}"
        return Decision(write=False, reason=BAD_VALUE, detail=named, provider=candidate.provider, **base)
    try:
        new = canonical(candidate.value, field)
    except BadValue as exc:
        return Decision(
            write=False, reason=BAD_VALUE, detail=f"{field.name}: {exc}", provider=candidate.provider, **base
        )
    if new is None:
        return Decision(write=False, reason=NO_VALUE, provider=candidate.provider, **base)
    problem = fit_problem(new, field)
    if problem is not None:  # the CRM would reject the whole record: refuse this field alone
        return Decision(write=False, reason=BAD_VALUE, detail=problem, provider=candidate.provider, **base)
    current_c = _safe_canonical(current, field)
    common = {"new_value": new, "provider": candidate.provider, **base, "rule": candidate.path}
    if current_c == new:
        return Decision(write=False, reason=UNCHANGED, **common)
    if current_c is None:
        return Decision(write=True, reason=FILL, **common)
    if policy == "overwrite":
        return Decision(write=True, reason=OVERWRITE, **common)
    return Decision(write=True, reason=UPDATE_OURS, **common)
