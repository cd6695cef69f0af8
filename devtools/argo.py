"""How Argo Rollouts reads one web-metric answer, as released (v1.6–v1.8) does.

Used by the demo to show what a Rollout would do with each answer, and by the tests that run
whole AnalysisRuns against the service. The template is the one users paste: ``jsonPath:
"{$.verdict}"``, ``successCondition: result == "pass"``, ``failureCondition: result ==
"fail"``. The rules, from Argo's web provider and its tests:

- a transport failure or a status outside 200–299 is an *Error* (retried; never *Failed*);
- a 2xx body that is not JSON (an empty body included) is *Successful*: released Argo takes
  the raw body as the value and evaluates nothing. A proxy answering ``200 OK`` with an HTML
  page would promote a canary, so the service must never answer 2xx without JSON;
- a JSON body without the ``verdict`` key (or not an object) is an *Error* (JSONPath not
  found);
- ``verdict`` that is a number or a boolean makes the comparison with a string a type
  error: *Error*; ``null`` compares unequal to both strings: *Inconclusive*;
- otherwise the failure condition is checked first: ``"fail"`` is *Failed*, ``"pass"``
  *Successful*, any other string *Inconclusive*.
"""

from __future__ import annotations

import json
from typing import Literal

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]


def argo_phase(status: int | None, body: bytes | str) -> Phase:
    """Argo's phase for one answer; ``status`` None is a transport failure."""
    if status is None or not 200 <= status < 300:
        return "Error"
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "Successful"
    if not isinstance(document, dict) or "verdict" not in document:
        return "Error"
    verdict = document["verdict"]
    if verdict is None:
        return "Inconclusive"
    if not isinstance(verdict, str):
        return "Error"
    if verdict == "fail":
        return "Failed"
    if verdict == "pass":
        return "Successful"
    return "Inconclusive"
