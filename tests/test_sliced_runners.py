"""Slices and models through the CLI on every runner: the same numbers everywhere.

A two-model, sliced evaluation (a string column, an integer column, their
cross, a list-valued column, buckets) runs in-process; every (model, slice)
is checked against the head on exactly that slice's rows, and the diff
against the baseline. The DirectRunner with worker processes, Dask (a real
local cluster on loopback) and other batchings and file orders must give
the identical document (<= 1e-12 relative, counts exact); the Dataflow dry
run builds the same job. Poisson bootstrap intervals ride along in every
run (and jackknife intervals in their own runs): they too are identical on
every runner, batching and file order.
"""

import math
import os

import numpy as np
import pytest

from head import BinaryClassHead
from tests.datafiles import (
    REL_TOL,
    assert_metrics_equal,
    read_metrics,
    run_cli,
    scores,
    split_rows,
    write_config,
    write_files,
    write_parquet,
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE_SIZES = (900, 600, 1300)
HEAD = {"weight_column": "weight", "thresholds": [0.3, 0.7]}
MODELS = [{"name": "candidate", "logits": "logits"},
          {"name": "production", "logits": "score_v1", "is_baseline": True}]
SLICING = [
    {"feature_keys": ["country"]},
    {"feature_keys": ["year"]},
    {"feature_keys": ["country", "year"]},
    {"feature_keys": ["tags"]},
    {"feature_keys": ["age"], "bucket_boundaries": {"age": [18, 30, 50]}},
]
INTERVALS = {"poisson_bootstrap": {"method": "poisson_bootstrap", "num_samples": 20, "seed": 7},
             "jackknife": {"method": "jackknife", "num_samples": 20, "seed": 3}}
DATAFLOW = [
    "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project", "test-project",
    "--region", "us-central1", "--temp_location", "gs://valid-bucket/tmp",
    "--setup_file", os.path.join(PROJECT_ROOT, "setup.py"),
]


def _columns():
    columns = scores(sum(FILE_SIZES), seed=21)
    rng = np.random.default_rng(22)
    n = len(columns["logits"])
    columns["score_v1"] = (columns["logits"] + rng.normal(0, 1.0, n)).astype(np.float32)
    columns["country"] = rng.choice(["DE", "FR", "US", "BR", "JP"], n)
    columns["year"] = rng.integers(2019, 2023, n).astype(np.int64)
    columns["tags"] = [list(rng.choice(["x", "y", "z"], int(k))) for k in rng.integers(1, 3, n)]
    columns["age"] = rng.integers(12, 80, n).astype(np.int64)
    return columns


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    columns = _columns()
    parts = split_rows(columns, FILE_SIZES)
    root = tmp_path_factory.mktemp("sliced")
    patterns = {}
    for file_format in ("parquet", "tfrecord"):
        patterns[file_format], _ = write_files(root / file_format, file_format, parts, row_group_size=250)
    shuffled = root / "shuffled"
    os.makedirs(shuffled)
    for name, part in zip(("c", "a", "b"), parts):
        write_parquet(shuffled / f"scores-{name}.parquet", part, row_group_size=250)
    patterns["parquet-shuffled"] = str(shuffled / "scores-*.parquet")
    config = write_config(root / "config.yaml", head=dict(HEAD), columns={"label": "label"},
                          models=MODELS, slicing_specs=SLICING,
                          confidence_intervals=INTERVALS["poisson_bootstrap"])
    jackknife = write_config(root / "jackknife.yaml", head=dict(HEAD), columns={"label": "label"},
                             models=MODELS, slicing_specs=SLICING, confidence_intervals=INTERVALS["jackknife"])
    return columns, patterns, config, jackknife


def _run(tmp_path, pattern, config, *options):
    output = tmp_path / "out"
    code = run_cli(["--input", pattern, "--config", config, "--output", output, *options])
    assert code == 0, f"exit status {code}"
    return read_metrics(output)


def _rows_of(columns, slice_dict):
    n = len(columns["logits"])
    keep = np.ones(n, dtype=bool)
    for column, value in slice_dict.items():
        if column == "tags":
            keep &= np.array([value in tags for tags in columns["tags"]])
        elif column == "age":
            lo, hi = (float(x) for x in value.strip("[)").split(", "))
            keep &= (columns["age"] >= lo) & (columns["age"] < hi)
        else:
            keep &= np.asarray(columns[column]) == value
    return np.flatnonzero(keep)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The in-process document, every (model, slice) checked against the head."""
    columns, patterns, config, _ = data
    document = _run(tmp_path_factory.mktemp("reference"), patterns["parquet"], config)
    head = BinaryClassHead(**HEAD)
    per_model = {}
    for entry in document["slices"]:
        rows = _rows_of(columns, entry["slice"])
        logits = columns[{"candidate": "logits", "production": "score_v1"}[entry["model"]]]
        state = head.update_metrics(head.new_state(), {"weight": columns["weight"][rows]},
                                    logits[rows, None], columns["label"][rows])
        assert entry["example_count"] == len(rows) > 0
        assert_metrics_equal(entry["metrics"], head.results(state), rel_tol=1e-9,
                             what=f"{entry['model']} {entry['slice_name']}")
        per_model.setdefault(entry["model"], {})[entry["slice_name"]] = entry
    assert len(per_model["candidate"]) == len(per_model["production"]) == 1 + 5 + 4 + 20 + 3 + 4
    for name, entry in per_model["candidate"].items():
        base = per_model["production"][name]
        assert set(entry["diff"]) == set(entry["metrics"])
        for key, diff in entry["diff"].items():
            assert math.isclose(diff, entry["metrics"][key] - base["metrics"][key], abs_tol=1e-15)
        assert "diff" not in base
    assert document["metrics"] == per_model["candidate"]["Overall"]["metrics"]
    _check_intervals(document)
    return document


def _check_intervals(document):
    """Every metric of every shown slice has an interval around its value; diffs too."""
    for entry in document["slices"]:
        for name, values in (("confidence_intervals", entry["metrics"]), ("diff_confidence_intervals",
                                                                          entry.get("diff"))):
            if values is None:
                assert name not in entry
                continue
            assert set(entry[name]) == set(values), (entry["slice_name"], name)
            for key, value in values.items():
                bounds = entry[name][key]
                assert bounds["standard_error"] >= 0, (entry["slice_name"], key)
                assert math.isclose(value - bounds["lower"], bounds["upper"] - value, rel_tol=1e-9, abs_tol=1e-12)
    # Paired samples (the models' errors correlate): the diff's standard error is
    # below that of independent estimates, sqrt(se_a^2 + se_b^2).
    candidate, production = (next(e for e in document["slices"] if e["model"] == m and e["slice"] == {})
                             for m in ("candidate", "production"))
    for key in ("auc", "average_loss", "accuracy"):
        diff_error = candidate["diff_confidence_intervals"][key]["standard_error"]
        unpaired = math.hypot(*(e["confidence_intervals"][key]["standard_error"] for e in (candidate, production)))
        assert 0 < diff_error < 0.9 * unpaired, key


def _assert_same(document, reference, what, intervals=True):
    assert [(e["model"], e["slice_name"]) for e in document["slices"]] == [
        (e["model"], e["slice_name"]) for e in reference["slices"]], what
    for ours, theirs in zip(document["slices"], reference["slices"]):
        where = f"{what}: {ours['model']} {ours['slice_name']}"
        assert ours["slice"] == theirs["slice"] and ours["example_count"] == theirs["example_count"], where
        assert math.isclose(ours["weighted_example_count"], theirs["weighted_example_count"], rel_tol=REL_TOL)
        assert_metrics_equal(ours["metrics"], theirs["metrics"], what=where)
        if "diff" in theirs:
            for key, value in theirs["diff"].items():
                assert math.isclose(ours["diff"][key], value, rel_tol=1e-9, abs_tol=1e-12), (where, key)
        for name in ("confidence_intervals", "diff_confidence_intervals"):
            assert set(ours.get(name) or {}) == set(theirs.get(name) or {}), (where, name)
            if not intervals:
                continue
            for key, bounds in (theirs.get(name) or {}).items():
                for bound, value in bounds.items():
                    assert math.isclose(ours[name][key][bound], value, rel_tol=REL_TOL, abs_tol=1e-15), (
                        where, name, key, bound)


def test_tfrecord_gives_the_parquet_numbers(data, reference, tmp_path):
    _, patterns, config, _ = data
    _assert_same(_run(tmp_path, patterns["tfrecord"], config, "--batch_size", 997), reference, "tfrecord")


def test_jackknife_intervals_are_the_same_on_every_runner_and_batching(data, dask_cluster, tmp_path):
    columns, patterns, _, config = data
    reference = _run(tmp_path / "reference", patterns["parquet"], config, "--batch_size", 65536)
    _check_intervals(reference)
    runs = {
        "batch 997, tfrecord": (patterns["tfrecord"], "--batch_size", 997),
        "2 processes": (patterns["parquet"], "--direct_num_workers=2",
                                        "--direct_running_mode=multi_processing", "--batch_size", 500),
        "Dask": (patterns["parquet"], "--runner=DaskRunner", f"--dask_client_address={dask_cluster.scheduler_address}",
                 "--dask_npartitions=3", "--batch_size", 211),
    }
    for i, (what, (pattern, *options)) in enumerate(runs.items()):
        _assert_same(_run(tmp_path / str(i), pattern, config, *options), reference, f"jackknife, {what}")


@pytest.mark.parametrize("workers,batch_size,inputs", [(2, 97, "parquet-shuffled"), (2, 65536, "tfrecord")])
def test_multi_process_direct_runner(data, reference, tmp_path, workers, batch_size, inputs):
    _, patterns, config, _ = data
    document = _run(tmp_path, patterns[inputs], config, f"--direct_num_workers={workers}",
                    "--direct_running_mode=multi_processing", "--batch_size", batch_size)
    # Rows in files of other names are other samples: their intervals differ (test_intervals.py).
    _assert_same(document, reference, f"{workers} processes, batch {batch_size}, {inputs}",
                 intervals=inputs != "parquet-shuffled")


@pytest.mark.parametrize("partitions,batch_size,inputs", [(3, 211, "parquet"), (4, 500, "tfrecord")])
def test_dask_runner(data, reference, dask_cluster, tmp_path, partitions, batch_size, inputs):
    _, patterns, config, _ = data
    document = _run(tmp_path, patterns[inputs], config, "--runner=DaskRunner",
                    f"--dask_client_address={dask_cluster.scheduler_address}",
                    f"--dask_npartitions={partitions}", "--batch_size", batch_size)
    _assert_same(document, reference, f"Dask, {partitions} partitions, batch {batch_size}, {inputs}")


def test_dataflow_dry_run_builds_the_sliced_two_model_job(data, tmp_path, capsys):
    _, patterns, config, _ = data
    code = run_cli(["--input", patterns["parquet"], "--config", config,
                    "--output", "gs://valid-bucket/eval", *DATAFLOW])
    assert code == 0
    assert "dry run: DataflowRunner job built and translated" in capsys.readouterr().out


def test_terminal_table_shows_each_model_and_the_slice_count(data, tmp_path, capsys):
    _, patterns, config, _ = data
    _run(tmp_path, patterns["parquet"], config)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "candidate", "production"]
    assert "37 slices per model (overall included)" in out


def test_too_many_slices_fail_naming_the_spec(data, tmp_path, capsys):
    columns, patterns, _, _ = data
    config = write_config(tmp_path / "many.yaml", head=dict(HEAD), slicing_specs=[{"feature_keys": ["id"]}],
                          max_slices=1000)
    code = run_cli(["--input", patterns["parquet"], "--config", config, "--output", tmp_path / "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: ") and "slicing spec {feature_keys: [id]} has more than max_slices 1000" in err[-1]
    assert not os.path.exists(tmp_path / "out" / "metrics.json")


def test_min_slice_size_withholds_metrics_but_not_counts(data, tmp_path):
    columns, patterns, _, _ = data
    config = write_config(tmp_path / "min.yaml", head=dict(HEAD), slicing_specs=[{"feature_keys": ["country", "year"]}],
                          min_slice_size=150)
    document = _run(tmp_path, patterns["parquet"], config)
    small = [e for e in document["slices"] if e["example_count"] < 150]
    large = [e for e in document["slices"] if e["example_count"] >= 150]
    assert small and large
    assert all(e["metrics"] is None and e["weighted_example_count"] > 0 for e in small)
    assert all(isinstance(e["metrics"], dict) for e in large)
    assert document["slices"][0]["slice_name"] == "Overall" and document["slices"][0]["metrics"]
