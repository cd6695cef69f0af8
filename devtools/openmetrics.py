"""Istio-shaped Prometheus data from per-interval counts, and a real Prometheus serving it.

Used by the demo, the service benchmark and the tests: each needs a *real* Prometheus holding
canary and stable traffic exactly as Istio's sidecars would have exported it, without a mesh.
Data goes in by backfill, not by scraping: series are written as OpenMetrics text, turned into
TSDB blocks by ``promtool tsdb create-blocks-from openmetrics``, copied into a fresh data
directory, and a ``prometheus`` process is started on a free loopback port. Backfilled data is
queryable as soon as ``/-/ready`` answers, so a server is up in a fraction of a second.

Typical use::

    traffic = IstioTraffic(namespace="shop",
                           canary=IstioSide("checkout-canary", {"200": [40, 41], "503": [0, 2]}),
                           baseline=IstioSide("checkout-stable", {"200": [400, 390]}))
    with PrometheusServer.from_series(istio_series(traffic), workdir) as prom:
        client = PrometheusClient(prom.url)

Pitfalls this module takes care of (all silent otherwise): timestamps are SECONDS, each series'
samples are written in time order and series one after another, no blank lines, ``# EOF`` last;
blocks are copied because Prometheus compacts and deletes blocks in its data directory.
Fixed past timestamps (``START``) keep test data clear of the head block; data ending "now"
(the demo) also works because the blocks exist before Prometheus starts.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from analyzer.judge.series import HistogramSeries, RatioSeries
from analyzer.metrics.dataset import Dataset
from analyzer.metrics.istio import ISTIO_BUCKETS

__all__ = [
    "START", "WORKLOADS", "IstioSide", "IstioTraffic", "ManagedProcess", "PrometheusServer",
    "Series", "create_blocks", "free_port", "istio_series", "le_text", "openmetrics", "shares",
    "tools_missing", "traffic_from_dataset",
]

START = 1_700_000_000.0
"""Default first timestamp of fixture data (2023-11-14T22:13:20Z): fixed and in the past."""

WORKLOADS = ("frontend", "mobile-bff")
"""Source workloads that send traffic to each side; each side's traffic is split between them."""


def tools_missing() -> str | None:
    """Why a real Prometheus cannot run here, or None when ``prometheus`` and ``promtool`` exist."""
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed (apt-get install prometheus)"


# ---------------------------------------------------------------------------------------------
# OpenMetrics text and backfill


@dataclass(frozen=True)
class Series:
    """One time series: metric name, labels, and ``(unix seconds, value)`` samples in time order."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text that ``promtool`` backfills exactly.

    Raises ``ValueError`` on samples out of time order, which promtool would drop silently.
    """
    lines = []
    for one in series:
        labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(one.labels.items()))
        head = f"{one.name}{{{labels}}}" if labels else one.name
        previous = -math.inf
        for ts, value in one.samples:
            if ts <= previous:
                raise ValueError(f"{head}: samples must be strictly increasing in time "
                                 f"(promtool silently drops the others)")
            previous = ts
            lines.append(f"{head} {_number(value)} {ts:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def create_blocks(series: Iterable[Series], directory: Path, timeout: float = 300.0) -> Path:
    """Writes ``series`` as TSDB blocks under ``directory/blocks`` and returns that path.

    ``--max-block-duration=24h`` matters: promtool re-reads the whole file once per 2 h block
    otherwise (seconds become tens of seconds for a day of data).
    """
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "series.om"
    source.write_text(openmetrics(series), encoding="utf-8")
    blocks = directory / "blocks"
    result = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
         str(source), str(blocks)], capture_output=True, text=True, timeout=timeout,
        check=False)
    if result.returncode != 0:
        raise RuntimeError(f"promtool failed ({result.returncode}): {result.stderr[-2000:]}")
    return blocks


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (loopback only, never 9090 assumed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    """One child process that serves HTTP on a loopback URL, with its output in a log file.

    ``start()`` returns once ``ready_path`` answers 200 (or raises with the log tail and stops
    the process); ``stop()`` terminates and waits for this process only — never by name — and
    is safe to call twice. Usable as a context manager, so callers stop it in every outcome.
    """

    def __init__(self, command: Sequence[str], url: str, ready_path: str, log: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.url = url
        self.ready_path = ready_path
        self.log_path = log
        self.env = dict(env) if env is not None else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it was started (also after it exited)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited ({self._process.returncode}): "
                                   f"{self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.command[0]} not ready after {timeout} s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.log_path
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrometheusServer(ManagedProcess):
    """A ``prometheus`` process on 127.0.0.1 serving copies of backfilled blocks.

    The blocks are copied into ``workdir/data`` because Prometheus compacts and deletes blocks
    in its data directory. ``start()`` may be called again after ``stop()``: a new process on
    the same data and port (tests use this for outages).
    """

    def __init__(self, workdir: Path, blocks: Path | None = None) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        if blocks is not None and blocks.exists():
            for block in blocks.iterdir():
                shutil.copytree(block, self.data / block.name)
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text("global: {scrape_interval: 15s, evaluation_interval: 15s}\n",
                          encoding="utf-8")
        super().__init__(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y",
             "--log.level=warn"],
            url=f"http://127.0.0.1:{self.port}", ready_path="/-/ready",
            log=workdir / "prometheus.log")

    @classmethod
    def from_series(cls, series: Iterable[Series], workdir: Path) -> PrometheusServer:
        """Backfills ``series`` and returns a started server."""
        server = cls(workdir, create_blocks(series, workdir / "backfill"))
        server.start()
        return server

    def __enter__(self) -> PrometheusServer:
        return self


# ---------------------------------------------------------------------------------------------
# Istio traffic


@dataclass(frozen=True)
class IstioSide:
    """Traffic to one side (one destination Service), per interval.

    ``requests`` maps response codes to per-interval request counts; ``latency`` has one row
    per interval of non-cumulative counts per bucket of ``IstioTraffic.le`` (may be empty).
    ``labels`` adds or overrides labels on every series of this side (e.g. a
    ``destination_canonical_revision`` to split by, or a hostile value).
    """

    service: str
    requests: Mapping[str, Sequence[int]]
    latency: Sequence[Sequence[int]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IstioTraffic:
    """Canary and baseline traffic as Istio's source sidecars would have exported it.

    Interval ``k`` covers ``(start + k·step, start + (k+1)·step]``; each source workload is
    scraped twice per interval, at its middle and one second before its end, so the last scrape
    before an interval end holds everything counted up to then. Each side's counts are split
    between the two ``WORKLOADS`` (the first gets the larger half, see ``shares``).

    Disruptions, applied to the first workload (``frontend``) of both sides:
    ``resets`` — intervals at whose start its proxy restarts (same series, counters from 0);
    ``replacements`` — intervals at whose start its pod is replaced (a new ``pod`` label, so
    new series from 0, the old ones end); ``gaps`` — intervals in which it is not scraped.
    Series appear only once their counter is non-zero, as Envoy creates them on first use.
    """

    namespace: str
    canary: IstioSide
    baseline: IstioSide
    start: float = START
    step: float = 30.0
    le: Sequence[float] = ISTIO_BUCKETS
    le_style: Literal["envoy", "float"] = "envoy"
    reporter: str = "source"
    resets: frozenset[int] = frozenset()
    replacements: frozenset[int] = frozenset()
    gaps: frozenset[int] = frozenset()


def shares(count: int) -> tuple[int, int]:
    """How ``count`` requests are split between ``WORKLOADS``."""
    return count - count // 2, count // 2


def le_text(bound: float, style: Literal["envoy", "float"]) -> str:
    """``le`` as Envoy prints it (``"1"``) or in float form (``"1.0"``, Prometheus 3 / protobuf)."""
    if math.isinf(bound):
        return "+Inf"
    if style == "float":
        return repr(float(bound))
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _side_labels(traffic: IstioTraffic, side: IstioSide, workload: str, generation: int
                 ) -> dict[str, str]:
    ns = traffic.namespace
    labels = {
        "reporter": traffic.reporter,
        "source_workload": workload, "source_workload_namespace": ns, "source_app": workload,
        "destination_workload": side.service, "destination_workload_namespace": ns,
        "destination_service": f"{side.service}.{ns}.svc.cluster.local",
        "destination_service_name": side.service, "destination_service_namespace": ns,
        "request_protocol": "http", "connection_security_policy": "unknown",
        "pod": f"{workload}-{generation}",
    }
    labels.update(side.labels)
    return labels


def _streams(traffic: IstioTraffic, side: IstioSide, w: int
             ) -> Iterable[tuple[str, dict[str, str], np.ndarray, np.ndarray]]:
    """(metric name, extra labels, per-interval increments, per-interval uses) of every counter
    of workload ``w``; a series exists once it has been used (histograms: any observation)."""
    for code, counts in sorted(side.requests.items()):
        mine = np.asarray([shares(c)[w] for c in counts], dtype=np.int64)
        flags = "DC" if code == "0" else "-"
        yield "istio_requests_total", {"response_code": code, "response_flags": flags}, mine, mine
    if len(side.latency):
        rows = np.asarray(side.latency, dtype=np.int64)
        if rows.shape[1] != len(traffic.le):
            raise ValueError(f"{side.service}: latency rows need {len(traffic.le)} bucket counts")
        rows = rows - rows // 2 if w == 0 else rows // 2
        used = rows.sum(axis=1)
        base = {"response_code": "200", "response_flags": "-"}
        cumulative = np.cumsum(rows, axis=1)
        for i, bound in enumerate(traffic.le):
            yield ("istio_request_duration_milliseconds_bucket",
                   {**base, "le": le_text(bound, traffic.le_style)}, cumulative[:, i], used)
        finite = [b for b in traffic.le if math.isfinite(b)]
        weights = np.asarray([b if math.isfinite(b) else finite[-1] for b in traffic.le])
        yield "istio_request_duration_milliseconds_sum", base, rows @ weights, used
        yield "istio_request_duration_milliseconds_count", base, used, used


def istio_series(traffic: IstioTraffic) -> list[Series]:
    """The counter series of ``traffic``: ``istio_requests_total`` per response code and the
    ``istio_request_duration_milliseconds`` histogram (``_bucket``, ``_sum``, ``_count``; all
    under ``response_code="200"``, as the queries sum over codes anyway), per source workload
    and pod, cumulative, with the disruptions of ``traffic`` applied."""
    out: list[Series] = []
    step = traffic.step
    for side in (traffic.canary, traffic.baseline):
        for w, workload in enumerate(WORKLOADS):
            for name, extra, increments, uses in _streams(traffic, side, w):
                by_pod: dict[int, list[tuple[float, float]]] = {}
                generation, value, used = 0, 0.0, 0
                for k, (increment, use) in enumerate(zip(increments, uses, strict=True)):
                    disrupted = w == 0
                    if disrupted and k in traffic.replacements:
                        generation, value, used = generation + 1, 0.0, 0
                    if disrupted and k in traffic.resets:
                        value, used = 0.0, 0
                    middle = value + increment // 2
                    value += increment
                    used += use
                    if used == 0 or (disrupted and k in traffic.gaps):
                        continue
                    end = traffic.start + (k + 1) * step
                    by_pod.setdefault(generation, []).extend(
                        [(end - step / 2, float(middle)), (end - 1, float(value))])
                for pod, samples in by_pod.items():
                    labels = {**_side_labels(traffic, side, workload, pod), **extra}
                    out.append(Series(name, labels, samples))
    return out


def traffic_from_dataset(dataset: Dataset, namespace: str, canary_service: str,
                         baseline_service: str, *, error_metric: str = "error-rate",
                         latency_metric: str | None = "latency", error_code: str = "500",
                         start: float | None = None) -> IstioTraffic:
    """Istio traffic reproducing a ``canary-dataset/v1`` ratio (and histogram) metric.

    Errors (``num``) become ``error_code`` responses and the rest ``200``; the histogram's
    bounds and counts are used as they are (the dataset does not tie them to the request
    counts, so neither does this). ``start`` overrides the dataset's start time, e.g. to keep
    test data at fixed past timestamps or to make the demo's canaries end now.
    """
    ratio = dataset.metrics[error_metric]
    if not isinstance(ratio, RatioSeries):
        raise ValueError(f"{dataset.name}: {error_metric} is not a ratio metric")
    latency = dataset.metrics.get(latency_metric) if latency_metric else None
    if latency is not None and not isinstance(latency, HistogramSeries):
        raise ValueError(f"{dataset.name}: {latency_metric} is not a histogram metric")

    def side(service: str, num: np.ndarray, den: np.ndarray, rows: np.ndarray | None
             ) -> IstioSide:
        requests = {"200": (den - num).tolist(), error_code: num.tolist()}
        return IstioSide(service, requests, [] if rows is None else rows.tolist())

    return IstioTraffic(
        namespace=namespace,
        canary=side(canary_service, ratio.canary_num, ratio.canary_den,
                    None if latency is None else latency.canary),
        baseline=side(baseline_service, ratio.baseline_num, ratio.baseline_den,
                      None if latency is None else latency.baseline),
        start=dataset.start.timestamp() if start is None else start,
        step=dataset.interval_seconds,
        le=ISTIO_BUCKETS if latency is None else tuple(latency.le.tolist()))
