"""The stable Service's recent traffic, as a plan needs it: quiet and busy hours, event rates.

Traffic is diurnal, so one average would plan steps that are too short at night: the plan
uses the 10th and 90th percentile of the hourly request rate (quiet and busy), and each ratio
metric's rate over the whole history (errors per request of the stable side).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from analyzer.config.models import CanaryConfig
from analyzer.errors import InputError
from analyzer.judge.series import HistogramSeries, RatioSeries
from analyzer.metrics.dataset import Dataset
from analyzer.metrics.prometheus import PrometheusClient
from analyzer.metrics.promql import label_name, string_literal

QUIET, BUSY = 0.10, 0.90
HOUR = 3600.0


class HistoryError(InputError):
    """History that cannot be planned from; the message names the flag or file."""


@dataclass(frozen=True)
class Profile:
    """Hourly request rates of the whole Service and each ratio metric's event rate."""

    source: str
    hourly_requests_per_second: tuple[float, ...]
    event_rates: dict[str, float]  # ratio metric name → events per request (stable side)

    @property
    def quiet(self) -> float:
        return float(np.quantile(self.hourly_requests_per_second, QUIET))

    @property
    def busy(self) -> float:
        return float(np.quantile(self.hourly_requests_per_second, BUSY))


def from_dataset(dataset: Dataset, config: CanaryConfig, source: str) -> Profile:
    """Requests of both sides together (the traffic the Rollout splits) per hour of the
    dataset, and each ratio metric's baseline rate."""
    requests = None
    rates: dict[str, float] = {}
    for metric in config.metrics:
        series = dataset.metrics.get(metric.name)
        if isinstance(series, RatioSeries):
            if requests is None and metric.kind != "promql":
                requests = series.canary_den + series.baseline_den
            den = float(series.baseline_den.sum())
            if den > 0:
                rates[metric.name] = float(series.baseline_num.sum()) / den
        elif isinstance(series, HistogramSeries) and requests is None:
            requests = series.canary.sum(axis=1) + series.baseline.sum(axis=1)
    if requests is None:
        raise HistoryError(f"{source}: no request-counting metric of the config "
                           f"({', '.join(m.name for m in config.metrics)}) in the dataset")
    step = dataset.interval_seconds
    hours = np.floor((dataset.timestamps - step) / HOUR).astype(int)
    hourly = []
    for hour in np.unique(hours):
        inside = hours == hour
        hourly.append(float(requests[inside].sum()) / (inside.sum() * step))
    return Profile(source, tuple(hourly), rates)


def _selector(namespace: str, service: str) -> str:
    labels = {"reporter": "source", "destination_service_namespace": namespace,
              "destination_service_name": service}
    try:
        return "{" + ",".join(f"{label_name(k)}={string_literal(v, k)}"
                              for k, v in labels.items()) + "}"
    except ValueError as exc:
        raise HistoryError(f"--namespace/--service: {exc}") from None


def from_prometheus(client: PrometheusClient, config: CanaryConfig, namespace: str,
                    service: str, end: datetime, lookback: timedelta) -> Profile:
    """Hourly requests of ``service`` by response code over ``lookback`` before ``end``, from
    Istio's ``istio_requests_total``; error rates by each Istio error-rate metric's codes."""
    query = (f"sum by (response_code) (increase(istio_requests_total"
             f"{_selector(namespace, service)}[1h]))")
    start = end - lookback + timedelta(hours=1)
    series = client.query_range(query, start, end, HOUR)
    if not series:
        raise HistoryError(f"--service: no istio_requests_total for {namespace}/{service} in "
                           f"the {lookback} before {end.isoformat()}")
    times = sorted({float(t) for s in series for t in s["values"][:, 0]})
    index = {t: i for i, t in enumerate(times)}
    total = np.zeros(len(times))
    by_code: dict[str, float] = {}
    for s in series:
        values = np.nan_to_num(s["values"][:, 1].astype(float), nan=0.0)
        for (t, _), v in zip(s["values"], values, strict=True):
            total[index[float(t)]] += v
        code = s["metric"].get("response_code", "")
        by_code[code] = by_code.get(code, 0.0) + float(values.sum())
    requests = float(total.sum())
    rates = {}
    for metric in config.metrics:
        if metric.kind == "istio-error-rate" and requests > 0:
            codes = re.compile(metric.error_codes)
            errors = sum(v for code, v in by_code.items() if codes.fullmatch(code))
            rates[metric.name] = errors / requests
    hourly = tuple(float(v) / HOUR for v in total if math.isfinite(v))
    return Profile(f"prometheus {namespace}/{service}", hourly, rates)
