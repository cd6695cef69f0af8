"""Prometheus as it is deployed (issue 14): behind a bearer token, basic auth, a tenant
header, TLS with a private CA and client certificates, and under a path prefix.

A real Prometheus holds the bundled healthy canary; ``tests/authproxy.py`` stands in front of
it. With the right settings the service and the CLI judge through the proxy; with a missing
or wrong credential the service answers 503 naming the cause (Argo retries it as an Error)
and the CLI exits 1 naming it — never a verdict.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from authproxy import TENANT_HEADER, AuthProxy, Pki, make_pki
from clirun import run_cli
from fastapi.testclient import TestClient
from faultproxy import FaultProxy
from promfixture import (
    ManagedProcess,
    PrometheusServer,
    create_blocks,
    free_port,
    istio_series,
    traffic_from_dataset,
)

from analyzer.api.app import Settings, create_app
from analyzer.cli import main
from analyzer.metrics.connection import (
    ConnectionSettingsError,
    PrometheusConnection,
    parse_header,
)
from analyzer.metrics.dataset import Dataset, read_dataset
from analyzer.metrics.prometheus import PrometheusClient, PrometheusUnavailable

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
NS = "shop"
PREFIX = "/prometheus"


@pytest.fixture(scope="module")
def healthy() -> Dataset:
    return read_dataset(EXAMPLES / "healthy.json")


@pytest.fixture(scope="module")
def series(healthy: Dataset) -> list:
    return istio_series(traffic_from_dataset(healthy, NS, "healthy-canary", "healthy-stable"))


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable, series: list) -> PrometheusServer:
    return start_prometheus(series)


@pytest.fixture(scope="module")
def prefixed(prometheus_tools: None, series: list,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """The same data served under ``--web.route-prefix=/prometheus`` (as behind Mimir's or a
    shared ingress's path)."""
    workdir = tmp_path_factory.mktemp("prefixed")
    server = PrometheusServer(workdir, create_blocks(series, workdir / "backfill"))
    server.command.append(f"--web.route-prefix={PREFIX}")
    server.ready_path = f"{PREFIX}/-/ready"
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pytest.importorskip("cryptography", reason="pip package cryptography missing")
    return make_pki(tmp_path_factory.mktemp("pki"))


def secret(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content + "\n")
    return str(path)


def judge(connection: PrometheusConnection, dataset: Dataset, tmp_path: Path
          ) -> tuple[int, dict[str, Any]]:
    """One judge call through a fresh app; the status and the JSON answer."""
    start = dataset.start.timestamp()
    body = {"namespace": NS, "rollout": "healthy", "canary_service": "healthy-canary",
            "baseline_service": "healthy-stable", "start": start,
            "end": start + 20 * dataset.interval_seconds, "canary_weight": 5}
    settings = Settings(prometheus_url=connection.url, prometheus=connection,
                        database_url=str(tmp_path / f"a-{free_port()}.db"))
    with TestClient(create_app(settings)) as client:
        answer = client.post("/api/v1/judge", json=body)
    return answer.status_code, answer.json()


def assert_refused(status: int, answer: dict[str, Any], *causes: str) -> None:
    assert status == 503, answer
    assert "verdict" not in answer
    assert all(cause in answer["error"] for cause in causes), answer["error"]


# --------------------------------------------------------------------------------------------
# The service


def test_bearer_token_from_a_file_and_its_rotation(prometheus: PrometheusServer,
                                                   healthy: Dataset, tmp_path: Path) -> None:
    token = secret(tmp_path, "token", "s3cret")
    with AuthProxy(prometheus.url, bearer="s3cret") as proxy:
        connection = PrometheusConnection(proxy.url, bearer_token_file=token)
        status, answer = judge(connection, healthy, tmp_path)
        assert status == 200 and answer["verdict"] == "pass", answer

        assert_refused(*judge(PrometheusConnection(proxy.url), healthy, tmp_path),
                       "HTTP 401", "credentials missing or rejected", "bearer token missing")
        Path(token).write_text("wrong\n")
        assert_refused(*judge(connection, healthy, tmp_path), "HTTP 401")
        # A rotation: proxy and file change together; no restart needed.
        proxy.bearer = "rotated"
        Path(token).write_text("rotated\n")
        assert judge(connection, healthy, tmp_path)[0] == 200
        Path(token).unlink()
        assert_refused(*judge(connection, healthy, tmp_path),
                       "--prometheus-bearer-token-file", "cannot read")
        assert all(h.get("authorization", "").startswith("Bearer ") for _, h in proxy.seen
                   if h.get("authorization"))


def test_basic_auth_from_a_file(prometheus: PrometheusServer, healthy: Dataset,
                                tmp_path: Path) -> None:
    with AuthProxy(prometheus.url, basic=("analyzer", "pa:ss")) as proxy:
        good = secret(tmp_path, "basic", "analyzer:pa:ss")
        status, answer = judge(PrometheusConnection(proxy.url, basic_auth_file=good), healthy,
                               tmp_path)
        assert status == 200 and answer["verdict"] == "pass", answer
        bad = secret(tmp_path, "bad", "analyzer:nope")
        assert_refused(*judge(PrometheusConnection(proxy.url, basic_auth_file=bad), healthy,
                              tmp_path), "HTTP 401", "basic auth missing or invalid")


def test_tenant_header_and_path_prefix_like_mimir(prefixed: PrometheusServer, healthy: Dataset,
                                                  tmp_path: Path) -> None:
    """Mimir: the query API under /prometheus, and X-Scope-OrgID on every request."""
    with AuthProxy(prefixed.url, tenant="team-a") as proxy:
        url = proxy.url + PREFIX
        status, answer = judge(PrometheusConnection(url, headers={TENANT_HEADER: "team-a"}),
                               healthy, tmp_path)
        assert status == 200 and answer["verdict"] == "pass", answer
        assert all(path.startswith(f"{PREFIX}/api/v1/") for path, _ in proxy.seen)
        assert_refused(*judge(PrometheusConnection(url), healthy, tmp_path), "HTTP 401",
                       "no org id")
        assert_refused(*judge(PrometheusConnection(url, headers={TENANT_HEADER: "team-b"}),
                              healthy, tmp_path), "HTTP 401")


def test_route_prefix_is_the_url_path(prefixed: PrometheusServer, healthy: Dataset,
                                      tmp_path: Path) -> None:
    status, answer = judge(PrometheusConnection(prefixed.url + PREFIX + "/"), healthy, tmp_path)
    assert status == 200 and answer["verdict"] == "pass", answer
    # Without the prefix the API is not there: a 503 saying so, not a verdict on no data.
    assert_refused(*judge(PrometheusConnection(prefixed.url), healthy, tmp_path), "HTTP 404")


def test_tls_with_a_private_ca_and_a_client_certificate(prometheus: PrometheusServer,
                                                        healthy: Dataset, pki: Pki,
                                                        tmp_path: Path) -> None:
    with AuthProxy(prometheus.url, pki=pki, client_certs=True) as proxy:
        full = PrometheusConnection(proxy.url, ca_file=str(pki.ca),
                                    cert_file=str(pki.client_cert),
                                    key_file=str(pki.client_key))
        status, answer = judge(full, healthy, tmp_path)
        assert status == 200 and answer["verdict"] == "pass", answer
        # The system trust store does not know the test CA.
        assert_refused(*judge(PrometheusConnection(proxy.url), healthy, tmp_path),
                       "TLS failed", "CERTIFICATE_VERIFY_FAILED")
        # The server wants a client certificate; without one the handshake is refused.
        status, answer = judge(PrometheusConnection(proxy.url, ca_file=str(pki.ca)), healthy,
                               tmp_path)
        assert_refused(status, answer, "prometheus unavailable")


# --------------------------------------------------------------------------------------------
# The command line


cli = run_cli


def judge_args(url: str, *extra: str) -> list[str]:
    return ["judge", "--prometheus", url, "--namespace", NS, "--rollout", "healthy",
            "--canary-service", "healthy-canary", "--baseline-service", "healthy-stable",
            "--start", "2026-01-05T10:00:00Z", "--end", "2026-01-05T10:10:00Z", *extra]


def test_cli_judge_and_export_through_auth(prefixed: PrometheusServer, tmp_path: Path) -> None:
    token = secret(tmp_path, "token", "cli-token")
    with AuthProxy(prefixed.url, bearer="cli-token", tenant="team-a") as proxy:
        url = proxy.url + PREFIX
        auth = ["--prometheus-bearer-token-file", token,
                "--prometheus-header", f"{TENANT_HEADER}=team-a"]
        ok = cli(*judge_args(url, *auth, "--json"))
        assert ok.returncode == 0, ok.stderr
        assert '"verdict": "pass"' in ok.stdout
        out = tmp_path / "export.json"
        export = cli("export", "--prometheus", url, *auth, "--namespace", NS,
                     "--canary-service", "healthy-canary", "--baseline-service",
                     "healthy-stable", "--start", "2026-01-05T10:00:00Z",
                     "--end", "2026-01-05T10:10:00Z", "-o", str(out))
        assert export.returncode == 0, export.stderr
        assert len(read_dataset(out)) == 20

        refused = cli(*judge_args(url, "--prometheus-header", f"{TENANT_HEADER}=team-a"))
        assert refused.returncode == 1 and refused.stdout == ""
        assert "prometheus unavailable: HTTP 401" in refused.stderr
        assert "bearer token missing or invalid" in refused.stderr


@pytest.mark.parametrize(("extra", "named"), [
    (["--prometheus-bearer-token-file", "/nonexistent/token"],
     "--prometheus-bearer-token-file /nonexistent/token: cannot read"),
    (["--prometheus-header", "X-Scope-OrgID"], "--prometheus-header: 'X-Scope-OrgID' is not"),
    (["--prometheus-header", "Authorization=Bearer x"], "use --prometheus-bearer-token-file"),
    (["--prometheus-ca-file", "/etc/hostname"], "needs an https:// --prometheus URL"),
])
def test_cli_refuses_bad_connection_settings_naming_the_flag(
        extra: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (judge_args("http://127.0.0.1:1", *extra),
                    ["serve", "--prometheus", "http://127.0.0.1:1", *extra]):
        assert main(command) == 2
        assert named in capsys.readouterr().err


def test_serve_process_judges_through_the_proxy(prometheus: PrometheusServer, healthy: Dataset,
                                                tmp_path: Path) -> None:
    """The flags reach the running service (not only the Settings object)."""
    import json
    import urllib.request

    token = secret(tmp_path, "token", "serve-token")
    port = free_port()
    with AuthProxy(prometheus.url, bearer="serve-token") as proxy, ManagedProcess(
            [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--prometheus", proxy.url, "--prometheus-bearer-token-file", token,
             "--database", str(tmp_path / "serve.db")],
            url=f"http://127.0.0.1:{port}", ready_path="/healthz",
            log=tmp_path / "serve.log") as serve:
        serve.start(timeout=30)
        start = healthy.start.timestamp()
        request = urllib.request.Request(
            f"{serve.url}/api/v1/judge", headers={"Content-Type": "application/json"},
            data=json.dumps({"namespace": NS, "rollout": "healthy",
                             "canary_service": "healthy-canary",
                             "baseline_service": "healthy-stable", "start": start,
                             "end": start + 600, "canary_weight": 5}).encode())
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.loads(answer.read())["verdict"] == "pass"
        assert any(h.get("authorization") == "Bearer serve-token" for _, h in proxy.seen)


# --------------------------------------------------------------------------------------------
# Validation


def test_validation_names_the_flag(tmp_path: Path, pki: Pki) -> None:
    def problem(**kwargs: Any) -> str:
        with pytest.raises(ConnectionSettingsError) as caught:
            PrometheusConnection(**kwargs).validate()
        return str(caught.value)

    token = secret(tmp_path, "token", "t")
    assert "not an http(s) URL" in problem(url="prometheus:9090")
    assert "visible in the process list" in problem(url="http://u:p@prom:9090")
    assert "choose one" in problem(url="http://p", bearer_token_file=token,
                                   basic_auth_file=token)
    assert "'user:password'" in problem(url="http://p", basic_auth_file=token)
    assert "empty" in problem(url="http://p", bearer_token_file=secret(tmp_path, "e", ""))
    assert "needs --prometheus-cert-file" in problem(url="https://p",
                                                     key_file=str(pki.client_key))
    assert "--prometheus-ca-file" in problem(url="https://p", ca_file=token)
    assert "cannot load the certificate and key" in problem(
        url="https://p", cert_file=str(pki.client_cert), key_file=str(pki.server_key))
    assert "control characters" in problem(url="http://p", headers={"X-A": "a\r\nb"})
    PrometheusConnection("https://p/prometheus", bearer_token_file=token, ca_file=str(pki.ca),
                         cert_file=str(pki.client_cert), key_file=str(pki.client_key),
                         headers={TENANT_HEADER: "t"}).validate()
    assert parse_header("X-Scope-OrgID=a=b") == ("X-Scope-OrgID", "a=b")
    assert parse_header("X-Scope-OrgID: a") == ("X-Scope-OrgID", "a")


def test_a_proxy_from_the_environment_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client reads the environment once rather than per request: ``HTTP_PROXY`` still
    routes its queries (a name that resolves nowhere is answered by the proxy)."""
    proxy = FaultProxy("http://127.0.0.1:9").start()
    try:
        proxy.set("status", status=418, body=b'{"status":"error","errorType":"teapot",'
                                             b'"error":"answered by the proxy"}')
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = PrometheusClient("http://prometheus.invalid:9090")
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(PrometheusUnavailable, match=r"HTTP 418.*answered by the proxy"):
            client.query_range("up", moment, moment, 30.0)
        assert proxy.requests == 1
    finally:
        proxy.stop()
