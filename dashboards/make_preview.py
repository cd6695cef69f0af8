"""Regenerates ``docs/img/canary-preview.png`` from a real run, not from made-up numbers.

The error-regression example canary is backfilled into a real Prometheus (the test harness in
``tests/promfixture.py``), the service runs in-process, and the canary is judged the way an
AnalysisRun would (one call per 30 s interval, stopping at the first ``fail``). The analysis
detail is then fetched from the API and rendered by ``analyzer.preview``, so the picture in the
docs shows exactly what the ``preview`` command draws.

Usage: ``.venv/bin/python dashboards/make_preview.py [-o docs/img/canary-preview.png]
[--json detail.json]`` (needs ``prometheus`` and ``promtool``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fastapi.testclient import TestClient  # noqa: E402
from promfixture import PrometheusServer, istio_series, traffic_from_dataset  # noqa: E402

from analyzer.api.app import Settings, create_app  # noqa: E402
from analyzer.metrics.dataset import Dataset, read_dataset  # noqa: E402
from analyzer.preview import render  # noqa: E402

NAMESPACE = "shop"
ROLLOUT = "checkout"


def judge_run(client: TestClient, dataset: Dataset) -> str:
    """Judges every interval until the first fail; returns the analysis id."""
    start = dataset.start.timestamp()
    analysis_id = ""
    for k in range(1, len(dataset) + 1):
        weights = dataset.canary_weight
        weight = None if weights is None else float(weights[k - 1])
        body: dict[str, Any] = {
            "namespace": NAMESPACE, "rollout": ROLLOUT,
            "canary_service": f"{ROLLOUT}-canary", "baseline_service": f"{ROLLOUT}-stable",
            "start": start, "end": start + k * dataset.interval_seconds,
            "final": k == len(dataset)}
        if weight is not None:
            body["canary_weight"] = weight
        answer = client.post("/api/v1/judge", json=body)
        answer.raise_for_status()
        data = answer.json()
        analysis_id = data["analysis_id"]
        if data["verdict"] == "fail":
            break
    return analysis_id


def analysis_detail(dataset_path: Path, workdir: Path) -> dict[str, Any]:
    """The ``GET /api/v1/analyses/{id}`` answer of one judged run of ``dataset_path``."""
    dataset = read_dataset(dataset_path)
    traffic = traffic_from_dataset(dataset, NAMESPACE, f"{ROLLOUT}-canary", f"{ROLLOUT}-stable")
    with PrometheusServer.from_series(istio_series(traffic), workdir / "prometheus") as prom:
        settings = Settings(prometheus_url=prom.url, database_url=str(workdir / "preview.db"))
        with TestClient(create_app(settings)) as client:
            analysis_id = judge_run(client, dataset)
            answer = client.get(f"/api/v1/analyses/{analysis_id}")
            answer.raise_for_status()
            return answer.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path,
                        default=ROOT / "examples" / "datasets" / "error-regression.json")
    parser.add_argument("-o", "--output", type=Path,
                        default=ROOT / "docs" / "img" / "canary-preview.png")
    parser.add_argument("--json", type=Path, help="also write the analysis detail here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        detail = analysis_detail(args.dataset, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(detail, indent=1), encoding="utf-8")
    render(detail, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB, "
          f"{len(detail['evaluations'])} evaluations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
