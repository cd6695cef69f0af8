"""A thin, error-translating wrapper around the Kubernetes custom-objects API.

Everything in ``analyzer.mesh`` talks to Kubernetes through :class:`KubeClient` so that:

* every instance owns its own ``ApiClient``/``Configuration`` (the ``kubernetes`` package's
  ``load_kube_config()`` without arguments mutates a process-wide default; tests point several
  clients at different servers, and the service may talk to one cluster while a CLI talks to
  another);
* every request carries an explicit timeout, because an API server that stops answering must
  not hang an Argo analysis step or the CLI;
* callers only ever see :class:`KubeError` and its subclasses, with messages an operator can act
  on, never a raw ``ApiException`` or ``urllib3`` error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException, OpenApiException
from kubernetes.config.config_exception import ConfigException

from analyzer.errors import AnalyzerError, InputError, UnavailableError

DEFAULT_TIMEOUT = 5.0
MERGE_PATCH = "application/merge-patch+json"


class KubeError(UnavailableError):
    """Kubernetes could not answer as needed. ``status`` is the HTTP status (None when the
    server was not reached); ``reason`` is the API server's ``Status.reason``; the message
    is a whole sentence of its own (not "kubernetes unavailable: …")."""

    dependency = "kubernetes"

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        AnalyzerError.__init__(self, message)
        self.status = status
        self.reason = reason


class KubeConfigError(InputError):
    """No usable kubeconfig / in-cluster service account: a setup problem, not a server one
    (so input to fix, exit status 2, not an unavailable Kubernetes)."""


class NotFound(KubeError):
    """The object (or its API version) does not exist. ``kind`` and ``name`` say which.

    ``object_missing`` is True when the server's ``Status.details.name`` names the object, i.e.
    the API version is served and only the object is absent; False for an unserved group/version
    ("the server could not find the requested resource"), which is when a caller may retry
    another version.
    """

    def __init__(self, kind: str, name: str, message: str | None = None,
                 *, object_missing: bool = True) -> None:
        super().__init__(message or f"{kind} {name} not found", status=404, reason="NotFound")
        self.kind = kind
        self.name = name
        self.object_missing = object_missing


class Forbidden(KubeError):
    """RBAC refused the request; the message names the verbs the identity needs."""

    def __init__(self, message: str, verbs: tuple[str, ...]) -> None:
        super().__init__(message, status=403, reason="Forbidden")
        self.verbs = verbs


class WeightConflict(KubeError):
    """409 on a write: the object changed after we read it (optimistic concurrency)."""

    def __init__(self, kind: str, name: str, resource_version: str) -> None:
        super().__init__(
            f"the {kind} {name} changed since it was read (resourceVersion "
            f"{resource_version}); the Argo Rollouts controller may be managing it — re-run or "
            f"abort the rollout", status=409, reason="Conflict")
        self.kind = kind
        self.name = name
        self.resource_version = resource_version


def _status_body(exc: ApiException) -> dict[str, Any]:
    """The API server's ``Status`` object, or {} when the body is not one."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _resource(plural: str, group: str) -> str:
    return f"{plural}.{group}"


class KubeClient:
    """Custom-object reads and merge patches against one cluster.

    Build with :meth:`from_kubeconfig` or :meth:`in_cluster`; the constructor takes a ready
    ``ApiClient`` for callers that configure one themselves.
    """

    def __init__(self, api_client: k8s.ApiClient, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)
        self.timeout = timeout

    @staticmethod
    def _configuration() -> k8s.Configuration:
        configuration = k8s.Configuration()
        # A couple of quick retries for refused/reset connections (API server restarts, stale
        # keep-alive sockets); never retry reads of answers, so a slow server costs one timeout.
        configuration.retries = urllib3.Retry(total=2, connect=2, read=0, status=0,
                                              redirect=0, backoff_factor=0.2)
        return configuration

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None,
                        timeout: float = DEFAULT_TIMEOUT) -> KubeClient:
        """From a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
        configuration = cls._configuration()
        try:
            k8s_config.load_kube_config(config_file=path, context=context,
                                        client_configuration=configuration,
                                        persist_config=False)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            where = path or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
            raise KubeConfigError(f"cannot load kubeconfig {where}: {exc}") from exc
        return cls(k8s.ApiClient(configuration), timeout)

    @classmethod
    def in_cluster(cls, timeout: float = DEFAULT_TIMEOUT) -> KubeClient:
        """From the pod's service account (token, CA and ``KUBERNETES_SERVICE_HOST``)."""
        configuration = cls._configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            raise KubeConfigError(f"not running in a cluster with a service account: {exc}"
                                  ) from exc
        return cls(k8s.ApiClient(configuration), timeout)

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    @contextmanager
    def _translate(self, *, verb: str, kind: str, name: str, namespace: str, plural: str,
                   group: str, resource_version: str = "") -> Iterator[None]:
        """Turns whatever the client raises into a :class:`KubeError` naming the object."""
        what = f"{kind} {namespace}/{name}" if name else f"{kind} in namespace {namespace}"
        try:
            yield
        except ApiException as exc:
            body = _status_body(exc)
            server_message = str(body.get("message") or exc.reason or "").strip()
            status = exc.status
            if status == 404:
                details: dict[str, Any] = (body["details"] if isinstance(body.get("details"), dict)
                                           else {})
                raise NotFound(kind, f"{namespace}/{name}", f"{what} not found ({server_message})",
                               object_missing=bool(name) and details.get("name") == name
                               ) from None
            if status == 403:
                verbs = ("get", "patch") if verb == "patch" else (verb,)
                raise Forbidden(
                    f"forbidden to {verb} {what}: the identity needs the RBAC verbs "
                    f"{', '.join(verbs)} on {_resource(plural, group)} in namespace "
                    f"{namespace} ({server_message})", verbs) from None
            if status == 409 and verb == "patch":
                raise WeightConflict(kind, f"{namespace}/{name}", resource_version) from None
            if status == 401:
                raise KubeError(f"unauthorized to {verb} {what}: the credentials were refused "
                                f"({server_message})", status=401,
                                reason=str(body.get("reason") or "Unauthorized")) from None
            raise KubeError(f"cannot {verb} {what}: HTTP {status} "
                            f"{body.get('reason') or exc.reason}: {server_message}",
                            status=status, reason=str(body.get("reason") or exc.reason or "")
                            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            cause = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the real error
            raise KubeError(f"cannot {verb} {what}: Kubernetes API at {self.host} "
                            f"unreachable: {cause}") from None
        except (OpenApiException, ValueError) as exc:
            raise KubeError(f"cannot {verb} {what}: unexpected answer from {self.host}: {exc}"
                            ) from None

    def get(self, group: str, version: str, namespace: str, plural: str, name: str,
            *, kind: str) -> dict[str, Any]:
        """One namespaced custom object as a dict."""
        with self._translate(verb="get", kind=kind, name=name, namespace=namespace,
                             plural=plural, group=group):
            obj = self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=self.timeout)
        return _as_object(obj, kind)

    def list(self, group: str, version: str, namespace: str, plural: str,
             *, kind: str) -> list[dict[str, Any]]:
        """All objects of one plural in a namespace."""
        with self._translate(verb="list", kind=kind, name="", namespace=namespace,
                             plural=plural, group=group):
            obj = self.custom.list_namespaced_custom_object(
                group, version, namespace, plural, _request_timeout=self.timeout)
        items = _as_object(obj, kind).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def merge_patch(self, group: str, version: str, namespace: str, plural: str, name: str,
                    patch: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """An RFC 7386 JSON merge patch (``application/merge-patch+json``).

        When ``patch`` carries ``metadata.resourceVersion`` the API server applies it only if
        the stored object still has that version, and answers 409 otherwise
        (:class:`WeightConflict`) — the same optimistic concurrency an Update gets.
        """
        resource_version = str((patch.get("metadata") or {}).get("resourceVersion") or "")
        with self._translate(verb="patch", kind=kind, name=name, namespace=namespace,
                             plural=plural, group=group, resource_version=resource_version):
            obj = self.custom.patch_namespaced_custom_object(
                group, version, namespace, plural, name, patch,
                _content_type=MERGE_PATCH, _request_timeout=self.timeout)
        return _as_object(obj, kind)


def _as_object(obj: object, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise KubeError(f"unexpected answer for {kind}: expected a JSON object, got "
                        f"{type(obj).__name__}")
    return obj
