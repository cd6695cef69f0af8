"""Real ``canary-analyzer serve`` processes and plain-HTTP calls to them, for fault tests.

A ``ServeProcess`` is the console command in a child process on 127.0.0.1:<free port>, ready
once ``/healthz`` answers (``/readyz`` also needs Prometheus, which some tests keep down on
purpose). ``kill()`` is SIGKILL — no shutdown hooks, like an OOM kill or a node failure.
``call()`` never raises for an HTTP status: it returns the status, the parsed JSON (or
``None``) and the seconds it took, so timing is measured where the client sees it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promfixture import ManagedProcess, free_port

NO_DAC_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--")
"""Runs a command as root without the capabilities that ignore file permissions, so a
read-only file or directory is read-only for it (tests run as root in CI)."""


class ServeProcess(ManagedProcess):
    def __init__(self, workdir: Path, prometheus_url: str, database: str, *,
                 port: int | None = None, wrapper: Sequence[str] = (),
                 extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        command = [*wrapper, sys.executable, "-m", "analyzer.cli", "serve", "--host",
                   "127.0.0.1", "--port", str(self.port), "--prometheus", prometheus_url,
                   "--database", database, *extra]
        super().__init__(command, url=f"http://127.0.0.1:{self.port}", ready_path="/healthz",
                         log=workdir / f"serve-{self.port}.log",
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill(self) -> None:
        """SIGKILL, then reap the child."""
        if self.pid is not None and self.running:
            os.kill(self.pid, signal.SIGKILL)
        self.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    seconds: float
    raw: bytes


def call(url: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Answer:
    """GET ``url``, or POST ``body`` as JSON; any HTTP status is an ``Answer``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return Answer(status, parsed, time.monotonic() - began, raw)


def run_serve_once(prometheus_url: str, database: str, wrapper: Sequence[str] = (),
                   timeout: float = 30.0) -> tuple[int, str, float]:
    """``serve`` expected to exit by itself (a startup error): exit status, output, seconds."""
    command = [*wrapper, sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
               "--port", str(free_port()), "--prometheus", prometheus_url,
               "--database", database]
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False, stdin=subprocess.DEVNULL)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - began
