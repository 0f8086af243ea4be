"""Plot data of a binary head from the same mergeable states as its metrics.

The metric state already holds what TFMA's plots need (`StateLayout`):

- `auc`: weight by Keras AUC bucket and label != 0. The confusion matrices at
  the 200 thresholds of Keras' AUC (`AUC_THRESHOLDS`) follow from reversed
  cumulative sums, as Keras computes them; the ROC curve is their
  (false_positive_rate, recall) and the precision-recall curve their
  (recall, precision).
- `thresholds`: weight by how many of the head's thresholds lie below the
  logistic; the confusion matrices at the head's own thresholds.
- `calibration` (a layout built with calibration=True): per AUC bucket,
  sum of weight * label and of weight * logistic; with the bucket's weight
  (from `auc`) TFMA's CalibrationHistogramBuckets.

Every function takes state vectors of any leading shape [..., size] (many
slices at once) and returns arrays [..., points]. Positives are examples
with label != 0, as for the head's precision, recall and AUC; all counts are
weighted. A ratio whose denominator is 0 is undefined: NaN here (null in
JSON), never a convention value.
"""

import numpy as np

from head.metrics import AUC_NUM_THRESHOLDS

# Keras AUC's thresholds (metrics_utils): -epsilon, i / (n - 1), 1 + epsilon.
_EPSILON = 1e-7
AUC_THRESHOLDS = np.array(
    [0.0 - _EPSILON]
    + [(i + 1) * 1.0 / (AUC_NUM_THRESHOLDS - 1) for i in range(AUC_NUM_THRESHOLDS - 2)]
    + [1.0 + _EPSILON]
)

# TFMA's ConfusionMatrixAtThresholds.Matrix fields.
MATRIX_FIELDS = (
    "threshold", "true_positives", "false_positives", "true_negatives", "false_negatives",
    "precision", "recall", "false_positive_rate", "f1", "accuracy",
)
# TFMA's CalibrationHistogramBuckets.Bucket fields, with the bucket edges
# named for what they are here: Keras buckets are (lower, upper].
CALIBRATION_FIELDS = (
    "lower_threshold_exclusive", "upper_threshold_inclusive",
    "num_weighted_examples", "total_weighted_label", "total_weighted_refined_prediction",
)
# Keras' bucket i holds the logistics in (AUC_THRESHOLDS[i], AUC_THRESHOLDS[i + 1]]
# (bucket 0 also 0); the last bucket, above 1 + epsilon, is always empty.
CALIBRATION_BUCKETS = AUC_NUM_THRESHOLDS - 1


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator == 0, np.nan, numerator / np.where(denominator == 0, 1.0, denominator))


def confusion_matrices(thresholds, negatives, positives):
    """Confusion matrices of `prediction > thresholds[i]` from weights by ordered bin.

    `negatives`, `positives` [..., bins]: weight of label == 0 / != 0 by bin,
    bins ordered by prediction; cut i predicts bins >= bins - len(thresholds) + i
    positive (bins below the first cut are never predicted positive). Returns
    {field: array [..., len(thresholds)]} with MATRIX_FIELDS.
    """
    negatives = np.asarray(negatives, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.float64)
    cuts = len(thresholds)
    # Weight at or above each bin: the reversed cumulative sum, as Keras' AUC.
    tp = np.flip(np.cumsum(np.flip(positives, -1), axis=-1), -1)[..., -cuts:] if cuts else positives[..., :0]
    fp = np.flip(np.cumsum(np.flip(negatives, -1), axis=-1), -1)[..., -cuts:] if cuts else negatives[..., :0]
    fn = positives.sum(axis=-1, keepdims=True) - tp
    tn = negatives.sum(axis=-1, keepdims=True) - fp
    return {
        "threshold": np.broadcast_to(np.asarray(thresholds, dtype=np.float64), tp.shape),
        "true_positives": tp,
        "false_positives": fp,
        "true_negatives": tn,
        "false_negatives": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "false_positive_rate": _ratio(fp, fp + tn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
    }


def curve_matrices(layout, totals):
    """Confusion matrices at Keras AUC's 200 thresholds: the ROC and PR curves' points."""
    auc = layout.part(totals, "auc")
    return confusion_matrices(AUC_THRESHOLDS, auc[..., 0], auc[..., 1])


def threshold_matrices(layout, totals):
    """Confusion matrices at the head's thresholds, in the config's order.

    Thresholds are float32 as Keras compares them, written as the shortest
    decimal that is that float32 (0.3, not 0.30000001192092896).
    """
    histogram = layout.part(totals, "thresholds")  # [..., T + 1, label 0 / 1 / soft]
    sorted_matrices = confusion_matrices(
        [float(str(t)) for t in layout.sorted_thresholds],
        histogram[..., 0], histogram[..., 1] + histogram[..., 2])
    position = np.empty_like(layout.threshold_order)
    position[layout.threshold_order] = np.arange(len(position))
    return {field: values[..., position] for field, values in sorted_matrices.items()}


def calibration_histogram(layout, totals):
    """TFMA's CalibrationHistogramBuckets by Keras AUC bucket: {field: [..., 199]}."""
    if not layout.calibration:
        raise ValueError("calibration histograms need a StateLayout built with calibration=True")
    auc = layout.part(totals, "auc")[..., :CALIBRATION_BUCKETS, :]
    calibration = layout.part(totals, "calibration")[..., :CALIBRATION_BUCKETS, :]
    shape = auc.shape[:-1]
    return {
        "lower_threshold_exclusive": np.broadcast_to(AUC_THRESHOLDS[:-1], shape),
        "upper_threshold_inclusive": np.broadcast_to(AUC_THRESHOLDS[1:], shape),
        "num_weighted_examples": auc[..., 0] + auc[..., 1],
        "total_weighted_label": calibration[..., 0],
        "total_weighted_refined_prediction": calibration[..., 1],
    }


def plot_data(layout, totals):
    """Every plot of state vectors [..., size]: {plot: {field: array [..., points]}}."""
    return {
        "confusion_matrices": curve_matrices(layout, totals),
        "confusion_matrices_at_thresholds": threshold_matrices(layout, totals),
        "calibration_histogram": calibration_histogram(layout, totals),
    }
