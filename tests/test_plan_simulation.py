"""The plan's forecasts hold against the real judge (small seeded version of benchmarks/plan).

Simulated canaries on a ramp are judged look by look by ``analyzer.judge.evaluate.judge``;
the plan's "95% of 2× regressions fail by T" and "half of the equal canaries pass the gate by
T" must hold within three standard errors. And the steps ``plan`` suggests for the demo's
service, pasted into a Rollout, let the gate pass the demo's healthy canary: replayed with
those durations, at least as often as the plan's median promises.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli

from analyzer.config import default_config
from analyzer.metrics.dataset import Dataset, read_dataset
from analyzer.planning.forecast import Ramp
from analyzer.replay import replay_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "plan"))
from judged import Cell, check_cell, simulate_canary

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "datasets" / "healthy.json"
ROLLOUT = ROOT / "deploy" / "examples" / "istio-canary" / "rollout.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [2.0, 1.0])
def test_forecast_holds_against_the_judge(ratio: float) -> None:
    ramp = Ramp.from_steps([(5, 600), (25, 600), (50, 600)], 30.0, hold_until=3600)
    result = check_cell(Cell(100.0, 0.01, ratio), ramp, runs=30, seed=7)
    assert result["predicted_seconds"] is not None
    floor = result["quantile"] - 3 * result["standard_error"]
    assert result["decided_by_predicted"] >= floor, result


@pytest.mark.slow
def test_suggested_steps_let_the_gate_pass_the_demo_canary() -> None:
    out = run_cli("plan", "--json", "--dataset", str(DEMO), "--rollout-file", str(ROLLOUT),
                  "--max-duration", "2h")
    assert out.returncode == 0, out.stderr
    suggestion = json.loads(out.stdout)["suggestion"]
    assert suggestion["decides"]
    steps = [(s["weight"], s["seconds"]) for s in suggestion["steps"]]
    demo = read_dataset(DEMO)
    ratio = demo.metrics["error-rate"]
    rps = float((ratio.canary_den + ratio.baseline_den).mean()) / demo.interval_seconds
    rate = float(ratio.baseline_num.sum() / ratio.baseline_den.sum())
    ramp = Ramp.from_steps(steps, demo.interval_seconds)
    rng = np.random.default_rng(2026)
    passed = 0
    runs = 20
    for i in range(runs):
        series = simulate_canary(ramp, Cell(rps, rate, 1.0), rng)
        n = len(ramp.shares)
        dataset = Dataset(name=f"demo-healthy-{i}", interval_seconds=demo.interval_seconds,
                          start=datetime(2026, 1, 5, tzinfo=UTC),
                          timestamps=(np.arange(n) + 1.0) * demo.interval_seconds,
                          metrics={"error-rate": series},
                          canary_weight=ramp.shares * 100.0)
        passed += replay_dataset(dataset, default_config()).verdict == "pass"
    # The suggestion promises the median at the quiet hour: half, less two standard errors.
    assert passed >= math.floor(runs * (0.5 - 2 * math.sqrt(0.25 / runs))), passed
