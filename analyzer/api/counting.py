"""The request counter (``canary_analyzer_http_requests_total``) as a plain ASGI middleware.

Every answer is counted under its route template, method and status when its status goes out.
A request whose handling raised before any response started is counted as the 500 the error
handler then sends (it passes by here as an exception, not a response), so every 5xx shows.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which runs the app in a task with
memory streams around every request: measurable beside a judge call's ~30 ms under load, for
nothing this counter needs.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CountRequests:
    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def count(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                self._count(scope, str(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, count)
        except Exception:
            if not started:
                self._count(scope, "500")
            raise

    def _count(self, scope: Scope, status: str) -> None:
        route: Any = scope.get("route")
        self.counter.labels(route=getattr(route, "path", "unmatched"),
                            method=scope.get("method", ""), status=status).inc()
