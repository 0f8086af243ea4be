"""Custom ``loss_fn`` implementations shared by the golden-value generator and the tests.

Each function follows the ``tf.estimator.BinaryClassHead`` ``loss_fn`` contract:
it is called with keyword arguments ``labels=`` and ``logits=`` (and ``features=``
when it declares that argument) and returns the *unreduced* loss with exactly the
logits' shape (``[n, 1]`` or ``[n, D, 1]``).

They are written with plain TensorFlow ops only, so they behave identically when
called by the real TF 2.15 estimator head (with tensors) and when called by
``beam-head-eval`` under a newer TensorFlow with numpy ``float32`` arrays.  The
return value is always a ``tf.Tensor`` (the estimator head requires one); callers
that want numpy can use ``np.asarray(result)``.

``golden.json`` refers to these functions as ``"tests.golden_losses:<name>"``.
"""

import tensorflow as tf

FOCAL_GAMMA = 2.0


def _as_float(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def focal(labels, logits):
    """Binary focal loss with gamma=2 (no alpha balancing).

    loss = CE(labels, logits) * (1 - p_t) ** 2 with p_t = y*p + (1-y)*(1-p).
    """
    labels = _as_float(labels)
    logits = _as_float(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    p = tf.sigmoid(logits)
    p_t = labels * p + (1.0 - labels) * (1.0 - p)
    return ce * tf.pow(1.0 - p_t, FOCAL_GAMMA)


def weighted_by_feature(labels, logits, features):
    """Sigmoid cross entropy scaled per element by ``1 + features['aux']``.

    ``features['aux']`` has the logits' shape without the final dimension
    (``[n]`` or ``[n, D]``) or the full logits shape; it is reshaped to the
    logits' shape.
    """
    labels = _as_float(labels)
    logits = _as_float(logits)
    aux = tf.reshape(_as_float(features['aux']), tf.shape(logits))
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return ce * (1.0 + aux)


def two_minus_label(labels, logits):
    """Loss of 1 for positive and 2 for negative labels (logits only set the shape).

    Stand-in for the constant-returning ``loss_fn`` of the upstream estimator test
    ``test_eval_create_loss_loss_fn`` (labels [[1], [0]] -> loss [[1.], [2.]]).
    """
    labels = _as_float(labels)
    logits = _as_float(logits)
    return 2.0 - labels + tf.zeros_like(logits)


# --- Deliberately invalid loss functions, used only by golden_errors.json ---


def bad_no_labels(logits):
    """Invalid: lacks the required ``labels`` argument."""
    return _as_float(logits)


def bad_extra_arg(labels, logits, name=None):
    """Invalid: has an argument name the head does not allow."""
    del name
    return tf.nn.sigmoid_cross_entropy_with_logits(
        labels=_as_float(labels), logits=_as_float(logits))


def bad_wrong_shape(labels, logits):
    """Invalid: returns a loss without the final logits dimension."""
    return tf.reshape(
        tf.nn.sigmoid_cross_entropy_with_logits(
            labels=_as_float(labels), logits=_as_float(logits)), [-1])
