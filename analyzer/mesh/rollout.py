"""Reading an Argo ``Rollout``: where the canary is, and which weight the analysis should assume.

The Rollout's own status is the best source for the weight: ``status.canary.weights`` is what
the controller last set *and verified*, including during a weight change the VirtualService may
already show. When it is absent (older controllers, no traffic routing status yet) the
VirtualService named in ``spec.strategy.canary.trafficRouting.istio`` is read instead, matched
with the Rollout's own canary/stable Services or DestinationRule subsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.mesh.client import KubeClient, KubeError
from analyzer.mesh.virtualservice import MeshError, Split, WeightReading, read_weights

GROUP = "argoproj.io"
VERSION = "v1alpha1"
PLURAL = "rollouts"
KIND = "Rollout"

@dataclass(frozen=True)
class VirtualServiceRef:
    """One ``trafficRouting.istio.virtualService(s)`` entry; ``name.namespace`` is split."""

    name: str
    namespace: str
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolloutState:
    """The parts of a Rollout the analysis and the CLI need, with absent fields as None."""

    namespace: str
    name: str
    resource_version: str
    phase: str | None = None
    message: str | None = None
    current_step_index: int | None = None
    step_count: int = 0
    canary_weight: int | None = None
    stable_weight: int | None = None
    canary_hash: str | None = None
    stable_hash: str | None = None
    weights_verified: bool | None = None
    stable_rs: str | None = None
    current_pod_hash: str | None = None
    paused: bool = False
    pause_reasons: tuple[str, ...] = ()
    aborted: bool = False
    aborted_at: str | None = None
    canary_service: str | None = None
    stable_service: str | None = None
    canary_subset: str | None = None
    stable_subset: str | None = None
    virtual_services: tuple[VirtualServiceRef, ...] = field(default_factory=tuple)

    @property
    def split(self) -> Split | None:
        """How the Rollout splits traffic: subset-level when a DestinationRule is configured,
        host-level with both Services, None when neither is configured."""
        if self.canary_subset is not None:
            return Split(canary_subset=self.canary_subset,
                         stable_subset=self.stable_subset or "stable")
        if self.canary_service and self.stable_service:
            return Split(self.canary_service, self.stable_service)
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _vs_refs(istio: dict[str, Any], namespace: str) -> tuple[VirtualServiceRef, ...]:
    entries = [istio["virtualService"]] if isinstance(istio.get("virtualService"), dict) else []
    if isinstance(istio.get("virtualServices"), list):
        entries += [e for e in istio["virtualServices"] if isinstance(e, dict)]
    refs = []
    for entry in entries:
        full = _str(entry.get("name"))
        if full is None:
            continue
        name, _, other_ns = full.partition(".")
        routes = tuple(str(r) for r in entry.get("routes") or [] if isinstance(r, str))
        refs.append(VirtualServiceRef(name, other_ns or namespace, routes))
    return tuple(refs)


def parse_rollout(obj: dict[str, Any]) -> RolloutState:
    """A :class:`RolloutState` from a Rollout object; tolerant of missing fields, because a
    Rollout that was just created has almost no status."""
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(
        obj.get("status"))
    namespace = str(meta.get("namespace") or "")
    canary = _dict(_dict(spec.get("strategy")).get("canary"))
    istio = _dict(_dict(canary.get("trafficRouting")).get("istio"))
    rule = _dict(istio.get("destinationRule"))
    weights = _dict(_dict(status.get("canary")).get("weights"))
    canary_w, stable_w = _dict(weights.get("canary")), _dict(weights.get("stable"))
    pause_conditions = [c for c in status.get("pauseConditions") or [] if isinstance(c, dict)]
    reasons = [str(c.get("reason") or "paused") for c in pause_conditions]
    if spec.get("paused") is True:
        reasons.insert(0, "spec.paused")
    verified = weights.get("verified")
    steps = canary.get("steps")
    return RolloutState(
        namespace=namespace, name=str(meta.get("name") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        phase=_str(status.get("phase")), message=_str(status.get("message")),
        current_step_index=_int(status.get("currentStepIndex")),
        step_count=len(steps) if isinstance(steps, list) else 0,
        canary_weight=_int(canary_w.get("weight")), stable_weight=_int(stable_w.get("weight")),
        canary_hash=_str(canary_w.get("podTemplateHash")),
        stable_hash=_str(stable_w.get("podTemplateHash")),
        weights_verified=verified if isinstance(verified, bool) else None,
        stable_rs=_str(status.get("stableRS")), current_pod_hash=_str(status.get("currentPodHash")),
        paused=bool(reasons), pause_reasons=tuple(reasons),
        aborted=status.get("abort") is True or _str(status.get("abortedAt")) is not None,
        aborted_at=_str(status.get("abortedAt")),
        canary_service=_str(canary.get("canaryService")),
        stable_service=_str(canary.get("stableService")),
        canary_subset=(_str(rule.get("canarySubsetName")) or "canary") if rule else None,
        stable_subset=(_str(rule.get("stableSubsetName")) or "stable") if rule else None,
        virtual_services=_vs_refs(istio, namespace))


def read_rollout(api: KubeClient, namespace: str, name: str) -> RolloutState:
    """Reads ``argoproj.io/v1alpha1`` ``rollouts/<name>``; raises ``KubeError``."""
    return parse_rollout(api.get(GROUP, VERSION, namespace, PLURAL, name, kind=KIND))


@dataclass(frozen=True)
class WeightLookup:
    """The weight to assume, or None with the reason it could not be determined; and the
    canary's revision (its pod-template-hash) when the Rollout could be read."""

    reading: WeightReading | None
    reason: str
    canary_revision: str | None = None


def lookup_canary_weight(api: KubeClient, namespace: str, rollout_name: str) -> WeightLookup:
    """Prefers ``status.canary.weights``; falls back to the first VirtualService of the
    Rollout's Istio traffic routing. Never raises: Kubernetes or shape problems become a
    reason, because the analysis can still run without a weight (it just cannot check the
    split), and an Argo analysis step must not fail because the API server hiccuped."""
    try:
        state = read_rollout(api, namespace, rollout_name)
    except KubeError as exc:
        return WeightLookup(None, str(exc))
    reading, reason = _weight_of(api, state)
    return WeightLookup(reading, reason, state.current_pod_hash or state.canary_hash)


def _weight_of(api: KubeClient, state: RolloutState) -> tuple[WeightReading | None, str]:
    where = f"{KIND} {state.namespace}/{state.name}"
    if state.canary_weight is not None:
        stable = state.stable_weight if state.stable_weight is not None else (
            100 - state.canary_weight)
        split = state.split
        reading = WeightReading(
            canary_weight=state.canary_weight, stable_weight=stable,
            style=split.style if split else "unknown", resource_version=state.resource_version,
            route=None, source=f"{where} status.canary.weights")
        return reading, "from the Rollout status"
    if not state.virtual_services:
        return None, (f"{where} has no status.canary.weights and no Istio VirtualService in "
                      f"its trafficRouting")
    split = state.split
    if split is None:
        return None, (f"{where} sets neither canaryService/stableService nor an Istio "
                      f"destinationRule, so its canary destination is unknown")
    ref = state.virtual_services[0]
    route = ref.routes[0] if ref.routes else None
    try:
        reading = read_weights(api, ref.namespace, ref.name, route, split=split)
    except (KubeError, MeshError) as exc:
        return None, f"{where}: {exc}"
    return reading, f"from {reading.source}"
