"""What one analysis found, as a typed value, and its one wire form (the API's JSON answer).

The use case (``analyzer.analysis``) returns an ``AnalysisReport``; the store keeps its wire
form, telemetry and the CLI read its fields. ``to_wire`` is the only place the JSON shape of
``POST /api/v1/judge`` is written, so the HTTP API, ``judge --json`` and the stored history
cannot drift apart (``tests/test_wire.py`` pins the bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from analyzer.judge.results import MetricResult

JUDGE_VERSION = "2"
"""Bumped whenever a change to the statistics can change a verdict on the same data, so that
stored history says which judge gave it (1: e-Bonferroni with variance-matched tempering)."""


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z``; milliseconds only when the time has them."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, tuples as lists, NaN and ±Inf as null
    (Go's encoding/json, and so Argo, cannot read NaN or Infinity)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class MetricReport:
    """One metric's judgement, the PromQL it came from and, without data, why."""

    result: MetricResult
    queries: tuple[str, ...]
    diagnosis: str | None = None


@dataclass(frozen=True)
class TrafficReport:
    """The weight in force, the canary's observed share and whether they agree; ``reason``
    when the split was checked (or could not be)."""

    canary_weight: float | None
    observed_canary_share: float | None
    split_ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class AnalysisReport:
    """One evaluation of one session: the verdict and everything it rests on."""

    namespace: str
    rollout: str
    verdict: str
    score: float
    reason: str
    window_start: datetime
    window_end: datetime
    session_start: datetime
    revision: str | None
    revision_source: str | None
    traffic: TrafficReport
    metrics: tuple[MetricReport, ...]
    notes: tuple[str, ...]
    final: bool
    judge_version: str = JUDGE_VERSION
    analysis_id: str | None = None

    def with_id(self, analysis_id: str) -> AnalysisReport:
        return replace(self, analysis_id=analysis_id)


def _metric(metric: MetricReport) -> dict[str, Any]:
    entry = metric.result.to_dict()
    entry["query"] = "\n".join(metric.queries)
    entry["queries"] = list(metric.queries)
    entry["diagnosis"] = metric.diagnosis
    return entry


def to_wire(report: AnalysisReport) -> dict[str, Any]:
    """The JSON object of ``POST /api/v1/judge`` (docs/api.md), plain JSON values only."""
    traffic: dict[str, Any] = {"canary_weight": report.traffic.canary_weight,
                               "observed_canary_share": report.traffic.observed_canary_share,
                               "split_ok": report.traffic.split_ok}
    if report.traffic.reason is not None:
        traffic["reason"] = report.traffic.reason
    return jsonable({
        "verdict": report.verdict,
        "score": float(report.score) if math.isfinite(report.score) else 0.0,
        "reason": report.reason,
        "analysis_id": report.analysis_id,
        "window": {"start": rfc3339(report.window_start), "end": rfc3339(report.window_end)},
        "session": {"start": rfc3339(report.session_start), "revision": report.revision,
                    "revision_source": report.revision_source},
        "traffic": traffic,
        "metrics": [_metric(m) for m in report.metrics],
        "notes": list(report.notes),
        "judge_version": report.judge_version,
    })
