"""Kubernetes side of the analysis: Istio VirtualService weights and Argo Rollout state.

``client`` (KubeClient, error types), ``virtualservice`` (read weights), ``weights`` (set them
with optimistic concurrency), ``rollout`` (Rollout state, ``lookup_canary_weight``), ``facts``
(a judge call's weight and revision, cached), ``cli`` (``weights get|set``).
"""
