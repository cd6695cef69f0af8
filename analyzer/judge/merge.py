"""Sharing alpha across metrics: the mean of their e-processes, with closed testing.

An average of e-processes on the same data is an e-process whatever their dependence (Vovk &
Wang, "E-values: calibration, combination and applications", 2021), and the metrics of one
canary are strongly dependent (the same requests). The analysis shows harm when the mean of
the metrics' e-values reaches ``1/alpha``. Which metric to blame is decided by closed testing
(Marcus, Peritz & Gabriel, 1976): metric ``m`` shows harm when every subset of metrics that
contains it has a mean e-value of at least ``1/alpha``. That keeps the chance of blaming any
metric that is inside its margin below ``alpha``, over all looks.

With ``M`` metrics, one metric alone needs ``M/alpha`` (the e-Bonferroni threshold the
judge used before); when several show evidence together each needs less, so this never
fails later than e-Bonferroni and often earlier.
"""

from __future__ import annotations

import math

import numpy as np


def closed_rejections(log_e: list[float], log_level: float) -> list[bool]:
    """Per metric, whether every subset containing it has mean e-value ≥ exp(log_level).

    The smallest mean over subsets containing ``m`` takes ``m`` with the metrics of least
    evidence, added in increasing order while each lowers the mean; so one sort suffices.
    """
    values = np.asarray(log_e, dtype=float)
    order = np.sort(values)
    out = []
    for value in values:
        total, count = value, 1
        for other in _without_one(order, value):
            mean = total - math.log(count)
            if other >= mean:
                break
            total, count = float(np.logaddexp(total, other)), count + 1
        out.append(total - math.log(count) >= log_level)
    return out


def _without_one(order: np.ndarray, value: float) -> np.ndarray:
    """The sorted values with one copy of ``value`` removed."""
    index = int(np.searchsorted(order, value))
    return np.delete(order, index)
