"""Judge benchmark: our judge and the reference judges on one simulated corpus.

Every judge replays every canary as Rollouts would have run it (an evaluation after each
interval, the first fail aborts). Reported per judge and family: false-fail rate of good
canaries with a 95% Clopper-Pearson interval; detection rate of bad canaries before the ramp
ends; median and p90 time and canary requests to fail; delay relative to the oracle on the
canaries both detect; and replay cost. See references.py for the reference judges' rules.

    python benchmarks/judge/run.py [--good N] [--bad M] [--seed S] [--quick] [--json PATH]
                                   [--judges ours,kayenta,flagger,oracle,margin-oracle]
                                   [--workers N]
                                   [--ratio R --absolute M --gate-alpha A]  # candidates
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import references
from candidates import METRIC, override
from references import JudgeRun
from scipy.stats import beta
from simulate import Simulated, build_corpus

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"


def _ours(sim: Simulated) -> JudgeRun:
    # Imported here: the benchmark must run (skipping this judge) before the judge exists.
    from analyzer.replay import config_for_dataset, replay_dataset

    config = override(config_for_dataset(sim.dataset), **_STATE.get("overrides", {}))
    result = replay_dataset(sim.dataset, config)
    return JudgeRun(result.verdict, result.first_fail_at, len(result.evaluations))


def _oracle(sim: Simulated) -> JudgeRun | None:
    """Bad canaries only: on a good one the true LR is 1 by construction."""
    return None if sim.dataset.expected == "pass" else references.oracle(sim.dataset, sim.truth)


def _margin_oracle(sim: Simulated) -> JudgeRun | None:
    """The oracle against the error margin ours is judged with (the built-in one, or the
    candidate's): the floor under any judge of that margin."""
    if sim.dataset.expected == "pass":
        return None
    from analyzer.replay import config_for_dataset

    config = override(config_for_dataset(sim.dataset), **_STATE.get("overrides", {}))
    errors = config.metric(METRIC)
    assert errors is not None
    return references.oracle(sim.dataset, sim.truth, ratio=errors.margin_increase,
                             absolute=errors.allowed_absolute_increase)


# name → (replay function, module it needs or None)
JUDGES: dict[str, tuple[Callable[[Simulated], JudgeRun | None], str | None]] = {
    "ours": (_ours, "analyzer.replay"),
    "kayenta": (lambda sim: references.kayenta(sim.dataset), "analyzer.judge.mannwhitney"),
    "flagger": (lambda sim: references.flagger(sim.dataset), None),
    "oracle": (_oracle, None),
    "margin-oracle": (_margin_oracle, "analyzer.replay"),
}


def available_judges(wanted: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Judges whose code exists; the others are skipped with the reason, not failed."""
    ready, skipped = [], {}
    for name in wanted:
        module = JUDGES[name][1]
        if module is None:
            ready.append(name)
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            skipped[name] = f"{module} is not importable ({exc})"
        else:
            ready.append(name)
    return ready, skipped


# Worker state: each process rebuilds the (deterministic) corpus once instead of receiving it.
_STATE: dict[str, Any] = {}


def _init_worker(seed: int, good: int, bad: int, judges: list[str],
                 overrides: dict[str, float]) -> None:
    _STATE["corpus"] = build_corpus(seed, good, bad)
    _STATE["judges"] = judges
    _STATE["overrides"] = overrides


def _replay_one(index: int) -> list[dict[str, Any]]:
    sim: Simulated = _STATE["corpus"][index]
    dataset = sim.dataset
    canary_requests = np.cumsum(dataset.metrics["error-rate"].canary_den)
    records = []
    for name in _STATE["judges"]:
        began = time.perf_counter()
        run = JUDGES[name][0](sim)
        seconds = time.perf_counter() - began
        if run is None:
            continue
        requests = None
        if run.first_fail_at is not None:
            at = int(np.searchsorted(dataset.timestamps, run.first_fail_at))
            requests = int(canary_requests[at])
        records.append({"judge": name, "dataset": dataset.name,
                        "family": dataset.labels["family"], "expected": dataset.expected,
                        "verdict": run.verdict, "first_fail_at": run.first_fail_at,
                        "canary_requests_to_fail": requests, "evaluations": run.evaluations,
                        "seconds": seconds})
    return records


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = 1.0 - level
    lower = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lower, upper


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def _delay_ratio(rows: list[dict[str, Any]], oracle: dict[str, dict[str, Any]],
                 key: str) -> dict[str, Any]:
    """A judge's delay (``key``) ÷ the oracle's, on the canaries both detect."""
    pairs = [(r[key], oracle[r["dataset"]][key]) for r in rows
             if r["verdict"] == "fail" and oracle.get(r["dataset"], {}).get("verdict") == "fail"]
    if not pairs:
        return {"n": 0, "median_of_ratios": None, "ratio_of_medians": None}
    judge, best = np.array(pairs, float).T
    return {"n": len(pairs), "median_of_ratios": float(np.median(judge / best)),
            "ratio_of_medians": float(np.median(judge) / np.median(best))}


def _group(rows: list[dict[str, Any]], oracle: dict[str, dict[str, Any]] | None,
           floor: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    n = len(rows)
    verdicts = {v: sum(r["verdict"] == v for r in rows) for v in ("pass", "fail", "inconclusive")}
    failed = [r for r in rows if r["verdict"] == "fail"]
    out: dict[str, Any] = {"n": n, "verdicts": verdicts}
    if rows[0]["expected"] == "pass":
        out["false_fail_rate"] = len(failed) / n
        out["false_fail_ci95"] = clopper_pearson(len(failed), n)
        return out
    out["detection_rate"] = len(failed) / n
    out["seconds_to_fail"] = _quantiles([r["first_fail_at"] for r in failed])
    out["canary_requests_to_fail"] = _quantiles([r["canary_requests_to_fail"] for r in failed])
    if oracle is not None:
        out["delay_vs_oracle"] = {key: _delay_ratio(rows, oracle, key)
                                  for key in ("canary_requests_to_fail", "first_fail_at")}
    if floor is not None:
        # The margin oracle: what any judge of the built-in margin could detect, and how soon.
        out["margin_oracle_detected"] = sum(floor.get(r["dataset"], {}).get("verdict") == "fail"
                                            for r in rows)
        out["delay_vs_margin_oracle"] = {key: _delay_ratio(rows, floor, key)
                                         for key in ("canary_requests_to_fail", "first_fail_at")}
    return out


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    oracle = {r["dataset"]: r for r in records if r["judge"] == "oracle"}
    margin = {r["dataset"]: r for r in records if r["judge"] == "margin-oracle"}
    summary: dict[str, Any] = {}
    for judge in dict.fromkeys(r["judge"] for r in records):
        rows = [r for r in records if r["judge"] == judge]
        compare = oracle if oracle and judge != "oracle" else None
        floor = margin if margin and judge == "ours" else None
        families = {}
        for family in dict.fromkeys(r["family"] for r in rows):
            families[family] = _group([r for r in rows if r["family"] == family], compare,
                                      floor)
        overall = {kind: _group(part, compare, floor) for kind, part in
                   (("good", [r for r in rows if r["expected"] == "pass"]),
                    ("bad", [r for r in rows if r["expected"] == "fail"])) if part}
        evaluations = sum(r["evaluations"] for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        summary[judge] = {"overall": overall, "families": families,
                          "evaluations": evaluations, "replay_seconds": seconds,
                          "evaluations_per_second": evaluations / seconds if seconds else None,
                          "ms_per_evaluation": 1e3 * seconds / evaluations if evaluations else None}
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(summary: dict[str, Any]) -> str:
    lines = []
    for judge, result in summary.items():
        lines.append(f"\n== {judge}: {result['evaluations']:,} evaluations, "
                     f"{result['replay_seconds']:.1f} s replay, "
                     f"{_fmt(result['ms_per_evaluation'], '.3f')} ms/evaluation "
                     f"({_fmt(result['evaluations_per_second'], ',.0f')}/s)")
        rows = [("all good", result["overall"].get("good")),
                *[(f, s) for f, s in result["families"].items() if "false_fail_rate" in s],
                ("all bad", result["overall"].get("bad")),
                *[(f, s) for f, s in result["families"].items() if "detection_rate" in s]]
        good_header = f"  {'good family':<20}{'n':>5}{'fail':>6}{'incon':>6}  false-fail [95% CI]"
        bad_header = (f"  {'bad family':<20}{'n':>5}{'detect':>8}{'t50 s':>8}{'t90 s':>8}"
                      f"{'req50':>9}{'req90':>9}  ×oracle: med ratio / ratio of meds (n)")
        for label, stats in rows:
            if stats is None:
                continue
            if label == "all good":
                lines.append(good_header)
            elif label == "all bad":
                lines.append(bad_header)
            v = stats["verdicts"]
            if "false_fail_rate" in stats:
                lo, hi = stats["false_fail_ci95"]
                lines.append(f"  {label:<20}{stats['n']:>5}{v['fail']:>6}{v['inconclusive']:>6}"
                             f"  {stats['false_fail_rate']:.3f} [{lo:.3f}, {hi:.3f}]")
                continue
            t, q = stats["seconds_to_fail"], stats["canary_requests_to_fail"]
            line = (f"  {label:<20}{stats['n']:>5}{stats['detection_rate']:>8.3f}"
                    f"{_fmt(t['median'], '.0f'):>8}{_fmt(t['p90'], '.0f'):>8}"
                    f"{_fmt(q['median'], '.0f'):>9}{_fmt(q['p90'], '.0f'):>9}")
            if "delay_vs_oracle" in stats:
                delay = stats["delay_vs_oracle"]["canary_requests_to_fail"]
                line += (f"  {_fmt(delay['median_of_ratios'], '.2f')} / "
                         f"{_fmt(delay['ratio_of_medians'], '.2f')} ({delay['n']})")
            if "delay_vs_margin_oracle" in stats:
                delay = stats["delay_vs_margin_oracle"]["first_fail_at"]
                line += (f"  floor {stats['margin_oracle_detected']}: time "
                         f"×{_fmt(delay['median_of_ratios'], '.2f')} ({delay['n']})")
            lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--good", type=int, help="good canaries (default 400; --quick 60)")
    parser.add_argument("--bad", type=int, help="bad canaries (default 300; --quick 50)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--quick", action="store_true", help="a small corpus for a smoke run")
    parser.add_argument("--judges", default=",".join(JUDGES),
                        help=f"comma-separated subset of {', '.join(JUDGES)}")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--records", type=Path,
                        help="also write one JSON line per judge and canary here")
    parser.add_argument("--ratio", type=float,
                        help="our judge: override allowed_increase of error-rate")
    parser.add_argument("--absolute", type=float,
                        help="our judge: override allowed_absolute_increase of error-rate")
    parser.add_argument("--gate-alpha", type=float, help="our judge: override judge.gate_alpha")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("ratio", args.ratio), ("absolute", args.absolute),
                                   ("gate_alpha", args.gate_alpha)) if v is not None}
    good = args.good if args.good is not None else (60 if args.quick else 400)
    bad = args.bad if args.bad is not None else (50 if args.quick else 300)

    wanted = args.judges.split(",")
    unknown = sorted(set(wanted) - set(JUDGES))
    if unknown:
        parser.error(f"unknown judge {unknown[0]!r}; choose from {', '.join(JUDGES)}")
    judges, skipped = available_judges(wanted)
    for name, reason in skipped.items():
        print(f"skipping judge {name!r}: {reason}", file=sys.stderr)
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_init_worker,
                             initargs=(args.seed, good, bad, judges, overrides)) as pool:
        records = [r for rows in pool.map(_replay_one, range(good + bad), chunksize=4)
                   for r in rows]
    elapsed = time.perf_counter() - began

    summary = summarise(records)
    print(f"corpus: seed {args.seed}, {good} good + {bad} bad canaries; judges "
          f"{', '.join(judges)}; {elapsed:.1f} s on {args.workers} workers")
    print(render(summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"seed": args.seed, "good": good, "bad": bad, "workers": args.workers,
              "elapsed_seconds": elapsed, "judges": judges, "skipped": skipped,
              "overrides": overrides,
              "results": summary}
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")
    if args.records is not None:
        args.records.write_text("".join(json.dumps(r) + "\n" for r in records),
                                encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
