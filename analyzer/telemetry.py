"""The service's own metrics (DESIGN §8), in a registry per app so tests can run several apps.

Verdict counters of a rollout start at 0 for every verdict: an alert on
``increase(canary_analyzer_verdicts_total{verdict="fail"}[5m]) > 0`` never sees a series that
is born at 1, so without this a later first ``fail`` of a rollout would go unnoticed.

Per-rollout series are bounded against junk calls: a rollout gets series only from an answer
that was stored in a session and in which the canary saw traffic (a 4xx, a 503 or a canary
selector that matched nothing adds none), and beyond ``max_rollouts`` the least recently
judged *idle* rollout is forgotten; when every tracked rollout was judged within
``idle_after``, the newcomer gets no series instead (counted in
``canary_analyzer_rollouts_untracked_total``), so a flood of new names cannot push the
rollouts being judged right now out of ``/metrics``.

The verdict metrics carry the canary and stable sides (``canary``, ``stable``: the Service
name, or the label selector as ``label=value,…``) so dashboards read them with
``label_values`` instead of guessing Service names; the ``canary_analyzer_step_*`` gauges
keep one series per canary weight (a Rollout's ``setWeight`` step).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from analyzer.store.retention import PruneReport

VERDICTS = ("pass", "fail", "inconclusive")
VERDICT_VALUE = {"pass": 1.0, "inconclusive": 0.0, "fail": -1.0}
MAX_ROLLOUTS = 1000
"""Rollouts whose series /metrics keeps (about 10 KiB of memory and 2 KiB of exposition each)."""
IDLE_AFTER = 900.0
"""Seconds without a judge call after which a rollout may be forgotten for a newcomer: well
above Argo's usual 1-5 minute analysis interval."""
MAX_STEPS = 20
"""Canary weights (steps) whose series one rollout keeps; the oldest beyond go."""
SERVICE_LABEL = "destination_service_name"
ERROR_REASONS = ("prometheus_unavailable", "store_unavailable", "bad_request", "unauthorized",
                 "internal")


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # a series that was never set
        metric.remove(*labels)


def side_label(selector: Mapping[str, str]) -> str:
    """A side as a label value: the Service name when the side is one Service, else the
    selector as ``label=value,…`` (sorted, so equal selectors give equal values)."""
    if set(selector) == {SERVICE_LABEL}:
        return selector[SERVICE_LABEL]
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def saw_traffic(response: Mapping[str, Any]) -> bool:
    """Whether any judged metric counted canary requests (or samples)."""
    for metric in response.get("metrics", []):
        count = (metric.get("canary") or {}).get("count")
        if isinstance(count, int | float) and math.isfinite(count) and count > 0:
            return True
    return False


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass
class _Rollout:
    """What /metrics holds for one rollout, to forget it whole."""

    canary: str
    stable: str
    last: float
    metrics: set[str] = field(default_factory=set)
    steps: OrderedDict[str, None] = field(default_factory=OrderedDict)


class Telemetry:
    """Every §8 metric, registered in its own ``CollectorRegistry``; ``clock`` (monotonic
    seconds) is injectable to test idleness."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_rollouts: int = MAX_ROLLOUTS, *, idle_after: float = IDLE_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rollouts = max_rollouts
        self.idle_after = idle_after
        self.clock = clock
        # (namespace, rollout) → its series, least recently judged first.
        self._rollouts: OrderedDict[tuple[str, str], _Rollout] = OrderedDict()
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        r = self.registry
        sides = ["namespace", "rollout", "canary", "stable"]
        self.verdicts = Counter("canary_analyzer_verdicts", "Verdicts given",
                                [*sides, "verdict"], registry=r)
        self.last_verdict = Gauge("canary_analyzer_last_verdict",
                                  "Last verdict: 1 pass, 0 inconclusive, -1 fail",
                                  sides, registry=r)
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
        self.samples_read = Histogram(
            "canary_analyzer_prometheus_samples_read",
            "Samples (series x points) in the Prometheus answers of one judge call",
            buckets=(10, 100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000),
            registry=r)
        self.errors = Counter("canary_analyzer_errors", "Requests that got no verdict",
                              ["reason"], registry=r)
        # Beyond DESIGN §8, for the dashboards: margins and thresholds drawn as lines,
        # the observed split, one series per step, HTTP answers by status and sessions.
        self.observed_share = Gauge("canary_analyzer_observed_canary_share",
                                    "Canary share of requests in the checked intervals (0-1)",
                                    ["namespace", "rollout"], registry=r)
        self.metric_allowed = Gauge("canary_analyzer_metric_allowed_effect",
                                    "Allowed canary/baseline ratio in the harmful direction",
                                    ["namespace", "rollout", "metric"], registry=r)
        self.metric_threshold = Gauge("canary_analyzer_metric_e_value_threshold",
                                      "E-value at which the metric fails",
                                      ["namespace", "rollout", "metric"], registry=r)
        self.gate_eta = Gauge("canary_analyzer_gate_eta_seconds",
                              "Roughly how long the promotion gate still needs at the current "
                              "traffic (the answer's gate.eta_seconds; +Inf while the current "
                              "estimate would never pass)",
                              ["namespace", "rollout", "metric"], registry=r)
        step = [*sides, "weight"]
        self.step_verdict = Gauge("canary_analyzer_step_verdict",
                                  "Last verdict at this canary weight: 1 pass, 0 "
                                  "inconclusive, -1 fail", step, registry=r)
        self.step_weight = Gauge("canary_analyzer_step_canary_weight",
                                 "The canary weight (percent) of this step", step, registry=r)
        self.step_share = Gauge("canary_analyzer_step_observed_canary_share",
                                "Canary share of requests (0-1) last judged at this weight",
                                step, registry=r)
        self.prometheus_up = Gauge("canary_analyzer_prometheus_up",
                                   "1 if the last Prometheus check or judge call reached "
                                   "Prometheus, 0 if it did not", registry=r)
        self.http_requests = Counter("canary_analyzer_http_requests",
                                     "HTTP requests answered, by route template and status",
                                     ["route", "method", "status"], registry=r)
        self.sessions = Counter("canary_analyzer_sessions_created",
                                "Analysis sessions created (first call of a canary)",
                                registry=r)
        self.untracked = Counter("canary_analyzer_rollouts_untracked",
                                 "Verdicts of rollouts given no series: the rollout cap was "
                                 "reached and no tracked rollout was idle", registry=r)
        self.pruned = Counter("canary_analyzer_evaluations_pruned",
                              "Stored evaluations deleted by the retention (age or size)",
                              registry=r)
        self.prune_batch = Gauge("canary_analyzer_prune_slowest_batch_seconds",
                                 "Longest delete batch of the last pruning run (how long "
                                 "judge calls may have waited for the database)", registry=r)
        for reason in ERROR_REASONS:
            self.errors.labels(reason=reason)

    def session_created(self) -> None:
        self.sessions.inc()

    def store_pruned(self, report: PruneReport) -> None:
        self.pruned.inc(report.evaluations)
        self.prune_batch.set(report.slowest_batch)

    def observe_query(self, seconds: float) -> None:
        self.query_duration.observe(seconds)

    def observe_samples(self, samples: int) -> None:
        self.samples_read.observe(samples)

    def error(self, reason: str) -> None:
        self.errors.labels(reason=reason).inc()

    def record(self, namespace: str, rollout: str, response: Mapping[str, Any], *,
               canary: Mapping[str, str], stable: Mapping[str, str]) -> None:
        """Updates the verdict, score, weight, step and per-metric series from one answer
        (see the module docstring for when a rollout gets series at all)."""
        verdict = response["verdict"]
        traffic = response.get("traffic", {})
        weight = _number(traffic.get("canary_weight"))
        share = _number(traffic.get("observed_canary_share"))
        metrics = [m["name"] for m in response.get("metrics", [])]
        real = response.get("analysis_id") is not None and saw_traffic(response)
        tracked = self._track(namespace, rollout, side_label(canary), side_label(stable),
                              metrics, None if weight is None else f"{weight:g}", real)
        if tracked is None:
            return
        sides = {"namespace": namespace, "rollout": rollout, "canary": tracked.canary,
                 "stable": tracked.stable}
        self.verdicts.labels(**sides, verdict=verdict).inc()
        self.last_verdict.labels(**sides).set(VERDICT_VALUE[verdict])
        self.score.labels(namespace=namespace, rollout=rollout).set(response["score"])
        for gauge, value in ((self.canary_weight, weight), (self.observed_share, share)):
            if value is not None:
                gauge.labels(namespace=namespace, rollout=rollout).set(value)
        if weight is not None:
            step = {**sides, "weight": f"{weight:g}"}
            self.step_verdict.labels(**step).set(VERDICT_VALUE[verdict])
            self.step_weight.labels(**step).set(weight)
            if share is not None:
                self.step_share.labels(**step).set(share)
        for metric in response.get("metrics", []):
            labels = {"namespace": namespace, "rollout": rollout, "metric": metric["name"]}
            for gauge, key in ((self.metric_effect, "effect"), (self.metric_e_value, "e_value"),
                               (self.metric_allowed, "allowed"),
                               (self.metric_threshold, "threshold")):
                value = _number(metric.get(key))
                if value is not None:
                    gauge.labels(**labels).set(value)
            gate = metric.get("gate")
            if isinstance(gate, Mapping):  # +Inf: the gate would not pass at this estimate
                eta = _number(gate.get("eta_seconds"))
                self.gate_eta.labels(**labels).set(math.inf if eta is None else eta)
            else:
                _remove(self.gate_eta, namespace, rollout, metric["name"])

    def _track(self, namespace: str, rollout: str, canary: str, stable: str,
               metrics: Iterable[str], step: str | None, real: bool) -> _Rollout | None:
        """The rollout's entry, made most recent; ``None`` when it gets no series: it is
        not tracked yet and either the answer is not ``real`` (no session, no canary
        traffic) or the cap is reached with no idle rollout to forget. A rollout whose
        sides changed forgets the old sides' series first."""
        now = self.clock()
        with self._lock:
            key = (namespace, rollout)
            entry = self._rollouts.get(key)
            if entry is not None and (entry.canary, entry.stable) != (canary, stable):
                self._forget(key, self._rollouts.pop(key))
                entry = None
            if entry is None:
                if not real:
                    return None
                if len(self._rollouts) >= self.max_rollouts:
                    oldest_key, oldest = next(iter(self._rollouts.items()))
                    if now - oldest.last < self.idle_after:
                        self.untracked.inc()
                        return None
                    self._forget(oldest_key, self._rollouts.pop(oldest_key))
                entry = self._rollouts[key] = _Rollout(canary, stable, now)
                for verdict in VERDICTS:  # at 0 from the start (module docstring)
                    self.verdicts.labels(namespace, rollout, canary, stable, verdict)
            entry.last = now
            entry.metrics.update(metrics)
            if step is not None:
                entry.steps[step] = None
                entry.steps.move_to_end(step)
                while len(entry.steps) > MAX_STEPS:
                    old, _ = entry.steps.popitem(last=False)
                    for gauge in (self.step_verdict, self.step_weight, self.step_share):
                        _remove(gauge, namespace, rollout, canary, stable, old)
            self._rollouts.move_to_end(key)
            return entry

    def _forget(self, key: tuple[str, str], entry: _Rollout) -> None:
        namespace, rollout = key
        sides = (namespace, rollout, entry.canary, entry.stable)
        for verdict in VERDICTS:
            _remove(self.verdicts, *sides, verdict)
        _remove(self.last_verdict, *sides)
        for gauge in (self.score, self.canary_weight, self.observed_share):
            _remove(gauge, namespace, rollout)
        for step in entry.steps:
            for gauge in (self.step_verdict, self.step_weight, self.step_share):
                _remove(gauge, *sides, step)
        for name in entry.metrics:
            for gauge in (self.metric_effect, self.metric_e_value, self.metric_allowed,
                          self.metric_threshold, self.gate_eta):
                _remove(gauge, namespace, rollout, name)

    def tracked(self) -> list[tuple[str, str]]:
        """(namespace, rollout) with series, least recently judged first."""
        with self._lock:
            return list(self._rollouts)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
