"""Reading the canary weight from an Istio VirtualService the way Argo Rollouts sees it.

The analysis needs the weight Rollouts set (DESIGN §3, ``canary_weight``) to check that the
observed traffic split matches it. Rollouts edits ``spec.http[].route[]`` in one of two ways
(Argo Rollouts' Istio traffic-routing docs): *host-level* — one destination per Service,
matched on the host prefix before the first ``.`` so ``checkout-canary`` and
``checkout-canary.shop.svc.cluster.local`` are the same Service — or *subset-level* — one
host, destinations told apart by the DestinationRule ``subset`` (default names
``canary``/``stable``). We match exactly as the controller does so that we read the same
destinations it writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from analyzer.errors import InputError
from analyzer.mesh.client import KubeClient, NotFound

GROUP = "networking.istio.io"
VERSIONS = ("v1", "v1beta1")  # v1 since Istio 1.22; v1beta1 for older meshes
PLURAL = "virtualservices"
KIND = "VirtualService"


class MeshError(InputError):
    """The VirtualService exists but not in the shape needed; ``field`` names the input
    (``route``, ``canary``, ``stable``, ``canary_weight``) that does not fit it."""

    field: str

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field)


class RouteNotFound(MeshError):
    """No HTTP route of that name (or several routes and no name given)."""

    def __init__(self, message: str, route: str | None, available: list[str]) -> None:
        super().__init__(message, "route")
        self.route = route
        self.available = available


class DestinationNotFound(MeshError):
    """The route has no destination for the canary or the stable side (``field``)."""


@dataclass(frozen=True)
class Split:
    """How canary and stable destinations are recognised in a route.

    Host-level when both Service names are given, else subset-level with the subset names.
    """

    canary_service: str | None = None
    stable_service: str | None = None
    canary_subset: str = "canary"
    stable_subset: str = "stable"

    def __post_init__(self) -> None:
        if (self.canary_service is None) != (self.stable_service is None):
            missing = "stable" if self.stable_service is None else "canary"
            raise MeshError(f"host-level splitting needs both Service names; the {missing} "
                            f"Service is missing", missing)

    @property
    def style(self) -> str:
        return "host" if self.canary_service is not None else "subset"

    def describe(self, role: str) -> str:
        if self.style == "host":
            return f"{role.capitalize()} Service '{self._wanted(role)}'"
        return f"{role} DestinationRule subset '{self._wanted(role)}'"

    def _wanted(self, role: str) -> str:
        if self.style == "host":
            return str(self.canary_service if role == "canary" else self.stable_service)
        return self.canary_subset if role == "canary" else self.stable_subset

    def matches(self, role: str, destination: object) -> bool:
        if not isinstance(destination, dict):
            return False
        wanted = self._wanted(role)
        if self.style == "host":
            host = str(destination.get("host") or "")
            return host.split(".", 1)[0] == wanted
        return destination.get("subset") == wanted


@dataclass(frozen=True)
class WeightReading:
    """The canary/stable weights as found, and where they came from.

    ``other_weight`` is what other destinations of the route carry (Argo's experiment or
    additional subsets); ``warning`` reports weights that do not sum to 100 — a reading, not an
    error, because the route still says what Istio does.
    """

    canary_weight: int
    stable_weight: int
    style: str  # "host" | "subset"
    resource_version: str
    route: str | None = None
    source: str = ""
    other_weight: int = 0
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Located:
    """A route inside ``spec.http`` and its canary/stable destination indexes."""

    index: int
    name: str | None
    canary: int
    stable: int
    weights: list[int]


def get_virtualservice(api: KubeClient, namespace: str, name: str) -> tuple[dict, str]:
    """The object and the API version that served it: ``v1`` first, ``v1beta1`` when the
    cluster's Istio does not serve ``v1`` (a 404 that does not name the object)."""
    last: NotFound | None = None
    for version in VERSIONS:
        try:
            return api.get(GROUP, version, namespace, PLURAL, name, kind=KIND), version
        except NotFound as exc:
            if exc.object_missing:
                raise
            last = exc
    assert last is not None
    raise NotFound(KIND, f"{namespace}/{name}",
                   f"{KIND} {namespace}/{name} not found: the cluster serves neither "
                   f"{GROUP}/{VERSIONS[0]} nor {GROUP}/{VERSIONS[1]} (is Istio installed?)",
                   object_missing=False)


def http_routes(obj: dict) -> list[dict]:
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    http = spec.get("http")
    if not isinstance(http, list):
        return []
    return [r if isinstance(r, dict) else {} for r in http]


def _route_label(route: dict, index: int) -> str:
    name = route.get("name")
    return str(name) if name else f"<unnamed http[{index}]>"


def find_route(http: list[dict], route: str | None, vs_name: str) -> tuple[int, dict]:
    """The named HTTP route, or the only one when no name is given (as Argo allows)."""
    available = [_route_label(r, i) for i, r in enumerate(http)]
    if route is None:
        if len(http) == 1:
            return 0, http[0]
        raise RouteNotFound(
            f"{KIND} '{vs_name}' has {len(http)} HTTP routes ({', '.join(available) or 'none'});"
            f" name one with --route", None, available)
    for index, candidate in enumerate(http):
        if candidate.get("name") == route:
            return index, candidate
    raise RouteNotFound(f"HTTP Route '{route}' is not found in {KIND} '{vs_name}' (routes: "
                        f"{', '.join(available) or 'none'})", route, available)


def destination_weights(route: dict, where: str) -> list[int]:
    """Istio semantics: a missing weight is 0, except a lone destination gets 100."""
    destinations: list[Any] = route["route"] if isinstance(route.get("route"), list) else []
    weights: list[int] = []
    for index, entry in enumerate(destinations):
        weight = entry.get("weight") if isinstance(entry, dict) else None
        if weight is None:
            weight = 100 if len(destinations) == 1 else 0
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise MeshError(f"{where}.route[{index}].weight is {weight!r}, not an integer",
                            "weight")
        weights.append(weight)
    return weights


def locate(obj: dict, route: str | None, split: Split) -> Located:
    """Finds the route and both destinations, with the errors Argo's validation gives."""
    vs_name = str((obj.get("metadata") or {}).get("name") or "")
    http = http_routes(obj)
    index, found = find_route(http, route, vs_name)
    label = _route_label(found, index)
    weights = destination_weights(found, f"spec.http[{index}]")
    destinations: list[Any] = found["route"] if isinstance(found.get("route"), list) else []
    positions: dict[str, int] = {}
    for role in ("canary", "stable"):
        hits = [i for i, entry in enumerate(destinations)
                if isinstance(entry, dict) and split.matches(role, entry.get("destination"))]
        if not hits:
            raise DestinationNotFound(f"{split.describe(role)} not found in route '{label}' of "
                                      f"{KIND} '{vs_name}'", role)
        if len(hits) > 1:
            raise MeshError(f"{split.describe(role)} appears {len(hits)} times in route "
                            f"'{label}' of {KIND} '{vs_name}'", role)
        positions[role] = hits[0]
    if positions["canary"] == positions["stable"]:
        raise MeshError(f"canary and stable match the same destination in route '{label}'",
                        "canary")
    return Located(index, found.get("name"), positions["canary"], positions["stable"], weights)


def reading_from(obj: dict, route: str | None, split: Split, version: str) -> WeightReading:
    """The weights of one route of an already-fetched VirtualService."""
    located = locate(obj, route, split)
    weights = located.weights
    canary, stable = weights[located.canary], weights[located.stable]
    total = sum(weights)
    meta = obj.get("metadata") or {}
    label = located.name or f"http[{located.index}]"
    warning = None
    if total != 100:
        warning = (f"weights in route '{label}' sum to {total}, not 100 (canary {canary}, "
                   f"stable {stable}, others {total - canary - stable})")
    return WeightReading(
        canary_weight=canary, stable_weight=stable, style=split.style,
        resource_version=str(meta.get("resourceVersion") or ""), route=located.name,
        source=f"{GROUP}/{version} {KIND} {meta.get('namespace', '')}/{meta.get('name', '')}",
        other_weight=total - canary - stable, warning=warning)


def read_weights(api: KubeClient, namespace: str, name: str, route: str | None = None,
                 *, split: Split | None = None) -> WeightReading:
    """The canary weight of a VirtualService route. Raises ``KubeError`` (API) or
    ``MeshError`` (shape: route or destination missing)."""
    obj, version = get_virtualservice(api, namespace, name)
    return reading_from(obj, route, split or Split(), version)
