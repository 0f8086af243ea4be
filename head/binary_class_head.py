"""BinaryClassHead: the evaluation semantics of tf.estimator.BinaryClassHead.

A numpy re-implementation of tensorflow_estimator 2.15's
`head/binary_class_head.py` (and the parts of `base_head.py` it uses): same
constructor arguments, validation errors, label processing, loss, predictions
and metric keys. It has no TensorFlow or Beam dependency; `loss_fn` may use
TensorFlow ops if the user wants.
"""

import functools
import importlib
import inspect

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from head.metrics import (
    SUM,
    SUM_OVER_BATCH_SIZE,
    EvaluatedBatch,
    MetricState,
    StateLayout,
    logistic,
    metric_values,
)

# tf.losses.Reduction.all(); AUTO means SUM_OVER_BATCH_SIZE for the head.
_REDUCTIONS = ("auto", "none", SUM, SUM_OVER_BATCH_SIZE)

PREDICTION_KEYS = (
    "logits",
    "logistic",
    "probabilities",
    "class_ids",
    "classes",
    "all_class_ids",
    "all_classes",
)

_LOSS_FN_ARGS = ("labels", "logits", "features", "loss_reduction")


class BadInputError(ValueError):
    """An input value the head rejects, located within its batch.

    `column` names the input ('logits', 'labels', 'weights'), `rows` is a
    boolean mask over the batch (axis 0) of every row with this problem and
    `row` the first of them. `reason` is the head's own wording where it has
    one and is the same for every such row; `detail` describes the first row.
    """

    def __init__(self, column, rows, reason, detail=None):
        self.column = column
        self.rows = np.asarray(rows, dtype=bool)
        self.row = int(np.argmax(self.rows))
        self.count = int(self.rows.sum())
        self.reason = reason
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"{column}, row {self.row}: {reason}{suffix}")


class LossFnError(ValueError):
    """A loss_fn that raised, or returned something other than a loss per logit.

    The message names the function and the problem (a problem of the
    function, not of a row: non-finite results are BadInputError rows).
    """


def loss_fn_name(fn):
    """'module:function' of a loss_fn, as a config names it."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}:{name}" if module else name


def _fn_args(fn):
    """Argument names as tensorflow's function_utils.fn_args sees them.

    Positional-or-keyword arguments only (not keyword-only ones); for a
    functools.partial, without the arguments it already binds; for a bound
    method or a callable object, without `self`.
    """
    if isinstance(fn, functools.partial):
        args = _fn_args(fn.func)[len(fn.args):]
        return tuple(a for a in args if a not in (fn.keywords or {}))
    if not inspect.isfunction(fn) and not inspect.ismethod(fn) and hasattr(fn, "__call__"):
        fn = fn.__call__
    args = inspect.getfullargspec(fn).args
    if inspect.ismethod(fn) and args:
        args = args[1:]
    return tuple(args)


def import_loss_fn(path):
    """Resolves a 'module:function' (or 'module.function') path."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"loss_fn must be 'module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"loss_fn {path!r}: cannot import module {module_name!r}: {e}") from e
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"loss_fn {path!r}: module {module_name!r} has no {attr!r}") from None
    if not callable(fn):
        raise ValueError(f"loss_fn {path!r} is not callable")
    return fn


def validate_loss_fn_args(loss_fn):
    """base_head.validate_loss_fn_args: labels and logits required."""
    args = _fn_args(loss_fn)
    for required in ("labels", "logits"):
        if required not in args:
            raise ValueError(
                f"loss_fn must contain argument: {required}. Given arguments: {args}"
            )
    invalid = [a for a in args if a not in _LOSS_FN_ARGS]
    if invalid:
        raise ValueError(f"loss_fn has unexpected args: {invalid}")


def _bad_rows(mask):
    """Rows (axis 0) holding any True of an elementwise mask."""
    return mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim > 1 else mask


def _first_value(values, mask):
    return values[mask][0]


class BinaryClassHead:
    """Single-label binary classification head (sigmoid cross-entropy).

    Arguments have the names, meanings and validation errors of
    `tf.estimator.BinaryClassHead`, plus `regularization_losses`: the list of
    scalar losses passed to `update_metrics`/`loss` (their sum is added to
    `loss` and reported as `regularization_loss`). `loss_fn` may be a callable
    or a 'module:function' path.
    """

    logits_dimension = 1

    def __init__(
        self,
        weight_column=None,
        thresholds=None,
        label_vocabulary=None,
        loss_reduction=SUM_OVER_BATCH_SIZE,
        loss_fn=None,
        name=None,
        regularization_losses=None,
    ):
        if label_vocabulary is not None and not isinstance(label_vocabulary, (list, tuple)):
            raise ValueError(
                "label_vocabulary should be a list or a tuple. "
                f"Given type: {type(label_vocabulary)}"
            )
        thresholds = tuple(thresholds) if thresholds else tuple()
        for threshold in thresholds:
            if threshold <= 0.0 or threshold >= 1.0:
                raise ValueError("thresholds not in (0, 1): {}.".format((thresholds,)))
        if loss_reduction not in _REDUCTIONS or loss_reduction == "none":
            valid = ", ".join(r for r in _REDUCTIONS if r != "none")
            raise ValueError(
                f"Invalid loss_reduction: {loss_reduction}. "
                f"See `tf.losses.Reduction` for valid options (a head takes: {valid})."
            )
        if isinstance(loss_fn, str):
            loss_fn = import_loss_fn(loss_fn)
        if loss_fn:
            validate_loss_fn_args(loss_fn)
        self.weight_column = weight_column
        self.thresholds = thresholds
        self.label_vocabulary = tuple(label_vocabulary) if label_vocabulary is not None else None
        self.loss_reduction = SUM_OVER_BATCH_SIZE if loss_reduction == "auto" else loss_reduction
        self.loss_fn = loss_fn
        self.name = name
        self.regularization_losses = (
            tuple(float(x) for x in regularization_losses) if regularization_losses else None
        )
        # Keras casts each threshold to the predictions' dtype before comparing.
        self.layout = StateLayout(thresholds)
        self._loss_fn_args = _fn_args(loss_fn) if loss_fn else ()

    @property
    def loss_fn_wants_features(self):
        """True when loss_fn takes `features` (every input column is then read)."""
        return "features" in self._loss_fn_args

    # ---- keys ---------------------------------------------------------------

    def metric_key(self, key):
        """A metric's key as Estimator.evaluate() reports it.

        update_metrics' keys carry `/name`; `loss` is the estimator's own
        LOSS_METRIC_KEY and is never suffixed.
        """
        return f"{key}/{self.name}" if self.name and key != "loss" else key

    def metric_keys(self):
        """Every key of `results`, in the order the head's `metrics()` makes them."""
        return list(self.metric_arrays(np.zeros(self.layout.size)))

    # ---- per-example semantics ---------------------------------------------

    def check_logits(self, logits):
        """check_logits_final_dim, plus: every logit must be finite."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim < 2:
            raise ValueError(
                f"logits must have rank at least 2.  Received rank {logits.ndim}, "
                f"shape {logits.shape}"
            )
        if logits.shape[-1] != self.logits_dimension:
            raise ValueError(
                f"logits shape must be [D0, D1, ... DN, logits_dimension], got {logits.shape}."
            )
        bad = ~np.isfinite(logits)
        if bad.any():
            value = _first_value(logits, bad)
            raise BadInputError("logits", _bad_rows(bad), "logits must be finite", f"logit is {value}")
        return logits

    def process_labels(self, labels, logits_shape):
        """Labels in the head's float32 id space, shaped like the logits.

        Mirrors `_processed_labels`: reshape [D0..DN] to [D0..DN, 1], map
        through the vocabulary, cast to float32, check the range [0, 1].
        """
        if isinstance(labels, (pa.Array, pa.ChunkedArray)):
            labels = labels.to_numpy(zero_copy_only=False)
        labels = np.asarray(labels)
        if labels.ndim == len(logits_shape) - 1:
            labels = labels[..., np.newaxis]
        if labels.shape != tuple(logits_shape):
            raise ValueError(
                "labels shape must be [D0, D1, ... DN, 1]. "
                f"Given labels shape: {labels.shape}, logits shape: {tuple(logits_shape)}"
            )
        is_string = labels.dtype.kind in "OUS"
        if self.label_vocabulary is not None:
            if not is_string:
                raise BadInputError(
                    "labels", np.ones(labels.shape[0], dtype=bool),
                    "labels must be strings from label_vocabulary",
                    f"labels have type {labels.dtype}",
                )
            flat = pa.array(labels.ravel(), type=pa.string())
            ids = pc.index_in(flat, value_set=pa.array(self.label_vocabulary, pa.string()))
            ids = ids.fill_null(-1).to_numpy().reshape(labels.shape)
            missing = ids < 0
            if missing.any():
                value = _first_value(labels, missing)
                if isinstance(value, bytes):  # tf.Example bytes_list
                    value = value.decode("utf-8", "replace")
                raise BadInputError(
                    "labels", _bad_rows(missing), "Labels must be >= 0",
                    f"label {value!r} is not in label_vocabulary {list(self.label_vocabulary)}",
                )
            labels = ids
        elif is_string:
            raise BadInputError(
                "labels", np.ones(labels.shape[0], dtype=bool),
                "labels are strings but label_vocabulary is not set",
            )
        labels = labels.astype(np.float32)
        # check_label_range: `<= 1` first (NaN fails it), then `>= 0`.
        too_big = ~(labels <= 1)
        if too_big.any():
            value = _first_value(labels, too_big)
            raise BadInputError("labels", _bad_rows(too_big), "Labels must be <= 2 - 1", f"label is {value}")
        negative = labels < 0
        if negative.any():
            value = _first_value(labels, negative)
            raise BadInputError("labels", _bad_rows(negative), "Labels must be >= 0", f"label is {value}")
        return labels

    def weights(self, features, logits_shape):
        """get_weights_and_check_match_logits: float32 weights shaped like logits.

        Weights of shape [D0..DN] or [D0..DN, 1] as the head accepts; for
        multi-dimensional logits also one weight per row ([D0] or [D0, 1]),
        broadcast over the row's elements.
        """
        if self.weight_column is None:
            return np.ones(logits_shape, dtype=np.float32)
        if features is None or self.weight_column not in features:
            raise ValueError(f"weight_column {self.weight_column!r} is not in features")
        weights = np.asarray(features[self.weight_column])
        if weights.dtype.kind not in "fiub":
            raise ValueError(
                f"Weight column should be castable to float. Given dtype: {weights.dtype}"
            )
        weights = weights.astype(np.float32)
        logits_shape = tuple(logits_shape)
        if weights.shape == logits_shape[:-1]:
            weights = weights[..., np.newaxis]
        elif len(logits_shape) > 2 and weights.shape in ((logits_shape[0],), (logits_shape[0], 1)):
            weights = weights.reshape((logits_shape[0],) + (1,) * (len(logits_shape) - 1))
        elif weights.shape != logits_shape[:-1] + (1,):
            raise ValueError(
                "weights shape must be [D0, D1, ... DN] or [D0, D1, ... DN, 1], "
                f"logits_shape: {logits_shape}. weights_shape: {weights.shape}."
            )
        bad = ~np.isfinite(weights)
        if bad.any():
            value = _first_value(weights, bad)
            raise BadInputError("weights", _bad_rows(bad), "weights must be finite", f"weight is {value}")
        return np.broadcast_to(weights, logits_shape)

    def unweighted_loss(self, labels, logits, features=None):
        """sigmoid_cross_entropy_with_logits, or loss_fn, per example."""
        if self.loss_fn is None:
            x = logits.astype(np.float64)
            z = labels.astype(np.float64)
            # max(x, 0) - x * z + log(1 + exp(-|x|)): TF's stable formulation.
            loss = np.maximum(x, 0.0) - x * z + np.log1p(np.exp(-np.abs(x)))
            return loss.astype(np.float32)
        kwargs = {}
        if "features" in self._loss_fn_args:
            kwargs["features"] = features if features is not None else {}
        if "loss_reduction" in self._loss_fn_args:
            kwargs["loss_reduction"] = self.loss_reduction
        name = loss_fn_name(self.loss_fn)
        try:
            loss = self.loss_fn(labels=labels, logits=logits, **kwargs)
        except Exception as e:  # the user's function: its problem in one line, named
            detail = " ".join(str(e).split())
            raise LossFnError(f"loss_fn {name} raised {type(e).__name__}: {detail}") from e
        try:
            loss = np.asarray(loss, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise LossFnError(f"loss_fn {name} returned {type(loss).__name__}, not an array of losses: {e}") from e
        if loss.shape != logits.shape:
            raise LossFnError(
                f"loss_fn {name} returned shape {loss.shape} for logits of shape {logits.shape}: "
                "loss_fn must return Tensor of shape [D0, D1, ... DN, 1] (one loss per logit, unreduced)"
            )
        bad = ~np.isfinite(loss)
        if bad.any():
            raise BadInputError("loss", _bad_rows(bad), f"loss_fn {name} returned a non-finite loss",
                                f"loss is {_first_value(loss, bad)}")
        return loss

    def evaluate_batch(self, logits, labels, features=None):
        """Labels encoded, loss and weights of one batch: an EvaluatedBatch."""
        logits = self.check_logits(logits)
        labels = self.process_labels(labels, logits.shape)
        weights = self.weights(features, logits.shape)
        loss = self.unweighted_loss(labels, logits, features)
        return EvaluatedBatch(
            labels=labels.ravel(),
            logits=logits.ravel(),
            logistic=logistic(logits).ravel(),
            unweighted_loss=loss.ravel(),
            weights=np.ascontiguousarray(weights).ravel(),
        )

    # ---- metrics -----------------------------------------------------------

    def new_state(self, shape=()):
        """An empty MetricState; `shape` stacks states (e.g. one per slice)."""
        return MetricState(self.layout, shape)

    def add_to_state(self, state, evaluated):
        """update_metrics for one EvaluatedBatch."""
        return state.add(self.layout.sums(evaluated)[0])

    def update_metrics(self, state, features, logits, labels):
        """update_metrics: evaluates a batch and adds it to `state`."""
        return self.add_to_state(state, self.evaluate_batch(logits, labels, features))

    def metric_arrays(self, totals, layout=None):
        """{metric key: array} from state vectors of any leading shape [..., size].

        `layout` is the states' (default: the head's own; one with more
        parts, e.g. calibration for plots, gives the same metrics).
        """
        values = metric_values(layout or self.layout, totals, self.loss_reduction,
                               self.regularization_losses)
        return {self.metric_key(k): v for k, v in values.items()}

    def results(self, state):
        """Every metric key -> float, as if update_metrics had seen all data.

        `loss` is the training loss of the whole data set under
        loss_reduction (plus the regularization losses).
        """
        return {k: float(v) for k, v in self.metric_arrays(state.totals()).items()}

    def loss(self, labels, logits, features=None):
        """head.loss over one batch: regularized training loss as a float."""
        state = self.update_metrics(self.new_state(), features, logits, labels)
        return self.results(state)["loss"]

    # ---- predictions ---------------------------------------------------------

    def predictions(self, logits, keys=None):
        """head.predictions: a dict of numpy arrays for the requested keys."""
        if keys:
            for key in keys:
                if key not in PREDICTION_KEYS:
                    raise ValueError(
                        f"Prediction key must be in PredictionKeys, given: {key}."
                        f"Valid prediction keys include {list(PREDICTION_KEYS)}."
                    )
        else:
            keys = PREDICTION_KEYS
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim < 2 or logits.shape[-1] != 1:
            raise ValueError(
                f"logits shape must be [D0, D1, ... DN, logits_dimension], got {logits.shape}."
            )
        out = {}
        if "logits" in keys:
            out["logits"] = logits
        p = logistic(logits)
        if "logistic" in keys:
            out["logistic"] = p
        if "probabilities" in keys:
            # softmax([0, x]) = [1 - sigmoid(x), sigmoid(x)].
            out["probabilities"] = np.concatenate([1.0 - p, p], axis=-1).astype(np.float32)
        # argmax([0, x]) picks the first on a tie: class 1 only when x > 0.
        class_ids = (logits > 0).astype(np.int64)
        if "class_ids" in keys:
            out["class_ids"] = class_ids
        classes = np.array(self.label_vocabulary or ("0", "1"), dtype=object)
        if "classes" in keys:
            out["classes"] = classes[class_ids]
        batch_size = logits.shape[0]
        if "all_class_ids" in keys:
            out["all_class_ids"] = np.tile(np.arange(2, dtype=np.int32), (batch_size, 1))
        if "all_classes" in keys:
            out["all_classes"] = np.tile(classes, (batch_size, 1))
        return out
