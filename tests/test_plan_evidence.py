"""The planning model's per-event pieces (``analyzer.planning.evidence``): the margins the judge
would use, and the "needs ≈ N more" estimates the live answer can share (``evidence``, and the
forecast continued from now, ``analyzer.planning.eta``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.judge.rate import MAX_ABSOLUTE_RATIO, event_share, needed_events
from analyzer.planning.eta import gate_eta_seconds
from analyzer.planning.evidence import baseline_bounds, margin_ratio, mixture_events_needed
from analyzer.planning.forecast import Margin


def test_event_share() -> None:
    assert float(event_share(0.5, 1.0)) == pytest.approx(0.5)
    assert float(event_share(0.25, 3.0)) == pytest.approx(0.5)


def test_margin_ratio_is_the_larger_of_ratio_and_absolute() -> None:
    assert margin_ratio(1.5, 0.0, 0.01) == 1.5
    assert margin_ratio(1.5, 0.0025, 0.01) == 1.5  # +0.25 points of 1% is 1.25x
    assert margin_ratio(1.5, 0.0025, 0.001) == pytest.approx(3.5)
    assert margin_ratio(1.5, 0.0025, 0.0) == MAX_ABSOLUTE_RATIO


def test_baseline_bounds_tighten_with_events() -> None:
    few = baseline_bounds(0.01, 20, 4)
    many = baseline_bounds(0.01, 2000, 40)
    assert few[0] < many[0] < 0.01 < many[1] < few[1]
    assert baseline_bounds(0.01, 0, 0) == (0.0, math.inf)


def test_needed_events_grow_towards_the_margin_and_vanish_on_it() -> None:
    far = needed_events(0.25, 1.0, 2.0, math.log(100))
    near = needed_events(0.25, 1.0, 1.2, math.log(100))
    assert far is not None and near is not None and near > 5 * far
    assert needed_events(0.25, 1.5, 1.5, math.log(100)) is None
    assert needed_events(0.25, 1.0, 1.5, 0.0) == 0.0
    assert needed_events(0.25, 1.0, 1.5, math.log(100), temper=2.0) == pytest.approx(
        2 * needed_events(0.25, 1.0, 1.5, math.log(100)))


def test_mixture_estimate_counts_evidence_already_seen() -> None:
    total = mixture_events_needed(0.25, 1.0, 1.5, math.log(100))
    assert total is not None and total > 0
    left = mixture_events_needed(0.25, 1.0, 1.5, math.log(100), seen_events=total / 2)
    assert left == pytest.approx(total / 2, rel=1e-3)
    assert mixture_events_needed(0.25, 1.6, 1.5, math.log(100)) is None  # beyond the margin
    # Fail side: a 3x canary against a 1.5x margin.
    assert mixture_events_needed(0.25, 3.0, 1.5, math.log(200), upward=True) is not None


def test_forecast_eta_shrinks_as_the_canary_runs_and_is_none_beyond_the_margin() -> None:
    margin = Margin(1.5, 0.0025)
    log_k = math.log(100)
    start = gate_eta_seconds(np.full(1, 0.25), 100.0, 0.01, 1.0, margin, log_k, 30.0,
                             horizon_seconds=7200, runs=100)
    later = gate_eta_seconds(np.full(20, 0.25), 100.0, 0.01, 1.0, margin, log_k, 30.0,
                             horizon_seconds=7200, runs=100)
    assert start is not None and later is not None and later < start
    assert gate_eta_seconds(np.full(5, 0.25), 100.0, 0.01, 1.6, margin, log_k, 30.0,
                            horizon_seconds=3600, runs=50) is None
    assert gate_eta_seconds(np.zeros(0), 100.0, 0.01, 1.0, margin, log_k, 30.0) is None
