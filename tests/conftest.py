"""Shared fixtures: real Prometheus servers loaded with backfilled series (see promfixture),
and the service app in process."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promfixture import PrometheusServer, Series, tools_missing

from analyzer.api.app import Settings, create_app


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


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """A fresh app (own database and metrics registry) against the given Prometheus URL."""
    clients: list[TestClient] = []

    def make(url: str, **settings: Any) -> TestClient:
        db = tmp_path / f"analyzer-{len(clients)}.db"
        client = TestClient(create_app(Settings(prometheus_url=url, database_url=str(db),
                                                **settings)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


SLOW_FIXTURES = frozenset({"prometheus_tools", "postgres"})
"""Fixtures that start a real process (Prometheus, PostgreSQL): their tests are ``slow``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that needs a real Prometheus or PostgreSQL ``slow`` (also through
    other fixtures), so that ``pytest -m "not slow"`` is a fast lane of in-process tests."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
