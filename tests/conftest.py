"""Shared fixtures: real Prometheus servers loaded with backfilled series (see promfixture)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest
from promfixture import PrometheusServer, Series, tools_missing


@pytest.fixture(scope="session")
def prometheus_tools() -> None:
    """Skips the test when ``prometheus``/``promtool`` are missing (CI installs them)."""
    reason = tools_missing()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def start_prometheus(prometheus_tools: None, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Callable[[Iterable[Series]], PrometheusServer]]:
    """Starts a Prometheus serving the given series; every server is stopped at session end."""
    servers: list[PrometheusServer] = []

    def start(series: Iterable[Series]) -> PrometheusServer:
        server = PrometheusServer.from_series(series, tmp_path_factory.mktemp("prometheus"))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
