"""Reading and writing ``canary-dataset/v1`` files (DESIGN §6).

Validation is strict and every message names the dataset and the field, because a dataset
that is silently misread would make a backtest lie about a config.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import InputError
from analyzer.judge.series import GaugeSeries, HistogramSeries, MetricSeries, RatioSeries

FORMAT = "canary-dataset/v1"
MAX_INTERVALS = 100_000
MAX_BUCKETS = 200
MAX_COUNT = 2**53
"""Largest count accepted: every count is exact as a float, and sums stay far from int64."""
_TOP_KEYS = {"format", "name", "interval_seconds", "start", "timestamps", "canary_weight",
             "metrics", "labels", "expected"}


class DatasetError(InputError):
    """A dataset that cannot be used; the message names the dataset and the field."""


@dataclass(frozen=True)
class Dataset:
    name: str
    interval_seconds: float
    start: datetime
    timestamps: np.ndarray
    metrics: dict[str, MetricSeries]
    canary_weight: np.ndarray | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    expected: str | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    def head(self, n: int) -> Dataset:
        weight = None if self.canary_weight is None else self.canary_weight[:n]
        return replace(self, timestamps=self.timestamps[:n], canary_weight=weight,
                       metrics={k: v.head(n) for k, v in self.metrics.items()})


def _as_float(value: int | float) -> float:
    """``float(value)``; a JSON integer beyond the float range (Python parses it exactly) is
    infinite here, so the callers' finiteness checks refuse it with a message naming the field
    instead of an ``OverflowError`` escaping."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def parse_time(value: Any, where: str) -> datetime:
    """RFC 3339 text or unix seconds, always returned timezone-aware in UTC."""
    if isinstance(value, bool):
        raise DatasetError(f"{where}: expected RFC 3339 time or unix seconds")
    if isinstance(value, int | float):
        if not math.isfinite(_as_float(value)) or not 0 <= value < 1e11:
            raise DatasetError(f"{where}: unix seconds out of range")
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise DatasetError(f"{where}: {value!r} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise DatasetError(f"{where}: {value!r} has no timezone (add Z or an offset)")
        return moment.astimezone(UTC)
    raise DatasetError(f"{where}: expected RFC 3339 time or unix seconds")


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> DatasetError:
        return DatasetError(f"{self.source}: {path}: {message}")

    def counts(self, value: Any, path: str, length: int) -> np.ndarray:
        if not isinstance(value, list):
            raise self.fail(path, "must be an array of counts")
        if len(value) != length:
            raise self.fail(path, f"has {len(value)} values, timestamps has {length}")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail(f"{path}[{i}]", "must be a non-negative integer")
            number = _as_float(item)
            if not math.isfinite(number) or number < 0 or number != int(number):
                raise self.fail(f"{path}[{i}]", "must be a non-negative integer")
            if number > MAX_COUNT:
                raise self.fail(f"{path}[{i}]", f"larger than {MAX_COUNT}")
        return np.asarray(value, dtype=np.int64) if value else np.zeros(0, dtype=np.int64)

    def numbers(self, value: Any, path: str, length: int) -> np.ndarray:
        if not isinstance(value, list):
            raise self.fail(path, "must be an array of numbers")
        if len(value) != length:
            raise self.fail(path, f"has {len(value)} values, timestamps has {length}")
        out = np.empty(length, dtype=float)
        for i, item in enumerate(value):
            if item is None:
                out[i] = math.nan
            elif isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail(f"{path}[{i}]", "must be a number or null")
            else:
                out[i] = _as_float(item)
        return out

    def side(self, data: Any, path: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(path, "must be an object")
        return data

    def ratio(self, data: dict[str, Any], path: str, length: int) -> RatioSeries:
        arrays = {}
        for side in ("canary", "baseline"):
            part = self.side(data.get(side), f"{path}.{side}")
            unknown = set(part) - {"num", "den"}
            if unknown:
                raise self.fail(f"{path}.{side}.{sorted(unknown)[0]}", "unknown key")
            num = self.counts(part.get("num"), f"{path}.{side}.num", length)
            den = self.counts(part.get("den"), f"{path}.{side}.den", length)
            bad = np.nonzero(num > den)[0]
            if bad.size:
                raise self.fail(f"{path}.{side}.num[{bad[0]}]",
                                f"{num[bad[0]]} events out of {den[bad[0]]} (num must be <= den)")
            arrays[side] = (num, den)
        return RatioSeries(arrays["canary"][0], arrays["canary"][1],
                           arrays["baseline"][0], arrays["baseline"][1])

    def histogram(self, data: dict[str, Any], path: str, length: int) -> HistogramSeries:
        le_raw = data.get("le")
        if not isinstance(le_raw, list) or len(le_raw) < 2:
            raise self.fail(f"{path}.le", "must be an array of at least two bucket bounds")
        if len(le_raw) > MAX_BUCKETS:
            raise self.fail(f"{path}.le", f"more than {MAX_BUCKETS} buckets")
        le = []
        for i, bound in enumerate(le_raw):
            if bound == "+Inf":
                le.append(math.inf)
            elif isinstance(bound, bool) or not isinstance(bound, int | float) or not (
                    math.isfinite(_as_float(bound))):
                raise self.fail(f"{path}.le[{i}]", "must be a finite number or \"+Inf\"")
            else:
                le.append(_as_float(bound))
        if le[-1] != math.inf:
            raise self.fail(f"{path}.le", "must end with \"+Inf\"")
        if any(b <= a for a, b in itertools.pairwise(le)):
            raise self.fail(f"{path}.le", "must be strictly increasing")
        sides = {}
        for side in ("canary", "baseline"):
            rows = data.get(side)
            if not isinstance(rows, list):
                raise self.fail(f"{path}.{side}", "must be an array of bucket-count rows")
            if len(rows) != length:
                raise self.fail(f"{path}.{side}", f"has {len(rows)} rows, timestamps has {length}")
            matrix = np.zeros((length, len(le)), dtype=np.int64)
            for t, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(le):
                    raise self.fail(f"{path}.{side}[{t}]", f"must have {len(le)} bucket counts "
                                                           f"(as many as le)")
                matrix[t] = self.counts(row, f"{path}.{side}[{t}]", len(le))
            sides[side] = matrix
        unit = data.get("unit", "ms")
        if not isinstance(unit, str):
            raise self.fail(f"{path}.unit", "must be a string")
        return HistogramSeries(np.asarray(le), sides["canary"], sides["baseline"], unit)

    def gauge(self, data: dict[str, Any], path: str, length: int) -> GaugeSeries:
        return GaugeSeries(self.numbers(data.get("canary"), f"{path}.canary", length),
                           self.numbers(data.get("baseline"), f"{path}.baseline", length))

    def dataset(self, data: Any) -> Dataset:
        if not isinstance(data, dict):
            raise DatasetError(f"{self.source}: a dataset must be a JSON object")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise self.fail(sorted(unknown)[0], "unknown key")
        if data.get("format") != FORMAT:
            raise self.fail("format", f"must be {FORMAT!r}, got {data.get('format')!r}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("name", "must be a non-empty string")
        step = data.get("interval_seconds")
        if isinstance(step, bool) or not isinstance(step, int | float) or not (
                math.isfinite(_as_float(step)) and step > 0):
            raise self.fail("interval_seconds", "must be a positive number")
        start = parse_time(data.get("start"), f"{self.source}: start")
        raw_ts = data.get("timestamps")
        if not isinstance(raw_ts, list) or not raw_ts:
            raise self.fail("timestamps", "must be a non-empty array")
        if len(raw_ts) > MAX_INTERVALS:
            raise self.fail("timestamps", f"more than {MAX_INTERVALS} intervals")
        timestamps = self.numbers(raw_ts, "timestamps", len(raw_ts))
        if not np.all(np.isfinite(timestamps)) or timestamps[0] <= 0:
            raise self.fail("timestamps", "must be positive seconds after start")
        if np.any(np.diff(timestamps) <= 0):
            bad = int(np.nonzero(np.diff(timestamps) <= 0)[0][0]) + 1
            raise self.fail(f"timestamps[{bad}]", "must be strictly increasing")
        length = len(timestamps)
        weight = None
        if data.get("canary_weight") is not None:
            weight = self.numbers(data["canary_weight"], "canary_weight", length)
            if np.any(~np.isfinite(weight)) or np.any((weight < 0) | (weight > 100)):
                raise self.fail("canary_weight", "every weight must be between 0 and 100")
        metrics_raw = data.get("metrics")
        if not isinstance(metrics_raw, dict) or not metrics_raw:
            raise self.fail("metrics", "must be a non-empty object")
        metrics: dict[str, MetricSeries] = {}
        for metric_name, body in metrics_raw.items():
            path = f"metrics.{metric_name}"
            if not isinstance(body, dict):
                raise self.fail(path, "must be an object")
            kind = body.get("type")
            allowed = {"ratio": {"type", "canary", "baseline"},
                       "histogram": {"type", "unit", "le", "canary", "baseline"},
                       "gauge": {"type", "canary", "baseline"}}
            if not isinstance(kind, str) or kind not in allowed:  # a list is unhashable
                raise self.fail(f"{path}.type", "must be 'ratio', 'histogram' or 'gauge'")
            extra = set(body) - allowed[kind]
            if extra:
                raise self.fail(f"{path}.{sorted(extra)[0]}", "unknown key")
            readers: dict[str, Callable[[dict[str, Any], str, int], MetricSeries]] = {
                "ratio": self.ratio, "histogram": self.histogram, "gauge": self.gauge}
            metrics[metric_name] = readers[kind](body, path, length)
        labels = data.get("labels") or {}
        if not isinstance(labels, dict):
            raise self.fail("labels", "must be an object")
        expected = data.get("expected")
        if expected not in (None, "pass", "fail"):
            raise self.fail("expected", "must be 'pass' or 'fail'")
        return Dataset(name=name, interval_seconds=float(step), start=start,
                       timestamps=timestamps, metrics=metrics, canary_weight=weight,
                       labels=labels, expected=expected)


def parse_dataset(data: Any, source: str = "<dataset>") -> Dataset:
    return _Reader(source).dataset(data)


def read_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc}") from None
    return parse_dataset(data, str(path))


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def dataset_to_dict(dataset: Dataset) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name, series in dataset.metrics.items():
        if isinstance(series, RatioSeries):
            metrics[name] = {"type": "ratio",
                             "canary": {"num": series.canary_num.tolist(),
                                        "den": series.canary_den.tolist()},
                             "baseline": {"num": series.baseline_num.tolist(),
                                          "den": series.baseline_den.tolist()}}
        elif isinstance(series, HistogramSeries):
            le = ["+Inf" if math.isinf(b) else _number(b) for b in series.le]
            metrics[name] = {"type": "histogram", "unit": series.unit, "le": le,
                             "canary": series.canary.tolist(),
                             "baseline": series.baseline.tolist()}
        else:
            metrics[name] = {"type": "gauge",
                             "canary": [None if math.isnan(v) else v for v in series.canary],
                             "baseline": [None if math.isnan(v) else v for v in series.baseline]}
    out: dict[str, Any] = {
        "format": FORMAT,
        "name": dataset.name,
        "interval_seconds": _number(dataset.interval_seconds),
        "start": dataset.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timestamps": [_number(t) for t in dataset.timestamps],
    }
    if dataset.canary_weight is not None:
        out["canary_weight"] = [_number(w) for w in dataset.canary_weight]
    out["metrics"] = metrics
    if dataset.labels:
        out["labels"] = dataset.labels
    if dataset.expected is not None:
        out["expected"] = dataset.expected
    return out


def write_dataset(dataset: Dataset, path: str | Path) -> None:
    """Writes atomically: a half-written dataset would be misread by the next backtest."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dataset_to_dict(dataset), separators=(",", ":")) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
