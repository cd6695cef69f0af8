"""An HTTP proxy in front of a real Prometheus that misbehaves on demand.

The service under test is pointed at the proxy; a test sets ``mode`` to make every following
request fail one way, and back to ``"pass"`` to heal it. Modes:

- ``pass``: forward to the upstream Prometheus (502 if it is down, like a reverse proxy);
- ``drop``: read the request, close the connection without a byte (a process killed
  mid-query, from the client's side);
- ``truncate``: send headers promising a body, a fragment of it, then close;
- ``slow``: wait ``delay`` seconds, then forward (the wait ends early on ``release``);
- ``hold``: set ``entered``, wait for ``release`` (at most ``hold_limit`` s), then forward;
- ``status``: answer ``status`` with ``body`` (5xx, or Prometheus' own error JSON);
- ``body``: answer 200 with ``body`` as it is (malformed JSON and other garbage);
- ``filter``: forward, then replace ``data.result`` of a query answer by
  ``result_filter(result)`` (partial series), and add ``warnings`` if given (the way Thanos
  and Mimir flag a partial response).

Every wait is bounded, and ``stop()`` releases waiting handlers, so no test can hang on it.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from promfixture import free_port

ResultFilter = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.delay = 0.0
        self.hold_limit = 30.0
        self.status = 503
        self.body: bytes = b""
        self.result_filter: ResultFilter | None = None
        self.warnings: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.requests = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def heal(self) -> None:
        """Back to forwarding; any waiting request is let go."""
        self.mode = "pass"
        self.result_filter = None
        self.warnings = []
        self.release.set()
        self.entered.clear()

    def set(self, mode: str, **options: Any) -> None:
        """Switch to ``mode``; options not given are back to their defaults."""
        self.release.clear()
        self.entered.clear()
        self.result_filter = None
        self.warnings = []
        for name, value in options.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            setattr(self, name, value)
        self.mode = mode

    def forward(self, path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(self.upstream + path, timeout=30) as answer:
                return answer.status, answer.headers.get("Content-Type", ""), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()
        except OSError as exc:
            return 502, "text/plain", f"upstream: {exc}".encode()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # http.server's naming
            proxy.requests += 1
            mode = proxy.mode
            if mode == "drop":
                self.close_connection = True
                return
            if mode == "truncate":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b'{"status":"success","data":{"resultType":"matrix","res')
                self.close_connection = True
                return
            if mode == "status":
                self._answer(proxy.status, "application/json", proxy.body)
                return
            if mode == "body":
                self._answer(200, "application/json", proxy.body)
                return
            if mode == "slow":
                proxy.release.wait(proxy.delay)
            elif mode == "hold":
                proxy.entered.set()
                proxy.release.wait(proxy.hold_limit)
            status, kind, body = proxy.forward(self.path)
            if mode == "filter" and "/api/v1/query" in self.path:
                document = json.loads(body)
                if proxy.result_filter is not None:
                    document["data"]["result"] = proxy.result_filter(document["data"]["result"])
                if proxy.warnings:
                    document["warnings"] = proxy.warnings
                body = json.dumps(document).encode()
            self._answer(status, kind, body)

        def _answer(self, status: int, kind: str, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (its timeout): nothing to answer
                self.close_connection = True

    return Handler
