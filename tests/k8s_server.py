"""A tiny Kubernetes API server for custom objects, for tests of ``analyzer.mesh``.

It speaks the real REST shapes the ``kubernetes`` client uses (GET object, GET list, PATCH with
``application/merge-patch+json``, ``Status`` bodies for errors) so the tests drive the real
client through a kubeconfig instead of mocking it. Objects live in ``FakeKube.objects`` which a
test may change at any time — e.g. from ``after_get`` to play the Argo Rollouts controller
writing between our read and our write.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

TOKEN = "test-token"
MERGE_PATCH = "application/merge-patch+json"
_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/"
                   r"(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")

Key = tuple[str, str, str, str]  # group, plural, namespace, name


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    content_type: str
    body: Any


@dataclass
class Resource:
    kind: str
    versions: set[str]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else (lists) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details or {}, "code": code}


@dataclass
class FakeKube:
    """State of the fake cluster; ``start()`` serves it on 127.0.0.1 on a free port."""

    resources: dict[tuple[str, str], Resource] = field(default_factory=dict)
    objects: dict[Key, dict] = field(default_factory=dict)
    forbidden: set[tuple[str, str]] = field(default_factory=set)  # (METHOD, path)
    requests: list[Recorded] = field(default_factory=list)
    after_get: Callable[[Key], None] | None = None
    revision: int = 100
    lock: threading.RLock = field(default_factory=threading.RLock)
    _server: ThreadingHTTPServer | None = None

    # -- state ---------------------------------------------------------------------------
    def serve_resource(self, group: str, plural: str, kind: str, versions: set[str]) -> None:
        self.resources[(group, plural)] = Resource(kind, set(versions))

    def next_revision(self) -> str:
        with self.lock:
            self.revision += 1
            return str(self.revision)

    def put(self, group: str, plural: str, obj: dict) -> dict:
        """Stores (or replaces) an object with a fresh resourceVersion, like an Update."""
        meta = obj.setdefault("metadata", {})
        with self.lock:
            meta["resourceVersion"] = self.next_revision()
            self.objects[(group, plural, meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict:
        return self.objects[(group, plural, namespace, name)]

    def patches(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PATCH"]

    # -- serving -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKube:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def write_kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        """A kubeconfig with one cluster (this server) and a token user."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "tester",
                                                      "namespace": "default"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self.lock:
            self.requests.append(Recorded(method, path, content_type, body))
        code, answer = self._answer(handler, method, path, content_type, body)
        data = json.dumps(answer).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        if method == "GET" and code == 200 and self.after_get is not None:
            match = _PATH.match(path)
            if match and match["name"]:
                self.after_get((match["group"], match["plural"], match["ns"], match["name"]))

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, path: str,
                content_type: str, body: Any) -> tuple[int, dict]:
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(path)
        resource = match and self.resources.get((match["group"], match["plural"]))
        if not match or not resource or match["version"] not in resource.versions:
            return 404, status(404, "NotFound", "the server could not find the requested "
                                                "resource")
        group, version, ns, plural, name = (match["group"], match["version"], match["ns"],
                                            match["plural"], match["name"])
        details = {"name": name, "group": group, "kind": plural}
        if (method, path) in self.forbidden:
            verb = {"GET": "get" if name else "list", "PATCH": "patch"}[method]
            return 403, status(403, "Forbidden",
                               f'{plural}.{group} "{name}" is forbidden: User '
                               f'"system:serviceaccount:canary-analyzer:canary-analyzer" cannot '
                               f'{verb} resource "{plural}" in API group "{group}" in the '
                               f'namespace "{ns}"', details)
        api_version = f"{group}/{version}"
        with self.lock:
            if method == "GET" and name is None:
                items = [dict(copy.deepcopy(obj), apiVersion=api_version)
                         for (g, p, n, _), obj in sorted(self.objects.items())
                         if (g, p, n) == (group, plural, ns)]
                return 200, {"apiVersion": api_version, "kind": f"{resource.kind}List",
                             "metadata": {"resourceVersion": str(self.revision)},
                             "items": items}
            assert name is not None
            key = (group, plural, ns, name)
            if key not in self.objects:
                return 404, status(404, "NotFound", f'{plural}.{group} "{name}" not found',
                                   details)
            if method == "GET":
                return 200, dict(copy.deepcopy(self.objects[key]), apiVersion=api_version)
            if content_type != MERGE_PATCH:
                return 415, status(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted "
                                   "media types include: application/json-patch+json, "
                                   "application/merge-patch+json, application/apply-patch+yaml")
            if not isinstance(body, dict):
                return 400, status(400, "BadRequest", "merge patch must be a JSON object")
            stored = self.objects[key]
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != stored["metadata"]["resourceVersion"]:
                return 409, status(409, "Conflict",
                                   f'Operation cannot be fulfilled on {plural}.{group} "{name}": '
                                   "the object has been modified; please apply your changes to "
                                   "the latest version and try again", details)
            merged = merge_patch(stored, body)
            merged["metadata"]["resourceVersion"] = self.next_revision()
            self.objects[key] = merged
            return 200, dict(copy.deepcopy(merged), apiVersion=api_version)
