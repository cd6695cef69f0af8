"""A ``MetricSource`` that serves a ``canary-dataset/v1`` file instead of Prometheus.

With it the whole service path (request, session, judge, report, store) runs on a bundled
dataset without a Prometheus process, which makes "the service and ``replay`` give the same
verdict at every look" a fast test. Both sides' selectors are taken to match the dataset
(a dataset has no labels to select by), so no metric gets a diagnosis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from analyzer.config.models import MetricConfig
from analyzer.judge.evidence import Missing
from analyzer.judge.series import GaugeSeries, HistogramSeries, MetricSeries, RatioSeries
from analyzer.metrics.dataset import Dataset
from analyzer.metrics.istio import Side, SideSelectors, WindowData


def _cut(series: MetricSeries, first: int, last: int) -> MetricSeries:
    if isinstance(series, RatioSeries):
        return RatioSeries(series.canary_num[first:last], series.canary_den[first:last],
                           series.baseline_num[first:last], series.baseline_den[first:last])
    if isinstance(series, HistogramSeries):
        return HistogramSeries(series.le, series.canary[first:last],
                               series.baseline[first:last], series.unit)
    return GaugeSeries(series.canary[first:last], series.baseline[first:last])


class DatasetSource:
    """Serves the intervals of ``dataset`` that lie inside the requested window."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def read(self, metrics: Sequence[MetricConfig], sides: SideSelectors, start: datetime,
             end: datetime, step_seconds: float) -> tuple[WindowData, dict[str, Missing]]:
        dataset = self.dataset
        if step_seconds != dataset.interval_seconds:
            raise ValueError(f"the service's step {step_seconds:g} s is not the dataset's "
                             f"{dataset.interval_seconds:g} s")
        offset = (start - dataset.start).total_seconds() / step_seconds
        if offset < 0 or not math.isclose(offset, round(offset)):
            raise ValueError("the window must start on the dataset's interval grid")
        first = round(offset)
        count = max(0, math.floor((end - start).total_seconds() / step_seconds + 1e-9))
        last = min(first + count, len(dataset))
        series = {m.name: _cut(dataset.metrics[m.name], first, last)
                  for m in metrics if m.name in dataset.metrics}
        timestamps = np.arange(1, last - first + 1) * step_seconds
        matched: dict[str, dict[Side, int]] = {name: {"canary": 1, "baseline": 1}
                                               for name in series}
        return WindowData(timestamps, series, [], {}, matched), {}
