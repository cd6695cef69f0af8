"""Optional bearer-token auth for ``/api/v1/*`` (the judge and the analysis history).

The token lives in a file so that it can come from a Kubernetes Secret volume. The kubelet
rotates a Secret by writing a new directory and swapping the ``..data`` symlink atomically, so
the file is re-read whenever what ``stat`` sees changes (mtime, inode, size) and cached
otherwise: a rotation takes effect without a restart and without reading the file per request.
``/healthz``, ``/readyz`` and ``/metrics`` stay open because kubelet probes and the Prometheus
scrape carry no token.

Tokens are compared with ``hmac.compare_digest`` on bytes so the answer time does not reveal
how much of a guess was right. A 401 carries ``WWW-Authenticate: Bearer`` and the API's error
shape ``{"error", "field": "authorization"}``; Argo Rollouts counts it as a measurement Error,
which is what a misconfigured AnalysisTemplate should produce.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from analyzer.errors import InputError

log = logging.getLogger("analyzer.api.auth")

FIELD = "authorization"

_SCHEME = HTTPBearer(auto_error=False, description="The token in the server's --token-file")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_SCHEME)]


class TokenFileError(InputError):
    """The token file cannot serve as a token at startup; the message names the file."""


class Unauthorized(Exception):
    """A ``/api/v1/*`` request without the right bearer token (answered 401)."""

    def __init__(self, message: str, challenge: str = "Bearer") -> None:
        super().__init__(message)
        self.message = message
        self.challenge = challenge

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "field": FIELD}, status_code=401,
                            headers={"WWW-Authenticate": self.challenge})


def _read_token(path: Path) -> bytes:
    """The file's bytes without surrounding whitespace: ``kubectl create secret
    --from-file`` keeps the trailing newline an editor added, which no client sends."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenFileError(f"token file {path}: cannot read: {exc.strerror or exc}") from None
    token = data.strip()
    if not token:
        raise TokenFileError(f"token file {path}: empty; refusing to serve without a token")
    return token


class TokenFile:
    """The expected token, re-read when the file changes; thread-safe (the judge runs in the
    threadpool, and FastAPI may call dependencies from several threads)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature = self._stat()
        if self._signature is None:
            raise TokenFileError(f"token file {self.path}: does not exist or cannot be read")
        self._token = _read_token(self.path)

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the Secret volume's symlinks to the real file
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_dev, st.st_size)

    def token(self) -> bytes:
        """The current token. A file that vanishes or turns empty mid-rotation keeps the last
        good token (logged), so a half-done swap neither opens the API nor locks Argo out."""
        signature = self._stat()
        with self._lock:
            if signature is None or signature == self._signature:
                return self._token
            try:
                self._token = _read_token(self.path)
            except TokenFileError as exc:
                log.warning("%s; keeping the previous token", exc)
            else:
                log.info("token file %s changed; token reloaded", self.path)
            self._signature = signature
            return self._token

    def matches(self, presented: str) -> bool:
        """Constant-time comparison. Header values arrive as latin-1 text (the bytes on the
        wire), so encoding back to latin-1 compares exactly the bytes the client sent."""
        try:
            candidate = presented.encode("latin-1")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(candidate, self.token())


def bearer_guard(token_file: TokenFile | None,
                 on_reject: Callable[[], None]) -> list[DependsParam]:
    """Route dependencies for ``/api/v1/*``: none when auth is off. A dependency (rather than
    a middleware) runs after routing, so the 401 is counted under its route template, and
    before any body is read or query parameter validated, so a caller without the token
    learns nothing about the request's shape. The ``HTTPBearer`` scheme also documents the
    requirement in ``/openapi.json``."""
    if token_file is None:
        return []

    def require_token(credentials: BearerCredentials) -> None:
        if credentials is None:
            on_reject()
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        if not token_file.matches(credentials.credentials):
            on_reject()
            raise Unauthorized("invalid bearer token", 'Bearer error="invalid_token"')

    return [Depends(require_token)]
