"""Is the canary getting the traffic its weight says? An anytime-valid sample-ratio check.

Requests are routed one by one with the VirtualService weight as the probability, so the
canary's requests in an interval are Binomial(requests, weight). The same mixture e-process
as the rate test (``analyzer.judge.rate``) asks whether the canary's odds of getting a
request differ from the weight's odds by more than ``tolerance`` either way: a canary that
gets nothing at 25% (pods not ready, a wrong route) or whose share is skewed by retries.

The comparison tests do not need the split to match: they condition on the observed shares.
So a mismatch never fails a canary; it turns a ``pass`` into ``inconclusive``, because the
canary is not being tested on the traffic the rollout step intends.

Weights change between Rollouts steps. Replayed datasets carry the weight of every interval.
The live service only knows the current weight, so it checks the most recent intervals and
tolerates a 2× odds difference, which one interval straddling a step change stays within.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analyzer.judge.rate import SplitData, rate_test

TOLERANCE = 2.0
# Routing is per request, so the split is binomial; a small fixed jitter allowance (CV 5%
# of the share per interval) keeps session affinity and retries from reading as a mismatch,
# and the 2x tolerance absorbs the rest. At 0.04 the tempering grew with the request count
# until a 4x mismatch at 200 req/s could not be shown within the 2 intervals the live check
# reads.
ROUTING_TAU2 = 0.0025
RECENT_INTERVALS = 2


@dataclass(frozen=True)
class TrafficCheck:
    canary_weight: float | None  # percent, the weight in force at the last interval
    observed_canary_share: float | None  # over the intervals checked
    split_ok: bool
    e_value: float | None
    reason: str


def check_split(canary_requests: np.ndarray, baseline_requests: np.ndarray,
                weights: np.ndarray | None, *, alpha: float,
                recent_only: bool = False) -> TrafficCheck:
    """``weights`` holds the percent in force per interval (NaN where unknown)."""
    nc = np.asarray(canary_requests, dtype=float)
    nb = np.asarray(baseline_requests, dtype=float)
    total = nc.sum() + nb.sum()
    if weights is None or len(weights) == 0 or not np.isfinite(weights[-1]):
        share = float(nc.sum() / total) if total else None
        return TrafficCheck(None, share, True, None, "no canary weight known: split not checked")
    w = np.asarray(weights, dtype=float) / 100.0
    if recent_only:
        nc, nb, w = nc[-RECENT_INTERVALS:], nb[-RECENT_INTERVALS:], w[-RECENT_INTERVALS:]
    requests = nc + nb
    share = float(nc.sum() / requests.sum()) if requests.sum() else None
    weight_now = float(weights[-1])
    inside = np.isfinite(w) & (w > 0) & (w < 1) & (requests > 0)
    if not inside.any():
        return TrafficCheck(weight_now, share, True, None,
                            "no traffic under a split weight yet: split not checked")
    expected = w[inside]
    data = SplitData(nc[inside], requests[inside],
                     np.log(expected) - np.log1p(-expected))
    test = rate_test(data, allowed_increase=TOLERANCE, allowed_decrease=1.0 / TOLERANCE,
                     tau2=ROUTING_TAU2)
    log_e = float(np.logaddexp(test.log_e_increase, test.log_e_decrease) - math.log(2.0))
    e_value = math.exp(min(log_e, 700.0))
    if log_e < math.log(1.0 / alpha):
        return TrafficCheck(weight_now, share, True, e_value,
                            f"observed canary share {share:.3g} fits weight {weight_now:g}%")
    direction = "less" if test.log_e_decrease > test.log_e_increase else "more"
    return TrafficCheck(
        weight_now, share, False, e_value,
        f"canary gets {direction} traffic than its weight: observed share {share:.3g} at "
        f"weight {weight_now:g}% (e-value {e_value:.3g} ≥ {1 / alpha:g})")
