"""Our numpy BinaryClassHead against tf_keras metrics computed on the same arrays.

The reference (`keras_reference`) follows the estimator's
`BinaryClassHead.update_metrics` step by step with the Keras-2 metrics the
estimator uses (`tf_keras.metrics.*`), `tf.nn.sigmoid_cross_entropy_with_logits`
and Keras' `compute_weighted_loss`, on one batch. Keras accumulates in float32
and TF's sigmoid is a few ulps off the correctly rounded one, so values agree
to 1e-5 relative (abs floor 1e-6 for values near 0).

Edge cases (ties, saturation, degenerate labels and weights, empty input,
soft labels) have explicit expected values worked out by hand.
"""

import functools
import math
import re
import warnings
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.python.util import function_utils

from head import BadInputError, BinaryClassHead, SUM, SUM_OVER_BATCH_SIZE

RTOL = 1e-5
ATOL = 1e-6
FOCAL_GAMMA = 2.0
N = 3000


# ---- a numpy loss_fn and its TensorFlow twin ----------------------------------


def focal_loss(labels, logits):
    """Binary focal loss (gamma=2) in numpy: CE * (1 - p_t) ** 2."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    ce = np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))
    p = 1.0 / (1.0 + np.exp(-x))
    p_t = y * p + (1.0 - y) * (1.0 - p)
    return (ce * (1.0 - p_t) ** FOCAL_GAMMA).astype(np.float32)


def focal_loss_with_everything(labels, logits, features, loss_reduction):
    """The same loss, declaring every optional argument the head allows."""
    assert isinstance(features, dict)
    assert loss_reduction in (SUM, SUM_OVER_BATCH_SIZE)
    return focal_loss(labels, logits)


def tf_focal_loss(labels, logits):
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    p = tf.sigmoid(logits)
    p_t = labels * p + (1.0 - labels) * (1.0 - p)
    return ce * tf.pow(1.0 - p_t, FOCAL_GAMMA)


# ---- the reference -------------------------------------------------------------


def keras_reference(
    logits,
    labels,
    weights=None,
    thresholds=(),
    loss_reduction=SUM_OVER_BATCH_SIZE,
    focal=False,
    name=None,
    regularization_losses=None,
):
    """Every metric of update_metrics (plus loss) computed with tf_keras.

    `labels` are already label ids (float, shaped like `logits`); `weights`
    are already broadcast to the logits' shape (or None for no weight column).
    """
    logits = tf.constant(np.asarray(logits, dtype=np.float32))
    labels = tf.reshape(tf.constant(np.asarray(labels, dtype=np.float32)), logits.shape)
    if weights is None:
        weights = tf.ones_like(logits)
    else:
        weights = tf.reshape(tf.constant(np.asarray(weights, dtype=np.float32)), logits.shape)
    if focal:
        unweighted_loss = tf_focal_loss(labels, logits)
    else:
        unweighted_loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    logistic = tf.sigmoid(logits)
    two_class_logits = tf.concat([tf.zeros_like(logits), logits], axis=-1)
    class_ids = tf.expand_dims(tf.argmax(two_class_logits, axis=-1), axis=-1)

    m = tf_keras.metrics
    out = {}

    def update(key, metric, *args):
        metric.update_state(*args, sample_weight=weights)
        out[key] = float(metric.result())
        return metric

    update("average_loss", m.Mean(), unweighted_loss)
    update("accuracy", m.Accuracy(), labels, class_ids)
    update("precision", m.Precision(), labels, class_ids)
    update("recall", m.Recall(), labels, class_ids)
    update("prediction/mean", m.Mean(), logistic)
    label_mean = update("label/mean", m.Mean(), labels)
    # _update_accuracy_baseline: total = max(total, count - total), same count.
    out["accuracy_baseline"] = float(
        tf.math.divide_no_nan(
            tf.maximum(label_mean.total, label_mean.count - label_mean.total),
            label_mean.count,
        )
    )
    update("auc", m.AUC(), labels, logistic)
    update("auc_precision_recall", m.AUC(curve="PR"), labels, logistic)
    regularization = 0.0
    if regularization_losses is not None:
        regularization = float(tf.math.add_n([tf.constant(x, tf.float32) for x in regularization_losses]))
        reg_metric = m.Mean()
        reg_metric.update_state(regularization)
        out["regularization_loss"] = float(reg_metric.result())
    for t in thresholds:
        update("accuracy/positive_threshold_%g" % t, m.BinaryAccuracy(threshold=t), labels, logistic)
        update("precision/positive_threshold_%g" % t, m.Precision(thresholds=t), labels, logistic)
        update("recall/positive_threshold_%g" % t, m.Recall(thresholds=t), labels, logistic)
    training_loss = tf_keras.__internal__.losses.compute_weighted_loss(
        unweighted_loss, sample_weight=weights, reduction=loss_reduction
    )
    out["loss"] = float(training_loss) + regularization
    if name:  # update_metrics' keys carry /name; Estimator.evaluate's `loss` does not
        out = {(k if k == "loss" else f"{k}/{name}"): v for k, v in out.items()}
    return out


def assert_matches(ours, reference, rel=RTOL, abs_=ATOL, what=""):
    assert list(ours) == list(reference), f"{what}: keys differ: {list(ours)} vs {list(reference)}"
    for key, expected in reference.items():
        assert math.isclose(ours[key], expected, rel_tol=rel, abs_tol=abs_), (
            f"{what} {key}: ours {ours[key]!r}, tf_keras {expected!r}"
        )


def evaluate(head, logits, labels, features=None):
    return head.results(head.update_metrics(head.new_state(), features or {}, logits, labels))


# ---- random data ---------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def random_scores(seed, n=N, dims=None):
    """float32 logits [n, 1] or [n, dims, 1] and 0/1 labels correlated with them."""
    rng = np.random.default_rng(seed)
    shape = (n, 1) if dims is None else (n, dims, 1)
    logits = rng.normal(0.3, 2.0, size=shape).astype(np.float32)
    labels = (rng.random(shape) < _sigmoid(logits)).astype(np.float32)
    return rng, logits, labels


def _config(name, head_kwargs, dims=None, weights=None, labels="ids", label_ndim=None, focal=False):
    return pytest.param(
        dict(name=name, head=head_kwargs, dims=dims, weights=weights, labels=labels,
             label_ndim=label_ndim, focal=focal),
        id=name,
    )


W = {"weight_column": "w"}
THRESHOLDS = [0.3, 0.5, 0.7]

CONFIGS = [
    _config("plain", {}),
    _config("plain_labels_without_last_dim", {}, label_ndim=1),
    _config("weights", W, weights="row"),
    _config("weights_n_by_1", W, weights="full"),
    _config("integer_weights", W, weights="int"),
    _config("thresholds", dict(thresholds=THRESHOLDS)),
    _config("thresholds_weights", dict(W, thresholds=THRESHOLDS), weights="row"),
    _config("vocabulary", dict(label_vocabulary=["neg", "pos"]), labels="strings"),
    _config("vocabulary_weights_thresholds",
            dict(W, label_vocabulary=("neg", "pos"), thresholds=THRESHOLDS),
            weights="row", labels="strings", label_ndim=1),
    _config("soft_labels", dict(thresholds=THRESHOLDS), labels="soft"),
    _config("soft_labels_weights", dict(W, thresholds=THRESHOLDS), weights="row", labels="soft"),
    _config("multidim_element_weights", dict(W, thresholds=THRESHOLDS), dims=4, weights="element",
            label_ndim=2),
    _config("multidim_element_weights_3d", W, dims=4, weights="full", label_ndim=3),
    _config("multidim_row_weights", dict(W, thresholds=THRESHOLDS), dims=4, weights="row",
            label_ndim=2),
    _config("multidim_row_weights_n_by_1", W, dims=4, weights="row_n_by_1", labels="soft"),
    _config("multidim_plain", {}, dims=4),
    _config("sum", dict(W, loss_reduction=SUM), weights="row"),
    _config("sum_over_batch_size", dict(W, loss_reduction=SUM_OVER_BATCH_SIZE), weights="row"),
    _config("auto_reduction", dict(W, loss_reduction="auto"), weights="row"),
    _config("multidim_sum", dict(W, loss_reduction=SUM), dims=4, weights="row"),
    _config("named", dict(W, name="x", thresholds=THRESHOLDS), weights="row"),
    _config("loss_fn", dict(W, loss_fn=focal_loss), weights="row", focal=True),
    _config("loss_fn_path_sum", dict(W, loss_fn="tests.test_head_parity:focal_loss",
                                     loss_reduction=SUM), weights="row", focal=True),
    _config("loss_fn_all_args", dict(W, loss_fn=focal_loss_with_everything), weights="row",
            labels="soft", focal=True),
    _config("regularization_losses", dict(W, regularization_losses=[0.25, 0.5]), weights="row"),
    _config("regularization_losses_sum", dict(W, regularization_losses=[1.5], loss_reduction=SUM),
            weights="row"),
    _config("everything", dict(W, thresholds=THRESHOLDS, label_vocabulary=["neg", "pos"],
                               loss_reduction=SUM, loss_fn=focal_loss, name="x",
                               regularization_losses=[0.125, 2.0]),
            dims=4, weights="row", labels="strings", label_ndim=2, focal=True),
]


def make_case(config, seed):
    """(features, logits, labels as given to the head, label ids, broadcast weights)."""
    rng, logits, ids = random_scores(seed, dims=config["dims"])
    if config["labels"] == "soft":
        ids = rng.random(logits.shape).astype(np.float32)
        ids[: len(ids) // 10] = np.round(ids[: len(ids) // 10])  # some exact 0/1 labels too
    labels = ids
    if config["labels"] == "strings":
        labels = np.where(ids == 1, "pos", "neg").astype(object)
    if config["label_ndim"] is not None:
        labels = labels.reshape(logits.shape[: config["label_ndim"]])
    features, weights = {"unused": np.zeros(len(logits))}, None
    kind = config["weights"]
    n = len(logits)
    if kind is not None:
        if kind == "int":
            given = rng.integers(0, 5, size=n).astype(np.int64)
        elif kind in ("row", "row_n_by_1"):
            given = rng.uniform(0.0, 3.0, size=n).astype(np.float32)
            if kind == "row_n_by_1":
                given = given[:, None]
        elif kind == "element":
            given = rng.uniform(0.0, 3.0, size=logits.shape[:-1]).astype(np.float32)
        elif kind == "full":
            given = rng.uniform(0.0, 3.0, size=logits.shape).astype(np.float32)
        features["w"] = given
        # Broadcast by hand: one weight per row, or one per element.
        weights = np.broadcast_to(
            np.asarray(given, dtype=np.float32).reshape((n,) + (1,) * (logits.ndim - 1))
            if kind in ("row", "row_n_by_1", "int")
            else np.asarray(given, dtype=np.float32).reshape(logits.shape),
            logits.shape,
        )
    return features, logits, labels, ids, weights


@pytest.mark.parametrize("config", CONFIGS)
def test_metrics_match_tf_keras(config):
    head = BinaryClassHead(**config["head"])
    features, logits, labels, ids, weights = make_case(config, seed=zlib.crc32(config["name"].encode()))
    ours = evaluate(head, logits, labels, features)
    hk = config["head"]
    reference = keras_reference(
        logits, ids, weights,
        thresholds=hk.get("thresholds") or (),
        loss_reduction={"auto": SUM_OVER_BATCH_SIZE}.get(
            hk.get("loss_reduction"), hk.get("loss_reduction", SUM_OVER_BATCH_SIZE)),
        focal=config["focal"],
        name=hk.get("name"),
        regularization_losses=hk.get("regularization_losses"),
    )
    assert_matches(ours, reference)
    assert list(ours) == head.metric_keys()
    # head.loss is the same loss on one batch.
    assert math.isclose(
        head.loss(labels, logits, features), reference["loss"],
        rel_tol=RTOL, abs_tol=ATOL,
    )


def test_named_head_suffixes_every_key_but_loss():
    """update_metrics' keys carry /name; Estimator.evaluate's `loss` never does."""
    head = BinaryClassHead(weight_column="w", thresholds=[0.5], name="x",
                           regularization_losses=[0.5])
    _, logits, labels = random_scores(1, n=50)
    ours = evaluate(head, logits, labels, {"w": np.ones(50, np.float32)})
    unnamed = evaluate(BinaryClassHead(weight_column="w", thresholds=[0.5], regularization_losses=[0.5]),
                       logits, labels, {"w": np.ones(50, np.float32)})
    named = [k if k == "loss" else k + "/x" for k in unnamed]
    assert list(ours) == named and "loss/x" not in ours
    assert [ours[k] for k in named] == list(unnamed.values())
    assert "regularization_loss/x" in ours and "accuracy/positive_threshold_0.5/x" in ours


def test_regularization_losses_add_to_loss():
    _, logits, labels = random_scores(2, n=200)
    plain = evaluate(BinaryClassHead(), logits, labels)
    reg = evaluate(BinaryClassHead(regularization_losses=[0.25, 0.5]), logits, labels)
    assert reg["regularization_loss"] == 0.75
    assert math.isclose(reg["loss"], plain["loss"] + 0.75, rel_tol=1e-15)
    assert "regularization_loss" not in plain


def test_sum_and_sum_over_batch_size_loss():
    rng, logits, labels = random_scores(3, n=500, dims=4)
    w = rng.uniform(0, 2, size=500).astype(np.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits).numpy().astype(np.float64)
    weighted = (ce * w[:, None, None]).sum()
    s = evaluate(BinaryClassHead("w", loss_reduction=SUM), logits, labels, {"w": w})
    sobs = evaluate(BinaryClassHead("w"), logits, labels, {"w": w})
    assert math.isclose(s["loss"], weighted, rel_tol=RTOL)
    # SUM_OVER_BATCH_SIZE divides by the number of elements (n * 4), not the weights.
    assert math.isclose(sobs["loss"], weighted / 2000, rel_tol=RTOL)
    assert math.isclose(s["average_loss"], weighted / (4 * w.sum(dtype=np.float64)), rel_tol=RTOL)


# ---- edge cases with explicit expectations --------------------------------------


def _close(a, b, rel=1e-9, abs_=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def test_many_identical_logits_tie_in_one_bucket():
    rng = np.random.default_rng(10)
    n = 1000
    logits = np.full((n, 1), 0.7, dtype=np.float32)  # sigmoid 0.668...
    labels = (rng.random((n, 1)) < 0.3).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=n).astype(np.float32)
    head = BinaryClassHead("w", thresholds=THRESHOLDS)
    r = evaluate(head, logits, labels, {"w": w})
    w64 = w.astype(np.float64)
    pos = w64[labels[:, 0] == 1].sum() / w64.sum()
    assert _close(r["auc"], 0.5)
    assert _close(r["auc_precision_recall"], pos)  # a single operating point: its precision
    assert _close(r["accuracy"], pos)  # all class 1
    assert _close(r["precision"], pos)
    assert r["recall"] == 1.0
    for t in (0.3, 0.5):
        assert _close(r["accuracy/positive_threshold_%g" % t], pos)
        assert _close(r["precision/positive_threshold_%g" % t], pos)
        assert r["recall/positive_threshold_%g" % t] == 1.0
    assert _close(r["accuracy/positive_threshold_0.7"], 1 - pos)
    assert r["precision/positive_threshold_0.7"] == 0.0
    assert r["recall/positive_threshold_0.7"] == 0.0
    assert_matches(r, keras_reference(logits, labels, w[:, None], thresholds=THRESHOLDS))


def test_logit_zero_is_class_zero_and_not_above_threshold_half():
    logits = np.array([[0.0], [-0.0], [0.0], [0.0], [1e-30]], dtype=np.float32)
    labels = np.array([[1], [1], [0], [0], [1]], dtype=np.float32)
    head = BinaryClassHead(thresholds=[0.5])
    preds = head.predictions(logits)
    assert preds["logistic"][:4, 0].tolist() == [0.5] * 4
    assert preds["class_ids"][:, 0].tolist() == [0, 0, 0, 0, 1]
    assert preds["classes"][:, 0].tolist() == ["0", "0", "0", "0", "1"]
    r = evaluate(head, logits, labels)
    # Only the 1e-30 logit is class 1 (it is a positive); its logistic rounds to 0.5.
    assert r["accuracy"] == 3 / 5
    assert r["precision"] == 1.0
    assert r["recall"] == 1 / 3
    # logistic > 0.5 is strict: nothing is predicted positive at threshold 0.5.
    assert r["accuracy/positive_threshold_0.5"] == 2 / 5
    assert r["precision/positive_threshold_0.5"] == 0.0
    assert r["recall/positive_threshold_0.5"] == 0.0
    assert r["auc"] == 0.5
    assert_matches(r, keras_reference(logits, labels, thresholds=[0.5]))


def _logit_with_logistic_exactly(target):
    """A float32 logit whose (correctly rounded) sigmoid is float32(target)."""
    target = np.float32(target)
    x = np.float32(math.log(target / (1 - target)))
    for step in range(-200, 201):
        candidate = np.float32(x + np.float32(step) * np.spacing(x))
        if np.float32(_sigmoid(candidate)) == target:
            return candidate
    raise AssertionError(f"no float32 logit has sigmoid {target}")


def test_logistic_equal_to_threshold_is_not_positive():
    x03 = _logit_with_logistic_exactly(0.3)
    x07 = _logit_with_logistic_exactly(0.7)
    logits = np.array([[x03], [x07], [0.0], [2.0]], dtype=np.float32)
    head = BinaryClassHead(thresholds=THRESHOLDS)
    p = head.predictions(logits, ["logistic"])["logistic"][:, 0]
    assert p[0] == np.float32(0.3) and p[1] == np.float32(0.7) and p[2] == np.float32(0.5)
    labels = np.ones((4, 1), dtype=np.float32)
    r = evaluate(head, logits, labels)
    # At each threshold t only logistics strictly above t are positive.
    assert r["recall/positive_threshold_0.3"] == 3 / 4
    assert r["recall/positive_threshold_0.5"] == 2 / 4
    assert r["recall/positive_threshold_0.7"] == 1 / 4
    assert r["accuracy/positive_threshold_0.7"] == 1 / 4
    assert r["precision/positive_threshold_0.7"] == 1.0


def test_saturated_logits_perfect_separation():
    logits = np.array([[50], [-50], [100], [-100], [50], [-100]], dtype=np.float32)
    labels = np.array([[1], [0], [1], [0], [1], [0]], dtype=np.float32)
    head = BinaryClassHead(thresholds=THRESHOLDS)
    r = evaluate(head, logits, labels)
    assert r["auc"] == 1.0
    assert r["auc_precision_recall"] == 1.0
    for key in ("accuracy", "precision", "recall"):
        assert r[key] == 1.0
        for t in THRESHOLDS:
            assert r["%s/positive_threshold_%g" % (key, t)] == 1.0
    assert _close(r["prediction/mean"], 0.5)
    assert r["average_loss"] < 1e-20
    assert_matches(r, keras_reference(logits, labels, thresholds=THRESHOLDS))


def test_saturated_logits_perfectly_wrong():
    logits = np.array([[50], [-50], [100], [-100]], dtype=np.float32)
    labels = np.array([[0], [1], [0], [1]], dtype=np.float32)
    head = BinaryClassHead(thresholds=[0.5], loss_reduction=SUM)
    r = evaluate(head, logits, labels)
    # Positives in AUC bucket 0 (p ~ 0), negatives in the last one (p = 1).
    assert r["auc"] == 0.0
    assert _close(r["auc_precision_recall"], 1 - math.log(2))
    assert r["accuracy"] == 0.0 and r["precision"] == 0.0 and r["recall"] == 0.0
    assert r["accuracy/positive_threshold_0.5"] == 0.0
    assert _close(r["average_loss"], 75.0)
    assert _close(r["loss"], 300.0)
    assert_matches(r, keras_reference(logits, labels, thresholds=[0.5], loss_reduction=SUM))


def _weighted_fraction(mask, w):
    w = np.asarray(w, dtype=np.float64)
    return w[mask].sum() / w.sum()


def test_all_positive_labels():
    rng, logits, _ = random_scores(11, n=2000)
    labels = np.ones_like(logits)
    w = rng.uniform(0.1, 2.0, size=2000).astype(np.float32)
    head = BinaryClassHead("w", thresholds=THRESHOLDS)
    r = evaluate(head, logits, labels, {"w": w})
    above = _weighted_fraction(logits[:, 0] > 0, w)
    assert r["label/mean"] == 1.0
    assert r["accuracy_baseline"] == 1.0
    assert r["precision"] == 1.0
    assert _close(r["recall"], above)
    assert _close(r["accuracy"], above)
    assert r["auc"] == 0.0  # no negatives: the false positive rate is 0 everywhere
    assert _close(r["auc_precision_recall"], 1.0)
    for t in THRESHOLDS:
        assert r["precision/positive_threshold_%g" % t] == 1.0
    assert_matches(r, keras_reference(logits, labels, w[:, None], thresholds=THRESHOLDS))


def test_all_negative_labels():
    rng, logits, _ = random_scores(12, n=2000)
    labels = np.zeros_like(logits)
    w = rng.uniform(0.1, 2.0, size=2000).astype(np.float32)
    head = BinaryClassHead("w", thresholds=THRESHOLDS)
    r = evaluate(head, logits, labels, {"w": w})
    assert r["label/mean"] == 0.0
    assert r["accuracy_baseline"] == 1.0
    assert r["precision"] == 0.0 and r["recall"] == 0.0
    assert _close(r["accuracy"], _weighted_fraction(logits[:, 0] <= 0, w))
    assert r["auc"] == 0.0 and r["auc_precision_recall"] == 0.0
    for t in THRESHOLDS:
        assert r["precision/positive_threshold_%g" % t] == 0.0
        assert r["recall/positive_threshold_%g" % t] == 0.0
        assert _close(r["accuracy/positive_threshold_%g" % t],
                      _weighted_fraction(_sigmoid(logits[:, 0]) <= t, w), rel=1e-6)
    assert_matches(r, keras_reference(logits, labels, w[:, None], thresholds=THRESHOLDS))


@pytest.mark.parametrize("reduction", [SUM, SUM_OVER_BATCH_SIZE])
def test_some_zero_weights_drop_those_rows(reduction):
    rng, logits, labels = random_scores(13, n=3000)
    w = rng.uniform(0.1, 2.0, size=3000).astype(np.float32)
    w[rng.random(3000) < 0.4] = 0.0
    keep = w != 0
    head = BinaryClassHead("w", thresholds=THRESHOLDS, loss_reduction=reduction)
    full = evaluate(head, logits, labels, {"w": w})
    subset = evaluate(head, logits[keep], labels[keep], {"w": w[keep]})
    for key in full:
        if key == "loss" and reduction == SUM_OVER_BATCH_SIZE:
            # The zero-weight rows still count in the batch size.
            assert _close(full[key], subset[key] * keep.sum() / 3000, rel=1e-12)
        else:
            assert _close(full[key], subset[key], rel=1e-12), key
    assert_matches(full, keras_reference(logits, labels, w[:, None], thresholds=THRESHOLDS,
                                         loss_reduction=reduction))


@pytest.mark.parametrize("reduction", [SUM, SUM_OVER_BATCH_SIZE])
@pytest.mark.parametrize("dims", [None, 4])
def test_all_zero_weights_give_zero_everywhere(reduction, dims):
    rng, logits, labels = random_scores(14, n=500, dims=dims)
    w = np.zeros(500, dtype=np.float32)
    head = BinaryClassHead("w", thresholds=THRESHOLDS, loss_reduction=reduction, name="z")
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate(head, logits, labels, {"w": w})
    assert len(r) == 9 + 9 + 1
    assert r == {k: 0.0 for k in head.metric_keys()}
    reference = keras_reference(logits, labels, np.broadcast_to(
        w.reshape((500,) + (1,) * (logits.ndim - 1)), logits.shape), thresholds=THRESHOLDS,
        loss_reduction=reduction, name="z")
    assert reference == r


def test_negative_weights():
    rng, logits, labels = random_scores(15, n=3000)
    w = rng.uniform(-1.0, 0.4, size=3000).astype(np.float32)
    head = BinaryClassHead("w", thresholds=THRESHOLDS, loss_reduction=SUM)
    r = evaluate(head, logits, labels, {"w": w})
    assert_matches(r, keras_reference(logits, labels, w[:, None], thresholds=THRESHOLDS,
                                      loss_reduction=SUM), rel=1e-4)
    # Flipping every weight's sign leaves the ratios alone and negates the loss.
    flipped = evaluate(head, logits, labels, {"w": -w})
    for key in r:
        if key == "loss":
            assert _close(flipped[key], -r[key], rel=1e-12)
        elif key not in ("accuracy_baseline", "auc_precision_recall"):
            assert _close(flipped[key], r[key], rel=1e-12), key


def test_all_negative_weights_baseline_is_min():
    rng, logits, labels = random_scores(16, n=2000)
    w = -rng.uniform(0.1, 2.0, size=2000).astype(np.float32)
    head = BinaryClassHead("w")
    r = evaluate(head, logits, labels, {"w": w})
    mean = _weighted_fraction(labels[:, 0] == 1, w)
    assert _close(r["label/mean"], mean)
    # max(total, count - total) / count with count < 0 picks the smaller share.
    assert _close(r["accuracy_baseline"], min(mean, 1 - mean))
    assert r["loss"] < 0 and r["average_loss"] > 0
    assert_matches(r, keras_reference(logits, labels, w[:, None]))


@pytest.mark.parametrize("reduction", [SUM, SUM_OVER_BATCH_SIZE])
@pytest.mark.parametrize("dims", [None, 3])
def test_empty_input_gives_zeros(reduction, dims):
    shape = (0, 1) if dims is None else (0, dims, 1)
    logits = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape[:-1], dtype=np.float32)
    head = BinaryClassHead("w", thresholds=THRESHOLDS, loss_reduction=reduction)
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        state = head.update_metrics(head.new_state(), {"w": np.zeros(0, np.float32)}, logits, labels)
        r = head.results(state)
        fresh = head.results(head.new_state())
    assert state.example_count == 0
    assert r == {k: 0.0 for k in head.metric_keys()}
    assert fresh == r
    assert keras_reference(logits, labels, np.zeros(shape, np.float32), thresholds=THRESHOLDS,
                           loss_reduction=reduction) == r


def test_soft_label_is_never_accurate_but_is_positive():
    head = BinaryClassHead(thresholds=[0.5])
    one = evaluate(head, np.array([[2.0]], np.float32), np.array([0.8], np.float32))
    assert one["accuracy"] == 0.0
    assert one["accuracy/positive_threshold_0.5"] == 0.0
    assert one["precision"] == 1.0 and one["recall"] == 1.0
    assert one["precision/positive_threshold_0.5"] == 1.0
    assert one["recall/positive_threshold_0.5"] == 1.0
    assert _close(one["label/mean"], np.float32(0.8))
    assert _close(one["accuracy_baseline"], np.float32(0.8))
    logits = np.array([[2.0], [-2.0]], np.float32)
    labels = np.array([0.8, 0.0], np.float32)
    two = evaluate(head, logits, labels)
    assert two["accuracy"] == 0.5  # only the 0-label row is accurate
    assert two["precision"] == 1.0 and two["recall"] == 1.0
    assert two["auc"] == 1.0  # the 0.8 label ranks as a positive
    assert two["auc_precision_recall"] == 1.0
    # A soft label below 0.5 with a negative logit is still a positive, missed.
    low = evaluate(head, np.array([[-2.0], [3.0]], np.float32), np.array([0.2, 1.0], np.float32))
    assert low["recall"] == 0.5 and low["precision"] == 1.0 and low["accuracy"] == 0.5
    assert_matches(two, keras_reference(logits, labels, thresholds=[0.5]))
    assert_matches(low, keras_reference(np.array([[-2.0], [3.0]]), np.array([0.2, 1.0]),
                                        thresholds=[0.5]))


# ---- constructor and input errors ----------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(thresholds=[0.0]), "thresholds not in (0, 1)"),
        (dict(thresholds=[0.5, 1.0]), "thresholds not in (0, 1)"),
        (dict(thresholds=[1]), "thresholds not in (0, 1)"),
        (dict(loss_reduction="none"), "Invalid loss_reduction"),
        (dict(loss_reduction="mean"), "Invalid loss_reduction"),
        (dict(label_vocabulary="neg,pos"), "label_vocabulary should be a list or a tuple"),
        (dict(loss_fn=lambda logits: logits), "loss_fn must contain argument: labels"),
        (dict(loss_fn=lambda labels: labels), "loss_fn must contain argument: logits"),
        (dict(loss_fn=lambda labels, logits, foo: logits), "loss_fn has unexpected args: ['foo']"),
    ],
    ids=["threshold_0", "threshold_1", "threshold_int_1", "reduction_none", "reduction_mean",
         "vocabulary_string", "loss_fn_no_labels", "loss_fn_no_logits", "loss_fn_foo"],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BinaryClassHead(**kwargs)


def _focal_gamma_first(gamma, labels, logits):
    assert gamma == FOCAL_GAMMA
    return focal_loss(labels, logits)


def _focal_keyword_only_gamma(labels, logits, *, gamma=FOCAL_GAMMA):
    assert gamma == FOCAL_GAMMA
    return focal_loss(labels, logits)


@pytest.mark.parametrize(
    "loss_fn",
    [
        functools.partial(_focal_gamma_first, FOCAL_GAMMA),
        functools.partial(_focal_gamma_first, gamma=FOCAL_GAMMA),
        _focal_keyword_only_gamma,
        functools.partial(_focal_keyword_only_gamma, gamma=FOCAL_GAMMA),
    ],
    ids=["partial_positional", "partial_keyword", "keyword_only", "partial_keyword_only"],
)
def test_loss_fn_args_as_tensorflow_fn_args_sees_them(loss_fn):
    assert function_utils.fn_args(loss_fn) == ("labels", "logits")
    head = BinaryClassHead(loss_fn=loss_fn)
    _, logits, labels = random_scores(23, n=300)
    assert evaluate(head, logits, labels) == evaluate(BinaryClassHead(loss_fn=focal_loss), logits, labels)


def test_valid_thresholds_and_reductions_construct():
    for reduction in (SUM, SUM_OVER_BATCH_SIZE, "auto"):
        BinaryClassHead(thresholds=[1e-6, 0.999999], loss_reduction=reduction)
    assert BinaryClassHead(loss_reduction="auto").loss_reduction == SUM_OVER_BATCH_SIZE


@pytest.mark.parametrize(
    "bad_label, reason",
    [(1.5, "Labels must be <= 2 - 1"), (-0.5, "Labels must be >= 0"),
     (np.nan, "Labels must be <= 2 - 1"), (2.0, "Labels must be <= 2 - 1"),
     (np.inf, "Labels must be <= 2 - 1"), (-np.inf, "Labels must be >= 0")],
    ids=["1.5", "-0.5", "nan", "2", "inf", "-inf"],
)
@pytest.mark.parametrize("dims", [None, 3])
def test_label_out_of_range(bad_label, reason, dims):
    _, logits, labels = random_scores(20, n=20, dims=dims)
    labels = labels[..., 0].copy()
    labels[7] = bad_label  # the whole row for [n, D]
    labels[12] = bad_label
    head = BinaryClassHead()
    with pytest.raises(BadInputError, match=re.escape(reason)) as info:
        evaluate(head, logits, labels)
    assert info.value.column == "labels"
    assert info.value.reason == reason
    assert info.value.row == 7
    assert info.value.count == 2
    assert np.flatnonzero(info.value.rows).tolist() == [7, 12]


def test_label_not_in_vocabulary():
    head = BinaryClassHead(label_vocabulary=["neg", "pos"])
    labels = np.array(["neg", "pos", "pos", "maybe", "neg"], dtype=object)
    logits = np.zeros((5, 1), np.float32)
    with pytest.raises(BadInputError, match=re.escape("Labels must be >= 0")) as info:
        evaluate(head, logits, labels)
    assert info.value.column == "labels"
    assert info.value.row == 3
    assert "maybe" in str(info.value)


@pytest.mark.parametrize("bad_logit", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dims", [None, 3])
def test_non_finite_logit(bad_logit, dims):
    _, logits, labels = random_scores(21, n=20, dims=dims)
    logits = logits.copy()
    logits[9, ..., 0] = bad_logit
    head = BinaryClassHead()
    with pytest.raises(BadInputError) as info:
        evaluate(head, logits, labels)
    assert info.value.column == "logits"
    assert info.value.row == 9
    assert info.value.count == 1


# ---- predictions -----------------------------------------------------------------


def tf_predictions(logits, label_vocabulary=None):
    logits = tf.constant(logits)
    two_class_logits = tf.concat([tf.zeros_like(logits), logits], axis=-1)
    class_ids = tf.expand_dims(tf.argmax(two_class_logits, axis=-1), axis=-1)
    vocabulary = tf.constant(list(label_vocabulary) if label_vocabulary else ["0", "1"])
    if label_vocabulary:
        classes = tf.gather(vocabulary, class_ids)
    else:
        classes = tf.strings.as_string(class_ids)
    batch_size = tf.shape(logits)[0]
    return {
        "logits": logits.numpy(),
        "logistic": tf.sigmoid(logits).numpy(),
        "probabilities": tf.nn.softmax(two_class_logits).numpy(),
        "class_ids": class_ids.numpy(),
        "classes": classes.numpy(),
        "all_class_ids": tf.tile(tf.expand_dims(tf.range(2), 0), [batch_size, 1]).numpy(),
        "all_classes": tf.tile(tf.expand_dims(vocabulary, 0), [batch_size, 1]).numpy(),
    }


def _decode(a):
    return np.vectorize(lambda s: s.decode() if isinstance(s, bytes) else s, otypes=[object])(a)


@pytest.mark.parametrize("vocabulary", [None, ["neg", "pos"]])
@pytest.mark.parametrize("dims", [None, 4])
def test_predictions_match_tf(vocabulary, dims):
    _, logits, _ = random_scores(22, n=1000, dims=dims)
    flat = logits.reshape(-1)
    flat[:8] = [0.0, -0.0, 50.0, -50.0, 100.0, -100.0, 1e-30, -1e-30]
    head = BinaryClassHead(label_vocabulary=vocabulary)
    ours = head.predictions(logits)
    ref = tf_predictions(logits, vocabulary)
    assert list(ours) == ["logits", "logistic", "probabilities", "class_ids", "classes",
                          "all_class_ids", "all_classes"]
    np.testing.assert_array_equal(ours["logits"], ref["logits"])
    np.testing.assert_allclose(ours["logistic"], ref["logistic"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours["probabilities"], ref["probabilities"], rtol=1e-6, atol=1e-6)
    assert ours["probabilities"].shape == logits.shape[:-1] + (2,)
    np.testing.assert_array_equal(ours["class_ids"], ref["class_ids"])
    assert ours["class_ids"].dtype == ref["class_ids"].dtype == np.int64
    np.testing.assert_array_equal(_decode(ours["classes"]), _decode(ref["classes"]))
    np.testing.assert_array_equal(ours["all_class_ids"], ref["all_class_ids"])
    assert ours["all_class_ids"].dtype == ref["all_class_ids"].dtype
    np.testing.assert_array_equal(_decode(ours["all_classes"]), _decode(ref["all_classes"]))
    assert ours["all_classes"].shape == (1000, 2)


def test_predictions_subset_of_keys_and_bad_key():
    head = BinaryClassHead()
    logits = np.array([[-1.0], [0.0], [2.0]], np.float32)
    out = head.predictions(logits, ["class_ids", "logistic"])
    assert set(out) == {"class_ids", "logistic"}
    assert out["class_ids"][:, 0].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="Prediction key must be in PredictionKeys"):
        head.predictions(logits, ["scores"])
