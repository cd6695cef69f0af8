"""`replay` and `backtest`: output shape and exit codes, through ``main()`` in process (one
test runs the installed console script, to show the entry point itself works)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "datasets"


run = run_cli


def test_replay_json_lines_match_the_contract():
    paths = sorted(EXAMPLES.glob("*.json"))
    proc = run("replay", "--json", *map(str, paths))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(paths)
    by_name = {}
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"name", "verdict", "first_fail_at", "evaluations"}
        assert record["verdict"] in {"pass", "fail", "inconclusive"}
        for evaluation in record["evaluations"]:
            assert set(evaluation) == {"at", "verdict", "score"}
            assert isinstance(evaluation["score"], float)
        ats = [e["at"] for e in record["evaluations"]]
        assert ats == sorted(ats) and ats[0] == 30
        if record["verdict"] == "fail":
            assert record["first_fail_at"] == ats[-1]
            assert record["evaluations"][-1]["verdict"] == "fail"
        else:
            assert record["first_fail_at"] is None
        by_name[record["name"]] = record
    assert by_name["healthy"]["first_fail_at"] is None
    assert by_name["error-regression"]["verdict"] == "fail"
    assert by_name["latency-regression"]["verdict"] == "fail"


def test_replay_text_timeline_and_bad_input_exit_two(tmp_path):
    proc = run("replay", str(EXAMPLES / "error-regression.json"))
    assert proc.returncode == 0
    assert "fail at" in proc.stdout and "error-rate" in proc.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "canary-dataset/v1", "name": "x"}')
    proc = run("replay", str(bad))
    assert proc.returncode == 2
    assert "bad.json" in proc.stderr and "interval_seconds" in proc.stderr
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nmetrics:\n  - {name: error-rate, kind: istio-error-rate, x: 1}\n")
    proc = run("replay", "--config", str(config), str(EXAMPLES / "healthy.json"))
    assert proc.returncode == 2 and "c.yaml" in proc.stderr and "metrics.0.x" in proc.stderr


def test_backtest_confusion_and_json(tmp_path):
    for path in EXAMPLES.glob("*.json"):
        data = json.loads(path.read_text())
        data["expected"] = "pass" if path.stem == "healthy" else "fail"
        (tmp_path / path.name).write_text(json.dumps(data))
    proc = run("backtest", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    summary = report["summary"]
    assert summary["bad"] == 2 and summary["detected"] == 2
    assert summary["good"] == 1 and summary["false_fail"] == 0
    assert summary["confusion"]["fail"]["fail"] == 2
    text = run("backtest", str(tmp_path))
    assert text.returncode == 0 and "summary:" in text.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("backtest", str(empty)).returncode == 2


@pytest.mark.skipif(shutil.which("canary-analyzer") is None and not
                    (ROOT / ".venv" / "bin" / "canary-analyzer").exists(),
                    reason="console script not installed")
def test_console_script_is_installed():
    script = shutil.which("canary-analyzer") or str(ROOT / ".venv" / "bin" / "canary-analyzer")
    proc = subprocess.run([script, "replay", "--json", str(EXAMPLES / "healthy.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["name"] == "healthy"
