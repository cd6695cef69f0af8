"""No verdict without evidence: what a judgement becomes when a gated metric has no data.

The statistics alone answer ``pass`` while no harm is shown, and a metric without data shows
no harm. That is right for a canary whose first requests are still arriving and wrong for a
canary whose selector has a typo, whose namespace is wrong, or whose Prometheus does not
scrape the mesh: such a canary would pass every look while answering 100% 5xx. So after a
short grace period (``judge.nodata_grace`` intervals) a gated metric with a side that saw no
events at all makes the answer ``inconclusive``, with the reason why. Few events are not no
events: a quiet canary with some requests is judged as usual (the tests stay valid however
little data there is). A ``fail`` is kept: it rests on evidence of harm.

A side whose selector matches no series at all gets no grace: series of a canary Service
outlive a release (a client's sidecar keeps exporting them), so "no series" at any look means
a typo, a wrong namespace or reporter, or a Prometheus that does not scrape the mesh, and it
does not get better by waiting. Only the live service can tell (it knows what the selectors
matched) and says so in ``diagnoses``; otherwise the rules read only the per-interval data and
the config, so the live service and ``replay`` apply them identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from analyzer.config.models import CanaryConfig
from analyzer.judge.results import Classification, Judgement, Verdict
from analyzer.judge.scoring import gated
from analyzer.judge.series import GaugeSeries, HistogramSeries, MetricSeries, RatioSeries

SIDES = ("canary", "baseline")


@dataclass(frozen=True)
class Missing:
    """What the caller found out about a metric's empty side: ``text`` for the reason, and
    ``unmatched`` when a selector matches no series at all (no grace period then)."""

    text: str
    unmatched: bool = False


def events(series: MetricSeries | None) -> tuple[float, float]:
    """Events per side over the window: requests (ratio, histogram) or gauge samples."""
    if series is None or len(series) == 0:
        return (0.0, 0.0)
    if isinstance(series, RatioSeries):
        return float(np.sum(series.canary_den)), float(np.sum(series.baseline_den))
    if isinstance(series, HistogramSeries):
        return float(np.sum(series.canary)), float(np.sum(series.baseline))
    if isinstance(series, GaugeSeries):
        return (float(np.sum(np.isfinite(series.canary))),
                float(np.sum(np.isfinite(series.baseline))))
    raise TypeError(type(series).__name__)  # pragma: no cover - three series types exist


def empty_sides(series: MetricSeries | None) -> tuple[str, ...]:
    """The sides (``canary``, ``baseline``) with no events at all."""
    return tuple(side for side, total in zip(SIDES, events(series), strict=True) if total <= 0)


def _no_events_text(name: str, series: MetricSeries | None, diagnosis: Missing | None) -> str:
    if diagnosis is not None:
        return f"{name}: {diagnosis.text}"
    totals = dict(zip(SIDES, events(series), strict=True))
    empty = [side for side in SIDES if totals[side] <= 0]
    if len(empty) == 2:
        return f"{name}: no data on either side"
    other = "baseline" if empty[0] == "canary" else "canary"
    unit = "samples" if isinstance(series, GaugeSeries) else "requests"
    return f"{name}: the {empty[0]} has no {unit} while the {other} has {totals[other]:.0f}"


def require_evidence(judgement: Judgement, data: Mapping[str, MetricSeries],
                     config: CanaryConfig, *, intervals: int, final: bool,
                     diagnoses: Mapping[str, Missing] | None = None) -> Judgement:
    """``judgement`` with the no-evidence rules applied (see the module docstring).

    ``intervals`` is the number of complete intervals judged; ``diagnoses`` maps a metric to
    what the caller found out about its missing data (e.g. "the canary selector … matches no
    series").
    """
    if judgement.verdict == "fail":
        return judgement
    diagnoses = diagnoses or {}
    gate = gated([r for r in judgement.metrics if not r.muted])
    critical = [r for r in judgement.metrics if r.critical]
    if final and (not gate or (critical and all(r.muted for r in critical))):
        return replace(judgement, verdict=Verdict.INCONCLUSIVE,
                       reason="promotion gate: every critical metric is muted (or no metric "
                              "is judged), so nothing shows the canary is within its margins")
    broken = [r for r in gate if r.classification == Classification.ERROR]
    if broken:
        reason = "could not judge " + "; ".join(f"{r.name}: {r.reason}" for r in broken)
        return replace(judgement, verdict=Verdict.INCONCLUSIVE, reason=reason)
    missing = []
    unmatched = False
    for result in gate:
        found = diagnoses.get(result.name)
        if intervals == 0 and found is None:
            continue  # a first look: nothing could be counted yet, and nothing looks wrong
        if empty_sides(data.get(result.name)):
            missing.append(_no_events_text(result.name, data.get(result.name), found))
            unmatched = unmatched or (found is not None and found.unmatched)
    if not missing:
        return judgement
    grace = config.judge.nodata_grace
    if intervals >= grace or unmatched:
        split = judgement.traffic
        if split is not None and not split.split_ok:
            missing.append(f"traffic split: {split.reason}")
        return replace(judgement, verdict=Verdict.INCONCLUSIVE,
                       reason="no evidence: " + "; ".join(missing))
    left = grace - intervals
    return replace(judgement, reason=f"{judgement.reason}; no data yet for "
                                     + "; ".join(missing)
                                     + f" (inconclusive if still so after {left} more "
                                       f"interval{'s' if left != 1 else ''})")
