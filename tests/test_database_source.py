"""``serve`` takes its database URL from a flag, a file or the environment (issue 14, least
privilege): a URL with a password must be able to reach the process without being in its argv,
which every user of the node can read in ``/proc/<pid>/cmdline``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from promfixture import ManagedProcess, free_port

from analyzer.cli import main
from analyzer.database_url import DEFAULT, ENV_VAR, DatabaseUrlError, resolve_database_url

pytestmark = pytest.mark.slow  # real processes (Prometheus, serve, PostgreSQL, promtool)


def test_flag_wins_then_file_then_environment_then_default(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("postgresql://u:pw@db/from-file\n")
    env = {ENV_VAR: "postgresql://u:pw@db/from-env"}
    assert resolve_database_url("sqlite:///flag.db", None, env) == "sqlite:///flag.db"
    assert resolve_database_url(None, str(path), env) == "postgresql://u:pw@db/from-file"
    assert resolve_database_url(None, None, env) == "postgresql://u:pw@db/from-env"
    assert resolve_database_url(None, None, {}) == DEFAULT


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read"), ("", "empty"), (" \n", "empty"), ("dir", "cannot read")])
def test_unusable_file_is_an_error_naming_flag_and_file(tmp_path: Path, content: str | None,
                                                          problem: str) -> None:
    path = tmp_path / "url"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DatabaseUrlError, match=problem) as caught:
        resolve_database_url(None, str(path), {})
    assert f"--database-file {path}" in str(caught.value)


def test_empty_environment_variable_is_an_error_not_sqlite() -> None:
    with pytest.raises(DatabaseUrlError, match=f"{ENV_VAR}: set but empty"):
        resolve_database_url(None, None, {ENV_VAR: "  "})


def test_serve_exits_2_naming_the_database_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-url"
    assert main(["serve", "--database-file", str(missing), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "--database-file" in err and str(missing) in err


def test_flag_and_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--database", "a.db", "--database-file", str(tmp_path / "url")])
    assert caught.value.code == 2


@pytest.mark.parametrize("source", ["file", "env"])
def test_served_url_is_not_in_the_process_argv(tmp_path: Path, source: str) -> None:
    """A real ``serve`` opens the database named by the file or the variable, and its
    command line shows neither the URL nor the database path."""
    database = tmp_path / "secret-named.db"
    url = f"sqlite:///{database}"
    port = free_port()
    command = [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--prometheus", f"http://127.0.0.1:{free_port()}"]
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if source == "file":
        url_file = tmp_path / "url"
        url_file.write_text(url + "\n")
        command += ["--database-file", str(url_file)]
    else:
        env[ENV_VAR] = url
    with ManagedProcess(command, url=f"http://127.0.0.1:{port}", ready_path="/healthz",
                        log=tmp_path / "serve.log", env=env) as serve:
        serve.start(timeout=30)
        assert serve.pid is not None
        cmdline = Path(f"/proc/{serve.pid}/cmdline").read_bytes().decode()
        assert "secret-named" not in cmdline
        assert database.is_file(), "the store was not opened at the URL from " + source
