"""Offline checks of the Kubernetes manifests under deploy/ (DESIGN §9).

Every kustomization is built with ``kubectl kustomize`` and every object is validated:

- built-in kinds with ``kubernetes-validate`` (Kubernetes 1.30 schemas, strict: unknown fields
  are errors);
- Argo Rollouts and Istio kinds against the CRD ``openAPIV3Schema`` read from
  ``../shared/crds``, made strict (``additionalProperties: false`` wherever a schema lists
  ``properties``), because the CRDs on their own accept misspelt fields that a real API server
  would silently prune;
- ServiceMonitor, PrometheusRule and the Argo CD Application structurally only: no CRD schema
  of theirs is available offline.

Then the wiring a schema cannot see (selectors, ports, names, Argo argument resolution) and the
platform's Kyverno rules (non-root, pinned image tags, requests and limits).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from analyzer.store.db import WAL_SIZE_LIMIT
from analyzer.store.retention import PRUNE_INTERVAL, parse_size

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CRDS = REPO.parent / "shared" / "crds"
KUBECTL = shutil.which("kubectl")
K8S_VERSION = "1.30"

BUILDS = {
    "dev": DEPLOY / "overlays" / "dev",
    "prod": DEPLOY / "overlays" / "prod",
    "istio-canary": DEPLOY / "examples" / "istio-canary",
    "istio-canary-background": DEPLOY / "examples" / "istio-canary-background",
}
OVERLAYS = ("dev", "prod")
EXAMPLES = ("istio-canary", "istio-canary-background")

ANALYZER = "canary-analyzer"
ANALYZER_NAMESPACE = "canary-analyzer"
IMAGE_REPOSITORY = "ghcr.io/canary-analyzer/canary-analyzer"

# API groups of the built-in kinds kubernetes-validate knows.
BUILTIN_GROUPS = {"", "apps", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
                  "autoscaling", "batch"}
CRD_FILES = {
    ("argoproj.io", "Rollout"): "argo-rollouts/rollout-crd.yaml",
    ("argoproj.io", "AnalysisTemplate"): "argo-rollouts/analysis-template-crd.yaml",
    ("argoproj.io", "ClusterAnalysisTemplate"): "argo-rollouts/cluster-analysis-template-crd.yaml",
    ("argoproj.io", "AnalysisRun"): "argo-rollouts/analysis-run-crd.yaml",
    ("networking.istio.io", "VirtualService"): "istio/virtualservice.yaml",
    ("networking.istio.io", "DestinationRule"): "istio/destinationrule.yaml",
    ("networking.istio.io", "Gateway"): "istio/gateway.yaml",
}
# The request fields of POST /api/v1/judge (DESIGN §3).
JUDGE_FIELDS = {"namespace", "rollout", "canary_revision", "canary", "baseline",
                "canary_service", "baseline_service", "reporter", "config", "start", "end",
                "final", "canary_weight"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

Obj = dict[str, Any]

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not on PATH: cannot run "
                                   "`kubectl kustomize` to build deploy/")
needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"CRD schemas not found at {CRDS} "
                                "(the shared/ folder beside the repository)")


def load_yaml_all(text: str) -> list[Obj]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


# --------------------------------------------------------------------------------------------
# Building


@functools.cache
def _build(path: Path) -> tuple[Obj, ...]:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return tuple(load_yaml_all(proc.stdout))


def build(name: str) -> list[Obj]:
    if KUBECTL is None:
        pytest.skip("kubectl not on PATH: cannot run `kubectl kustomize` to build deploy/")
    return copy.deepcopy(list(_build(BUILDS[name])))


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o.get("kind") == kind
            and (name is None or o.get("metadata", {}).get("name") == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def group_of(obj: Obj) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------------------------
# Strict CRD schemas


def make_strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 (structural) schema that rejects unknown fields.

    ``additionalProperties: false`` goes wherever a schema lists ``properties``, unless the
    schema keeps unknown fields on purpose (``x-kubernetes-preserve-unknown-fields``, e.g. an
    AnalysisTemplate's ``jsonBody``) or already says what extra properties may be. Only the
    structural part (properties, items, additionalProperties) is walked: in a structural
    schema ``allOf``/``anyOf``/``oneOf``/``not`` carry value checks such as ``required``, and
    closing them would reject the fields declared beside them.
    """
    if not isinstance(schema, dict):
        return schema
    strict = dict(schema)
    if ("properties" in strict and "additionalProperties" not in strict
            and not strict.get("x-kubernetes-preserve-unknown-fields")):
        strict["additionalProperties"] = False
    if isinstance(strict.get("properties"), dict):
        strict["properties"] = {k: make_strict(v) for k, v in strict["properties"].items()}
    if isinstance(strict.get("items"), dict):
        strict["items"] = make_strict(strict["items"])
    if isinstance(strict.get("additionalProperties"), dict):
        strict["additionalProperties"] = make_strict(strict["additionalProperties"])
    return strict


# What the API server itself accepts in metadata of any object (a subset of ObjectMeta that
# manifests write; the server fills in the rest). Strict, so `label:` for `labels:` fails.
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


@functools.cache
def crd_schema(group: str, kind: str, version: str, strict: bool = True) -> dict[str, Any]:
    path = CRDS / CRD_FILES[(group, kind)]
    if not path.is_file():
        pytest.skip(f"CRD schema {path} not found")
    crd = load_yaml_all(path.read_text(encoding="utf-8"))[0]
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, path
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in versions, f"{kind}: version {version} not in {sorted(versions)} ({path})"
    assert versions[version].get("served"), f"{group}/{version} {kind} is not served"
    schema = copy.deepcopy(versions[version]["schema"]["openAPIV3Schema"])
    props = schema.setdefault("properties", {})
    # Istio's CRDs list only spec/status; the API server adds these to every object.
    props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = OBJECT_META
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind",
                                 "metadata"})
    return make_strict(schema) if strict else schema


def crd_errors(obj: Obj, strict: bool = True) -> list[str]:
    from jsonschema import Draft7Validator

    schema = crd_schema(group_of(obj), obj["kind"], obj["apiVersion"].split("/")[1], strict)
    validator = Draft7Validator(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                  for e in validator.iter_errors(obj))


# --------------------------------------------------------------------------------------------
# Structural checks for kinds without an offline schema


def _check_keys(where: str, data: dict[str, Any], allowed: set[str], required: set[str],
                problems: list[str]) -> None:
    if not isinstance(data, dict):
        problems.append(f"{where}: not a mapping")
        return
    problems += [f"{where}: unknown field {k!r}" for k in sorted(set(data) - allowed)]
    problems += [f"{where}: missing {k!r}" for k in sorted(required - set(data))]


def _string_map(where: str, data: Any, problems: list[str]) -> None:
    if data is None:
        return
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        problems.append(f"{where}: must map strings to strings")


def _monitoring_root_problems(obj: Obj) -> list[str]:
    """What every prometheus-operator object needs at its top level."""
    problems: list[str] = []
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"apiVersion {obj.get('apiVersion')!r} is not monitoring.coreos.com/v1")
    _check_keys("(root)", obj, {"apiVersion", "kind", "metadata", "spec"},
                {"apiVersion", "kind", "metadata", "spec"}, problems)
    return problems


def servicemonitor_problems(obj: Obj) -> list[str]:
    problems = _monitoring_root_problems(obj)
    spec = obj.get("spec", {})
    _check_keys("spec", spec, {"selector", "endpoints", "namespaceSelector", "jobLabel",
                               "targetLabels", "podTargetLabels", "sampleLimit"},
                {"selector", "endpoints"}, problems)
    selector = spec.get("selector", {})
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        problems.append("spec.selector selects nothing")
    _string_map("spec.selector.matchLabels", selector.get("matchLabels"), problems)
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        problems.append("spec.endpoints must be a non-empty list")
        return problems
    allowed = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
               "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "params",
               "tlsConfig", "bearerTokenSecret", "basicAuth", "authorization", "oauth2",
               "followRedirects", "enableHttp2", "filterRunning", "proxyUrl"}
    for i, endpoint in enumerate(endpoints):
        _check_keys(f"spec.endpoints[{i}]", endpoint, allowed, set(), problems)
        if "port" not in endpoint and "targetPort" not in endpoint:
            problems.append(f"spec.endpoints[{i}]: needs port or targetPort")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint and not DURATION.match(str(endpoint[key])):
                problems.append(f"spec.endpoints[{i}].{key}: {endpoint[key]!r} is no duration")
        if "path" in endpoint and not str(endpoint["path"]).startswith("/"):
            problems.append(f"spec.endpoints[{i}].path must start with /")
    return problems


def rule_groups_problems(groups: Any, where: str) -> list[str]:
    """Prometheus rule-file structure (what promtool check rules enforces, minus PromQL)."""
    problems: list[str] = []
    if not isinstance(groups, list) or not groups:
        return [f"{where}: must be a non-empty list of groups"]
    names = [g.get("name") for g in groups if isinstance(g, dict)]
    if len(names) != len(set(names)):
        problems.append(f"{where}: group names repeat")
    for i, group in enumerate(groups):
        gw = f"{where}[{i}]"
        _check_keys(gw, group, {"name", "interval", "rules", "limit", "query_offset",
                                "partial_response_strategy"}, {"name", "rules"}, problems)
        for j, rule in enumerate(group.get("rules") or []):
            rw = f"{gw}.rules[{j}]"
            _check_keys(rw, rule, {"alert", "record", "expr", "for", "keep_firing_for",
                                   "labels", "annotations"}, {"expr"}, problems)
            if ("alert" in rule) == ("record" in rule):
                problems.append(f"{rw}: needs exactly one of alert or record")
            if not str(rule.get("expr", "")).strip():
                problems.append(f"{rw}: empty expr")
            if "for" in rule and not DURATION.match(str(rule["for"])):
                problems.append(f"{rw}.for: {rule['for']!r} is no duration")
            _string_map(f"{rw}.labels", rule.get("labels"), problems)
            _string_map(f"{rw}.annotations", rule.get("annotations"), problems)
    return problems


def prometheusrule_problems(obj: Obj) -> list[str]:
    problems = _monitoring_root_problems(obj)
    _check_keys("spec", obj.get("spec", {}), {"groups"}, {"groups"}, problems)
    return problems + rule_groups_problems(obj.get("spec", {}).get("groups"), "spec.groups")


STRUCTURAL = {
    ("monitoring.coreos.com", "ServiceMonitor"): servicemonitor_problems,
    ("monitoring.coreos.com", "PrometheusRule"): prometheusrule_problems,
}


def validation_errors(obj: Obj) -> list[str]:
    import kubernetes_validate

    group, kind = group_of(obj), obj.get("kind", "")
    meta = obj.get("metadata", {})
    if not meta.get("name"):
        return ["metadata.name missing"]
    if group in BUILTIN_GROUPS:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [str(exc)]
        except kubernetes_validate.SchemaNotFoundError:
            return [f"kubernetes-validate has no {K8S_VERSION} schema for {obj['apiVersion']} "
                    f"{kind}"]
        return []
    if (group, kind) in CRD_FILES:
        return crd_errors(obj)
    if (group, kind) in STRUCTURAL:
        return STRUCTURAL[(group, kind)](obj)
    return [f"no validator for {obj.get('apiVersion')} {kind}: add one to this test"]


# --------------------------------------------------------------------------------------------
# The platform's Kyverno rules, as a checker of its own so it can be tested


def pod_specs(obj: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec in an object (Deployment, Rollout, Job, CronJob, Pod, ...)."""
    if isinstance(obj, dict):
        if isinstance(obj.get("containers"), list):
            yield path or "(root)", obj
            return
        for key, value in obj.items():
            yield from pod_specs(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from pod_specs(value, f"{path}[{i}]")


def image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (means :latest)"
    tag = last.rsplit(":", 1)[1]
    if not tag or tag == "latest":
        return f"image {image!r} uses :latest"
    return None


def policy_violations(obj: Obj) -> list[str]:
    """Kyverno rules: non-root, no :latest / untagged image, cpu+memory requests and limits."""
    found: list[str] = []
    kind_name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    for path, spec in pod_specs(obj.get("spec", {}), "spec"):
        pod_ctx = spec.get("securityContext") or {}
        containers = [("containers", c) for c in spec.get("containers", [])]
        containers += [("initContainers", c) for c in spec.get("initContainers") or []]
        containers += [("ephemeralContainers", c) for c in spec.get("ephemeralContainers") or []]
        for field, container in containers:
            where = f"{kind_name} {path}.{field}[{container.get('name')}]"
            ctx = container.get("securityContext") or {}
            non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
            uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
            if not non_root:
                found.append(f"{where}: runAsNonRoot is not true")
            if uid == 0:
                found.append(f"{where}: runAsUser is 0")
            problem = image_problem(str(container.get("image", "")))
            if problem:
                found.append(f"{where}: {problem}")
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not (resources.get(section) or {}).get(resource):
                        found.append(f"{where}: no {resource} {section[:-1]}")
    return found


# --------------------------------------------------------------------------------------------
# Argo Rollouts argument resolution, as the controller does it (research §2.7)


SECRET_PLACEHOLDER = "<secret {name}/{key}>"
HASH_PLACEHOLDER = "<pod-template-hash {which}>"


def resolve_args(template: Obj, supplied: list[Obj], rollout: Obj) -> dict[str, str]:
    """Template defaults overridden by the Rollout's args; fieldRef metadata.* from the Rollout;
    a template arg from ``valueFrom.secretKeyRef`` (read by the controller from a Secret in the
    run's namespace) resolves to a placeholder naming the Secret and key, and a Rollout arg from
    ``valueFrom.podTemplateHashValue`` (the Latest or Stable ReplicaSet's hash, known only at
    run time) to a placeholder naming which."""
    values: dict[str, str | None] = {}
    for arg in template["spec"]["args"]:
        ref = arg.get("valueFrom", {}).get("secretKeyRef")
        values[arg["name"]] = (SECRET_PLACEHOLDER.format(**ref) if ref is not None
                               else arg.get("value"))
    for arg in supplied:
        assert arg["name"] in values, (
            f"Rollout passes arg {arg['name']!r} that AnalysisTemplate "
            f"{template['metadata']['name']} does not declare")
        if "value" in arg:
            values[arg["name"]] = arg["value"]
        elif "podTemplateHashValue" in arg["valueFrom"]:
            which = arg["valueFrom"]["podTemplateHashValue"]
            assert which in ("Latest", "Stable"), which
            values[arg["name"]] = HASH_PLACEHOLDER.format(which=which)
        else:
            field_path = arg["valueFrom"]["fieldRef"]["fieldPath"]
            node: Any = rollout
            for part in field_path.split("."):
                node = node[part]
            values[arg["name"]] = str(node)
    missing = [k for k, v in values.items() if v is None]
    assert not missing, f"args {missing} were not resolved (Argo fails the AnalysisRun)"
    return {k: v for k, v in values.items() if v is not None}


def substitute(metric: Obj, args: dict[str, str]) -> Obj:
    """fasttemplate over the JSON-marshalled metric, values escaped like strconv.Quote."""
    text = json.dumps(metric)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in args, f"{{{{args.{name}}}}} is not a declared argument"
        return json.dumps(args[name])[1:-1]

    text = re.sub(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}", value, text)
    assert "{{" not in text, f"unresolved placeholder left in {text}"
    return json.loads(text)


def analysis_refs(rollout: Obj) -> list[tuple[str, Obj]]:
    canary = rollout["spec"]["strategy"]["canary"]
    refs = [(f"steps[{i}]", step["analysis"]) for i, step in enumerate(canary.get("steps", []))
            if "analysis" in step]
    if "analysis" in canary:
        refs.append(("background", canary["analysis"]))
    return refs


# ============================================================================================
# Tests: every object validates


@needs_kubectl
@needs_crds
@pytest.mark.parametrize("name", BUILDS)
def test_every_built_object_validates(name: str) -> None:
    pytest.importorskip("kubernetes_validate", reason="pip package kubernetes-validate missing")
    pytest.importorskip("jsonschema", reason="pip package jsonschema missing")
    objs = build(name)
    assert objs, f"{name} builds to nothing"
    problems = [f"{o.get('kind')}/{o.get('metadata', {}).get('name')}: {p}"
                for o in objs for p in validation_errors(o)]
    assert not problems, "\n".join(problems)


@needs_crds
def test_strict_crd_schema_rejects_misspelt_fields() -> None:
    pytest.importorskip("jsonschema", reason="pip package jsonschema missing")
    rollout = yaml.safe_load((DEPLOY / "examples/istio-canary/rollout.yaml").read_text())
    assert crd_errors(rollout) == []

    misspelt = copy.deepcopy(rollout)
    misspelt["spec"]["stratgy"] = misspelt["spec"].pop("strategy")
    # The CRD as published accepts it (a real API server would silently prune the field)...
    assert crd_errors(misspelt, strict=False) == []
    # ...the strict schema does not.
    errors = crd_errors(misspelt)
    assert any("stratgy" in e for e in errors), errors

    nested = copy.deepcopy(rollout)
    nested["spec"]["strategy"]["canary"]["trafficRouting"]["istio"]["virtualService"][
        "route"] = ["primary"]
    assert any("'route' was unexpected" in e for e in crd_errors(nested))

    wrong_type = copy.deepcopy(rollout)
    wrong_type["spec"]["replicas"] = "four"
    assert any("spec/replicas" in e for e in crd_errors(wrong_type))

    vs = yaml.safe_load((DEPLOY / "examples/istio-canary/virtualservice.yaml").read_text())
    assert crd_errors(vs) == []
    vs["spec"]["htttp"] = vs["spec"].pop("http")
    assert any("htttp" in e for e in crd_errors(vs))


@needs_crds
def test_strict_schema_keeps_preserve_unknown_fields_open() -> None:
    """jsonBody is free-form in the CRD; strictness must not close it."""
    pytest.importorskip("jsonschema", reason="pip package jsonschema missing")
    template = yaml.safe_load((DEPLOY / "examples/istio-canary/analysistemplate.yaml")
                              .read_text())
    template["spec"]["metrics"][0]["provider"]["web"]["jsonBody"]["anything"] = {"x": [1]}
    assert crd_errors(template) == []


def test_builtin_validation_is_strict() -> None:
    pytest.importorskip("kubernetes_validate", reason="pip package kubernetes-validate missing")
    service = yaml.safe_load((DEPLOY / "base/service.yaml").read_text())
    assert validation_errors(service) == []
    service["spec"]["sessionAfinity"] = service["spec"].pop("sessionAffinity")
    assert any("sessionAfinity" in e for e in validation_errors(service))
    odd = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert validation_errors(odd) == ["no validator for example.com/v1 Widget: add one to "
                                      "this test"]


def test_structural_checkers_catch_mistakes() -> None:
    monitor = yaml.safe_load((DEPLOY / "base/servicemonitor.yaml").read_text())
    assert servicemonitor_problems(monitor) == []
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    problems = servicemonitor_problems(monitor)
    assert any("intervall" in p for p in problems) and any("no duration" in p for p in problems)

    rule = yaml.safe_load((DEPLOY / "base/prometheusrule.yaml").read_text())
    assert prometheusrule_problems(rule) == []
    rule["spec"]["groups"][0]["rules"][0]["record"] = "x"
    rule["spec"]["groups"][0]["rules"][1]["labels"] = {"severity": 2}
    problems = prometheusrule_problems(rule)
    assert any("exactly one of alert or record" in p for p in problems)
    assert any("strings to strings" in p for p in problems)


# ============================================================================================
# Tests: the Kyverno rules


@needs_kubectl
@pytest.mark.parametrize("name", BUILDS)
def test_platform_policies(name: str) -> None:
    objs = build(name)
    with_pods = [o for o in objs if any(True for _ in pod_specs(o.get("spec", {})))]
    assert with_pods, f"{name}: no object with a pod template"
    violations = [v for o in objs for v in policy_violations(o)]
    assert not violations, "\n".join(violations)


def test_policy_checker_catches_violations() -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"template": {"spec": {
            "securityContext": {"runAsNonRoot": True},
            "initContainers": [{"name": "init", "image": "busybox:1.36",
                                "securityContext": {"runAsNonRoot": False},
                                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"},
                                              "limits": {"cpu": "1m", "memory": "1Mi"}}}],
            "containers": [
                {"name": "latest", "image": "nginx:latest",
                 "resources": {"requests": {"cpu": "1m", "memory": "1Mi"},
                               "limits": {"cpu": "1m"}}},
                {"name": "untagged", "image": "registry.local:5000/team/app",
                 "resources": {"requests": {"cpu": "1m", "memory": "1Mi"},
                               "limits": {"cpu": "1m", "memory": "1Mi"}}},
                {"name": "root", "image": "app@sha256:" + "0" * 64,
                 "securityContext": {"runAsUser": 0},
                 "resources": {"requests": {"cpu": "1m", "memory": "1Mi"},
                               "limits": {"cpu": "1m", "memory": "1Mi"}}},
            ],
        }}},
    }
    found = "\n".join(policy_violations(deployment))
    assert "containers[latest]: image 'nginx:latest' uses :latest" in found
    assert "containers[latest]: no memory limit" in found
    assert "containers[untagged]: image 'registry.local:5000/team/app' has no tag" in found
    assert "initContainers[init]: runAsNonRoot is not true" in found
    assert "containers[root]: runAsUser is 0" in found
    assert len(policy_violations(deployment)) == 5
    # A CronJob's pod template sits deeper; it is found too.
    cronjob = {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "c:1"}]}}}}}}
    assert len(policy_violations(cronjob)) == 5


# ============================================================================================
# Tests: the analyzer overlays


def analyzer_objects(name: str) -> tuple[list[Obj], Obj, Obj]:
    objs = build(name)
    deployment = one(objs, "Deployment", ANALYZER)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == [ANALYZER]
    return objs, deployment, containers[0]


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_holds_the_analyzer_deployment(name: str) -> None:
    objs, deployment, container = analyzer_objects(name)
    assert all(o["metadata"].get("namespace") == ANALYZER_NAMESPACE for o in objs
               if o["kind"] not in {"ClusterRole", "ClusterRoleBinding"})
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    args = container["args"]
    assert args[0] == "serve"
    for flag, value in [("--host", "0.0.0.0"), ("--port", "8080"),
                        ("--prometheus", "http://prometheus-operated.monitoring.svc:9090"),
                        ("--config-dir", "/etc/canary-analyzer/configs")]:
        assert args[args.index(flag) + 1] == value
    assert "--in-cluster" in args
    assert sum(a.split("=")[0] in ("--database", "--database-file") for a in args) == 1

    replicas = deployment["spec"]["replicas"]
    pdb = one(objs, "PodDisruptionBudget", ANALYZER)
    assert pdb["spec"]["minAvailable"] == 1
    assert replicas > pdb["spec"]["minAvailable"], "the PDB would block every node drain"
    assert replicas == {"dev": 2, "prod": 3}[name]

    pod = deployment["spec"]["template"]["spec"]
    ctx = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001 and ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_wiring(name: str) -> None:
    """Names, selectors and ports agree across objects (what no schema checks)."""
    objs, deployment, container = analyzer_objects(name)
    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Start-up runs the database migration before listening: the startupProbe gives it a
    # minute before the liveness probe may restart the container.
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert "initialDelaySeconds" not in container["livenessProbe"]

    service = one(objs, "Service", ANALYZER)
    assert selects(service["spec"]["selector"], pod_labels)
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8080, "http")]

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    assert "emptyDir" in volumes[mounts["/var/lib/canary-analyzer"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    if not any(a.startswith("--database-file") for a in container["args"]):
        # SQLite on the emptyDir: the size budget, the WAL and one pruning interval of
        # growth (5 min at 100 calls/s of ~4 KiB) fit in the volume's sizeLimit.
        (budget,) = [a.split("=")[1] for a in container["args"]
                     if a.startswith("--store-size-limit=")]
        volume = volumes[mounts["/var/lib/canary-analyzer"]]["emptyDir"]["sizeLimit"]
        growth = 100 * PRUNE_INTERVAL * 4200
        assert parse_size(budget) + WAL_SIZE_LIMIT + growth < parse_size(volume)
    configs = volumes[mounts["/etc/canary-analyzer/configs"]]["configMap"]["name"]
    assert configs == "canary-analyzer-configs"
    one(objs, "ConfigMap", configs)

    account = one(objs, "ServiceAccount", pod["serviceAccountName"])
    assert account["metadata"]["name"] == ANALYZER
    one(objs, "ClusterRole", ANALYZER)
    # Dev binds the read-only role cluster-wide; prod only where a namespace binds it.
    bindings = find(objs, "ClusterRoleBinding")
    assert len(bindings) == {"dev": 1, "prod": 0}[name]
    for binding in bindings:
        assert binding["subjects"] == [ANALYZER_SUBJECT]
        assert binding["roleRef"] == ANALYZER_ROLE_REF

    monitor = one(objs, "ServiceMonitor", ANALYZER)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
    # DESIGN §8 metrics carry their own `namespace` label (the rollout's).
    assert endpoint.get("honorLabels") is True

    policy = one(objs, "NetworkPolicy", ANALYZER)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    (rule,) = policy["spec"]["ingress"]
    sources = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
               for p in rule["from"]}
    assert sources == {"argo-rollouts", "monitoring"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]

    pdb = one(objs, "PodDisruptionBudget", ANALYZER)
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == ANALYZER, obj["kind"]


ANALYZER_SUBJECT = {"kind": "ServiceAccount", "name": ANALYZER, "namespace": ANALYZER_NAMESPACE}
ANALYZER_ROLE_REF = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": ANALYZER}
READ_VERBS = {"get", "list", "watch"}


def granted(role: Obj) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_rbac_is_read_only(name: str) -> None:
    """`serve` only reads (one Rollout and one VirtualService by name); `weights set` runs with
    the operator's own kubeconfig, so nothing here may write."""
    objs = build(name)
    assert not find(objs, "Role") and not find(objs, "RoleBinding")
    (role,) = find(objs, "ClusterRole")
    assert granted(role) == {("networking.istio.io", "virtualservices", "get"),
                             ("argoproj.io", "rollouts", "get")}
    assert all(verb in READ_VERBS for _, _, verb in granted(role))
    assert all("resourceNames" not in rule and "nonResourceURLs" not in rule
               and "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
               for rule in role["rules"])


@needs_kubectl
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_namespace_binds_the_read_only_role(name: str) -> None:
    """With prod's namespaced RBAC the app namespace grants the analyzer its reads itself."""
    objs = build(name)
    (binding,) = find(objs, "RoleBinding")
    assert binding["metadata"]["namespace"] == one(objs, "Rollout", "checkout")["metadata"][
        "namespace"]
    assert binding["roleRef"] == ANALYZER_ROLE_REF
    assert binding["subjects"] == [ANALYZER_SUBJECT]
    assert not find(objs, "Role") and not find(objs, "ClusterRole")


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_configmap_configs_load_with_the_service_loader(name: str) -> None:
    from analyzer.config.loading import parse_config

    configmap = one(build(name), "ConfigMap", "canary-analyzer-configs")
    assert set(configmap["data"]) == {"strict.yaml"}
    for key, text in configmap["data"].items():
        config = parse_config(yaml.safe_load(text), f"ConfigMap canary-analyzer-configs/{key}")
        assert config.name == "strict"
        assert (config.judge.alpha, config.judge.pass_score, config.judge.marginal_score) == (
            0.01, 95, 75)
        error_rate, latency = config.metric("error-rate"), config.metric("latency")
        assert error_rate is not None and latency is not None
        assert (error_rate.kind, error_rate.critical, error_rate.allowed_increase,
                error_rate.group) == ("istio-error-rate", True, 1.2, "availability")
        assert (latency.kind, latency.quantiles, latency.allowed_increase, latency.group) == (
            "istio-latency", (0.5, 0.9, 0.99), 1.1, "latency")
        assert config.groups == {"availability": 60, "latency": 40}


@needs_kubectl
def test_prod_reads_the_database_url_from_a_secret_file() -> None:
    objs, deployment, container = analyzer_objects("prod")
    assert "--database-file=/var/run/secrets/canary-analyzer-database/url" in container["args"]
    assert not any("sqlite" in a or "postgres" in a for a in container["args"])
    mount = next(m for m in container["volumeMounts"]
                 if m["mountPath"] == "/var/run/secrets/canary-analyzer-database")
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "canary-analyzer-database"
    assert secret["items"] == [{"key": "url", "path": "url"}]
    assert secret["defaultMode"] & 0o007 == 0, "the URL must not be world-readable"

    hpa = one(objs, "HorizontalPodAutoscaler", ANALYZER)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": ANALYZER}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


@needs_kubectl
@pytest.mark.parametrize("name", BUILDS)
def test_no_literal_secrets(name: str) -> None:
    objs = build(name)
    for secret in find(objs, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), (
            f"{name}: Secret {secret['metadata']['name']} holds literal data")
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE|DSN|_URL$", re.IGNORECASE)
    for obj in objs:
        for _, pod in pod_specs(obj.get("spec", {})):
            for container in pod["containers"] + pod.get("initContainers", []):
                for var in container.get("env", []):
                    if sensitive.search(var["name"]):
                        assert "value" not in var, f"{name}: {var['name']} is a literal"
                problems = argv_secret_problems(container)
                assert not problems, f"{name}: {problems}"


def argv_secret_problems(container: Obj) -> list[str]:
    """Secrets that would reach the container's argv, which any user of the node can read in
    /proc/<pid>/cmdline: credentials in a URL, or a Secret-backed env var that Kubernetes
    expands from ``$(VAR)``."""
    secret_vars = {var["name"] for var in container.get("env", [])
                   if "secretKeyRef" in var.get("valueFrom", {})}
    problems = []
    for arg in container.get("command", []) + container.get("args", []):
        if re.search(r"://[^/@\s]+:[^/@\s]+@", arg):
            problems.append(f"credentials in an argument: {arg}")
        expanded = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg))
        if expanded & secret_vars:
            problems.append(f"Secret-backed env var expanded into an argument: {arg}")
    return problems


def test_argv_secret_checker_catches_the_old_prod_shape() -> None:
    old = {"args": ["serve", "--database=$(CANARY_ANALYZER_DATABASE)",
                    "--other=postgresql://u:pw@db/x"],
           "env": [{"name": "CANARY_ANALYZER_DATABASE", "valueFrom": {"secretKeyRef": {
               "name": "canary-analyzer-database", "key": "url"}}}]}
    assert len(argv_secret_problems(old)) == 2
    assert argv_secret_problems({"args": ["--database-file=/run/url", "$(PLAIN)"],
                                 "env": [{"name": "PLAIN", "value": "x"}]}) == []


@needs_kubectl
def test_prod_database_patch_fails_loudly_when_base_args_move(tmp_path: Path) -> None:
    """The JSON6902 `test` ops guard the positional patch: reordered base args break the build."""
    copy_root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_root)
    deployment = copy_root / "base" / "deployment.yaml"
    text = deployment.read_text()
    moved = text.replace("            - --in-cluster\n", "").replace(
        "            - serve\n", "            - serve\n            - --in-cluster\n")
    assert moved != text
    deployment.write_text(moved)
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(copy_root / "overlays" / "prod")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "test" in proc.stderr.lower()


# ============================================================================================
# Tests: the Istio canary examples


@needs_kubectl
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_rollout_uses_istio_host_level_routing(name: str) -> None:
    objs = build(name)
    rollout = one(objs, "Rollout", "checkout")
    assert rollout["metadata"]["namespace"] == "shop"
    canary = rollout["spec"]["strategy"]["canary"]
    assert (canary["canaryService"], canary["stableService"]) == ("checkout-canary",
                                                                  "checkout-stable")
    pod_labels = rollout["spec"]["template"]["metadata"]["labels"]
    assert selects(rollout["spec"]["selector"]["matchLabels"], pod_labels)
    container_ports = {p["name"] for c in rollout["spec"]["template"]["spec"]["containers"]
                       for p in c.get("ports", [])}
    for service_name in (canary["canaryService"], canary["stableService"]):
        service = one(objs, "Service", service_name)
        assert selects(service["spec"]["selector"], pod_labels)
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports

    reference = canary["trafficRouting"]["istio"]["virtualService"]
    vs = one(objs, "VirtualService", reference["name"])
    assert vs["apiVersion"] == "networking.istio.io/v1"
    http_routes = {r.get("name"): r for r in vs["spec"]["http"]}
    assert reference["routes"] == ["primary"]
    for route_name in reference["routes"]:
        assert route_name in http_routes, f"route {route_name} not in VirtualService"
        # Argo matches a destination by the host's first DNS label.
        weights = {d["destination"]["host"].split(".")[0]: d["weight"]
                   for d in http_routes[route_name]["route"]}
        assert weights == {"checkout-stable": 100, "checkout-canary": 0}


@needs_kubectl
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_analysis_template_calls_the_judge(name: str) -> None:
    objs = build(name)
    templates = find(objs, "AnalysisTemplate")
    assert templates
    analyzer = one(build("prod"), "Service", ANALYZER)
    expected_url = (f"http://{analyzer['metadata']['name']}.{analyzer['metadata']['namespace']}"
                    f".svc:{analyzer['spec']['ports'][0]['port']}/api/v1/judge")
    for template in templates:
        (metric,) = template["spec"]["metrics"]
        web = metric["provider"]["web"]
        assert web["url"].endswith("/api/v1/judge")
        assert web["url"] == expected_url
        assert web["method"] == "POST"
        assert web["jsonPath"] == "{$.verdict}"
        assert web["timeoutSeconds"] == 20
        assert set(web["jsonBody"]) <= JUDGE_FIELDS
        assert metric["successCondition"] == 'result == "pass"'
        assert metric["failureCondition"] == 'result == "fail"'
        assert metric["interval"] == "30s"
        assert (metric["failureLimit"], metric["inconclusiveLimit"],
                metric["consecutiveErrorLimit"]) == (0, 0, 4)
        if name == "istio-canary":
            assert metric["count"] == 10
        else:
            assert "count" not in metric, "background analysis runs until terminated"


@needs_kubectl
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_analysis_args_resolve_to_a_judge_request(name: str) -> None:
    """Every analysis the Rollout starts resolves its args and yields a valid request body."""
    objs = build(name)
    rollout = one(objs, "Rollout", "checkout")
    refs = analysis_refs(rollout)
    bodies = []
    for where, analysis in refs:
        (ref,) = analysis["templates"]
        template = one(objs, "AnalysisTemplate", ref["templateName"])
        args = resolve_args(template, analysis.get("args", []), rollout)
        for metric in template["spec"]["metrics"]:
            resolved = substitute(metric, args)
            body = resolved["provider"]["web"]["jsonBody"]
            assert body["namespace"] == "shop", where
            assert body["rollout"] == rollout["metadata"]["name"], where
            assert body["canary_service"] == rollout["spec"]["strategy"]["canary"][
                "canaryService"], where
            assert body["baseline_service"] == rollout["spec"]["strategy"]["canary"][
                "stableService"], where
            assert body.get("final", "false") in ("true", "false"), where
            # The canary's pod-template hash keys the session (DESIGN §3 canary_revision).
            assert body["canary_revision"] == HASH_PLACEHOLDER.format(which="Latest"), where
            bodies.append(body)

    if name == "istio-canary":
        steps = rollout["spec"]["strategy"]["canary"]["steps"]
        shape = [("setWeight", s["setWeight"]) if "setWeight" in s else (next(iter(s)), None)
                 for s in steps]
        assert shape == [("setWeight", 5), ("analysis", None), ("setWeight", 25),
                         ("analysis", None), ("setWeight", 50), ("analysis", None),
                         ("analysis", None)]
        assert [b["final"] for b in bodies] == ["false", "false", "false", "true"]
    else:
        canary = rollout["spec"]["strategy"]["canary"]
        assert [w for w, _ in refs] == ["background"]
        steps = canary["steps"]
        assert not any("analysis" in s for s in steps)
        start = canary["analysis"]["startingStep"]
        assert 0 < start < len(steps)
        assert any("setWeight" in s and s["setWeight"] > 0 for s in steps[:start]), (
            "background analysis must start after the canary gets traffic")
        assert "final" not in bodies[0]


@needs_kubectl
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_analysis_sends_the_bearer_token_from_a_secret(name: str) -> None:
    """The prod overlay guards /api/v1/* with a token; the templates send it from a Secret."""
    objs = build(name)
    rollout = one(objs, "Rollout", "checkout")
    for _, analysis in analysis_refs(rollout):
        (ref,) = analysis["templates"]
        template = one(objs, "AnalysisTemplate", ref["templateName"])
        (token_arg,) = [a for a in template["spec"]["args"] if a["name"] == "analyzer-token"]
        assert token_arg == {"name": "analyzer-token", "valueFrom": {"secretKeyRef": {
            "name": "canary-analyzer-token", "key": "token"}}}
        assert not any(a["name"] == "analyzer-token" for a in analysis.get("args", [])), (
            "the token must not pass through the Rollout")
        args = resolve_args(template, analysis.get("args", []), rollout)
        for metric in template["spec"]["metrics"]:
            web = substitute(metric, args)["provider"]["web"]
            assert web["headers"] == [{"key": "Authorization", "value": "Bearer " + (
                SECRET_PLACEHOLDER.format(name="canary-analyzer-token", key="token"))}]


@needs_kubectl
def test_prod_requires_the_token_and_dev_does_not() -> None:
    _, deployment, container = analyzer_objects("prod")
    token_args = [a for a in container["args"] if a.startswith("--token-file")]
    assert token_args == ["--token-file=/var/run/secrets/canary-analyzer/token"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in container["volumeMounts"]
                 if m["mountPath"] == "/var/run/secrets/canary-analyzer")
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "canary-analyzer-token"
    assert not secret.get("optional"), "prod must not start without its token"
    assert secret["items"] == [{"key": "token", "path": "token"}]
    assert secret["defaultMode"] & 0o007 == 0, "the token must not be world-readable"

    _, dev_deployment, dev_container = analyzer_objects("dev")
    assert not any(a.startswith("--token-file") for a in dev_container["args"])
    assert not any("secret" in v for v in dev_deployment["spec"]["template"]["spec"]["volumes"])


def test_argo_substitution_helper_escapes_and_rejects_unknown_args() -> None:
    metric = {"provider": {"web": {"jsonBody": {"a": "{{ args.x }}", "b": "{{args.y}}"}}}}
    resolved = substitute(metric, {"x": 'quote " and \\', "y": "true"})
    assert resolved["provider"]["web"]["jsonBody"] == {"a": 'quote " and \\', "b": "true"}
    with pytest.raises(AssertionError, match="not a declared argument"):
        substitute(metric, {"x": "1"})


# ============================================================================================
# Tests: Argo CD Application, Dockerfile


def test_argocd_application() -> None:
    app = yaml.safe_load((DEPLOY / "argocd" / "application.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    problems: list[str] = []
    _check_keys("(root)", app, {"apiVersion", "kind", "metadata", "spec"},
                {"apiVersion", "kind", "metadata", "spec"}, problems)
    _check_keys("spec", app["spec"], {"project", "source", "sources", "destination",
                                      "syncPolicy", "ignoreDifferences", "info",
                                      "revisionHistoryLimit"},
                {"project", "source", "destination"}, problems)
    _check_keys("spec.source", app["spec"]["source"],
                {"repoURL", "targetRevision", "path", "kustomize", "helm", "directory",
                 "plugin", "chart", "ref", "name"}, {"repoURL", "path"}, problems)
    _check_keys("spec.destination", app["spec"]["destination"], {"server", "name", "namespace"},
                {"namespace"}, problems)
    assert not problems, problems
    source = app["spec"]["source"]
    assert source["repoURL"] == "https://git.example.com/platform/canary-analyzer.git"
    assert (REPO / source["path"]).resolve() == BUILDS["prod"].resolve()
    assert app["spec"]["destination"]["namespace"] == ANALYZER_NAMESPACE
    sync = app["spec"]["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in sync["syncOptions"]
    # selfHeal must not fight the HorizontalPodAutoscaler over spec.replicas.
    assert "RespectIgnoreDifferences=true" in sync["syncOptions"]
    assert {"group": "apps", "kind": "Deployment", "name": ANALYZER,
            "jsonPointers": ["/spec/replicas"]} in app["spec"]["ignoreDifferences"]


def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    bases = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases), (
        bases)
    assert "pip install --no-cache-dir ." in text
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] == "10001", "the image must end as user 10001"
    assert 'ENTRYPOINT ["canary-analyzer"]' in lines
    assert "EXPOSE 8080" in lines
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and "!analyzer/" in ignore and "!pyproject.toml" in ignore


@needs_crds
def test_pod_template_hash_comes_from_the_rollout_not_the_template() -> None:
    """The CRDs allow ``valueFrom.podTemplateHashValue`` in a Rollout's analysis args only;
    in an AnalysisTemplate's args the strict schema refuses it (the API server would prune it
    and the run would fail on an unresolved argument)."""
    pytest.importorskip("jsonschema", reason="pip package jsonschema missing")
    template = yaml.safe_load((DEPLOY / "examples/istio-canary/analysistemplate.yaml")
                              .read_text())
    (arg,) = [a for a in template["spec"]["args"] if a["name"] == "canary-revision"]
    assert arg == {"name": "canary-revision"}
    arg["valueFrom"] = {"podTemplateHashValue": "Latest"}
    assert any("podTemplateHashValue" in e for e in crd_errors(template))
