"""canary-analyzer: anytime-valid canary analysis for Argo Rollouts, Istio and Prometheus."""

__version__ = "0.1.0"
