"""Soak benchmark: many rollouts polling ``canary-analyzer serve`` in real time for minutes.

Not a timed test: a bounded load loop (it stops by itself after ``--minutes``) that reports
calls served, errors by status, p50/p99 latency, and the service process' RSS, open file
descriptors and threads sampled every ``--sample`` seconds. A failure is any 5xx (no fault is
injected, so none is excused), any call Argo would record as an *Error* (timeout, refused
connection), or memory growth: an RSS slope over the second half above ``--max-slope`` MiB
per 1,000 calls.

Setup (helpers imported from ``benchmarks/service/run.py``): ``--canaries`` simulated 30 min
canaries are backfilled as Istio series into a temporary Prometheus on loopback; the service
runs as a real subprocess (SQLite database in the temporary directory). ``--rollouts``
simulated rollouts (one thread and HTTP session each) poll ``POST /api/v1/judge`` every
``--interval`` seconds, first calls jittered over one interval. Each rollout walks its
backfilled canary in real time: a call at wall time t after the rollout began asks for
``end`` = canary start + t, so every call's window grows by one interval, as a real
rollout's does. When the canary's 30 min are over the call is ``final``; after the final call
or a ``fail`` the slot starts a new rollout (the next canary, a new rollout name, as a new
Rollout object would have). The first rollout of each slot starts at a random point of its
canary so the soak begins in a steady state rather than with every rollout at minute 0.

``--names fresh`` (default) gives every new rollout a new name; ``--names reuse`` keeps one
name per slot (200 names in all) — the comparison that shows whether memory grows with the
number of distinct rollout names rather than with calls.

    python benchmarks/soak/run.py [--minutes 10] [--rollouts 200] [--interval 10]
                                  [--canaries 50] [--names fresh|reuse] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import random
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

from devtools.openmetrics import START, tools_missing


def _load_service_benchmark() -> Any:
    """``benchmarks/service/run.py`` as a module (both scripts are called ``run``)."""
    path = Path(__file__).resolve().parent.parent / "service" / "run.py"
    spec = importlib.util.spec_from_file_location("service_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_service_benchmark()

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"
ARGO_TIMEOUT = 10.0  # Argo's default web-metric timeoutSeconds


# ---------------------------------------------------------------------------------------------
# The service process, read from /proc


def proc_status(pid: int) -> dict[str, float]:
    """RSS (MiB), threads and open file descriptors of ``pid``."""
    out: dict[str, float] = {"rss_mb": bench.rss_mb(pid)}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            out["threads"] = int(line.split()[1])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


_ROLLOUT_LABEL = re.compile(r'rollout="([^"]*)"')


def exposition(url: str) -> dict[str, int]:
    """Size of the service's ``/metrics``: bytes, sample lines and distinct rollout labels
    (each is a set of label children kept in the process)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {"metrics_bytes": len(text.encode()), "metrics_samples": len(lines),
            "rollout_labels": len(set(_ROLLOUT_LABEL.findall(text)))}


# ---------------------------------------------------------------------------------------------
# The load


class Tally:
    """Everything the rollout threads report, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[tuple[float, float]] = []  # (seconds since load start, latency)
        self.statuses: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self.rollouts_started = 0
        self.rollouts_finished = 0  # final call answered
        self.rollouts_failed = 0  # a fail verdict
        self.late_calls = 0  # started more than one interval after they were due
        self.errors: list[str] = []  # first few 5xx / transport error bodies

    def calls(self) -> int:
        with self.lock:
            return len(self.latencies)

    def add(self, at: float, latency: float, status: str, verdict: str | None,
            detail: str | None) -> None:
        with self.lock:
            self.latencies.append((at, latency))
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if verdict is not None:
                self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
            if detail is not None and len(self.errors) < 20:
                self.errors.append(detail)


class Slots:
    """Hands out canaries and rollout numbers to the slots in turn."""

    def __init__(self, canaries: list[Any]) -> None:
        self.canaries = canaries
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[int, Any]:
        with self._lock:
            number = self._next
            self._next += 1
        return number, self.canaries[number % len(self.canaries)]


def slot(index: int, url: str, slots: Slots, tally: Tally, load_began: float, deadline: float,
         interval: float, names: str, seed: int, stop: threading.Event) -> None:
    """One simulated rollout slot: rollout after rollout until the deadline."""
    rng = random.Random(seed * 100_003 + index)
    session = requests.Session()
    due = load_began + rng.uniform(0.0, interval)
    first = True
    try:
        while True:
            number, canary = slots.take()
            duration = canary.intervals * canary.dataset.interval_seconds
            rollout = f"{canary.name}-r{number}" if names == "fresh" else f"soak-{index}"
            # Wall time at which this rollout's canary began: the first rollout of a slot joins
            # its canary somewhere along the way, later ones at its beginning.
            offset = rng.uniform(0.0, duration - interval) if first else 0.0
            first = False
            began = due - interval - offset
            with tally.lock:
                tally.rollouts_started += 1
            while True:
                if due >= deadline:
                    return
                pause = due - time.monotonic()
                if pause > 0 and stop.wait(pause):
                    return
                now = time.monotonic()
                if now >= deadline:
                    return
                if now - due > interval:
                    with tally.lock:
                        tally.late_calls += 1
                elapsed = now - began
                final = elapsed >= duration
                body = canary.body(rollout, 1)
                body["end"] = START + min(elapsed, duration)
                body["final"] = final
                verdict, detail = None, None
                t0 = time.perf_counter()
                try:
                    answer = session.post(f"{url}/api/v1/judge", json=body, timeout=ARGO_TIMEOUT)
                    status = str(answer.status_code)
                    if answer.ok:
                        verdict = str(answer.json().get("verdict"))
                    else:
                        detail = f"{status} {rollout} end={body['end']:.0f}: {answer.text[:300]}"
                except requests.Timeout:
                    status, detail = "timeout", f"timeout {rollout} end={body['end']:.0f}"
                except requests.RequestException as exc:
                    status, detail = "transport", f"{type(exc).__name__} {rollout}: {exc}"[:300]
                latency = time.perf_counter() - t0
                tally.add(now - load_began, latency, status, verdict, detail)
                # Like Argo: the next measurement one interval after this one was due, or now
                # if this one overran.
                due = max(due + interval, time.monotonic())
                if verdict == "fail" or (final and status == "200"):
                    with tally.lock:
                        if verdict == "fail":
                            tally.rollouts_failed += 1
                        else:
                            tally.rollouts_finished += 1
                    break
    finally:
        session.close()


def sampler(url: str, pid: int, tally: Tally, load_began: float, every: float,
            samples: list[dict[str, Any]], stop: threading.Event) -> None:
    """Samples the service every ``every`` seconds until ``stop`` is set."""
    while not stop.wait(max(0.0, load_began + every * len(samples) - time.monotonic())):
        samples.append(take_sample(url, pid, tally, load_began))


def take_sample(url: str, pid: int, tally: Tally, load_began: float) -> dict[str, Any]:
    at = time.monotonic() - load_began
    sample: dict[str, Any] = {"t": round(at, 1), "calls": tally.calls(), **proc_status(pid)}
    try:
        sample.update(exposition(url))
    except requests.RequestException as exc:
        sample["metrics_error"] = str(exc)[:200]
    return sample


# ---------------------------------------------------------------------------------------------
# Report


def slope_per_1000(samples: list[dict[str, Any]], key: str, since: float) -> float | None:
    """Least-squares slope of ``key`` against calls served, per 1,000 calls, over the samples
    taken at or after ``since`` seconds."""
    tail = [s for s in samples if s["t"] >= since]
    calls = np.array([s["calls"] for s in tail], dtype=float)
    if len(tail) < 3 or np.ptp(calls) == 0:
        return None
    values = np.array([s[key] for s in tail], dtype=float)
    return float(np.polyfit(calls, values, 1)[0] * 1000)


def summarize(tally: Tally, samples: list[dict[str, Any]], wall: float, load_seconds: float,
              max_slope: float) -> dict[str, Any]:
    latencies = [latency for _, latency in tally.latencies]
    calls = len(latencies)
    server_errors = {k: v for k, v in tally.statuses.items() if k.startswith("5")}
    transport = {k: v for k, v in tally.statuses.items() if not k.isdigit()}
    client_errors = {k: v for k, v in tally.statuses.items() if k.startswith("4")}
    half = load_seconds / 2
    start, end = samples[0], samples[-1]
    slope = slope_per_1000(samples, "rss_mb", half)
    second = [latency for at, latency in tally.latencies if at >= half]
    failures = []
    if server_errors:
        failures.append(f"5xx without a fault: {server_errors}")
    if transport:
        failures.append(f"calls Argo would record as Error: {transport}")
    if slope is not None and slope > max_slope:
        failures.append(f"RSS grows {slope:.2f} MiB per 1,000 calls over the second half "
                        f"(limit {max_slope})")
    return {
        "calls": calls, "wall_seconds": wall,
        "calls_per_second": calls / wall if wall > 0 else None,
        "statuses": dict(sorted(tally.statuses.items())),
        "server_errors": server_errors, "transport_errors": transport,
        "client_errors": client_errors, "verdicts": dict(sorted(tally.verdicts.items())),
        "error_samples": tally.errors,
        "rollouts": {"started": tally.rollouts_started, "finished": tally.rollouts_finished,
                     "failed": tally.rollouts_failed},
        "late_calls": tally.late_calls,
        "latency": bench.quantiles(latencies),
        "latency_second_half": bench.quantiles(second),
        "memory": {
            "rss_mb_start": start["rss_mb"], "rss_mb_end": end["rss_mb"],
            "rss_mb_max": max(s["rss_mb"] for s in samples),
            "growth_mb": end["rss_mb"] - start["rss_mb"],
            "slope_mb_per_1000_calls_second_half": slope,
            "slope_mb_per_1000_calls_whole": slope_per_1000(samples, "rss_mb", 0.0),
            "max_slope_mb_per_1000_calls": max_slope,
        },
        "fds": {"start": start["fds"], "end": end["fds"], "max": max(s["fds"] for s in samples)},
        "threads": {"start": start["threads"], "end": end["threads"],
                    "max": max(s["threads"] for s in samples)},
        "metrics_exposition": {
            "bytes_start": start.get("metrics_bytes"), "bytes_end": end.get("metrics_bytes"),
            "rollout_labels_end": end.get("rollout_labels"),
            "bytes_per_1000_calls_second_half": slope_per_1000(
                [s for s in samples if "metrics_bytes" in s], "metrics_bytes", half)},
        "failures": failures, "ok": not failures,
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def render(result: dict[str, Any]) -> str:
    setup, s = result["setup"], result["summary"]
    mem, fds, threads = s["memory"], s["fds"], s["threads"]
    slope = mem["slope_mb_per_1000_calls_second_half"]
    lines = [
        f"{setup['rollouts']} rollouts polling every {setup['interval_seconds']:g} s for "
        f"{setup['minutes']:g} min ({setup['names']} names), {setup['canaries']} canaries "
        f"backfilled ({setup['series']} series); {setup['cpus']} CPUs",
        "",
        f"  {'t s':>6} {'calls':>7} {'RSS MiB':>8} {'fds':>4} {'threads':>7} "
        f"{'rollout labels':>14} {'/metrics KiB':>12}",
    ]
    for sample in result["samples"]:
        kib = sample.get("metrics_bytes")
        lines.append(f"  {sample['t']:>6.0f} {sample['calls']:>7} {sample['rss_mb']:>8.1f} "
                     f"{sample['fds']:>4} {sample['threads']:>7} "
                     f"{sample.get('rollout_labels', '–'):>14} "
                     f"{'–' if kib is None else f'{kib / 1024:.0f}':>12}")
    lines += [
        "",
        f"calls served      {s['calls']:,} ({s['calls_per_second']:.1f}/s)",
        f"statuses          {s['statuses']}",
        f"verdicts          {s['verdicts']}",
        f"rollouts          {s['rollouts']}, late calls {s['late_calls']}",
        f"latency           p50 {_ms(s['latency']['p50_ms'])} ms, "
        f"p99 {_ms(s['latency']['p99_ms'])} ms "
        f"(second half p99 {_ms(s['latency_second_half']['p99_ms'])} ms)",
        f"RSS               {mem['rss_mb_start']:.1f} MiB at start → {mem['rss_mb_end']:.1f} MiB "
        f"at end ({mem['growth_mb']:+.1f}); second-half slope "
        f"{'–' if slope is None else f'{slope:+.3f}'} MiB per 1,000 calls",
        f"open fds          {fds['start']} → {fds['end']} (max {fds['max']}); "
        f"threads {threads['start']} → {threads['end']} (max {threads['max']})",
        "",
        "OK" if s["ok"] else "FAILED: " + "; ".join(s["failures"]),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall time of the load")
    parser.add_argument("--rollouts", type=int, default=200, help="rollouts in flight")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--names", choices=("fresh", "reuse"), default="fresh",
                        help="a new rollout name per rollout, or one per slot")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--max-slope", type=float, default=0.25,
                        help="RSS MiB per 1,000 calls over the second half counted as growth")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing is not None:
        print(f"benchmarks/soak: {missing}", file=sys.stderr)
        return 2

    canaries = bench.corpus(args.canaries, args.seed)
    load_seconds = args.minutes * 60
    tally = Tally()
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with tempfile.TemporaryDirectory(prefix="canary-analyzer-soak-") as tmp, \
            bench.running_stack(canaries, Path(tmp)) as stack:
        service = stack.service
        pid = service.pid
        assert pid is not None
        print(f"load for {args.minutes:g} min", flush=True)
        try:
            load_began = time.monotonic()
            deadline = load_began + load_seconds
            samples.append(take_sample(service.url, pid, tally, load_began))
            slots = Slots(canaries)
            threads = [threading.Thread(target=slot, daemon=True, name=f"rollout-{i}",
                                        args=(i, service.url, slots, tally, load_began, deadline,
                                              args.interval, args.names, args.seed, stop))
                       for i in range(args.rollouts)]
            watcher = threading.Thread(target=sampler, daemon=True, name="sampler",
                                       args=(service.url, pid, tally, load_began, args.sample,
                                             samples, stop))
            for thread in threads:
                thread.start()
            watcher.start()
            for tick in itertools.count(1):  # progress, 1 s after each sample
                wake = min(load_began + tick * args.sample + 1.0, deadline)
                time.sleep(max(0.0, wake - time.monotonic()))
                if time.monotonic() >= deadline:
                    break
                last = samples[-1]
                print(f"  t={last['t']:.0f} s calls={last['calls']} "
                      f"rss={last['rss_mb']:.1f} MiB fds={last['fds']} "
                      f"statuses={dict(sorted(tally.statuses.items()))}", flush=True)
            for thread in threads:  # each ends after its in-flight call (≤ ARGO_TIMEOUT)
                thread.join(timeout=ARGO_TIMEOUT + 5)
            wall = time.monotonic() - load_began
            stop.set()
            watcher.join(timeout=30)
            samples.append(take_sample(service.url, pid, tally, load_began))
            if not service.running:
                tally.errors.append("the service process exited during the soak")
        finally:
            stop.set()
    summary = summarize(tally, samples, wall, load_seconds, args.max_slope)
    if any("exited" in e for e in tally.errors):
        summary["failures"].append("the service process exited")
        summary["ok"] = False
    result = {
        "benchmark": "soak", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {"minutes": args.minutes, "rollouts": args.rollouts,
                  "interval_seconds": args.interval, "names": args.names,
                  "canaries": len(canaries), "series": len(stack.series),
                  "backfill_seconds": stack.backfill_seconds, "service_pid": pid,
                  "sample_seconds": args.sample, "argo_timeout_seconds": ARGO_TIMEOUT,
                  "cpus": os.cpu_count(), "python": platform.python_version(),
                  "seed": args.seed},
        "summary": summary,
        "samples": samples,
    }
    print()
    print(render(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
