"""The head on Beam: a DoFn per record batch, a CombineFn over the data set."""

import collections
import typing

import apache_beam as beam
import numpy as np
import pyarrow as pa

from head import BadInputError
from head.arrow import column_values, head_inputs, to_arrow
from pipeline.output import to_json

COUNTER_NAMESPACE = "beam_head_eval"
PREDICTIONS_TAG = "predictions"
REJECTED_TAG = "rejected"

REJECTED_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("row", pa.int64()),  # index within the file; for an unreadable file, where reading stopped
        ("column", pa.string()),
        ("reason", pa.string()),
        ("values", pa.string()),  # JSON of the row's logits/label/weight as read
    ]
)
UNREADABLE_FILE = "unreadable file"


class InvalidRowError(ValueError):
    """A bad input row: names the file, the row in it, the column, the reason."""

    def __init__(self, path, row, column, reason, detail=None, count=1):
        self.path, self.row, self.column, self.reason = path, row, column, reason
        detail = f" ({detail})" if detail else ""
        others = count - 1
        more = f"; {others} more row{'s' if others > 1 else ''} of this batch too" if others else ""
        super().__init__(f"{path}, row {row}, column {column}: {reason}{detail}{more}")


class UnreadableFileError(ValueError):
    """A file that could not be read (corrupt, truncated, not the format)."""


class BatchOutcome(typing.NamedTuple):
    """What one source batch contributed: evaluated examples and row counts."""

    evaluated: object  # head.EvaluatedBatch, or None when no row survived
    rows_read: int
    rows_evaluated: int
    rejected: dict  # "column: reason" -> rows
    negative_weights: int  # examples with a weight < 0 (allowed, but reported)
    unreadable: tuple  # ((path, first_row, error),) for a file that failed to read


class EvaluateBatch(beam.DoFn):
    """SourceBatch -> BatchOutcome (labels encoded, per-example loss, weights).

    Bad rows fail the job (policy `fail`) or are set aside (policy `reject`)
    on the 'rejected' output with their reason. With `prediction_keys`, also
    emits a pyarrow Table of the head's predictions plus the `passthrough`
    columns on the 'predictions' output.
    """

    def __init__(self, config, widths=None, prediction_keys=(), passthrough=()):
        self._config = config
        self._widths = widths  # the data set's list lengths, from its first row
        self._prediction_keys = tuple(prediction_keys)
        self._passthrough = tuple(passthrough)
        counter = lambda name: beam.metrics.Metrics.counter(COUNTER_NAMESPACE, name)  # noqa: E731
        self._rows_read = counter("rows_read")
        self._rows_evaluated = counter("rows_evaluated")
        self._rows_rejected = counter("rows_rejected")
        self._bytes_read = counter("bytes_read")
        self._unreadable_files = counter("unreadable_files")

    def setup(self):
        self._head = self._config.build_head()
        self._wants_features = "features" in getattr(self._head, "_loss_fn_args", ())
        columns = self._config.columns
        self._roles = {"logits": columns["logits"], "labels": columns["label"], "weights": columns["weight"]}

    def _column(self, role):
        """'labels' -> 'labels (label)': the head's role and the input's column."""
        name = self._roles.get(role)
        return f"{role} ({name})" if name else role

    def _evaluate(self, batch):
        columns = self._config.columns
        logits, labels, weights = head_inputs(
            batch, columns["logits"], columns["label"], columns["weight"], self._widths
        )
        features = {}
        if self._wants_features:
            features = {
                name: column_values(batch, name, name, allow_string=True)
                for name in batch.schema.names
            }
        if weights is not None:
            features[self._head.weight_column] = weights
        return self._head.evaluate_batch(logits, labels, features), logits

    def process(self, source):
        if source.error is not None:
            yield from self._unreadable(source)
            return
        batch = source.batch
        self._rows_read.inc(batch.num_rows)
        self._bytes_read.inc(batch.nbytes)
        # Row numbers in the file of the rows still in `batch`.
        rows_in_file = np.arange(source.first_row, source.first_row + batch.num_rows)
        rejected = collections.Counter()
        evaluated = logits = None
        while batch.num_rows:
            try:
                evaluated, logits = self._evaluate(batch)
                break
            except BadInputError as e:
                column = e.column if "(" in e.column else self._column(e.column)
                if not self._config.rejects_rows:
                    raise InvalidRowError(
                        source.path, int(rows_in_file[e.row]), column, e.reason, e.detail, e.count
                    ) from None
                # Set aside every row with this problem at once, then look
                # again: each pass removes one kind of problem.
                yield beam.pvalue.TaggedOutput(
                    REJECTED_TAG, self._rejected_table(source.path, batch, rows_in_file, e, column)
                )
                rejected[f"{column}: {e.reason}"] += e.count
                batch = batch.filter(pa.array(~e.rows))
                rows_in_file = rows_in_file[~e.rows]
        rows_rejected = sum(rejected.values())
        self._rows_rejected.inc(rows_rejected)
        self._rows_evaluated.inc(batch.num_rows)
        negative = int((evaluated.weights < 0).sum()) if evaluated is not None else 0
        yield BatchOutcome(evaluated, batch.num_rows + rows_rejected, batch.num_rows,
                           dict(rejected), negative, ())
        if self._prediction_keys and evaluated is not None:
            yield beam.pvalue.TaggedOutput(
                PREDICTIONS_TAG, self._predictions_table(batch, logits)
            )

    def _unreadable(self, source):
        if not self._config.rejects_rows:
            raise UnreadableFileError(f"{source.path}: {source.error}")
        self._unreadable_files.inc()
        yield beam.pvalue.TaggedOutput(
            REJECTED_TAG,
            pa.table(
                [[source.path], [source.first_row], [None], [f"{UNREADABLE_FILE}: {source.error}"], [None]],
                schema=REJECTED_SCHEMA,
            ),
        )
        yield BatchOutcome(None, 0, 0, {}, 0, ((source.path, source.first_row, source.error),))

    def _rejected_table(self, path, batch, rows_in_file, error, column):
        bad = batch.filter(pa.array(error.rows))
        # The raw values of the rejected rows only (never the hot path), as JSON.
        wanted = [c for c in self._roles.values() if c and c in bad.schema.names]
        values = [to_json(row, default=_json_value) for row in bad.select(wanted).to_pylist()]
        count = bad.num_rows
        return pa.table(
            [
                [path] * count,
                rows_in_file[error.rows],
                [column] * count,
                [error.reason] * count,
                values,
            ],
            schema=REJECTED_SCHEMA,
        )

    def _predictions_table(self, batch, logits):
        predictions = self._head.predictions(logits, self._prediction_keys)
        arrays = {key: to_arrow(predictions[key]) for key in self._prediction_keys}
        for name in self._passthrough:
            arrays[name] = batch.column(batch.schema.get_field_index(name))
        return pa.table(arrays)


def _json_value(value):
    """tf.Example bytes as text; anything else JSON lacks as its repr."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


class RowCounts:
    """Rows read/evaluated/rejected, merged by addition."""

    __slots__ = ("rows_read", "rows_evaluated", "rejected", "negative_weights", "unreadable")

    def __init__(self):
        self.rows_read = 0
        self.rows_evaluated = 0
        self.rejected = collections.Counter()
        self.negative_weights = 0
        self.unreadable = []

    def add(self, counts):
        """Adds a BatchOutcome's or another RowCounts' counts (same fields)."""
        self.rows_read += counts.rows_read
        self.rows_evaluated += counts.rows_evaluated
        self.rejected.update(counts.rejected)
        self.negative_weights += counts.negative_weights
        self.unreadable.extend(counts.unreadable)
        return self

    def as_dict(self):
        return {
            "rows_read": self.rows_read,
            "rows_evaluated": self.rows_evaluated,
            "rows_rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "negative_weight_examples": self.negative_weights,
            "unreadable_files": [
                {"file": path, "rows_read_before_error": row, "error": error}
                for path, row, error in sorted(self.unreadable)
            ],
        }


class HeadMetricsCombineFn(beam.CombineFn):
    """add_input mirrors update_metrics; accumulators are (MetricState, RowCounts)."""

    def __init__(self, config):
        self._config = config
        self._head = None

    def _get_head(self):
        if self._head is None:
            self._head = self._config.build_head()
        return self._head

    def create_accumulator(self):
        return self._get_head().new_state(), RowCounts()

    def add_input(self, accumulator, outcome):
        state, counts = accumulator
        if outcome.evaluated is not None:
            self._get_head().add_to_state(state, outcome.evaluated)
        counts.add(outcome)
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        state, counts = next(accumulators)
        for other_state, other_counts in accumulators:
            state.merge(other_state)
            counts.add(other_counts)
        return state, counts

    def extract_output(self, accumulator):
        state, counts = accumulator
        return {
            "metrics": self._get_head().results(state),
            "example_count": int(state.example_count),
            "weighted_example_count": state.weighted_example_count,
            **counts.as_dict(),
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
