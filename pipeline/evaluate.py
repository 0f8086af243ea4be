"""The head on Beam: a DoFn per record batch, a CombineFn over the data set."""

import apache_beam as beam
import numpy as np
import pyarrow as pa

from head import BadInputError
from head.arrow import column_values, head_inputs, to_arrow

COUNTER_NAMESPACE = "beam_head_eval"
PREDICTIONS_TAG = "predictions"


class InvalidRowError(ValueError):
    """A bad input row: names the file, the row in it, the column, the reason."""

    def __init__(self, path, row, column, reason, count=1):
        self.path, self.row, self.column, self.reason = path, row, column, reason
        more = f" ({count - 1} more rows of this batch have this problem)" if count > 1 else ""
        super().__init__(f"{path}, row {row}, column {column}: {reason}{more}")


class EvaluateBatch(beam.DoFn):
    """SourceBatch -> EvaluatedBatch (labels encoded, per-example loss, weights).

    With `prediction_keys`, also emits a pyarrow Table of the head's
    predictions plus the `passthrough` columns on the 'predictions' output.
    """

    def __init__(self, config, prediction_keys=(), passthrough=()):
        self._config = config
        self._prediction_keys = tuple(prediction_keys)
        self._passthrough = tuple(passthrough)
        self._rows = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "rows_evaluated")
        self._examples = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "examples_evaluated")

    def setup(self):
        self._head = self._config.build_head()
        self._wants_features = "features" in getattr(self._head, "_loss_fn_args", ())

    def process(self, source):
        columns = self._config.columns
        batch = source.batch
        try:
            logits, labels, weights = head_inputs(
                batch, columns["logits"], columns["label"], columns["weight"]
            )
            features = {}
            if self._wants_features:
                features = {
                    name: column_values(batch, name, name, allow_string=True)
                    for name in batch.schema.names
                }
            if weights is not None:
                features[self._head.weight_column] = weights
            evaluated = self._head.evaluate_batch(logits, labels, features)
        except BadInputError as e:
            raise InvalidRowError(
                source.path, source.first_row + e.row, e.column, e.reason, e.count
            ) from None
        self._rows.inc(batch.num_rows)
        self._examples.inc(len(evaluated))
        yield evaluated
        if self._prediction_keys:
            yield beam.pvalue.TaggedOutput(
                PREDICTIONS_TAG, self._predictions_table(batch, logits)
            )

    def _predictions_table(self, batch, logits):
        predictions = self._head.predictions(logits, self._prediction_keys)
        arrays = {key: to_arrow(predictions[key]) for key in self._prediction_keys}
        for name in self._passthrough:
            arrays[name] = batch.column(batch.schema.get_field_index(name))
        return pa.table(arrays)


class HeadMetricsCombineFn(beam.CombineFn):
    """add_input mirrors update_metrics; accumulators are MetricStates."""

    def __init__(self, config):
        self._config = config
        self._head = None

    def _get_head(self):
        if self._head is None:
            self._head = self._config.build_head()
        return self._head

    def create_accumulator(self):
        return self._get_head().new_state()

    def add_input(self, state, evaluated):
        return self._get_head().add_to_state(state, evaluated)

    def merge_accumulators(self, states):
        states = iter(states)
        merged = next(states)
        for state in states:
            merged.merge(state)
        return merged

    def extract_output(self, state):
        head = self._get_head()
        return {
            "metrics": head.results(state),
            "example_count": int(state.example_count),
            "weighted_example_count": float(state.totals()[0]),
        }

    def __getstate__(self):
        # The head is rebuilt on each worker (loss_fn re-imported there).
        return {"_config": self._config, "_head": None}


def prediction_schema_fields(head, prediction_keys, logits_width, passthrough_fields):
    """Arrow fields of the predictions output, known before the pipeline runs."""
    probe = np.zeros((1, logits_width, 1) if logits_width > 1 else (1, 1), dtype=np.float32)
    sample = head.predictions(probe, prediction_keys)
    fields = [pa.field(key, to_arrow(sample[key]).type) for key in prediction_keys]
    return fields + list(passthrough_fields)
