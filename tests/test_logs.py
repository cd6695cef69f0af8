"""Structured logs (issue 14): one JSON line per judge call and per failed call, on stdout,
with the fields a log platform indexes; plain text with ``--log-format text``."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promfixture import (
    ManagedProcess,
    PrometheusServer,
    free_port,
    istio_series,
    traffic_from_dataset,
)

from analyzer.api.app import Settings, create_app
from analyzer.logs import JsonFormatter, TextFormatter, configure_logging
from analyzer.metrics.dataset import Dataset, read_dataset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
JUDGE_FIELDS = {"event", "namespace", "rollout", "revision", "analysis_id", "verdict", "score",
                "duration_seconds", "prometheus_seconds", "status"}


@pytest.fixture(scope="module")
def healthy() -> Dataset:
    return read_dataset(EXAMPLES / "healthy.json")


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable, healthy: Dataset) -> PrometheusServer:
    return start_prometheus(istio_series(traffic_from_dataset(healthy, NS, "healthy-canary",
                                                              "healthy-stable")))


def body(dataset: Dataset, **extra: Any) -> dict[str, Any]:
    start = dataset.start.timestamp()
    return {"namespace": NS, "rollout": "healthy", "canary_service": "healthy-canary",
            "baseline_service": "healthy-stable", "start": start, "end": start + 600,
            "canary_weight": 5, **extra}


@pytest.fixture
def judge_log() -> Iterator[io.StringIO]:
    """The judge logger's records as JSON lines (only this logger; the process's logging
    configuration is left alone)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("analyzer.judge")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_line_per_call_with_the_fields(prometheus: PrometheusServer, healthy: Dataset,
                                           judge_log: io.StringIO, tmp_path: Path) -> None:
    settings = Settings(prometheus_url=prometheus.url, database_url=str(tmp_path / "a.db"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        verdict = client.post("/api/v1/judge", json=body(healthy)).json()
        client.get("/api/v1/judge", params={"namespace": NS, "rollout": "r"})  # 422
        client.post("/api/v1/judge", content="[" * 1000,
                    headers={"Content-Type": "application/json"})               # 400
        client.get("/healthz")                                                   # not logged
    first, missing, deep = lines(judge_log)
    assert set(first) >= JUDGE_FIELDS
    assert (first["level"], first["logger"], first["event"]) == ("info", "analyzer.judge",
                                                                 "judge")
    assert (first["namespace"], first["rollout"], first["status"]) == (NS, "healthy", 200)
    assert first["verdict"] == verdict["verdict"] == "pass"
    assert first["score"] == verdict["score"]
    assert first["analysis_id"] == verdict["analysis_id"]
    assert 0 < first["prometheus_seconds"] <= first["duration_seconds"] < 30
    assert (missing["level"], missing["status"], missing["field"]) == ("warning", 422,
                                                                       "canary")
    assert (missing["namespace"], missing["rollout"]) == (NS, "r")
    assert (deep["status"], deep["field"], deep["namespace"]) == (400, "body", None)


def test_prometheus_down_is_an_error_line(healthy: Dataset, judge_log: io.StringIO,
                                          tmp_path: Path) -> None:
    settings = Settings(prometheus_url=f"http://127.0.0.1:{free_port()}",
                        database_url=str(tmp_path / "a.db"))
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/judge", json=body(healthy)).status_code == 503
    (line,) = lines(judge_log)
    assert set(line) >= JUDGE_FIELDS
    assert (line["level"], line["status"], line["verdict"], line["score"]) == (
        "error", 503, None, None)
    assert line["error"].startswith("prometheus unavailable")
    assert line["prometheus_seconds"] > 0


def test_formatters_keep_one_record_on_one_line() -> None:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("a\nb",),
                                   sys.exc_info())
    record.fields = {"rollout": 'checkout"\n', "score": 1.5}
    text = JsonFormatter().format(record)
    assert "\n" not in text
    parsed = json.loads(text)
    assert parsed["message"] == "boom a\nb" and parsed["rollout"] == 'checkout"\n'
    assert "ValueError: first" in parsed["exception"]
    assert "rollout='checkout\"\\n' score=1.5" in TextFormatter().format(record)
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure_logging("xml")  # type: ignore[arg-type]


def test_serve_writes_json_lines_to_stdout(prometheus: PrometheusServer, healthy: Dataset,
                                           tmp_path: Path) -> None:
    port = free_port()
    stdout = tmp_path / "serve.out"
    with ManagedProcess([sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
                         "--port", str(port), "--prometheus", prometheus.url,
                         "--database", str(tmp_path / "serve.db")],
                        url=f"http://127.0.0.1:{port}", ready_path="/healthz",
                        log=stdout) as serve:
        serve.start(timeout=30)
        request = urllib.request.Request(f"{serve.url}/api/v1/judge",
                                         data=json.dumps(body(healthy)).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            analysis_id = json.loads(answer.read())["analysis_id"]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{serve.url}/api/v1/judge?rollout=x", timeout=30)
    records = [json.loads(line) for line in stdout.read_text().splitlines() if line.strip()]
    judged = [r for r in records if r.get("event") == "judge"]
    assert [(r["status"], r.get("analysis_id")) for r in judged] == [(200, analysis_id),
                                                                     (422, None)]
    # uvicorn's own lines (startup, access log) are JSON too.
    assert any(r["logger"] == "uvicorn.access" for r in records)


def test_the_dashboard_links_a_verdict_to_its_log_lines(prometheus: PrometheusServer,
                                                        healthy: Dataset,
                                                        judge_log: io.StringIO,
                                                        tmp_path: Path) -> None:
    """The verdict panel's Loki link filters on fields a real judge call's line has, with
    the values the panel's series carry (namespace and rollout labels of the verdict)."""
    dashboard = json.loads((Path(__file__).resolve().parent.parent / "dashboards" /
                            "canary-analysis.json").read_text())
    panel = next(p for p in dashboard["panels"] if p.get("title") == "Verdict history")
    link = next(x for x in panel["fieldConfig"]["defaults"]["links"] if "Loki" in x["title"])
    expr = json.loads(link["url"].split("panes=", 1)[1])["logs"]["queries"][0]["expr"]
    filters = dict(re.findall(r'\| (\w+)="([^"]*)"', expr))
    assert set(filters) == {"event", "namespace", "rollout"}
    settings = Settings(prometheus_url=prometheus.url, database_url=str(tmp_path / "a.db"))
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/judge", json=body(healthy)).status_code == 200
    (line,) = lines(judge_log)
    labels = {"${__field.labels.namespace}": NS, "${__field.labels.rollout}": "healthy"}
    for key, value in filters.items():
        assert line[key] == labels.get(value, value), key
    assert "| json |" in expr and expr.startswith("${log_stream}")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"DS_LOKI", "log_stream"} <= variables
