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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from analyzer.judge.rate import MAX_ABSOLUTE_RATIO, RateTest, SplitData
from analyzer.judge.ratestate import RateState

# Thresholds are fixed once, at the first interval by which the baseline has served this many
# requests (from the baseline's histogram up to that interval): a threshold that moved with
# the data would change every earlier interval's evidence.
FIX_REQUESTS = 500
# A quantile label for the threshold at the first bucket bound above everything the baseline
# showed when the thresholds were fixed: a tail the baseline never had is tested directly.
NEW_TAIL = 1.0


@dataclass(frozen=True)
class ThresholdTest:
    quantile: float  # the quantile of interest that chose this threshold
    bound: float  # the bucket bound L (e.g. milliseconds)
    rate: RateTest  # evidence on the exceedance ratio canary/baseline
    effect: float | None  # as a latency ratio
    interval: tuple[float, float] | None  # as latency ratios
    canary_quantile: float | None
    baseline_quantile: float | None


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


def _survival(le: np.ndarray, surv: np.ndarray, x: float) -> float:
    """Share of requests above x, interpolated inside the bucket that holds x (``surv``: the
    shares above each bound, ``_survival_at_bounds``).

    Inside a bucket, log-survival is taken linear in log-latency (a power law), which
    follows the steep tail of latency distributions across Istio's wide buckets far better
    than Prometheus' linear interpolation; the first bucket, starting at 0, stays linear.
    """
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


def _inverse_survival(le: np.ndarray, surv: np.ndarray, target: float) -> float | None:
    """The latency above which a share ``target`` of requests lies (inverse of _survival)."""
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


def _ratio_from_exceedance(le: np.ndarray, surv: np.ndarray, bound: float,
                           exceedance_ratio: float) -> float:
    """Latency ratio a with S_b(bound / a) = exceedance_ratio · S_b(bound) (``surv``: the
    baseline's shares above each bound)."""
    target = exceedance_ratio * _survival(le, surv, bound)
    if target >= 1.0:
        return math.inf
    if target <= 0.0:
        return 0.0
    x = _inverse_survival(le, surv, target)
    if x is None or x <= 0:
        return math.inf
    return bound / x


def _thresholds(le: np.ndarray, baseline: np.ndarray,
                quantiles: tuple[float, ...]) -> list[tuple[float, int]]:
    """(quantile, bucket index) pairs: the bounds just below and above each baseline
    quantile, and the first bound at or above the baseline's largest request (``NEW_TAIL``)."""
    counts = np.cumsum(baseline)
    total = counts[-1]
    cumulative = counts / total
    chosen: dict[int, float] = {}
    last = len(le) - 1  # +Inf: nothing can lie above it
    for q in quantiles:
        j = int(np.searchsorted(cumulative, q, side="left"))
        for k in (j - 1, j):
            if 0 <= k < last and 0.0 < cumulative[k] < 1.0:
                chosen.setdefault(k, q)
    top = int(np.searchsorted(counts, total, side="left"))  # all baseline requests ≤ le[top]
    if top < last:
        chosen.setdefault(top, NEW_TAIL)
    return sorted(((q, k) for k, q in chosen.items()), key=lambda item: item[1])


def _harm_key(direction: str):
    if direction == "increase":
        return lambda t: t.rate.log_e_increase
    if direction == "decrease":
        return lambda t: t.rate.log_e_decrease
    return lambda t: max(t.rate.log_e_increase, t.rate.log_e_decrease)


def _shares_above(pooled: np.ndarray) -> np.ndarray:
    """Per row of pooled bucket counts: share above 0 (1.0) and above each finite bound."""
    total = pooled.sum(axis=1, keepdims=True)
    above = total - np.cumsum(pooled, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, above / total, 0.0)
    return np.concatenate((np.ones((len(pooled), 1)), share[:, :-1]), axis=1)


class LatencyState:
    """Running state of the latency test: thresholds fixed once (``FIX_REQUESTS``), one
    ``RateState`` batch with a member per threshold (all thresholds folded in one pass),
    pooled bucket counts for the reports.

    Intervals before the thresholds are fixed wait in a buffer and are folded in when they
    are (so the state does not depend on how the intervals were chunked). Exceedance-ratio
    margins other than 1.0 are bounded per interval from the baseline's earlier intervals.
    """

    def __init__(self, *, quantiles: tuple[float, ...], allowed_increase: float = 1.0,
                 allowed_decrease: float = 1.0, direction: str = "increase") -> None:
        self.settings: dict[str, Any] = {
            "quantiles": list(quantiles), "allowed_increase": allowed_increase,
            "allowed_decrease": allowed_decrease, "direction": direction}
        self.le: np.ndarray | None = None
        self.pooled_c: np.ndarray | None = None
        self.pooled_b: np.ndarray | None = None
        self.fixed_b: np.ndarray | None = None  # the baseline the thresholds came from
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.thresholds: list[tuple[float, int]] | None = None
        self.test: RateState | None = None  # member i: thresholds[i]

    def extend(self, le: np.ndarray, canary: np.ndarray, baseline: np.ndarray) -> None:
        le = np.asarray(le, dtype=float)
        canary = np.asarray(canary, dtype=float)
        baseline = np.asarray(baseline, dtype=float)
        if self.le is None:
            self.le = le
            self.pooled_c = np.zeros(len(le))
            self.pooled_b = np.zeros(len(le))
        elif len(le) != len(self.le) or not np.array_equal(le, self.le):
            raise ValueError("histogram bucket bounds changed within one analysis")
        if len(canary) == 0:
            return
        assert self.pooled_c is not None and self.pooled_b is not None
        before = self.pooled_b + _exclusive_rows(baseline)
        self.pooled_c = self.pooled_c + canary.sum(axis=0)
        self.pooled_b = self.pooled_b + baseline.sum(axis=0)
        if self.thresholds is not None:
            self._fold(canary, baseline, before)
            return
        self.pending.append((canary, baseline))
        rows_c = np.concatenate([c for c, _ in self.pending])
        rows_b = np.concatenate([b for _, b in self.pending])
        served = np.cumsum(rows_b.sum(axis=1))
        ready = np.nonzero(served >= FIX_REQUESTS)[0]
        if len(ready) == 0:
            return
        fix = int(ready[0])
        self.fixed_b = rows_b[: fix + 1].sum(axis=0)
        quantiles = tuple(self.settings["quantiles"])
        self.thresholds = _thresholds(self.le, self.fixed_b, quantiles)
        self.test = RateState(size=len(self.thresholds))
        self.pending = []
        before = _exclusive_rows(rows_b)
        before[: fix + 1] = self.fixed_b  # intervals up to the fixing one: its baseline
        self._fold(rows_c, rows_b, before)

    def _fold(self, canary: np.ndarray, baseline: np.ndarray, before: np.ndarray) -> None:
        assert self.le is not None and self.thresholds is not None and self.test is not None
        le = self.le
        den_c, den_b = canary.sum(axis=1), baseline.sum(axis=1)
        keep = (den_c > 0) & (den_b > 0)
        columns = np.array([k + 1 for _, k in self.thresholds])
        above_c = np.cumsum(canary[keep, ::-1], axis=1)[:, ::-1][:, columns].T
        above_b = np.cumsum(baseline[keep, ::-1], axis=1)[:, ::-1][:, columns].T
        nc, nb = den_c[keep], den_b[keep]
        data = SplitData(above_c, above_c + above_b, np.log(nc) - np.log(nb), nc, nb)
        shares = _shares_above(before[keep])
        bounds = np.concatenate(([0.0], le[:-1]))
        at = le[columns - 1]
        up, gate_up = self._margins(shares, bounds, columns, at,
                                    self.settings["allowed_increase"], increase=True)
        down, gate_down = self._margins(shares, bounds, columns, at,
                                        self.settings["allowed_decrease"], increase=False)
        self.test.extend(data, {"up": up, "gate_up": gate_up, "down": down,
                                "gate_down": gate_down})

    @staticmethod
    def _margins(shares: np.ndarray, bounds: np.ndarray, columns: np.ndarray,
                 at: np.ndarray, ratio: float, *, increase: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(fail, gate) exceedance-ratio margins for a latency ratio, per threshold (bucket
        bounds ``at``, share columns ``columns``) and row.

        ``S_b(bound / ratio)`` lies between the survival at the bucket bounds around it; the
        fail side takes the bound that over-states the margin, the gate the one that
        under-states it. Where the baseline had nothing above ``bound`` yet, the fail margin
        is the largest the judge allows and the gate's is 1.
        """
        shape = (len(columns), len(shares))
        if ratio == 1.0:
            return np.ones(shape), np.ones(shape)
        base = shares[:, columns].T
        x = at / ratio
        below = np.searchsorted(bounds, x, side="right") - 1
        above = np.searchsorted(bounds, x, side="left")
        upper = shares[:, below].T
        padded = np.concatenate((shares, np.zeros((len(shares), 1))), axis=1)
        lower = padded[:, np.minimum(above, len(bounds))].T  # beyond the last bound: 0
        seen = base > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            high = np.where(seen, upper / base, 0.0)
            low = np.where(seen, lower / base, 0.0)
        if increase:
            fail = np.where(seen, np.maximum(high, 1.0), MAX_ABSOLUTE_RATIO)
            gate = np.where(seen, np.maximum(low, 1.0), 1.0)
            return fail, gate
        fail = np.where(seen, np.clip(low, 1e-9, 1.0), 1e-9)
        gate = np.where(seen, np.clip(high, 1e-9, 1.0), 1.0)
        return fail, gate

    def result(self, interval_log_k: float | None = None) -> LatencyTest:
        """The test on every interval so far; the confidence sequence (when asked) only for
        the threshold with the strongest evidence of harm in ``direction`` (the one
        reported)."""
        pooled_c = np.zeros(1) if self.pooled_c is None else self.pooled_c
        pooled_b = np.zeros(1) if self.pooled_b is None else self.pooled_b
        canary_total, baseline_total = int(pooled_c.sum()), int(pooled_b.sum())
        if (not self.thresholds or self.test is None or self.le is None
                or canary_total == 0):
            return LatencyTest(0.0, 0.0, (), canary_total, baseline_total, None)
        le = self.le
        surv = _survival_at_bounds(le, pooled_b)
        quantiles: dict[float, tuple[float | None, float | None]] = {}
        tests = [self._threshold(q, float(le[k]), rate, surv, quantiles)
                 for (q, k), rate in zip(self.thresholds, self.test.results(), strict=True)]
        # Reported: the strongest evidence of harm among thresholds with an estimate (a new
        # tail without events yet has none to report).
        key = _harm_key(self.settings["direction"])
        best = max(range(len(tests)),
                   key=lambda i: (tests[i].rate.estimate is not None, key(tests[i])))
        if interval_log_k is not None:
            bound = tests[best].bound
            ratios = self.test.interval(best, interval_log_k)
            interval = None
            if ratios is not None:
                interval = (_ratio_from_exceedance(le, surv, bound, ratios[0]),
                            _ratio_from_exceedance(le, surv, bound, ratios[1]))
            tests[best] = replace(tests[best], rate=replace(tests[best].rate, interval=ratios),
                                  interval=interval)
        n = math.log(len(tests))
        log_up = float(np.logaddexp.reduce([t.rate.log_e_increase for t in tests]) - n)
        log_down = float(np.logaddexp.reduce([t.rate.log_e_decrease for t in tests]) - n)
        return LatencyTest(log_up, log_down, tuple(tests), canary_total, baseline_total,
                           tests[best])

    def _threshold(self, q: float, bound: float, rate: RateTest, surv: np.ndarray,
                   quantiles: dict[float, tuple[float | None, float | None]]
                   ) -> ThresholdTest:
        """One threshold's report (without an interval); ``surv`` holds the baseline's
        shares above each bound, ``quantiles`` caches the pooled quantiles by label, which
        thresholds share."""
        assert self.le is not None and self.pooled_b is not None and self.pooled_c is not None
        le, pooled_b = self.le, self.pooled_b
        effect = None
        if rate.estimate is not None and pooled_b.sum() > 0:
            effect = _ratio_from_exceedance(le, surv, bound, rate.estimate)
        label = max(self.settings["quantiles"]) if q == NEW_TAIL else q
        if label not in quantiles:
            quantiles[label] = (quantile_from_buckets(le, self.pooled_c, label),
                                quantile_from_buckets(le, pooled_b, label))
        return ThresholdTest(q, bound, rate, effect, None, *quantiles[label])

    def copy(self) -> LatencyState:
        other = LatencyState.__new__(LatencyState)
        other.settings = dict(self.settings)
        other.le, other.fixed_b = self.le, self.fixed_b
        other.pooled_c = None if self.pooled_c is None else self.pooled_c.copy()
        other.pooled_b = None if self.pooled_b is None else self.pooled_b.copy()
        other.pending = list(self.pending)
        other.thresholds = None if self.thresholds is None else list(self.thresholds)
        other.test = None if self.test is None else self.test.copy()
        return other

    def to_dict(self) -> dict[str, Any]:
        def listed(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(x) for x in a]

        return {"settings": self.settings,
                "le": None if self.le is None else [_finite(x) for x in self.le],
                "pooled_c": listed(self.pooled_c), "pooled_b": listed(self.pooled_b),
                "fixed_b": listed(self.fixed_b),
                "pending": [[c.tolist(), b.tolist()] for c, b in self.pending],
                "thresholds": None if self.thresholds is None
                else [[q, k] for q, k in self.thresholds],
                "test": None if self.test is None else self.test.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyState:
        settings = data["settings"]
        state = cls(quantiles=tuple(settings["quantiles"]),
                    allowed_increase=settings["allowed_increase"],
                    allowed_decrease=settings["allowed_decrease"],
                    direction=settings["direction"])

        def array(value: list | None) -> np.ndarray | None:
            return None if value is None else np.asarray(value, dtype=float)

        state.le = None if data["le"] is None else np.asarray(
            [math.inf if x is None else x for x in data["le"]], dtype=float)
        state.pooled_c, state.pooled_b = array(data["pooled_c"]), array(data["pooled_b"])
        state.fixed_b = array(data["fixed_b"])
        buckets = 0 if state.le is None else len(state.le)
        state.pending = [(np.asarray(c, dtype=float).reshape(-1, buckets),
                          np.asarray(b, dtype=float).reshape(-1, buckets))
                         for c, b in data["pending"]]
        state.thresholds = None if data["thresholds"] is None else [
            (float(q), int(k)) for q, k in data["thresholds"]]
        state.test = None if data["test"] is None else RateState.from_dict(data["test"])
        return state


def _finite(x: float) -> float | None:
    """JSON has no infinity: the +Inf bucket bound is stored as null."""
    return None if math.isinf(x) else float(x)


def _exclusive_rows(rows: np.ndarray) -> np.ndarray:
    """Per row, the sum of the rows before it."""
    running = np.cumsum(rows, axis=0)
    return np.concatenate((np.zeros((1, rows.shape[1])), running[:-1]), axis=0)


def latency_test(le: np.ndarray, canary: np.ndarray, baseline: np.ndarray, *,
                 quantiles: tuple[float, ...], allowed_increase: float = 1.0,
                 allowed_decrease: float = 1.0, direction: str = "increase",
                 interval_log_k: float | None = None) -> LatencyTest:
    """Evidence that the canary is slower (or faster) than the baseline beyond the margins,
    on (intervals × buckets) non-cumulative counts folded into a ``LatencyState`` at once."""
    state = LatencyState(quantiles=quantiles, allowed_increase=allowed_increase,
                         allowed_decrease=allowed_decrease, direction=direction)
    state.extend(le, canary, baseline)
    return state.result(interval_log_k)
