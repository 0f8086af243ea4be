"""Deterministic benchmark data for slices, models and intervals (benchmarks/slices_bench.py).

Every row is a scored example with two models' scores and three slice columns:

    logits          float32  the candidate model's logit (as in make_data.py)
    score_v1        float32  a second, weaker model: logits + N(0, 0.8) noise
    label           int64    0/1 (35 % positives)
    weight          float32  a positive example weight (gamma distributed)
    country         string   50 two-letter codes, skewed (p ~ 1 / rank^1.2)
    device          string   4 values (mobile 55 %, desktop 30 %, tablet 10 %, tv 5 %)
    store           int64    10,000 values, uniform
    probability     float32  sigmoid(logits); TFRecord only (TFMA wants probabilities)
    probability_v1  float32  sigmoid(score_v1); TFRecord only

Shard `i` is drawn from numpy's generator seeded with (seed, set_id, i); a
set is reused when its manifest matches (make_data.py's rules), and smaller
Parquet views are directories of symbolic links (make_data.make_view).
"""


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import make_data

GENERATOR_VERSION = 1
SET_IDS = {"parquet": 11, "tfrecord": 12}
COUNTRIES = (
    "US IN BR DE GB FR JP MX ID IT ES CA KR TR RU PL NL AU AR CO "
    "SA TH VN PH EG NG ZA MY PK BD SE CH BE AT NO DK FI IE PT GR "
    "CZ RO HU IL AE CL PE NZ SG UA"
).split()
DEVICES = ("mobile", "desktop", "tablet", "tv")
DEVICE_P = (0.55, 0.30, 0.10, 0.05)
STORES = 10_000
_COUNTRY_P = 1.0 / np.arange(1, len(COUNTRIES) + 1) ** 1.2
_COUNTRY_P /= _COUNTRY_P.sum()
_COUNTRY_BYTES = np.frombuffer("".join(COUNTRIES).encode(), dtype=np.uint8).reshape(len(COUNTRIES), 2)


def shard_columns(seed, set_id, index, rows):
    """The shard's columns as numpy arrays (country as a 2-byte matrix, device as codes)."""
    rng = np.random.default_rng([seed, set_id, index])
    label = (rng.random(rows) < 0.35).astype(np.int64)
    logits = (rng.normal(0.0, 1.6, rows) + 1.8 * label - 1.1).astype(np.float32)
    score_v1 = (logits + rng.normal(0.0, 0.8, rows)).astype(np.float32)
    weight = rng.gamma(2.0, 0.8, rows).astype(np.float32)
    country = rng.choice(len(COUNTRIES), rows, p=_COUNTRY_P)
    device = rng.choice(len(DEVICES), rows, p=DEVICE_P)
    store = rng.integers(0, STORES, rows, dtype=np.int64)
    return {"logits": logits, "score_v1": score_v1, "label": label, "weight": weight,
            "country": _COUNTRY_BYTES[country], "device": device, "store": store}


def _arrow_columns(columns, large=False):
    """{name: Arrow array}: strings built without a Python loop over rows."""
    devices = pa.array(DEVICES, pa.large_binary() if large else pa.string())
    return {
        "logits": pa.array(columns["logits"]),
        "score_v1": pa.array(columns["score_v1"]),
        "label": pa.array(columns["label"]),
        "weight": pa.array(columns["weight"]),
        "country": make_data._string_array(columns["country"], large=large),
        "device": devices.take(pa.array(columns["device"])),
        "store": pa.array(columns["store"]),
    }


def write_parquet_shard(path, columns, row_group_size):
    pq.write_table(pa.table(_arrow_columns(columns)), path, row_group_size=row_group_size)


def write_tfrecord_shard(path, columns, batch_rows=65536):
    import tensorflow as tf  # only the TFRecord sets pay for TensorFlow
    from tfx_bsl.coders.example_coder import RecordBatchToExamples

    rows = len(columns["logits"])
    with tf.io.TFRecordWriter(path) as writer:
        for start in range(0, rows, batch_rows):
            part = {name: values[start:start + batch_rows] for name, values in columns.items()}
            arrays = _arrow_columns(part, large=True)
            arrays["probability"] = pa.array(make_data._sigmoid(part["logits"]))
            arrays["probability_v1"] = pa.array(make_data._sigmoid(part["score_v1"]))
            batch = pa.RecordBatch.from_arrays([make_data._large_list(a) for a in arrays.values()],
                                               names=list(arrays))
            for example in RecordBatchToExamples(batch):
                writer.write(example)


def make_set(directory, file_format, shards, rows_per_shard, row_group_size=131072,
             seed=make_data.DEFAULT_SEED, log=print):
    """Writes (or reuses) one sliced data set; returns its manifest."""
    wanted = {
        "generator": "sliced_data", "generator_version": GENERATOR_VERSION, "format": file_format,
        "shards": shards, "rows_per_shard": rows_per_shard, "rows": shards * rows_per_shard,
        "row_group_size": row_group_size if file_format == "parquet" else None, "seed": seed,
    }

    def write_shard(index, path):
        columns = shard_columns(seed, SET_IDS[file_format], index, rows_per_shard)
        if file_format == "parquet":
            write_parquet_shard(path, columns, row_group_size)
        else:
            write_tfrecord_shard(path, columns)

    return make_data.write_set(directory, wanted, write_shard, log)
