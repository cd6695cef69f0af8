"""Why a side has no data: the selector matched no series, or its series saw no requests.

An empty answer is the signature of a mistake far more often than of a quiet canary: a typo
in a Service name, the wrong namespace or reporter, or a Prometheus that does not scrape the
mesh. The judge only knows that a side has no events; this module asks Prometheus what *is*
there, so the answer can name the likely mistake ("namespace shop has Istio series for
checkout-canary, checkout-stable; did you mean checkout-canary?"). It runs only for metrics
with an empty side, so a healthy call pays nothing for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import datetime, timedelta

from analyzer.config.models import MetricConfig
from analyzer.judge.evidence import Missing, empty_sides
from analyzer.metrics.istio import (
    DURATION_BUCKETS,
    REQUESTS,
    SERVICE_LABEL,
    SIDES,
    SideSelectors,
    WindowData,
)
from analyzer.metrics.prometheus import PrometheusClient
from analyzer.metrics.promql import Selector

HISTORY = timedelta(days=7)
"""How far back a selector that matches nothing now is looked up: series of a canary Service
from an earlier release mean its new series have not appeared *yet* (grace period); none in
a week means a typo, a wrong namespace or reporter, or an unscraped mesh (no grace)."""
ISTIO_KINDS = ("istio-error-rate", "istio-latency")
METRIC_OF = {"istio-error-rate": REQUESTS, "istio-latency": DURATION_BUCKETS}


class _Inventory:
    """The namespace's Istio Services over ``HISTORY``, with the request's reporter and with
    any, asked of Prometheus at most once per call."""

    def __init__(self, client: PrometheusClient, sides: SideSelectors, at: datetime) -> None:
        self.client = client
        self.sides = sides
        self.at = at
        self._found: tuple[set[str], set[str]] | None = None

    def services(self) -> tuple[set[str], set[str]]:
        """(Services seen with the request's reporter, Services seen with any reporter)."""
        if self._found is None:
            namespace = {"destination_service_namespace": self.sides.namespace}
            found = []
            for labels in ({**namespace, "reporter": self.sides.reporter}, namespace):
                selector = f"{REQUESTS}{{{Selector(labels).render()}}}"
                found.append(set(self.client.label_values(SERVICE_LABEL, selector,
                                                          self.at - HISTORY, self.at)))
            self._found = (found[0], found[1])
        return self._found

    def hint(self, service: str, selected: set[str]) -> str:
        """What the namespace has instead of ``service`` (never suggesting a Service the
        request already selects for the other side)."""
        namespace, reporter = self.sides.namespace, self.sides.reporter
        here, anywhere = self.services()
        days = f"{HISTORY.days} days"
        if not anywhere:
            return (f"namespace {namespace} has no Istio request series in the last {days}; "
                    f"is the namespace right, and does Prometheus scrape the mesh?")
        if service in anywhere and service not in here:
            return (f"{service} has series only with another reporter (the request reads "
                    f"reporter={reporter})")
        if not here:
            return (f"namespace {namespace} has Istio series only with another reporter "
                    f"(the request reads reporter={reporter})")
        names = sorted(here)
        text = f"namespace {namespace} has Istio series for {', '.join(names[:8])}"
        if len(names) > 8:
            text += f" and {len(names) - 8} more"
        close = difflib.get_close_matches(service, [n for n in names if n not in selected], n=1)
        return text + (f"; did you mean {close[0]}?" if close else "")


def diagnose(client: PrometheusClient, metrics: Sequence[MetricConfig], sides: SideSelectors,
             window: WindowData, at: datetime) -> dict[str, Missing]:
    """Metric name → why one of its sides has no events, for every metric that has one."""
    inventory = _Inventory(client, sides, at)
    out: dict[str, Missing] = {}
    for metric in metrics:
        empty = empty_sides(window.series.get(metric.name))
        if not empty:
            continue
        parts = []
        unmatched = False
        for side in (s for s in SIDES if s in empty):
            matched = window.matched.get(metric.name, {}).get(side, 0)
            labels = sides.istio(side) if metric.kind in ISTIO_KINDS else sides.labels(side)
            if matched and len(window.timestamps) == 0:
                continue  # nothing to count yet; the selector does match
            if matched:
                parts.append(f"the {side} selector matches {matched} series but they show no "
                             f"requests in the window")
                continue
            name = METRIC_OF.get(metric.kind)
            if name is not None and client.has_series(f"{name}{{{labels.render()}}}",
                                                      at - HISTORY, at):
                parts.append(f"the {side} selector has no series in the window yet (it had "
                             f"some in the last {HISTORY.days} days)")
                continue
            unmatched = True
            text = f"the {side} selector {{{labels.render()}}} matches no series"
            service = sides.labels(side).get(SERVICE_LABEL)
            if metric.kind in ISTIO_KINDS and service is not None:
                selected = {sides.labels(s).get(SERVICE_LABEL, "") for s in SIDES}
                text += f": {inventory.hint(service, selected)}"
            parts.append(text)
        if parts:
            out[metric.name] = Missing("; ".join(parts), unmatched)
    return out
