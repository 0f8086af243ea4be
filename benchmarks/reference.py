#!/usr/bin/env python
"""The near-limit yardstick: the head's metrics in one process, vectorised numpy.

Reads the same files as the pipeline - Parquet with pyarrow (only the needed
columns, every file in one multi-threaded read), TFRecord with tf.data and
`tf.io.parse_example` - and computes the metrics of `BinaryClassHead`
(weighted mean loss, accuracy, precision/recall, prediction/label means,
accuracy baseline, the 200-bucket AUC and PR-AUC histograms, accuracy/
precision/recall at each threshold, loss) with plain float64 numpy sums.
It is written independently of head/ (no import from the project), so its
agreement with the pipeline is a check of both. Supports the subset of the
config the benchmark uses: weight_column, thresholds, loss_reduction, the
default sigmoid cross-entropy, numeric 0/1 (or soft) labels.

    python benchmarks/reference.py --input GLOB --config benchmarks/bench.yaml \
        --output ref.json [--format parquet|tfrecord]
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import yaml

NUM_BUCKETS = 200  # Keras AUC num_thresholds


class Sums:
    """Weighted sums, float64; the same quantities as the head's metric state."""

    def __init__(self, thresholds):
        self.threshold_keys = ["%g" % t for t in thresholds]  # as the head names them
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.count = 0
        self.weight = self.loss = self.correct = self.prediction = self.label = 0.0
        self.class_tp = self.class_fp = self.class_fn = 0.0
        self.auc_pos = np.zeros(NUM_BUCKETS)
        self.auc_neg = np.zeros(NUM_BUCKETS)
        k = len(self.thresholds)
        self.t_correct, self.t_tp, self.t_fp, self.t_fn = (np.zeros(k) for _ in range(4))

    def add(self, logits, labels, weights):
        logits = np.asarray(logits, dtype=np.float32).ravel()
        labels = np.asarray(labels).astype(np.float32).ravel()
        w = (np.ones(len(logits)) if weights is None
             else np.asarray(weights, dtype=np.float32).astype(np.float64).ravel())
        x = logits.astype(np.float64)
        z = labels.astype(np.float64)
        # sigmoid in float64, rounded once to float32 (what TF's comparisons see)
        e = np.exp(-np.abs(x))
        prob = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
        loss = np.maximum(x, 0.0) - x * z + np.log1p(e)
        positive = labels != 0
        w_pos = np.where(positive, w, 0.0)
        w_neg = w - w_pos
        class_pos = logits > 0

        # einsum, not `@`: OpenBLAS's threaded dot is several times slower on
        # a busy 2-core machine than numpy's own single-threaded loop.
        self.count += len(logits)
        self.weight += w.sum()
        self.loss += np.einsum("i,i->", w, loss)
        self.correct += w[labels == class_pos.astype(np.float32)].sum()
        self.prediction += np.einsum("i,i->", w, prob.astype(np.float64))
        self.label += np.einsum("i,i->", w, z)
        self.class_tp += w_pos[class_pos].sum()
        self.class_fp += w_neg[class_pos].sum()
        self.class_fn += w_pos[~class_pos].sum()
        # Keras' optimized AUC update: bucket = max(ceil(p * 199) - 1, 0) in float32
        bucket = np.maximum(
            np.ceil(np.clip(prob, 0, 1) * np.float32(NUM_BUCKETS - 1)) - np.float32(1), 0
        ).astype(np.intp)
        self.auc_pos += np.bincount(bucket, weights=w_pos, minlength=NUM_BUCKETS)
        self.auc_neg += np.bincount(bucket, weights=w_neg, minlength=NUM_BUCKETS)
        for i, t in enumerate(self.thresholds):
            predicted = prob > t
            self.t_correct[i] += w[labels == predicted.astype(np.float32)].sum()
            self.t_tp[i] += w_pos[predicted].sum()
            self.t_fp[i] += w_neg[predicted].sum()
            self.t_fn[i] += w_pos[~predicted].sum()


def _div(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


def keras_auc(pos, neg):
    """Keras AUC(num_thresholds=200, summation_method='interpolation'): ROC and PR."""
    tp = np.cumsum(pos[::-1])[::-1]  # weight of positives with p > t_i
    fp = np.cumsum(neg[::-1])[::-1]
    fn = pos.sum() - tp
    tn = neg.sum() - fp
    tpr = _div(tp, tp + fn)
    fpr = _div(fp, fp + tn)
    roc = np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)
    # interpolate_pr_auc (Davis & Goadrich 2006)
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _div(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    ratio = np.where((p[:-1] > 0) & (p[1:] > 0), _div(p[:-1], np.maximum(p[1:], 0)), 1.0)
    pr = np.sum(_div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0)))
    return float(roc), float(pr)


def results(s, reduction):
    label_mean = float(_div(s.label, s.weight))
    out = {
        "average_loss": _div(s.loss, s.weight),
        "accuracy": _div(s.correct, s.weight),
        "precision": _div(s.class_tp, s.class_tp + s.class_fp),
        "recall": _div(s.class_tp, s.class_tp + s.class_fn),
        "prediction/mean": _div(s.prediction, s.weight),
        "label/mean": label_mean,
        "accuracy_baseline": max(label_mean, 1 - label_mean) if s.weight else 0.0,
    }
    out["auc"], out["auc_precision_recall"] = keras_auc(s.auc_pos, s.auc_neg)
    for i, key in enumerate(s.threshold_keys):
        out[f"accuracy/positive_threshold_{key}"] = _div(s.t_correct[i], s.weight)
        out[f"precision/positive_threshold_{key}"] = _div(s.t_tp[i], s.t_tp[i] + s.t_fp[i])
        out[f"recall/positive_threshold_{key}"] = _div(s.t_tp[i], s.t_tp[i] + s.t_fn[i])
    out["loss"] = s.loss if reduction == "sum" else _div(s.loss, s.count)
    return {k: float(v) for k, v in out.items()}


def read_parquet(paths, columns):
    import pyarrow.parquet as pq

    for path in paths:
        table = pq.read_table(path, columns=columns)
        yield [table.column(c).to_numpy() for c in columns]


def read_tfrecord(paths, columns, batch_size=65536):
    import tensorflow as tf

    kinds = {"label": tf.int64}
    spec = {c: tf.io.FixedLenFeature([1], kinds.get(c, tf.float32)) for c in columns}
    dataset = (
        tf.data.TFRecordDataset(paths, buffer_size=8 << 20)
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    for parsed in dataset.as_numpy_iterator():
        yield [parsed[c][:, 0] for c in columns]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True, help="JSON file of the metrics")
    parser.add_argument("--format", choices=("parquet", "tfrecord"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with open(args.config) as f:
        config = yaml.safe_load(f) or {}
    head = config.get("head") or {}
    columns = config.get("columns") or {}
    for unsupported in ("label_vocabulary", "loss_fn", "regularization_losses", "name"):
        if head.get(unsupported):
            print(f"error: reference.py does not support head.{unsupported}", file=sys.stderr)
            return 2
    weight_column = head.get("weight_column") or columns.get("weight")
    wanted = [columns.get("logits", "logits"), columns.get("label", "label")]
    if weight_column:
        wanted.append(weight_column)
    paths = sorted(glob.glob(args.input))
    if not paths:
        print(f"error: --input {args.input}: no files matched", file=sys.stderr)
        return 1
    file_format = args.format or ("parquet" if paths[0].endswith(".parquet") else "tfrecord")
    reader = read_parquet if file_format == "parquet" else read_tfrecord
    sums = Sums(head.get("thresholds") or [])
    for values in reader(paths, wanted):
        sums.add(values[0], values[1], values[2] if weight_column else None)
    document = {
        "metrics": results(sums, head.get("loss_reduction", "sum_over_batch_size")),
        "example_count": sums.count,
        "weighted_example_count": float(sums.weight),
        "input": args.input,
        "format": file_format,
        "seconds_after_start": round(time.perf_counter() - started, 3),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(document, f, indent=2)
    print(f"reference: {sums.count} examples, auc {document['metrics']['auc']:.6f}, "
          f"loss {document['metrics']['loss']:.6f} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
