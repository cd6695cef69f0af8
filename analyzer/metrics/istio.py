"""One analysis window from Prometheus: Istio builtin metrics and ``promql`` metrics.

Builtin metrics run ONE query per metric for both sides, so both sides are read from the same
evaluation and cannot drift apart. When canary and baseline name the same labels and differ only
in some of their values (``destination_service_name`` = ``checkout-canary`` vs
``checkout-stable``), the query matches the common labels exactly and each differing label with
``=~"a|b"`` (values regex-escaped), and each returned series is assigned to a side by its
labels. When they name different label sets, one side's matchers cannot be expressed that way,
and each side gets its own query.

The queries select raw series, without ``sum by``: counters are differenced per series and
only then summed (see ``counters``), because a pod that goes away makes a summed counter drop,
which would be read as a reset and counted as a burst of new requests. Response codes are
classified in Python on each series' ``response_code`` label, and bucket bounds are parsed from
``le`` as floats (``"1"`` and ``"1.0"`` are the same bucket; never matched as text).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from analyzer.config.loading import ConfigError
from analyzer.config.models import MetricConfig
from analyzer.errors import InputError
from analyzer.judge.series import GaugeSeries, HistogramSeries, MetricSeries, RatioSeries
from analyzer.metrics.counters import align_many, increments, resets, to_counts
from analyzer.metrics.prometheus import PrometheusClient, PrometheusUnavailable, RangeSeries
from analyzer.metrics.promql import Selector, any_of

SERVICE_LABEL = "destination_service_name"
REQUESTS = "istio_requests_total"
DURATION_BUCKETS = "istio_request_duration_milliseconds_bucket"
REPORTERS = ("source", "destination")
ISTIO_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                 300000, 600000, 1800000, 3600000, math.inf)
"""Envoy's default buckets (ms); the bounds reported for a latency metric with no data."""

Side = Literal["canary", "baseline"]
SIDES: tuple[Side, Side] = ("canary", "baseline")
_NO_SAMPLES = np.zeros((0, 2))


class SelectorError(InputError):
    """Label matchers that can select nothing sensible; ``field`` is the request field."""


@dataclass(frozen=True)
class SideSelectors:
    """What a request names: exact label matchers for each side, plus namespace and reporter.

    ``namespace`` and ``reporter`` become ``destination_service_namespace`` and ``reporter``
    matchers of the builtin Istio queries; ``promql`` metrics get only the side's own labels
    in ``{selector}`` (their metrics need not be Istio's). Validated on construction, so a bad
    label name or value is a ``SelectorError`` naming the field before anything is queried.
    """

    namespace: str
    canary: Mapping[str, str]
    baseline: Mapping[str, str]
    reporter: str = "source"

    def __post_init__(self) -> None:
        if self.reporter not in REPORTERS:
            raise SelectorError(f"reporter must be one of {', '.join(REPORTERS)}", "reporter")
        for side in SIDES:
            if not self.labels(side):
                raise SelectorError(f"{side}: at least one label matcher is needed", side)
        if self.labels("canary") == self.labels("baseline"):
            raise SelectorError("canary and baseline select the same series", "baseline")
        for side in SIDES:
            self.istio(side)  # validates namespace and conflicts with it

    def labels(self, side: Side) -> Selector:
        try:
            return Selector(self.canary if side == "canary" else self.baseline)
        except ValueError as exc:
            raise SelectorError(f"{side}: {exc}", side) from None

    def istio(self, side: Side) -> Selector:
        """The side's matchers for Istio metrics: its labels plus reporter and namespace."""
        fixed = {"reporter": self.reporter, "destination_service_namespace": self.namespace}
        labels = dict(self.labels(side))
        for name, value in fixed.items():
            if labels.setdefault(name, value) != value:
                raise SelectorError(f"label {name!r}: {side} selector says {labels[name]!r}, "
                                    f"the request says {value!r}", side)
        try:
            return Selector(labels)
        except ValueError as exc:
            field = "namespace" if "destination_service_namespace" in str(exc) else side
            raise SelectorError(f"{field}: {exc}", field) from None


@dataclass(frozen=True)
class WindowData:
    """Per-interval arrays of every metric of one window, and the PromQL they came from.

    ``timestamps`` are interval end times in seconds after the window start, as in
    ``canary-dataset/v1``; ``metric_queries`` maps each metric to the PromQL run for it.
    """

    timestamps: np.ndarray
    series: dict[str, MetricSeries]
    queries: list[str]
    metric_queries: dict[str, list[str]]
    matched: dict[str, dict[Side, int]]
    """Series each side's selector matched, per metric (0: the selector matches nothing)."""
    first: int = 0
    """Intervals of the window before those in ``series`` (a read since a ``Seam``)."""
    carry: Carry | None = None
    """Each series' last value at or before the ``final`` point asked for (``fetch_window``)."""


Carry = dict[str, dict[str, list[float]]]
"""Query → series labels (``labels_key``) → ``[point index, value]`` of the series' last
sample at or before a grid point: what differencing its next interval needs."""


class SeamMismatch(Exception):
    """A re-read of stored intervals disagrees with what was stored (a late sample, deleted
    series, changed buckets): the stored intervals cannot be continued."""


@dataclass(frozen=True)
class Seam:
    """Where a window's stored intervals end: intervals ``1 … stored`` are kept elsewhere, and
    ``carry`` (at point ``stored``) continues every series exactly. A read since the seam asks
    Prometheus for points ``stored - overlap … n`` only; the overlap's samples must agree with
    ``carry``, else ``SeamMismatch``."""

    stored: int
    carry: Carry
    overlap: int = 2


@dataclass(frozen=True)
class _Grid:
    """Query points ``start + j·step`` for ``j = 0 … intervals`` (point 0 is the baseline)."""

    start: float
    step: float
    intervals: int

    def at(self, j: int) -> datetime:
        return datetime.fromtimestamp(self.start + j * self.step, tz=UTC)


@dataclass(frozen=True)
class _Plan:
    """How the series of one metric are fetched (matchers per query) and assigned to a side."""

    matchers: tuple[tuple[str, Side | None], ...]
    differing: Mapping[str, tuple[str, str]]

    def side_of(self, labels: Mapping[str, str], fixed: Side | None) -> Side | None:
        if fixed is not None:
            return fixed
        for index, side in enumerate(SIDES):
            if all(labels.get(name) == values[index] for name, values in self.differing.items()):
                return side
        return None


def _side_plan(canary: Selector, baseline: Selector) -> _Plan:
    """One query with ``=~`` on the differing labels if both sides name the same labels,
    else one query per side."""
    if canary == baseline:
        raise ValueError("canary and baseline select the same series")
    if set(canary) != set(baseline):
        return _Plan(((canary.render(), "canary"), (baseline.render(), "baseline")), {})
    differing = {k: (canary[k], baseline[k]) for k in canary if canary[k] != baseline[k]}
    common = Selector({k: v for k, v in canary.items() if k not in differing})
    parts = [common.render()] if common else []
    parts += [any_of(name, values) for name, values in differing.items()]
    return _Plan(((",".join(parts), None),), differing)


class _Fetcher:
    """Runs one metric's queries and turns each returned series into a ``row``: its values at
    points ``m … n``, where ``m`` is the seam (0 for a full read, whose row starts at the
    baseline point ``p_0``). After a seam, column 0 is the series' carried last value, so
    differencing the row gives intervals ``m+1 … n`` exactly as a full read would."""

    def __init__(self, client: PrometheusClient, grid: _Grid, seam: Seam | None,
                 rows: dict[str, dict[str, np.ndarray]]) -> None:
        self.client = client
        self.full = grid
        self.seam = seam
        self.m = 0 if seam is None else seam.stored
        self.grid = _Grid(grid.start + self.m * grid.step, grid.step, grid.intervals - self.m)
        self.queries: list[str] = []
        self.matched: dict[Side, int] = {"canary": 0, "baseline": 0}
        self.rows = rows

    def range(self, query: str, first: int = 0) -> list[RangeSeries]:
        """``query`` at points ``first … intervals`` (after a seam: from the overlap on). A
        window without a complete interval is still asked (an instant query at its start,
        series without samples): every call asks Prometheus, so its being down is a 503 and
        never a verdict, and the answer says whether each side's selector matches anything."""
        self.queries.append(query)
        grid = self.full
        if grid.intervals == 0:
            return [{"metric": labels, "values": _NO_SAMPLES, "row": np.full(1, np.nan)}
                    for labels in self.client.series_labels(query, grid.at(0))]
        if self.seam is not None:
            return self._since_seam(query, max(first, self.m - self.seam.overlap))
        found = self.client.query_range(query, grid.at(first), grid.at(grid.intervals),
                                        grid.step)
        matrix = align_many([s["values"] for s in found], grid.start, grid.step,
                            grid.intervals + 1)
        kept = self.rows.setdefault(query, {})
        for series, row in zip(found, matrix, strict=True):
            series["row"] = kept[labels_key(series["metric"])] = row
        return found

    def _since_seam(self, query: str, first: int) -> list[RangeSeries]:
        """Points ``first … n`` re-read, checked against the carry, plus an empty series for
        every carried series the re-read no longer returns (it still counts as matched, and
        still has a histogram's buckets, as in a full read)."""
        assert self.seam is not None
        grid, m = self.full, self.m
        carry = self.seam.carry.get(query, {})
        found = self.client.query_range(query, grid.at(first), grid.at(grid.intervals),
                                        grid.step)
        matrix = align_many([s["values"] for s in found], grid.start + first * grid.step,
                            grid.step, grid.intervals - first + 1)
        # Each re-read series' last sample at or before the seam, as (point, value).
        present = ~np.isnan(matrix[:, :m - first + 1])
        last = np.where(present.any(axis=1), m - first - np.argmax(present[:, ::-1], axis=1), -1)
        kept = self.rows.setdefault(query, {})
        for i, series in enumerate(found):
            key = labels_key(series["metric"])
            got = None if last[i] < 0 else [first + int(last[i]), float(matrix[i, last[i]])]
            stored = carry.get(key)
            if got != (stored if stored is not None and stored[0] >= first else None):
                raise SeamMismatch(f"{query}: a series' samples at or before the seam differ "
                                   f"from the stored ones (late samples)")
            row = matrix[i, m - first:]  # a view: column 0 (point m) becomes the carry
            row[0] = np.nan if stored is None else stored[1]
            series["row"] = kept[key] = row
        for key, (index, value) in carry.items():
            if key in kept:
                continue
            if index >= first:
                raise SeamMismatch(f"{query}: a stored series is no longer returned")
            row = np.full(grid.intervals - m + 1, np.nan)
            row[0] = value
            kept[key] = row
            found.append({"metric": json.loads(key), "values": _NO_SAMPLES, "row": row})
        return found

    def side(self, side: Side, query: str, first: int = 0) -> list[RangeSeries]:
        """``range`` for one side's own query, counting what it matched."""
        found = self.range(query, first)
        self.matched[side] += len(found)
        return found

    def by_side(self, metric: str, how: _Plan) -> dict[Side, list[RangeSeries]]:
        out: dict[Side, list[RangeSeries]] = {"canary": [], "baseline": []}
        for text, fixed in how.matchers:
            for series in self.range(f"{metric}{{{text}}}"):
                side = how.side_of(series["metric"], fixed)
                if side is not None:
                    out[side].append(series)
                    self.matched[side] += 1
        return out

    def counts(self, series: Iterable[RangeSeries]) -> np.ndarray:
        rows = [s["row"] for s in series]
        if not rows:
            return to_counts(np.zeros(self.grid.intervals))
        return to_counts(increments(np.vstack(rows)).sum(axis=0))


_KEYS: dict[tuple[tuple[str, str], ...], str] = {}
_KEYS_SIZE = 100_000


def labels_key(labels: Mapping[str, str]) -> str:
    """A series' identity across reads (within its query): its labels as canonical JSON.

    Remembered per label set: every call sees the same series again, and encoding each one
    (an Istio series has ~25 labels) was ~2 ms of a call's 40."""
    items = tuple(labels.items())
    key = _KEYS.get(items)
    if key is None:
        key = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        if len(_KEYS) >= _KEYS_SIZE:
            _KEYS.clear()
        _KEYS[items] = key
    return key


def carry_at(rows: Mapping[str, Mapping[str, np.ndarray]], seam: Seam | None,
             final: int) -> Carry:
    """Each series' last value at or before point ``final`` (≥ the seam), from its row."""
    m = 0 if seam is None else seam.stored
    out: Carry = {}
    for query, series in rows.items():
        before = {} if seam is None else seam.carry.get(query, {})
        carried = out[query] = {}
        if not series:
            continue
        keys = list(series)
        # One pass over all series of the query (rows of one query have equal lengths).
        head = np.vstack([series[key][:final - m + 1] for key in keys])
        present = ~np.isnan(head)
        last = head.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
        found = present.any(axis=1) & ((last > 0) | (seam is None))
        values = head[np.arange(len(keys)), last].tolist()
        for i, key in enumerate(keys):
            if found[i]:
                carried[key] = [m + int(last[i]), values[i]]
            elif key in before:
                carried[key] = before[key]
    return out


def window_intervals(start: datetime, end: datetime, step_seconds: float) -> int:
    """Complete intervals of ``step_seconds`` from ``start`` to ``end``."""
    origin = round(start.timestamp(), 3)
    return max(0, math.floor((end.timestamp() - origin) / step_seconds + 1e-9))


def fetch_window(client: PrometheusClient, metrics: Sequence[MetricConfig], sides: SideSelectors,
                 start: datetime, end: datetime, step_seconds: float, *,
                 seam: Seam | None = None, final: int | None = None) -> WindowData:
    """Queries every metric for the window ``[start, end]`` cut into intervals of ``step_seconds``.

    Intervals end at ``start + step``, ``start + 2·step``, … ≤ ``end`` (a trailing partial
    interval is left for the next call). A metric with no series at all gets zero counts
    (ratio, histogram) or NaN (gauge), which the judge reports as ``nodata``. Raises
    ``PrometheusUnavailable`` when Prometheus fails, ``ValueError`` for unusable input.

    With a ``seam`` (1 ≤ ``seam.stored`` ≤ intervals), only intervals after it are read and
    returned (``WindowData.first``), or ``SeamMismatch``. With ``final`` (≥ the seam), the
    answer's ``carry`` continues every series after interval ``final``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if not (math.isfinite(step_seconds) and step_seconds >= 0.001):
        raise ValueError("step_seconds must be at least 0.001")
    origin = round(start.timestamp(), 3)
    intervals = window_intervals(start, end, step_seconds)
    if seam is not None and not 1 <= seam.stored <= intervals:
        raise ValueError("the seam must be within the window")
    grid = _Grid(origin, float(step_seconds), intervals)
    out: dict[str, MetricSeries] = {}
    queries: list[str] = []
    metric_queries: dict[str, list[str]] = {}
    matched: dict[str, dict[Side, int]] = {}
    rows: dict[str, dict[str, np.ndarray]] = {}
    for metric in metrics:
        fetcher = _Fetcher(client, grid, seam, rows)
        out[metric.name] = _fetch_metric(fetcher, metric, sides)
        metric_queries[metric.name] = fetcher.queries
        matched[metric.name] = fetcher.matched
        queries += fetcher.queries
    first = 0 if seam is None else seam.stored
    timestamps = np.arange(1, intervals + 1) * grid.step
    carry = None if final is None else carry_at(rows, seam, final)
    return WindowData(timestamps, out, queries, metric_queries, matched, first, carry)


def _fetch_metric(fetcher: _Fetcher, metric: MetricConfig, sides: SideSelectors) -> MetricSeries:
    if metric.kind in ("istio-error-rate", "istio-latency"):
        how = _side_plan(sides.istio("canary"), sides.istio("baseline"))
        if metric.kind == "istio-error-rate":
            return _error_rate(fetcher, metric.error_codes, fetcher.by_side(REQUESTS, how))
        return _histogram(fetcher, fetcher.by_side(DURATION_BUCKETS, how))
    if metric.numerator is not None and metric.denominator is not None:
        if metric.resolved_type != "ratio":
            raise ConfigError(f"metric {metric.name}: numerator/denominator make a ratio metric",
                              f"metrics.{metric.name}")
        return _promql_ratio(fetcher, metric.numerator, metric.denominator, sides)
    if metric.query is None or metric.resolved_type == "ratio":
        raise ConfigError(f"metric {metric.name}: ratio metrics need numerator and denominator",
                          f"metrics.{metric.name}")
    queries = {side: _substitute(metric.query, sides, side) for side in SIDES}
    if metric.resolved_type == "histogram":
        return _histogram(fetcher, {side: fetcher.side(side, queries[side]) for side in SIDES})
    return _gauge(fetcher, metric.name, queries)


def _substitute(query: str, sides: SideSelectors, side: Side) -> str:
    """The config query with ``{selector}`` (the side's labels) and ``{namespace}`` (the
    request's namespace, a validated DNS label) replaced, in one pass so that a label value
    can never re-trigger a placeholder."""
    values = {"{selector}": sides.labels(side).render(), "{namespace}": sides.namespace}
    return re.sub(r"\{selector\}|\{namespace\}", lambda m: values[m.group(0)], query)


def _error_rate(fetcher: _Fetcher, error_codes: str,
                found: Mapping[Side, list[RangeSeries]]) -> RatioSeries:
    """Requests, and the requests whose ``response_code`` fully matches ``error_codes``."""
    errors = re.compile(error_codes)
    den = {side: fetcher.counts(found[side]) for side in SIDES}
    num = {side: fetcher.counts(s for s in found[side]
                                if errors.fullmatch(s["metric"].get("response_code", "")))
           for side in SIDES}
    return RatioSeries(num["canary"], den["canary"], num["baseline"], den["baseline"])


def _promql_ratio(fetcher: _Fetcher, numerator: str, denominator: str,
                  sides: SideSelectors) -> RatioSeries:
    """Counter queries per side. The numerator is clipped to the denominator per interval:
    two separate queries can see scrapes straddle an interval end, and a dataset (and the
    judge) needs events ≤ trials."""
    arrays = []
    for side in SIDES:
        den = fetcher.counts(fetcher.side(side, _substitute(denominator, sides, side)))
        num = fetcher.counts(fetcher.range(_substitute(numerator, sides, side)))
        arrays += [np.minimum(num, den), den]
    return RatioSeries(*arrays)


def _gauge(fetcher: _Fetcher, name: str, queries: Mapping[Side, str]) -> GaugeSeries:
    """One sample per interval end; the query must aggregate to at most one series per side."""
    grid = fetcher.grid
    values = {}
    for side in SIDES:
        result = fetcher.side(side, queries[side], first=1)
        if len(result) > 1:
            raise ConfigError(f"metric {name}: {side} query returned {len(result)} series; "
                              f"aggregate it to one (e.g. sum(...) or max(...))",
                              f"metrics.{name}")
        values[side] = (result[0]["row"][1:] if result and grid.intervals
                        else np.full(grid.intervals, np.nan))
    return GaugeSeries(values["canary"], values["baseline"])


def _histogram(fetcher: _Fetcher, found: Mapping[Side, list[RangeSeries]]) -> HistogramSeries:
    """Non-cumulative bucket counts from raw cumulative bucket series of both sides.

    Each bucket series is differenced on its own, resetting wherever its histogram's ``+Inf``
    bucket did; the per-interval increments are summed per side and bound, then adjacent
    bounds are differenced. Only bounds that every histogram has
    are used: a bound missing from one pod's histogram (custom buckets) would otherwise make
    that bucket's cumulative sum too small. Tiny negatives from scrape skew are clipped at 0.
    """
    grid = fetcher.grid
    bounds: dict[tuple[Side, frozenset[tuple[str, str]]], dict[float, list[RangeSeries]]] = (
        defaultdict(lambda: defaultdict(list)))
    for side in SIDES:
        for series in found[side]:
            labels = dict(series["metric"])
            try:
                le = float(labels.pop("le"))
            except (KeyError, ValueError):
                raise PrometheusUnavailable(f"bucket series without a numeric le: "
                                            f"{series['metric']}") from None
            bounds[side, frozenset(labels.items())][le].append(series)
    if not bounds:
        envoy = np.asarray(ISTIO_BUCKETS, dtype=float)
        empty = np.zeros((grid.intervals, len(envoy)), dtype=np.int64)
        return HistogramSeries(envoy, empty, empty.copy())
    common = sorted(set.intersection(*(set(b) for b in bounds.values())))
    if not common or common[-1] != math.inf:
        raise PrometheusUnavailable("histogram series without a common +Inf bucket")
    column = {bound: i for i, bound in enumerate(common)}
    cumulative = {side: np.zeros((grid.intervals, len(common))) for side in SIDES}

    # All bucket series of a side in one matrix: one differencing, one scatter-add per side.
    for side in SIDES:
        rows, owners, columns, inf_rows, inf_owners = [], [], [], [], []
        for g, ((owner, _), by_bound) in enumerate(bounds.items()):
            if owner != side:
                continue
            for bound, members in by_bound.items():
                for series in members:
                    if bound == math.inf:
                        inf_rows.append(series["row"])
                        inf_owners.append(g)
                    if bound in column:
                        rows.append(series["row"])
                        owners.append(g)
                        columns.append(column[bound])
        if not rows:
            continue
        reset = np.zeros((len(bounds), grid.intervals), dtype=bool)
        np.logical_or.at(reset, np.asarray(inf_owners), resets(np.vstack(inf_rows)))
        deltas = increments(np.vstack(rows), reset[np.asarray(owners)])
        np.add.at(cumulative[side].T, np.asarray(columns), deltas)
    counts = {side: to_counts(np.clip(np.diff(cumulative[side], axis=1, prepend=0.0), 0, None))
              for side in SIDES}
    return HistogramSeries(np.asarray(common), counts["canary"], counts["baseline"])
