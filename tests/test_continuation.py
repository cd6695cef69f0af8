"""The process' kept sessions: taken once, only under the same config, within a byte budget."""

from __future__ import annotations

import numpy as np

from analyzer.config import default_config
from analyzer.continuation import STATE_BYTES, Continuations, Continued
from analyzer.judge.series import RatioSeries
from analyzer.judge.stream import JudgeState


def _entry(intervals: int) -> Continued:
    counts = np.zeros(intervals, dtype=np.int64)
    series = {"error-rate": RatioSeries(counts, counts, counts, counts)}
    return Continued("f", intervals, series, {}, JudgeState(default_config()))


def test_an_entry_is_taken_once_and_only_under_its_config() -> None:
    kept = Continuations()
    kept.put("a", _entry(3))
    other = default_config().model_copy(update={"name": "other"})
    assert kept.take("a", other) is None  # judged under another config: not continued
    assert kept.take("a", default_config()) is None  # and it is gone
    kept.put("a", _entry(3))
    entry = kept.take("a", default_config())
    assert entry is not None and entry.intervals == 3
    assert kept.take("a", default_config()) is None  # two concurrent calls never share it
    assert kept.bytes == 0


def test_the_least_recently_judged_go_first_when_the_budget_is_spent() -> None:
    size = _entry(100).size
    assert size == STATE_BYTES + 4 * 100 * 8
    kept = Continuations(max_bytes=3 * size)
    for name in "abc":
        kept.put(name, _entry(100))
    kept.put("a", _entry(100))  # judged again: now the most recent
    kept.put("d", _entry(100))
    assert len(kept) == 3 and kept.bytes == 3 * size
    assert kept.take("b", default_config()) is None  # the oldest was dropped
    assert all(kept.take(name, default_config()) is not None for name in "acd")
