"""benchmarks/sliced_data.py and benchmarks/slices_bench.py: the data and the checks the bench reports."""

import os
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

import sliced_data  # noqa: E402
import slices_bench  # noqa: E402


def test_shards_are_deterministic_and_shaped_as_documented():
    a = sliced_data.shard_columns(7, sliced_data.SET_IDS["parquet"], 3, 200_000)
    b = sliced_data.shard_columns(7, sliced_data.SET_IDS["parquet"], 3, 200_000)
    other = sliced_data.shard_columns(7, sliced_data.SET_IDS["parquet"], 4, 200_000)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["logits"], other["logits"])
    assert abs(a["label"].mean() - 0.35) < 0.01
    assert len(np.unique(a["country"], axis=0)) == len(sliced_data.COUNTRIES) == 50
    assert set(np.unique(a["device"])) == {0, 1, 2, 3}
    assert a["store"].min() >= 0 and a["store"].max() < sliced_data.STORES
    assert 0.5 < np.corrcoef(a["logits"], a["score_v1"])[0, 1] < 1.0  # a second, weaker model


def test_parquet_set_is_written_once_and_reused(tmp_path):
    messages = []
    first = sliced_data.make_set(str(tmp_path), "parquet", 2, 1000, 256, log=messages.append)
    again = sliced_data.make_set(str(tmp_path), "parquet", 2, 1000, 256, log=messages.append)
    assert first == again and messages[-1].startswith("data: reusing")
    table = pq.read_table(tmp_path / "part-00001.parquet")
    assert table.schema.names == ["logits", "score_v1", "label", "weight", "country", "device", "store"]
    columns = sliced_data.shard_columns(sliced_data.make_data.DEFAULT_SEED, sliced_data.SET_IDS["parquet"], 1, 1000)
    countries = [bytes(row).decode() for row in columns["country"]]
    assert table.column("country").to_pylist() == countries
    assert table.column("device").to_pylist() == [sliced_data.DEVICES[i] for i in columns["device"]]


def _document(metrics, slices):
    return {"metrics": metrics, "example_count": 10, "weighted_example_count": 12.5, "slices": slices}


def _entry(model, slice_dict, metrics, **more):
    return dict({"model": model, "slice": slice_dict, "example_count": 10, "weighted_example_count": 12.5,
                 "metrics": metrics}, **more)


def test_same_overall_compares_every_metric_and_count():
    metrics = {"auc": 0.8, "accuracy": 0.7}
    unsliced = _document(metrics, [])
    sliced = _document({}, [_entry("production", {}, {"auc": 0.5, "accuracy": 0.1}),
                            _entry("candidate", {}, dict(metrics)),
                            _entry("candidate", {"country": "US"}, {"auc": 0.1, "accuracy": 0.1})])
    assert slices_bench.same_overall(unsliced, sliced) == (0.0, "accuracy")
    sliced["slices"][1]["metrics"]["auc"] = 0.8 * (1 + 1e-6)
    worst, key = slices_bench.same_overall(unsliced, sliced)
    assert key == "auc" and worst == pytest.approx(1e-6, rel=1e-3)
    sliced["slices"][1]["weighted_example_count"] = 13.0
    assert slices_bench.same_overall(unsliced, sliced)[1] == "weighted_example_count"
    del sliced["slices"][1]["metrics"]["auc"]
    assert slices_bench.same_overall(unsliced, sliced) == (float("inf"), "keys differ: ['auc']")
    assert slices_bench.same_overall(unsliced, _document({}, []))[0] is None


def test_versus_tfma_maps_names_and_diffs():
    ours = _document({}, [_entry("candidate", {"country": "US"}, {"auc": 0.80, "accuracy": 0.70},
                                 diff={"auc": 0.02, "accuracy": 0.01})])
    theirs = {"slices": [{"model": "candidate", "slice": {"country": "US"},
                          "metrics": {"auc": 0.8001, "binary_accuracy": 0.70, "auc_diff": 0.0203,
                                      "binary_accuracy_diff": 0.01}}]}
    rows = {(r["model"], str(r["slice"])): r for r in slices_bench.versus_tfma(ours, theirs)}
    row = rows[("candidate", str({"country": "US"}))]
    assert row["key"] == "auc" and row["max_relative_difference"] == pytest.approx(1e-4 / 0.8001)
    assert row["without_auc"] == 0.0
    assert row["diff_key"] == "auc" and row["diff_abs"] == pytest.approx(3e-4)
    assert rows[("production", "{}")]["max_relative_difference"] is None  # missing: reported, not raised


def test_targets_pass_fail_and_unmeasured():
    def case(rate, rss):
        return {"pipeline": {"rows_per_s": rate, "peak_rss_mib": rss}}

    cases = {"a": case(2e6, 300), "b": case(1.5e6, 400), "c": dict(case(2e5, 3000), rows=10_000_000, slices=10_001),
             "d": case(7e5, 700), "e": case(1e5, 1000)}
    tfma = {"sliced": {"tfma": {"rows_per_s": 300}}, "jackknife": {"tfma": {"rows_per_s": 60}},
            "poisson_bootstrap": {"tfma": {}}}
    results = {t["target"].split(":")[1].strip(): t["result"] for t in slices_bench.targets(cases, tfma)}
    assert results["b rows/s / a rows/s (sliced two-model vs unsliced)"] == "PASS"
    assert results["c (10001 slices per model, 10M rows) peak RSS"] == "FAIL"
    assert results["d (jackknife 20) rows/s / b rows/s"] == "FAIL"
    assert results["e rows/s / TFMA Poisson bootstrap rows/s"] == "ERROR (not measured)"
