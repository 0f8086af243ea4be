"""head/plots.py: plot data from metric states, checked against tf-keras and numpy."""

import numpy as np
import pytest

from head import EvaluatedBatch, StateLayout
from head.metrics import logistic
from head.plots import (
    AUC_THRESHOLDS,
    CALIBRATION_BUCKETS,
    calibration_histogram,
    curve_matrices,
    plot_data,
    threshold_matrices,
)

THRESHOLDS = (0.7, 0.25, 0.5)


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, n).astype(np.float32)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    labels[rng.random(n) < 0.1] = np.float32(0.4)  # soft labels: positives for precision/recall/AUC
    weights = rng.uniform(0.0, 3.0, n).astype(np.float32)
    weights[:5] = 0.0
    return EvaluatedBatch(labels, logits, logistic(logits), np.zeros(n, np.float32), weights)


@pytest.fixture(scope="module")
def data():
    batch = _batch(20000, 3)
    layout = StateLayout(THRESHOLDS, calibration=True)
    return batch, layout, layout.sums(batch)[0]


def _keras_matrices(metric_class_names, batch, thresholds):
    import tf_keras

    values = {}
    for name, cls in metric_class_names.items():
        metric = getattr(tf_keras.metrics, cls)(thresholds=list(thresholds))
        metric.update_state(batch.labels, batch.logistic, sample_weight=batch.weights)
        values[name] = np.asarray(metric.result(), dtype=np.float64)
    return values


CELLS = {"true_positives": "TruePositives", "false_positives": "FalsePositives",
         "true_negatives": "TrueNegatives", "false_negatives": "FalseNegatives"}


def test_curve_matrices_are_keras_auc_confusion_variables(data):
    import tf_keras

    batch, layout, totals = data
    auc = tf_keras.metrics.AUC(num_thresholds=200)
    auc.update_state(batch.labels, batch.logistic, sample_weight=batch.weights)
    curves = curve_matrices(layout, totals)
    np.testing.assert_allclose(curves["threshold"], np.asarray(auc.thresholds), rtol=0, atol=1e-12)
    for field, variable in (("true_positives", auc.true_positives), ("false_positives", auc.false_positives),
                            ("true_negatives", auc.true_negatives), ("false_negatives", auc.false_negatives)):
        np.testing.assert_allclose(curves[field], variable.numpy(), rtol=1e-5, atol=1e-2, err_msg=field)
    tp, fp = auc.true_positives.numpy().astype(np.float64), auc.false_positives.numpy().astype(np.float64)
    fn, tn = auc.false_negatives.numpy().astype(np.float64), auc.true_negatives.numpy().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = {"recall": tp / (tp + fn), "false_positive_rate": fp / (fp + tn),
                    "precision": tp / (tp + fp), "accuracy": (tp + tn) / (tp + fp + tn + fn),
                    "f1": 2 * tp / (2 * tp + fp + fn)}
    for field, values in expected.items():
        np.testing.assert_allclose(curves[field], values, rtol=1e-5, atol=1e-7, err_msg=field)
    # The last threshold (1 + epsilon) predicts nothing positive: precision undefined, null in JSON.
    assert np.isnan(curves["precision"][-1]) and curves["recall"][-1] == 0


def test_threshold_matrices_are_keras_confusion_metrics_in_config_order(data):
    batch, layout, totals = data
    expected = _keras_matrices(CELLS, batch, THRESHOLDS)
    matrices = threshold_matrices(layout, totals)
    assert matrices["threshold"].tolist() == list(THRESHOLDS)  # shortest decimals, config order
    for field in CELLS:
        np.testing.assert_allclose(matrices[field], expected[field], rtol=1e-5, atol=1e-2, err_msg=field)
    precision = _keras_matrices({"p": "Precision", "r": "Recall"}, batch, THRESHOLDS)
    np.testing.assert_allclose(matrices["precision"], precision["p"], rtol=1e-5)
    np.testing.assert_allclose(matrices["recall"], precision["r"], rtol=1e-5)


def test_calibration_histogram_is_numpy_by_keras_bucket(data):
    batch, layout, totals = data
    histogram = calibration_histogram(layout, totals)
    # Independently: the bucket (t_j, t_j+1] of each prediction by search, sums by bincount.
    p = batch.logistic.astype(np.float64)
    bucket = np.searchsorted(AUC_THRESHOLDS, p, side="left") - 1
    w = batch.weights.astype(np.float64)
    for field, values in (("num_weighted_examples", w), ("total_weighted_label", w * batch.labels),
                          ("total_weighted_refined_prediction", w * p)):
        expected = np.bincount(bucket, values, minlength=CALIBRATION_BUCKETS)
        np.testing.assert_allclose(histogram[field], expected, rtol=1e-9, atol=1e-9, err_msg=field)
    assert histogram["lower_threshold_exclusive"][0] < 0 and histogram["upper_threshold_inclusive"][-1] > 1
    np.testing.assert_array_equal(histogram["lower_threshold_exclusive"][1:], histogram["upper_threshold_inclusive"][:-1])


def test_many_states_at_once_equal_one_at_a_time(data):
    batch, layout, _ = data
    keys = np.arange(len(batch)) % 3
    stacked = layout.sums(batch, keys, 4)  # key 3 is empty
    together = plot_data(layout, stacked)
    for k in range(3):
        alone = plot_data(layout, layout.sums(EvaluatedBatch(*(getattr(batch, s)[keys == k]
                                                                for s in EvaluatedBatch.__slots__)))[0])
        for plot, fields in alone.items():
            for field, values in fields.items():
                np.testing.assert_allclose(together[plot][field][k], values, rtol=1e-12, atol=1e-9)
    empty = {field: values[3] for field, values in together["confusion_matrices"].items()}
    assert np.all(empty["true_positives"] == 0) and np.all(np.isnan(empty["precision"]))


def test_calibration_needs_a_layout_that_keeps_it():
    layout = StateLayout((0.5,))
    with pytest.raises(ValueError, match="calibration=True"):
        calibration_histogram(layout, np.zeros(layout.size))
