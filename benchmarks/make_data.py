"""Deterministic benchmark data: sharded Parquet and TFRecord files of scores.

Every row is a scored example of a model with some skill:

    logits       float32   the model's logit
    label        int64     0/1 (35 % positives)
    weight       float32   a positive example weight (gamma distributed)
    probability  float32   sigmoid(logits); TFRecord only (TFMA needs a probability)
    id           string    "ex-000000000042", unique per row (bytes in TFRecord)

Shard `i` of a data set is drawn from numpy's generator seeded with
(seed, set_id, i), so a file's contents depend only on the parameters in the
set's manifest.json; a set whose manifest matches the requested parameters
(and whose files are all there with the recorded sizes) is reused as is.

Smaller views of a Parquet set (its first k shards) are directories of
symbolic links, so 2M, 10M and 20M rows are read from the same files.

    python benchmarks/make_data.py --out bench_data/parquet --format parquet --shards 20 --rows-per-shard 1000000
"""

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GENERATOR_VERSION = 1
DEFAULT_SEED = 20261123
# Stable ids mixed into the seed, so two sets with the same shard index differ.
SET_IDS = {"parquet": 1, "tfrecord": 2}
ID_DIGITS = 12


def manifest_path(directory):
    return os.path.join(directory, "manifest.json")


def shard_name(index, file_format):
    return f"part-{index:05d}.{'parquet' if file_format == 'parquet' else 'tfrecord'}"


def _ids(first_row, rows):
    """b"ex-%012d" for rows first_row.., as a fixed-width byte matrix (vectorised)."""
    numbers = np.arange(first_row, first_row + rows, dtype=np.int64)
    powers = 10 ** np.arange(ID_DIGITS - 1, -1, -1, dtype=np.int64)
    digits = ((numbers[:, None] // powers[None, :]) % 10).astype(np.uint8) + ord("0")
    prefix = np.frombuffer(b"ex-", dtype=np.uint8)
    return np.hstack([np.broadcast_to(prefix, (rows, len(prefix))), digits])


def _string_array(matrix, large=False):
    """A fixed-width uint8 matrix [n, w] as an Arrow (large_)string array, zero copy."""
    rows, width = matrix.shape
    offset_type = np.int64 if large else np.int32
    offsets = np.arange(0, (rows + 1) * width, width, dtype=offset_type)
    data = np.ascontiguousarray(matrix).ravel()
    arrow_type = pa.large_binary() if large else pa.string()
    return pa.Array.from_buffers(
        arrow_type, rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def shard_columns(seed, set_id, index, rows, first_row):
    """The shard's columns as numpy arrays (ids as a byte matrix)."""
    rng = np.random.default_rng([seed, set_id, index])
    label = (rng.random(rows) < 0.35).astype(np.int64)
    logits = (rng.normal(0.0, 1.6, rows) + 1.8 * label - 1.1).astype(np.float32)
    weight = rng.gamma(2.0, 0.8, rows).astype(np.float32)
    return {
        "logits": logits,
        "label": label,
        "weight": weight,
        "id": _ids(first_row, rows),
    }


def _sigmoid(logits):
    x = logits.astype(np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def write_parquet_shard(path, columns, row_group_size):
    table = pa.table(
        {
            "logits": columns["logits"],
            "label": columns["label"],
            "weight": columns["weight"],
            "id": _string_array(columns["id"]),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def _large_list(values):
    """One value per row as large_list<...> of length 1 (a tf.Example feature)."""
    rows = len(values)
    return pa.LargeListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int64)), values)


def write_tfrecord_shard(path, columns, batch_rows=65536):
    # Imported here: the Parquet sets never pay for TensorFlow.
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import RecordBatchToExamples

    rows = len(columns["logits"])
    with tf.io.TFRecordWriter(path) as writer:
        for start in range(0, rows, batch_rows):
            part = slice(start, min(rows, start + batch_rows))
            logits = columns["logits"][part]
            batch = pa.RecordBatch.from_arrays(
                [
                    _large_list(pa.array(logits)),
                    _large_list(pa.array(columns["label"][part])),
                    _large_list(pa.array(columns["weight"][part])),
                    _large_list(pa.array(_sigmoid(logits))),
                    _large_list(_string_array(columns["id"][part], large=True)),
                ],
                names=["logits", "label", "weight", "probability", "id"],
            )
            for example in RecordBatchToExamples(batch):
                writer.write(example)


def _wanted(file_format, shards, rows_per_shard, row_group_size, seed):
    return {
        "generator_version": GENERATOR_VERSION,
        "format": file_format,
        "shards": shards,
        "rows_per_shard": rows_per_shard,
        "rows": shards * rows_per_shard,
        "row_group_size": row_group_size if file_format == "parquet" else None,
        "seed": seed,
    }


def _reusable(directory, wanted):
    try:
        with open(manifest_path(directory)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    if {k: manifest.get(k) for k in wanted} != wanted:
        return False
    for entry in manifest.get("files", []):
        path = os.path.join(directory, entry["name"])
        if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"]:
            return False
    return len(manifest.get("files", [])) == wanted["shards"]


def make_set(directory, file_format, shards, rows_per_shard, row_group_size=131072,
             seed=DEFAULT_SEED, log=print):
    """Writes (or reuses) one data set; returns its manifest."""
    wanted = _wanted(file_format, shards, rows_per_shard, row_group_size, seed)

    def write_shard(index, path):
        columns = shard_columns(seed, SET_IDS[file_format], index, rows_per_shard, index * rows_per_shard)
        if file_format == "parquet":
            write_parquet_shard(path, columns, row_group_size)
        else:
            write_tfrecord_shard(path, columns)

    return write_set(directory, wanted, write_shard, log)


def write_set(directory, wanted, write_shard, log=print):
    """Reuses the set in `directory` when its manifest is `wanted`, else writes
    every shard with write_shard(index, path) and then the manifest; returns it."""
    if _reusable(directory, wanted):
        with open(manifest_path(directory)) as f:
            log(f"data: reusing {directory} ({wanted['rows']:,} rows, {wanted['shards']} shards)")
            return json.load(f)
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(manifest_path(directory)):
        os.remove(manifest_path(directory))  # invalid until every shard is rewritten
    for name in os.listdir(directory):  # shards of other parameters
        if name.startswith("part-"):
            os.remove(os.path.join(directory, name))
    started = time.perf_counter()
    files = []
    for index in range(wanted["shards"]):
        name = shard_name(index, wanted["format"])
        path = os.path.join(directory, name)
        write_shard(index, path)
        files.append({"name": name, "rows": wanted["rows_per_shard"], "bytes": os.path.getsize(path)})
    manifest = dict(wanted, files=files, total_bytes=sum(f["bytes"] for f in files),
                    seconds_to_make=round(time.perf_counter() - started, 2))
    with open(manifest_path(directory) + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(manifest_path(directory) + ".tmp", manifest_path(directory))
    log(f"data: wrote {directory} ({wanted['rows']:,} rows, {wanted['shards']} shards, "
        f"{manifest['total_bytes'] / 1e6:.0f} MB) in {manifest['seconds_to_make']} s")
    return manifest


def make_view(source_dir, view_dir, shards):
    """A directory of symbolic links to the first `shards` files of a set; its glob."""
    with open(manifest_path(source_dir)) as f:
        manifest = json.load(f)
    names = [entry["name"] for entry in manifest["files"][:shards]]
    if len(names) < shards:
        raise ValueError(f"{source_dir} has {len(names)} shards, fewer than {shards}")
    os.makedirs(view_dir, exist_ok=True)
    for existing in os.listdir(view_dir):
        if existing not in names:
            os.remove(os.path.join(view_dir, existing))
    for name in names:
        link = os.path.join(view_dir, name)
        target = os.path.relpath(os.path.join(source_dir, name), view_dir)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(target, link)
    return {
        "rows": shards * manifest["rows_per_shard"],
        "bytes": sum(e["bytes"] for e in manifest["files"][:shards]),
        "glob": os.path.join(view_dir, "*" + os.path.splitext(names[0])[1]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", choices=("parquet", "tfrecord"), required=True)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--rows-per-shard", type=int, required=True)
    parser.add_argument("--row-group-size", type=int, default=131072)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    make_set(args.out, args.format, args.shards, args.rows_per_shard, args.row_group_size, args.seed)


if __name__ == "__main__":
    main()
