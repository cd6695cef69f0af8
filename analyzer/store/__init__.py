"""Persistence of analysis sessions and their evaluations (SQLAlchemy 2)."""

from analyzer.store.db import AnalysisSession, Store, database_url, selector_key

__all__ = ["AnalysisSession", "Store", "database_url", "selector_key"]
