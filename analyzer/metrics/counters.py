"""Per-interval increments from raw counter samples, exactly as counts.

``rate()`` and ``increase()`` extrapolate to the window edges and return non-integers, and
summing counters across series *before* differencing turns every pod that goes away into a
fake counter reset. So the raw counters of every series are sampled at the step with
``query_range`` and differenced here, series by series, and only the increments are summed.

The grid: points ``p_0 = start, p_1 = start + step, …, p_n``; interval ``k`` (1-based) is
``(p_{k-1}, p_k]``. ``p_0`` is the one point before the first interval end; its value is the
baseline of a series that already existed, and contributes no increment.

Rules, per series:

* increment = ``v(p_k) - v(previous point with a value)``;
* a decrease is a counter reset: the increment is the post-reset value (as Prometheus does);
  a reset whose post-reset value already exceeds the pre-reset value between two points is
  invisible at this resolution and undercounts (every step-sampled method shares this);
* a missing point (no sample, or NaN) carries the last value forward, so everything that
  happened during a gap is attributed to the first interval after it that has a sample.
  Prometheus itself does this for gaps shorter than its 5 min lookback (it repeats the last
  sample), so attributing rather than spreading keeps one behaviour for short and long gaps,
  keeps counts integral, and never invents a time profile nobody measured;
* a series without a value at ``p_0`` started inside the window: it was created at 0, so its
  first value is the increment of the interval in which it appears. (A series that existed
  before the window but had no sample for longer than the lookback around ``p_0`` is
  indistinguishable from a new one and is counted as new.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TIME_TOLERANCE = 0.002
"""Seconds a returned timestamp may be off a grid point (Prometheus works in milliseconds)."""


def align_many(samples: Sequence[np.ndarray], start: float, step: float, points: int
               ) -> np.ndarray:
    """Values of each series (an ``(n, 2)`` array of time, value) at the grid points
    ``start + j·step`` (``j < points``): shape ``(series, points)``, NaN where none was returned.

    Samples off the grid (which a range query never returns) are ignored rather than guessed.
    One scatter for all series rather than one per series: a histogram answer has a series
    per pod, side and bucket, and per-series numpy calls cost more than their data."""
    out = np.full((len(samples), points), np.nan)
    lengths = [len(s) for s in samples]
    if not sum(lengths):
        return out
    pairs = np.concatenate([np.asarray(s, dtype=float).reshape(-1, 2) for s in samples])
    owner = np.repeat(np.arange(len(samples)), lengths)
    ts, observed = pairs[:, 0], pairs[:, 1]
    j = np.rint((ts - start) / step)
    on_grid = (j >= 0) & (j < points) & (np.abs(ts - (start + j * step)) <= TIME_TOLERANCE)
    out[owner[on_grid], j[on_grid].astype(np.int64)] = observed[on_grid]
    return out


def _previous(values: np.ndarray) -> np.ndarray:
    """For each point ``p_k`` (k ≥ 1), the last value present before it, NaN if none."""
    present = ~np.isnan(values)
    index = np.where(present, np.arange(values.shape[-1]), -1)
    last = np.maximum.accumulate(index, axis=-1)[..., :-1]
    return np.where(last >= 0, np.take_along_axis(values, np.maximum(last, 0), axis=-1), np.nan)


def resets(values: np.ndarray) -> np.ndarray:
    """Where a counter sampled at ``p_0 … p_n`` decreased: booleans of shape ``(…, n)``."""
    values = np.asarray(values, dtype=float)
    return values[..., 1:] < _previous(values)


def increments(values: np.ndarray, reset: np.ndarray | None = None) -> np.ndarray:
    """Per-interval increments of counters sampled at ``p_0 … p_n`` (last axis, NaN = missing).

    Accepts one series (shape ``(n+1,)``) or many (``(series, n+1)``); returns floats of shape
    ``(…, n)``. ``reset`` (broadcast to that shape) marks intervals known to contain a reset
    even where this series did not visibly decrease: the buckets of one histogram reset
    together, and a sparse bucket's reset is visible only in ``+Inf``. See the module
    docstring for gaps and series that appear late.
    """
    values = np.asarray(values, dtype=float)
    previous = _previous(values)
    current = values[..., 1:]
    restart = np.isnan(previous) | (current < previous)
    if reset is not None:
        restart = restart | reset
    delta = np.where(restart, current, current - previous)
    return np.where(np.isnan(current), 0.0, delta)


def to_counts(total: np.ndarray) -> np.ndarray:
    """Rounds summed increments to integer counts (floats come back as 2.9999999).

    Negative values can only come from a query that is not a counter; they become 0.
    """
    return np.maximum(np.rint(np.asarray(total, dtype=float)), 0).astype(np.int64)
