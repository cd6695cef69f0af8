"""The judge's inputs: per-interval arrays for each metric type (DESIGN §6).

Arrays hold per-interval values, not cumulative counters; index ``t`` is the interval that
ends at ``timestamps[t]``. ``head(n)`` gives what the judge would have seen after ``n``
intervals and ``window(a, b)`` the intervals ``a`` to ``b − 1``: the chunk replay (and the
live service) folds into the judge's running state (``analyzer.judge.stream``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioSeries:
    """Events (e.g. 5xx responses) out of trials (requests), per interval and side."""

    canary_num: np.ndarray
    canary_den: np.ndarray
    baseline_num: np.ndarray
    baseline_den: np.ndarray

    type = "ratio"

    def __len__(self) -> int:
        return len(self.canary_den)

    def head(self, n: int) -> RatioSeries:
        return self.window(0, n)

    def window(self, start: int, stop: int) -> RatioSeries:
        return RatioSeries(self.canary_num[start:stop], self.canary_den[start:stop],
                           self.baseline_num[start:stop], self.baseline_den[start:stop])


@dataclass(frozen=True)
class HistogramSeries:
    """Non-cumulative bucket counts per interval; ``le`` ends with ``inf``."""

    le: np.ndarray
    canary: np.ndarray  # shape (intervals, buckets)
    baseline: np.ndarray
    unit: str = "ms"

    type = "histogram"

    def __len__(self) -> int:
        return self.canary.shape[0]

    def head(self, n: int) -> HistogramSeries:
        return self.window(0, n)

    def window(self, start: int, stop: int) -> HistogramSeries:
        return HistogramSeries(self.le, self.canary[start:stop], self.baseline[start:stop],
                               self.unit)


@dataclass(frozen=True)
class GaugeSeries:
    """One sample per interval and side (NaN where the source had no value)."""

    canary: np.ndarray
    baseline: np.ndarray

    type = "gauge"

    def __len__(self) -> int:
        return len(self.canary)

    def head(self, n: int) -> GaugeSeries:
        return self.window(0, n)

    def window(self, start: int, stop: int) -> GaugeSeries:
        return GaugeSeries(self.canary[start:stop], self.baseline[start:stop])


MetricSeries = RatioSeries | HistogramSeries | GaugeSeries
