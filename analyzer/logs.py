"""Log lines a log platform can index (Loki, Elasticsearch), or plain text when run by hand.

``configure_logging("json")`` makes every record one JSON object per line on stdout: time,
level, logger, message, the record's structured ``fields`` (``logger.info(..., extra={"fields":
{...}})``) and any traceback as one string, so a multi-line traceback never splits into lines
that lose their context. ``"text"`` keeps the usual human format with the fields appended as
``key=value``.

The time a request spent waiting for Prometheus is gathered here too (``prometheus_time``):
the Prometheus client reports each query's duration with ``note_prometheus_time`` and the
request that caused it reads the total, without either knowing the other. A context variable
carries the accumulator into the threadpool that runs the analysis.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "text")

_SPENT: ContextVar[list[float] | None] = ContextVar("prometheus_seconds", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual one-line format, the structured fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                                   for k, v in fields.items())
        return line


def configure_logging(log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Routes every logger (the service's and uvicorn's) to one handler on ``stream``
    (stdout by default) in ``log_format``, at INFO."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


@contextmanager
def prometheus_time() -> Iterator[list[float]]:
    """Within the block, Prometheus query durations add up in the yielded ``[seconds]``."""
    spent = [0.0]
    token = _SPENT.set(spent)
    try:
        yield spent
    finally:
        _SPENT.reset(token)


def note_prometheus_time(seconds: float) -> None:
    """Adds one query's duration to the current ``prometheus_time`` block, if any."""
    spent = _SPENT.get()
    if spent is not None:
        spent[0] += seconds
