"""API fuzzing: generated requests against the in-process app, with a real Prometheus and
with a closed port.

Argo Rollouts reads status codes (DESIGN §3): a 5xx other than 503 is a bug, a 503 must be the
JSON ``{"error"}`` of a dependency outage (Argo retries it), and a 4xx must name the field so
whoever wrote the AnalysisTemplate can fix it. Two generators:

- schemathesis, from the served ``/openapi.json``. The judge routes read the raw request
  themselves (to bound the body and to take ``canary.<label>`` query parameters), so FastAPI
  cannot document their inputs; the test adds them from ``JudgeRequest``'s JSON schema before
  generating, so the judge gets schema-shaped (and, in negative mode, schema-violating) input.
- a hypothesis strategy of near-valid judge bodies (real namespace, Services, windows around
  the backfilled data, one field mutated), which get past validation and reach Prometheus.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from promfixture import PrometheusServer, free_port, istio_series, traffic_from_dataset
from schemathesis import GenerationMode

from analyzer.api.app import MAX_BODY, Settings, create_app
from analyzer.metrics.dataset import read_dataset
from analyzer.request import JudgeRequest

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
NAME = "healthy"
HEALTHY = read_dataset(EXAMPLES / f"{NAME}.json")
T0 = HEALTHY.start.timestamp()
T_END = T0 + float(HEALTHY.timestamps[-1])


# ---------------------------------------------------------------------------------------------
# The schema: what the app serves, plus the judge's inputs


def served_openapi() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(database_url=str(Path(tmp) / "spec.db")))
        try:
            return app.openapi()
        finally:
            app.state.store.close()


def judge_openapi() -> dict[str, Any]:
    spec = copy.deepcopy(served_openapi())
    body = JudgeRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    spec.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
    judge = spec["paths"]["/api/v1/judge"]
    judge["post"]["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    params = []
    for name, prop in body["properties"].items():
        if name in ("canary", "baseline", "config"):
            continue
        params.append({"name": name, "in": "query", "required": name in body["required"],
                       "schema": {"type": "string"} if "anyOf" in prop or prop.get(
                           "type") != "string" else prop})
    for side in ("canary", "baseline"):
        for label in ("destination_service_name", "app"):
            params.append({"name": f"{side}.{label}", "in": "query", "required": False,
                           "schema": {"type": "string"}})
    judge["get"]["parameters"] = params
    return spec


SCHEMA = schemathesis.openapi.from_dict(judge_openapi())
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


# ---------------------------------------------------------------------------------------------
# Fixtures: one app per Prometheus (real, closed port), shared by every generated request


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable) -> PrometheusServer:
    return start_prometheus(istio_series(traffic_from_dataset(
        HEALTHY, NS, f"{NAME}-canary", f"{NAME}-stable")))


@pytest.fixture(scope="module", params=["prometheus", "closed-port"])
def app_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TestClient]:
    url = (request.getfixturevalue("prometheus").url if request.param == "prometheus"
           else f"http://127.0.0.1:{free_port()}")
    db = tmp_path_factory.mktemp("fuzz") / "analyzer.db"
    with TestClient(create_app(Settings(prometheus_url=url, database_url=str(db),
                                        prometheus_timeout=2.0))) as client:
        yield client


def check(status: int, content: bytes, what: str) -> dict[str, Any] | None:
    """The status-code contract of DESIGN §3; returns the decoded JSON object if any."""
    assert status < 500 or status == 503, f"{what}: {status} {content[:300]!r}"
    if not (400 <= status < 600):
        return None
    data = json.loads(content)
    assert isinstance(data, dict) and isinstance(data.get("error"), str), (what, data)
    if status == 503:
        assert "verdict" not in data, (what, data)
    else:
        assert isinstance(data.get("field"), str) and data["field"], (what, data)
    return data


def check_verdict(status: int, content: bytes, what: str) -> None:
    if status == 200:
        data = json.loads(content, parse_constant=lambda c: pytest.fail(f"{c} in {what}"))
        assert data["verdict"] in ("pass", "fail", "inconclusive"), (what, data)
        assert isinstance(data["score"], float) and 0 <= data["score"] <= 100, (what, data)


# ---------------------------------------------------------------------------------------------
# schemathesis: every documented operation


@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_keep_the_status_contract(case: schemathesis.Case,
                                                     app_client: TestClient) -> None:
    response = case.call(app=app_client.app)
    what = f"{case.method} {case.formatted_path}"
    check(response.status_code, response.content, what)
    if case.path == "/api/v1/judge":
        check_verdict(response.status_code, response.content, what)


# ---------------------------------------------------------------------------------------------
# hypothesis: near-valid judge bodies that reach Prometheus


def _valid_body() -> st.SearchStrategy[dict[str, Any]]:
    end = st.floats(min_value=T0, max_value=T_END + 600, allow_nan=False)
    return st.builds(
        lambda end, length, final, weight, reporter: {
            "namespace": NS, "rollout": NAME, "canary_service": f"{NAME}-canary",
            "baseline_service": f"{NAME}-stable", "start": end - length, "end": end,
            "final": final, "canary_weight": weight, "reporter": reporter},
        end, st.floats(min_value=0, max_value=3600), st.booleans() | st.sampled_from(
            ["true", "false"]),
        st.none() | st.integers(0, 100) | st.sampled_from(["5", "25.5"]),
        st.sampled_from(["source", "destination"]))


_odd = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                 st.sampled_from(["", "1e999", "-1", "2026-01-05T10:00:00Z", "now", "\u0000",
                                  'x"}or vector(1)#', "healthy-canary", ".*"]),
                 st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(_valid_body())
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*body, "canary", "baseline", "config", "extra"]))
        if draw(st.booleans()) and key in body:
            del body[key]
        else:
            body[key] = draw(_odd)
    return body


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=near_valid_bodies(), as_query=st.booleans())
def test_near_valid_judge_bodies_keep_the_status_contract(
        app_client: TestClient, body: dict[str, Any], as_query: bool) -> None:
    if as_query:
        params = {k: json.dumps(v) if isinstance(v, dict) or v is None else str(v).lower()
                  if isinstance(v, bool) else str(v) for k, v in body.items()}
        response = app_client.get("/api/v1/judge", params=params)
    else:
        try:
            content = json.dumps(body, allow_nan=False).encode()
        except ValueError:
            content = json.dumps(body).encode()  # NaN / Infinity literals: must be a 400
        response = app_client.post("/api/v1/judge", content=content,
                                   headers={"content-type": "application/json"})
    check(response.status_code, response.content, json.dumps(body, default=str)[:300])
    check_verdict(response.status_code, response.content, "judge")


def test_the_real_prometheus_is_judged_and_the_closed_port_is_a_503(
        app_client: TestClient, prometheus: PrometheusServer) -> None:
    """Both fixture variants are what they claim: the fuzzers above saw 200s and 503s."""
    body = {"namespace": NS, "rollout": NAME, "canary_service": f"{NAME}-canary",
            "baseline_service": f"{NAME}-stable", "start": T0, "end": T0 + 900}
    response = app_client.post("/api/v1/judge", json=body)
    data = check(response.status_code, response.content, "judge")
    if app_client.app.state.settings.prometheus_url == prometheus.url:
        assert response.status_code == 200 and response.json()["verdict"] == "pass"
    else:
        assert response.status_code == 503 and data is not None
        assert data["error"].startswith("prometheus unavailable")


# ---------------------------------------------------------------------------------------------
# Explicit oversized and hostile cases


@pytest.fixture(scope="module")
def closed_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("oversized") / "analyzer.db"
    with TestClient(create_app(Settings(prometheus_url=f"http://127.0.0.1:{free_port()}",
                                        database_url=str(db)))) as client:
        yield client


BASE = {"namespace": NS, "rollout": "r", "canary_service": "a-canary",
        "baseline_service": "a-stable"}


def test_body_over_64_kib_is_413(closed_client: TestClient) -> None:
    big = json.dumps({**BASE, "rollout": "x" * (MAX_BODY + 1)}).encode()
    assert len(big) > MAX_BODY
    answer = closed_client.post("/api/v1/judge", content=big,
                                headers={"content-type": "application/json"})
    assert answer.status_code == 413 and check(413, answer.content, "big")["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    answer = closed_client.post("/api/v1/judge", content=chunks())
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    answer = closed_client.post("/api/v1/judge", content=b"{}",
                                headers={"content-length": "99999999999999999999"})
    assert answer.status_code in (400, 413)


@pytest.mark.parametrize("window", [
    {"start": T0, "end": T0 + 24 * 3600 + 1},
    {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:01Z"},
    {"start": 0, "end": 1e10},
])
def test_window_longer_than_24h_is_bounded_not_refused(closed_client: TestClient,
                                                       window: dict[str, Any]) -> None:
    """A long window is judged as its most recent 24 h, never refused: a 4xx for age would
    make Argo abort every later rollout. Here Prometheus is down, so it is asked (503)."""
    answer = closed_client.post("/api/v1/judge", json={**BASE, **window})
    assert answer.status_code == 503, answer.text
    get = closed_client.get("/api/v1/judge", params={**BASE, **{k: str(v) for k, v in
                                                                 window.items()}})
    assert get.status_code == 503, get.text


def test_label_value_of_10_kb_is_refused_naming_the_label(closed_client: TestClient) -> None:
    huge = "v" * 10_240
    post = closed_client.post("/api/v1/judge", json={
        **{k: v for k, v in BASE.items() if k != "canary_service"},
        "canary": {"app_version": huge}})
    get = closed_client.get("/api/v1/judge", params={
        **{k: v for k, v in BASE.items() if k != "canary_service"},
        "canary.app_version": huge})
    for answer in (post, get):
        assert 400 <= answer.status_code < 500, answer.text
        data = check(answer.status_code, answer.content, "10 KB label")
        assert data is not None and data["field"].startswith("canary")
        assert "app_version" in data["error"]
        assert huge not in answer.text  # the value is not echoed back
    service = closed_client.post("/api/v1/judge", json={**BASE, "canary_service": huge})
    assert service.status_code == 422 and service.json()["field"] == "canary_service"


def test_a_thousand_label_pairs_are_refused(closed_client: TestClient) -> None:
    labels = {f"label_{i}": f"value-{i}" for i in range(1000)}
    post = closed_client.post("/api/v1/judge", json={
        **{k: v for k, v in BASE.items() if k != "baseline_service"}, "baseline": labels})
    params = [(k, v) for k, v in BASE.items() if k != "baseline_service"]
    params += [(f"baseline.{k}", v) for k, v in labels.items()]
    get = closed_client.get("/api/v1/judge", params=params)
    for answer in (post, get):
        assert 400 <= answer.status_code < 500, answer.text
        data = check(answer.status_code, answer.content, "1000 labels")
        assert data is not None and data["field"].startswith("baseline")
    assert math.isfinite(len(post.content)) and len(post.content) < 2048


def test_unknown_paths_and_methods_name_what_was_wrong(closed_client: TestClient) -> None:
    missing = closed_client.get("/api/v1/nope")
    assert missing.status_code == 404 and missing.json()["field"] == "path"
    method = closed_client.delete("/api/v1/judge")
    assert method.status_code == 405 and method.json()["field"] == "method"
