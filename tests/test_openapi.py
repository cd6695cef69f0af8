"""``/docs`` describes the judge request, and what it describes is what the route accepts."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from promfixture import free_port

from analyzer.api.app import Settings, create_app
from analyzer.request import JudgeRequest


def _client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(prometheus_url=f"http://127.0.0.1:{free_port()}",
                                          database_url=str(tmp_path / "a.db"))))


def test_the_judge_body_is_in_the_openapi_description(tmp_path: Path) -> None:
    client = _client(tmp_path)
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/judge"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    content = body["content"]["application/json"]
    model = JudgeRequest.model_json_schema()
    assert set(content["schema"]["properties"]) == set(model["properties"])
    assert content["schema"]["required"] == ["namespace", "rollout"]
    assert {"canary_service", "baseline_service", "canary_weight", "canary_revision",
            "final"} <= set(content["schema"]["properties"])
    assert "Swagger" in client.get("/docs").text


def test_try_it_out_sends_a_body_the_route_accepts(tmp_path: Path) -> None:
    """The documented example passes every check of the raw-body route (Prometheus is down
    here, so an accepted request is the 503 that names Prometheus, not a 4xx), and a body
    the schema would refuse is refused by the route too, naming the field."""
    client = _client(tmp_path)
    content = client.get("/openapi.json").json()["paths"]["/api/v1/judge"]["post"][
        "requestBody"]["content"]["application/json"]
    answer = client.post("/api/v1/judge", json=content["example"])
    assert answer.status_code == 503 and "prometheus unavailable" in answer.json()["error"]
    missing = {k: v for k, v in content["example"].items() if k != "rollout"}
    refused = client.post("/api/v1/judge", json=missing)
    assert refused.status_code == 422 and refused.json()["field"] == "rollout"
    extra = client.post("/api/v1/judge", json={**content["example"], "canary_servce": "x"})
    assert extra.status_code == 422 and content["schema"]["additionalProperties"] is False
