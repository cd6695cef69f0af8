"""Seeded simulations of the sequential tests under a look at every interval.

Small versions of the studies in benchmarks/judge: large enough that a miscalibrated test
fails them (each null bound is a binomial upper quantile for the number of runs), small
enough for the suite. The false-fail rate is counted over all 60 looks of a 5 → 25 → 50% ramp.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import simulation as sim
from scipy.special import expit
from scipy.stats import binom

from analyzer.config import default_config
from analyzer.judge.evaluate import judge
from analyzer.judge.latency import latency_test
from analyzer.judge.rate import SplitData, rate_test

pytestmark = pytest.mark.slow  # seeded simulation studies: minutes in all

ALPHA = 0.05
LOG_K = math.log(1 / ALPHA)


def _ever_fails(series, tau2=None) -> bool:
    for t in range(1, len(series) + 1):
        head = series.head(t)
        data = SplitData.from_counts(head.canary_num, head.canary_den, head.baseline_num,
                                     head.baseline_den)
        if rate_test(data, tau2=tau2).log_e_increase >= LOG_K:
            return True
    return False


def _first_fail(series, **margin: float) -> int | None:
    for t in range(1, len(series) + 1):
        head = series.head(t)
        data = SplitData.from_counts(head.canary_num, head.canary_den, head.baseline_num,
                                     head.baseline_den)
        if rate_test(data, **margin).log_e_increase >= LOG_K:
            return t
    return None


def _bound(runs: int) -> int:
    """Largest false-fail count still consistent with a rate of ALPHA (one-sided 0.1%)."""
    return int(binom.ppf(0.999, runs, ALPHA))


@pytest.mark.parametrize(("rps", "p0", "cv"), [
    (20, 0.01, (0.0, 0.0)),     # plain null on a weight ramp
    (5, 0.02, (0.0, 0.0)),      # low traffic
    (50, 0.01, (0.3, 0.3)),     # bursty on both sides
    (50, 0.01, (0.6, 0.1)),     # a canary of few pods jitters alone
])
def test_type_one_error_under_a_look_every_interval(rps, p0, cv):
    rng = np.random.default_rng(20261127)
    runs = 250
    fails = sum(_ever_fails(sim.errors(rng, rps=rps, p0=p0, cv=cv)) for _ in range(runs))
    assert fails <= _bound(runs), f"{fails}/{runs} null canaries failed"


@pytest.mark.parametrize(("rps", "cv", "share"), [
    (200, 0.6, None),   # 5 → 25 → 50% ramp: the 5% step is where tempering used to break
    (1000, 0.6, None),
    (1000, 0.6, 0.5),   # a 50/50 split from the first look
])
def test_bursty_high_volume_nulls_stay_calibrated(rps, cv, share):
    """Per-side jitter at volumes where it dominates binomial noise: the judge must switch
    those intervals to the interval-level test (the shipped tempering failed 20-26% here)."""
    rng = np.random.default_rng(20261129)
    runs = 50
    fails = sum(_ever_fails(sim.errors(rng, rps=rps, p0=0.01, cv=(cv, cv), share=share))
                for _ in range(runs))
    assert fails <= _bound(runs), f"{fails}/{runs} null canaries failed"


def _fails_inside_margin(series, **margins) -> bool:
    for t in range(1, len(series) + 1):
        head = series.head(t)
        data = SplitData.from_counts(head.canary_num, head.canary_den, head.baseline_num,
                                     head.baseline_den)
        if rate_test(data, **margins).log_e_increase >= LOG_K:
            return True
    return False


def test_canary_inside_its_margin_is_not_failed():
    """1.2x the baseline's errors with allowed_increase 1.25, and +0.2 points with an
    allowed absolute increase of 0.25 points on a 0.2% baseline: inside, so calibrated."""
    rng = np.random.default_rng(31)
    runs = 40
    ratio = sum(_fails_inside_margin(sim.errors(rng, rps=400, p0=0.01, ratio=1.2),
                                     allowed_increase=1.25) for _ in range(runs))
    assert ratio <= _bound(runs)
    absolute = sum(_fails_inside_margin(sim.errors(rng, rps=400, p0=0.002, ratio=2.0),
                                        allowed_increase=1.25, absolute_increase=0.0025)
                   for _ in range(runs))
    assert absolute <= _bound(runs)


def test_latency_exactly_at_its_margin_is_not_failed():
    """allowed_increase 1.25 on latency and a canary exactly 1.25x slower: the margin is
    bounded through the bucket edges, never interpolated below the truth."""
    rng = np.random.default_rng(32)
    runs = 20
    fails = 0
    for _ in range(runs):
        series = sim.latency(rng, rps=100, scale=1.25)
        fails += any(latency_test(series.le, series.canary[:t], series.baseline[:t],
                                  quantiles=(0.5, 0.9, 0.99), allowed_increase=1.25
                                  ).log_e_increase >= LOG_K for t in range(4, 61, 4))
    assert fails <= _bound(runs)


def test_a_healthy_canary_is_not_failed_in_16_hours_of_background_analysis():
    """A canary 1.036x the baseline's errors (inside the default margin) judged for 16 h at
    50 req/s: with one margin for fail and pass it is never failed (the old 1.0 fail margin
    failed it once enough data had accumulated)."""
    rng = np.random.default_rng(33)
    config = default_config()
    for _ in range(4):
        series = sim.errors(rng, rps=50, p0=0.01, ratio=1.036, intervals=1920, share=0.5)
        for t in range(80, 1921, 80):
            assert judge({"error-rate": series.head(t)}, config,
                         intervals=False).verdict != "fail"


def test_gate_time_estimate_is_the_right_order_and_errs_long():
    """The gate's "≈ T min at current traffic" against when the gate really passed: an
    equal canary at 50 req/s and 1% errors on a 50/50 split, estimate taken after 5 min.
    Early on the jitter allowance is still the prior's, so the figure errs long (median
    ratio 0.38 here); it must not be short, nor off by orders of magnitude."""
    rng = np.random.default_rng(34)
    config = default_config()
    ratios = []
    for _ in range(8):
        series = sim.errors(rng, rps=50, p0=0.01, intervals=120, share=0.5)
        first = judge({"error-rate": series.head(10)}, config, final=True, intervals=False,
                      data_seconds=300.0)
        eta = first.metrics[0].gate["eta_seconds"]
        if first.verdict == "pass" or eta is None:
            continue
        passed = next((t for t in range(11, 121)
                       if judge({"error-rate": series.head(t)}, config, final=True,
                                intervals=False).verdict == "pass"), None)
        assert passed is not None
        ratios.append((passed - 10) * 30.0 / eta)
    assert len(ratios) >= 6
    assert 0.1 <= float(np.median(ratios)) <= 1.5, ratios


def test_textbook_e_process_is_miscalibrated_on_bursty_nulls():
    """The harness can see the failure the tempering fixes: without it, bursts fail canaries."""
    rng = np.random.default_rng(7)
    runs = 150
    naive = sum(_ever_fails(sim.errors(rng, rps=100, p0=0.02, cv=(0.4, 0.4)), tau2=0.0)
                for _ in range(runs))
    assert naive > 2 * ALPHA * runs


@pytest.mark.parametrize(("rps", "ratio", "min_power"), [(20, 2.0, 0.9), (50, 3.0, 0.98)])
def test_power_against_error_regressions(rps, ratio, min_power):
    rng = np.random.default_rng(11)
    runs = 60
    detected = [_first_fail(sim.errors(rng, rps=rps, p0=0.01, ratio=ratio)) for _ in range(runs)]
    assert sum(d is not None for d in detected) >= min_power * runs


def _margin_oracle_look(series, ratio: float, margin: float) -> int | None:
    """The first look at which an SPRT that knows the true ratio, tested against the margin
    itself, reaches 1/alpha: no test that fails only beyond the margin can be faster on
    average (Wald), whatever it assumes about jitter."""
    u = series.canary_den / (series.canary_den + series.baseline_den)
    logit = np.log(u) - np.log1p(-u)
    theta0, theta1 = expit(logit + math.log(margin)), expit(logit + math.log(ratio))
    c, e = series.canary_num, series.canary_num + series.baseline_num
    llr = c * np.log(theta1 / theta0) + (e - c) * np.log((1 - theta1) / (1 - theta0))
    hits = np.nonzero(np.cumsum(llr) >= LOG_K)[0]
    return int(hits[0]) + 1 if len(hits) else None


def test_time_to_fail_against_the_default_margin_is_near_the_margin_oracle():
    """Where binomial noise dominates (20 req/s), 3× errors against the built-in margin
    max(1.4×, +0.2 points) fail within a small factor of the fastest possible test of that
    margin (benchmarks/judge/nulls.py measures 1.3–1.6× at 20 req/s; the factor over an SPRT
    against "no difference" is larger by the margin's own cost, which no test of the margin
    can avoid)."""
    rng = np.random.default_rng(17)
    errors = default_config().metric("error-rate")
    assert errors is not None
    ratio, absolute, p0 = errors.margin_increase, errors.allowed_absolute_increase, 0.01
    ratios = []
    for _ in range(40):
        series = sim.errors(rng, rps=20, p0=p0, ratio=3.0)
        ours = _first_fail(series, allowed_increase=ratio, absolute_increase=absolute)
        best = _margin_oracle_look(series, 3.0, max(ratio, 1.0 + absolute / p0))
        if ours is not None and best is not None:
            ratios.append(ours / best)
    assert len(ratios) >= 36
    assert 1.0 <= float(np.median(ratios)) <= 2.0


def test_latency_null_is_calibrated_and_regressions_are_found():
    rng = np.random.default_rng(5)

    def fails(series, log_k=LOG_K) -> bool:
        for t in range(2, len(series) + 1, 2):  # every other look keeps the test quick
            head = series.head(t)
            test = latency_test(head.le, head.canary, head.baseline, quantiles=(0.5, 0.9, 0.99),
                                allowed_increase=1.0)
            if test.log_e_increase >= log_k:
                return True
        return False

    runs = 60
    null = sum(fails(sim.latency(rng, rps=20, cv=(0.05, 0.05))) for _ in range(runs))
    assert null <= _bound(runs)
    slower = sum(fails(sim.latency(rng, rps=20, scale=1.25)) for _ in range(20))
    assert slower >= 19
    tail = sum(fails(sim.latency(rng, rps=20, tail_share=0.03, tail_ms=2000)) for _ in range(20))
    assert tail >= 19
