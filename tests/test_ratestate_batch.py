"""A batch of rate tests (the latency metric's thresholds, folded in one pass) gives each
member the answer it would get alone, and survives the JSON round trip the live service
makes between calls."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from analyzer.judge import ttest
from analyzer.judge.rate import RateTest, SplitData
from analyzer.judge.ratestate import RateState

LOG_K = math.log(200.0)


def _intervals(seed: int, k: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per member (rows) and interval: canary and baseline events out of the intervals'
    requests, with per-interval jitter. The rare member's intervals all feed the
    event-level test, the common one's mostly the interval-level t-test, and the middle
    one's (canary 30% worse) go either way."""
    rng = np.random.default_rng(seed)
    nc = rng.poisson(600, k).astype(float)
    nb = rng.poisson(1800, k).astype(float)
    rates = np.array([[0.002], [0.0095], [0.3]])
    jitter = rng.gamma(4.0, 0.25, (2, 3, k))
    c = rng.binomial(nc.astype(int), np.clip(rates * [[1.0], [1.3], [1.0]] * jitter[0], 0, 1))
    b = rng.binomial(nb.astype(int), np.clip(rates * jitter[1], 0, 1))
    return c.astype(float), b.astype(float), nc, nb


def _fold(c: np.ndarray, b: np.ndarray, nc: np.ndarray, nb: np.ndarray, sizes: list[int],
          ratios: np.ndarray) -> RateState:
    """Members ``c``/``b`` (rows) folded chunk by chunk, through JSON halfway."""
    state = RateState(size=len(c))
    start = 0
    for j, size in enumerate(sizes):
        part = slice(start, start + size)
        if j == len(sizes) // 2:
            state = RateState.from_dict(json.loads(json.dumps(state.to_dict(),
                                                              allow_nan=False)))
        state.extend(SplitData(c[:, part], (c + b)[:, part], np.log(nc[part] / nb[part]),
                               nc[part], nb[part]),
                     {"up": ratios[:, part], "gate_up": ratios[:, part]})
        start += size
    return state


def _close(a: RateTest, b: RateTest) -> None:
    for name, x in vars(a).items():
        y = getattr(b, name)
        if isinstance(x, tuple):
            assert y == pytest.approx(x, rel=1e-12), name
        elif isinstance(x, float) and not math.isinf(x):
            assert y == pytest.approx(x, rel=1e-12, abs=1e-12), name
        else:
            assert x == y, name


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_member_of_a_batch_gets_its_answer_alone(seed: int) -> None:
    c, b, nc, nb = _intervals(seed)
    rng = np.random.default_rng(seed + 100)
    sizes = [int(s) for s in rng.integers(1, 6, size=len(nc))]
    ratios = 1.0 + rng.uniform(0.0, 0.2, c.shape)  # per member and interval, as latency's
    batch = _fold(c, b, nc, nb, sizes, ratios)
    n_t = batch.sums["n_t"]
    assert n_t[0] == 0 and 2 < n_t[1] < len(nc) - 2 and n_t[2] > n_t[1]  # masks differ
    results = batch.results()
    for i in range(len(c)):
        alone = _fold(c[i:i + 1], b[i:i + 1], nc, nb, sizes, ratios[i:i + 1])
        _close(alone.result(LOG_K), replace(results[i], interval=batch.interval(i, LOG_K)))
    assert len({r.log_e_increase for r in results}) == len(results)  # members differ


def test_a_batch_asks_for_one_member_at_a_time() -> None:
    with pytest.raises(ValueError, match="results"):
        RateState(size=2).result()


def test_per_null_counts_equal_separate_t_tests() -> None:
    """One t-test call for tests with different histories gives each its own e-value."""
    rng = np.random.default_rng(5)
    total, squares = rng.normal(0, 5, 6), rng.uniform(1, 50, 6)
    n = np.array([0, 1, 2, 7, 40, 900])
    batched = ttest.log_e_from_sums(n, total, squares, True)
    for j in range(len(n)):
        one = ttest.log_e_from_sums(int(n[j]), total[j:j + 1], squares[j:j + 1], True)
        assert batched[j] == one[0]
    assert batched[0] == batched[1] == 0.0  # fewer than two observations: no evidence
