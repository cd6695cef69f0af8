"""Small seeded canary simulations for the calibration and power tests.

Request-level counts per 30 s interval on a 5 → 25 → 50% ramp, with optional per-interval,
per-side multiplicative jitter (Gamma, mean 1) on the error rate and the latency scale: the
overdispersion of real traffic that breaks textbook e-processes.
"""

from __future__ import annotations

import numpy as np

from analyzer.judge.series import HistogramSeries, RatioSeries

ISTIO_LE = np.array([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                     60000, 300000, 600000, 1800000, 3600000, np.inf])
RAMP = (0.05, 0.25, 0.5)


def weights(intervals: int = 60) -> np.ndarray:
    return np.repeat(RAMP, intervals // len(RAMP))


def jitter(rng: np.random.Generator, cv: float, n: int) -> np.ndarray:
    if cv == 0:
        return np.ones(n)
    shape = 1.0 / cv**2
    return rng.gamma(shape, 1.0 / shape, n)


def split(rng: np.random.Generator, rps: float, intervals: int = 60,
          share: float | None = None) -> tuple[np.ndarray, ...]:
    """Requests per side: on the ramp, or at a fixed canary ``share`` (0.5: a 50/50 split)."""
    total = rng.poisson(rps * 30, intervals)
    canary = rng.binomial(total, weights(intervals) if share is None else share)
    return canary, total - canary


def errors(rng: np.random.Generator, *, rps: float, p0: float, ratio: float = 1.0,
           cv: tuple[float, float] = (0.0, 0.0), intervals: int = 60,
           share: float | None = None) -> RatioSeries:
    nc, nb = split(rng, rps, intervals, share)
    pc = np.clip(p0 * ratio * jitter(rng, cv[0], intervals), 0, 1)
    pb = np.clip(p0 * jitter(rng, cv[1], intervals), 0, 1)
    return RatioSeries(rng.binomial(nc, pc), nc, rng.binomial(nb, pb), nb)


def _bucket_probs(scale: float, tail_share: float, tail_ms: float) -> np.ndarray:
    from scipy.stats import lognorm

    cdf = lognorm.cdf(ISTIO_LE, 0.6, scale=40.0 * scale)
    cdf_tail = lognorm.cdf(np.maximum(ISTIO_LE - tail_ms, 0), 0.6, scale=40.0 * scale)
    mixed = (1 - tail_share) * cdf + tail_share * cdf_tail
    return np.diff(np.concatenate(([0.0], mixed)))


def latency(rng: np.random.Generator, *, rps: float, scale: float = 1.0,
            tail_share: float = 0.0, tail_ms: float = 0.0,
            cv: tuple[float, float] = (0.0, 0.0), intervals: int = 60) -> HistogramSeries:
    nc, nb = split(rng, rps, intervals)
    jc, jb = jitter(rng, cv[0], intervals), jitter(rng, cv[1], intervals)
    canary = np.array([rng.multinomial(n, _bucket_probs(scale * j, tail_share, tail_ms))
                       for n, j in zip(nc, jc, strict=True)])
    baseline = np.array([rng.multinomial(n, _bucket_probs(j, 0.0, 0.0))
                         for n, j in zip(nb, jb, strict=True)])
    return HistogramSeries(ISTIO_LE, canary, baseline)
