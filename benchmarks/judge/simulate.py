"""Seeded simulated canaries as ``canary-dataset/v1`` datasets, with the truth kept beside them.

Each canary is drawn interval by interval as Istio would count it: total requests ~ Poisson,
the canary's share ~ Binomial(total, weight) (weighted routing picks a side per request), 5xx
counts ~ Binomial(requests, error rate) and latency bucket counts ~ Multinomial(requests,
bucket probabilities) over Istio's default ``le`` bounds. Only counts are drawn, so a canary of
200 req/s costs the same as one of 0.05 req/s.

The true per-interval rates (after any jitter) are returned in ``Truth`` and never written to
the JSON: the oracle judge needs them, a real judge must not see them.

CLI::

    python benchmarks/judge/simulate.py --out DIR --seed S --good N --bad M
    python benchmarks/judge/simulate.py --examples examples/datasets
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr

from analyzer.judge.series import HistogramSeries, RatioSeries
from analyzer.metrics.dataset import Dataset, write_dataset

INTERVAL_SECONDS = 30.0
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
# Envoy/Istio default buckets of istio_request_duration_milliseconds.
ISTIO_BUCKETS_MS = np.array([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                             30000, 60000, 300000, 600000, 1800000, 3600000, math.inf])
# Argo Rollouts steps 5% → 25% → 50%, 10 min each.
DEFAULT_RAMP: tuple[float, ...] = (5.0,) * 20 + (25.0,) * 20 + (50.0,) * 20
# Latency jitter in bursty canaries is this fraction of the error-rate CV. A per-interval
# scale CV of 0.6 would widen the canary's pooled distribution so much (p99 ×1.6) that it
# would be a genuine tail regression, not a hard null.
LATENCY_JITTER_FRACTION = 1 / 3

Expected = Literal["pass", "fail"]


@dataclass(frozen=True)
class Latency:
    """A mixture of shifted lognormals in ms; each component is (share, median, sigma, offset)."""

    name: str
    components: tuple[tuple[float, float, float, float], ...]

    def with_tail(self, share: float, extra_ms: float) -> Latency:
        """``share`` of requests take ``extra_ms`` longer: the median stays, p99 moves."""
        body = tuple((s * (1 - share), m, sd, off) for s, m, sd, off in self.components)
        tail = tuple((s * share, m, sd, off + extra_ms) for s, m, sd, off in self.components)
        return Latency(f"{self.name}+tail", body + tail)

    def bucket_probs(self, scale: np.ndarray) -> np.ndarray:
        """Per-interval probabilities of each (non-cumulative) bucket, shape (intervals, buckets).

        Multiplying every latency by ``scale[t]`` is the same as reading the CDF at ``le/scale``.
        """
        x = ISTIO_BUCKETS_MS[None, :] / scale[:, None]
        cdf = np.zeros_like(x)
        for share, median, sigma, offset in self.components:
            above = x > offset
            z = np.log(np.where(above, x - offset, 1.0) / median) / sigma
            cdf += share * np.where(above, ndtr(z), 0.0)
        cdf[:, -1] = 1.0
        probs = np.clip(np.diff(cdf, axis=1, prepend=0.0), 0.0, None)
        return probs / probs.sum(axis=1, keepdims=True)


LOGNORMAL = Latency("lognormal", ((1.0, 40.0, 0.6, 0.0),))
# Cache hits and misses: the slow mode keeps p99 near 300 ms, under Flagger's 500 ms limit.
MIXTURE = Latency("mixture", ((0.85, 35.0, 0.5, 0.0), (0.15, 150.0, 0.5, 0.0)))
# A canary that answers 5xx at once.
FAST_ERRORS = Latency("fast-errors", ((1.0, 5.0, 0.5, 0.0),))


@dataclass(frozen=True)
class Arm:
    """What one side serves per interval, before per-interval jitter is drawn."""

    error_rate: np.ndarray
    latency: Latency
    latency_scale: np.ndarray
    error_cv: float = 0.0
    latency_cv: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A fully specified canary: family functions build these, ``simulate`` draws them."""

    family: str
    expected: Expected
    params: dict[str, str]
    traffic: np.ndarray  # expected total req/s per interval
    weights: np.ndarray  # canary weight (%) per interval
    canary: Arm
    baseline: Arm


@dataclass(frozen=True)
class Truth:
    """The true per-interval error probabilities and bucket probabilities of each side."""

    canary_error: np.ndarray
    baseline_error: np.ndarray
    canary_buckets: np.ndarray
    baseline_buckets: np.ndarray


@dataclass(frozen=True)
class Simulated:
    dataset: Dataset
    truth: Truth


def _gamma_jitter(rng: np.random.Generator, cv: float, n: int) -> np.ndarray:
    """Mean-1 Gamma multipliers with coefficient of variation ``cv`` (1 when cv is 0)."""
    if cv <= 0:
        return np.ones(n)
    return rng.gamma(1.0 / cv**2, cv**2, size=n)


def _realise(arm: Arm, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(arm.error_rate)
    error = np.clip(arm.error_rate * _gamma_jitter(rng, arm.error_cv, n), 0.0, 1.0)
    scale = arm.latency_scale * _gamma_jitter(rng, arm.latency_cv, n)
    return error, arm.latency.bucket_probs(scale)


def simulate(scenario: Scenario, rng: np.random.Generator, name: str) -> Simulated:
    """Draws one canary's per-interval counts."""
    totals = rng.poisson(scenario.traffic * INTERVAL_SECONDS)
    canary_n = rng.binomial(totals, scenario.weights / 100.0)
    baseline_n = totals - canary_n
    canary_error, canary_buckets = _realise(scenario.canary, rng)
    baseline_error, baseline_buckets = _realise(scenario.baseline, rng)
    errors = RatioSeries(rng.binomial(canary_n, canary_error), canary_n,
                         rng.binomial(baseline_n, baseline_error), baseline_n)
    latency = HistogramSeries(ISTIO_BUCKETS_MS.copy(), rng.multinomial(canary_n, canary_buckets),
                              rng.multinomial(baseline_n, baseline_buckets), "ms")
    intervals = len(scenario.weights)
    dataset = Dataset(
        name=name, interval_seconds=INTERVAL_SECONDS, start=START,
        timestamps=np.arange(1, intervals + 1) * INTERVAL_SECONDS,
        metrics={"error-rate": errors, "latency": latency},
        canary_weight=scenario.weights.astype(float),
        labels={"family": scenario.family, **scenario.params}, expected=scenario.expected)
    truth = Truth(canary_error, baseline_error, canary_buckets, baseline_buckets)
    return Simulated(dataset, truth)


# ---------------------------------------------------------------------------------------------
# Families. Each is a pure function of its parameters; randomness lives in ``simulate`` and in
# the corpus samplers below.


def _label(value: Any) -> str:
    if isinstance(value, Latency):
        return value.name
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _scenario(family: str, expected: Expected, params: dict[str, Any], traffic: np.ndarray,
              weights: Sequence[float], canary: Arm, baseline: Arm) -> Scenario:
    return Scenario(family, expected, {k: _label(v) for k, v in params.items()},
                    np.asarray(traffic, float), np.asarray(weights, float), canary, baseline)


def _arm(n: int, error_rate: float | np.ndarray, latency: Latency,
         scale: float | np.ndarray = 1.0, **jitter: float) -> Arm:
    return Arm(np.broadcast_to(np.asarray(error_rate, float), (n,)).copy(), latency,
               np.broadcast_to(np.asarray(scale, float), (n,)).copy(), **jitter)


def healthy(traffic: float = 20.0, p0: float = 0.005, latency: Latency = LOGNORMAL,
            weights: Sequence[float] = DEFAULT_RAMP, family: str = "healthy") -> Scenario:
    """Canary identical to the baseline: the plain null."""
    n = len(weights)
    return _scenario(family, "pass", {"traffic": traffic, "p0": p0, "latency": latency},
                     np.full(n, traffic), weights, _arm(n, p0, latency), _arm(n, p0, latency))


def low_traffic(traffic: float = 0.2, p0: float = 0.01, latency: Latency = LOGNORMAL,
                weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """A healthy canary with a handful of requests per interval: honest judges stay quiet."""
    return healthy(traffic, p0, latency, weights, family="low-traffic")


def bursty(traffic: float = 20.0, p0: float = 0.005, canary_cv: float = 0.5,
           baseline_cv: float = 0.1, latency: Latency = LOGNORMAL,
           weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """Arm-specific per-interval jitter of the error rate and latency scale (mean 1).

    A canary of few pods jitters more than the baseline. The labels of errors are then
    overdispersed relative to the binomial split, which breaks naive e-processes
    (docs/statistics.md, "Why not just temper everything") although the canary is no worse
    on average.
    """
    n = len(weights)
    canary = _arm(n, p0, latency, error_cv=canary_cv,
                  latency_cv=canary_cv * LATENCY_JITTER_FRACTION)
    baseline = _arm(n, p0, latency, error_cv=baseline_cv,
                    latency_cv=baseline_cv * LATENCY_JITTER_FRACTION)
    params = {"traffic": traffic, "p0": p0, "canary_cv": canary_cv, "baseline_cv": baseline_cv,
              "latency": latency}
    return _scenario("bursty", "pass", params, np.full(n, traffic), weights, canary, baseline)


def shared_incident(traffic: float = 20.0, p0: float = 0.005, spike_rate: float = 0.4,
                    start: int = 30, duration: int = 3, latency_factor: float = 3.0,
                    latency: Latency = LOGNORMAL,
                    weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """A dependency outage hits both sides alike: not the canary's fault (DESIGN §5)."""
    n = len(weights)
    error = np.full(n, p0)
    scale = np.ones(n)
    error[start:start + duration] = spike_rate
    scale[start:start + duration] = latency_factor
    params = {"traffic": traffic, "p0": p0, "spike_rate": spike_rate, "start": start,
              "duration": duration, "latency": latency}
    return _scenario("shared-incident", "pass", params, np.full(n, traffic), weights,
                     _arm(n, error, latency, scale), _arm(n, error, latency, scale))


def improvement(traffic: float = 20.0, p0: float = 0.005, latency: Latency = LOGNORMAL,
                weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """The canary is better (half the errors, 10% faster): a one-sided judge must pass it."""
    n = len(weights)
    return _scenario("improvement", "pass", {"traffic": traffic, "p0": p0, "latency": latency},
                     np.full(n, traffic), weights, _arm(n, p0 * 0.5, latency, 0.9),
                     _arm(n, p0, latency))


def diurnal(traffic: float = 20.0, p0: float = 0.005, amplitude: float = 0.3,
            period_minutes: float = 60.0, phase: float = 0.0, latency: Latency = LOGNORMAL,
            weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """Traffic swings ±30% and both sides' error rate and latency swing with it.

    The cycle is compressed to ``period_minutes`` so that a 30-minute ramp sees it move.
    Common-mode load effects must cancel; pooling counts across weight steps would not.
    """
    n = len(weights)
    minutes = np.arange(n) * INTERVAL_SECONDS / 60.0
    load = 1.0 + amplitude * np.sin(2 * np.pi * minutes / period_minutes + phase)
    arm = _arm(n, p0 * load, latency, 1.0 + (load - 1.0) / 3.0)
    params = {"traffic": traffic, "p0": p0, "amplitude": amplitude,
              "period_minutes": period_minutes, "phase": round(phase, 3), "latency": latency}
    return _scenario("diurnal", "pass", params, traffic * load, weights, arm, arm)


def error_regression(traffic: float = 20.0, p0: float = 0.005, ratio: float = 2.0,
                     latency: Latency = LOGNORMAL,
                     weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """The canary's 5xx rate is ``ratio`` × the baseline's from the first request."""
    n = len(weights)
    params = {"traffic": traffic, "p0": p0, "ratio": ratio, "latency": latency}
    return _scenario("error-regression", "fail", params, np.full(n, traffic), weights,
                     _arm(n, min(1.0, p0 * ratio), latency), _arm(n, p0, latency))


def latency_regression(traffic: float = 20.0, p0: float = 0.005, factor: float = 1.3,
                       latency: Latency = LOGNORMAL,
                       weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """Every canary request is ``factor`` × slower (the whole distribution scales)."""
    n = len(weights)
    params = {"traffic": traffic, "p0": p0, "factor": factor, "latency": latency}
    return _scenario("latency-regression", "fail", params, np.full(n, traffic), weights,
                     _arm(n, p0, latency, factor), _arm(n, p0, latency))


def tail_regression(traffic: float = 20.0, p0: float = 0.005, share: float = 0.05,
                    extra_ms: float = 300.0, latency: Latency = LOGNORMAL,
                    weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """``share`` of canary requests take ``extra_ms`` longer: median unchanged, p99 moves."""
    n = len(weights)
    params = {"traffic": traffic, "p0": p0, "share": share, "extra_ms": extra_ms,
              "latency": latency}
    return _scenario("tail-regression", "fail", params, np.full(n, traffic), weights,
                     _arm(n, p0, latency.with_tail(share, extra_ms)), _arm(n, p0, latency))


def load_dependent(traffic: float = 20.0, p0: float = 0.005, metric: str = "errors",
                   worst: float = 3.0, latency: Latency = LOGNORMAL,
                   weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """The canary degrades with its share of load: fine at 5%, ``worst`` × at 50%.

    ``metric`` is "errors" (error rate × worst) or "latency" (latency × worst).
    """
    n = len(weights)
    w = np.asarray(weights, float)
    multiplier = 1.0 + (worst - 1.0) * np.clip((w - 5.0) / 45.0, 0.0, 1.0)
    if metric == "errors":
        canary = _arm(n, np.minimum(1.0, p0 * multiplier), latency)
    else:
        canary = _arm(n, p0, latency, multiplier)
    params = {"traffic": traffic, "p0": p0, "metric": metric, "worst": worst,
              "latency": latency}
    return _scenario("load-dependent", "fail", params, np.full(n, traffic), weights, canary,
                     _arm(n, p0, latency))


def total_failure(traffic: float = 20.0, p0: float = 0.005, latency: Latency = LOGNORMAL,
                  weights: Sequence[float] = DEFAULT_RAMP) -> Scenario:
    """The canary answers every request with a fast 5xx."""
    n = len(weights)
    return _scenario("total-failure", "fail", {"traffic": traffic, "p0": p0, "latency": latency},
                     np.full(n, traffic), weights, _arm(n, 1.0, FAST_ERRORS),
                     _arm(n, p0, latency))


# ---------------------------------------------------------------------------------------------
# Corpus: parameters drawn per canary. Traffic 2–200 req/s covers ~60 to ~6,000 requests per
# interval; p0 0.1%–2% covers healthy services from quiet to noisy.

TRAFFIC = (2.0, 5.0, 20.0, 50.0, 200.0)
P0 = (0.001, 0.002, 0.005, 0.01, 0.02)
LATENCIES = (LOGNORMAL, MIXTURE)

Sampler = Callable[[np.random.Generator], dict[str, Any]]


def _common(rng: np.random.Generator) -> dict[str, Any]:
    return {"traffic": float(rng.choice(TRAFFIC)), "p0": float(rng.choice(P0)),
            "latency": LATENCIES[rng.integers(len(LATENCIES))]}


def _pick(rng: np.random.Generator, values: Sequence[Any]) -> Any:
    return values[rng.integers(len(values))]


GOOD: dict[str, tuple[Callable[..., Scenario], Sampler]] = {
    "healthy": (healthy, _common),
    "bursty": (bursty, lambda rng: {**_common(rng), "canary_cv": _pick(rng, (0.3, 0.45, 0.6)),
                                    "baseline_cv": _pick(rng, (0.05, 0.1, 0.2))}),
    "shared-incident": (shared_incident, lambda rng: {
        **_common(rng), "spike_rate": round(float(rng.uniform(0.3, 0.5)), 2),
        "start": int(rng.integers(5, 51)), "duration": int(rng.integers(2, 5))}),
    "low-traffic": (low_traffic, lambda rng: {**_common(rng),
                                              "traffic": _pick(rng, (0.05, 0.1, 0.2, 0.5))}),
    "improvement": (improvement, _common),
    "diurnal": (diurnal, lambda rng: {**_common(rng),
                                      "phase": float(rng.uniform(0, 2 * np.pi))}),
}
BAD: dict[str, tuple[Callable[..., Scenario], Sampler]] = {
    "error-regression": (error_regression,
                         lambda rng: {**_common(rng), "ratio": _pick(rng, (1.5, 2.0, 3.0, 5.0))}),
    "latency-regression": (latency_regression,
                           lambda rng: {**_common(rng), "factor": _pick(rng, (1.2, 1.3, 1.5))}),
    "tail-regression": (tail_regression, lambda rng: {
        **_common(rng), "share": _pick(rng, (0.02, 0.05)),
        "extra_ms": _pick(rng, (300.0, 1000.0, 2000.0))}),
    "load-dependent": (load_dependent, lambda rng: {
        **_common(rng), "metric": _pick(rng, ("errors", "latency")),
        "worst": 3.0 if rng.integers(2) else 2.0}),
    "total-failure": (total_failure, lambda rng: {**_common(rng),
                                                  "traffic": _pick(rng, (0.5, *TRAFFIC))}),
}


def _draw(families: dict[str, tuple[Callable[..., Scenario], Sampler]], seed: int, kind: int,
          index: int) -> Simulated:
    """Canary ``index`` of a kind depends only on (seed, kind, index): corpora of different
    sizes share their first canaries, so a quick run is a prefix of the full one."""
    names = list(families)
    family = names[index % len(names)]
    build, sample = families[family]
    rng = np.random.default_rng([seed, kind, index])
    return simulate(build(**sample(rng)), rng, f"{family}-{index:04d}")


def build_corpus(seed: int, n_good: int, n_bad: int) -> list[Simulated]:
    """``n_good`` good canaries then ``n_bad`` bad ones, families taken in turn."""
    return ([_draw(GOOD, seed, 0, i) for i in range(n_good)]
            + [_draw(BAD, seed, 1, i) for i in range(n_bad)])


def examples() -> dict[str, Simulated]:
    """The three datasets ``make demo`` replays: 1% baseline errors on a 5→25→50% ramp.

    The healthy canary has 200 req/s so that by the promotion gate it has enough errors to
    show it stays within 1.25× (at 20 req/s the gate would honestly answer inconclusive);
    the regressions have 20 req/s, where failing them takes a few minutes.
    """
    scenarios = {"healthy": healthy(traffic=200.0, p0=0.01),
                 "error-regression": error_regression(traffic=20.0, p0=0.01, ratio=4.0),
                 "latency-regression": latency_regression(traffic=20.0, p0=0.01, factor=1.5)}
    return {name: simulate(scenario, np.random.default_rng([2026, i]), name)
            for i, (name, scenario) in enumerate(scenarios.items())}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write a corpus of datasets to this directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--good", type=int, default=60)
    parser.add_argument("--bad", type=int, default=50)
    parser.add_argument("--examples", type=Path, help="write the bundled demo datasets here")
    args = parser.parse_args(argv)
    if args.out is None and args.examples is None:
        parser.error("give --out DIR and/or --examples DIR")
    if args.examples is not None:
        args.examples.mkdir(parents=True, exist_ok=True)
        for name, sim in examples().items():
            write_dataset(sim.dataset, args.examples / f"{name}.json")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        corpus = build_corpus(args.seed, args.good, args.bad)
        for sim in corpus:
            write_dataset(sim.dataset, args.out / f"{sim.dataset.name}.json")
        print(f"wrote {len(corpus)} datasets to {args.out}")


if __name__ == "__main__":
    main()
