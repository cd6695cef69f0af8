"""What one process keeps of a session between its calls, so a call continues the last one.

A session's stored row (``StoredIntervals``: its final intervals, the carry that continues
them, the judge's running state) lets any replica continue any session. Reading that row at
the start of every call, decoding it and encoding it again at the end cost more than the rest
of a call's own work (about 15 ms of 50 at a 30-minute window, growing with the window). Argo
asks about one rollout every 30 s or so, and usually the same process answers again, so the
process keeps what the last call of each session ended with: the final intervals' series,
their carry and the judge state that covers them.

Continuing a kept entry is exactly as valid as continuing the stored row: either is final
intervals once read from Prometheus, and every continuation re-reads the seam overlap and
checks it against the carry (late samples, resets and vanished series read the window whole).
A call continues its process' entry unless the stored row covers more intervals (another
replica or worker got further) or was read under another fingerprint; then it loads the row.

The row itself is written only every ``PERSIST_EVERY`` final intervals (and whenever it could
not be continued): a replica that takes a session over reads from Prometheus since the row's
seam and folds those intervals, at most ``PERSIST_EVERY`` more than with a fresh row.
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

PERSIST_EVERY = 10
"""Final intervals (5 min at the default 30 s step) a session's stored row may lag the
process that continues it. Writing the row costs a few ms a call (packing every stored
interval, the judge state as compressed JSON); a replica taking over re-reads this much more."""
DEFAULT_SESSIONS = 256
"""Sessions one process keeps (least recently judged dropped first). An entry is the final
intervals' counts (~1 MiB at 24 h of Istio histograms) and the judge state (~0.5 MiB)."""


@dataclass(frozen=True)
class Continued:
    """Where the last call of a session ended: ``series`` (its first ``intervals`` final
    intervals, read under ``fingerprint``) with the ``carry`` after them and the judge
    ``state`` covering exactly them."""

    fingerprint: str
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

    def take(self, session_id: str, config: CanaryConfig) -> Continued | None:
        """The kept entry of a session, removed (two concurrent calls of one session never
        continue the same state), if it was judged under ``config``."""
        with self._lock:
            kept = self._kept.pop(session_id, None)
        if kept is None or kept.state.config != config:
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
