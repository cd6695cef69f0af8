"""A real Prometheus loaded with Istio-shaped data, for tests (DESIGN §10).

The code lives in ``devtools.openmetrics`` so the demo and the service benchmark use
the same renderer, backfill and process manager; this module keeps the names tests import.
"""

from __future__ import annotations

from devtools.openmetrics import (
    START,
    WORKLOADS,
    IstioSide,
    IstioTraffic,
    ManagedProcess,
    PrometheusServer,
    Series,
    create_blocks,
    free_port,
    istio_series,
    le_text,
    openmetrics,
    shares,
    tools_missing,
    traffic_from_dataset,
)

__all__ = [
    "START", "WORKLOADS", "IstioSide", "IstioTraffic", "ManagedProcess", "PrometheusServer",
    "Series", "create_blocks", "free_port", "istio_series", "le_text", "openmetrics", "shares",
    "tools_missing", "traffic_from_dataset",
]
