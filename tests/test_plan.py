"""``canary-analyzer plan``: steps and history in, decision times and suggested steps out.

History from a dataset (the demo's), from a real Prometheus holding two days of backfilled
diurnal Istio traffic, steps from ``--steps`` and the example Rollouts; every bad flag exits 2
naming it, an unreachable Prometheus exits 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from clirun import run_cli
from k8s_server import FakeKube
from promfixture import START, IstioSide, IstioTraffic, PrometheusServer, istio_series

from analyzer.planning.forecast import Margin, Ramp, Traffic, crossing_seconds
from analyzer.planning.steps import Step, StepsError, parse_steps_flag, read_rollout_file

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "datasets" / "healthy.json"
ROLLOUT = ROOT / "deploy" / "examples" / "istio-canary" / "rollout.yaml"
BACKGROUND = ROOT / "deploy" / "examples" / "istio-canary-background" / "rollout-background.yaml"


def test_steps_flag() -> None:
    assert parse_steps_flag("5:10m,25:1h30m,25:30s,50:90") == (
        Step(5, 600), Step(25, 5430), Step(50, 90))


@pytest.mark.parametrize("text, named", [
    ("5", "step 1"), ("x:10m", "weight 'x'"), ("0:10m", "above 0"), ("5:10m,150:1m", "step 2"),
    ("5:ten", "not a duration"), ("5:0s", "positive")])
def test_steps_flag_errors_name_the_step(text: str, named: str) -> None:
    with pytest.raises(StepsError, match="--steps") as caught:
        parse_steps_flag(text)
    assert named in str(caught.value)


def test_rollout_files_give_their_timed_steps() -> None:
    # Analysis steps last as long as the bundled template's run (10 looks 30 s apart); the
    # promotion gate's analysis at 50% adds its own 5 minutes.
    assert read_rollout_file(str(ROLLOUT), 300.0) == (Step(5, 300), Step(25, 300), Step(50, 600))
    assert read_rollout_file(str(BACKGROUND), 300.0) == (Step(5, 300), Step(25, 300),
                                                         Step(50, 300))


def test_rollout_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("kind: Rollout\nspec: {strategy: {canary: {steps: [{setWeight: 5}, "
                    "{pause: {duration: soon}}]}}}\n")
    with pytest.raises(StepsError, match=r"steps\[1\]\.pause\.duration"):
        read_rollout_file(str(path), 300.0)
    path.write_text("kind: Service\n")
    with pytest.raises(StepsError, match="no document of kind Rollout"):
        read_rollout_file(str(path), 300.0)


@pytest.mark.slow
def test_live_rollout_steps(tmp_path: Path) -> None:
    """``--rollout`` reads the steps of the Rollout through the Kubernetes API (a real HTTP
    server speaking the API, reached through a kubeconfig); a missing one exits 1."""
    kube = FakeKube()
    kube.serve_resource("argoproj.io", "rollouts", "Rollout", {"v1alpha1"})
    kube.start()
    try:
        rollout = yaml.safe_load(BACKGROUND.read_text(encoding="utf-8"))
        rollout["metadata"]["namespace"] = "shop"
        kube.put("argoproj.io", "rollouts", rollout)
        kubeconfig = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        name = rollout["metadata"]["name"]
        plan = _plan("--dataset", str(DEMO), "--rollout", name, "--namespace", "shop",
                     "--kubeconfig", kubeconfig, "--max-duration", "1h")
        assert plan["steps"] == [{"weight": 5.0, "seconds": 300.0},
                                 {"weight": 25.0, "seconds": 300.0},
                                 {"weight": 50.0, "seconds": 300.0}]
        missing = run_cli("plan", "--dataset", str(DEMO), "--rollout", "nope", "--namespace",
                          "shop", "--kubeconfig", kubeconfig)
        assert missing.returncode == 1 and "nope" in missing.stderr
    finally:
        kube.stop()


def test_forecast_is_seeded_and_orders_regressions() -> None:
    ramp = Ramp.from_steps([(5, 600), (25, 600), (50, 600)], 30.0, hold_until=7200)
    traffic = Traffic(100.0, 0.01)
    margin = Margin(1.5, 0.0025)
    two = crossing_seconds(ramp, traffic, 2.0, margin, math.log(200), upward=True, runs=100)
    assert np.array_equal(two, crossing_seconds(ramp, traffic, 2.0, margin, math.log(200),
                                                upward=True, runs=100))
    four = crossing_seconds(ramp, traffic, 4.0, margin, math.log(200), upward=True, runs=100)
    assert np.median(four) < np.median(two)
    # Inside the margin a canary never fails.
    inside = crossing_seconds(ramp, traffic, 1.2, margin, math.log(200), upward=True, runs=100)
    assert np.mean(np.isinf(inside)) > 0.95


@pytest.mark.parametrize("args, flag", [
    (["--steps", "5:10m"], "--prometheus"),
    (["--dataset", str(DEMO)], "--steps"),
    (["--dataset", str(DEMO), "--steps", "5:10m", "--rollout-file", str(ROLLOUT)], "--steps"),
    (["--dataset", str(DEMO), "--steps", "5:10m", "--interval", "soon"], "--interval"),
    (["--dataset", str(DEMO), "--steps", "5:10m", "--regression", "0.5"], "--regression"),
    (["--dataset", str(DEMO), "--steps", "5:3h", "--max-duration", "1h"], "--max-duration"),
    (["--dataset", str(DEMO), "--steps", "5:3h", "--max-duration", "3d"], "--max-duration"),
    (["--dataset", "/nonexistent.json", "--steps", "5:10m"], "/nonexistent.json"),
    (["--prometheus", "http://127.0.0.1:1", "--steps", "5:10m"], "--namespace"),
    (["--prometheus", "ftp://x", "--namespace", "a", "--service", "b", "--steps", "5:10m"],
     "--prometheus"),
    (["--prometheus", "http://127.0.0.1:1", "--namespace", "a", "--service", "b",
      "--steps", "5:10m", "--lookback", "5m"], "--lookback"),
    (["--rollout-file", "/nonexistent.yaml", "--dataset", str(DEMO)], "--rollout-file"),
])
def test_bad_flags_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    result = run_cli("plan", *args)
    assert result.returncode == 2, result.stderr
    assert flag in result.stderr


def test_unreachable_prometheus_exits_1() -> None:
    result = run_cli("plan", "--prometheus", "http://127.0.0.1:1", "--namespace", "shop",
                     "--service", "checkout-stable", "--steps", "5:10m")
    assert result.returncode == 1
    assert "prometheus" in result.stderr


def _plan(*args: str) -> dict:
    if "--max-duration" not in args:
        args = ("--max-duration", "2h", *args)
    result = run_cli("plan", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_plan_from_the_demo_dataset_and_the_example_rollout() -> None:
    plan = _plan("--dataset", str(DEMO), "--rollout-file", str(ROLLOUT))
    assert plan["format"] == "canary-plan/v1"
    assert plan["steps"] == [{"weight": 5.0, "seconds": 300.0}, {"weight": 25.0, "seconds": 300.0},
                             {"weight": 50.0, "seconds": 600.0}]
    errors = next(m for m in plan["metrics"] if m["name"] == "error-rate")
    assert errors["gated"] and errors["event_rate"] == pytest.approx(0.00965, rel=0.02)
    first = errors["quiet"]["steps"][0]
    # 200 req/s, 5% for 5 minutes: 3,000 canary requests and about 29 errors.
    assert first["canary_requests"] == pytest.approx(3000, rel=0.01)
    assert first["canary_events"] == pytest.approx(29, rel=0.03)
    assert set(first["fail_95_seconds"]) == {"2x"}
    latency = next(m for m in plan["metrics"] if m["name"] == "latency")
    assert latency["quiet"]["ramp"]["gate_50_seconds"] is None  # margin 1.0: never passes
    suggestion = plan["suggestion"]
    assert suggestion["decides"] and "setWeight: 50" in suggestion["yaml"]
    assert [s["weight"] for s in suggestion["steps"]] == [5.0, 25.0, 50.0]


@pytest.mark.slow
def test_too_little_traffic_says_what_would_decide(tmp_path: Path) -> None:
    data = json.loads(DEMO.read_text())
    ratio = data["metrics"]["error-rate"]
    for side in ("canary", "baseline"):  # 0.2 req/s with 1% errors
        ratio[side]["den"] = [max(1, d // 1000) for d in ratio[side]["den"]]
        ratio[side]["num"] = [1 if i % 20 == 0 else 0 for i in range(len(ratio[side]["num"]))]
    path = tmp_path / "quiet.json"
    path.write_text(json.dumps(data))
    plan = _plan("--dataset", str(path), "--steps", "5:10m,25:10m,50:10m")
    suggestion = plan["suggestion"]
    assert not suggestion["decides"] and suggestion["steps"] is None
    assert any("absolute margin" in text or "weight" in text or "longer" in text
               for text in suggestion["advice"])
    text = run_cli("plan", "--dataset", str(path), "--steps", "5:10m,25:10m,50:10m",
                   "--max-duration", "2h").stdout
    assert "no ramp with these weights lets the gate decide" in text


def _diurnal(hours: int, step: float, peak: float, low: float) -> np.ndarray:
    t = (np.arange(int(hours * 3600 / step)) + 0.5) * step / 3600.0
    rps = low + (peak - low) * (0.5 - 0.5 * np.cos(2 * np.pi * t / 24.0))
    return np.round(rps * step).astype(int)


@pytest.mark.slow
def test_plan_from_prometheus_with_diurnal_history(
        start_prometheus: Callable[..., PrometheusServer]) -> None:
    step = 300.0
    requests = _diurnal(48, step, peak=400.0, low=20.0)
    errors = np.round(requests * 0.005).astype(int)
    traffic = IstioTraffic(
        namespace="shop", step=step,
        canary=IstioSide("checkout-canary", {"200": [0] * len(requests)}),
        baseline=IstioSide("checkout-stable", {"200": (requests - errors).tolist(),
                                               "503": errors.tolist()}))
    prometheus = start_prometheus(istio_series(traffic))
    end = str(START + 48 * 3600)
    plan = _plan("--prometheus", prometheus.url, "--namespace", "shop", "--service",
                 "checkout-stable", "--lookback", "2d", "--end", end,
                 "--steps", "5:10m,25:10m,50:10m")
    history = plan["history"]
    assert history["hours"] >= 46
    # Hourly rates of the cosine day: the 10th percentile is near the trough, the 90th near
    # the peak.
    assert 20 <= history["quiet_requests_per_second"] <= 60
    assert 360 <= history["busy_requests_per_second"] <= 400
    errors_plan = next(m for m in plan["metrics"] if m["name"] == "error-rate")
    assert errors_plan["event_rate"] == pytest.approx(0.005, rel=0.05)
    quiet, busy = errors_plan["quiet"], errors_plan["busy"]
    assert busy["steps"][0]["canary_requests"] > 5 * quiet["steps"][0]["canary_requests"]
    # The busy hour decides sooner than the quiet one.
    busy_gate, quiet_gate = busy["ramp"]["gate_50_seconds"], quiet["ramp"]["gate_50_seconds"]
    assert busy_gate is not None and (quiet_gate is None or busy_gate < quiet_gate)
