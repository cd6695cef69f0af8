"""``serve`` runs each process on one CPU (``analyzer.api.serving``), unless told not to.

Checked on real ``serve`` processes through the kernel's affinity of each of their threads
(``sched_getaffinity`` of every id in ``/proc/<pid>/task``), so a pin that missed a thread
(one started before the pin) or two workers on one CPU would show.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from servefixture import ServeProcess

from analyzer.api.serving import choose_cpus

ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs at least two CPUs")
DEAD = "http://127.0.0.1:9"  # /healthz does not need Prometheus


def _thread_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU set of each thread of ``pid``."""
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


def _children(pid: int, count: int) -> list[int]:
    """The ``count`` child processes of ``pid`` (forked workers), waiting for them to appear."""
    deadline = time.monotonic() + 20
    while True:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
            found = [int(p) for p in listing.read().split()]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@needs_two_cpus
def test_choose_cpus_goes_round_robin_over_the_allowed_cpus() -> None:
    chosen = choose_cpus(len(ALLOWED) + 1)
    assert chosen is not None
    assert sorted(chosen[:-1]) == ALLOWED  # each allowed CPU once before any repeats
    assert chosen[-1] == chosen[0]


@pytest.mark.slow
@needs_two_cpus
def test_serve_pins_every_thread_and_workers_to_distinct_cpus(tmp_path: Path) -> None:
    one = ServeProcess(tmp_path, DEAD, f"sqlite:///{tmp_path / 'one.db'}")
    workers = ServeProcess(tmp_path, DEAD, f"sqlite:///{tmp_path / 'two.db'}",
                           extra=("--workers", "2"))
    free = ServeProcess(tmp_path, DEAD, f"sqlite:///{tmp_path / 'free.db'}",
                        extra=("--no-cpu-pinning",))
    try:
        for serve in (one, workers, free):
            serve.start(timeout=45)
        assert one.pid is not None and workers.pid is not None and free.pid is not None
        pinned = _thread_cpus(one.pid)
        assert len(pinned) == 1 and len(next(iter(pinned))) == 1, pinned
        assert next(iter(next(iter(pinned)))) in ALLOWED

        children = _children(workers.pid, 2)
        assert len(children) == 2
        cpus = []
        for child in children:
            sets = _thread_cpus(child)
            assert len(sets) == 1 and len(next(iter(sets))) == 1, (child, sets)
            cpus.append(next(iter(next(iter(sets)))))
        assert len(set(cpus)) == 2, cpus  # two workers, two CPUs
        # The parent only waits for its workers; it is left where it was.
        assert _thread_cpus(workers.pid) == {frozenset(ALLOWED)}

        assert _thread_cpus(free.pid) == {frozenset(ALLOWED)}
    finally:
        for serve in (one, workers, free):
            serve.stop()
