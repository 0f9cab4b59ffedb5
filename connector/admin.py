"""What the admin commands ask of the ledger, shared by the CLI (connector.cli) and the admin API
(connector.admin_api): a lead's story field by field, the leads a re-sync picks, and the re-sync
itself. The answers are plain models, so the CLI prints them as tables and the API returns them
as JSON, and the two can never tell a lead's story differently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from connector.ledger import Ledger
from connector.ledger.tables import FieldWrite, Lead
from connector.pipeline import run_once
from connector.services import Services
from connector.settings import Settings


class LeadEventInfo(BaseModel):
    """One state the lead passed through, by which entry point (night, webhook, resync...) and run."""

    at: datetime
    via: str
    run_id: int | None
    state: str
    reason: str
    detail: str


class FieldDecisionInfo(BaseModel):
    """One field decision of one run: write or skip, why, and where the value came from."""

    run_id: int | None
    field: str
    decision: str = Field(description="write or skip")
    reason: str
    old_value: Any = Field(default=None, description="The CRM's value before the decision.")
    new_value: Any = None
    provider: str | None
    rule: str | None = Field(description="The mapping rule the value came from.")
    write_state: str | None = Field(description="Writes: planned, confirmed or failed; null for a skip.")


class LeadStory(BaseModel):
    """What `connector explain` tells about one lead."""

    source: str
    record_id: str
    email: str
    state: str
    reason: str
    detail: str
    retryable: bool
    attempts: int
    next_attempt_at: datetime | None
    history: list[LeadEventInfo]
    latest_run: int | None = Field(description="The run whose decisions `fields` lists; null when none was recorded.")
    fields: list[FieldDecisionInfo]
    earlier_writes: list[FieldDecisionInfo] = Field(description="Writes decided by runs before latest_run.")


def _decision(w: FieldWrite) -> FieldDecisionInfo:
    return FieldDecisionInfo(run_id=w.run_id, field=w.field, decision=w.decision, reason=w.reason,
                             old_value=w.old_value, new_value=w.new_value, provider=w.provider, rule=w.rule,
                             write_state=w.state if w.decision == "write" else None)


def lead_story(ledger: Ledger, lead: Lead) -> LeadStory:
    """The lead's states, its history, the field decisions of its latest run and earlier writes."""
    assert lead.id is not None
    writes = ledger.field_writes(lead_id=lead.id)
    latest = max(((w.run_id or 0) for w in writes), default=None)
    return LeadStory(
        source=lead.source, record_id=lead.record_id, email=lead.email, state=lead.state, reason=lead.reason,
        detail=lead.detail, retryable=lead.retryable, attempts=lead.attempts, next_attempt_at=lead.next_attempt_at,
        history=[LeadEventInfo(at=e.at, via=e.via, run_id=e.run_id, state=e.state, reason=e.reason, detail=e.detail)
                 for e in ledger.lead_events(lead_id=lead.id)],
        latest_run=latest,
        fields=[_decision(w) for w in writes if (w.run_id or 0) == latest],
        earlier_writes=[_decision(w) for w in writes if w.decision == "write" and (w.run_id or 0) != latest],
    )


@dataclass
class ResyncSelection:
    by_source: dict[str, list[str]]  # source -> record ids, each once, in the order found
    unknown: list[str]  # keys the ledger does not know, given without a source

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.by_source.values())


def select_for_resync(
    ledger: Ledger, keys: Sequence[str], *, source: str | None = None, states: tuple[str, ...] = (),
    reason: str | None = None, created_from: datetime | None = None, created_to: datetime | None = None,
) -> ResyncSelection:
    """The leads a re-sync takes: each key (record id or email) the ledger knows, in `source` when
    given (where an unknown key is taken as a record id the ledger never saw), plus the leads in
    `states` (with `reason`) and created in [created_from, created_to)."""
    by_source: dict[str, list[str]] = {}
    unknown: list[str] = []
    for key in keys:
        found = [lead for lead in ledger.find_leads(key=key) if source in (None, lead.source)]
        if not found and source:
            by_source.setdefault(source, []).append(key)
        elif not found:
            unknown.append(key)
        for lead in found:
            by_source.setdefault(lead.source, []).append(lead.record_id)
    if states or created_from or created_to:
        for lead in ledger.select_leads(source=source, states=states, reason=reason,
                                        created_from=created_from, created_to=created_to):
            by_source.setdefault(lead.source, []).append(lead.record_id)
    return ResyncSelection({name: list(dict.fromkeys(ids)) for name, ids in by_source.items()}, unknown)


def resync_now(settings: Settings, services: Services, source: str, record_ids: Sequence[str]) -> dict[str, int]:
    """Re-sync leads of one source now: a run of their own (via "resync") through the night's
    limiter and ledger, so no value is written twice and no budget is overspent. Their states after."""
    result = run_once(settings, services.ledger, services.limiter, source, via="resync", record_ids=list(record_ids),
                      context=services.context())
    return services.ledger.count_states(run_id=result.run_id)
