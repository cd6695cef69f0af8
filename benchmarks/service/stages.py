"""Where a judge call's time goes, against window length: data path vs judge vs store.

In process (no HTTP), one canary of ``windows.canary_series`` in a temporary Prometheus, the
default config. For each window W: a session is warmed with one call at ``start + W``, then
``--looks`` calls 30 s apart are timed by stage — the Prometheus read (queries, decoding,
differencing, joining stored intervals), the judge (``analyzer.analysis.judge_window``: the
session's running state extended by the new intervals, or a fresh fold), and the store (loading
the session, recording the evaluation with the new final intervals). ``incremental``: with a
SQLite store, reads since the seam; ``full``: no store, every call reads its whole window (the
path before issue 13).

    python benchmarks/service/stages.py [--windows 5,30,120,360] [--looks 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from windows import NAMESPACE, START, canary_series

import analyzer.analysis as analysis
from analyzer.analysis import Analyzer
from analyzer.config import default_config
from analyzer.metrics.prometheus import PrometheusClient
from analyzer.metrics.source import PrometheusSource
from analyzer.request import JudgeRequest
from analyzer.store import Store
from devtools.openmetrics import PrometheusServer, create_blocks, tools_missing

RESULTS = Path(__file__).parent / "results"


class Timers:
    """Seconds per stage of the current call."""

    def __init__(self) -> None:
        self.now: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.now[stage] += time.perf_counter() - began
        return timed


def request(window: int, look: int) -> JudgeRequest:
    return JudgeRequest(namespace=NAMESPACE, rollout=f"w{window}", canary_service="c0-canary",
                        baseline_service="c0-stable", start=START,
                        end=START + window * 60 + look * 30, canary_weight=25)


def run(url: str, work: Path, mode: str, window: int, looks: int, timers: Timers
        ) -> dict[str, Any]:
    samples: list[int] = []
    source = PrometheusSource(lambda on_query: PrometheusClient(url, on_query=on_query),
                              on_samples=samples.append)
    source.read = timers.wrap("read", source.read)  # type: ignore[method-assign]
    store = Store(str(work / f"{mode}-{window}.db")) if mode == "incremental" else None
    if store is not None:
        store.record = timers.wrap("store", store.record)  # type: ignore[method-assign]
        store.find_intervals = timers.wrap("store",  # type: ignore[method-assign]
                                           store.find_intervals)
        store.intervals_of = timers.wrap("store",  # type: ignore[method-assign]
                                         store.intervals_of)
    analyzer = Analyzer({"default": default_config()}, source, store=store)
    analyzer.run(request(window, 0))
    rows: dict[str, list[float]] = defaultdict(list)
    for look in range(1, looks + 1):
        timers.now.clear()
        began = time.perf_counter()
        analyzer.run(request(window, look))
        total = time.perf_counter() - began
        for stage in ("read", "judge", "store"):
            rows[stage].append(timers.now.get(stage, 0.0))
        rows["total"].append(total)
    if store is not None:
        store.close()
    return {"mode": mode, "window_minutes": window, "looks": looks,
            "samples_per_call": float(np.mean(samples[1:])),
            **{f"{stage}_p50_ms": float(np.median(v)) * 1000 for stage, v in rows.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="5,30,120,360")
    parser.add_argument("--looks", type=int, default=20)
    parser.add_argument("--json", type=Path, default=RESULTS / "stages.json")
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing is not None:
        print(f"benchmarks/service: {missing}", file=sys.stderr)
        return 2
    timers = Timers()
    analysis.judge_window = timers.wrap("judge", analysis.judge_window)  # type: ignore[assignment]
    out = []
    with tempfile.TemporaryDirectory(prefix="canary-analyzer-stages-") as tmp:
        work = Path(tmp)
        blocks = create_blocks(canary_series(1, 1), work / "backfill")
        with PrometheusServer(work / "prometheus", blocks) as prometheus:
            prometheus.start(timeout=60)
            for window in (int(w) for w in args.windows.split(",")):
                for mode in ("full", "incremental"):
                    row = run(prometheus.url, work, mode, window, args.looks, timers)
                    out.append(row)
                    print(f"W={window:>3} {mode:11} total {row['total_p50_ms']:7.1f}  read "
                          f"{row['read_p50_ms']:6.1f}  judge {row['judge_p50_ms']:6.1f}  "
                          f"store {row['store_p50_ms']:5.1f} ms  samples "
                          f"{row['samples_per_call']:8.0f}", flush=True)
    result = {"benchmark": "service-stages",
              "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "load_average": os.getloadavg()[0], "rows": out}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
