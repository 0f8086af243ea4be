"""The semantics of tf.estimator.BinaryClassHead in numpy: no Beam, no TF.

    from head import BinaryClassHead
    h = BinaryClassHead(weight_column="w", thresholds=[0.5])
    state = h.update_metrics(h.new_state(), {"w": w}, logits, labels)
    h.results(state)   # {'accuracy': ..., 'auc': ..., 'loss': ...}
"""

from head.binary_class_head import (
    PREDICTION_KEYS,
    SUM,
    SUM_OVER_BATCH_SIZE,
    BadInputError,
    BinaryClassHead,
    LossFnError,
    import_loss_fn,
)
from head.metrics import EvaluatedBatch, MetricState, StateLayout, metric_values

__all__ = [
    "BadInputError",
    "BinaryClassHead",
    "LossFnError",
    "EvaluatedBatch",
    "MetricState",
    "PREDICTION_KEYS",
    "SUM",
    "SUM_OVER_BATCH_SIZE",
    "StateLayout",
    "import_loss_fn",
    "metric_values",
]
