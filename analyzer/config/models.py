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
    gate_alpha: float = Field(0.1, gt=0.0, lt=0.5)
    """The promotion gate's level: a canary exactly at its margin passes the gate with
    probability at most ``gate_alpha``. Separate from ``alpha`` (the fail side's level at the
    margin) because the promotions that matter are of canaries well beyond the margin, which
    the gate refuses far more surely than at its edge."""
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

    One margin, used both to fail and to pass (DESIGN §5): the canary is acceptable while its
    value is at most ``max(allowed_increase × baseline, baseline + allowed_absolute_increase)``
    (harm = increase) or at least ``allowed_decrease × baseline`` (harm = decrease).
    ``allowed_absolute_increase`` is in the metric's rate units (0.002 = 0.2 percentage points
    of errors) and applies to ratio metrics. The sequential tests fail when the evidence puts
    the canary beyond the margin, and the promotion gate passes when it puts it inside, so a
    canary the gate would accept is never failed.

    ``promotion_margin`` is deprecated: it used to set a separate, wider margin for the gate.
    An old config that still gives it has its margin widened to it (``allowed_increase`` to at
    least ``promotion_margin``, ``allowed_decrease`` to at most its inverse), so that config
    keeps passing what its gate accepted and no longer fails what the gate would accept.
    """

    name: str = Field(pattern=NAME_PATTERN)
    kind: MetricKind = "promql"
    type: MetricType | None = None
    test: TestName | None = None
    direction: Direction = "increase"
    allowed_increase: float = Field(1.0, ge=1.0, le=100.0)
    allowed_decrease: float = Field(1.0, gt=0.0, le=1.0)
    allowed_absolute_increase: float = Field(0.0, ge=0.0, lt=1.0)
    # An availability objective (0.999 = 99.9% of requests succeed): sets the absolute
    # allowance to the error budget, 1 − slo, when allowed_absolute_increase is not given.
    slo: float | None = Field(None, ge=0.5, lt=1.0)
    # Deprecated (see the docstring): widens the one margin to this ratio.
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

    @model_validator(mode="before")
    @classmethod
    def _budget(cls, data: object) -> object:
        """``slo`` names the allowance in the unit teams already agree on: a canary may add
        at most one error budget of errors (burn the budget at twice the rate the objective
        allows) before it is harm. Set before validation, so the judge sees one key."""
        if not isinstance(data, dict) or data.get("slo") is None:
            return data
        if data.get("allowed_absolute_increase") is not None:
            raise ValueError("give slo or allowed_absolute_increase, not both "
                             "(slo sets allowed_absolute_increase to 1 - slo)")
        slo = data["slo"]
        if isinstance(slo, bool) or not isinstance(slo, (int, float)) or not 0.5 <= slo < 1.0:
            return data  # the field's own validation names the error
        return {**data, "allowed_absolute_increase": round(1.0 - float(slo), 12)}

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
        if self.slo is not None and self.resolved_type != "ratio":
            raise ValueError("slo applies to ratio metrics (an error budget in rate points)")
        if self.allowed_absolute_increase > 0 and self.resolved_type != "ratio":
            raise ValueError("allowed_absolute_increase applies to ratio metrics (rate points)")
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
    def margin_increase(self) -> float:
        """The ratio part of the increase margin, widened by a deprecated promotion_margin."""
        return max(self.allowed_increase, self.promotion_margin or 1.0)

    @property
    def margin_decrease(self) -> float:
        """The decrease margin, widened by a deprecated promotion_margin."""
        return min(self.allowed_decrease, 1.0 / (self.promotion_margin or 1.0))

    @property
    def resolved_promotion_margin(self) -> float:
        """The ratio the gate rules out (the one margin; kept for the wire format)."""
        return max(self.margin_increase, 1.0 / self.margin_decrease)

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
