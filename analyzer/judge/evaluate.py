"""One judgement: every configured metric's test on the data so far, then the verdict.

This is the single code path behind the live service, ``replay`` and the benchmarks.
Alpha is shared across the anytime-valid metrics through the mean of their e-values with
closed testing (``analyzer.judge.merge``): with ``M`` of them, a metric fails on its own
evidence when its e-value reaches ``M / alpha``, and sooner when other metrics' evidence
carries every subset containing it past ``1 / alpha``; the chance that any metric inside its
margin is ever failed stays below ``alpha``. Mann-Whitney metrics are
fixed-horizon tests outside that budget (as in Kayenta); their guarantee does not survive
repeated looks and the docs say so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from analyzer.config.models import CanaryConfig, MetricConfig
from analyzer.errors import InputError
from analyzer.judge import mannwhitney
from analyzer.judge.evidence import Missing
from analyzer.judge.latency import LatencyTest, quantile_from_buckets
from analyzer.judge.merge import closed_rejections
from analyzer.judge.rate import RateTest, gate_needs
from analyzer.judge.results import Classification, Judgement, MetricResult, SideSummary
from analyzer.judge.series import GaugeSeries, MetricSeries

log = logging.getLogger("analyzer.judge")
_LOG_E_CAP = 700.0  # exp() of more overflows a float; such evidence is reported as 1e300+


class JudgeInputError(InputError):
    """Data that does not fit the config (e.g. a histogram where a ratio was configured)."""


def _e(log_e: float) -> float:
    return math.exp(min(log_e, _LOG_E_CAP))


def _harm(metric: MetricConfig, log_up: float, log_down: float
          ) -> tuple[float, Classification]:
    """The metric's log e-value for harm and the class it would get (high/low)."""
    if metric.direction == "increase":
        return log_up, Classification.HIGH
    if metric.direction == "decrease":
        return log_down, Classification.LOW
    combined = float(np.logaddexp(log_up, log_down) - math.log(2.0))
    return combined, (Classification.HIGH if log_up >= log_down else Classification.LOW)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def _interval_text(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" (interval [{_fmt(interval[0])}, {_fmt(interval[1])}])"


def _round(value: float) -> float:
    """exp(log(M/alpha)) is 199.99999999999991; reports and dashboards should say 200."""
    return float(f"{value:.12g}")


def _allowed(metric: MetricConfig) -> float:
    """The margin a dashboard draws: the harmful direction's (increase for ``either``)."""
    return metric.margin_decrease if metric.direction == "decrease" else metric.margin_increase


def _increase_text(metric: MetricConfig) -> str:
    ratio = f"{_fmt(metric.margin_increase)}x"
    if metric.allowed_absolute_increase > 0:
        return f"max({ratio}, +{_fmt(100 * metric.allowed_absolute_increase)} points)"
    return ratio


def margin_text(metric: MetricConfig) -> str:
    """The acceptable region in words, as the reason texts use it."""
    if metric.direction == "increase":
        return f"allowed {_increase_text(metric)}"
    if metric.direction == "decrease":
        return f"allowed {_fmt(metric.margin_decrease)}x"
    return f"allowed {_fmt(metric.margin_decrease)}x–{_increase_text(metric)}"


def _sequential_result(metric: MetricConfig, *, log_up: float, log_down: float,
                       within: bool, enough: bool, effect: float | None,
                       interval: tuple[float, float] | None, canary: SideSummary,
                       baseline: SideSummary, log_threshold: float,
                       details: tuple[dict, ...] = (), gate: dict | None = None,
                       evidence: dict | None = None) -> MetricResult:
    log_e, harm_class = _harm(metric, log_up, log_down)
    classification: Classification
    if log_e >= log_threshold:
        classification = harm_class
        reason = (f"canary/baseline {_fmt(effect)}{_interval_text(interval)} beyond "
                  f"{margin_text(metric)}; e-value {_fmt(_e(log_e))} ≥ "
                  f"{_fmt(math.exp(log_threshold))}")
    elif not enough:
        classification = Classification.NODATA
        reason = (f"too little traffic to judge ({canary.count:g} canary and "
                  f"{baseline.count:g} baseline requests, need {metric.min_count})")
    else:
        classification = Classification.PASS
        reason = (f"canary/baseline {_fmt(effect)}{_interval_text(interval)}, "
                  f"{margin_text(metric)}; e-value {_fmt(_e(log_e))} < "
                  f"{_fmt(math.exp(log_threshold))}")
    return MetricResult(
        name=metric.name, classification=classification, critical=metric.critical,
        direction=metric.direction, test=metric.resolved_test, canary=canary,
        baseline=baseline, effect=effect, interval=interval, e_value=_e(log_e),
        threshold=_round(math.exp(log_threshold)), allowed=_allowed(metric),
        promotion_margin=metric.resolved_promotion_margin,
        within_margin=within and enough, reason=reason,
        group=metric.resolved_group, muted=metric.muted, details=details,
        allowed_absolute=metric.allowed_absolute_increase,
        gate=None if gate is None else {**gate, "within": within and enough},
        evidence={**(evidence or {}), "harm": harm_class})


def _within(metric: MetricConfig, log_below_up: float, log_above_down: float,
            log_level: float) -> bool:
    """Positive evidence that the ratio is inside the promotion margin, each side at level
    ``gate_alpha`` (``log_level``).

    An intersection-union test: pass needs every side (and every latency threshold) to
    reject its own harm hypothesis, so no multiplicity adjustment is needed.
    """
    ok_up = log_below_up >= log_level
    ok_down = log_above_down >= log_level
    if metric.direction == "increase":
        return ok_up
    if metric.direction == "decrease":
        return ok_down
    return ok_up and ok_down


def _gate(needs: tuple[float, float] | None, unit: str,
          interval_seconds: float | None) -> dict:
    """What the promotion gate still needs: ≈ events of ``unit`` and seconds at the current
    traffic (None when the current estimate would never pass)."""
    if needs is None:
        return {"needed_events": None, "eta_seconds": None, "unit": unit}
    events, per_interval = needs
    eta = None if interval_seconds is None else events / per_interval * interval_seconds
    return {"needed_events": float(math.ceil(events)), "eta_seconds":
            None if eta is None else round(eta, 1), "unit": unit}


def _evidence(test: RateTest) -> dict:
    return {"interval_share": round(test.interval_share, 3), "jitter_tau2": round(test.tau2, 4),
            "margin_ratio": round(test.margin_up, 4)}


def ratio_result(metric: MetricConfig, test: RateTest, totals: tuple[float, ...], *,
                 log_threshold: float, log_level: float,
                 interval_seconds: float | None = None) -> MetricResult:
    """A ratio metric's result from its rate test and its totals (canary events, canary
    requests, baseline events, baseline requests)."""
    c_num, nc, b_num, nb = totals
    canary = SideSummary(nc, c_num / nc if nc else None)
    baseline = SideSummary(nb, b_num / nb if nb else None)
    within = _within(metric, test.log_e_inside_up, test.log_e_inside_down, log_level)
    gate = None
    if metric.direction != "decrease":
        gate = _gate(gate_needs(test, log_level), "canary errors", interval_seconds)
    return _sequential_result(
        metric, log_up=test.log_e_increase, log_down=test.log_e_decrease, within=within,
        enough=min(nc, nb) >= metric.min_count, effect=test.estimate, interval=test.interval,
        canary=canary, baseline=baseline, log_threshold=log_threshold, gate=gate,
        evidence=_evidence(test))


def _latency_details(test: LatencyTest) -> tuple[dict, ...]:
    return tuple({"quantile": t.quantile, "bound": t.bound, "effect": t.effect,
                  "interval": None if t.interval is None else list(t.interval),
                  "e_value": _e(t.rate.log_e_increase),
                  "canary_quantile": t.canary_quantile,
                  "baseline_quantile": t.baseline_quantile} for t in test.thresholds)


def histogram_result(metric: MetricConfig, test: LatencyTest, le: np.ndarray,
                     pooled: tuple[np.ndarray, np.ndarray], *, log_threshold: float,
                     log_level: float, interval_seconds: float | None = None) -> MetricResult:
    """A latency metric's result from its test and the pooled bucket counts per side."""
    top_q = max(metric.quantiles)
    canary = SideSummary(float(test.canary_count), quantile_from_buckets(le, pooled[0], top_q))
    baseline = SideSummary(float(test.baseline_count),
                           quantile_from_buckets(le, pooled[1], top_q))
    effect = None if test.reported is None else test.reported.effect
    interval = None if test.reported is None else test.reported.interval
    within = bool(test.thresholds) and all(
        _within(metric, t.rate.log_e_inside_up, t.rate.log_e_inside_down, log_level)
        for t in test.thresholds)
    enough = min(test.canary_count, test.baseline_count) >= metric.min_count
    gate = evidence = None
    if test.thresholds:
        # The gate waits for the threshold with the least evidence of being inside.
        weakest = min(test.thresholds, key=lambda t: t.rate.log_e_inside_up)
        evidence = _evidence(weakest.rate)
        if metric.direction != "decrease":
            gate = _gate(gate_needs(weakest.rate, log_level),
                         f"canary requests slower than {weakest.bound:g}", interval_seconds)
    return _sequential_result(
        metric, log_up=test.log_e_increase, log_down=test.log_e_decrease, within=within,
        enough=enough, effect=effect, interval=interval, canary=canary, baseline=baseline,
        log_threshold=log_threshold, details=_latency_details(test), gate=gate,
        evidence=evidence)


def judge_gauge(metric: MetricConfig, series: GaugeSeries) -> MetricResult:
    outcome = mannwhitney.classify(
        series.canary, series.baseline, direction=metric.direction,
        allowed_increase=metric.allowed_increase, allowed_decrease=metric.allowed_decrease,
        nan_strategy=metric.nan_strategy, must_have_data=metric.must_have_data,
        critical=metric.critical)
    classification = (Classification.NODATA if outcome.classification == "nodata-fail"
                      else Classification(outcome.classification))
    return MetricResult(
        name=metric.name, classification=classification, critical=metric.critical,
        direction=metric.direction, test="mann-whitney",
        canary=SideSummary(float(outcome.canary_count), outcome.canary_mean),
        baseline=SideSummary(float(outcome.baseline_count), outcome.baseline_mean),
        effect=outcome.effect, interval=outcome.interval, e_value=None, threshold=None,
        allowed=_allowed(metric),
        promotion_margin=metric.resolved_promotion_margin,
        within_margin=outcome.classification == "pass",
        reason=outcome.reason,
        group=metric.resolved_group, muted=metric.muted,
        counts_as_failure=outcome.classification == "nodata-fail")


def missing_result(metric: MetricConfig) -> MetricResult:
    empty = SideSummary(0.0, None)
    return MetricResult(
        name=metric.name, classification=Classification.NODATA, critical=metric.critical,
        direction=metric.direction, test=metric.resolved_test, canary=empty, baseline=empty,
        effect=None, interval=None, e_value=None, threshold=None, allowed=_allowed(metric),
        promotion_margin=metric.resolved_promotion_margin,
        within_margin=False,
        reason="no data for this metric", group=metric.resolved_group, muted=metric.muted,
        counts_as_failure=metric.must_have_data and not metric.critical)


def broken_result(metric: MetricConfig, error: str) -> MetricResult:
    """The ``error`` result of a metric whose statistics raised (``error``: type and text)."""
    empty = SideSummary(0.0, None)
    return MetricResult(
        name=metric.name, classification=Classification.ERROR, critical=metric.critical,
        direction=metric.direction, test=metric.resolved_test, canary=empty, baseline=empty,
        effect=None, interval=None, e_value=None, threshold=None, allowed=_allowed(metric),
        promotion_margin=metric.resolved_promotion_margin, within_margin=False,
        reason=f"the {metric.resolved_test} test failed on this data: {error}"[:300],
        group=metric.resolved_group, muted=metric.muted)


def log_levels(config: CanaryConfig) -> tuple[float, float]:
    """(log fail threshold ``M/alpha``, log gate level ``1/gate_alpha``).

    The gate is an intersection-union test, so it needs no share of the fail side's ``M``;
    its level is its own (``judge.gate_alpha``) because a false promotion is about a canary
    well beyond the margin, not one at its edge."""
    judge = config.judge
    return (math.log(max(config.sequential_count, 1) / judge.alpha),
            math.log(1.0 / judge.gate_alpha))


def attribute(results: list[MetricResult], config: CanaryConfig) -> list[MetricResult]:
    """Closed testing over the mean of the sequential metrics' e-values
    (``analyzer.judge.merge``): a metric whose own e-value is below ``M/alpha`` still shows
    harm when the evidence of the others carries every subset containing it past ``1/alpha``.
    """
    sequential = [i for i, r in enumerate(results) if r.threshold is not None]
    if len(sequential) < 2:
        return results
    log_e = [math.log(max(results[i].e_value or 1e-300, 1e-300)) for i in sequential]
    rejected = closed_rejections(log_e, math.log(1.0 / config.judge.alpha))
    out = list(results)
    for i, reject in zip(sequential, rejected, strict=True):
        result = results[i]
        if not reject or result.harmful:
            continue
        harm = (result.evidence or {}).get("harm", "high")
        reason = (f"canary/baseline {_fmt(result.effect)}{_interval_text(result.interval)} "
                  f"beyond the margin; e-value {_fmt(result.e_value)} is below "
                  f"{_fmt(result.threshold)} alone, but every set of metrics containing it "
                  f"has a mean e-value ≥ {_fmt(1.0 / config.judge.alpha)} (closed test)")
        out[i] = replace(result, classification=harm, reason=reason)
    return out


def judge(data: Mapping[str, MetricSeries], config: CanaryConfig, *, final: bool = False,
          intervals: bool = True, data_seconds: float | None = None,
          weights: np.ndarray | None = None, recent_weights_only: bool = False,
          diagnoses: Mapping[str, Missing] | None = None) -> Judgement:
    """Judge every metric of ``config`` on ``data`` (metric name → per-interval series).

    The whole window is folded into a fresh ``analyzer.judge.stream.JudgeState`` in one
    chunk: the same computation the live service and replay carry on look by look.
    ``intervals=False`` skips the confidence sequences, which only the report needs.
    ``weights`` (percent per interval, NaN unknown) turns on the traffic-split check;
    ``recent_weights_only`` says only the last value is the weight really in force (the live
    service knows the current weight, not its history). ``diagnoses`` (metric → why it has
    no data) goes into the no-evidence reason.
    """
    from analyzer.judge.stream import JudgeState

    state = JudgeState(config)
    state.extend(data, weights=weights)
    return state.judgement(final=final, intervals=intervals, data_seconds=data_seconds,
                           recent_weights_only=recent_weights_only, diagnoses=diagnoses)
