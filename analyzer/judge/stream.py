"""The judge as a running state: extend it with the next intervals, ask it for a judgement.

Every sequential test's evidence for an interval is fixed once the interval is seen (its
plan, tempering, margins and latency thresholds come from earlier intervals), so the state
keeps running sums (``analyzer.judge.ratestate``) and a look costs O(new intervals): the
same at minute 1 and hour 24. A judgement on the state equals ``judge()`` on all the data
so far, which is this state fed in one chunk. Mann-Whitney metrics are fixed-horizon tests
and keep their samples.

The live service keeps one state per analysis session (``to_dict``/``from_dict``, so any
replica continues it) and judges a ``copy()`` extended by provisional intervals without
saving it; replay extends one state look by look::

    state = JudgeState(config)                        # or JudgeState.from_dict(stored, config)
    state.extend(closed_intervals, weights=weights)   # metric name → series of the new intervals
    look = state.copy()                               # provisional: not kept
    look.extend(provisional_tail, weights=tail_weights)
    judgement = look.judgement(final=final, intervals=True, data_seconds=seconds,
                               recent_weights_only=True, diagnoses=diagnoses)
    stored = state.to_dict()                          # strict JSON, ~150 KiB, any window

``from_dict`` refuses a state of another version or made under another config (then judge
the session afresh from its intervals).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzer.config.models import CanaryConfig, MetricConfig
from analyzer.judge.evaluate import (
    JudgeInputError,
    attribute,
    broken_result,
    histogram_result,
    judge_gauge,
    log_levels,
    missing_result,
    ratio_result,
)
from analyzer.judge.evidence import Missing, require_evidence
from analyzer.judge.latency import LatencyState
from analyzer.judge.rate import SplitData
from analyzer.judge.ratestate import RateState
from analyzer.judge.results import Judgement, MetricResult
from analyzer.judge.scoring import decide
from analyzer.judge.series import GaugeSeries, HistogramSeries, MetricSeries, RatioSeries
from analyzer.judge.traffic import TrafficState

log = logging.getLogger("analyzer.judge")
VERSION = 2  # 2: a latency metric's thresholds are one batched RateState


class _Ratio:
    def __init__(self, metric: MetricConfig) -> None:
        self.test = RateState(allowed_increase=metric.margin_increase,
                              allowed_decrease=metric.margin_decrease,
                              absolute_increase=metric.allowed_absolute_increase)
        self.totals = [0.0, 0.0, 0.0, 0.0]  # canary events, requests; baseline events, requests

    def extend(self, series: RatioSeries) -> None:
        parts = (series.canary_num, series.canary_den, series.baseline_num, series.baseline_den)
        for i, part in enumerate(parts):
            self.totals[i] += float(np.sum(part))
        self.test.extend(SplitData.from_counts(*parts))

    def copy(self) -> _Ratio:
        other = _Ratio.__new__(_Ratio)
        other.test, other.totals = self.test.copy(), list(self.totals)
        return other

    def summary(self) -> RatioSeries:
        return RatioSeries(*(np.array([t]) for t in self.totals))

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test.to_dict(), "totals": self.totals}

    def load(self, data: dict[str, Any]) -> None:
        self.test = RateState.from_dict(data["test"])
        self.totals = [float(x) for x in data["totals"]]


class _Histogram:
    def __init__(self, metric: MetricConfig) -> None:
        self.test = LatencyState(quantiles=metric.quantiles,
                                 allowed_increase=metric.margin_increase,
                                 allowed_decrease=metric.margin_decrease,
                                 direction=metric.direction)
        self.unit = "ms"

    def extend(self, series: HistogramSeries) -> None:
        self.unit = series.unit
        self.test.extend(series.le, series.canary, series.baseline)

    def copy(self) -> _Histogram:
        other = _Histogram.__new__(_Histogram)
        other.test, other.unit = self.test.copy(), self.unit
        return other

    def summary(self) -> HistogramSeries:
        test = self.test
        if test.le is None or test.pooled_c is None or test.pooled_b is None:
            return HistogramSeries(np.array([math.inf]), np.zeros((1, 1)), np.zeros((1, 1)))
        return HistogramSeries(test.le, test.pooled_c[None, :], test.pooled_b[None, :],
                               self.unit)

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test.to_dict(), "unit": self.unit}

    def load(self, data: dict[str, Any]) -> None:
        self.test = LatencyState.from_dict(data["test"])
        self.unit = str(data["unit"])


class _Gauge:
    """Mann-Whitney is a fixed-horizon test on all samples: they are kept."""

    def __init__(self, metric: MetricConfig) -> None:
        self.canary: list[float] = []
        self.baseline: list[float] = []

    def extend(self, series: GaugeSeries) -> None:
        self.canary += [float(x) for x in series.canary]
        self.baseline += [float(x) for x in series.baseline]

    def copy(self) -> _Gauge:
        other = _Gauge.__new__(_Gauge)
        other.canary, other.baseline = list(self.canary), list(self.baseline)
        return other

    def summary(self) -> GaugeSeries:
        return GaugeSeries(np.array(self.canary, dtype=float),
                           np.array(self.baseline, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        def listed(values: list[float]) -> list[float | None]:
            return [None if math.isnan(x) else x for x in values]

        return {"canary": listed(self.canary), "baseline": listed(self.baseline)}

    def load(self, data: dict[str, Any]) -> None:
        self.canary = [math.nan if x is None else float(x) for x in data["canary"]]
        self.baseline = [math.nan if x is None else float(x) for x in data["baseline"]]


_KINDS: dict[str, type[_Ratio] | type[_Histogram] | type[_Gauge]] = {
    "ratio": _Ratio, "histogram": _Histogram, "gauge": _Gauge}


class JudgeState:
    """The judge's running state for one analysis under one config.

    ``extend(chunk)`` folds in the next intervals of every metric (metric name → series of
    those intervals; a metric absent from a chunk had no data in it); ``judgement(...)``
    gives what ``judge()`` gives on all the data so far.
    """

    def __init__(self, config: CanaryConfig) -> None:
        self.config = config
        self.states: dict[str, _Ratio | _Histogram | _Gauge] = {}
        self.counts: dict[str, int] = {}  # intervals seen per metric
        self.broken: dict[str, str] = {}  # metric → why its statistics raised
        self.traffic = TrafficState()
        self.traffic_source: str | None = None

    @property
    def intervals(self) -> int:
        """Complete intervals judged (the most any metric has seen)."""
        return max(self.counts.values(), default=0)

    def _source(self, chunk: Mapping[str, MetricSeries]) -> str | None:
        """The metric whose requests the split check counts: the first request-counting
        ratio metric, else the first histogram, fixed once one has data."""
        if self.traffic_source is not None:
            return self.traffic_source
        for metric in self.config.metrics:
            if isinstance(chunk.get(metric.name), RatioSeries) and metric.kind != "promql":
                return metric.name
        for metric in self.config.metrics:
            if isinstance(chunk.get(metric.name), HistogramSeries):
                return metric.name
        return None

    def extend(self, chunk: Mapping[str, MetricSeries],
               weights: np.ndarray | None = None) -> None:
        """Fold in the next intervals. ``weights``: the canary's weight in percent per
        interval of the chunk (NaN unknown), aligned with its newest intervals."""
        for metric in self.config.metrics:
            series = chunk.get(metric.name)
            if series is not None and series.type != metric.resolved_type:
                raise JudgeInputError(f"metric {metric.name!r}: config expects "
                                      f"{metric.resolved_type} data, got {series.type}")
        for metric in self.config.metrics:
            series = chunk.get(metric.name)
            if series is None or len(series) == 0:
                continue
            self.counts[metric.name] = self.counts.get(metric.name, 0) + len(series)
            if metric.name in self.broken:
                continue
            state = self.states.get(metric.name)
            if state is None:
                state = self.states[metric.name] = _KINDS[series.type](metric)
            try:
                state.extend(series)  # type: ignore[arg-type]
            except Exception as exc:
                # One metric's numerical trouble must not take the others down with it.
                log.exception("metric %s: the %s test raised", metric.name,
                              metric.resolved_test)
                self.broken[metric.name] = f"{type(exc).__name__}: {exc}"
        source = self._source(chunk)
        series = None if source is None else chunk.get(source)
        if series is None:
            return
        self.traffic_source = source  # an empty series still says whose requests count
        if len(series) == 0:
            return
        if isinstance(series, RatioSeries):
            nc, nb = series.canary_den, series.baseline_den
        else:
            assert isinstance(series, HistogramSeries)
            nc, nb = series.canary.sum(axis=1), series.baseline.sum(axis=1)
        self.traffic.extend(nc, nb, _aligned(weights, len(nc)))

    def _result(self, metric: MetricConfig, *, intervals: bool,
                data_seconds: float | None) -> MetricResult:
        if metric.name in self.broken:
            return broken_result(metric, self.broken[metric.name])
        state = self.states.get(metric.name)
        count = self.counts.get(metric.name, 0)
        if state is None or count == 0:
            return missing_result(metric)
        log_threshold, log_level = log_levels(self.config)
        interval_k = (log_threshold + math.log(2.0)) if intervals else None
        seconds = None if data_seconds is None else data_seconds / count
        try:
            if isinstance(state, _Ratio):
                return ratio_result(metric, state.test.result(interval_k), tuple(state.totals),
                                    log_threshold=log_threshold, log_level=log_level,
                                    interval_seconds=seconds)
            if isinstance(state, _Histogram):
                test = state.test
                assert test.le is not None and test.pooled_c is not None
                assert test.pooled_b is not None
                return histogram_result(metric, test.result(interval_k), test.le,
                                        (test.pooled_c, test.pooled_b),
                                        log_threshold=log_threshold, log_level=log_level,
                                        interval_seconds=seconds)
            return judge_gauge(metric, state.summary())
        except Exception as exc:
            log.exception("metric %s: the %s test raised", metric.name, metric.resolved_test)
            return broken_result(metric, f"{type(exc).__name__}: {exc}")

    def judgement(self, *, final: bool = False, intervals: bool = True,
                  data_seconds: float | None = None, recent_weights_only: bool = False,
                  diagnoses: Mapping[str, Missing] | None = None) -> Judgement:
        """The judgement on all intervals so far (the options as ``judge()``'s).

        ``intervals=False`` skips the confidence sequences (a cost of O(grid), not of the
        window). The split is checked when the latest interval's weight is known.
        """
        config = self.config
        results = [self._result(m, intervals=intervals, data_seconds=data_seconds)
                   for m in config.metrics]
        results = attribute(results, config)
        traffic = None
        if self.traffic_source is not None:
            traffic = self.traffic.check(alpha=config.judge.alpha,
                                         recent_only=recent_weights_only)
        judgement = decide(results, config, final=final, data_seconds=data_seconds,
                           traffic=traffic)
        summaries = {name: state.summary() for name, state in self.states.items()}
        return require_evidence(judgement, summaries, config, intervals=self.intervals,
                                final=final, diagnoses=diagnoses)

    def copy(self) -> JudgeState:
        """An independent copy (e.g. to judge provisional intervals without keeping them)."""
        other = JudgeState(self.config)
        other.states = {name: state.copy() for name, state in self.states.items()}
        other.counts = dict(self.counts)
        other.broken = dict(self.broken)
        other.traffic = self.traffic.copy()
        other.traffic_source = self.traffic_source
        return other

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot; ``from_dict`` with the same config continues it."""
        return {"version": VERSION, "config": config_digest(self.config),
                "metrics": {name: {"type": type_of(state), **state.to_dict()}
                            for name, state in self.states.items()},
                "counts": dict(self.counts), "broken": dict(self.broken),
                "traffic": self.traffic.to_dict(), "traffic_source": self.traffic_source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: CanaryConfig) -> JudgeState:
        if data.get("version") != VERSION:
            raise ValueError(f"judge state version {data.get('version')!r}: this judge "
                             f"reads version {VERSION}")
        if data.get("config") != config_digest(config):
            raise ValueError("judge state was made under another config: judge the analysis "
                             "afresh")
        state = cls(config)
        for name, stored in data["metrics"].items():
            metric = config.metric(name)
            if metric is None or metric.resolved_type != stored["type"]:
                raise ValueError(f"judge state metric {name!r} does not match the config")
            part = _KINDS[stored["type"]](metric)
            part.load(stored)
            state.states[name] = part
        state.counts = {str(k): int(v) for k, v in data["counts"].items()}
        state.broken = {str(k): str(v) for k, v in data["broken"].items()}
        state.traffic = TrafficState.from_dict(data["traffic"])
        state.traffic_source = data["traffic_source"]
        return state


def config_digest(config: CanaryConfig) -> str:
    """A short fingerprint of the config: a state is only continued under the same one."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def type_of(state: _Ratio | _Histogram | _Gauge) -> str:
    return {_Ratio: "ratio", _Histogram: "histogram", _Gauge: "gauge"}[type(state)]


def _aligned(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """The weights of the newest ``n`` intervals (NaN where the chunk gave none)."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)[-n:]
    return np.concatenate((np.full(n - len(w), np.nan), w)) if len(w) < n else w
