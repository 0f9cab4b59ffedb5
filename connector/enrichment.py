"""Ask a provider about a lead: cache first, then a claimed (paid) call under the limiter.

A paid lookup is claimed, not checked: the first caller inserts the claim for (endpoint,
normalised key) and makes the call; every other caller, in this process or another worker,
waits for that answer. So twenty leads with one email or domain, a redelivered task and the
webhook together cost one credit. Credit exhaustion and bad credentials open the provider's
circuit; its leads are parked while the other providers go on.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

from connector.errors import ConfigError, ConnectorError, NoMatch, QuotaExhausted, WindowClosed
from connector.ledger import Ledger
from connector.models import LeadIdentity, ProviderAnswer
from connector.providers.base import Provider

CLAIM_TTL = timedelta(minutes=2)


class Enricher:
    def __init__(self, *, ledger: Ledger, providers: dict[str, Provider], wait_poll_seconds: float = 0.05) -> None:
        self.ledger = ledger
        self.providers = providers
        self.wait_poll_seconds = wait_poll_seconds
        self._lock = threading.Lock()
        self._stopped: dict[str, ConnectorError] = {}
        self.calls: dict[str, int] = {name: 0 for name in providers}
        self.credits: dict[str, int] = {name: 0 for name in providers}
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
            self._stopped.setdefault(provider, error)
        until = None
        if isinstance(error, QuotaExhausted) and error.reset_at is not None:
            until = datetime.fromtimestamp(error.reset_at, timezone.utc)
        self.ledger.open_circuit(provider=provider, reason=error.reason, detail=error.message, until=until)

    def answer(self, provider_name: str, identity: LeadIdentity, *, deadline: float | None) -> ProviderAnswer:
        """The provider's answer for this lead. Raises the provider's ConnectorError when it is
        stopped or fails; a no-match is an answer with no payload."""
        stopped = self.stopped(provider_name)
        if stopped is not None:
            raise stopped
        provider = self.providers[provider_name]
        key = provider.lookup_key(identity)
        if key is None:
            return ProviderAnswer(provider_name, None, detail=f"the lead has nothing {provider_name} can look up")
        now = datetime.now(timezone.utc)
        while True:
            claim = self.ledger.claim_lookup(
                provider=provider_name, endpoint=provider.endpoint, lookup_key=key,
                credit_pool=provider.credit_pool, fresh_after=now - provider.cache_ttl, ttl=CLAIM_TTL,
            )
            if claim.row is not None:
                return ProviderAnswer(
                    provider_name, claim.row.payload if claim.row.status == "matched" else None,
                    cached=True, detail=claim.row.detail,
                )
            if claim.token is not None:
                break
            if deadline is not None and time.time() >= deadline:
                raise WindowClosed(f"the window ended while waiting for another worker's {provider_name} answer")
            time.sleep(self.wait_poll_seconds)
            stopped = self.stopped(provider_name)
            if stopped is not None:
                raise stopped
        return self._call(provider, provider_name, identity, key, claim.token, deadline)

    def _call(
        self, provider: Provider, name: str, identity: LeadIdentity, key: str, token: str, deadline: float | None
    ) -> ProviderAnswer:
        with self._lock:
            self.calls[name] += 1
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        try:
            payload = provider.fetch(identity, deadline=deadline)
        except NoMatch as exc:
            self.ledger.store_answer(endpoint=provider.endpoint, lookup_key=key, token=token, status="no_match",
                                     payload=None, detail=exc.message, charge_window=provider.charge_window)
            self.ledger.add_spend(vendor=name, pool=provider.credit_pool or "free", day=day, calls=1)
            return ProviderAnswer(name, None, detail=exc.message)
        except ConnectorError as exc:
            self.ledger.release_lookup(endpoint=provider.endpoint, lookup_key=key, token=token, detail=exc.message)
            if isinstance(exc, (QuotaExhausted, ConfigError)):
                self._stop(name, exc)
            raise
        credits = self.ledger.store_answer(endpoint=provider.endpoint, lookup_key=key, token=token, status="matched",
                                           payload=payload, detail="", charge_window=provider.charge_window)
        self.ledger.add_spend(vendor=name, pool=provider.credit_pool or "free", day=day, calls=1, credits=credits)
        with self._lock:
            self.credits[name] += credits
        return ProviderAnswer(name, payload, credits=credits)
