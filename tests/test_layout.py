"""The runtime package stands alone: importing every module of ``analyzer`` (the service, the
CLI, the judge) loads nothing of the demo's, the tests' or the benchmarks' tooling."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

PROBE = """
import importlib, pkgutil, sys
import analyzer
for module in pkgutil.walk_packages(analyzer.__path__, "analyzer."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)
tooling = sorted(m for m in sys.modules if m.split(".")[0] in ("devtools", "tests", "benchmarks"))
print(",".join(tooling))
"""


def test_no_runtime_module_imports_tooling() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
