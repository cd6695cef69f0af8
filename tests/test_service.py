"""The HTTP service end to end: real Prometheus, the FastAPI app, Argo's reading of answers.

The example canaries are backfilled as Istio series (``reporter="source"``, Services
``<name>-canary`` / ``<name>-stable`` in namespace ``shop``) and judged the way an
AnalysisRun would: one POST per 30 s interval with ``end`` at the interval's end, each answer
mapped to an Argo measurement phase by ``tests/argo.py``, stopping at the first Failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clirun import run_cli
from fastapi.testclient import TestClient
from k8s_server import FakeKube
from promfixture import PrometheusServer, free_port, istio_series, traffic_from_dataset

from analyzer.judge.series import RatioSeries
from analyzer.metrics.dataset import Dataset, read_dataset
from devtools.analysisrun import run_analysis
from devtools.argo import argo_phase

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
HOSTILE = 'x"}or vector(1)#'


def shared_outage(healthy: Dataset) -> Dataset:
    """Healthy, but both sides fail 40% of requests for intervals 30–34: harm that is not the
    canary's fault must never fail it."""
    ratio = healthy.metrics["error-rate"]
    assert isinstance(ratio, RatioSeries)
    cnum, bnum = ratio.canary_num.copy(), ratio.baseline_num.copy()
    for k in range(30, 35):
        cnum[k] = round(0.4 * ratio.canary_den[k])
        bnum[k] = round(0.4 * ratio.baseline_den[k])
    metrics = dict(healthy.metrics)
    metrics["error-rate"] = RatioSeries(cnum, ratio.canary_den, bnum, ratio.baseline_den)
    return replace(healthy, name="shared-outage", metrics=metrics)


def starved(healthy: Dataset) -> Dataset:
    """Healthy baseline, but the canary's pods never receive a request."""
    metrics = {}
    for name, series in healthy.metrics.items():
        if isinstance(series, RatioSeries):
            zero = np.zeros_like(series.canary_den)
            metrics[name] = RatioSeries(zero, zero, series.baseline_num, series.baseline_den)
        else:
            metrics[name] = replace(series, canary=np.zeros_like(series.canary))
    return replace(healthy, name="starved", metrics=metrics)


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    out = {name: read_dataset(EXAMPLES / f"{name}.json")
           for name in ("healthy", "error-regression", "latency-regression")}
    out["shared-outage"] = shared_outage(out["healthy"])
    out["starved"] = starved(out["healthy"])
    return out


def _series(datasets: dict[str, Dataset]) -> list:
    series = []
    for name, dataset in datasets.items():
        series += istio_series(traffic_from_dataset(dataset, NS, f"{name}-canary",
                                                    f"{name}-stable"))
    return series


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable, datasets: dict[str, Dataset]) -> PrometheusServer:
    return start_prometheus(_series(datasets))


def body(name: str, dataset: Dataset, k: int, **extra: Any) -> dict[str, Any]:
    start = dataset.start.timestamp()
    return {"namespace": NS, "rollout": name, "canary_service": f"{name}-canary",
            "baseline_service": f"{name}-stable", "start": start,
            "end": start + k * dataset.interval_seconds, **extra}


def analysis_run(client: TestClient, name: str, dataset: Dataset) -> list[str]:
    """Argo phases of one AnalysisRun, stopping at the first Failed; the last look is final."""
    def post(payload: Mapping[str, Any]) -> tuple[int, bytes]:
        answer = client.post("/api/v1/judge", json=dict(payload))
        return answer.status_code, answer.content

    bodies = []
    for k in range(1, len(dataset) + 1):
        weight = None if dataset.canary_weight is None else float(dataset.canary_weight[k - 1])
        bodies.append(body(name, dataset, k, canary_weight=weight))
    looks = run_analysis(post, bodies)
    assert all(look.phase != "Error" for look in looks), looks[-1]
    return [look.phase for look in looks]


@pytest.mark.parametrize(("name", "outcome"), [
    ("healthy", "never-failed"), ("error-regression", "failed"),
    ("latency-regression", "failed"), ("shared-outage", "never-failed")])
def test_analysis_run(prometheus: PrometheusServer, make_client: Callable[..., TestClient],
                      datasets: dict[str, Dataset], name: str, outcome: str) -> None:
    client = make_client(prometheus.url)
    phases = analysis_run(client, name, datasets[name])
    if outcome == "failed":
        assert phases[-1] == "Failed"
        assert len(phases) < len(datasets[name])
    else:
        assert "Failed" not in phases
        assert len(phases) == len(datasets[name])
        if name == "healthy":
            # Every look before the gate passes; the gate answers a valid verdict.
            assert set(phases[:-1]) == {"Successful"}
            assert phases[-1] in ("Successful", "Inconclusive")
    analyses = client.get("/api/v1/analyses", params={"rollout": name}).json()["analyses"]
    assert len(analyses) == 1
    detail = client.get(f"/api/v1/analyses/{analyses[0]['id']}").json()
    assert len(detail["evaluations"]) == len(phases)
    assert all(e["queries"] for e in detail["evaluations"])


def test_starved_canary_at_25_percent_is_inconclusive(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient],
        datasets: dict[str, Dataset]) -> None:
    client = make_client(prometheus.url)
    answer = client.post("/api/v1/judge", json=body("starved", datasets["starved"], 30,
                                                    canary_weight=25))
    assert answer.status_code == 200
    data = answer.json()
    assert data["verdict"] == "inconclusive"
    assert "less traffic than its weight" in data["reason"]
    assert data["traffic"] == {"canary_weight": 25, "observed_canary_share": 0.0,
                               "split_ok": False, "reason": data["traffic"]["reason"]}
    matched = client.post("/api/v1/judge", json=body("healthy", datasets["healthy"], 30,
                                                     canary_weight=25))
    assert matched.json()["traffic"]["split_ok"] is True


def test_weight_read_from_the_rollout_when_the_request_has_none(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient],
        datasets: dict[str, Dataset], tmp_path: Path) -> None:
    """Kubernetes configured: the Rollout's status weight (25%) is checked against traffic."""
    kube = FakeKube()
    kube.serve_resource("argoproj.io", "rollouts", "Rollout", {"v1alpha1"})
    for name in ("starved", "healthy"):
        kube.put("argoproj.io", "rollouts", {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"strategy": {"canary": {"canaryService": f"{name}-canary",
                                             "stableService": f"{name}-stable"}}},
            "status": {"canary": {"weights": {"canary": {"weight": 25},
                                              "stable": {"weight": 75}}}}})
    kube.start()
    try:
        client = make_client(prometheus.url,
                             kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
        starved_answer = client.post("/api/v1/judge",
                                     json=body("starved", datasets["starved"], 30)).json()
        assert starved_answer["verdict"] == "inconclusive"
        assert starved_answer["traffic"]["canary_weight"] == 25
        healthy_answer = client.post("/api/v1/judge",
                                     json=body("healthy", datasets["healthy"], 30)).json()
        assert healthy_answer["traffic"]["canary_weight"] == 25
        assert healthy_answer["traffic"]["split_ok"] is True
        unknown = client.post("/api/v1/judge", json=body(
            "error-regression", datasets["error-regression"], 30)).json()
        assert unknown["traffic"]["canary_weight"] is None  # no such Rollout: not checked
    finally:
        kube.stop()


def test_response_shape(prometheus: PrometheusServer, make_client: Callable[..., TestClient],
                        datasets: dict[str, Dataset]) -> None:
    client = make_client(prometheus.url)
    dataset = datasets["error-regression"]
    answer = client.post("/api/v1/judge", json=body("error-regression", dataset, 20,
                                                    canary_weight="5"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    data = json.loads(answer.text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert set(data) == {"verdict", "score", "reason", "analysis_id", "window", "session",
                         "traffic", "metrics", "notes", "judge_version"}
    assert data["session"] == {"start": "2026-01-05T10:00:00Z", "revision": None,
                               "revision_source": None}
    assert data["notes"] and "revisions are not told apart" in data["notes"][0]
    assert data["verdict"] in ("pass", "fail", "inconclusive")
    assert isinstance(data["score"], float)
    assert data["window"] == {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T10:10:00Z"}
    traffic = data["traffic"]
    assert traffic["canary_weight"] == 5 and traffic["split_ok"] is True
    assert 0.02 < traffic["observed_canary_share"] < 0.1
    names = [m["name"] for m in data["metrics"]]
    assert names == ["error-rate", "latency"]
    for metric in data["metrics"]:
        assert metric["classification"] in ("pass", "high", "low", "nodata")
        assert 'destination_service_name=~"error-regression-canary|error-regression-stable"' \
            in metric["query"]
        for key in ("critical", "direction", "canary", "baseline", "effect", "interval",
                    "e_value", "test"):
            assert key in metric


def test_get_form_with_label_params(prometheus: PrometheusServer,
                                    make_client: Callable[..., TestClient],
                                    datasets: dict[str, Dataset]) -> None:
    client = make_client(prometheus.url)
    dataset = datasets["healthy"]
    start = dataset.start.timestamp()
    answer = client.get("/api/v1/judge", params={
        "namespace": NS, "rollout": "healthy",
        "canary.destination_service_name": "healthy-canary",
        "baseline.destination_service_name": "healthy-stable",
        "start": str(int(start)), "end": "2026-01-05T10:15:00Z", "final": "false"})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["verdict"] == "pass"
    assert data["metrics"][0]["canary"]["count"] > 0
    post = client.post("/api/v1/judge", json=body("healthy", dataset, 30))
    assert post.json()["analysis_id"] == data["analysis_id"]


def test_first_call_without_start_opens_a_session(prometheus: PrometheusServer,
                                                  make_client: Callable[..., TestClient]
                                                  ) -> None:
    client = make_client(prometheus.url)
    first = client.post("/api/v1/judge", json={
        "namespace": NS, "rollout": "healthy", "canary_service": "healthy-canary",
        "baseline_service": "healthy-stable"})
    assert first.status_code == 200, first.text
    data = first.json()
    # The session starts now; the example's series are from January, so at this first look
    # neither side matches a series: no evidence, and the answer says so (never a pass).
    assert data["verdict"] == "inconclusive"
    assert "the canary selector" in data["reason"] and "matches no series" in data["reason"]
    assert all(m["classification"] == "nodata" for m in data["metrics"])
    final = client.post("/api/v1/judge", json={
        "namespace": NS, "rollout": "healthy", "canary_service": "healthy-canary",
        "baseline_service": "healthy-stable", "final": "true"})
    assert final.json()["verdict"] == "inconclusive"
    assert final.json()["analysis_id"] == data["analysis_id"]


def test_concurrent_first_calls_make_one_session(prometheus: PrometheusServer,
                                                 make_client: Callable[..., TestClient],
                                                 datasets: dict[str, Dataset]) -> None:
    client = make_client(prometheus.url)
    dataset = datasets["healthy"]
    answers: list[Any] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        answers.append(client.post("/api/v1/judge", json=body("healthy", dataset, 10)))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["analysis_id"] for a in answers}) == 1
    analyses = client.get("/api/v1/analyses").json()["analyses"]
    assert len(analyses) == 1
    detail = client.get(f"/api/v1/analyses/{analyses[0]['id']}").json()
    assert len(detail["evaluations"]) == 8


HUGE = {"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
        "canary": {f"l{i}": "x" * 200 for i in range(400)}}


@pytest.mark.parametrize(("payload", "status", "field"), [
    ({"rollout": "r", "canary_service": "a", "baseline_service": "b"}, 422, "namespace"),
    ({"namespace": NS, "rollout": "r", "canary": {"destination_service_name": HOSTILE},
      "baseline_service": "b"}, 422, "canary.destination_service_name"),
    ({"namespace": HOSTILE, "rollout": "r", "canary_service": "a", "baseline_service": "b"},
     422, "namespace"),
    ({"namespace": NS, "rollout": "r", "canary_service": HOSTILE, "baseline_service": "b"},
     422, "canary_service"),
    ({"namespace": NS, "rollout": "r", "canary": {"bad-label": "a"}, "baseline_service": "b"},
     422, "canary"),
    ({"namespace": NS, "rollout": "r", "canary": {"__name__": "up"}, "baseline_service": "b"},
     422, "canary"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "a"},
     422, "baseline"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a"}, 422, "baseline"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "start": "yesterday"}, 422, "start"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "end": "2026-01-05T10:00:00"}, 422, "end"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "start": 1767607200, "end": 1767600000}, 422, "end"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "canary_revision": "-bad-"}, 422, "canary_revision"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "config": {"name": "x", "metrics": [{"name": "cpu", "query": "sum(up{ {selector} })",
                                           "test": "mann-whitney"}]}}, 422, "config.metrics.0"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "config": "nope"}, 422, "config"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "config": {"name": "x", "metrics": []}}, 422, "config"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "canary_servce": "a"}, 422, "canary_servce"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "canary_weight": 101}, 422, "canary_weight"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "final": "maybe"}, 422, "final"),
    ({"namespace": NS, "rollout": "r", "canary_service": "a", "baseline_service": "b",
      "reporter": "both"}, 422, "reporter"),
    (HUGE, 413, "body"),
    ([1, 2], 422, "body"),
])
def test_rejected_requests_store_nothing(prometheus: PrometheusServer,
                                         make_client: Callable[..., TestClient],
                                         payload: Any, status: int, field: str) -> None:
    client = make_client(prometheus.url)
    answer = client.post("/api/v1/judge", json=payload)
    assert answer.status_code == status, answer.text
    data = answer.json()
    assert data["field"] == field and isinstance(data["error"], str)
    assert argo_phase(answer.status_code, answer.content) == "Error"
    assert client.get("/api/v1/analyses").json() == {"analyses": []}
    assert 'canary_analyzer_errors_total{reason="bad_request"} 1.0' in client.get(
        "/metrics").text


def test_unparseable_and_oversized_bodies(prometheus: PrometheusServer,
                                          make_client: Callable[..., TestClient]) -> None:
    client = make_client(prometheus.url)
    answer = client.post("/api/v1/judge", content=b'{"namespace": ',
                         headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["field"] == "body"

    answer = client.post("/api/v1/judge", content=b'{"namespace": "shop", "canary_weight": NaN}')
    assert answer.status_code == 400 and answer.json()["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is checked as it arrives
        yield b'{"namespace": "' + b"x" * 70_000
        yield b'"}'

    answer = client.post("/api/v1/judge", content=chunks())
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    answer = client.get("/api/v1/judge", params={"namespace": NS, "rollout": "r", "bogus": "1"})
    assert answer.status_code == 422 and answer.json()["field"] == "bogus"
    answer = client.get("/api/v1/analyses", params={"limit": "many"})
    assert answer.status_code == 422 and answer.json()["field"] == "limit"
    answer = client.get("/api/v1/analyses/does-not-exist")
    assert answer.status_code == 404 and "error" in answer.json()
    assert client.get("/api/v1/analyses").json() == {"analyses": []}


def test_prometheus_outage_then_recovery(start_prometheus: Callable,
                                         make_client: Callable[..., TestClient],
                                         datasets: dict[str, Dataset]) -> None:
    server = start_prometheus(_series({"error-regression": datasets["error-regression"]}))
    client = make_client(server.url, prometheus_timeout=2.0)
    dataset = datasets["error-regression"]
    assert client.get("/readyz").status_code == 200
    first = client.post("/api/v1/judge", json=body("error-regression", dataset, 5))
    assert argo_phase(first.status_code, first.content) == "Successful"
    server.stop()
    down = client.post("/api/v1/judge", json=body("error-regression", dataset, 6))
    assert down.status_code == 503, down.text
    assert "error" in down.json() and "verdict" not in down.json()
    assert argo_phase(down.status_code, down.content) == "Error"
    # Readiness is the service's own (configs, store): Prometheus down must not take the
    # replica out of the Service, or Argo would see connection errors instead of this 503.
    assert client.get("/readyz").status_code == 200
    assert client.get("/dependencies").status_code == 503
    assert "canary_analyzer_prometheus_up 0.0" in client.get("/metrics").text
    assert client.get("/healthz").status_code == 200
    server.start()  # a new Prometheus process on the same data and port
    again = client.post("/api/v1/judge", json=body("error-regression", dataset, 6))
    assert again.status_code == 200
    analysis_id = again.json()["analysis_id"]
    assert analysis_id == first.json()["analysis_id"]
    # The 503 left no evaluation behind.
    assert len(client.get(f"/api/v1/analyses/{analysis_id}").json()["evaluations"]) == 2
    metrics = client.get("/metrics").text
    assert 'canary_analyzer_errors_total{reason="prometheus_unavailable"} 1.0' in metrics


DESIGN_METRICS = [
    "canary_analyzer_verdicts_total", "canary_analyzer_last_verdict", "canary_analyzer_score",
    "canary_analyzer_metric_effect", "canary_analyzer_metric_e_value",
    "canary_analyzer_canary_weight", "canary_analyzer_analysis_duration_seconds_bucket",
    "canary_analyzer_prometheus_query_duration_seconds_bucket", "canary_analyzer_errors_total"]


def test_metrics_exposition(prometheus: PrometheusServer,
                            make_client: Callable[..., TestClient],
                            datasets: dict[str, Dataset]) -> None:
    client = make_client(prometheus.url)
    answer = client.post("/api/v1/judge", json=body("healthy", datasets["healthy"], 10,
                                                    canary_weight=5))
    assert answer.status_code == 200
    text = client.get("/metrics").text
    for name in DESIGN_METRICS:
        assert f"\n{name}{{" in text or f"\n{name} " in text, name
    # Every verdict series exists from the session's first call, so increase() sees a fail.
    for verdict in ("pass", "fail", "inconclusive"):
        assert (f'canary_analyzer_verdicts_total{{canary="healthy-canary",namespace="shop",'
                f'rollout="healthy",stable="healthy-stable",verdict="{verdict}"}}') in text
    assert ('canary_analyzer_last_verdict{canary="healthy-canary",namespace="shop",'
            'rollout="healthy",stable="healthy-stable"} 1.0') in text
    assert client.get("/openapi.json").json()["paths"]["/api/v1/judge"]
    # Samples read per call: the first call reads its whole window (11 points per series);
    # a later call after a stored one reads 4 (the 2-interval overlap, the seam, one new).
    first = _samples_read(text)
    assert first[0] == 1 and first[1] > 0
    for k in (20, 21):
        assert client.post("/api/v1/judge", json=body("healthy", datasets["healthy"], k,
                                                      canary_weight=5)).status_code == 200
        before, first = first, _samples_read(client.get("/metrics").text)
    assert first[0] == 3
    assert 0 < first[1] - before[1] < _samples_read(text)[1]


def _samples_read(text: str) -> tuple[int, float]:
    """(count, sum) of the samples-read histogram in an exposition."""
    values = dict(re.findall(r"^canary_analyzer_prometheus_samples_read_(count|sum) (\S+)$",
                             text, re.M))
    return int(float(values["count"])), float(values["sum"])


def test_serve_subprocess(prometheus: PrometheusServer, tmp_path: Path,
                          datasets: dict[str, Dataset]) -> None:
    port = free_port()
    command = [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--prometheus", prometheus.url,
               "--database", f"sqlite:///{tmp_path / 'serve.db'}"]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail((tmp_path / "serve.log").read_text())
                time.sleep(0.1)
        payload = json.dumps(body("error-regression", datasets["error-regression"], 60))
        request = urllib.request.Request(f"{url}/api/v1/judge", data=payload.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=20) as answer:
            status, content = answer.status, answer.read()
        assert argo_phase(status, content) == "Failed"
        with urllib.request.urlopen(f"{url}/api/v1/analyses", timeout=5) as listing:
            assert len(json.loads(listing.read())["analyses"]) == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_cli_judge_and_export(prometheus: PrometheusServer, tmp_path: Path,
                              datasets: dict[str, Dataset]) -> None:
    dataset = datasets["error-regression"]
    common = ["--prometheus", prometheus.url, "--namespace", NS,
              "--canary-service", "error-regression-canary",
              "--baseline-service", "error-regression-stable"]
    start, end = "2026-01-05T10:00:00Z", "2026-01-05T10:30:00Z"
    run = run_cli("judge", *common, "--rollout", "r", "--start", start, "--end", end, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["verdict"] == "fail"
    text = run_cli("judge", *common, "--rollout", "r", "--start", start, "--end", end)
    assert text.returncode == 0 and "verdict: fail" in text.stdout, text.stderr
    out = tmp_path / "export.json"
    run = run_cli("export", *common, "--start", start, "--end", end, "-o", str(out))
    assert run.returncode == 0, run.stderr
    exported = read_dataset(out)
    assert len(exported) == len(dataset)
    ratio, original = exported.metrics["error-rate"], dataset.metrics["error-rate"]
    assert isinstance(ratio, RatioSeries) and isinstance(original, RatioSeries)
    np.testing.assert_array_equal(ratio.canary_num, original.canary_num)
    np.testing.assert_array_equal(ratio.baseline_den, original.baseline_den)
    bad = run_cli("export", *common, "--start", "soon", "--end", end, "-o", str(out))
    assert bad.returncode == 2 and "--start" in bad.stderr
    down = run_cli("export", *common[:1], f"http://127.0.0.1:{free_port()}", *common[2:],
                   "--start", start, "--end", end, "-o", str(out))
    assert down.returncode == 1 and "unavailable" in down.stderr
