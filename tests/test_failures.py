"""Every failure a user can meet is one line on stderr with its exit status
(SPEC §6, §9; pipeline/errors.py), run as a user runs the program: the CLI
in a subprocess.

- a column the config names that the input lacks: exit 2 before any
  pipeline, naming the column and the file's columns, under either policy
  (never a per-row rejection);
- a loss_fn that raises, returns the wrong shape or reads a feature the
  files lack: exit 2 from the preflight, naming the function; one that
  fails only on later batches: exit 1 naming the file and the function;
- non-finite loss_fn results are bad rows: exit 1 naming the row and the
  function under `fail`, set aside under `reject`, metrics.json strict JSON;
- under `fail` the error names the batch's first bad row, whatever its problem;
- an invalid loss_reduction lists the valid ones;
- stdout's reader going away (`| head -1`) is no failure: the run goes on.
"""

import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.datafiles import scores, write_config, write_parquet

ROWS = 300
LOSSES = '''
import numpy as np


def raises(labels, logits):
    raise ZeroDivisionError("the model's loss divides by zero")


def flat(labels, logits):
    return np.zeros(len(logits), dtype=np.float32)  # [n], not [n, 1]


def needs_importance(labels, logits, features):
    return logits * 0 + features["importance"][:, None]


def fails_on_a_whole_batch(labels, logits):
    if len(logits) > 1:
        raise RuntimeError(f"cannot take {len(logits)} rows")
    return np.zeros_like(logits)


def nan_above_one(labels, logits):
    return np.where(logits > 1.0, np.nan, 0.25).astype(np.float32)
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    columns = scores(ROWS, seed=13)
    path = write_parquet(tmp_path_factory.mktemp("failures") / "scores.parquet", columns)
    return path, columns


def _run(cli, tmp_path, path, head=None, columns=None, invalid_rows=None, *options):
    sections = {"invalid_rows": invalid_rows} if invalid_rows else {}
    config = write_config(tmp_path / "config.yaml", head=head, columns=columns, **sections)
    (tmp_path / "cwd" / "losses.py").write_text(LOSSES)
    return cli("--input", path, "--config", config, "--output", tmp_path / "out", *options)


def _one_line(done, status):
    assert done.returncode == status, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr[-3000:]
    return done.stderr[len("error: "):-1]


def _file_columns(path):
    return pq.read_schema(path).names


@pytest.mark.parametrize("policy", ["fail", "reject"])
@pytest.mark.parametrize("role,columns", [
    ("logits", {"logits": "logit", "label": "label"}),
    ("label", {"logits": "logits", "label": "labels"}),
])
def test_a_missing_column_is_exit_2_naming_the_files_columns(cli, tmp_path, data, policy, role, columns):
    path, _ = data
    done = _run(cli, tmp_path, path, columns=columns, invalid_rows={"policy": policy})
    missing = columns[role]
    assert _one_line(done, 2) == (
        f"column {missing!r} ({role}) is not in the input: {path} has columns {_file_columns(path)}")
    assert not os.path.exists(tmp_path / "out")


LOSS_FN_PREFLIGHT = {
    "raises": "loss_fn losses:raises raised ZeroDivisionError: the model's loss divides by zero "
              "(on the first row of {path})",
    "flat": "loss_fn losses:flat returned shape (1,) for logits of shape (1, 1): loss_fn must return Tensor "
            "of shape [D0, D1, ... DN, 1] (one loss per logit, unreduced) (on the first row of {path})",
    "needs_importance": "loss_fn losses:needs_importance raised KeyError: 'importance' (on the first row of "
                        "{path}); {path} has columns {columns}",
}


@pytest.mark.parametrize("function", list(LOSS_FN_PREFLIGHT))
def test_a_loss_fn_that_would_fail_every_worker_is_exit_2(cli, tmp_path, data, function):
    path, _ = data
    done = _run(cli, tmp_path, path, head={"loss_fn": f"losses:{function}"})
    assert _one_line(done, 2) == LOSS_FN_PREFLIGHT[function].format(path=path, columns=_file_columns(path))
    assert not os.path.exists(tmp_path / "out")


def test_a_loss_fn_failing_while_the_pipeline_runs_is_exit_1_naming_file_and_function(cli, tmp_path, data):
    path, _ = data
    done = _run(cli, tmp_path, path, head={"loss_fn": "losses:fails_on_a_whole_batch"})
    assert _one_line(done, 1) == (
        f"{path}, rows 0 to {ROWS - 1}: loss_fn losses:fails_on_a_whole_batch raised RuntimeError: "
        f"cannot take {ROWS} rows")
    assert not glob.glob(str(tmp_path / "out" / "*"))


def test_non_finite_losses_are_bad_rows_under_fail(cli, tmp_path, data):
    path, columns = data
    bad = np.flatnonzero(columns["logits"] > 1.0)
    done = _run(cli, tmp_path, path, head={"loss_fn": "losses:nan_above_one"})
    more = len(bad) - 1
    assert _one_line(done, 1) == (
        f"{path}, row {bad[0]}, column loss: loss_fn losses:nan_above_one returned a non-finite loss "
        f"(loss is nan); {more} more rows of this batch too")


def _strict(text):
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_losses_are_set_aside_under_reject(cli, tmp_path, data):
    path, columns = data
    bad = np.flatnonzero(columns["logits"] > 1.0)
    done = _run(cli, tmp_path, path, head={"loss_fn": "losses:nan_above_one"}, invalid_rows={"policy": "reject"})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / "metrics.json") as f:
        document = _strict(f.read())
    assert document["rows_rejected"] == len(bad) and document["rows_evaluated"] == ROWS - len(bad)
    assert document["rejected_by_reason"] == {"loss: loss_fn losses:nan_above_one returned a non-finite loss": len(bad)}
    # The rows left all have loss 0.25: the mean loss is exactly that.
    assert document["metrics"]["average_loss"] == pytest.approx(0.25, rel=1e-7)
    rejected = pq.read_table(glob.glob(str(tmp_path / "out" / "rejected" / "*.parquet"))).to_pylist()
    assert sorted(r["row"] for r in rejected) == list(bad)
    for row in rejected:
        assert _strict(row["values"])["logits"] == pytest.approx(float(columns["logits"][row["row"]]), rel=1e-6)


@pytest.mark.parametrize("first", ["label", "logits"])
def test_under_fail_the_first_bad_row_of_the_batch_is_named(cli, tmp_path, first):
    """The head checks logits before labels: a bad label at row 7 comes first, whatever is bad later."""
    columns = scores(ROWS, seed=14)
    columns["label"] = columns["label"].astype(np.float32)
    columns["logits"] = columns["logits"].copy()
    rows = {"label": 7, "logits": 12} if first == "label" else {"label": 12, "logits": 7}
    columns["label"][[rows["label"], 200]] = 5.0
    columns["logits"][[rows["logits"], 250]] = np.inf
    path = write_parquet(tmp_path / "scores.parquet", columns)
    message = _one_line(_run(cli, tmp_path, path), 1)
    expected = {
        "label": f"{path}, row 7, column labels (label): Labels must be <= 2 - 1 (label is 5.0)",
        "logits": f"{path}, row 7, column logits (logits): logits must be finite (logit is inf)",
    }[first]
    assert message.startswith(expected), message


def test_an_invalid_loss_reduction_lists_the_valid_ones(cli, tmp_path, data):
    path, _ = data
    done = _run(cli, tmp_path, path, head={"loss_reduction": "mean"})
    assert _one_line(done, 2).endswith(
        "head.loss_reduction: Invalid loss_reduction: mean. See `tf.losses.Reduction` for valid options "
        "(a head takes: auto, sum, sum_over_batch_size).")


@pytest.mark.parametrize("arguments,expected", [
    (["--direct_num_workers=x"], "Beam options: argument --direct_num_workers: invalid int value: 'x'"),
    (["--predictions", "odds"], "--predictions: unknown key 'odds' (valid: logits, logistic, probabilities, "
                                "class_ids, classes, all_class_ids, all_classes) (see --help)"),
    (["--batch_size", "0"], "--batch_size must be positive (see --help)"),
])
def test_a_bad_argument_is_one_line_and_exit_2(cli, tmp_path, data, arguments, expected):
    path, _ = data
    done = cli("--input", path, "--output", tmp_path / "out", *arguments)
    assert _one_line(done, 2) == expected


def test_a_reader_that_goes_away_ends_no_run(tmp_path, data):
    """`run_pipeline.py ... | head -1`: the output stops, the run does not (history row, status)."""
    import sqlite3
    import subprocess
    import sys

    from pipeline import history
    from tests.conftest import RUN_PIPELINE

    path, _ = data
    process = subprocess.Popen(
        [sys.executable, RUN_PIPELINE, "--input", path, "--output", tmp_path / "out",
         "--history", "sqlite:///runs.db"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the first line
    error = process.stderr.read()
    assert process.wait(timeout=600) == 0, error
    assert error == ""
    assert os.path.exists(tmp_path / "out" / "metrics.json")
    with sqlite3.connect(tmp_path / "runs.db") as db:  # the history was appended after the table printed
        assert db.execute(f"SELECT COUNT(*) FROM {history.TABLE}").fetchone()[0] > 0
