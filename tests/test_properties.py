"""Property-based tests (hypothesis) of everything that parses untrusted input.

The contract under test: whatever JSON-ish data arrives, a parser either returns a value or
raises the project's typed error naming the field (``RequestError``, ``ConfigError``,
``DatasetError``); never another exception, which the API would turn into a 500 and Argo into
an Error. And request text can only ever be matched literally: the PromQL rendered from
arbitrary label names and values, read back by an independent PromQL string-literal reader,
yields exactly the labels that went in.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from analyzer.analysis import Analyzer
from analyzer.config import CanaryConfig, ConfigError, default_config
from analyzer.config.loading import format_validation_error, parse_config
from analyzer.config.models import MetricConfig
from analyzer.metrics.dataset import DatasetError, parse_dataset
from analyzer.metrics.promql import Selector, any_of, regex_escape, string_literal
from analyzer.metrics.source import PrometheusSource
from analyzer.request import JudgeRequest, RequestError, parse_request

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Strategies

_text = st.text(max_size=12)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), _text,
    st.sampled_from(["", "true", "false", "20", "1e999", "NaN", "2026-01-05T10:00:00Z",
                     "1767607200", "source", "destination", "default", "{selector}",
                     'x"}or vector(1)#', "a\nb", "\x00", "\ud800"]))
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12)
"""Anything ``json.loads`` can return, plus the values a careless caller might pass (NaN,
infinities, integers beyond the float range, lone surrogates)."""


def objects_with(keys: list[str], values: st.SearchStrategy[Any] = json_values
                 ) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that mostly use the model's own keys, so validation gets past the first key."""
    return st.dictionaries(st.sampled_from(keys) | _text, values, max_size=len(keys) + 1)


REQUEST_KEYS = list(JudgeRequest.model_fields)
METRIC_KEYS = list(MetricConfig.model_fields)
CONFIG_KEYS = list(CanaryConfig.model_fields)

metric_objects = objects_with(METRIC_KEYS, st.one_of(
    json_values, st.sampled_from(["istio-error-rate", "istio-latency", "promql", "ratio",
                                  "gauge", "histogram", "mann-whitney", "sequential-latency",
                                  "sum(rate(x{selector}[1m]))", "5..|0", "increase"]),
    st.lists(st.floats(), max_size=4)))
config_objects = objects_with(CONFIG_KEYS, st.one_of(
    json_values, st.lists(metric_objects, max_size=3),
    st.dictionaries(_text, st.floats(), max_size=3), st.just({"alpha": 0.05})))
label_maps = st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4)
request_objects = objects_with(REQUEST_KEYS, st.one_of(json_values, label_maps,
                                                       config_objects))


def names_field(message: str, field: str) -> bool:
    return bool(field) and (field in message or repr(field) in message)


# ---------------------------------------------------------------------------------------------
# JudgeRequest parsing and resolution


ANALYZER = Analyzer({"default": default_config()}, PrometheusSource(lambda *_: None),
                    max_window=timedelta(hours=24))


@SETTINGS
@given(request_objects)
def test_request_parses_or_raises_a_request_error_naming_a_field(data: dict[str, Any]) -> None:
    try:
        request = parse_request(data)
    except RequestError as exc:
        assert 400 <= exc.status < 500
        top = exc.field.split(".")[0]
        assert top == "body" or top in REQUEST_KEYS or top in data, exc.field
        assert names_field(exc.message, exc.field), (exc.field, exc.message)
        return
    # Past the model: the checks that need neither Prometheus nor the store.
    try:
        resolved = ANALYZER.resolve(request)
    except RequestError as exc:
        assert exc.field.split(".")[0] in REQUEST_KEYS, exc.field
        assert exc.message
        return
    for side in ("canary", "baseline"):
        assert parse_matchers(resolved.sides.istio(side).render()) == dict(
            resolved.sides.istio(side))


@SETTINGS
@given(json_values)
def test_anything_that_is_not_an_object_is_refused_as_the_body(data: Any) -> None:
    assume(not isinstance(data, dict))
    with pytest.raises(RequestError) as caught:
        parse_request(data)
    assert caught.value.field == "body"


@SETTINGS
@given(st.dictionaries(st.sampled_from(["canary", "baseline"]), label_maps, min_size=2),
       st.sampled_from(["source", "destination"]))
def test_request_labels_resolve_to_exactly_their_matchers(sides: dict[str, dict[str, str]],
                                                          reporter: str) -> None:
    data = {"namespace": "shop", "rollout": "r", "reporter": reporter, **sides}
    try:
        resolved = ANALYZER.resolve(parse_request(data))
    except RequestError as exc:
        assert exc.field.split(".")[0] in ("canary", "baseline"), exc.field
        return
    for side in ("canary", "baseline"):
        expected = {**sides[side], "reporter": reporter, "destination_service_namespace": "shop"}
        assert parse_matchers(resolved.sides.istio(side).render()) == expected


# ---------------------------------------------------------------------------------------------
# Canary configs


def _assert_names_loc(error: ValidationError, data: dict[str, Any], keys: list[str]) -> None:
    message = format_validation_error("config", error)
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        assert not loc or loc[0] in keys or loc[0] in data, loc
        assert all(part in message or repr(part) in message for part in loc), (loc, message)
        assert "\n" not in message.replace("\nconfig: ", "")  # one line per problem


@SETTINGS
@given(metric_objects)
def test_metric_config_validates_or_names_the_field(data: dict[str, Any]) -> None:
    try:
        MetricConfig.model_validate(data)
    except ValidationError as exc:
        _assert_names_loc(exc, data, METRIC_KEYS)


@SETTINGS
@given(config_objects | json_values)
def test_canary_config_parses_or_raises_config_error(data: Any) -> None:
    try:
        parse_config(data, "inline")
    except ConfigError as exc:
        keys = list(data) if isinstance(data, dict) else []
        starts = [*CONFIG_KEYS, "(top level)", "a canary config must be",
                  *(repr(k) for k in keys), *(k for k in keys if k)]
        for line in str(exc).splitlines():
            assert line.startswith("inline: "), line
            where = line.removeprefix("inline: ")
            assert any(where.startswith(start) for start in starts), line


# ---------------------------------------------------------------------------------------------
# PromQL rendering: a reader of PromQL matchers, independent of analyzer.metrics.promql


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", '"': '"', "'": "'"}
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def read_string(text: str, pos: int) -> tuple[str, int]:
    """A double-quoted PromQL (Go) string literal at ``pos``; returns (value, end)."""
    assert text[pos] == '"', f"expected a string at {pos}: {text!r}"
    out, i = [], pos + 1
    while True:
        assert i < len(text), f"unterminated string in {text!r}"
        char = text[i]
        assert char != "\n", f"raw newline inside a string in {text!r}"
        if char == '"':
            return "".join(out), i + 1
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = text[i + 1]
        if code in _GO_ESCAPES:
            out.append(_GO_ESCAPES[code])
            i += 2
        elif code in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[code]
            out.append(chr(int(text[i + 2:i + 2 + width], 16)))
            i += 2 + width
        elif code in "01234567":
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            raise AssertionError(f"unknown escape \\{code} in {text!r}")


def parse_matchers(text: str, op: str = "=") -> dict[str, str]:
    """``a="x",b="y"`` → ``{"a": "x", "b": "y"}``; fails on anything else (an escape)."""
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        name = _NAME.match(text, pos)
        assert name is not None, f"no label name at {pos}: {text!r}"
        pos = name.end()
        assert text.startswith(op + '"', pos), f"expected {op} at {pos}: {text!r}"
        value, pos = read_string(text, pos + len(op))
        assert name.group() not in labels, f"label {name.group()} twice in {text!r}"
        labels[name.group()] = value
        if pos < len(text):
            assert text[pos] == ",", f"expected , at {pos}: {text!r}"
            pos += 1
            assert pos < len(text), f"trailing comma in {text!r}"
    return labels


def split_alternatives(pattern: str) -> set[str]:
    """The literal alternatives of a ``regex_escape``d, ``|``-joined pattern."""
    alternatives, current, i = set(), [], 0
    while i < len(pattern):
        if pattern[i] == "\\":
            current.append(pattern[i + 1])
            i += 2
        elif pattern[i] == "|":
            alternatives.add("".join(current))
            current, i = [], i + 1
        else:
            assert pattern[i] not in "\\.+*?()[]{}^$", f"unescaped {pattern[i]!r} in {pattern!r}"
            current.append(pattern[i])
            i += 1
    alternatives.add("".join(current))
    return alternatives


hostile_text = st.text(alphabet=st.sampled_from(
    [*'ab"\\\n{},=~|.*()[]^$ \t\x00é', "\u2028", "\ud800", "\U0001f600"]), max_size=16
) | st.text(max_size=16)


@SETTINGS
@given(st.dictionaries(hostile_text | st.from_regex(_NAME, fullmatch=True),
                       hostile_text, max_size=5))
def test_selector_renders_back_to_the_same_labels_or_refuses(labels: dict[str, str]) -> None:
    try:
        selector = Selector(labels)
    except ValueError as exc:
        assert any(repr(name) in str(exc) for name in labels), str(exc)
        return
    rendered = selector.render()
    assert parse_matchers(rendered) == labels
    # Pasted into a query, the selector cannot end the braces early.
    query = f"sum(rate(istio_requests_total{{{rendered}}}[1m]))"
    assert query.count("{") - rendered.count("{") == 1


@SETTINGS
@given(st.from_regex(_NAME, fullmatch=True), st.lists(hostile_text, min_size=1, max_size=4))
def test_any_of_matches_exactly_the_values(label: str, values: list[str]) -> None:
    assume(not label.startswith("__"))
    try:
        matcher = any_of(label, values)
    except ValueError as exc:
        assert repr(label) in str(exc)
        return
    (pattern,) = parse_matchers(matcher, op="=~").values()
    assert split_alternatives(pattern) == set(values)
    for value in values:  # Prometheus anchors the regex; RE2 and re agree on escaped literals
        assert re.fullmatch(pattern, value, flags=re.DOTALL)
        assert not re.fullmatch(pattern, value + "x", flags=re.DOTALL) or value + "x" in values


@SETTINGS
@given(hostile_text)
def test_string_literal_round_trips(value: str) -> None:
    try:
        literal = string_literal(value, "l")
    except ValueError as exc:
        assert "'l'" in str(exc)
        return
    assert read_string(literal, 0) == (value, len(literal))
    assert regex_escape(value).replace("\\", "") == value.replace("\\", "")


# ---------------------------------------------------------------------------------------------
# Datasets: mutations of a valid one


VALID_DATASET: dict[str, Any] = {
    "format": "canary-dataset/v1", "name": "small", "interval_seconds": 30,
    "start": "2026-01-05T10:00:00Z", "timestamps": [30, 60, 90],
    "canary_weight": [5, 5, 25],
    "metrics": {
        "error-rate": {"type": "ratio", "canary": {"num": [0, 1, 0], "den": [10, 12, 30]},
                       "baseline": {"num": [1, 2, 1], "den": [90, 88, 70]}},
        "latency": {"type": "histogram", "unit": "ms", "le": [10, 100, "+Inf"],
                    "canary": [[1, 5, 10], [2, 8, 12], [5, 20, 30]],
                    "baseline": [[9, 60, 90], [8, 70, 88], [7, 50, 70]]},
        "cpu": {"type": "gauge", "canary": [0.5, None, 0.7], "baseline": [0.4, 0.5, 0.6]},
    },
    "labels": {"namespace": "shop"}, "expected": "pass",
}
TOP_KEYS = set(VALID_DATASET)
JsonPath = tuple[str | int, ...]


def paths(node: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    """Every location in a JSON tree (the root excluded)."""
    found: list[JsonPath] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


ALL_PATHS = paths(VALID_DATASET)
bad_values = st.one_of(
    st.integers(max_value=-1), st.just(math.nan), st.just(math.inf), st.just(-math.inf),
    st.integers(min_value=2**53, max_value=10**400), st.just(1e308), st.just(10**400),
    st.just(2**63), st.floats(), _text, st.none(), st.booleans(), st.just([]),
    st.just({}), st.lists(st.integers(), max_size=3), st.just([[1]]), st.just("+Inf"))


def mutate(data: dict[str, Any], path: JsonPath, how: str, value: Any) -> None:
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    target = parent[last]
    if how == "delete":
        del parent[last]
    elif how == "truncate" and isinstance(target, list):
        del target[len(target) // 2:]
    elif how == "extend" and isinstance(target, list):
        target.append(copy.deepcopy(target[-1]) if target else value)
    else:
        parent[last] = value


mutations = st.lists(st.tuples(st.sampled_from(ALL_PATHS),
                               st.sampled_from(["delete", "truncate", "extend", "replace"]),
                               bad_values), min_size=1, max_size=3)


def test_the_unmutated_dataset_is_valid() -> None:
    dataset = parse_dataset(copy.deepcopy(VALID_DATASET))
    assert len(dataset) == 3 and set(dataset.metrics) == {"error-rate", "latency", "cpu"}


@SETTINGS
@given(mutations)
def test_mutated_dataset_parses_or_raises_dataset_error_naming_a_field(
        changes: list[tuple[JsonPath, str, Any]]) -> None:
    data = copy.deepcopy(VALID_DATASET)
    for path, how, value in changes:
        try:
            mutate(data, path, how, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    try:
        parse_dataset(data, "ds")
    except DatasetError as exc:
        message = str(exc)
        assert message.startswith("ds: "), message
        field = message.removeprefix("ds: ").split(":")[0]
        top = field.split(".")[0].split("[")[0]
        assert top in TOP_KEYS, message


@SETTINGS
@given(st.sampled_from(ALL_PATHS), bad_values)
def test_a_dataset_survives_a_json_round_trip_or_is_refused(path: JsonPath, value: Any) -> None:
    """What ``read_dataset`` sees: the mutated document after JSON text (NaN → NaN literal
    refused by strict readers, huge integers kept exact)."""
    data = copy.deepcopy(VALID_DATASET)
    mutate(data, path, "replace", value)
    try:
        text = json.dumps(data, allow_nan=False)
    except ValueError:
        return
    try:
        parse_dataset(json.loads(text), "ds")
    except DatasetError as exc:
        assert str(exc).startswith("ds: ")


@pytest.mark.parametrize("mutation", [
    lambda d: d["metrics"]["error-rate"]["canary"]["den"].__setitem__(0, 10**400),
    lambda d: d["metrics"]["latency"]["canary"][0].__setitem__(0, 2**63),
    lambda d: d["metrics"]["latency"]["le"].__setitem__(0, 10**400),
    lambda d: d["timestamps"].__setitem__(2, 10**400),
    lambda d: d["canary_weight"].__setitem__(0, 10**400),
    lambda d: d.__setitem__("interval_seconds", 10**400),
    lambda d: d.__setitem__("start", 10**400),
    lambda d: d["metrics"]["cpu"].__setitem__("type", ["gauge"]),
])
def test_found_by_hypothesis(mutation: Callable[[dict[str, Any]], None]) -> None:
    """Regressions: huge JSON integers raised OverflowError, a list ``type`` TypeError."""
    data = copy.deepcopy(VALID_DATASET)
    mutation(data)
    with pytest.raises(DatasetError):
        parse_dataset(data)
