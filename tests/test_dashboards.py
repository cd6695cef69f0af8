"""The Grafana dashboards, the Kustomize component that ships them, and the PNG preview.

Structure is checked offline (there is no Grafana to load them into, see research §3.2);
the PromQL is checked twice: syntax with ``promtool check rules``, and meaning by running every
panel query against a real Prometheus that scrapes a real ``canary-analyzer serve`` (1 s
scrapes) and also holds backfilled Istio series of the error-regression example canary. A
query that parses but returns nothing (a typo in a label, a metric that was renamed) fails
there, which is the mistake dashboards usually ship with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from promfixture import create_blocks, free_port, istio_series, tools_missing, traffic_from_dataset

from analyzer.config import default_config
from analyzer.metrics.dataset import read_dataset
from analyzer.preview import add_preview_parser, load_detail, render

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
COMPONENT = ROOT / "deploy" / "components" / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

NS, ROLLOUT = "shop", "checkout"
VALUES = {"namespace": NS, "rollout": ROLLOUT, "canary_service": f"{ROLLOUT}-canary",
          "stable_service": f"{ROLLOUT}-stable", "weight": "5", "__rate_interval": "1m",
          "__range": "2m",
          "analyzer_url": "http://127.0.0.1"}
ISTIO_METRICS = {
    "istio_requests_total", "istio_request_duration_milliseconds_bucket",
    "istio_request_duration_milliseconds_sum", "istio_request_duration_milliseconds_count",
    "istio_request_bytes_bucket", "istio_request_bytes_sum", "istio_request_bytes_count",
    "istio_response_bytes_bucket", "istio_response_bytes_sum", "istio_response_bytes_count",
    "istio_request_messages_total", "istio_response_messages_total",
    "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
    "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total", "istio_build"}
METRIC_NAME = re.compile(r"\b((?:canary_analyzer|istio)_[a-zA-Z0-9_]+)")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\)$", re.S)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def substitute(text: str) -> str:
    """Template variables replaced by the concrete values of the test data."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: VALUES[m.group(1) or m.group(2)], text)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return out


@dataclass(frozen=True)
class Query:
    where: str
    expr: str  # as written, with template variables


def queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every PromQL expression: panel targets, annotations, query-variable selectors."""
    out = [Query(f"{dashboard['uid']} panel {p['id']} {p['title']!r} {t['refId']}", t["expr"])
           for p in panels(dashboard) for t in p.get("targets", [])]
    out += [Query(f"{dashboard['uid']} annotation {a['name']!r}", a["expr"])
            for a in dashboard["annotations"]["list"] if "expr" in a]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            found = LABEL_VALUES.match(var["query"]["query"])
            assert found, f"{var['name']}: only label_values(selector, label) is expected"
            out.append(Query(f"{dashboard['uid']} variable {var['name']}", found.group(1)))
    return out


ALL = {path.name: load(path) for path in FILES}


def test_dashboards_exist() -> None:
    assert set(ALL) == {"canary-analysis.json", "canary-analyzer-service.json"}


@pytest.mark.parametrize("name", sorted(ALL))
def test_structure(name: str) -> None:
    dashboard = ALL[name]
    assert dashboard["schemaVersion"] >= 39
    assert 8 <= len(dashboard["uid"]) <= 40
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    boxes = []
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        boxes.append((panel["id"], grid))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip()
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1:]:
            apart = (ga["x"] + ga["w"] <= gb["x"] or gb["x"] + gb["w"] <= ga["x"]
                     or ga["y"] + ga["h"] <= gb["y"] or gb["y"] + gb["h"] <= ga["y"])
            assert apart, f"panels {a} and {b} overlap"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE


def test_analysis_dashboard_contents() -> None:
    dashboard = ALL["canary-analysis.json"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # No guessing: every variable but where the analyzer runs (its URL, its log stream)
    # comes from what it exported; the sides are the labels of the verdict metrics, the
    # steps their weights.
    assert [v["name"] for v in variables.values() if v["type"] == "textbox"] == [
        "analyzer_url", "log_stream"]
    for name, label in (("namespace", "namespace"), ("rollout", "rollout"),
                        ("canary_service", "canary"), ("stable_service", "stable")):
        query = variables[name]["query"]["query"]
        assert query.startswith("label_values(canary_analyzer_last_verdict"), name
        assert query.endswith(f", {label})"), name
    assert variables["weight"]["query"]["query"].startswith(
        "label_values(canary_analyzer_step_verdict{")
    (step,) = [p for p in panels(dashboard) if p.get("repeat") == "weight"]
    step_exprs = [t["expr"] for t in step["targets"]]
    for name in ("canary_analyzer_step_canary_weight", "canary_analyzer_step_observed_canary_share",
                 "canary_analyzer_step_verdict"):
        (expr,) = [e for e in step_exprs if name + "{" in e]
        assert 'weight="$weight"' in expr
    notes = {a["name"]: a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a}
    # Regions while the last verdict is fail or inconclusive. (Not increase() of the
    # counters: a rollout's first verdict is born at 1, which increase() cannot see.)
    assert sorted(notes) == ["Fail verdicts", "Inconclusive verdicts"]
    assert notes["Fail verdicts"].endswith("} == -1")
    assert notes["Inconclusive verdicts"].endswith("} == 0")
    assert all(e.startswith("canary_analyzer_last_verdict{") for e in notes.values())
    assert variables["analyzer_url"]["query"] == "http://canary-analyzer.canary-analyzer.svc:8080"
    by_type = {p["type"] for p in panels(dashboard)}
    assert {"state-timeline", "timeseries"} <= by_type
    timeline = next(p for p in panels(dashboard) if p["type"] == "state-timeline")
    mapping = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: (v["text"], v["color"]) for k, v in mapping.items()} == {
        "1": ("pass", "green"), "0": ("inconclusive", "yellow"), "-1": ("fail", "red")}
    link = timeline["fieldConfig"]["defaults"]["links"][0]["url"]
    assert link.startswith("${analyzer_url}/api/v1/analyses?namespace=")
    assert any("/api/v1/analyses?" in link["url"] for link in dashboard["links"])
    evalue = next(p for p in panels(dashboard) if "E-value" in p["title"])
    assert evalue["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"
    effect = next(p for p in panels(dashboard) if p["title"].startswith("Effect"))
    # margins and thresholds are series the analyzer exports per metric, drawn dashed, not
    # fixed numbers of one config
    for panel, line in ((effect, "canary_analyzer_metric_allowed_effect"),
                        (evalue, "canary_analyzer_metric_e_value_threshold")):
        assert "thresholds" not in panel["fieldConfig"]["defaults"], panel["title"]
        (target,) = [t for t in panel["targets"] if line in t["expr"]]
        (override,) = [o for o in panel["fieldConfig"]["overrides"]
                       if o["matcher"] == {"id": "byFrameRefID", "options": target["refId"]}]
        style = {p["id"]: p["value"] for p in override["properties"]}["custom.lineStyle"]
        assert style["fill"] == "dash", panel["title"]
        assert "{{metric}}" in target["legendFormat"]
    weight = next(p for p in panels(dashboard) if "weight" in p["title"])
    exprs = " ".join(t["expr"] for t in weight["targets"])
    assert weight["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert "canary_analyzer_canary_weight{" in exprs and "/ 100" in exprs
    assert "canary_analyzer_observed_canary_share{" in exprs and "istio_requests_total" in exprs


def test_service_dashboard_contents() -> None:
    dashboard = ALL["canary-analyzer-service.json"]
    exprs = {t["expr"] for p in panels(dashboard) for t in p.get("targets", [])}
    assert ('sum by (status) (rate(canary_analyzer_http_requests_total{route="/api/v1/judge"}'
            '[$__rate_interval]))') in exprs
    assert "sum(increase(canary_analyzer_sessions_created_total[$__range]))" in exprs
    assert "count(canary_analyzer_last_verdict)" not in exprs  # the old stand-in for sessions


def test_promql_syntax(tmp_path: Path) -> None:
    """``promtool check rules`` parses each expression as a recording rule."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    every = [q for d in ALL.values() for q in queries(d)]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(q.expr)}
        for i, q in enumerate(every)]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_component_copies_are_current() -> None:
    for path in FILES:
        assert (COMPONENT / path.name).read_bytes() == path.read_bytes(), (
            f"{COMPONENT / path.name} is stale: run python dashboards/sync.py")
    run = subprocess.run([sys.executable, str(DASHBOARDS / "sync.py"), "--check"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stderr


def test_provider_file() -> None:
    provider = yaml.safe_load((DASHBOARDS / "provider.yaml").read_text(encoding="utf-8"))
    assert provider["apiVersion"] == 1
    (one,) = provider["providers"]
    assert one["folder"] and one["type"] == "file"
    assert one["options"]["path"] == "/var/lib/grafana/dashboards/canary-analyzer"


def test_kustomize_component(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": "monitoring", "components": [os.path.relpath(COMPONENT, overlay)]}))
    for root in (COMPONENT, overlay):
        run = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True,
                             text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        maps = list(yaml.safe_load_all(run.stdout))
        assert len(maps) == 2
        shipped = {}
        for cm in maps:
            assert cm["kind"] == "ConfigMap"
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert cm["metadata"]["annotations"]["grafana_folder"]
            ((name, text),) = cm["data"].items()
            shipped[name] = text
        assert shipped == {p.name: p.read_text(encoding="utf-8") for p in FILES}
        if root == overlay:
            assert {cm["metadata"]["namespace"] for cm in maps} == {"monitoring"}


def _detail_for_preview() -> dict[str, Any]:
    """A small analysis detail in the API's shape, for testing the renderer alone."""
    evaluations = []
    for k, (verdict, score, effect, e_value) in enumerate(
            [("inconclusive", 100.0, 1.1, 0.9), ("pass", 100.0, 1.4, 5.0),
             ("fail", 0.0, 3.0, 500.0)], start=1):
        metric = {"name": "error-rate", "effect": effect, "interval": [0.0, None],
                  "e_value": e_value, "threshold": 200.0,
                  "reason": "canary/baseline 1.1, allowed 1.2"}
        evaluations.append({
            "at": "2026-01-05T11:00:00Z", "window_end": f"2026-01-05T10:0{k}:00Z",
            "verdict": verdict, "score": score, "final": False,
            "response": {"verdict": verdict, "score": score, "metrics": [metric],
                         "traffic": {"canary_weight": 10, "observed_canary_share": 0.09}}})
    return {"id": "a1", "namespace": NS, "rollout": ROLLOUT, "config": "inline:x",
            "start": "2026-01-05T10:00:00Z", "evaluations": evaluations}


def test_preview_from_file(tmp_path: Path) -> None:
    source = tmp_path / "detail.json"
    source.write_text(json.dumps(_detail_for_preview()), encoding="utf-8")
    out = render(load_detail(file=source), tmp_path / "out.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import argparse

    parser = argparse.ArgumentParser()
    add_preview_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["preview", "--file", str(source), "-o", str(tmp_path / "c.png")])
    assert args.func(args) == 0 and (tmp_path / "c.png").stat().st_size > 10_000
    with pytest.raises(SystemExit):
        parser.parse_args(["preview", "-o", "x.png"])
    with pytest.raises(ValueError, match="no evaluations"):
        render({**_detail_for_preview(), "evaluations": []}, tmp_path / "none.png")


def test_preview_image_is_small() -> None:
    image = ROOT / "docs" / "img" / "canary-preview.png"
    assert image.read_bytes()[:4] == b"\x89PNG"
    assert image.stat().st_size < 200_000


# --- the real check: every query returns data -------------------------------------------------


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read()


def _wait(predicate: Any, what: str, timeout: float, process: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@dataclass
class Stack:
    prometheus: str
    analyzer: str
    data_start: float
    pass_at: float
    fail_at: float
    metrics_text: str


def _query(prometheus: str, expr: str, start: float, end: float, step: float
           ) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    answer = json.loads(_get(f"{prometheus}/api/v1/query_range?{params}", timeout=10))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Prometheus holding the backfilled Istio series of error-regression and scraping a
    ``canary-analyzer serve`` subprocess every second; the analyzer judges against it.

    Backfilled blocks go in before Prometheus starts and end months before now, so scraped
    samples (newer) are accepted (research §2.3)."""
    reason = tools_missing()
    if reason is not None:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("dashboards")
    dataset = read_dataset(ROOT / "examples" / "datasets" / "error-regression.json")
    traffic = traffic_from_dataset(dataset, NS, f"{ROLLOUT}-canary", f"{ROLLOUT}-stable")
    blocks = create_blocks(istio_series(traffic), work / "backfill")
    data = work / "data"
    data.mkdir()
    for block in blocks.iterdir():
        shutil.copytree(block, data / block.name)
    prom_port, analyzer_port = free_port(), free_port()
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "canary-analyzer", "static_configs": [
            {"targets": [f"127.0.0.1:{analyzer_port}"]}]}]}), encoding="utf-8")
    processes: list[subprocess.Popen[bytes]] = []
    logs = [(work / "prometheus.log").open("wb"), (work / "serve.log").open("wb")]
    prometheus = f"http://127.0.0.1:{prom_port}"
    analyzer = f"http://127.0.0.1:{analyzer_port}"
    try:
        processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{prom_port}",
             "--storage.tsdb.retention.time=100y", "--log.level=warn"],
            stdout=logs[0], stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1", "--port",
             str(analyzer_port), "--prometheus", prometheus,
             "--database", f"sqlite:///{work / 'serve.db'}"],
            stdout=logs[1], stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        _wait(lambda: bool(_get(f"{analyzer}/readyz", 1)), "analyzer ready", 30,
              processes[1])

        def up() -> bool:
            params = urllib.parse.urlencode({"query": 'up{job="canary-analyzer"} == 1'})
            return bool(json.loads(_get(f"{prometheus}/api/v1/query?{params}"))["data"][
                "result"])

        _wait(up, "up == 1", 20)
        start = dataset.start.timestamp()
        verdicts = []
        # A first step whose weight (20%) is not the split Istio saw (5%) is inconclusive;
        # at 5%, 4 intervals pass, and at 10 the error regression fails.
        for k, weight in ((2, 20), (4, 5), (10, 5)):
            body = {"namespace": NS, "rollout": ROLLOUT, "canary_service": f"{ROLLOUT}-canary",
                    "baseline_service": f"{ROLLOUT}-stable", "start": start,
                    "end": start + k * dataset.interval_seconds, "canary_weight": weight}
            request = urllib.request.Request(
                f"{analyzer}/api/v1/judge", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"})
            verdicts.append(json.loads(_get_request(request))["verdict"])
            time.sleep(2.5)  # two scrapes see this verdict
        assert verdicts == ["inconclusive", "pass", "fail"]

        def failed_seen() -> bool:
            params = urllib.parse.urlencode({"query": "canary_analyzer_last_verdict == -1"})
            return bool(json.loads(_get(f"{prometheus}/api/v1/query?{params}"))["data"][
                "result"])

        _wait(failed_seen, "the fail verdict scraped", 10)
        yield Stack(prometheus, analyzer, start, start + 4 * dataset.interval_seconds,
                    start + 8 * dataset.interval_seconds,
                    _get(f"{analyzer}/metrics").decode())
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def _get_request(request: urllib.request.Request) -> bytes:
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


def _samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in an exposition text."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name):]] = float(value)
    return out


def test_dashboard_gauges_have_values(stack: Stack) -> None:
    """The series the new panels draw hold real values after the pass and fail calls: the
    weight sent, the share the split check saw, each metric's margin and threshold, judge
    answers by status and the one session created."""
    text = stack.metrics_text
    rollout = f'namespace="{NS}",rollout="{ROLLOUT}"'
    weight = _samples(text, "canary_analyzer_canary_weight")
    assert weight == {f"{{{rollout}}}": 5.0}
    (share,) = _samples(text, "canary_analyzer_observed_canary_share").values()
    assert 0.0 < share < 1.0
    allowed = _samples(text, "canary_analyzer_metric_allowed_effect")
    thresholds = _samples(text, "canary_analyzer_metric_e_value_threshold")
    assert allowed and set(allowed) == set(thresholds)
    assert list(thresholds.values()) == pytest.approx([200.0] * len(thresholds))
    # Both default metrics judge increases: the exported margin is their allowed_increase.
    expected = sorted(m.allowed_increase for m in default_config().metrics)
    assert sorted(allowed.values()) == pytest.approx(expected)
    calls = _samples(text, "canary_analyzer_http_requests_total")
    judged = {labels: n for labels, n in calls.items() if 'route="/api/v1/judge"' in labels}
    assert sum(judged.values()) == 3 and all('status="200"' in k for k in judged)
    assert _samples(text, "canary_analyzer_sessions_created_total") == {"": 1.0}


def _label_values(prometheus: str, selector: str, label: str) -> list[str]:
    """What Grafana's ``label_values(selector, label)`` lists: the label's values on the
    series matching the selector (the series API, over the last minutes)."""
    now = time.time()
    params = urllib.parse.urlencode({"match[]": selector, "start": now - 300, "end": now})
    answer = json.loads(_get(f"{prometheus}/api/v1/series?{params}"))
    return sorted({s[label] for s in answer["data"] if label in s})


def test_variables_resolve_from_the_scraped_analyzer(stack: Stack) -> None:
    """Each query variable in dashboard order, the earlier ones substituted by what they
    resolved to (the first value), as Grafana chains them: the Services and steps come out
    of what Prometheus scraped from ``serve``, not from a default to edit."""
    dashboard = ALL["canary-analysis.json"]
    resolved: dict[str, str] = {}
    found = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = LABEL_VALUES.match(var["query"]["query"])
        assert match is not None
        selector = re.sub(r"\$(\w+)", lambda m: resolved[m.group(1)], match.group(1))
        label = var["query"]["query"].rsplit(",", 1)[1].strip(" )")
        found[var["name"]] = _label_values(stack.prometheus, selector, label)
        assert found[var["name"]], f"{var['name']}: {selector} lists no {label}"
        resolved[var["name"]] = found[var["name"]][0]
    assert found == {"namespace": [NS], "rollout": [ROLLOUT],
                     "canary_service": [f"{ROLLOUT}-canary"],
                     "stable_service": [f"{ROLLOUT}-stable"], "weight": ["20", "5"]}


def test_metric_names_exist(stack: Stack) -> None:
    exported = {line.split("{")[0].split(" ")[0] for line in stack.metrics_text.splitlines()
                if line and not line.startswith("#")}
    for dashboard in ALL.values():
        for query in queries(dashboard):
            for name in METRIC_NAME.findall(query.expr):
                assert name in exported or name in ISTIO_METRICS, f"{query.where}: {name}"


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_query_returns_data(stack: Stack, name: str) -> None:
    """Analyzer queries over the last two minutes (what was scraped); Istio queries over the
    time of the backfilled data. A query mixing both would be ambiguous and is not allowed."""
    empty = []
    for query in queries(ALL[name]):
        expr = substitute(query.expr)
        names = set(METRIC_NAME.findall(expr))
        istio = {n for n in names if n.startswith("istio_")}
        assert not istio or istio == names, f"{query.where} mixes Istio and analyzer metrics"
        if istio:
            result = _query(stack.prometheus, expr, stack.data_start + 60, stack.fail_at, 30)
        else:
            now = time.time()
            result = _query(stack.prometheus, expr, now - 120, now, 1)
        if not result:
            empty.append(f"{query.where}: {expr}")
        elif "by (destination_service_name" in expr:  # canary beside baseline
            services = {r["metric"]["destination_service_name"] for r in result}
            assert services == {VALUES["canary_service"], VALUES["stable_service"]}, query.where
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_preview_from_url(stack: Stack, tmp_path: Path) -> None:
    listing = json.loads(_get(f"{stack.analyzer}/api/v1/analyses?rollout={ROLLOUT}"))
    (analysis,) = listing["analyses"]
    detail = load_detail(url=f"{stack.analyzer}/api/v1/analyses/{analysis['id']}")
    assert [e["verdict"] for e in detail["evaluations"]] == ["inconclusive", "pass", "fail"]
    now = time.time()
    history = _query(stack.prometheus, "canary_analyzer_last_verdict", now - 120, now, 1)
    assert {float(v) for r in history for _, v in r["values"]} == {0.0, 1.0, -1.0}
    out = render(detail, tmp_path / "preview.png")
    assert out.stat().st_size > 10_000
