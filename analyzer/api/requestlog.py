"""One structured log line per judge call, and per failed one.

An ASGI middleware rather than code in the route: it sees every way a call can end — a
verdict, a 4xx from validation or auth, a 503, an exception — and reads what it logs from the
request and the answer themselves (namespace, rollout, revision from the body or the query
string; verdict, score, analysis id or error from the answer), so the routes stay unaware of
logging. Bodies are read only as far as the API accepts them (``READ_LIMIT``); values are cut
to a Kubernetes name's length, so a hostile call cannot make a huge log line.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analyzer.logs import prometheus_time

PATH = "/api/v1/judge"
READ_LIMIT = 64 * 1024
"""Bodies beyond this are not parsed for the log (the API refuses them anyway)."""
ANSWER_LIMIT = 1024 * 1024
MAX_VALUE = 253

log = logging.getLogger("analyzer.judge")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:MAX_VALUE]


def _json_object(raw: bytes, limit: int) -> dict[str, Any]:
    if len(raw) > limit:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's recursion
        return {}
    return data if isinstance(data, dict) else {}


def _request_fields(scope: Scope, body: bytes) -> dict[str, Any]:
    if scope.get("method") == "GET":
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    else:
        query = _json_object(body, READ_LIMIT)
    return {"namespace": _text(query.get("namespace")), "rollout": _text(query.get("rollout")),
            "revision": _text(query.get("canary_revision"))}


def _answer_fields(body: bytes) -> dict[str, Any]:
    """Every key on every line (``None`` where the answer has none), so queries over the logs
    need not care whether a call got a verdict."""
    answer = _json_object(body, ANSWER_LIMIT)
    score = answer.get("score")
    return {"analysis_id": _text(answer.get("analysis_id")),
            "verdict": _text(answer.get("verdict")),
            "score": score if isinstance(score, int | float) else None,
            "error": _text(answer.get("error")), "field": _text(answer.get("field"))}


class LogJudgeCalls:
    """ASGI middleware: logs each ``/api/v1/judge`` call once it is answered (or raised)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != PATH:
            await self.app(scope, receive, send)
            return
        began = time.monotonic()
        request = bytearray()
        answer = bytearray()
        status = 500

        async def read() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(request) <= READ_LIMIT:
                request.extend(message.get("body", b""))
            return message

        async def write(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) <= ANSWER_LIMIT:
                answer.extend(message.get("body", b""))
            await send(message)

        with prometheus_time() as spent:
            try:
                await self.app(scope, read, write)
            except Exception:
                status = 500
                raise
            finally:
                self._log(scope, status, bytes(request), bytes(answer),
                          time.monotonic() - began, spent[0])

    @staticmethod
    def _log(scope: Scope, status: int, request: bytes, answer: bytes, seconds: float,
             prometheus_seconds: float) -> None:
        fields: dict[str, Any] = {"event": "judge", **_request_fields(scope, request),
                                  **_answer_fields(answer), "status": status,
                                  "duration_seconds": round(seconds, 4),
                                  "prometheus_seconds": round(prometheus_seconds, 4)}
        where = f"{fields['namespace']}/{fields['rollout']}"
        if status == 200:
            log.info("judge %s: %s, score %s", where, fields["verdict"], fields["score"],
                     extra={"fields": fields})
        else:
            level = logging.ERROR if status >= 500 else logging.WARNING
            log.log(level, "judge %s: HTTP %d: %s", where, status, fields.get("error"),
                    extra={"fields": fields})
