"""Mapping preflight against the live CRM schema, before any credit is spent.

Checks per mapped field: it exists, it is writable, the transform's output type fits the
field's type, an explicit truncate is within the field's length, and every value seen in cached
provider answers for its paths fits (picklist values allowed, numbers parse). Each problem names
the file, the field and the fix.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from connector.decisions import DECIMAL_TYPES, INTEGER_TYPES, canonical, refusal
from connector.errors import ConnectorError
from connector.ledger.tables import Enrichment
from connector.mapping import FieldRule, Mapping
from connector.models import CrmField
from connector.pipeline import build_runtime

NUMERIC_TRANSFORMS = {"to_int", "to_float"}
TEXT_TRANSFORMS = {"join", "truncate", "lower", "upper", "strip", "to_string"}
SAMPLE_ANSWERS = 200


def _static_problems(mapping: Mapping, target: str, rule: FieldRule, crm_field: CrmField) -> list[str]:
    where = f"{mapping.file}: field '{target}'"
    kind = crm_field.type.lower()
    names = [t.name for t in rule.transforms]
    problems = []
    if kind in INTEGER_TYPES | DECIMAL_TYPES and names and names[-1] in TEXT_TRANSFORMS:
        problems.append(f"{where} is a {kind} field but the last transform '{names[-1]}' makes text "
                        "(fix: end with to_int or to_float)")
    for transform in rule.transforms:
        length = getattr(transform.args, "length", None)
        if transform.name == "truncate" and crm_field.length and length and length > crm_field.length:
            problems.append(f"{where}: truncate to {length} but the CRM field holds {crm_field.length} "
                            f"(fix: truncate: {{length: {crm_field.length}}} or drop it; values are cut to the field anyway)")
    return problems


def _sampled_problems(services: Any, mapping: Mapping, target: str, rule: FieldRule, crm_field: CrmField) -> list[str]:
    """Values seen in cached answers that the field would refuse."""
    problems: list[str] = []
    seen: set[str] = set()
    with services.ledger.session() as s:
        for path in rule.paths:
            rows = s.exec(select(Enrichment.payload).where(Enrichment.provider == path.provider,
                                                           Enrichment.status == "matched").limit(SAMPLE_ANSWERS)).all()
            for payload in rows:
                candidate = rule.pick({path.provider: payload})
                if candidate is None:
                    continue
                problem = candidate.error or refusal(candidate.value, crm_field)
                if problem is not None:
                    if problem not in seen:
                        seen.add(problem)
                        problems.append(f"{mapping.file}: field '{target}': a cached {path.provider} answer gives "
                                        f"{str(candidate.value)[:40]!r} from {path.text}, which the field refuses "
                                        f"({problem}) (fix: add a transform such as to_int or map_values, add the "
                                        "value in the CRM, or map another path)")
                    continue
                value = canonical(candidate.value, crm_field)
                if crm_field.type.lower() == "picklist" and crm_field.picklist_values and str(value) not in crm_field.picklist_values:
                    if str(value) not in seen:
                        seen.add(str(value))
                        problems.append(f"{mapping.file}: field '{target}': value {str(value)[:60]!r} from "
                                        f"{path.text} is not one of the picklist's values; the CRM stores it (the "
                                        "picklist is not restricted) but reports will not group it (fix: add it to "
                                        "the picklist in the CRM, or translate it with map_values)")
    return problems


def check_mapping_against_schema(settings: Any, services: Any, source: str) -> list[str]:
    """Every problem of `source`'s mapping against the live schema; empty when it fits."""
    try:
        rt = build_runtime(settings, services.ledger, services.limiter, source, context=services.context())
    except ConnectorError as exc:
        return [str(exc)]
    try:
        problems: list[str] = []
        for target, rule in rt.mapping.fields.items():
            crm_field = rt.crm_fields[target]
            problems += _static_problems(rt.mapping, target, rule, crm_field)
            problems += _sampled_problems(services, rt.mapping, target, rule, crm_field)
        return problems
    finally:
        rt.close()
