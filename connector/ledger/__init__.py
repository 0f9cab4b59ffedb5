"""The SQL sync ledger: SQLite on one box, PostgreSQL in production; Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from psycopg.abc import Buffer
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event

from connector.errors import ConfigError
from connector.ledger.credits import BudgetPeriod
from connector.ledger.store import Ledger, idempotency_key

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives a crash of the process; only a power loss can lose the
            # last commits. The one-box default trades that for speed; production uses PostgreSQL.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    @event.listens_for(engine, "connect")
    def _nul_free_text(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # PostgreSQL text cannot hold NUL, which CRM values and vendor bodies may carry: it is
        # stored as U+FFFD instead of failing the whole statement (SQLite keeps it as is).
        dbapi_connection.adapters.register_dumper(str, _NulFreeText)
        dbapi_connection.adapters.register_dumper(str, _NulFreeBinary)

    return engine


class _NulFreeText(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


class _NulFreeBinary(StrBinaryDumper):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> str:
    """Apply every migration; returns the revision the ledger is at."""
    engine = make_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()
    return ScriptDirectory.from_config(config).get_current_head() or ""


def check_current(engine: Engine, url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise ConfigError(
            f"the ledger database is at migration {current or 'none'}, the code needs {head}",
            fix="run `connector migrate` (docker compose runs the migrate service) before starting",
        )


def open_ledger(url: str, *, auto_migrate: bool | None = None) -> Ledger:
    """Open the ledger; SQLite (the one-box default) is migrated on open, PostgreSQL is checked."""
    if auto_migrate is None:
        auto_migrate = url.startswith("sqlite")
    if auto_migrate:
        migrate(url)
    engine = make_engine(url)
    check_current(engine, url)
    return Ledger(engine)


__all__ = ["Ledger", "BudgetPeriod", "idempotency_key", "open_ledger", "migrate", "make_engine"]
