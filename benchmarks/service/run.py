"""Service benchmark: ``canary-analyzer serve`` judging many rollouts against a real Prometheus.

What a cluster operator needs to size the service: how long one judge call takes (p50/p99)
and how much of it is Prometheus, how many calls per second one process sustains, whether its
memory stays flat over thousands of calls, and what the raw PromQL costs on its own.

Setup: ``--canaries`` simulated 30 min canaries (families of ``benchmarks/judge/simulate.py``)
are backfilled as Istio series into a temporary Prometheus; the service runs as a real
subprocess on loopback. Phases of N = 1, 4, 16 concurrent simulated rollouts (threads) each
walk a canary interval by interval with ``end`` (no 30 s waits), ``final`` on the last look,
stopping at the first fail, then start the next rollout, until the phase's call budget is
spent. The budgets are 10/30/60 % of ``--calls``, so the RSS after the first phase is the
"after 1,000 calls" figure of the default 10,000. Then the same Prometheus work is run
without the service — ``fetch_window`` with the service's client and default config — to
price the raw PromQL. Everything started is stopped in a ``finally``.

    python benchmarks/service/run.py [--calls 10000] [--canaries 50] [--concurrency 1,4,16]
                                     [--raw 300] [--seed 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "judge"))
from simulate import build_corpus

from analyzer.analysis import DEFAULT_STEP
from analyzer.config import default_config
from analyzer.metrics.dataset import Dataset
from analyzer.metrics.istio import SideSelectors, fetch_window
from analyzer.metrics.prometheus import PrometheusClient
from devtools.demo import AnalyzerService
from devtools.openmetrics import (
    START,
    PrometheusServer,
    Series,
    create_blocks,
    istio_series,
    tools_missing,
    traffic_from_dataset,
)

NAMESPACE = "bench"
DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"
SHARES = (0.1, 0.3, 0.6)  # of --calls, per phase (extra phases share the last one's)


@dataclass(frozen=True)
class Canary:
    dataset: Dataset

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def intervals(self) -> int:
        return len(self.dataset)

    def body(self, rollout: str, k: int) -> dict[str, Any]:
        step = self.dataset.interval_seconds
        return {"namespace": NAMESPACE, "rollout": rollout,
                "canary_service": f"{self.name}-canary", "baseline_service": f"{self.name}-stable",
                "start": START, "end": START + k * step, "final": k == self.intervals}


# ---------------------------------------------------------------------------------------------
# Measurements of the service process


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


_SAMPLE = re.compile(r"^(canary_analyzer_\w+_seconds)_(sum|count) ([0-9.eE+-]+)$", re.M)


def histogram_totals(url: str) -> dict[str, float]:
    """``{name_sum: …, name_count: …}`` of the service's own duration histograms."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {f"{m[1]}_{m[2]}": float(m[3]) for m in _SAMPLE.finditer(text)}


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    ms = np.asarray(values) * 1000
    return {"p50_ms": float(np.quantile(ms, 0.5)), "p99_ms": float(np.quantile(ms, 0.99)),
            "mean_ms": float(ms.mean())}


# ---------------------------------------------------------------------------------------------
# Phases


class Budget:
    """A shared call budget and rollout counter: the loop stops by itself when it is spent."""

    def __init__(self, calls: int, first_rollout: int) -> None:
        self._left = calls
        self._rollouts = itertools.count(first_rollout)
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def next_rollout(self) -> int:
        with self._lock:
            return next(self._rollouts)


def rollouts(url: str, canaries: list[Canary], budget: Budget, latencies: list[float],
             statuses: dict[int, int], verdicts: dict[str, int], lock: threading.Lock) -> None:
    """One simulated Rollouts controller thread: AnalysisRun after AnalysisRun."""
    session = requests.Session()
    try:
        while True:
            number = budget.next_rollout()
            canary = canaries[number % len(canaries)]
            rollout = f"{canary.name}-r{number}"
            for k in range(1, canary.intervals + 1):
                if not budget.take():
                    return
                began = time.perf_counter()
                answer = session.post(f"{url}/api/v1/judge", json=canary.body(rollout, k),
                                      timeout=20)
                elapsed = time.perf_counter() - began
                verdict = answer.json().get("verdict") if answer.ok else None
                with lock:
                    latencies.append(elapsed)
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    verdicts[str(verdict)] = verdicts.get(str(verdict), 0) + 1
                if verdict == "fail":
                    break
    finally:
        session.close()


def run_threads(count: int, target: Callable[..., None], args: tuple = ()) -> float:
    """Runs ``count`` threads of ``target`` to completion; the wall time in seconds."""
    threads = [threading.Thread(target=target, args=args, daemon=True) for _ in range(count)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def phase(url: str, pid: int, canaries: list[Canary], concurrency: int, calls: int,
          first_rollout: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    verdicts: dict[str, int] = {}
    lock = threading.Lock()
    budget = Budget(calls, first_rollout)
    before = histogram_totals(url)
    wall = run_threads(concurrency, rollouts,
                       (url, canaries, budget, latencies, statuses, verdicts, lock))
    after = histogram_totals(url)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    done = len(latencies)
    query = "canary_analyzer_prometheus_query_duration_seconds"
    analysis = "canary_analyzer_analysis_duration_seconds"
    return {
        "concurrency": concurrency, "calls": done, "wall_seconds": wall,
        "calls_per_second": done / wall if wall > 0 else None,
        "latency": quantiles(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "verdicts": verdicts,
        "prometheus": {
            "queries_per_call": delta(f"{query}_count") / done if done else None,
            "ms_per_call": 1000 * delta(f"{query}_sum") / done if done else None,
            "analysis_ms_per_call": 1000 * delta(f"{analysis}_sum") / done if done else None,
        },
        "rss_mb_after": rss_mb(pid),
        "calls_total_after": None,  # filled in by the caller
    }


def raw_promql(prometheus_url: str, canaries: list[Canary], windows: int, concurrency: int,
               seed: int) -> dict[str, Any]:
    """The Prometheus work of ``windows`` judge calls without the service: the same
    ``fetch_window`` with the same client class and the default config, ``concurrency``
    threads, random canaries and window ends."""
    config = default_config()
    rng = np.random.default_rng(seed)
    jobs = [(canaries[int(rng.integers(len(canaries)))], int(rng.integers(1, 61)))
            for _ in range(windows)]
    times: list[float] = []
    queries: list[int] = []
    lock = threading.Lock()
    feed = iter(jobs)

    def work() -> None:
        while True:
            with lock:
                job = next(feed, None)
            if job is None:
                return
            canary, k = job
            sides = SideSelectors(NAMESPACE, {"destination_service_name": f"{canary.name}-canary"},
                                  {"destination_service_name": f"{canary.name}-stable"})
            start = datetime.fromtimestamp(START, tz=UTC)
            end = datetime.fromtimestamp(START + k * canary.dataset.interval_seconds, tz=UTC)
            client = PrometheusClient(prometheus_url)
            began = time.perf_counter()
            try:
                fetch_window(client, config.metrics, sides, start, end, DEFAULT_STEP)
            finally:
                elapsed = time.perf_counter() - began
                client.close()
            with lock:
                times.append(elapsed)
                queries.append(len(client.queries))

    wall = run_threads(concurrency, work)
    return {"concurrency": concurrency, "windows": len(times), "wall_seconds": wall,
            "windows_per_second": len(times) / wall if wall > 0 else None,
            "queries_per_window": float(np.mean(queries)) if queries else None,
            "latency": quantiles(times)}


# ---------------------------------------------------------------------------------------------
# Setup and report


def corpus(n: int, seed: int) -> list[Canary]:
    """``n`` simulated canaries, 60 % good and 40 % bad, every family in turn."""
    good = n - (2 * n) // 5
    return [Canary(sim.dataset) for sim in build_corpus(seed, good, n - good)]


def series_of(canaries: list[Canary]) -> list[Series]:
    out: list[Series] = []
    for canary in canaries:
        out += istio_series(traffic_from_dataset(canary.dataset, NAMESPACE,
                                                 f"{canary.name}-canary",
                                                 f"{canary.name}-stable", start=START))
    return out


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def render(result: dict[str, Any]) -> str:
    setup = result["setup"]
    lines = [
        f"{setup['canaries']} canaries × 30 min backfilled ({setup['series']} series, "
        f"{setup['samples']} samples, backfill {setup['backfill_seconds']:.1f} s); "
        f"service pid {setup['service_pid']}, {setup['cpus']} CPUs",
        "",
        "judge calls over HTTP (service subprocess → Prometheus):",
        f"  {'N':>3} {'calls':>6} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'prom ms/call':>12} {'queries/call':>12} {'prom share':>10} {'RSS MiB':>8}",
    ]
    for p in result["phases"]:
        prom = p["prometheus"]
        share = (prom["ms_per_call"] / p["latency"]["mean_ms"]
                 if prom["ms_per_call"] is not None and p["latency"]["mean_ms"] else None)
        lines.append(
            f"  {p['concurrency']:>3} {p['calls']:>6} {p['calls_per_second']:>8.1f} "
            f"{_ms(p['latency']['p50_ms']):>7} {_ms(p['latency']['p99_ms']):>7} "
            f"{_ms(prom['ms_per_call']):>12} {prom['queries_per_call'] or 0:>12.1f} "
            f"{'–' if share is None else f'{share:.0%}':>10} {p['rss_mb_after']:>8.1f}")
    lines += ["", "raw PromQL of one judge call (fetch_window, same client, no service):",
              f"  {'N':>3} {'windows':>7} {'windows/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'queries':>7}"]
    for r in result["raw_promql"]:
        lines.append(f"  {r['concurrency']:>3} {r['windows']:>7} {r['windows_per_second']:>9.1f} "
                     f"{_ms(r['latency']['p50_ms']):>7} {_ms(r['latency']['p99_ms']):>7} "
                     f"{r['queries_per_window'] or 0:>7.1f}")
    memory = result["memory"]
    lines += ["", f"service RSS: {memory['rss_mb_ready']:.1f} MiB when ready, "
                  f"{memory['rss_mb_first']:.1f} MiB after {memory['calls_first']} calls, "
                  f"{memory['rss_mb_last']:.1f} MiB after {memory['calls_last']} calls "
                  f"({memory['growth_mb']:+.1f} MiB)"]
    return "\n".join(lines)


@dataclass(frozen=True)
class Stack:
    prometheus: PrometheusServer
    service: AnalyzerService
    series: list[Series]
    backfill_seconds: float


@contextlib.contextmanager
def running_stack(canaries: list[Canary], workdir: Path) -> Iterator[Stack]:
    """The canaries backfilled into a Prometheus and a ``serve`` child on loopback; both are
    stopped when the block ends, whatever happens in it."""
    processes: list[Any] = []
    try:
        began = time.perf_counter()
        series = series_of(canaries)
        blocks = create_blocks(series, workdir / "backfill")
        backfill = time.perf_counter() - began
        prometheus = PrometheusServer(workdir / "prometheus", blocks)
        processes.append(prometheus)
        prometheus.start()
        service = AnalyzerService(prometheus.url, workdir)
        processes.append(service)
        service.start(timeout=30.0)
        print(f"prometheus {prometheus.url} (pid {prometheus.pid}), service {service.url} "
              f"(pid {service.pid}); backfill {backfill:.1f} s", flush=True)
        yield Stack(prometheus, service, series, backfill)
    finally:
        for process in reversed(processes):
            process.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="judge calls in all phases")
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--concurrency", default="1,4,16", help="rollouts in flight per phase")
    parser.add_argument("--raw", type=int, default=300, help="raw-PromQL windows per N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing is not None:
        print(f"benchmarks/service: {missing}", file=sys.stderr)
        return 2
    levels = [int(x) for x in args.concurrency.split(",")]
    shares = list(SHARES[:len(levels)])
    shares += [SHARES[-1]] * (len(levels) - len(shares))
    budgets = [max(1, round(args.calls * s / sum(shares))) for s in shares]

    canaries = corpus(args.canaries, args.seed)
    with tempfile.TemporaryDirectory(prefix="canary-analyzer-bench-") as tmp, \
            running_stack(canaries, Path(tmp)) as stack:
        service = stack.service
        assert service.pid is not None
        rss_ready = rss_mb(service.pid)
        phases, total, first_rollout = [], 0, 0
        for level, budget in zip(levels, budgets, strict=True):
            result = phase(service.url, service.pid, canaries, level, budget, first_rollout)
            first_rollout += 100_000
            total += result["calls"]
            result["calls_total_after"] = total
            phases.append(result)
            print(f"  N={level}: {result['calls']} calls, "
                  f"{result['calls_per_second']:.1f}/s, p50 "
                  f"{_ms(result['latency']['p50_ms'])} ms", flush=True)
        raw = [raw_promql(stack.prometheus.url, canaries, args.raw, level, args.seed)
               for level in levels]
    result = {
        "benchmark": "service", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {"canaries": len(canaries), "series": len(stack.series),
                  "samples": sum(len(s.samples) for s in stack.series),
                  "backfill_seconds": stack.backfill_seconds, "service_pid": service.pid,
                  "cpus": os.cpu_count(), "python": platform.python_version(),
                  "calls_requested": args.calls, "seed": args.seed},
        "phases": phases,
        "raw_promql": raw,
        "memory": {"rss_mb_ready": rss_ready,
                   "calls_first": phases[0]["calls_total_after"],
                   "rss_mb_first": phases[0]["rss_mb_after"],
                   "calls_last": phases[-1]["calls_total_after"],
                   "rss_mb_last": phases[-1]["rss_mb_after"],
                   "growth_mb": phases[-1]["rss_mb_after"] - phases[0]["rss_mb_after"]},
    }
    print()
    print(render(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
