"""The judge request in ``/docs``: the POST route reads its raw body (size, nesting depth and
JSON constants are checked before pydantic sees it), so FastAPI cannot infer a request body
from its signature. ``openapi_extra`` describes the same ``JudgeRequest`` model by hand, so
Swagger UI shows the fields and "Try it out" sends a body; parsing stays as it is.
"""

from __future__ import annotations

from typing import Any

from analyzer.request import JudgeRequest

EXAMPLE: dict[str, Any] = {
    "namespace": "shop", "rollout": "checkout", "canary_service": "checkout-canary",
    "baseline_service": "checkout-stable", "canary_weight": 20,
    "canary_revision": "6d4f8b9c7"}
"""A request for the bundled example Rollout, as its AnalysisTemplate sends it."""


def judge_request_body() -> dict[str, Any]:
    """``openapi_extra`` for ``POST /api/v1/judge``: a required JSON body of ``JudgeRequest``
    (the model has no nested models, so its schema needs no shared ``$defs``)."""
    schema = JudgeRequest.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": schema, "example": EXAMPLE}}}}
