"""The traffic-split check: matched splits pass, a starved canary is inconclusive, ramps don't
trip it, and a mismatch never turns a failing canary into a passing one."""

from __future__ import annotations

import numpy as np
import simulation as sim

from analyzer.config import default_config
from analyzer.judge.evaluate import judge
from analyzer.judge.series import RatioSeries
from analyzer.judge.traffic import check_split


def test_matched_split_on_a_ramp_passes_at_every_look():
    rng = np.random.default_rng(1)
    weights = sim.weights() * 100
    false_alarms = 0
    for _ in range(100):
        nc, nb = sim.split(rng, rps=50)
        false_alarms += any(
            not check_split(nc[:t], nb[:t], weights[:t], alpha=0.01).split_ok
            for t in range(1, 61, 3))
    assert false_alarms <= 3


def test_starved_canary_at_25_percent_is_inconclusive_with_a_reason():
    rng = np.random.default_rng(2)
    nb = rng.poisson(600, 8)
    nc = np.zeros(8, dtype=np.int64)  # canary pods never got traffic
    series = RatioSeries(nc, nc, rng.binomial(nb, 0.01), nb)
    result = judge({"error-rate": series}, default_config(), weights=np.full(8, 25.0))
    assert result.verdict == "inconclusive"
    assert "less traffic than its weight" in result.reason
    assert result.traffic is not None and not result.traffic.split_ok
    assert result.traffic.observed_canary_share == 0.0
    # Live mode (only the current weight known) sees it from the last two intervals too.
    live = judge({"error-rate": series}, default_config(),
                 weights=np.full(8, 25.0), recent_weights_only=True)
    assert live.verdict == "inconclusive"


def test_retries_that_double_the_canary_share_are_flagged():
    rng = np.random.default_rng(3)
    total = rng.poisson(2000, 6)
    nc = rng.binomial(total, 0.45)  # weight says 20%
    check = check_split(nc, total - nc, np.full(6, 20.0), alpha=0.01)
    assert not check.split_ok and "more traffic" in check.reason


def test_live_check_tolerates_the_interval_that_straddles_a_step_change():
    rng = np.random.default_rng(4)
    for _ in range(30):
        total = rng.poisson(600, 6)
        share = np.array([0.05, 0.05, 0.05, 0.05, 0.15, 0.25])  # 5% → 25% mid-interval 5
        nc = rng.binomial(total, share)
        weights = np.full(6, 25.0)  # the live service only knows the current weight
        assert check_split(nc, total - nc, weights, alpha=0.01, recent_only=True).split_ok


def test_a_mismatch_never_hides_a_failure():
    nc = np.array([12, 12, 12])
    series = RatioSeries(nc, nc, np.array([2, 3, 2]), np.full(3, 228))  # all 5xx, and skewed
    result = judge({"error-rate": series}, default_config(), weights=np.full(3, 50.0))
    assert result.verdict == "fail"
