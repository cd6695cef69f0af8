"""The analyzer's Prometheus alerts (deploy/base/alerts), unit-tested with ``promtool``.

``promtool`` comes with Debian's ``prometheus`` package (installed by
scripts/install-system-deps.sh); without it the promtool tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy" / "base" / "alerts"
RULES = ALERTS / "canary-analyzer.rules.yaml"
RULE_TESTS = ALERTS / "tests.yaml"
PROMETHEUS_RULE = REPO / "deploy" / "base" / "prometheusrule.yaml"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH (Debian package `prometheus`; run "
    "scripts/install-system-deps.sh as root)")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def rules_by_alert() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_prometheusrule_object_matches_the_rule_file() -> None:
    """The PrometheusRule the cluster gets is exactly what promtool tests."""
    rule_object = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (rule_object["apiVersion"], rule_object["kind"]) == ("monitoring.coreos.com/v1",
                                                                "PrometheusRule")
    assert rule_object["spec"] == {"groups": yaml.safe_load(RULES.read_text())["groups"]}


def test_alerts_are_the_ones_the_design_names() -> None:
    alerts = rules_by_alert()
    assert set(alerts) == {"CanaryAnalysisFailed", "CanaryAnalyzerErrors"}
    failed, errors = alerts["CanaryAnalysisFailed"], alerts["CanaryAnalyzerErrors"]
    assert 'canary_analyzer_verdicts_total{verdict="fail"}' in failed["expr"]
    assert "increase(" in failed["expr"]
    assert errors["expr"].strip() == (
        "sum by (reason) (rate(canary_analyzer_errors_total[5m])) > 0")
    assert errors["for"] == "5m"
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(alert["annotations"])
    for key in ("summary", "description"):
        text = failed["annotations"][key]
        assert "{{ $labels.namespace }}" in text and "{{ $labels.rollout }}" in text


@needs_promtool
def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 2 rules found" in proc.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """Failed verdict fires with namespace/rollout labels (also when the fail series is new),
    passes alone fire nothing, errors fire only after 5 minutes."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    proc = promtool("test", "rules", RULE_TESTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
@pytest.mark.parametrize("case", ["fail-on-passes-only", "errors-fire-too-early"])
def test_promtool_rejects_a_wrong_expectation(tmp_path: Path, case: str) -> None:
    """The harness can fail: expectations that contradict the rules make promtool exit non-0."""
    if case == "fail-on-passes-only":
        series = [{"series": 'canary_analyzer_verdicts_total{namespace="shop",'
                             'rollout="checkout",verdict="pass"}',
                   "values": "0+1x40"}]
        check = {"eval_time": "5m", "alertname": "CanaryAnalysisFailed",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "shop",
                                                "rollout": "checkout"}}]}
    else:
        series = [{"series": 'canary_analyzer_errors_total{reason="prometheus_unavailable"}',
                   "values": "0+1x40"}]
        check = {"eval_time": "3m", "alertname": "CanaryAnalyzerErrors",
                 "exp_alerts": [{"exp_labels": {"severity": "critical",
                                                "reason": "prometheus_unavailable"}}]}
    wrong = {"rule_files": [str(RULES)], "evaluation_interval": "15s",
             "tests": [{"interval": "15s", "input_series": series,
                        "alert_rule_test": [check]}]}
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(wrong))
    proc = promtool("test", "rules", path)
    assert proc.returncode != 0, proc.stdout
    assert "FAILED" in proc.stdout + proc.stderr
