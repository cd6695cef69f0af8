"""analyzer.mesh against a fake API server, through the real ``kubernetes`` client."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_server import MERGE_PATCH, FakeKube
from kubernetes.client.exceptions import ApiException

from analyzer.mesh.cli import add_weights_parser
from analyzer.mesh.client import (
    Forbidden,
    KubeClient,
    KubeConfigError,
    KubeError,
    NotFound,
    WeightConflict,
)
from analyzer.mesh.rollout import lookup_canary_weight, read_rollout
from analyzer.mesh.virtualservice import (
    DestinationNotFound,
    RouteNotFound,
    Split,
    read_weights,
)
from analyzer.mesh.weights import InvalidWeight, set_canary_weight

ISTIO = "networking.istio.io"
VS = "virtualservices"
NS = "shop"
HOSTS = Split("checkout-canary", "checkout-stable")


def host_vs(canary: int = 20) -> dict:
    """Host-level split as Rollouts writes it, with a second, unmanaged route."""
    return {
        "apiVersion": f"{ISTIO}/v1", "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": NS},
        "spec": {"hosts": ["checkout"], "http": [
            {"name": "primary", "route": [
                {"destination": {"host": "checkout-canary"}, "weight": canary},
                {"destination": {"host": "checkout-stable.shop.svc.cluster.local",
                                 "port": {"number": 8080}}, "weight": 100 - canary},
            ]},
            {"name": "secondary", "route": [
                {"destination": {"host": "checkout-canary"}, "weight": 0},
                {"destination": {"host": "checkout-stable"}, "weight": 100},
            ]},
        ]},
    }


def subset_vs(canary: int = 30) -> dict:
    return {
        "metadata": {"name": "payments", "namespace": NS},
        "spec": {"http": [{"route": [
            {"destination": {"host": "payments", "subset": "stable"}, "weight": 100 - canary},
            {"destination": {"host": "payments", "subset": "canary"}, "weight": canary},
        ]}]},
    }


def rollout(**status: object) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": NS},
        "spec": {"strategy": {"canary": {
            "canaryService": "checkout-canary", "stableService": "checkout-stable",
            "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
            "trafficRouting": {"istio": {"virtualService": {"name": "checkout",
                                                            "routes": ["primary"]}}},
        }}},
        "status": dict(status),
    }


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube()
    fake.serve_resource(ISTIO, VS, "VirtualService", {"v1", "v1beta1"})
    fake.serve_resource("argoproj.io", "rollouts", "Rollout", {"v1alpha1"})
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def kubeconfig(kube: FakeKube, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[KubeClient]:
    with KubeClient.from_kubeconfig(str(kubeconfig)) as client:
        yield client


# -- reading ---------------------------------------------------------------------------------

def test_host_level_reading_matches_short_and_fqdn_hosts(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs(20))
    reading = read_weights(api, NS, "checkout", "primary", split=HOSTS)
    assert (reading.canary_weight, reading.stable_weight) == (20, 80)
    assert reading.route == "primary" and reading.style == "host"
    assert reading.resource_version == kube.get(ISTIO, VS, NS, "checkout")["metadata"][
        "resourceVersion"]
    assert reading.warning is None
    assert kube.requests[0].path == f"/apis/{ISTIO}/v1/namespaces/{NS}/{VS}/checkout"


def test_subset_level_reading_uses_the_only_route(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, subset_vs(30))
    reading = read_weights(api, NS, "payments")
    assert (reading.canary_weight, reading.stable_weight, reading.style) == (30, 70, "subset")
    custom = read_weights(api, NS, "payments", split=Split(canary_subset="stable",
                                                           stable_subset="canary"))
    assert custom.canary_weight == 70


def test_weights_not_summing_to_100_are_reported_not_refused(kube: FakeKube, api: KubeClient):
    vs = subset_vs(30)
    vs["spec"]["http"][0]["route"][0]["weight"] = 60
    kube.put(ISTIO, VS, vs)
    reading = read_weights(api, NS, "payments")
    assert reading.canary_weight == 30
    assert reading.warning is not None and "sum to 90" in reading.warning


def test_missing_route_is_named_with_the_routes_that_exist(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs())
    with pytest.raises(RouteNotFound) as err:
        read_weights(api, NS, "checkout", "tertiary", split=HOSTS)
    assert "'tertiary'" in str(err.value)
    assert "primary, secondary" in str(err.value)
    with pytest.raises(RouteNotFound, match="2 HTTP routes"):
        read_weights(api, NS, "checkout", None, split=HOSTS)


def test_missing_destination_is_named(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs())
    with pytest.raises(DestinationNotFound) as err:
        read_weights(api, NS, "checkout", "primary",
                     split=Split("checkout-preview", "checkout-stable"))
    assert "Canary Service 'checkout-preview' not found in route 'primary'" in str(err.value)
    assert err.value.field == "canary"
    kube.put(ISTIO, VS, subset_vs())
    with pytest.raises(DestinationNotFound, match="stable DestinationRule subset 'blue'"):
        read_weights(api, NS, "payments", split=Split(stable_subset="blue"))


def test_falls_back_to_v1beta1_when_v1_is_not_served(kube: FakeKube, api: KubeClient):
    kube.serve_resource(ISTIO, VS, "VirtualService", {"v1beta1"})
    kube.put(ISTIO, VS, subset_vs(10))
    assert read_weights(api, NS, "payments").canary_weight == 10
    assert [r.path.split("/")[3] for r in kube.requests] == ["v1", "v1beta1"]


def test_missing_object_is_not_found_without_a_second_version(kube: FakeKube,
                                                              api: KubeClient):
    with pytest.raises(NotFound) as err:
        read_weights(api, NS, "nope")
    assert err.value.name == f"{NS}/nope" and "nope" in str(err.value)
    assert len(kube.requests) == 1  # the object is missing, not the version


def test_no_istio_at_all_is_not_found(kube: FakeKube, api: KubeClient):
    kube.resources.clear()
    with pytest.raises(NotFound, match="serves neither"):
        read_weights(api, NS, "checkout")


def test_list_answers_the_kubernetes_list_shape(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs())
    kube.put(ISTIO, VS, subset_vs())
    items = api.list(ISTIO, "v1", NS, VS, kind="VirtualService")
    assert sorted(i["metadata"]["name"] for i in items) == ["checkout", "payments"]


def test_forbidden_names_the_verbs(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs())
    path = f"/apis/{ISTIO}/v1/namespaces/{NS}/{VS}/checkout"
    kube.forbidden.add(("GET", path))
    with pytest.raises(Forbidden) as err:
        read_weights(api, NS, "checkout", "primary", split=HOSTS)
    assert "RBAC verbs get" in str(err.value) and f"{VS}.{ISTIO}" in str(err.value)
    kube.forbidden = {("PATCH", path)}
    with pytest.raises(Forbidden) as err:
        set_canary_weight(api, NS, "checkout", "primary", 0, canary_service="checkout-canary",
                          stable_service="checkout-stable")
    assert err.value.verbs == ("get", "patch") and "get, patch" in str(err.value)


def test_unreachable_server_and_bad_kubeconfig_are_kube_errors(tmp_path: Path,
                                                               kube: FakeKube):
    with pytest.raises(KubeConfigError, match="kubeconfig"):
        KubeClient.from_kubeconfig(str(tmp_path / "missing"))
    config = kube.write_kubeconfig(tmp_path / "kc")
    kube.stop()
    with KubeClient.from_kubeconfig(str(config), timeout=1) as client, \
            pytest.raises(KubeError, match="unreachable"):
        read_weights(client, NS, "checkout")


def test_wrong_token_is_a_kube_error(kube: FakeKube, tmp_path: Path):
    config = kube.write_kubeconfig(tmp_path / "kc", token="wrong")
    with KubeClient.from_kubeconfig(str(config)) as client, \
            pytest.raises(KubeError, match="unauthorized") as err:
        read_weights(client, NS, "checkout")
    assert err.value.status == 401


# -- setting ---------------------------------------------------------------------------------

def test_set_patches_route_with_resource_version(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs(20))
    before = copy.deepcopy(kube.get(ISTIO, VS, NS, "checkout"))
    change = set_canary_weight(api, NS, "checkout", "primary", 35,
                               canary_service="checkout-canary",
                               stable_service="checkout-stable")
    stored = kube.get(ISTIO, VS, NS, "checkout")
    primary, secondary = stored["spec"]["http"]
    assert [d["weight"] for d in primary["route"]] == [35, 65]
    assert secondary == before["spec"]["http"][1]
    assert primary["route"][1]["destination"] == before["spec"]["http"][0]["route"][1][
        "destination"]
    assert stored["spec"]["hosts"] == ["checkout"]
    [patch] = kube.patches()
    assert patch.content_type == MERGE_PATCH
    assert patch.body["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert change.after is not None and change.after.canary_weight == 35
    assert change.after.resource_version == stored["metadata"]["resourceVersion"]
    assert change.after.resource_version != before["metadata"]["resourceVersion"]
    assert change.before.canary_weight == 20


def test_set_on_v1beta1_only_cluster_patches_v1beta1(kube: FakeKube, api: KubeClient):
    kube.serve_resource(ISTIO, VS, "VirtualService", {"v1beta1"})
    kube.put(ISTIO, VS, subset_vs(30))
    set_canary_weight(api, NS, "payments", None, 0)
    [patch] = kube.patches()
    assert "/v1beta1/" in patch.path
    route = kube.get(ISTIO, VS, NS, "payments")["spec"]["http"][0]["route"]
    assert [(d["destination"]["subset"], d["weight"]) for d in route] == [("stable", 100),
                                                                         ("canary", 0)]


def test_stable_leaves_room_for_other_destinations(kube: FakeKube, api: KubeClient):
    vs = subset_vs(20)
    vs["spec"]["http"][0]["route"][0]["weight"] = 70
    vs["spec"]["http"][0]["route"].append(
        {"destination": {"host": "payments", "subset": "experiment"}, "weight": 10})
    kube.put(ISTIO, VS, vs)
    set_canary_weight(api, NS, "payments", None, 50)
    route = kube.get(ISTIO, VS, NS, "payments")["spec"]["http"][0]["route"]
    assert [d["weight"] for d in route] == [40, 50, 10]
    with pytest.raises(InvalidWeight, match="exceeds 100"):
        set_canary_weight(api, NS, "payments", None, 95)


def test_concurrent_change_is_a_conflict_and_nothing_is_overwritten(kube: FakeKube,
                                                                    api: KubeClient):
    kube.put(ISTIO, VS, host_vs(20))
    read_version = kube.get(ISTIO, VS, NS, "checkout")["metadata"]["resourceVersion"]

    def controller_writes(key: tuple[str, str, str, str]) -> None:
        kube.after_get = None
        kube.put(ISTIO, VS, host_vs(50))  # the Rollouts controller moves to its next step

    kube.after_get = controller_writes
    with pytest.raises(WeightConflict) as err:
        set_canary_weight(api, NS, "checkout", "primary", 0, canary_service="checkout-canary",
                          stable_service="checkout-stable")
    message = str(err.value)
    assert f"resourceVersion {read_version}" in message
    assert "changed since it was read" in message and "Argo Rollouts controller" in message
    route = kube.get(ISTIO, VS, NS, "checkout")["spec"]["http"][0]["route"]
    assert [d["weight"] for d in route] == [50, 50]
    assert len(kube.patches()) == 1


@pytest.mark.parametrize("weight", [0, 100, "0", "100"])
def test_bounds_are_accepted(kube: FakeKube, api: KubeClient, weight: object):
    kube.put(ISTIO, VS, subset_vs(30))
    change = set_canary_weight(api, NS, "payments", None, weight)
    assert change.after is not None
    assert change.after.canary_weight + change.after.stable_weight == 100
    assert change.after.canary_weight == int(str(weight))


@pytest.mark.parametrize("weight", [-1, 101, 2.5, "12.5", "ten", True, None])
def test_bad_weights_are_refused_before_any_request(kube: FakeKube, api: KubeClient,
                                                    weight: object):
    kube.put(ISTIO, VS, subset_vs(30))
    with pytest.raises(InvalidWeight) as err:
        set_canary_weight(api, NS, "payments", None, weight)
    assert err.value.field == "canary_weight"
    assert kube.requests == []


def test_dry_run_sends_no_patch(kube: FakeKube, api: KubeClient):
    kube.put(ISTIO, VS, host_vs(20))
    change = set_canary_weight(api, NS, "checkout", "primary", 0,
                               canary_service="checkout-canary",
                               stable_service="checkout-stable", dry_run=True)
    assert kube.patches() == []
    assert change.after is None
    assert [d["weight"] for d in change.patch["spec"]["http"][0]["route"]] == [0, 100]
    assert kube.get(ISTIO, VS, NS, "checkout")["spec"]["http"][0]["route"][0]["weight"] == 20


def test_server_refuses_other_patch_types(kube: FakeKube, api: KubeClient):
    """The fake checks the content type, so the merge-patch assertions above mean something."""
    kube.put(ISTIO, VS, subset_vs())
    with pytest.raises(ApiException) as err:
        api.custom.patch_namespaced_custom_object(
            ISTIO, "v1", NS, VS, "payments", [{"op": "add", "path": "/x", "value": 1}],
            _content_type="application/json-patch+json")
    assert err.value.status == 415
    assert kube.patches()[0].content_type == "application/json-patch+json"


# -- rollouts --------------------------------------------------------------------------------

ROLLOUT_STATUS = {
    "currentStepIndex": 1, "currentPodHash": "7c9d8f", "stableRS": "5b6a4e",
    "phase": "Paused", "pauseConditions": [{"reason": "CanaryPauseStep",
                                            "startTime": "2026-11-20T10:00:00Z"}],
    "canary": {"weights": {
        "canary": {"weight": 20, "podTemplateHash": "7c9d8f", "serviceName": "checkout-canary"},
        "stable": {"weight": 80, "podTemplateHash": "5b6a4e", "serviceName": "checkout-stable"},
        "verified": True}},
}


def test_rollout_state(kube: FakeKube, api: KubeClient):
    kube.put("argoproj.io", "rollouts", rollout(**ROLLOUT_STATUS))
    state = read_rollout(api, NS, "checkout")
    assert state.current_step_index == 1 and state.step_count == 4
    assert (state.canary_weight, state.stable_weight) == (20, 80)
    assert (state.canary_hash, state.stable_hash) == ("7c9d8f", "5b6a4e")
    assert (state.stable_rs, state.current_pod_hash) == ("5b6a4e", "7c9d8f")
    assert state.paused and state.pause_reasons == ("CanaryPauseStep",)
    assert not state.aborted and state.weights_verified is True
    assert (state.canary_service, state.stable_service) == ("checkout-canary",
                                                            "checkout-stable")
    assert [(r.name, r.namespace, r.routes) for r in state.virtual_services] == [
        ("checkout", NS, ("primary",))]
    assert state.split == HOSTS


def test_rollout_aborted_and_spec_paused(kube: FakeKube, api: KubeClient):
    obj = rollout(abort=True, abortedAt="2026-11-20T10:05:00Z", currentStepIndex=2)
    obj["spec"]["paused"] = True
    istio = obj["spec"]["strategy"]["canary"]["trafficRouting"]["istio"]
    istio["destinationRule"] = {"name": "checkout", "canarySubsetName": "next",
                                "stableSubsetName": "current"}
    istio["virtualServices"] = [{"name": "edge.gateways", "routes": ["web"]}]
    kube.put("argoproj.io", "rollouts", obj)
    state = read_rollout(api, NS, "checkout")
    assert state.aborted and state.aborted_at == "2026-11-20T10:05:00Z"
    assert state.paused and state.pause_reasons == ("spec.paused",)
    assert state.canary_weight is None
    assert state.split == Split(canary_subset="next", stable_subset="current")
    assert [(r.name, r.namespace) for r in state.virtual_services] == [
        ("checkout", NS), ("edge", "gateways")]


def test_canary_weight_prefers_rollout_status(kube: FakeKube, api: KubeClient):
    kube.put("argoproj.io", "rollouts", rollout(**ROLLOUT_STATUS))
    kube.put(ISTIO, VS, host_vs(50))  # the VirtualService is already ahead
    reading = lookup_canary_weight(api, NS, "checkout").reading
    assert reading is not None
    assert (reading.canary_weight, reading.stable_weight) == (20, 80)
    assert "status.canary.weights" in reading.source
    assert all("/rollouts/" in r.path for r in kube.requests)


def test_canary_weight_falls_back_to_the_virtualservice(kube: FakeKube, api: KubeClient):
    kube.put("argoproj.io", "rollouts", rollout(currentStepIndex=0))
    kube.put(ISTIO, VS, host_vs(50))
    reading = lookup_canary_weight(api, NS, "checkout").reading
    assert reading is not None
    assert (reading.canary_weight, reading.route, reading.style) == (50, "primary", "host")
    assert "VirtualService shop/checkout" in reading.source


def test_canary_weight_unknown_gives_a_reason(kube: FakeKube, api: KubeClient):
    assert lookup_canary_weight(api, NS, "checkout").reading is None
    assert "not found" in lookup_canary_weight(api, NS, "checkout").reason
    kube.put("argoproj.io", "rollouts", rollout())
    lookup = lookup_canary_weight(api, NS, "checkout")
    assert lookup.reading is None and "VirtualService" in lookup.reason
    obj = rollout()
    del obj["spec"]["strategy"]["canary"]["trafficRouting"]
    kube.put("argoproj.io", "rollouts", obj)
    assert "no Istio VirtualService" in lookup_canary_weight(api, NS, "checkout").reason


# -- command line ----------------------------------------------------------------------------

def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="canary-analyzer")
    add_weights_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def cli(kubeconfig: Path, action: str, *extra: str) -> list[str]:
    return ["weights", action, "--namespace", NS, "--virtualservice", "checkout",
            "--route", "primary", "--canary-service", "checkout-canary",
            "--stable-service", "checkout-stable", "--kubeconfig", str(kubeconfig), *extra]


def test_cli_get(kube: FakeKube, kubeconfig: Path, capsys: pytest.CaptureFixture[str]):
    kube.put(ISTIO, VS, host_vs(20))
    code, out, _ = run_cli(cli(kubeconfig, "get"), capsys)
    assert code == 0 and "canary 20, stable 80" in out
    code, out, _ = run_cli(cli(kubeconfig, "get", "--json"), capsys)
    assert code == 0
    answer = json.loads(out)
    assert (answer["canary_weight"], answer["stable_weight"], answer["route"]) == (
        20, 80, "primary")


def test_cli_set_dry_run(kube: FakeKube, kubeconfig: Path,
                         capsys: pytest.CaptureFixture[str]):
    kube.put(ISTIO, VS, host_vs(20))
    code, out, _ = run_cli(cli(kubeconfig, "set", "--canary", "0", "--dry-run"), capsys)
    assert code == 0 and "nothing sent" in out
    patch = json.loads(out.split("\n", 1)[1])
    assert [d["weight"] for d in patch["spec"]["http"][0]["route"]] == [0, 100]
    assert kube.patches() == []


def test_cli_set_and_conflict(kube: FakeKube, kubeconfig: Path,
                              capsys: pytest.CaptureFixture[str]):
    kube.put(ISTIO, VS, host_vs(20))
    code, out, err = run_cli(cli(kubeconfig, "set", "--canary", "0"), capsys)
    assert code == 0 and "now route primary (host-level): canary 0, stable 100" in out
    assert "kubectl argo rollouts abort" in err
    kube.after_get = lambda key: kube.put(ISTIO, VS, host_vs(50))
    code, _, err = run_cli(cli(kubeconfig, "set", "--canary", "10"), capsys)
    assert code == 1 and "conflict" in err and "changed since it was read" in err
    assert kube.get(ISTIO, VS, NS, "checkout")["spec"]["http"][0]["route"][0]["weight"] == 50


@pytest.mark.parametrize("value", ["-1", "101", "1.5", "x"])
def test_cli_bad_canary(kube: FakeKube, kubeconfig: Path,
                        capsys: pytest.CaptureFixture[str], value: str):
    kube.put(ISTIO, VS, host_vs(20))
    code, _, err = run_cli(cli(kubeconfig, "set", f"--canary={value}"), capsys)
    assert code == 2 and "--canary" in err
    assert kube.requests == []


def test_cli_input_and_kube_errors(kube: FakeKube, kubeconfig: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]):
    kube.put(ISTIO, VS, host_vs(20))
    code, _, err = run_cli(cli(kubeconfig, "set"), capsys)
    assert code == 2 and "--canary" in err
    argv = cli(kubeconfig, "get")
    argv[argv.index("primary")] = "nope"
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "--route" in err and "'nope'" in err
    argv = cli(kubeconfig, "get")
    argv[argv.index("checkout-canary")] = "checkout-preview"
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "--canary-service" in err
    argv = [a for a in cli(kubeconfig, "get") if a not in (
        "--canary-service", "checkout-canary", "--stable-service", "checkout-stable")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "--canary-subset" in err and "host-level" in err
    argv = cli(tmp_path / "missing", "get")
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "--kubeconfig" in err
    argv = cli(kubeconfig, "get")
    argv[argv.index("--virtualservice") + 1] = "absent"
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and "absent" in err and "not found" in err
    kube.forbidden.add(("PATCH", f"/apis/{ISTIO}/v1/namespaces/{NS}/{VS}/checkout"))
    code, _, err = run_cli(cli(kubeconfig, "set", "--canary", "5"), capsys)
    assert code == 1 and "patch" in err and "forbidden" in err


def test_in_cluster_outside_a_pod(monkeypatch: pytest.MonkeyPatch, kubeconfig: Path,
                                  capsys: pytest.CaptureFixture[str]):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="service account"):
        KubeClient.in_cluster()
    argv = [a for a in cli(kubeconfig, "get") if a not in ("--kubeconfig", str(kubeconfig))]
    code, _, err = run_cli([*argv, "--in-cluster"], capsys)
    assert code == 2 and "--in-cluster" in err
