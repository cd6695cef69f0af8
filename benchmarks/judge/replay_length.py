"""Replay time against length, and the cost of one look against the window it covers.

A healthy simulated canary at ~200 req/s (1% errors, Istio latency buckets, 25% canary
weight, 30 s intervals) is replayed for 1, 4, 8 and 24 hours (one look per interval, as
``canary-analyzer replay`` does). Replay through the judge's running state is linear in
length; before it, each look re-judged the whole window (quadratic).

The per-look cost is what the live service pays per call once its state is loaded: extend
by one interval and judge with confidence sequences (``intervals=True``), at 30, 120, 720
and 2,880 intervals (15 min to 24 h). The JSON size of the state is printed beside it.
Under a checkout without ``analyzer.judge.stream`` the script times the whole-window
``judge()`` per look instead (the "before" figure).

    python benchmarks/judge/replay_length.py [--hours 1 4 8 24] [--looks 30 120 720 2880]
                                             [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from simulate import healthy, simulate

from analyzer.metrics.dataset import Dataset
from analyzer.replay import config_for_dataset, replay_dataset

DEFAULT_JSON = Path(__file__).parent / "results" / "replay_length.json"
INTERVALS_PER_HOUR = 120


def canary(intervals: int, seed: int = 2026) -> Dataset:
    scenario = healthy(traffic=200.0, p0=0.01, weights=(25.0,) * intervals)
    return simulate(scenario, np.random.default_rng(seed), f"healthy-{intervals}").dataset


def replay_seconds(dataset: Dataset) -> float:
    began = time.perf_counter()
    result = replay_dataset(dataset)
    elapsed = time.perf_counter() - began
    assert len(result.evaluations) == len(dataset), "the healthy canary failed"
    return elapsed


def look_cost(dataset: Dataset, n: int, repeats: int) -> dict[str, Any]:
    """Median milliseconds of one look at ``n`` intervals (state update + judgement)."""
    config = config_for_dataset(dataset)
    try:
        from analyzer.judge.stream import JudgeState
    except ImportError:  # before the streaming judge: the whole window per look
        from analyzer.judge.evaluate import judge

        head = dataset.head(n)
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            judge(head.metrics, config, intervals=True, weights=head.canary_weight)
            times.append(time.perf_counter() - began)
        return {"intervals": n, "ms": 1e3 * statistics.median(times), "state_bytes": None}
    state = JudgeState(config)
    weights = dataset.canary_weight
    state.extend(dataset.head(n - 1).metrics,
                 weights=None if weights is None else weights[: n - 1])
    last = {name: series.window(n - 1, n) for name, series in dataset.metrics.items()}
    times, copies = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        scratch = state.copy()
        copied = time.perf_counter()
        scratch.extend(last, weights=None if weights is None else weights[n - 1:n])
        scratch.judgement(intervals=True)
        times.append(time.perf_counter() - copied)
        copies.append(copied - began)
    size = len(json.dumps(state.to_dict(), separators=(",", ":")))
    return {"intervals": n, "ms": 1e3 * statistics.median(times),
            "copy_ms": 1e3 * statistics.median(copies), "state_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 4, 8, 24])
    parser.add_argument("--looks", type=int, nargs="+", default=[30, 120, 720, 2880])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    longest = max(max(args.looks), int(max(args.hours) * INTERVALS_PER_HOUR))
    full = canary(longest)
    replays = []
    for hours in args.hours:
        n = int(hours * INTERVALS_PER_HOUR)
        seconds = replay_seconds(full.head(n))
        replays.append({"hours": hours, "intervals": n, "seconds": seconds,
                        "ms_per_look": 1e3 * seconds / n})
        print(f"replay {hours:4g} h ({n:5d} looks): {seconds:7.2f} s, "
              f"{1e3 * seconds / n:6.2f} ms/look", flush=True)
    by_hours = {r["hours"]: r["seconds"] for r in replays}
    ratio = by_hours[8] / by_hours[4] if 4 in by_hours and 8 in by_hours else None
    if ratio is not None:
        print(f"8 h / 4 h: {ratio:.2f}x")
    looks = []
    for n in args.looks:
        row = look_cost(full, n, args.repeats)
        looks.append(row)
        extra = ("" if row["state_bytes"] is None else
                 f"  (copy {row['copy_ms']:.2f} ms, state {row['state_bytes'] / 1024:.0f} KiB)")
        print(f"look at {n:5d} intervals: {row['ms']:7.2f} ms{extra}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rps": 200, "interval_seconds": 30, "replays": replays,
                                     "ratio_8h_4h": ratio, "looks": looks}, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
