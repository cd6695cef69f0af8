"""Anytime-valid one-sided t-test on per-interval log rate ratios.

When each interval carries many events, the canary/baseline split of an interval's events
is dominated by per-interval jitter of the two sides' rates (bursts, a slow node), not by
binomial noise, and a test that counts single events is overconfident. Then each interval
is one observation ``y_s = log((c+½)/n_c) − log((b+½)/n_b)`` and the question is whether
their mean exceeds the margin's log ratio.

The e-value is a Bayes factor for the t-statistic: under a right-Haar prior on σ, the
likelihood of the data's scale-invariant part is the t density, central under the null and
non-central with parameter ε√n under a standardized effect ε (Lindon, Ham, Tingley,
Bojinov, "Anytime-valid linear models and regression adjusted causal inference", 2022;
Pérez-Ortiz, Lardy, de Heide, Grünwald, "E-statistics, group invariance and anytime-valid
testing", 2024). Mixing over a grid of ε > 0 gives a test martingale for "mean = margin"
under i.i.d. normal observations and, by the monotone likelihood ratio of the non-central t,
a supermartingale for "mean ≤ margin". It needs no estimate of the jitter. Counts are not
normal and steps change the binomial part of the variance, so at the volumes where the
judge uses it the guarantee is calibrated by simulation (docs/statistics.md), not exact.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import nct
from scipy.stats import t as student_t

# Standardized effects (mean shift over the per-interval standard deviation), equal weights.
EFFECTS = np.geomspace(0.1, 4.0, 12)
_T_CAP = 1e4  # identical observations give t = ±inf; the density ratio has converged by then


def log_ratios(canary: np.ndarray, canary_requests: np.ndarray, baseline: np.ndarray,
               baseline_requests: np.ndarray) -> np.ndarray:
    """Per-interval log rate ratios, with a half-event correction so zero counts stay finite."""
    return (np.log(canary + 0.5) - np.log(canary_requests)
            - np.log(baseline + 0.5) + np.log(baseline_requests))


def log_e_values(y: np.ndarray, nulls: np.ndarray, upward: bool) -> np.ndarray:
    """Log mixture e-values against "mean(y) ≤ null" (upward) or "≥ null", per null.

    ``y`` holds the observations already shifted by any per-interval margin; fewer than two
    observations carry no evidence (the scale is unknown).
    """
    nulls = np.atleast_1d(np.asarray(nulls, dtype=float))
    n = len(y)
    if n < 2:
        return np.zeros(len(nulls))
    x = y[None, :] - nulls[:, None]
    mean = x.mean(axis=1)
    sd = x.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, mean / (sd / np.sqrt(n)), np.sign(mean) * _T_CAP)
    t = np.clip(t if upward else -t, -_T_CAP, _T_CAP)
    df = n - 1
    log_bf = (nct.logpdf(t[:, None], df, EFFECTS[None, :] * np.sqrt(n))
              - student_t.logpdf(t, df)[:, None])
    log_bf = np.nan_to_num(log_bf, nan=0.0, neginf=-1e3)
    top = log_bf.max(axis=1)
    return top + np.log(np.exp(log_bf - top[:, None]).mean(axis=1))
