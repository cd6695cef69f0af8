"""``canary-analyzer demo`` end to end: real Prometheus, a real service process, Argo's reading.

The demo runs as a subprocess with ``TMPDIR`` pointed at a test directory, so every process it
starts carries that directory in its command line (data dir, database); none may be left once
it exits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.demo import OFFLINE_ENV
from devtools.openmetrics import tools_missing

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ("error-regression", "latency-regression")


def run_demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run([sys.executable, "-m", "analyzer.cli", "demo"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


def blocks(output: str) -> dict[str, list[str]]:
    """The lines of each canary's timeline, keyed by canary name."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        name = line.split("  ")[0]
        if name in ("healthy", *REGRESSIONS):
            current = found.setdefault(name, [])
        elif not line.startswith("  "):
            current = None
        elif current is not None:
            current.append(line.strip())
    return found


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_live_demo(tmp_path: Path) -> None:
    reason = tools_missing()
    if reason is not None:
        pytest.skip(reason)
    run = run_demo(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    timelines = blocks(run.stdout)
    assert set(timelines) == {"healthy", *REGRESSIONS}, run.stdout
    marks = {name: lines[0].split()[0] for name, lines in timelines.items()}
    assert "✗" not in marks["healthy"] and "!" not in marks["healthy"]
    assert len(marks["healthy"]) == 60  # one call per 30 s interval of the 30 min canary
    for name in REGRESSIONS:
        assert marks[name].endswith("✗") and marks[name].count("✗") == 1, run.stdout
        assert "!" not in marks[name]
        assert timelines[name][1].startswith("→ Failed at"), run.stdout
        # the failing metric, its effect and its interval
        assert re.match(r"\S+: (high|low), canary/baseline [\d.]+ \(interval \[",
                        timelines[name][2]), run.stdout
    assert "/api/v1/analyses" in run.stdout
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", run.stdout)]
    assert len(pids) == 2, run.stdout  # prometheus and the service
    assert "Stopped everything the demo started" in run.stdout
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline")
        assert not cmdline.exists() or str(tmp_path).encode() not in cmdline.read_bytes()
    assert processes_mentioning(str(tmp_path)) == []
    assert not any(tmp_path.iterdir())  # the demo's temporary directory is gone


def test_offline_demo(tmp_path: Path) -> None:
    run = run_demo(tmp_path, **{OFFLINE_ENV: "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "offline" in run.stdout
    assert "(pid" not in run.stdout
    timelines = blocks(run.stdout)
    assert set(timelines) == {"healthy", *REGRESSIONS}, run.stdout
    assert "✗" not in timelines["healthy"][0]
    for name in REGRESSIONS:
        assert timelines[name][0].endswith("✗")
        assert timelines[name][1].startswith("→ fail at")
