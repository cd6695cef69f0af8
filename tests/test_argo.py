"""The Argo model the demo and the tests read answers with, checked against Argo Rollouts'
own web-provider cases (its ``web_test.go``/``evaluate_test.go``, released v1.6–v1.8), under
the template users paste: ``jsonPath: "{$.verdict}"``, ``result == "pass"`` /
``result == "fail"``."""

from __future__ import annotations

import pytest

from devtools.analysisrun import run_analysis
from devtools.argo import argo_phase


@pytest.mark.parametrize(("status", "body", "phase", "case"), [
    (200, b'{"verdict": "pass"}', "Successful", "success condition true"),
    (200, b'{"verdict": "fail"}', "Failed", "failure condition true"),
    (200, b'{"verdict": "inconclusive"}', "Inconclusive", "neither condition true"),
    (300, b'{"verdict": "pass"}', "Error", "a 3xx is not 2xx (upstream: HTTP 300, valid JSON)"),
    (400, b"", "Error", "upstream: HTTP 400, empty body"),
    (503, b'{"error": "prometheus unavailable"}', "Error", "non-2xx is never Failed"),
    (None, b"", "Error", "transport failure (refused, timeout)"),
    (200, b"", "Successful", "upstream: 200 with an empty body is Successful, value \"\""),
    (200, b"test: notJson", "Successful", "upstream: a non-JSON body is taken raw, unevaluated"),
    (200, b"<html>OK</html>", "Successful", "so a proxy's HTML page would pass a canary"),
    (200, b"{}", "Error", "JSONPath {$.verdict} not found"),
    (200, b'{"score": 1}', "Error", "upstream: missing key is 'Could not find JSONPath'"),
    (200, b'["pass"]', "Error", "not an object: the key cannot be found"),
    (200, b'{"verdict": 1}', "Error", "upstream: float64 == string is a type error"),
    (200, b'{"verdict": true}', "Error", "bool == string is a type error"),
    (200, b'{"verdict": null}', "Inconclusive", "nil compares unequal to both strings"),
])
def test_argo_reads_answers_as_released_argo_does(status: int | None, body: bytes, phase: str,
                                                   case: str) -> None:
    assert argo_phase(status, body) == phase, case


def test_the_loop_marks_the_last_look_final_and_stops_at_the_first_failed() -> None:
    sent: list[dict] = []
    verdicts = iter(["pass", "pass", "fail", "pass"])

    def post(body: dict) -> tuple[int, bytes]:
        sent.append(dict(body))
        return 200, f'{{"verdict": "{next(verdicts)}"}}'.encode()

    looks = run_analysis(post, [{"k": k} for k in range(1, 5)])
    assert [look.phase for look in looks] == ["Successful", "Successful", "Failed"]
    assert [b["final"] for b in sent] == [False, False, False]
    sent.clear()
    verdicts = iter(["pass", "pass"])
    looks = run_analysis(post, [{"k": 1}, {"k": 2}])
    assert [b["final"] for b in sent] == [False, True]


def test_the_loop_stops_where_argo_errors_the_run() -> None:
    calls = []

    def post(body: dict) -> tuple[int, bytes]:
        calls.append(body)
        return 503, b'{"error": "down"}'

    looks = run_analysis(post, [{"k": k} for k in range(10)])
    assert len(looks) == len(calls) == 5 and {look.phase for look in looks} == {"Error"}
