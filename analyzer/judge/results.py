"""What the judge returns: per-metric classifications with their evidence, and the verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from analyzer.judge.traffic import TrafficCheck


class Classification(StrEnum):
    """A metric's outcome, a sealed set as in Kayenta. ``HIGH``/``LOW``: harm in that
    direction; ``NODATA``: too little data to say (or a required metric without data, which
    then counts as a failure: Kayenta's NodataFailMetric); ``ERROR``: the metric's test
    raised on this data, and the other metrics are still judged."""

    PASS = "pass"
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"
    ERROR = "error"


class Verdict(StrEnum):
    """What an analysis answers; Argo reads the string."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class SideSummary:
    count: float  # requests (ratio, histogram) or samples (gauge)
    value: float | None  # rate, quantile or mean; None without data


@dataclass(frozen=True)
class MetricResult:
    name: str
    classification: Classification
    critical: bool
    direction: str
    test: str
    canary: SideSummary
    baseline: SideSummary
    effect: float | None  # canary/baseline ratio in the metric's own unit
    interval: tuple[float, float] | None  # confidence sequence (or fixed interval) for effect
    e_value: float | None  # evidence of harm; compared with the metric's threshold
    threshold: float | None  # e-value at which the metric fails (None for fixed tests)
    allowed: float  # the margin in the harmful direction (allowed_increase or _decrease)
    promotion_margin: float  # the ratio the promotion gate must rule out
    within_margin: bool  # positive evidence that harm is ruled out (final gate)
    reason: str
    group: str
    muted: bool = False
    counts_as_failure: bool = False  # Kayenta's NodataFailMetric: no data where data was required
    details: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    allowed_absolute: float = 0.0  # absolute part of the increase margin (rate points)
    # Promotion gate: within, needed_events, eta_seconds, unit (None for fixed tests).
    gate: dict[str, Any] | None = None
    # How the evidence was formed: share of intervals judged by the interval-level t-test,
    # the jitter estimate in force, and the increase margin as a ratio at the latest look.
    evidence: dict[str, Any] | None = None

    @property
    def harmful(self) -> bool:
        return self.classification in ("high", "low") or self.counts_as_failure

    def to_dict(self) -> dict[str, Any]:
        """The wire's metric entry (shallow: ``analyzer.report.jsonable`` copies it anyway;
        ``dataclasses.asdict`` deep-copied every detail, ~1 ms a call)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name != "counts_as_failure"}
        out["canary"], out["baseline"] = asdict(self.canary), asdict(self.baseline)
        out["interval"] = None if self.interval is None else list(self.interval)
        out["details"] = list(self.details)
        return out


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    score: float
    reason: str
    metrics: tuple[MetricResult, ...]
    traffic: TrafficCheck | None = None
