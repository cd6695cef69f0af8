"""Multi-replica state on a real PostgreSQL, and the store's migrations on both databases.

Two real ``canary-analyzer serve`` processes share one PostgreSQL (tests/pgfixture.py: Debian's
binaries, a throwaway cluster on a free port) and one backfilled Prometheus, as two replicas
of the Deployment would. They start at the same moment against an empty database (both run
the migrations: one waits on the advisory lock), then take concurrent first calls for one
rollout without ``start`` (the session starts when first seen): there must be exactly one
session, every later call on either replica must land in it, and both must read the same
history. The migration tests run on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pgfixture import PostgresServer, missing_reason
from promfixture import PrometheusServer, istio_series, traffic_from_dataset
from servefixture import Answer, ServeProcess, call
from sqlalchemy import create_engine, text

from analyzer.metrics.dataset import Dataset, read_dataset
from analyzer.store import (
    Recorded,
    SessionKey,
    Store,
    StoreUnavailable,
    database_url,
    selector_key,
)
from analyzer.store.db import Base
from analyzer.store.migrate import INITIAL_REVISION, head_revision

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
CANARY, BASELINE = "healthy-canary", "healthy-stable"
KEY = selector_key({"destination_service_name": CANARY}, {"destination_service_name": BASELINE},
                   "source")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer.start_new()
    yield server
    try:
        server.stop()
    finally:
        server.remove()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A new empty database for one test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "analyzer.db")  # a plain path, as --database takes it
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return read_dataset(EXAMPLES / "healthy.json")


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable, dataset: Dataset) -> PrometheusServer:
    return start_prometheus(istio_series(traffic_from_dataset(dataset, NS, CANARY, BASELINE)))


def _count(url: str, table: str) -> int:
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def _version(url: str) -> str | None:
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


# --- two replicas -------------------------------------------------------------------------


def test_two_replicas_share_sessions_and_history(postgres: PostgresServer, pg_url: str,
                                                 prometheus: PrometheusServer,
                                                 dataset: Dataset, tmp_path: Path) -> None:
    replicas = [ServeProcess(tmp_path, prometheus.url, pg_url) for _ in range(2)]
    failures: list[BaseException] = []

    def start(replica: ServeProcess) -> None:
        try:
            replica.start(timeout=45)
        except BaseException as exc:  # reported below, with the replica's log
            failures.append(exc)

    starters = [threading.Thread(target=start, args=(r,)) for r in replicas]
    for thread in starters:  # both migrate an empty database at the same moment
        thread.start()
    for thread in starters:
        thread.join(60)
    try:
        assert not failures, failures
        assert _version(pg_url) == head_revision()
        t0 = dataset.start.timestamp()

        def judge(replica: ServeProcess, end: float) -> Answer:
            answer = call(f"{replica.url}/api/v1/judge", {
                "namespace": NS, "rollout": "checkout", "canary_service": CANARY,
                "baseline_service": BASELINE, "end": end})
            assert answer.status == 200, answer.raw
            return answer

        answers: list[Answer] = []
        barrier = threading.Barrier(8)

        def first_call(replica: ServeProcess) -> None:
            barrier.wait(10)
            answers.append(judge(replica, t0 + 600))

        callers = [threading.Thread(target=first_call, args=(replicas[i % 2],))
                   for i in range(8)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(30)
        assert len(answers) == 8
        ids = {a.body["analysis_id"] for a in answers}
        assert len(ids) == 1
        (analysis_id,) = ids
        assert _count(pg_url, "analyses") == 1 and _count(pg_url, "evaluations") == 8
        listings = [call(f"{r.url}/api/v1/analyses").body["analyses"] for r in replicas]
        assert [a["id"] for a in listings[0]] == [analysis_id]
        assert listings[0][0]["start"] == "2026-01-05T10:10:00Z"  # first seen: the first end

        # Later calls on either replica continue the session from its start.
        for k, replica in enumerate(replicas * 2, start=1):
            later = judge(replica, t0 + 600 + 300 * k)
            assert later.body["analysis_id"] == analysis_id
            assert later.body["window"]["start"] == "2026-01-05T10:10:00Z"
            assert later.body["verdict"] == "pass"
        histories = [call(f"{r.url}/api/v1/analyses/{analysis_id}").body for r in replicas]
        assert histories[0] == histories[1]
        assert len(histories[0]["evaluations"]) == 12
        assert _count(pg_url, "evaluations") == 12
        listings = [call(f"{r.url}/api/v1/analyses").body for r in replicas]
        assert listings[0] == listings[1]
    finally:
        for replica in replicas:
            replica.stop()


# --- migrations ---------------------------------------------------------------------------


def test_migrated_schema_matches_the_models(any_url: str) -> None:
    """The migrations create exactly what the models declare: no autogenerate diff."""
    store = Store(any_url)
    try:
        assert _version(any_url) == head_revision()
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        store.close()


def _legacy(url: str, revision: str | None) -> None:
    """An empty database with the schema of ``revision``; ``None``: the tables of the first
    revision without ``alembic_version``, as the pre-migration code (``create_all``) made."""
    from alembic import command

    from analyzer.store.migrate import alembic_config

    engine = create_engine(database_url(url))
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision or INITIAL_REVISION)
        if revision is None:
            connection.execute(text("DROP TABLE alembic_version"))
    engine.dispose()


def _record(store: Store, key: SessionKey, at: datetime) -> Recorded:
    return store.record(key, "default", at, at=at, window_end=at, verdict="pass", score=100.0,
                        final=False, response={"verdict": "pass", "analysis_id": None},
                        queries=["up"])


def test_database_from_create_all_is_stamped_and_kept(any_url: str) -> None:
    """A database made by the pre-migration code (``create_all``, no ``alembic_version``)
    is stamped, migrated, keeps its sessions and evaluations, and takes new ones: the old
    session knows no revision, so revision-less calls continue it."""
    _legacy(any_url, None)
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    legacy = create_engine(database_url(any_url))
    with legacy.begin() as connection:
        connection.execute(text(
            "INSERT INTO analyses (id, namespace, rollout, selector_key, config_name, start, "
            "created_at) VALUES ('old', :ns, 'r', :key, 'default', :at, :at)"),
            {"ns": NS, "key": KEY, "at": at})
    legacy.dispose()
    store = Store(any_url)
    try:
        assert _version(any_url) == head_revision()
        session = store.find_session(SessionKey(NS, "r", KEY))
        assert session is not None and session.id == "old" and session.revision == ""
        recorded = _record(store, SessionKey(NS, "r", KEY), at)
        assert (recorded.session.id, recorded.created) == ("old", False)
        detail = store.get_analysis("old")
        assert detail is not None and detail["evaluations"][0]["response"]["analysis_id"] == "old"
        # The first call that names a revision starts that revision's own session and, the
        # old one knowing no revision, leaves it alone.
        first = _record(store, SessionKey(NS, "r", KEY, "abc123"), at)
        assert first.created and first.session.id != "old" and first.closed == ()
    finally:
        store.close()
    Store(any_url).close()  # and opening it again changes nothing
    assert _count(any_url, "analyses") == 2 and _count(any_url, "evaluations") == 2


def test_a_new_revision_closes_the_old_session(any_url: str) -> None:
    """One open session per revision; a new revision closes the rollout's other ones; a
    revision that comes back (a rollback to its pod template) starts afresh."""
    _legacy(any_url, INITIAL_REVISION)  # and the upgrade to head on an existing schema
    store = Store(any_url)
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    later = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    try:
        one = _record(store, SessionKey(NS, "r", KEY, "aaa"), at)
        assert _record(store, SessionKey(NS, "r", KEY, "aaa"), at).session == one.session
        other_rollout = _record(store, SessionKey(NS, "other", KEY, "zzz"), at)
        two = _record(store, SessionKey(NS, "r", KEY, "bbb"), later)
        assert two.created and two.closed == (one.session.id,)
        assert store.find_session(SessionKey(NS, "r", KEY, "aaa")) is None
        closed = store.get_analysis(one.session.id)
        assert closed is not None and closed["closed_at"] == "2026-01-05T13:00:00Z"
        assert closed["revision"] == "aaa" and len(closed["evaluations"]) == 2
        assert store.find_session(SessionKey(NS, "other", KEY, "zzz")) == other_rollout.session
        back = _record(store, SessionKey(NS, "r", KEY, "aaa"), later)
        assert back.created and back.session.id != one.session.id
        assert back.closed == (two.session.id,)
    finally:
        store.close()


def test_stores_opened_at_once_migrate_once(any_url: str) -> None:
    """Eight stores open one empty database at the same moment (the advisory lock on
    PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): none fails, the schema is at head."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait(10)
        try:
            Store(any_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert _version(any_url) == head_revision()


def test_concurrent_first_records_make_one_session(any_url: str) -> None:
    stores = [Store(any_url) for _ in range(2)]  # two engines: two replicas' pools
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def record(store: Store) -> None:
        barrier.wait(10)
        ids.append(_record(store, SessionKey(NS, "race", KEY, "abc"), at).session.id)

    threads = [threading.Thread(target=record, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert len(ids) == 8 and len(set(ids)) == 1
        assert stores[0].count_analyses() == 1
        detail = stores[1].get_analysis(ids[0])
        assert detail is not None and len(detail["evaluations"]) == 8
        assert all(e["response"]["analysis_id"] == ids[0] for e in detail["evaluations"])
    finally:
        for store in stores:
            store.close()


def test_database_urls() -> None:
    assert database_url("/var/lib/a.db") == "sqlite:////var/lib/a.db"
    assert database_url("sqlite:///a.db") == "sqlite:///a.db"
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_unreachable_postgres_is_a_clear_error() -> None:
    from promfixture import free_port

    with pytest.raises(StoreUnavailable, match=r"database postgresql\+psycopg://x:\*\*\*@"):
        Store(f"postgresql://x:secret@127.0.0.1:{free_port()}/nope", lock_timeout=1)


def test_postgres_restart_is_survived(postgres: PostgresServer, pg_url: str) -> None:
    """The database restarts under a running store: calls meanwhile are ``StoreUnavailable``
    (503 in the API), and the store recovers by itself (stale connections are replaced)."""
    store = Store(pg_url)
    try:
        assert store.count_analyses() == 0
        postgres.stop()
        try:
            with pytest.raises(StoreUnavailable):
                store.count_analyses()
        finally:
            postgres.start()
            postgres.wait_ready()
        assert store.count_analyses() == 0
    finally:
        store.close()


# --- retention ----------------------------------------------------------------------------


def test_pruning_by_age_keeps_session_summaries(any_url: str) -> None:
    """A fake clock 40 days on: evaluations older than 30 days go in small batches, each
    session keeps how many went and the newest one's verdict; a session with nothing left
    is closed (a later call of its revision starts afresh), one with recent calls stays."""
    from datetime import timedelta

    from analyzer.store.retention import Pruner, RetentionError

    store = Store(any_url)
    day0 = datetime(2026, 1, 1, tzinfo=UTC)
    old, live = SessionKey(NS, "old", KEY, "aaa"), SessionKey(NS, "live", KEY, "bbb")
    try:
        for day in range(5):
            at = day0 + timedelta(days=day)
            store.record(old, "default", day0, at=at, window_end=at,
                         verdict="fail" if day == 4 else "pass", score=float(day),
                         final=False, response={"verdict": "x"}, queries=[])
        for day in (0, 1, 35, 39):
            _record(store, live, day0 + timedelta(days=day))
        pruner = Pruner(store, timedelta(days=30), batch=2, pause=0,
                        clock=lambda: day0 + timedelta(days=40))
        report = pruner.prune()
        assert (report.evaluations, report.batches, report.sessions_closed) == (7, 4, 1)
        listing = {a["rollout"]: a for a in store.list_analyses()}
        assert listing["old"]["evaluations_pruned"] == 5
        assert listing["old"]["closed_at"] == "2026-02-10T00:00:00Z"
        assert listing["old"]["last_evaluation"] == {
            "at": "2026-01-05T00:00:00Z", "verdict": "fail", "score": 4.0, "pruned": True}
        assert listing["live"]["evaluations_pruned"] == 2 and listing["live"]["closed_at"] is None
        assert listing["live"]["last_evaluation"]["at"] == "2026-02-09T00:00:00Z"
        detail = store.get_analysis(listing["live"]["id"])
        assert detail is not None and len(detail["evaluations"]) == 2
        assert store.find_session(old) is None
        assert pruner.prune().evaluations == 0  # nothing more until time passes
        if store.engine.dialect.name == "postgresql":  # the size budget counts SQLite pages
            with pytest.raises(RetentionError, match="--store-size-limit"):
                Pruner(store, size_limit=2**30)
    finally:
        store.close()


def test_migration_0003_keeps_sessions(any_url: str) -> None:
    """A database at 0002 with a session and an evaluation migrates to the summaries
    (nothing pruned yet) and back down."""
    from alembic import command

    from analyzer.store.migrate import alembic_config

    _legacy(any_url, "0002")
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    engine = create_engine(database_url(any_url))
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO analyses (id, namespace, rollout, selector_key, revision, "
            "config_name, start, created_at) VALUES ('s', :ns, 'r', :key, 'aaa', 'default', "
            ":at, :at)"), {"ns": NS, "key": KEY, "at": at})
    store = Store(any_url)
    try:
        assert _version(any_url) == head_revision()
        (session,) = store.list_analyses()
        assert session["evaluations_pruned"] == 0 and session["last_evaluation"] is None
        assert _record(store, SessionKey(NS, "r", KEY, "aaa"), at).session.id == "s"
    finally:
        store.close()
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0002")
    engine.dispose()
    assert _version(any_url) == "0002" and _count(any_url, "evaluations") == 1


def test_workers_share_sessions_and_stored_intervals(any_url: str, prometheus: PrometheusServer,
                                                      dataset: Dataset, tmp_path: Path) -> None:
    """``serve --workers 2``: concurrent first calls land in one session whichever worker
    takes them, later calls continue it from the stored intervals (no whole-window note),
    and stopping the parent stops every worker."""
    serve = ServeProcess(tmp_path, prometheus.url, any_url, extra=("--workers", "2"))
    serve.start(timeout=45)
    try:
        t0 = dataset.start.timestamp()

        def judge(end: float) -> Answer:
            answer = call(f"{serve.url}/api/v1/judge", {
                "namespace": NS, "rollout": "checkout", "canary_service": CANARY,
                "baseline_service": BASELINE, "start": t0, "end": end})
            assert answer.status == 200, answer.raw
            return answer

        answers: list[Answer] = []
        barrier = threading.Barrier(6)

        def first_call() -> None:
            barrier.wait(10)
            answers.append(judge(t0 + 600))

        callers = [threading.Thread(target=first_call) for _ in range(6)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(30)
        assert len({a.body["analysis_id"] for a in answers}) == 1 and len(answers) == 6
        for k in range(1, 7):
            later = judge(t0 + 600 + 30 * k)
            assert later.body["analysis_id"] == answers[0].body["analysis_id"]
            assert not any("whole window" in note for note in later.body["notes"])
        assert _count(any_url, "analyses") == 1 and _count(any_url, "interval_stats") == 1
    finally:
        serve.stop()
    assert not serve.running
