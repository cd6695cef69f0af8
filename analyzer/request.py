"""The judge request (DESIGN §3) as one validated model, shared by the API and the CLI.

Argo Rollouts substitutes ``{{args.*}}`` as strings, so numbers and booleans also arrive as
strings ("true", "20", "1700000000"); the model accepts both. Unknown fields are refused: a
misspelt ``canary_servce`` would otherwise silently select nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analyzer.errors import InputError

MAX_TEXT = 253
"""Longest namespace, rollout or label value accepted (a Kubernetes DNS name's limit)."""
REVISION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
"""A pod-template-hash (``6d4f8b9c7``) or any label-value-like revision name."""


class RequestError(InputError):
    """A request that can never succeed (HTTP 4xx); ``field`` names the offending field."""

    field: str

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message, field)
        self.status = status


class JudgeRequest(BaseModel):
    """The fields of ``POST /api/v1/judge`` (and the query parameters of its GET form)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=MAX_TEXT)
    rollout: str = Field(min_length=1, max_length=MAX_TEXT)
    canary: dict[str, str] | None = None
    baseline: dict[str, str] | None = None
    canary_service: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    baseline_service: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    reporter: Literal["source", "destination"] = "source"
    config: str | dict[str, Any] = "default"
    start: float | str | None = None
    end: float | str | None = None
    final: bool = False
    canary_weight: float | None = Field(default=None, ge=0, le=100)
    canary_revision: str | None = Field(default=None, min_length=1, max_length=63,
                                        pattern=REVISION_PATTERN)

    @field_validator("canary", "baseline")
    @classmethod
    def _bounded(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            if len(value) > 32:
                raise ValueError("at most 32 label matchers")
            for name, text in value.items():
                if len(name) > MAX_TEXT or len(text) > MAX_TEXT:
                    raise ValueError(f"label {name[:40]!r}: longer than {MAX_TEXT} characters")
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected RFC 3339 time or unix seconds")
        return value


def field_of(error: ValidationError) -> RequestError:
    """The first pydantic error as a ``RequestError`` naming the field (``canary.app``)."""
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if not str(part).startswith("function")]
    # Union members add their type name to the location ("start.float"); keep the field path.
    field = ".".join(p for p in loc if p not in {"str", "float", "int", "bool", "dict[str,any]",
                                                   "dict[str,str]", "none"}) or "body"
    if first.get("type") == "extra_forbidden":
        return RequestError(field, f"unknown field {field!r}")
    if first.get("type") == "missing":
        return RequestError(field, f"{field} is required")
    return RequestError(field, f"{field}: {first.get('msg', 'invalid value')}")


def parse_request(data: Any) -> JudgeRequest:
    """Validates a decoded JSON body; ``RequestError`` names the first bad field."""
    if not isinstance(data, dict):
        raise RequestError("body", "the body must be a JSON object")
    try:
        return JudgeRequest.model_validate(data)
    except ValidationError as exc:
        raise field_of(exc) from None


def from_query(items: list[tuple[str, str]]) -> JudgeRequest:
    """The GET form: ``canary.<label>=value`` and ``baseline.<label>=value`` build the label
    objects; every other parameter is a field. A repeated parameter is refused (which value
    was meant is unknowable)."""
    data: dict[str, Any] = {}
    for key, value in items:
        side, dot, label = key.partition(".")
        if dot and side in ("canary", "baseline"):
            labels = data.setdefault(side, {})
            if not isinstance(labels, dict) or label in labels:
                raise RequestError(key, f"{key} given twice")
            labels[label] = value
            continue
        if key in data:
            raise RequestError(key or "query", f"{key or 'a parameter without a name'} "
                                               f"given twice")
        data[key] = value
    return parse_request(data)
