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
from typing import Any

import numpy as np

from analyzer.judge.rate import SplitData
from analyzer.judge.ratestate import RateState

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


class TrafficState:
    """Running state of the split check: the mixture over every interval under a known
    weight, totals, and the latest intervals for the live service's recent-only check."""

    def __init__(self) -> None:
        self.test = _split_state()
        self.totals = [0.0, 0.0]
        self.recent: list[list[float]] = []  # [canary, baseline, weight] per interval
        self.weight: float | None = None  # percent in force at the latest interval

    def extend(self, canary_requests: np.ndarray, baseline_requests: np.ndarray,
               weights: np.ndarray | None) -> None:
        """``weights`` holds the percent in force per interval (NaN or None where unknown)."""
        nc = np.asarray(canary_requests, dtype=float)
        nb = np.asarray(baseline_requests, dtype=float)
        if len(nc) == 0:
            return
        w = np.full(len(nc), np.nan) if weights is None else np.asarray(weights, dtype=float)
        if len(w) != len(nc):
            raise ValueError(f"{len(w)} weights for {len(nc)} intervals")
        self.totals[0] += float(nc.sum())
        self.totals[1] += float(nb.sum())
        self.weight = None if not np.isfinite(w[-1]) else float(w[-1])
        self.recent = (self.recent + [[float(a), float(b), float(c)]
                                      for a, b, c in zip(nc, nb, w, strict=True)
                                      ][-RECENT_INTERVALS:])[-RECENT_INTERVALS:]
        _feed(self.test, nc, nb, w / 100.0)

    def check(self, *, alpha: float, recent_only: bool = False) -> TrafficCheck:
        total = sum(self.totals)
        if self.weight is None:
            share = self.totals[0] / total if total else None
            return TrafficCheck(None, share, True, None,
                                "no canary weight known: split not checked")
        weight_now = self.weight
        test = self.test
        if recent_only:
            nc, nb, w = (np.array(x) for x in zip(*self.recent, strict=True))
            test = _split_state()
            _feed(test, nc, nb, w / 100.0)
            counted = float(nc.sum()), float(nb.sum())
        else:
            counted = (self.totals[0], self.totals[1])
        share = counted[0] / sum(counted) if sum(counted) else None
        if test.n == 0:
            return TrafficCheck(weight_now, share, True, None,
                                "no traffic under a split weight yet: split not checked")
        result = test.result()
        log_e = float(np.logaddexp(result.log_e_increase, result.log_e_decrease)
                      - math.log(2.0))
        e_value = math.exp(min(log_e, 700.0))
        if log_e < math.log(1.0 / alpha):
            return TrafficCheck(weight_now, share, True, e_value,
                                f"observed canary share {share:.3g} fits weight {weight_now:g}%")
        direction = "less" if result.log_e_decrease > result.log_e_increase else "more"
        return TrafficCheck(
            weight_now, share, False, e_value,
            f"canary gets {direction} traffic than its weight: observed share {share:.3g} at "
            f"weight {weight_now:g}% (e-value {e_value:.3g} ≥ {1 / alpha:g})")

    def copy(self) -> TrafficState:
        other = TrafficState.__new__(TrafficState)
        other.test = self.test.copy()
        other.totals = list(self.totals)
        other.recent = [list(r) for r in self.recent]
        other.weight = self.weight
        return other

    def to_dict(self) -> dict[str, Any]:
        recent = [[a, b, None if math.isnan(c) else c] for a, b, c in self.recent]
        return {"test": self.test.to_dict(), "totals": self.totals, "recent": recent,
                "weight": self.weight}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficState:
        state = cls()
        state.test = RateState.from_dict(data["test"])
        state.totals = [float(x) for x in data["totals"]]
        state.recent = [[float(a), float(b), math.nan if c is None else float(c)]
                        for a, b, c in data["recent"]]
        state.weight = None if data["weight"] is None else float(data["weight"])
        return state


def _split_state() -> RateState:
    return RateState(allowed_increase=TOLERANCE, allowed_decrease=1.0 / TOLERANCE,
                     tau2=ROUTING_TAU2, requests=False, grid=False)


def _feed(state: RateState, nc: np.ndarray, nb: np.ndarray, w: np.ndarray) -> None:
    """The intervals under a split weight (0 < w < 1) with traffic, as a binomial split."""
    requests = nc + nb
    inside = np.isfinite(w) & (w > 0) & (w < 1) & (requests > 0)
    if inside.any():
        expected = w[inside]
        state.extend(SplitData(nc[inside], requests[inside],
                               np.log(expected) - np.log1p(-expected)))


def check_split(canary_requests: np.ndarray, baseline_requests: np.ndarray,
                weights: np.ndarray | None, *, alpha: float,
                recent_only: bool = False) -> TrafficCheck:
    """The split check on whole series (``weights``: percent per interval, NaN unknown)."""
    state = TrafficState()
    state.extend(canary_requests, baseline_requests, weights)
    return state.check(alpha=alpha, recent_only=recent_only)
