"""Every exception canary-analyzer raises on purpose, in one tree.

Two kinds of failure matter to a caller, and they are answered differently: input that can
never work (a misspelt field, a bad config, an unreadable dataset) is the caller's to fix —
HTTP 4xx, exit status 2, the message names the field; a dependency that cannot answer now
(Prometheus, the store, the Kubernetes API) may work on the next try — HTTP 503 (Argo
Rollouts retries it), exit status 1, the message names the dependency. Anything else is a bug
and surfaces as one (HTTP 500 with a log line, a traceback from the CLI). None of these
subclasses ``ValueError``, so ``except ValueError`` around library calls cannot swallow them
and a programming error cannot pass for bad input.

::

    AnalyzerError
    ├── InputError                      field: what to fix
    │   ├── RequestError                a judge request          (analyzer.request)
    │   ├── ConfigError                 a canary config          (analyzer.config)
    │   ├── DatasetError                a canary-dataset/v1 file (analyzer.metrics.dataset)
    │   ├── JudgeInputError             data that does not fit its config (analyzer.judge)
    │   ├── SelectorError               label matchers           (analyzer.metrics)
    │   ├── ConnectionSettingsError     --prometheus-* flags     (analyzer.metrics.connection)
    │   ├── DatabaseUrlError            --database / -file / env (analyzer.database_url)
    │   ├── TokenFileError              --token-file             (analyzer.api.auth)
    │   ├── MeshError                   a VirtualService's shape (analyzer.mesh)
    │   ├── KubeConfigError             --kubeconfig / --in-cluster (analyzer.mesh.client)
    │   └── UsageError                  command-line flags       (analyzer.cli)
    └── UnavailableError                dependency: who did not answer
        ├── PrometheusUnavailable       "prometheus"             (analyzer.metrics.prometheus)
        ├── StoreUnavailable            "store"                  (analyzer.store)
        └── KubeError                   "kubernetes"             (analyzer.mesh.client)
            └── NotFound, Forbidden, WeightConflict

The API maps the tree to statuses in ``analyzer.api.errors``, the CLI to exit codes in
``analyzer.cli``; each has one table.
"""

from __future__ import annotations

from typing import ClassVar


class AnalyzerError(Exception):
    """Base of every deliberate failure; ``message`` is what the caller is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(AnalyzerError):
    """What the caller gave can never work; ``field`` names it (a request field, a config
    key, a flag, a file) when one thing can be named."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnavailableError(AnalyzerError):
    """A dependency could not give a usable answer now; ``reason`` says why."""

    dependency: ClassVar[str] = "dependency"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.dependency} unavailable: {reason}")
        self.reason = reason
