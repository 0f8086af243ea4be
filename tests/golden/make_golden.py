"""Generate golden values for beam-head-eval from the REAL tf.estimator BinaryClassHead.

This script only runs under TensorFlow 2.15 with tensorflow-estimator 2.15 (the
last releases that ship the estimator head).  Create that environment from
scratch with::

    python3.11 -m venv .golden-venv && .golden-venv/bin/pip install tensorflow-cpu==2.15.1 tensorflow-estimator==2.15.0 'numpy<2' 'pyarrow<16' 'pandas<2.3'

and run it from the repository root::

    .golden-venv/bin/python tests/golden/make_golden.py

It (re)writes ``tests/golden/golden.json`` and ``tests/golden/golden_errors.json``
deterministically (fixed numpy seeds, single-threaded TF, sorted keys).

golden.json is a JSON list of cases (one case per line), each::

    {"name", "source": "generated" | "estimator_test:<test method>",
     "head": {"weight_column", "thresholds", "label_vocabulary", "loss_reduction",
              "loss_fn": "tests.golden_losses:<fn>" | null, "name",
              "regularization_losses"},
     "inputs": {"logits", "labels", "weights" | null, "features": {...}},
     "metrics": {key: float},          # one update_metrics call with all inputs
     "metrics_batched": {key: float},  # 3 uneven chunks along axis 0 (n >= 6 only)
     "loss": float,                    # head.loss over all inputs at once
     "predictions": {key: nested list}}

All float inputs are exact float32 values written as Python floats; integer
labels are written as JSON integers, string labels as strings.  Weights are fed
to the head as ``features[weight_column]``.

Cases whose source is ``estimator_test:<name>`` transcribe the inputs of the
eval tests in tensorflow/estimator's
``tensorflow_estimator/python/estimator/head/binary_class_head_test.py``; the
expected numbers written in those tests are asserted below (with the tolerance
each test uses) so a transcription error fails loudly.

golden_errors.json holds ``{"error_cases": [...]}``: inputs/head settings that
the real head rejects, with ``"error"`` (from the constructor, or from
``update_metrics``) and ``"loss_error"`` (from ``head.loss``) as
``"<ExceptionType>: <message>"``.  It may contain the (Python-json) token NaN.

golden_evaluate.json holds ``{"evaluate_cases": [{"name", "source",
"evaluate": {key: float}}]}``: for the golden.json cases named in
EVALUATE_CASES, every key and value that a real ``tf.estimator.Estimator``
built on the head returns from ``evaluate()`` (global_step left out).  Those
are update_metrics' keys (suffixed ``/name`` for a named head) plus ``loss``,
which the Estimator adds itself and never suffixes.
"""

import importlib
import json
import math
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if not tf.__version__.startswith('2.15.'):
  raise SystemExit('make_golden.py needs TensorFlow 2.15.x (found %s); see the '
                   'module docstring.' % tf.__version__)

tf.get_logger().setLevel('ERROR')
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.experimental.enable_op_determinism()

# pylint: disable=g-import-not-at-top,wrong-import-position
from tensorflow_estimator.python.estimator.head.binary_class_head import BinaryClassHead  # noqa: E402

OUT_PATH = os.path.join(HERE, 'golden.json')
ERR_PATH = os.path.join(HERE, 'golden_errors.json')
EVALUATE_PATH = os.path.join(HERE, 'golden_evaluate.json')

# ---------------------------------------------------------------------------
# Helpers to describe cases.
# ---------------------------------------------------------------------------


def f32(x):
  return np.asarray(x, dtype=np.float32)


def head_spec(weight_column=None, thresholds=None, label_vocabulary=None,
              loss_reduction='sum_over_batch_size', loss_fn=None, name=None,
              regularization_losses=None):
  return {
      'weight_column': weight_column,
      'thresholds': None if thresholds is None else [float(t) for t in thresholds],
      'label_vocabulary': label_vocabulary,
      'loss_reduction': loss_reduction,
      'loss_fn': None if loss_fn is None else 'tests.golden_losses:' + loss_fn,
      'name': name,
      'regularization_losses': (None if regularization_losses is None else
                                [float(r) for r in regularization_losses]),
  }


def to_jsonable(a):
  """Nested lists; float arrays become exact float32 values, ints stay ints."""
  if a is None:
    return None
  a = np.asarray(a)
  if a.dtype.kind == 'f':
    return a.astype(np.float32).tolist()
  if a.dtype.kind in 'iu':
    return a.astype(np.int64).tolist()
  if a.dtype.kind == 'b':
    return a.astype(np.int64).tolist()
  if a.dtype.kind in 'SO':
    return np.vectorize(
        lambda s: s.decode() if isinstance(s, bytes) else s, otypes=[object])(
            a).tolist()
  if a.dtype.kind == 'U':
    return a.tolist()
  raise TypeError(a.dtype)


def case(name, head, logits, labels, weights=None, features=None,
         source='generated'):
  inputs = {
      'logits': to_jsonable(f32(logits)),
      'labels': None if labels is None else to_jsonable(labels),
      'weights': None if weights is None else to_jsonable(f32(weights)),
      'features': {k: to_jsonable(v) for k, v in (features or {}).items()},
  }
  # Round-trip through JSON so that the head sees exactly what a reader gets.
  inputs = json.loads(json.dumps(inputs))
  return {'name': name, 'source': source, 'head': head, 'inputs': inputs}


def sigmoid64(x):
  with np.errstate(over='ignore'):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def correlated_labels(rng, logits):
  """0/1 labels drawn with probability sigmoid(logits) (so AUC is non-trivial)."""
  return (rng.random(np.shape(logits)) < sigmoid64(logits)).astype(np.float32)


# ---------------------------------------------------------------------------
# Generated cases.
# ---------------------------------------------------------------------------


def generated_cases():
  cases = []

  # 1. Default head, random logits and 0/1 labels.
  rng = np.random.default_rng(101)
  n = 1500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('default_random', head_spec(), logits,
                    correlated_labels(rng, logits)))

  # 2. Weight column (weights shape [n]) and thresholds.
  rng = np.random.default_rng(102)
  n = 1200
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case(
      'weighted_thresholds',
      head_spec(weight_column='w', thresholds=[0.3, 0.5, 0.7]), logits,
      correlated_labels(rng, logits), weights=rng.uniform(0.1, 3.0, size=n)))

  # 3. Label vocabulary with string labels.
  rng = np.random.default_rng(103)
  n = 800
  logits = f32(rng.normal(size=(n, 1)) * 2)
  ids = correlated_labels(rng, logits).astype(np.int64)
  vocab = ['ham', 'spam']
  labels = np.array([[vocab[i] for i in row] for row in ids])
  cases.append(case('vocab_ham_spam', head_spec(label_vocabulary=vocab), logits,
                    labels))

  # 3b. Vocabulary, rank-1 string labels, weights, thresholds.
  rng = np.random.default_rng(113)
  n = 500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  ids = correlated_labels(rng, logits).astype(np.int64)[:, 0]
  vocab = ['yes', 'no']  # note: 'yes' is class 0
  labels = np.array([vocab[i] for i in ids])
  cases.append(case(
      'vocab_rank1_weighted',
      head_spec(weight_column='w', label_vocabulary=vocab, thresholds=[0.4]),
      logits, labels, weights=rng.uniform(0.0, 2.0, size=(n, 1))))

  # 4. Soft labels in [0, 1] with weights.
  rng = np.random.default_rng(104)
  n = 1000
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case(
      'soft_labels_weighted',
      head_spec(weight_column='w', thresholds=[0.5]), logits,
      f32(rng.uniform(0.0, 1.0, size=(n, 1))),
      weights=rng.uniform(0.0, 2.0, size=(n, 1))))

  # 4b. Soft labels, no weights.
  rng = np.random.default_rng(114)
  n = 500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  soft = f32(rng.uniform(0.0, 1.0, size=(n, 1)))
  soft[:50] = np.round(soft[:50])  # some hard 0/1 labels mixed in
  cases.append(case('soft_labels', head_spec(), logits, soft))

  # 5. Multi-dim logits [n,3,1], labels [n,3,1], per-element weights [n,3].
  rng = np.random.default_rng(105)
  n = 500
  logits = f32(rng.normal(size=(n, 3, 1)) * 2)
  cases.append(case(
      'multidim_weights_nD',
      head_spec(weight_column='w', thresholds=[0.5]), logits,
      correlated_labels(rng, logits), weights=rng.uniform(0.0, 2.0, size=(n, 3))))

  # 6. Multi-dim, labels [n,3] (no final 1), weights [n,3,1].
  rng = np.random.default_rng(106)
  n = 400
  logits = f32(rng.normal(size=(n, 3, 1)) * 2)
  cases.append(case(
      'multidim_weights_nD1',
      head_spec(weight_column='w', thresholds=[0.3, 0.6]), logits,
      correlated_labels(rng, logits)[..., 0],
      weights=rng.uniform(0.0, 2.0, size=(n, 3, 1))))

  # 6b. Multi-dim, no weights.
  rng = np.random.default_rng(116)
  n = 300
  logits = f32(rng.normal(size=(n, 2, 1)) * 2)
  cases.append(case('multidim_unweighted', head_spec(), logits,
                    correlated_labels(rng, logits)))

  # 7. loss_reduction 'sum' with weights (rank-1 labels and weights).
  rng = np.random.default_rng(107)
  n = 700
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case(
      'sum_reduction_weighted',
      head_spec(weight_column='w', loss_reduction='sum'), logits,
      correlated_labels(rng, logits)[:, 0], weights=rng.uniform(0.0, 3.0, size=n)))

  # 8. Named head with thresholds.
  rng = np.random.default_rng(108)
  n = 600
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('named_my_head',
                    head_spec(name='my_head', thresholds=[0.25, 0.75]), logits,
                    correlated_labels(rng, logits)))

  # 9. Custom loss_fn: focal.
  rng = np.random.default_rng(109)
  n = 900
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('loss_fn_focal', head_spec(loss_fn='focal'), logits,
                    correlated_labels(rng, logits)))

  # 9b. Focal with weights, multi-dim.
  rng = np.random.default_rng(119)
  n = 300
  logits = f32(rng.normal(size=(n, 2, 1)) * 2)
  cases.append(case(
      'loss_fn_focal_multidim_weighted',
      head_spec(weight_column='w', loss_fn='focal', loss_reduction='sum'),
      logits, correlated_labels(rng, logits),
      weights=rng.uniform(0.0, 2.0, size=(n, 2))))

  # 10. Custom loss_fn that reads features['aux'] (plus a weight column).
  rng = np.random.default_rng(110)
  n = 800
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case(
      'loss_fn_weighted_by_feature',
      head_spec(weight_column='w', loss_fn='weighted_by_feature'), logits,
      correlated_labels(rng, logits), weights=rng.uniform(0.5, 1.5, size=(n, 1)),
      features={'aux': f32(rng.uniform(0.0, 1.0, size=n))}))

  # 10b. weighted_by_feature, multi-dim, aux [n,2].
  rng = np.random.default_rng(120)
  n = 300
  logits = f32(rng.normal(size=(n, 2, 1)) * 2)
  cases.append(case(
      'loss_fn_weighted_by_feature_multidim',
      head_spec(loss_fn='weighted_by_feature'), logits,
      correlated_labels(rng, logits),
      features={'aux': f32(rng.uniform(0.0, 1.0, size=(n, 2)))}))

  # 11. Regularization losses.
  rng = np.random.default_rng(111)
  n = 500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('regularization',
                    head_spec(regularization_losses=[0.5, 0.25]), logits,
                    correlated_labels(rng, logits)))

  # 11b. Named head + regularization + weights.
  rng = np.random.default_rng(121)
  n = 300
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case(
      'named_regularization_weighted',
      head_spec(weight_column='w', name='my_head', thresholds=[0.5],
                regularization_losses=[0.5, 0.25]), logits,
      correlated_labels(rng, logits), weights=rng.uniform(0.0, 2.0, size=n)))

  # 12. Integer labels.
  rng = np.random.default_rng(112)
  n = 500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('int_labels', head_spec(thresholds=[0.5]), logits,
                    correlated_labels(rng, logits).astype(np.int64)))

  # --- Edge cases ---

  # Ties: many exact duplicates; some logistic values equal the thresholds.
  rng = np.random.default_rng(201)
  n = 600
  pool = f32([math.log(1 / 3), -2.0, -1.0, 0.0, 1.0, 2.0, math.log(3), 0.5])
  logits = pool[rng.integers(0, len(pool), size=(n, 1))]
  cases.append(case('ties_duplicates',
                    head_spec(thresholds=[0.25, 0.5, 0.75]), logits,
                    correlated_labels(rng, logits)))

  rng = np.random.default_rng(202)
  n = 400
  logits = pool[rng.integers(0, 4, size=(n, 1))]
  cases.append(case(
      'ties_duplicates_weighted',
      head_spec(weight_column='w', thresholds=[0.25, 0.5]), logits,
      correlated_labels(rng, logits), weights=rng.uniform(0.0, 2.0, size=(n, 1))))

  # Logits exactly 0 (logistic exactly 0.5 == threshold, class_id 0).
  rng = np.random.default_rng(203)
  n = 60
  cases.append(case('logits_all_zero', head_spec(thresholds=[0.5]),
                    np.zeros((n, 1)), rng.integers(0, 2, size=(n, 1)).astype(
                        np.float32)))

  # Very large |logits|: logistic saturates to exactly 0 / 1.
  rng = np.random.default_rng(204)
  big = f32([30, -30, 100, -100, 17, -17, 16, -16, 88, -88, 104, -104, 1e4,
             -1e4, 15.9, -15.9, 40, -40])
  n = 360
  logits = np.concatenate(
      [big[rng.integers(0, len(big), size=(n - 60, 1))],
       f32(rng.normal(size=(60, 1)) * 2)])
  logits = logits[rng.permutation(n)]
  cases.append(case('saturated_logits', head_spec(thresholds=[0.5]), logits,
                    rng.integers(0, 2, size=(n, 1)).astype(np.float32)))

  rng = np.random.default_rng(205)
  n = 200
  logits = big[rng.integers(0, len(big), size=(n, 1))]
  cases.append(case(
      'saturated_logits_weighted_correlated',
      head_spec(weight_column='w', thresholds=[0.5]), logits,
      correlated_labels(rng, logits), weights=rng.uniform(0.0, 2.0, size=n)))

  # All-positive / all-negative labels.
  rng = np.random.default_rng(206)
  n = 300
  cases.append(case('all_positive_labels', head_spec(thresholds=[0.5]),
                    f32(rng.normal(size=(n, 1)) * 2), np.ones((n, 1), np.float32)))
  rng = np.random.default_rng(207)
  cases.append(case('all_negative_labels', head_spec(thresholds=[0.5]),
                    f32(rng.normal(size=(n, 1)) * 2), np.zeros((n, 1), np.float32)))
  rng = np.random.default_rng(208)
  cases.append(case(
      'all_positive_labels_weighted', head_spec(weight_column='w'),
      f32(rng.normal(size=(n, 1)) * 2), np.ones((n, 1), np.float32),
      weights=rng.uniform(0.0, 2.0, size=n)))

  # Zero weights.
  rng = np.random.default_rng(209)
  n = 500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  w = rng.uniform(0.1, 2.0, size=(n, 1))
  w[rng.random(size=(n, 1)) < 0.3] = 0.0
  cases.append(case('zero_weights_some',
                    head_spec(weight_column='w', thresholds=[0.5]), logits,
                    correlated_labels(rng, logits), weights=w))

  rng = np.random.default_rng(210)
  n = 200
  logits = f32(rng.normal(size=(n, 1)) * 2)
  w = np.zeros(n)
  w[137] = 1.7
  cases.append(case('zero_weights_all_but_one',
                    head_spec(weight_column='w', thresholds=[0.5]), logits,
                    correlated_labels(rng, logits), weights=w))

  rng = np.random.default_rng(211)
  n = 50
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('zero_weights_all',
                    head_spec(weight_column='w', thresholds=[0.5]), logits,
                    correlated_labels(rng, logits), weights=np.zeros((n, 1))))

  # Negative weights on a few rows.
  rng = np.random.default_rng(212)
  n = 500
  logits = f32(rng.normal(size=(n, 1)) * 2)
  w = rng.uniform(0.1, 2.0, size=n)
  neg = rng.choice(n, size=7, replace=False)
  w[neg] = -rng.uniform(0.1, 2.0, size=7)
  cases.append(case('negative_weights_few',
                    head_spec(weight_column='w', thresholds=[0.5]), logits,
                    correlated_labels(rng, logits), weights=w))

  # Integer weights are fine too but stored as float; integer labels, rank 1.
  rng = np.random.default_rng(213)
  n = 300
  logits = f32(rng.normal(size=(n, 1)) * 2)
  cases.append(case('int_labels_rank1_weighted', head_spec(weight_column='w'),
                    logits, correlated_labels(rng, logits)[:, 0].astype(np.int64),
                    weights=rng.integers(0, 4, size=n).astype(np.float32)))

  # Logistic values on / next to the AUC bucket edges i/199.
  rng = np.random.default_rng(214)
  i = np.arange(1, 199)
  p = f32(i / 199.0)
  edge = f32(np.log(p.astype(np.float64) / (1.0 - p.astype(np.float64))))
  logits = np.concatenate([
      edge, np.nextafter(edge, f32(np.inf)), np.nextafter(edge, f32(-np.inf))
  ]).reshape(-1, 1)
  n = logits.shape[0]
  logits = logits[rng.permutation(n)]
  cases.append(case('auc_bucket_edges', head_spec(thresholds=[0.5]), logits,
                    correlated_labels(rng, logits)))
  # Same logits, different labels, with weights; plus exact 0 and 1 logistic.
  rng = np.random.default_rng(215)
  logits2 = np.concatenate([logits, f32([[-200.0], [200.0], [0.0]])])
  n = logits2.shape[0]
  cases.append(case(
      'auc_bucket_edges_weighted', head_spec(weight_column='w', thresholds=[0.5]),
      logits2, correlated_labels(rng, logits2),
      weights=rng.uniform(0.0, 2.0, size=(n, 1))))

  # Tiny batches.
  cases.append(case('single_example', head_spec(thresholds=[0.5]),
                    f32([[0.7]]), f32([[1.0]])))
  cases.append(case('six_examples', head_spec(thresholds=[0.5]),
                    f32([[0.7], [-1.2], [3.0], [0.0], [-0.1], [2.5]]),
                    f32([[1.0], [0.0], [0.0], [1.0], [1.0], [1.0]])))
  return cases


# ---------------------------------------------------------------------------
# Upstream estimator test cases (tensorflow/estimator,
# tensorflow_estimator/python/estimator/head/binary_class_head_test.py).
# Each entry: (case, expectations) where expectations describe what the
# upstream test asserts and with which tolerance.
# ---------------------------------------------------------------------------

_STD_METRICS_45_M41 = {
    'average_loss': 20.5, 'accuracy': 0.5, 'precision': 1.0, 'recall': 0.5,
    'prediction/mean': 0.5, 'label/mean': 1.0, 'accuracy_baseline': 1.0,
    'auc': 0.0, 'auc_precision_recall': 1.0,
}


def upstream_cases():
  out = []
  lg = [[45.0], [-41.0]]
  lb_int = np.array([[1], [1]], np.int32)
  src = 'estimator_test:'

  out.append((case('upstream_eval_create_loss', head_spec(), lg, lb_int,
                   source=src + 'test_eval_create_loss'),
              {'loss': 20.5, 'rtol': 1e-2, 'atol': 1e-2}))

  out.append((case('upstream_eval_create_loss_loss_fn',
                   head_spec(loss_fn='two_minus_label'), [[-10.0], [10.0]],
                   np.array([[1], [0]], np.int64),
                   source=src + 'test_eval_create_loss_loss_fn'),
              {'loss': 1.5}))

  out.append((case('upstream_eval', head_spec(), lg, lb_int,
                   source=src + 'test_eval'),
              {'loss': 20.5, 'metrics': _STD_METRICS_45_M41,
               'exact_keys': True}))

  out.append((case('upstream_eval_metric_ops_with_head_name',
                   head_spec(name='some_binary_head'), lg, lb_int,
                   source=src + 'test_eval_metric_ops_with_head_name'),
              {'keys': [k + '/some_binary_head' for k in _STD_METRICS_45_M41]}))

  m = dict(_STD_METRICS_45_M41)
  m['regularization_loss'] = 2.0
  out.append((case('upstream_eval_with_regularization_losses',
                   head_spec(regularization_losses=[1.5, 0.5]), lg, lb_int,
                   source=src + 'test_eval_with_regularization_losses'),
              {'loss': 22.5, 'metrics': m, 'exact_keys': True}))

  voc = ['aang', 'iroh']
  out.append((case('upstream_eval_with_vocabulary_list_create_loss',
                   head_spec(label_vocabulary=voc), lg,
                   np.array([[b'iroh'], [b'iroh']]),
                   source=src + 'test_eval_with_vocabulary_list_create_loss'),
              {'loss': 20.5, 'rtol': 1e-2, 'atol': 1e-2}))
  out.append((case('upstream_eval_with_vocabulary_list',
                   head_spec(label_vocabulary=voc), lg,
                   np.array([[b'iroh'], [b'iroh']]),
                   source=src + 'test_eval_with_vocabulary_list'),
              {'metrics': {'accuracy': 0.5}}))

  th = [0.25, 0.5, 0.75]
  out.append((case('upstream_eval_with_thresholds_create_loss',
                   head_spec(thresholds=th), [[-1.0], [1.0]], lb_int,
                   source=src + 'test_eval_with_thresholds_create_loss'),
              {'loss': 0.813192855, 'rtol': 1e-2, 'atol': 1e-2}))
  m = {
      'average_loss': 1.62652338 / 2.0, 'accuracy': 0.5, 'precision': 1.0,
      'recall': 0.5, 'prediction/mean': 0.5, 'label/mean': 1.0,
      'accuracy_baseline': 1.0, 'auc': 0.0, 'auc_precision_recall': 1.0,
      'accuracy/positive_threshold_0.25': 1.0,
      'precision/positive_threshold_0.25': 1.0,
      'recall/positive_threshold_0.25': 1.0,
      'accuracy/positive_threshold_0.5': 0.5,
      'precision/positive_threshold_0.5': 1.0,
      'recall/positive_threshold_0.5': 0.5,
      'accuracy/positive_threshold_0.75': 0.0,
      'precision/positive_threshold_0.75': 0.0,
      'recall/positive_threshold_0.75': 0.0,
  }
  out.append((case('upstream_eval_with_thresholds', head_spec(thresholds=th),
                   [[-1.0], [1.0]], lb_int,
                   source=src + 'test_eval_with_thresholds'),
              # loss asserted with default tolerance, metrics with 1e-2.
              {'loss': 1.62652338 / 2.0, 'metrics': m, 'metrics_rtol': 1e-2,
               'metrics_atol': 1e-2, 'exact_keys': True}))

  fl_logits = [[0.5], [-0.3]]
  fl_labels = f32([[0.8], [0.4]])
  out.append((case('upstream_float_labels_eval_create_loss', head_spec(),
                   fl_logits, fl_labels,
                   source=src + 'test_float_labels_eval_create_loss'),
              {'loss': 0.62421611432, 'rtol': 1e-2, 'atol': 1e-2}))
  out.append((case('upstream_float_labels_eval', head_spec(), fl_logits,
                   fl_labels, source=src + 'test_float_labels_eval'),
              {'loss': 0.6242161, 'loss_delta': 1e-5,
               'metrics': {'average_loss': 0.6242161}, 'metrics_places': 7}))

  lbl = 0.42307692307
  out.append((case('upstream_weighted_multi_example_eval',
                   head_spec(weight_column='label_weights'),
                   [[45.0], [-41.0], [44.0]],
                   np.array([[1], [1], [0]], np.int32),
                   weights=[[1.0], [0.1], [1.5]],
                   source=src + 'test_weighted_multi_example_eval'),
              {'loss': 23.366666667, 'exact_keys': True, 'metrics': {
                  'average_loss': 26.9615384615, 'accuracy': 0.38461538461,
                  'precision': 1.0 / 2.5, 'recall': 1.0 / 1.1,
                  'prediction/mean': 0.96153846153, 'label/mean': lbl,
                  'accuracy_baseline': 1 - lbl, 'auc': 0.45454565,
                  'auc_precision_recall': 0.4010627}}))

  md_logits = [[[10.0], [-10.0]], [[12.0], [-12.0]]]
  md_labels = np.array([[[0.0], [0.0]], [[1.0], [1.0]]])
  md_w = [[1.0, 1.5], [2.0, 2.5]]
  sw = 7.0
  out.append((case('upstream_multi_dim_weighted_eval',
                   head_spec(weight_column='weights'), md_logits, md_labels,
                   weights=md_w, source=src + 'test_multi_dim_weighted_eval'),
              {'loss': 10.0, 'rtol': 1e-2, 'atol': 1e-2, 'metrics': {
                  'average_loss': 40.0 / sw, 'accuracy': 3.5 / sw,
                  'precision': 2.0 / 3.0, 'recall': 2.0 / 4.5,
                  'prediction/mean': 3.0 / sw, 'label/mean': 4.5 / sw,
                  'accuracy_baseline': 4.5 / sw, 'auc': 0.5222,
                  'auc_precision_recall': 0.6582}}))

  # Loss-only upstream tests that add a head setting / input shape not
  # covered above (metrics are still recorded from the real head).
  out.append((case('upstream_multi_dim_weighted_train_create_loss',
                   head_spec(weight_column='weights'), md_logits, md_labels,
                   weights=md_w,
                   source=src + 'test_multi_dim_weighted_train_create_loss'),
              {'loss': 10.0, 'rtol': 1e-2, 'atol': 1e-2}))
  out.append((case('upstream_train_one_dim_create_loss',
                   head_spec(weight_column='label_weights'),
                   [[45.0], [-41.0], [44.0]], f32([1.0, 1.0, 0.0]),
                   weights=[1.0, 0.1, 1.5],
                   source=src + 'test_train_one_dim_create_loss'),
              {'loss': 23.366666667}))
  out.append((case('upstream_train_create_loss_loss_reduction',
                   head_spec(loss_reduction='sum'), lg, f32([[1.0], [1.0]]),
                   source=src + 'test_train_create_loss_loss_reduction'),
              {'loss': 41.0}))
  return out


# ---------------------------------------------------------------------------
# Running the real head.
# ---------------------------------------------------------------------------


def resolve_loss_fn(ref):
  if ref is None:
    return None
  mod, fn = ref.split(':')
  return getattr(importlib.import_module(mod), fn)


def build_head(h):
  return BinaryClassHead(
      weight_column=h['weight_column'],
      thresholds=h['thresholds'],
      label_vocabulary=h['label_vocabulary'],
      loss_reduction=h['loss_reduction'],
      loss_fn=resolve_loss_fn(h['loss_fn']),
      name=h['name'])


def _flat(x):
  while isinstance(x, list) and x:
    x = x[0]
  return x


def labels_array(labels, head):
  if labels is None:
    return None
  first = _flat(labels)
  if isinstance(first, str):
    return np.vectorize(lambda s: s.encode(), otypes=[object])(
        np.array(labels, dtype=object)).astype(bytes)
  arr = np.array(labels)
  if arr.dtype.kind in 'iu':
    return arr.astype(np.int64)
  return arr.astype(np.float32)


def np_inputs(c):
  h, inp = c['head'], c['inputs']
  logits = np.array(inp['logits'], dtype=np.float32)
  labels = labels_array(inp['labels'], h)
  features = {k: np.array(v, dtype=np.float32) for k, v in inp['features'].items()}
  if inp['weights'] is not None:
    features[h['weight_column']] = np.array(inp['weights'], dtype=np.float32)
  return logits, labels, features


def reg_losses(h):
  r = h['regularization_losses']
  return None if r is None else [tf.constant(v, tf.float32) for v in r]


def run_metrics(head, h, chunks):
  reg = reg_losses(h)
  metrics = head.metrics(regularization_losses=reg)
  for logits, labels, features in chunks:
    metrics = head.update_metrics(metrics, features, logits, labels,
                                  regularization_losses=reg)
  return {k: float(np.asarray(v.result().numpy(), np.float32))
          for k, v in metrics.items()}


def split_points(n):
  return [max(1, round(n * 0.17)), round(n * 0.6)]


def chunked(logits, labels, features):
  n = logits.shape[0]
  a, b = split_points(n)
  out = []
  for lo, hi in ((0, a), (a, b), (b, n)):
    out.append((logits[lo:hi], labels[lo:hi],
                {k: v[lo:hi] for k, v in features.items()}))
  return out


def predictions_json(head, logits):
  preds = head.predictions(logits)
  out = {}
  for k, v in preds.items():
    out[k] = to_jsonable(v.numpy())
  return out


def evaluate(c):
  h = c['head']
  head = build_head(h)
  logits, labels, features = np_inputs(c)
  c['metrics'] = run_metrics(head, h, [(logits, labels, features)])
  if logits.shape[0] >= 6:
    c['metrics_batched'] = run_metrics(build_head(h), h,
                                       chunked(logits, labels, features))
  c['loss'] = float(head.loss(labels=labels, logits=logits, features=features,
                              regularization_losses=reg_losses(h)).numpy())
  c['predictions'] = predictions_json(head, logits)
  return c


# ---------------------------------------------------------------------------
# Upstream expectation checks (same semantics as tf.test assertions).
# ---------------------------------------------------------------------------


def _close(actual, expected, rtol, atol):
  return abs(actual - expected) <= atol + rtol * abs(expected)


def check_upstream(c, exp):
  name = c['source']
  if 'keys' in exp:
    assert set(c['metrics']) == set(exp['keys']), (name, sorted(c['metrics']))
  if 'loss' in exp:
    if 'loss_delta' in exp:
      ok = abs(c['loss'] - exp['loss']) <= exp['loss_delta']
    else:
      ok = _close(c['loss'], exp['loss'], exp.get('rtol', 1e-6),
                  exp.get('atol', 1e-6))
    assert ok, (name, 'loss', c['loss'], exp['loss'])
  if 'metrics' in exp:
    if exp.get('exact_keys'):
      assert set(c['metrics']) == set(exp['metrics']), (name, sorted(c['metrics']))
    for k, e in exp['metrics'].items():
      a = c['metrics'][k]
      if 'metrics_places' in exp:
        ok = round(a - e, exp['metrics_places']) == 0
      else:
        ok = _close(a, e, exp.get('metrics_rtol', exp.get('rtol', 1e-6)),
                    exp.get('metrics_atol', exp.get('atol', 1e-6)))
      assert ok, (name, k, a, e)


# ---------------------------------------------------------------------------
# Inputs / settings the real head rejects.
# ---------------------------------------------------------------------------


def error_specs():
  src = 'estimator_test:'
  lg = [[0.5], [-0.3]]
  return [
      case('label_1.5', head_spec(), lg, f32([[1.5], [0.0]])),
      case('label_-0.5', head_spec(), lg, f32([[-0.5], [1.0]])),
      case('label_nan', head_spec(), lg, f32([[np.nan], [1.0]])),
      case('label_int_2', head_spec(), lg, np.array([[2], [0]], np.int64)),
      case('label_1.2_upstream', head_spec(), lg, f32([[1.2], [0.4]]),
           source=src + 'test_float_labels_invalid_values'),
      case('vocab_label_not_in_vocabulary',
           head_spec(label_vocabulary=['ham', 'spam']), lg,
           np.array([['ham'], ['eggs']])),
      case('vocab_numeric_labels', head_spec(label_vocabulary=['ham', 'spam']),
           lg, f32([[1.0], [0.0]])),
      case('threshold_1.0', head_spec(thresholds=[0.5, 1.0]), lg,
           f32([[1.0], [0.0]]), source=src + 'test_threshold_too_large'),
      case('threshold_0.0', head_spec(thresholds=[0.0, 0.5]), lg,
           f32([[1.0], [0.0]]), source=src + 'test_threshold_too_small'),
      case('loss_reduction_none', head_spec(loss_reduction='none'), lg,
           f32([[1.0], [0.0]]), source=src + 'test_invalid_loss_reduction'),
      case('loss_reduction_invalid',
           head_spec(loss_reduction='invalid_loss_reduction'), lg,
           f32([[1.0], [0.0]]), source=src + 'test_invalid_loss_reduction'),
      case('loss_fn_missing_labels_arg', head_spec(loss_fn='bad_no_labels'), lg,
           f32([[1.0], [0.0]]), source=src + 'test_loss_fn_arg_labels_missing'),
      case('loss_fn_unexpected_arg', head_spec(loss_fn='bad_extra_arg'), lg,
           f32([[1.0], [0.0]]), source=src + 'test_loss_fn_arg_invalid'),
      case('loss_fn_wrong_shape', head_spec(loss_fn='bad_wrong_shape'),
           [[-10.0], [10.0]], np.array([[1], [0]], np.int64),
           source=src + 'test_eval_create_loss_loss_fn_wrong_shape'),
      case('labels_none', head_spec(), [[45.0], [-41.0]], None,
           source=src + 'test_eval_labels_none'),
      case('labels_shape_2x2', head_spec(), [[45.0], [41.0]],
           f32([[45.0, 44.0], [41.0, 42.0]]),
           source=src + 'test_invalid_labels_shape'),
      case('labels_batch_mismatch', head_spec(), [[0.0], [1.0]],
           f32([[0.0], [1.0], [0.0]]), source=src + 'test_incompatible_labels_shape'),
      case('logits_rank1', head_spec(), [0.5, -0.3], f32([1.0, 0.0])),
      case('logits_last_dim_2', head_spec(), [[45.0, 44.0], [41.0, 42.0]],
           f32([[1.0], [0.0]]), source=src + 'test_invalid_logits_shape'),
      case('weights_wrong_inner_dim', head_spec(weight_column='weights'),
           [[[10.0], [-10.0]], [[12.0], [-12.0]]],
           f32([[[0.0], [0.0]], [[1.0], [1.0]]]), weights=[[1.0], [2.0]],
           source=src + 'test_multi_dim_train_weights_wrong_inner_dim'),
      case('weights_wrong_outer_dim', head_spec(weight_column='weights'),
           [[[10.0], [-10.0]], [[12.0], [-12.0]]],
           f32([[[0.0], [0.0]], [[1.0], [1.0]]]),
           weights=[[[1.0, 1.1], [1.5, 1.6]], [[2.0, 2.1], [2.5, 2.6]]],
           source=src + 'test_multi_dim_train_weights_wrong_outer_dim'),
      case('weight_column_missing_from_features',
           head_spec(weight_column='w'), lg, f32([[1.0], [0.0]])),
  ]


def _err(e):
  return '%s: %s' % (type(e).__name__, e)


def evaluate_error(c):
  h = c['head']
  try:
    head = build_head(h)
  except Exception as e:  # pylint: disable=broad-except
    c['error'] = _err(e)
    c['stage'] = 'constructor'
    return c
  logits, labels, features = np_inputs(c)
  c['stage'] = 'call'
  try:
    c['metrics'] = run_metrics(head, h, [(logits, labels, features)])
    c['error'] = None
  except Exception as e:  # pylint: disable=broad-except
    c['error'] = _err(e)
  try:
    c['loss'] = float(head.loss(labels=labels, logits=logits, features=features,
                                regularization_losses=reg_losses(h)).numpy())
    c['loss_error'] = None
  except Exception as e:  # pylint: disable=broad-except
    c['loss_error'] = _err(e)
  return c


# ---------------------------------------------------------------------------
# What Estimator.evaluate() itself returns (keys and values).
# ---------------------------------------------------------------------------

# golden.json cases run through a real tf.estimator.Estimator: unnamed and
# named heads (upstream test_eval and test_eval_metric_ops_with_head_name),
# regularization, thresholds, vocabulary, multi-dim weights, SUM reduction.
EVALUATE_CASES = [
    'upstream_eval',
    'upstream_eval_metric_ops_with_head_name',
    'upstream_eval_with_regularization_losses',
    'upstream_eval_with_thresholds',
    'named_my_head',
    'named_regularization_weighted',
    'vocab_rank1_weighted',
    'multidim_weights_nD',
    'sum_reduction_weighted',
]
LOGITS_FEATURE = '__golden_logits__'


def estimator_evaluate(c):
  """tf.estimator.Estimator(model_fn).evaluate() on the case's inputs.

  The model_fn returns head.create_estimator_spec with the case's constant
  logits (fed as a feature); one no-op training step (it only increments the
  global step) writes the checkpoint that evaluate() needs. The data is one
  batch, so evaluate()'s `loss` (the mean of the per-batch training losses)
  is head.loss over the whole case. Returns {"name", "evaluate": {key:
  value}} with every key evaluate() reports except global_step.
  """
  h = c['head']
  logits, labels, features = np_inputs(c)

  def input_fn():
    feats = dict(features)
    feats[LOGITS_FEATURE] = logits
    return tf.data.Dataset.from_tensors((feats, labels))

  def model_fn(features, labels, mode):
    global_step = tf.compat.v1.train.get_or_create_global_step()
    return build_head(h).create_estimator_spec(
        features=features, mode=mode, logits=features[LOGITS_FEATURE],
        labels=labels,
        train_op_fn=lambda loss: tf.compat.v1.assign_add(global_step, 1),
        regularization_losses=reg_losses(h))

  with tempfile.TemporaryDirectory() as model_dir:
    estimator = tf.estimator.Estimator(
        model_fn=model_fn, model_dir=model_dir,
        config=tf.estimator.RunConfig(tf_random_seed=0))
    estimator.train(input_fn, max_steps=1)
    result = estimator.evaluate(input_fn)
  assert int(result.pop('global_step')) == 1, c['name']
  values = {k: float(v) for k, v in result.items()}
  # evaluate() = update_metrics' keys plus `loss` (never suffixed), with the
  # same values as the head called directly.
  assert set(values) == set(c['metrics']) | {'loss'}, (c['name'], sorted(values))
  for k, v in values.items():
    expected = c['loss'] if k == 'loss' else c['metrics'][k]
    assert _close(v, expected, 1e-6, 1e-6), (c['name'], k, v, expected)
  return {'name': c['name'], 'source': c['source'], 'evaluate': values}


# ---------------------------------------------------------------------------


def dump_cases(cases):
  lines = [json.dumps(c, sort_keys=True, separators=(',', ':')) for c in cases]
  return '[\n' + ',\n'.join(lines) + '\n]\n'


def main():
  cases = [evaluate(c) for c in generated_cases()]
  for c, exp in upstream_cases():
    evaluate(c)
    check_upstream(c, exp)
    cases.append(c)
  names = [c['name'] for c in cases]
  assert len(names) == len(set(names)), 'duplicate case names'
  for c in cases:
    for k, v in list(c['metrics'].items()) + [('loss', c['loss'])]:
      assert math.isfinite(v), (c['name'], k, v)
  text = dump_cases(cases)
  with open(OUT_PATH, 'w') as f:
    f.write(text)
  errors = [evaluate_error(c) for c in error_specs()]
  for c in errors:
    assert c['error'] is not None or c.get('loss_error') is not None, c['name']
  with open(ERR_PATH, 'w') as f:
    f.write('{"error_cases": ' + dump_cases(errors) + '}\n')
  print('wrote %d cases (%.2f MB) to %s' % (len(cases), len(text) / 1e6,
                                            OUT_PATH))
  print('wrote %d error cases to %s' % (len(errors), ERR_PATH))
  by_name = {c['name']: c for c in cases}
  evaluated = [estimator_evaluate(by_name[name]) for name in EVALUATE_CASES]
  with open(EVALUATE_PATH, 'w') as f:
    f.write('{"evaluate_cases": ' + dump_cases(evaluated) + '}\n')
  print('wrote %d Estimator.evaluate() cases to %s' % (len(evaluated),
                                                      EVALUATE_PATH))


if __name__ == '__main__':
  main()
