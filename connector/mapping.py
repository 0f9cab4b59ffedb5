"""Mapping files: which provider answer becomes which CRM field, and under which overwrite policy.

```yaml
version: 1
source: salesforce          # the registered source this file is for
object: Lead
identity:                   # CRM fields that describe the lead to providers
  email: Email
  country: Country
fields:
  Industry:          {from: sixsense.company.industry}
  NumberOfEmployees: {from: sixsense.company.employeeCount, transform: to_int}
  SixSense_Intent_Score__c:
    from: "sixsense.scores[product=6sense].company_intent_score"
    transform: to_int
  SixSense_Segments__c: {from: sixsense.segments.names, transform: {join: {sep: ";"}}, policy: overwrite}
```

Paths are `provider.key.key`, with `[n]` for a list index and `[key=value]` to pick the first list
entry whose `key` equals `value`. A path that steps through a list without either takes its first
entry; a path that ends on a list yields the whole list (for `join`). `from` may be a list of
paths: the first that gives a non-empty value wins (per-field precedence).

Policies: `ours_only` (default: write when the field is empty or still holds the value we last
wrote), `fill_blank` (only into an empty field), `overwrite` (whenever different).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.errors import MappingError
from connector.models import IDENTITY_KEYS, LeadIdentity
from connector.transforms import REGISTRY, BoundTransform, TransformFailed, apply_chain, is_empty

Policy = Literal["ours_only", "fill_blank", "overwrite"]
POLICIES: tuple[str, ...] = ("ours_only", "fill_blank", "overwrite")

_STEP = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)?(?P<selectors>(\[[^\]]*\])*)$")
_SELECTOR = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True)
class Step:
    name: str | None
    index: int | None = None
    match: tuple[str, str] | None = None


@dataclass(frozen=True)
class ProviderPath:
    text: str
    provider: str
    steps: tuple[Step, ...]

    def resolve(self, payload: Any) -> Any:
        current = payload
        for step in self.steps:
            if step.name is not None:
                if isinstance(current, list):
                    current = current[0] if current else None
                current = current.get(step.name) if isinstance(current, dict) else None
            if step.index is not None:
                current = current[step.index] if isinstance(current, list) and -len(current) <= step.index < len(current) else None
            if step.match is not None:
                key, wanted = step.match
                found = None
                if isinstance(current, list):
                    found = next(
                        (e for e in current if isinstance(e, dict) and str(e.get(key)) == wanted), None
                    )
                current = found
            if current is None:
                return None
        return current


def parse_path(text: str) -> ProviderPath:
    """Parse `provider.a.b[0].c[key=value]`; raise ValueError with what is wrong."""
    parts = _split_dotted(text)
    if len(parts) < 2:
        raise ValueError(f"path '{text}' needs a provider and a key, like 'sixsense.company.name'")
    provider, *rest = parts
    steps: list[Step] = []
    for part in rest:
        m = _STEP.match(part)
        if not m or (m.group("name") is None and not m.group("selectors")):
            raise ValueError(f"path '{text}': '{part}' is not a key, key[n] or key[field=value]")
        name = m.group("name")
        selectors = _SELECTOR.findall(m.group("selectors"))
        if not selectors:
            steps.append(Step(name))
        for i, selector in enumerate(selectors):
            step_name = name if i == 0 else None
            if "=" in selector:
                key, _, wanted = selector.partition("=")
                if not key.strip():
                    raise ValueError(f"path '{text}': '[{selector}]' needs a key before '='")
                steps.append(Step(step_name, match=(key.strip(), wanted.strip())))
            elif re.fullmatch(r"-?\d+", selector.strip()):
                steps.append(Step(step_name, index=int(selector)))
            else:
                raise ValueError(f"path '{text}': '[{selector}]' must be a number or key=value")
    return ProviderPath(text, provider, tuple(steps))


def _split_dotted(text: str) -> list[str]:
    """Split on dots outside brackets, so `[name=a.b]` stays whole."""
    parts, depth, current = [], 0, ""
    for ch in text.strip():
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts]


@dataclass(frozen=True)
class Candidate:
    """The value a field would get, and where it came from."""

    value: Any
    provider: str
    path: str
    # Set when the path's value could not be transformed ('n/a' to_int): decide() records bad_value.
    error: str = ""


@dataclass(frozen=True)
class FieldRule:
    target: str
    paths: tuple[ProviderPath, ...]
    transforms: tuple[BoundTransform, ...]
    policy: Policy

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.provider for p in self.paths))

    @property
    def rule_text(self) -> str:
        chain = ",".join(t.name for t in self.transforms)
        return " | ".join(p.text for p in self.paths) + (f" -> {chain}" if chain else "")

    def pick(self, payloads: dict[str, Any], accept: Callable[[Any], str | None] | None = None) -> Candidate | None:
        """The first path, in precedence order, whose transformed value is not empty (and that
        `accept`, the CRM field's check, does not refuse); else the first value refused (with its
        error), else None. A refused value lets the next path, or provider, be tried."""
        failed: Candidate | None = None
        for path in self.paths:
            if path.provider not in payloads or payloads[path.provider] is None:
                continue
            raw = path.resolve(payloads[path.provider])
            try:
                value = apply_chain(self.transforms, raw)
            except TransformFailed as exc:
                failed = failed or Candidate(raw, path.provider, path.text, error=str(exc))
                continue
            if is_empty(value):
                continue
            problem = accept(value) if accept is not None else None
            if problem:
                failed = failed or Candidate(value, path.provider, path.text, error=problem)
                continue
            return Candidate(value, path.provider, path.text)
        return failed


@dataclass(frozen=True)
class Mapping:
    file: Path
    source: str
    object: str
    identity: dict[str, str]
    fields: dict[str, FieldRule]

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for rule in self.fields.values() for p in rule.providers))

    @property
    def crm_fields_to_read(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.identity.values(), *self.fields]))

    def identity_of(self, values: dict[str, Any]) -> LeadIdentity:
        found = {}
        for key, crm_field in self.identity.items():
            value = values.get(crm_field)
            found[key] = "" if value is None else str(value)
        return LeadIdentity(**found)


class _FieldDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | list[str] = Field(alias="from")
    transform: str | dict[str, Any] | list[str | dict[str, Any]] | None = None
    policy: Policy = "ours_only"

    @field_validator("from_")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("'from' lists no path; give at least one provider path")
        return value


class _MappingDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    source: str
    object: str
    identity: dict[str, str]
    fields: dict[str, _FieldDoc]

    @field_validator("identity")
    @classmethod
    def _known_identity(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(IDENTITY_KEYS))
        if unknown:
            raise ValueError(f"unknown identity key(s) {unknown}; known: {list(IDENTITY_KEYS)}")
        if "email" not in value:
            raise ValueError("identity needs 'email: <the CRM's email field>'")
        return value


def _line_of(root: yaml.Node | None, keys: list[Any]) -> int | None:
    """The 1-based line of the deepest key in `keys` that exists in the YAML node tree."""
    node, line = root, None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(key):
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            break
    return line


def _bind_transforms(raw: Any, where: str) -> tuple[BoundTransform, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    bound: list[BoundTransform] = []
    for item in items:
        if isinstance(item, str):
            name, args = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, args = next(iter(item.items()))
            args = args or {}
        else:
            raise ValueError(f"{where}: a transform is a name or {{name: {{args}}}}, got {item!r}")
        spec = REGISTRY.get(name)
        if spec is None:
            raise ValueError(f"{where}: unknown transform '{name}'; known: {', '.join(sorted(REGISTRY))}")
        if not isinstance(args, dict):
            raise ValueError(f"{where}: arguments of '{name}' must be a mapping, got {args!r}")
        try:
            bound.append(BoundTransform(name, spec, spec.args(**args)))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{where}: transform '{name}' arguments: {problems}") from None
    return tuple(bound)


def load_mapping(path: Path) -> Mapping:
    """Load and validate one mapping file; every problem names the file, line, key and fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(
            f"mapping file {path} does not exist", fix="create it, or point the source's 'mapping' setting at it"
        ) from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"mapping file {path} is not UTF-8 text (byte {exc.start} cannot be read)",
                           fix="save it as UTF-8 YAML (see mappings/salesforce.lead.yaml)") from None
    try:
        root = yaml.compose(text)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise MappingError(f"{path}{where}: not valid YAML", fix="correct the YAML syntax there") from None
    if not isinstance(document, dict):
        raise MappingError(f"{path}: a mapping file holds keys (version, source, object, identity, fields)",
                           fix="see mappings/salesforce.lead.yaml for the shape")
    try:
        doc = _MappingDoc(**document)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [p for p in err["loc"] if p != "from_"] + (["from"] if "from_" in err["loc"] else [])
        line = _line_of(root, loc)
        key = ".".join(map(str, loc))
        raise MappingError(
            f"{path}{f', line {line}' if line else ''}: key '{key}': {err['msg']}",
            fix="allowed keys per field are 'from', 'transform' and 'policy' "
            f"(one of {', '.join(POLICIES)}); see the header of connector/mapping.py",
        ) from None
    rules: dict[str, FieldRule] = {}
    for target, field_doc in doc.fields.items():
        line = _line_of(root, ["fields", target])
        where = f"{path}{f', line {line}' if line else ''}: field '{target}'"
        try:
            texts = [field_doc.from_] if isinstance(field_doc.from_, str) else field_doc.from_
            paths = tuple(parse_path(t) for t in texts)
            transforms = _bind_transforms(field_doc.transform, where)
        except ValueError as exc:
            message = str(exc) if str(exc).startswith(str(path)) else f"{where}: {exc}"
            raise MappingError(message, fix="correct the path or transform named above") from None
        rules[target] = FieldRule(target, paths, transforms, field_doc.policy)
    return Mapping(path, doc.source, doc.object, dict(doc.identity), rules)


def check_providers(mapping: Mapping, known: set[str]) -> None:
    """Every provider a mapping names must be registered and enabled."""
    for rule in mapping.fields.values():
        for path in rule.paths:
            if path.provider not in known:
                raise MappingError(
                    f"{mapping.file}: field '{rule.target}': path '{path.text}' names provider "
                    f"'{path.provider}', which is not enabled (enabled: {', '.join(sorted(known)) or 'none'})",
                    fix=f"enable providers.{path.provider} in the settings, or use another provider's path",
                )


def map_values(mapping: Mapping, payloads: dict[str, Any]) -> dict[str, Candidate | None]:
    """Every field's winning candidate (or None) for the given provider payloads."""
    return {target: rule.pick(payloads) for target, rule in mapping.fields.items()}
