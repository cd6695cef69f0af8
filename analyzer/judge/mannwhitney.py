"""Kayenta-compatible Mann-Whitney classifier for ``gauge`` metrics (one sample per interval).

This reproduces the per-metric rules of Spinnaker Kayenta's NetflixACAJudge so that configs and
results carried over from Kayenta behave the same way here. It is a **fixed-horizon** test and
**not anytime-valid**: judging it again at every Rollouts poll inflates the false-fail rate, which
is why it is reserved for metrics that are not counts (CPU, memory, queue depth, ...).

The interval is R's ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE)`` with
``x`` = canary and ``y`` = baseline: the normal approximation of the rank-sum statistic with
tie and continuity corrections, inverted by root finding. No p-value is computed; a shift is
reported only when the interval clears a band of ``tolerance × |Hodges-Lehmann shift|`` around
zero and the mean ratio passes the effect-size gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DIRECTIONS = ("increase", "decrease", "either")
NAN_STRATEGIES = ("remove", "replace")
# Kayenta jitters constant-but-different samples with N(0, (1e-5·value)²) so that the rank test
# has spread to work with. Kayenta's noise is unseeded; ours uses a fixed seed so replaying the
# same data always gives the same classification.
_NOISE_SCALE = 1e-5
_NOISE_SEED = 20170701
# Root-finding tolerance relative to the search width: gauges range from CPU fractions to bytes.
_RELATIVE_XTOL = 1e-10


@dataclass(frozen=True)
class MannWhitneyOutcome:
    """One metric's classification with the evidence behind it."""

    classification: str  # "pass" | "high" | "low" | "nodata" | "nodata-fail"
    reason: str
    estimate: float | None  # Hodges-Lehmann shift (canary − baseline), None when not computed
    interval: tuple[float, float] | None
    effect: float | None  # mean ratio canary/baseline, None when undefined
    canary_count: int
    baseline_count: int
    canary_mean: float | None
    baseline_mean: float | None


def wilcoxon_diff(mu: float, q: float, x: np.ndarray, y: np.ndarray) -> float:
    """Standardised rank-sum statistic of ``x − mu`` against ``y``, minus the quantile ``q``.

    Non-increasing in ``mu`` (apart from the ±0.5 continuity step near zero), so its roots in
    ``mu`` at ``q = ±z`` are the interval ends and its root at ``q = 0`` the shift estimate.
    Raises ``ValueError`` when every observation is tied (the variance is zero).
    """
    nx, ny = len(x), len(y)
    n = nx + ny
    pooled = np.concatenate((np.asarray(x, dtype=float) - mu, np.asarray(y, dtype=float)))
    from scipy.stats import rankdata  # scipy.stats costs ~1 s to import: only when used

    ranks = rankdata(pooled)  # average ranks for ties, as R's rank()
    dz = ranks[:nx].sum() - nx * (nx + 1) / 2 - nx * ny / 2
    ties = np.unique(pooled, return_counts=True)[1].astype(float)
    variance = nx * ny / 12 * ((n + 1) - np.sum(ties**3 - ties) / (n * (n - 1)))
    if variance <= 0:
        raise ValueError("cannot compute confidence interval when all observations are tied")
    return float((dz - np.sign(dz) * 0.5) / math.sqrt(variance) - q)


def mann_whitney_interval(canary: np.ndarray, baseline: np.ndarray,
                          confidence: float = 0.98) -> tuple[float, float, float]:
    """(lower, upper, estimate) of the location shift canary − baseline.

    A canary with larger values gives a positive shift. Raises ``ValueError`` for empty or
    non-finite input, a confidence outside (0, 1), or data whose observations are all tied.
    """
    x = np.asarray(canary, dtype=float).ravel()
    y = np.asarray(baseline, dtype=float).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("both samples need at least one value")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("samples must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    lo, hi = float(x.min() - y.max()), float(x.max() - y.min())
    from scipy.optimize import brentq
    from scipy.stats import norm

    z = -norm.ppf((1 - confidence) / 2)  # positive, e.g. 2.326 at 98%

    def root(q: float) -> float:
        # R's rule: the statistic falls with mu, so if it does not change sign over the search
        # range the root is the end it cannot get past.
        f_lo, f_hi = wilcoxon_diff(lo, q, x, y), wilcoxon_diff(hi, q, x, y)
        if f_lo <= 0:
            return lo
        if f_hi >= 0:
            return hi
        return float(brentq(wilcoxon_diff, lo, hi, args=(q, x, y),
                            xtol=_RELATIVE_XTOL * (hi - lo)))

    return root(z), root(-z), root(0.0)


def classify(canary: np.ndarray, baseline: np.ndarray, *, direction: str = "either",
             allowed_increase: float = 1.0, allowed_decrease: float = 1.0,
             nan_strategy: str = "remove", must_have_data: bool = False, critical: bool = False,
             confidence: float = 0.98, tolerance: float = 0.25) -> MannWhitneyOutcome:
    """Classify canary against baseline as Kayenta's ``MannWhitneyClassifier`` does.

    ``high``/``low`` need the interval to clear ``±tolerance·|shift|`` in a harmful
    ``direction`` and the mean ratio to reach ``allowed_increase``/``allowed_decrease`` (the
    gate is skipped when a mean is 0). Non-finite values are missing data: ``remove`` drops
    them, ``replace`` sets them to 0.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if nan_strategy not in NAN_STRATEGIES:
        raise ValueError(f"nan_strategy must be one of {NAN_STRATEGIES}, got {nan_strategy!r}")
    if not 0 < confidence < 1 or tolerance < 0:
        raise ValueError(f"need 0 < confidence < 1 and tolerance ≥ 0, "
                         f"got {confidence} and {tolerance}")
    x = _handle_missing(canary, nan_strategy)
    y = _handle_missing(baseline, nan_strategy)
    counts: dict[str, Any] = {"canary_count": x.size, "baseline_count": y.size}

    if x.size == 0 or y.size == 0:
        missing = "canary" if x.size == 0 else "baseline"
        if nan_strategy == "replace":
            return _outcome("pass", f"no {missing} samples to compare", **counts)
        if must_have_data and not critical:
            return _outcome("nodata-fail", f"no {missing} samples and the metric must have data",
                            **counts)
        return _outcome("nodata", f"no {missing} samples", **counts)

    means = {"canary_mean": float(x.mean()), "baseline_mean": float(y.mean())}
    ratio = (means["canary_mean"] / means["baseline_mean"]
             if means["canary_mean"] != 0 and means["baseline_mean"] != 0 else None)
    evidence: dict[str, Any] = {**counts, **means, "effect": ratio}

    if np.array_equal(np.sort(x), np.sort(y)):
        return _outcome("pass", "data are identical", **evidence)
    if np.unique(np.concatenate((x, y))).size == 1:
        return _outcome("pass", f"every sample equals {x[0]:.4g}", **evidence)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        x, y = _jitter(x, y)
        if np.ptp(x) == 0 and np.ptp(y) == 0:
            # One sample (or only zeros, which get no noise) on each side: every observation
            # ties at the shift x − y. Kayenta reports Error, which never counts as a failure.
            return _outcome("pass", "too few distinct samples for an interval", **evidence)

    lower, upper, estimate = mann_whitney_interval(x, y, confidence)
    band = tolerance * abs(estimate)
    span = f"{confidence:.0%} interval [{lower:.4g}, {upper:.4g}] of the shift"
    evidence.update(estimate=estimate, interval=(lower, upper))
    if lower > band and direction in ("increase", "either"):
        gate = _gate(ratio, allowed_increase, above=True)
        clears = f"{span} clears the +{tolerance:.0%} band ({band:.4g})"
        return _outcome("high" if gate[0] else "pass", f"{clears}; {gate[1]}", **evidence)
    if upper < -band and direction in ("decrease", "either"):
        gate = _gate(ratio, allowed_decrease, above=False)
        clears = f"{span} clears the -{tolerance:.0%} band ({-band:.4g})"
        return _outcome("low" if gate[0] else "pass", f"{clears}; {gate[1]}", **evidence)
    if lower > band or upper < -band:
        change = "increase" if lower > band else "decrease"
        return _outcome("pass", f"{span} shows a {change}; direction is {direction}", **evidence)
    return _outcome("pass", f"{span} does not clear the ±{tolerance:.0%} band ({band:.4g})",
                    **evidence)


def _handle_missing(values: np.ndarray, nan_strategy: str) -> np.ndarray:
    """Apply the NaN strategy; ±inf counts as missing too (Kayenta would fail with Error)."""
    v = np.asarray(values, dtype=float).ravel()
    missing = ~np.isfinite(v)
    return v[~missing] if nan_strategy == "remove" else np.where(missing, 0.0, v)


def _jitter(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kayenta's noise for two constant, different samples, from a fixed-seed generator."""
    rng = np.random.default_rng(_NOISE_SEED)
    return (x + rng.normal(0.0, _NOISE_SCALE * abs(x[0]), x.size),
            y + rng.normal(0.0, _NOISE_SCALE * abs(y[0]), y.size))


def _gate(ratio: float | None, allowed: float, *, above: bool) -> tuple[bool, str]:
    """The effect-size gate: whether it lets the classification through, and why."""
    if ratio is None:
        return True, "mean ratio undefined (a mean is 0), effect gate skipped"
    if above:
        passed = ratio >= allowed
        return passed, f"mean ratio {ratio:.4g} {'≥' if passed else '<'} {allowed:.4g}"
    passed = ratio <= allowed
    return passed, f"mean ratio {ratio:.4g} {'≤' if passed else '>'} {allowed:.4g}"


def _outcome(classification: str, reason: str, *, canary_count: int, baseline_count: int,
             canary_mean: float | None = None, baseline_mean: float | None = None,
             effect: float | None = None, estimate: float | None = None,
             interval: tuple[float, float] | None = None) -> MannWhitneyOutcome:
    """Build an outcome by keyword, so each early return states only what it has computed."""
    return MannWhitneyOutcome(classification, reason, estimate, interval, effect,
                              canary_count, baseline_count, canary_mean, baseline_mean)
