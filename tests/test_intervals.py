"""The stored-intervals blob: exact round trip, and every blob that does not fit refused."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.config.models import MetricConfig
from analyzer.judge.series import GaugeSeries, HistogramSeries, RatioSeries
from analyzer.metrics.intervals import StoredMismatch, fingerprint, head, join, pack, unpack

LE = np.asarray([10.0, 100.0, np.inf])


def _series(n: int, seed: int = 0) -> dict[str, RatioSeries | HistogramSeries | GaugeSeries]:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(5, (4, n)).astype(np.int64)
    gauge = rng.normal(size=(2, n))
    gauge[0, 1] = np.nan
    return {"errors": RatioSeries(*counts),
            "latency": HistogramSeries(LE, rng.poisson(3, (n, 3)).astype(np.int64),
                                       rng.poisson(3, (n, 3)).astype(np.int64)),
            "queue": GaugeSeries(gauge[0], gauge[1])}


def _arrays(series: dict) -> dict:
    return {name: {k: np.asarray(v).tolist() for k, v in vars(s).items() if k != "unit"}
            for name, s in series.items()}


def test_pack_unpack_is_exact_and_keeps_the_carry() -> None:
    series = _series(12)
    carry = {'q{a="b"}': {'{"pod":"p-1"}': [11, 1234567.125]}}
    back, carried = unpack(pack(series, carry))
    assert np.array_equal(back["queue"].canary, series["queue"].canary, equal_nan=True)
    assert _arrays({k: v for k, v in back.items() if k != "queue"}) == _arrays(
        {k: v for k, v in series.items() if k != "queue"})
    assert carried == carry


def test_join_appends_and_equals_the_whole() -> None:
    whole = _series(20)
    errors, latency, queue = whole["errors"], whole["latency"], whole["queue"]
    assert isinstance(errors, RatioSeries) and isinstance(latency, HistogramSeries)
    assert isinstance(queue, GaugeSeries)
    tail = {"errors": RatioSeries(errors.canary_num[8:], errors.canary_den[8:],
                                  errors.baseline_num[8:], errors.baseline_den[8:]),
            "latency": HistogramSeries(LE, latency.canary[8:], latency.baseline[8:]),
            "queue": GaugeSeries(queue.canary[8:], queue.baseline[8:])}
    joined = join(head(whole, 8), tail)
    for name in whole:
        for key, value in vars(whole[name]).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(getattr(joined[name], key), value, equal_nan=True)


def test_blobs_that_do_not_fit_are_refused() -> None:
    with pytest.raises(StoredMismatch, match="unreadable"):
        unpack(b"not a blob")
    stored = head(_series(10), 5)
    other = dict(stored)
    other["latency"] = HistogramSeries(np.asarray([5.0, np.inf]), np.zeros((1, 2), np.int64),
                                       np.zeros((1, 2), np.int64))
    with pytest.raises(StoredMismatch, match="bucket bounds changed"):
        join(stored, other)
    with pytest.raises(StoredMismatch, match="not stored as a ratio"):
        join({"queue": stored["queue"]}, {"queue": stored["errors"]})


def test_the_fingerprint_changes_with_config_selectors_and_grid() -> None:
    metrics = [MetricConfig(name="error-rate", kind="istio-error-rate")]
    base = fingerprint(metrics, "sel", 1000.0, 30.0)
    assert base == fingerprint(list(metrics), "sel", 1000.0, 30.0)
    assert base != fingerprint([MetricConfig(name="error-rate", kind="istio-error-rate",
                                             allowed_increase=2.0)], "sel", 1000.0, 30.0)
    assert base != fingerprint(metrics, "other", 1000.0, 30.0)
    assert base != fingerprint(metrics, "sel", 1030.0, 30.0)
    assert base != fingerprint(metrics, "sel", 1000.0, 60.0)
