"""The service's own metrics stay bounded, and junk calls cannot flush real rollouts out.

The unit tests drive ``Telemetry`` with a fake monotonic clock; the service test sends real
calls (4xx, a canary that matches nothing, Prometheus down, real traffic) through the app
against a real Prometheus and reads ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promfixture import PrometheusServer, free_port, istio_series, traffic_from_dataset

from analyzer.api.app import Settings, create_app
from analyzer.metrics.dataset import read_dataset
from analyzer.telemetry import VERDICT_VALUE, Telemetry, side_label

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
CANARY = {"destination_service_name": "c"}
STABLE = {"destination_service_name": "s"}
ANSWER = {"verdict": "pass", "score": 100.0, "analysis_id": "a1",
          "traffic": {"canary_weight": 5, "observed_canary_share": 0.05},
          "metrics": [{"name": "error-rate", "effect": 1.0, "e_value": 0.5, "allowed": 1.0,
                       "threshold": 200.0, "canary": {"count": 120.0, "value": 0.0}}]}
NO_TRAFFIC = {**ANSWER, "metrics": [{**ANSWER["metrics"][0],
                                     "canary": {"count": 0.0, "value": None}}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rollouts(telemetry: Telemetry) -> set[str]:
    text = telemetry.exposition().decode()
    return {line.split('rollout="')[1].split('"')[0]
            for line in text.splitlines() if 'rollout="' in line}


def _record(telemetry: Telemetry, rollout: str, answer: dict[str, Any] = ANSWER,
            canary: dict[str, str] = CANARY) -> None:
    telemetry.record("shop", rollout, answer, canary=canary, stable=STABLE)


def test_least_recently_judged_idle_rollouts_are_forgotten_beyond_the_cap() -> None:
    clock = Clock()
    telemetry = Telemetry(max_rollouts=3, idle_after=600, clock=clock)
    for name in ("a", "b", "c"):
        _record(telemetry, name)
    clock.now += 700  # all three idle now
    _record(telemetry, "a")  # judged again: no longer idle, and the most recent
    _record(telemetry, "d")
    assert _rollouts(telemetry) == {"a", "c", "d"}
    assert telemetry.tracked() == [("shop", "c"), ("shop", "a"), ("shop", "d")]


def test_a_flood_of_new_names_cannot_push_out_rollouts_being_judged() -> None:
    clock = Clock()
    telemetry = Telemetry(max_rollouts=3, idle_after=600, clock=clock)
    for name in ("real-1", "real-2", "real-3"):
        _record(telemetry, name)
    for i in range(50):
        clock.now += 1
        _record(telemetry, f"junk-{i}")
    assert _rollouts(telemetry) == {"real-1", "real-2", "real-3"}
    assert "canary_analyzer_rollouts_untracked_total 50.0" in telemetry.exposition().decode()
    clock.now += 601  # the real ones went idle: a newcomer may now take the oldest's place
    _record(telemetry, "next")
    assert _rollouts(telemetry) == {"real-2", "real-3", "next"}


def test_no_series_without_a_session_or_canary_traffic() -> None:
    telemetry = Telemetry()
    _record(telemetry, "unstored", {**ANSWER, "analysis_id": None})
    _record(telemetry, "matched-nothing", NO_TRAFFIC)
    assert _rollouts(telemetry) == set()
    _record(telemetry, "real")
    _record(telemetry, "real", NO_TRAFFIC)  # a tracked rollout keeps being updated
    text = telemetry.exposition().decode()
    assert _rollouts(telemetry) == {"real"}
    assert ('canary_analyzer_verdicts_total{canary="c",namespace="shop",rollout="real",'
            'stable="s",verdict="pass"} 2.0') in text
    assert ('canary_analyzer_verdicts_total{canary="c",namespace="shop",rollout="real",'
            'stable="s",verdict="fail"} 0.0') in text


def test_steps_and_changed_sides() -> None:
    telemetry = Telemetry()
    for weight in (5, 20, 20.5):
        _record(telemetry, "r", {**ANSWER, "traffic": {"canary_weight": weight,
                                                        "observed_canary_share": 0.1}})
    text = telemetry.exposition().decode()
    for weight in ("5", "20", "20.5"):
        assert (f'canary_analyzer_step_verdict{{canary="c",namespace="shop",rollout="r",'
                f'stable="s",weight="{weight}"}} 1.0') in text
    # The canary moves to a labelled workload: the old sides' series go.
    _record(telemetry, "r", canary={"destination_workload": "w", "version": "v2"})
    text = telemetry.exposition().decode()
    assert 'canary="c"' not in text
    assert 'canary="destination_workload=w,version=v2"' in text


def test_side_labels() -> None:
    assert side_label({"destination_service_name": "checkout-canary"}) == "checkout-canary"
    assert side_label({"version": "v2", "app": "x"}) == "app=x,version=v2"


def test_series_count_is_bounded() -> None:
    clock = Clock()
    telemetry = Telemetry(max_rollouts=10, idle_after=60, clock=clock)
    for i in range(200):
        clock.now += 61
        _record(telemetry, f"rollout-{i}")
    text = telemetry.exposition().decode()
    assert len(_rollouts(telemetry)) == 10
    assert sum('rollout="' in line for line in text.splitlines()) < 10 * 40
    assert 'rollout="rollout-199"' in text and 'rollout="rollout-0"' not in text


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable) -> PrometheusServer:
    dataset = read_dataset(EXAMPLES / "healthy.json")
    return start_prometheus(istio_series(traffic_from_dataset(dataset, "shop", "checkout-canary",
                                                              "checkout-stable")))


def test_junk_calls_to_the_service_add_no_rollout_series(prometheus: PrometheusServer,
                                                         tmp_path: Path) -> None:
    dataset = read_dataset(EXAMPLES / "healthy.json")
    t0 = dataset.start.timestamp()
    body = {"namespace": "shop", "canary_service": "checkout-canary",
            "baseline_service": "checkout-stable", "start": t0, "end": t0 + 1800,
            "canary_weight": 20}

    def rollouts(client: TestClient) -> set[str]:
        text = client.get("/metrics").text
        return {line.split('rollout="')[1].split('"')[0]
                for line in text.splitlines() if 'rollout="' in line}

    down = TestClient(create_app(Settings(prometheus_url=f"http://127.0.0.1:{free_port()}",
                                          database_url=str(tmp_path / "down.db"))))
    assert down.post("/api/v1/judge", json={**body, "rollout": "down"}).status_code == 503
    assert rollouts(down) == set()

    client = TestClient(create_app(Settings(prometheus_url=prometheus.url,
                                            database_url=str(tmp_path / "up.db"))))
    assert client.post("/api/v1/judge", json={**body, "rollout": "Bad Name",
                                              "namespace": "-x"}).status_code == 422
    nothing = client.post("/api/v1/judge", json={**body, "rollout": "typo",
                                                 "canary_service": "chekout-canary"})
    assert nothing.status_code == 200 and nothing.json()["analysis_id"]
    assert rollouts(client) == set()
    real = client.post("/api/v1/judge", json={**body, "rollout": "checkout"})
    assert real.status_code == 200
    assert rollouts(client) == {"checkout"}
    text = client.get("/metrics").text
    value = VERDICT_VALUE[real.json()["verdict"]]
    assert ('canary_analyzer_last_verdict{canary="checkout-canary",namespace="shop",'
            f'rollout="checkout",stable="checkout-stable"}} {value}') in text
    assert ('canary_analyzer_step_canary_weight{canary="checkout-canary",namespace="shop",'
            'rollout="checkout",stable="checkout-stable",weight="20"} 20.0') in text
