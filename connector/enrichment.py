"""Ask a provider about many leads: cache first, then claimed (paid) calls under the limiter.

A paid lookup is claimed, not checked: the caller inserts the claim for (endpoint, normalised
key) and makes the call; every other caller, in this process or another worker, waits for that
answer. So twenty leads with one email, a redelivered task and the webhook together cost one
credit. Credit exhaustion and bad credentials open the provider's circuit; its leads are parked
while the other providers go on.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from concurrent.futures import Executor
from datetime import datetime, timedelta, timezone

from connector.errors import ConfigError, ConnectorError, NoMatch, QuotaExhausted, WindowClosed
from connector.ledger import Ledger
from connector.ledger.tables import Enrichment
from connector.models import LeadIdentity, ProviderAnswer
from connector.providers.base import Provider

log = logging.getLogger(__name__)
CLAIM_TTL = timedelta(seconds=30)
Outcome = ProviderAnswer | ConnectorError


@dataclass(frozen=True)
class NeedsCredits:
    """Dry run: this lookup is not cached and would cost `credits` from `pool`."""

    provider: str
    pool: str
    credits: int
    key: str


class Enricher:
    def __init__(self, *, ledger: Ledger, providers: dict[str, Provider], wait_poll_seconds: float = 0.05,
                 claim_ttl: timedelta = CLAIM_TTL) -> None:
        self.claim_ttl = claim_ttl
        self.ledger = ledger
        self.providers = providers
        self.wait_poll_seconds = wait_poll_seconds
        self._lock = threading.Lock()
        self._stopped: dict[str, ConnectorError] = {}
        # Only the providers actually asked appear in the run's report.
        self.calls: dict[str, int] = {}
        self.credits: dict[str, int] = {}
        now = datetime.now(timezone.utc)
        for name, circuit in ledger.open_circuits(now=now).items():
            if name in providers:
                error_type = QuotaExhausted if circuit.reason in ("credits_exhausted", "quota") else ConfigError
                self._stopped[name] = error_type(
                    f"{name} is stopped since {circuit.opened_at:%Y-%m-%d %H:%M} UTC ({circuit.reason}): {circuit.detail}",
                    reason=circuit.reason,
                )

    def stopped(self, provider: str) -> ConnectorError | None:
        with self._lock:
            return self._stopped.get(provider)

    def _stop(self, provider: str, error: ConnectorError) -> None:
        with self._lock:
            if provider in self._stopped:
                return
            self._stopped[provider] = error
        until = None
        if isinstance(error, QuotaExhausted) and error.reset_at is not None:
            until = datetime.fromtimestamp(error.reset_at, timezone.utc)
        self.ledger.open_circuit(provider=provider, reason=error.reason, detail=error.message, until=until)

    def answer(self, provider_name: str, identity: LeadIdentity, *, deadline: float | None) -> ProviderAnswer:
        """One lead's answer (see `answer_many`); raises the provider's error."""
        outcome = self.answer_many(provider_name, [identity], deadline=deadline)[0]
        if isinstance(outcome, ConnectorError):
            raise outcome
        return outcome

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
            free_again = (row is not None and row.first_charged_at is not None and provider.charge_window is not None
                          and now - row.first_charged_at < provider.charge_window)
            credits = 0 if free_again or key in first_ask else 1
            first_ask.add(key)
            out.append(NeedsCredits(provider_name, provider.credit_pool, credits, key))
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
        with self._heartbeat(provider.endpoint, token, list(owned)):
            fetched = dict(mapper(call, list(owned)))
        to_store: dict[str, tuple[str, dict | None, str]] = {}
        to_release: dict[str, str] = {}
        outcomes: dict[str, Outcome] = {}
        for key, result in fetched.items():
            if isinstance(result, NoMatch):
                to_store[key] = ("no_match", None, result.message)
                outcomes[key] = ProviderAnswer(name, None, detail=result.message)
            elif isinstance(result, ConnectorError):
                to_release[key] = result.message
                outcomes[key] = result
            else:
                to_store[key] = ("matched", result, "")
        credits = self.ledger.store_answers(endpoint=provider.endpoint, token=token, answers=to_store,
                                            charge_window=provider.charge_window)
        self.ledger.release_lookups(endpoint=provider.endpoint, token=token, details=to_release)
        for key, (status, payload, _) in to_store.items():
            if status == "matched":
                outcomes[key] = ProviderAnswer(name, payload, credits=credits.get(key, 0))
        spent = sum(credits.values())
        calls = len(to_store) + sum(1 for e in to_release.values() if e)
        if calls:
            self.ledger.add_spend(vendor=name, pool=provider.credit_pool or "free",
                                  day=datetime.now(timezone.utc).strftime("%Y-%m-%d"), calls=calls, credits=spent)
        with self._lock:
            self.credits[name] += spent
        return outcomes


    @contextmanager
    def _heartbeat(self, endpoint: str, token: str, keys: list[str]) -> Iterator[None]:
        """Refresh our lookup claims every third of their TTL while the calls run, so only a dead
        worker's claims expire (and another worker takes them over)."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.claim_ttl.total_seconds() / 3):
                try:
                    self.ledger.refresh_lookups(endpoint=endpoint, token=token, keys=keys, ttl=self.claim_ttl)
                except Exception:  # noqa: BLE001  (a missed beat only shortens the claim)
                    log.warning("could not refresh lookup claims", exc_info=True)

        thread = threading.Thread(target=beat, name="claim-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=5)


def _cached(name: str, row: Enrichment) -> ProviderAnswer:
    return ProviderAnswer(name, row.payload if row.status == "matched" else None, cached=True, detail=row.detail)
