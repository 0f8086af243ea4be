"""Bad inputs stop the run with a message naming file, row, column and reason.

Two input files are written; the bad row is in the SECOND file at row 250,
and --batch_size 100 puts it in the third record batch of that file, so the
row named is proven to be the index within the file (not within the batch,
not across files). Exit status 1 for bad data, 2 for config or input
matching problems; a failed run never writes metrics.json.
"""

import os
import re

import numpy as np
import pytest

from tests.datafiles import read_metrics, replace_tfrecord_record, run_cli, scores, write_config, write_files

FORMATS = ("parquet", "tfrecord")
GOOD_ROWS, BAD_FILE_ROWS = 300, 400
BAD_ROW = 250
BATCH_SIZE = 100
ROW_GROUP_SIZE = 150  # the bad row is in the Parquet file's second row group
MESSAGE = re.compile(r"^error: (?P<file>.+?), row (?P<row>\d+), column (?P<column>.+?): (?P<reason>.+)$", re.M)

WEIGHTED = {"weight_column": "weight", "thresholds": [0.5]}
COLUMNS = {"logits": "logits", "label": "label"}


def _files(tmp_path, file_format, mutate):
    """Two files of good rows; `mutate(columns)` spoils the second one."""
    good = scores(GOOD_ROWS, seed=1, dims=3)
    bad = scores(BAD_FILE_ROWS, seed=2, dims=3)
    bad = mutate(bad) or bad
    pattern, paths = write_files(tmp_path / "in", file_format, [good, bad], row_group_size=ROW_GROUP_SIZE)
    return pattern, paths[1]


def _run(tmp_path, pattern, head=WEIGHTED, columns=COLUMNS, extra=()):
    config = write_config(tmp_path / "config.yaml", head=head, columns=columns)
    output = tmp_path / "out"
    code = run_cli(["--input", pattern, "--config", config, "--output", output,
                    "--batch_size", BATCH_SIZE, *extra])
    return code, output


def _assert_no_metrics(output):
    assert not os.path.exists(os.path.join(output, "metrics.json"))
    if os.path.exists(output):  # nothing staged is left behind either
        assert not [n for n in os.listdir(output) if n.startswith(".staging")]


def _assert_bad_row(capsys, code, output, path, row, column, *reasons):
    assert code == 1
    stderr = capsys.readouterr().err
    found = MESSAGE.search(stderr)
    assert found, f"no 'error: <file>, row <r>, column <c>: <reason>' message in {stderr!r}"
    assert os.path.basename(found["file"]) == os.path.basename(path), stderr
    assert found["row"] == str(row), stderr
    assert column in found["column"], stderr
    for reason in reasons:
        assert reason in found["reason"], stderr
    _assert_no_metrics(output)
    return found


# ---- bad values at row 250 of the second file ---------------------------------------


def _set(column, value, dtype=None):
    def mutate(columns):
        values = columns[column].astype(dtype) if dtype else columns[column].copy()
        values[BAD_ROW] = value
        columns[column] = values

    return mutate


VALUE_CASES = {
    # case: (mutate, head, columns, column named, reasons)
    "label_1.5": (_set("label", 1.5, np.float32), WEIGHTED, COLUMNS, "label", ["Labels must be <= 2 - 1"]),
    "label_-1": (_set("label", -1), WEIGHTED, COLUMNS, "label", ["Labels must be >= 0"]),
    "label_nan": (_set("label", np.nan, np.float32), WEIGHTED, COLUMNS, "label", ["Labels must be <= 2 - 1"]),
    "label_not_in_vocabulary": (
        _set("label_str", "eggs", object),
        {"label_vocabulary": ["ham", "spam"]},
        {"logits": "logits", "label": "label_str"},
        "label_str",
        ["Labels must be >= 0", "not in label_vocabulary", "eggs"],
    ),
    "logit_nan": (_set("logits", np.nan), WEIGHTED, COLUMNS, "logits", ["must be finite"]),
    "logit_+inf": (_set("logits", np.inf), WEIGHTED, COLUMNS, "logits", ["must be finite"]),
    "logit_-inf": (_set("logits", -np.inf), WEIGHTED, COLUMNS, "logits", ["must be finite"]),
    "weight_nan": (_set("weight", np.nan), WEIGHTED, COLUMNS, "weight", ["must be finite"]),
    "multi_logit_inf": (
        _set("multi_logits", [0.5, np.inf, 0.1]),
        WEIGHTED,
        {"logits": "multi_logits", "label": "multi_label"},
        "multi_logits",
        ["must be finite"],
    ),
}


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_bad_value(tmp_path, capsys, file_format, case):
    mutate, head, columns, column, reasons = VALUE_CASES[case]
    pattern, bad_path = _files(tmp_path, file_format, mutate)
    code, output = _run(tmp_path, pattern, head, columns)
    _assert_bad_row(capsys, code, output, bad_path, BAD_ROW, column, *reasons)


def _varying_list_length(columns):
    rows = columns["multi_logits"].tolist()
    rows[BAD_ROW] = rows[BAD_ROW][:2]
    columns["multi_logits"] = rows  # list<...> with one row of 2 among rows of 3


def _null_label(columns):
    labels = columns["label"].tolist()
    labels[BAD_ROW] = None  # a Parquet null; a missing feature in tf.train.Example
    columns["label"] = labels


def _null_logit(columns):
    logits = columns["logits"].tolist()
    logits[BAD_ROW] = None
    columns["logits"] = logits


@pytest.mark.parametrize("file_format", FORMATS)
def test_list_length_varies_between_rows(tmp_path, capsys, file_format):
    pattern, bad_path = _files(tmp_path, file_format, _varying_list_length)
    code, output = _run(tmp_path, pattern, columns={"logits": "multi_logits", "label": "multi_label"})
    _assert_bad_row(capsys, code, output, bad_path, BAD_ROW, "multi_logits", "list length does not match")


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("mutate, column", [(_null_label, "label"), (_null_logit, "logits")])
def test_null_value(tmp_path, capsys, file_format, mutate, column):
    pattern, bad_path = _files(tmp_path, file_format, mutate)
    code, output = _run(tmp_path, pattern)
    _assert_bad_row(capsys, code, output, bad_path, BAD_ROW, column, "null")


# ---- whole-column problems: named at row 0 of the second file -------------------------


def _drop(column):
    def mutate(columns):
        del columns[column]

    return mutate


def _string_logits(columns):
    columns["logits"] = np.array([f"{x:.3f}" for x in columns["logits"]])


def _list_logits(columns):
    columns["logits"] = columns["multi_logits"]  # lists of 3 against scalar labels


COLUMN_CASES = {
    "missing_logits": (_drop("logits"), "logits", ["column is missing"]),
    "missing_label": (_drop("label"), "label", ["column is missing"]),
    "missing_weight": (_drop("weight"), "weight", ["column is missing"]),
    "string_logits": (_string_logits, "logits", ["wrong type"]),
    # The first file sets the data set's width (1): the list logits deviate.
    "list_logits_scalar_labels": (_list_logits, "logits", ["list length does not match"]),
}


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("case", list(COLUMN_CASES))
def test_bad_column(tmp_path, capsys, file_format, case):
    mutate, column, reasons = COLUMN_CASES[case]
    pattern, bad_path = _files(tmp_path, file_format, mutate)
    code, output = _run(tmp_path, pattern)
    _assert_bad_row(capsys, code, output, bad_path, 0, column, *reasons)


def test_a_failed_run_leaves_an_earlier_run_untouched(tmp_path, capsys):
    """The output of an earlier good run survives a failed run unchanged."""
    good_pattern, _ = write_files(tmp_path / "good", "parquet", [scores(200, seed=3)])
    code, output = _run(tmp_path, good_pattern)
    assert code == 0
    before = (output / "metrics.json").read_bytes()
    assert read_metrics(output)["example_count"] == 200

    pattern, bad_path = _files(tmp_path, "parquet", _set("logits", np.nan))
    code, output = _run(tmp_path, pattern)
    assert code == 1
    assert os.path.basename(bad_path) in capsys.readouterr().err
    assert (output / "metrics.json").read_bytes() == before
    assert not [n for n in os.listdir(output) if n.startswith(".staging")]


@pytest.mark.parametrize("which", [0, 1], ids=["first file", "second file"])
def test_a_first_record_that_is_not_an_example_is_named(tmp_path, capsys, which):
    """Record 0 (read for the types before the pipeline runs): exit 1, file and record named."""
    pattern, paths = write_files(tmp_path / "in", "tfrecord", [scores(GOOD_ROWS, seed=1), scores(50, seed=2)])
    replace_tfrecord_record(paths[which], 0, b"\x0a\x05\x0a\x03\x0a\x01")  # a length past its end
    code, output = _run(tmp_path, pattern)
    assert code == 1
    stderr = capsys.readouterr().err
    assert stderr.strip().splitlines() == [
        f"error: {paths[which]}: cannot read TFRecord: record 0 at byte 0 is not a tf.train.Example: "
        "length past the end of its message (byte 1 of its data)"
    ]
    _assert_no_metrics(output)


# ---- exit 2: nothing to read, bad configs ----------------------------------------------


def test_no_files_matched(tmp_path, capsys):
    code, output = _run(tmp_path, tmp_path / "nothing-*.parquet")
    assert code == 2
    stderr = capsys.readouterr().err
    assert "no files matched" in stderr and "nothing-*.parquet" in stderr
    _assert_no_metrics(output)
    assert not os.path.exists(output)  # nothing at all: no rejected/, predictions/ or staging


CONFIG_CASES = {
    # case: (head, columns, strings the message must hold)
    "unknown_head_key": ({"foo": 1}, COLUMNS, ["head.foo", "unknown key"]),
    "unknown_columns_key": ({}, {"logits": "logits", "label": "label", "lable": "x"}, ["columns.lable"]),
    "threshold_1.5": ({"thresholds": [0.5, 1.5]}, COLUMNS, ["head.thresholds", "1.5"]),
    "threshold_0": ({"thresholds": [0.0]}, COLUMNS, ["head.thresholds"]),
    "loss_reduction_none": ({"loss_reduction": "none"}, COLUMNS, ["head.loss_reduction", "none"]),
    "loss_reduction_unknown": ({"loss_reduction": "mean"}, COLUMNS, ["head.loss_reduction", "mean"]),
    "loss_fn_not_importable": (
        {"loss_fn": "no_such_module_xyz:focal"}, COLUMNS, ["head.loss_fn", "no_such_module_xyz"]
    ),
    "loss_fn_no_such_function": (
        {"loss_fn": "configs.example_losses:no_such_loss"}, COLUMNS, ["head.loss_fn", "no_such_loss"]
    ),
    "loss_fn_wrong_args": (
        {"loss_fn": "tests.datafiles:loss_with_wrong_args"}, COLUMNS, ["head.loss_fn", "temperature"]
    ),
    "vocabulary_not_a_list": ({"label_vocabulary": "ham,spam"}, COLUMNS, ["head.label_vocabulary"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_error(tmp_path, capsys, case):
    head, columns, expected = CONFIG_CASES[case]
    pattern, _ = write_files(tmp_path / "in", "parquet", [scores(50)])
    code, output = _run(tmp_path, pattern, head=head, columns=columns)
    assert code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: config "), stderr
    for text in expected:
        assert text in stderr, stderr
    _assert_no_metrics(output)


# ---- list widths are the data set's (its first row's), whatever the batching ----------


def _shorten_from(start, stop, columns_to_cut=("multi_logits",)):
    def mutate(columns):
        for name in columns_to_cut:
            rows = columns[name].tolist()
            columns[name] = [r[:2] if start <= i < stop else r for i, r in enumerate(rows)]

    return mutate


def test_short_list_at_the_first_row_of_a_batch_is_the_row_named(tmp_path, capsys):
    pattern, bad_path = _files(tmp_path, "parquet", _shorten_from(200, 201))
    code, output = _run(tmp_path, pattern, columns={"logits": "multi_logits", "label": "multi_label"})
    _assert_bad_row(capsys, code, output, bad_path, 200, "multi_logits", "list length does not match")


def test_list_width_changing_at_a_batch_boundary_fails(tmp_path, capsys):
    mutate = _shorten_from(200, BAD_FILE_ROWS, ("multi_logits", "multi_label"))
    pattern, bad_path = _files(tmp_path, "parquet", mutate)
    code, output = _run(tmp_path, pattern, columns={"logits": "multi_logits", "label": "multi_label"})
    _assert_bad_row(capsys, code, output, bad_path, 200, "multi_logits", "list length")
