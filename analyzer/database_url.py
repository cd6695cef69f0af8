"""Where ``serve`` gets its database URL: a flag, a file, or an environment variable.

A PostgreSQL URL carries a password. Passed as ``--database URL`` (or expanded by Kubernetes
from ``$(VAR)`` into the arguments) it is readable by every user of the node in
``/proc/<pid>/cmdline`` and shows in ``ps``. So the URL can also come from a file (a mounted
Secret) or from the environment, read inside the process; the flag stays for local use and
compatibility.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from analyzer.errors import InputError

ENV_VAR = "CANARY_ANALYZER_DATABASE"
DEFAULT = "canary-analyzer.db"


class DatabaseUrlError(InputError):
    """The configured source of the URL cannot give one; the message names the source."""


def resolve_database_url(flag: str | None, file: str | None,
                         environ: Mapping[str, str] | None = None) -> str:
    """The URL from ``--database``, else ``--database-file``, else ``$CANARY_ANALYZER_DATABASE``,
    else the SQLite default. A file or variable that is set but empty is an error rather than a
    silent fall-back to SQLite: a prod pod must not quietly keep its sessions on local disk."""
    environ = os.environ if environ is None else environ
    if flag is not None:
        if not flag.strip():
            raise DatabaseUrlError("--database: empty URL")
        return flag
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DatabaseUrlError(f"--database-file {file}: cannot read: {reason}") from None
        url = text.strip()  # `kubectl create secret --from-file` keeps an editor's newline
        if not url:
            raise DatabaseUrlError(f"--database-file {file}: empty")
        return url
    if ENV_VAR in environ:
        url = environ[ENV_VAR].strip()
        if not url:
            raise DatabaseUrlError(f"{ENV_VAR}: set but empty")
        return url
    return DEFAULT
