"""How good is the live answer's "gate needs ≈ T more" (``gate.eta_seconds``)?

Equal canaries on the 5→25→50% ramp (10 minutes per step, the last held), judged look by
look by the real judge; at every look where the gate has not passed yet and the answer gives
an ETA, the ETA is compared with the time the gate really took from there. Per cell: the median
and the 10th/90th percentile of (actual remaining time) / (ETA) over all such looks, and the
share of looks whose ETA was at least the actual time (an honest "at most").

    .venv/bin/python benchmarks/plan/eta.py [--runs N] [--seed S]

Writes benchmarks/plan/results/eta.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judged import METRIC, Cell, simulate_canary

from analyzer.config import default_config
from analyzer.judge.evaluate import judge
from analyzer.planning.forecast import Ramp

CELLS = ((20.0, 0.01), (100.0, 0.002), (100.0, 0.01), (400.0, 0.01))
RESULTS = Path(__file__).resolve().parent / "results"


def one_canary(ramp: Ramp, cell: Cell, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(look time, ETA) of every look before the gate passed, and the pass time last."""
    series = simulate_canary(ramp, cell, rng)
    config = default_config()
    looks = []
    for k in range(1, len(series) + 1):
        at = k * ramp.interval_seconds
        answer = judge({METRIC: series.head(k)}, config, final=True, intervals=False,
                       data_seconds=at)
        if answer.verdict == "pass":
            return [(t, eta, at) for t, eta in looks]
        if answer.verdict == "fail":
            return []
        gate = next(m for m in answer.metrics if m.name == METRIC).gate or {}
        eta = gate.get("eta_seconds")
        if eta is not None and eta > 0:
            looks.append((at, float(eta)))
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    ramp = Ramp.from_steps([(5, 600), (25, 600), (50, 600)], 30.0, hold_until=7200)
    out = []
    for rps, rate in CELLS:
        rng = np.random.default_rng(args.seed)
        ratios = []
        for _ in range(args.runs):
            for at, eta, passed in one_canary(ramp, Cell(rps, rate, 1.0), rng):
                ratios.append((passed - at) / eta)
        r = np.asarray(ratios) if ratios else np.asarray([math.nan])
        row = {"requests_per_second": rps, "error_rate": rate, "looks": len(ratios),
               "median_actual_over_eta": float(np.median(r)),
               "p10": float(np.quantile(r, 0.1)), "p90": float(np.quantile(r, 0.9)),
               "eta_at_least_actual": float(np.mean(r <= 1.0))}
        out.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eta.json").write_text(json.dumps({"runs": args.runs, "seed": args.seed,
                                                  "cells": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
