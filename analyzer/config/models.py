"""Canary config models (DESIGN §4).

Every model forbids unknown keys: a misspelt key in a canary config silently ignored would
change what a rollout is judged on, so it is an error that names the key.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Direction = Literal["increase", "decrease", "either"]
MetricKind = Literal["istio-error-rate", "istio-latency", "promql"]
TestName = Literal["sequential-rate-ratio", "sequential-latency", "mann-whitney"]
MetricType = Literal["ratio", "histogram", "gauge"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
DEFAULT_PROMOTION_MARGIN = 1.25

# Which dataset type each builtin kind produces, and which test judges each type by default.
KIND_TYPE: dict[str, MetricType] = {"istio-error-rate": "ratio", "istio-latency": "histogram"}
TYPE_TEST: dict[MetricType, TestName] = {
    "ratio": "sequential-rate-ratio",
    "histogram": "sequential-latency",
    "gauge": "mann-whitney",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JudgeSettings(_Strict):
    alpha: float = Field(0.01, gt=0.0, lt=0.5)
    pass_score: float = Field(95.0, ge=0.0, le=100.0)
    marginal_score: float = Field(75.0, ge=0.0, le=100.0)
    nodata_grace: int = Field(2, ge=0, le=1000)
    """Intervals a gated metric may have no data on a side before the answer is
    ``inconclusive`` (the canary's first requests and Prometheus' first scrape take a moment;
    a typo in a selector never gets better)."""

    @model_validator(mode="after")
    def _ordered(self) -> JudgeSettings:
        if self.marginal_score > self.pass_score:
            raise ValueError("marginal_score must not exceed pass_score")
        return self


class MetricConfig(_Strict):
    """One judged metric.

    ``allowed_increase``/``allowed_decrease`` are canary/baseline ratios that are still
    acceptable (Kayenta's effect-size gates). For the sequential tests they move the null
    hypothesis, so a canary inside the margin is never failed more often than ``alpha``.

    ``promotion_margin`` is what the promotion gate must rule out before it passes. It is
    separate because no amount of data proves a ratio below 1.0: with a fail margin of 1.0
    (any regression is harm, the most powerful setting) the gate would never pass an equal
    canary. It cannot be tighter than the fail margin.
    """

    name: str = Field(pattern=NAME_PATTERN)
    kind: MetricKind = "promql"
    type: MetricType | None = None
    test: TestName | None = None
    direction: Direction = "increase"
    allowed_increase: float = Field(1.0, ge=1.0, le=100.0)
    allowed_decrease: float = Field(1.0, gt=0.0, le=1.0)
    # What the promotion gate (final: true) must rule out; None: max(allowed margin, 1.25).
    promotion_margin: float | None = Field(None, ge=1.0, le=100.0)
    critical: bool = False
    muted: bool = False
    group: str | None = Field(None, pattern=NAME_PATTERN)
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    min_count: int = Field(100, ge=1)
    # istio-error-rate: response codes counted as errors (a PromQL regex on response_code).
    error_codes: str = "5..|0"
    # promql: a gauge query, or numerator/denominator counter queries for a ratio.
    query: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    # mann-whitney (Kayenta NetflixACAJudge options).
    nan_strategy: Literal["remove", "replace"] = "remove"
    must_have_data: bool = False

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("at least one quantile is needed")
        if any(not 0.0 < q < 1.0 for q in value):
            raise ValueError("quantiles must be strictly between 0 and 1")
        return tuple(sorted(set(value)))

    @field_validator("error_codes")
    @classmethod
    def _error_codes(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9.|*+?()\[\]-]{1,64}", value):
            raise ValueError("error_codes must be a simple regex of response codes, e.g. '5..|0'")
        try:
            re.compile(value)  # compiled here, so it cannot fail later inside a judge call
        except re.error as exc:
            raise ValueError(f"error_codes is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MetricConfig:
        if self.kind == "promql":
            has_ratio = self.numerator is not None or self.denominator is not None
            if has_ratio and (self.numerator is None or self.denominator is None):
                raise ValueError("promql ratio metrics need both numerator and denominator")
            # A metric with only `type` is for offline replay of datasets; the live service
            # refuses it (it has nothing to query).
            if self.query is None and not has_ratio and self.type is None:
                raise ValueError("promql metrics need query (gauge) or numerator/denominator")
            for text in (self.query, self.numerator, self.denominator):
                if text is not None and "{selector}" not in text:
                    raise ValueError("promql queries must contain the {selector} placeholder")
        elif self.query is not None or self.numerator is not None or self.denominator is not None:
            raise ValueError(f"kind {self.kind} is builtin and takes no query")
        if self.promotion_margin is not None and (
                self.promotion_margin < self.allowed_increase
                or self.promotion_margin < 1.0 / self.allowed_decrease):
            raise ValueError("promotion_margin must not be tighter than allowed_increase or "
                             "1/allowed_decrease")
        if self.type is not None and self.kind in KIND_TYPE and self.type != KIND_TYPE[self.kind]:
            raise ValueError(f"kind {self.kind} is of type {KIND_TYPE[self.kind]}")
        test = self.resolved_test
        if self.resolved_type == "gauge" and test != "mann-whitney":
            raise ValueError("gauge metrics are judged with test: mann-whitney")
        if self.resolved_type != "gauge" and test == "mann-whitney":
            raise ValueError("mann-whitney judges gauge metrics only")
        if self.resolved_type == "ratio" and test != "sequential-rate-ratio":
            raise ValueError("ratio metrics are judged with test: sequential-rate-ratio")
        if self.resolved_type == "histogram" and test != "sequential-latency":
            raise ValueError("histogram metrics are judged with test: sequential-latency")
        return self

    @property
    def resolved_promotion_margin(self) -> float:
        fail_margin = max(self.allowed_increase, 1.0 / self.allowed_decrease)
        return self.promotion_margin or max(fail_margin, DEFAULT_PROMOTION_MARGIN)

    @property
    def resolved_type(self) -> MetricType:
        if self.type is not None:
            return self.type
        if self.kind in KIND_TYPE:
            return KIND_TYPE[self.kind]
        return "ratio" if self.numerator is not None else "gauge"

    @property
    def resolved_test(self) -> TestName:
        return self.test or TYPE_TEST[self.resolved_type]

    @property
    def resolved_group(self) -> str:
        return self.group or self.name

    @property
    def sequential(self) -> bool:
        """Anytime-valid tests share alpha; Mann-Whitney is a fixed test outside that budget."""
        return self.resolved_test != "mann-whitney"


class CanaryConfig(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    judge: JudgeSettings = JudgeSettings()
    metrics: tuple[MetricConfig, ...] = Field(min_length=1)
    groups: dict[str, float] = Field(default_factory=dict)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: dict[str, float]) -> dict[str, float]:
        for key, weight in value.items():
            if not re.fullmatch(NAME_PATTERN, key):
                raise ValueError(f"group name {key!r} is not a valid name")
            if not 0.0 <= weight <= 100.0:
                raise ValueError(f"group {key!r}: weight must be between 0 and 100")
        if sum(value.values()) > 100.0 + 1e-9:
            raise ValueError("group weights must not add up to more than 100")
        return value

    @model_validator(mode="after")
    def _unique(self) -> CanaryConfig:
        seen: set[str] = set()
        for metric in self.metrics:
            if metric.name in seen:
                raise ValueError(f"metric name {metric.name!r} appears twice")
            seen.add(metric.name)
        return self

    def metric(self, name: str) -> MetricConfig | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def sequential_count(self) -> int:
        """Number of metrics sharing alpha by e-Bonferroni (muted metrics still count)."""
        return sum(1 for m in self.metrics if m.sequential)
