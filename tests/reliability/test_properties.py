"""Guide §7 test 15: mapping and ledger properties, with Hypothesis.

* Any 6sense answer shaped like the OpenAPI FullLeadResponse (strings: unicode, huge, empty,
  None; numbers of any size as numbers, numeric strings or junk; picklist labels or anything;
  lists of any length), mapped through the shipped mappings/salesforce.lead.yaml, never raises;
  every value `decide()` would write fits its CRM field as the Salesforce emulator describes it
  (type and length over the real describe call, and the emulator's own write validation
  `coerce_value` accepts it), and every value the CRM would refuse (past a number field's range,
  outside a restricted picklist) is that field's bad_value, naming it: never a rejected record.
* Mapping is idempotent: mapping twice gives what mapping once gave, and once the CRM holds what
  we wrote, deciding again writes nothing.
* A field a person edited after our write is never overwritten (ours_only).
* A stateful machine over the real Ledger (a SQLite file per example): plan, send, crash,
  reconcile and retry in any order leave one row and at most one confirmed write per
  idempotency key, and a retry of a confirmed decision never yields a second planned row.
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import func, select

import connector.sandbox as sandbox_package
from connector.decisions import BadValue, canonical, decide
from connector.ledger import Ledger, idempotency_key, make_engine, migrate
from connector.ledger.tables import FieldWrite
from connector.limiter import MemoryLimiter
from connector.mapping import Candidate, Mapping, load_mapping, map_values
from connector.models import CrmField
from connector.sandbox import Sandbox
from connector.sandbox.salesforce import FIELDS_BY_LOWER, coerce_value
from connector.settings import bundled_path, load_settings
from connector.sources.base import VendorContext
from connector.sources.salesforce import SalesforceSource
from connector.transforms import TransformFailed, _number

SPEC = Path(sandbox_package.__file__).parent / "specs" / "6sense-lead-scoring-firmographics.openapi.yml"
MAPPING: Mapping = load_mapping(bundled_path("mappings", "salesforce.lead.yaml"))
STATS: dict[str, int] = {}


def _count(name: str, n: int = 1) -> None:
    STATS[name] = STATS.get(name, 0) + n


# ---- the CRM's fields, from the emulator's describe over HTTPS --------------------------------


@pytest.fixture(scope="module")
def crm_fields(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CrmField]]:
    """Lead's fields as the connector reads them: SalesforceSource.describe against the emulator."""
    tls = tmp_path_factory.mktemp("tls")
    with Sandbox(state_dir=None, vendors=["salesforce"], tls_dir=tls) as box:
        settings = load_settings(bundled_path("settings.example.yaml"),
                                 **{**box.overrides(), "sandbox": {"enabled": False}})
        source = SalesforceSource(settings.sources.salesforce, VendorContext(settings, MemoryLimiter()))
        try:
            fields = source.describe(deadline=None)
        finally:
            source.close()
    assert set(MAPPING.fields) <= set(fields)
    yield fields


# ---- strategies shaped like the OpenAPI FullLeadResponse ----------------------------------------


def _spec_schemas() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SPEC.read_text())["components"]["schemas"]


SCHEMAS = _spec_schemas()
ENUMS = {name: prop["enum"] for name, prop in SCHEMAS["Score"]["properties"].items() if "enum" in prop}

huge_text = st.builds(lambda part, n: part * n, st.text(min_size=1, max_size=4), st.integers(50, 2500))
any_text = st.one_of(
    st.none(), st.just(""), st.sampled_from([" ", "\t\n", "\u00a0", "O'Brien \"&\" <b>", "Société Générale",
                                             "日本語の会社", "🚀 Rocket Co", "\u200b"]),
    st.text(max_size=60), huge_text,
)
def _is_number(text: str) -> bool:
    try:
        _number(text)
        return True
    except TransformFailed:
        return False


# Junk that is not a number (a numeric-looking string is a number, and may be out of range: see
# wild_numbers for those).
junk = st.one_of(st.booleans(), st.just("n/a"), st.just("NaN"), st.just("Infinity"),
                 st.text(max_size=12).filter(lambda s: not _is_number(s)),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def numbers(bound: float) -> st.SearchStrategy[Any]:
    """A number as a number, a numeric string (with the separators vendors send), or junk."""
    whole = st.integers(-int(bound), int(bound))
    real = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    as_string = st.one_of(
        whole.map(str), real.map(repr), whole.map(lambda n: f"{n:,}"), whole.map(lambda n: f"${n:,}"),
        whole.map(lambda n: f"  {n}  "), real.map(lambda x: f"{x:.2f}"),
    )
    return st.one_of(st.none(), st.just(""), whole, real, as_string, junk)


def wild_numbers() -> st.SearchStrategy[Any]:
    """Numbers no CRM field holds: huge, non-finite, exponents; the mapping must still not raise."""
    return st.one_of(
        numbers(1e7), st.integers(-(10**40), 10**40), st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["1e400", "-1e400", "1e10000000", "1E+999999999", "9" * 60, "1e-999999", "0e0", "-0",
                         "nan", "-Infinity", "sNaN", "1_000", "١٢٣"]),
    )


def company(num: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    props = SCHEMAS["Company"]["properties"]
    optional = {name: (num if prop["type"] in ("integer", "number") else any_text) for name, prop in props.items()}
    return st.fixed_dictionaries({}, optional=optional)


def score(num: st.SearchStrategy[Any], enum_junk: bool) -> st.SearchStrategy[dict[str, Any]]:
    props = SCHEMAS["Score"]["properties"]
    optional: dict[str, Any] = {}
    for name, prop in props.items():
        if name == "product":  # "6sense" often: only its entry is mapped
            optional[name] = st.one_of(st.just("6sense"), st.sampled_from(["other", "6SENSE", ""]), any_text)
        elif "enum" in prop:
            base = st.one_of(st.sampled_from(prop["enum"]), st.none(), st.just(""))
            # Labels a vendor might add or spell otherwise: a restricted picklist refuses them.
            labels = st.one_of(st.sampled_from(["Excellent", "strong", "A+", "Purchase ", "Decision;Target"]),
                               st.sampled_from(prop["enum"]).map(str.upper))
            optional[name] = st.one_of(base, labels, any_text) if enum_junk else base
        else:
            optional[name] = num
    return st.fixed_dictionaries({}, optional=optional)


def segments(num: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "ids": st.lists(num, max_size=8),
        "names": st.one_of(st.lists(any_text, max_size=40), any_text),
        "list": st.lists(st.fixed_dictionaries({}, optional={"id": num, "name": any_text}), max_size=5),
    })


def full_lead_response(num: st.SearchStrategy[Any], *, enum_junk: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"company": company(num)}, optional={
        "scores": st.lists(score(num, enum_junk), max_size=6),
        "segments": segments(num),
    })


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
# Schema-valid: enums as the schema lists them; numbers unbounded, as the OpenAPI file leaves them,
# so many lie past a CRM field's range (NumberOfEmployees holds 8 digits, the scores 16).
valid_payloads = full_lead_response(numbers(1e20))
# The same, with any text where the schema has an enum (a label the CRM's picklist may lack).
labelled_payloads = full_lead_response(numbers(1e20), enum_junk=True)
# Anything a vendor might send back: junk enums, huge and non-finite numbers, wrong shapes.
wild_payloads = st.one_of(
    full_lead_response(wild_numbers(), enum_junk=True),
    st.dictionaries(st.sampled_from(["company", "scores", "segments"]), json_values, max_size=3),
)


# ---- checks -------------------------------------------------------------------------------------


def decisions_for(payload: dict[str, Any], crm_fields: dict[str, CrmField], *, current: dict[str, Any] | None = None,
                  last: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the pipeline decides per mapped field for one 6sense answer: pick, then decide."""
    current, last = current or {}, last or {}
    out = {}
    for target, rule_ in MAPPING.fields.items():
        candidate = rule_.pick({"sixsense": payload})
        out[target] = decide(field=crm_fields[target], policy=rule_.policy, candidate=candidate,
                             current=current.get(target), last_written=last.get(target), rule=rule_.rule_text)
    return out


def assert_type_and_length(target: str, value: Any, crm_field: CrmField) -> None:
    kind = crm_field.type
    if kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool), (target, value)
    elif kind in ("double", "currency", "percent"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (target, value)
        assert math.isfinite(value), (target, value)
    else:
        assert isinstance(value, str) and value.strip(), (target, value)
        assert crm_field.length and len(value) <= crm_field.length, (target, len(value), crm_field.length)


def crm_refusal(target: str, payload: dict[str, Any], crm_field: CrmField) -> str | None:
    """The Salesforce emulator's error code for the value the mapping picks for `target`, or None."""
    candidate = MAPPING.fields[target].pick({"sixsense": payload})
    if candidate is None or candidate.error:
        return None
    try:
        value = canonical(candidate.value, crm_field)
    except BadValue:
        return None  # not even of the field's type: never sent either
    if value is None:
        return None
    _, error = coerce_value(FIELDS_BY_LOWER[target.lower()], value)
    return error["statusCode"] if error else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(valid_payloads, labelled_payloads))
@example(payload={"company": {"employeeCount": 10**12, "annualRevenue": "$1,000,000,000,000,000,000"},
                  "scores": [{"product": "6sense", "company_intent_score": 10**17, "company_profile_score": -10**16,
                              "company_profile_fit": "Excellent", "contact_grade": "A+"}]})
def test_an_answer_maps_without_error_every_write_fits_and_every_value_the_crm_refuses_is_a_bad_value(
        crm_fields, payload):
    before = copy.deepcopy(payload)
    decided = decisions_for(payload, crm_fields)
    assert payload == before, "mapping changed the provider's answer"
    for target, d in decided.items():
        _count("fits:decisions")
        refused = crm_refusal(target, payload, crm_fields[target])
        if refused is not None:
            _count(f"fits:crm_would_refuse:{refused}")
            assert (d.write, d.reason) == (False, "bad_value"), (target, refused, d)
            assert d.detail.startswith(f"{target}: "), d.detail
        if not d.write:
            assert d.reason in ("no_value", "bad_value"), (target, d)
            continue
        _count("fits:writes")
        assert_type_and_length(target, d.new_value, crm_fields[target])
        # The CRM's own validation (the emulator applies Salesforce's per-record checks) accepts it.
        _, error = coerce_value(FIELDS_BY_LOWER[target.lower()], d.new_value)
        assert error is None, (target, d.new_value, error)


RESTRICTED = {target: rule_.paths[0].steps[-1].name for target, rule_ in MAPPING.fields.items()
              if FIELDS_BY_LOWER[target.lower()].restricted}


@settings(max_examples=200, deadline=None)
@given(target=st.sampled_from(sorted(RESTRICTED)),
       label=st.one_of(st.sampled_from(["Excellent", "strong", "A+", " Decision ", "Decision;Target", "B"]),
                       st.sampled_from(sorted({v for values in ENUMS.values() for v in values})), any_text))
def test_a_label_a_restricted_picklist_lacks_is_a_bad_value_and_one_it_has_is_written(crm_fields, target, label):
    payload = {"company": {}, "scores": [{"product": "6sense", RESTRICTED[target]: label}]}
    d = decisions_for(payload, crm_fields)[target]
    refused = crm_refusal(target, payload, crm_fields[target])
    _count(f"picklist:{refused or ('written' if d.write else d.reason)}")
    if refused is not None:
        assert refused == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        assert (d.write, d.reason) == (False, "bad_value") and ", ".join(crm_fields[target].picklist_values) in d.detail
    else:
        assert d.write or d.reason == "no_value", d
        assert not d.write or d.new_value in crm_fields[target].picklist_values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=wild_payloads)
def test_any_answer_at_all_maps_without_an_unhandled_error(crm_fields, payload):
    decided = decisions_for(payload, crm_fields)
    for target, d in decided.items():
        _count("wild:decisions")
        if d.write:
            assert_type_and_length(target, d.new_value, crm_fields[target])


@settings(max_examples=200, deadline=None)
@given(payload=valid_payloads)
def test_mapping_twice_equals_mapping_once(crm_fields, payload):
    first = map_values(MAPPING, {"sixsense": payload})
    assert map_values(MAPPING, {"sixsense": copy.deepcopy(payload)}) == first
    once = decisions_for(payload, crm_fields)
    # The CRM now holds what we wrote (as it stores it); deciding again writes nothing.
    held = {}
    for target, d in once.items():
        if d.write:
            stored, error = coerce_value(FIELDS_BY_LOWER[target.lower()], d.new_value)
            assert error is None
            held[target] = stored
            assert canonical(d.new_value, crm_fields[target]) == d.new_value  # canonical is a fixed point
    again = decisions_for(payload, crm_fields, current=held, last={t: once[t].new_value for t in held})
    for target in held:
        _count("idempotent:rewrites_checked")
        assert not again[target].write, (target, again[target])
        assert again[target].reason == "unchanged", (target, again[target])


crm_values = st.one_of(st.none(), st.just(""), st.text(max_size=30), huge_text,
                       st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False),
                       st.integers(0, 10**6).map(str))


@settings(max_examples=500, deadline=None)
@given(target=st.sampled_from(sorted(MAPPING.fields)), current=crm_values, last_written=st.one_of(st.none(), crm_values),
       new=crm_values)
def test_a_field_a_person_edited_after_our_write_is_never_overwritten(crm_fields, target, current, last_written, new):
    field = crm_fields[target]

    def canon(value: Any) -> Any:
        try:
            return canonical(value, field)
        except ValueError:
            return value  # a value the field cannot hold is not ours either

    # A person edited it: the field holds something, and it is not what we last wrote.
    assume(canon(current) is not None and canon(current) != canon(last_written))
    _count("human_edit:cases")
    d = decide(field=field, policy="ours_only", candidate=Candidate(new, "sixsense", "sixsense.x"), current=current,
               last_written=last_written, rule="sixsense.x")
    assert not d.write
    assert d.reason == "human_edited"


# ---- the ledger as a state machine ----------------------------------------------------------------

_TEMPLATE: dict[str, Path] = {}


def _template_db() -> Path:
    """One migrated SQLite ledger, copied for every example (migrating each time is slow)."""
    if "path" not in _TEMPLATE:
        directory = Path(tempfile.mkdtemp(prefix="ledger-template-"))
        path = directory / "ledger.db"
        migrate(f"sqlite:///{path}")
        _TEMPLATE["path"] = path
    return _TEMPLATE["path"]


FIELDS = ("Industry", "NumberOfEmployees")
VALUES = {"Industry": ["Aerospace", "Banking", "Retail"], "NumberOfEmployees": [10, 1192, 1500]}
RECORD = "00Q000000000001AAA"


class LedgerMachine(RuleBasedStateMachine):
    """The write protocol of the pipeline, step by step, against the real Ledger.

    plan:      reconcile, decide (ours_only), then record_decisions_bulk with the idempotency key
               of (record, field, value before, value after, generation = confirmed writes so far)
    send:      the CRM applies the planned writes and the ledger marks them confirmed
    lost_ack:  the CRM applies them but the process dies before confirming
    crash:     in-memory state (what was planned but not sent) is lost
    retry:     a decision made earlier is planned again with its own key (a redelivered task)
    person:    a person edits the field in the CRM
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-machine-"))
        shutil.copy(_template_db(), self.dir / "ledger.db")
        self.engine = make_engine(f"sqlite:///{self.dir / 'ledger.db'}")
        self.ledger = Ledger(self.engine)
        self.lead_id = self.ledger.upsert_lead(source="salesforce", record_id=RECORD, email="a@b.example",
                                               crm_created_at=None)
        self.crm: dict[str, Any] = {f: None for f in FIELDS}
        self.pending: dict[int, tuple[str, Any]] = {}  # row id -> (field, value): planned, not yet sent
        self.decisions: list[dict[str, Any]] = []  # every write decision made, with its key material
        self.fields = {f: CrmField(f, "picklist" if f == "Industry" else "int", 255 if f == "Industry" else None)
                       for f in FIELDS}

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers --

    def _reconcile(self) -> None:
        """As the pipeline does before deciding: a planned write the CRM holds was applied."""
        history = self.ledger.field_histories(lead_ids=[self.lead_id])[self.lead_id]
        ids = [row.id for row in history.planned if self.crm.get(row.field) == row.new_value]
        self.ledger.mark_writes(ids=ids, state="confirmed")

    def _record(self, field: str, before: Any, after: Any, generation: int) -> FieldWrite:
        key = idempotency_key(source="salesforce", record_id=RECORD, field=field, before=before, after=after,
                              generation=generation)
        [row] = self.ledger.record_decisions_bulk(run_id=None, via="night", skips=[], writes=[{
            "lead_id": self.lead_id, "field": field, "old_value": before, "new_value": after,
            "provider": "sixsense", "rule": "sixsense.company.x", "reason": "fill_blank", "idempotency_key": key}])
        assert row.idempotency_key == key
        return row

    def _planned_rows(self) -> int:
        with self.ledger.session() as s:
            return int(s.execute(select(func.count()).select_from(FieldWrite)
                                 .where(FieldWrite.state == "planned")).scalar_one())

    # -- rules --

    @rule(field=st.sampled_from(FIELDS), pick=st.integers(0, 2))
    def plan(self, field: str, pick: int) -> None:
        value = VALUES[field][pick]
        self._reconcile()
        history = self.ledger.field_histories(lead_ids=[self.lead_id])[self.lead_id].fields.get(field)
        d = decide(field=self.fields[field], policy="ours_only", candidate=Candidate(value, "sixsense", "p"),
                   current=self.crm[field], last_written=history.last_written if history else None, rule="p")
        if not d.write:
            return
        generation = history.confirmed if history else 0
        row = self._record(field, self.crm[field], d.new_value, generation)
        self.decisions.append({"field": field, "before": self.crm[field], "after": d.new_value,
                               "generation": generation, "row_id": row.id})
        _count("machine:plans")
        if row.state == "planned":
            self.pending[row.id] = (field, d.new_value)

    @precondition(lambda self: self.pending)
    @rule()
    def send(self) -> None:
        for field, value in self.pending.values():
            self.crm[field] = value
        self.ledger.mark_writes(ids=list(self.pending), state="confirmed")
        _count("machine:sends")
        self.pending.clear()

    @precondition(lambda self: self.pending)
    @rule()
    def lost_ack(self) -> None:
        for field, value in self.pending.values():
            self.crm[field] = value
        self.pending.clear()

    @precondition(lambda self: self.pending)
    @rule()
    def crash(self) -> None:
        self.pending.clear()
        _count("machine:crashes")

    @precondition(lambda self: self.decisions)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        d = data.draw(st.sampled_from(self.decisions))
        self._reconcile()
        with self.ledger.session() as s:
            original = s.get(FieldWrite, d["row_id"])
        planned_before = self._planned_rows()
        row = self._record(d["field"], d["before"], d["after"], d["generation"])
        _count("machine:retries")
        assert row.id == d["row_id"], "a retry of the same decision got a new row"
        if original is not None and original.state == "confirmed":
            _count("machine:retries_of_confirmed")
            assert row.state == "confirmed"
            assert self._planned_rows() == planned_before, "a retry of a confirmed decision planned again"
        elif row.state == "planned" and self.crm[d["field"]] == d["before"]:
            self.pending[row.id] = (d["field"], d["after"])  # still valid: the CRM holds what it was based on

    @rule(field=st.sampled_from(FIELDS), pick=st.integers(0, 3))
    def person(self, field: str, pick: int) -> None:
        self.crm[field] = None if pick == 3 else VALUES[field][pick]

    # -- invariants --

    @invariant()
    def one_row_and_at_most_one_confirmed_write_per_key(self) -> None:
        with self.ledger.session() as s:
            rows = s.execute(select(FieldWrite.idempotency_key, FieldWrite.state)
                             .where(FieldWrite.idempotency_key.is_not(None))).all()
        per_key: dict[str, list[str]] = {}
        for key, state in rows:
            per_key.setdefault(key, []).append(state)
        for key, states in per_key.items():
            assert len(states) == 1, f"{len(states)} rows share idempotency key {key}"
            assert states.count("confirmed") <= 1

    @invariant()
    def confirmed_counts_match_the_generations(self) -> None:
        """The generation of every recorded decision is the number of confirmed writes before it."""
        with self.ledger.session() as s:
            rows = s.execute(select(FieldWrite.field, FieldWrite.state)
                             .where(FieldWrite.decision == "write")).all()
        for field in FIELDS:
            confirmed = sum(1 for f, state in rows if f == field and state == "confirmed")
            gens = [d["generation"] for d in self.decisions if d["field"] == field]
            assert not gens or max(gens) <= confirmed


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_the_ledger_keeps_one_confirmed_write_per_key_through_crashes_and_retries = LedgerMachine.TestCase


def teardown_module() -> None:
    print("\nreliability property counts:", dict(sorted(STATS.items())))
    if "path" in _TEMPLATE:
        shutil.rmtree(_TEMPLATE["path"].parent, ignore_errors=True)
