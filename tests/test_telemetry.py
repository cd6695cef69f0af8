"""The service's own metrics stay bounded however many rollouts it has judged."""

from __future__ import annotations

from analyzer.telemetry import Telemetry

ANSWER = {"verdict": "pass", "score": 100.0,
          "traffic": {"canary_weight": 5, "observed_canary_share": 0.05},
          "metrics": [{"name": "error-rate", "effect": 1.0, "e_value": 0.5, "allowed": 1.0,
                       "threshold": 200.0}]}


def _rollouts(telemetry: Telemetry) -> set[str]:
    text = telemetry.exposition().decode()
    return {line.split('rollout="')[1].split('"')[0]
            for line in text.splitlines() if 'rollout="' in line}


def test_least_recently_judged_rollouts_are_forgotten_beyond_the_cap():
    telemetry = Telemetry(max_rollouts=3)
    for name in ("a", "b", "c"):
        telemetry.record("shop", name, ANSWER)
    telemetry.record("shop", "a", ANSWER)  # judged again: now the most recent
    telemetry.record("shop", "d", ANSWER)
    assert _rollouts(telemetry) == {"a", "c", "d"}


def test_series_count_is_bounded():
    telemetry = Telemetry(max_rollouts=10)
    for i in range(200):
        telemetry.record("shop", f"rollout-{i}", ANSWER)
    text = telemetry.exposition().decode()
    assert len(_rollouts(telemetry)) == 10
    assert sum('rollout="' in line for line in text.splitlines()) < 10 * 40
    assert 'rollout="rollout-199"' in text and 'rollout="rollout-0"' not in text
