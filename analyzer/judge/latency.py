"""Anytime-valid latency test on histogram bucket counts (Istio's request-duration buckets).

A canary is slower at quantile q when more of its requests land above the baseline's
q-quantile than the baseline's own do. So for each quantile of interest we pick thresholds
at the bucket bounds around the baseline's quantile and count, per interval, the requests
above each threshold: that is a rate (slow requests / requests) and the conditional
rate-ratio test of ``analyzer.judge.rate`` applies unchanged, with its weight handling and
burst tempering. A threshold near p99 catches a tail regression that leaves the median
alone; one near p50 catches a canary that is slower overall.

The margin is given as a latency ratio (``allowed_increase: 1.1`` means "10% slower is
fine"). A canary exactly ``a`` times slower than the baseline exceeds ``L`` as often as the
baseline exceeds ``L / a``, so the margin for the exceedance ratio at ``L`` is
``S_b(L / a) / S_b(L)`` with ``S_b`` the baseline's survival function. Between bucket bounds
``S_b`` is unknown, and any interpolation can under-state it (a log-normal's log-survival is
concave in log-latency, so the power-law chord lies below it), which would fail canaries
inside their margin. So the fail test takes the survival at the bucket bound at or below
``L / a`` (an upper bound on ``S_b(L / a)``: the margin can only be over-stated) and the gate
takes the bound at or above (it can only be under-stated). With Istio's coarse buckets a
margin other than 1.0 is therefore wide on the fail side; ``allowed_increase: 1.0`` is exact.
Estimates and intervals are mapped back to latency ratios by power-law interpolation: that is
a report, not a decision.

The metric's e-value is the average of the thresholds' e-values (an average of e-processes
is an e-process), so testing several quantiles costs no extra alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from analyzer.judge.rate import RateTest, SplitData, rate_test


@dataclass(frozen=True)
class ThresholdTest:
    quantile: float  # the quantile of interest that chose this threshold
    bound: float  # the bucket bound L (e.g. milliseconds)
    rate: RateTest  # evidence on the exceedance ratio canary/baseline
    effect: float | None  # as a latency ratio
    interval: tuple[float, float] | None  # as latency ratios
    canary_quantile: float | None
    baseline_quantile: float | None
    data: SplitData = field(repr=False)
    margins: tuple[float, float]  # exceedance-ratio margins (up, down) for this bound


@dataclass(frozen=True)
class LatencyTest:
    log_e_increase: float
    log_e_decrease: float
    thresholds: tuple[ThresholdTest, ...]
    canary_count: int
    baseline_count: int
    reported: ThresholdTest | None  # strongest evidence of harm; carries the interval


def quantile_from_buckets(le: np.ndarray, counts: np.ndarray, q: float) -> float | None:
    """Prometheus-style histogram_quantile on non-cumulative bucket counts."""
    total = counts.sum()
    if total <= 0:
        return None
    cumulative = np.cumsum(counts)
    rank = q * total
    j = int(np.searchsorted(cumulative, rank, side="left"))
    j = min(j, len(le) - 1)
    if math.isinf(le[j]):
        return float(le[j - 1]) if j > 0 else None
    lower = 0.0 if j == 0 else float(le[j - 1])
    below = 0.0 if j == 0 else float(cumulative[j - 1])
    inside = float(counts[j])
    if inside <= 0:
        return float(le[j])
    return lower + (float(le[j]) - lower) * (rank - below) / inside


def _survival_at_bounds(le: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Share of requests above each bucket bound (the last, +Inf, has none above it)."""
    above = np.cumsum(counts[::-1])[::-1]
    return np.concatenate((above[1:], [0.0])) / counts.sum()


def _survival(le: np.ndarray, counts: np.ndarray, x: float) -> float:
    """Share of requests above x, interpolated inside the bucket that holds x.

    Inside a bucket, log-survival is taken linear in log-latency (a power law), which
    follows the steep tail of latency distributions across Istio's wide buckets far better
    than Prometheus' linear interpolation; the first bucket, starting at 0, stays linear.
    """
    surv = _survival_at_bounds(le, counts)
    finite = le[:-1]
    j = int(np.searchsorted(finite, x, side="left"))
    if j >= len(finite):  # beyond the last finite bound: no shape information
        return float(surv[len(finite) - 1])
    if x == le[j]:
        return float(surv[j])
    upper_s = float(surv[j])
    if j == 0:
        lower_x, lower_s = 0.0, 1.0
        return upper_s + (lower_s - upper_s) * (float(le[0]) - x) / float(le[0])
    lower_x, lower_s = float(le[j - 1]), float(surv[j - 1])
    if upper_s <= 0.0 or lower_s <= 0.0:
        return upper_s + (lower_s - upper_s) * (float(le[j]) - x) / (float(le[j]) - lower_x)
    f = math.log(x / lower_x) / math.log(float(le[j]) / lower_x)
    return math.exp((1.0 - f) * math.log(lower_s) + f * math.log(upper_s))


def _inverse_survival(le: np.ndarray, counts: np.ndarray, target: float) -> float | None:
    """The latency above which a share ``target`` of requests lies (inverse of _survival)."""
    surv = _survival_at_bounds(le, counts)
    finite = len(le) - 1
    j = int(np.searchsorted(-surv[:finite], -target, side="left"))  # first bound with S ≤ t
    if j >= finite:
        return None
    upper_x, upper_s = float(le[j]), float(surv[j])
    if j == 0:
        return upper_x * (1.0 - target) / (1.0 - upper_s) if upper_s < 1.0 else upper_x
    lower_x, lower_s = float(le[j - 1]), float(surv[j - 1])
    if upper_s <= 0.0 or lower_s <= upper_s:
        if lower_s <= upper_s:
            return upper_x
        return lower_x + (upper_x - lower_x) * (lower_s - target) / (lower_s - upper_s)
    f = math.log(lower_s / target) / math.log(lower_s / upper_s)
    return math.exp((1.0 - f) * math.log(lower_x) + f * math.log(upper_x))


def _survival_bracket(le: np.ndarray, counts: np.ndarray, x: float) -> tuple[float, float]:
    """Survival at the bucket bounds at or above and at or below ``x``: S_b(x) lies between
    them whatever the shape inside the bucket."""
    surv = np.concatenate(([1.0], _survival_at_bounds(le, counts)[:-1]))
    bounds = np.concatenate(([0.0], le[:-1]))
    below = int(np.searchsorted(bounds, x, side="right")) - 1
    above = int(np.searchsorted(bounds, x, side="left"))
    upper = float(surv[below])
    lower = float(surv[above]) if above < len(bounds) else 0.0
    return lower, upper


def _ratio_from_exceedance(le: np.ndarray, counts: np.ndarray, bound: float,
                           exceedance_ratio: float) -> float:
    """Latency ratio a with S_b(bound / a) = exceedance_ratio · S_b(bound)."""
    target = exceedance_ratio * _survival(le, counts, bound)
    if target >= 1.0:
        return math.inf
    if target <= 0.0:
        return 0.0
    x = _inverse_survival(le, counts, target)
    if x is None or x <= 0:
        return math.inf
    return bound / x


def _thresholds(le: np.ndarray, baseline: np.ndarray,
                quantiles: tuple[float, ...]) -> list[tuple[float, int]]:
    """(quantile, bucket index) pairs: the bounds just below and above each baseline quantile."""
    cumulative = np.cumsum(baseline) / baseline.sum()
    chosen: dict[int, float] = {}
    last = len(le) - 1  # +Inf: nothing can lie above it
    for q in quantiles:
        j = int(np.searchsorted(cumulative, q, side="left"))
        for k in (j - 1, j):
            if 0 <= k < last and 0.0 < cumulative[k] < 1.0:
                chosen.setdefault(k, q)
    return sorted(((q, k) for k, q in chosen.items()), key=lambda item: item[1])


def _harm_key(direction: str):
    if direction == "increase":
        return lambda t: t.rate.log_e_increase
    if direction == "decrease":
        return lambda t: t.rate.log_e_decrease
    return lambda t: max(t.rate.log_e_increase, t.rate.log_e_decrease)


def latency_test(le: np.ndarray, canary: np.ndarray, baseline: np.ndarray, *,
                 quantiles: tuple[float, ...], allowed_increase: float = 1.0,
                 allowed_decrease: float = 1.0, direction: str = "increase",
                 interval_log_k: float | None = None) -> LatencyTest:
    """Evidence that the canary is slower (or faster) than the baseline beyond the margins.

    ``canary``/``baseline`` are (intervals × buckets) non-cumulative counts. The confidence
    sequence is computed only for the threshold with the strongest evidence of harm in
    ``direction`` (the one reported), which keeps a live evaluation cheap.
    """
    pooled_b = baseline.sum(axis=0).astype(float)
    pooled_c = canary.sum(axis=0).astype(float)
    canary_total = int(pooled_c.sum())
    baseline_total = int(pooled_b.sum())
    if baseline_total == 0 or canary_total == 0:
        return LatencyTest(0.0, 0.0, (), canary_total, baseline_total, None)
    den_c = canary.sum(axis=1)
    den_b = baseline.sum(axis=1)
    # Requests above bound k, per interval: reverse cumulative sums of the buckets.
    above_c = np.cumsum(canary[:, ::-1], axis=1)[:, ::-1]
    above_b = np.cumsum(baseline[:, ::-1], axis=1)[:, ::-1]
    tests = []
    for q, k in _thresholds(le, pooled_b, quantiles):
        bound = float(le[k])
        base_exceed = _survival(le, pooled_b, bound)
        def exceedance_margins(latency_ratio: float, bound: float = bound,
                               base_exceed: float = base_exceed) -> tuple[float, float]:
            """(lowest, highest) exceedance ratio the latency ratio can mean at ``bound``."""
            if latency_ratio == 1.0:
                return 1.0, 1.0
            lower, upper = _survival_bracket(le, pooled_b, bound / latency_ratio)
            return lower / base_exceed, upper / base_exceed

        gate_up, up = exceedance_margins(allowed_increase)
        up, gate_up = max(up, 1.0), max(gate_up, 1.0)
        down, gate_down = exceedance_margins(allowed_decrease)
        down, gate_down = max(min(down, 1.0), 1e-9), max(min(gate_down, 1.0), 1e-9)
        data = SplitData.from_counts(above_c[:, k + 1], den_c, above_b[:, k + 1], den_b)
        rate = rate_test(data, allowed_increase=up, allowed_decrease=down,
                         gate_increase=gate_up, gate_decrease=gate_down)
        effect = None if rate.estimate is None else _ratio_from_exceedance(
            le, pooled_b, bound, rate.estimate)
        tests.append(ThresholdTest(q, bound, rate, effect, None,
                                   quantile_from_buckets(le, pooled_c, q),
                                   quantile_from_buckets(le, pooled_b, q), data, (up, down)))
    if not tests:
        return LatencyTest(0.0, 0.0, (), canary_total, baseline_total, None)
    reported = max(tests, key=_harm_key(direction))
    if interval_log_k is not None:
        up, down = reported.margins
        rate = rate_test(reported.data, allowed_increase=up, allowed_decrease=down,
                         interval_log_k=interval_log_k)
        interval = None
        if rate.interval is not None:
            interval = (_ratio_from_exceedance(le, pooled_b, reported.bound, rate.interval[0]),
                        _ratio_from_exceedance(le, pooled_b, reported.bound, rate.interval[1]))
        reported = replace(reported, interval=interval)
        tests = [reported if t.bound == reported.bound else t for t in tests]
    n = math.log(len(tests))
    log_up = float(np.logaddexp.reduce([t.rate.log_e_increase for t in tests]) - n)
    log_down = float(np.logaddexp.reduce([t.rate.log_e_decrease for t in tests]) - n)
    return LatencyTest(log_up, log_down, tuple(tests), canary_total, baseline_total, reported)
