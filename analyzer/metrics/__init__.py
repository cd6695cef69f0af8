"""Getting metric data: Prometheus access, Istio queries, and canary-dataset/v1 files."""
