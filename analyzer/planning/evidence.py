"""How fast the judge's evidence grows, per event and per interval: the planning model.

The judge tests the canary/baseline rate ratio conditional on each interval's events
(``analyzer.judge.rate``): given ``e`` events in an interval where the canary has a share ``u``
of the requests, the canary's count is Binomial(e, θ) with ``θ = uρ / (uρ + 1 − u)`` for a
true ratio ρ. Evidence against a margin ratio ``m`` grows per event by about
``KL(θ ‖ θ_m) / θ`` per *canary* event (Wald), divided by the overdispersion allowance
(tempering) the judge applies, and a mixture over alternatives needs somewhat more than a test
that knew the ratio (``MIXTURE_OVERHEAD``).

The constants below restate the judge's published design (issue "Judge, round two";
docs/statistics.md): the alternatives grid, the jitter prior and its weight, the tempering
safety factor and the level of the baseline-rate bounds that turn an absolute margin into a
ratio. They are restated, not imported, so that the plan depends on the judge's statistics and
not on its internals; ``benchmarks/plan`` and ``tests/test_plan_simulation.py`` run the real
judge on simulated canaries and fail when the two drift apart.

``needed_events`` is the piece the live judge's "needs ≈ N more canary errors" uses.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import gamma

# The judge's alternatives: ratio = margin × (1 + r), r from 5% to 10×, uniform weights.
OFFSETS = np.log1p(np.geomspace(0.05, 10.0, 30))
# Jitter prior (per-interval log-rate variance of both sides), worth PRIOR_INTERVALS intervals;
# a heavier one before any event was seen; tempering is 1 + TEMPER_SAFETY × overdispersion.
PRIOR_TAU2 = 0.5
PRIOR_INTERVALS = 4.0
FIRST_TAU2 = 4.0
TEMPER_SAFETY = 2.0
# The baseline-jitter prior of the baseline-rate bounds (half the split's), and their level.
BASELINE_PRIOR_TAU2 = PRIOR_TAU2 / 2
BASELINE_BOUND_LEVEL = 0.01
# An absolute allowance counts up to this many times the baseline's rate.
MAX_ABSOLUTE_RATIO = 20.0
# A mixture over alternatives needs about this much more evidence than a test that knew the
# ratio (the judge's figure; the simulations in benchmarks/plan check it).
MIXTURE_OVERHEAD = 1.3


def event_share(share: float | np.ndarray, ratio: float | np.ndarray) -> np.ndarray:
    """θ: the canary's expected share of the events at canary request share ``share`` and
    canary/baseline rate ratio ``ratio``."""
    u = np.asarray(share, dtype=float)
    r = np.asarray(ratio, dtype=float)
    return u * r / (u * r + 1.0 - u)


def _kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def evidence_per_canary_event(share: float, ratio: float, margin: float,
                              temper: float = 1.0) -> float:
    """Expected log-evidence against "ratio = margin" per canary event when the true ratio is
    ``ratio`` (Wald: KL divergence of the event split, per canary event), after tempering."""
    theta = float(event_share(share, ratio))
    bound = float(event_share(share, margin))
    if not 0.0 < theta < 1.0 or not 0.0 < bound < 1.0:
        return 0.0
    return _kl(theta, bound) / theta / max(temper, 1.0)


def needed_events(share: float, ratio: float, margin: float, missing_log_e: float,
                  temper: float = 1.0) -> float | None:
    """Roughly how many more canary events bring ``missing_log_e`` more log-evidence that the
    ratio lies on the side of ``margin`` where ``ratio`` is: Wald's per-event rate with the
    mixture's overhead. None when the ratio sits on the margin (no evidence ever accrues).

    The live judge calls it for "needs ≈ N more": ``share`` the canary's latest request share,
    ``ratio`` its estimate, ``margin`` the gate's ratio, ``temper`` the recent tempering.
    """
    if missing_log_e <= 0:
        return 0.0
    per_event = evidence_per_canary_event(share, ratio, margin, temper)
    if per_event <= 0:
        return None
    return MIXTURE_OVERHEAD * missing_log_e / per_event


def baseline_bounds(rate: float, seen_events: float, intervals: int) -> tuple[float, float]:
    """Lower and upper one-sided bounds on the baseline's rate after ``seen_events`` expected
    baseline events over ``intervals`` intervals, as the judge forms them (gamma bounds at
    level 1%, widened by the prior baseline jitter shrunk over the intervals seen)."""
    if seen_events <= 0 or rate <= 0:
        return 0.0, math.inf
    k = max(intervals, 1)
    dof = max(k - 1, 0)
    tau_b = PRIOR_INTERVALS * BASELINE_PRIOR_TAU2 / (dof + PRIOR_INTERVALS)
    effective = 1.0 / (1.0 / seen_events + tau_b / k)
    lower = rate * gamma.ppf(BASELINE_BOUND_LEVEL, effective) / effective
    upper = rate * gamma.ppf(1 - BASELINE_BOUND_LEVEL, effective + 1) / effective
    return float(lower), float(upper)


def margin_ratio(allowed_increase: float, absolute: float, bound: float) -> float:
    """The ratio ``max(allowed_increase × p, p + absolute)`` allows at baseline rate ``bound``,
    capped as the judge caps it."""
    if absolute <= 0:
        return allowed_increase
    cap = max(allowed_increase, MAX_ABSOLUTE_RATIO)
    allowed = math.inf if bound <= 0 else 1.0 + absolute / bound
    return min(max(allowed, allowed_increase), cap)


def prior_jitter(seen_scale: float, count: int, true_tau2: float = 0.0) -> float:
    """The judge's jitter estimate after ``count`` intervals of total information
    ``seen_scale``, in expectation when the true jitter is ``true_tau2``: the prior worth
    PRIOR_INTERVALS average intervals, shrunk by what was seen."""
    typical = seen_scale / count if count and seen_scale > 0 else 1.0
    prior = PRIOR_INTERVALS * typical
    return (seen_scale * true_tau2 + prior * PRIOR_TAU2) / (seen_scale + prior)


def _component_gains(share: float, ratio: float, margin: float, temper: float,
                     upward: bool) -> np.ndarray:
    """Expected tempered log-likelihood ratio per canary event of each mixture component
    (alternative ``margin × (1 + r)^±1`` against ``margin``) when the true ratio is ``ratio``."""
    theta = float(event_share(share, ratio))
    null = float(event_share(share, margin))
    sign = 1.0 if upward else -1.0
    alt = event_share(share, margin * np.exp(sign * OFFSETS))
    per_event = theta * np.log(alt / null) + (1 - theta) * np.log((1 - alt) / (1 - null))
    return per_event / theta / max(temper, 1.0)


def mixture_events_needed(share: float, ratio: float, margin: float, log_k: float, *,
                          seen_events: float = 0.0, temper: float = 1.0,
                          upward: bool = False) -> float | None:
    """Canary events beyond ``seen_events`` after which the judge's mixture e-value reaches
    ``exp(log_k)`` on the expected path, at a constant share, ratio, margin and tempering.

    Unlike ``needed_events`` it needs no overhead factor: it evaluates the mixture itself
    (the mean of the components' likelihood ratios, each growing at its own expected rate),
    so the price of not knowing the ratio is paid where it is paid, early. ``upward`` is the
    fail test, otherwise the gate. None when no component gains evidence (the ratio is on the
    wrong side of the margin or on it).
    """
    gains = _component_gains(share, ratio, margin, temper, upward)
    if gains.max() <= 0:
        return None
    log_n = math.log(len(gains))

    def log_e(events: float) -> float:
        values = events * gains
        top = values.max()
        return float(top + math.log(np.exp(values - top).sum()) - log_n)

    if log_e(seen_events) >= log_k:
        return 0.0
    low, high = seen_events, max(seen_events, 1.0)
    while log_e(high) < log_k:
        low, high = high, high * 2.0
    for _ in range(60):
        middle = (low + high) / 2.0
        if log_e(middle) >= log_k:
            high = middle
        else:
            low = middle
    return high - seen_events
