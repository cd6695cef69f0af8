"""Kayenta-compatible Mann-Whitney classifier: interval maths, worked Kayenta cases, rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from analyzer.judge.mannwhitney import classify, mann_whitney_interval, wilcoxon_diff

# Published R output: Kayenta's MannWhitneySuite "tie out with R version" ran
# wilcox.test(canary, baseline, conf.int=TRUE, conf.level=0.95, exact=FALSE, correct=TRUE)
# on these samples (values on a 0.5 grid, so heavily tied).
R_BASELINE = np.array([
    1.5, 6, 5, 2.5, 2.5, 2, 2, 3.5, 3, 3, 3, 2, 3, 8, 4, 2.5, 3, 2.5, 2.5, 2, 2.5, 2, 2, 2.5,
    3.5, 3, 1.5, 5, 2.5, 5.5, 2, 2.5, 3.5, 2, 2.5, 4, 2, 2, 2, 2, 5.5, 4.5, 4, 3, 3, 3.5, 2.5,
    3, 2.5, 4, 6, 2, 5, 6, 3.5, 3, 54.5, 3, 5, 6, 3.5, 4.5, 2.5, 2, 6, 5, 2.5, 3.5, 2, 3, 2.5,
    3.5, 3.5, 2.5, 3, 4.5, 3, 15.5, 5, 2.5, 3, 4, 3.5, 4, 4, 2, 4.5, 2.5, 4, 3,
])
R_CANARY = np.array([
    2.5, 2.5, 2, 2.5, 3.5, 2, 3.5, 1.5, 3, 3, 2.5, 3.5, 2, 2.5, 2, 2, 5, 3, 2, 1.5, 2, 4, 3,
    2.5, 3, 2, 2, 2, 2.5, 3.5, 1.5, 1.5, 3.5, 2, 2.5, 2.5, 3, 3.5, 2.5, 6.5, 2.5, 4, 2.5, 3,
    2.5, 6.5, 2.5, 3, 1.5, 2, 2.5, 3, 7.5, 1.5, 2, 4, 2.5, 2, 2.5, 3.5, 4, 2.5, 3, 2.5, 2, 3.5,
    3, 16.5, 3, 3, 7, 4.5, 5, 2, 3.5, 6, 1.5, 3, 2.5, 4, 3, 1.5, 5, 3, 2.5, 5.5, 3, 1.5, 2.5, 6,
])
R_LOWER, R_UPPER, R_ESTIMATE = -0.500002521696696, -3.486287505871302e-05, -0.4999393907180323
R_UNIROOT_TOL = 1e-4


def _normal_pair(shift: float, n: int = 50, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)


# --- the statistic and the interval ----------------------------------------------------------

def test_wilcoxon_diff_matches_hand_computation() -> None:
    # x − 50 = 3×(−49) ∪ 7×50 against y = 10×1: ranks 2 (×3), 8.5 (×10), 17 (×7).
    x, y = np.array([100.0] * 7 + [1.0] * 3), np.ones(10)
    dz = 3 * 2 + 7 * 17 - 10 * 11 / 2 - 10 * 10 / 2
    ties = (3**3 - 3) + (10**3 - 10) + (7**3 - 7)
    sigma = math.sqrt(10 * 10 / 12 * (21 - ties / (20 * 19)))
    assert wilcoxon_diff(50.0, 0.0, x, y) == pytest.approx((dz - 0.5) / sigma)
    assert wilcoxon_diff(50.0, 1.5, x, y) == pytest.approx((dz - 0.5) / sigma - 1.5)


def test_wilcoxon_diff_refuses_all_tied() -> None:
    with pytest.raises(ValueError, match="all observations are tied"):
        wilcoxon_diff(2.0, 0.0, np.array([5.0, 5.0]), np.array([3.0, 3.0, 3.0]))


def test_interval_matches_published_r_output() -> None:
    lower, upper, estimate = mann_whitney_interval(R_CANARY, R_BASELINE, confidence=0.95)
    assert lower == pytest.approx(R_LOWER, abs=R_UNIROOT_TOL)
    assert upper == pytest.approx(R_UPPER, abs=R_UNIROOT_TOL)
    assert estimate == pytest.approx(R_ESTIMATE, abs=R_UNIROOT_TOL)


def test_estimate_is_median_of_pairwise_differences() -> None:
    # Without ties the statistic is zero exactly between the two middle pairwise differences.
    x, y = _normal_pair(0.4, n=40, seed=3)
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    middle = diffs.size // 2
    _, _, estimate = mann_whitney_interval(x, y)
    assert diffs[middle - 1] - 1e-9 <= estimate <= diffs[middle] + 1e-9
    assert estimate == pytest.approx(np.median(diffs), abs=diffs[middle] - diffs[middle - 1])


def test_interval_ends_are_order_statistics_of_pairwise_differences() -> None:
    # Without ties the continuity-corrected normal interval is [D_(k), D_(N+1-k)] over the
    # N sorted pairwise differences, k = floor(N/2 - 1/2 - z·σ) + 1 (1-based).
    rng = np.random.default_rng(11)
    x, y = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 41)
    n_pairs = x.size * y.size
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    sigma = math.sqrt(x.size * y.size * (x.size + y.size + 1) / 12)
    k = math.floor(n_pairs / 2 - 0.5 - norm.ppf(0.99) * sigma) + 1
    assert k != math.floor(n_pairs / 2 - norm.ppf(0.99) * sigma) + 1  # sizes where 0.5 matters
    lower, upper, _ = mann_whitney_interval(x, y, confidence=0.98)
    width = diffs[-1] - diffs[0]
    assert lower == pytest.approx(diffs[k - 1], abs=1e-8 * width)
    assert upper == pytest.approx(diffs[n_pairs - k], abs=1e-8 * width)


def test_larger_canary_gives_positive_shift_and_swapping_mirrors_it() -> None:
    x, y = _normal_pair(2.0)
    lower, upper, estimate = mann_whitney_interval(x, y)
    assert 0 < lower < estimate < upper
    mirrored_lower, mirrored_upper, mirrored_estimate = mann_whitney_interval(y, x)
    assert (mirrored_lower, mirrored_upper) == pytest.approx((-upper, -lower), abs=1e-8)
    # The estimate may be any point of the flat zero between the two middle pairwise differences.
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    gap = diffs[diffs.size // 2] - diffs[diffs.size // 2 - 1]
    assert mirrored_estimate == pytest.approx(-estimate, abs=gap + 1e-9)


def test_interval_shrinks_with_more_samples() -> None:
    widths = []
    for n in (20, 80, 320):
        x, y = _normal_pair(0.5, n=n, seed=n)
        lower, upper, _ = mann_whitney_interval(x, y)
        widths.append(upper - lower)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.6 * widths[0] / 2  # roughly 1/sqrt(n): 4× the samples, half the width


@pytest.mark.slow
def test_98_percent_interval_covers_the_true_shift() -> None:
    # Skewed (exponential) samples with a pure location shift, as CPU gauges often look.
    rng = np.random.default_rng(2024)
    runs, shift, covered = 300, 0.7, 0
    for _ in range(runs):
        canary = rng.exponential(1.0, 25) + shift
        baseline = rng.exponential(1.0, 30)
        lower, upper, _ = mann_whitney_interval(canary, baseline, confidence=0.98)
        covered += lower <= shift <= upper
    assert 0.95 <= covered / runs <= 1.0


@pytest.mark.parametrize(("canary", "baseline", "confidence"), [
    (np.array([]), np.ones(3), 0.98),
    (np.array([1.0, np.nan]), np.ones(3), 0.98),
    (np.array([1.0, 2.0]), np.ones(3), 1.0),
])
def test_interval_rejects_bad_input(canary: np.ndarray, baseline: np.ndarray,
                                    confidence: float) -> None:
    with pytest.raises(ValueError):
        mann_whitney_interval(canary, baseline, confidence)


# --- Kayenta's worked examples (from Spinnaker's issue tracker) -------------------------------

def test_spinnaker_6278_seven_of_ten_high_passes() -> None:
    canary = np.array([100.0] * 7 + [1.0] * 3)
    out = classify(canary, np.ones(10), direction="increase", allowed_increase=1.05)
    assert out.classification == "pass"
    assert out.interval is not None and out.estimate is not None
    assert 0.0 <= out.interval[0] < 1e-6
    assert out.interval[1] == pytest.approx(99.0)
    assert out.estimate == pytest.approx(99.0, abs=1e-6)
    assert 0.25 * abs(out.estimate) == pytest.approx(24.75, abs=1e-6)


def test_spinnaker_6278_eight_of_ten_high_is_high() -> None:
    canary = np.array([100.0] * 8 + [1.0] * 2)
    out = classify(canary, np.ones(10), direction="increase", allowed_increase=1.05)
    assert out.classification == "high"
    assert out.effect == pytest.approx(80.2)


def test_kayenta_426_sparse_errors_pass_with_effect_gate_skipped() -> None:
    out = classify(np.array([0.0, 1, 2, 1, 0, 0]), np.zeros(6), direction="increase")
    assert out.classification == "pass"
    assert out.interval == pytest.approx((0.0, 2.0), abs=1e-6)
    assert out.effect is None


def test_spinnaker_5622_nan_replaced_errors_pass() -> None:
    canary = np.array([0.0, 0.02, np.nan, 0.05, 0.04, 0.01, np.nan, 0.03, 0.0, np.nan])
    baseline = np.full(10, np.nan)
    out = classify(canary, baseline, direction="increase", nan_strategy="replace")
    assert out.classification == "pass"
    assert out.canary_count == out.baseline_count == 10
    assert out.interval is not None and out.interval[0] == pytest.approx(0.0, abs=1e-9)


# --- classification rules --------------------------------------------------------------------

@pytest.mark.parametrize(("shift", "direction", "expected"), [
    (3.0, "increase", "high"),
    (3.0, "either", "high"),
    (3.0, "decrease", "pass"),
    (-3.0, "decrease", "low"),
    (-3.0, "either", "low"),
    (-3.0, "increase", "pass"),
    (0.0, "either", "pass"),
])
def test_clear_shift_is_flagged_only_in_the_harmful_direction(
        shift: float, direction: str, expected: str) -> None:
    canary, baseline = _normal_pair(shift)
    out = classify(canary + 10, baseline + 10, direction=direction)
    assert out.classification == expected
    assert out.canary_count == out.baseline_count == 50


def test_small_shift_inside_the_band_passes() -> None:
    # Significant (the interval excludes 0) but not precise to 25% of the estimate.
    baseline = np.linspace(0.0, 1.0, 50)
    out = classify(baseline + 0.18, baseline)
    assert out.interval is not None and out.estimate is not None
    assert out.estimate == pytest.approx(0.18)
    assert 0 < out.interval[0] <= 0.25 * out.estimate
    assert out.classification == "pass"
    assert "does not clear" in out.reason


@pytest.mark.parametrize(("allowed", "expected"), [(1.1, "pass"), (1.02, "high")])
def test_effect_gate_on_increase(allowed: float, expected: str) -> None:
    canary, baseline = _normal_pair(0.0, n=50, seed=9)
    out = classify(canary + 103, baseline + 100, direction="increase", allowed_increase=allowed)
    assert out.effect == pytest.approx(1.03, abs=0.005)
    assert out.classification == expected
    assert "mean ratio" in out.reason


@pytest.mark.parametrize(("allowed", "expected"), [(0.95, "pass"), (1.0, "low")])
def test_effect_gate_on_decrease(allowed: float, expected: str) -> None:
    canary, baseline = _normal_pair(0.0, n=50, seed=9)
    out = classify(canary + 97, baseline + 100, direction="decrease", allowed_decrease=allowed)
    assert out.classification == expected


@pytest.mark.parametrize(("must_have_data", "critical", "expected"), [
    (False, False, "nodata"),
    (True, False, "nodata-fail"),
    (True, True, "nodata"),
    (False, True, "nodata"),
])
def test_missing_data_with_remove(must_have_data: bool, critical: bool, expected: str) -> None:
    out = classify(np.full(5, np.nan), np.ones(5), must_have_data=must_have_data,
                   critical=critical)
    assert out.classification == expected
    assert out.canary_count == 0
    assert out.estimate is None and out.interval is None


def test_missing_data_with_replace_passes() -> None:
    out = classify(np.array([]), np.ones(5), nan_strategy="replace", must_have_data=True)
    assert out.classification == "pass"


def test_replace_turns_nan_into_zeros() -> None:
    out = classify(np.full(20, np.nan), np.linspace(1, 2, 20), nan_strategy="replace")
    assert out.classification == "low"
    assert out.canary_mean == 0.0
    assert out.effect is None


def test_remove_drops_missing_values() -> None:
    canary, baseline = _normal_pair(3.0)
    holey = np.concatenate((canary, [np.nan, np.inf, -np.inf]))
    with_holes, without = classify(holey, baseline), classify(canary, baseline)
    assert with_holes == without
    assert with_holes.canary_count == 50


def test_identical_samples_pass() -> None:
    baseline = np.array([0.2, 0.3, 0.25, 0.4])
    out = classify(baseline[::-1], baseline)
    assert (out.classification, out.reason) == ("pass", "data are identical")


def test_one_distinct_value_passes() -> None:
    out = classify(np.full(3, 0.5), np.full(8, 0.5))
    assert out.classification == "pass"
    assert out.interval is None


def test_constant_but_different_samples_are_deterministic() -> None:
    first = classify(np.full(20, 5.0), np.full(20, 3.0))
    assert first.classification == "high"
    assert first.estimate == pytest.approx(2.0, rel=1e-3)
    assert classify(np.full(20, 5.0), np.full(20, 3.0)) == first


def test_single_samples_cannot_form_an_interval() -> None:
    out = classify(np.array([5.0]), np.zeros(3))
    assert out.classification == "pass"
    assert out.interval is None and "too few" in out.reason


@pytest.mark.parametrize("kwargs", [
    {"direction": "up"},
    {"nan_strategy": "none"},
    {"confidence": 0.0},
    {"tolerance": -0.1},
])
def test_classify_rejects_unknown_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        classify(np.ones(3), np.ones(3), **kwargs)  # type: ignore[arg-type]
