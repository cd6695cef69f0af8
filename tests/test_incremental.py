"""Incremental reads: stored final intervals + a read since the seam == a full read, exactly.

Against a real Prometheus holding Istio-shaped counters with every disruption the counter
code knows (a proxy restart, a pod replacement, a short and a long scrape gap), and a gauge:

- at every seam and for several later window ends, the joined arrays equal a fresh full read
  (so a counter reset exactly at the seam, and a series that is only carried, are exact);
- a late sample for the last stored interval (a second Prometheus that has it) is detected:
  the call reads the whole window, says so in ``notes``, and answers as a full read does;
- two ``Analyzer`` instances sharing one store (replicas), taking turns look by look, give
  the same wire answer as an analyzer without a store at every look, while reading far fewer
  samples than a full read.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from promfixture import START, IstioSide, IstioTraffic, PrometheusServer, Series, istio_series

from analyzer.analysis import Analyzer
from analyzer.config import CanaryConfig, default_config
from analyzer.config.models import MetricConfig
from analyzer.continuation import PERSIST_EVERY
from analyzer.judge.stream import JudgeState
from analyzer.metrics.intervals import join, pack, unpack
from analyzer.metrics.istio import (
    ISTIO_BUCKETS,
    Seam,
    SeamMismatch,
    SideSelectors,
    WindowData,
    fetch_window,
)
from analyzer.metrics.prometheus import PrometheusClient
from analyzer.metrics.source import PrometheusSource
from analyzer.request import JudgeRequest
from analyzer.store import SessionKey, Store, selector_key

STEP = 30.0
HISTORY = 2
WINDOW = 30
TOTAL = HISTORY + WINDOW
ORIGIN = datetime.fromtimestamp(START + HISTORY * STEP, tz=UTC)
NS = "inc"
CANARY, BASELINE = "pay-canary", "pay-stable"
RESET_AT = 6  # the window's interval whose start (point 5) sees the proxy restart
QUEUE = MetricConfig(name="queue", query="max(app_queue_depth{ {selector} })",
                     test="mann-whitney")
METRICS = (MetricConfig(name="error-rate", kind="istio-error-rate"),
           MetricConfig(name="latency", kind="istio-latency"), QUEUE)
SIDES = SideSelectors(NS, {"destination_service_name": CANARY},
                      {"destination_service_name": BASELINE})


def _traffic() -> IstioTraffic:
    rng = np.random.default_rng(13)

    def side(service: str, rate: float, errors: float) -> IstioSide:
        latency = rng.poisson(np.r_[0, 0, 1, 4, 9, 6, 3, 1, 0, 0.3, [0] * 10] * rate,
                              size=(TOTAL, len(ISTIO_BUCKETS))).tolist()
        return IstioSide(service, {"200": rng.poisson(10 * rate, TOTAL).tolist(),
                                   "503": rng.poisson(errors, TOTAL).tolist()}, latency)

    return IstioTraffic(namespace=NS, canary=side(CANARY, 1.0, 1.0),
                        baseline=side(BASELINE, 3.0, 1.0),
                        resets=frozenset({HISTORY + RESET_AT - 1}),
                        replacements=frozenset({HISTORY + 12}),
                        gaps=frozenset({HISTORY + 9, *range(HISTORY + 15, HISTORY + 27)}))


def _gauges() -> list[Series]:
    return [Series("app_queue_depth", {"destination_service_name": service},
                   [(START + (k + 1) * STEP - 1, factor * k) for k in range(TOTAL)])
            for service, factor in ((CANARY, 1.5), (BASELINE, 1.0))]


SERIES = istio_series(_traffic()) + _gauges()
LATE_AT = 20  # the stored interval whose last scrape arrives late


def _without_last_scrape(series: list[Series], interval: int) -> list[Series]:
    """The same data with the last canary request-counter scrape of window ``interval``
    missing: as a Prometheus that has not ingested it yet would answer."""
    end = ORIGIN.timestamp() + interval * STEP
    out, dropped = [], False
    for s in series:
        if not dropped and s.name == "istio_requests_total" and (
                s.labels["destination_service_name"] == CANARY):
            kept = [p for p in s.samples if p[0] != end - 1]
            dropped = len(kept) < len(s.samples)
            s = Series(s.name, s.labels, kept)
        out.append(s)
    assert dropped
    return out


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable[..., PrometheusServer]) -> PrometheusServer:
    return start_prometheus(SERIES)


@pytest.fixture
def client(prometheus: PrometheusServer) -> Iterator[PrometheusClient]:
    client = PrometheusClient(prometheus.url)
    yield client
    client.close()


def _end(n: int) -> datetime:
    return ORIGIN + timedelta(seconds=n * STEP + 7)  # 7 s into the next (partial) interval


def _read(client: PrometheusClient, n: int, *, seam: Seam | None = None,
          final: int | None = None, metrics: Sequence[MetricConfig] = METRICS) -> WindowData:
    return fetch_window(client, metrics, SIDES, ORIGIN, _end(n), STEP, seam=seam, final=final)


def _arrays(window: WindowData | dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    series = window.series if isinstance(window, WindowData) else window
    fields = ("canary_num", "canary_den", "baseline_num", "baseline_den", "le", "canary",
              "baseline")
    return {name: {f: np.asarray(getattr(s, f)).tolist() for f in fields if hasattr(s, f)}
            for name, s in series.items()}


def test_joined_reads_equal_a_full_read_at_every_seam(client: PrometheusClient) -> None:
    for m in range(1, WINDOW + 1):
        stored = _read(client, m, final=m)
        assert stored.carry is not None
        kept, carry = unpack(pack(stored.series, stored.carry))  # through the stored form
        for n in sorted({m, m + 1, m + 3, WINDOW} & set(range(m, WINDOW + 1))):
            before = client.samples
            after = _read(client, n, seam=Seam(m, carry))
            since = client.samples - before
            full = _read(client, n)
            assert after.first == m
            assert _arrays(join(kept, after.series)) == _arrays(full), (m, n)
            assert after.matched == full.matched, (m, n)
            assert after.queries == full.queries
            if m >= 12 and n - m <= 3:
                assert since < (client.samples - before - since) / 2, (m, n)


def test_a_counter_reset_exactly_at_the_seam_counts_the_post_reset_value(
        client: PrometheusClient) -> None:
    """The proxy restarts right after point ``RESET_AT - 1``: with the seam there, the first
    new interval's increment is the post-reset value, as in the full read."""
    m = RESET_AT - 1
    stored = _read(client, m, final=m)
    assert stored.carry is not None
    after = _read(client, m + 1, seam=Seam(m, stored.carry))
    full = _read(client, m + 1)
    errors = full.series["error-rate"]
    assert _arrays(join(stored.series, after.series)) == _arrays(full)
    written = _traffic().canary.requests
    assert int(errors.canary_den[m]) == written["200"][HISTORY + m] + written["503"][HISTORY + m]


def test_a_late_sample_at_the_seam_is_a_mismatch(start_prometheus: Callable[..., Any],
                                                 prometheus: PrometheusServer) -> None:
    early = start_prometheus(_without_last_scrape(SERIES, LATE_AT))
    before, now = PrometheusClient(early.url), PrometheusClient(prometheus.url)
    try:
        stored = _read(before, LATE_AT, final=LATE_AT)
        assert stored.carry is not None
        with pytest.raises(SeamMismatch, match="late samples"):
            _read(now, LATE_AT + 2, seam=Seam(LATE_AT, stored.carry))
    finally:
        before.close()
        now.close()


# The service path: two Analyzer instances on one store.

def _analyzer(url: str, store: Store | None, clock: Callable[[], datetime],
              samples: list[int]) -> Analyzer:
    source = PrometheusSource(lambda on_query: PrometheusClient(url, on_query=on_query),
                              on_samples=samples.append)
    return Analyzer({"default": default_config()}, source, store=store, clock=clock)


def _request(n: int, *, final: bool = False) -> JudgeRequest:
    return JudgeRequest(namespace=NS, rollout="pay", canary_service=CANARY,
                        baseline_service=BASELINE, start=ORIGIN.timestamp(),
                        end=_end(n).timestamp(), canary_weight=20, canary_revision="abc",
                        final=final)


def _stored(store: Store, config: CanaryConfig | None = None) -> int:
    """The session's stored final intervals; its stored judge state must cover exactly
    those (else every call would silently fold its whole window afresh)."""
    key = SessionKey(NS, "pay", selector_key({"destination_service_name": CANARY},
                                             {"destination_service_name": BASELINE},
                                             "source"), "abc")
    found = store.find_intervals(key)
    assert found is not None
    if found[1] is None:
        return 0
    row = store.intervals_of(found[0].id)
    assert row is not None and row.judge_state is not None
    assert (row.fingerprint, row.intervals) == (found[1].fingerprint, found[1].intervals)
    state = JudgeState.from_dict(json.loads(zlib.decompress(row.judge_state)),
                                 config or default_config())
    assert state.intervals == row.intervals
    return row.intervals


def _without_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "analysis_id"}


def _same(a: Any, b: Any) -> bool:
    """Equal answers: floats to 1e-9 relative (the running state sums intervals in another
    order than one fold of the window), everything else exactly."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("settled", [True, False], ids=["all-final", "provisional-tail"])
def test_replicas_sharing_a_store_answer_as_a_full_read_at_every_look(
        prometheus: PrometheusServer, tmp_path: Path, settled: bool) -> None:
    """Looks alternate between two analyzers on one SQLite file; ``settled``: the clock is
    far past the data (every interval final), else at the look's end (the last 4 intervals
    provisional, re-read every call)."""
    now = {"t": ORIGIN}
    clock = lambda: now["t"]  # noqa: E731
    stores = [Store(str(tmp_path / "shared.db")) for _ in range(2)]
    incremental: list[int] = []
    full: list[int] = []
    replicas = [_analyzer(prometheus.url, store, clock, incremental) for store in stores]
    fresh = _analyzer(prometheus.url, None, clock, full)
    lags: list[int] = []
    try:
        for n in range(1, WINDOW + 1):
            now["t"] = _end(n) + (timedelta(hours=1) if settled else timedelta())
            request = _request(n, final=n == WINDOW)
            answer = replicas[n % 2].run(request)
            expected = fresh.run(request)
            assert _same(_without_id(answer), _without_id(expected)), n
            assert answer["analysis_id"]
            final = n if settled else max(0, n - 4)
            stored = _stored(stores[0])
            # The row is written when due: it lags the final intervals by < PERSIST_EVERY.
            assert stored <= final and (final == 0 or final - stored < PERSIST_EVERY), n
            lags.append(final - stored)
        assert max(lags) == PERSIST_EVERY - 1  # rows were not written at every call
        assert sum(incremental[-10:]) < sum(full[-10:]) / 2
    finally:
        for store in stores:
            store.close()


def test_a_process_continues_its_own_last_call_between_row_writes(
        prometheus: PrometheusServer, tmp_path: Path) -> None:
    """Between writes of the session's row, the process that judged the last call continues
    what that call kept (reading since it), and another process continues the older row
    (reading since the row's seam): both answer as a full read."""
    clock = lambda: _end(WINDOW) + timedelta(hours=1)  # noqa: E731
    store = Store(str(tmp_path / "kept.db"))
    own: list[int] = []
    other: list[int] = []
    try:
        analyzer = _analyzer(prometheus.url, store, clock, own)
        for n in range(1, 16):
            analyzer.run(_request(n))
        assert _stored(store) == 1 + PERSIST_EVERY  # written at the first call, then when due
        request = _request(16)
        taken_over = _analyzer(prometheus.url, store, clock, other).run(request)
        continued = analyzer.run(request)
        expected = _analyzer(prometheus.url, None, clock, []).run(request)
        assert _same(_without_id(taken_over), _without_id(expected))
        assert _same(_without_id(continued), _without_id(expected))
        assert _stored(store) == 1 + PERSIST_EVERY
        # The row's seam is 5 intervals behind the kept one: the newcomer reads more.
        assert other[-1] > own[-1] > 0
    finally:
        store.close()


def test_stored_intervals_of_another_config_are_not_used(prometheus: PrometheusServer,
                                                          tmp_path: Path) -> None:
    """The same session judged with another config: its stored intervals do not fit, the
    window is read whole, and the answer says so."""
    clock = lambda: _end(WINDOW) + timedelta(hours=1)  # noqa: E731
    store = Store(str(tmp_path / "a.db"))
    try:
        analyzer = _analyzer(prometheus.url, store, clock, [])
        analyzer.run(_request(10))
        other = default_config()
        analyzer.configs["default"] = other.model_copy(update={"metrics": other.metrics[:1]})
        answer = analyzer.run(_request(12))
        assert any("another config" in note for note in answer["notes"])
        assert _stored(store, analyzer.configs["default"]) == 12
        again = analyzer.run(_request(14))
        assert not any("whole window" in note for note in again["notes"])
    finally:
        store.close()


def test_a_late_sample_reads_the_whole_window_and_says_so(
        start_prometheus: Callable[..., Any], prometheus: PrometheusServer,
        tmp_path: Path) -> None:
    early = start_prometheus(_without_last_scrape(SERIES, LATE_AT))
    clock = lambda: _end(WINDOW) + timedelta(hours=1)  # noqa: E731
    store = Store(str(tmp_path / "late.db"))
    try:
        _analyzer(early.url, store, clock, []).run(_request(LATE_AT))
        answer = _analyzer(prometheus.url, store, clock, []).run(_request(LATE_AT + 2))
        expected = _analyzer(prometheus.url, None, clock, []).run(_request(LATE_AT + 2))
        notes = answer.pop("notes")
        assert any("late samples" in note for note in notes)
        expected.pop("notes")
        assert _same(_without_id(answer), _without_id(expected))
        assert _stored(store) == LATE_AT + 2  # the whole-window read replaced them
    finally:
        store.close()
