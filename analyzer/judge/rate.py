"""Anytime-valid test of a canary/baseline rate ratio, conditional on the events of each interval.

Why conditional: given that ``e`` events (say 5xx responses) happened in an interval in which
the canary served a share ``u`` of the requests, the number that came from the canary is
Binomial(e, θ) with ``logit θ = logit u + δ`` and ``δ = log(canary rate / baseline rate)``.
Traffic level, diurnal swings and outages that hit both sides cancel out, and the canary's
share enters each interval separately, so weight changes between Rollouts steps are handled
exactly (pooling counts across a weight change would not be).

The event-level test is a mixture likelihood ratio over a grid of alternatives beyond the
margin (Lindon, Sanden & Shirikian, KDD 2022; Lindon & Malek, NeurIPS 2022). Each component
is a nonnegative supermartingale under the null "δ ≤ margin", so the mixture is an e-process.

Bursty traffic: per-interval rates also vary independently on each side (a canary of two pods
has one slow node), and the split ``c | e`` is then overdispersed by ``1 + κ`` with
``κ ≈ τ² · eθ(1−θ)``, ``τ²`` the per-interval log-rate jitter of both sides together. The
judge decides per interval, *predictably* (from earlier intervals only), which unit of
evidence that interval feeds (``plan``):

* where binomial noise dominates (κ small: few events per interval), the event-level test,
  each interval's log-likelihood ratio tempered by ``1 + 2κ`` (matching the variance alone is
  not enough for heavy-tailed bursts). A tempering fixed before the interval is seen keeps
  every component a supermartingale under the binomial null (Jensen);
* where jitter dominates, the interval is one observation of a sequential t-test on the
  per-interval log rate ratio (``analyzer.judge.ttest``), which needs no estimate of τ².

The two streams are fed by disjoint intervals chosen in advance, so the product of their
e-processes is again one. Exact under the binomial model for the event stream; the t stream
and the overdispersed case are calibrated by simulation (docs/statistics.md).

Margins: a canary is acceptable when its rate is at most ``max(r × baseline, baseline + m)``.
The conditional test speaks ratios, so the absolute part becomes the ratio ``1 + m / p_b``
with ``p_b`` the baseline's rate, bounded predictably from the baseline's earlier intervals:
from below for the fail test (a larger margin: never fail a canary inside the region) and
from above for the promotion gate (a smaller margin: never promote one outside it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

# Alternatives: the rate ratio is `margin × (1 + r)` with r from 5% to 10×, uniform weights.
OFFSETS = np.log1p(np.geomspace(0.05, 10.0, 30))
# Prior for the jitter variance τ² (per-interval log-rate variance of both sides together):
# 0.5 ≈ 50% jitter per side, worth PRIOR_INTERVALS earlier intervals (bursts are common).
PRIOR_TAU2 = 0.5
PRIOR_INTERVALS = 4.0
# Jitter assumed for intervals before any event was seen (no estimate exists yet): large,
# so that one burst on the first look cannot fail a canary.
FIRST_TAU2 = 4.0
# An interval whose expected overdispersion κ reaches this joins the t-test, if both sides
# expect at least MIN_INTERVAL_EVENTS events in it.
INTERVAL_KAPPA = 0.25
MIN_INTERVAL_EVENTS = 8.0
# Event-level intervals are tempered by 1 + TEMPER_SAFETY·κ: matching the variance alone
# (safety 1) is not enough when bursts are heavy-tailed (simulated in docs/statistics.md).
TEMPER_SAFETY = 2.0
# The absolute allowance counts up to this many times the baseline's rate: a baseline with
# (nearly) no errors cannot be bounded from below, and 20× its rate is harm anyway.
MAX_ABSOLUTE_RATIO = 20.0
# One-sided level of the baseline-rate bounds that turn an absolute margin into a ratio.
BASELINE_BOUND_LEVEL = 0.01
_DELTA_BOUND = 25.0
# Planning: a mixture needs about this much more evidence than a test that knew the ratio,
# and the latest RECENT intervals stand for "current traffic".
MIXTURE_OVERHEAD = 1.3
RECENT = 5


@dataclass(frozen=True)
class SplitData:
    """Intervals with traffic on both sides, as the test needs them."""

    canary: np.ndarray  # canary events per interval (or per test and interval: a batch)
    events: np.ndarray  # events on both sides (the same shape)
    logit_share: np.ndarray  # logit of the canary's share of requests, per interval
    canary_requests: np.ndarray | None = None  # per-side requests: the interval-level test
    baseline_requests: np.ndarray | None = None  # and the absolute margin need them

    @classmethod
    def from_counts(cls, canary_num: np.ndarray, canary_den: np.ndarray,
                    baseline_num: np.ndarray, baseline_den: np.ndarray) -> SplitData:
        c = np.asarray(canary_num, dtype=float)
        b = np.asarray(baseline_num, dtype=float)
        nc = np.asarray(canary_den, dtype=float)
        nb = np.asarray(baseline_den, dtype=float)
        keep = (nc > 0) & (nb > 0)
        return cls(c[keep], (c + b)[keep], np.log(nc[keep]) - np.log(nb[keep]), nc[keep],
                   nb[keep])

    def __len__(self) -> int:
        return len(self.logit_share)

    @property
    def baseline(self) -> np.ndarray:
        return self.events - self.canary

    @property
    def has_requests(self) -> bool:
        return self.canary_requests is not None and self.baseline_requests is not None

    @property
    def requests(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-side requests, for data made with them (``has_requests``)."""
        if self.canary_requests is None or self.baseline_requests is None:
            raise ValueError("this split was made without per-side request counts")
        return self.canary_requests, self.baseline_requests


@dataclass(frozen=True)
class RateTest:
    """Evidence about one rate ratio, in log units where that keeps it finite."""

    log_e_increase: float  # against "inside the increase margin" (fail, harm = up)
    log_e_decrease: float  # against "inside the decrease margin" (fail, harm = down)
    log_e_inside_up: float  # against "beyond the increase margin" (gate, harm = up)
    log_e_inside_down: float  # against "beyond the decrease margin" (gate, harm = down)
    estimate: float | None  # ratio, None when undefined
    interval: tuple[float, float] | None
    tau2: float
    canary_events: int
    baseline_events: int
    margin_up: float = 1.0  # the increase margin as a ratio at the latest interval (fail side)
    gate_up: float = 1.0  # the same margin as the gate bounds it (never wider)
    interval_share: float = 0.0  # share of intervals judged by the interval-level t-test
    recent_temper: float = 1.0  # mean overdispersion allowance of the latest intervals
    recent_canary: float = 0.0  # mean canary events of the latest intervals
    last_logit_share: float | None = None  # logit of the canary's share in the latest one


def rate_test(data: SplitData, *, allowed_increase: float = 1.0, allowed_decrease: float = 1.0,
              absolute_increase: float = 0.0, gate_increase: float | None = None,
              gate_decrease: float | None = None, interval_log_k: float | None = None,
              tau2: float | None = None) -> RateTest:
    """Evidence for the canary/baseline rate ratio beyond (fail) and inside (gate) its margin.

    The increase margin is ``max(allowed_increase × baseline, baseline + absolute_increase)``;
    the decrease margin is the ratio ``allowed_decrease``. ``interval_log_k`` asks for a
    confidence sequence whose one-sided errors are each at most ``exp(-interval_log_k)``;
    None skips it. ``tau2`` fixes the jitter variance instead of planning it (0 is the
    textbook test). ``gate_increase``/``gate_decrease`` give the gate a (never wider) ratio
    margin of its own. The whole series is folded into a running state
    (``analyzer.judge.ratestate``) at once: the same computation the live service and replay
    carry on interval by interval.
    """
    from analyzer.judge.ratestate import fold

    state = fold(data, allowed_increase=allowed_increase, allowed_decrease=allowed_decrease,
                 absolute_increase=absolute_increase, gate_increase=gate_increase,
                 gate_decrease=gate_decrease, tau2=tau2)
    return state.result(interval_log_k)


def _kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def event_share(share: float | np.ndarray, ratio: float | np.ndarray) -> np.ndarray:
    """θ: the canary's expected share of the events at canary request share ``share`` and
    canary/baseline rate ratio ``ratio``."""
    u = np.asarray(share, dtype=float)
    r = np.asarray(ratio, dtype=float)
    return u * r / (u * r + 1.0 - u)


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
    ``analyzer.planning`` builds its forecasts on the same model."""
    if missing_log_e <= 0:
        return 0.0
    per_event = evidence_per_canary_event(share, ratio, margin, temper)
    if per_event <= 0:
        return None
    return MIXTURE_OVERHEAD * missing_log_e / per_event


def gate_needs(test: RateTest, log_k: float) -> tuple[float, float] | None:
    """Roughly how many more canary events the gate needs to show "ratio inside the increase
    margin" at level exp(-log_k), and how many canary events an interval brings now.

    A planning figure, not a promise: evidence grows by about KL(θ̂ ‖ θ_margin) per event at
    the current estimate and canary share (Wald), divided by the overdispersion allowance in
    force and times the mixture's usual overhead. None when the estimate is not inside the
    margin (at the current ratio the gate would never pass) or there is nothing to go on.
    """
    if (test.estimate is None or test.last_logit_share is None
            or test.estimate >= test.gate_up):
        return None
    per_interval = test.recent_canary
    if per_interval <= 0:
        return None
    events = needed_events(float(expit(test.last_logit_share)), test.estimate, test.gate_up,
                           log_k - test.log_e_inside_up, test.recent_temper)
    return None if events is None else (events, per_interval)
