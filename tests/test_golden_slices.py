"""Per-slice and per-model metrics against the real BinaryClassHead.

tests/golden/golden_slices.json (made by tests/golden/make_golden_slices.py
under TF 2.15 + tensorflow-estimator 2.15, `make golden`) holds small data
sets, their configs (head, columns, models, slicing_specs, min_slice_size)
and, for every model and slice in metrics.json's order, the counts and every
metric of the real head run on exactly that slice's rows.

Here each case goes through the product's public interface only: the data
is written as Parquet (two files, small row groups; list columns as
list<...>, nulls as nulls) and for some cases as TFRecord tf.train.Example (a
null is an absent feature), the config as YAML; the CLI runs the pipeline
(DirectRunner, small batches) and OUTPUT/metrics.json must hold the same
slices in the same order, with the same slice dicts and names, exact counts,
every metric to 1e-5 relative (the golden tolerance, see test_golden.py),
diffs against the baseline model, and the first non-baseline model's overall
slice at the top level.
"""

import json
import math
import os
import pathlib

import pyarrow as pa
import pytest
import yaml

from tests.datafiles import read_metrics, run_cli, write_parquet

GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "golden_slices.json").read_text())
CASES = {case["name"]: case for case in GOLDEN}
TFRECORD_CASES = ("cross_list_nulls", "feature_values_weighted", "list_logits_min_size")
RTOL = 1e-5
ATOL = 1e-6
BATCH_SIZE = 50  # rows per record batch: every case spans many batches
ROW_GROUP_SIZE = 64

VALUE_TYPES = {"string": pa.string(), "int64": pa.int64(), "float32": pa.float32(),
               "float64": pa.float64(), "bool": pa.bool_()}


def _value_type(column_type):
    return column_type[5:-1] if column_type.startswith("list<") else column_type


# ---- the golden data as input files -------------------------------------------------


def _parquet_column(values, column_type):
    value_type = VALUE_TYPES[_value_type(column_type)]
    if column_type.startswith("list<"):
        return pa.array(values, type=pa.list_(value_type))
    return pa.array(values, type=value_type)


def _write_examples(path, case, rows):
    """tf.train.Example records; a null is an absent feature, a scalar a list of one."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for row in rows:
            features = {}
            for name, values in case["columns"].items():
                value = values[row]
                if value is None:
                    continue
                value = value if isinstance(value, list) else [value]
                base = _value_type(case["types"][name])
                if base == "string":
                    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in value]))
                elif base == "int64":
                    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
                else:
                    assert base in ("float32", "float64"), f"tf.Example cannot hold {base}"
                    feature = tf.train.Feature(float_list=tf.train.FloatList(value=value))
                features[name] = feature
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


def write_case(case, file_format, directory):
    """The case's rows in two files of `file_format`; returns their glob."""
    os.makedirs(directory, exist_ok=True)
    n = case["rows"]
    cut = n * 2 // 5
    ext = "parquet" if file_format == "parquet" else "tfrecord"
    for i, (start, stop) in enumerate(((0, cut), (cut, n))):
        path = os.path.join(directory, f"part-{i}.{ext}")
        if file_format == "parquet":
            columns = {name: _parquet_column(values[start:stop], case["types"][name])
                       for name, values in case["columns"].items()}
            write_parquet(path, columns, row_group_size=ROW_GROUP_SIZE)
        else:
            _write_examples(path, case, range(start, stop))
    return os.path.join(str(directory), f"part-*.{ext}")


def write_case_config(case, path):
    with open(path, "w") as f:
        yaml.safe_dump(case["config"], f, allow_unicode=True)
    return str(path)


# ---- metrics.json against the golden ---------------------------------------------


def _typed(slice_dict):
    """A slice dict with each value's JSON type: 1, 1.0 and true all differ."""
    return {column: (type(value).__name__, value) for column, value in slice_dict.items()}


def _assert_metrics_close(ours, golden, what):
    assert isinstance(ours, dict), f"{what}: metrics {ours!r}"
    assert set(ours) == set(golden), f"{what}: keys differ: {sorted(set(ours) ^ set(golden))}"
    bad = {k: (ours[k], v) for k, v in golden.items()
           if ours[k] is None or not math.isclose(ours[k], v, rel_tol=RTOL, abs_tol=ATOL)}
    assert not bad, f"{what}: (ours, real head): {bad}"


def _baseline(case):
    names = [m["name"] for m in case["config"].get("models", []) if m.get("is_baseline")]
    return names[0] if names else None


def _first_candidate(case):
    models = case["config"].get("models") or [{"name": ""}]
    return next(m["name"] for m in models if not m.get("is_baseline"))


def assert_matches_golden(document, case):
    expected = case["slices"]
    slices = document["slices"]
    assert [(s["model"], s["slice_name"]) for s in slices] == [
        (s["model"], s["slice_name"]) for s in expected
    ], "slices (model, slice_name) differ in membership or order"

    baseline = _baseline(case)
    baseline_metrics = {s["slice_name"]: s["metrics"] for s in expected if s["model"] == baseline}
    for ours, golden in zip(slices, expected):
        what = f"{case['name']}: model {golden['model']!r}, slice {golden['slice_name']}"
        assert _typed(ours["slice"]) == _typed(golden["slice"]), what
        assert ours["example_count"] == golden["example_count"], what
        assert ours["weighted_example_count"] == golden["weighted_example_count"], what
        if golden["metrics"] is None:
            assert ours["metrics"] is None, f"{what}: below min_slice_size, metrics must be null"
        else:
            _assert_metrics_close(ours["metrics"], golden["metrics"], what)

        if baseline is None or golden["model"] == baseline or golden["metrics"] is None:
            assert ours.get("diff") is None, f"{what}: no diff expected, got {ours.get('diff')}"
            continue
        base = baseline_metrics[golden["slice_name"]]
        diff = ours.get("diff")
        assert isinstance(diff, dict) and set(diff) == set(golden["metrics"]), f"{what}: diff {diff}"
        for key, candidate in golden["metrics"].items():
            want = candidate - base[key]
            tolerance = RTOL * max(abs(candidate), abs(base[key])) + ATOL
            assert diff[key] is not None and abs(diff[key] - want) <= tolerance, (
                f"{what}: diff {key}: ours {diff[key]!r}, real head {candidate!r} - {base[key]!r}"
            )

    first = _first_candidate(case)
    overall = next(s for s in expected if s["model"] == first)
    assert overall["slice_name"] == "Overall"
    _assert_metrics_close(document["metrics"], overall["metrics"], f"{case['name']}: top-level metrics")
    assert document["example_count"] == overall["example_count"]
    assert document["weighted_example_count"] == overall["weighted_example_count"]
    assert document["rows_read"] == document["rows_evaluated"] == case["rows"]
    assert document["rows_rejected"] == 0


# ---- the tests ---------------------------------------------------------------------


def test_golden_file_covers_the_situations():
    """The golden cases hold what the acceptance asks for (the generator
    checks the details; this guards against a truncated or stale file)."""
    assert len(CASES) >= 8
    types = {t for case in GOLDEN for t in case["types"].values()}
    assert {"list<string>", "list<float32>", "bool", "int64", "float64", "string"} <= types
    specs = [spec for case in GOLDEN for spec in case["config"]["slicing_specs"]]
    assert any(len(spec.get("feature_keys", [])) > 1 for spec in specs)
    assert any("feature_values" in spec and "feature_keys" not in spec for spec in specs)
    assert any("bucket_boundaries" in spec for spec in specs)
    heads = [case["config"]["head"] for case in GOLDEN]
    assert any(h.get("label_vocabulary") for h in heads) and any(h.get("name") for h in heads)
    assert any(h.get("weight_column") for h in heads)
    assert any(_baseline(case) for case in GOLDEN)
    assert any(case["config"].get("min_slice_size", 1) > 1 for case in GOLDEN)
    assert sum(s["metrics"] is None for case in GOLDEN for s in case["slices"]) >= 3
    assert sum(len(case["slices"]) for case in GOLDEN) >= 150


RUNS = [(name, "parquet") for name in CASES] + [(name, "tfrecord") for name in TFRECORD_CASES]


@pytest.mark.parametrize("name,file_format", RUNS, ids=[f"{n}-{f}" for n, f in RUNS])
def test_slices_match_real_head(tmp_path, name, file_format):
    case = CASES[name]
    pattern = write_case(case, file_format, tmp_path / "input")
    config = write_case_config(case, tmp_path / "config.yaml")
    output = tmp_path / "output"
    code = run_cli(["--input", pattern, "--config", config, "--output", output,
                    "--batch_size", BATCH_SIZE])
    assert code == 0
    assert_matches_golden(read_metrics(output), case)


def test_cli_subprocess_writes_the_golden_slices(tmp_path, cli):
    """The same through `python run_pipeline.py` in a subprocess: exit 0, no
    traceback, metrics.json as the golden, and the table names every model."""
    case = CASES["three_models_baseline"]
    pattern = write_case(case, "parquet", tmp_path / "input")
    config = write_case_config(case, tmp_path / "config.yaml")
    output = tmp_path / "output"
    done = cli("--input", pattern, "--config", config, "--output", output, "--batch_size", BATCH_SIZE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert_matches_golden(read_metrics(output), case)
    for model in ("production", "candidate", "challenger"):
        assert model in done.stdout, f"the table does not show model {model!r}:\n{done.stdout}"
