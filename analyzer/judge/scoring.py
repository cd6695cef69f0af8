"""Kayenta-style scoring and the verdict policy of DESIGN §5.

Scoring follows NetflixACAJudge: a group scores the share of its countable metrics that
pass (no-data metrics do not count; a group with nothing countable scores 100), groups are
weighted, and any critical metric showing harm zeroes the score. Unlike Kayenta, weights are
normalised over the groups that have metrics, so a config listing an unused group does not
cap every score below 100.

The verdict policy: ``fail`` as soon as a critical metric (or the score) shows harm;
otherwise ``pass`` while no harm is shown; at the promotion gate (``final``) ``pass`` also
needs positive evidence that every critical metric is within its margin, else
``inconclusive`` so that Rollouts pauses and a human decides.
"""

from __future__ import annotations

from collections import defaultdict

from analyzer.config.models import CanaryConfig
from analyzer.judge.results import Judgement, MetricResult, Verdict
from analyzer.judge.traffic import TrafficCheck


def group_scores(results: list[MetricResult]) -> dict[str, float]:
    passed: dict[str, int] = defaultdict(int)
    counted: dict[str, int] = defaultdict(int)
    for result in results:
        if result.muted:
            continue
        counted.setdefault(result.group, 0)
        if result.classification in ("nodata", "error") and not result.counts_as_failure:
            continue
        counted[result.group] += 1
        if not result.harmful:
            passed[result.group] += 1
    return {g: (100.0 * passed[g] / n if n else 100.0) for g, n in counted.items()}


def weighted_score(scores: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted mean of group scores; groups without a configured weight share the rest."""
    if not scores:
        return 100.0
    given = {g: weights[g] for g in scores if g in weights}
    missing = [g for g in scores if g not in weights]
    rest = max(100.0 - sum(weights.values()), 0.0)
    share = rest / len(missing) if missing else 0.0
    effective = {**given, **dict.fromkeys(missing, share)}
    total = sum(effective.values())
    if total <= 0:  # every group weighted 0: fall back to equal weights
        effective = dict.fromkeys(scores, 1.0)
        total = float(len(scores))
    return round(sum(scores[g] * w for g, w in effective.items()) / total, 2)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _span(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f", interval [{interval[0]:.3g}, {interval[1]:.3g}]"


def _describe(result: MetricResult) -> str:
    return f"{result.name}: {result.reason}"


def needs_text(result: MetricResult) -> str:
    """"needs ≈ N more canary errors, ≈ T min at current traffic", or why no figure."""
    gate = result.gate
    if gate is None:
        return "no estimate of the evidence still needed"
    if gate["needed_events"] is None:
        return ("the current estimate is not inside the margin, so more of the same data "
                "would not pass")
    text = f"needs ≈ {gate['needed_events']:.0f} more {gate['unit']}"
    if gate["eta_seconds"] is not None:
        text += f", ≈ {gate['eta_seconds'] / 60:.0f} min at current traffic"
    return text


def _unproven(result: MetricResult) -> str:
    margin = f"{result.allowed:g}x"
    if result.allowed_absolute > 0:
        margin = f"max({margin}, +{100 * result.allowed_absolute:g} points)"
    return (f"{result.name} stays within {margin} of the baseline (canary/baseline "
            f"{_ratio(result.effect)}{_span(result.interval)}; {needs_text(result)})")


def gated(results: list[MetricResult]) -> list[MetricResult]:
    """The metrics the promotion gate needs inside their margin: the critical ones, or every
    sequential one when none is critical."""
    return [r for r in results if r.critical] or [r for r in results if r.threshold is not None]


def decide(results: list[MetricResult], config: CanaryConfig, *, final: bool,
           data_seconds: float | None = None, traffic: TrafficCheck | None = None) -> Judgement:
    """The verdict. A traffic-split mismatch turns ``pass`` into ``inconclusive`` but never
    overrides ``fail``: the comparisons condition on the observed split and stay valid."""
    judgement = _decide(results, config, final=final, data_seconds=data_seconds)
    if judgement.verdict == "pass" and traffic is not None and not traffic.split_ok:
        return Judgement(Verdict.INCONCLUSIVE, judgement.score, f"traffic split: {traffic.reason}",
                         judgement.metrics, traffic)
    return Judgement(judgement.verdict, judgement.score, judgement.reason, judgement.metrics,
                     traffic)


def _decide(results: list[MetricResult], config: CanaryConfig, *, final: bool,
            data_seconds: float | None) -> Judgement:
    active = [r for r in results if not r.muted]
    score = weighted_score(group_scores(active), config.groups)
    critical_harm = [r for r in active if r.critical and r.harmful]
    if critical_harm:
        reason = "critical metric shows a regression: " + "; ".join(map(_describe, critical_harm))
        return Judgement(Verdict.FAIL, 0.0, reason, tuple(results))
    harmful = [r for r in active if r.harmful]
    settings = config.judge
    if score < settings.marginal_score:
        reason = (f"score {score:g} is below the marginal score {settings.marginal_score:g}: "
                  + "; ".join(map(_describe, harmful)))
        return Judgement(Verdict.FAIL, score, reason, tuple(results))
    if score < settings.pass_score:
        reason = (f"score {score:g} is marginal (pass needs {settings.pass_score:g}): "
                  + "; ".join(map(_describe, harmful)))
        return Judgement(Verdict.INCONCLUSIVE, score, reason, tuple(results))
    unproven = [r for r in gated(active) if not r.within_margin]
    if final and unproven:
        reason = "promotion gate: not enough evidence yet that " + "; ".join(
            map(_unproven, unproven))
        return Judgement(Verdict.INCONCLUSIVE, score, reason, tuple(results))
    nodata = [r for r in active if r.classification == "nodata"]
    span = f", {data_seconds / 60:.0f} min of data" if data_seconds is not None else ""
    if harmful:
        reason = (f"score {score:g} passes although some metrics show a change: "
                  + "; ".join(map(_describe, harmful)))
    elif final:
        reason = f"every gated metric is within its margin ({len(active)} metrics{span})"
    else:
        reason = f"no metric shows a regression ({len(active)} metrics{span})"
    if nodata:
        reason += "; not enough data yet for " + ", ".join(r.name for r in nodata)
    if not final and unproven:
        reason += "; for the promotion gate " + "; ".join(
            f"{r.name} {needs_text(r)}" for r in unproven if r.classification != "nodata")
    return Judgement(Verdict.PASS, score, reason, tuple(results))
