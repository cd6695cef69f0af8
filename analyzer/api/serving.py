"""Running the app: one process, or ``workers`` forked processes on one listening socket.

One Python process is bound by the GIL (a judge call is CPU work in numpy and Python), so a
replica uses its cores with several worker processes. They share the listening socket (the
kernel hands each connection to one of them) and nothing else: each builds its own app, store
connection pool and telemetry after the fork, and sessions stay correct across workers as
across replicas, through the shared database (SQLite in WAL mode, or PostgreSQL).

Three details matter for speed:

- ``TCP_NODELAY`` on every accepted connection. asyncio sets it only on sockets whose
  ``proto`` is ``IPPROTO_TCP``; a listening socket made with ``socket.socket(AF_INET)`` (as
  uvicorn's own ``--workers`` does) has ``proto`` 0, and so do the connections it accepts:
  Nagle's algorithm then holds the body of each response until the client's delayed ACK,
  ~40 ms on Linux. ``NoDelayH11Protocol`` sets it on every connection, whatever the socket.
- One CPU per process. The GIL lets one thread of a process run Python at a time; when its
  threads (the event loop and the judge calls) run on different cores, every hand-over of the
  GIL wakes another core: one process with 16 callers spent 29-31 ms of CPU per call unpinned
  and 20-23 pinned on the project's 2-core VM (benchmarks/service/README.md). So each process
  is pinned to one of the CPUs it may run on, round robin from the one the kernel started it
  on; ``--no-cpu-pinning`` leaves placement to the kernel.
- ``gc.freeze()`` once the app is built: the start-up heap (~170k objects: FastAPI, pydantic,
  numpy, SQLAlchemy) moves to the permanent generation, so a full collection no longer
  walks it (~90 ms pauses, mostly inside ``json.loads`` of big answers, before).

``/metrics`` of a worker reports that worker's own calls (see docs/operators.md).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("analyzer.serve")

GC_THRESHOLDS = (50_000, 20, 100)
"""Generation-0 threshold raised from 700: a judge call allocates tens of thousands of
short-lived objects (decoded JSON), which otherwise trigger a collection every few
hundred microseconds of work; the older generations keep their default ratios."""


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with ``TCP_NODELAY`` set on each connection."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def _current_cpu() -> int | None:
    """The CPU this thread runs on now (``/proc/self/stat``'s 39th field), if readable."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[36])
    except (OSError, IndexError, ValueError):
        return None


def choose_cpus(count: int) -> list[int] | None:
    """A CPU for each of ``count`` processes, round robin over the CPUs this process may run
    on, from the one it runs on now (the kernel put it on a lightly loaded one, and several
    replicas on one node then do not all crowd CPU 0); ``None`` when there is nothing to
    choose (one CPU allowed, or no affinity call on this system)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    now = _current_cpu()
    first = allowed.index(now) if now in allowed else 0
    return [allowed[(first + i) % len(allowed)] for i in range(count)]


def pin_to(cpu: int) -> None:
    """Pins every thread of this process to ``cpu``. When the system refuses (a cpuset that
    forbids it) it says so and the process runs where the kernel puts it."""
    try:
        for thread in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(thread), {cpu})
    except OSError as exc:
        log.warning("could not pin the process to CPU %d (%s); running unpinned", cpu, exc)
        return
    log.info("pinned to CPU %d", cpu)


def tune_gc() -> None:
    """Freezes the start-up heap and raises the young-generation threshold (see above)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    # log_config=None keeps uvicorn's loggers on the service's own handler.
    return uvicorn.Config(app, host=host, port=port, log_level="info", log_config=None,
                          http=NoDelayH11Protocol)


def run(make_app: Callable[[], Any], host: str, port: int, workers: int = 1, *,
        pin: bool = True) -> int:
    """Serves ``make_app()`` until SIGTERM/SIGINT; returns the exit code.

    With ``workers`` > 1 the parent binds the socket, forks the workers (each calls
    ``make_app``), and stops them all when it is told to stop or when one of them exits
    (a worker that died is a pod to restart, not something to hide). With ``pin``, each
    process runs on one CPU (see the module docstring).
    """
    cpus = choose_cpus(workers) if pin else None
    if workers <= 1:
        if cpus is not None:
            pin_to(cpus[0])
        app = make_app()
        tune_gc()
        uvicorn.Server(_config(app, host, port)).run()
        return 0
    sock = _config(None, host, port).bind_socket()
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                if cpus is not None:
                    pin_to(cpus[index])
                app = make_app()
                tune_gc()
                uvicorn.Server(_config(app, host, port)).run(sockets=[sock])
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()
    return _supervise(children)


def _supervise(children: list[int]) -> int:
    """Forwards SIGTERM/SIGINT to the workers; the first worker to exit stops the others."""
    def stop(signum: int, _frame: Any) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    first, status = os.wait()
    code = os.waitstatus_to_exitcode(status)
    children.remove(first)
    if code:
        log.error("worker %d exited with %d; stopping the others", first, code)
    stop(signal.SIGTERM, None)
    for pid in children:
        os.waitpid(pid, 0)
    return max(code, 0)
