"""The streaming judge state equals the full computation at every look.

Three genuinely different ways through the data: one interval per extend, random chunk
sizes (with a JSON round trip of the state and a throw-away copy in between), and the
whole window at once (``judge()`` on ``head(t)``). Each look's judgement must agree in
verdict, classifications, e-values, estimates and intervals to floating-point tolerance, on
the bundled examples and on a sample of the benchmark corpus.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.config import CanaryConfig
from analyzer.judge.evaluate import judge
from analyzer.judge.results import Judgement
from analyzer.judge.stream import JudgeState
from analyzer.metrics.dataset import Dataset, read_dataset
from analyzer.replay import config_for_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "judge"))
import simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "datasets"
REL = 1e-7


def _close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isinf(a):
            assert (math.isnan(a) and math.isnan(b)) or a == b, path
        else:
            assert b == pytest.approx(a, rel=REL, abs=1e-12), path
    elif isinstance(a, str) and isinstance(b, str) and a != b:
        # Reason texts print numbers to 3 digits: equal unless a value sits on a rounding edge.
        assert a.split()[:3] == b.split()[:3], f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, path


def _as_dict(judgement: Judgement) -> dict[str, Any]:
    return dataclasses.asdict(judgement)


def _chunk(dataset: Dataset, start: int, stop: int) -> tuple[dict, np.ndarray | None]:
    weights = None if dataset.canary_weight is None else dataset.canary_weight[start:stop]
    return ({name: s.window(start, stop) for name, s in dataset.metrics.items()}, weights)


def _looks(dataset: Dataset, config: CanaryConfig, sizes: list[int], *,
           round_trip: bool) -> dict[int, Judgement]:
    """Judgements after each chunk, keyed by the number of intervals seen."""
    state = JudgeState(config)
    out = {}
    start = 0
    for size in sizes:
        stop = min(start + size, len(dataset))
        chunk, weights = _chunk(dataset, start, stop)
        if round_trip:  # what the live service stores per session, through real JSON
            # Strict JSON (no NaN/Infinity): PostgreSQL's jsonb would refuse them.
            stored = json.dumps(state.to_dict(), allow_nan=False)
            state = JudgeState.from_dict(json.loads(stored), config)
            scratch = state.copy()  # a provisional look on a copy must not touch the state
            scratch.extend(chunk, weights=weights)
        state.extend(chunk, weights=weights)
        out[stop] = state.judgement(final=stop == len(dataset), intervals=True,
                                    data_seconds=float(dataset.timestamps[stop - 1]))
        start = stop
    return out


def _check(dataset: Dataset, seed: int, every: int = 1) -> None:
    config = config_for_dataset(dataset)
    n = len(dataset)
    single = _looks(dataset, config, [1] * n, round_trip=False)
    rng = np.random.default_rng(seed)
    sizes = list(rng.integers(1, 12, size=n))
    chunked = _looks(dataset, config, sizes, round_trip=True)
    for t, judgement in chunked.items():
        _close(_as_dict(single[t]), _as_dict(judgement), f"{dataset.name}@{t} chunked")
    for t in range(1, n + 1, every):
        head = dataset.head(t)
        whole = judge(head.metrics, config, final=t == n, intervals=True,
                      data_seconds=float(dataset.timestamps[t - 1]),
                      weights=head.canary_weight)
        _close(_as_dict(single[t]), _as_dict(whole), f"{dataset.name}@{t} at once")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_examples_equal_at_every_look(path: Path) -> None:
    _check(read_dataset(path), seed=len(path.stem))


@pytest.mark.slow
def test_benchmark_corpus_sample_equal_at_every_look() -> None:
    corpus = simulate.build_corpus(seed=7, n_good=6, n_bad=6)
    for i, sim in enumerate(corpus):
        _check(sim.dataset, seed=i, every=3)


def test_a_state_refuses_another_version_or_config() -> None:
    dataset = read_dataset(EXAMPLES / "healthy.json")
    config = config_for_dataset(dataset)
    stored = JudgeState(config).to_dict()
    with pytest.raises(ValueError, match="another config"):
        JudgeState.from_dict(stored, config.model_copy(update={"name": "other"}))
    stored["version"] = 99
    with pytest.raises(ValueError, match="version"):
        JudgeState.from_dict(stored, config)


def test_thresholds_stay_fixed_and_include_a_new_tail() -> None:
    """Thresholds are chosen once; a bound above everything the baseline showed is among
    them, so a canary whose slow requests land beyond the baseline's maximum is tested."""
    dataset = read_dataset(EXAMPLES / "healthy.json")
    config = config_for_dataset(dataset)
    state = JudgeState(config)
    state.extend(*_chunk(dataset, 0, 1))
    latency = state.states["latency"].test  # type: ignore[union-attr]
    first = list(latency.thresholds)
    state.extend(*_chunk(dataset, 1, len(dataset)))
    assert latency.thresholds == first
    assert any(q == 1.0 for q, _ in first)


def test_a_tail_the_baseline_never_had_is_tested_directly() -> None:
    """Baseline requests all at or below 250 ms; the canary sends 2% of its requests to
    500 ms. The threshold at the first bound above the baseline's slowest request (250 ms)
    sees only canary requests beyond it and carries the failure (issue: new tails)."""
    from analyzer.config import default_config
    from analyzer.judge.series import HistogramSeries

    le = np.array([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                   60000, 300000, 600000, 1800000, 3600000, math.inf])
    base = np.zeros(len(le))
    base[[4, 5, 6, 7]] = [0.5, 0.3, 0.15, 0.05]
    slow = base * 0.98
    slow[8] = 0.02
    rng = np.random.default_rng(5)
    n = 20
    canary = np.array([rng.multinomial(1500, slow) for _ in range(n)], dtype=float)
    baseline = np.array([rng.multinomial(1500, base) for _ in range(n)], dtype=float)
    config = default_config()
    config = config.model_copy(update={"metrics": tuple(
        m for m in config.metrics if m.name == "latency")})
    state = JudgeState(config)
    for t in range(n):
        state.extend({"latency": HistogramSeries(le, canary[t:t + 1], baseline[t:t + 1])})
        judgement = state.judgement(intervals=True)
        if judgement.verdict == "fail":
            break
    assert judgement.verdict == "fail", judgement.reason
    result = judgement.metrics[0]
    tail = [d for d in result.details if d["quantile"] == 1.0]
    assert [d["bound"] for d in tail] == [250.0]
    assert tail[0]["e_value"] == max(d["e_value"] for d in result.details)
