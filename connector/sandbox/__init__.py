"""Sandbox emulators: real HTTP servers on 127.0.0.1 that behave like the vendors.

Each vendor's emulator is one module in this package that registers a factory with
`@register_emulator`. An emulator owns its state, routes, limits and error shapes; the
`Sandbox` stack starts every registered one and tells the settings where they are.
"""

from __future__ import annotations

import importlib
import pkgutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI

from connector.sandbox.server import EmulatorServer, FaultQueue, RequestLog, TlsFiles, make_tls_files


class Emulator(Protocol):
    vendor: str
    tls: bool
    app: FastAPI
    log: RequestLog
    faults: FaultQueue

    def settings_overrides(self, base_url: str, ca_bundle: Path | None) -> dict[str, Any]:
        """The nested settings that point the connector at this emulator, credentials included."""
        ...


@dataclass(frozen=True)
class EmulatorOptions:
    state_dir: Path | None
    now: datetime | None = None
    time_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


EmulatorFactory = Callable[[EmulatorOptions], Emulator]
EMULATORS: dict[str, EmulatorFactory] = {}


def register_emulator(vendor: str) -> Callable[[EmulatorFactory], EmulatorFactory]:
    def decorate(factory: EmulatorFactory) -> EmulatorFactory:
        EMULATORS[vendor] = factory
        return factory

    return decorate


def load_emulators() -> dict[str, EmulatorFactory]:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("server", "state", "seed", "limits", "stack"):
            importlib.import_module(f"{__name__}.{module.name}")
    return EMULATORS


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Sandbox:
    """Every registered emulator, started on loopback; `overrides` points the settings at them."""

    def __init__(
        self,
        *,
        state_dir: Path | None,
        now: datetime | None = None,
        time_scale: float = 1.0,
        vendors: list[str] | None = None,
        extra: dict[str, dict[str, Any]] | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        factories = load_emulators()
        chosen = vendors or sorted(factories)
        self._tls_dir = tls_dir or (state_dir / "tls" if state_dir else Path(tempfile.mkdtemp(prefix="sandbox-tls-")))
        self.tls: TlsFiles | None = None
        self.emulators: dict[str, Emulator] = {}
        self.servers: dict[str, EmulatorServer] = {}
        for vendor in chosen:
            options = EmulatorOptions(state_dir, now, time_scale, (extra or {}).get(vendor, {}))
            self.emulators[vendor] = factories[vendor](options)

    def start(self) -> Sandbox:
        for vendor, emulator in self.emulators.items():
            tls = None
            if emulator.tls:
                if self.tls is None:
                    self.tls = make_tls_files(self._tls_dir)
                tls = self.tls
            self.servers[vendor] = EmulatorServer(emulator.app, tls=tls).start()
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def overrides(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for vendor, emulator in self.emulators.items():
            server = self.servers[vendor]
            ca = self.tls.ca_bundle if emulator.tls and self.tls else None
            merged = deep_merge(merged, emulator.settings_overrides(server.base_url, ca))
        return merged

    def __getitem__(self, vendor: str) -> Any:
        return self.emulators[vendor]
