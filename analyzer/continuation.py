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

import numpy as np

from analyzer.config import CanaryConfig
from analyzer.judge.series import MetricSeries
from analyzer.judge.stream import JudgeState
from analyzer.metrics.istio import Carry

PERSIST_EVERY = 10
"""Final intervals (5 min at the default 30 s step) a session's stored row may lag the
process that continues it. Writing the row costs a few ms a call (packing every stored
interval, the judge state as compressed JSON); a replica taking over re-reads this much more."""
DEFAULT_BYTES = 64 * 2**20
"""Memory one process spends on kept sessions (least recently judged dropped first). An entry
is its final intervals' counts, ~350 bytes an interval for the default config's two metrics
(20 KiB at 30 min, 1 MiB at 24 h), and the judge state, ~110 KiB whatever the window: about
400 sessions of 30 minutes, or 50 of 24 hours."""
STATE_BYTES = 128 * 2**10
"""What a kept judge state is counted as (its arrays are not walked on every call)."""


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

    @property
    def size(self) -> int:
        """Roughly the bytes this entry holds."""
        arrays = (value for series in self.series.values() for value in vars(series).values())
        return STATE_BYTES + sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


class Continuations:
    """The process' kept sessions, by session id; safe to share between threads."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._kept: OrderedDict[str, tuple[Continued, int]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, session_id: str, config: CanaryConfig) -> Continued | None:
        """The kept entry of a session, removed (two concurrent calls of one session never
        continue the same state), if it was judged under ``config``."""
        with self._lock:
            found = self._kept.pop(session_id, None)
            if found is None:
                return None
            kept, size = found
            self.bytes -= size
        return kept if kept.state.config == config else None

    def put(self, session_id: str, continued: Continued) -> None:
        size = continued.size
        with self._lock:
            old = self._kept.pop(session_id, None)
            if old is not None:
                self.bytes -= old[1]
            self._kept[session_id] = (continued, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self._kept:
                self.bytes -= self._kept.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._kept)
