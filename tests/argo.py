"""Argo semantics for the tests; the one implementation lives in ``analyzer.argo``."""

from devtools.argo import Phase, argo_phase

__all__ = ["Phase", "argo_phase"]
