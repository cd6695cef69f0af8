"""The benchmark's simulator and reference judges (benchmarks/judge).

A benchmark is only as honest as its simulated canaries and its yardsticks, so both are tested:
datasets are valid ``canary-dataset/v1``, deterministic, and carry the rates they claim; the
reference judges show the behaviour their docstrings document on clear cases.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "judge"))

import references
import run
import simulate

from analyzer.metrics.dataset import dataset_to_dict, parse_dataset, read_dataset

ALPHA = 0.01


def draw(scenario: simulate.Scenario, seed: int = 0) -> simulate.Simulated:
    return simulate.simulate(scenario, np.random.default_rng(seed), scenario.family)


def test_every_family_round_trips_through_the_dataset_format() -> None:
    families = {**simulate.GOOD, **simulate.BAD}
    for family, (build, _) in families.items():
        sim = draw(build())
        data = dataset_to_dict(sim.dataset)
        again = parse_dataset(json.loads(json.dumps(data)), family)
        assert dataset_to_dict(again) == data
        assert again.labels["family"] == family
        assert again.expected == ("pass" if family in simulate.GOOD else "fail")
        assert list(again.canary_weight) == list(simulate.DEFAULT_RAMP)
        assert sim.truth.canary_buckets.shape == (60, len(simulate.ISTIO_BUCKETS_MS))


def test_corpus_is_deterministic_and_prefix_stable() -> None:
    def dump(corpus: list[simulate.Simulated]) -> list[dict]:
        return [dataset_to_dict(sim.dataset) for sim in corpus]

    first = dump(simulate.build_corpus(7, 12, 10))
    assert first == dump(simulate.build_corpus(7, 12, 10))
    assert dump(simulate.build_corpus(7, 6, 5)) == first[:6] + first[12:17]
    assert dump(simulate.build_corpus(8, 12, 10)) != first
    families = {d["labels"]["family"] for d in first}
    assert families == set(simulate.GOOD) | set(simulate.BAD)


def test_canary_share_follows_the_weight() -> None:
    errors = draw(simulate.healthy(traffic=200.0, p0=0.01)).dataset.metrics["error-rate"]
    for step, weight in enumerate((0.05, 0.25, 0.5)):
        part = slice(20 * step, 20 * step + 20)
        canary = errors.canary_den[part].sum()
        total = canary + errors.baseline_den[part].sum()
        assert abs(canary / total - weight) < 4 * np.sqrt(weight * (1 - weight) / total)


def test_error_rates_match_the_truth() -> None:
    healthy = draw(simulate.healthy(traffic=200.0, p0=0.01)).dataset.metrics["error-rate"]
    num = healthy.canary_num.sum() + healthy.baseline_num.sum()
    den = healthy.canary_den.sum() + healthy.baseline_den.sum()
    assert abs(num / den - 0.01) < 4 * np.sqrt(0.01 * 0.99 / den)
    for ratio in (2.0, 5.0):
        bad = draw(simulate.error_regression(traffic=200.0, p0=0.01, ratio=ratio))
        e = bad.dataset.metrics["error-rate"]
        observed = (e.canary_num.sum() / e.canary_den.sum()) / (
            e.baseline_num.sum() / e.baseline_den.sum())
        assert observed == pytest.approx(ratio, rel=0.1)
        assert bad.truth.canary_error == pytest.approx(0.01 * ratio)


def test_latency_histograms_match_the_truth() -> None:
    sim = draw(simulate.latency_regression(traffic=200.0, factor=1.5))
    latency = sim.dataset.metrics["latency"]
    for side, median in ((latency.baseline, 40.0), (latency.canary, 60.0)):
        assert references.histogram_quantile(0.5, side.sum(axis=0), latency.le)[0] == (
            pytest.approx(median, rel=0.1))
    counts = latency.baseline.sum(axis=0)
    expected = sim.truth.baseline_buckets[0] * counts.sum()
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1)
    tail = draw(simulate.tail_regression(traffic=200.0, share=0.05, extra_ms=1000.0))
    hist = tail.dataset.metrics["latency"]
    p50, p99 = (references.histogram_quantile(q, hist.canary.sum(axis=0), hist.le)[0]
                for q in (0.5, 0.99))
    assert p50 == pytest.approx(40.0, rel=0.1)
    assert p99 > 1000.0


def test_bundled_examples_are_small_valid_and_reproducible(tmp_path: Path) -> None:
    simulate.main(["--examples", str(tmp_path / "a")])
    simulate.main(["--examples", str(tmp_path / "b")])
    expected = {"healthy": "pass", "error-regression": "fail", "latency-regression": "fail"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        f"{name}.json" for name in expected)
    for name, verdict in expected.items():
        path = tmp_path / "a" / f"{name}.json"
        assert path.stat().st_size < 300_000
        assert path.read_bytes() == (tmp_path / "b" / f"{name}.json").read_bytes()
        dataset = read_dataset(path)
        assert (dataset.name, dataset.expected, len(dataset)) == (name, verdict, 60)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    le = np.array([1.0, 2.0, 4.0, np.inf])
    rows = np.array([[0, 10, 10, 0], [10, 0, 0, 0], [0, 0, 0, 5], [0, 0, 0, 0]])
    got = references.histogram_quantile(0.5, rows, le)
    # Rank 10 ends bucket (1, 2]; the first bucket starts at 0; +Inf gives the last finite bound.
    np.testing.assert_allclose(got[:3], [2.0, 0.5, 4.0])
    assert np.isnan(got[3])


def test_kayenta_scoring_rules() -> None:
    assert references.kayenta_score("pass", ["pass", "pass"]) == 100.0
    assert references.kayenta_score("pass", ["pass", "high"]) == 75.0  # ≤ marginal: fails
    assert references.kayenta_score("high", ["pass", "pass"]) == 0.0  # critical
    assert references.kayenta_score("nodata", ["pass", "pass"]) == 0.0  # critical Nodata
    assert references.kayenta_score("pass", ["nodata", "nodata"]) == 0.0  # ≥ 50% Nodata
    assert references.kayenta_score("pass", ["nodata", "pass"]) == 100.0


def test_flagger_fails_a_canary_outage_and_a_shared_outage() -> None:
    outage = references.flagger(draw(simulate.total_failure(traffic=200.0, p0=0.001)).dataset)
    assert (outage.verdict, outage.first_fail_at) == ("fail", 150.0)  # 5 checks × 30 s
    # Both sides fail for 4 intervals: 5 failed checks (the 1-min window trails by one).
    shared = draw(simulate.shared_incident(traffic=200.0, p0=0.001, start=30, duration=4))
    assert references.flagger(shared.dataset) == references.JudgeRun("fail", 1050.0, 35)
    assert references.flagger(draw(simulate.healthy(traffic=200.0, p0=0.001)).dataset).verdict \
        == "pass"


def test_flagger_counts_missing_canary_traffic_as_failed_checks() -> None:
    quiet = draw(simulate.low_traffic(traffic=0.05)).dataset
    assert references.flagger(quiet).verdict == "fail"


@pytest.mark.slow
def test_kayenta_misses_sparse_errors_at_low_traffic() -> None:
    pytest.importorskip("analyzer.judge.mannwhitney")
    # 5 req/s, 0.2% → 1% errors: a canary interval at 5% has 7 requests and rarely an error,
    # so per-interval rates are mostly 0 on both sides and Mann-Whitney sees no shift, while
    # the error labels carry the evidence the oracle finds.
    sims = [draw(simulate.error_regression(traffic=5.0, p0=0.002, ratio=5.0), seed)
            for seed in range(4)]
    oracle = [references.oracle(sim.dataset, sim.truth).verdict for sim in sims]
    kayenta = [references.kayenta(sim.dataset).verdict for sim in sims]
    assert oracle.count("fail") >= 3
    assert kayenta.count("fail") <= 1


def test_kayenta_fails_a_total_failure_at_its_first_look() -> None:
    pytest.importorskip("analyzer.judge.mannwhitney")
    run = references.kayenta(draw(simulate.total_failure(traffic=20.0)).dataset)
    assert (run.verdict, run.first_fail_at, run.evaluations) == ("fail", 300.0, 1)


def test_oracle_detects_a_5x_error_regression_quickly() -> None:
    times = [references.oracle(sim.dataset, sim.truth).first_fail_at for sim in
             (draw(simulate.error_regression(traffic=20.0, p0=0.01, ratio=5.0), seed)
              for seed in range(10))]
    assert all(t is not None and t <= 330.0 for t in times)
    assert np.median(times) <= 180.0


@pytest.mark.parametrize("alternative", [
    simulate.error_regression(traffic=20.0, p0=0.01, ratio=5.0),
    simulate.latency_regression(traffic=20.0, p0=0.01, factor=1.2),
])
def test_oracle_stays_below_one_over_alpha_on_healthy_canaries(
        alternative: simulate.Scenario) -> None:
    truth = draw(alternative).truth
    for seed in range(10):
        healthy = draw(simulate.healthy(traffic=20.0, p0=0.01), seed).dataset
        assert np.max(np.cumsum(references.oracle_log_lr(healthy, truth))) < np.log(1 / ALPHA)


def test_clopper_pearson_interval() -> None:
    assert run.clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** 0.1))
    lower, upper = run.clopper_pearson(5, 100)
    assert lower < 0.05 < upper


def test_runner_reports_every_family(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    argv = ["--good", "6", "--bad", "5", "--judges", "flagger,oracle", "--workers", "1",
            "--json", str(out)]
    assert run.main(argv) == 0
    report = json.loads(out.read_text())
    flagger, oracle = report["results"]["flagger"], report["results"]["oracle"]
    assert set(flagger["families"]) == set(simulate.GOOD) | set(simulate.BAD)
    assert flagger["overall"]["good"]["n"] == 6
    assert flagger["overall"]["bad"]["delay_vs_oracle"]["canary_requests_to_fail"]["n"] >= 1
    assert set(oracle["overall"]) == {"bad"}


def test_candidate_overrides_change_only_the_error_margin_and_the_gate_level() -> None:
    """gate.py and run.py compare candidates through ``candidates.override``: it must change
    exactly what it says and leave the shipped default alone."""
    from candidates import override

    from analyzer.config import default_config

    base = default_config()
    config = override(base, ratio=1.25, absolute=0.001, gate_alpha=0.1)
    errors, latency = config.metric("error-rate"), config.metric("latency")
    assert (errors.allowed_increase, errors.allowed_absolute_increase) == (1.25, 0.001)
    assert latency == base.metric("latency") and config.judge.alpha == base.judge.alpha
    assert config.judge.gate_alpha == 0.1
    assert override(base) == base == default_config()
