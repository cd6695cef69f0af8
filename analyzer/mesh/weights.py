"""Setting the canary weight of a VirtualService route — by hand, e.g. an emergency stop.

``weights set --canary 0`` sends all traffic to stable without waiting for the Rollouts
controller. The controller itself writes the whole VirtualService with an Update, so a blind
write from us could silently undo its change or be undone by it. We therefore send a JSON merge
patch that carries the ``metadata.resourceVersion`` we read: the API server applies it only if
nothing changed in between, and answers 409 otherwise, which becomes :class:`WeightConflict`
instead of a lost update. Note the controller re-applies its desired weight on its next
reconcile unless the rollout is aborted or paused, so a lasting stop also needs
``kubectl argo rollouts abort``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from analyzer.mesh.client import KubeClient, WeightConflict
from analyzer.mesh.virtualservice import (
    GROUP,
    KIND,
    PLURAL,
    MeshError,
    Split,
    WeightReading,
    get_virtualservice,
    http_routes,
    locate,
    reading_from,
)

__all__ = ["InvalidWeight", "WeightChange", "WeightConflict", "set_canary_weight",
           "validate_weight"]


class InvalidWeight(MeshError):
    """The requested canary weight is not an integer 0–100 (or leaves stable below 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "canary_weight")


@dataclass(frozen=True)
class WeightChange:
    """What ``set_canary_weight`` did: the reading before, the patch, and (unless a dry run)
    the reading of the object the API server returned."""

    before: WeightReading
    patch: dict[str, Any]
    version: str
    dry_run: bool
    after: WeightReading | None = None


def validate_weight(value: object) -> int:
    """An integer 0–100. Strings of digits are accepted (CLI input); floats, bools and
    anything else are refused rather than rounded, because a weight is always an int32 in
    Istio and a silent rounding would hide a typo."""
    weight: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        weight = value
    elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        weight = int(value.strip())
    if weight is None:
        raise InvalidWeight(f"canary weight must be an integer from 0 to 100, got {value!r}")
    if not 0 <= weight <= 100:
        raise InvalidWeight(f"canary weight must be from 0 to 100, got {weight}")
    return weight


def set_canary_weight(api: KubeClient, namespace: str, name: str, route: str | None,
                      canary_weight: object, *, canary_service: str | None = None,
                      stable_service: str | None = None, canary_subset: str = "canary",
                      stable_subset: str = "stable", dry_run: bool = False) -> WeightChange:
    """Sets canary to ``canary_weight`` and stable to the rest in one HTTP route.

    Stable gets ``100 − canary − (weights of other destinations)``, as Argo computes it, which
    is ``100 − canary`` in the usual two-destination route; other routes and other destinations
    are left as they are. Raises ``InvalidWeight``/``MeshError`` before sending anything,
    ``WeightConflict`` when the object changed after it was read, ``KubeError`` otherwise.
    """
    weight = validate_weight(canary_weight)
    split = Split(canary_service, stable_service, canary_subset, stable_subset)
    obj, version = get_virtualservice(api, namespace, name)
    before = reading_from(obj, route, split, version)
    located = locate(obj, route, split)
    stable = 100 - weight - before.other_weight
    if stable < 0:
        raise InvalidWeight(f"canary weight {weight} plus the {before.other_weight} of the "
                            f"route's other destinations exceeds 100")
    http = copy.deepcopy(http_routes(obj))
    destinations = http[located.index]["route"]
    destinations[located.canary]["weight"] = weight
    destinations[located.stable]["weight"] = stable
    # Merge patches replace lists whole, so spec.http is sent complete; resourceVersion makes
    # the write conditional on the object being the one we read.
    patch = {"metadata": {"resourceVersion": before.resource_version},
             "spec": {"http": http}}
    if dry_run:
        return WeightChange(before, patch, version, dry_run=True)
    updated = api.merge_patch(GROUP, version, namespace, PLURAL, name, patch, kind=KIND)
    after = reading_from(updated, route, split, version)
    return WeightChange(before, patch, version, dry_run=False, after=after)
