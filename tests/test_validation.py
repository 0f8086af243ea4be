"""Gates for nightly jobs (pipeline/validation.py, SPEC §8).

- the checks on hand-made metrics.json documents: every kind of threshold and
  direction at and beside its bound, per-slice thresholds matched as TFMA's
  slicing specs, a missing slice, metric or baseline, use_confidence_interval
  (the diff's interval, or the model's own shifted by an earlier run's value),
  min_example_count; the verdict and the failures' text;
- config errors naming the field, before anything runs;
- through the command line in a subprocess: exit status 3 with a line per
  failure on stderr, validation.json, BLESSED / NOT_BLESSED, every other output
  written; an empty and a fully rejected input; --baseline_run METRICS_JSON.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import yaml

from head.slicing import slice_name
from pipeline import validation
from pipeline.config import ConfigError, parse_config
from pipeline.validation import BaselineError, ExternalBaseline, Gates
from tests.datafiles import head_results, run_cli, two_model_scores, write_config, write_parquet

HEAD = {"thresholds": [0.5]}
COLUMNS = {"logits": "logits", "label": "label"}
TWO_MODELS = [{"name": "candidate", "logits": "logits"}, {"name": "base", "logits": "score_v1", "is_baseline": True}]
SPECS = [
    {"feature_keys": ["country"]},
    {"feature_keys": ["country", "device"]},
    {"feature_keys": ["country"], "feature_values": {"device": "mobile"}},
    {"feature_keys": ["age"], "bucket_boundaries": {"age": [18, 30]}},
    {"feature_keys": ["age"]},
    {"feature_keys": ["device"]},
    {"feature_values": {"hour": 3}},
]


# ---- hand-made documents --------------------------------------------------------------


def _gates(checks, models=None, specs=None, baseline=None, intervals=False):
    """Gates of a config with `checks` as its validation section.

    The config is parsed as a user's is; `intervals` stands for a config with
    confidence intervals (parsed by parse_validation directly).
    """
    raw = {"head": HEAD, "columns": COLUMNS}
    if models:
        raw["models"] = models
    if specs:
        raw["slicing_specs"] = specs
    config = parse_config(raw)
    parsed = validation.parse_validation(checks, config.build_head().metric_keys(), config.slicing_specs,
                                         intervals_on=intervals)
    return Gates.of(dataclasses.replace(config, validation=parsed), baseline)


def _entry(model, metrics, key=(), count=1000, **extra):
    return {"model": model, "slice": dict(key), "slice_name": slice_name(key), "example_count": count,
            "weighted_example_count": count * 1.5, "metrics": metrics, **extra}


def _verdict(gates, *entries):
    return validation.validate({"slices": list(entries)}, gates)


def _messages(verdict):
    return [f["message"] for f in verdict["failures"]]


def _one_model(checks, metrics, **entry):
    return _verdict(_gates(checks), _entry("", metrics, **entry))


VALUE_CASES = [  # (value_threshold, auc, failure message or None)
    ({"lower_bound": 0.75}, 0.75, None),  # bounds are inclusive, as TFMA's
    ({"lower_bound": 0.75}, 0.7499, "Overall: auc 0.7499 < lower_bound 0.75"),
    ({"lower_bound": 0.75}, 0.7499999999, "Overall: auc 0.7499999999 < lower_bound 0.75"),  # digits to tell
    ({"upper_bound": 0.8}, 0.8, None),
    ({"upper_bound": 0.8}, 0.8125, "Overall: auc 0.8125 > upper_bound 0.8"),
    ({"lower_bound": 0.5, "upper_bound": 0.8}, 0.5, None),
    ({"lower_bound": 0.5, "upper_bound": 0.8}, 0.4375, "Overall: auc 0.4375 < lower_bound 0.5"),
    ({"lower_bound": 0.5, "upper_bound": 0.8}, 0.875, "Overall: auc 0.875 > upper_bound 0.8"),
    ({"lower_bound": -1, "upper_bound": 0.5}, -1.0, None),
]


@pytest.mark.parametrize("bounds, auc, message", VALUE_CASES)
def test_value_threshold(bounds, auc, message):
    verdict = _one_model({"thresholds": {"auc": {"value_threshold": bounds}}}, {"auc": auc})
    assert verdict["checks"] == 2  # min_example_count and the threshold
    assert verdict["validation_ok"] is (message is None)
    assert _messages(verdict) == ([] if message is None else [message])
    if message:
        failure = verdict["failures"][0]
        assert failure == {"model": "", "slice": {}, "slice_name": "Overall", "metric": "auc", "value": auc,
                           "baseline": None, "threshold": {"value_threshold": {k: float(v) for k, v in bounds.items()}},
                           "message": message}
        assert validation.marker(verdict) == "NOT_BLESSED"
    else:
        assert validation.marker(verdict) == "BLESSED"


def test_counts_can_be_gated_like_metrics():
    checks = {"thresholds": {"weighted_example_count": {"value_threshold": {"lower_bound": 2000}}}}
    verdict = _one_model(checks, {"auc": 0.5}, count=1000)
    assert _messages(verdict) == ["Overall: weighted_example_count 1500 < lower_bound 2000"]


CHANGE_CASES = [  # (change_threshold, candidate's auc, baseline's auc, failure text after "candidate, Overall: auc ")
    ({"direction": "higher_is_better", "absolute": 0.25}, 0.75, 0.5, None),  # diff == absolute passes
    ({"direction": "higher_is_better", "absolute": 0.375}, 0.75, 0.5,
     "0.75 vs baseline 0.5: diff 0.25 < absolute 0.375 (higher_is_better)"),
    ({"direction": "higher_is_better", "absolute": -0.125}, 0.375, 0.5, None),  # a tolerated drop
    ({"direction": "higher_is_better", "absolute": -0.125}, 0.25, 0.5,
     "0.25 vs baseline 0.5: diff -0.25 < absolute -0.125 (higher_is_better)"),
    ({"direction": "higher_is_better", "relative": 0.5}, 0.75, 0.5, None),
    ({"direction": "higher_is_better", "relative": 0.625}, 0.75, 0.5,
     "0.75 vs baseline 0.5: diff 0.25, relative change 0.5 < relative 0.625 (higher_is_better)"),
    ({"direction": "lower_is_better", "absolute": 0}, 0.5, 0.5, None),
    ({"direction": "lower_is_better", "absolute": 0}, 0.625, 0.5,
     "0.625 vs baseline 0.5: diff 0.125 > absolute 0 (lower_is_better)"),
    ({"direction": "lower_is_better", "relative": -0.25}, 0.375, 0.5, None),
    ({"direction": "lower_is_better", "relative": -0.25}, 0.5, 0.5,
     "0.5 vs baseline 0.5: diff 0, relative change 0 > relative -0.25 (lower_is_better)"),
    # both bounds must hold
    ({"direction": "higher_is_better", "absolute": 0, "relative": 0.5}, 0.625, 0.5,
     "0.625 vs baseline 0.5: diff 0.125, relative change 0.25 < relative 0.5 (higher_is_better)"),
    ({"direction": "lower_is_better", "absolute": -0.25, "relative": 0}, 0.375, 0.5,
     "0.375 vs baseline 0.5: diff -0.125 > absolute -0.25 (lower_is_better)"),
    # TFMA's enum names are accepted
    ({"direction": "HIGHER_IS_BETTER", "absolute": 0}, 0.4375, 0.5,
     "0.4375 vs baseline 0.5: diff -0.0625 < absolute 0 (higher_is_better)"),
    # a relative change from 0 is undefined: it fails, named; an absolute one is fine
    ({"direction": "higher_is_better", "relative": 0.1}, 0.25, 0.0,
     "0.25 vs baseline 0: diff 0.25: relative change undefined (baseline is 0), relative 0.1 (higher_is_better)"),
    ({"direction": "higher_is_better", "absolute": 0.25}, 0.25, 0.0, None),
]


@pytest.mark.parametrize("change, value, base, problem", CHANGE_CASES)
def test_change_threshold_against_the_baseline_model(change, value, base, problem):
    gates = _gates({"thresholds": {"auc": {"change_threshold": change}}}, models=TWO_MODELS)
    verdict = _verdict(gates, _entry("candidate", {"auc": value}), _entry("base", {"auc": base}))
    assert verdict["checks"] == 3  # min_example_count of both models, the change of the candidate
    assert verdict["baseline"] == "model 'base' (is_baseline)"
    assert _messages(verdict) == ([] if problem is None else [f"candidate, Overall: auc {problem}"])
    if problem:
        failure = verdict["failures"][0]
        assert (failure["model"], failure["value"], failure["baseline"]) == ("candidate", value, base)
        assert failure["threshold"]["change_threshold"]["direction"] == change["direction"].lower()


def test_the_baseline_model_is_not_gated_but_its_count_is():
    checks = {"min_example_count": 10, "thresholds": {"auc": {"value_threshold": {"lower_bound": 0.7}}}}
    gates = _gates(checks, models=TWO_MODELS)
    verdict = _verdict(gates, _entry("candidate", {"auc": 0.75}), _entry("base", {"auc": 0.5}, count=9))
    assert _messages(verdict) == ["base, Overall: example_count 9 < min_example_count 10"]
    assert verdict["failures"][0]["threshold"] == {"min_example_count": 10}


@pytest.mark.parametrize("minimum, count, ok", [(1, 0, False), (1, 1, True), (0, 0, True), (500, 499, False)])
def test_min_example_count(minimum, count, ok):
    verdict = _one_model({"min_example_count": minimum}, {"auc": 0.0}, count=count)
    assert verdict["validation_ok"] is ok and verdict["checks"] == 1
    assert _messages(verdict) == ([] if ok else [f"Overall: example_count {count} < min_example_count {minimum}"])


def test_min_example_count_is_1_without_a_validation_section():
    gates = Gates.of(parse_config({"head": HEAD, "columns": COLUMNS}))
    verdict = _verdict(gates, _entry("", {"auc": 0.0}, count=0))
    assert _messages(verdict) == ["Overall: example_count 0 < min_example_count 1"]


# ---- missing values --------------------------------------------------------------------


def test_an_undefined_metric_fails_its_value_and_change_thresholds():
    """null (strict JSON's undefined) or NaN: NaN compares false, and would pass `diff < bound` tests."""
    checks = {"thresholds": {"auc": {"value_threshold": {"lower_bound": 0.5}},
                             "precision": {"change_threshold": {"direction": "higher_is_better", "absolute": 0}}}}
    gates = _gates(checks, models=TWO_MODELS)
    verdict = _verdict(gates, _entry("candidate", {"auc": None, "precision": float("nan")}),
                       _entry("base", {"auc": 0.5, "precision": 0.5}))
    assert _messages(verdict) == ["candidate, Overall: auc missing: auc is undefined (null)",
                                  "candidate, Overall: precision missing: precision is undefined (NaN)"]
    verdict = _verdict(gates, _entry("candidate", {"auc": 0.5, "precision": 0.5}),
                       _entry("base", {"auc": 0.5, "precision": None}))
    assert _messages(verdict) == ["candidate, Overall: precision 0.5: no baseline value: baseline model 'base', "
                                  "Overall: precision is undefined (null)"]


def _earlier_run(*entries, run=None):
    return ExternalBaseline.from_document({"slices": list(entries), "run": run or {}}, "yesterday/metrics.json")


def test_an_earlier_run_without_the_slice_or_the_metric_fails_named():
    checks = {"thresholds": {"auc": {"change_threshold": {"direction": "higher_is_better", "absolute": 0}},
                             "recall": {"change_threshold": {"direction": "higher_is_better", "absolute": 0}}},
              "per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["country"]}],
                                        "thresholds": {"auc": {"change_threshold": {
                                            "direction": "higher_is_better", "absolute": 0}}}}]}
    earlier = _earlier_run(_entry("", {"auc": 0.5}), _entry("", {"auc": 0.5}, (("country", "DE"),)),
                           run={"started": "2026-11-23T02:00:00+00:00", "label": "nightly"})
    assert earlier.source == "yesterday/metrics.json (started 2026-11-23T02:00:00+00:00, label nightly)"
    gates = _gates(checks, specs=SPECS, baseline=earlier)
    verdict = _verdict(gates, _entry("", {"auc": 0.625, "recall": 0.5}),
                       _entry("", {"auc": 0.625}, (("country", "DE"),)),
                       _entry("", {"auc": 0.625}, (("country", "US"),)))
    assert _messages(verdict) == [
        f"Overall: recall 0.5: no baseline value: {earlier.source}, Overall: no metric recall",
        f"country:US: auc 0.625: no baseline value: {earlier.source} has no slice country:US of model ''",
    ]
    assert verdict["checks"] == 5 and verdict["baseline"] == earlier.source


def test_a_history_without_an_earlier_run_fails_each_change_threshold():
    none_yet = ExternalBaseline("history sqlite:///h.db", {}, missing="no earlier run in it")
    gates = _gates({"thresholds": {"auc": {"change_threshold": {"direction": "higher_is_better", "absolute": 0},
                                           "value_threshold": {"lower_bound": 0.5}}}}, baseline=none_yet)
    verdict = _verdict(gates, _entry("", {"auc": 0.625}))
    assert _messages(verdict) == ["Overall: auc 0.625: no baseline value: history sqlite:///h.db: no earlier run in it"]
    assert verdict["checks"] == 3  # the value threshold passed


def test_an_earlier_run_is_matched_by_model_name_and_slice():
    change = {"change_threshold": {"direction": "higher_is_better", "absolute": 0}}
    earlier = _earlier_run(_entry("candidate", {"auc": 0.5}), _entry("other", {"auc": 0.875}))
    models = [{"name": "candidate", "logits": "logits"}, {"name": "other", "logits": "score_v1"}]
    gates = _gates({"thresholds": {"auc": change}}, models=models, baseline=earlier)
    verdict = _verdict(gates, _entry("candidate", {"auc": 0.75}), _entry("other", {"auc": 0.75}))
    assert _messages(verdict) == ["other, Overall: auc 0.75 vs baseline 0.875: diff -0.125 < absolute 0 "
                                  "(higher_is_better)"]  # both models gated: neither is the baseline


def test_a_baseline_run_must_be_this_pipelines_metrics_json():
    with pytest.raises(BaselineError, match=r"--baseline_run x.json: not a metrics.json of this pipeline"):
        ExternalBaseline.from_document({"metrics": {"auc": 0.5}}, "x.json")


# ---- confidence intervals ------------------------------------------------------------------


def _interval(lower, upper):
    return {"lower": lower, "upper": upper, "standard_error": (upper - lower) / 4}


INTERVAL_CASES = [  # (direction, bound, candidate's auc, diff interval, failure text or None)
    ("higher_is_better", {"absolute": 0}, 0.375, (-0.25, 0.0625), None),  # the interval reaches 0
    ("higher_is_better", {"absolute": 0}, 0.375, (-0.25, -0.0625),
     "0.375 vs baseline 0.5: diff -0.125, diff interval [-0.25, -0.0625] wholly < absolute 0 "
     "(higher_is_better, use_confidence_interval)"),
    ("higher_is_better", {"absolute": 0}, 0.375, (-0.25, 0.0), None),  # touching the bound passes
    ("lower_is_better", {"absolute": 0}, 0.625, (-0.0625, 0.25), None),
    ("lower_is_better", {"absolute": 0}, 0.625, (0.0625, 0.25),
     "0.625 vs baseline 0.5: diff 0.125, diff interval [0.0625, 0.25] wholly > absolute 0 "
     "(lower_is_better, use_confidence_interval)"),
    ("higher_is_better", {"relative": 0}, 0.375, (-0.25, 0.0625), None),
    ("higher_is_better", {"relative": 0}, 0.375, (-0.25, -0.125),
     "0.375 vs baseline 0.5: diff -0.125, relative change interval [-0.5, -0.25] wholly < relative 0 "
     "(higher_is_better, use_confidence_interval)"),
    ("lower_is_better", {"relative": 0.125}, 0.625, (0.125, 0.25),
     "0.625 vs baseline 0.5: diff 0.125, relative change interval [0.25, 0.5] wholly > relative 0.125 "
     "(lower_is_better, use_confidence_interval)"),
]


@pytest.mark.parametrize("direction, bound, value, diff_interval, problem", INTERVAL_CASES)
def test_use_confidence_interval_fails_only_when_the_whole_interval_fails(direction, bound, value, diff_interval,
                                                                          problem):
    change = {"direction": direction, **bound}
    with_interval = {"thresholds": {"auc": {"change_threshold": {**change, "use_confidence_interval": True}}}}
    base = _entry("base", {"auc": 0.5}, confidence_intervals={"auc": _interval(0.4, 0.6)})
    candidate = _entry("candidate", {"auc": value}, diff={"auc": value - 0.5},
                       confidence_intervals={"auc": _interval(value - 0.1, value + 0.1)},
                       diff_confidence_intervals={"auc": _interval(*diff_interval)})
    verdict = _verdict(_gates(with_interval, models=TWO_MODELS, intervals=True), candidate, base)
    assert _messages(verdict) == ([] if problem is None else [f"candidate, Overall: auc {problem}"])
    # The point estimate alone fails every one of these.
    point_only = _verdict(_gates({"thresholds": {"auc": {"change_threshold": change}}}, models=TWO_MODELS),
                          candidate, base)
    assert not point_only["validation_ok"]


def test_use_confidence_interval_against_an_earlier_run_shifts_the_models_own_interval():
    """The earlier run's value is a fixed reference: the diff's interval is the model's, minus it."""
    checks = {"thresholds": {"auc": {"change_threshold": {"direction": "higher_is_better", "absolute": 0,
                                                          "use_confidence_interval": True}}}}
    gates = _gates(checks, baseline=_earlier_run(_entry("", {"auc": 0.5})), intervals=True)
    reaching = _entry("", {"auc": 0.375}, confidence_intervals={"auc": _interval(0.25, 0.5625)})
    assert _verdict(gates, reaching)["validation_ok"]
    short = _entry("", {"auc": 0.375}, confidence_intervals={"auc": _interval(0.25, 0.4375)})
    assert _messages(_verdict(gates, short)) == [
        "Overall: auc 0.375 vs baseline 0.5: diff -0.125, diff interval [-0.25, -0.0625] wholly < absolute 0 "
        "(higher_is_better, use_confidence_interval)"]


def test_use_confidence_interval_without_the_interval_fails_named():
    checks = {"thresholds": {"auc": {"change_threshold": {"direction": "higher_is_better", "absolute": 0,
                                                          "use_confidence_interval": True}}}}
    gates = _gates(checks, models=TWO_MODELS, intervals=True)
    verdict = _verdict(gates, _entry("candidate", {"auc": 0.625}), _entry("base", {"auc": 0.5}))
    assert _messages(verdict) == ["candidate, Overall: auc 0.625: no confidence interval "
                                  "(diff_confidence_intervals) for use_confidence_interval"]


def test_value_thresholds_use_the_point_estimate_with_intervals_on():
    checks = {"thresholds": {"auc": {"value_threshold": {"lower_bound": 0.7}}}}
    entry = _entry("", {"auc": 0.75}, confidence_intervals={"auc": _interval(0.6, 0.9)})
    assert _verdict(_gates(checks, intervals=True), entry)["validation_ok"]


# ---- per-slice thresholds --------------------------------------------------------------------


def _slices(model, aucs):
    """The overall entry (auc 0.9) and one per (slice key, auc) of `model`; auc None: withheld."""
    return [_entry(model, {"auc": 0.9})] + [
        _entry(model, None if auc is None else {"auc": auc}, key, count=10 if auc is None else 1000)
        for key, auc in aucs]


def _country(*aucs):
    return [((("country", c),), auc) for c, auc in zip(("DE", "US", "FR"), aucs)]


DOCUMENT = [  # as SPECS make them
    *_country(0.75, 0.625),
    ((("country", "DE"), ("device", "mobile")), 0.5625),
    ((("country", "DE"), ("device", "desktop")), 0.5),
    ((("age", "[18, 30)"),), 0.4),
    ((("age", 25),), 0.45),
    ((("hour", 3),), 0.3),
]


def _per_slice(spec, lower_bound=0.7):
    return {"per_slice_thresholds": [{"slicing_specs": [spec],
                                      "thresholds": {"auc": {"value_threshold": {"lower_bound": lower_bound}}}}]}


PER_SLICE_CASES = {  # spec -> (the slices it matches, those failing auc >= 0.7), as TFMA's SlicingSpec
    "feature_keys": ({"feature_keys": ["country"]}, 2, ["country:US"]),
    "a cross": ({"feature_keys": ["country", "device"]}, 2,
                ["country_X_device:DE_X_mobile", "country_X_device:DE_X_desktop"]),
    "feature_values": ({"feature_keys": ["country"], "feature_values": {"device": "mobile"}}, 1,
                       ["country_X_device:DE_X_mobile"]),
    "buckets": ({"feature_keys": ["age"], "bucket_boundaries": {"age": [18, 30]}}, 1, ["age:[18, 30)"]),
    "the raw column another spec buckets": ({"feature_keys": ["age"]}, 1, ["age:25"]),
    "an int value from YAML": ({"feature_values": {"hour": 3}}, 1, ["hour:3"]),
    "the overall slice": ({}, 1, []),
}


@pytest.mark.parametrize("case", list(PER_SLICE_CASES))
def test_per_slice_thresholds_gate_the_slices_of_their_spec(case):
    spec, matched, failing = PER_SLICE_CASES[case]
    verdict = _verdict(_gates(_per_slice(spec), specs=SPECS), *_slices("", DOCUMENT))
    assert [f["slice_name"] for f in verdict["failures"]] == failing
    assert verdict["checks"] == 1 + matched  # min_example_count, then each slice matched
    if failing:
        failure = verdict["failures"][0]
        assert failure["message"] == f"{failing[0]}: auc {failure['value']:.6g} < lower_bound 0.7"
        assert slice_name(tuple(failure["slice"].items())) == failing[0]


def test_per_slice_thresholds_apply_to_every_non_baseline_model():
    gates = _gates(_per_slice({"feature_keys": ["country"]}), models=TWO_MODELS, specs=SPECS)
    verdict = _verdict(gates, *_slices("candidate", _country(0.75, 0.5)), *_slices("base", _country(0.5, 0.5)))
    assert _messages(verdict) == ["candidate, country:US: auc 0.5 < lower_bound 0.7"]


def test_withheld_slices_are_not_gated_and_a_spec_without_a_gated_slice_fails():
    """As TFMA's missing slices: small slices are left out; a spec with none left fails."""
    gates = _gates(_per_slice({"feature_keys": ["country"]}), specs=SPECS)
    verdict = _verdict(gates, *_slices("", _country(0.75, None)))
    assert verdict["validation_ok"] and verdict["checks"] == 2
    verdict = _verdict(gates, *_slices("", _country(None)))
    assert _messages(verdict) == ["(no slice): auc not checked: slicing spec {feature_keys: [country]}: "
                                  "every slice is below min_slice_size"]
    gates = _gates(_per_slice({"feature_keys": ["device"]}), specs=SPECS)
    verdict = _verdict(gates, *_slices("", DOCUMENT))
    assert _messages(verdict) == ["(no slice): auc not checked: slicing spec {feature_keys: [device]}: "
                                  "the data has no slice of it"]
    assert verdict["failures"][0]["slice"] is None and verdict["failures"][0]["slice_name"] is None


def test_per_slice_change_thresholds_compare_the_same_slice_of_the_baseline():
    checks = {"per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["country"]}], "thresholds": {
        "auc": {"change_threshold": {"direction": "higher_is_better", "absolute": -0.0625}}}}]}
    gates = _gates(checks, models=TWO_MODELS, specs=SPECS)
    verdict = _verdict(gates, *_slices("candidate", _country(0.75, 0.5)), *_slices("base", _country(0.5, 0.625)))
    assert _messages(verdict) == ["candidate, country:US: auc 0.5 vs baseline 0.625: diff -0.125 < absolute "
                                  "-0.0625 (higher_is_better)"]


# ---- config errors ---------------------------------------------------------------------------

CHANGE = {"direction": "higher_is_better", "absolute": 0}
CONFIG_ERRORS = {
    "unknown metric": ({"thresholds": {"aucc": {"value_threshold": {"lower_bound": 0.5}}}},
                       "validation.thresholds.aucc: unknown metric key (valid: average_loss, accuracy,"),
    "unknown key": ({"thresholds": {"auc": {"value_treshold": {}}}},
                    "validation.thresholds.auc.value_treshold: unknown key (allowed: value_threshold, change_threshold)"),
    "empty threshold": ({"thresholds": {"auc": {}}},
                        "validation.thresholds.auc: needs a value_threshold or a change_threshold"),
    "no bound": ({"thresholds": {"auc": {"value_threshold": {}}}},
                 "validation.thresholds.auc.value_threshold: needs lower_bound or upper_bound"),
    "crossed bounds": ({"thresholds": {"auc": {"value_threshold": {"lower_bound": 0.8, "upper_bound": 0.7}}}},
                       "validation.thresholds.auc.value_threshold: lower_bound 0.8 is above upper_bound 0.7"),
    "not a number": ({"thresholds": {"auc": {"value_threshold": {"lower_bound": "high"}}}},
                     "validation.thresholds.auc.value_threshold.lower_bound: must be a finite number, got 'high'"),
    "bad direction": ({"thresholds": {"auc": {"change_threshold": {"direction": "up", "absolute": 0}}}},
                      "validation.thresholds.auc.change_threshold.direction: must be one of higher_is_better, "
                      "lower_is_better, got 'up'"),
    "no change bound": ({"thresholds": {"auc": {"change_threshold": {"direction": "higher_is_better"}}}},
                        "validation.thresholds.auc.change_threshold: needs absolute or relative"),
    "interval without intervals": (
        {"thresholds": {"auc": {"change_threshold": {**CHANGE, "use_confidence_interval": True}}}},
        "validation.thresholds.auc.change_threshold.use_confidence_interval: needs confidence intervals"),
    "min_example_count": ({"min_example_count": -1},
                          "validation.min_example_count: must be a whole number >= 0, got -1"),
    "unknown section key": ({"min_count": 1}, "validation.min_count: unknown key"),
    "slice spec not computed": (
        {"per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["device"]}],
                                   "thresholds": {"auc": {"value_threshold": {"lower_bound": 0.5}}}}]},
        "validation.per_slice_thresholds[0].slicing_specs[0]: {feature_keys: [device]} is not one of the config's "
        "slicing_specs"),
    "per-slice metric": (
        {"per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["country"]}],
                                   "thresholds": {"aucc": {"value_threshold": {"lower_bound": 0.5}}}}]},
        "validation.per_slice_thresholds[0].thresholds.aucc: unknown metric key"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors_name_the_field(case):
    checks, message = CONFIG_ERRORS[case]
    raw = {"head": HEAD, "columns": COLUMNS, "models": TWO_MODELS, "slicing_specs": [{"feature_keys": ["country"]}],
           "validation": checks}
    with pytest.raises(ConfigError) as raised:
        parse_config(raw)
    assert str(raised.value).startswith(message), str(raised.value)


def test_metric_keys_are_the_heads_own():
    raw = {"head": {"name": "ctr"}, "columns": COLUMNS,
           "validation": {"thresholds": {"auc/ctr": {"value_threshold": {"lower_bound": 0.5}},
                                         "loss": {"value_threshold": {"upper_bound": 1}}}}}
    assert [t.metric for t in parse_config(raw).validation.thresholds] == ["auc/ctr", "loss"]
    raw["validation"]["thresholds"]["auc"] = {"value_threshold": {"lower_bound": 0.5}}
    with pytest.raises(ConfigError, match=r"^validation.thresholds.auc: unknown metric key"):
        parse_config(raw)


def test_a_change_threshold_needs_a_baseline_and_only_one():
    checks = {"thresholds": {"auc": {"change_threshold": CHANGE}}}
    with pytest.raises(BaselineError, match=r"^validation.thresholds.auc.change_threshold: no baseline to compare "
                                            r"with: give a model is_baseline: true, or pass --baseline_run$"):
        _gates(checks)
    earlier = _earlier_run(_entry("", {"auc": 0.5}))
    with pytest.raises(BaselineError, match=r"^--baseline_run: the config already has a baseline model \('base'"):
        _gates(checks, models=TWO_MODELS, baseline=earlier)


def test_the_config_echoed_in_metrics_json_holds_the_gates():
    checks = {"min_example_count": 5,
              "thresholds": {"auc": {"value_threshold": {"lower_bound": 0.5}, "change_threshold": CHANGE}},
              "per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["country"]}],
                                        "thresholds": {"auc": {"value_threshold": {"upper_bound": 1}}}}]}
    raw = {"head": HEAD, "columns": COLUMNS, "models": TWO_MODELS,
           "slicing_specs": [{"feature_keys": ["country"]}], "validation": checks}
    assert parse_config(raw).as_dict()["validation"] == {
        "min_example_count": 5,
        "thresholds": {"auc": {"value_threshold": {"lower_bound": 0.5},
                               "change_threshold": {"direction": "higher_is_better", "absolute": 0.0}}},
        "per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["country"]}],
                                  "thresholds": {"auc": {"value_threshold": {"upper_bound": 1.0}}}}],
    }


# ---- through the command line ------------------------------------------------------------

ROWS = 3000
WEIGHTED = {"weight_column": "weight", "thresholds": [0.5]}
COUNTRIES = np.array(["DE", "US", "FR"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Scores of a candidate (logits) and a noisier production model (score_v1), with countries."""
    columns = two_model_scores(ROWS, 11, COUNTRIES)
    return write_parquet(tmp_path_factory.mktemp("validation_data") / "scores.parquet", columns), columns


def _head(columns, logits="logits", rows=slice(None)):
    results, _, _ = head_results(WEIGHTED, columns[logits][rows], columns["label"][rows], columns["weight"][rows])
    return results


REPORTS = ["plots.json", "plots.png", "report.html"]  # the default outputs besides metrics.json


def _files(output):
    return sorted(name for name in os.listdir(output) if not name.startswith("."))


def _report(output):
    with open(os.path.join(output, "report.html")) as f:
        return f.read()


def _read(output, name):
    with open(os.path.join(output, name)) as f:
        return json.load(f)


def _failure_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("validation failed: ")]


def test_failing_gates_exit_3_with_every_output_written_then_passing_gates_bless(cli, data, tmp_path):
    path, columns = data
    candidate, production = _head(columns), _head(columns, "score_v1")
    assert candidate["auc"] > production["auc"]
    by_country = {c: _head(columns, rows=columns["country"] == c)["auc"] for c in COUNTRIES}
    worst = min(by_country, key=by_country.get)
    slice_bound = round(sorted(by_country.values())[1] - 1e-4, 4)  # between the worst country and the others
    loss_bound = round(candidate["average_loss"] - 0.01, 4)
    gates = {
        "thresholds": {
            "auc": {"value_threshold": {"lower_bound": float(np.floor(candidate["auc"] * 1000) / 1000)},
                    "change_threshold": {"direction": "higher_is_better", "absolute": 0}},
            "average_loss": {"value_threshold": {"upper_bound": loss_bound}},
        },
        "per_slice_thresholds": [{"slicing_specs": [{"feature_keys": ["country"]}],
                                  "thresholds": {"auc": {"value_threshold": {"lower_bound": slice_bound}}}}],
    }
    sections = {"models": [{"name": "candidate", "logits": "logits"},
                           {"name": "production", "logits": "score_v1", "is_baseline": True}],
                "slicing_specs": [{"feature_keys": ["country"]}]}
    config = write_config(tmp_path / "gates.yaml", WEIGHTED, {"label": "label"}, validation=gates, **sections)
    output = tmp_path / "out"
    run = cli("--input", path, "--config", config, "--output", output, "--run_label", "nightly-1")
    assert run.returncode == 3, run.stderr
    expected = [
        f"candidate, Overall: average_loss {candidate['average_loss']:.6g} > upper_bound {loss_bound:g}",
        f"candidate, country:{worst}: auc {by_country[worst]:.6g} < lower_bound {slice_bound:g}",
    ]
    assert _failure_lines(run.stderr) == [f"validation failed: {line}" for line in expected]
    checks = 2 + 3 + len(COUNTRIES)  # min_example_count per model, 3 overall, auc per country
    assert f"validation: FAILED, 2 of {checks} checks failed (NOT_BLESSED)" in run.stdout
    assert _files(output) == sorted(["NOT_BLESSED", "metrics.json", "validation.json", *REPORTS])
    assert os.path.getsize(output / "NOT_BLESSED") == 0
    assert f"Validation FAILED (NOT_BLESSED): {checks} checks, 2 failed" in _report(output)
    verdict, document = _read(output, "validation.json"), _read(output, "metrics.json")
    assert verdict["validation_ok"] is False and verdict["checks"] == checks
    assert verdict["baseline"] == "model 'production' (is_baseline)"
    assert [f["message"] for f in verdict["failures"]] == expected
    loss, country = verdict["failures"]
    assert loss["value"] == pytest.approx(candidate["average_loss"], rel=1e-12) and loss["baseline"] is None
    assert loss["threshold"] == {"value_threshold": {"upper_bound": loss_bound}}
    assert (country["model"], country["slice"], country["slice_name"]) == ("candidate", {"country": worst},
                                                                          f"country:{worst}")
    assert document["metrics"]["auc"] == pytest.approx(candidate["auc"], rel=1e-12)  # the run's results, as usual
    assert document["run"]["label"] == "nightly-1" and 0 < document["run"]["seconds"] < 600

    gates["thresholds"]["average_loss"]["value_threshold"]["upper_bound"] = 1.0
    gates["per_slice_thresholds"][0]["thresholds"]["auc"]["value_threshold"]["lower_bound"] = 0.5
    write_config(tmp_path / "gates.yaml", WEIGHTED, {"label": "label"}, validation=gates, **sections)
    run = cli("--input", path, "--config", config, "--output", output)
    assert run.returncode == 0, run.stderr
    assert not _failure_lines(run.stderr)
    assert f"validation: ok, {checks} checks passed (BLESSED)" in run.stdout
    assert _files(output) == sorted(["BLESSED", "metrics.json", "validation.json", *REPORTS])  # the other marker went
    assert f"Validation passed (BLESSED): {checks} checks, 0 failed" in _report(output)
    assert _read(output, "validation.json") == {"validation_ok": True, "checks": checks, "failures": [],
                                                "baseline": "model 'production' (is_baseline)"}
    assert _read(output, "metrics.json")["run"]["label"] is None


def test_baseline_run_gates_against_an_earlier_runs_metrics_json(cli, data, tmp_path):
    path, columns = data
    yesterday = tmp_path / "yesterday"
    config = write_config(tmp_path / "v1.yaml", WEIGHTED, {"logits": "score_v1", "label": "label"})
    run = cli("--input", path, "--config", config, "--output", yesterday, "--run_label", "v1")
    assert run.returncode == 0, run.stderr
    started = _read(yesterday, "metrics.json")["run"]["started"]
    change = {"direction": "higher_is_better", "absolute": 0}
    gates = {"thresholds": {"auc": {"change_threshold": change}, "average_loss": {"change_threshold": change}}}
    config = write_config(tmp_path / "v2.yaml", WEIGHTED, validation=gates)
    output = tmp_path / "today"
    run = cli("--input", path, "--config", config, "--output", output,
              "--baseline_run", yesterday / "metrics.json")
    assert run.returncode == 3, run.stderr
    today, before = _head(columns), _head(columns, "score_v1")
    diff = today["average_loss"] - before["average_loss"]
    assert diff < 0 < today["auc"] - before["auc"]  # better on both: the loss gate is set the wrong way round
    message = (f"Overall: average_loss {today['average_loss']:.6g} vs baseline {before['average_loss']:.6g}: "
               f"diff {diff:.6g} < absolute 0 (higher_is_better)")
    assert _failure_lines(run.stderr) == [f"validation failed: {message}"]
    verdict = _read(output, "validation.json")
    assert verdict["baseline"] == f"{yesterday / 'metrics.json'} (started {started}, label v1)"
    assert verdict["checks"] == 3 and [f["message"] for f in verdict["failures"]] == [message]
    assert verdict["failures"][0]["baseline"] == pytest.approx(before["average_loss"], rel=1e-12)


@pytest.mark.parametrize("gates, message", [
    ({"thresholds": {"aucc": {"value_threshold": {"lower_bound": 0.5}}}},
     "error: config {config}: validation.thresholds.aucc: unknown metric key (valid: average_loss,"),
    ({"thresholds": {"auc": {"change_threshold": {"direction": "higher_is_better", "absolute": 0}}}},
     "error: validation.thresholds.auc.change_threshold: no baseline to compare with: give a model "
     "is_baseline: true, or pass --baseline_run"),
])
def test_config_errors_exit_2_before_anything_runs(cli, data, tmp_path, gates, message):
    config = write_config(tmp_path / "c.yaml", WEIGHTED, validation=gates)
    run = cli("--input", data[0], "--config", config, "--output", tmp_path / "out")
    assert run.returncode == 2
    assert run.stderr.startswith(message.format(config=config)) and len(run.stderr.splitlines()) == 1, run.stderr
    assert not os.path.exists(tmp_path / "out")


# ---- configs/nightly.yaml ------------------------------------------------------------------

NIGHTLY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "nightly.yaml")
DEMO = os.path.join(os.path.dirname(NIGHTLY), os.pardir, "data", "demo", "scores.parquet")


def test_the_nightly_config_blesses_the_demo_candidate(cli, tmp_path):
    output = tmp_path / "out"
    run = cli("--input", DEMO, "--config", NIGHTLY, "--output", output, "--run_label", "demo")
    assert run.returncode == 0, run.stderr
    countries = 5
    checks = 2 + 4 + 2 * countries  # min_example_count per model; auc and average_loss, value and change; per country
    assert f"validation: ok, {checks} checks passed (BLESSED)" in run.stdout
    assert _files(output) == sorted(["BLESSED", "metrics.json", "validation.json", *REPORTS])
    document = _read(output, "metrics.json")
    assert len([e for e in document["slices"] if e["model"] == "candidate"]) == 1 + countries


def test_the_nightly_config_rejects_the_production_model_as_a_candidate(cli, tmp_path):
    """The same gates with the two models' scores swapped: the older model fails them."""
    with open(NIGHTLY) as f:
        swapped = yaml.safe_load(f)
    swapped["models"][0]["logits"], swapped["models"][1]["logits"] = "score_v1", "logits"
    config = tmp_path / "swapped.yaml"
    config.write_text(yaml.safe_dump(swapped))
    run = cli("--input", DEMO, "--config", config, "--output", tmp_path / "out")
    assert run.returncode == 3, run.stderr
    failures = _read(tmp_path / "out", "validation.json")["failures"]
    failed = sorted((f["slice_name"], f["metric"], next(iter(f["threshold"]))) for f in failures)
    countries = ["br", "de", "fr", "jp", "us"]
    assert failed == sorted(
        [("Overall", m, kind) for m in ("auc", "average_loss") for kind in ("value_threshold", "change_threshold")]
        + [(f"country:{c}", "auc", "change_threshold") for c in countries])  # every country's auc >= 0.72 holds
    assert len(_failure_lines(run.stderr)) == len(failures) == 9
    assert "validation: FAILED, 9 of 16 checks failed (NOT_BLESSED)" in run.stdout


def test_use_confidence_interval_with_the_runs_own_intervals(cli, data, tmp_path):
    """auc: the point diff misses the bound, its interval reaches it (pass); accuracy: wholly short (fail)."""
    path, _ = data
    sections = {"models": [{"name": "candidate", "logits": "logits"},
                           {"name": "production", "logits": "score_v1", "is_baseline": True}],
                "confidence_intervals": {"method": "jackknife", "num_samples": 10, "seed": 1}}
    first = tmp_path / "first"
    config = write_config(tmp_path / "ci.yaml", WEIGHTED, {"label": "label"}, **sections)
    assert run_cli(["--input", path, "--config", config, "--output", first]) == 0
    overall = _read(first, "metrics.json")["slices"][0]
    diff, intervals = overall["diff"], overall["diff_confidence_intervals"]
    auc_bound = (diff["auc"] + intervals["auc"]["upper"]) / 2  # above the point diff, below the interval's top
    accuracy_bound = intervals["accuracy"]["upper"] + 0.001
    assert diff["auc"] < auc_bound < intervals["auc"]["upper"]  # the point estimate alone would fail
    gates = {"thresholds": {
        "auc": {"change_threshold": {"direction": "higher_is_better", "absolute": auc_bound,
                                     "use_confidence_interval": True}},
        "accuracy": {"change_threshold": {"direction": "higher_is_better", "absolute": accuracy_bound,
                                          "use_confidence_interval": True}}}}
    config = write_config(tmp_path / "ci.yaml", WEIGHTED, {"label": "label"}, validation=gates, **sections)
    run = cli("--input", path, "--config", config, "--output", tmp_path / "second")
    assert run.returncode == 3, run.stderr
    accuracy = overall["metrics"]["accuracy"]
    base = accuracy - diff["accuracy"]
    interval = intervals["accuracy"]
    expected = (f"candidate, Overall: accuracy {accuracy:.6g} vs baseline {base:.6g}: diff {diff['accuracy']:.6g}, "
                f"diff interval [{interval['lower']:.6g}, {interval['upper']:.6g}] wholly < absolute "
                f"{accuracy_bound:.6g} (higher_is_better, use_confidence_interval)")
    assert _failure_lines(run.stderr) == [f"validation failed: {expected}"]
    assert _read(tmp_path / "second", "validation.json")["checks"] == 4


def test_use_confidence_interval_is_accepted_with_intervals_configured():
    raw = {"head": HEAD, "columns": COLUMNS, "confidence_intervals": {"method": "poisson_bootstrap"},
           "validation": {"thresholds": {"auc": {"change_threshold": {**CHANGE, "use_confidence_interval": True}}}}}
    (threshold,) = parse_config(raw).validation.thresholds
    assert threshold.use_confidence_interval and threshold.as_dict() == {"change_threshold": {
        "direction": "higher_is_better", "absolute": 0.0, "use_confidence_interval": True}}
