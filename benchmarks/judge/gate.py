"""Promotion-gate benchmark: how often the default config's gate passes a healthy canary, and
how often it promotes one that is clearly worse, by traffic, error rate and ramp length.

Each canary runs a 5→25→50% ramp (equal thirds) of one 30 s interval per look and is judged
once at the end with ``final=True`` (the gate), errors and latency both simulated. A healthy
canary has the baseline's error rate; the "clearly worse" one has max(2×, +0.5 points) of it,
the issue's bar for false promotion. Fixed seed, numbers printed and written as JSON.

    python benchmarks/judge/gate.py [--runs N] [--seed S] [--json PATH]
                                    [--ratio R --absolute M]   # candidate error margins
                                    [--gate-alpha A]           # candidate gate level
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from candidates import override
from simulate import error_regression, healthy, simulate

from analyzer.config import CanaryConfig, default_config
from analyzer.judge.evaluate import judge

TRAFFIC = (5.0, 20.0, 100.0, 400.0)
P0 = (0.001, 0.01)
MINUTES = (15, 30, 60)
DEFAULT_JSON = Path(__file__).parent / "results" / "gate.json"


def _ramp(minutes: int) -> tuple[float, ...]:
    third = minutes * 2 // 3
    return (5.0,) * third + (25.0,) * third + (50.0,) * third


def _config(ratio: float | None, absolute: float | None,
            gate_alpha: float | None = None) -> CanaryConfig:
    """The default config, with the error-rate margin and the gate's level overridden to
    compare candidates."""
    return override(default_config(), ratio=ratio, absolute=absolute, gate_alpha=gate_alpha)


def _cell(args: tuple[int, float, float, int, str, int, float | None, float | None,
                     float | None]) -> dict[str, Any]:
    seed, traffic, p0, minutes, kind, runs, ratio, absolute, gate_alpha = args
    config = _config(ratio, absolute, gate_alpha)
    weights = _ramp(minutes)
    passed, needed, etas = 0, [], []
    for i in range(runs):
        if kind == "healthy":
            scenario = healthy(traffic=traffic, p0=p0, weights=weights)
        else:
            ratio = max(2.0, 1.0 + 0.005 / p0)
            scenario = error_regression(traffic=traffic, p0=p0, ratio=ratio, weights=weights)
        rng = np.random.default_rng([seed, int(traffic), int(p0 * 1e4), minutes, i,
                                     kind == "healthy"])
        data = simulate(scenario, rng, f"{kind}-{i}").dataset
        result = judge(data.metrics, config, final=True, intervals=False,
                       data_seconds=len(weights) * 30.0)
        passed += result.verdict == "pass"
        gate = result.metrics[0].gate or {}
        if result.verdict != "pass" and gate.get("needed_events") is not None:
            needed.append(gate["needed_events"])
            if gate.get("eta_seconds") is not None:
                etas.append(gate["eta_seconds"])
    return {"kind": kind, "traffic": traffic, "p0": p0, "minutes": minutes, "runs": runs,
            "passed": passed, "pass_rate": passed / runs,
            "median_needed_events": float(np.median(needed)) if needed else None,
            "median_eta_minutes": float(np.median(etas)) / 60 if etas else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--ratio", type=float, help="override allowed_increase of error-rate")
    parser.add_argument("--absolute", type=float,
                        help="override allowed_absolute_increase of error-rate")
    parser.add_argument("--gate-alpha", type=float, help="override judge.gate_alpha")
    args = parser.parse_args()
    cells = [(args.seed, t, p, m, kind, args.runs, args.ratio, args.absolute, args.gate_alpha)
             for kind in ("healthy", "worse")
             for t in TRAFFIC for p in P0 for m in MINUTES]
    began = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_cell, cells))
    print(f"{'kind':8} {'req/s':>6} {'p0':>6} {'min':>4} {'pass':>9} {'needs':>8} {'eta min':>8}")
    for r in rows:
        needs = "" if r["median_needed_events"] is None else f"{r['median_needed_events']:.0f}"
        eta = "" if r["median_eta_minutes"] is None else f"{r['median_eta_minutes']:.0f}"
        print(f"{r['kind']:8} {r['traffic']:6g} {r['p0']:6g} {r['minutes']:4d} "
              f"{r['passed']:4d}/{r['runs']:<4d} {needs:>8} {eta:>8}")
    summary: dict[str, Any] = {}
    for kind in ("healthy", "worse"):
        part = [r for r in rows if r["kind"] == kind]
        total = sum(r["runs"] for r in part)
        summary[kind] = {"pass_rate": sum(r["passed"] for r in part) / total, "runs": total}
        high = [r for r in part if r["traffic"] >= 100 and r["minutes"] == 30]
        if high:
            summary[kind]["pass_rate_100rps_30min"] = (
                sum(r["passed"] for r in high) / sum(r["runs"] for r in high))
    print(json.dumps(summary, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seed": args.seed, "runs_per_cell": args.runs,
                                     "ratio": args.ratio, "absolute": args.absolute,
                                     "gate_alpha": args.gate_alpha,
                                     "summary": summary, "cells": rows}, indent=1) + "\n")
    print(f"{time.time() - began:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
