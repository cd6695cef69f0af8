"""The analysis' port to its data: a window of per-interval series, and why a side is empty.

``MetricSource`` is what the use case (``analyzer.analysis``) needs; ``PrometheusSource`` is the
real one. Another source (``devtools.datasource`` serves a ``canary-dataset/v1`` file) lets
the whole service path run without a Prometheus process, e.g. to check that the service and
``replay`` agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from analyzer.config.models import MetricConfig
from analyzer.judge.evidence import Missing
from analyzer.metrics.diagnosis import diagnose
from analyzer.metrics.istio import SideSelectors, WindowData, fetch_window
from analyzer.metrics.prometheus import PrometheusClient

ClientFactory = Callable[[Callable[[float], None] | None], PrometheusClient]
"""Makes a client per analysis (a client records its queries, so threads must not share one);
the argument is called with each query's wall time."""


class MetricSource(Protocol):
    def read(self, metrics: Sequence[MetricConfig], sides: SideSelectors, start: datetime,
             end: datetime, step_seconds: float) -> tuple[WindowData, dict[str, Missing]]:
        """The window ``[start, end]`` in intervals of ``step_seconds``, and for each metric
        with an empty side, what is known about why. Raises ``UnavailableError`` when the
        data cannot be had now, ``ConfigError`` for a metric that cannot be read as
        configured."""
        ...


class PrometheusSource:
    """Reads windows from Prometheus, one client per read."""

    def __init__(self, client_factory: ClientFactory,
                 on_query: Callable[[float], None] | None = None) -> None:
        self.client_factory = client_factory
        self.on_query = on_query

    def read(self, metrics: Sequence[MetricConfig], sides: SideSelectors, start: datetime,
             end: datetime, step_seconds: float) -> tuple[WindowData, dict[str, Missing]]:
        client = self.client_factory(self.on_query)
        try:
            window = fetch_window(client, metrics, sides, start, end, step_seconds)
            return window, diagnose(client, metrics, sides, window, end)
        finally:
            client.close()
