"""The error tree (``analyzer.errors``) as HTTP answers: one table, one body shape.

Argo Rollouts reads every non-2xx answer as an *Error* and retries it, never as *Failed*; so a
dependency that cannot answer is a 503 (transient), input that can never work a 4xx naming
the field (the run errors after five, and the message says what to fix). Every body is a JSON
object with ``error``, plus ``field`` for input.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from analyzer.errors import AnalyzerError, InputError, UnavailableError
from analyzer.request import RequestError

STATUS: tuple[tuple[type[AnalyzerError], int], ...] = (
    (UnavailableError, 503),
    (InputError, 422),
)
"""First match wins; a ``RequestError`` carries its own 4xx (400, 413, 422)."""


def status_of(exc: AnalyzerError) -> int:
    if isinstance(exc, RequestError):
        return exc.status
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 500)


def reason_of(exc: AnalyzerError) -> str:
    """The ``reason`` label of ``canary_analyzer_errors_total``."""
    if isinstance(exc, UnavailableError):
        return f"{exc.dependency}_unavailable"
    return "bad_request" if isinstance(exc, InputError) else "internal"


def error_response(exc: AnalyzerError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.message}
    if isinstance(exc, InputError) and exc.field is not None:
        body["field"] = exc.field
    return JSONResponse(body, status_code=status_of(exc))
