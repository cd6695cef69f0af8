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
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import gamma

from analyzer.judge import ttest

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

    canary: np.ndarray  # canary events per interval
    events: np.ndarray  # events on both sides
    logit_share: np.ndarray  # logit of the canary's share of requests
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
        return len(self.events)

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
class Plan:
    """Per interval, fixed from earlier intervals: which test it feeds, and the tempering."""

    temper: np.ndarray  # ≥ 1, for intervals of the event-level test
    by_interval: np.ndarray  # True: the interval is one observation of the t-test
    tau2: float  # jitter estimate in force for the latest interval (reported)


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(x)[:-1]))


def _side_jitter(x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per interval, from the intervals before it: one side's rate and its jitter variance
    (moment estimate of the squared CV of the per-interval rate beyond binomial noise; NaN
    while the side has no events)."""
    xs, ns = _exclusive_cumsum(x), _exclusive_cumsum(n)
    x2, xn, n2 = _exclusive_cumsum(x * x), _exclusive_cumsum(x * n), _exclusive_cumsum(n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(ns > 0, xs / ns, 0.0)
        excess = x2 - 2 * p * xn + p * p * n2 - p * (1 - p) * ns
        tau2 = np.where(p > 0, excess / (p * p * n2), np.nan)
    return p, np.maximum(tau2, 0.0)


def split_jitter(data: SplitData) -> np.ndarray:
    """Predictable τ² per interval, from the split's overdispersion in earlier intervals.

    Each interval's residual is taken against the ratio estimated from the intervals before
    it (Mantel-Haenszel, a running sum), so no interval fits its own burst away; the excess of
    its square over binomial variance, divided by ``e(e−1)θ²(1−θ)²``, estimates τ². The sums
    over earlier intervals are shrunk towards the prior.
    """
    nc, nb = data.requests
    c, b = data.canary, data.baseline
    total = nc + nb
    up, down = _exclusive_cumsum(c * nb / total), _exclusive_cumsum(b * nc / total)
    fitted = (up > 0) & (down > 0)  # an interval before any ratio estimate tells nothing
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(fitted, np.log(up) - np.log(down), 0.0)
    theta = expit(data.logit_share + np.clip(delta, -_DELTA_BOUND, _DELTA_BOUND))
    v = data.events * theta * (1 - theta)
    excess = np.where(fitted, (c - data.events * theta) ** 2 - v, 0.0)
    scale = np.where(fitted, np.maximum(data.events - 1.0, 0.0) * data.events
                     * (theta * (1 - theta)) ** 2, 0.0)
    seen_excess, seen_scale = _exclusive_cumsum(excess), _exclusive_cumsum(scale)
    # The prior counts as PRIOR_INTERVALS intervals of the average information seen so far.
    count = np.arange(len(data), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        typical = np.where(seen_scale > 0, seen_scale / np.maximum(count, 1.0), 1.0)
    prior = PRIOR_INTERVALS * typical
    return np.maximum((seen_excess + prior * PRIOR_TAU2) / (seen_scale + prior), 0.0)


def _baseline_jitter(data: SplitData) -> np.ndarray:
    """Predictable squared CV of the baseline's per-interval rate beyond binomial noise."""
    k = np.arange(len(data), dtype=float)
    dof = np.maximum(k - 1.0, 0.0)
    scale = np.where(dof > 0, k / np.maximum(dof, 1.0), 0.0)  # k / (k − 1): the mean is fitted
    _, tau_b = _side_jitter(data.baseline, data.requests[1])
    half = PRIOR_TAU2 / 2
    tau_b = np.where(np.isnan(tau_b), half, tau_b * scale)
    return (dof * tau_b + PRIOR_INTERVALS * half) / (dof + PRIOR_INTERVALS)


def plan(data: SplitData, tau2: float | None = None) -> Plan:
    """Choose each interval's unit of evidence and tempering from the intervals before it.

    ``tau2`` fixes the jitter instead (0 is the textbook binomial test) and keeps every
    interval in the event-level test.
    """
    n = len(data)
    share = expit(data.logit_share)
    if tau2 is not None or not data.has_requests or n == 0:
        fixed = PRIOR_TAU2 if tau2 is None else tau2
        kappa = np.maximum(data.events - 1.0, 0.0) * share * (1 - share) * fixed
        return Plan(1.0 + kappa, np.zeros(n, dtype=bool), fixed)
    tau = split_jitter(data)
    nc, nb = data.requests
    seen_events = _exclusive_cumsum(data.events)
    seen_requests = _exclusive_cumsum(nc + nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(seen_requests > 0, seen_events / seen_requests, 0.0)
    # Binomial information of the split: expected events × θ(1−θ) at equal rates.
    # Before any event has been seen, the interval's own count stands in (the event-level
    # test conditions on it anyway) with a heavy prior jitter, and the interval stays in the
    # event-level test: choosing the t-test by the current count would select on the data.
    seen = seen_events > 0
    info = np.where(seen, rate * nc * nb / (nc + nb),
                    np.maximum(data.events - 1.0, 0.0) * share * (1 - share))
    kappa = info * np.where(seen, tau, FIRST_TAU2)
    # The t-test needs each side's count to be roughly normal on the log scale: with a few
    # events per interval, chance under-dispersion of the counts inflates t.
    seen_c, seen_nc = _exclusive_cumsum(data.canary), _exclusive_cumsum(nc)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_c = np.where(seen_nc > 0, np.maximum(seen_c, 1.0) / seen_nc * nc, 0.0)
        expected_b = np.where(seen_requests > seen_nc, np.maximum(seen_events - seen_c, 1.0)
                              / (seen_requests - seen_nc) * nb, 0.0)
    normal = np.minimum(expected_c, expected_b) >= MIN_INTERVAL_EVENTS
    by_interval = seen & normal & (kappa >= INTERVAL_KAPPA)
    return Plan(1.0 + TEMPER_SAFETY * kappa, by_interval, float(tau[-1]))


def margin_log_ratios(data: SplitData, ratio: float, absolute: float, *,
                      lower: bool) -> np.ndarray:
    """Per interval, log of the ratio the margin ``max(ratio × p_b, p_b + absolute)`` allows.

    ``p_b`` is bounded from the baseline's earlier intervals (the first interval uses its
    own baseline), from below when ``lower`` (fail test) and from above otherwise (gate).
    """
    n = len(data)
    base = math.log(ratio)
    if absolute <= 0 or n == 0 or not data.has_requests:
        return np.full(n, base)
    b, nb = data.baseline, data.requests[1]
    seen_b, seen_n = _exclusive_cumsum(b), _exclusive_cumsum(nb)
    first = seen_n <= 0
    events = np.where(first, b, seen_b)
    requests = np.where(first, nb, seen_n)
    tau_b = _baseline_jitter(data)
    k = np.maximum(np.arange(n, dtype=float), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        effective = np.where(events > 0, 1.0 / (1.0 / events + tau_b / k), 0.0)
        if lower:
            bound = np.where(events > 0, events / requests
                             * gamma.ppf(BASELINE_BOUND_LEVEL, effective) / effective, 0.0)
        else:
            bound = np.where(events > 0, events / requests
                             * gamma.ppf(1 - BASELINE_BOUND_LEVEL, effective + 1) / effective,
                             -math.log(BASELINE_BOUND_LEVEL) / requests)
        allowed = np.where(bound > 0, 1.0 + absolute / bound, math.inf)
    cap = max(ratio, MAX_ABSOLUTE_RATIO)
    return np.log(np.clip(allowed, ratio, cap))


def _score(data: SplitData, delta: float, temper: np.ndarray) -> float:
    theta = expit(data.logit_share + delta)
    return float(((data.canary - data.events * theta) / temper).sum())


def mle(data: SplitData, temper: np.ndarray) -> float:
    """Maximum-likelihood log ratio; ±inf when one side has no events at all."""
    if len(data) == 0 or data.events.sum() == 0:
        return math.nan
    total = data.canary.sum()
    if total == 0:
        return -math.inf
    if total == data.events.sum():
        return math.inf
    lo, hi = -_DELTA_BOUND, _DELTA_BOUND
    if _score(data, lo, temper) <= 0:
        return lo
    if _score(data, hi, temper) >= 0:
        return hi
    return brentq(lambda d: _score(data, d, temper), lo, hi, xtol=1e-6)


def _event_log_e(data: SplitData, nulls: np.ndarray, shift: np.ndarray, temper: np.ndarray,
                 upward: bool) -> np.ndarray:
    """Event-level mixture log e-values, one per null, on the intervals given."""
    if len(data) == 0 or not data.events.any():
        return np.zeros(len(nulls))
    sign = 1.0 if upward else -1.0
    deltas = nulls[:, None] + sign * np.concatenate(([0.0], OFFSETS))[None, :]
    x = (data.logit_share + shift)[:, None, None] + deltas[None, :, :]
    ll = -(data.canary[:, None, None] * np.logaddexp(0.0, -x)
           + (data.events - data.canary)[:, None, None] * np.logaddexp(0.0, x))
    ll = (ll / temper[:, None, None]).sum(axis=0)
    ratios = ll[:, 1:] - ll[:, :1]
    top = ratios.max(axis=1)
    return top + np.log(np.exp(ratios - top[:, None]).mean(axis=1))


def _subset(data: SplitData, mask: np.ndarray) -> SplitData:
    return SplitData(data.canary[mask], data.events[mask], data.logit_share[mask],
                     None if data.canary_requests is None else data.canary_requests[mask],
                     None if data.baseline_requests is None else data.baseline_requests[mask])


def log_e_values(data: SplitData, nulls: np.ndarray, temper: np.ndarray, upward: bool,
                 shift: np.ndarray | None = None, by_interval: np.ndarray | None = None
                 ) -> np.ndarray:
    """Log e-values against "δ_s ≤ null + shift_s" (upward) or "≥" for many nulls at once:
    the event-level mixture on the event intervals times the t-test on the others.

    One (intervals × nulls × grid) array keeps a whole confidence-sequence search to a
    single numpy pass instead of a root finder's dozens of calls.
    """
    nulls = np.atleast_1d(np.asarray(nulls, dtype=float))
    n = len(data)
    shift = np.zeros(n) if shift is None else shift
    if by_interval is None or not by_interval.any():
        return _event_log_e(data, nulls, shift, temper, upward)
    events = ~by_interval
    out = _event_log_e(_subset(data, events), nulls, shift[events], temper[events], upward)
    sel = _subset(data, by_interval)
    y = ttest.log_ratios(sel.canary, sel.requests[0], sel.baseline,
                         sel.requests[1]) - shift[by_interval]
    return out + ttest.log_e_values(y, nulls, upward)


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


def _bound(data: SplitData, plan_: Plan, log_k: float, start: float, upward: bool) -> float:
    """Edge of the confidence sequence: the null value at which the one-sided test stops
    rejecting at level exp(-log_k); ±inf when the data cannot exclude anything.

    A coarse grid outward from the estimate finds the crossing, a fine grid inside that
    bracket places it to a few percent of the ratio, which is all a report needs.
    """
    sign = -1.0 if upward else 1.0  # the lower bound lies below the estimate

    def values(nulls: np.ndarray) -> np.ndarray:
        return log_e_values(data, nulls, plan_.temper, upward,
                            by_interval=plan_.by_interval) - log_k

    start = float(np.clip(start, -_DELTA_BOUND, _DELTA_BOUND))
    coarse = start + sign * np.concatenate(([0.0], np.geomspace(0.03, 2 * _DELTA_BOUND, 15)))
    hits = np.nonzero(values(coarse) >= 0)[0]
    if len(hits) == 0:
        return sign * math.inf
    i = int(hits[0])
    if i == 0:
        return start
    fine = np.linspace(coarse[i - 1], coarse[i], 9)
    v = values(fine)
    j = int(np.nonzero(v >= 0)[0][0])
    return float(fine[j - 1] + (fine[j] - fine[j - 1]) * (-v[j - 1]) / (v[j] - v[j - 1]))


def rate_test(data: SplitData, *, allowed_increase: float = 1.0, allowed_decrease: float = 1.0,
              absolute_increase: float = 0.0, gate_increase: float | None = None,
              gate_decrease: float | None = None, interval_log_k: float | None = None,
              tau2: float | None = None) -> RateTest:
    """Evidence for the canary/baseline rate ratio beyond (fail) and inside (gate) its margin.

    The increase margin is ``max(allowed_increase × baseline, baseline + absolute_increase)``;
    the decrease margin is the ratio ``allowed_decrease``. ``interval_log_k`` asks for a
    confidence sequence whose one-sided errors are each at most ``exp(-interval_log_k)``;
    None skips it (replay does not need it at every look). ``tau2`` fixes the jitter variance
    instead of planning it (0 is the textbook test). ``gate_increase``/``gate_decrease`` give
    the gate a (never wider) ratio margin of its own where the caller can only bound the one
    margin from each side (latency through coarse buckets).
    """
    p = plan(data, tau2)
    up_fail = margin_log_ratios(data, allowed_increase, absolute_increase, lower=True)
    up_gate = margin_log_ratios(data, gate_increase or allowed_increase, absolute_increase,
                                lower=False)
    down = np.full(len(data), math.log(allowed_decrease))
    down_gate = np.full(len(data), math.log(gate_decrease or allowed_decrease))
    zero = np.zeros(1)
    c_events = int(data.canary.sum())
    b_events = int(data.baseline.sum())
    delta_hat = mle(data, p.temper)
    if math.isnan(delta_hat):
        estimate = None
    elif math.isinf(delta_hat) or abs(delta_hat) >= _DELTA_BOUND:
        # One side has no events: a continuity-corrected ratio keeps the report finite.
        share = float(np.mean(expit(data.logit_share)))
        estimate = ((c_events + 0.5) / share) / ((b_events + 0.5) / (1.0 - share))
    else:
        estimate = math.exp(delta_hat)
    interval = None
    if interval_log_k is not None and len(data):
        centre = 0.0 if math.isnan(delta_hat) else delta_hat
        lo = _bound(data, p, interval_log_k, centre, upward=True)
        hi = _bound(data, p, interval_log_k, centre, upward=False)
        interval = (0.0 if math.isinf(lo) else math.exp(lo),
                    math.inf if math.isinf(hi) else math.exp(hi))

    def e(shift: np.ndarray, upward: bool) -> float:
        return float(log_e_values(data, zero, p.temper, upward, shift, p.by_interval)[0])

    return RateTest(
        log_e_increase=e(up_fail, True),
        log_e_decrease=e(down, False),
        log_e_inside_up=e(up_gate, False),
        log_e_inside_down=e(down_gate, True),
        estimate=estimate,
        interval=interval,
        tau2=p.tau2,
        canary_events=c_events,
        baseline_events=b_events,
        margin_up=float(math.exp(up_fail[-1])) if len(data) else allowed_increase,
        gate_up=float(math.exp(up_gate[-1])) if len(data) else allowed_increase,
        interval_share=float(p.by_interval.mean()) if len(data) else 0.0,
        recent_temper=float(p.temper[-RECENT:].mean()) if len(data) else 1.0,
    )


def _kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def gate_needs(data: SplitData, test: RateTest, log_k: float) -> tuple[float, float] | None:
    """Roughly how many more canary events the gate needs to show "ratio inside the increase
    margin" at level exp(-log_k), and how many canary events an interval brings now.

    A planning figure, not a promise: evidence grows by about KL(θ̂ ‖ θ_margin) per event at
    the current estimate and canary share (Wald), divided by the overdispersion allowance in
    force and times the mixture's usual overhead. None when the estimate is not inside the
    margin (at the current ratio the gate would never pass) or there is nothing to go on.
    """
    if test.estimate is None or len(data) == 0 or test.estimate >= test.gate_up:
        return None
    recent = data.canary[-RECENT:]
    per_interval = float(recent.mean())
    if per_interval <= 0:
        return None
    missing = log_k - test.log_e_inside_up
    if missing <= 0:
        return 0.0, per_interval
    u = float(expit(data.logit_share[-1]))
    theta = u * test.estimate / (u * test.estimate + 1 - u)
    bound = u * test.gate_up / (u * test.gate_up + 1 - u)
    per_event = _kl(theta, bound) / theta / max(test.recent_temper, 1.0)
    if per_event <= 0:
        return None
    return MIXTURE_OVERHEAD * missing / per_event, per_interval
