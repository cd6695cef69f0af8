"""Tooling for the demo, the tests and the benchmarks: never imported by the service.

``openmetrics`` renders Istio-shaped series and backfills a real Prometheus with them and
manages its process, ``argo`` reads an answer the way Argo Rollouts does, ``analysisrun``
runs a whole AnalysisRun against the service, ``demo`` is ``canary-analyzer demo``. They live
outside ``analyzer`` so that the image and a ``serve`` process carry none of it; the
``demo`` command imports it on demand from a source checkout.
"""
