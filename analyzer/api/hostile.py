"""Guards against hostile or odd requests that the routes themselves would not survive well.

Two things live here, kept out of ``app.py``:

- ``nesting_error``: a judge body nested a thousand levels deep makes Python's JSON decoder
  raise ``RecursionError`` (a 500 with a traceback). A judge request needs at most a handful of
  levels (body → inline config → metrics → metric → quantiles), so anything deeper than
  ``MAX_DEPTH`` is refused as a 400 naming ``body`` before it is decoded.
- ``CountUnhandledErrors``: the request counter is a middleware that sees responses, and an
  unhandled exception passes it by as an exception, not a response; the 500 the error handler
  then sends would go uncounted. This outer middleware counts exactly those, so every 5xx shows
  in ``canary_analyzer_http_requests_total``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a JSON body."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: linear, no backtracking
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` in a JSON text, brackets inside strings not
    counted. Strings and every other byte are dropped in C, and only the brackets left are
    summed (vectorised), so even a 64 KiB body of brackets costs about a millisecond."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max(initial=0))


def nesting_error(raw: bytes, limit: int = MAX_DEPTH) -> str | None:
    """Why ``raw`` is refused for nesting too deep, or ``None`` when it is shallow enough."""
    depth = nesting_depth(raw)
    if depth > limit:
        return f"body nests {depth} levels deep; at most {limit} are accepted"
    return None


class CountUnhandledErrors:
    """ASGI middleware: counts a request whose handling raised before any response started as
    a 500 under its route template, then lets the exception go on to the error handler (which
    answers the 500)."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:  # its status went out, and was counted, before the body failed
                raise
            route: Any = scope.get("route")
            self.counter.labels(route=getattr(route, "path", "unmatched"),
                                method=scope.get("method", ""), status="500").inc()
            raise
