"""Example custom losses for `head.loss_fn` (see configs/custom_loss.yaml)."""

import numpy as np

# The head allows only labels, logits, features and loss_reduction as
# arguments, so the focusing parameter is a constant.
GAMMA = 2.0


def focal(labels, logits):
    """Focal loss (Lin et al. 2017) on numpy arrays: sigmoid CE * (1 - p_t)^gamma."""
    x = logits.astype(np.float64)
    cross_entropy = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))
    p = 1.0 / (1.0 + np.exp(-x))
    p_t = labels * p + (1 - labels) * (1 - p)
    return (cross_entropy * (1.0 - p_t) ** GAMMA).astype(np.float32)


def weighted_by_feature(labels, logits, features):
    """Sigmoid cross-entropy scaled per example by the input column `importance`.

    A loss_fn that takes `features` gets every input column (as arrays of
    the batch's rows): here one the data must have.
    """
    x = logits.astype(np.float64)
    cross_entropy = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))
    importance = np.asarray(features["importance"], dtype=np.float64).reshape(-1, *([1] * (x.ndim - 1)))
    return (cross_entropy * importance).astype(np.float32)
