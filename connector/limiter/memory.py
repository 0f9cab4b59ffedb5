"""The one-process limiter: exact sliding-window log, in-flight count, cooldown and daily quota."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from connector.errors import QuotaExhausted, WindowClosed
from connector.limiter import LimitSpec, Permit, batch_quota, vendor_day


class _LocalPermit:
    def __init__(self, release: Callable[[], None]) -> None:
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
        # One [time] per call in the current window, moved to when the call ended.
        self.slots: list[list[float]] = []
        self.in_flight = 0
        self.paused_until = 0.0
        self.grants = 0
        self.day = ""
        self.day_calls = 0


class MemoryLimiter:
    poll_seconds = 0.05

    def __init__(self, *, clock_offset_seconds: float = 0.0) -> None:
        self._cond = threading.Condition()
        self._keys: dict[str, _KeyState] = {}
        self.clock_offset_seconds = clock_offset_seconds

    def _now(self) -> float:
        return time.time() + self.clock_offset_seconds

    def _state(self, key: str) -> _KeyState:
        return self._keys.setdefault(key, _KeyState())

    def _wait_needed(self, spec: LimitSpec, state: _KeyState, now: float) -> float:
        state.slots = [slot for slot in state.slots if now - slot[0] < spec.per_seconds]
        waits = [state.paused_until - now]
        if len(state.slots) >= spec.requests:
            waits.append(min(slot[0] for slot in state.slots) + spec.per_seconds - now)
        if spec.max_in_flight is not None and state.in_flight >= spec.max_in_flight:
            waits.append(self.poll_seconds)
        return max(waits)

    def _check_quota(self, spec: LimitSpec, state: _KeyState, now: float, realtime: bool) -> None:
        quota = batch_quota(spec, realtime)
        if quota is None:
            return
        day, ends = vendor_day(spec, now)
        if state.day != day:
            state.day, state.day_calls = day, 0
        if state.day_calls >= quota:
            raise QuotaExhausted(
                f"{spec.key.split(':')[0]}: {state.day_calls} calls today, the quota"
                + (" left to the night" if not realtime and spec.realtime_reserve else "") + f" is {quota}",
                reason="quota", reset_at=ends - self.clock_offset_seconds,
            )

    def acquire(self, spec: LimitSpec, *, deadline: float | None = None, realtime: bool = False) -> Permit:
        with self._cond:
            state = self._state(spec.key)
            while True:
                now = self._now()
                self._check_quota(spec, state, now, realtime)
                wait = self._wait_needed(spec, state, now)
                if wait <= 0:
                    break
                if deadline is not None and time.time() + wait >= deadline:
                    raise WindowClosed(f"the window ends before {spec.key.split(':')[0]} allows another call")
                self._cond.wait(timeout=wait)
            slot = [now]
            state.slots.append(slot)
            state.in_flight += 1
            state.grants += 1
            if spec.daily_quota is not None:
                state.day_calls += 1

        def release() -> None:
            with self._cond:
                slot[0] = max(slot[0], self._now())
                state.in_flight -= 1
                self._cond.notify_all()

        return _LocalPermit(release)

    def pause(self, key: str, seconds: float) -> None:
        with self._cond:
            state = self._state(key)
            state.paused_until = max(state.paused_until, self._now() + seconds)

    def grants(self, key: str) -> int:
        with self._cond:
            return self._state(key).grants

    def used_today(self, spec: LimitSpec) -> int:
        with self._cond:
            state = self._state(spec.key)
            return state.day_calls if state.day == vendor_day(spec, self._now())[0] else 0
