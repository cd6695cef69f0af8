"""Persistence of analysis sessions and their evaluations (SQLAlchemy 2, Alembic migrations)."""

from analyzer.store.db import (
    AnalysisSession,
    Store,
    StoreUnavailable,
    database_url,
    selector_key,
)

__all__ = ["AnalysisSession", "Store", "StoreUnavailable", "database_url", "selector_key"]
