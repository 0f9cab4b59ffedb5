"""The emulators' own limit enforcement: a server-side sliding window and a daily counter.

Deliberately independent of connector.limiter: the sandbox must catch the connector when its
limiter is wrong, so it cannot share that code.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindow:
    """At most `limit` accepted requests in any `window_seconds` (already time-scaled)."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        self._accepted: deque[float] = deque()

    def try_accept(self) -> float | None:
        """Accept and return None, or refuse and return the seconds until a slot frees up."""
        with self._lock:
            now = time.monotonic()
            while self._accepted and now - self._accepted[0] >= self.window_seconds:
                self._accepted.popleft()
            if len(self._accepted) >= self.limit:
                return self.window_seconds - (now - self._accepted[0])
            self._accepted.append(now)
            return None


class InFlight:
    """A cap on requests being served at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def enter(self) -> bool:
        with self._lock:
            if self.current >= self.limit:
                return False
            self.current += 1
            self.peak = max(self.peak, self.current)
            return True

    def leave(self) -> None:
        with self._lock:
            self.current -= 1
