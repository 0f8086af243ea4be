"""Our head against golden values from the real tf.estimator.BinaryClassHead.

tests/golden/golden.json is made by tests/golden/make_golden.py under
tensorflow 2.15.1 + tensorflow-estimator 2.15.0 (`make golden`); it holds the
inputs, every metric of update_metrics, head.loss and head.predictions per
case, including the estimator's own eval test cases (source
'estimator_test:...'); golden_evaluate.json what a real tf.estimator.Estimator
returns from evaluate() for some of those cases. Keras accumulates in float32 and TF's sigmoid is an
approximation a few ulps off the correctly rounded one, so values agree to
1e-5 relative, the product's stated tolerance.
"""

import json
import math
import pathlib

import numpy as np
import pytest

from head import BadInputError, BinaryClassHead

GOLDEN_DIR = pathlib.Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN_DIR / "golden.json").read_text())
ERROR_CASES = json.loads((GOLDEN_DIR / "golden_errors.json").read_text())["error_cases"]
EVALUATE_CASES = json.loads((GOLDEN_DIR / "golden_evaluate.json").read_text())["evaluate_cases"]
RTOL = 1e-5
ATOL = 1e-6


def _head(spec):
    return BinaryClassHead(**spec)


def _inputs(case):
    inputs = case["inputs"]
    logits = np.asarray(inputs["logits"], dtype=np.float32)
    labels = np.asarray(inputs["labels"])
    features = {k: np.asarray(v, dtype=np.float32) for k, v in inputs["features"].items()}
    if inputs["weights"] is not None:
        features[case["head"]["weight_column"]] = np.asarray(inputs["weights"], dtype=np.float32)
    return logits, labels, features


def _assert_close(ours, golden, what):
    assert set(ours) == set(golden), f"{what}: keys differ: {set(ours) ^ set(golden)}"
    for key, expected in golden.items():
        assert math.isclose(ours[key], expected, rel_tol=RTOL, abs_tol=ATOL), (
            f"{what} {key}: ours {ours[key]!r}, real head {expected!r}"
        )


def test_golden_file_covers_the_estimator_tests():
    upstream = [c for c in CASES if c["source"].startswith("estimator_test:")]
    assert len(upstream) >= 12
    assert len(CASES) >= 40


# Cases whose logits are logit(i/199) and its float32 neighbours: they sit
# exactly on Keras' AUC bucket edges, where TF's float32 sigmoid (Eigen's
# approximation, a few ulps off) and the correctly rounded one we compute put
# some examples in neighbouring buckets.
BUCKET_EDGE_CASES = {"auc_bucket_edges", "auc_bucket_edges_weighted"}


def _results(head, case, real_logistic=False):
    logits, labels, features = _inputs(case)
    evaluated = head.evaluate_batch(logits, labels, features)
    if real_logistic:
        evaluated.logistic = np.asarray(case["predictions"]["logistic"], np.float32).ravel()
    return head.results(head.add_to_state(head.new_state(), evaluated))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_metrics_match_real_head(case):
    head = _head(case["head"])
    # On bucket edges, bucket TF's own logistic values: the bucket formula
    # must then agree exactly; see test_bucket_edges_with_our_sigmoid.
    results = _results(head, case, real_logistic=case["name"] in BUCKET_EDGE_CASES)
    loss_key = "loss"
    golden = dict(case["metrics"])
    golden[loss_key] = case["loss"]
    _assert_close(results, golden, case["name"])


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.get("metrics_batched")],
    ids=[c["name"] for c in CASES if c.get("metrics_batched")],
)
def test_batched_update_metrics_match_real_head(case):
    """The real head fed in 3 uneven chunks; we stream the same chunks."""
    head = _head(case["head"])
    logits, labels, features = _inputs(case)
    # On bucket edges, bucket TF's own logistic values (as in the one-call test).
    real_logistic = np.asarray(case["predictions"]["logistic"], np.float32)
    n = logits.shape[0]
    cuts = [0, int(n * 0.17), int(n * 0.6), n]
    state = head.new_state()
    for start, stop in zip(cuts, cuts[1:]):
        part = {k: v[start:stop] for k, v in features.items()}
        evaluated = head.evaluate_batch(logits[start:stop], labels[start:stop], part)
        if case["name"] in BUCKET_EDGE_CASES:
            evaluated.logistic = real_logistic[start:stop].ravel()
        head.add_to_state(state, evaluated)
    results = head.results(state)
    results.pop("loss")
    _assert_close(results, case["metrics_batched"], case["name"] + " (batched)")


@pytest.mark.parametrize("name", sorted(BUCKET_EDGE_CASES))
def test_bucket_edges_with_our_sigmoid(name):
    """With our own sigmoid only AUC moves, and only by a bucket's worth."""
    case = next(c for c in CASES if c["name"] == name)
    head = _head(case["head"])
    ours = _results(head, case)
    loss_key = "loss"
    for key, expected in dict(case["metrics"], **{loss_key: case["loss"]}).items():
        tolerance = 2e-4 if key.startswith("auc") else RTOL
        assert math.isclose(ours[key], expected, rel_tol=tolerance, abs_tol=ATOL), key


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_predictions_match_real_head(case):
    head = _head(case["head"])
    logits, _, _ = _inputs(case)
    ours = head.predictions(logits)
    assert set(ours) == set(case["predictions"])
    for key, expected in case["predictions"].items():
        expected = np.asarray(expected)
        got = ours[key]
        assert got.shape == expected.shape, f"{key}: shape {got.shape} != {expected.shape}"
        if expected.dtype.kind in "US":
            assert (got.astype(str) == expected).all(), key
        elif key in ("class_ids", "all_class_ids"):
            np.testing.assert_array_equal(got, expected, err_msg=key)
        else:
            # TF's float32 sigmoid/softmax are a few ulps off exact rounding.
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=key)


def _error_text(case):
    return case["error"].split(": ", 1)[1]


LABEL_ERRORS = [c for c in ERROR_CASES if c["name"].startswith(("label_", "vocab_label"))]
CONSTRUCTOR_ERRORS = [c for c in ERROR_CASES if c["stage"] == "constructor"]


@pytest.mark.parametrize("case", LABEL_ERRORS, ids=[c["name"] for c in LABEL_ERRORS])
def test_label_errors_have_the_heads_wording(case):
    head = _head(case["head"])
    logits, labels, features = _inputs(case)
    with pytest.raises(BadInputError) as raised:
        head.update_metrics(head.new_state(), features, logits, labels)
    assert _error_text(case) in str(raised.value)
    assert raised.value.column == "labels"


@pytest.mark.parametrize("case", CONSTRUCTOR_ERRORS, ids=[c["name"] for c in CONSTRUCTOR_ERRORS])
def test_constructor_errors_have_the_heads_wording(case):
    spec = dict(case["head"])
    with pytest.raises(ValueError) as raised:
        _head(spec)
    expected = _error_text(case)
    # The real head formats argument tuples with its own function_utils.
    prefix = expected.split(":")[0]
    assert str(raised.value).startswith(prefix), (str(raised.value), expected)


@pytest.mark.parametrize("evaluated", EVALUATE_CASES, ids=[c["name"] for c in EVALUATE_CASES])
def test_result_keys_are_estimator_evaluate_keys(evaluated):
    """Our keys are exactly Estimator.evaluate()'s: update_metrics' keys
    (suffixed /name for a named head) and `loss`, which evaluate() adds and
    never suffixes; with its values."""
    case = next(c for c in CASES if c["name"] == evaluated["name"])
    results = _results(_head(case["head"]), case)
    _assert_close(results, evaluated["evaluate"], case["name"] + " (Estimator.evaluate)")


def test_estimator_evaluate_cases_include_a_named_head():
    named = [c for c in EVALUATE_CASES if c["source"] == "estimator_test:test_eval_metric_ops_with_head_name"]
    assert len(named) == 1
    keys = set(named[0]["evaluate"])
    assert "loss" in keys and "loss/some_binary_head" not in keys
    assert "auc/some_binary_head" in keys and "auc" not in keys
