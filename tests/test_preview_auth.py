"""``preview --url`` against a real ``serve --token-file``: it sends the token as every other
client does, and a missing or wrong one is a clear error naming the flag, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from promfixture import free_port
from servefixture import ServeProcess

from analyzer.cli import main
from analyzer.store import SessionKey, Store, selector_key

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A service with one stored analysis of three evaluations, behind a token; yields the
    analysis URL and the token file."""
    work = tmp_path_factory.mktemp("preview")
    database = str(work / "a.db")
    store = Store(database)
    key = SessionKey("shop", "checkout", selector_key({"destination_service_name": "c"},
                                                      {"destination_service_name": "s"},
                                                      "source"), "abc")
    t0 = datetime.now(UTC) - timedelta(hours=1)  # recent: serve prunes beyond 30 days
    for k, (verdict, effect, e_value) in enumerate([("inconclusive", 1.1, 0.9),
                                                    ("pass", 1.0, 0.5), ("fail", 3.0, 500.0)]):
        at = t0 + timedelta(minutes=k + 1)
        metric = {"name": "error-rate", "effect": effect, "interval": [0.5, 4.0],
                  "e_value": e_value, "threshold": 200.0, "reason": "allowed 1.2"}
        response = {"verdict": verdict, "score": 50.0, "metrics": [metric],
                    "traffic": {"canary_weight": 10, "observed_canary_share": 0.1}}
        recorded = store.record(key, "default", t0, at=at, window_end=at, verdict=verdict,
                                score=50.0, final=False, response=response, queries=[])
    store.close()
    token_file = work / "token"
    token_file.write_text(TOKEN + "\n")
    serve = ServeProcess(work, f"http://127.0.0.1:{free_port()}", database,
                         extra=["--token-file", str(token_file)])
    serve.start(timeout=45)
    try:
        yield f"{serve.url}/api/v1/analyses/{recorded.session.id}", token_file
    finally:
        serve.stop()


def test_preview_sends_the_token(served: tuple[str, Path], tmp_path: Path) -> None:
    url, token_file = served
    out = tmp_path / "p.png"
    assert main(["preview", "--url", url, "--token-file", str(token_file), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_missing_or_wrong_token_is_a_clear_error(served: tuple[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = served
    out = tmp_path / "p.png"
    assert main(["preview", "--url", url, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "HTTP 401: missing bearer token" in err and "--token-file" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("guess")
    assert main(["preview", "--url", url, "--token-file", str(wrong), "-o", str(out)]) == 2
    assert "HTTP 401: invalid bearer token" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("content", ["", "two\nlines"])
def test_bad_token_file_names_the_flag(served: tuple[str, Path], tmp_path: Path,
                                       content: str, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = served
    bad = tmp_path / "bad"
    bad.write_text(content)
    assert main(["preview", "--url", url, "--token-file", str(bad), "-o", "x.png"]) == 2
    assert "--token-file" in capsys.readouterr().err
    missing = str(tmp_path / "nope")
    assert main(["preview", "--url", url, "--token-file", missing, "-o", "x.png"]) == 2
    assert f"--token-file {missing}: cannot read" in capsys.readouterr().err


def test_token_file_needs_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "d.json"
    source.write_text("{}")
    assert main(["preview", "--file", str(source), "--token-file", "t", "-o", "x.png"]) == 2
    assert "--token-file: only with --url" in capsys.readouterr().err
