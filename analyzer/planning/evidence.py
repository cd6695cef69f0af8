"""How fast the judge's evidence grows, per event and per interval: the planning model.

The judge tests the canary/baseline rate ratio conditional on each interval's events
(``analyzer.judge.rate``): given ``e`` events in an interval where the canary has a share ``u``
of the requests, the canary's count is Binomial(e, θ) with ``θ = uρ / (uρ + 1 − u)`` for a
true ratio ρ. Evidence against a margin ratio ``m`` grows per event by about
``KL(θ ‖ θ_m) / θ`` per *canary* event (Wald), divided by the overdispersion allowance
(tempering) the judge applies, and a mixture over alternatives needs somewhat more than a test
that knew the ratio (``MIXTURE_OVERHEAD``).

The judge's constants (alternatives grid, jitter prior and its weight, the level of the
baseline-rate bounds) and its per-event model (``analyzer.judge.rate.needed_events``, which
the live "needs ≈ N more canary errors" uses) are imported, so the plan moves with the judge;
``benchmarks/plan`` and ``tests/test_plan_simulation.py`` run the real judge on simulated
canaries and fail when the model and the judge drift apart.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import gamma

from analyzer.judge.rate import (
    BASELINE_BOUND_LEVEL,
    MAX_ABSOLUTE_RATIO,
    OFFSETS,
    PRIOR_INTERVALS,
    PRIOR_TAU2,
    event_share,
)

# The judge's own constants and per-event model: the plan must drift with the judge, never
# from it. The baseline-rate bounds use half the split's jitter prior, as the judge does.
BASELINE_PRIOR_TAU2 = PRIOR_TAU2 / 2


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
