"""The head on Beam: a DoFn per record batch, a CombineFn over the data set."""

import collections

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue
import numpy as np
import pyarrow as pa

from head import BadInputError, EvaluatedBatch, LossFnError
from head.arrow import column_values, head_inputs, to_arrow
from head.slicing import SliceStates, SlicingError, slice_states, sliceable_type_problem
from pipeline.errors import DataError
from pipeline.strict_json import to_json

COUNTER_NAMESPACE = "beam_head_eval"
PREDICTIONS_TAG = "predictions"
METRICS_TAG = "metrics"
# Rows whose slice states are made at once (see EvaluateBatch._pend). Making
# and merging the [slices, samples, size] states costs the same for any
# number of rows, and confidence intervals multiply the states by their
# samples, so their chunks are larger (20M rows, 255 slices x 20 jackknife
# groups: 34 s with 512k-row chunks, 20 s with 2M, 16 s with 4M, at a peak
# of 1.4 GB with the bootstrap). The histogram pass goes through a chunk in
# head.slicing.BLOCK_ROWS blocks, so memory stays bounded.
CHUNK_ROWS = 1 << 19
INTERVAL_CHUNK_ROWS = 1 << 22
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


class InvalidRowError(DataError):
    """A bad input row: names the file, the row in it, the column, the reason."""

    def __init__(self, path, row, column, reason, detail=None, count=1):
        self.path, self.row, self.column, self.reason = path, row, column, reason
        detail = f" ({detail})" if detail else ""
        others = count - 1
        more = f"; {others} more row{'s' if others > 1 else ''} of this batch too" if others else ""
        super().__init__(f"{path}, row {row}, column {column}: {reason}{detail}{more}")


class UnreadableFileError(DataError):
    """A file that could not be read (corrupt, truncated, not the format)."""


class EvaluateBatch(beam.DoFn):
    """SourceBatch -> RowCounts, and every (model, spec)'s SliceStates of the batch.

    Labels are encoded, the per-example loss and weights computed for every
    model (a row that is bad for any model is bad for all); bad rows fail
    the job (policy `fail`) or are set aside (policy `reject`) on the
    'rejected' output with their reason. The batch's rows are then sliced
    and every metric of every (model, slice) computed in one histogram pass,
    emitted on the 'metrics' output keyed by (model index, spec index). With
    prediction keys, also emits a pyarrow Table of the head's predictions
    plus the passthrough columns on the 'predictions' output.
    """

    def __init__(self, plan):
        self._plan = plan
        counter = lambda name: beam.metrics.Metrics.counter(COUNTER_NAMESPACE, name)  # noqa: E731
        self._rows_read = counter("rows_read")
        self._rows_evaluated = counter("rows_evaluated")
        self._rows_rejected = counter("rows_rejected")
        self._bytes_read = counter("bytes_read")
        self._unreadable_files = counter("unreadable_files")

    def setup(self):
        self._head = self._plan.head
        self._chunk_rows = INTERVAL_CHUNK_ROWS if self._plan.config.confidence_intervals else CHUNK_ROWS

    def evaluate_models(self, batch):
        """Every model's EvaluatedBatch and logits; BadInputError names the model's column."""
        plan, widths = self._plan, self._plan.widths
        features = {}
        if self._head.loss_fn_wants_features:
            features = {
                name: column_values(batch, name, name, allow_string=True)
                for name in batch.schema.names
            }
        evaluated, all_logits = [], []
        for model in plan.models:
            try:
                logits, labels, weights = head_inputs(
                    batch, model.logits, plan.label_column, plan.weight_column, widths)
                if weights is not None:
                    features[self._head.weight_column] = weights
                evaluated.append(self._head.evaluate_batch(logits, labels, features))
            except BadInputError as e:
                if "(" not in e.column:
                    e.column = plan.column_label(e.column, model)
                raise
            all_logits.append(logits)
        return evaluated, all_logits

    def process(self, source):
        if source.error is not None:
            yield from self._unreadable(source)
            return
        batch = source.batch
        self._rows_read.inc(batch.num_rows)
        self._bytes_read.inc(batch.nbytes)
        # Row numbers in the file of the rows still in `batch`.
        rows_in_file = np.arange(source.first_row, source.first_row + batch.num_rows)
        counts = RowCounts()
        counts.rows_read = batch.num_rows
        evaluated = logits = None
        while batch.num_rows:
            try:
                evaluated, logits = self.evaluate_models(batch)
                break
            except LossFnError as e:
                raise DataError(f"{source.path}, rows {source.first_row} to "
                                f"{source.first_row + source.batch.num_rows - 1}: {e}") from None
            except BadInputError as e:
                column = e.column if "(" in e.column else self._plan.column_label(e.column)
                if not self._plan.config.rejects_rows:
                    e = self._first_bad_row(batch, e)
                    column = e.column if "(" in e.column else self._plan.column_label(e.column)
                    raise InvalidRowError(
                        source.path, int(rows_in_file[e.row]), column, e.reason, e.detail, e.count
                    ) from None
                # Set aside every row with this problem at once, then look
                # again: each pass removes one kind of problem.
                yield beam.pvalue.TaggedOutput(
                    REJECTED_TAG, self._rejected_table(source.path, batch, rows_in_file, e, column)
                )
                counts.rejected[f"{column}: {e.reason}"] += e.count
                batch = batch.filter(pa.array(~e.rows))
                rows_in_file = rows_in_file[~e.rows]
                evaluated = None
        counts.rows_evaluated = batch.num_rows
        self._rows_rejected.inc(counts.rows_read - counts.rows_evaluated)
        self._rows_evaluated.inc(batch.num_rows)
        if evaluated is not None:
            counts.negative_weights = int((evaluated[0].weights < 0).sum())
            yield from self._pend(source.path, batch, rows_in_file, evaluated)
            if self._plan.prediction_keys:
                yield beam.pvalue.TaggedOutput(PREDICTIONS_TAG, self._predictions_table(batch, logits))
        yield counts

    def _first_bad_row(self, batch, error):
        """The problem of the batch's first bad row.

        The head checks one input after another (logits, then labels, ...),
        so `error` is the first row with the first problem checked, maybe
        not the first bad row: the rows before it are checked again until
        none is bad. Each pass stops at a lower row, and the rows before a
        problem's first row do not have that problem: a few passes at most,
        and only when the job is about to fail.
        """
        while error.row > 0:
            try:
                self.evaluate_models(batch.slice(0, error.row))
                return error
            except BadInputError as earlier:
                error = earlier
        return error

    def start_bundle(self):
        self._pending = []  # (slice columns, per-model EvaluatedBatch, interval samples) per batch
        self._pending_rows = 0

    def _pend(self, path, batch, rows_in_file, evaluated):
        """Keeps an evaluated batch until a chunk's rows wait, then emits their slice states.

        The state vectors of every (model, slice[, sample]) are made once per
        chunk, not per batch: with many slices or interval samples they
        outweigh the rows of one batch.
        """
        plan = self._plan
        columns = [c for c in plan.slice_columns if c in batch.schema.names]
        for column in columns:  # named with the file now, before rows of several files mix
            problem = sliceable_type_problem(batch.schema.field(column).type)
            if problem:
                raise DataError(f"{path}: slice column {column!r}: {problem}")
        sliced = batch.select(columns)
        if self._pending and sliced.schema != self._pending[0][0].schema:
            yield from self._flush()
        intervals = plan.config.confidence_intervals
        # Each row's interval samples: a function of (seed, file, row number) only.
        samples = intervals.row_samples(path, rows_in_file) if intervals else {}
        self._pending.append((sliced, evaluated, samples))
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self._chunk_rows:
            yield from self._flush()

    def _flush(self):
        """The pending rows' SliceStates, keyed by (model index, spec index)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        plan = self._plan
        batch = pa.Table.from_batches([p[0] for p in pending]).unify_dictionaries().combine_chunks()
        num_rows = batch.num_rows
        batch = batch.to_batches()[0] if num_rows else pending[0][0]
        # Every model's examples, one model after the other: one copy.
        evaluated = EvaluatedBatch.concatenate([p[1][m] for m in range(len(plan.models)) for p in pending])
        samples = {name: np.concatenate([p[2][name] for p in pending]) for name in ("groups", "counts")
                   if name in pending[0][2]}
        if "num_groups" in pending[0][2]:
            samples["num_groups"] = pending[0][2]["num_groups"]
        del pending  # the batches' own arrays: copied, freed before the histogram pass
        try:
            states = slice_states(
                plan.layout, plan.slicing_specs, evaluated, batch,
                len(evaluated) // (num_rows * len(plan.models)), plan.config.max_slices, **samples)
        except SlicingError as e:  # max_slices exceeded, a feature_values value of the wrong type
            raise DataError(str(e)) from None
        for key, value in states.items():
            yield beam.pvalue.TaggedOutput(METRICS_TAG, (key, value))

    def finish_bundle(self):
        for output in self._flush():
            yield beam.pvalue.TaggedOutput(
                output.tag, WindowedValue(output.value, MIN_TIMESTAMP, [GlobalWindow()]))

    def _unreadable(self, source):
        if not self._plan.config.rejects_rows:
            raise UnreadableFileError(f"{source.path}: {source.error}")
        self._unreadable_files.inc()
        yield beam.pvalue.TaggedOutput(
            REJECTED_TAG,
            pa.table(
                [[source.path], [source.first_row], [None], [f"{UNREADABLE_FILE}: {source.error}"], [None]],
                schema=REJECTED_SCHEMA,
            ),
        )
        counts = RowCounts()
        counts.unreadable.append((source.path, source.first_row, source.error))
        yield counts

    def _rejected_table(self, path, batch, rows_in_file, error, column):
        bad = batch.filter(pa.array(error.rows))
        # The raw values of the rejected rows only (never the hot path), as JSON.
        wanted = [c for c in self._plan.named_columns() if c in bad.schema.names]
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
        arrays = {}
        for model, model_logits in zip(self._plan.models, logits):
            predictions = self._head.predictions(model_logits, self._plan.prediction_keys)
            for key in self._plan.prediction_keys:
                arrays[self._plan.prediction_column(model, key)] = to_arrow(predictions[key])
        for name in self._plan.passthrough:
            arrays[name] = batch.column(batch.schema.get_field_index(name))
        return pa.table(arrays)


def _json_value(value):
    """tf.Example bytes as text; anything else JSON lacks as its repr."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


class RowCounts:
    """Rows read/evaluated/rejected and unreadable files; merged by addition."""

    __slots__ = ("rows_read", "rows_evaluated", "rejected", "negative_weights", "unreadable")

    def __init__(self):
        self.rows_read = 0
        self.rows_evaluated = 0
        self.rejected = collections.Counter()  # "column: reason" -> rows
        self.negative_weights = 0  # examples with a weight < 0 (allowed, but reported)
        self.unreadable = []  # (path, rows read before the error, error)

    def add(self, other):
        self.rows_read += other.rows_read
        self.rows_evaluated += other.rows_evaluated
        self.rejected.update(other.rejected)
        self.negative_weights += other.negative_weights
        self.unreadable.extend(other.unreadable)
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


class RowCountsCombineFn(beam.CombineFn):
    def create_accumulator(self):
        return RowCounts()

    def add_input(self, accumulator, counts):
        return accumulator.add(counts)

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        total = next(accumulators)
        for other in accumulators:
            total.add(other)
        return total

    def extract_output(self, accumulator):
        return accumulator.as_dict()


class SliceStatesCombineFn(beam.CombineFn):
    """Merges the SliceStates of one (model, spec) key by addition (lifted: per bundle first)."""

    def __init__(self, layout, max_slices):
        self._layout = layout
        self._max_slices = max_slices

    def create_accumulator(self):
        return SliceStates(self._layout, self._max_slices)

    def add_input(self, accumulator, states):
        accumulator.spec = accumulator.spec or states.spec
        try:
            return accumulator.merge(states)
        except SlicingError as e:  # more slices than max_slices over the data set
            raise DataError(str(e)) from None

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        total = next(accumulators)
        for other in accumulators:
            self.add_input(total, other)
        return total

    def extract_output(self, accumulator):
        return accumulator
