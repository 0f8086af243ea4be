#!/usr/bin/env python
"""Where a TFRecord record's time goes: CPU per record of each step, one thread.

    python benchmarks/tfrecord_profile.py --input 'bench_data/tfrecord-1m/*.tfrecord' \
        --output profile.json [--repeats 3]

On the files' bytes already in memory (the file reads are left out), the
median over --repeats of the CPU time per record of:
- framing: pipeline._tfrecord.frame_records, both CRCs checked;
- decoding: the C decoder of the needed features (logits, label, weight)
  into Arrow buffers (pipeline._tfrecord.decode_examples);
- Arrow: wrapping those buffers as a RecordBatch (rest of
  pipeline.tfrecord.decode_examples);
- for comparison, tfx-bsl's ExamplesToRecordBatchDecoder with a schema of
  the same features (what the pipeline used before), on records already
  split into bytes objects (split_records, timed apart), and
  `tf.io.parse_example` of the same features as the reference does.
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline import _tfrecord, tfrecord  # noqa: E402

FEATURES = {"logits": "float", "label": "int", "weight": "float"}
PIECE = 16384  # records per piece, as pipeline.read.DECODE_ROWS


def pieces_in_memory(paths):
    pieces = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        pos, first = 0, 0
        while pos < len(data):
            count, end, _, problem = _tfrecord.frame_records(data, pos, PIECE)
            if problem or not count:
                raise SystemExit(f"{path}: cannot frame at byte {pos}: {problem or 'cut short'}")
            pieces.append(tfrecord.Piece(first, pos, ((data, pos, count),), count))
            pos, first = end, first + count
    return pieces


def cpu_per_record(step, items, records, repeats):
    """Median CPU microseconds per record of step(item) over all items."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        for item in items:
            step(item)
        times.append(time.process_time() - started)
    return statistics.median(times) / records * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    pieces = pieces_in_memory(sorted(glob.glob(args.input)))
    records = sum(p.count for p in pieces)
    features = list(FEATURES.items())

    def frame(piece):
        (chunk, start, count), = piece.segments
        _tfrecord.frame_records(chunk, start, count)

    def decode_c(piece):
        _tfrecord.decode_examples(piece.segments, features)

    def decode_and_arrow(piece):
        tfrecord.decode_examples(piece, FEATURES)

    steps = {
        "framing (CRC-checked)": frame,
        "decoding (C, needed features)": decode_c,
    }
    result = {name: cpu_per_record(step, pieces, records, args.repeats) for name, step in steps.items()}
    result["Arrow batch from the buffers"] = max(
        0.0, cpu_per_record(decode_and_arrow, pieces, records, args.repeats) - result["decoding (C, needed features)"]
    )

    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    schema = schema_pb2.Schema()
    for name, kind in FEATURES.items():
        schema.feature.add(name=name, type={"float": schema_pb2.FLOAT, "int": schema_pb2.INT}[kind])
    decoder = ExamplesToRecordBatchDecoder(schema.SerializeToString())
    split = [p.records() for p in pieces]
    result["splitting into bytes objects (for tfx-bsl)"] = cpu_per_record(
        tfrecord.Piece.records, pieces, records, args.repeats)
    result["tfx-bsl ExamplesToRecordBatchDecoder (same features)"] = cpu_per_record(
        decoder.DecodeBatch, split, records, args.repeats)

    import tensorflow as tf

    spec = {"logits": tf.io.FixedLenFeature([1], tf.float32), "label": tf.io.FixedLenFeature([1], tf.int64),
            "weight": tf.io.FixedLenFeature([1], tf.float32)}
    tensors = [tf.constant(r) for r in split]
    tf.io.parse_example(tensors[0], spec)  # warm-up
    result["tf.io.parse_example (same features, dense)"] = cpu_per_record(
        lambda t: tf.io.parse_example(t, spec), tensors, records, args.repeats)
    document = {"records": records, "crc32c": _tfrecord.CRC32C, "cpu_us_per_record": result}
    with open(args.output, "w") as f:
        json.dump(document, f, indent=2)
    for name, value in result.items():
        print(f"{name:<55} {value:6.3f} us/record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
