"""invalid_rows policy `reject`: bad rows are set aside, the rest evaluated.

Inputs are two files (300 and 400 rows) read with --batch_size 100; the bad
rows are spread over both files, at the first and last rows of record
batches (and, in Parquet, of row groups of 150 rows). Every test checks, as
applicable:

- OUTPUT/rejected/*.parquet holds exactly the bad rows, each once, with its
  file, its index within that file, the column and the reason;
- metrics.json counts them (rejected_by_reason) and reconciles
  (rows_read == rows_evaluated + rows_rejected);
- the metrics equal the head run directly on the good rows only (<= 1e-12).

Also: the same data under policy `fail`, max_fraction, unreadable files,
empty inputs, negative weights, config errors and what a failed or later
run does to an existing output directory.
"""

import glob
import json
import os
import re
import shutil
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.evaluate import REJECTED_SCHEMA
from tests.datafiles import (
    assert_document_matches,
    head_results,
    read_metrics,
    read_predictions,
    read_rejected,
    run_cli,
    scores,
    replace_tfrecord_record,
    tfrecord_record_offsets,
    write_config,
    write_files,
)

FORMATS = ("parquet", "tfrecord")
SIZES = (300, 400)
BATCH_SIZE = 100
ROW_GROUP_SIZE = 150
# Bad rows per file: first/last rows of batches and row groups, and row 0 of
# the second file. (Row 0 of the FIRST file sets the data set's list widths;
# a bad row there is tested on its own below.)
BAD_ROWS = ((1, 99, 100, 149, 150, 299), (0, 199, 200, 250, 399))
REJECT = {"policy": "reject", "max_fraction": 0.5}
WEIGHTED = {"weight_column": "weight", "thresholds": [0.5]}
COLUMNS = {"logits": "logits", "label": "label"}
MULTI = {"logits": "multi_logits", "label": "multi_label"}
VOCABULARY = {"weight_column": "weight", "thresholds": [0.5], "label_vocabulary": ["ham", "spam"]}
FAIL_MESSAGE = re.compile(
    r"^error: (?P<file>.+?), row (?P<row>\d+), column (?P<column>.+?): (?P<reason>.+)$", re.M
)


# ---- helpers -------------------------------------------------------------------------


def _originals():
    return [scores(size, seed=i + 1, dims=3) for i, size in enumerate(SIZES)]


def _write(root, file_format, parts):
    return write_files(root, file_format, parts, row_group_size=ROW_GROUP_SIZE)


def _run(tmp_path, pattern, head=WEIGHTED, columns=COLUMNS, invalid_rows=REJECT, output=None,
         name="run", extra=()):
    sections = {} if invalid_rows is None else {"invalid_rows": invalid_rows}
    config = write_config(tmp_path / f"{name}.yaml", head=head, columns=columns, **sections)
    output = output or tmp_path / f"out-{name}"
    code = run_cli(["--input", pattern, "--config", config, "--output", output,
                    "--batch_size", BATCH_SIZE, *extra])
    return code, output


def _expected(parts, good, head, columns, features=("logits", "label", "weight")):
    """head_results on the rows `good[i]` (boolean masks) of each original file."""
    def take(name):
        return np.concatenate([np.asarray(p[name])[g] for p, g in zip(parts, good)])

    logits, labels = take(columns["logits"]), take(columns["label"])
    weights = take(head["weight_column"]) if head.get("weight_column") else None
    return head_results(head, logits, labels, weights)


def _good_masks(bad=BAD_ROWS, sizes=SIZES):
    masks = []
    for rows, size in zip(bad, sizes):
        mask = np.ones(size, dtype=bool)
        mask[list(rows)] = False
        masks.append(mask)
    return masks


def _assert_reconciles(document):
    assert document["rows_read"] == document["rows_evaluated"] + document["rows_rejected"]
    assert document["rows_rejected"] == sum(document["rejected_by_reason"].values())


def _assert_no_outputs(output):
    """A failed run leaves no metrics.json, no rejected/ and nothing staged."""
    assert not os.path.exists(os.path.join(output, "metrics.json"))
    if os.path.exists(output):
        names = os.listdir(output)
        assert "rejected" not in names and "predictions" not in names, names
        assert not [n for n in names if n.startswith(".staging")], names


def _scalar(value):
    """TFRecord features are lists: a length-1 list is its value."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _rejected_keys(rejected):
    return sorted((os.path.basename(r["source_file"]), r["row"], r["column"], r["reason"]) for r in rejected)


def _fail_message(capsys):
    stderr = capsys.readouterr().err
    found = FAIL_MESSAGE.search(stderr)
    assert found, f"no 'error: <file>, row <r>, column <c>: <reason>' in {stderr!r}"
    return found


# ---- each kind of bad row ----------------------------------------------------------------


def _assign(column, value, dtype=None):
    def mutate(columns, rows):
        values = columns[column].astype(dtype) if dtype else columns[column].copy()
        values[list(rows)] = value
        columns[column] = values

    return mutate


def _null(column):
    """A Parquet null; a tf.train.Example without the feature."""
    def mutate(columns, rows):
        values = columns[column].tolist()
        for row in rows:
            values[row] = None
        columns[column] = values

    return mutate


def _short_list(column):
    def mutate(columns, rows):
        values = columns[column].tolist()
        for row in rows:
            values[row] = values[row][:2]
        columns[column] = values

    return mutate


def _is(expected):
    return lambda v: v == expected


# `values` is strict JSON: a NaN or infinite value is null there (the reason says which).
_is_non_finite = _is(None)


KINDS = {
    # kind: (mutate, head, columns, rejected column, reason, role key in `values`, value check)
    "label_gt_1": (_assign("label", 1.5, np.float32), WEIGHTED, COLUMNS,
                   "labels (label)", "Labels must be <= 2 - 1", "label", _is(1.5)),
    "label_lt_0": (_assign("label", -1), WEIGHTED, COLUMNS,
                   "labels (label)", "Labels must be >= 0", "label", _is(-1)),
    "label_nan": (_assign("label", np.nan, np.float32), WEIGHTED, COLUMNS,
                  "labels (label)", "Labels must be <= 2 - 1", "label", _is_non_finite),
    "label_not_in_vocabulary": (
        _assign("label_str", "eggs", object), VOCABULARY, {"logits": "logits", "label": "label_str"},
        "labels (label_str)", "Labels must be >= 0", "label_str",
        lambda v: v in ("eggs", "b'eggs'"),  # tf.Example strings are bytes (JSON via repr)
    ),
    "logit_nan": (_assign("logits", np.nan), WEIGHTED, COLUMNS,
                  "logits (logits)", "logits must be finite", "logits", _is_non_finite),
    "logit_+inf": (_assign("logits", np.inf), WEIGHTED, COLUMNS,
                   "logits (logits)", "logits must be finite", "logits", _is_non_finite),
    "logit_-inf": (_assign("logits", -np.inf), WEIGHTED, COLUMNS,
                   "logits (logits)", "logits must be finite", "logits", _is_non_finite),
    "weight_nan": (_assign("weight", np.nan), WEIGHTED, COLUMNS,
                   "weights (weight)", "weights must be finite", "weight", _is_non_finite),
    "null_label": (_null("label"), WEIGHTED, COLUMNS,
                   "labels (label)", "value is missing (null)", "label", _is(None)),
    "null_logit": (_null("logits"), WEIGHTED, COLUMNS,
                   "logits (logits)", "value is missing (null)", "logits", _is(None)),
    "null_weight": (_null("weight"), WEIGHTED, COLUMNS,
                    "weights (weight)", "value is missing (null)", "weight", _is(None)),
    "short_list": (_short_list("multi_logits"), WEIGHTED, MULTI,
                   "logits (multi_logits)", "list length does not match the data set's",
                   "multi_logits", lambda v: isinstance(v, list) and len(v) == 2),
}


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_rows_are_rejected(tmp_path, capsys, file_format, kind):
    mutate, head, columns, column, reason, key, check = KINDS[kind]
    originals = _originals()
    parts = [dict(p) for p in originals]
    for part, rows in zip(parts, BAD_ROWS):
        mutate(part, rows)
    pattern, paths = _write(tmp_path / "in", file_format, parts)

    code, output = _run(tmp_path, pattern, head, columns)
    assert code == 0
    document = read_metrics(output)
    bad_count = sum(len(rows) for rows in BAD_ROWS)

    rejected = read_rejected(output)
    assert _rejected_keys(rejected) == sorted(
        (os.path.basename(path), row, column, reason) for path, rows in zip(paths, BAD_ROWS) for row in rows
    )
    assert {r["source_file"] for r in rejected} == set(paths)
    for r in rejected:
        values = json.loads(r["values"])
        assert check(_scalar(values.get(key))), (r, key)
    schema = pq.read_schema(glob.glob(os.path.join(output, "rejected", "*.parquet"))[0])
    assert schema.remove_metadata().equals(REJECTED_SCHEMA)

    assert document["rows_read"] == sum(SIZES)
    assert document["rows_rejected"] == bad_count
    assert document["rows_evaluated"] == sum(SIZES) - bad_count
    assert document["rejected_by_reason"] == {f"{column}: {reason}": bad_count}
    assert document["unreadable_files"] == [] and document["negative_weight_examples"] == 0
    _assert_reconciles(document)
    assert_document_matches(document, _expected(originals, _good_masks(), head, columns))

    stderr = capsys.readouterr().err
    assert f"warning: {bad_count} of {sum(SIZES)} rows rejected" in stderr
    assert f"{bad_count}  {column}: {reason}" in stderr


# ---- several problems in one batch and in one row; the same data under `fail` ---------


# In the batch of rows 200-299 of the second file (label as float32).
MIXED = {
    210: {"label": 1.5},
    220: {"logits": np.nan},
    230: {"weight": np.nan},
    240: {"label": -1.0, "logits": np.inf, "weight": np.nan},  # logits are checked first
    250: {"label": None},
    260: {"logits": None, "label": 7.0},  # the null is found first
}
MIXED_EXPECTED = {
    210: ("labels (label)", "Labels must be <= 2 - 1"),
    220: ("logits (logits)", "logits must be finite"),
    230: ("weights (weight)", "weights must be finite"),
    240: ("logits (logits)", "logits must be finite"),
    250: ("labels (label)", "value is missing (null)"),
    260: ("logits (logits)", "value is missing (null)"),
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """{format: (glob, paths)} of two files; the second has MIXED's problems."""
    originals = _originals()
    bad = dict(originals[1])
    columns = {name: bad[name].astype(np.float32).tolist() for name in ("logits", "label", "weight")}
    for row, values in MIXED.items():
        for name, value in values.items():
            columns[name][row] = value
    bad.update(columns)
    root = tmp_path_factory.mktemp("mixed")
    return originals, {f: _write(root / f, f, [originals[0], bad]) for f in FORMATS}


@pytest.mark.parametrize("file_format", FORMATS)
def test_several_problems_in_one_batch_and_one_row(tmp_path, mixed, file_format):
    originals, files = mixed
    pattern, paths = files[file_format]
    code, output = _run(tmp_path, pattern)
    assert code == 0
    document = read_metrics(output)
    rejected = read_rejected(output)
    # Each bad row once, with the first problem found.
    assert _rejected_keys(rejected) == sorted(
        (os.path.basename(paths[1]), row, *MIXED_EXPECTED[row]) for row in MIXED
    )
    assert document["rejected_by_reason"] == {
        "labels (label): Labels must be <= 2 - 1": 1,
        "labels (label): value is missing (null)": 1,
        "logits (logits): logits must be finite": 2,
        "logits (logits): value is missing (null)": 1,
        "weights (weight): weights must be finite": 1,
    }
    assert document["rows_read"] == sum(SIZES) and document["rows_rejected"] == len(MIXED)
    _assert_reconciles(document)
    good = _good_masks(((), tuple(MIXED)))
    assert_document_matches(document, _expected(originals, good, WEIGHTED, COLUMNS))


@pytest.mark.parametrize("file_format", FORMATS)
def test_policy_fail_on_the_same_data_names_file_row_column(tmp_path, capsys, mixed, file_format):
    _, files = mixed
    pattern, paths = files[file_format]
    code, output = _run(tmp_path, pattern, invalid_rows=None)  # the default policy: fail
    assert code == 1
    found = _fail_message(capsys)
    assert found["file"] == paths[1]
    row = int(found["row"])
    assert row in MIXED  # all the problems are in one batch: the first one is named
    assert found["reason"].startswith(MIXED_EXPECTED[row][1]), found["reason"]
    assert found["column"] == MIXED_EXPECTED[row][0]
    _assert_no_outputs(output)


# ---- whole-column problems -------------------------------------------------------------------


@pytest.mark.parametrize("file_format, column", [("parquet", "label"), ("parquet", "logits"),
                                                 ("parquet", "weight"), ("tfrecord", "label")])
def test_a_column_missing_from_the_first_file_is_a_schema_error(tmp_path, capsys, file_format, column):
    """Found before the pipeline runs: exit 2, the column and the file's columns named."""
    parts = [dict(p) for p in _originals()]
    del parts[0][column]
    pattern, paths = _write(tmp_path / "in", file_format, parts)
    code, output = _run(tmp_path, pattern, invalid_rows={"policy": "reject", "max_fraction": 1.0})
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    others = sorted(set(parts[0]))
    assert line.startswith(f"error: column {column!r} (") and "is not in the input" in line
    assert paths[0] in line and all(repr(c) in line for c in others), line
    _assert_no_outputs(output)


@pytest.mark.parametrize("file_format, which", [("parquet", 1), ("tfrecord", 1)])
def test_missing_label_column_rejects_every_row_of_that_file(tmp_path, capsys, file_format, which):
    originals = _originals()
    parts = [dict(p) for p in originals]
    del parts[which]["label"]
    pattern, paths = _write(tmp_path / "in", file_format, parts)
    code, output = _run(tmp_path, pattern, invalid_rows={"policy": "reject", "max_fraction": 1.0})
    assert code == 0
    document = read_metrics(output)
    size = SIZES[which]
    reason = ("labels (label)", "column is missing")
    assert _rejected_keys(read_rejected(output)) == [(os.path.basename(paths[which]), row, *reason)
                                                    for row in range(size)]
    assert document["rejected_by_reason"] == {"labels (label): column is missing": size}
    assert document["rows_read"] == sum(SIZES) and document["rows_rejected"] == size
    _assert_reconciles(document)
    good = [np.full(s, i != which) for i, s in enumerate(SIZES)]
    assert_document_matches(document, _expected(originals, good, WEIGHTED, COLUMNS))
    assert f"warning: {size} of {sum(SIZES)} rows rejected" in capsys.readouterr().err


# A bad first row of the first file leaves the data set's list widths unknown;
# each batch then takes its own first row, and a bad one there must still be
# rejected like any other row.
FIRST_ROW_CASES = {
    "null_logit_at_row_0": (lambda p: _null("logits")(p, [0]), [0], "logits (logits): value is missing (null)"),
    "null_weight_at_rows_0_and_100": (lambda p: _null("weight")(p, [0, 100]), [0, 100],
                                      "weights (weight): value is missing (null)"),
}


@pytest.mark.parametrize("case", list(FIRST_ROW_CASES))
def test_bad_first_row_of_the_data_set_is_rejected(tmp_path, case):
    mutate, rows, reason = FIRST_ROW_CASES[case]
    originals = _originals()
    parts = [dict(p) for p in originals]
    mutate(parts[0])
    pattern, paths = _write(tmp_path / "in", "parquet", parts)
    code, output = _run(tmp_path, pattern)
    assert code == 0
    document = read_metrics(output)
    assert document["rejected_by_reason"] == {reason: len(rows)}
    assert [r["row"] for r in read_rejected(output)] == rows
    _assert_reconciles(document)
    good = _good_masks((tuple(rows), ()))
    assert_document_matches(document, _expected(originals, good, WEIGHTED, COLUMNS))


# ---- max_fraction --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_bad_of_1000(tmp_path_factory):
    columns = scores(1000, seed=5)
    columns["label"] = columns["label"].astype(np.float32)
    columns["label"][[17, 500, 999]] = 2.0
    return columns, write_files(tmp_path_factory.mktemp("fraction"), "parquet", [columns])


def _assert_rejected_rows_kept(output, stderr, rows):
    """A run that failed its counts names where its rejected rows are, and they are there."""
    kept = re.search(r"; the rejected rows are kept in (\S+)\n$", stderr).group(1)
    assert os.path.dirname(kept).startswith(os.path.join(str(output), "failed-")), kept
    assert [r["row"] for r in read_rejected(os.path.dirname(kept))] == rows
    assert stderr.count("\n") == 1


def test_max_fraction_exceeded_fails_and_keeps_the_rejected_rows(tmp_path, capsys, three_bad_of_1000):
    _, (pattern, _) = three_bad_of_1000
    code, output = _run(tmp_path, pattern, invalid_rows={"policy": "reject", "max_fraction": 0.001})
    assert code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(
        "error: 3 of 1000 rows rejected (0.3000%), more than invalid_rows.max_fraction 0.001: "
        "labels (label): Labels must be <= 2 - 1: 3; the rejected rows are kept in ")
    _assert_no_outputs(output)
    _assert_rejected_rows_kept(output, stderr, [17, 500, 999])


def _assert_not_blessed_for_no_examples(output, stderr):
    """The run completed; its verdict fails min_example_count (SPEC §8): exit 3's outputs."""
    assert "validation failed: Overall: example_count 0 < min_example_count 1" in stderr
    assert os.path.exists(os.path.join(output, "NOT_BLESSED"))
    assert not os.path.exists(os.path.join(output, "BLESSED"))
    document = read_metrics(output)
    assert document["example_count"] == 0 and document["rows_evaluated"] == 0
    return document


def test_a_run_that_rejects_every_row_completes_and_fails_validation(tmp_path, capsys):
    columns = scores(50, seed=3)
    columns["label"] = np.full(50, 3.0, dtype=np.float32)
    pattern, _ = write_files(tmp_path / "in", "parquet", [columns])
    code, output = _run(tmp_path, pattern, invalid_rows={"policy": "reject"})
    assert code == 3
    document = _assert_not_blessed_for_no_examples(output, capsys.readouterr().err)
    assert document["rows_read"] == document["rows_rejected"] == 50
    assert sorted(r["row"] for r in read_rejected(output)) == list(range(50))


def test_max_fraction_not_exceeded_succeeds(tmp_path, three_bad_of_1000):
    columns, (pattern, _) = three_bad_of_1000
    code, output = _run(tmp_path, pattern, invalid_rows={"policy": "reject", "max_fraction": 0.01})
    assert code == 0
    document = read_metrics(output)
    assert document["rows_rejected"] == 3 and document["rows_read"] == 1000
    assert [r["row"] for r in read_rejected(output)] == [17, 500, 999]
    good = np.ones(1000, dtype=bool)
    good[[17, 500, 999]] = False
    assert_document_matches(document, _expected([columns], [good], WEIGHTED, COLUMNS))


def test_reject_by_default_sets_aside_any_share_of_rows(tmp_path, capsys, three_bad_of_1000):
    """max_fraction defaults to 1.0 under reject (SPEC §9): the run succeeds, every bad row counted."""
    _, (pattern, _) = three_bad_of_1000
    code, output = _run(tmp_path, pattern, invalid_rows={"policy": "reject"})
    assert code == 0
    assert read_metrics(output)["rows_rejected"] == 3
    assert [r["row"] for r in read_rejected(output)] == [17, 500, 999]
    assert "warning: 3 of 1000 rows rejected" in capsys.readouterr().err


# ---- unreadable files ---------------------------------------------------------------------


def _truncate(path, size):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:size])


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def _corrupt_parquet_half(path):
    _truncate(path, os.path.getsize(path) // 2)
    return 0, "not a readable Parquet file: "


def _corrupt_tfrecord(how, record=250):
    """Spoils record 250: rows 0-249 are read, all of them evaluated."""
    def corrupt(path):
        offset, length = tfrecord_record_offsets(path)[record]
        error = f"cannot read TFRecord: record {record} at byte {offset}"
        if how == "flip":  # in the middle of the payload: its CRC fails
            _flip_byte(path, offset + 12 + length // 2)
            return record, f"{error}: data CRC mismatch (corrupted file)"
        if how == "truncate_payload":
            _truncate(path, offset + 12 + length // 2)
            return record, (
                f"{error} is cut short: the file ends {12 + length // 2} bytes into its "
                f"{16 + length} bytes (truncated file?)"
            )
        if how == "not_an_example":  # whole and CRC-checked, but not a tf.train.Example
            replace_tfrecord_record(path, record, b"\xff\x01not a proto")
            return record, f"{error} is not a tf.train.Example: invalid wire type (byte 0 of its data)"
        assert how == "truncate_header"  # inside the 8-byte length
        _truncate(path, offset + 4)
        return record, f"{error} is cut short: the file ends 4 bytes into its header (truncated file?)"

    return corrupt


CORRUPT_CASES = {
    # case: (format, index of the spoiled file, corrupt(path) -> (rows read before, error start))
    "parquet_cut_in_half_second_file": ("parquet", 1, _corrupt_parquet_half),
    "parquet_cut_in_half_first_file": ("parquet", 0, _corrupt_parquet_half),
    "tfrecord_flipped_byte": ("tfrecord", 1, _corrupt_tfrecord("flip")),
    "tfrecord_truncated_in_a_record": ("tfrecord", 1, _corrupt_tfrecord("truncate_payload")),
    "tfrecord_truncated_in_a_header": ("tfrecord", 1, _corrupt_tfrecord("truncate_header")),
    "tfrecord_record_not_an_example": ("tfrecord", 1, _corrupt_tfrecord("not_an_example")),
}
CORRUPT_PARAMS = list(CORRUPT_CASES)


@pytest.fixture(scope="module")
def corrupt_inputs(tmp_path_factory):
    """case -> (glob, paths, spoiled path, rows read before the error, error start)."""
    root = tmp_path_factory.mktemp("corrupt")
    originals = _originals()
    inputs = {}
    for case in CORRUPT_CASES:
        file_format, which, corrupt = CORRUPT_CASES[case]
        pattern, paths = _write(root / case, file_format, originals)
        before, error = corrupt(paths[which])
        inputs[case] = (pattern, paths, paths[which], which, before, error)
    return originals, inputs


@pytest.mark.parametrize("case", CORRUPT_PARAMS)
def test_unreadable_file_fails_under_policy_fail(tmp_path, capsys, corrupt_inputs, case):
    _, inputs = corrupt_inputs
    pattern, _, spoiled, _, _, error = inputs[case]
    code, output = _run(tmp_path, pattern, invalid_rows=None)
    assert code == 1
    stderr = capsys.readouterr().err
    assert f"error: {spoiled}: {error}" in stderr, stderr
    _assert_no_outputs(output)


@pytest.mark.parametrize("case", CORRUPT_PARAMS)
def test_unreadable_file_is_reported_under_policy_reject(tmp_path, capsys, corrupt_inputs, case):
    originals, inputs = corrupt_inputs
    pattern, paths, spoiled, which, before, error = inputs[case]
    code, output = _run(tmp_path, pattern)
    assert code == 0
    document = read_metrics(output)
    assert len(document["unreadable_files"]) == 1, document["unreadable_files"]
    [unreadable] = document["unreadable_files"]
    assert unreadable["file"] == spoiled
    assert unreadable["rows_read_before_error"] == before
    assert unreadable["error"].startswith(error), unreadable["error"]
    [rejected] = read_rejected(output)
    assert rejected["source_file"] == spoiled and rejected["row"] == before
    assert rejected["column"] is None and rejected["values"] is None
    assert rejected["reason"] == f"unreadable file: {unreadable['error']}"
    # The other file, and the spoiled file's rows before the error, are evaluated.
    good = [np.ones(s, dtype=bool) for s in SIZES]
    good[which][before:] = False
    rows = sum(int(g.sum()) for g in good)
    assert document["rows_read"] == document["rows_evaluated"] == rows
    assert document["rows_rejected"] == 0 and document["rejected_by_reason"] == {}
    _assert_reconciles(document)
    assert_document_matches(document, _expected(originals, good, WEIGHTED, COLUMNS))
    assert f"warning: unreadable file {spoiled} (after {before} rows): {error}" in capsys.readouterr().err


# ---- empty inputs --------------------------------------------------------------------------


def _empty_file(root, file_format):
    os.makedirs(root, exist_ok=True)
    if file_format == "parquet":
        columns = {k: v[:0] for k, v in scores(1).items()}
        return write_files(root, "parquet", [columns])[0]
    path = os.path.join(root, "scores-00.tfrecord")
    open(path, "wb").close()  # a TFRecord file of zero records is zero bytes
    return path


@pytest.mark.parametrize("policy", ["fail", "reject"])
@pytest.mark.parametrize("file_format", FORMATS)
def test_an_empty_input_completes_and_fails_validation(tmp_path, capsys, file_format, policy):
    """Nothing to evaluate is not a success: min_example_count (default 1) fails, exit 3 (SPEC §8)."""
    pattern = _empty_file(tmp_path / "in", file_format)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, output = _run(tmp_path, pattern, invalid_rows={"policy": policy})
    assert code == 3
    document = _assert_not_blessed_for_no_examples(output, capsys.readouterr().err)
    assert document["rows_read"] == 0


def test_an_empty_input_with_min_example_count_0_passes(tmp_path):
    pattern = _empty_file(tmp_path / "in", "parquet")
    config = write_config(tmp_path / "c.yaml", validation={"min_example_count": 0})
    assert run_cli(["--input", pattern, "--config", config, "--output", tmp_path / "out"]) == 0
    assert os.path.exists(tmp_path / "out" / "BLESSED")


# ---- negative weights ------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", FORMATS)
def test_negative_weights_are_evaluated_and_reported(tmp_path, capsys, file_format):
    parts = _originals()
    for part, rows in zip(parts, BAD_ROWS):
        part["weight"] = part["weight"].copy()
        part["weight"][list(rows)] = -np.abs(part["weight"][list(rows)]) - 0.25
    pattern, _ = _write(tmp_path / "in", file_format, parts)
    code, output = _run(tmp_path, pattern)
    assert code == 0
    document = read_metrics(output)
    count = sum(len(rows) for rows in BAD_ROWS)
    assert document["negative_weight_examples"] == count
    assert document["rows_rejected"] == 0 and document["rows_evaluated"] == sum(SIZES)
    _assert_reconciles(document)
    all_rows = [np.ones(s, dtype=bool) for s in SIZES]
    assert_document_matches(document, _expected(parts, all_rows, WEIGHTED, COLUMNS))
    assert f"warning: {count} examples have negative weights" in capsys.readouterr().err


# ---- config errors: exit 2 before any pipeline ----------------------------------------------


CONFIG_CASES = {
    "policy_skip": ({"policy": "skip"}, "invalid_rows.policy: must be one of fail, reject, got 'skip'"),
    "max_fraction_1.5": ({"policy": "reject", "max_fraction": 1.5},
                         "invalid_rows.max_fraction: must be a number in [0, 1], got 1.5"),
    "max_fraction_x": ({"policy": "reject", "max_fraction": "x"},
                       "invalid_rows.max_fraction: must be a number in [0, 1], got 'x'"),
    "unknown_key": ({"policy": "reject", "unknown": 1}, "invalid_rows.unknown: unknown key"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_invalid_rows_config_error(tmp_path, capsys, case):
    invalid_rows, expected = CONFIG_CASES[case]
    pattern, _ = write_files(tmp_path / "in", "parquet", [scores(20)])
    code, output = _run(tmp_path, pattern, invalid_rows=invalid_rows)
    assert code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: config "), stderr
    assert expected in stderr, stderr
    assert not os.path.exists(output)  # failed before the pipeline was built


# ---- output integrity ----------------------------------------------------------------------


def _snapshot(output):
    files = {}
    for path in sorted(glob.glob(os.path.join(output, "**"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[os.path.relpath(path, output)] = f.read()
    return files


@pytest.fixture(scope="module")
def integrity_inputs(tmp_path_factory):
    """A run with rejected rows, a clean one, one over max_fraction, one with a bad row."""
    root = tmp_path_factory.mktemp("integrity")
    some_bad = scores(300, seed=11)
    some_bad["logits"][[3, 150, 299]] = np.nan
    many_bad = scores(200, seed=12)
    many_bad["logits"][::2] = np.nan
    return {
        "some_bad": (some_bad, write_files(root / "some_bad", "parquet", [some_bad])[0]),
        "clean": (scores(120, seed=13), write_files(root / "clean", "parquet", [scores(120, seed=13)])[0]),
        "many_bad": (many_bad, write_files(root / "many_bad", "parquet", [many_bad])[0]),
    }


PREDICT = ("--predictions", "probabilities", "--passthrough", "id")


def test_failed_runs_leave_an_earlier_run_byte_for_byte(tmp_path, capsys, integrity_inputs):
    output = tmp_path / "out"
    _, pattern = integrity_inputs["some_bad"]
    assert _run(tmp_path, pattern, output=output, extra=PREDICT)[0] == 0
    before = _snapshot(output)
    assert {"metrics.json"} < set(before)
    assert any(k.startswith("predictions/") for k in before) and any(k.startswith("rejected/") for k in before)

    # Over max_fraction: rejected rows were staged, then the commit refused.
    _, pattern = integrity_inputs["many_bad"]
    code, _ = _run(tmp_path, pattern, output=output, name="over", extra=PREDICT,
                   invalid_rows={"policy": "reject", "max_fraction": 0.1})
    assert code == 1 and "100 of 200 rows rejected" in capsys.readouterr().err
    # Its rejected rows are kept beside the earlier run's outputs, which are untouched.
    after = _snapshot(output)
    kept = {k: v for k, v in after.items() if k.startswith("failed-")}
    assert kept and all("/rejected/" in k for k in kept), sorted(kept)
    assert {k: v for k, v in after.items() if k not in kept} == before
    shutil.rmtree(os.path.join(output, next(iter(kept)).split("/")[0]))
    # A bad row under policy fail.
    code, _ = _run(tmp_path, pattern, output=output, name="fail", extra=PREDICT, invalid_rows=None)
    assert code == 1 and "logits must be finite" in capsys.readouterr().err
    assert _snapshot(output) == before
    assert not [n for n in os.listdir(output) if n.startswith(".staging")]


def test_a_later_run_replaces_every_output(tmp_path, integrity_inputs):
    output = tmp_path / "out"
    _, pattern = integrity_inputs["some_bad"]
    assert _run(tmp_path, pattern, output=output, extra=PREDICT)[0] == 0
    # As if the earlier run had written more shards than the next one will.
    for name in ("predictions", "rejected"):
        [first] = glob.glob(os.path.join(output, name, "*.parquet"))
        shutil.copy(first, os.path.join(output, name, f"{name}-00001-of-00002.parquet"))

    columns, pattern = integrity_inputs["clean"]
    assert _run(tmp_path, pattern, output=output, name="later", extra=PREDICT)[0] == 0
    document = read_metrics(output)
    assert document["rows_read"] == 120 and document["rows_rejected"] == 0
    predictions = read_predictions(output)
    assert sorted(predictions.column("id").to_pylist()) == columns["id"].tolist()
    assert len(glob.glob(os.path.join(output, "predictions", "*-of-00002.parquet"))) == 0
    rejected_files = glob.glob(os.path.join(output, "rejected", "*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in rejected_files) == 0
    assert not [n for n in os.listdir(output) if n.startswith(".staging")]


@pytest.mark.parametrize("later", ["without_predictions", "policy_fail"])
def test_a_later_run_leaves_no_outputs_of_an_earlier_run(tmp_path, integrity_inputs, later):
    output = tmp_path / "out"
    _, pattern = integrity_inputs["some_bad"]
    assert _run(tmp_path, pattern, output=output, extra=PREDICT)[0] == 0
    _, pattern = integrity_inputs["clean"]
    if later == "without_predictions":
        code, _ = _run(tmp_path, pattern, output=output, name="later")
    else:
        code, _ = _run(tmp_path, pattern, output=output, name="later", extra=PREDICT, invalid_rows=None)
    assert code == 0
    assert read_metrics(output)["rows_read"] == 120
    stale = []
    if later == "without_predictions":
        stale = glob.glob(os.path.join(output, "predictions", "*"))
    rejected = glob.glob(os.path.join(output, "rejected", "*.parquet"))
    stale += [f for f in rejected if pq.read_metadata(f).num_rows]
    assert not stale, f"outputs of the earlier run left behind: {stale}"
