"""Reference judges, replayed on a dataset exactly as ours is: one evaluation after every
interval on all data so far, and the first ``fail`` ends the canary (the rollout aborts).

- ``kayenta``: Kayenta's NetflixACAJudge (its Mann-Whitney classifier and scoring) re-run at
  every interval on the growing window. Samples are per-interval values: error rate num/den
  (NaN when den is 0), latency p50 and p99 estimated from each interval's histogram as
  Prometheus' ``histogram_quantile`` does. Each metric is classified with Mann-Whitney (direction
  increase, allowed_increase 1.0, nanStrategy remove, confidence 0.98, tolerance 0.25); the
  error rate is critical. Score: groups errors 50 / latency 50, group score = % Pass among
  Pass/High/Low/NodataFail (100 when none), a critical metric that is not Pass — Nodata
  included — zeroes the score, and so do ≥ 50% Nodata metrics. Rule: judging begins after
  5 minutes (Kayenta's ``beginAfterMins``; 10 samples per side), then FAIL at the first
  evaluation with score ≤ marginal (75), as Kayenta's standalone flow treats any such
  judgement as terminal; never failing, the last evaluation gives pass (score ≥ 95) or
  inconclusive (Argo's Kayenta provider maps marginal scores to Inconclusive). Without the
  delay the first look compares one sample with one: Kayenta's CI is then [d, d] (R's
  endpoint rule), so any canary whose first p50 exceeds the baseline's is High.
- ``flagger``: Flagger's builtin Istio checks (request-success-rate, request-duration) on
  the canary alone, at every interval over the last minute (2 intervals): success rate < 99%
  or p99 > 500 ms is a failed check, and so is no canary traffic ("no values found"); failed
  checks accumulate and never reset; FAIL when they reach 5 (``threshold``). Never failing,
  the canary is promoted: pass.
- ``oracle``: an open-ended SPRT that knows the true rates (Wald's SPRT). Conditional on
  each interval's request counts, each 5xx landed on the canary with probability
  θ1 = w·p1/(w·p1 + (1−w)·p0) under the truth and θ0 = w if the canary were as good as the
  baseline, w being the realised canary share of requests; each latency observation in bucket
  k likewise with θ1 = w·f1_k/(w·f1_k + (1−w)·f0_k). The log-LR of these labels accumulates
  over intervals (both metrics; a metric the canary does not change adds exactly 0) and FAILs
  when it reaches log(1/alpha). It is the delay no judge can beat by much, not a judge: on a
  good canary its LR is identically 1, so it is only run on bad ones.
- ``margin-oracle`` (``oracle(..., ratio=, absolute=)``): the same SPRT against an error
  margin instead of "as good as the baseline": each 5xx's null share is that of a canary
  erring at max(ratio × p0, p0 + absolute) (``run.py`` gives it the margin our judge is run
  with; latency's built-in margin is 1.0, so the latency part is the oracle's). In an interval
  where the true canary is inside that margin the alternative is the margin itself (no
  evidence). No test that fails only beyond the margin does better on average (Wald), so its
  detection and delay are the floor the margin puts under any judge of that margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy
from simulate import Truth

from analyzer.metrics.dataset import Dataset


@dataclass(frozen=True)
class JudgeRun:
    """One judge's replay of one dataset, in the shape of ``analyzer.replay.ReplayResult``."""

    verdict: str  # "pass" | "fail" | "inconclusive"
    first_fail_at: float | None  # seconds after start (end of the failing interval)
    evaluations: int


def histogram_quantile(q: float, counts: np.ndarray, le: np.ndarray) -> np.ndarray:
    """Prometheus ``histogram_quantile`` on each row of non-cumulative bucket counts.

    Linear interpolation inside the bucket holding rank q·total, the first bucket starting at
    0; a rank in the +Inf bucket gives the highest finite bound; an empty row gives NaN.
    """
    counts = np.atleast_2d(counts)
    cum = np.cumsum(counts, axis=1, dtype=float)
    total = cum[:, -1]
    rank = q * total
    bucket = np.minimum(np.argmax(cum >= rank[:, None], axis=1), len(le) - 1)
    rows = np.arange(len(counts))
    below = np.where(bucket > 0, cum[rows, np.maximum(bucket - 1, 0)], 0.0)
    lower = np.where(bucket > 0, le[np.maximum(bucket - 1, 0)], 0.0)
    upper = le[bucket]
    inside = counts[rows, bucket].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower + (upper - lower) * (rank - below) / inside
    value = np.where(bucket == len(le) - 1, le[-2], value)
    return np.where(total > 0, value, np.nan)


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(len(den), np.nan), where=den > 0)


def kayenta_score(error: str, latency: list[str]) -> float:
    """Kayenta's WeightedSumScorer for our two groups (errors 50, latency 50); error is critical."""
    if error != "pass":
        return 0.0
    labels = [error, *latency]
    if 2 * labels.count("nodata") >= len(labels):
        return 0.0
    counted = [label for label in latency if label != "nodata"]
    latency_score = 100.0 * counted.count("pass") / len(counted) if counted else 100.0
    return 0.5 * 100.0 + 0.5 * latency_score


def kayenta(dataset: Dataset, *, begin_after_seconds: float = 300.0, pass_score: float = 95.0,
            marginal_score: float = 75.0) -> JudgeRun:
    """Kayenta-style Mann-Whitney on per-interval samples, re-run at every interval."""
    # Imported here so that the other judges run while the Kayenta port is being written.
    from analyzer.judge.mannwhitney import classify

    errors = dataset.metrics["error-rate"]
    latency = dataset.metrics["latency"]
    samples = {
        "error-rate": (_rate(errors.canary_num, errors.canary_den),
                       _rate(errors.baseline_num, errors.baseline_den)),
        "latency-p50": (histogram_quantile(0.5, latency.canary, latency.le),
                        histogram_quantile(0.5, latency.baseline, latency.le)),
        "latency-p99": (histogram_quantile(0.99, latency.canary, latency.le),
                        histogram_quantile(0.99, latency.baseline, latency.le)),
    }
    score = 100.0
    first = int(np.searchsorted(dataset.timestamps, begin_after_seconds)) + 1
    for t in range(first, len(dataset) + 1):
        label = {name: classify(canary[:t], baseline[:t], direction="increase",
                                allowed_increase=1.0, allowed_decrease=1.0,
                                nan_strategy="remove", must_have_data=False,
                                critical=name == "error-rate").classification
                 for name, (canary, baseline) in samples.items()}
        score = kayenta_score(label["error-rate"], [label["latency-p50"], label["latency-p99"]])
        if score <= marginal_score:
            return JudgeRun("fail", float(dataset.timestamps[t - 1]), t - first + 1)
    return JudgeRun("pass" if score >= pass_score else "inconclusive", None,
                    max(0, len(dataset) - first + 1))


def flagger(dataset: Dataset, *, min_success: float = 99.0, max_p99_ms: float = 500.0,
            window: int = 2, threshold: int = 5) -> JudgeRun:
    """Flagger's canary-only threshold checks with a cumulative failed-check counter."""
    errors = dataset.metrics["error-rate"]
    latency = dataset.metrics["latency"]

    def trailing(values: np.ndarray) -> np.ndarray:
        cum = np.cumsum(values, axis=0)
        shifted = np.concatenate([np.zeros((window, *cum.shape[1:]), cum.dtype), cum])[:-window]
        return cum - shifted

    requests = trailing(errors.canary_den)
    failures = trailing(errors.canary_num)
    success = 100.0 * (1.0 - _rate(failures, requests))
    p99 = histogram_quantile(0.99, trailing(latency.canary), latency.le)
    with np.errstate(invalid="ignore"):
        failed = (requests == 0) | (success < min_success) | (p99 > max_p99_ms)
    reached = np.nonzero(np.cumsum(failed) >= threshold)[0]
    if reached.size:
        t = int(reached[0])
        return JudgeRun("fail", float(dataset.timestamps[t]), t + 1)
    return JudgeRun("pass", None, len(dataset))


def _canary_side(share: np.ndarray, p1: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """θ = share·p1/(share·p1 + (1−share)·p0): the chance an event came from the canary.
    Where neither side can produce the event, θ = share (no information)."""
    mixed = share * p1 + (1.0 - share) * p0
    return np.divide(share * p1, mixed, out=np.broadcast_to(share, mixed.shape).copy(),
                     where=mixed > 0)


def _label_llr(canary: np.ndarray, baseline: np.ndarray, share: np.ndarray, p1: np.ndarray,
               p0: np.ndarray, null: np.ndarray | None = None) -> np.ndarray:
    """Log-LR of the side each event landed on: θ1 (the canary at ``p1``) against θ0 (the
    canary at ``null``, by default ``p0``: as good as the baseline)."""
    theta1 = _canary_side(share, p1, p0)
    theta0 = _canary_side(share, p0 if null is None else null, p0)
    return (xlogy(canary, theta1) - xlogy(canary, theta0)
            + xlogy(baseline, 1.0 - theta1) - xlogy(baseline, 1.0 - theta0))


def oracle_log_lr(dataset: Dataset, truth: Truth, *, ratio: float = 1.0,
                  absolute: float = 0.0) -> np.ndarray:
    """Per-interval log-LR increments of the oracle, errors and latency buckets together;
    against the error margin max(ratio × p0, p0 + absolute) when one is given."""
    errors = dataset.metrics["error-rate"]
    latency = dataset.metrics["latency"]
    total = errors.canary_den + errors.baseline_den
    share = np.divide(errors.canary_den, total, out=np.full(len(total), 0.5), where=total > 0)
    p0 = truth.baseline_error
    margin = np.minimum(np.maximum(ratio * p0, p0 + absolute), 1.0)
    # Inside the margin the best alternative is the margin itself: no evidence either way.
    error_llr = _label_llr(errors.canary_num, errors.baseline_num, share,
                           np.maximum(truth.canary_error, margin), p0, margin)
    latency_llr = _label_llr(latency.canary, latency.baseline, share[:, None],
                             truth.canary_buckets, truth.baseline_buckets)
    return error_llr + latency_llr.sum(axis=1)


def oracle(dataset: Dataset, truth: Truth, *, alpha: float = 0.01, ratio: float = 1.0,
           absolute: float = 0.0) -> JudgeRun:
    """The SPRT with the true rates: FAIL when the cumulative LR reaches 1/alpha."""
    llr = oracle_log_lr(dataset, truth, ratio=ratio, absolute=absolute)
    crossed = np.nonzero(np.cumsum(llr) >= np.log(1.0 / alpha))[0]
    if crossed.size:
        t = int(crossed[0])
        return JudgeRun("fail", float(dataset.timestamps[t]), t + 1)
    return JudgeRun("pass", None, len(dataset))
