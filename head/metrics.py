"""The mergeable metric state behind `BinaryClassHead.update_metrics`.

Every Keras metric the head creates is a handful of weighted sums: `Mean` is
(total, count), `Precision`/`Recall`/`BinaryAccuracy` are confusion-matrix
cells, `AUC` is 200 buckets of positive and negative weight. All of them add
up across batches, so the whole evaluation state is one fixed-size float64
vector plus an integer example count, and two states merge by addition.

Sums are kept as compensated (hi, lo) pairs (Neumaier's TwoSum) so that the
result does not depend on how the data was split into batches or in which
order partial states were merged.
"""

import numpy as np

# Keras AUC: num_thresholds=200, thresholds evenly spaced in [0, 1] with
# epsilon-padded ends, so the optimized bucket path is used.
AUC_NUM_THRESHOLDS = 200

# Positions of the scalar sums at the start of the state vector.
_WEIGHT, _LOSS, _CORRECT, _PREDICTION, _LABEL = range(5)
# Precision/Recall of class_ids at the default threshold 0.5.
_CLASS_TP, _CLASS_FP, _CLASS_FN = range(5, 8)
_AUC_START = 8


def _divide_no_nan(numerator, denominator):
    """tf.math.divide_no_nan: 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


class EvaluatedBatch:
    """One batch after label encoding and per-example loss, flattened.

    Every element of the head's [D0, ... DN, 1] tensors is one example, so
    all arrays are 1-D float32 of the same length.
    """

    __slots__ = ("labels", "logits", "logistic", "unweighted_loss", "weights")

    def __init__(self, labels, logits, logistic, unweighted_loss, weights):
        self.labels = labels
        self.logits = logits
        self.logistic = logistic
        self.unweighted_loss = unweighted_loss
        self.weights = weights

    def __len__(self):
        return self.labels.shape[0]


def logistic(logits):
    """sigmoid(logits), computed in float64 and rounded once to float32."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(x))
    p = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return p.astype(np.float32)


def auc_bucket_indices(predictions):
    """Keras' `_update_confusion_matrix_variables_optimized` bucket formula.

    bucket = relu(ceil(p * (num_thresholds - 1)) - 1), computed in float32
    exactly as TF does, so ties at bucket edges fall where Keras puts them.
    """
    p = np.clip(predictions, np.float32(0.0), np.float32(1.0))
    scaled = np.ceil(p * np.float32(AUC_NUM_THRESHOLDS - 1)) - np.float32(1.0)
    return np.maximum(scaled, np.float32(0.0)).astype(np.intp)


# Label categories: Precision/Recall/AUC cast y_true to bool (any non-zero
# label is a positive, even a soft one); Accuracy compares values exactly, so
# only labels of exactly 0 or 1 can be correct.
_ZERO, _ONE, _SOFT = range(3)


def _label_category(labels):
    category = np.full(labels.shape, _SOFT, dtype=np.intp)
    category[labels == 0] = _ZERO
    category[labels == 1] = _ONE
    return category


def _histogram(bins, num_bins, category, weights):
    """[num_bins, 3]: summed weights by (bin, label category)."""
    flat = np.bincount(bins * 3 + category, weights=weights, minlength=3 * num_bins)
    return flat.reshape(num_bins, 3)


def _confusion(histogram):
    """(tp, fp, fn, correct) of `prediction = bin > r` for each cut r.

    For the r-th cut, examples in bins above r are predicted positive.
    """
    above = np.cumsum(histogram[::-1], axis=0)[::-1]
    total, above = above[0], above[1:]
    tp = above[:, _ONE] + above[:, _SOFT]
    fp = above[:, _ZERO]
    fn = (total[_ONE] + total[_SOFT]) - tp
    correct = above[:, _ONE] + (total[_ZERO] - fp)
    return tp, fp, fn, correct


class MetricState:
    """Weighted sums for every metric of one head; merges by addition."""

    __slots__ = ("num_thresholds", "example_count", "hi", "lo")

    def __init__(self, num_thresholds):
        self.num_thresholds = num_thresholds
        self.example_count = 0
        size = _AUC_START + 2 * AUC_NUM_THRESHOLDS + 4 * num_thresholds
        self.hi = np.zeros(size, dtype=np.float64)
        self.lo = np.zeros(size, dtype=np.float64)

    # Layout of the per-threshold block: accuracy, tp, fp, fn for each t.
    def _threshold_slice(self, which):
        start = _AUC_START + 2 * AUC_NUM_THRESHOLDS + which * self.num_thresholds
        return slice(start, start + self.num_thresholds)

    def _add_vector(self, hi, lo):
        total = self.hi + hi
        # TwoSum: the exact rounding error of hi + other_hi.
        back = total - self.hi
        error = (self.hi - (total - back)) + (hi - back)
        self.hi = total
        self.lo = self.lo + lo + error

    def add(self, batch, thresholds):
        """Mirrors `update_metrics` for one EvaluatedBatch.

        `thresholds` is the head's float32 threshold array. Every
        confusion-matrix metric is a weighted histogram over (bin, label
        category): bins are class_ids, the thresholds' intervals, and the AUC
        buckets. No BLAS calls: OpenBLAS threads spin on a loaded machine.
        """
        n = len(batch)
        if n == 0:
            return self
        labels = batch.labels
        weights = batch.weights.astype(np.float64)
        probabilities = batch.logistic
        category = _label_category(labels)

        delta = np.zeros_like(self.hi)
        delta[_WEIGHT] = weights.sum()
        delta[_LOSS] = (weights * batch.unweighted_loss).sum()
        delta[_PREDICTION] = (weights * probabilities).sum()
        delta[_LABEL] = (weights * labels).sum()

        # class_ids = (logit > 0), compared at Precision's default 0.5.
        class_ids = (batch.logits > 0).astype(np.intp)
        tp, fp, fn, correct = _confusion(_histogram(class_ids, 2, category, weights))
        delta[_CLASS_TP], delta[_CLASS_FP], delta[_CLASS_FN] = tp[0], fp[0], fn[0]
        delta[_CORRECT] = correct[0]

        # logistic > t <=> more than r of the sorted thresholds lie below it.
        if len(thresholds):
            order = np.argsort(thresholds, kind="stable")
            bins = np.searchsorted(thresholds[order], probabilities, side="left")
            tp, fp, fn, correct = _confusion(
                _histogram(bins, len(thresholds) + 1, category, weights)
            )
            for which, values in enumerate((correct, tp, fp, fn)):
                delta[self._threshold_slice(which)][order] = values

        # AUC buckets: weights of positives (label != 0) and negatives.
        by_bucket = _histogram(
            auc_bucket_indices(probabilities), AUC_NUM_THRESHOLDS, category, weights
        )
        delta[_AUC_START:_AUC_START + AUC_NUM_THRESHOLDS] = by_bucket[:, 1] + by_bucket[:, 2]
        delta[_AUC_START + AUC_NUM_THRESHOLDS:_AUC_START + 2 * AUC_NUM_THRESHOLDS] = by_bucket[:, 0]

        self._add_vector(delta, np.zeros_like(delta))
        self.example_count += n
        return self

    def merge(self, other):
        if other.num_thresholds != self.num_thresholds:
            raise ValueError("cannot merge metric states of different heads")
        self._add_vector(other.hi, other.lo)
        self.example_count += other.example_count
        return self

    def totals(self):
        return self.hi + self.lo

    @property
    def weighted_example_count(self):
        return float(self.totals()[_WEIGHT])

    def results(self):
        """Metric values under unsuffixed metric_keys names, plus loss_sum."""
        s = self.totals()
        weight = s[_WEIGHT]
        label_mean = _divide_no_nan(s[_LABEL], weight)
        out = {
            "average_loss": _divide_no_nan(s[_LOSS], weight),
            "accuracy": _divide_no_nan(s[_CORRECT], weight),
            "precision": _divide_no_nan(s[_CLASS_TP], s[_CLASS_TP] + s[_CLASS_FP]),
            "recall": _divide_no_nan(s[_CLASS_TP], s[_CLASS_TP] + s[_CLASS_FN]),
            "prediction/mean": _divide_no_nan(s[_PREDICTION], weight),
            "label/mean": label_mean,
            # max(total, count - total) / count, as _update_accuracy_baseline.
            "accuracy_baseline": _divide_no_nan(
                np.maximum(s[_LABEL], weight - s[_LABEL]), weight
            ),
        }
        pos_buckets = s[_AUC_START:_AUC_START + AUC_NUM_THRESHOLDS]
        neg_buckets = s[_AUC_START + AUC_NUM_THRESHOLDS:_AUC_START + 2 * AUC_NUM_THRESHOLDS]
        out["auc"], out["auc_precision_recall"] = _auc_from_buckets(pos_buckets, neg_buckets)
        accuracy, tp, fp, fn = (s[self._threshold_slice(i)] for i in range(4))
        out["threshold_accuracy"] = _divide_no_nan(accuracy, weight)
        out["threshold_precision"] = _divide_no_nan(tp, tp + fp)
        out["threshold_recall"] = _divide_no_nan(tp, tp + fn)
        out["loss_sum"] = s[_LOSS]
        out["weighted_example_count"] = weight
        return out


def _auc_from_buckets(pos_buckets, neg_buckets):
    """Keras AUC.result() for ROC and PR (interpolation) from bucket sums."""
    n = AUC_NUM_THRESHOLDS
    # C(t_i) = sum of buckets j >= i: the reversed cumulative sum.
    tp = np.cumsum(pos_buckets[::-1])[::-1]
    fp = np.cumsum(neg_buckets[::-1])[::-1]
    fn = pos_buckets.sum() - tp
    tn = neg_buckets.sum() - fp

    recall = _divide_no_nan(tp, tp + fn)
    fp_rate = _divide_no_nan(fp, fp + tn)
    heights = (recall[: n - 1] + recall[1:]) / 2.0
    roc_auc = np.sum((fp_rate[: n - 1] - fp_rate[1:]) * heights)

    # interpolate_pr_auc (Davis & Goadrich), term by term as Keras writes it.
    dtp = tp[: n - 1] - tp[1:]
    p = tp + fp
    dp = p[: n - 1] - p[1:]
    prec_slope = _divide_no_nan(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - prec_slope * p[1:]
    both_positive = (p[: n - 1] > 0) & (p[1:] > 0)
    safe_p_ratio = np.where(
        both_positive, _divide_no_nan(p[: n - 1], np.maximum(p[1:], 0)), 1.0
    )
    pr_auc_increment = _divide_no_nan(
        prec_slope * (dtp + intercept * np.log(safe_p_ratio)),
        np.maximum(tp[1:] + fn[1:], 0),
    )
    return float(roc_auc), float(np.sum(pr_auc_increment))
