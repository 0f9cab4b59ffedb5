"""Keep a claim alive while its work runs: a daemon thread calls `beat` every `every` seconds until
the block ends, so only a dead worker's claims expire and are taken over."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def keep_alive(beat: Callable[[], None], *, every: float, name: str = "claim-heartbeat") -> Iterator[None]:
    done = threading.Event()

    def run() -> None:
        while not done.wait(every):
            try:
                beat()
            except Exception:  # a missed beat only shortens the claim
                log.warning("could not refresh claims (%s)", name, exc_info=True)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
