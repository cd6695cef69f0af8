"""Prometheus access: range queries with a short timeout, one retry, and one typed error.

Argo Rollouts treats any non-2xx answer as a transient Error and retries, so the service must
turn every way Prometheus can fail (refused, slow, 5xx, garbage, ``status: error``) into
``PrometheusUnavailable`` and answer 503 — never a verdict built from a broken answer. The
client library's defaults (3 retries with 1 s backoff, no timeout) take 6 s to notice a dead
server and can hang forever on a stuck one, longer than Argo's web-metric timeout.

Time is bounded twice: ``timeout`` per HTTP request, and an optional ``budget`` for all the
queries of one client (one analysis) together — an analysis runs several queries, and five
queries each just under the timeout would otherwise add up past Argo's timeout. A request that
timed out is not retried: a Prometheus too slow once is as slow the second time.
"""

from __future__ import annotations

import functools
import json
import math
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from analyzer.errors import UnavailableError
from analyzer.logs import note_prometheus_time

if TYPE_CHECKING:
    from analyzer.metrics.connection import PrometheusConnection

MAX_POINTS = 11_000
"""Prometheus refuses range queries of more points per series than this."""

RangeSeries = dict[str, Any]
"""``{"metric": {label: value}, "values": ndarray of shape (samples, 2)}``: unix seconds and
float values (NaN and ±Inf included)."""


class PrometheusUnavailable(UnavailableError):
    """Prometheus could not give a usable answer; ``reason`` says why, for logs and the 503."""

    dependency = "prometheus"


class PrometheusClient:
    """Range queries against one Prometheus server.

    ``queries`` lists the PromQL of every query this client was asked to run, in order, so the
    caller can record what its answer was based on; ``on_query(seconds)`` is called with the
    wall time of every query, failed ones included (a slow failure is worth seeing in the
    query-duration histogram). ``server`` is a URL or a ``PrometheusConnection`` (auth, TLS,
    tenant headers); its secret files are read here, and an unreadable one is
    ``PrometheusUnavailable``.
    """

    def __init__(self, server: str | PrometheusConnection, *, timeout: float = 5.0,
                 retries: int = 1, budget: float | None = None,
                 headers: dict[str, str] | None = None,
                 on_query: Callable[[float], None] | None = None) -> None:
        from analyzer.metrics.connection import PrometheusConnection

        connection = PrometheusConnection(server) if isinstance(server, str) else server
        self.url = connection.url.rstrip("/")
        self.timeout = timeout
        self.budget = budget
        self.queries: list[str] = []
        self.samples = 0
        """Samples (series × points) in this client's query answers: the load it put on
        Prometheus, in the unit Prometheus' own ``query.max-samples`` limit counts."""
        self._on_query = on_query
        self._session = _BudgetSession(budget)
        connection.configure(self._session)
        _settle_environment(self._session, self.url)
        # Uncompressed answers: gzip was most of Prometheus' CPU for these queries (half at a
        # 30 min window, 80-90 % at 6 h) and the client's to undo it; answers since the seam
        # are a few KiB. Measured on loopback (benchmarks/service/README.md): a 6 h full read
        # 357 → 181 ms, an incremental one 22.7 → 13.0 ms. A configured header wins.
        if not any(name.lower() == "accept-encoding" for name in connection.headers):
            self._session.headers["Accept-Encoding"] = "identity"
        # The hook sees the raw answer, which the library does not check for status "error".
        self._session.hooks["response"].append(_check_answer)
        self._client = PrometheusConnect(self.url, headers=headers, retry=_retry(retries),
                                         session=self._session, timeout=timeout)
        # In place of the library's adapter: one per server and retry count for the whole
        # process, so calls reuse its kept-alive connections.
        self._session.mount(self.url, _shared_adapter(self.url, retries))

    def close(self) -> None:
        self._session.adapters.pop(self.url, None)  # shared: stays open for the next client
        self._session.close()

    def ready(self) -> bool:
        """True when ``/-/ready`` answers 200 (reachable, and done replaying its WAL)."""
        try:
            response = self._session.get(f"{self.url}/-/ready", timeout=self.timeout)
        except Exception:
            return False
        return response.status_code == 200

    def query_range(self, query: str, start: datetime, end: datetime,
                    step_seconds: float) -> list[RangeSeries]:
        """The result series of ``query`` evaluated at ``start``, ``start + step``, … ≤ ``end``.

        ``start`` and ``end`` must be timezone-aware (the library reads naive datetimes as local
        time). Values come back as floats (NaN and ±Inf included), timestamps as unix seconds.
        """
        for name, moment in (("start", start), ("end", end)):
            if moment.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")
        if not (math.isfinite(step_seconds) and step_seconds >= 0.001):
            raise ValueError("step_seconds must be at least 0.001 (Prometheus has ms precision)")
        if end < start:
            raise ValueError("end is before start")
        if (end - start).total_seconds() / step_seconds + 1 > MAX_POINTS:
            raise ValueError(f"more than {MAX_POINTS} points per series; use a larger step")
        # The library rounds start/end to whole seconds; these params override them.
        params = {"start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"}
        result = self._ask(query, lambda: self._client.custom_query_range(
            query, start, end, repr(float(step_seconds)), params=params))
        parsed = _parse_result(result)
        self.samples += sum(len(series["values"]) for series in parsed)
        return parsed


    def series_labels(self, query: str, at: datetime) -> list[dict[str, str]]:
        """The label sets of the series ``query`` returns at ``at`` (an instant query).

        Every judge call asks Prometheus at least this, so an unreachable Prometheus is a 503
        even on a call whose window holds no complete interval yet.
        """
        if at.tzinfo is None:
            raise ValueError("at must be a timezone-aware datetime")
        result = self._ask(query, lambda: self._client.custom_query(
            query, params={"time": f"{at.timestamp():.3f}"}))
        if not isinstance(result, list) or not all(
                isinstance(item, dict) and isinstance(item.get("metric"), dict)
                for item in result):
            raise PrometheusUnavailable("answer has a malformed vector")
        self.samples += len(result)
        return [{str(k): str(v) for k, v in item["metric"].items()} for item in result]

    def has_series(self, selector: str, start: datetime, end: datetime) -> bool:
        """Whether any series matching ``selector`` (``name{matchers}``) existed between
        ``start`` and ``end``: an index lookup (``/api/v1/series``), cheap over days, that
        tells a Service whose series have not appeared *yet* from one that never had any."""
        result = self._ask(f"series {selector}", lambda: self._client.get_series(
            start, end, params={"match[]": selector}))
        if not isinstance(result, list):
            raise PrometheusUnavailable("series answer is not a list")
        return bool(result)

    def label_values(self, label: str, selector: str, start: datetime, end: datetime
                     ) -> list[str]:
        """Values of ``label`` on the series matching ``selector`` between ``start`` and
        ``end``: an index lookup, cheap over days (what a namespace has, for diagnoses)."""
        params = {"match[]": selector, "start": f"{start.timestamp():.3f}",
                  "end": f"{end.timestamp():.3f}"}
        result = self._ask(f"values of {label} in {selector}",
                           lambda: self._client.get_label_values(label, params=params))
        if not isinstance(result, list):
            raise PrometheusUnavailable("label values answer is not a list")
        return [str(value) for value in result]

    def _ask(self, query: str, call: Callable[[], Any]) -> Any:
        """Runs one request of the library, recording it and turning every failure into
        ``PrometheusUnavailable``."""
        self.queries.append(query)
        began = time.monotonic()
        try:
            return call()
        except PrometheusUnavailable:
            raise
        except requests.RequestException as exc:
            raise PrometheusUnavailable(f"{self.url}: {_describe(exc, self.timeout)}") from None
        except Exception as exc:
            raise PrometheusUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from None
        finally:
            elapsed = time.monotonic() - began
            note_prometheus_time(elapsed)
            if self._on_query is not None:
                self._on_query(elapsed)


_ADAPTERS: dict[tuple[str, int], HTTPAdapter] = {}
_ADAPTERS_LOCK = threading.Lock()
POOL_SIZE = 32
"""Kept-alive connections per server: a client is made per analysis, and opening a connection
per analysis cost ~2 ms a call (measured on loopback, benchmarks/service/README.md)."""


def _shared_adapter(url: str, retries: int) -> HTTPAdapter:
    """The process' connection pool to ``url``. urllib3 keeps separate pools per TLS
    settings (CA, client certificate) inside it, and requests passes those per request, so
    clients with different ``PrometheusConnection`` settings never share a connection."""
    with _ADAPTERS_LOCK:
        adapter = _ADAPTERS.get((url, retries))
        if adapter is None:
            adapter = _ADAPTERS[(url, retries)] = HTTPAdapter(
                max_retries=_retry(retries), pool_connections=4, pool_maxsize=POOL_SIZE)
        return adapter


@functools.lru_cache(maxsize=64)
def _environment(url: str) -> tuple[dict[str, str], str | None, tuple[str, str] | None]:
    """What requests would take from the environment for ``url``: proxies (``NO_PROXY``
    honoured), a CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and ``.netrc``
    credentials."""
    probe = requests.Session()
    settings = probe.merge_environment_settings(url, {}, None, None, None)
    bundle = settings["verify"] if isinstance(settings["verify"], str) else None
    return dict(settings["proxies"]), bundle, requests.utils.get_netrc_auth(url)


def _settle_environment(session: requests.Session, url: str) -> None:
    """Applies the environment's settings once and stops requests looking them up again:
    it does so on every request (a ``.netrc`` read, proxy variables, a CA path check), about
    1 ms a query, for settings that do not change while the process runs. Explicit settings
    (the connection's CA file, credentials) still win, as they would per request."""
    proxies, bundle, netrc = _environment(url)
    session.proxies.update(proxies)
    if session.verify is True and bundle is not None:
        session.verify = bundle
    if session.auth is None and netrc is not None:
        session.auth = netrc
    session.trust_env = False


def _retry(retries: int) -> Retry:
    """Retries of refused connections and gateway errors; a read that timed out is not
    retried (see the module's docstring)."""
    return Retry(total=retries, read=0, backoff_factor=0.1, status_forcelist=[502, 503, 504],
                 allowed_methods=["GET"])


class _BudgetSession(requests.Session):
    """A session whose requests share one time budget, started by the first request: each
    request's timeout is cut to what is left, and none starts once it is spent."""

    def __init__(self, budget: float | None) -> None:
        super().__init__()
        self.budget = budget
        self._deadline: float | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        if self.budget is not None:
            now = time.monotonic()
            if self._deadline is None:
                self._deadline = now + self.budget
            left = self._deadline - now
            if left <= 0:
                raise PrometheusUnavailable(f"queries took longer than {self.budget:g} s "
                                            f"in total")
            timeout = kwargs.get("timeout")
            if isinstance(timeout, tuple):  # (connect, read)
                kwargs["timeout"] = tuple(left if t is None else min(t, left) for t in timeout)
            else:
                kwargs["timeout"] = left if timeout is None else min(float(timeout), left)
        return super().request(method, url, *args, **kwargs)


def _root(exc: BaseException) -> BaseException:
    """The innermost cause ("Connection refused", a read timeout), not urllib3's wrappers."""
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException) and exc.args and isinstance(exc.args[0],
                                                                            BaseException):
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            return exc
        exc = inner


def _describe(exc: requests.RequestException, timeout: float) -> str:
    cause = _root(exc)
    if isinstance(exc, requests.exceptions.SSLError) or isinstance(cause, ssl.SSLError):
        return f"TLS failed ({cause})"
    # NewConnectionError subclasses urllib3's timeout error, so it is tested first.
    if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionError):
        return f"cannot connect ({cause})"
    if isinstance(exc, requests.Timeout) or isinstance(cause, urllib3.exceptions.TimeoutError
                                                       | TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(cause)


def _check_answer(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Requests hook: refuses any query API answer that is not a 200 ``status: success`` JSON."""
    path = urlsplit(response.url).path
    if path.endswith("/api/v1/query_range"):
        expected = "matrix"
    elif path.endswith("/api/v1/query"):
        expected = "vector"
    else:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if response.status_code != 200:
        detail = (f"{body.get('errorType')}: {body.get('error')}" if isinstance(body, dict)
                  else response.text[:200].strip())
        where = response.url.split("?")[0]
        if response.status_code in (401, 403):
            # An auth proxy's refusal: say so, so a wrong token is not read as an outage.
            refused = "credentials missing or rejected" if response.status_code == 401 else (
                "access denied (credentials or tenant header)")
            raise PrometheusUnavailable(f"HTTP {response.status_code} from {where}: {refused}"
                                        f": {detail}")
        raise PrometheusUnavailable(f"HTTP {response.status_code} from {where}: {detail}")
    if not isinstance(body, dict):
        raise PrometheusUnavailable(f"answer is not a JSON object: {response.text[:200]!r}")
    if body.get("status") != "success":
        raise PrometheusUnavailable(f"status {body.get('status')!r}: {body.get('errorType')}: "
                                    f"{body.get('error')}")
    warnings = [w for w in body.get("warnings") or [] if not str(w).startswith("PromQL info:")]
    if warnings:
        # Query layers in front of Prometheus (Thanos, Cortex, Mimir) answer 200 with some
        # stores missing and say so only here. A partial answer can drop one side's success
        # series and look like a regression, so it is refused like any broken answer. Info
        # annotations (2.45+: "metric might not be a counter") are not about missing data.
        raise PrometheusUnavailable(f"partial answer, warnings: {'; '.join(map(str, warnings))}"
                                    [:300])
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != expected or not isinstance(
            data.get("result"), list):
        raise PrometheusUnavailable(f"answer has no data.result {expected}")
    # The library decodes the body again with response.json(); hand it this decoding
    # instead (large range answers cost milliseconds to decode).
    response.json = lambda **_: body  # type: ignore[method-assign]


_NO_POINTS = np.zeros((0, 2))


def _parse_result(result: Any) -> list[RangeSeries]:
    if not isinstance(result, list):
        raise PrometheusUnavailable("answer has no data.result list")
    parsed = []
    for item in result:
        metric = item.get("metric") if isinstance(item, dict) else None
        values = item.get("values") if isinstance(item, dict) else None
        # JSON object keys are always strings; the values need checking.
        if not isinstance(metric, dict) or not isinstance(values, list) or not all(
                type(v) is str for v in metric.values()):
            raise PrometheusUnavailable("answer has a malformed series")
        try:
            # numpy parses Prometheus' value strings ("1.5", "NaN", "+Inf") in C.
            points = np.array(values, dtype=float).reshape(-1, 2) if values else _NO_POINTS
        except (TypeError, ValueError):
            raise PrometheusUnavailable("answer has a malformed sample") from None
        parsed.append({"metric": metric, "values": points})
    return parsed
