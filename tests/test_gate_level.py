"""The promotion gate's level ``judge.gate_alpha``, checked by seeded simulation.

A canary exactly at its margin must pass the gate at most about ``gate_alpha`` of the time
(a binomial upper quantile for the number of runs), and a canary at max(2×, +0.5 points) of
the baseline's error rate, the false promotion that matters, essentially never. One judgement
with ``final=True`` after a 30-minute 5 → 25 → 50% ramp, as Argo Rollouts' last look.
"""

from __future__ import annotations

import numpy as np
import pytest
import simulation as sim
from scipy.stats import binom

from analyzer.config import CanaryConfig, default_config
from analyzer.judge.evaluate import judge, log_levels

pytestmark = pytest.mark.slow  # a seeded simulation study: ~10 s


def _config(gate_alpha: float, ratio: float, absolute: float) -> CanaryConfig:
    config = default_config()
    metrics = tuple(m.model_copy(update={"allowed_increase": ratio,
                                         "allowed_absolute_increase": absolute})
                    if m.name == "error-rate" else m for m in config.metrics)
    judge_settings = config.judge.model_copy(update={"gate_alpha": gate_alpha})
    return config.model_copy(update={"metrics": metrics, "judge": judge_settings})


def _promoted(config: CanaryConfig, rng: np.random.Generator, runs: int, *, rps: float,
              p0: float, ratio: float) -> int:
    return sum(judge({"error-rate": sim.errors(rng, rps=rps, p0=p0, ratio=ratio)}, config,
                     final=True, intervals=False).verdict == "pass" for _ in range(runs))


def _bound(runs: int, level: float) -> int:
    """Largest promotion count still consistent with a rate of ``level`` (one-sided 0.1%)."""
    return int(binom.ppf(0.999, runs, level))


def test_gate_alpha_sets_only_the_gate_level():
    config = _config(0.1, 1.5, 0.0025)
    log_fail, log_gate = log_levels(config)
    assert np.isclose(np.exp(log_gate), 10.0)
    assert np.isclose(np.exp(log_fail), config.sequential_count / config.judge.alpha)


@pytest.mark.parametrize(("p0", "ratio", "absolute", "at"), [
    (0.01, 1.25, 0.0, 1.25),      # at the ratio margin: 1.25% on a 1% baseline
    (0.001, 1.25, 0.001, 2.0),    # at the absolute margin: 0.2% on a 0.1% baseline
])
def test_a_canary_at_its_margin_is_promoted_at_most_gate_alpha(p0, ratio, absolute, at):
    """At 1000 req/s the gate has the errors to pass a canary inside its margin (see the
    next test), so this bound is tested where the gate is live. The gate is conservative at
    the edge (0-1 of 120 here even at gate_alpha 0.3); the bound is what the level promises."""
    rng = np.random.default_rng(20261130)
    runs, level = 120, 0.1
    promoted = _promoted(_config(level, ratio, absolute), rng, runs, rps=1000, p0=p0, ratio=at)
    assert promoted <= _bound(runs, level), f"{promoted}/{runs} promoted at the margin"


def test_a_looser_gate_level_promotes_more_canaries_inside_the_margin():
    """The same canaries (1.15× on a 1% baseline, margin 1.25×) judged at gate_alpha 0.01 and
    0.1: the looser level passes clearly more of them (90 against 50 of 120 with seed 1), so
    the key reaches the gate and a gate that never passes cannot satisfy the tests above."""
    runs = 60
    strict = _promoted(_config(0.01, 1.25, 0.0), np.random.default_rng(20261131), runs,
                       rps=1000, p0=0.01, ratio=1.15)
    loose = _promoted(_config(0.1, 1.25, 0.0), np.random.default_rng(20261131), runs,
                      rps=1000, p0=0.01, ratio=1.15)
    assert loose >= strict + runs // 10, (strict, loose)
    assert loose >= runs // 2, (strict, loose)


@pytest.mark.parametrize("p0", [0.001, 0.01])
def test_a_clearly_worse_canary_is_never_promoted(p0):
    """max(2×, +0.5 points) of the baseline under the default config, at high traffic."""
    rng = np.random.default_rng(20261132)
    runs = 100
    worse = max(2.0, 1.0 + 0.005 / p0)
    promoted = _promoted(default_config(), rng, runs, rps=1000, p0=p0, ratio=worse)
    assert promoted == 0, f"{promoted}/{runs} clearly worse canaries promoted"
