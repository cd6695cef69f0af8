"""What one process keeps of a session between its calls, so a call continues the last one.

A session's stored row (``StoredIntervals``: its final intervals, the carry that continues
them, the judge's running state) lets any replica continue any session. Decoding that row at
the start of every call and encoding it again at the end cost more than the rest of a call's
own work (about 15 ms of 50 at a 30-minute window, growing with the window). Argo asks about
one rollout every 30 s or so, and usually the same process answers again, so the process
keeps what the last call of each session ended with — the final intervals' series, their
carry and the judge state that covers them — and tied to the exact row they continue.

The rule that keeps this exact: a kept entry is used only while the session's row in the store
is byte for byte the row the entry continues (as the previous call loaded or wrote it). A row
that another replica or worker wrote since, or a row replaced after a seam mismatch, does not
match, and the call decodes the row as it would without memory. The entry's series extend
that row by the intervals that became final since, read and checked exactly as any read since
a seam, so continuing the entry and continuing the row give the same answer.

The row itself is then written only every ``PERSIST_EVERY`` final intervals (and whenever it
could not be continued): a replica that takes a session over reads from Prometheus since the
row's seam and folds those intervals, at most ``PERSIST_EVERY`` more than with a fresh row.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from analyzer.config import CanaryConfig
from analyzer.judge.series import MetricSeries
from analyzer.judge.stream import JudgeState
from analyzer.metrics.istio import Carry
from analyzer.store import StoredIntervals

PERSIST_EVERY = 10
"""Final intervals (5 min at the default 30 s step) a session's stored row may lag the
process that continues it. Writing the row costs a few ms a call (packing every stored
interval, the judge state as compressed JSON); a replica taking over re-reads this much more."""
DEFAULT_SESSIONS = 256
"""Sessions one process keeps (least recently judged dropped first). An entry is the final
intervals' counts (~1 MiB at 24 h of Istio histograms) and the judge state (~0.5 MiB)."""


@dataclass(frozen=True)
class Continued:
    """Where the last call of a session ended: ``series`` (its final intervals) with the
    ``carry`` after them and the judge ``state`` covering exactly them, continuing ``row``."""

    row: StoredIntervals
    intervals: int
    series: Mapping[str, MetricSeries]
    carry: Carry
    state: JudgeState


class Continuations:
    """The process' kept sessions, by session id; safe to share between threads."""

    def __init__(self, size: int = DEFAULT_SESSIONS) -> None:
        self.size = size
        self._kept: OrderedDict[str, Continued] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, session_id: str, row: StoredIntervals | None,
             config: CanaryConfig) -> Continued | None:
        """The kept entry of a session, removed (two concurrent calls of one session never
        continue the same state), if it continues exactly ``row`` under ``config``."""
        with self._lock:
            kept = self._kept.pop(session_id, None)
        if kept is None or row is None or kept.row != row or kept.state.config != config:
            return None
        return kept

    def put(self, session_id: str, continued: Continued) -> None:
        with self._lock:
            self._kept[session_id] = continued
            self._kept.move_to_end(session_id)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)
