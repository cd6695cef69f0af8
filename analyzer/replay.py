"""Replaying recorded canaries through the judge, as Argo Rollouts would have called it.

Each dataset is judged once per interval on all data from its start up to that interval;
the first ``fail`` ends it (the rollout would have aborted there), and if it never fails the
last evaluation is the promotion gate (``final``). Each look extends one running judge state
(``analyzer.judge.stream.JudgeState``) by its interval, so a replay costs time linear in its
length; the live service carries the same state from call to call, which is what makes a
backtest a fair preview of a config.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.config import CanaryConfig, default_config
from analyzer.config.models import MetricConfig
from analyzer.judge.results import Judgement
from analyzer.judge.stream import JudgeState
from analyzer.metrics.dataset import Dataset, read_dataset

# Group weights for configs derived from a dataset's metric types (no --config given).
_TYPE_GROUP = {"ratio": "availability", "histogram": "latency", "gauge": "saturation"}
_GROUP_WEIGHT = {"availability": 60.0, "latency": 30.0, "saturation": 10.0}


@dataclass(frozen=True)
class Evaluation:
    at: float  # seconds after the dataset's start (end of the interval)
    verdict: str
    score: float


@dataclass(frozen=True)
class ReplayResult:
    name: str
    verdict: str
    first_fail_at: float | None
    evaluations: list[Evaluation]
    last: Judgement
    expected: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    seconds_judged: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict,
                "first_fail_at": _number(self.first_fail_at),
                "evaluations": [{"at": _number(e.at), "verdict": e.verdict, "score": e.score}
                                for e in self.evaluations]}


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)


def config_for_dataset(dataset: Dataset) -> CanaryConfig:
    """The config replay uses without --config (DESIGN §6).

    A metric named like one of the built-in ``default`` config keeps its settings there
    (so ``error-rate`` stays critical); any other metric is judged by its type.
    """
    base = default_config()
    metrics = []
    for name, series in dataset.metrics.items():
        known = base.metric(name)
        if known is not None and known.resolved_type == series.type:
            metrics.append(known)
            continue
        metrics.append(MetricConfig(
            name=name, type=series.type, group=_TYPE_GROUP[series.type],
            direction="either" if series.type == "gauge" else "increase",
            critical=series.type == "ratio",
            allowed_increase=1.0))
    # The default config's group weights where its groups are used, type weights otherwise;
    # scoring normalises over the groups present.
    weights = {g: base.groups.get(g, _GROUP_WEIGHT.get(g, 0.0))
               for g in {m.resolved_group for m in metrics}}
    return CanaryConfig(name=f"{base.name}-by-type", judge=base.judge, metrics=tuple(metrics),
                        groups=weights)


def replay_dataset(dataset: Dataset, config: CanaryConfig | None = None,
                   on_look: Callable[[], None] | None = None) -> ReplayResult:
    """Judge ``dataset`` look by look; ``on_look`` is called after each (progress)."""
    config = config or config_for_dataset(dataset)
    evaluations: list[Evaluation] = []
    first_fail = None
    last: Judgement | None = None
    state = JudgeState(config)
    n = len(dataset)
    for t in range(1, n + 1):
        weights = None if dataset.canary_weight is None else dataset.canary_weight[t - 1:t]
        state.extend({name: series.window(t - 1, t)
                      for name, series in dataset.metrics.items()}, weights=weights)
        final = t == n
        at = float(dataset.timestamps[t - 1])
        last = state.judgement(final=final, intervals=final, data_seconds=at)
        if on_look is not None:
            on_look()
        evaluations.append(Evaluation(at, last.verdict, last.score))
        if last.verdict == "fail":
            first_fail = at
            if not final:  # the report of the failing look carries its intervals too
                last = state.judgement(final=False, intervals=True, data_seconds=at)
            break
    assert last is not None  # datasets have at least one interval
    return ReplayResult(dataset.name, last.verdict, first_fail, evaluations, last,
                        dataset.expected, dict(dataset.labels),
                        float(dataset.timestamps[len(evaluations) - 1]))


def dataset_paths(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.suffix == ".json" and p.is_file())


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def backtest_summary(results: list[ReplayResult]) -> dict[str, Any]:
    """Confusion table, detection delays per family and a summary, for labelled datasets."""
    confusion: dict[str, dict[str, int]] = {}
    for r in results:
        row = confusion.setdefault(r.expected or "unlabelled",
                                   {"pass": 0, "fail": 0, "inconclusive": 0})
        row[r.verdict] += 1
    families: dict[str, dict[str, Any]] = {}
    for r in results:
        family = str(r.labels.get("family", "unlabelled"))
        entry = families.setdefault(family, {"datasets": 0, "failed": 0, "delays": []})
        entry["datasets"] += 1
        if r.first_fail_at is not None:
            entry["failed"] += 1
            entry["delays"].append(r.first_fail_at)
    per_family = {
        name: {"datasets": e["datasets"], "failed": e["failed"],
               "median_seconds_to_fail": _quantile(e["delays"], 0.5),
               "p90_seconds_to_fail": _quantile(e["delays"], 0.9)}
        for name, e in sorted(families.items())}
    good = [r for r in results if r.expected == "pass"]
    bad = [r for r in results if r.expected == "fail"]
    false_fail = sum(r.verdict == "fail" for r in good)
    detected = sum(r.verdict == "fail" for r in bad)
    delays = [r.first_fail_at for r in bad if r.first_fail_at is not None]
    return {
        "datasets": len(results),
        "confusion": confusion,
        "families": per_family,
        "good": len(good), "false_fail": false_fail,
        "false_fail_rate": false_fail / len(good) if good else None,
        "bad": len(bad), "detected": detected,
        "detection_rate": detected / len(bad) if bad else None,
        "median_seconds_to_fail": statistics.median(delays) if delays else None,
    }


def load_datasets(paths: list[Path]) -> list[Dataset]:
    """Reads every dataset first, so a bad file fails the run before any work is done."""
    return [read_dataset(p) for p in paths]
