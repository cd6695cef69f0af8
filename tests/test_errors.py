"""One error tree, one table to HTTP statuses, one to exit codes (``analyzer.errors``)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from promfixture import free_port

import analyzer
from analyzer.api.errors import reason_of, status_of
from analyzer.cli import main
from analyzer.config import ConfigError
from analyzer.errors import AnalyzerError, InputError, UnavailableError
from analyzer.mesh.client import KubeConfigError, KubeError
from analyzer.metrics.prometheus import PrometheusUnavailable
from analyzer.request import RequestError
from analyzer.store import StoreUnavailable


def _all_subclasses(kind: type) -> set[type]:
    found = set(kind.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_nothing_in_the_tree_is_a_value_error() -> None:
    """``except ValueError`` around a library call must never swallow one of these."""
    for module in pkgutil.walk_packages(analyzer.__path__, "analyzer."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    tree = _all_subclasses(AnalyzerError)
    assert len(tree) >= 15
    assert [k.__name__ for k in tree if issubclass(k, ValueError)] == []
    assert all(issubclass(k, InputError | UnavailableError) for k in tree
               if k not in (InputError, UnavailableError))


@pytest.mark.parametrize(("error", "status", "reason"), [
    (RequestError("body", "too large", 413), 413, "bad_request"),
    (RequestError("canary", "bad"), 422, "bad_request"),
    (ConfigError("bad key"), 422, "bad_request"),
    (PrometheusUnavailable("refused"), 503, "prometheus_unavailable"),
    (StoreUnavailable("locked"), 503, "store_unavailable"),
    (KubeError("silent"), 503, "kubernetes_unavailable"),
])
def test_http_table(error: AnalyzerError, status: int, reason: str) -> None:
    assert (status_of(error), reason_of(error)) == (status, reason)
    if isinstance(error, UnavailableError) and not isinstance(error, KubeError):
        assert error.message.startswith(f"{error.dependency} unavailable")


def test_cli_table(tmp_path, capsys) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["serve", "--kubeconfig", str(tmp_path / "none")], 2, "cannot load kubeconfig"),
        (["weights", "get", "--namespace", "a", "--virtualservice", "v",
          "--kubeconfig", str(tmp_path / "none")], 2, "kubeconfig"),
        (["export", "--prometheus", closed, "--namespace", "a", "--canary-service", "b",
          "--baseline-service", "c", "--start", "0", "--end", "600",
          "-o", str(tmp_path / "missing" / "x.json")], 2, "-o: folder"),
        (["judge", "--prometheus", closed, "--namespace", "a", "--rollout", "r",
          "--canary-service", "b", "--baseline-service", "c"], 1, "prometheus unavailable"),
        (["judge", "--prometheus", closed, "--namespace", "A!", "--rollout", "r",
          "--canary-service", "b", "--baseline-service", "c"], 2, "--namespace"),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith(f"canary-analyzer {argv[0]}: ") and message in err, err
        assert "Traceback" not in err
    assert issubclass(KubeConfigError, InputError)  # a setup problem: exit 2
