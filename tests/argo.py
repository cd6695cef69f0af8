"""Argo Rollouts' reading of one web-metric answer, for the AnalysisTemplate users paste:

    jsonPath: "{$.verdict}"
    successCondition: result == "pass"
    failureCondition: result == "fail"

Rules (research/argo-rollouts.md §1.2–1.4): a non-2xx status is an Error (never Failed); a
non-JSON body, a missing key or a non-string ``result`` compared with a string is an Error;
failure is checked first; neither condition true is Inconclusive.
"""

from __future__ import annotations

import json
from typing import Literal

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]


def argo_phase(status: int, body: bytes | str) -> Phase:
    if not 200 <= status < 300:
        return "Error"
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "Error"
    if not isinstance(document, dict) or "verdict" not in document:
        return "Error"
    result = document["verdict"]
    if not isinstance(result, str):
        return "Error"  # expr: mismatched types (float64/bool/nil/map) and string
    if result == "fail":
        return "Failed"
    if result == "pass":
        return "Successful"
    return "Inconclusive"
