"""What one analysis is: one canary revision, a window that never errors with age, and no
verdict without evidence. Real Prometheus, the real app, calls shaped like an AnalysisRun's.

One rollout ``relay`` ships three releases through the same two Services (as Argo's
``canaryService``/``stableService`` do), three hours apart: a bad one (the example error
regression), a fixed one (the healthy example) and a bad one again. Each release's series
carry its own ``destination_canonical_revision``, as Istio's would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from k8s_server import FakeKube
from promfixture import PrometheusServer, free_port, istio_series, traffic_from_dataset

from analyzer.analysis import Analyzer
from analyzer.config import default_config
from analyzer.metrics.dataset import Dataset, read_dataset
from analyzer.metrics.source import PrometheusSource
from analyzer.replay import replay_dataset
from analyzer.request import parse_request
from analyzer.store import Store
from devtools.analysisrun import run_analysis
from devtools.argo import argo_phase
from devtools.datasource import DatasetSource

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
HOURS = 3600.0


def _example(name: str) -> Dataset:
    return read_dataset(EXAMPLES / f"{name}.json")


# (revision, example, hours after the examples' start)
RELEASES = [("aaa111", "error-regression", 0), ("bbb222", "healthy", 3),
            ("ccc333", "error-regression", 6)]


def _traffic(dataset: Dataset, canary: str, stable: str, hours: float,
             labels: dict[str, str] | None = None) -> list:
    start = dataset.start.timestamp() + hours * HOURS
    traffic = traffic_from_dataset(dataset, NS, canary, stable, start=start)
    if labels is not None:
        traffic = replace(traffic,
                          canary=replace(traffic.canary, labels={
                              "destination_canonical_revision": labels["canary"]}),
                          baseline=replace(traffic.baseline, labels={
                              "destination_canonical_revision": labels["baseline"]}))
    return istio_series(traffic)


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable) -> PrometheusServer:
    series = []
    for number, (revision, example, hours) in enumerate(RELEASES):
        series += _traffic(_example(example), "relay-canary", "relay-stable", hours,
                           {"canary": revision, "baseline": f"stable-{number}"})
    series += _traffic(_example("error-regression"), "fresh-canary", "fresh-stable", 6)
    for name in ("healthy", "error-regression", "latency-regression"):
        series += _traffic(_example(name), f"{name}-canary", f"{name}-stable", 0)
    return start_prometheus(series)


def _t0(hours: float) -> float:
    return _example("healthy").start.timestamp() + hours * HOURS


def analysis(client: TestClient, rollout: str, service: str, hours: float,
             looks: int = 61, **extra: Any) -> list[dict[str, Any]]:
    """An AnalysisRun: one call per 30 s from the release's start (no ``start``: the session
    begins at the first call), ``final`` on the last, stopping at the first Failed."""
    def post(payload: Mapping[str, Any]) -> tuple[int, bytes]:
        answer = client.post("/api/v1/judge", json=dict(payload))
        assert answer.status_code == 200, answer.text
        return answer.status_code, answer.content

    bodies = [{"namespace": NS, "rollout": rollout, "canary_service": f"{service}-canary",
               "baseline_service": f"{service}-stable", "end": _t0(hours) + 30 * k, **extra}
              for k in range(looks)]
    return [look.answer for look in run_analysis(post, bodies) if look.answer is not None]


def _first_fail(answers: list[dict[str, Any]]) -> int | None:
    verdicts = [a["verdict"] for a in answers]
    return verdicts.index("fail") if "fail" in verdicts else None


def test_each_revision_is_its_own_analysis(prometheus: PrometheusServer,
                                           make_client: Callable[..., TestClient]) -> None:
    client = make_client(prometheus.url)
    fresh = _first_fail(analysis(client, "fresh", "fresh", 6))
    assert fresh is not None

    runs = {revision: analysis(client, "relay", "relay", hours, canary_revision=revision)
            for revision, _, hours in RELEASES}
    ids = {revision: {a["analysis_id"] for a in answers} for revision, answers in runs.items()}
    assert all(len(found) == 1 for found in ids.values())
    assert len(set.union(*ids.values())) == 3  # three sessions
    # The bad release fails; the fixed one after it passes every look and the gate, on its
    # own window; the bad one after that fails exactly as fast as on a fresh rollout.
    assert _first_fail(runs["aaa111"]) == fresh
    fixed = runs["bbb222"]
    assert [a["verdict"] for a in fixed[:-1]] == ["pass"] * (len(fixed) - 1)
    assert fixed[-1]["verdict"] == "pass", fixed[-1]["reason"]
    assert fixed[0]["window"]["start"] == fixed[-1]["window"]["start"] == "2026-01-05T13:00:00Z"
    assert fixed[0]["session"] == {"start": "2026-01-05T13:00:00Z", "revision": "bbb222",
                                   "revision_source": "request"}
    assert _first_fail(runs["ccc333"]) == fresh
    # Earlier sessions were closed by the next revision, and never extended.
    listing = {a["revision"]: a for a in client.get(
        "/api/v1/analyses", params={"rollout": "relay"}).json()["analyses"]}
    assert listing["aaa111"]["closed_at"] is not None
    assert listing["bbb222"]["closed_at"] is not None
    assert listing["ccc333"]["closed_at"] is None


def test_without_a_revision_a_later_release_continues_the_analysis(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient]) -> None:
    """What the revision is for: without it the fixed release is judged on a window that
    starts with the bad one, and the answer says that revisions are not told apart."""
    client = make_client(prometheus.url)
    bad = analysis(client, "relay", "relay", 0)
    assert _first_fail(bad) is not None
    fixed = analysis(client, "relay", "relay", 3, looks=2)
    assert fixed[0]["analysis_id"] == bad[0]["analysis_id"]
    assert fixed[0]["window"]["start"] == "2026-01-05T10:00:00Z"
    assert fixed[0]["verdict"] == "fail"
    assert any("revisions are not told apart" in note for note in fixed[0]["notes"])


def test_revision_from_the_rollout(prometheus: PrometheusServer,
                                   make_client: Callable[..., TestClient],
                                   tmp_path: Path) -> None:
    """Kubernetes configured, no ``canary_revision``: the Rollout's current pod-template-hash
    keys the session, and a new hash starts a new one."""
    kube = FakeKube()
    kube.serve_resource("argoproj.io", "rollouts", "Rollout", {"v1alpha1"})

    def rollout(pod_hash: str) -> None:
        kube.put("argoproj.io", "rollouts", {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "relay", "namespace": NS},
            "spec": {"strategy": {"canary": {"canaryService": "relay-canary",
                                             "stableService": "relay-stable"}}},
            "status": {"currentPodHash": pod_hash,
                       "canary": {"weights": {"canary": {"weight": 5, "podTemplateHash": pod_hash},
                                              "stable": {"weight": 95}}}}})

    rollout("aaa111")
    kube.start()
    try:
        client = make_client(prometheus.url,
                             kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
        first = analysis(client, "relay", "relay", 0, looks=3)
        assert first[0]["session"]["revision"] == "aaa111"
        assert first[0]["session"]["revision_source"] == "rollout"
        assert first[0]["notes"] == []
        rollout("bbb222")
        time.sleep(5.1)  # the lookup is cached for 5 s
        second = analysis(client, "relay", "relay", 3, looks=3)
        assert second[0]["session"]["revision"] == "bbb222"
        assert second[0]["analysis_id"] != first[0]["analysis_id"]
        assert second[0]["window"]["start"] == "2026-01-05T13:00:00Z"
    finally:
        kube.stop()


def test_a_long_background_analysis_keeps_getting_answers(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient]) -> None:
    client = make_client(prometheus.url)
    common = {"namespace": NS, "rollout": "relay", "canary_service": "relay-canary",
              "baseline_service": "relay-stable", "canary_revision": "aaa111"}
    first = client.post("/api/v1/judge", json={**common, "end": _t0(0)})
    assert first.status_code == 200
    late = client.post("/api/v1/judge", json={**common, "end": _t0(30)})
    assert late.status_code == 200, late.text
    data = late.json()
    assert data["analysis_id"] == first.json()["analysis_id"]
    assert data["session"]["start"] == "2026-01-05T10:00:00Z"
    assert data["window"] == {"start": "2026-01-05T16:00:00Z", "end": "2026-01-06T16:00:00Z"}
    assert any("most recent 24 h of this 30.0 h analysis" in n for n in data["notes"])
    assert "most recent 24 h" in data["reason"]


@pytest.mark.parametrize(("side", "typo", "hint"), [
    ("canary", {"canary_service": "relay-canry"}, "did you mean relay-canary?"),
    ("baseline", {"baseline_service": "relay-stabel"}, "did you mean relay-stable?"),
])
def test_a_typo_never_passes(prometheus: PrometheusServer,
                             make_client: Callable[..., TestClient],
                             side: str, typo: dict[str, str], hint: str) -> None:
    """A Service name that matches nothing: ``inconclusive`` at every look, the gate
    included, naming the side and what the namespace has instead."""
    client = make_client(prometheus.url)
    answers = []
    for k in range(0, 61, 6):
        answer = client.post("/api/v1/judge", json={
            "namespace": NS, "rollout": "relay", "canary_service": "relay-canary",
            "baseline_service": "relay-stable", **typo, "end": _t0(3) + 30 * k,
            "final": k == 60})
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    assert {a["verdict"] for a in answers} == {"inconclusive"}
    for answer in answers:
        assert f"the {side} selector" in answer["reason"] and hint in answer["reason"]
        error_rate = answer["metrics"][0]
        assert error_rate["name"] == "error-rate" and hint in error_rate["diagnosis"]


def test_wrong_namespace_and_reporter_are_named(prometheus: PrometheusServer,
                                                make_client: Callable[..., TestClient]) -> None:
    client = make_client(prometheus.url)
    base = {"rollout": "relay", "canary_service": "relay-canary",
            "baseline_service": "relay-stable", "end": _t0(3) + 600}
    elsewhere = client.post("/api/v1/judge", json={**base, "namespace": "shopp"}).json()
    assert elsewhere["verdict"] == "inconclusive"
    assert "namespace shopp has no Istio request series" in elsewhere["reason"]
    reporter = client.post("/api/v1/judge", json={**base, "namespace": NS,
                                                  "reporter": "destination"}).json()
    assert reporter["verdict"] == "inconclusive"
    assert ("relay-canary has series only with another reporter (the request reads "
            "reporter=destination)") in reporter["reason"]


def test_a_canary_without_requests_is_judged_after_the_grace_period(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient]) -> None:
    """Series that exist but carry no requests in the window (the canary's first seconds):
    passes while the grace period (2 intervals by default) lasts, inconclusive after it. The
    relay Services' series of release 1 end at 10:30 and remain visible to Prometheus for
    5 minutes; a session that starts then sees series but no requests."""
    client = make_client(prometheus.url)
    verdicts = []
    for k in range(4):
        answer = client.post("/api/v1/judge", json={
            "namespace": NS, "rollout": "quiet", "canary_service": "relay-canary",
            "baseline_service": "relay-stable", "start": _t0(0.5), "end": _t0(0.5) + 30 * k})
        assert answer.status_code == 200
        verdicts.append(answer.json())
    assert [a["verdict"] for a in verdicts] == ["pass", "pass", "inconclusive", "inconclusive"]
    assert "no data yet" in verdicts[1]["reason"]
    assert "no evidence" in verdicts[2]["reason"]


def test_prometheus_down_on_the_first_call(make_client: Callable[..., TestClient]) -> None:
    """A first call has no complete interval yet, and is still asked of Prometheus."""
    client = make_client(f"http://127.0.0.1:{free_port()}")
    for final in (False, True):
        answer = client.post("/api/v1/judge", json={
            "namespace": NS, "rollout": "relay", "canary_service": "relay-canary",
            "baseline_service": "relay-stable", "final": final})
        assert answer.status_code == 503, answer.text
        assert argo_phase(answer.status_code, answer.content) == "Error"
    assert client.get("/api/v1/analyses").json() == {"analyses": []}
    print(f"\nFAULT down-on-first-call: seconds_to_503={answer.elapsed.total_seconds():.2f}")


INLINE_PROMQL = {"name": "mine", "metrics": [
    {"name": "error-rate", "kind": "istio-error-rate", "critical": True},
    {"name": "cpu", "query": "sum(rate(istio_requests_total{ {selector} }[1m]))",
     "test": "mann-whitney"}]}


def test_inline_promql_needs_the_servers_permission(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient]) -> None:
    request = {"namespace": NS, "rollout": "relay", "canary_service": "relay-canary",
               "baseline_service": "relay-stable", "start": _t0(3), "end": _t0(3) + 600,
               "config": INLINE_PROMQL}
    refused = make_client(prometheus.url).post("/api/v1/judge", json=request)
    assert refused.status_code == 422
    assert refused.json()["field"] == "config.metrics.1"
    assert "--allow-inline-promql" in refused.json()["error"]
    allowed = make_client(prometheus.url, allow_inline_promql=True).post(
        "/api/v1/judge", json=request)
    assert allowed.status_code == 200, allowed.text
    assert [m["name"] for m in allowed.json()["metrics"]] == ["error-rate", "cpu"]


def test_muting_every_critical_metric_cannot_pass_the_gate(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient]) -> None:
    config = {"name": "muted", "metrics": [
        {"name": "error-rate", "kind": "istio-error-rate", "critical": True, "muted": True},
        {"name": "latency", "kind": "istio-latency"}]}
    client = make_client(prometheus.url)
    request = {"namespace": NS, "rollout": "relay", "canary_service": "relay-canary",
               "baseline_service": "relay-stable", "start": _t0(3), "end": _t0(3) + 1800,
               "config": config}
    assert client.post("/api/v1/judge", json=request).json()["verdict"] == "pass"
    gate = client.post("/api/v1/judge", json={**request, "final": True}).json()
    assert gate["verdict"] == "inconclusive"
    assert "every critical metric is muted" in gate["reason"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung API server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    listener.close()


def test_a_silent_kubernetes_api_cannot_push_a_call_past_the_deadline(
        prometheus: PrometheusServer, make_client: Callable[..., TestClient],
        silent_server: int, tmp_path: Path) -> None:
    """Argo gives a web metric 10 s by default. The Rollout lookup is bounded (1 s per
    request) and its failure cached, so the analysis goes on without a weight."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "silent",
        "clusters": [{"name": "silent",
                      "cluster": {"server": f"http://127.0.0.1:{silent_server}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "u"}}]}))
    client = make_client(prometheus.url, kubeconfig=str(path))
    request = {"namespace": NS, "rollout": "relay", "canary_service": "relay-canary",
               "baseline_service": "relay-stable", "start": _t0(3), "end": _t0(3) + 600}
    seconds = []
    for _ in range(2):
        began = time.monotonic()
        answer = client.post("/api/v1/judge", json=request)
        seconds.append(time.monotonic() - began)
        assert answer.status_code == 200, answer.text
        assert answer.json()["traffic"]["canary_weight"] is None
    print(f"\nFAULT kube-silent: first_call_seconds={seconds[0]:.2f}, "
          f"cached_call_seconds={seconds[1]:.2f}")
    assert seconds[0] < 8.0, seconds
    assert seconds[1] < 1.0, seconds  # the failed lookup is cached


def test_live_and_replay_agree_at_every_look(prometheus: PrometheusServer,
                                             make_client: Callable[..., TestClient]) -> None:
    """The project's central claim: the service, reading Prometheus, and ``replay``, reading
    the dataset, give the same verdict and score at every look of the bundled examples."""
    client = make_client(prometheus.url)
    for name in ("healthy", "error-regression", "latency-regression"):
        dataset = _example(name)
        replayed = replay_dataset(dataset)
        start = dataset.start.timestamp()
        n = len(dataset)
        for look, evaluation in enumerate(replayed.evaluations, start=1):
            weight = None if dataset.canary_weight is None else float(
                dataset.canary_weight[look - 1])
            answer = client.post("/api/v1/judge", json={
                "namespace": NS, "rollout": name, "canary_service": f"{name}-canary",
                "baseline_service": f"{name}-stable", "start": start,
                "end": start + evaluation.at, "final": look == n,
                "canary_weight": weight, "canary_revision": "r1"}).json()
            assert (answer["verdict"], answer["score"]) == (
                evaluation.verdict, evaluation.score), (name, look, answer["reason"])
        assert replayed.verdict == {"healthy": "pass"}.get(name, "fail")


def test_the_window_bound_is_on_the_session_grid() -> None:
    """The most recent 24 h of a long session start on its interval grid, so the intervals
    judged are the same ones an unbounded window would have."""
    analyzer = Analyzer({"default": default_config()}, PrometheusSource(lambda *_: None),
                        max_window=timedelta(hours=24))
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    end = start + timedelta(hours=30, seconds=45)
    bounded, note = analyzer._bounded(start, end)
    assert (bounded - start).total_seconds() % 30 == 0
    assert timedelta(hours=24) - timedelta(seconds=30) < end - bounded <= timedelta(hours=24)
    assert note is not None and "most recent 24 h" in note
    assert analyzer._bounded(start, start + timedelta(hours=2)) == (start, None)


def test_the_service_path_on_a_dataset_equals_replay(tmp_path: Path) -> None:
    """The same claim without Prometheus: the use case with its store, fed the dataset
    through ``DatasetSource``, answers what ``replay`` answers, look by look."""
    for name in ("healthy", "error-regression", "latency-regression"):
        dataset = _example(name)
        store = Store(str(tmp_path / f"{name}.db"))
        analyzer = Analyzer({"default": default_config()}, DatasetSource(dataset), store=store)
        replayed = replay_dataset(dataset)
        start = dataset.start.timestamp()
        try:
            for look, evaluation in enumerate(replayed.evaluations, start=1):
                weight = None if dataset.canary_weight is None else float(
                    dataset.canary_weight[look - 1])
                report = analyzer.analyse(parse_request({
                    "namespace": NS, "rollout": name, "canary_service": f"{name}-canary",
                    "baseline_service": f"{name}-stable", "start": start,
                    "end": start + evaluation.at, "final": look == len(dataset),
                    "canary_weight": weight, "canary_revision": "r1"}))
                assert (report.verdict, report.score) == (evaluation.verdict, evaluation.score)
                assert report.analysis_id is not None
        finally:
            store.close()
