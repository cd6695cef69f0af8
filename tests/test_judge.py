"""Behaviour of the judge on the cases the design names: verdict policy and evidence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simulation as sim

from analyzer.config import CanaryConfig, default_config
from analyzer.config.models import MetricConfig
from analyzer.judge.evaluate import JudgeInputError, judge
from analyzer.judge.latency import quantile_from_buckets
from analyzer.judge.merge import closed_rejections
from analyzer.judge.rate import SplitData, rate_test
from analyzer.judge.series import GaugeSeries, HistogramSeries, RatioSeries


def _ratio(c, nc, b, nb) -> RatioSeries:
    return RatioSeries(*(np.asarray(x, dtype=np.int64) for x in (c, nc, b, nb)))


def _replay(data: dict, config: CanaryConfig) -> tuple[int | None, object]:
    """First failing look, and the last judgement (final gate when it never fails)."""
    n = len(next(iter(data.values())))
    for t in range(1, n + 1):
        result = judge({k: v.head(t) for k, v in data.items()}, config, final=t == n)
        if result.verdict == "fail":
            return t, result
    return None, result


def test_all_5xx_canary_fails_within_the_first_three_looks():
    # 30 s of 12 canary requests cannot bound the baseline's rate well enough to rule out the
    # absolute allowance (+0.25 points can be 20x a baseline near zero), and the first
    # interval is tempered for bursts it cannot yet measure; the third interval settles it.
    data = {"error-rate": _ratio([12, 12, 12], [12, 12, 12], [2, 3, 2], [228, 228, 228])}
    assert judge({"error-rate": data["error-rate"].head(1)}, default_config()).verdict == "pass"
    result = judge(data, default_config())
    assert result.verdict == "fail"
    assert result.score == 0.0
    metric = result.metrics[0]
    assert metric.classification == "high" and metric.critical
    assert metric.e_value >= metric.threshold
    assert metric.interval[0] > 1.2  # the whole interval is beyond the margin


def test_shared_outage_on_both_sides_passes():
    rng = np.random.default_rng(3)
    series = sim.errors(rng, rps=20, p0=0.005)
    c, b = series.canary_num.copy(), series.baseline_num.copy()
    for t in range(10, 14):  # 40% of requests fail on both sides for two minutes
        c[t] = rng.binomial(series.canary_den[t], 0.4)
        b[t] = rng.binomial(series.baseline_den[t], 0.4)
    outage = RatioSeries(c, series.canary_den, b, series.baseline_den)
    first_fail, _ = _replay({"error-rate": outage}, default_config())
    assert first_fail is None


def test_improvement_passes_and_is_reported_below_one():
    rng = np.random.default_rng(4)
    data = {"error-rate": sim.errors(rng, rps=50, p0=0.02, ratio=0.5)}
    first_fail, last = _replay(data, default_config())
    assert first_fail is None
    assert last.metrics[0].effect < 1.0


@pytest.mark.slow  # a seeded simulation of many low-traffic canaries
def test_low_traffic_never_fails_and_the_gate_is_inconclusive():
    rng = np.random.default_rng(8)
    for _ in range(20):
        data = {"error-rate": sim.errors(rng, rps=0.1, p0=0.01, ratio=2.0),
                "latency": sim.latency(rng, rps=0.1)}
        first_fail, last = _replay(data, default_config())
        assert first_fail is None
        assert last.verdict == "inconclusive"
        assert all(m.classification == "nodata" for m in last.metrics)


def test_weight_ramp_does_not_fail_a_healthy_canary_but_pooling_would():
    rng = np.random.default_rng(9)
    series = sim.errors(rng, rps=50, p0=0.01)
    first_fail, _ = _replay({"error-rate": series}, default_config())
    assert first_fail is None
    # The same counts pooled over the ramp and judged against the current 50% weight: the
    # canary looks far below its share, so the test for "canary better" fires at once —
    # the invalid analysis that putting each interval's share in the likelihood avoids.
    c, b = series.canary_num.sum(), series.baseline_num.sum()
    pooled = SplitData(np.array([c], dtype=float), np.array([c + b], dtype=float),
                       np.array([0.0]))  # logit(0.5)
    # (Textbook binomial test on both, tau2=0: pooling is what breaks it, not bursts.)
    assert rate_test(pooled, tau2=0.0).log_e_decrease > math.log(200)  # the fail threshold
    per_interval = SplitData.from_counts(series.canary_num, series.canary_den,
                                         series.baseline_num, series.baseline_den)
    assert rate_test(per_interval, tau2=0.0).log_e_decrease < math.log(100)


def test_latency_regressions_fail_overall_and_tail_only():
    rng = np.random.default_rng(12)
    config = default_config()
    slower = {"error-rate": sim.errors(rng, rps=20, p0=0.01),
              "latency": sim.latency(rng, rps=20, scale=1.4)}
    first_fail, last = _replay(slower, config)
    assert first_fail is not None
    latency = next(m for m in last.metrics if m.name == "latency")
    assert latency.classification == "high" and latency.effect > 1.1

    tail = sim.latency(rng, rps=20, tail_share=0.03, tail_ms=2000)
    pooled_c, pooled_b = tail.canary.sum(axis=0), tail.baseline.sum(axis=0)
    median_c = quantile_from_buckets(tail.le, pooled_c, 0.5)
    median_b = quantile_from_buckets(tail.le, pooled_b, 0.5)
    assert abs(median_c / median_b - 1) < 0.1  # the median did not move
    first_fail, last = _replay({"error-rate": sim.errors(rng, rps=20, p0=0.01),
                                "latency": tail}, config)
    assert first_fail is not None


def test_final_gate_passes_only_with_evidence_within_the_margin():
    rng = np.random.default_rng(13)
    plenty = {"error-rate": sim.errors(rng, rps=400, p0=0.05)}
    final = judge(plenty, default_config(), final=True)
    assert final.verdict == "pass", final.reason
    assert final.metrics[0].within_margin
    assert final.metrics[0].interval[1] < 1.2
    little = {"error-rate": sim.errors(rng, rps=5, p0=0.01, intervals=6)}
    gate = judge(little, default_config(), final=True)
    assert gate.verdict == "inconclusive"
    assert judge(little, default_config(), final=False).verdict == "pass"


def test_marginal_score_is_inconclusive_and_low_score_fails():
    rng = np.random.default_rng(14)
    metrics = (MetricConfig(name="a", type="ratio", group="g1"),
               MetricConfig(name="b", type="ratio", group="g2"))
    healthy = sim.errors(rng, rps=50, p0=0.02)
    bad = sim.errors(rng, rps=50, p0=0.02, ratio=5)
    data = {"a": healthy, "b": bad}
    marginal = CanaryConfig(name="m", metrics=metrics, groups={"g1": 80, "g2": 20})
    assert judge(data, marginal).verdict == "inconclusive"
    assert judge(data, marginal).score == 80.0
    failing = CanaryConfig(name="f", metrics=metrics, groups={"g1": 50, "g2": 50})
    assert judge(data, failing).verdict == "fail"


def test_alpha_is_shared_by_e_bonferroni():
    one = CanaryConfig(name="one", metrics=(MetricConfig(name="a", type="ratio"),))
    three = CanaryConfig(name="three", metrics=tuple(
        MetricConfig(name=n, type="ratio") for n in "abc"))
    data = {"a": _ratio([5], [100], [5], [1900])}
    assert judge(data, one).metrics[0].threshold == pytest.approx(100.0)
    assert judge(data, three).metrics[0].threshold == pytest.approx(300.0)


def test_missing_data_is_nodata_never_fail():
    result = judge({}, default_config())
    assert result.verdict == "pass"
    assert all(m.classification == "nodata" for m in result.metrics)
    assert judge({}, default_config(), final=True).verdict == "inconclusive"


def test_gauges_use_mann_whitney_outside_the_alpha_budget():
    rng = np.random.default_rng(2)
    config = CanaryConfig(name="g", metrics=(
        MetricConfig(name="cpu", type="gauge", direction="increase", critical=True),))
    assert config.sequential_count == 0
    busy = GaugeSeries(rng.normal(0.5, 0.02, 40), rng.normal(0.3, 0.02, 40))
    result = judge({"cpu": busy}, config)
    assert result.verdict == "fail" and result.metrics[0].test == "mann-whitney"
    calm = GaugeSeries(rng.normal(0.3, 0.02, 40), rng.normal(0.3, 0.02, 40))
    assert judge({"cpu": calm}, config).verdict == "pass"


def test_data_of_the_wrong_type_is_an_input_error():
    hist = HistogramSeries(np.array([1.0, math.inf]), np.ones((1, 2), dtype=np.int64),
                           np.ones((1, 2), dtype=np.int64))
    with pytest.raises(JudgeInputError, match="error-rate"):
        judge({"error-rate": hist}, default_config())


def test_reported_numbers_are_finite_or_none():
    result = judge({"error-rate": _ratio([3], [50], [0], [950])}, default_config())
    metric = result.metrics[0]
    assert math.isfinite(metric.effect)
    assert metric.interval[0] >= 0


def test_a_metric_whose_test_raises_is_an_error_not_a_crash() -> None:
    """Counts too large for floating point make the rate test divide by zero: that metric is
    ``error`` and, being critical, makes the verdict ``inconclusive``; the others are judged."""
    broken = RatioSeries(np.array([1e308]), np.array([np.inf]), np.array([1.0]),
                         np.array([100.0]))
    judgement = judge({"error-rate": broken}, default_config())
    classes = {m.name: m.classification for m in judgement.metrics}
    assert classes == {"error-rate": "error", "latency": "nodata"}
    assert judgement.verdict == "inconclusive"
    assert "could not judge error-rate" in judgement.reason
    assert "ZeroDivisionError" in judgement.metrics[0].reason


def test_closed_testing_blames_metrics_that_show_harm_together():
    # Alone each needs M/alpha = 300 (three metrics); two at 200 carry every subset that
    # contains them past 1/alpha = 100 ({a, c} averages 100.5), the third (e = 1) does not.
    rejected = closed_rejections([math.log(200), math.log(200), 0.0], math.log(100))
    assert rejected == [True, True, False]
    # One metric at 250 with two silent ones: its subsets with both others average < 100.
    assert closed_rejections([math.log(250), 0.0, 0.0], math.log(100)) == [False] * 3
    assert closed_rejections([math.log(301), 0.0, 0.0], math.log(100)) == [True, False, False]


def test_deprecated_promotion_margin_widens_the_one_margin():
    old = MetricConfig(name="e", type="ratio", allowed_increase=1.0, promotion_margin=1.25)
    assert old.margin_increase == 1.25 and old.resolved_promotion_margin == 1.25
    assert MetricConfig(name="e", type="ratio", allowed_increase=1.5).margin_increase == 1.5
    with pytest.raises(ValueError, match="ratio metrics"):
        MetricConfig(name="l", kind="istio-latency", allowed_absolute_increase=0.01)


def test_absolute_margin_counts_in_rate_points():
    """A 0.1% baseline and a canary at 0.2% (2x, but +0.1 points): inside max(1.4x,
    +0.2 points), so not failed with plenty of data and the gate passes; at 0.7% it fails."""
    rng = np.random.default_rng(21)
    config = default_config()
    inside = {"error-rate": sim.errors(rng, rps=1000, p0=0.001, ratio=2.0, share=0.5)}
    first_fail, last = _replay(inside, config)
    assert first_fail is None and last.verdict == "pass", last.reason
    beyond = {"error-rate": sim.errors(rng, rps=1000, p0=0.001, ratio=7.0, share=0.5)}
    first_fail, last = _replay(beyond, config)
    assert first_fail is not None and "+0.2 points" in last.reason


def test_inconclusive_gate_says_how_much_more_evidence_it_needs():
    rng = np.random.default_rng(22)
    data = {"error-rate": sim.errors(rng, rps=20, p0=0.01, intervals=21)}
    gate = judge(data, default_config(), final=True, data_seconds=630.0)
    assert gate.verdict == "inconclusive"
    field = gate.metrics[0].to_dict()["gate"]
    assert field["needed_events"] > 0 and field["eta_seconds"] > 0
    assert f"needs ≈ {field['needed_events']:.0f} more canary errors" in gate.reason
    assert "min at current traffic" in gate.reason
    ongoing = judge(data, default_config(), final=False, data_seconds=630.0)
    assert ongoing.verdict == "pass" and "for the promotion gate" in ongoing.reason


def test_t_test_bayes_factor_matches_the_noncentral_t_density_ratio():
    """The quadrature behind the interval-level test against scipy's non-central t (which
    is slow and overflows on long analyses), at the t-statistic of random data."""
    from scipy.stats import nct
    from scipy.stats import t as student_t

    from analyzer.judge import ttest

    rng = np.random.default_rng(6)
    for n in (4, 12, 60):
        x = rng.normal(0.3, 1.0, (3, n))
        t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(n))
        expected = (nct.logpdf(t[:, None], n - 1, ttest.EFFECTS[None, :] * math.sqrt(n))
                    - student_t.logpdf(t, n - 1)[:, None])
        got = ttest._log_bayes_factors(x.sum(axis=1) / np.sqrt((x * x).sum(axis=1)), n)
        assert np.allclose(got, expected, atol=1e-3)
    # Thousands of intervals (a 16-hour analysis) stay finite.
    assert np.isfinite(ttest.log_e_values(rng.normal(0, 1, 2000), np.zeros(1), True)).all()
