"""A session's final intervals as stored bytes, and joining them to a newer read.

What the judge needs of an interval is small and exact: request and error counts per side
(ratio metrics), non-cumulative bucket counts per side (histograms), one sample per side
(gauges). ``pack`` turns the first intervals of a window, plus the per-series ``Carry`` that
continues them, into one blob (a deflated ``.npz`` archive: numpy's own format, no pickle);
``unpack`` reads it back, and ``join`` appends a read since the seam. Any blob that does not fit (a
metric missing, another type, other bucket bounds) is ``StoredMismatch``: the caller then
reads the whole window instead, so a stored blob can make a call cheaper, never wrong.

``fingerprint`` names everything the stored arrays depend on (the metrics' definitions, the
selectors, the grid's origin and step, this format's version): a blob is used only under the
same fingerprint, so a config changed within a session or another step starts afresh.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analyzer.config.models import MetricConfig
from analyzer.judge.series import GaugeSeries, HistogramSeries, MetricSeries, RatioSeries
from analyzer.metrics.istio import Carry

FORMAT = 1
"""Version of the blob layout, part of the fingerprint: a new layout ignores old blobs."""
_RATIO = ("canary_num", "canary_den", "baseline_num", "baseline_den")


class StoredMismatch(Exception):
    """Stored intervals that cannot be continued; the message says why (for ``notes``)."""


def fingerprint(metrics: Sequence[MetricConfig], selectors: str, origin: float,
                step: float) -> str:
    """A digest of everything the stored per-interval arrays depend on."""
    text = json.dumps({"format": FORMAT, "metrics": [m.model_dump(mode="json") for m in metrics],
                       "selectors": selectors, "origin": round(origin, 3), "step": step},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def head(series: Mapping[str, MetricSeries], n: int) -> dict[str, MetricSeries]:
    """The first ``n`` intervals of every metric."""
    return {name: s.head(n) for name, s in series.items()}


def pack(series: Mapping[str, MetricSeries], carry: Carry) -> bytes:
    """``series`` (every metric, the same number of intervals) and ``carry`` as bytes."""
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for index, (name, s) in enumerate(series.items()):
        kinds[name] = s.type
        if isinstance(s, RatioSeries):
            for field in _RATIO:
                arrays[f"{index}.{field}"] = getattr(s, field)
        elif isinstance(s, HistogramSeries):
            arrays[f"{index}.le"] = s.le
            arrays[f"{index}.canary"] = s.canary
            arrays[f"{index}.baseline"] = s.baseline
        else:
            arrays[f"{index}.canary"] = s.canary
            arrays[f"{index}.baseline"] = s.baseline
    header = json.dumps({"kinds": kinds, "carry": carry}, separators=(",", ":")).encode()
    arrays["header"] = np.frombuffer(header, dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    # One zlib stream over the archive: savez_compressed deflates every array on its own,
    # 3 ms a call for ~30 small arrays; level 1 shrinks the mostly-small counts as well.
    return zlib.compress(out.getvalue(), 1)


def unpack(blob: bytes) -> tuple[dict[str, MetricSeries], Carry]:
    """What ``pack`` stored; ``StoredMismatch`` for bytes it did not write."""
    try:
        with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header: dict[str, Any] = json.loads(arrays.pop("header").tobytes())
        series: dict[str, MetricSeries] = {}
        for index, (name, kind) in enumerate(header["kinds"].items()):
            got = {key.split(".", 1)[1]: value for key, value in arrays.items()
                   if key.split(".", 1)[0] == str(index)}
            if kind == "ratio":
                series[name] = RatioSeries(*(got[field] for field in _RATIO))
            elif kind == "histogram":
                series[name] = HistogramSeries(got["le"], got["canary"], got["baseline"])
            else:
                series[name] = GaugeSeries(got["canary"], got["baseline"])
        carry = {str(query): {str(k): [int(v[0]), float(v[1])] for k, v in series_.items()}
                 for query, series_ in header["carry"].items()}
    except (ValueError, KeyError, TypeError, IndexError, OSError, zlib.error) as exc:
        raise StoredMismatch(f"stored intervals unreadable ({type(exc).__name__})") from None
    lengths = {len(s) for s in series.values()}
    if len(lengths) > 1:
        raise StoredMismatch("stored intervals have metrics of different lengths")
    return series, carry


def join(stored: Mapping[str, MetricSeries], new: Mapping[str, MetricSeries]
         ) -> dict[str, MetricSeries]:
    """Stored intervals followed by the intervals read since; ``StoredMismatch`` when a
    metric is missing, changed type or (histograms) changed bucket bounds."""
    out: dict[str, MetricSeries] = {}
    for name, after in new.items():
        before = stored.get(name)
        if before is None or before.type != after.type:
            raise StoredMismatch(f"metric {name} is not stored as a {after.type}")
        if isinstance(before, RatioSeries) and isinstance(after, RatioSeries):
            out[name] = RatioSeries(*(np.concatenate((getattr(before, f), getattr(after, f)))
                                      for f in _RATIO))
        elif isinstance(before, HistogramSeries) and isinstance(after, HistogramSeries):
            if not np.array_equal(before.le, after.le):
                raise StoredMismatch(f"metric {name}: bucket bounds changed")
            out[name] = HistogramSeries(after.le, np.concatenate((before.canary, after.canary)),
                                        np.concatenate((before.baseline, after.baseline)),
                                        after.unit)
        elif isinstance(before, GaugeSeries) and isinstance(after, GaugeSeries):
            out[name] = GaugeSeries(np.concatenate((before.canary, after.canary)),
                                    np.concatenate((before.baseline, after.baseline)))
    return out
