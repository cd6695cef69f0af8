"""Bearer-token auth on /api/v1/* (token from a file, e.g. a Kubernetes Secret volume).

No Prometheus is needed: an unauthenticated request must be refused before any query, and an
authenticated one is shown to get past the guard by reaching the request validation (422) or
the closed Prometheus port (503).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promfixture import free_port

from analyzer.api.app import Settings, create_app
from analyzer.api.auth import TokenFile, TokenFileError
from analyzer.cli import main

TOKEN = "s3cr3t-t0ken"
VALID = {"namespace": "shop", "rollout": "r", "canary_service": "a", "baseline_service": "b"}


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # `kubectl create secret --from-file` keeps the newline
    return path


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        db = tmp_path / f"auth-{len(clients)}.db"
        client = TestClient(create_app(Settings(
            prometheus_url=f"http://127.0.0.1:{free_port()}", database_url=str(db),
            prometheus_timeout=0.5, **settings)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def errors_total(client: TestClient, reason: str) -> float:
    prefix = f'canary_analyzer_errors_total{{reason="{reason}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    raise AssertionError(f"no {prefix!r} in /metrics")


def assert_401(answer: Any) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    data = answer.json()
    assert data["field"] == "authorization" and isinstance(data["error"], str)
    assert TOKEN not in answer.text


@pytest.mark.parametrize("headers", [
    {}, bearer("wrong"), bearer(TOKEN + "x"), bearer(TOKEN[:-1]), {"Authorization": TOKEN},
    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "},
    {"Authorization": "Bearer tökén".encode()},  # non-ASCII bytes on the wire
])
def test_api_routes_refuse_without_the_token(make_client: Callable[..., TestClient],
                                             token_path: Path,
                                             headers: dict[str, Any]) -> None:
    client = make_client(token_file=str(token_path))
    calls = [
        lambda: client.post("/api/v1/judge", json=VALID, headers=headers),
        lambda: client.get("/api/v1/judge", params=VALID, headers=headers),
        lambda: client.get("/api/v1/analyses", headers=headers),
        # Invalid query parameters: still 401, the shape of a request is not revealed.
        lambda: client.get("/api/v1/analyses", params={"limit": "many"}, headers=headers),
        lambda: client.get("/api/v1/analyses/x", headers=headers),
        lambda: client.post("/api/v1/judge", content=b"{not json", headers=headers),
    ]
    for call in calls:
        assert_401(call())
    assert errors_total(client, "unauthorized") == len(calls)
    assert errors_total(client, "bad_request") == 0
    assert 'route="/api/v1/judge",status="401"' in client.get("/metrics").text


def test_the_token_opens_the_api_and_probes_stay_open(make_client: Callable[..., TestClient],
                                                      token_path: Path) -> None:
    client = make_client(token_file=str(token_path))
    assert client.get("/api/v1/analyses", headers=bearer()).json() == {"analyses": []}
    # Scheme is case-insensitive (RFC 7235); surrounding spaces are not part of the token.
    assert client.get("/api/v1/analyses",
                      headers={"Authorization": f"bearer  {TOKEN} "}).status_code == 200
    answer = client.get("/api/v1/analyses", params={"limit": "many"}, headers=bearer())
    assert answer.status_code == 422 and answer.json()["field"] == "limit"
    now = time.time()
    answer = client.post("/api/v1/judge", json={**VALID, "start": now - 600, "end": now},
                         headers=bearer())
    assert answer.status_code == 503 and "error" in answer.json()  # closed Prometheus port
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200  # open, answers for itself
    assert client.get("/dependencies").status_code == 503  # open; the Prometheus port is closed
    assert client.get("/metrics").status_code == 200
    assert errors_total(client, "unauthorized") == 0


def test_openapi_documents_the_bearer_scheme(make_client: Callable[..., TestClient],
                                             token_path: Path) -> None:
    spec = make_client(token_file=str(token_path)).get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"].lower() for s in schemes.values()] == ["bearer"]
    for path, item in spec["paths"].items():
        for operation in item.values():
            assert bool(operation.get("security")) == path.startswith("/api/v1/"), path


def test_auth_off_by_default(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/api/v1/analyses").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_rotation_by_symlink_swap(make_client: Callable[..., TestClient],
                                  tmp_path: Path) -> None:
    """The kubelet's Secret update: a new timestamped directory, ``..data`` swapped atomically."""
    volume = tmp_path / "secret"
    volume.mkdir()
    old, new = volume / "..2026_01_01_00_00_00.1", volume / "..2026_01_02_00_00_00.2"
    old.mkdir()
    (old / "token").write_text(TOKEN)
    (volume / "..data").symlink_to(old.name)
    (volume / "token").symlink_to("..data/token")
    client = make_client(token_file=str(volume / "token"))
    assert client.get("/api/v1/analyses", headers=bearer()).status_code == 200

    new.mkdir()
    (new / "token").write_text("rotated")
    os.utime(new / "token", ns=(time.time_ns() + 10**9,) * 2)
    (volume / "..data_tmp").symlink_to(new.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    assert_401(client.get("/api/v1/analyses", headers=bearer()))
    assert client.get("/api/v1/analyses", headers=bearer("rotated")).status_code == 200


def test_cached_until_the_file_changes(token_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    tokens = TokenFile(token_path)
    reads = []
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    for _ in range(5):
        assert tokens.matches(TOKEN)
    assert reads == []
    token_path.write_text("next")
    os.utime(token_path, ns=(time.time_ns() + 10**9,) * 2)
    assert tokens.matches("next") and not tokens.matches(TOKEN)
    assert len(reads) == 1


def test_a_rotation_that_empties_or_removes_the_file_keeps_the_last_token(
        token_path: Path) -> None:
    tokens = TokenFile(token_path)
    token_path.write_text("")
    os.utime(token_path, ns=(time.time_ns() + 10**9,) * 2)
    assert tokens.matches(TOKEN) and not tokens.matches("")
    token_path.unlink()
    assert tokens.matches(TOKEN)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "does not exist"), ("", "empty"), (" \n\t\n", "empty"), ("dir", "cannot read")])
def test_bad_token_file_refuses_to_start(tmp_path: Path, content: str | None,
                                         problem: str) -> None:
    path = tmp_path / "token"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(TokenFileError, match=problem) as caught:
        create_app(Settings(database_url=str(tmp_path / "a.db"), token_file=str(path)))
    assert str(path) in str(caught.value)


def test_serve_exits_2_naming_the_token_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing-token"
    status = main(["serve", "--database", str(tmp_path / "a.db"), "--token-file", str(path),
                   "--port", str(free_port())])
    assert status == 2
    err = capsys.readouterr().err
    assert "--token-file" in err and str(path) in err
