"""How Argo Rollouts reads one web-metric answer (research/argo-rollouts.md §1.2–1.4).

Used by the demo to show what a Rollout would do with each answer, and by the tests that
run whole AnalysisRuns against the service.
"""

from __future__ import annotations

import json
from typing import Literal

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]


def argo_phase(status: int, body: bytes | str) -> Phase:
    """Argo Rollouts' reading of one web-metric answer under the template users paste
    (``jsonPath: {$.verdict}``, success ``result == "pass"``, failure ``result == "fail"``).

    Non-2xx, a non-JSON body, a missing key or a non-string result are Errors (never Failed);
    failure is checked first; neither condition true is Inconclusive.
    """
    if not 200 <= status < 300:
        return "Error"
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "Error"
    if not isinstance(document, dict) or not isinstance(document.get("verdict"), str):
        return "Error"
    if document["verdict"] == "fail":
        return "Failed"
    if document["verdict"] == "pass":
        return "Successful"
    return "Inconclusive"
