"""The API's JSON answer, byte for byte, on the bundled examples (a golden file).

The answer is written in one place (``analyzer.report.to_wire``); this pins what it writes,
so a refactoring of the layers behind it cannot change a byte unnoticed. A change that is
meant (a new field, a new judge) regenerates the file with ``UPDATE_GOLDEN=1`` and shows up
in review as a diff of ``tests/golden/wire.json``. Only ``analysis_id`` (random) is masked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from promfixture import PrometheusServer, istio_series, traffic_from_dataset

from analyzer.api.app import Settings, create_app
from analyzer.metrics.dataset import read_dataset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
GOLDEN = Path(__file__).resolve().parent / "golden" / "wire.json"
NAMES = ("healthy", "error-regression", "latency-regression")
LOOKS = (0, 1, 7, 30, 60)


@pytest.fixture(scope="module")
def prometheus(start_prometheus: Callable) -> PrometheusServer:
    series = []
    for name in NAMES:
        series += istio_series(traffic_from_dataset(read_dataset(EXAMPLES / f"{name}.json"),
                                                    "shop", f"{name}-canary",
                                                    f"{name}-stable"))
    return start_prometheus(series)


def _answers(url: str, database: Path) -> dict[str, str]:
    out = {}
    with TestClient(create_app(Settings(prometheus_url=url, database_url=str(database)))) as app:
        for name in NAMES:
            dataset = read_dataset(EXAMPLES / f"{name}.json")
            start = dataset.start.timestamp()
            for k in LOOKS:
                weight = float(dataset.canary_weight[max(k, 1) - 1])  # type: ignore[index]
                answer = app.post("/api/v1/judge", json={
                    "namespace": "shop", "rollout": name, "canary_service": f"{name}-canary",
                    "baseline_service": f"{name}-stable", "canary_revision": "r1",
                    "start": start, "end": start + 30 * k, "final": k == 60,
                    "canary_weight": weight})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                body["analysis_id"] = "…"
                out[f"{name}@{k}"] = json.dumps(body, sort_keys=True)
    return out


def test_the_wire_answer_is_unchanged(prometheus: PrometheusServer, tmp_path: Path) -> None:
    answers = _answers(prometheus.url, tmp_path / "wire.db")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(answers) == sorted(golden)
    for key, text in answers.items():
        assert text == golden[key], key
