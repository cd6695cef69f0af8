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
from datetime import datetime

from analyzer.config.models import MetricConfig
from analyzer.judge.evidence import empty_sides
from analyzer.metrics.istio import REQUESTS, SERVICE_LABEL, SIDES, SideSelectors, WindowData
from analyzer.metrics.prometheus import PrometheusClient
from analyzer.metrics.promql import Selector

INVENTORY_LOOKBACK = "1h"
"""How far back the namespace inventory looks for Istio series (a quiet hour included)."""
ISTIO_KINDS = ("istio-error-rate", "istio-latency")


class _Inventory:
    """The namespace's Istio services per reporter, asked of Prometheus at most once."""

    def __init__(self, client: PrometheusClient, sides: SideSelectors, at: datetime) -> None:
        self.client = client
        self.sides = sides
        self.at = at
        self._found: dict[str, set[str]] | None = None

    def services(self) -> dict[str, set[str]]:
        if self._found is None:
            namespace = Selector({"destination_service_namespace": self.sides.namespace})
            query = (f"count by ({SERVICE_LABEL}, reporter) (last_over_time("
                     f"{REQUESTS}{{{namespace.render()}}}[{INVENTORY_LOOKBACK}]))")
            found: dict[str, set[str]] = {}
            for labels in self.client.series_labels(query, self.at):
                found.setdefault(labels.get("reporter", ""), set()).add(
                    labels.get(SERVICE_LABEL, ""))
            self._found = found
        return self._found

    def hint(self, service: str, selected: set[str]) -> str:
        """What the namespace has instead of ``service`` (never suggesting a Service the
        request already selects for the other side)."""
        namespace, reporter = self.sides.namespace, self.sides.reporter
        found = self.services()
        if not any(found.values()):
            return (f"namespace {namespace} has no Istio request series in the last "
                    f"{INVENTORY_LOOKBACK}; is the namespace right, and does Prometheus "
                    f"scrape the mesh?")
        here = sorted(found.get(reporter, set()) - {""})
        elsewhere = sorted(r for r, names in found.items() if r != reporter and service in names)
        if elsewhere:
            return (f"{service} has series only with reporter={', '.join(elsewhere)} (the "
                    f"request reads reporter={reporter})")
        if not here:
            return (f"namespace {namespace} has Istio series only with reporter="
                    f"{', '.join(sorted(found))} (the request reads reporter={reporter})")
        text = f"namespace {namespace} has Istio series for {', '.join(here[:8])}"
        if len(here) > 8:
            text += f" and {len(here) - 8} more"
        close = difflib.get_close_matches(service, [h for h in here if h not in selected], n=1)
        return text + (f"; did you mean {close[0]}?" if close else "")


def diagnose(client: PrometheusClient, metrics: Sequence[MetricConfig], sides: SideSelectors,
             window: WindowData, at: datetime) -> dict[str, str]:
    """Metric name → why one of its sides has no events, for every metric that has one."""
    inventory = _Inventory(client, sides, at)
    out: dict[str, str] = {}
    for metric in metrics:
        empty = empty_sides(window.series.get(metric.name))
        if not empty:
            continue
        parts = []
        for side in empty:
            matched = window.matched.get(metric.name, {}).get(side, 0)
            labels = sides.istio(side) if metric.kind in ISTIO_KINDS else sides.labels(side)
            if matched and len(window.timestamps) == 0:
                continue  # nothing to count yet; the selector does match
            if matched:
                parts.append(f"the {side} selector matches {matched} series but they show no "
                             f"requests in the window")
                continue
            text = f"the {side} selector {{{labels.render()}}} matches no series"
            service = sides.labels(side).get(SERVICE_LABEL)
            if metric.kind in ISTIO_KINDS and service is not None:
                selected = {sides.labels(s).get(SERVICE_LABEL, "") for s in SIDES}
                text += f": {inventory.hint(service, selected)}"
            parts.append(text)
        if parts:
            out[metric.name] = "; ".join(parts)
    return out
