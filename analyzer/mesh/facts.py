"""What a judge call needs from Kubernetes, read through a short cache with tight timeouts.

Argo calls every rollout's analysis every interval, and several calls of one rollout can come
together (an AnalysisRun with several metrics, a retry after an Error). The Rollout rarely
changes between them, so its weight and canary revision are kept for ``ttl`` seconds — and so
is a failed lookup, so that an API server that has gone silent costs one call its timeout, not
every call. Each request to the API server carries ``KUBE_TIMEOUT``; a lookup makes at most two
(the Rollout, then its VirtualService), which keeps a judge call inside Argo's default
``timeoutSeconds: 10`` together with the Prometheus budget and the store's lock wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from analyzer.mesh.client import KubeClient
from analyzer.mesh.rollout import lookup_canary_weight

KUBE_TIMEOUT = 1.0
"""Seconds per Kubernetes API request made for a judge call."""
DEFAULT_TTL = 5.0


@dataclass(frozen=True)
class RolloutFacts:
    """The canary weight (percent) and the canary's revision (pod-template-hash) of a
    Rollout, each None when unknown; ``note`` says why when something is unknown."""

    canary_weight: float | None
    canary_revision: str | None
    note: str = ""


class CachedRolloutFacts:
    """``(namespace, rollout) → RolloutFacts`` from the Rollout (and its VirtualService),
    cached per rollout for ``ttl`` seconds. Thread-safe: the API runs calls in a threadpool."""

    def __init__(self, kube: KubeClient, *, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, RolloutFacts]] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str, rollout: str) -> RolloutFacts:
        now = self.clock()
        with self._lock:
            hit = self._cache.get((namespace, rollout))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        lookup = lookup_canary_weight(self.kube, namespace, rollout)
        weight = None if lookup.reading is None else float(lookup.reading.canary_weight)
        facts = RolloutFacts(weight, lookup.canary_revision,
                             "" if lookup.reading is not None else lookup.reason)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: junk rollout names cannot grow it forever
                self._cache.clear()
            self._cache[namespace, rollout] = (self.clock(), facts)
        return facts
