"""Analyses and their evaluations in a SQL database (SQLite by default, any SQLAlchemy URL).

An *analysis* (session) is one rollout's canary as identified by namespace, rollout and the
canary/baseline selectors; every judge call on it is an *evaluation* holding the verdict, the
evidence (the response) and the PromQL behind it, so a verdict can be audited later.

Several replicas may share one database (PostgreSQL): the unique constraint on the session's
identity plus insert-or-select makes concurrent first calls agree on one session, and the
schema is migrated on start under a lock (``analyzer.store.migrate``). A database that cannot
be read or written right now (locked, read-only, unreachable) raises ``StoreUnavailable``
after a bounded wait, which the API answers with 503 — a transient Error that Argo retries.
"""

from __future__ import annotations

import json
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
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from analyzer.store.migrate import upgrade

DEFAULT_LOCK_TIMEOUT = 2.0
"""Seconds a call waits for a database lock before giving up with ``StoreUnavailable``.

A write takes milliseconds, so a longer wait means another process holds the database; the
judge call must answer (503) well inside Argo's default 10 s web-metric timeout, after up to
5 s for Prometheus."""


class StoreUnavailable(Exception):
    """The database could not be used right now; ``reason`` says why (for logs and the 503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Base(DeclarativeBase):
    pass


class AnalysisRow(Base):
    __tablename__ = "analyses"
    __table_args__ = (UniqueConstraint("namespace", "rollout", "selector_key",
                                       name="uq_analysis_session"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253), index=True)
    rollout: Mapped[str] = mapped_column(String(253), index=True)
    selector_key: Mapped[str] = mapped_column(String(2048))
    config_name: Mapped[str] = mapped_column(String(253))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


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
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
            connection.rollback()

    def close(self) -> None:
        self.engine.dispose()

    def find_session(self, namespace: str, rollout: str, key: str) -> AnalysisSession | None:
        with _unavailable_on_error("reading the analysis session"), self._sessions() as db:
            row = db.scalars(select(AnalysisRow).where(
                AnalysisRow.namespace == namespace, AnalysisRow.rollout == rollout,
                AnalysisRow.selector_key == key)).first()
            return None if row is None else AnalysisSession(row.id, _utc(row.start))

    def record(self, namespace: str, rollout: str, key: str, config_name: str, start: datetime,
               *, at: datetime, window_end: datetime, verdict: str, score: float, final: bool,
               response: dict[str, Any], queries: list[str]) -> tuple[AnalysisSession, bool]:
        """Stores one evaluation in its session, creating the session on the first call;
        ``True`` if it was created. ``response["analysis_id"]`` is set to the session's id.

        A new session and its first evaluation are one transaction, so a failure (a lock, a
        crash) leaves neither, and a retried call is not a duplicate. Concurrent first calls,
        from this process or from another replica, race on the unique constraint: the loser's
        insert fails, it rolls back and adds its evaluation to the winner's session.
        """
        evaluation = {"at": _utc(at), "window_end": _utc(window_end), "verdict": verdict,
                      "score": score, "final": final, "queries": queries}
        with _unavailable_on_error("recording the evaluation"):
            found = self.find_session(namespace, rollout, key)
            if found is None:
                row = AnalysisRow(id=str(uuid.uuid4()), namespace=namespace, rollout=rollout,
                                  selector_key=key, config_name=config_name, start=_utc(start),
                                  created_at=_utc(at))
                with self._sessions() as db:
                    db.add(row)
                    db.add(EvaluationRow(analysis_id=row.id, **evaluation,
                                         response={**response, "analysis_id": row.id}))
                    try:
                        db.commit()
                        response["analysis_id"] = row.id
                        return AnalysisSession(row.id, _utc(start)), True
                    except IntegrityError:
                        db.rollback()
                found = self.find_session(namespace, rollout, key)
                if found is None:  # pragma: no cover - the row that won cannot vanish
                    raise RuntimeError("analysis session vanished after a conflicting insert")
            response["analysis_id"] = found.id
            with self._sessions() as db:
                db.add(EvaluationRow(analysis_id=found.id, **evaluation, response=response))
                db.commit()
            return found, False

    def get_or_create_session(self, namespace: str, rollout: str, key: str, config_name: str,
                              start: datetime, now: datetime) -> tuple[AnalysisSession, bool]:
        """The session for (namespace, rollout, key), created if new; ``True`` if created.

        Concurrent first calls race on the unique constraint: the loser's insert fails, it rolls
        back and reads the winner's row, so there is exactly one session.
        """
        found = self.find_session(namespace, rollout, key)
        if found is not None:
            return found, False
        row = AnalysisRow(id=str(uuid.uuid4()), namespace=namespace, rollout=rollout,
                          selector_key=key, config_name=config_name, start=_utc(start),
                          created_at=_utc(now))
        with _unavailable_on_error("creating the analysis session"), self._sessions() as db:
            db.add(row)
            try:
                db.commit()
                return AnalysisSession(row.id, _utc(start)), True
            except IntegrityError:
                db.rollback()
        found = self.find_session(namespace, rollout, key)
        if found is None:  # pragma: no cover - the row that won the race cannot vanish
            raise RuntimeError("analysis session vanished after a conflicting insert")
        return found, False

    def add_evaluation(self, analysis_id: str, *, at: datetime, window_end: datetime,
                       verdict: str, score: float, final: bool, response: dict[str, Any],
                       queries: list[str]) -> None:
        with _unavailable_on_error("recording the evaluation"), self._sessions() as db:
            db.add(EvaluationRow(analysis_id=analysis_id, at=_utc(at),
                                 window_end=_utc(window_end), verdict=verdict, score=score,
                                 final=final, response=response, queries=queries))
            db.commit()

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
                item["last_evaluation"] = None if last is None else _evaluation_dict(
                    last, full=False)
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


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _analysis_dict(row: AnalysisRow) -> dict[str, Any]:
    selectors = json.loads(row.selector_key)
    return {"id": row.id, "namespace": row.namespace, "rollout": row.rollout,
            "canary": selectors["canary"], "baseline": selectors["baseline"],
            "reporter": selectors["reporter"], "config": row.config_name,
            "start": _iso(row.start), "created_at": _iso(row.created_at)}


def _evaluation_dict(row: EvaluationRow, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"at": _iso(row.at), "window_end": _iso(row.window_end),
                           "verdict": row.verdict, "score": row.score, "final": row.final}
    if full:
        out["response"] = row.response
        out["queries"] = row.queries
    return out


__all__ = ["AnalysisSession", "Store", "StoreUnavailable", "database_url", "selector_key"]
