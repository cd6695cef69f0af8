"""``canary_analyzer_gate_eta_seconds``: the answer's ``gate.eta_seconds`` per metric, for the
dashboard's "time to decision"; +Inf while the gate has no estimate (the current estimate
would never pass), no series for a metric without a gate, and none left behind when the
rollout is forgotten."""

from __future__ import annotations

from typing import Any

from analyzer.telemetry import Telemetry

CANARY = {"destination_service_name": "c"}
STABLE = {"destination_service_name": "s"}


def _answer(eta: float | None) -> dict[str, Any]:
    return {"verdict": "inconclusive", "score": 80.0, "analysis_id": "a1",
            "traffic": {"canary_weight": 25, "observed_canary_share": 0.25},
            "metrics": [{"name": "error-rate", "effect": 1.0, "e_value": 0.5, "allowed": 1.5,
                         "threshold": 200.0, "canary": {"count": 1200.0, "value": 0.01},
                         "gate": {"within": False, "needed_events": 40.0,
                                  "eta_seconds": eta, "unit": "canary errors"}},
                        {"name": "latency", "canary": {"count": 1200.0, "value": 80.0}}]}


def _eta_lines(telemetry: Telemetry) -> list[str]:
    return [line for line in telemetry.exposition().decode().splitlines()
            if line.startswith("canary_analyzer_gate_eta_seconds{")]


def test_gate_eta_follows_the_answer() -> None:
    telemetry = Telemetry()
    telemetry.record("shop", "checkout", _answer(600.0), canary=CANARY, stable=STABLE)
    assert _eta_lines(telemetry) == [
        'canary_analyzer_gate_eta_seconds{metric="error-rate",namespace="shop",'
        'rollout="checkout"} 600.0']
    telemetry.record("shop", "checkout", _answer(None), canary=CANARY, stable=STABLE)
    assert [line.rsplit(" ", 1)[1] for line in _eta_lines(telemetry)] == ["+Inf"]
    telemetry.record("shop", "checkout", _answer(0.0), canary=CANARY, stable=STABLE)
    assert _eta_lines(telemetry)[0].endswith(" 0.0")


def test_forgotten_rollouts_leave_no_eta() -> None:
    telemetry = Telemetry(max_rollouts=1, idle_after=0.0)
    telemetry.record("shop", "checkout", _answer(600.0), canary=CANARY, stable=STABLE)
    telemetry.record("shop", "cart", _answer(None), canary=CANARY, stable=STABLE)
    assert [line.split("rollout=")[1] for line in _eta_lines(telemetry)] == ['"cart"} +Inf']
