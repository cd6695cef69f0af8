"""One AnalysisRun against the service: the loop the demo, the tests and the benchmarks share.

Argo Rollouts measures a web metric once per ``interval``; the promotion gate is the last
measurement (``final: true``); the run stops at the first *Failed* (the rollout aborts) or
after ``error_limit`` *Errors* in a row (the run errors and the rollout aborts too). Each
answer is read with Argo's rules (``devtools.argo``). Time is not waited for: each call says
which instant it judges with ``end``, so a 30-minute canary replays in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devtools.argo import Phase, argo_phase

ERROR_LIMIT = 5
"""Argo's default: the run errors at the fifth Error in a row (``consecutiveErrorLimit: 4``)."""

Post = Callable[[Mapping[str, Any]], tuple[int, bytes]]
"""Sends one judge request; returns the HTTP status (0: no answer at all) and the body."""


@dataclass(frozen=True)
class Look:
    """One measurement: its index (1-based), Argo's phase, the status and the decoded answer."""

    k: int
    phase: Phase
    status: int
    answer: dict[str, Any] | None


def run_analysis(post: Post, bodies: Sequence[Mapping[str, Any]], *,
                 error_limit: int = ERROR_LIMIT) -> list[Look]:
    """Posts ``bodies`` in order, the last one with ``final: true``, as an AnalysisRun would."""
    looks: list[Look] = []
    errors = 0
    for k, body in enumerate(bodies, start=1):
        status, content = post({**body, "final": k == len(bodies)})
        phase = argo_phase(status, content)
        looks.append(Look(k, phase, status, _decoded(content)))
        errors = errors + 1 if phase == "Error" else 0
        if phase == "Failed" or errors >= error_limit:
            break
    return looks


def _decoded(content: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None
