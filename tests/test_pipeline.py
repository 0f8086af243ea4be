"""End-to-end pipelines on the DirectRunner, run as users run them
(pipeline.cli.main), checked value by value against the head computed
directly on the same numpy arrays.

The same rows are written as Parquet (several files, several row groups
each) and as TFRecord (tf.train.Example); a small --batch_size makes many
record batches, so the metrics also prove that the Beam combine over batches
and files equals one update_metrics over the whole data set (<= 1e-12 rel).
"""

import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from head import PREDICTION_KEYS, BinaryClassHead
from tests.datafiles import (
    assert_document_matches,
    assert_metrics_equal,
    head_results,
    read_metrics,
    read_predictions,
    run_cli,
    scores,
    split_rows,
    write_config,
    write_files,
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_INPUT = os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet")
FILE_SIZES = (1200, 1700, 900)  # rows per input file
ROW_GROUP_SIZE = 400  # Parquet: 3-5 row groups per file
BATCH_SIZE = 250  # 16 record batches over the three files
FORMATS = ("parquet", "tfrecord")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same rows as Parquet and as TFRecord files: (columns, {format: glob})."""
    columns = scores(sum(FILE_SIZES), seed=7, dims=3)
    parts = split_rows(columns, FILE_SIZES)
    root = tmp_path_factory.mktemp("inputs")
    patterns, paths = {}, {}
    for file_format in FORMATS:
        patterns[file_format], paths[file_format] = write_files(
            root / file_format, file_format, parts, row_group_size=ROW_GROUP_SIZE
        )
        assert len(paths[file_format]) == len(FILE_SIZES)
    # The Parquet files really have several row groups each.
    assert [pq.ParquetFile(p).metadata.num_row_groups for p in paths["parquet"]] == [3, 5, 3]
    return columns, patterns


def _run(tmp_path, pattern, head, columns, name, *extra):
    config = write_config(tmp_path / f"{name}.yaml", head=head, columns=columns)
    output = tmp_path / f"out-{name}"
    code = run_cli(["--input", pattern, "--config", config, "--output", output,
                    "--batch_size", BATCH_SIZE, *extra])
    assert code == 0
    return read_metrics(output), output


# Each case: (head config, columns config, function data -> (logits, labels, weights)).
CASES = {
    "weights_and_thresholds": (
        {"weight_column": "weight", "thresholds": [0.3, 0.5, 0.7]},
        {"logits": "logits", "label": "label"},
        lambda d: (d["logits"], d["label"], d["weight"]),
    ),
    "unweighted_sum_over_batch_size": (
        {"thresholds": [0.5]},
        {"logits": "logits", "label": "label"},
        lambda d: (d["logits"], d["label"], None),
    ),
    "weight_given_as_columns_weight": (
        {},
        {"logits": "logits", "label": "label", "weight": "weight"},
        lambda d: (d["logits"], d["label"], d["weight"]),
    ),
    "label_vocabulary": (
        {"weight_column": "weight", "label_vocabulary": ["ham", "spam"], "thresholds": [0.5]},
        {"logits": "logits", "label": "label_str"},
        lambda d: (d["logits"], d["label_str"], d["weight"]),
    ),
    "multi_dim_lists_with_row_weights": (
        {"weight_column": "weight", "thresholds": [0.25, 0.75]},
        {"logits": "multi_logits", "label": "multi_label"},
        lambda d: (d["multi_logits"], d["multi_label"], d["weight"]),
    ),
    "focal_loss_sum_reduction": (
        {"weight_column": "weight", "loss_fn": "configs.example_losses:focal",
         "loss_reduction": "sum", "thresholds": [0.5], "regularization_losses": [0.25]},
        {"logits": "logits", "label": "label"},
        lambda d: (d["logits"], d["label"], d["weight"]),
    ),
    "loss_fn_with_features": (
        {"weight_column": "weight", "loss_fn": "tests.datafiles:loss_using_features",
         "thresholds": [0.5]},
        {"logits": "logits", "label": "label"},
        lambda d: (d["logits"], d["label"], d["weight"]),
    ),
    "named_head": (
        {"weight_column": "weight", "name": "spam_head", "thresholds": [0.4]},
        {"logits": "logits", "label": "label"},
        lambda d: (d["logits"], d["label"], d["weight"]),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parquet_and_tfrecord_match_the_head(tmp_path, data, case):
    head, columns, select = CASES[case]
    values, patterns = data
    logits, labels, weights = select(values)
    head_kwargs = dict(head)
    if columns.get("weight"):  # columns.weight is another spelling of head.weight_column
        head_kwargs["weight_column"] = columns["weight"]
    features = {"aux": values["aux"]} if "features" in case else None
    expected = head_results(head_kwargs, logits, labels, weights, features=features)
    documents = {}
    for file_format in FORMATS:
        document, _ = _run(tmp_path, patterns[file_format], head, columns, f"{case}-{file_format}")
        assert_document_matches(document, expected)
        assert document["run"]["format"] == file_format
        assert document["rows_read"] == sum(FILE_SIZES)
        assert document["rows_rejected"] == 0
        documents[file_format] = document
    assert_metrics_equal(documents["tfrecord"]["metrics"], documents["parquet"]["metrics"],
                         what="tfrecord vs parquet")

    # Counts, independently of the head: an example per list element.
    width = 3 if case.startswith("multi_dim") else 1
    assert expected[1] == sum(FILE_SIZES) * width
    if weights is None:
        assert expected[2] == expected[1]
    else:
        row_weights = np.asarray(weights, dtype=np.float64)
        assert math.isclose(expected[2], width * row_weights.sum(), rel_tol=1e-12)
    if head.get("name"):
        # Estimator.evaluate's keys: update_metrics' carry /name, `loss` never does.
        keys = set(documents["parquet"]["metrics"])
        assert "loss" in keys and "loss/" + head["name"] not in keys
        assert all(key.endswith("/" + head["name"]) for key in keys - {"loss"})
    if head.get("regularization_losses"):
        assert documents["parquet"]["metrics"]["regularization_loss"] == sum(head["regularization_losses"])


def test_focal_loss_sum_is_the_weighted_sum_of_focal_losses(tmp_path, data):
    """`loss` with reduction sum is Σ w·focal (+ regularization), computed here by hand."""
    from configs.example_losses import focal

    values, patterns = data
    head, columns, _ = CASES["focal_loss_sum_reduction"]
    document, _ = _run(tmp_path, patterns["parquet"], head, columns, "focal")
    logits = values["logits"][:, np.newaxis]
    labels = values["label"].astype(np.float32)[:, np.newaxis]
    per_example = focal(labels=labels, logits=logits).astype(np.float64)[:, 0]
    expected = float(np.sum(values["weight"].astype(np.float64) * per_example)) + 0.25
    assert math.isclose(document["metrics"]["loss"], expected, rel_tol=1e-9)


def _as_numpy(column):
    """An Arrow column of scalars or (nested) lists as numpy [n, ...]."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    shape = [len(array)]
    while pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_list(array.type):
        if pa.types.is_fixed_size_list(array.type):
            shape.append(array.type.list_size)
        else:
            lengths = set(pa.compute.list_value_length(array).to_pylist())
            assert len(lengths) == 1
            shape.append(lengths.pop())
        array = array.flatten()
    return array.to_numpy(zero_copy_only=False).reshape(shape)


@pytest.mark.parametrize("file_format", FORMATS)
def test_predictions_output(tmp_path, data, file_format):
    values, patterns = data
    head = {"weight_column": "weight", "thresholds": [0.5], "label_vocabulary": ["ham", "spam"]}
    columns = {"logits": "logits", "label": "label_str"}
    document, output = _run(
        tmp_path, patterns[file_format], head, columns, "predictions",
        "--predictions", ",".join(PREDICTION_KEYS), "--passthrough", "id",
    )
    assert document["example_count"] == sum(FILE_SIZES)
    table = read_predictions(output)
    assert table.column_names == list(PREDICTION_KEYS) + ["id"]
    assert table.num_rows == sum(FILE_SIZES)

    ids = _as_numpy(table.column("id")).reshape(-1)
    order = np.argsort(ids, kind="stable")
    np.testing.assert_array_equal(ids[order], values["id"])  # every row exactly once

    expected = BinaryClassHead(**head).predictions(values["logits"][:, np.newaxis])
    for key in PREDICTION_KEYS:
        actual = _as_numpy(table.column(key))[order]
        want = np.asarray(expected[key])
        if want.ndim > 1 and want.shape[-1] == 1:
            want = want[..., 0]  # [n, 1] predictions are written as scalars
        assert actual.shape == want.shape, key
        if want.dtype == object:
            assert actual.tolist() == want.tolist(), key
        else:
            assert actual.dtype == want.dtype, key
            np.testing.assert_array_equal(actual, want, err_msg=key)
    # The vocabulary's classes, and class 1 only for a logit > 0 (ties go to 0).
    classes = _as_numpy(table.column("classes"))[order]
    assert set(classes.tolist()) == {"ham", "spam"}
    assert (classes[values["logits"] == 0] == "ham").all()


# ---- the bundled demo and configs --------------------------------------------------


def _demo_table():
    return pq.read_table(DEMO_INPUT)


def _head_on_demo(config_path):
    with open(config_path) as f:
        config = yaml.safe_load(f)
    head = dict(config.get("head") or {})
    columns = config["columns"]
    table = _demo_table()
    logits = _as_numpy(table.column(columns["logits"]))
    labels = _as_numpy(table.column(columns["label"]))
    weight_column = head.get("weight_column") or columns.get("weight")
    weights = _as_numpy(table.column(weight_column)) if weight_column else None
    if weight_column:
        head["weight_column"] = weight_column
    return head_results(head, logits, labels, weights)


def test_no_arguments_runs_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli([]) == 0
    document = read_metrics(tmp_path / "demo_output")
    assert_document_matches(document, _head_on_demo(os.path.join(PROJECT_ROOT, "configs", "default.yaml")))
    assert document["example_count"] == 100_000
    assert document["run"]["format"] == "parquet"
    assert document["run"]["input"] == DEMO_INPUT
    printed = capsys.readouterr().out
    assert "auc" in printed and "written:" in printed


@pytest.mark.parametrize("config", ["vocabulary.yaml", "multi_dim.yaml", "custom_loss.yaml"])
def test_bundled_configs_on_the_demo_data(tmp_path, config):
    config_path = os.path.join(PROJECT_ROOT, "configs", config)
    output = tmp_path / "out"
    assert run_cli(["--input", DEMO_INPUT, "--config", config_path, "--output", output]) == 0
    document = read_metrics(output)
    expected = _head_on_demo(config_path)
    assert_document_matches(document, expected)
    width = 3 if config == "multi_dim.yaml" else 1
    assert document["example_count"] == 100_000 * width


def test_loss_fn_module_in_the_working_directory_imports(tmp_path, monkeypatch):
    """Like `python -m`, the CLI imports a loss_fn module from the working directory."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "team_losses_for_test.py").write_text(
        "import numpy as np\n\n"
        "def doubled(labels, logits):\n"
        "    x = logits.astype(np.float64)\n"
        "    ce = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))\n"
        "    return (2.0 * ce).astype(np.float32)\n"
    )
    (work / "eval.yaml").write_text("head: {loss_fn: 'team_losses_for_test:doubled'}\n")
    monkeypatch.chdir(work)
    demo = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "demo", "scores.parquet")
    code = run_cli(["--input", demo, "--config", "eval.yaml", "--output", str(tmp_path / "out")])
    assert code == 0
    doubled = read_metrics(tmp_path / "out")["metrics"]
    table = pq.read_table(demo)
    plain, _, _ = head_results({}, table.column("logits").to_numpy(), table.column("label").to_numpy())
    assert doubled["average_loss"] == pytest.approx(2 * plain["average_loss"], rel=1e-6)
    assert doubled["auc"] == plain["auc"]


def test_bundled_sliced_and_two_model_configs_on_the_demo_data(tmp_path):
    """configs/sliced.yaml and configs/two_models.yaml, as the README shows them."""
    table = pq.read_table(DEMO_INPUT).to_pandas()
    head = BinaryClassHead(weight_column="weight", thresholds=[0.5])

    def head_on(rows, logits="logits"):
        state = head.update_metrics(head.new_state(), {"weight": rows["weight"].to_numpy()},
                                    rows[logits].to_numpy()[:, None], rows["label"].to_numpy())
        return head.results(state)

    sliced = tmp_path / "sliced"
    assert run_cli(["--input", DEMO_INPUT, "--config", os.path.join(PROJECT_ROOT, "configs", "sliced.yaml"),
                    "--output", sliced]) == 0
    slices = read_metrics(sliced)["slices"]
    by_name = {e["slice_name"]: e for e in slices}
    # The mobile rows per country are slices the cross already made: listed once.
    assert len(slices) == len(by_name) == 1 + 5 + 3 + 15 + 4
    mobile_de = table[(table.country == "de") & (table.device == "mobile")]
    assert by_name["country_X_device:de_X_mobile"]["example_count"] == len(mobile_de)
    assert_metrics_equal(by_name["country_X_device:de_X_mobile"]["metrics"], head_on(mobile_de), rel_tol=1e-9)
    upper = table[table.aux >= 0.75]
    assert_metrics_equal(by_name["aux:[0.75, inf)"]["metrics"], head_on(upper), rel_tol=1e-9)

    compared = tmp_path / "two_models"
    assert run_cli(["--input", DEMO_INPUT, "--config", os.path.join(PROJECT_ROOT, "configs", "two_models.yaml"),
                    "--output", compared]) == 0
    document = read_metrics(compared)
    models = [(e["model"], e["slice_name"]) for e in document["slices"]]
    assert models[:6] == [("candidate", "Overall")] + [("candidate", f"country:{c}")
                                                      for c in ("br", "de", "fr", "jp", "us")]
    assert len(models) == 12 and models[6] == ("production", "Overall")
    fr = table[table.country == "fr"]
    entry = next(e for e in document["slices"] if e["model"] == "candidate" and e["slice_name"] == "country:fr")
    expected_diff = {k: v - head_on(fr, "score_v1")[k] for k, v in head_on(fr).items()}
    for key, value in expected_diff.items():
        assert math.isclose(entry["diff"][key], value, rel_tol=1e-7, abs_tol=1e-12), key
    assert document["metrics"] == document["slices"][0]["metrics"]
    # Every metric and diff has its interval; the paired diff's is the narrower.
    auc = entry["confidence_intervals"]["auc"]
    assert auc["lower"] < entry["metrics"]["auc"] < auc["upper"]
    assert 0 < entry["diff_confidence_intervals"]["auc"]["standard_error"] < auc["standard_error"]
