"""Persist an emulator's state as JSON beside the ledger, so a second run meets the CRM the first left."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class JsonStateFile:
    """Atomic save/load of one JSON document; `None` path keeps state in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> Any | None:
        if self.path is None or not self.path.exists():
            return None
        return json.loads(self.path.read_text(encoding="utf-8"))

    def save(self, document: Any) -> None:
        if self.path is None:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
