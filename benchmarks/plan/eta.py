"""How good is "the gate needs ≈ T more"? The live answer's ``gate.eta_seconds`` and the plan's
forecast continued from now (``analyzer.planning.eta``), against the time the gate really took.

Equal canaries on the 5→25→50% ramp (10 minutes per step, the last held) and at a constant
25%, judged look by look by the real judge; at every look where the gate has not passed yet
and the answer gives an ETA (the forecast: every 4th such look), the ETA is compared with the
time the gate really took from there. Per cell and estimate: the median and the 10th/90th
percentile of (actual remaining time) / (ETA), and the share of looks whose ETA was at least
the actual time. Neither estimate knows the Rollout's later steps: on the ramp both assume the
current weight is held.

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

from judged import METRIC, Cell, margin_of, simulate_canary, thresholds

from analyzer.config import default_config
from analyzer.judge.evaluate import judge
from analyzer.judge.series import RatioSeries
from analyzer.planning.eta import gate_eta_seconds
from analyzer.planning.forecast import Ramp

CELLS = ((20.0, 0.01), (100.0, 0.002), (100.0, 0.01), (400.0, 0.01))
RESULTS = Path(__file__).resolve().parent / "results"


def forecast_eta(series: RatioSeries, k: int, effect: float | None, interval: float
                 ) -> float | None:
    """The plan's forecast from the first ``k`` intervals, as the live judge could run it."""
    head = series.head(k)
    total = head.canary_den + head.baseline_den
    shares = np.where(total > 0, head.canary_den / np.maximum(total, 1), 0.0)
    rps = float(total[-5:].mean()) / interval
    seen = float(head.baseline_den.sum())
    rate = float(head.baseline_num.sum()) / seen if seen else 0.0
    config = default_config()
    return gate_eta_seconds(shares, rps, rate, 1.0 if effect is None else effect,
                            margin_of(config), thresholds(config)[1], interval)


def one_canary(ramp: Ramp, cell: Cell, rng: np.random.Generator
               ) -> list[tuple[str, float, float, float]]:
    """(estimate, look time, ETA, pass time) of the looks before the gate passed."""
    series = simulate_canary(ramp, cell, rng)
    config = default_config()
    looks: list[tuple[str, float, float]] = []
    for k in range(1, len(series) + 1):
        at = k * ramp.interval_seconds
        answer = judge({METRIC: series.head(k)}, config, final=True, intervals=False,
                       data_seconds=at)
        if answer.verdict == "pass":
            return [(name, t, eta, at) for name, t, eta in looks]
        if answer.verdict == "fail":
            return []
        result = next(m for m in answer.metrics if m.name == METRIC)
        eta = (result.gate or {}).get("eta_seconds")
        if eta is not None and eta > 0:
            looks.append(("answer", at, float(eta)))
            if k % 4 == 0:
                forecast = forecast_eta(series, k, result.effect, ramp.interval_seconds)
                if forecast is not None and forecast > 0:
                    looks.append(("forecast", at, forecast))
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    ramps = {"ramp 5-25-50": Ramp.from_steps([(5, 600), (25, 600), (50, 600)], 30.0,
                                             hold_until=7200),
             "constant 25%": Ramp.from_steps([(25, 7200)], 30.0)}
    out = []
    for ramp_name, ramp in ramps.items():
        for rps, rate in CELLS:
            rng = np.random.default_rng(args.seed)
            ratios: dict[str, list[float]] = {"answer": [], "forecast": []}
            for _ in range(args.runs):
                for name, at, eta, passed in one_canary(ramp, Cell(rps, rate, 1.0), rng):
                    ratios[name].append((passed - at) / eta)
            for name, values in ratios.items():
                r = np.asarray(values) if values else np.asarray([math.nan])
                row = {"ramp": ramp_name, "estimate": name, "requests_per_second": rps,
                       "error_rate": rate, "looks": len(values),
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
