"""Ask a provider about many leads: cache first, then claimed (paid) calls under the limiter.

A paid lookup is claimed, not checked: the caller inserts the claim for (endpoint, normalised
key) and makes the call; every other caller, in this process or another worker, waits for that
answer. So twenty leads with one email, a redelivered task and the webhook together cost one
credit. Before paid calls their most expensive cost is reserved from the run's credit budgets
(connector/budgets.py); a record the pool charged inside the vendor's no-recharge window reserves
nothing. Charges are counted per (credit pool, credit key), whichever endpoint asked.

Circuits: credits exhausted stops the whole credit pool (every endpoint sharing it), a spent daily
quota stops the vendor's token, bad credentials stop the provider; its leads are parked while the
other providers go on. A spent budget needs no circuit: its count in the ledger refuses every
later reservation, in this worker and every other.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from connector.budgets import budget_refusal
from connector.errors import ConfigError, ConnectorError, NoMatch, QuotaExhausted, WindowClosed
from connector.heartbeat import keep_alive
from connector.ledger import BudgetPeriod, Ledger
from connector.ledger.tables import Enrichment
from connector.models import LeadIdentity, ProviderAnswer
from connector.providers.base import Provider
from connector.registry import PROVIDER_SETTINGS

log = logging.getLogger(__name__)
CLAIM_TTL = timedelta(seconds=30)
NO_RECHARGE_EVER = timedelta(days=36_500)
Outcome = ProviderAnswer | ConnectorError


@dataclass(frozen=True)
class NeedsCredits:
    """Dry run: this lookup is not cached and would cost `credits` from `pool`."""

    provider: str
    pool: str
    credits: int
    key: str


@dataclass(frozen=True)
class Reservation:
    """One round of paid lookups as the budgets allow it."""

    to_call: list[str]
    refused: list[str] = field(default_factory=list)
    refused_by: BudgetPeriod | None = None  # the budget that refused them
    periods: list[BudgetPeriod] = field(default_factory=list)
    credits: int = 0  # reserved now, settled once the answers show what they cost


class Enricher:
    def __init__(self, *, ledger: Ledger, providers: dict[str, Provider], wait_poll_seconds: float = 0.05,
                 claim_ttl: timedelta = CLAIM_TTL,
                 budgets: Callable[[Provider], list[BudgetPeriod]] = lambda provider: []) -> None:
        self.claim_ttl = claim_ttl
        self.budgets = budgets
        self.ledger = ledger
        self.providers = providers
        self.wait_poll_seconds = wait_poll_seconds
        self._lock = threading.Lock()
        self._stopped: dict[str, ConnectorError] = {}
        # Only the providers actually asked appear in the run's report.
        self.calls: dict[str, int] = {}
        self.credits: dict[str, int] = {}
        now = datetime.now(timezone.utc)
        known = {key for name in providers for key in self._circuit_keys(name)}
        for key, circuit in ledger.open_circuits(now=now).items():
            if key in known:
                error_type = QuotaExhausted if circuit.reason in ("credits_exhausted", "quota") else ConfigError
                self._stopped[key] = error_type(
                    f"{key} is stopped since {circuit.opened_at:%Y-%m-%d %H:%M} UTC ({circuit.reason}): {circuit.detail}",
                    reason=circuit.reason,
                )

    def _circuit_keys(self, provider: str) -> list[str]:
        """What can stop a provider: itself, its credit pool, its vendor's token (daily quota)."""
        pool = self.providers[provider].credit_pool
        return [key for key in (provider, pool, PROVIDER_SETTINGS.get(provider)) if key]

    def _circuit_key(self, provider: str, error: ConnectorError) -> str:
        if isinstance(error, QuotaExhausted):
            if error.reason == "credits_exhausted":
                return self.providers[provider].credit_pool or provider
            return PROVIDER_SETTINGS.get(provider, provider)
        return provider

    def stopped(self, provider: str) -> ConnectorError | None:
        with self._lock:
            for key in self._circuit_keys(provider):
                if key in self._stopped:
                    return self._stopped[key]
            return None

    def _stop(self, provider: str, error: ConnectorError) -> None:
        """Stop calling: in this process at once, and for every worker through a circuit in the ledger."""
        key = self._circuit_key(provider, error)
        with self._lock:
            if key in self._stopped:
                return
            self._stopped[key] = error
        until = None
        if isinstance(error, QuotaExhausted) and error.reset_at is not None:
            until = datetime.fromtimestamp(error.reset_at, timezone.utc)
        self.ledger.open_circuit(provider=key, reason=error.reason, detail=error.message, until=until)

    def answer_many(
        self, provider_name: str, identities: list[LeadIdentity], *, deadline: float | None,
        executor: Executor | None = None,
    ) -> list[Outcome]:
        """The provider's answer for each lead, in order: a ProviderAnswer (payload None for a
        no-match) or the ConnectorError that kept it from one."""
        with self._lock:
            self.calls.setdefault(provider_name, 0)
            self.credits.setdefault(provider_name, 0)
        stopped = self.stopped(provider_name)
        if stopped is not None:
            return [stopped for _ in identities]
        provider = self.providers[provider_name]
        keys = [provider.lookup_key(identity) for identity in identities]
        by_key: dict[str, LeadIdentity] = {}
        for key, identity in zip(keys, identities, strict=True):
            if key is not None:
                by_key.setdefault(key, identity)
        results = self._resolve(provider_name, provider, by_key, deadline, executor)
        return [
            ProviderAnswer(provider_name, None, detail=f"the lead has nothing {provider_name} can look up")
            if key is None else results[key]
            for key in keys
        ]

    def preview_many(self, provider_name: str, identities: list[LeadIdentity], *,
                     deadline: float | None, executor: Executor | None = None) -> list[Outcome | NeedsCredits]:
        """Dry run: cached answers, free lookups asked for real, and for a paid lookup not in the
        cache the credits it would cost (0 inside the vendor's no-recharge window). Never pays."""
        provider = self.providers[provider_name]
        if provider.credit_pool is None:
            return list(self.answer_many(provider_name, identities, deadline=deadline, executor=executor))
        keys = [provider.lookup_key(identity) for identity in identities]
        rows = self.ledger.answers_for(endpoint=provider.endpoint, keys=[k for k in keys if k])
        now = datetime.now(timezone.utc)
        credit_keys = {k: provider.credit_key(i) or k for k, i in zip(keys, identities, strict=True) if k}
        free_again = self._charged_in_window(provider, list(set(credit_keys.values())), now)
        out: list[Outcome | NeedsCredits] = []
        first_ask: set[str] = set()
        for key in keys:
            if key is None:
                out.append(ProviderAnswer(provider_name, None, detail=f"the lead has nothing {provider_name} can look up"))
                continue
            row = rows.get(key)
            if row is not None and row.status in ("matched", "no_match") and row.fetched_at \
                    and row.fetched_at >= now - provider.cache_ttl:
                out.append(_cached(provider_name, row))
                continue
            probe = getattr(provider, "probe", None)
            if probe is not None and key not in first_ask:
                try:
                    known = probe(identities[keys.index(key)], deadline=deadline)
                except ConnectorError:
                    known = True  # cannot tell: forecast the paid call
                if not known:
                    first_ask.add(key)
                    out.append(ProviderAnswer(provider_name, None, detail="no match (free probe)"))
                    continue
            free = credit_keys[key] in free_again or key in first_ask
            first_ask.add(key)
            out.append(NeedsCredits(provider_name, provider.credit_pool, 0 if free else provider.max_credits_per_call, key))
        return out

    def _resolve(
        self, name: str, provider: Provider, by_key: dict[str, LeadIdentity], deadline: float | None,
        executor: Executor | None,
    ) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        pending = list(by_key)
        fresh_after = datetime.now(timezone.utc) - provider.cache_ttl
        while pending:
            token = secrets.token_hex(16)
            cached, owned, busy = self.ledger.claim_lookups(
                provider=name, endpoint=provider.endpoint, keys=pending, credit_pool=provider.credit_pool,
                fresh_after=fresh_after, ttl=self.claim_ttl, token=token,
            )
            for key, row in cached.items():
                results[key] = _cached(name, row)
            if owned:
                results.update(self._call_owned(name, provider, {k: by_key[k] for k in owned}, token, deadline, executor))
            pending = sorted(busy)
            if pending:
                # Another worker is asking right now: wait for its answer rather than pay twice.
                if deadline is not None and time.time() >= deadline:
                    for key in pending:
                        results[key] = WindowClosed(f"the window ended while waiting for another worker's {name} answer")
                    break
                time.sleep(self.wait_poll_seconds)
                stopped = self.stopped(name)
                if stopped is not None:
                    results.update({key: stopped for key in pending})
                    break
                answered = self.ledger.answers_for(endpoint=provider.endpoint, keys=pending)
                for key, row in answered.items():
                    if row.status in ("matched", "no_match") and row.fetched_at and row.fetched_at >= fresh_after:
                        results[key] = _cached(name, row)
                pending = [key for key in pending if key not in results]
        return results

    def _call_owned(
        self, name: str, provider: Provider, owned: dict[str, LeadIdentity], token: str, deadline: float | None,
        executor: Executor | None,
    ) -> dict[str, Outcome]:
        """Call the owned lookups in rounds: each round reserves what the budgets allow, and the
        credits a round did not use (no-matches, free re-asks) pay for the next one."""
        outcomes: dict[str, Outcome] = {}
        credit_keys = {key: provider.credit_key(identity) or key for key, identity in owned.items()}
        pending = list(owned)
        while pending:
            allowed = self._reserve(provider, {k: credit_keys[k] for k in pending})
            outcomes.update(self._call_round(name, provider, owned, credit_keys, token, allowed, deadline, executor))
            if allowed.refused and not allowed.to_call:
                assert provider.credit_pool is not None and allowed.refused_by is not None
                error = budget_refusal(provider.credit_pool, allowed.refused_by)
                outcomes.update({key: error for key in allowed.refused})
                self.ledger.release_lookups(endpoint=provider.endpoint, token=token,
                                            details={key: error.message for key in allowed.refused})
                break
            pending = allowed.refused
        return outcomes

    def _call_round(
        self, name: str, provider: Provider, owned: dict[str, LeadIdentity], credit_keys: dict[str, str],
        token: str, allowed: Reservation, deadline: float | None, executor: Executor | None,
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        to_call = allowed.to_call
        if not to_call:
            return outcomes

        def call(key: str) -> tuple[str, Outcome | dict]:
            stopped = self.stopped(name)
            if stopped is not None:
                return key, stopped
            with self._lock:
                self.calls[name] += 1
            try:
                return key, provider.fetch(owned[key], deadline=deadline)
            except NoMatch as exc:
                return key, exc
            except ConnectorError as exc:
                if isinstance(exc, (QuotaExhausted, ConfigError)):
                    self._stop(name, exc)
                return key, exc

        mapper: Callable[..., Iterable[tuple[str, Outcome | dict]]] = executor.map if executor else map
        with self._heartbeat(provider.endpoint, token, to_call):
            fetched = dict(mapper(call, to_call))
        to_store: dict[str, tuple[str, dict | None, str]] = {}
        to_release: dict[str, str] = {}
        for key, result in fetched.items():
            if isinstance(result, NoMatch):
                to_store[key] = ("no_match", None, result.message)
                outcomes[key] = ProviderAnswer(name, None, detail=result.message)
            elif isinstance(result, ConnectorError):
                to_release[key] = result.message
                outcomes[key] = result
            else:
                to_store[key] = ("matched", result, "")
        charges = self._charges(provider, {k: p for k, (st, p, _) in to_store.items() if st == "matched" and p},
                                credit_keys)
        self.ledger.store_answers(endpoint=provider.endpoint, token=token, answers=to_store, charges=charges)
        self.ledger.release_lookups(endpoint=provider.endpoint, token=token, details=to_release)
        for key, (status, payload, _) in to_store.items():
            if status == "matched":
                outcomes[key] = ProviderAnswer(name, payload, credits=charges.get(key, 0))
        spent = sum(charges.values())
        if allowed.periods and provider.credit_pool:
            self.ledger.release_credits(pool=provider.credit_pool, periods=allowed.periods,
                                        unused=allowed.credits - spent, now=datetime.now(timezone.utc))
        calls = len(to_store) + sum(1 for e in to_release.values() if e)
        if calls:
            self.ledger.add_spend(vendor=name, pool=provider.credit_pool or "free",
                                  day=datetime.now(timezone.utc).strftime("%Y-%m-%d"), calls=calls, credits=spent)
        with self._lock:
            self.credits[name] += spent
        return outcomes

    def _reserve(self, provider: Provider, credit_keys: dict[str, str]) -> Reservation:
        """Reserve the budgets' credits for the lookups that may be charged; a record charged
        inside the vendor's no-recharge window reserves nothing."""
        pool = provider.credit_pool
        periods = self.budgets(provider) if pool else []
        if not periods or pool is None:
            return Reservation(to_call=list(credit_keys))
        now = datetime.now(timezone.utc)
        free = self._charged_in_window(provider, list(set(credit_keys.values())), now)
        paying = [key for key, credit_key in credit_keys.items() if credit_key not in free]
        cost = provider.max_credits_per_call
        reserved, limited_by = self.ledger.reserve_credits(pool=pool, periods=periods, wanted=len(paying) * cost,
                                                           now=now)
        refused = paying[reserved // cost:]
        return Reservation(to_call=[key for key in credit_keys if key not in set(refused)], refused=refused,
                           refused_by=limited_by if refused else None, periods=periods, credits=reserved)

    def _charged_in_window(self, provider: Provider, credit_keys: list[str], now: datetime) -> set[str]:
        """The records the pool charged inside the vendor's no-recharge window (a re-ask is free)."""
        window = provider.charge_window if provider.charge_window is not None else NO_RECHARGE_EVER
        if provider.credit_pool is None or window <= timedelta(0):
            return set()
        return self.ledger.charged_since(pool=provider.credit_pool, keys=credit_keys, since=now - window)

    def _charges(self, provider: Provider, matched: dict[str, dict], credit_keys: dict[str, str]) -> dict[str, int]:
        """The credits each matched answer cost: charged once per (pool, credit key) and no-recharge
        window, whichever endpoint of the pool asked."""
        pool = provider.credit_pool
        if pool is None or not matched:
            return {}
        window = provider.charge_window if provider.charge_window is not None else NO_RECHARGE_EVER
        charged = self.ledger.charge_records(pool=pool, keys=[credit_keys[k] for k in matched], window=window,
                                             now=datetime.now(timezone.utc))
        charges: dict[str, int] = {}
        for key, payload in matched.items():
            if credit_keys[key] in charged:
                charged.discard(credit_keys[key])  # two lookups of one record: one charge
                charges[key] = provider.credits_for(payload)
        return charges

    def _heartbeat(self, endpoint: str, token: str, keys: list[str]) -> AbstractContextManager[None]:
        """Refresh our lookup claims every third of their TTL while the calls run."""
        return keep_alive(lambda: self.ledger.refresh_lookups(endpoint=endpoint, token=token, keys=keys,
                                                              ttl=self.claim_ttl),
                          every=self.claim_ttl.total_seconds() / 3, name="lookup-claims")


def _cached(name: str, row: Enrichment) -> ProviderAnswer:
    return ProviderAnswer(name, row.payload if row.status == "matched" else None, cached=True, detail=row.detail)
