"""A real PostgreSQL server for tests: Debian's binaries, a throwaway cluster, a free port.

``PostgresServer.start(workdir)`` runs ``initdb`` into ``workdir/data`` (trust authentication,
``fsync=off``: it is thrown away), starts it with ``pg_ctl`` listening on 127.0.0.1:<free
port> only, with its unix socket in the work dir (never /var/run/postgresql, which the
Debian package's own cluster uses), and ``stop()`` runs ``pg_ctl stop -m fast``.

PostgreSQL refuses to run as root. Tests run as root in CI, so then the work dir is made under
/tmp (pytest's own temp dirs are private to root) and owned by the ``postgres`` system user
the Debian package creates, and ``initdb``/``pg_ctl`` run as that user (``subprocess`` with
``user=``/``group=``, i.e. setuid in the child). As any other user they run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from promfixture import free_port

SUPERUSER = "postgres"


def binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL with initdb and pg_ctl."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name)
                        if Path(p).parent.parent.name.isdigit() else 0, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve()))
    for initdb in candidates:
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def missing_reason() -> str | None:
    """Why a PostgreSQL server cannot be run here, or ``None``."""
    if binaries() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
                "postgresql (scripts/install-system-deps.sh does, as root)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return None


class PostgresServer:
    """One throwaway PostgreSQL cluster; ``url(database)`` gives a SQLAlchemy URL."""

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        self.port = free_port()
        self._as: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(workdir, user.pw_uid, user.pw_gid)

    @classmethod
    def start_new(cls) -> PostgresServer:
        """A started server in a new work dir under /tmp (see the module docstring)."""
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError(missing_reason() or "no PostgreSQL")
        server = cls(Path(tempfile.mkdtemp(prefix="analyzer-pg-")), bin_dir)
        try:
            server.start()
        except BaseException:
            server.remove()
            raise
        return server

    def _run(self, *command: str, timeout: float = 60.0) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C",
                                     "HOME": str(self.workdir)},
                                **self._as)  # type: ignore[call-overload]
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): "
                               f"{result.stdout[-1000:]}{result.stderr[-2000:]}\n{log}")

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                      "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.workdir} "
                   f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   f"-c max_connections=100")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "-w", "-t", "60", "start", timeout=90)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                      "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name chosen by the tests
        return self.url(name)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                dbname="postgres", connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
