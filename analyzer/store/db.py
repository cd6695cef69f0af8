"""Analyses and their evaluations in a SQL database (SQLite by default, any SQLAlchemy URL).

An *analysis* (session) is one canary revision of one rollout, as identified by namespace,
rollout, the canary/baseline selectors and the revision (the canary's pod-template-hash; ``""``
when the caller cannot say); every judge call on it is an *evaluation* holding the verdict, the
evidence (the response) and the PromQL behind it, so a verdict can be audited later. A new
revision closes the rollout's other open sessions: a second release never inherits the first
one's window, and a closed session is never extended (a revision that comes back, as in a
rollback, starts afresh).

Several replicas may share one database (PostgreSQL): a unique index over *open* sessions'
identity plus insert-or-select makes concurrent first calls agree on one session, and the
schema is migrated on start under a lock (``analyzer.store.migrate``). A database that cannot
be read or written right now (locked, read-only, unreachable) raises ``StoreUnavailable``
after a bounded wait, which the API answers with 503 — a transient Error that Argo retries.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from analyzer.errors import UnavailableError
from analyzer.store.migrate import STARTUP_LOCK_SECONDS, upgrade

DEFAULT_LOCK_TIMEOUT = 2.0
"""Seconds a call waits for a database lock before giving up with ``StoreUnavailable``.

A write takes milliseconds, so a longer wait means another process holds the database; the
judge call must answer (503) well inside Argo's default 10 s web-metric timeout, after up to
5 s for Prometheus."""


WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the SQLite write-ahead log is truncated to after a checkpoint."""


class StoreUnavailable(UnavailableError):
    """The database could not be used right now; ``reason`` says why (for logs and the 503)."""

    dependency = "store"

    @property
    def locked(self) -> bool:
        """Another connection holds a lock: worth trying again while time is left."""
        return "database is locked" in self.reason or "database is busy" in self.reason


class Base(DeclarativeBase):
    pass


class AnalysisRow(Base):
    __tablename__ = "analyses"
    __table_args__ = (Index("uq_open_session", "namespace", "rollout", "selector_key",
                            "revision", unique=True, sqlite_where=text("closed_at IS NULL"),
                            postgresql_where=text("closed_at IS NULL")),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253), index=True)
    rollout: Mapped[str] = mapped_column(String(253), index=True)
    selector_key: Mapped[str] = mapped_column(String(2048))
    revision: Mapped[str] = mapped_column(String(63), default="", server_default="")
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    config_name: Mapped[str] = mapped_column(String(253))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # The summary of evaluations the retention pruned (migration 0003): how many, and the
    # newest one's verdict, score and time.
    pruned_evaluations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    analysis_id: Mapped[str] = mapped_column(ForeignKey("analyses.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    final: Mapped[bool] = mapped_column(Boolean)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    queries: Mapped[list[str]] = mapped_column(JSON)


class IntervalStatsRow(Base):
    """A session's final intervals (migration 0004; see ``analyzer.metrics.intervals``)."""

    __tablename__ = "interval_stats"

    analysis_id: Mapped[str] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"),
                                             primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    intervals: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    judge_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class StoredHeader:
    """What a session's stored intervals are: ``intervals`` final intervals under
    ``fingerprint`` (see ``StoredIntervals``)."""

    fingerprint: str
    intervals: int


@dataclass(frozen=True)
class StoredIntervals:
    """What a session has stored of its intervals: ``intervals`` final intervals in ``data``,
    valid under ``fingerprint``; ``judge_state`` is for an incremental judge (else None)."""

    fingerprint: str
    intervals: int
    data: bytes
    judge_state: bytes | None = None


def selector_key(canary: Mapping[str, str], baseline: Mapping[str, str], reporter: str) -> str:
    """Canonical JSON of what identifies the traffic, so equal selectors give equal keys."""
    return json.dumps({"canary": dict(canary), "baseline": dict(baseline),
                       "reporter": reporter}, sort_keys=True, separators=(",", ":"))


def _utc(moment: datetime) -> datetime:
    """SQLite drops the timezone; every time in and out of the store is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AnalysisSession:
    id: str
    start: datetime
    revision: str = ""


@dataclass(frozen=True)
class SessionKey:
    """What identifies one open session: a canary revision of a rollout, judged on one pair
    of selectors. ``revision`` is ``""`` when the caller could not say which revision."""

    namespace: str
    rollout: str
    selectors: str
    revision: str = ""


def database_url(value: str) -> str:
    """A SQLAlchemy URL, or a plain file path taken as a SQLite database.

    ``postgresql://`` and ``postgres://`` (what PostgreSQL tools print) get the psycopg 3
    driver this package depends on; SQLAlchemy would otherwise look for psycopg2.
    """
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser()}"
    for scheme in ("postgresql://", "postgres://"):
        if value.startswith(scheme):
            return "postgresql+psycopg://" + value[len(scheme):]
    return value


@contextmanager
def _unavailable_on_error(what: str) -> Iterator[None]:
    """Database errors that a later call may not meet (locks, I/O, connections) as
    ``StoreUnavailable``; programming errors stay what they are (a 500 and a log)."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(f"{what}: {_cause(exc)}") from exc


def _cause(exc: OperationalError | InterfaceError) -> str:
    """The driver's message, first line only (SQLAlchemy appends the SQL and a link)."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


class Store:
    """Thread-safe access to the two tables; the schema is migrated when the store opens.

    Opening fails with ``StoreUnavailable`` naming the database when it cannot be reached,
    migrated or written, so ``serve`` stops at once with a message instead of answering every
    call with an error. ``lock_timeout`` bounds every later wait for a lock (see
    ``DEFAULT_LOCK_TIMEOUT``).
    """

    def __init__(self, url: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.lock_timeout = lock_timeout
        url = database_url(url)
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # The API runs handlers in a threadpool; SQLite's busy timeout bounds lock waits.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": lock_timeout}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        elif url.startswith("postgresql"):
            millis = max(1, int(lock_timeout * 1000))
            kwargs["connect_args"] = {
                "connect_timeout": max(1, round(lock_timeout)),
                "options": f"-c lock_timeout={millis} -c statement_timeout={4 * millis}"}
            kwargs["pool_pre_ping"] = True  # a restarted server's dead connections are replaced
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.url = self.engine.url.render_as_string(hide_password=True)
        try:
            with _unavailable_on_error(f"database {self.url}"):
                upgrade(self.engine)
                self._check_writable()
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _check_writable(self) -> None:
        """A write that is rolled back. A database already at head migrates without writing,
        so a read-only SQLite file (or directory: the journal is created beside it on the
        first changed page) would otherwise fail only at the first verdict."""
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Other stores starting at the same moment may still hold the file for their
                # (empty) migrations: wait as long as a start-up may, not a call's 2 s.
                connection.exec_driver_sql(
                    f"PRAGMA busy_timeout = {int(STARTUP_LOCK_SECONDS * 1000)}")
            try:
                connection.exec_driver_sql(
                    "UPDATE alembic_version SET version_num = version_num")
                connection.rollback()
            finally:
                if sqlite:
                    connection.exec_driver_sql(
                        f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """A read of the schema version; ``StoreUnavailable`` when the database is not usable
        now (what the readiness probe asks)."""
        with _unavailable_on_error(f"database {self.url}"), self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()

    def find_session(self, key: SessionKey) -> AnalysisSession | None:
        """The open session of ``key``, if any (closed sessions are history only)."""
        with _unavailable_on_error("reading the analysis session"), self._sessions() as db:
            row = db.scalars(select(AnalysisRow).where(*_is(key),
                                                       AnalysisRow.closed_at.is_(None))).first()
            return None if row is None else AnalysisSession(row.id, _utc(row.start),
                                                            row.revision)

    def find_intervals(self, key: SessionKey
                       ) -> tuple[AnalysisSession, StoredHeader | None] | None:
        """The open session of ``key`` and what its stored intervals are (not the bytes: a
        process that continues the session from memory needs only this), if it exists."""
        with _unavailable_on_error("reading the analysis session"), self._sessions() as db:
            found = db.execute(
                select(AnalysisRow.id, AnalysisRow.start, AnalysisRow.revision,
                       IntervalStatsRow.fingerprint, IntervalStatsRow.intervals)
                .outerjoin(IntervalStatsRow, IntervalStatsRow.analysis_id == AnalysisRow.id)
                .where(*_is(key), AnalysisRow.closed_at.is_(None))).first()
            if found is None:
                return None
            session = AnalysisSession(found.id, _utc(found.start), found.revision)
            if found.fingerprint is None:
                return session, None
            return session, StoredHeader(found.fingerprint, found.intervals)

    def intervals_of(self, session_id: str) -> StoredIntervals | None:
        """A session's stored intervals, bytes and all."""
        with _unavailable_on_error("reading the analysis session"), self._sessions() as db:
            stats = db.get(IntervalStatsRow, session_id)
            if stats is None:
                return None
            return StoredIntervals(stats.fingerprint, stats.intervals, bytes(stats.data),
                                   stats.judge_state)

    def record(self, key: SessionKey, config_name: str, start: datetime, *, at: datetime,
               window_end: datetime, verdict: str, score: float, final: bool,
               response: dict[str, Any], queries: list[str],
               intervals: StoredIntervals | None = None, replaces: bool = False,
               session: AnalysisSession | None = None) -> Recorded:
        """Stores one evaluation (see ``_record``), trying again while ``lock_timeout`` lasts
        when a lock is met without waiting: in WAL mode a write transaction that began as a
        read gets SQLITE_BUSY at once, not after the busy timeout, if another writer
        committed first. The failed transaction left nothing, so trying again is safe."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return self._record(key, config_name, start, at=at, window_end=window_end,
                                    verdict=verdict, score=score, final=final,
                                    response=response, queries=queries, intervals=intervals,
                                    replaces=replaces, session=session)
            except StoreUnavailable as exc:
                if not exc.locked or time.monotonic() >= deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _record(self, key: SessionKey, config_name: str, start: datetime, *, at: datetime,
                window_end: datetime, verdict: str, score: float, final: bool,
                response: dict[str, Any], queries: list[str],
                intervals: StoredIntervals | None, replaces: bool,
                session: AnalysisSession | None) -> Recorded:
        """Stores one evaluation in the open session of ``key``, creating the session on the
        first call, and returns its id. ``response`` is stored with that id in
        ``analysis_id``; the caller's dict is not changed.

        A new session, the closing of the rollout's sessions of other revisions and the first
        evaluation are one transaction, so a failure (a lock, a crash) leaves none of them,
        and a retried call is not a duplicate. Concurrent first calls, from this process or
        from another replica, race on the unique index: the loser's insert fails, it rolls
        back and adds its evaluation to the winner's session.

        ``session``: the open session of ``key`` as the caller read it at the start of the
        call (saves looking it up again; the lookup here would race the same way).
        ``intervals`` (the session's final intervals) are saved in the same transaction, so
        a session never has intervals from a call whose evaluation was not stored; with
        ``replaces`` (the caller loaded stored ones) they replace them only if they are
        more, or under another fingerprint. Two
        callers saving a session's first intervals at once race on its primary key: the
        loser stores its evaluation without them (the winner's are as good).
        """
        evaluation = {"at": _utc(at), "window_end": _utc(window_end), "verdict": verdict,
                      "score": score, "final": final, "queries": queries}
        with _unavailable_on_error("recording the evaluation"):
            found = session or self.find_session(key)
            if found is None:
                row = AnalysisRow(id=str(uuid.uuid4()), namespace=key.namespace,
                                  rollout=key.rollout, selector_key=key.selectors,
                                  revision=key.revision, config_name=config_name,
                                  start=_utc(start), created_at=_utc(at))
                with self._sessions() as db:
                    closed = _close_other_revisions(db, key, _utc(at))
                    db.add(row)
                    db.add(EvaluationRow(analysis_id=row.id, **evaluation,
                                         response={**response, "analysis_id": row.id}))
                    if intervals is not None:
                        db.add(_stats_row(row.id, intervals, _utc(at)))
                    try:
                        db.commit()
                        return Recorded(AnalysisSession(row.id, _utc(start), key.revision),
                                        created=True, closed=closed)
                    except IntegrityError:
                        db.rollback()
                found = self.find_session(key)
                if found is None:  # pragma: no cover - the row that won cannot vanish
                    raise RuntimeError("analysis session vanished after a conflicting insert")
            for save in (intervals, None) if intervals is not None else (None,):
                with self._sessions() as db:
                    db.add(EvaluationRow(analysis_id=found.id, **evaluation,
                                         response={**response, "analysis_id": found.id}))
                    if save is not None:
                        _save_intervals(db, found.id, save, _utc(at), replaces)
                    try:
                        db.commit()
                        break
                    except IntegrityError:
                        db.rollback()
                        if save is None:
                            raise
            return Recorded(found, created=False, closed=())

    def list_analyses(self, namespace: str | None = None, rollout: str | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, each with its latest evaluation (or ``None``)."""
        with _unavailable_on_error("listing analyses"), self._sessions() as db:
            query = select(AnalysisRow)
            if namespace:
                query = query.where(AnalysisRow.namespace == namespace)
            if rollout:
                query = query.where(AnalysisRow.rollout == rollout)
            rows = db.scalars(query.order_by(AnalysisRow.created_at.desc(),
                                             AnalysisRow.id).limit(limit)).all()
            out = []
            for row in rows:
                last = db.scalars(select(EvaluationRow)
                                  .where(EvaluationRow.analysis_id == row.id)
                                  .order_by(EvaluationRow.id.desc()).limit(1)).first()
                item = _analysis_dict(row)
                item["last_evaluation"] = (_evaluation_dict(last, full=False) if last
                                           is not None else _pruned_summary(row))
                out.append(item)
            return out

    def get_analysis(self, analysis_id: str) -> dict[str, Any] | None:
        """One analysis with every evaluation, oldest first."""
        with _unavailable_on_error("reading the analysis"), self._sessions() as db:
            row = db.get(AnalysisRow, analysis_id)
            if row is None:
                return None
            evaluations = db.scalars(select(EvaluationRow)
                                     .where(EvaluationRow.analysis_id == analysis_id)
                                     .order_by(EvaluationRow.id)).all()
            out = _analysis_dict(row)
            out["evaluations"] = [_evaluation_dict(e, full=True) for e in evaluations]
            return out

    def count_analyses(self) -> int:
        with _unavailable_on_error("counting analyses"), self._sessions() as db:
            return db.scalar(select(func.count()).select_from(AnalysisRow)) or 0


@dataclass(frozen=True)
class Recorded:
    """Where an evaluation went: its session, whether the call created it, and the ids of
    the earlier revisions' sessions that the new one closed."""

    session: AnalysisSession
    created: bool
    closed: tuple[str, ...]


def _is(key: SessionKey) -> tuple[Any, ...]:
    return (AnalysisRow.namespace == key.namespace, AnalysisRow.rollout == key.rollout,
            AnalysisRow.selector_key == key.selectors, AnalysisRow.revision == key.revision)


def _stats_row(analysis_id: str, intervals: StoredIntervals, at: datetime) -> IntervalStatsRow:
    return IntervalStatsRow(analysis_id=analysis_id, fingerprint=intervals.fingerprint,
                            intervals=intervals.intervals, data=intervals.data,
                            judge_state=intervals.judge_state, updated_at=at)


def _save_intervals(db: Any, analysis_id: str, intervals: StoredIntervals, at: datetime,
                    replaces: bool) -> None:
    """Inserts a session's stored intervals, or (``replaces``: the caller saw a row) replaces
    them if these are more or under another fingerprint. Only writes, no read: in WAL mode a
    transaction that reads first and writes later fails at once (SQLITE_BUSY, no busy wait)
    when another writer committed in between, which starved callers under 32 concurrent
    calls; a write-first transaction waits its turn."""
    if not replaces:
        db.add(_stats_row(analysis_id, intervals, at))
        return
    db.execute(update(IntervalStatsRow)
               .where(IntervalStatsRow.analysis_id == analysis_id,
                      or_(IntervalStatsRow.fingerprint != intervals.fingerprint,
                          IntervalStatsRow.intervals < intervals.intervals))
               .values(fingerprint=intervals.fingerprint, intervals=intervals.intervals,
                       data=intervals.data, judge_state=intervals.judge_state, updated_at=at)
               .execution_options(synchronize_session=False))


def _close_other_revisions(db: Any, key: SessionKey, at: datetime) -> tuple[str, ...]:
    """Closes the rollout's open sessions of other known revisions. A call that cannot name
    its revision (``""``) closes nothing: it cannot tell a new release from the old one."""
    if not key.revision:
        return ()
    others = (AnalysisRow.namespace == key.namespace, AnalysisRow.rollout == key.rollout,
              AnalysisRow.revision != key.revision, AnalysisRow.revision != "",
              AnalysisRow.closed_at.is_(None))
    ids = tuple(db.scalars(select(AnalysisRow.id).where(*others)).all())
    if ids:
        db.execute(update(AnalysisRow).where(AnalysisRow.id.in_(ids)).values(closed_at=at))
        # A closed session is never continued: its intervals are dead weight.
        db.execute(delete(IntervalStatsRow).where(IntervalStatsRow.analysis_id.in_(ids)))
    return ids


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Foreign keys on; a database file in WAL mode, so that reads never wait for the writer
    nor the writer for reads (in the default rollback journal, 16 concurrent callers saw
    4% of calls 503 "database is locked"). ``synchronous=NORMAL`` is WAL's usual pairing: a
    power loss may drop the last commits, never corrupt the file."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA database_list")
    if any(row[2] for row in cursor.fetchall() if row[1] == "main"):  # a file, not :memory:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint truncates the WAL back to this size, so the -wal file beside the
        # database stays bounded too (a pod's emptyDir counts both).
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.close()


def _analysis_dict(row: AnalysisRow) -> dict[str, Any]:
    selectors = json.loads(row.selector_key)
    return {"id": row.id, "namespace": row.namespace, "rollout": row.rollout,
            "canary": selectors["canary"], "baseline": selectors["baseline"],
            "reporter": selectors["reporter"], "revision": row.revision or None,
            "config": row.config_name, "start": _iso(row.start),
            "created_at": _iso(row.created_at),
            "closed_at": None if row.closed_at is None else _iso(row.closed_at),
            "evaluations_pruned": row.pruned_evaluations or 0}


def _pruned_summary(row: AnalysisRow) -> dict[str, Any] | None:
    """The newest pruned evaluation, as kept on the session row, when none is left."""
    if row.last_verdict is None or row.last_at is None:
        return None
    return {"at": _iso(row.last_at), "verdict": row.last_verdict, "score": row.last_score,
            "pruned": True}


def _evaluation_dict(row: EvaluationRow, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"at": _iso(row.at), "window_end": _iso(row.window_end),
                           "verdict": row.verdict, "score": row.score, "final": row.final}
    if full:
        out["response"] = row.response
        out["queries"] = row.queries
    return out


__all__ = ["AnalysisSession", "Recorded", "SessionKey", "Store", "StoreUnavailable",
           "StoredHeader", "StoredIntervals", "database_url", "selector_key"]
