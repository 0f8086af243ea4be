"""Shared helpers for the pipeline tests: writing Parquet/TFRecord inputs,
running the CLI in-process and computing the head's metrics directly.

Columns are given as a dict name -> values:
- a 1-D numpy array: one value per row (Parquet scalar; a length-1 feature
  in tf.train.Example);
- a 2-D numpy array [n, D]: a list of D values per row (Parquet
  fixed_size_list; a length-D feature in tf.train.Example);
- a Python list (strings, numbers, lists or None): passed to pyarrow as is;
  None is a null (Parquet) or a missing feature (TFRecord);
- a pyarrow Array: written as is (TFRecord needs large_list<...>).
"""

import glob
import json
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from head import BinaryClassHead

REL_TOL = 1e-12


# ---- writing inputs ------------------------------------------------------------


def _parquet_array(values):
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    if isinstance(values, np.ndarray) and values.dtype.kind in "US":
        return pa.array(values.tolist(), type=pa.string())
    return pa.array(values)


def write_parquet(path, columns, row_group_size=None):
    table = pa.table({name: _parquet_array(values) for name, values in columns.items()})
    pq.write_table(table, str(path), row_group_size=row_group_size)
    return str(path)


def _large_value_type(arrow_type):
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_binary(arrow_type):
        return pa.large_binary()
    if pa.types.is_floating(arrow_type):
        return pa.float32()
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return pa.int64()
    return arrow_type


def _tfrecord_array(values):
    """Any column as large_list<float32 | int64 | large_binary>."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "US" or values.dtype == object:
            values = values.tolist()
        elif values.ndim == 1:
            values = values[:, np.newaxis]
    if isinstance(values, np.ndarray):  # [n, D] numbers
        inner = pa.array(values.ravel())
        inner = inner.cast(_large_value_type(inner.type))
        offsets = pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int64))
        return pa.LargeListArray.from_arrays(offsets, inner)
    # A Python list: scalars become length-1 lists, None stays null.
    rows = [v if v is None or isinstance(v, (list, tuple)) else [v] for v in values]
    rows = [[x.encode() if isinstance(x, str) else x for x in r] if r is not None else None for r in rows]
    sample = pa.array([x for r in rows if r is not None for x in r])
    return pa.array(rows, type=pa.large_list(_large_value_type(sample.type)))


def write_tfrecord(path, columns):
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import RecordBatchToExamples

    arrays = {name: _tfrecord_array(values) for name, values in columns.items()}
    batch = pa.RecordBatch.from_pydict(arrays)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in RecordBatchToExamples(batch):
            writer.write(record)
    return str(path)


def write_files(tmp_dir, file_format, parts, row_group_size=None, stem="scores"):
    """Writes each dict of `parts` to its own file; returns (glob, paths)."""
    os.makedirs(tmp_dir, exist_ok=True)
    ext = "parquet" if file_format == "parquet" else "tfrecord"
    paths = []
    for i, columns in enumerate(parts):
        path = os.path.join(str(tmp_dir), f"{stem}-{i:02d}.{ext}")
        if file_format == "parquet":
            write_parquet(path, columns, row_group_size=row_group_size)
        else:
            write_tfrecord(path, columns)
        paths.append(path)
    return os.path.join(str(tmp_dir), f"{stem}-*.{ext}"), paths


def split_rows(columns, sizes):
    """A dict of full-length columns -> a list of dicts of consecutive rows."""
    parts, start = [], 0
    for size in sizes:
        parts.append({k: v[start:start + size] for k, v in columns.items()})
        start += size
    assert start == len(next(iter(columns.values())))
    return parts


def scores(rows, seed=0, dims=None):
    """Plausible scored examples: float32 logits/weights, int64 labels, ids.

    With `dims`, also multi_logits/multi_label of shape [rows, dims].
    A few logits are exactly 0 and a few weights are 0.
    """
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < 0.4).astype(np.int64)
    logits = (rng.normal(0.0, 1.7, rows) + 1.6 * label - 0.8).astype(np.float32)
    logits[::97] = 0.0
    weight = rng.gamma(2.0, 0.8, rows).astype(np.float32)
    weight[5::113] = 0.0
    columns = {
        "id": np.arange(rows, dtype=np.int64) + 1000 * seed,
        "logits": logits,
        "label": label,
        "weight": weight,
        "label_str": np.where(label == 1, "spam", "ham"),
        "aux": rng.random(rows).astype(np.float32),
    }
    if dims:
        multi_label = (rng.random((rows, dims)) < 0.4).astype(np.float32)
        columns["multi_label"] = multi_label
        columns["multi_logits"] = (
            rng.normal(0.0, 1.5, (rows, dims)) + 1.5 * multi_label - 0.6
        ).astype(np.float32)
    return columns


def two_model_scores(rows, seed, countries):
    """scores() plus an older, noisier model's logits (score_v1) and a country per row."""
    columns = scores(rows, seed=seed)
    rng = np.random.default_rng(seed)
    columns["score_v1"] = (columns["logits"] + rng.normal(0, 1.5, rows)).astype(np.float32)
    columns["country"] = np.asarray(countries)[rng.integers(0, len(countries), rows)]
    return columns


# ---- running -------------------------------------------------------------------


def write_config(path, head=None, columns=None, **sections):
    document = {"head": head or {}, "columns": columns or {"logits": "logits", "label": "label"}}
    document.update(sections)
    with open(path, "w") as f:
        yaml.safe_dump(document, f)
    return str(path)


def run_cli(argv):
    """pipeline.cli.main(argv) in-process, as `python run_pipeline.py ...`."""
    from pipeline.cli import main

    return main([str(a) for a in argv])


def read_metrics(output_dir):
    with open(os.path.join(str(output_dir), "metrics.json")) as f:
        return json.load(f)


def read_predictions(output_dir):
    files = sorted(glob.glob(os.path.join(str(output_dir), "predictions", "*.parquet")))
    assert files, f"no predictions written under {output_dir}"
    return pa.concat_tables([pq.read_table(f) for f in files])


# ---- the head, directly --------------------------------------------------------


def head_results(head_kwargs, logits, labels, weights=None, batches=1, features=None):
    """BinaryClassHead(**head_kwargs).update_metrics + results on numpy arrays.

    logits [n] or [n, D] (a trailing dimension of 1 is added); returns
    (results, example_count, weighted_example_count).
    """
    head = BinaryClassHead(**head_kwargs)
    logits = np.asarray(logits, dtype=np.float32)[..., np.newaxis]
    state = head.new_state()
    for part in np.array_split(np.arange(len(logits)), batches):
        batch_features = {k: np.asarray(v)[part] for k, v in (features or {}).items()}
        if head.weight_column:
            batch_features[head.weight_column] = np.asarray(weights)[part]
        state = head.update_metrics(state, batch_features, logits[part], np.asarray(labels)[part])
    return head.results(state), int(state.example_count), state.weighted_example_count


def assert_metrics_equal(actual, expected, rel_tol=REL_TOL, what=""):
    assert set(actual) == set(expected), f"{what}: keys differ: {sorted(set(actual) ^ set(expected))}"
    bad = {
        k: (actual[k], expected[k])
        for k in expected
        if not math.isclose(actual[k], expected[k], rel_tol=rel_tol, abs_tol=0.0)
    }
    assert not bad, f"{what}: metrics differ (actual, expected): {bad}"


def assert_document_matches(document, expected):
    """metrics.json against head_results(...)."""
    results, count, weighted = expected
    assert_metrics_equal(document["metrics"], results, what="metrics.json")
    assert document["example_count"] == count
    assert math.isclose(document["weighted_example_count"], weighted, rel_tol=REL_TOL)
    # One model, no slicing specs: the overall slice only, the same numbers.
    [overall] = document["slices"]
    assert overall["model"] == "" and overall["slice"] == {} and overall["slice_name"] == "Overall"
    assert overall["metrics"] == document["metrics"]
    assert overall["example_count"] == count
    assert isinstance(document["run"], dict)


# ---- losses named by test configs -----------------------------------------------


def loss_using_features(labels, logits, features, loss_reduction):
    """Sigmoid cross-entropy scaled by (1 + aux): needs a column the head does not."""
    assert loss_reduction in ("sum", "sum_over_batch_size")
    x = logits.astype(np.float64)
    cross_entropy = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))
    aux = np.asarray(features["aux"], dtype=np.float64).reshape(-1, 1)
    return (cross_entropy * (1.0 + aux)).astype(np.float32)


# ---- a loss with arguments the head does not allow (a config error) -------------


def loss_with_wrong_args(labels, logits, temperature):
    return np.zeros_like(logits)


# ---- rejected rows and TFRecord layout (tests/test_reject.py) --------------------


def read_rejected(output_dir):
    """Every row of OUTPUT/rejected/*.parquet as dicts, sorted by (source_file, row)."""
    files = sorted(glob.glob(os.path.join(str(output_dir), "rejected", "*.parquet")))
    assert files, f"no rejected rows written under {output_dir}"
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: (r["source_file"], r["row"]))


def tfrecord_record_offsets(path):
    """(offset, payload length) of each record of an uncompressed TFRecord file.

    A record is: uint64 length, uint32 masked CRC of the length, the payload,
    uint32 masked CRC of the payload (12 header bytes, 4 footer bytes).
    """
    import struct

    with open(path, "rb") as f:
        data = f.read()
    records, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        records.append((offset, length))
        offset += 12 + length + 4
    assert offset == len(data), f"{path}: not a whole number of records"
    return records


# ---- runs compared with a reference run (tests/test_runners.py, test_dask_runner.py) ----

COUNTERS_LINE = "counters (beam_head_eval): "


def run_and_read(tmp_path, pattern, config, *options, name="out"):
    """The CLI in-process into tmp_path/name; its metrics.json (the run must succeed)."""
    output = tmp_path / name
    code = run_cli(["--input", pattern, "--config", config, "--output", output, *options])
    assert code == 0, f"exit status {code}"
    return read_metrics(output)


def assert_same_run(document, reference, what):
    """Same metrics (<= REL_TOL) and the same counts as the reference metrics.json."""
    assert_metrics_equal(document["metrics"], reference["metrics"], what=what)
    for key in ("example_count", "rows_read", "rows_evaluated", "rows_rejected"):
        assert document[key] == reference[key], (what, key)
    assert math.isclose(
        document["weighted_example_count"], reference["weighted_example_count"], rel_tol=REL_TOL
    ), what


def printed_counters(out):
    """The counters line a run printed at the end (stdout text), as {name: int}."""
    lines = [line for line in out.splitlines() if line.startswith(COUNTERS_LINE)]
    assert lines, f"no counters printed in {out!r}"
    return {k: int(v) for k, v in (item.split("=") for item in lines[-1][len(COUNTERS_LINE):].split(", "))}


def assert_counters(counters, rows):
    assert counters["rows_read"] == rows
    assert counters["rows_evaluated"] == rows
    assert counters["rows_rejected"] == 0
    assert counters["bytes_read"] >= rows * 8  # float32 logits and weights at least
    assert counters["input_bytes"] > 0


# ---- a run stopped mid-way (tests/test_signals.py, tests/test_dask_runner.py) -----

RUN_PIPELINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_pipeline.py")
SLOW_LOSS_MODULE = '''
import os
import time

import numpy as np


def slow(labels, logits):
    """In the pipeline: says that it is evaluating (a file), then takes a minute.

    The launcher's preflight runs it on one row: that returns at once.
    """
    if len(logits) > 1:
        open(os.environ["SLOW_LOSS_STARTED"], "a").close()
        time.sleep(60)
    return np.zeros_like(logits)
'''


def start_slow_run(tmp_path, input_pattern, *options):
    """run_pipeline.py in a session of its own (like a terminal's foreground job),
    with a loss_fn that blocks; returns (process, output dir) once the loss_fn
    runs and the run's staging directory exists.
    """
    import subprocess
    import sys
    import time

    (tmp_path / "slow_losses.py").write_text(SLOW_LOSS_MODULE)
    config = write_config(tmp_path / "slow.yaml", head={"loss_fn": "slow_losses:slow"},
                          invalid_rows={"policy": "reject", "max_fraction": 0.5})
    started, output = tmp_path / "loss_fn_started", tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, RUN_PIPELINE, "--input", str(input_pattern), "--config", config, "--output", str(output),
         "--predictions", "logistic", *options],
        cwd=tmp_path, env=dict(os.environ, SLOW_LOSS_STARTED=str(started)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (started.exists() and glob.glob(str(output / ".staging-*"))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run did not reach its loss_fn: {process.communicate()[1][-2000:]}")
        time.sleep(0.1)
    return process, output


def processes_left(session, seconds=15):
    """Pids still in a process session after up to `seconds` (a job's workers must end with it)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        left = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.getsid(int(name)) == session:
                        left.append(int(name))
                except (ProcessLookupError, PermissionError):
                    pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def replace_tfrecord_record(path, index, payload):
    """Puts `payload` in place of record `index`'s data, framed with valid CRCs."""
    import struct

    from pipeline import _tfrecord

    offset, length = tfrecord_record_offsets(path)[index]
    with open(path, "rb") as f:
        data = f.read()
    header = struct.pack("<Q", len(payload))
    framed = (header + struct.pack("<I", _tfrecord.masked_crc32c(header)) + payload
              + struct.pack("<I", _tfrecord.masked_crc32c(payload)))
    with open(path, "wb") as f:
        f.write(data[:offset] + framed + data[offset + 16 + length:])
