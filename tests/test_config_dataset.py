"""Config and dataset validation: every error names the file and the field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from analyzer.config import ConfigError, default_config, load_config, load_config_dir
from analyzer.config.loading import parse_config
from analyzer.judge.evaluate import judge
from analyzer.judge.series import RatioSeries
from analyzer.metrics.dataset import (
    DatasetError,
    dataset_to_dict,
    parse_dataset,
    read_dataset,
    write_dataset,
)

DATASET = {
    "format": "canary-dataset/v1", "name": "checkout-2026-11-20", "interval_seconds": 30,
    "start": "2026-11-20T10:00:00Z", "timestamps": [30, 60, 90], "canary_weight": [5, 5, 25],
    "metrics": {
        "error-rate": {"type": "ratio", "canary": {"num": [0, 1, 0], "den": [41, 39, 210]},
                       "baseline": {"num": [3, 2, 4], "den": [790, 770, 615]}},
        "latency": {"type": "histogram", "unit": "ms", "le": [10, 100, "+Inf"],
                    "canary": [[1, 2, 0], [3, 0, 1], [5, 5, 5]],
                    "baseline": [[10, 2, 0], [3, 9, 1], [5, 4, 5]]},
        "cpu": {"type": "gauge", "canary": [0.21, None, 0.22], "baseline": [0.2, 0.2, 0.21]},
    },
    "labels": {"namespace": "shop", "rollout": "checkout"},
}


def test_default_config_has_critical_errors_and_latency_quantiles():
    config = default_config()
    errors, latency = config.metric("error-rate"), config.metric("latency")
    assert errors.critical and errors.resolved_type == "ratio"
    assert latency.quantiles == (0.5, 0.9, 0.99) and latency.resolved_type == "histogram"


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nmetrics:\n  - name: a\n    kind: istio-error-rate\n    colour: red\n",
     "metrics.0.colour: unknown key"),
    ("name: x\njudge: {alpha: 2}\nmetrics:\n  - {name: a, kind: istio-error-rate}\n",
     "judge.alpha"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-error-rate, direction: up}\n",
     "metrics.0.direction"),
    ("name: x\nmetrics:\n  - {name: a, kind: promql, query: 'sum(x)'}\n", "{selector}"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-latency, quantiles: [1.5]}\n",
     "metrics.0.quantiles"),
    ("name: x\nmetrics: []\n", "metrics"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-error-rate, error_codes: '5..|('}\n",
     "metrics.0.error_codes: Value error, error_codes is not a valid regex"),
    ("name: x\njudge: {nodata_grace: -1}\nmetrics:\n  - {name: a, kind: istio-error-rate}\n",
     "judge.nodata_grace"),
    ("name: x\njudge: {gate_alpha: 0.5}\nmetrics:\n  - {name: a, kind: istio-error-rate}\n",
     "judge.gate_alpha"),
    ("name: x\njudge: {gate_alpha: 0}\nmetrics:\n  - {name: a, kind: istio-error-rate}\n",
     "judge.gate_alpha"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-error-rate}\ngroups: {g: 150}\n", "groups"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-error-rate, slo: 99.9}\n", "metrics.0.slo"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-latency, slo: 0.99}\n",
     "slo applies to ratio metrics"),
    ("name: x\nmetrics:\n  - {name: a, kind: istio-error-rate, slo: 0.999,\n"
     "      allowed_absolute_increase: 0.01}\n", "give slo or allowed_absolute_increase"),
    ("- just\n- a list\n", "must be a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_config_errors_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_slo_sets_the_absolute_margin_to_the_error_budget():
    """A config saying ``slo: 0.999`` is judged exactly like one giving the budget itself."""
    by_slo = parse_config({"name": "s", "metrics": [
        {"name": "e", "kind": "istio-error-rate", "allowed_increase": 1.5, "slo": 0.999}]}, "t")
    by_budget = parse_config({"name": "s", "metrics": [
        {"name": "e", "kind": "istio-error-rate", "allowed_increase": 1.5,
         "allowed_absolute_increase": 0.001}]}, "t")
    assert by_slo.metrics[0].allowed_absolute_increase == 0.001
    rng = np.random.default_rng(7)
    requests = np.full(40, 3000.0)
    data = {"e": RatioSeries(canary_num=rng.binomial(300, 0.0025, 40).astype(float),
                             canary_den=requests / 10,
                             baseline_num=rng.binomial(2700, 0.001, 40).astype(float),
                             baseline_den=requests * 0.9)}
    a, b = judge(data, by_slo, final=True), judge(data, by_budget, final=True)
    assert a.verdict == b.verdict
    assert a.metrics[0].to_dict() == b.metrics[0].to_dict()
    assert "+0.1 points" in a.metrics[0].reason


def test_config_dir_loads_every_yaml_and_keeps_default(tmp_path):
    (tmp_path / "strict.yaml").write_text(
        "name: strict\nmetrics:\n  - {name: error-rate, kind: istio-error-rate, critical: true}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    configs = load_config_dir(tmp_path)
    assert set(configs) == {"default", "strict"}
    (tmp_path / "again.yaml").write_text(
        "name: strict\nmetrics:\n  - {name: e, kind: istio-error-rate}\n")
    with pytest.raises(ConfigError, match="also defined"):
        load_config_dir(tmp_path)


def test_dataset_round_trips(tmp_path):
    dataset = parse_dataset(DATASET, "d.json")
    path = tmp_path / "d.json"
    write_dataset(dataset, path)
    again = read_dataset(path)
    assert dataset_to_dict(again) == dataset_to_dict(dataset)
    assert dataset_to_dict(again)["metrics"]["cpu"]["canary"][1] is None
    assert list(again.head(2).timestamps) == [30, 60]


def _broken(path: list, value) -> dict:
    data = copy.deepcopy(DATASET)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "message"), [
    (["format"], "canary-dataset/v0", "format"),
    (["timestamps"], [30, 30, 90], "timestamps[1]"),
    (["metrics", "error-rate", "canary", "num"], [0, 1], "metrics.error-rate.canary.num: has 2"),
    (["metrics", "error-rate", "canary", "num"], [0, -1, 0], "canary.num[1]"),
    (["metrics", "error-rate", "canary", "num"], [0, 1.5, 0], "canary.num[1]"),
    (["metrics", "error-rate", "baseline", "num"], [3, 2, 999], "baseline.num[2]: 999 events"),
    (["metrics", "latency", "le"], [10, 100, 1000], "must end with \"+Inf\""),
    (["metrics", "latency", "le"], [100, 10, "+Inf"], "strictly increasing"),
    (["metrics", "latency", "canary"], [[1, 2], [3, 0, 1], [5, 5, 5]], "latency.canary[0]"),
    (["metrics", "cpu", "type"], "counter", "metrics.cpu.type"),
    (["canary_weight"], [5, 5, 250], "canary_weight"),
    (["start"], "2026-11-20 10:00", "start"),
    (["surprise"], 1, "surprise: unknown key"),
    (["expected"], "maybe", "expected"),
])
def test_dataset_errors_name_the_dataset_and_field(path, value, message):
    with pytest.raises(DatasetError) as info:
        parse_dataset(_broken(path, value), "broken.json")
    assert str(info.value).startswith("broken.json: ")
    assert message in str(info.value)


def test_unreadable_and_truncated_files(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(DATASET)[:200])
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_dataset(path)
    with pytest.raises(DatasetError, match="cannot read"):
        read_dataset(tmp_path / "missing.json")
