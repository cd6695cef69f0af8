"""Hostile and odd input, round two (issue 14): deep JSON is a 400 naming ``body``, and every
answer, 5xx included, is counted in ``canary_analyzer_http_requests_total``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from promfixture import free_port

from analyzer.api.app import Settings, create_app
from analyzer.api.hostile import MAX_DEPTH, nesting_depth, nesting_error

JUDGE = {"namespace": "shop", "rollout": "checkout", "canary_service": "checkout-canary",
         "baseline_service": "checkout-stable"}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """The real app against a Prometheus that is not there (port closed), with one extra route
    that raises, standing for any bug that escapes the handlers."""
    app = create_app(Settings(prometheus_url=f"http://127.0.0.1:{free_port()}",
                              database_url=str(tmp_path / "a.db")))

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def counted(client: TestClient) -> dict[tuple[str, str, str], float]:
    text = client.get("/metrics").text
    out = {}
    for line in text.splitlines():
        match = re.match(r'canary_analyzer_http_requests_total\{(.*)\} (\S+)$', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            out[(labels["route"], labels["method"], labels["status"])] = float(match.group(2))
    return out


@pytest.mark.parametrize("body", [
    "[" * 1000 + "]" * 1000,
    "{" + '"a":{' * 999 + "}" * 1000,
    json.dumps({**JUDGE, "config": json.loads('{"a":' * 900 + "1" + "}" * 900)}),
    json.dumps({**JUDGE, "canary": {"x": json.loads("[" * 100 + "]" * 100)}}),
])
def test_deep_json_is_a_400_naming_body(client: TestClient, body: str) -> None:
    answer = client.post("/api/v1/judge", content=body,
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"
    assert f"at most {MAX_DEPTH}" in answer.json()["error"]


def test_ordinary_depth_still_reaches_validation(client: TestClient) -> None:
    """An inline config is 4–5 levels deep; it is judged by the request's rules, not refused."""
    body = {**JUDGE, "config": {"name": "x", "metrics": [{"name": "e",
                                                          "kind": "istio-latency",
                                                          "quantiles": [0.5]}]},
            "unknown": 1}
    answer = client.post("/api/v1/judge", json=body)
    assert answer.status_code == 422 and answer.json()["field"] == "unknown", answer.text


def test_depth_ignores_brackets_in_strings_and_is_cheap() -> None:
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert nesting_depth(b'"\\"[[[["') == 0
    assert nesting_depth(b"") == 0
    assert nesting_error(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
    assert nesting_error(b"[" * (MAX_DEPTH + 1)) is not None
    worst = b"[" * 65536
    began = time.perf_counter()
    assert nesting_depth(worst) == 65536
    assert time.perf_counter() - began < 0.05


def test_every_answer_is_counted_5xx_included(client: TestClient) -> None:
    sent = [
        ("POST", "/api/v1/judge", "[" * 1000 + "]" * 1000, "400"),   # too deep
        ("POST", "/api/v1/judge", "{", "400"),                         # not JSON
        ("POST", "/api/v1/judge", json.dumps({"rollout": "r"}), "422"),
        ("POST", "/api/v1/judge", json.dumps({**JUDGE, "start": 1.7e9, "end": 1.7e9 + 600}),
         "503"),                                                       # Prometheus down
        ("GET", "/api/v1/boom", None, "500"),                          # an escaped bug
        ("GET", "/api/v1/boom", None, "500"),
        ("GET", "/no/such/path", None, "404"),
        ("DELETE", "/api/v1/judge", None, "405"),
        ("GET", "/healthz", None, "200"),
    ]
    for method, path, content, status in sent:
        answer = client.request(method, path, content=content,
                                headers={"Content-Type": "application/json"})
        assert str(answer.status_code) == status, (path, answer.text)
        assert "error" in answer.json() or status == "200"
    counts = counted(client)
    assert counts[("/api/v1/boom", "GET", "500")] == 2
    assert counts[("/api/v1/judge", "POST", "503")] == 1
    assert counts[("/api/v1/judge", "POST", "400")] == 2
    assert counts[("unmatched", "GET", "404")] == 1
    # Nothing lost and nothing counted twice: one count per request sent.
    assert sum(counts.values()) == len(sent)
