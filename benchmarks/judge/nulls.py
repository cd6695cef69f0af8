"""Calibration under bursty traffic at high volume, and the cost in detection time.

Null cells: both sides have the same 1% error rate, each side's per-interval rate multiplied
by an independent Gamma(mean 1, CV) draw (per-side overdispersion), 20/200/1000 req/s, a
5→25→50% ramp or a 50/50 split from the first look, 60 looks of 30 s. A run is a false fail
when the rate test's e-value against "ratio ≤ 1" ever reaches 1/alpha = 100 (one metric,
the strictest margin). Power cells: the same with the canary at 2× and 3×, reporting the
detection rate and the median look of the first fail next to an oracle SPRT that knows the
true ratio (likelihood ratio of the canary's share of events, conditional on the split).

Margin cells: the judge with the built-in error-rate margin, max(1.4×, +0.2 points), against
two oracles that know the true rates — the SPRT of the true ratio against 1 (what "time to
fail ÷ oracle" has meant so far) and the SPRT against the margin, the fastest any test that
fails only beyond the margin can be. Their ratio is the floor that the margin alone puts
under "time to fail ÷ oracle"; ours ÷ the margin oracle is what is left to gain.

    python benchmarks/judge/nulls.py [--runs N] [--seed S] [--workers W] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import beta

from analyzer.config import default_config
from analyzer.judge.rate import SplitData
from analyzer.judge.ratestate import RateState

LOG_K = math.log(100.0)
DEFAULT_JSON = Path(__file__).parent / "results" / "nulls.json"
NULLS = [(rps, cv, split) for rps in (20, 200, 1000) for cv in (0.3, 0.6)
         for split in ("ramp", "50/50")]
POWER = [(rps, cv, ratio) for rps in (20, 200) for cv in (0.0, 0.3) for ratio in (2.0, 3.0)]
# The built-in config's error-rate margin (max(1.4×, +0.2 points) when this was written).
_ERRORS = default_config().metric("error-rate")
assert _ERRORS is not None
MARGIN_RATIO, MARGIN_ABSOLUTE = _ERRORS.margin_increase, _ERRORS.allowed_absolute_increase
MARGIN_POWER = ([(rps, cv, ratio, 0.01) for rps in (20, 200, 1000) for cv in (0.0, 0.3)
                 for ratio in (2.0, 3.0, 5.0)]
                + [(rps, 0.0, 5.0, 0.001) for rps in (200, 1000)])


def draw(rng: np.random.Generator, rps: float, cv: float, split: str, ratio: float = 1.0,
         p0: float = 0.01, intervals: int = 60) -> tuple[np.ndarray, ...]:
    share = (np.repeat((0.05, 0.25, 0.5), intervals // 3) if split == "ramp"
             else np.full(intervals, 0.5))
    total = rng.poisson(rps * 30, intervals)
    nc = rng.binomial(total, share)
    nb = total - nc

    def jitter() -> np.ndarray:
        return np.ones(intervals) if cv == 0 else rng.gamma(1 / cv**2, cv**2, intervals)

    c = rng.binomial(nc, np.clip(p0 * ratio * jitter(), 0, 1))
    b = rng.binomial(nb, np.clip(p0 * jitter(), 0, 1))
    return c, nc, b, nb


def first_fail(c, nc, b, nb, **margin: float) -> int | None:
    """The first look whose e-value reaches 1/alpha: one running state, extended per look."""
    state = RateState(**margin)
    for t in range(len(c)):
        state.extend(SplitData.from_counts(c[t:t + 1], nc[t:t + 1], b[t:t + 1], nb[t:t + 1]))
        if state.result().log_e_increase >= LOG_K:
            return t + 1
    return None


def oracle_fail(c, nc, b, nb, ratio: float, null: float = 1.0) -> int | None:
    """SPRT of the true ratio against ``null`` on each interval's split of events."""
    keep = (nc > 0) & (nb > 0)
    u = np.where(keep, nc / np.maximum(nc + nb, 1), 0.5)
    logit = np.log(u) - np.log1p(-u)
    theta0 = expit(logit + math.log(null))
    theta1 = expit(logit + math.log(ratio))
    e = c + b
    llr = np.where(keep, c * np.log(theta1 / theta0) + (e - c) * np.log((1 - theta1)
                                                                      / (1 - theta0)), 0.0)
    hits = np.nonzero(np.cumsum(llr) >= LOG_K)[0]
    return int(hits[0]) + 1 if len(hits) else None


def _null_cell(args: tuple[int, int, float, float, str]) -> dict[str, Any]:
    seed, runs, rps, cv, split = args
    rng = np.random.default_rng([seed, int(rps), int(cv * 10), split == "ramp"])
    looks = [first_fail(*draw(rng, rps, cv, split)) for _ in range(runs)]
    fails = [t for t in looks if t is not None]
    k = len(fails)
    upper = 1.0 if k == runs else float(beta.ppf(0.975, k + 1, runs - k))
    return {"rps": rps, "cv": cv, "split": split, "runs": runs, "false_fails": k,
            "rate": k / runs, "ci95_upper": upper, "looks": sorted(fails)}


def _power_cell(args: tuple[int, int, float, float, float]) -> dict[str, Any]:
    seed, runs, rps, cv, ratio = args
    rng = np.random.default_rng([seed, int(rps), int(cv * 10), int(ratio * 10)])
    ours, oracle = [], []
    for _ in range(runs):
        counts = draw(rng, rps, cv, "ramp", ratio)
        ours.append(first_fail(*counts))
        oracle.append(oracle_fail(*counts, ratio))
    both = [(a, o) for a, o in zip(ours, oracle, strict=True) if a is not None and o is not None]
    return {"rps": rps, "cv": cv, "ratio": ratio, "runs": runs,
            "detected": sum(a is not None for a in ours) / runs,
            "oracle_detected": sum(o is not None for o in oracle) / runs,
            "median_look": float(np.median([a for a in ours if a is not None]))
            if any(a is not None for a in ours) else None,
            "oracle_median_look": float(np.median([o for o in oracle if o is not None]))
            if any(o is not None for o in oracle) else None,
            "median_delay_vs_oracle": float(np.median([a / o for a, o in both]))
            if both else None}


def _margin_cell(args: tuple[int, int, float, float, float, float]) -> dict[str, Any]:
    seed, runs, rps, cv, ratio, p0 = args
    rng = np.random.default_rng([seed, int(rps), int(cv * 10), int(ratio * 10), int(p0 * 1e4)])
    margin = max(MARGIN_RATIO, 1.0 + MARGIN_ABSOLUTE / p0)
    ours, strict, best = [], [], []
    for _ in range(runs):
        counts = draw(rng, rps, cv, "ramp", ratio, p0)
        ours.append(first_fail(*counts, allowed_increase=MARGIN_RATIO,
                               absolute_increase=MARGIN_ABSOLUTE))
        strict.append(oracle_fail(*counts, ratio))
        best.append(oracle_fail(*counts, ratio, margin) if ratio > margin else None)

    def median_ratio(top: list[int | None], bottom: list[int | None]) -> float | None:
        both = [a / o for a, o in zip(top, bottom, strict=True)
                if a is not None and o is not None]
        return float(np.median(both)) if both else None

    def median(looks: list[int | None]) -> float | None:
        found = [t for t in looks if t is not None]
        return float(np.median(found)) if found else None

    return {"rps": rps, "cv": cv, "ratio": ratio, "baseline_rate": p0, "margin": margin,
            "runs": runs, "detected": sum(t is not None for t in ours) / runs,
            "median_look": median(ours), "oracle_median_look": median(strict),
            "margin_oracle_median_look": median(best),
            "ours_vs_oracle": median_ratio(ours, strict),
            "margin_oracle_vs_oracle": median_ratio(best, strict),
            "ours_vs_margin_oracle": median_ratio(ours, best)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--power-runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    began = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        nulls = list(pool.map(_null_cell, [(args.seed, args.runs, *c) for c in NULLS]))
        power = list(pool.map(_power_cell, [(args.seed, args.power_runs, *c) for c in POWER]))
        margin = list(pool.map(_margin_cell,
                               [(args.seed, args.power_runs, *c) for c in MARGIN_POWER]))
    print("null: req/s  CV   split   false fails  [95% upper]  looks")
    for r in nulls:
        print(f"      {r['rps']:5g} {r['cv']:4g} {r['split']:6} "
              f"{r['false_fails']:4d}/{r['runs']:<5d} {r['rate']:.4f} "
              f"[{r['ci95_upper']:.4f}]  {r['looks'][:8]}")
    print("power: req/s  CV  ratio  detected  oracle  median look  oracle  delay×")
    for r in power:
        print(f"       {r['rps']:5g} {r['cv']:4g} {r['ratio']:4g}   {r['detected']:.2f}     "
              f"{r['oracle_detected']:.2f}   {r['median_look']}  {r['oracle_median_look']}  "
              f"{r['median_delay_vs_oracle']}")
    print(f"margin max({MARGIN_RATIO:g}x, +{MARGIN_ABSOLUTE * 100:g} points): req/s  CV  ratio  "
          "base  margin  detected  "
          "median look (ours / oracle / margin oracle)  ours÷oracle  floor÷oracle  "
          "ours÷floor")
    for r in margin:
        looks = "/".join("-" if r[k] is None else f"{r[k]:g}" for k in
                         ("median_look", "oracle_median_look", "margin_oracle_median_look"))
        ratios = "  ".join("-" if r[k] is None else f"{r[k]:.2f}" for k in
                           ("ours_vs_oracle", "margin_oracle_vs_oracle", "ours_vs_margin_oracle"))
        print(f"       {r['rps']:5g} {r['cv']:4g} {r['ratio']:4g} {r['baseline_rate']:6.3f} "
              f"{r['margin']:5.2f}  {r['detected']:.2f}  {looks}  {ratios}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seed": args.seed, "runs": args.runs,
                                     "power_runs": args.power_runs, "nulls": nulls,
                                     "power": power, "margin_power": margin}, indent=1)
                         + "\n")
    print(f"{time.time() - began:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
