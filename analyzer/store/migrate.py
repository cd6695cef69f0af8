"""Schema migrations on start, safe when several replicas start at once.

Every ``Store`` brings its database to the newest Alembic revision before serving. Replicas
that share a database start together (a Deployment rollout), so the upgrade runs in ONE
transaction that first takes a lock only one of them can hold; the others wait, then find the
schema at head and do nothing:

- PostgreSQL: ``pg_advisory_xact_lock`` (released by the commit; DDL is transactional, so a
  replica killed mid-migration leaves nothing behind);
- SQLite: ``BEGIN IMMEDIATE`` on a connection with the driver's own transaction handling off
  (Python's ``sqlite3`` would otherwise run DDL outside any transaction), so the migration is
  one write transaction and other processes wait on SQLite's busy timeout.

A database made by the code before migrations existed (``create_all``: the tables but no
``alembic_version``) is stamped at the initial revision, which creates exactly those tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
INITIAL_REVISION = "0001"
LEGACY_TABLES = frozenset({"analyses", "evaluations"})
ADVISORY_LOCK_KEY = 0x63616E617279  # "canary": any constant shared by all replicas
STARTUP_LOCK_SECONDS = 60.0
"""How long a starting replica waits for another one's migration (never hit in practice)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config without an ini file: the migrations shipped inside the package.
    (Alembic is imported here, not at the top: only opening a store needs it, and the CLI's
    offline commands should not pay for it.)"""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships revisions
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def upgrade(engine: Engine) -> None:
    """Brings the database behind ``engine`` to head, under the lock described above."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            millis = int(STARTUP_LOCK_SECONDS * 1000)
            # The store's per-call bounds (2 s locks, 8 s statements) are for judge calls;
            # waiting for another replica's migration may take longer.
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {millis}")
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {millis}")
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": ADVISORY_LOCK_KEY})
            _upgrade(connection)
    elif engine.dialect.name == "sqlite" and not _in_memory(engine):
        locked = _sqlite_immediate_engine(engine)
        try:
            with locked.begin() as connection:
                _upgrade(connection)
        finally:
            locked.dispose()
    else:  # in-memory SQLite (one process) or another database: no second migrator to fear
        with engine.begin() as connection:
            _upgrade(connection)


def _upgrade(connection: Connection) -> None:
    from alembic import command

    tables = set(inspect(connection).get_table_names())
    config = alembic_config(connection)
    if "alembic_version" not in tables and tables >= LEGACY_TABLES:
        command.stamp(config, INITIAL_REVISION)
    command.upgrade(config, "head")


def _in_memory(engine: Engine) -> bool:
    return engine.url.database in (None, "", ":memory:")


def _sqlite_immediate_engine(engine: Engine) -> Engine:
    """A private engine on the same file whose transactions start with ``BEGIN IMMEDIATE``."""
    locked = create_engine(engine.url, poolclass=NullPool,
                           connect_args={"timeout": STARTUP_LOCK_SECONDS})

    @event.listens_for(locked, "connect")
    def _driver_transactions_off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        # The store runs in WAL (db._sqlite_pragmas). Switching a file to WAL needs it to
        # itself: done here, under the start-up timeout, rather than on the store's first own
        # connection under its 2 s one, where other starting stores' migration transactions
        # could hold it off (1 in 6 starts of 8 stores at once failed "database is locked"
        # on 2 loaded cores). Once the file is in WAL this is a no-op.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(locked, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return locked
