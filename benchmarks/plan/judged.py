"""The plan's predictions against the real judge: simulated canaries on a ramp, judged look by look.

Each canary is drawn interval by interval as Istio counts it (requests ~ Poisson, the canary's
share ~ Binomial(requests, weight), errors ~ Binomial(requests, rate)) and judged on every
growing head by ``analyzer.judge.evaluate.judge`` with ``final=True`` (a look where the gate
would pass) exactly as the service and ``replay`` do. Per canary: the first look that fails and
the first look at which the gate passes. A cell compares them with the plan's forecast for the
same ramp and traffic (``analyzer.planning.forecast``): the share of 2× canaries failed by the
plan's 95% time, the share of equal canaries passed by the plan's median time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analyzer.config import CanaryConfig, default_config
from analyzer.judge.evaluate import judge, log_levels
from analyzer.judge.series import RatioSeries
from analyzer.planning.forecast import Margin, Ramp, Traffic, crossing_seconds, quantile_seconds

METRIC = "error-rate"


@dataclass(frozen=True)
class Cell:
    requests_per_second: float
    error_rate: float
    ratio: float  # the canary's true error-rate ratio: 1 equal, 2 a regression


def simulate_canary(ramp: Ramp, cell: Cell, rng: np.random.Generator) -> RatioSeries:
    total = rng.poisson(cell.requests_per_second * ramp.interval_seconds, len(ramp.shares))
    nc = rng.binomial(total, ramp.shares)
    nb = total - nc
    rate_c = min(cell.error_rate * cell.ratio, 1.0)
    return RatioSeries(rng.binomial(nc, rate_c), nc, rng.binomial(nb, cell.error_rate), nb)


def decision_seconds(series: RatioSeries, ramp: Ramp, config: CanaryConfig, *, want: str
                     ) -> float:
    """Seconds to the first look whose verdict is ``want`` (``fail``; ``pass`` as the gate);
    inf when none is. Stops at a fail either way: the rollout would have aborted there."""
    for k in range(1, len(series) + 1):
        verdict = judge({METRIC: series.head(k)}, config, final=True, intervals=False,
                        data_seconds=k * ramp.interval_seconds).verdict
        if verdict == want:
            return k * ramp.interval_seconds
        if verdict == "fail":
            return math.inf
    return math.inf


def margin_of(config: CanaryConfig) -> Margin:
    metric = config.metric(METRIC)
    assert metric is not None
    return Margin(metric.margin_increase, metric.allowed_absolute_increase)


def thresholds(config: CanaryConfig) -> tuple[float, float]:
    """Log thresholds of the fail test and of the gate, as the judge sets them."""
    return log_levels(config)


def check_cell(cell: Cell, ramp: Ramp, runs: int, seed: int,
               config: CanaryConfig | None = None) -> dict:
    """One grid cell: the plan's quantile and the real judge's share decided by then."""
    config = config or default_config()
    fail_k, gate_k = thresholds(config)
    upward = cell.ratio > 1.0
    traffic = Traffic(cell.requests_per_second, cell.error_rate)
    q = 0.95 if upward else 0.5
    model = crossing_seconds(ramp, traffic, cell.ratio, margin_of(config),
                             fail_k if upward else gate_k, upward=upward)
    predicted = quantile_seconds(model, q)
    if predicted is None:  # "never within the horizon": a fifth of the runs checks that
        runs = max(runs // 5, 1)
    rng = np.random.default_rng(seed)
    times = np.array([decision_seconds(simulate_canary(ramp, cell, rng), ramp, config,
                                       want="fail" if upward else "pass")
                      for _ in range(runs)])
    decided = float(np.mean(times <= (ramp.seconds if predicted is None else predicted)))
    observed = float(np.quantile(times, q, method="higher"))
    return {"requests_per_second": cell.requests_per_second, "error_rate": cell.error_rate,
            "ratio": cell.ratio, "claim": "fail_95" if upward else "gate_median",
            "quantile": q, "runs": runs, "predicted_seconds": predicted,
            "observed_seconds": None if math.isinf(observed) else observed,
            "decided_by_predicted": decided,
            "standard_error": math.sqrt(q * (1 - q) / runs)}
