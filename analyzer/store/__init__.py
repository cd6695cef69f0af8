"""Persistence of analysis sessions and their evaluations (SQLAlchemy 2, Alembic migrations)."""

from analyzer.store.db import (
    AnalysisSession,
    Recorded,
    SessionKey,
    Store,
    StoredHeader,
    StoredIntervals,
    StoreUnavailable,
    database_url,
    selector_key,
)

__all__ = [
    "AnalysisSession",
    "Recorded",
    "SessionKey",
    "Store",
    "StoreUnavailable",
    "StoredHeader",
    "StoredIntervals",
    "database_url",
    "selector_key",
]
