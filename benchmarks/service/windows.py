"""Judge calls against window length: p50/p99, samples read, calls/s, and raw PromQL.

What issue 13 asks of a call: its cost should not grow with the analysis' age, stay close to
the PromQL such a judge needs, and the service should sustain many calls per second. Setup:
``--canaries`` steady canaries (2 source pods per side, Envoy's 20 latency buckets, two
response codes) backfilled for 6 h 15 min into a temporary Prometheus, and ``canary-analyzer
serve`` as a subprocess (``--workers``, SQLite file or ``--database`` URL). For each window
W in ``--windows`` minutes and each concurrency N in ``--concurrency``:

1. warm-up: every rollout of the phase gets one call at ``end = start + W`` (not timed: the
   first call of a session reads its whole window);
2. timed: each of N threads walks its rollouts ``--looks`` looks further, 30 s apart, as Argo
   does (each look adds one interval). Reported: p50/p99 of those calls, calls/s over the
   timed part, samples read from Prometheus per call (the service's own
   ``canary_analyzer_prometheus_samples_read`` histogram, scraped before and after) and the
   service's CPU per call (its processes' user + system time, from ``/proc``: steadier than
   calls/s on a shared machine, and apart from Prometheus' and this client's CPU).

Raw PromQL: the two queries a judge of the window needs, aggregated by Prometheus — both
sides' requests by code and latency buckets, ``sum by (...) (increase(...[W]))`` at the
window's end — timed over one HTTP session; its p50 is the denominator of "call p50 / raw p50".

``--service-root DIR`` runs the service from another checkout (e.g. the main branch, for a
"before" figure) with the same interpreter.

    python benchmarks/service/windows.py [--windows 5,30,120,360] [--concurrency 1,4,16]
        [--looks 10] [--workers 1] [--database URL] [--service-root DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

from analyzer.metrics.istio import ISTIO_BUCKETS
from devtools.openmetrics import (
    START,
    IstioSide,
    IstioTraffic,
    ManagedProcess,
    PrometheusServer,
    Series,
    create_blocks,
    free_port,
    istio_series,
    tools_missing,
)

NAMESPACE = "bench"
STEP = 30.0
HOURS = 6.25
RESULTS = Path(__file__).parent / "results"


def canary_series(count: int, seed: int) -> list[Series]:
    """``count`` steady canaries: ~10 req/s canary, ~30 req/s baseline, 1 % errors."""
    rng = np.random.default_rng(seed)
    intervals = int(HOURS * 3600 / STEP)
    shape = np.r_[0, 0, 1, 4, 9, 6, 3, 1, 0.5, 0.2, [0.01] * 10]
    out: list[Series] = []
    for i in range(count):
        sides = []
        for service, rate in ((f"c{i}-canary", 300), (f"c{i}-stable", 900)):
            latency = rng.poisson(shape / shape.sum() * rate, size=(intervals, len(shape)))
            total = latency.sum(axis=1)
            errors = rng.binomial(total, 0.01)
            sides.append(IstioSide(service, {"200": (total - errors).tolist(),
                                             "503": errors.tolist()}, latency.tolist()))
        out += istio_series(IstioTraffic(NAMESPACE, sides[0], sides[1], start=START, step=STEP,
                                         le=ISTIO_BUCKETS))
    return out


class Service(ManagedProcess):
    """``serve`` from ``root`` (a checkout) with this interpreter."""

    def __init__(self, root: Path, prometheus: str, database: str, workers: int,
                 workdir: Path) -> None:
        port = free_port()
        # -P: no current directory on sys.path, so PYTHONPATH picks the checkout.
        command = [sys.executable, "-P", "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--prometheus", prometheus, "--database", database,
                   "--log-format", "json"]
        if workers > 1:
            command += ["--workers", str(workers)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(root)}
        super().__init__(command, url=f"http://127.0.0.1:{port}", ready_path="/readyz",
                         log=workdir / "serve.log", env=env)


_TOTALS = re.compile(r"^(canary_analyzer_prometheus_samples_read|"
                     r"canary_analyzer_prometheus_query_duration_seconds)_(sum|count) (\S+)$",
                     re.M)


def totals(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {f"{m[1]}_{m[2]}": float(m[3]) for m in _TOTALS.finditer(text)}


CHECKOUT = Path(__file__).resolve().parents[2]
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (``serve`` and its workers),
    from ``/proc``: what the service spent, apart from Prometheus and this client."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
        return total + sum(cpu_seconds(int(child)) for child in listing.read().split())


def body(canary: int, rollout: str, end: float) -> dict[str, Any]:
    return {"namespace": NAMESPACE, "rollout": rollout, "canary_service": f"c{canary}-canary",
            "baseline_service": f"c{canary}-stable", "start": START, "end": end,
            "canary_weight": 25}


def ms(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(values) * 1000, q)) if values else None


def run_threads(count: int, work: Any) -> float:
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def phase(url: str, pid: int, canaries: int, window: int, callers: int, looks: int,
          rollouts: int, tag: str) -> dict[str, Any]:
    """One (window, N) cell: warm-up calls, then timed looks."""
    jobs = {c: [(f"{tag}-w{window}-n{callers}-c{c}-r{r}", (c * rollouts + r) % canaries)
                for r in range(rollouts)] for c in range(callers)}
    first_end = START + window * 60
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def call(session: requests.Session, canary: int, rollout: str, end: float) -> float:
        began = time.perf_counter()
        answer = session.post(f"{url}/api/v1/judge", json=body(canary, rollout, end), timeout=30)
        elapsed = time.perf_counter() - began
        with lock:
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        return elapsed

    def warm(c: int) -> None:
        with requests.Session() as session:
            for rollout, canary in jobs[c]:
                call(session, canary, rollout, first_end)

    def timed(c: int) -> None:
        with requests.Session() as session:
            for look in range(1, looks + 1):
                for rollout, canary in jobs[c]:
                    elapsed = call(session, canary, rollout, first_end + look * STEP)
                    with lock:
                        latencies.append(elapsed)

    run_threads(callers, warm)
    before, cpu_before = totals(url), cpu_seconds(pid)
    wall = run_threads(callers, timed)
    after, cpu_after = totals(url), cpu_seconds(pid)
    done = len(latencies)

    def per_call(key: str) -> float | None:
        return (after.get(key, 0.0) - before.get(key, 0.0)) / done if done else None

    prom = per_call("canary_analyzer_prometheus_query_duration_seconds_sum")
    return {"window_minutes": window, "concurrency": callers, "calls": done,
            "calls_per_second": done / wall if wall else None,
            "p50_ms": ms(latencies, 0.5), "p99_ms": ms(latencies, 0.99),
            "samples_per_call": per_call("canary_analyzer_prometheus_samples_read_sum"),
            "prometheus_ms_per_call": None if prom is None else prom * 1000,
            "service_cpu_ms_per_call": (cpu_after - cpu_before) / done * 1000 if done else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def raw_promql(prometheus: str, canaries: int, window: int, repeats: int) -> dict[str, Any]:
    """p50/p99 of the two aggregated queries a judge of ``window`` minutes needs."""
    times: list[float] = []
    with requests.Session() as session:
        for i in range(repeats):
            c = i % canaries
            match = (f'reporter="source",destination_service_namespace="{NAMESPACE}",'
                     f'destination_service_name=~"c{c}-canary|c{c}-stable"')
            at = START + window * 60 + (i % 10) * STEP
            began = time.perf_counter()
            for query in (
                    f"sum by (destination_service_name, response_code) "
                    f"(increase(istio_requests_total{{{match}}}[{window}m]))",
                    f"sum by (destination_service_name, le) "
                    f"(increase(istio_request_duration_milliseconds_bucket{{{match}}}"
                    f"[{window}m]))"):
                answer = session.get(f"{prometheus}/api/v1/query",
                                     params={"query": query, "time": f"{at:.3f}"}, timeout=30)
                answer.raise_for_status()
            times.append(time.perf_counter() - began)
    return {"window_minutes": window, "queries": 2, "repeats": len(times),
            "p50_ms": ms(times, 0.5), "p99_ms": ms(times, 0.99)}


def render(result: dict[str, Any]) -> str:
    raw = {r["window_minutes"]: r for r in result["raw_promql"]}
    lines = [f"{result['setup']['label']}: {result['setup']['canaries']} canaries, "
             f"workers {result['setup']['workers']}, database {result['setup']['database']}",
             f"  {'W min':>5} {'N':>3} {'calls':>5} {'calls/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
             f"{'CPU ms':>6} {'samples/call':>12} {'raw p50':>7} {'p50/raw':>7}"]
    for p in result["phases"]:
        base = raw.get(p["window_minutes"], {}).get("p50_ms")
        ratio = p["p50_ms"] / base if base and p["p50_ms"] else None
        lines.append(f"  {p['window_minutes']:>5} {p['concurrency']:>3} {p['calls']:>5} "
                     f"{p['calls_per_second']:>7.1f} {p['p50_ms']:>7.1f} {p['p99_ms']:>7.1f} "
                     f"{p['service_cpu_ms_per_call'] or 0:>6.1f} "
                     f"{p['samples_per_call'] or 0:>12.0f} {base or 0:>7.1f} "
                     f"{'–' if ratio is None else f'{ratio:.2f}':>7}")
    return "\n".join(lines)


def measure(args: argparse.Namespace, work: Path, blocks: Path, database: str
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every (window, N) phase against one Prometheus and one service, then raw PromQL."""
    windows = [int(x) for x in args.windows.split(",")]
    levels = [int(x) for x in args.concurrency.split(",")]
    with PrometheusServer(work / "prometheus", blocks) as prometheus, \
            Service(args.service_root, prometheus.url, database, args.workers,
                    work) as service:
        prometheus.start(timeout=60)
        service.start(timeout=60)
        print(f"service {service.url}, database {database.split('://')[0]}", flush=True)
        assert service.pid is not None
        phases = []
        for window in windows:
            for level in levels:
                phases.append(phase(service.url, service.pid, args.canaries, window, level,
                                    args.looks, max(1, args.rollouts // level), args.label))
                p = phases[-1]
                if args.workers > 1:  # each scrape of /metrics reads one worker's own
                    p["samples_per_call"] = None
                print(f"  W={window} N={level}: p50 {p['p50_ms']:.1f} ms, "
                      f"{p['calls_per_second']:.1f}/s, service CPU "
                      f"{p['service_cpu_ms_per_call']:.1f} ms/call, "
                      f"{p['samples_per_call'] or 0:.0f} "
                      f"samples/call {p['statuses']}", flush=True)
        raw = [raw_promql(prometheus.url, args.canaries, w, args.raw) for w in windows]
    return phases, raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="5,30,120,360")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--looks", type=int, default=6)
    parser.add_argument("--rollouts", type=int, default=4,
                        help="rollouts per phase at N=1; N callers get max(1, this/N) each")
    parser.add_argument("--canaries", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", help="a SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL cluster (tests/pgfixture.py) as database")
    parser.add_argument("--service-root", type=Path, default=CHECKOUT)
    parser.add_argument("--raw", type=int, default=100, help="raw PromQL repeats per window")
    parser.add_argument("--label", default="after")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing is not None:
        print(f"benchmarks/service: {missing}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="canary-analyzer-windows-") as tmp, \
            contextlib.ExitStack() as cleanup:
        work = Path(tmp)
        series = canary_series(args.canaries, args.seed)
        began = time.perf_counter()
        blocks = create_blocks(series, work / "backfill")
        print(f"backfill {time.perf_counter() - began:.1f} s ({len(series)} series)",
              flush=True)
        database = args.database or f"sqlite:///{work / 'analyzer.db'}"
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
            from pgfixture import PostgresServer

            postgres = PostgresServer.start_new()
            cleanup.callback(postgres.remove)
            cleanup.callback(postgres.stop)
            database = postgres.create_database("bench")
        phases, raw = measure(args, work, blocks, database)
    result = {"benchmark": "service-windows",
              "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "setup": {"label": args.label, "canaries": args.canaries,
                        "series": len(series), "workers": args.workers,
                        "database": database.split("://")[0].split("+")[0],
                        "looks": args.looks, "rollouts": args.rollouts,
                        "cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_after": os.getloadavg()[0],
                        # Not the path: results are committed, machine paths are not.
                        "service_root": "this checkout" if args.service_root == CHECKOUT
                        else "another checkout (--service-root)"},
              "phases": phases, "raw_promql": raw}
    print(render(result))
    path = args.json or RESULTS / f"windows-{args.label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
