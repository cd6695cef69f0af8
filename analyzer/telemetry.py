"""The service's own metrics (DESIGN §8), in a registry per app so tests can run several apps.

Verdict counters of a new session start at 0 for every verdict: an alert on
``increase(canary_analyzer_verdicts_total{verdict="fail"}[5m]) > 0`` never sees a series that
is born at 1, so without this the first ``fail`` of a rollout would go unnoticed.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

VERDICTS = ("pass", "fail", "inconclusive")
VERDICT_VALUE = {"pass": 1.0, "inconclusive": 0.0, "fail": -1.0}
MAX_ROLLOUTS = 1000
"""Rollouts whose series /metrics keeps (about 10 KiB of memory and 2 KiB of exposition each)."""
ERROR_REASONS = ("prometheus_unavailable", "store_unavailable", "bad_request", "unauthorized",
                 "internal")


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # a series that was never set
        metric.remove(*labels)


class Telemetry:
    """Every §8 metric, registered in its own ``CollectorRegistry``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_rollouts: int = MAX_ROLLOUTS) -> None:
        self.max_rollouts = max_rollouts
        # (namespace, rollout) → metric names with series, least recently judged first.
        self._rollouts: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        self._lock = threading.Lock()
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
        # Beyond DESIGN §8, for the dashboards: margins and thresholds drawn as lines,
        # the observed split, HTTP answers by status and sessions.
        self.observed_share = Gauge("canary_analyzer_observed_canary_share",
                                    "Canary share of requests in the checked intervals (0-1)",
                                    ["namespace", "rollout"], registry=r)
        self.metric_allowed = Gauge("canary_analyzer_metric_allowed_effect",
                                    "Allowed canary/baseline ratio in the harmful direction",
                                    ["namespace", "rollout", "metric"], registry=r)
        self.metric_threshold = Gauge("canary_analyzer_metric_e_value_threshold",
                                      "E-value at which the metric fails",
                                      ["namespace", "rollout", "metric"], registry=r)
        self.prometheus_up = Gauge("canary_analyzer_prometheus_up",
                                   "1 if the last Prometheus check or judge call reached "
                                   "Prometheus, 0 if it did not", registry=r)
        self.http_requests = Counter("canary_analyzer_http_requests",
                                     "HTTP requests answered, by route template and status",
                                     ["route", "method", "status"], registry=r)
        self.sessions = Counter("canary_analyzer_sessions_created",
                                "Analysis sessions created (first call of a canary)",
                                registry=r)
        for reason in ERROR_REASONS:
            self.errors.labels(reason=reason)

    def session_created(self, namespace: str, rollout: str) -> None:
        self.sessions.inc()
        self.declare(namespace, rollout)

    def declare(self, namespace: str, rollout: str) -> None:
        """Makes the verdict counters of a rollout exist at 0 (see the module docstring)."""
        self._touch(namespace, rollout, ())
        for verdict in VERDICTS:
            self.verdicts.labels(namespace=namespace, rollout=rollout, verdict=verdict)

    def observe_query(self, seconds: float) -> None:
        self.query_duration.observe(seconds)

    def error(self, reason: str) -> None:
        self.errors.labels(reason=reason).inc()

    def record(self, namespace: str, rollout: str, response: Mapping[str, Any]) -> None:
        """Updates the verdict, score, weight and per-metric gauges from one answer."""
        verdict = response["verdict"]
        self.declare(namespace, rollout)
        self.verdicts.labels(namespace=namespace, rollout=rollout, verdict=verdict).inc()
        self.last_verdict.labels(namespace=namespace, rollout=rollout).set(VERDICT_VALUE[verdict])
        self.score.labels(namespace=namespace, rollout=rollout).set(response["score"])
        traffic = response.get("traffic", {})
        for gauge, key in ((self.canary_weight, "canary_weight"),
                           (self.observed_share, "observed_canary_share")):
            value = traffic.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                gauge.labels(namespace=namespace, rollout=rollout).set(value)
        self._touch(namespace, rollout, [m["name"] for m in response.get("metrics", [])])
        for metric in response.get("metrics", []):
            labels = {"namespace": namespace, "rollout": rollout, "metric": metric["name"]}
            for gauge, key in ((self.metric_effect, "effect"), (self.metric_e_value, "e_value"),
                               (self.metric_allowed, "allowed"),
                               (self.metric_threshold, "threshold")):
                value = metric.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    gauge.labels(**labels).set(value)

    def _touch(self, namespace: str, rollout: str, metrics: Iterable[str]) -> None:
        """Marks a rollout as just judged, and forgets the least recently judged ones beyond
        ``max_rollouts``: every rollout name adds ~20 series, and a long-lived service sees
        thousands of rollouts. Prometheus keeps their history; only /metrics forgets them."""
        with self._lock:
            key = (namespace, rollout)
            self._rollouts.setdefault(key, set()).update(metrics)
            self._rollouts.move_to_end(key)
            while len(self._rollouts) > self.max_rollouts:
                (old_ns, old_rollout), names = self._rollouts.popitem(last=False)
                self._forget(old_ns, old_rollout, names)

    def _forget(self, namespace: str, rollout: str, metrics: set[str]) -> None:
        for verdict in VERDICTS:
            _remove(self.verdicts, namespace, rollout, verdict)
        for gauge in (self.last_verdict, self.score, self.canary_weight, self.observed_share):
            _remove(gauge, namespace, rollout)
        for name in metrics:
            for gauge in (self.metric_effect, self.metric_e_value, self.metric_allowed,
                          self.metric_threshold):
                _remove(gauge, namespace, rollout, name)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
