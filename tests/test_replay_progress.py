"""`replay`/`backtest` draw a progress bar on a terminal only: on a real pseudo-terminal the
bar appears; with ``--json`` on the same terminal, or piped, the output has none."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "datasets" / "healthy.json"
BAR = "replay healthy"

pytestmark = pytest.mark.slow  # starts processes


def _on_terminal(*args: str) -> str:
    """Everything the command writes to a pseudo-terminal (stdout and stderr)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "analyzer.cli", *args], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_a_terminal_gets_a_bar_and_json_or_a_pipe_does_not() -> None:
    assert BAR in _on_terminal("replay", str(EXAMPLE))
    assert BAR not in _on_terminal("replay", "--json", str(EXAMPLE))
    piped = subprocess.run([sys.executable, "-m", "analyzer.cli", "replay", str(EXAMPLE)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and BAR not in piped.stdout + piped.stderr
