"""The HTTP service (DESIGN §3): the judge endpoint Argo Rollouts calls, and its companions.

Status codes follow what Argo does with them: a verdict is always a 200 with a JSON object
(Argo reads ``{$.verdict}``); a request that can never succeed is a 4xx whose JSON names the
field; a broken Prometheus is a 503 JSON, which Argo counts as a transient Error and retries —
never a ``fail`` verdict because a dependency broke. The analysis is blocking (HTTP to
Prometheus, numpy), so it runs in the threadpool and does not stall other requests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from analyzer.analysis import DEFAULT_MAX_WINDOW, DEFAULT_STEP, Analyzer, RolloutSource
from analyzer.api.auth import TokenFile, Unauthorized, bearer_guard
from analyzer.api.counting import CountRequests
from analyzer.api.errors import error_response, reason_of
from analyzer.api.hostile import nesting_error
from analyzer.api.openapi import judge_request_body
from analyzer.api.requestlog import LogJudgeCalls
from analyzer.config import CanaryConfig, load_config_dir
from analyzer.errors import AnalyzerError, UnavailableError
from analyzer.mesh.client import KubeClient
from analyzer.mesh.facts import KUBE_TIMEOUT, CachedRolloutFacts
from analyzer.metrics.connection import PrometheusConnection
from analyzer.metrics.prometheus import PrometheusClient, PrometheusUnavailable
from analyzer.metrics.source import PrometheusSource
from analyzer.request import JudgeRequest, RequestError, from_query, parse_request
from analyzer.store import Store, StoreUnavailable
from analyzer.store.retention import DEFAULT_RETENTION, Pruner, RetentionError
from analyzer.telemetry import Telemetry

JUDGE_THREADS = 4
"""Judge calls one process runs at once; more wait their turn, blocked off the GIL. A call is
mostly CPU under the GIL, so many threads only contend for it: with 16 concurrent callers on
the 2-core dev machine, 2 threads answered 30-32 calls/s, 4 threads 28.5, anyio's default
40 threads 24.7 (p99 0.64-0.67 s against 0.97 s; benchmarks/service/README.md). Four rather
than two keeps a process busy while calls wait on a slower, remote Prometheus."""


MAX_BODY = 64 * 1024
log = logging.getLogger("analyzer.api")


@dataclass
class Settings:
    """What ``serve`` configures. With ``kubeconfig`` or ``in_cluster`` the service reads the
    canary weight of a request without ``canary_weight`` from the Rollout (its status, else
    its VirtualService) and checks the traffic split against it. With ``token_file`` every
    ``/api/v1/*`` request needs ``Authorization: Bearer <the file's content>``."""

    prometheus_url: str = "http://localhost:9090"
    config_dir: str | None = None
    database_url: str = "canary-analyzer.db"
    step_seconds: float = DEFAULT_STEP
    max_window: timedelta = DEFAULT_MAX_WINDOW
    prometheus_timeout: float = 5.0
    kubeconfig: str | None = None
    in_cluster: bool = False
    configs: dict[str, CanaryConfig] | None = field(default=None)
    token_file: str | None = None
    allow_inline_promql: bool = False
    prometheus: PrometheusConnection | None = None  # auth/TLS/headers; else prometheus_url
    retention: timedelta = DEFAULT_RETENTION  # evaluations older than this are pruned
    store_size_limit: int | None = None  # SQLite only: bytes of used pages kept at most


def _no_constants(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser would accept them."""
    raise ValueError(f"{name} is not valid JSON")


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _rollout_source(settings: Settings) -> RolloutSource | None:
    """Reads weights and canary revisions through Kubernetes when configured; a lookup that
    fails (API server down or silent, no RBAC) leaves them unknown rather than failing the
    analysis."""
    if settings.kubeconfig is None and not settings.in_cluster:
        return None
    kube = (KubeClient.in_cluster(timeout=KUBE_TIMEOUT) if settings.in_cluster
            else KubeClient.from_kubeconfig(settings.kubeconfig, timeout=KUBE_TIMEOUT))
    return CachedRolloutFacts(kube)


def create_app(settings: Settings) -> FastAPI:
    """A self-contained app: its own store, metrics registry and configs. A token file that
    is missing, unreadable or empty raises ``TokenFileError`` here, before anything listens."""
    token_file = TokenFile(settings.token_file) if settings.token_file else None
    configs = settings.configs if settings.configs is not None else load_config_dir(
        settings.config_dir)
    telemetry = Telemetry()
    guard = bearer_guard(token_file, lambda: telemetry.error("unauthorized"))
    store = Store(settings.database_url)

    def client_factory(on_query: Any = None) -> PrometheusClient:
        # The timeout is also the budget of all queries of one analysis together, so a slow
        # Prometheus makes the call a 503 well inside Argo's default 10 s timeoutSeconds.
        return PrometheusClient(settings.prometheus or settings.prometheus_url,
                                timeout=settings.prometheus_timeout,
                                budget=settings.prometheus_timeout, on_query=on_query)

    source = PrometheusSource(client_factory, on_query=telemetry.observe_query,
                              on_samples=telemetry.observe_samples)
    analyzer = Analyzer(configs, source, store=store, telemetry=telemetry,
                        step_seconds=settings.step_seconds, max_window=settings.max_window,
                        rollout_facts=_rollout_source(settings),
                        allow_inline_promql=settings.allow_inline_promql)
    try:
        pruner = Pruner(store, settings.retention, size_limit=settings.store_size_limit,
                        on_pruned=telemetry.store_pruned)
    except RetentionError:
        store.close()
        raise

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pruner.start()
        yield
        pruner.stop()
        store.close()

    app = FastAPI(title="canary-analyzer", version="0.1.0", lifespan=lifespan,
                  description="Anytime-valid canary analysis for Argo Rollouts")
    app.state.analyzer = analyzer
    app.state.store = store
    app.state.pruner = pruner
    app.state.telemetry = telemetry
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        name = ".".join(loc) or "request"
        telemetry.error("bad_request")
        return _error(422, f"{name}: {first.get('msg', 'invalid value')}", name)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return exc.response()

    def answer_error(exc: AnalyzerError) -> JSONResponse:
        """The one way a deliberate failure becomes an answer (``analyzer.api.errors``)."""
        if isinstance(exc, UnavailableError):
            log.warning("%s", exc.message)
        if isinstance(exc, PrometheusUnavailable):
            telemetry.prometheus_up.set(0)
        telemetry.error(reason_of(exc))
        return error_response(exc)

    @app.exception_handler(AnalyzerError)
    async def _analyzer_error(_: Request, exc: AnalyzerError) -> JSONResponse:
        # E.g. the store locked or unreachable while listing analyses.
        return answer_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unmatched paths and methods still name what was wrong, like every other 4xx.
        field = {404: "path", 405: "method"}.get(exc.status_code, "request")
        return _error(exc.status_code, str(exc.detail), field)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        telemetry.error("internal")
        return _error(500, f"internal error: {type(exc).__name__}")

    judging = threading.BoundedSemaphore(JUDGE_THREADS)

    def judge(request: JudgeRequest) -> JSONResponse:
        try:
            with judging:  # the other threads wait here, off the GIL
                answer = JSONResponse(analyzer.run(request))
        except AnalyzerError as exc:
            return answer_error(exc)
        telemetry.prometheus_up.set(1)
        return answer

    def rejected(exc: RequestError) -> JSONResponse:
        return answer_error(exc)

    app.add_middleware(CountRequests, counter=telemetry.http_requests)
    app.add_middleware(LogJudgeCalls)

    @app.post("/api/v1/judge", summary="Judge a canary (JSON body, DESIGN §3)",
              dependencies=guard, openapi_extra=judge_request_body())
    async def judge_post(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            return rejected(RequestError("body", "invalid Content-Length", 400))
        if length is not None and int(length) > MAX_BODY:
            return rejected(RequestError("body", f"body larger than {MAX_BODY} bytes", 413))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return rejected(RequestError("body", f"body larger than {MAX_BODY} bytes", 413))
        if (too_deep := nesting_error(bytes(body))) is not None:
            return rejected(RequestError("body", too_deep, 400))
        try:
            data = json.loads(bytes(body), parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError) as exc:
            return rejected(RequestError("body", f"body is not valid JSON: {exc}", 400))
        try:
            parsed = parse_request(data)
        except RequestError as exc:
            return rejected(exc)
        return await run_in_threadpool(judge, parsed)

    @app.get("/api/v1/judge", summary="Judge a canary (query parameters, DESIGN §3)",
             dependencies=guard)
    async def judge_get(request: Request) -> Response:
        try:
            parsed = from_query(list(request.query_params.multi_items()))
        except RequestError as exc:
            return rejected(exc)
        return await run_in_threadpool(judge, parsed)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        # Not Prometheus: a probe that failed with Prometheus would take every replica out
        # of the Service, and Argo would see connection errors instead of the 503 that says
        # why. Prometheus has its own route (/dependencies) and gauge.
        if not configs:
            return _error(503, "no canary configs loaded")
        try:
            store.ping()
        except StoreUnavailable as exc:
            return _error(503, f"store unavailable: {exc.reason}")
        return JSONResponse({"status": "ready", "configs": sorted(configs)})

    @app.get("/dependencies", summary="Whether Prometheus answers (not a readiness probe)")
    def dependencies() -> JSONResponse:
        url = settings.prometheus.url if settings.prometheus else settings.prometheus_url
        problem = None
        try:
            client = client_factory()
        except PrometheusUnavailable as exc:  # e.g. its token file has gone
            ready, problem = False, exc.reason
        else:
            try:
                ready = client.ready()
            finally:
                client.close()
        telemetry.prometheus_up.set(1 if ready else 0)
        body: dict[str, Any] = {"prometheus": {"url": url, "ready": ready}}
        if not ready:  # every 503 says why in "error", like the judge's
            body["error"] = problem or f"prometheus at {url} is not ready"
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(telemetry.exposition(), media_type=telemetry.content_type)

    @app.get("/api/v1/analyses", summary="Recent analyses, newest first", dependencies=guard)
    def analyses(namespace: str | None = None, rollout: str | None = None,
                 limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        return {"analyses": store.list_analyses(namespace, rollout, limit)}

    @app.get("/api/v1/analyses/{analysis_id}", summary="One analysis with every evaluation",
             dependencies=guard)
    def analysis(analysis_id: str) -> JSONResponse:
        found = store.get_analysis(analysis_id)
        if found is None:
            return _error(404, f"no analysis {analysis_id[:64]!r}", "analysis_id")
        return JSONResponse(found)

    return app
