"""Kubernetes side of the analysis: Istio VirtualService weights and Argo Rollout state.

``client`` (KubeClient, error types), ``virtualservice`` (read weights), ``weights`` (set them
with optimistic concurrency), ``rollout`` (Rollout state, ``canary_weight_for``), ``cli``
(``weights get|set``).
"""
