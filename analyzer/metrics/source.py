"""The analysis' port to its data: a window of per-interval series, and why a side is empty.

``MetricSource`` is what the use case (``analyzer.analysis``) needs; ``PrometheusSource`` is the
real one. Another source (``devtools.datasource`` serves a ``canary-dataset/v1`` file) lets
the whole service path run without a Prometheus process, e.g. to check that the service and
``replay`` agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

from analyzer.config.models import MetricConfig
from analyzer.judge.evidence import Missing
from analyzer.judge.series import MetricSeries
from analyzer.metrics.diagnosis import diagnose
from analyzer.metrics.intervals import join
from analyzer.metrics.istio import Seam, SideSelectors, WindowData, fetch_window
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


@dataclass(frozen=True)
class Resume:
    """A window's stored first intervals (``series``) and the seam that continues them."""

    series: Mapping[str, MetricSeries]
    seam: Seam


@runtime_checkable
class IncrementalSource(Protocol):
    """A ``MetricSource`` that can continue stored intervals (see ``PrometheusSource``)."""

    incremental: bool

    def read(self, metrics: Sequence[MetricConfig], sides: SideSelectors, start: datetime,
             end: datetime, step_seconds: float, *, resume: Resume | None = None,
             final: int | None = None) -> tuple[WindowData, dict[str, Missing]]: ...


class PrometheusSource:
    """Reads windows from Prometheus, one client per read.

    ``incremental``: ``read`` also takes ``resume`` (read only the intervals after stored
    ones, then join them; ``SeamMismatch`` or ``StoredMismatch`` when that cannot be done
    exactly) and ``final`` (the answer's ``carry`` continues the window after that interval).
    ``on_samples`` is called with the number of samples (series × points) each read got.
    """

    incremental = True

    def __init__(self, client_factory: ClientFactory,
                 on_query: Callable[[float], None] | None = None,
                 on_samples: Callable[[int], None] | None = None) -> None:
        self.client_factory = client_factory
        self.on_query = on_query
        self.on_samples = on_samples

    def read(self, metrics: Sequence[MetricConfig], sides: SideSelectors, start: datetime,
             end: datetime, step_seconds: float, *, resume: Resume | None = None,
             final: int | None = None) -> tuple[WindowData, dict[str, Missing]]:
        client = self.client_factory(self.on_query)
        try:
            window = fetch_window(client, metrics, sides, start, end, step_seconds,
                                  seam=None if resume is None else resume.seam, final=final)
            if resume is not None:
                window = replace(window, series=join(resume.series, window.series), first=0)
            return window, diagnose(client, metrics, sides, window, end)
        finally:
            if self.on_samples is not None:
                self.on_samples(client.samples)
            client.close()
