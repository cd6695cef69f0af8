"""The fault matrix (docs/reliability.md): real processes, one fault at a time.

A real ``canary-analyzer serve`` child process judges the bundled *healthy* canary, backfilled
into a real Prometheus, through ``FaultProxy`` (tests/faultproxy.py), which breaks the answers
on demand. The canary is healthy, so every ``fail`` would be caused by the fault: ``judge()``
asserts on EVERY answer that it is a 200 without ``fail``, or a 503 whose body is a JSON
``{"error": …}`` without a verdict (Argo: a transient Error, retried — never Failed).
Timings are measured at the client, as Argo would see them, and bounded well inside Argo's
default ``timeoutSeconds`` of 10 s.
"""

from __future__ import annotations

import http.client
import os
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from promfixture import PrometheusServer, create_blocks, istio_series, traffic_from_dataset
from servefixture import NO_DAC_OVERRIDE, Answer, ServeProcess, call, run_serve_once

from analyzer.metrics.dataset import Dataset, read_dataset
from analyzer.store import Store
from devtools.argo import argo_phase

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
CANARY, BASELINE = "healthy-canary", "healthy-stable"
ARGO_TIMEOUT = 10.0
"""Argo Rollouts' default web-metric ``timeoutSeconds``."""
SERVICE_LABEL = "destination_service_name"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return read_dataset(EXAMPLES / "healthy.json")


@pytest.fixture(scope="module")
def blocks(prometheus_tools: None, dataset: Dataset,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    series = istio_series(traffic_from_dataset(dataset, NS, CANARY, BASELINE))
    return create_blocks(series, tmp_path_factory.mktemp("fault-blocks"))


@pytest.fixture(scope="module")
def prometheus(blocks: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("fault-prometheus"), blocks)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    server = FaultProxy(prometheus.url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServeProcess]:
    """One ``serve`` for the Prometheus faults, behind the proxy, with a SQLite file."""
    workdir = tmp_path_factory.mktemp("fault-service")
    process = ServeProcess(workdir, proxy.url, str(workdir / "analyzer.db"))
    process.start(timeout=30)
    yield process
    process.stop()


@pytest.fixture
def fault(proxy: FaultProxy) -> Iterator[FaultProxy]:
    proxy.heal()
    yield proxy
    proxy.heal()


@pytest.fixture
def readonly_capable() -> tuple[str, ...]:
    """The wrapper that makes file permissions bind the service (see ``NO_DAC_OVERRIDE``)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot make a file read-only")
    return NO_DAC_OVERRIDE


def body(dataset: Dataset, rollout: str, k: int, **extra: Any) -> dict[str, Any]:
    start = dataset.start.timestamp()
    return {"namespace": NS, "rollout": rollout, "canary_service": CANARY,
            "baseline_service": BASELINE, "start": start,
            "end": start + k * dataset.interval_seconds, **extra}


def judge(service: ServeProcess, payload: dict[str, Any]) -> Answer:
    """One judge call; asserts the invariant of every fault case (module docstring)."""
    answer = call(f"{service.url}/api/v1/judge", payload)
    assert argo_phase(answer.status, answer.raw) != "Failed", answer.raw
    assert answer.status in (200, 503), answer.raw
    assert isinstance(answer.body, dict), answer.raw
    if answer.status == 503:
        assert isinstance(answer.body.get("error"), str) and "verdict" not in answer.body
    else:
        assert answer.body["verdict"] in ("pass", "inconclusive"), answer.body["reason"]
    return answer


def evaluations(service: ServeProcess, analysis_id: str) -> list[dict[str, Any]]:
    answer = call(f"{service.url}/api/v1/analyses/{analysis_id}")
    assert answer.status == 200, answer.raw
    return answer.body["evaluations"]


def report(case: str, **numbers: float) -> None:
    """Observed numbers, shown with ``pytest -s`` (docs/reliability.md quotes them)."""
    shown = ", ".join(f"{k}={v:.2f}" for k, v in numbers.items())
    print(f"\nFAULT {case}: {shown}")


# --- Prometheus ---------------------------------------------------------------------------


def test_prometheus_down_at_start(blocks: Path, dataset: Dataset, tmp_path: Path) -> None:
    """The service starts without Prometheus, says so, and recovers when it comes up."""
    prometheus = PrometheusServer(tmp_path / "prometheus", blocks)  # not started: port closed
    service = ServeProcess(tmp_path, prometheus.url, str(tmp_path / "analyzer.db"))
    service.start(timeout=30)
    try:
        assert call(f"{service.url}/readyz").status == 200  # its own readiness only
        assert call(f"{service.url}/dependencies").status == 503
        down = judge(service, body(dataset, "down-at-start", 10))
        assert down.status == 503 and "cannot connect" in down.body["error"]
        prometheus.start()
        assert call(f"{service.url}/dependencies").status == 200
        up = judge(service, body(dataset, "down-at-start", 10))
        assert up.status == 200 and up.body["verdict"] == "pass"
        assert service.running  # recovered without a restart
        assert len(evaluations(service, up.body["analysis_id"])) == 1  # the 503 left nothing
        report("down-at-start", seconds_to_503=down.seconds)
        assert down.seconds < 3
    finally:
        service.stop()
        prometheus.stop()


def test_prometheus_restarted_with_data(service: ServeProcess, fault: FaultProxy,
                                        prometheus: PrometheusServer, dataset: Dataset) -> None:
    first = judge(service, body(dataset, "restarted", 5))
    assert first.status == 200
    prometheus.stop()
    try:
        down = judge(service, body(dataset, "restarted", 6))
        assert down.status == 503
        assert call(f"{service.url}/dependencies").status == 503
    finally:
        prometheus.start()  # a new process on the same data and port
    again = judge(service, body(dataset, "restarted", 6))
    assert again.status == 200 and again.body["analysis_id"] == first.body["analysis_id"]
    assert [e["window_end"] for e in evaluations(service, first.body["analysis_id"])] == [
        "2026-01-05T10:02:30Z", "2026-01-05T10:03:00Z"]
    report("restarted", seconds_to_503=down.seconds)


@pytest.mark.parametrize("mode", ["drop", "truncate"])
def test_prometheus_killed_mid_query(service: ServeProcess, fault: FaultProxy,
                                     dataset: Dataset, mode: str) -> None:
    """The connection dies after the query was sent: nothing, or half an answer."""
    fault.set(mode)
    broken = judge(service, body(dataset, f"killed-{mode}", 10))
    assert broken.status == 503 and "prometheus unavailable" in broken.body["error"]
    fault.heal()
    healed = judge(service, body(dataset, f"killed-{mode}", 10))
    assert healed.status == 200
    assert len(evaluations(service, healed.body["analysis_id"])) == 1
    report(f"killed-mid-query-{mode}", seconds_to_503=broken.seconds)
    assert broken.seconds < 3


@pytest.mark.parametrize(("delay", "status"), [(7.0, 503), (3.0, 503), (0.5, 200)])
def test_prometheus_slow(service: ServeProcess, fault: FaultProxy, dataset: Dataset,
                         delay: float, status: int) -> None:
    """7 s: one query outlasts the 5 s timeout. 3 s: each query is within the timeout but two
    exceed the analysis' 5 s budget. 0.5 s: slow, and still answered."""
    fault.set("slow", delay=delay)
    answer = judge(service, body(dataset, f"slow-{delay:g}", 10))
    assert answer.status == status, answer.raw
    report(f"slow-{delay:g}s", seconds=answer.seconds)
    if status == 503:
        assert "prometheus unavailable" in answer.body["error"]
        assert 4.5 < answer.seconds < ARGO_TIMEOUT - 2.5
    fault.heal()
    assert judge(service, body(dataset, f"slow-{delay:g}", 10)).status == 200


@pytest.mark.parametrize(("status", "content"), [
    (500, b'{"status":"error","errorType":"internal","error":"boom"}'),
    (502, b"<html><body>Bad Gateway</body></html>"),
    (503, b"Service Unavailable"),
    (422, b'{"status":"error","errorType":"execution","error":"query timed out"}'),
])
def test_prometheus_error_status(service: ServeProcess, fault: FaultProxy, dataset: Dataset,
                                 status: int, content: bytes) -> None:
    fault.set("status", status=status, body=content)
    answer = judge(service, body(dataset, f"status-{status}", 10))
    assert answer.status == 503
    assert str(status) in answer.body["error"] or "too many" in answer.body["error"]
    fault.heal()
    assert judge(service, body(dataset, f"status-{status}", 10)).status == 200
    report(f"http-{status}", seconds_to_503=answer.seconds)


MALFORMED = {
    "not-json": b"this is not json",
    "truncated-json": b'{"status":"success","data":{"resultType":"matrix","result":[',
    "json-array": b"[1, 2, 3]",
    "status-missing": b'{"data":{"resultType":"matrix","result":[]}}',
    "vector-not-matrix": b'{"status":"success","data":{"resultType":"vector","result":[]}}',
    "sample-not-a-number": (b'{"status":"success","data":{"resultType":"matrix","result":'
                            b'[{"metric":{},"values":[[1767607200,"lots"]]}]}}'),
    "label-not-a-string": (b'{"status":"success","data":{"resultType":"matrix","result":'
                           b'[{"metric":{"le":1},"values":[]}]}}'),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_prometheus_malformed_json(service: ServeProcess, fault: FaultProxy, dataset: Dataset,
                                   name: str) -> None:
    fault.set("body", body=MALFORMED[name])
    answer = judge(service, body(dataset, f"malformed-{name}", 10))
    assert answer.status == 503, answer.raw
    fault.heal()
    assert judge(service, body(dataset, f"malformed-{name}", 10)).status == 200


def _side(service_name: str, keep: Callable[[dict[str, Any]], bool]
          ) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """A result filter applying ``keep`` to the series of one side; the other side intact."""
    def chosen(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in result if s["metric"].get(SERVICE_LABEL) != service_name or keep(s)]
    return chosen


def _first_half(series: dict[str, Any]) -> bool:
    series["values"] = series["values"][: len(series["values"]) // 2]
    return True


PARTIAL: dict[str, tuple[Callable[[list[dict[str, Any]]], list[dict[str, Any]]], int,
                         str | None]] = {
    # name: (filter, expected status, expected verdict)
    # A side without series is no evidence: never a pass (the diagnosis names the side).
    "only-baseline-series": (_side(CANARY, lambda s: False), 200, "inconclusive"),
    "only-canary-series": (_side(BASELINE, lambda s: False), 200, "inconclusive"),
    "canary-buckets-missing": (
        _side(CANARY, lambda s: s["metric"].get("le") not in ("100", "250", "500")), 200,
        "pass"),
    "canary-inf-bucket-missing": (_side(CANARY, lambda s: s["metric"].get("le") != "+Inf"),
                                  503, None),
    "canary-series-stop-halfway": (_side(CANARY, _first_half), 200, "pass"),
    "baseline-series-stop-halfway": (_side(BASELINE, _first_half), 200, "pass"),
}


@pytest.mark.parametrize("name", list(PARTIAL))
def test_prometheus_partial_series(service: ServeProcess, fault: FaultProxy, dataset: Dataset,
                                   name: str) -> None:
    """Series missing from an answer are missing data, never evidence of harm: the metric
    that lost them is ``nodata`` (or judged on what is left), and nothing is passed on it
    (``inconclusive`` naming the empty side, at every look and at the gate). A histogram
    without its ``+Inf`` bucket cannot be decoded at all: 503."""
    chosen, status, verdict = PARTIAL[name]
    fault.set("filter", result_filter=chosen)
    answer = judge(service, body(dataset, f"partial-{name}", 40))
    assert answer.status == status, answer.raw
    if status == 200:
        assert answer.body["verdict"] == verdict, answer.body["reason"]
        classes = {m["name"]: m["classification"] for m in answer.body["metrics"]}
        report(f"partial-{name}", **{f"{k}_{v}": 1 for k, v in classes.items()})
        if name.startswith("only-"):
            assert set(classes.values()) == {"nodata"}
            missing = "canary" if name == "only-baseline-series" else "baseline"
            assert f"the {missing} selector" in answer.body["reason"]
            gate = judge(service, body(dataset, f"partial-{name}", 40, final=True))
            assert gate.body["verdict"] == "inconclusive"


def test_prometheus_partial_response_flagged(service: ServeProcess, fault: FaultProxy,
                                             dataset: Dataset) -> None:
    """A query layer that answers with some stores missing (Thanos, Mimir) flags it in
    ``warnings``. The gap could remove only the canary's successful requests, which would
    look exactly like a regression, so such an answer is refused (503); an info annotation
    is not about missing data and is accepted."""
    no_canary_success = _side(CANARY, lambda s: s["metric"].get("response_code") != "200")
    fault.set("filter", result_filter=no_canary_success,
              warnings=["partial response: store 10.0.0.7:10901 unreachable"])
    flagged = judge(service, body(dataset, "partial-flagged", 40))
    assert flagged.status == 503 and "partial answer" in flagged.body["error"]
    fault.set("filter", warnings=['PromQL info: metric might not be a counter, name does not '
                                  'end in _total/_sum/_count/_bucket: "x"'])
    info = judge(service, body(dataset, "partial-flagged", 40))
    assert info.status == 200 and info.body["verdict"] == "pass"


# --- the store ----------------------------------------------------------------------------


def _make_writable(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_store_unwritable_at_start(prometheus: PrometheusServer, tmp_path: Path,
                                   readonly_capable: tuple[str, ...]) -> None:
    """Decision: refuse to start, with one line naming the database and the cause, exit 1.
    A replica that cannot record verdicts should not take traffic; Kubernetes shows the
    message in the pod's log (CrashLoopBackOff with a reason, not a silent loop)."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    existing = tmp_path / "existing"
    existing.mkdir()
    Store(str(existing / "analyzer.db")).close()  # a database at head, then made read-only
    try:
        fresh.chmod(0o555)
        (existing / "analyzer.db").chmod(0o444)
        existing.chmod(0o555)
        for database, cause in ((fresh / "analyzer.db", "unable to open database file"),
                                (existing / "analyzer.db", "readonly database")):
            code, output, seconds = run_serve_once(prometheus.url, str(database),
                                                   readonly_capable)
            assert code == 1, output
            expected = f"canary-analyzer serve: store unavailable: database sqlite:///{database}: "
            assert expected in output, output
            assert cause in output, output
            assert "Traceback" not in output
            report(f"unwritable-at-start-{database.parent.name}", seconds_to_exit=seconds)
    finally:
        _make_writable(fresh, existing, existing / "analyzer.db")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own, so the test can fill it (root and mount(2) needed)."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "canary-test",
                              str(mountpoint)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(directory: Path) -> Path:
    """Writes a file until the filesystem is full."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: closing has nothing to flush
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_store_unwritable_at_runtime(prometheus: PrometheusServer, dataset: Dataset,
                                     tmp_path: Path, small_disk: Path) -> None:
    """The database's disk fills up under a running service (an ``emptyDir`` at its
    ``sizeLimit``, a full volume): 503 per call, recovery when space is back, without a
    restart and without losing or doubling an evaluation. (A read-only ``chmod`` is no test
    of this in WAL mode: the open WAL file stays writable, as it would on a real volume.)"""
    database = small_disk / "analyzer.db"
    service = ServeProcess(tmp_path, prometheus.url, str(database))
    service.start(timeout=30)
    try:
        first = judge(service, body(dataset, "disk-full", 5))
        assert first.status == 200
        filler = _fill(small_disk)
        try:
            refused = judge(service, body(dataset, "disk-full", 6))
            readable = call(f"{service.url}/api/v1/analyses")
        finally:
            filler.unlink()
        assert refused.status == 503 and "store unavailable" in refused.body["error"]
        assert "full" in refused.body["error"]
        assert readable.status == 200  # what is stored can still be read
        again = judge(service, body(dataset, "disk-full", 6))
        assert again.status == 200 and again.body["analysis_id"] == first.body["analysis_id"]
        assert len(evaluations(service, first.body["analysis_id"])) == 2
        report("disk-full-at-runtime", seconds_to_503=refused.seconds)
    finally:
        service.stop()


def test_store_locked(service: ServeProcess, fault: FaultProxy, dataset: Dataset) -> None:
    """Another process holds an exclusive SQLite lock: a bounded wait (2 s), then 503; a
    shorter lock is waited out; once released, the next call is recorded in the same
    session and none is lost or doubled."""
    database = Path(service.command[service.command.index("--database") + 1])
    first = judge(service, body(dataset, "locked", 5))
    assert first.status == 200
    holder = sqlite3.connect(database, isolation_level=None, timeout=5, check_same_thread=False)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        locked = judge(service, body(dataset, "locked", 6))
        listing = call(f"{service.url}/api/v1/analyses")
    finally:
        holder.rollback()
    assert locked.status == 503 and "database is locked" in locked.body["error"]
    assert listing.status == 200  # WAL: a writer's lock does not hold up readers
    assert 1.5 < locked.seconds < ARGO_TIMEOUT - 2.5
    holder.execute("BEGIN EXCLUSIVE")  # held for 0.5 s only: within the bounded wait
    timer = threading.Timer(0.5, holder.rollback)
    timer.start()
    try:
        waited = judge(service, body(dataset, "locked", 6))
    finally:
        timer.join()
        holder.close()
    assert waited.status == 200 and waited.seconds >= 0.4
    again = judge(service, body(dataset, "locked", 7))
    assert again.body["analysis_id"] == first.body["analysis_id"]
    ends = [e["window_end"] for e in evaluations(service, first.body["analysis_id"])]
    assert ends == ["2026-01-05T10:02:30Z", "2026-01-05T10:03:00Z", "2026-01-05T10:03:30Z"]
    report("store-locked", seconds_to_503=locked.seconds, waited_out_seconds=waited.seconds)


# --- the service itself -------------------------------------------------------------------


def test_service_killed_mid_evaluation(fault: FaultProxy, dataset: Dataset,
                                       tmp_path: Path) -> None:
    """SIGKILL while an evaluation waits for Prometheus, restart on the same database: the
    session and its history are intact, the retried call continues the same analysis, and
    the killed evaluation was not recorded (so no duplicate once it is retried)."""
    database = tmp_path / "analyzer.db"
    service = ServeProcess(tmp_path, fault.url, str(database))
    service.start(timeout=30)
    try:
        ids = {judge(service, body(dataset, "killed", k)).body["analysis_id"] for k in (1, 2, 3)}
        assert len(ids) == 1
        fault.set("hold")
        outcome: list[BaseException | Answer] = []

        def interrupted() -> None:
            try:
                outcome.append(call(f"{service.url}/api/v1/judge", body(dataset, "killed", 4)))
            except (OSError, http.client.HTTPException) as exc:
                outcome.append(exc)

        caller = threading.Thread(target=interrupted)
        caller.start()
        assert fault.entered.wait(10), "the evaluation never reached Prometheus"
        service.kill()
        fault.heal()
        caller.join(10)
        assert outcome and not isinstance(outcome[0], Answer), outcome
        began = time.monotonic()
        service.start(timeout=30)  # same port, same database
        restart = time.monotonic() - began
        again = judge(service, body(dataset, "killed", 4))
        assert again.status == 200 and again.body["analysis_id"] in ids
        history = evaluations(service, again.body["analysis_id"])
        assert [e["window_end"] for e in history] == [
            "2026-01-05T10:00:30Z", "2026-01-05T10:01:00Z", "2026-01-05T10:01:30Z",
            "2026-01-05T10:02:00Z"]
        listing = call(f"{service.url}/api/v1/analyses?rollout=killed").body["analyses"]
        assert len(listing) == 1
        report("killed-mid-evaluation", restart_seconds=restart)
    finally:
        service.stop()


def test_32_concurrent_callers_on_sqlite_get_no_lock_errors(prometheus: PrometheusServer,
                                                             dataset: Dataset,
                                                             tmp_path: Path) -> None:
    """The default store under the concurrency it advertises: 32 callers, each an
    AnalysisRun of its own rollout posting 4 looks back to back, on one SQLite file. No call
    may answer 503 "database is locked" (WAL lets readers and the writer proceed together,
    and a write that meets a lock waits its turn within the bound)."""
    service = ServeProcess(tmp_path, prometheus.url, str(tmp_path / "analyzer.db"))
    service.start(timeout=30)
    answers: list[Answer] = []
    barrier = threading.Barrier(32)

    def caller(number: int) -> None:
        barrier.wait(30)
        for k in range(5, 9):
            answers.append(call(f"{service.url}/api/v1/judge",
                                body(dataset, f"concurrent-{number}", k), timeout=30))

    try:
        threads = [threading.Thread(target=caller, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        statuses = [a.status for a in answers]
        assert len(answers) == 128
        assert statuses.count(200) == 128, [a.raw for a in answers if a.status != 200][:3]
        listing = call(f"{service.url}/api/v1/analyses?limit=100").body["analyses"]
        assert len(listing) == 32
        report("concurrent-32", slowest_seconds=max(a.seconds for a in answers))
    finally:
        service.stop()
