"""Shared fixtures: the sandbox emulators over real sockets, the ledger on SQLite and PostgreSQL.

PostgreSQL and Redis are real servers on 127.0.0.1. When one is unreachable the test fails
(it never skips): CI starts both before running the suite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from connector.ledger import Ledger, open_ledger
from connector.limiter import MemoryLimiter
from connector.sandbox import Sandbox, deep_merge
from connector.settings import Settings, bundled_path, load_settings

PG_ADMIN_URL = os.environ.get("CONNECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """Every emulator, fresh and in memory, on loopback; Salesforce over HTTPS with a trustme CA."""
    with Sandbox(state_dir=None, vendors=["salesforce", "sixsense"], tls_dir=tmp_path / "tls") as box:
        yield box


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """A sandbox with options: make_sandbox(extra={"sixsense": {...}}, time_scale=...)."""
    started: list[Sandbox] = []

    def make(**kwargs: Any) -> Sandbox:
        kwargs.setdefault("state_dir", None)
        kwargs.setdefault("vendors", ["salesforce", "sixsense"])
        kwargs.setdefault("tls_dir", tmp_path / f"tls{len(started)}")
        box = Sandbox(**kwargs).start()
        started.append(box)
        return box

    yield make
    for box in started:
        box.stop()


def _create_pg_database() -> str:
    name = f"connector_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on the SQLite ledger and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    name = _create_pg_database()
    try:
        yield pg_url(name)
    finally:
        _drop_pg_database(name)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = _create_pg_database()
    try:
        yield pg_url(name)
    finally:
        _drop_pg_database(name)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from the bundled example, pointed at a sandbox and a ledger, sandbox start off."""

    def make(box: Sandbox, ledger: str, **overrides: Any) -> Settings:
        base = {"data_dir": str(tmp_path / "data"), "ledger": {"url": ledger},
                "sandbox": {"enabled": False}, "workers": 4}
        return load_settings(bundled_path("settings.example.yaml"), **deep_merge(deep_merge(base, box.overrides()), overrides))

    return make


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """A settings file on disk (for the CLI) pointing at a sandbox and a ledger."""

    def write(box: Sandbox | None, ledger: str | None, **overrides: Any) -> Path:
        document = yaml.safe_load(bundled_path("settings.example.yaml").read_text())
        document = deep_merge(document, {"data_dir": str(tmp_path / "data"), "sandbox": {"enabled": box is None}})
        if ledger:
            document = deep_merge(document, {"ledger": {"url": ledger}})
        if box is not None:
            document = deep_merge(document, box.overrides())
        document = deep_merge(document, overrides)
        path = tmp_path / f"settings-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        return path

    return write


@pytest.fixture
def limiter() -> MemoryLimiter:
    return MemoryLimiter()


def ledger_for(url: str) -> Ledger:
    return open_ledger(url, auto_migrate=True)
