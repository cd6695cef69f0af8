"""One analysis: request → config, window, Prometheus, judge → the DESIGN §3 answer.

The API and the ``judge`` command both call ``Analyzer.run``, so a one-shot CLI answer and a
service answer for the same request are the same JSON. Everything that can make a request
hopeless (bad labels, unknown config, a too-long window) is checked before Prometheus is asked
or anything is stored: such a request gets a 4xx naming the field and leaves no trace.
A session is stored only after the analysis succeeded, so a 503 leaves no trace either.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from analyzer.config import CanaryConfig, ConfigError, parse_config
from analyzer.judge.evaluate import JudgeInputError, judge
from analyzer.judge.series import RatioSeries
from analyzer.judge.traffic import TrafficCheck
from analyzer.metrics.dataset import DatasetError, parse_time
from analyzer.metrics.istio import SideSelectors, WindowData, fetch_window
from analyzer.metrics.prometheus import PrometheusClient
from analyzer.metrics.promql import Selector
from analyzer.request import JudgeRequest, RequestError
from analyzer.store import Store, selector_key
from analyzer.telemetry import Telemetry

DEFAULT_STEP = 30.0
DEFAULT_MAX_WINDOW = timedelta(hours=24)
SERVICE_LABEL = "destination_service_name"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UNSAFE_VALUE = re.compile(r'["\\{}`\x00-\x1f\x7f]')
"""Never in a real Istio label value; refused up front (the PromQL is escaped anyway)."""

ClientFactory = Callable[[Callable[[float], None] | None], PrometheusClient]
WeightSource = Callable[[str, str], float | None]
"""(namespace, rollout) → the canary weight in percent now, e.g. read from Kubernetes."""


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z``; milliseconds only when the time has them."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, tuples as lists, NaN and ±Inf as null
    (Go's encoding/json, and so Argo, cannot read NaN or Infinity)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Resolved:
    """A request after validation: everything the analysis needs, nothing left to check."""

    namespace: str
    rollout: str
    sides: SideSelectors
    config: CanaryConfig
    config_name: str
    start: datetime | None
    end: datetime
    final: bool
    canary_weight: float | None

    @property
    def key(self) -> str:
        return selector_key(self.sides.canary, self.sides.baseline, self.sides.reporter)


def _time(value: float | str | None, field: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    try:
        return parse_time(value, field)
    except DatasetError as exc:
        raise RequestError(field, str(exc)) from None


def _labels(labels: Mapping[str, str] | None, service: str | None, side: str) -> dict[str, str]:
    field = side if labels is not None else f"{side}_service"
    if labels is not None and service is not None:
        raise RequestError(f"{side}_service", f"give {side} or {side}_service, not both")
    chosen = dict(labels) if labels is not None else (
        {SERVICE_LABEL: service} if service is not None else None)
    if not chosen:
        raise RequestError(side, f"{side} traffic is not selected: give {side} (label → value) "
                                 f"or {side}_service")
    if labels is None and not _DNS_LABEL.fullmatch(chosen[SERVICE_LABEL]):
        raise RequestError(field, f"{field}: {service[:80]!r} is not a Kubernetes Service name")
    for name, value in chosen.items():
        if _UNSAFE_VALUE.search(value):
            raise RequestError(f"{field}.{name}" if labels is not None else field,
                               f"{side} label {name!r}: value contains a quote, backslash, "
                               f"brace or control character; no Istio label value does")
    try:
        Selector(chosen)
    except ValueError as exc:
        raise RequestError(field, f"{field}: {exc}") from None
    return chosen


class Analyzer:
    """Runs analyses against one Prometheus with a set of named configs.

    ``client_factory(on_query)`` makes a Prometheus client per analysis (clients record their
    queries, so sharing one between threads would mix requests); ``store`` and ``telemetry``
    are optional (the CLI has neither); ``clock`` is injectable for tests.
    """

    def __init__(self, configs: Mapping[str, CanaryConfig], client_factory: ClientFactory, *,
                 store: Store | None = None, telemetry: Telemetry | None = None,
                 step_seconds: float = DEFAULT_STEP,
                 max_window: timedelta = DEFAULT_MAX_WINDOW,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 weight_source: WeightSource | None = None) -> None:
        self.configs = dict(configs)
        self.client_factory = client_factory
        self.store = store
        self.telemetry = telemetry
        self.step_seconds = step_seconds
        self.max_window = max_window
        self.clock = clock
        self.weight_source = weight_source

    def resolve(self, request: JudgeRequest) -> Resolved:
        """Every check that needs neither Prometheus nor the store; ``RequestError`` if bad."""
        if not _DNS_LABEL.fullmatch(request.namespace):
            raise RequestError("namespace", f"namespace {request.namespace[:80]!r} is not a "
                                            f"Kubernetes namespace name")
        canary = _labels(request.canary, request.canary_service, "canary")
        baseline = _labels(request.baseline, request.baseline_service, "baseline")
        try:
            sides = SideSelectors(request.namespace, canary, baseline, request.reporter)
        except ValueError as exc:
            field = "baseline" if "same series" in str(exc) else "canary"
            raise RequestError(field, str(exc)) from None
        if isinstance(request.config, str):
            config = self.configs.get(request.config)
            if config is None:
                raise RequestError("config", f"unknown config {request.config[:100]!r}; known: "
                                             f"{', '.join(sorted(self.configs))}")
            name = request.config
        else:
            try:
                config = parse_config(request.config, "config")
            except ConfigError as exc:
                raise RequestError("config", str(exc)) from None
            name = f"inline:{config.name}"
        start = _time(request.start, "start")
        end = _time(request.end, "end") or self.clock()
        if start is not None:
            self._check_window(start, end, explicit=True)
        return Resolved(request.namespace, request.rollout, sides, config, name, start, end,
                        request.final, request.canary_weight)

    def _check_window(self, start: datetime, end: datetime, *, explicit: bool) -> None:
        if explicit and end < start:
            raise RequestError("end", f"end {rfc3339(end)} is before start {rfc3339(start)}")
        if end - start > self.max_window:
            hours = self.max_window.total_seconds() / 3600
            how = "" if explicit else " (the session's start; pass a later start)"
            raise RequestError("start", f"window from start {rfc3339(start)}{how} to end "
                                        f"{rfc3339(end)} is longer than {hours:g} h")

    def run(self, request: JudgeRequest) -> dict[str, Any]:
        """The §3 answer. Raises ``RequestError`` (4xx), or ``PrometheusUnavailable`` or
        ``StoreUnavailable`` (503)."""
        began = time.monotonic()
        resolved = self.resolve(request)
        now = self.clock()
        start = resolved.start
        if start is None:
            found = None if self.store is None else self.store.find_session(
                resolved.namespace, resolved.rollout, resolved.key)
            start = found.start if found is not None else min(now, resolved.end)
            self._check_window(start, resolved.end, explicit=False)
        window_end = max(start, resolved.end)
        window = self._fetch(resolved, start, window_end)
        data_seconds = float(len(window.timestamps)) * self.step_seconds
        weight = resolved.canary_weight
        if weight is None and self.weight_source is not None:
            weight = self.weight_source(resolved.namespace, resolved.rollout)
        weights = None if weight is None else np.full(len(window.timestamps), float(weight))
        try:
            judgement = judge(window.series, resolved.config, final=resolved.final,
                              data_seconds=data_seconds, weights=weights,
                              recent_weights_only=True)
        except JudgeInputError as exc:
            raise RequestError("config", str(exc)) from None
        metrics = []
        for result in judgement.metrics:
            entry = result.to_dict()
            queries = window.metric_queries.get(result.name, [])
            entry["query"] = "\n".join(queries)
            entry["queries"] = list(queries)
            metrics.append(entry)
        response: dict[str, Any] = {
            "verdict": judgement.verdict,
            "score": float(judgement.score) if math.isfinite(judgement.score) else 0.0,
            "reason": judgement.reason,
            "analysis_id": None,
            "window": {"start": rfc3339(start), "end": rfc3339(window_end)},
            "traffic": _traffic(judgement.traffic, weight, resolved.config, window),
            "metrics": metrics,
        }
        response = jsonable(response)
        if self.store is not None:
            # One call: a new session and its first evaluation commit together (no session
            # without its evaluation after a crash or a lock timeout).
            _, created = self.store.record(
                resolved.namespace, resolved.rollout, resolved.key, resolved.config_name,
                start, at=now, window_end=window_end, verdict=response["verdict"],
                score=response["score"], final=resolved.final, response=response,
                queries=list(window.queries))
            if created and self.telemetry is not None:
                self.telemetry.session_created(resolved.namespace, resolved.rollout)
        if self.telemetry is not None:
            self.telemetry.record(resolved.namespace, resolved.rollout, response)
            self.telemetry.analysis_duration.observe(time.monotonic() - began)
        return response

    def _fetch(self, resolved: Resolved, start: datetime, end: datetime) -> WindowData:
        on_query = None if self.telemetry is None else self.telemetry.observe_query
        client = self.client_factory(on_query)
        try:
            return fetch_window(client, resolved.config.metrics, resolved.sides, start, end,
                                self.step_seconds)
        except ValueError as exc:
            # A config whose queries cannot be run as written (e.g. an unaggregated gauge).
            raise RequestError("config", str(exc)) from None
        finally:
            client.close()


def _traffic(check: TrafficCheck | None, weight: float | None, config: CanaryConfig,
             window: WindowData) -> dict[str, Any]:
    """DESIGN §3 ``traffic``; the split check's reason rides along when it has one."""
    if check is None:
        return {"canary_weight": weight,
                "observed_canary_share": _observed_share(config, window), "split_ok": True}
    return {"canary_weight": weight, "observed_canary_share": check.observed_canary_share,
            "split_ok": check.split_ok, "reason": check.reason}


def _observed_share(config: CanaryConfig, window: WindowData) -> float | None:
    """Canary requests / all requests, from the first Istio error-rate metric."""
    for metric in config.metrics:
        series = window.series.get(metric.name)
        if metric.kind == "istio-error-rate" and isinstance(series, RatioSeries):
            canary = float(np.sum(series.canary_den))
            total = canary + float(np.sum(series.baseline_den))
            return canary / total if total > 0 else None
    return None
