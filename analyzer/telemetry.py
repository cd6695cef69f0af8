"""The service's own metrics (DESIGN §8), in a registry per app so tests can run several apps.

Verdict counters of a new session start at 0 for every verdict: an alert on
``increase(canary_analyzer_verdicts_total{verdict="fail"}[5m]) > 0`` never sees a series that
is born at 1, so without this the first ``fail`` of a rollout would go unnoticed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

VERDICTS = ("pass", "fail", "inconclusive")
VERDICT_VALUE = {"pass": 1.0, "inconclusive": 0.0, "fail": -1.0}
ERROR_REASONS = ("prometheus_unavailable", "bad_request", "internal")


class Telemetry:
    """Every §8 metric, registered in its own ``CollectorRegistry``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.verdicts = Counter("canary_analyzer_verdicts", "Verdicts given",
                                ["namespace", "rollout", "verdict"], registry=r)
        self.last_verdict = Gauge("canary_analyzer_last_verdict",
                                  "Last verdict: 1 pass, 0 inconclusive, -1 fail",
                                  ["namespace", "rollout"], registry=r)
        self.score = Gauge("canary_analyzer_score", "Last score (0-100)",
                           ["namespace", "rollout"], registry=r)
        self.metric_effect = Gauge("canary_analyzer_metric_effect",
                                   "Last canary/baseline ratio per metric",
                                   ["namespace", "rollout", "metric"], registry=r)
        self.metric_e_value = Gauge("canary_analyzer_metric_e_value",
                                    "Last e-value (evidence of harm) per metric",
                                    ["namespace", "rollout", "metric"], registry=r)
        self.canary_weight = Gauge("canary_analyzer_canary_weight", "Canary weight (percent)",
                                   ["namespace", "rollout"], registry=r)
        self.analysis_duration = Histogram("canary_analyzer_analysis_duration_seconds",
                                           "Wall time of one judge request", registry=r)
        self.query_duration = Histogram("canary_analyzer_prometheus_query_duration_seconds",
                                        "Wall time of one Prometheus query", registry=r)
        self.errors = Counter("canary_analyzer_errors", "Requests that got no verdict",
                              ["reason"], registry=r)
        for reason in ERROR_REASONS:
            self.errors.labels(reason=reason)

    def session_created(self, namespace: str, rollout: str) -> None:
        for verdict in VERDICTS:
            self.verdicts.labels(namespace=namespace, rollout=rollout, verdict=verdict)

    def observe_query(self, seconds: float) -> None:
        self.query_duration.observe(seconds)

    def error(self, reason: str) -> None:
        self.errors.labels(reason=reason).inc()

    def record(self, namespace: str, rollout: str, response: Mapping[str, Any]) -> None:
        """Updates the verdict, score, weight and per-metric gauges from one answer."""
        verdict = response["verdict"]
        self.session_created(namespace, rollout)
        self.verdicts.labels(namespace=namespace, rollout=rollout, verdict=verdict).inc()
        self.last_verdict.labels(namespace=namespace, rollout=rollout).set(VERDICT_VALUE[verdict])
        self.score.labels(namespace=namespace, rollout=rollout).set(response["score"])
        weight = response.get("traffic", {}).get("canary_weight")
        if weight is not None:
            self.canary_weight.labels(namespace=namespace, rollout=rollout).set(weight)
        for metric in response.get("metrics", []):
            labels = {"namespace": namespace, "rollout": rollout, "metric": metric["name"]}
            for gauge, key in ((self.metric_effect, "effect"), (self.metric_e_value, "e_value")):
                value = metric.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    gauge.labels(**labels).set(value)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
