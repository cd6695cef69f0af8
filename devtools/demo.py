"""``canary-analyzer demo``: the bundled example canaries judged end to end, as Rollouts would.

With ``prometheus`` and ``promtool`` on PATH the demo is the real thing, so what it shows is
what a cluster would see: the canaries are rendered as Istio series ending now, backfilled into
a throwaway Prometheus, and a real ``canary-analyzer serve`` process is called once per 30 s
interval exactly like an AnalysisRun calls a web metric (``end`` = the interval's end,
``final`` on the last look, stop at the first Failed), each answer read with Argo's rules.
Everything it starts is stopped in a ``finally`` (also on Ctrl-C and SIGTERM).

Without Prometheus it installs Debian's package when it can (root and ``apt-get``), and
otherwise falls back to the offline replay, which runs the same judge on the dataset arrays.
``CANARY_ANALYZER_DEMO_OFFLINE=1`` forces the offline replay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from analyzer.metrics.dataset import Dataset
from analyzer.replay import dataset_paths, load_datasets, replay_dataset
from analyzer.timeline import format_timeline
from devtools.analysisrun import ERROR_LIMIT, Look, run_analysis
from devtools.argo import Phase
from devtools.openmetrics import (
    ManagedProcess,
    PrometheusServer,
    Series,
    create_blocks,
    free_port,
    istio_series,
    tools_missing,
    traffic_from_dataset,
)

OFFLINE_ENV = "CANARY_ANALYZER_DEMO_OFFLINE"
NAMESPACE = "demo"
ARGO_TIMEOUT = 20.0  # the AnalysisTemplate's timeoutSeconds (DESIGN §3)

MARKS: dict[Phase, str] = {"Successful": "✓", "Inconclusive": "?", "Failed": "✗", "Error": "!"}


class AnalyzerService(ManagedProcess):
    """``canary-analyzer serve`` as a child process on a free loopback port.

    Run as ``python -m analyzer.cli`` with this interpreter, so it is the same installation
    as the caller whether or not the console script is on PATH. Ready once ``/readyz`` is 200
    (configs loaded, store usable).
    """

    def __init__(self, prometheus_url: str, workdir: Path, *,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.database = workdir / "analyzer.db"
        super().__init__(
            [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--prometheus", prometheus_url,
             "--database", f"sqlite:///{self.database}", *extra_args],
            url=f"http://127.0.0.1:{self.port}", ready_path="/readyz",
            log=workdir / "serve.log", env={**os.environ, "PYTHONUNBUFFERED": "1"})


def post_json(url: str, body: Mapping[str, Any], timeout: float = ARGO_TIMEOUT
              ) -> tuple[int, bytes]:
    """POST ``body`` as JSON; returns (status, body) for every HTTP answer, 4xx/5xx included."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


# ---------------------------------------------------------------------------------------------
# One AnalysisRun


@dataclass(frozen=True)
class Canary:
    """A bundled dataset placed in time: its Services and its first and last instant."""

    dataset: Dataset
    start: float

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def step(self) -> float:
        return self.dataset.interval_seconds

    @property
    def intervals(self) -> int:
        return len(self.dataset)

    def body(self, k: int) -> dict[str, Any]:
        """What the AnalysisTemplate sends at the end of interval ``k`` (1-based)."""
        return {"namespace": NAMESPACE, "rollout": self.name,
                "canary_service": f"{self.name}-canary", "baseline_service": f"{self.name}-stable",
                "start": self.start, "end": self.start + k * self.step}


def analysis_run(service_url: str, canary: Canary) -> list[Look]:
    """One look per interval, as the shared AnalysisRun loop posts them; no answer at all
    counts as an Error, as it does for Argo."""
    def post(body: Mapping[str, Any]) -> tuple[int, bytes]:
        try:
            return post_json(f"{service_url}/api/v1/judge", body)
        except OSError:
            return 0, b""

    return run_analysis(post, [canary.body(k) for k in range(1, canary.intervals + 1)])


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes:d}:{secs:02d}"


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3g}"


def format_run(canary: Canary, looks: list[Look]) -> str:
    """The verdict timeline of one AnalysisRun: a mark per call, the outcome, and for a fail
    the metric(s) that failed with effect and interval."""
    marks = "".join(MARKS[look.phase] for look in looks)
    last = looks[-1]
    answer = last.answer or {}
    reason = answer.get("reason", f"HTTP {last.status}" if last.status else "no answer")
    if last.phase == "Failed":
        outcome = f"Failed at {_clock(last.k * canary.step)} (call {len(looks)}), rollout aborted"
    elif last.phase == "Error":
        outcome = f"Error at {_clock(last.k * canary.step)}: {ERROR_LIMIT} errors in a row"
    else:
        outcome = f"{last.phase} at the promotion gate ({_clock(last.k * canary.step)})"
    lines = [f"{canary.name}  ({NAMESPACE}/{canary.name}-canary vs {canary.name}-stable)",
             f"  {marks}  {len(looks)} calls", f"  → {outcome}: {reason}"]
    if last.phase == "Failed":
        for metric in answer.get("metrics", []):
            if metric.get("classification") in ("high", "low"):
                low, high = metric.get("interval") or (None, None)
                lines.append(f"    {metric['name']}: {metric['classification']}, "
                             f"canary/baseline {_number(metric.get('effect'))} "
                             f"(interval [{_number(low)}, {_number(high)}])")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Live and offline paths


def place_canaries(datasets: list[Dataset], now: float) -> list[Canary]:
    """Every canary ends at ``now`` rounded down to its step, so the service judges live-looking
    data (and its default "now" would agree with the last look)."""
    placed = []
    for dataset in datasets:
        step = dataset.interval_seconds
        end = (now // step) * step
        placed.append(Canary(dataset, end - len(dataset) * step))
    return placed


def demo_series(canaries: list[Canary]) -> list[Series]:
    series: list[Series] = []
    for canary in canaries:
        traffic = traffic_from_dataset(canary.dataset, NAMESPACE, f"{canary.name}-canary",
                                       f"{canary.name}-stable", start=canary.start)
        series += istio_series(traffic)
    return series


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the demo through ``finally`` blocks too, so children are always stopped."""
    def stop(signum: int, _: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_live(datasets: list[Dataset]) -> int:
    """The end-to-end story against a real Prometheus and a real service process."""
    began = time.monotonic()
    canaries = place_canaries(datasets, time.time())
    processes: list[ManagedProcess] = []
    with tempfile.TemporaryDirectory(prefix="canary-analyzer-demo-") as tmp, _sigterm_as_exit():
        workdir = Path(tmp)
        try:
            print(f"Backfilling {len(canaries)} canaries as Istio series ending now "
                  f"(namespace {NAMESPACE!r}, reporter=\"source\") into a temporary Prometheus…",
                  flush=True)
            blocks = create_blocks(demo_series(canaries), workdir / "backfill")
            prometheus = PrometheusServer(workdir / "prometheus", blocks)
            processes.append(prometheus)
            prometheus.start()
            print(f"  prometheus  {prometheus.url}  (pid {prometheus.pid})", flush=True)
            service = AnalyzerService(prometheus.url, workdir)
            processes.append(service)
            service.start(timeout=30.0)
            print(f"  canary-analyzer serve  {service.url}  (pid {service.pid})", flush=True)
            print(f"\nJudging each canary as an AnalysisRun would: POST {service.url}"
                  "/api/v1/judge once per 30 s interval, read with Argo's rules\n"
                  "(✓ Successful, ? Inconclusive, ✗ Failed, ! Error):\n", flush=True)
            for canary in canaries:
                print(format_run(canary, analysis_run(service.url, canary)), flush=True)
                print(flush=True)
            listing = get_json(f"{service.url}/api/v1/analyses")["analyses"]
            print(f"The service recorded {len(listing)} analyses. Browse them with "
                  f"GET /api/v1/analyses (every evaluation: /api/v1/analyses/<id>); here "
                  f"{service.url}/api/v1/analyses until the demo stops it:")
            for item in listing:
                last = item.get("last_evaluation") or {}
                print(f"  {item.get('id')}  {item.get('rollout')}  last verdict "
                      f"{last.get('verdict', '–')}")
            print("In a cluster, the deployed service answers the same routes for every "
                  "AnalysisRun.")
        except (RuntimeError, OSError) as exc:  # a child that would not start, a dead socket
            print(f"canary-analyzer demo: {exc}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr, flush=True)
            return 130
        finally:
            for process in reversed(processes):
                process.stop()
            if processes:
                pids = ", ".join(str(p.pid) for p in processes if p.pid is not None)
                print(f"\nStopped everything the demo started (pids {pids}) "
                      f"in {time.monotonic() - began:.1f} s.", flush=True)
    return 0


def run_offline(datasets: list[Dataset]) -> int:
    """The same judge on the dataset arrays, no Prometheus or HTTP involved."""
    print(f"Replaying {len(datasets)} bundled canaries offline, one judge call per 30 s "
          "interval (✓ pass, ? inconclusive, ✗ fail):\n")
    for dataset in datasets:
        print(format_timeline(replay_dataset(dataset)))
        print()
    return 0


def _install_prometheus() -> bool:
    """Debian's ``prometheus`` package (server and promtool), when root with apt-get."""
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    print("prometheus/promtool not found: installing Debian's prometheus package "
          "(apt-get install -y --no-install-recommends prometheus)…", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False,
                          timeout=600).returncode != 0:
            print(f"  {' '.join(command)} failed", flush=True)
            return False
    return tools_missing() is None


def run_demo(examples: Path, offline: bool = False) -> int:
    paths = dataset_paths(examples) if examples.is_dir() else []
    if not paths:
        print(f"no example datasets in {examples}")
        return 2
    datasets = load_datasets(paths)
    if offline or os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        print("Offline replay: no Prometheus or service.\n")
        return run_offline(datasets)
    missing = tools_missing()
    if missing is not None and not _install_prometheus():
        print(f"{missing}; showing the offline replay instead "
              f"(run as root, or install the prometheus package, for the live demo).\n")
        return run_offline(datasets)
    return run_live(datasets)
