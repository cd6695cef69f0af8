"""Storage that does not grow without bound: evaluations are pruned in the background.

Every judge call stores an evaluation (the whole answer and its PromQL, a few KiB), so a
service that runs for months would fill any disk, and dev's SQLite on an ``emptyDir`` would
get its pod evicted at the volume's ``sizeLimit``. A ``Pruner`` deletes evaluations older than
the retention (``serve --retention``, default 30 days) and, for SQLite, the oldest ones
beyond a size budget (``serve --store-size-limit``), in small batches each in its own short
transaction, so a judge call waits at most one batch for the database lock.

Sessions are kept: before its evaluations go, a session row takes their count and the newest
one's verdict, score and time (migration 0003), so the listing still says how an old canary
ended. A session whose evaluations are all gone was idle longer than the retention; it is
closed, and a later call of its revision starts afresh rather than resuming a window whose
evidence was deleted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from analyzer.errors import InputError
from analyzer.store.db import (
    AnalysisRow,
    EvaluationRow,
    IntervalStatsRow,
    Store,
    StoreUnavailable,
    _unavailable_on_error,
    _utc,
    database_url,
)

DEFAULT_RETENTION = timedelta(days=30)
PRUNE_INTERVAL = 300.0
"""Seconds between background runs: far below any retention, and a few minutes of growth
is what the size budget must leave room for."""
BATCH = 200
"""Evaluations deleted per transaction. A batch of 200 real answers took 44-63 ms on SQLite
(tests/test_retention.py, 2 shared cores) and ~22 ms on PostgreSQL: well inside a judge
call's 2 s lock wait."""
PAUSE = 0.02
"""Seconds between batches, so waiting judge calls get the lock first."""

log = logging.getLogger("analyzer.store")
_DURATION = re.compile(r"(\d+)(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"(\d+)(Ki|Mi|Gi|K|M|G|)")
_SIZE_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2,
               "Gi": 1024**3}


class RetentionError(InputError):
    """A retention or size flag that cannot be used; the message names the flag."""


def parse_retention(value: str, flag: str = "--retention") -> timedelta:
    """A positive whole duration such as ``30d``, ``12h``, ``2w`` (Prometheus' units)."""
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise RetentionError(f"{flag}: {value!r} is not a positive duration such as 30d, 12h "
                             f"or 2w")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_size(value: str, flag: str = "--store-size-limit") -> int:
    """A positive byte count as Kubernetes writes quantities: ``512Mi``, ``1Gi``, ``100M``."""
    match = _SIZE.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise RetentionError(f"{flag}: {value!r} is not a positive size such as 512Mi or 1Gi")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 1024 * 1024:
        raise RetentionError(f"{flag}: {value!r} is below 1Mi, less than an empty database")
    return size


def check_size_limit_applies(url: str) -> None:
    """The size budget counts SQLite pages; a PostgreSQL server manages its own disk."""
    if not database_url(url).startswith("sqlite"):
        raise RetentionError("--store-size-limit: only for a SQLite database (PostgreSQL "
                             "manages its own disk); use --retention")


@dataclass
class PruneReport:
    """What one run did; ``slowest_batch`` is the longest the run held the write lock."""

    evaluations: int = 0
    sessions_closed: int = 0
    batches: int = 0
    slowest_batch: float = 0.0


class Pruner:
    """Prunes one store by age and, for SQLite, by size; ``clock`` is injectable for tests,
    ``on_pruned`` hears each background run's report (the service counts it in /metrics).

    ``size_limit`` bounds the bytes of the database's used pages (SQLite reuses the pages
    of deleted rows, so the file stops growing once pruning keeps up).
    """

    def __init__(self, store: Store, retention: timedelta = DEFAULT_RETENTION, *,
                 size_limit: int | None = None, batch: int = BATCH, pause: float = PAUSE,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_pruned: Callable[[PruneReport], None] | None = None) -> None:
        if size_limit is not None:
            check_size_limit_applies(store.url)
        self.store = store
        self.retention = retention
        self.size_limit = size_limit
        self.batch = batch
        self.pause = pause
        self.clock = clock
        self.on_pruned = on_pruned
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prune(self) -> PruneReport:
        """One run: old evaluations, then the oldest ones over the size budget, then the
        sessions left without any. ``StoreUnavailable`` when the database cannot be used."""
        report = PruneReport()
        cutoff = _utc(self.clock()) - self.retention
        # Checked between batches, so stopping the service does not wait for a long run.
        while not self._stop.is_set() and self._batch(report, EvaluationRow.at < cutoff):
            pass
        while (self.size_limit is not None and not self._stop.is_set()
               and self.used_bytes() > self.size_limit):
            if not self._batch(report):
                break
        report.sessions_closed = self._close_emptied(cutoff)
        return report

    def used_bytes(self) -> int:
        """Bytes in the SQLite database's pages that hold data (not its free list)."""
        with _unavailable_on_error("measuring the database"), self.store.engine.connect() as db:
            pages = db.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = db.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = db.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * size)

    def _batch(self, report: PruneReport, *where: Any) -> bool:
        """Deletes the oldest ``batch`` evaluations matching ``where`` and folds them into
        their sessions' summaries, in one transaction; False when none matched. The delete
        returns the rows it removed, so two replicas pruning one PostgreSQL never count an
        evaluation twice."""
        began = time.monotonic()
        oldest = select(EvaluationRow.id).where(*where).order_by(EvaluationRow.id)
        with _unavailable_on_error("pruning evaluations"), Session(self.store.engine) as db:
            gone = db.execute(
                delete(EvaluationRow)
                .where(EvaluationRow.id.in_(oldest.limit(self.batch).scalar_subquery()))
                .returning(EvaluationRow.id, EvaluationRow.analysis_id, EvaluationRow.verdict,
                           EvaluationRow.score, EvaluationRow.at)).all()
            for analysis_id, (count, newest) in _by_session(gone).items():
                session = AnalysisRow.id == analysis_id
                db.execute(update(AnalysisRow).where(session).values(
                    pruned_evaluations=AnalysisRow.pruned_evaluations + count))
                # Another replica's later batch may have committed first: keep the newest.
                db.execute(update(AnalysisRow).where(
                    session, or_(AnalysisRow.last_at.is_(None),
                                 AnalysisRow.last_at <= newest.at)).values(
                    last_verdict=newest.verdict, last_score=newest.score, last_at=newest.at))
            db.commit()
        if not gone:
            return False
        report.evaluations += len(gone)
        report.batches += 1
        report.slowest_batch = max(report.slowest_batch, time.monotonic() - began)
        if self.pause:
            time.sleep(self.pause)
        return True

    def _close_emptied(self, cutoff: datetime) -> int:
        """Closes open sessions older than the cutoff whose evaluations are all gone."""
        left = exists().where(EvaluationRow.analysis_id == AnalysisRow.id)
        with _unavailable_on_error("closing pruned sessions"), Session(self.store.engine) as db:
            closed = db.execute(update(AnalysisRow)
                                .where(AnalysisRow.closed_at.is_(None),
                                       AnalysisRow.created_at < cutoff, ~left)
                                .values(closed_at=_utc(self.clock())))
            # Closed sessions are never continued: their stored intervals go too.
            db.execute(delete(IntervalStatsRow).where(IntervalStatsRow.analysis_id.in_(
                select(AnalysisRow.id).where(AnalysisRow.closed_at.is_not(None)))))
            db.commit()
        return int(getattr(closed, "rowcount", 0) or 0)

    def start(self, interval: float = PRUNE_INTERVAL) -> None:
        """Runs ``prune`` now and every ``interval`` seconds in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, args=(interval,),
                                        name="canary-analyzer-pruner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                report = self.prune()
            except StoreUnavailable as exc:  # a lock, a full disk: the next run tries again
                log.warning("pruning skipped: %s", exc.reason)
            else:
                if self.on_pruned is not None:
                    self.on_pruned(report)
                if report.evaluations or report.sessions_closed:
                    log.info("pruned %d evaluations in %d batches (slowest %.3f s), closed "
                             "%d idle sessions", report.evaluations, report.batches,
                             report.slowest_batch, report.sessions_closed)
            self._stop.wait(interval)


@dataclass(frozen=True)
class _Pruned:
    id: int
    verdict: str
    score: float
    at: datetime


def _by_session(rows: Sequence[Any]) -> dict[str, tuple[int, _Pruned]]:
    """Per session: how many of ``rows`` are its, and its newest (highest id)."""
    out: dict[str, tuple[int, _Pruned]] = {}
    for row_id, analysis_id, verdict, score, at in rows:
        pruned = _Pruned(row_id, verdict, score, _utc(at))
        count, newest = out.get(analysis_id, (0, pruned))
        out[analysis_id] = (count + 1, pruned if pruned.id >= newest.id else newest)
    return out
