"""``canary-analyzer plan``: per step and metric, when the judge would decide; steps that let it.

For every sequential metric and both the quiet and the busy hour of the history: the expected
canary traffic and events of each step, when 95% of canaries with a 2× (and ``--regression``)
higher event rate have failed, and when half of the canaries equal to the baseline pass the
gate, both for each step on its own ("a canary started at this weight") and along the whole
ramp (evidence carries over between steps: one session judges all data since the revision).
The suggested steps keep the weights and scale the durations until the gated metrics' gate
passes an equal canary by the end of the ramp at the quiet hour; when no ramp up to
``max_seconds`` does, the plan says so and what would: a larger weight, a longer ramp, a looser
absolute margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from analyzer.config.models import CanaryConfig, MetricConfig
from analyzer.judge.evaluate import log_levels
from analyzer.planning.forecast import (
    Margin,
    Ramp,
    Traffic,
    crossing_seconds,
    quantile_seconds,
)
from analyzer.planning.history import Profile
from analyzer.planning.steps import Step, format_duration, to_yaml

FORMAT = "canary-plan/v1"
FAIL_QUANTILE = 0.95
GATE_QUANTILE = 0.5
_RUNS = 200
_ADVICE_RUNS = 100
_ABSOLUTE_CHOICES = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class Settings:
    config: CanaryConfig
    steps: tuple[Step, ...]
    profile: Profile
    interval_seconds: float = 30.0
    regression: float = 2.0
    max_seconds: float = 4 * 3600.0


@dataclass(frozen=True)
class MetricModel:
    """What the plan knows of one metric: its event rate, margin and thresholds."""

    metric: MetricConfig
    event_rate: float
    margin: Margin
    unit: str
    gated: bool


def _models(settings: Settings) -> tuple[list[MetricModel], list[str]]:
    config, notes = settings.config, []
    sequential = [m for m in config.metrics if m.sequential and not m.muted]
    critical = [m for m in sequential if m.critical]
    gated = {m.name for m in (critical or sequential)}
    out = []
    for metric in sequential:
        if metric.direction == "decrease":
            notes.append(f"{metric.name}: harm is a decrease; not planned")
            continue
        if metric.resolved_type == "ratio":
            rate = settings.profile.event_rates.get(metric.name)
            if rate is None or rate <= 0:
                notes.append(f"{metric.name}: the history has no events of this metric; "
                              f"not planned")
                continue
            out.append(MetricModel(metric, rate, Margin(metric.margin_increase,
                                                        metric.allowed_absolute_increase),
                                   "errors", metric.name in gated))
        else:
            q = max(metric.quantiles)
            # The slowest threshold the judge tests sits near the baseline's top quantile:
            # its exceedance share is about 1 − q. A latency ratio margin other than 1.0
            # cannot be turned into a share margin without the histogram; 1.0 is exact.
            if metric.margin_increase != 1.0:
                notes.append(f"{metric.name}: allowed_increase {metric.margin_increase:g} is "
                             f"planned as 1.0 on the share of requests slower than p{q * 100:g}")
            out.append(MetricModel(metric, 1.0 - q, Margin(1.0), f"requests slower than "
                                   f"p{q * 100:g}", metric.name in gated))
    return out, notes




def _fail_seconds(ramp: Ramp, traffic: Traffic, model: MetricModel, ratio: float,
                  log_k: float, runs: int = _RUNS) -> float | None:
    ratio = min(ratio, 1.0 / traffic.event_rate)
    times = crossing_seconds(ramp, traffic, ratio, model.margin, log_k, upward=True, runs=runs)
    return quantile_seconds(times, FAIL_QUANTILE)


def _gate_seconds(ramp: Ramp, traffic: Traffic, model: MetricModel, log_k: float,
                  runs: int = _RUNS) -> float | None:
    if model.margin.allowed_increase <= 1.0 and model.margin.absolute <= 0:
        return None  # an equal canary sits on the margin: no evidence ever accrues
    times = crossing_seconds(ramp, traffic, 1.0, model.margin, log_k, upward=False, runs=runs)
    return quantile_seconds(times, GATE_QUANTILE)


def _regressions(settings: Settings) -> list[float]:
    return sorted({2.0, settings.regression})


def _key(ratio: float) -> str:
    return f"{ratio:g}x"


def _at_traffic(settings: Settings, model: MetricModel, rps: float) -> dict[str, Any]:
    fail_k, gate_k = log_levels(settings.config)
    traffic = Traffic(rps, model.event_rate)
    hold = settings.max_seconds
    steps = []
    for step in settings.steps:
        alone = Ramp.from_steps([(step.weight, step.seconds)], settings.interval_seconds, hold)
        requests = rps * step.seconds * step.weight / 100.0
        steps.append({
            "weight": step.weight, "seconds": step.seconds,
            "canary_requests": round(requests, 1),
            "canary_events": round(requests * model.event_rate, 2),
            "fail_95_seconds": {_key(r): _fail_seconds(alone, traffic, model, r, fail_k)
                                for r in _regressions(settings)},
            "gate_50_seconds": _gate_seconds(alone, traffic, model, gate_k)})
    pairs = [(s.weight, s.seconds) for s in settings.steps]
    ramp = Ramp.from_steps(pairs, settings.interval_seconds, hold)
    total = sum(s.seconds for s in settings.steps)
    gate = _gate_seconds(ramp, traffic, model, gate_k)
    return {"requests_per_second": round(rps, 3), "steps": steps,
            "ramp": {"seconds": total,
                     "fail_95_seconds": {_key(r): _fail_seconds(ramp, traffic, model, r, fail_k)
                                         for r in _regressions(settings)},
                     "gate_50_seconds": gate,
                     "gate_decides": gate is not None and gate <= total}}


def _scaled(steps: tuple[Step, ...], factor: float, interval: float) -> tuple[Step, ...]:
    """Durations times ``factor``, in whole minutes, at least two intervals each."""
    return tuple(Step(s.weight, max(60.0 * math.ceil(s.seconds * factor / 60.0 - 1e-9),
                                    2 * interval)) for s in steps)


def _decides(settings: Settings, models: list[MetricModel], steps: tuple[Step, ...],
             rps: float, runs: int = _RUNS) -> bool:
    """Does every gated metric's gate pass half of the equal canaries by the ramp's end?"""
    _, gate_k = log_levels(settings.config)
    ramp = Ramp.from_steps([(s.weight, s.seconds) for s in steps], settings.interval_seconds)
    for model in models:
        seconds = _gate_seconds(ramp, Traffic(rps, model.event_rate), model, gate_k, runs)
        if seconds is None or seconds > ramp.seconds:
            return False
    return True


def _total(steps: tuple[Step, ...]) -> float:
    return sum(s.seconds for s in steps)


def _suggest(settings: Settings, models: list[MetricModel], rps: float) -> dict[str, Any]:
    gated = [m for m in models if m.gated]
    base = settings.steps
    if not gated:
        return {"decides": False, "steps": None, "yaml": None,
                "advice": ["no gated metric can be planned: nothing for the gate to decide"]}
    top = settings.max_seconds / _total(base)
    if not _decides(settings, gated, _scaled(base, top, settings.interval_seconds), rps):
        return {"decides": False, "steps": None, "yaml": None,
                "advice": _advice(settings, gated, rps)}
    low, high = 0.0, top
    for _ in range(10):
        middle = (low + high) / 2
        if _decides(settings, gated, _scaled(base, middle, settings.interval_seconds), rps):
            high = middle
        else:
            low = middle
    steps = _scaled(base, high, settings.interval_seconds)
    return {"decides": True, "steps": [{"weight": s.weight, "seconds": s.seconds}
                                       for s in steps],
            "seconds": _total(steps), "yaml": to_yaml(steps), "advice": []}


def _advice(settings: Settings, gated: list[MetricModel], rps: float) -> list[str]:
    """What would let the gate decide: a larger last weight, a longer ramp, a looser absolute
    margin (each alone, everything else as given, at the quiet hour)."""
    out = []
    longest = _scaled(settings.steps, settings.max_seconds / _total(settings.steps),
                      settings.interval_seconds)
    last = settings.steps[-1].weight
    for weight in range(int(last // 10 * 10 + 10), 91, 10):  # 100% leaves no baseline
        steps = (*longest[:-1], replace(longest[-1], weight=float(weight)))
        if _decides(settings, gated, steps, rps, _ADVICE_RUNS):
            out.append(f"a larger weight: the last step at {weight}% decides within "
                       f"{format_duration(settings.max_seconds)}")
            break
    for hours in (8, 24, 72):
        steps = _scaled(settings.steps, hours * 3600.0 / _total(settings.steps),
                        settings.interval_seconds)
        if _decides(settings, gated, steps, rps, _ADVICE_RUNS):
            out.append(f"a longer ramp: the same weights over {hours}h decide")
            break
    for model in gated:
        if model.metric.resolved_type != "ratio":
            continue
        for absolute in _ABSOLUTE_CHOICES:
            if absolute <= model.margin.absolute:
                continue
            looser = replace(model, margin=replace(model.margin, absolute=absolute))
            others = [m for m in gated if m is not model]
            if _decides(settings, [*others, looser], longest, rps, _ADVICE_RUNS):
                out.append(f"a looser absolute margin: {model.metric.name} "
                           f"allowed_absolute_increase: {absolute:g} "
                           f"(+{absolute * 100:g} points) decides within "
                           f"{format_duration(settings.max_seconds)}")
                break
    if not out:
        out.append("none of a last weight of up to 90%, a ramp of up to 72h or an absolute "
                   "margin of up to 5 points lets the gate decide: the Service has too "
                   "little traffic or too few events for its margins")
    return out


def make_plan(settings: Settings) -> dict[str, Any]:
    """The plan as a JSON-ready dict (shape: docs/plan.md)."""
    models, notes = _models(settings)
    profile = settings.profile
    quiet, busy = profile.quiet, profile.busy
    if len(profile.hourly_requests_per_second) < 24:
        notes.append(f"the history covers {len(profile.hourly_requests_per_second)} hour(s): "
                     f"quiet and busy hours are estimated from less than a day")
    metrics = []
    for model in models:
        at_quiet = _at_traffic(settings, model, quiet)
        metrics.append({
            "name": model.metric.name, "gated": model.gated, "events": model.unit,
            "event_rate": model.event_rate,
            "margin": {"allowed_increase": model.margin.allowed_increase,
                       "allowed_absolute_increase": model.margin.absolute},
            "quiet": at_quiet,
            "busy": at_quiet if busy == quiet else _at_traffic(settings, model, busy)})
    suggestion = _suggest(settings, models, quiet)
    return {"format": FORMAT, "config": settings.config.name,
            "alpha": settings.config.judge.alpha,
            "gate_alpha": settings.config.judge.gate_alpha,
            "interval_seconds": settings.interval_seconds,
            "max_seconds": settings.max_seconds,
            "regressions": [_key(r) for r in _regressions(settings)],
            "history": {"source": profile.source,
                        "hours": len(profile.hourly_requests_per_second),
                        "quiet_requests_per_second": round(quiet, 3),
                        "busy_requests_per_second": round(busy, 3)},
            "steps": [{"weight": s.weight, "seconds": s.seconds} for s in settings.steps],
            "metrics": metrics, "suggestion": suggestion, "notes": notes}
