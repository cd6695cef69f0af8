"""CPU cost of one live look: extend the judge's running state by one interval, then judge.

The live service loads a session's running state, extends a copy by the newest interval and
asks it for a judgement with confidence sequences (``intervals=True``); that pair is what
this script times, at 60 and 720 intervals (30 min and 6 h of 30-s intervals). The data is
``replay_length.py``'s healthy canary: ~200 req/s, 1% errors, Istio latency buckets, 25%
canary weight, seed 2026, judged under the dataset's default config (``config_for_dataset``:
an error-rate metric and a latency metric). Each figure is the median over ``--repeats``
looks on fresh copies of the same state; the copy itself is timed apart. Times are the
process's CPU time (``time.process_time``), so that other load on a shared machine counts
as little as it can.

    nice -n 19 python benchmarks/judge/look_cost.py [--looks 60 720] [--repeats 200]
                                                     [--json PATH]

The "before" figures (``results/look_cost_before.json``) are this script run on commit
d33d3cc's judge, one ``RateState`` per latency threshold::

    mkdir /tmp/before && git archive d33d3cc analyzer benchmarks | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before:/tmp/before/benchmarks/judge python benchmarks/judge/look_cost.py \
        --json benchmarks/judge/results/look_cost_before.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from simulate import healthy, simulate

from analyzer.judge.stream import JudgeState
from analyzer.metrics.dataset import Dataset
from analyzer.replay import config_for_dataset

DEFAULT_JSON = Path(__file__).parent / "results" / "look_cost.json"
SEED = 2026


def canary(intervals: int, seed: int = SEED) -> Dataset:
    scenario = healthy(traffic=200.0, p0=0.01, weights=(25.0,) * intervals)
    return simulate(scenario, np.random.default_rng(seed), f"healthy-{intervals}").dataset


def look_cost(dataset: Dataset, n: int, repeats: int) -> dict[str, Any]:
    """Milliseconds of ``extend(interval n)`` + ``judgement()`` on a state holding n − 1."""
    config = config_for_dataset(dataset)
    weights = dataset.canary_weight
    state = JudgeState(config)
    state.extend(dataset.head(n - 1).metrics,
                 weights=None if weights is None else weights[: n - 1])
    last = {name: series.window(n - 1, n) for name, series in dataset.metrics.items()}
    last_weights = None if weights is None else weights[n - 1:n]
    looks, extends, judgements, copies = [], [], [], []
    for _ in range(repeats):
        began = time.process_time()
        scratch = state.copy()
        copied = time.process_time()
        scratch.extend(last, weights=last_weights)
        extended = time.process_time()
        scratch.judgement(intervals=True)
        done = time.process_time()
        copies.append(copied - began)
        extends.append(extended - copied)
        judgements.append(done - extended)
        looks.append(done - copied)
    return {"intervals": n, "ms_p50": 1e3 * statistics.median(looks),
            "extend_ms_p50": 1e3 * statistics.median(extends),
            "judgement_ms_p50": 1e3 * statistics.median(judgements),
            "copy_ms_p50": 1e3 * statistics.median(copies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--looks", type=int, nargs="+", default=[60, 720])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    full = canary(max(args.looks))
    rows = []
    for n in args.looks:
        row = look_cost(full, n, args.repeats)
        rows.append(row)
        print(f"look at {n:4d} intervals: {row['ms_p50']:6.2f} ms p50 (extend "
              f"{row['extend_ms_p50']:.2f}, judgement {row['judgement_ms_p50']:.2f}; copy "
              f"{row['copy_ms_p50']:.2f} apart)", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(
        {"rps": 200, "interval_seconds": 30, "seed": SEED, "repeats": args.repeats,
         "python": platform.python_version(), "numpy": np.__version__, "looks": rows},
        indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
