"""One limiter protocol for every vendor call; backends chosen by the `limiter.url` setting.

A `LimitSpec` holds what one vendor key allows: requests per sliding window, calls in flight,
and a shared cooldown after a 429. `acquire` blocks until every part grants, or raises
`WindowClosed` when the deadline (the night's end) comes first. The grant is a `Permit` that
releases its in-flight slot when the call is over.

`memory://` is the one-box backend (threads of one process). The Redis backend, shared by
every worker, the webhook and the admin commands, implements the same protocol.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from connector.errors import ConfigError, WindowClosed


@dataclass(frozen=True)
class LimitSpec:
    key: str  # vendor and credential, e.g. "sixsense:<token fingerprint>"
    requests: int
    per_seconds: float  # already divided by the time scale
    max_in_flight: int | None = None


class Permit(Protocol):
    def release(self) -> None: ...

    def __enter__(self) -> Permit: ...

    def __exit__(self, *exc: object) -> None: ...


class Limiter(Protocol):
    def acquire(self, spec: LimitSpec, *, deadline: float | None = None) -> Permit:
        """Block until `spec` allows one more call; `deadline` is a wall-clock epoch second."""
        ...

    def pause(self, key: str, seconds: float) -> None:
        """Stop every caller of `key` for `seconds` (extends, never shortens, a cooldown)."""
        ...

    def grants(self, key: str) -> int:
        """How many calls were granted for `key` (this process or, for Redis, everyone)."""
        ...


class _LocalPermit:
    def __init__(self, release: callable) -> None:  # type: ignore[valid-type]
        self._release = release
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> _LocalPermit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _KeyState:
    def __init__(self) -> None:
        # One entry per call in the current window: [time]. The time is moved to when the call
        # ended, so the window counts from the vendor's side too (it stamps arrival, which is
        # later than our grant by the network's latency).
        self.granted_at: list[list[float]] = []
        self.in_flight = 0
        self.paused_until = 0.0
        self.grants = 0


class MemoryLimiter:
    """Exact sliding-window log per key, in-flight counter and cooldown, for one process."""

    poll_seconds = 0.005

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._keys: dict[str, _KeyState] = {}

    def _state(self, key: str) -> _KeyState:
        return self._keys.setdefault(key, _KeyState())

    def _wait_needed(self, spec: LimitSpec, state: _KeyState, now: float) -> float:
        state.granted_at = [slot for slot in state.granted_at if now - slot[0] < spec.per_seconds]
        waits = [state.paused_until - now]
        if len(state.granted_at) >= spec.requests:
            waits.append(min(slot[0] for slot in state.granted_at) + spec.per_seconds - now)
        if spec.max_in_flight is not None and state.in_flight >= spec.max_in_flight:
            waits.append(self.poll_seconds * 10)
        return max(waits)

    def acquire(self, spec: LimitSpec, *, deadline: float | None = None) -> Permit:
        with self._cond:
            state = self._state(spec.key)
            while True:
                now = time.time()
                wait = self._wait_needed(spec, state, now)
                if wait <= 0:
                    break
                if deadline is not None and now + wait >= deadline:
                    raise WindowClosed(f"the window ends before {spec.key.split(':')[0]} allows another call")
                self._cond.wait(timeout=wait)
            slot = [time.time()]
            state.granted_at.append(slot)
            state.in_flight += 1
            state.grants += 1

        def release() -> None:
            with self._cond:
                slot[0] = max(slot[0], time.time())
                state.in_flight -= 1
                self._cond.notify_all()

        return _LocalPermit(release)

    def pause(self, key: str, seconds: float) -> None:
        with self._cond:
            state = self._state(key)
            state.paused_until = max(state.paused_until, time.time() + seconds)

    def grants(self, key: str) -> int:
        with self._cond:
            return self._state(key).grants


def build_limiter(url: str) -> Limiter:
    if url.startswith("memory://"):
        return MemoryLimiter()
    raise ConfigError(
        f"limiter.url '{url.split('@')[-1]}' is not supported by this build",
        fix="use memory:// (one process)",
    )
