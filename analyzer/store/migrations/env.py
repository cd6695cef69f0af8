"""Alembic environment of the analyzer's store.

The service runs migrations itself (``analyzer.store.migrate``) on a connection it has already
locked, and hands it over in ``config.attributes["connection"]``; the migrations then run inside
that connection's transaction. Without one (``alembic`` run by hand with ``-x url=…`` or
``sqlalchemy.url``, e.g. to write a new revision with ``--autogenerate``) an engine is made
from the URL. Offline mode prints the SQL instead of running it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from analyzer.store.db import Base, database_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=… or set sqlalchemy.url")
    return database_url(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as own:
            _run(own)
            own.commit()
    finally:
        engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)  # SQLite alters tables by copying them
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
