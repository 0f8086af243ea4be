"""The mergeable metric state behind `BinaryClassHead.update_metrics`.

Every Keras metric the head creates is a handful of weighted sums: `Mean` is
(total, count), `Precision`/`Recall`/`BinaryAccuracy` are confusion-matrix
cells, `AUC` is 200 buckets of positive and negative weight. All of them add
up across batches, so the evaluation state of one (model, slice) is one
fixed-size float64 vector (`StateLayout` names its parts) and two states
merge by addition.

The same vectors, stacked, hold any number of keys: `StateLayout.sums`
computes the vectors of every key of a batch (every model, slice and
confidence-interval sample) in one weighted histogram pass, and
`metric_values` turns vectors of any leading shape into every metric at once.

Sums are kept as compensated (hi, lo) pairs (Neumaier's TwoSum) so that the
result does not depend on how the data was split into batches or in which
order partial states were merged.
"""

import numpy as np

# Keras AUC: num_thresholds=200, thresholds evenly spaced in [0, 1] with
# epsilon-padded ends, so the optimized bucket path is used.
AUC_NUM_THRESHOLDS = 200

SUM = "sum"
SUM_OVER_BATCH_SIZE = "sum_over_batch_size"

# Label categories: Precision/Recall/AUC cast y_true to bool (any non-zero
# label is a positive, even a soft one); Accuracy compares values exactly, so
# only labels of exactly 0 or 1 can be correct.
_ZERO, _ONE, _SOFT = range(3)
_CATEGORIES = 3


def divide_no_nan(numerator, denominator):
    """tf.math.divide_no_nan: numerator / denominator, 0 where the denominator is 0."""
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

    @classmethod
    def concatenate(cls, batches):
        """The examples of several batches (e.g. every model's) one after another."""
        return cls(*(np.concatenate([getattr(b, name) for b in batches]) for name in cls.__slots__))


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


def _label_category(labels):
    """0 for a label of 0, 1 for 1, 2 for anything between (a soft label)."""
    not_zero = labels != 0
    return not_zero + (not_zero & (labels != 1)).view(np.int8)


def _keyed_histogram(keys, num_keys, bins, num_bins, category, num_categories, weights):
    """[num_keys, num_bins * num_categories]: weights summed by (key, bin, category)."""
    cells = (keys * num_bins + bins) * num_categories + category
    size = num_keys * num_bins * num_categories
    return np.bincount(cells, weights=weights, minlength=size).reshape(num_keys, -1)


def replicate_weights(counts):
    """[m, 1 + R] float64: 1 (the data), then each of R Poisson bootstrap
    replicates' counts [m, R] of the rows, as StateLayout.sums multiplies them."""
    weights = np.empty((counts.shape[0], 1 + counts.shape[1]))
    weights[:, 0] = 1.0
    weights[:, 1:] = counts
    return weights


class StateLayout:
    """The named parts of one head's metric-state vector.

    examples      number of examples (every element of a list logit is one)
    weight        sum of weights
    loss          sum of weight * unweighted loss
    prediction    sum of weight * logistic
    label         sum of weight * label
    class_ids     [2, 3] weight by (class_id, label category 0 / 1 / soft)
    thresholds    [T + 1, 3] weight by (how many sorted thresholds lie below
                  the logistic, label category)
    auc           [200, 2] weight by (Keras AUC bucket, label != 0)
    calibration   [200, 2] per AUC bucket: sum of weight * label, of weight *
                  logistic (only with calibration=True: plots need it, the
                  metrics do not)

    A layout is built for one tuple of thresholds (float32, as Keras compares
    them); states of different layouts cannot be merged.
    """

    _SCALARS = ("examples", "weight", "loss", "prediction", "label")

    def __init__(self, thresholds=(), calibration=False):
        self.calibration = bool(calibration)
        self.thresholds = np.asarray(thresholds, dtype=np.float32).reshape(-1)
        self.threshold_order = np.argsort(self.thresholds, kind="stable")
        self.sorted_thresholds = self.thresholds[self.threshold_order]
        shapes = {name: () for name in self._SCALARS}
        shapes["class_ids"] = (2, _CATEGORIES)
        shapes["thresholds"] = (len(self.thresholds) + 1, _CATEGORIES)
        shapes["auc"] = (AUC_NUM_THRESHOLDS, 2)
        if self.calibration:
            shapes["calibration"] = (AUC_NUM_THRESHOLDS, 2)
        self.shapes = shapes
        self.parts = {}
        start = 0
        for name, shape in shapes.items():
            size = int(np.prod(shape, dtype=np.int64))
            self.parts[name] = slice(start, start + size)
            start += size
        self.size = start

    def __eq__(self, other):
        return (isinstance(other, StateLayout) and self.calibration == other.calibration
                and np.array_equal(self.thresholds, other.thresholds))

    def __hash__(self):
        return hash((self.thresholds.tobytes(), self.calibration))

    def __getstate__(self):
        return {"thresholds": self.thresholds, "calibration": self.calibration}

    def __setstate__(self, state):
        self.__init__(state["thresholds"], state["calibration"])

    def part(self, totals, name):
        """One named part of state vectors of any leading shape, in its own shape."""
        totals = np.asarray(totals)
        return totals[..., self.parts[name]].reshape(totals.shape[:-1] + self.shapes[name])

    def _contributions(self, batch):
        """What each example adds to which part: [(part, bins, number of bins, values)].

        `bins` is None for a scalar part; else each example adds its value
        to cell `bins[i]` of the part's flattened cells.
        """
        weights = batch.weights.astype(np.float64)
        probabilities = batch.logistic
        category = _label_category(batch.labels).astype(np.intp)
        # class_ids = (logit > 0): the head's prediction, for accuracy/precision/recall.
        class_ids = (batch.logits > 0).astype(np.intp)
        # logistic > t <=> more than r of the sorted thresholds lie below it
        # (a few comparisons beat a binary search per example).
        above = np.zeros(len(batch), dtype=np.intp)
        for threshold in self.sorted_thresholds:
            above += probabilities > threshold
        buckets = auc_bucket_indices(probabilities)
        out = [
            ("examples", None, 1, None),
            ("loss", None, 1, weights * batch.unweighted_loss),
            ("prediction", None, 1, weights * probabilities),
            ("label", None, 1, weights * batch.labels),
            ("class_ids", class_ids * _CATEGORIES + category, 2 * _CATEGORIES, weights),
            ("thresholds", above * _CATEGORIES + category, (len(self.thresholds) + 1) * _CATEGORIES, weights),
            ("auc", buckets * 2 + (category != _ZERO), 2 * AUC_NUM_THRESHOLDS, weights),
        ]
        if self.calibration:
            out += [("calibration", buckets * 2, 2 * AUC_NUM_THRESHOLDS, weights * batch.labels),
                    ("calibration", buckets * 2 + 1, 2 * AUC_NUM_THRESHOLDS, weights * probabilities)]
        return out

    def sums(self, batch, keys=None, num_keys=1, replicates=None, count_rows=None, groups=None, num_groups=1,
             out=None):
        """The state vectors of one batch's examples, by key: [num_keys, size].

        `keys[i]` (an int in [0, num_keys)) says which state example i adds
        to; None puts every example in key 0. An example may be listed more
        than once in `batch` to count towards several keys. Every part comes
        from weighted `bincount`s over (key, bin); no BLAS calls (OpenBLAS
        threads spin on a loaded machine).

        Interval samples are a second axis, [num_keys, S, size]:

        - jackknife `groups` [len(batch)]: example i adds to group groups[i]
          of its key (S = num_groups);
        - Poisson bootstrap `replicates` [m, 1 + R] (replicate_weights of
          the rows' counts): the data, then replicate r counting example i
          counts[count_rows[i], r] times (count_rows: default i; S = 1 + R).

        Either way the calibration part (plots only, which show the data's
        point) is kept in sample 0 alone: the data's calibration is then the
        sum over samples (jackknife) or sample 0 (bootstrap), and the
        jackknife's histogram stays num_groups times smaller.

        With `out` (the result's shape; [num_keys, 1, size] also without
        samples), the sums are added to it.
        """
        keys = np.zeros(len(batch), dtype=np.intp) if keys is None else np.asarray(keys, dtype=np.intp)
        contributions = self._contributions(batch)
        if out is None:
            samples = num_groups if groups is not None else None if replicates is None else replicates.shape[1]
            out = np.zeros((num_keys, self.size) if samples is None else (num_keys, samples, self.size))
        point = out[:, 0] if out.ndim == 3 else out  # sample 0's vectors
        if replicates is not None or groups is not None:
            sampled = [c for c in contributions if c[0] != "calibration"]
            contributions = [c for c in contributions if c[0] == "calibration"]  # to sample 0 only
            if replicates is not None:
                out += self._replicated_sums(sampled, keys, num_keys, replicates, count_rows)
            else:
                by_group = out.reshape(num_keys * num_groups, self.size)  # a view: adding to it fills `out`
                self._add_bincounts(by_group, sampled, keys * num_groups + groups)
        self._add_bincounts(point, contributions, keys)
        self._fill_weight(out)
        return out

    def _add_bincounts(self, vectors, contributions, keys):
        """Adds each contribution's weighted bincount over (key, bin) to `vectors` [num_keys, size]."""
        num_keys = len(vectors)
        for name, bins, num_bins, values in contributions:
            cells = keys if bins is None else keys * num_bins + bins
            part = vectors[:, self.parts[name]]  # a view: adding to it fills `vectors`
            part += np.bincount(cells, values, num_keys * num_bins).reshape(num_keys, -1)

    def _replicated_sums(self, contributions, keys, num_keys, replicates, count_rows):
        """A view [num_keys, 1 + R, size] of A @ replicates ([1 | counts]).

        A [num_keys * size, m] is sparse: column j holds what the examples of
        counts row j add to each (key, cell). It is built directly in CSC
        form (entries ordered by counts row) and scipy multiplies it in C with 1 + R
        multiply-adds per non-zero; a bincount over every (example,
        replicate) pair per part was 10x slower, converting from COO 2x.
        """
        from scipy import sparse  # only bootstrap runs need it

        n, (rows, samples) = len(keys), replicates.shape
        index_type = np.int32 if num_keys * self.size < 2 ** 31 else np.int64  # scipy's own choice
        # [example, contribution]: each example's entries together, as CSC wants them.
        cells = np.empty((n, len(contributions)), dtype=index_type)
        values = np.empty((n, len(contributions)), dtype=np.float64)
        base = keys * self.size
        for c, (name, bins, _, v) in enumerate(contributions):
            np.add(base, self.parts[name].start, out=cells[:, c], casting="unsafe")
            if bins is not None:
                cells[:, c] += bins
            values[:, c] = 1.0 if v is None else v
        if count_rows is None:  # every counts row once, in order: columns start every len(contributions)
            column_starts = np.arange(0, (n + 1) * len(contributions), len(contributions), dtype=index_type)
        else:  # entries ordered by column (counts row)
            columns = np.asarray(count_rows, dtype=np.intp)
            order = np.argsort(columns, kind="stable")
            cells, values = cells[order], values[order]
            column_starts = np.zeros(rows + 1, dtype=index_type)
            np.cumsum(np.bincount(columns, minlength=rows) * len(contributions), out=column_starts[1:])
        matrix = sparse.csc_matrix((values.reshape(-1), cells.reshape(-1), column_starts),
                                   shape=(num_keys * self.size, rows))
        return (matrix @ replicates).reshape(num_keys, self.size, samples).transpose(0, 2, 1)

    def _fill_weight(self, out):
        """The weight of every example once: its class_ids cells summed."""
        out[..., self.parts["weight"]] = out[..., self.parts["class_ids"]].sum(axis=-1, keepdims=True)


def _confusion(histogram):
    """(tp, fp, fn, correct) of `prediction = bin > r` for each cut r.

    `histogram` is [..., bins, 3] (label categories); the result's arrays are
    [..., bins - 1]: for the r-th cut, examples in bins above r are
    predicted positive.
    """
    above = np.flip(np.cumsum(np.flip(histogram, -2), axis=-2), -2)
    total, above = above[..., 0, :], above[..., 1:, :]
    tp = above[..., _ONE] + above[..., _SOFT]
    fp = above[..., _ZERO]
    fn = (total[..., _ONE] + total[..., _SOFT])[..., None] - tp
    correct = above[..., _ONE] + (total[..., _ZERO][..., None] - fp)
    return tp, fp, fn, correct


def _auc(positives, negatives):
    """Keras AUC.result() for ROC and PR (interpolation) from bucket sums [..., 200]."""
    n = AUC_NUM_THRESHOLDS
    # C(t_i) = sum of buckets j >= i: the reversed cumulative sum.
    tp = np.flip(np.cumsum(np.flip(positives, -1), axis=-1), -1)
    fp = np.flip(np.cumsum(np.flip(negatives, -1), axis=-1), -1)
    fn = tp[..., :1] - tp
    tn = fp[..., :1] - fp

    recall = divide_no_nan(tp, tp + fn)
    fp_rate = divide_no_nan(fp, fp + tn)
    heights = (recall[..., : n - 1] + recall[..., 1:]) / 2.0
    roc_auc = np.sum((fp_rate[..., : n - 1] - fp_rate[..., 1:]) * heights, axis=-1)

    # interpolate_pr_auc (Davis & Goadrich), term by term as Keras writes it.
    dtp = tp[..., : n - 1] - tp[..., 1:]
    p = tp + fp
    dp = p[..., : n - 1] - p[..., 1:]
    prec_slope = divide_no_nan(dtp, np.maximum(dp, 0))
    intercept = tp[..., 1:] - prec_slope * p[..., 1:]
    both_positive = (p[..., : n - 1] > 0) & (p[..., 1:] > 0)
    safe_p_ratio = np.where(
        both_positive, divide_no_nan(p[..., : n - 1], np.maximum(p[..., 1:], 0)), 1.0
    )
    pr_auc_increment = divide_no_nan(
        prec_slope * (dtp + intercept * np.log(safe_p_ratio)),
        np.maximum(tp[..., 1:] + fn[..., 1:], 0),
    )
    return roc_auc, np.sum(pr_auc_increment, axis=-1)


def metric_values(layout, totals, loss_reduction=SUM_OVER_BATCH_SIZE, regularization_losses=None):
    """Every metric of the head from state vectors [..., size]: {key: array [...]}.

    The one definition of each metric. Keys are unsuffixed and in the order
    the head's `metrics()` creates them, `loss` last:
      average_loss         Σ w·loss / Σ w
      accuracy             Σ w·[class_id == label] / Σ w
      precision, recall    of class_ids (Keras, at 0.5 on logistic = logit > 0)
      prediction/mean      Σ w·logistic / Σ w
      label/mean           Σ w·label / Σ w
      accuracy_baseline    max(Σ w·label, Σ w − Σ w·label) / Σ w
      auc, auc_precision_recall   Keras AUC, 200 buckets (ROC; PR interpolated)
      regularization_loss  Σ regularization_losses (when configured)
      accuracy|precision|recall/positive_threshold_t   at logistic > t
      loss                 Σ w·loss (SUM), or that / examples (SUM_OVER_BATCH_SIZE),
                           plus the regularization
    Every ratio is tf.math.divide_no_nan: 0 when undefined.
    """
    totals = np.asarray(totals, dtype=np.float64)
    scalar = {name: layout.part(totals, name) for name in StateLayout._SCALARS}
    weight, label = scalar["weight"], scalar["label"]
    class_tp, class_fp, class_fn, class_correct = (
        x[..., 0] for x in _confusion(layout.part(totals, "class_ids")))
    auc = layout.part(totals, "auc")
    roc_auc, pr_auc = _auc(auc[..., 1], auc[..., 0])
    out = {
        "average_loss": divide_no_nan(scalar["loss"], weight),
        "accuracy": divide_no_nan(class_correct, weight),
        "precision": divide_no_nan(class_tp, class_tp + class_fp),
        "recall": divide_no_nan(class_tp, class_tp + class_fn),
        "prediction/mean": divide_no_nan(scalar["prediction"], weight),
        "label/mean": divide_no_nan(label, weight),
        # max(total, count - total) / count, as _update_accuracy_baseline.
        "accuracy_baseline": divide_no_nan(np.maximum(label, weight - label), weight),
        "auc": roc_auc,
        "auc_precision_recall": pr_auc,
    }
    regularization = 0.0
    if regularization_losses is not None:
        regularization = float(sum(regularization_losses))
        out["regularization_loss"] = np.full(weight.shape, regularization)
    # Columns of the threshold block are the sorted thresholds; back to config order.
    tp, fp, fn, correct = _confusion(layout.part(totals, "thresholds"))
    position = np.empty_like(layout.threshold_order)
    position[layout.threshold_order] = np.arange(len(position))
    for i, t in enumerate(layout.thresholds.tolist()):
        j = position[i]
        suffix = "positive_threshold_%g" % t
        out["accuracy/" + suffix] = divide_no_nan(correct[..., j], weight)
        out["precision/" + suffix] = divide_no_nan(tp[..., j], tp[..., j] + fp[..., j])
        out["recall/" + suffix] = divide_no_nan(tp[..., j], tp[..., j] + fn[..., j])
    if loss_reduction == SUM:
        loss = scalar["loss"]
    else:
        loss = divide_no_nan(scalar["loss"], scalar["examples"])
    out["loss"] = loss + regularization
    return out


class MetricState:
    """Compensated state vectors of one layout, any leading shape; merge by addition."""

    __slots__ = ("layout", "hi", "lo")

    def __init__(self, layout, shape=(), hi=None):
        self.layout = layout
        self.hi = np.zeros(tuple(shape) + (layout.size,)) if hi is None else hi
        self.lo = np.zeros_like(self.hi)

    def add(self, sums, lo=None, where=slice(None)):
        """Adds vectors (and their low parts) into rows `where` of this state."""
        hi = self.hi[where]
        total = hi + sums
        # TwoSum: the exact rounding error of hi + sums,
        # (hi - (total - back)) + (sums - back), in place (states are large).
        back = total - hi
        error = total - back
        np.subtract(hi, error, out=error)
        np.subtract(sums, back, out=back)
        error += back
        if lo is not None:
            error += lo
        self.hi[where] = total
        self.lo[where] += error
        return self

    def merge(self, other):
        if other.layout != self.layout:
            raise ValueError(
                "cannot merge metric states of different heads (thresholds "
                f"{self.layout.thresholds.tolist()} and {other.layout.thresholds.tolist()})")
        return self.add(other.hi, other.lo)

    def totals(self):
        return self.hi + self.lo

    @property
    def example_count(self):
        counts = self.layout.part(self.totals(), "examples")
        return int(counts) if counts.ndim == 0 else counts.astype(np.int64)

    @property
    def weighted_example_count(self):
        weights = self.layout.part(self.totals(), "weight")
        return float(weights) if weights.ndim == 0 else weights
