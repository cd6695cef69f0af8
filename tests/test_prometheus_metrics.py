"""Prometheus access, Istio queries and counter increments, against a real Prometheus.

Every scenario lives in its own namespace of one backfilled server; expected arrays are
computed from the per-interval counts that were written, so each test compares exact counts.
"""

from __future__ import annotations

import http.server
import json
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from promfixture import (
    START,
    IstioSide,
    IstioTraffic,
    PrometheusServer,
    Series,
    istio_series,
    shares,
    traffic_from_dataset,
)

from analyzer.config import ConfigError
from analyzer.config.models import MetricConfig
from analyzer.judge.series import GaugeSeries, HistogramSeries, RatioSeries
from analyzer.metrics.counters import increments
from analyzer.metrics.dataset import Dataset
from analyzer.metrics.istio import (
    ISTIO_BUCKETS,
    SelectorError,
    SideSelectors,
    WindowData,
    fetch_window,
)
from analyzer.metrics.prometheus import PrometheusClient, PrometheusUnavailable
from analyzer.metrics.promql import Selector, any_of, label_name

STEP = 30.0
HISTORY = 4  # intervals written before the window starts: their counts are baseline only
WINDOW = 26
TOTAL = HISTORY + WINDOW
WINDOW_START = datetime.fromtimestamp(START + HISTORY * STEP, tz=UTC)
# 10 s past the last interval end: the trailing partial interval must be dropped.
WINDOW_END = datetime.fromtimestamp(START + TOTAL * STEP + 10, tz=UTC)
BUCKETS = len(ISTIO_BUCKETS)

ERRORS = MetricConfig(name="error-rate", kind="istio-error-rate")
LATENCY = MetricConfig(name="latency", kind="istio-latency")
BUILTIN = (ERRORS, LATENCY)
HOSTILE = 'x"} or vector(1) #'
HOSTILE_REGEX = "a.b\\c\nd"  # regex metacharacter, backslash and newline


def _latency(seed: int, scale: float) -> list[list[int]]:
    """Per-interval bucket counts, mostly 10–250 ms with a sparse slow tail."""
    rng = np.random.default_rng(seed)
    means = np.zeros(BUCKETS)
    means[2:8] = [1, 4, 9, 6, 3, 1]
    means[9] = 0.2
    return rng.poisson(means * scale, size=(TOTAL, BUCKETS)).tolist()


def _traffic() -> dict[str, IstioTraffic]:
    rng = np.random.default_rng(7)
    late = [0] * (HISTORY + 9) + rng.poisson(3, WINDOW - 9).tolist()  # first 503s inside
    shop = IstioTraffic(
        namespace="shop",
        canary=IstioSide("checkout-canary",
                         {"200": rng.poisson(40, TOTAL).tolist(), "503": late,
                          "0": [0, 1] + [0] * (TOTAL - 4) + [2, 0],
                          "404": rng.poisson(1, TOTAL).tolist()},
                         _latency(1, 1.0)),
        baseline=IstioSide("checkout-stable",
                           {"200": rng.poisson(400, TOTAL).tolist(),
                            "500": rng.poisson(2, TOTAL).tolist()},
                           _latency(2, 10.0)))
    steady = {"200": [30 + k % 5 for k in range(TOTAL)], "503": [2 + k % 3 for k in range(TOTAL)]}
    sparse = _latency(3, 1.0)  # le=0.5: 1 before the reset, 1 (of 2) after: no visible drop
    for k, row in enumerate(sparse):
        row[0] = {1: 1, HISTORY + 2: 2}.get(k, 0)
    disrupted = IstioTraffic(
        namespace="disrupt",
        canary=IstioSide("cart-canary", steady, sparse),
        baseline=IstioSide("cart-stable", steady, _latency(4, 1.0)),
        resets=frozenset({HISTORY + 2}), replacements=frozenset({HISTORY + 6}),
        # a short gap (inside the 5 min lookback) and a long one (beyond it)
        gaps=frozenset({HISTORY + 9, HISTORY + 10, *range(HISTORY + 12, HISTORY + 24)}))
    small = {"200": [5] * TOTAL, "500": [0, 1] * (TOTAL // 2)}
    le = _latency(5, 0.5)

    def pair(namespace: str, canary: IstioSide, baseline: IstioSide, **kw: Any) -> IstioTraffic:
        return IstioTraffic(namespace=namespace, canary=canary, baseline=baseline, **kw)

    return {
        "shop": shop,
        "disrupt": disrupted,
        "le-envoy": pair("le-envoy", IstioSide("le1-canary", small, le),
                         IstioSide("le1-stable", small, le), le_style="envoy"),
        "le-float": pair("le-float", IstioSide("le2-canary", small, le),
                         IstioSide("le2-stable", small, le), le_style="float"),
        "revisions": pair("revisions",
                          IstioSide("reviews", small, le, {"destination_canonical_revision": "v2"}),
                          IstioSide("reviews", {"200": [9] * TOTAL}, le,
                                    {"destination_canonical_revision": "v1"})),
        "hostile": pair("hostile", IstioSide(HOSTILE, small), IstioSide(HOSTILE_REGEX, small)),
        # decoys in the same namespace that an unescaped regex would also match
        "decoy": pair("hostile", IstioSide("aXb\\c\nd", {"200": [1000] * TOTAL}),
                      IstioSide("x", {"200": [1000] * TOTAL})),
    }


def _gauges() -> list[Series]:
    """``app_queue_depth`` per side, sampled 1 s before each interval end (canary 1.5·k)."""
    out = []
    for service, factor in (("checkout-canary", 1.5), ("checkout-stable", 1.0)):
        samples = [(START + (k + 1) * STEP - 1, factor * k) for k in range(TOTAL)]
        out.append(Series("app_queue_depth", {"destination_service_name": service}, samples))
    return out


def _dataset() -> Dataset:
    rng = np.random.default_rng(11)
    den = {s: rng.poisson(m, TOTAL) for s, m in (("canary", 50), ("baseline", 500))}
    num = {s: rng.binomial(den[s], 0.02) for s in den}
    rows = {s: np.asarray(_latency(20 + i, 3.0)) for i, s in enumerate(den)}
    metrics = {
        "error-rate": RatioSeries(num["canary"], den["canary"], num["baseline"], den["baseline"]),
        "latency": HistogramSeries(np.asarray(ISTIO_BUCKETS), rows["canary"], rows["baseline"]),
    }
    return Dataset(name="replay", interval_seconds=STEP,
                   start=datetime.fromtimestamp(START, tz=UTC),
                   timestamps=np.arange(1, TOTAL + 1) * STEP, metrics=metrics)


TRAFFIC = _traffic()
DATASET = _dataset()


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Any) -> PrometheusServer:
    series = [s for traffic in TRAFFIC.values() for s in istio_series(traffic)]
    series += istio_series(traffic_from_dataset(DATASET, "replay", "cat-canary", "cat-stable"))
    return start_prometheus(series + _gauges())


@pytest.fixture
def client(prometheus: PrometheusServer) -> Iterator[PrometheusClient]:
    client = PrometheusClient(prometheus.url)
    yield client
    client.close()


def _sides(namespace: str, canary: Mapping[str, str], baseline: Mapping[str, str]
           ) -> SideSelectors:
    return SideSelectors(namespace=namespace, canary=dict(canary), baseline=dict(baseline))


def _services(traffic: IstioTraffic) -> SideSelectors:
    return _sides(traffic.namespace, {"destination_service_name": traffic.canary.service},
                  {"destination_service_name": traffic.baseline.service})


def _fetch(client: PrometheusClient, sides: SideSelectors,
           metrics: Sequence[MetricConfig] = BUILTIN) -> WindowData:
    return fetch_window(client, metrics, sides, WINDOW_START, WINDOW_END, STEP)


def _arrays(series: Any) -> dict[str, list[Any]]:
    """Every per-interval array of a metric series, as lists (for exact comparison)."""
    fields = ("canary_num", "canary_den", "baseline_num", "baseline_den", "canary", "baseline")
    return {f: getattr(series, f).tolist() for f in fields if hasattr(series, f)}


def _requests(side: IstioSide, codes: str = "5..|0") -> tuple[np.ndarray, np.ndarray]:
    """Expected (errors, requests) in the window, as written."""
    den = sum(np.asarray(c) for c in side.requests.values())
    num = sum((np.asarray(c) for code, c in side.requests.items() if re.fullmatch(codes, code)),
              np.zeros(TOTAL, dtype=np.int64))
    return num[HISTORY:], den[HISTORY:]


def test_builtin_metrics_return_the_exact_counts_written(client: PrometheusClient) -> None:
    traffic = TRAFFIC["shop"]
    window = _fetch(client, _services(traffic))
    assert window.timestamps.tolist() == [STEP * k for k in range(1, WINDOW + 1)]
    ratio = window.series["error-rate"]
    assert isinstance(ratio, RatioSeries)
    for side, num, den in (("canary", ratio.canary_num, ratio.canary_den),
                           ("baseline", ratio.baseline_num, ratio.baseline_den)):
        expected_num, expected_den = _requests(getattr(traffic, side))
        assert den.tolist() == expected_den.tolist(), side
        assert num.tolist() == expected_num.tolist(), side
        assert num.dtype == np.int64
    latency = window.series["latency"]
    assert isinstance(latency, HistogramSeries)
    assert latency.le.tolist() == list(ISTIO_BUCKETS)
    assert latency.canary.tolist() == traffic.canary.latency[HISTORY:]
    assert latency.baseline.tolist() == traffic.baseline.latency[HISTORY:]


def test_late_series_counts_from_zero_and_history_is_only_a_baseline(
        client: PrometheusClient) -> None:
    traffic = TRAFFIC["shop"]
    first_503 = next(k for k, c in enumerate(traffic.canary.requests["503"]) if c)
    assert first_503 > HISTORY  # the 503 series is created inside the window
    ratio = _fetch(client, _services(traffic), [ERRORS]).series["error-rate"]
    assert isinstance(ratio, RatioSeries)
    late = np.asarray(traffic.canary.requests["503"][HISTORY:])
    zero = np.asarray(traffic.canary.requests["0"][HISTORY:])
    assert ratio.canary_num.tolist() == (late + zero).tolist()
    # the "0" responses before the window (interval 1) are not counted
    assert traffic.canary.requests["0"][1] == 1 and ratio.canary_num.sum() == late.sum() + 2


def _with_gaps(per_interval: np.ndarray, gaps: frozenset[int]) -> np.ndarray:
    """What a gap does: the counts of missed scrapes arrive with the next scrape."""
    out, carried = per_interval.copy(), 0
    for k in range(len(out)):
        if k in gaps:
            carried += out[k]
            out[k] = 0
        else:
            out[k] += carried
            carried = 0
    return out


def test_resets_pod_replacements_and_gaps_keep_exact_totals(client: PrometheusClient) -> None:
    traffic = TRAFFIC["disrupt"]
    window = _fetch(client, _services(traffic))
    ratio, latency = window.series["error-rate"], window.series["latency"]
    assert isinstance(ratio, RatioSeries) and isinstance(latency, HistogramSeries)
    for side, den, num, rows in (
            ("canary", ratio.canary_den, ratio.canary_num, latency.canary),
            ("baseline", ratio.baseline_den, ratio.baseline_num, latency.baseline)):
        written = getattr(traffic, side)
        for code, got in (("200", den - num), ("503", num)):
            counts = np.asarray(written.requests[code])
            first = np.asarray([shares(c)[0] for c in counts])  # the disrupted workload
            expected = _with_gaps(first, traffic.gaps) + (counts - first)
            assert got.tolist() == expected[HISTORY:].tolist(), (side, code)
            assert got.sum() == counts[HISTORY:].sum()
        matrix = np.asarray(written.latency)
        first = matrix - matrix // 2
        expected = np.vstack([_with_gaps(first[:, b], traffic.gaps) for b in range(BUCKETS)]).T
        expected += matrix // 2
        assert rows.tolist() == expected[HISTORY:].tolist(), side
        assert rows.sum(axis=0).tolist() == matrix[HISTORY:].sum(axis=0).tolist()


@pytest.mark.parametrize("namespace", ["le-envoy", "le-float"])
def test_le_written_as_1_or_1_0_decodes_to_the_same_buckets(
        client: PrometheusClient, namespace: str) -> None:
    traffic = TRAFFIC[namespace]
    raw = client.query_range(
        f'istio_request_duration_milliseconds_bucket{{destination_service_name='
        f'"{traffic.canary.service}",le=~"1|1\\\\.0"}}', WINDOW_START, WINDOW_END, STEP)
    assert {s["metric"]["le"] for s in raw} == {"1" if namespace == "le-envoy" else "1.0"}
    latency = _fetch(client, _services(traffic), [LATENCY]).series["latency"]
    assert isinstance(latency, HistogramSeries)
    assert latency.le.tolist() == list(ISTIO_BUCKETS)
    assert latency.canary.tolist() == traffic.canary.latency[HISTORY:]
    assert latency.baseline.tolist() == traffic.baseline.latency[HISTORY:]


def test_dataset_round_trips_through_prometheus(client: PrometheusClient) -> None:
    window = _fetch(client, _sides("replay", {"destination_service_name": "cat-canary"},
                                   {"destination_service_name": "cat-stable"}))
    for name in ("error-rate", "latency"):
        written = {k: v[HISTORY:] for k, v in _arrays(DATASET.metrics[name]).items()}
        assert _arrays(window.series[name]) == written, name


def test_a_service_without_traffic_gives_zero_counts_and_nan_gauges(
        client: PrometheusClient) -> None:
    gauge = MetricConfig(name="queue", query="max(app_queue_depth{ {selector} })",
                         test="mann-whitney")
    window = _fetch(client, _sides("ghost", {"destination_service_name": "nobody-canary"},
                                   {"destination_service_name": "nobody-stable"}),
                    [ERRORS, LATENCY, gauge])
    ratio, latency, queue = (window.series[n] for n in ("error-rate", "latency", "queue"))
    assert isinstance(ratio, RatioSeries) and isinstance(latency, HistogramSeries)
    assert isinstance(queue, GaugeSeries)
    for array in (ratio.canary_num, ratio.canary_den, ratio.baseline_num, ratio.baseline_den):
        assert array.tolist() == [0] * WINDOW
    assert latency.canary.shape == (WINDOW, BUCKETS) and not latency.canary.any()
    assert not latency.baseline.any()
    assert np.isnan(queue.canary).all() and np.isnan(queue.baseline).all()
    assert len(window.queries) == 4


def test_one_query_per_builtin_metric_covers_both_sides(client: PrometheusClient) -> None:
    window = _fetch(client, _services(TRAFFIC["shop"]))
    assert len(window.queries) == 2
    assert window.metric_queries == {"error-rate": [window.queries[0]],
                                     "latency": [window.queries[1]]}
    assert window.queries[0] == (
        'istio_requests_total{destination_service_namespace="shop",reporter="source",'
        'destination_service_name=~"checkout-canary|checkout-stable"}')
    assert window.queries[1].startswith("istio_request_duration_milliseconds_bucket{")
    assert client.queries[-2:] == window.queries


def test_sides_differing_in_another_label_use_one_query(client: PrometheusClient) -> None:
    traffic = TRAFFIC["revisions"]
    one = _sides("revisions",
                 {"destination_service_name": "reviews", "destination_canonical_revision": "v2"},
                 {"destination_service_name": "reviews", "destination_canonical_revision": "v1"})
    window = _fetch(client, one, [ERRORS])
    assert len(window.queries) == 1
    assert 'destination_canonical_revision=~"v1|v2"' in window.queries[0]
    ratio = window.series["error-rate"]
    assert isinstance(ratio, RatioSeries)
    assert ratio.canary_den.tolist() == _requests(traffic.canary)[1].tolist()
    assert ratio.baseline_den.tolist() == _requests(traffic.baseline)[1].tolist()
    # different label sets cannot share one =~ query: one query per side, same answer
    two = _sides("revisions", {"destination_canonical_revision": "v2"},
                 {"destination_service_name": "reviews", "destination_canonical_revision": "v1"})
    fallback = _fetch(client, two, [ERRORS])
    assert len(fallback.queries) == 2
    assert _arrays(fallback.series["error-rate"]) == _arrays(ratio)


def test_promql_metrics_substitute_each_side_selector(client: PrometheusClient) -> None:
    traffic = TRAFFIC["shop"]
    sides = _services(traffic)
    gauge = MetricConfig(name="queue", query="max(app_queue_depth{ {selector} })",
                         test="mann-whitney")
    ratio = MetricConfig(name="errors", numerator='istio_requests_total{ {selector}, '
                                                  'response_code=~"5..|0" }',
                         denominator="istio_requests_total{ {selector} }")
    histogram = MetricConfig(name="slow", type="histogram",
                             query="istio_request_duration_milliseconds_bucket{ {selector} }")
    window = _fetch(client, sides, [gauge, ratio, histogram, ERRORS, LATENCY])
    assert window.metric_queries["queue"] == [
        'max(app_queue_depth{ destination_service_name="checkout-canary" })',
        'max(app_queue_depth{ destination_service_name="checkout-stable" })']
    assert len(window.metric_queries["errors"]) == 4
    queue = window.series["queue"]
    assert isinstance(queue, GaugeSeries)
    ends = np.arange(HISTORY, TOTAL)  # the gauge sample of interval k is k·factor
    assert queue.canary.tolist() == (1.5 * ends).tolist()
    assert queue.baseline.tolist() == ends.astype(float).tolist()
    assert _arrays(window.series["errors"]) == _arrays(window.series["error-rate"])
    assert _arrays(window.series["slow"]) == _arrays(window.series["latency"])


def test_a_gauge_query_returning_many_series_is_an_error(client: PrometheusClient) -> None:
    many = MetricConfig(name="raw", query="istio_requests_total{ {selector} }",
                        test="mann-whitney")
    with pytest.raises(ConfigError, match=r"raw: canary query returned \d+ series"):
        _fetch(client, _services(TRAFFIC["shop"]), [many])


def test_hostile_label_values_are_matched_literally(client: PrometheusClient) -> None:
    def run(selector: str) -> list[dict[str, Any]]:
        return client.query_range(f"istio_requests_total{{{selector}}}", WINDOW_START,
                                  WINDOW_END, STEP)

    found = run(Selector({"destination_service_name": HOSTILE}).render())
    assert found and {s["metric"]["destination_service_name"] for s in found} == {HOSTILE}
    # executed as PromQL, "or vector(1)" would return a series
    assert run(Selector({"destination_service_name": 'zz"} or vector(1) #'}).render()) == []
    assert run(Selector({"destination_service_name": "\\"}).render()) == []
    found = run(any_of("destination_service_name", [HOSTILE_REGEX]))
    assert {s["metric"]["destination_service_name"] for s in found} == {HOSTILE_REGEX}
    assert run(any_of("destination_service_name", [".*"])) == []

    traffic = TRAFFIC["hostile"]
    window = _fetch(client, _services(traffic), [ERRORS])
    assert len(window.queries) == 1
    ratio = window.series["error-rate"]
    assert isinstance(ratio, RatioSeries)
    assert ratio.canary_den.tolist() == _requests(traffic.canary)[1].tolist()
    assert ratio.baseline_den.tolist() == _requests(traffic.baseline)[1].tolist()
    everything = _fetch(client, _sides("hostile", {"destination_service_name": ".*"},
                                       {"destination_service_name": "x.*"}), [ERRORS])
    ratio = everything.series["error-rate"]
    assert isinstance(ratio, RatioSeries)
    assert not ratio.canary_den.any() and not ratio.baseline_den.any()


def test_selector_renders_sorted_escaped_literals() -> None:
    selector = Selector({"b": 'x"} or vector(1) #', "a": "back\\slash\nline"})
    assert selector.render() == 'a="back\\\\slash\\nline",b="x\\"} or vector(1) #"'
    assert list(selector) == ["a", "b"] and selector == {"a": "back\\slash\nline",
                                                         "b": 'x"} or vector(1) #'}
    assert hash(selector) == hash(Selector(dict(selector)))
    assert any_of("svc", ["b.c", "a|b"]) == 'svc=~"a\\\\|b|b\\\\.c"'


@pytest.mark.parametrize("name", ["bad-name", "1abc", "", "a b", 'a"', "__name__", "__x"])
def test_bad_label_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"label {name!r}"):
        label_name(name)
    with pytest.raises(ValueError, match=f"label {name!r}"):
        Selector({name: "v"})
    with pytest.raises(SelectorError, match=f"label {name!r}"):
        _sides("shop", {name: "v"}, {"destination_service_name": "b"})


@pytest.mark.parametrize("value", ["nul\x00", "tab\t", "cr\r", "bell\x07", "del\x7f", ""])
def test_control_characters_and_empty_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="label 'svc'"):
        Selector({"svc": value})


def test_side_selectors_are_checked_and_name_the_field() -> None:
    same = {"destination_service_name": "a"}
    cases = [
        (lambda: _sides("shop", same, same), "same series", "baseline"),
        (lambda: _sides("shop", {}, same), "canary: at least one", "canary"),
        (lambda: SideSelectors("shop", same, {"destination_service_name": "b"},
                               reporter="client"), "reporter", "reporter"),
        (lambda: _sides("shop", {**same, "destination_service_namespace": "other"},
                        {"destination_service_name": "b"}), "destination_service_namespace",
         "canary"),
        (lambda: _sides("shop", same, {"bad-label": "b"}), "bad-label", "baseline"),
    ]
    for make, message, field in cases:
        with pytest.raises(SelectorError, match=message) as info:
            make()
        assert info.value.field == field
        assert not isinstance(info.value, ValueError)


def test_counter_increments_handle_resets_gaps_late_series_and_nan() -> None:
    nan = math.nan
    assert increments(np.array([10, 12, nan, nan, 20, 3, 5])).tolist() == [2, 0, 0, 8, 3, 2]
    assert increments(np.array([nan, nan, 3, 4, nan, 6])).tolist() == [0, 3, 1, 0, 2]
    assert increments(np.array([7, 7, 8]), np.array([False, True])).tolist() == [0, 8]


def test_stopped_prometheus_is_unavailable_quickly(start_prometheus: Any) -> None:
    traffic = TRAFFIC["le-envoy"]
    server = start_prometheus(istio_series(traffic))
    client = PrometheusClient(server.url)
    assert client.ready()
    assert _fetch(client, _services(traffic), [ERRORS]).series["error-rate"].canary_den.any()
    server.stop()
    began = time.monotonic()
    with pytest.raises(PrometheusUnavailable, match="cannot connect"):
        _fetch(client, _services(traffic), [ERRORS])
    assert time.monotonic() - began < 5
    assert not client.ready()


class _FakePrometheus(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, body: bytes, delay: float = 0.0) -> None:
        self.status, self.body, self.delay, self.calls = status, body, delay, 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _FakePrometheus

    def do_GET(self) -> None:
        self.server.calls += 1
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[Any]:
    servers: list[_FakePrometheus] = []

    def start(status: int, body: bytes, delay: float = 0.0) -> _FakePrometheus:
        server = _FakePrometheus(status, body, delay)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _matrix(result: Any) -> bytes:
    return json.dumps({"status": "success",
                       "data": {"resultType": "matrix", "result": result}}).encode()


@pytest.mark.parametrize(("status", "body", "reason"), [
    (200, b"<html>garbage</html>", "not a JSON object"),
    (500, b"internal error", "HTTP 500"),
    (200, b'{"status": "success", "data": {"resultType": "matr', "not a JSON object"),
    (200, b'{"status": "error", "errorType": "internal", "error": "boom"}', "status 'error'"),
    (400, b'{"status": "error", "errorType": "bad_data", "error": "parse error"}',
     "HTTP 400.*bad_data: parse error"),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}
                     ).encode(), "no data.result matrix"),
    (200, _matrix([{"metric": {}, "values": [[1, "x"]]}]), "malformed sample"),
    (200, _matrix([{"metric": {"a": 1}, "values": []}]), "malformed series"),
    (200, b"[1, 2]", "not a JSON object"),
])
def test_broken_answers_raise_prometheus_unavailable(fake: Any, status: int, body: bytes,
                                                     reason: str) -> None:
    server = fake(status, body)
    client = PrometheusClient(f"http://127.0.0.1:{server.server_address[1]}")
    with pytest.raises(PrometheusUnavailable, match=reason):
        client.query_range("up", WINDOW_START, WINDOW_END, STEP)
    assert client.queries == ["up"]


def test_unavailable_is_retried_once_and_timeouts_are_bounded(fake: Any) -> None:
    busy = fake(503, b"busy")
    durations: list[float] = []
    client = PrometheusClient(f"http://127.0.0.1:{busy.server_address[1]}",
                              on_query=durations.append)
    with pytest.raises(PrometheusUnavailable):
        client.query_range("up", WINDOW_START, WINDOW_END, STEP)
    assert busy.calls == 2 and len(durations) == 1
    assert not client.ready()

    slow = fake(200, _matrix([]), delay=2.0)
    client = PrometheusClient(f"http://127.0.0.1:{slow.server_address[1]}", timeout=0.2)
    began = time.monotonic()
    with pytest.raises(PrometheusUnavailable, match=r"no answer within 0\.2 s"):
        client.query_range("up", WINDOW_START, WINDOW_END, STEP)
    assert time.monotonic() - began < 1.9


def test_naive_datetimes_are_refused(client: PrometheusClient) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        client.query_range("up", datetime(2023, 11, 14), WINDOW_END, STEP)


def test_histograms_with_different_buckets_are_merged_on_common_bounds(fake: Any) -> None:
    def bucket(pod: str, le: str, values: list[int]) -> dict[str, Any]:
        return {"metric": {"destination_service_name": "c", "pod": pod, "le": le},
                "values": [[START + 30 * j, str(v)] for j, v in enumerate(values)]}

    server = fake(200, _matrix([
        bucket("a", "1", [0, 2, 3]), bucket("a", "5", [0, 4, 6]), bucket("a", "+Inf", [0, 5, 8]),
        bucket("b", "1.0", [1, 1, 2]), bucket("b", "10", [1, 3, 3]),
        bucket("b", "+Inf", [1, 4, 5])]))
    client = PrometheusClient(f"http://127.0.0.1:{server.server_address[1]}")
    start = datetime.fromtimestamp(START, tz=UTC)
    window = fetch_window(client, [LATENCY], _sides("ns", {"destination_service_name": "c"},
                                                    {"destination_service_name": "b"}),
                          start, datetime.fromtimestamp(START + 60, tz=UTC), 30)
    latency = window.series["latency"]
    assert isinstance(latency, HistogramSeries)
    assert latency.le.tolist() == [1.0, math.inf]
    assert latency.canary.tolist() == [[2, 6], [2, 2]]
    assert latency.baseline.tolist() == [[0, 0], [0, 0]]
