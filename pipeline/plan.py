"""The evaluation plan: what a run reads and computes, resolved once before
the pipeline is built and handed to the readers, the DoFn and the combiners.

Resolving it looks at the data set's first row once (`first_row_of_data_set`):
list widths, TFRecord feature types, the predictions' schema, and the
preflight: the input has rows, every column the config names is in it with a
usable type, and the config's loss_fn runs on that row as workers will run
it. Each problem is an InputError (exit 2) before any pipeline is built.
"""

import dataclasses
import datetime
import functools
import importlib.metadata

import numpy as np
import pyarrow as pa

from head import BadInputError, LossFnError, StateLayout
from head.arrow import column_values, input_widths, to_arrow
from head.slicing import sliceable_type_problem
from pipeline.errors import column_label
from pipeline.read import InputError, feature_types, first_batch

VERSIONED_PACKAGES = ("beam-head-eval", "apache-beam", "pyarrow", "numpy", "tfx-bsl")


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    """Everything about a run that is known before it starts.

    `config` is the validated EvalConfig; `models` the evaluated models (one
    named "" without `models:`); `widths` the list lengths every row must
    have (None: no readable first row); `read_columns` the columns to read
    (None: all, for a loss_fn that takes features); `decode_features`
    TFRecord feature types for selective decoding (None: decode all).
    """

    config: object
    paths: tuple
    file_format: str
    models: tuple
    widths: dict = None
    read_columns: tuple = None
    decode_features: dict = None
    dictionary_columns: tuple = ()
    prediction_keys: tuple = ()
    passthrough: tuple = ()
    prediction_schema: object = None
    calibration: bool = False  # keep calibration histograms (for plots)

    @functools.cached_property
    def head(self):
        """The BinaryClassHead, built where it is used (loss_fn imported there)."""
        return self.config.build_head()

    @functools.cached_property
    def layout(self):
        """The metric-state layout every step uses: the head's, plus what outputs need."""
        return StateLayout(self.head.thresholds, calibration=self.calibration)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("head", None)  # rebuilt on each worker
        state.pop("layout", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def label_column(self):
        return self.config.columns["label"]

    @property
    def weight_column(self):
        return self.config.weight_column

    @property
    def slicing_specs(self):
        return self.config.slicing_specs

    @property
    def slice_columns(self):
        """Every column a slicing spec reads, once."""
        return tuple(dict.fromkeys(c for spec in self.slicing_specs for c in spec.columns))

    @property
    def wants_features(self):
        return self.head.loss_fn_wants_features

    def column_label(self, role, model=None):
        """'labels' -> 'labels (label)': the head's role and the input's column."""
        name = {"labels": self.label_column, "weights": self.weight_column}.get(role)
        if role == "logits" and model is not None:
            name = model.logits
        return column_label(role, name)

    def prediction_column(self, model, key):
        """A prediction's column: the key, or 'key/model' when `models:` are configured."""
        return f"{key}/{model.name}" if self.config.models else key

    def named_columns(self):
        """{column: what the config uses it for}, in the order a user reads them."""
        roles = {}
        for model in self.models:
            roles.setdefault(model.logits, f"logits of model {model.name!r}" if model.name else "logits")
        roles.setdefault(self.label_column, "label")
        if self.weight_column:
            roles.setdefault(self.weight_column, "weight")
        for spec in self.slicing_specs:
            for column in spec.columns:
                roles.setdefault(column, f"slicing spec {spec}")
        for column in self.passthrough:
            roles.setdefault(column, "--passthrough")
        return roles


def resolve(config, paths, file_format, prediction_keys=(), passthrough=()):
    """The EvalPlan of a run; InputError when the input cannot serve the config."""
    first_path, first_row = first_row_of_data_set(paths, file_format)
    plan = EvalPlan(config=config, paths=tuple(paths), file_format=file_format,
                    models=config.evaluated_models, prediction_keys=tuple(prediction_keys),
                    passthrough=tuple(passthrough),
                    # plots.json, the report and tfma/ all show calibration curves
                    calibration=config.writes_plots)
    columns = tuple(plan.named_columns())
    if first_row is not None:
        check_columns(plan, first_path, first_row)
    read_columns = None if plan.wants_features else columns
    decode = None
    if file_format == "tfrecord" and first_row is not None and read_columns is not None:
        decode = feature_types(first_row, read_columns)
    schema = predictions_schema(plan, first_row) if prediction_keys else None
    plan = dataclasses.replace(plan, widths=data_set_widths(plan, first_row), read_columns=read_columns,
                               decode_features=decode, prediction_schema=schema,
                               dictionary_columns=dictionary_columns(plan, first_row))
    if first_row is not None:
        check_loss_fn(plan, first_path, first_row)
    return plan


def first_row_of_data_set(paths, file_format):
    """(path, first row) of the first file that has a readable row, or (None, None).

    Unreadable files are left to the pipeline, which names them (or sets
    them aside under `reject`); an input without rows runs to its verdict
    (min_example_count: exit 3).
    """
    for path in paths:
        try:
            batch = first_batch(path, file_format)
        except Exception:  # InputError, ArrowInvalid, OSError: as SplitParquetFile catches
            continue
        if batch is not None:
            return path, batch
    return None, None


def check_columns(plan, path, first_row):
    """Preflight: every column the config names is in the data with a usable type.

    Parquet files have a schema, so every named column is checked; a
    tf.Example row lists only the features it holds, so there only the
    columns every row must have (logits, label, weight) are.
    """
    roles = plan.named_columns()
    required = roles if plan.file_format == "parquet" else {
        c: r for c, r in roles.items()
        if c in {m.logits for m in plan.models} | {plan.label_column, plan.weight_column}}
    names = first_row.schema.names
    for column, role in required.items():
        if column not in names:
            raise InputError(
                f"column {column!r} ({role}) is not in the input: {path} has columns {names}")
    for spec in plan.slicing_specs:
        for column in spec.columns:
            if column in names:
                problem = sliceable_type_problem(first_row.schema.field(column).type,
                                                 bucketed=spec.boundaries(column) is not None)
                if problem:
                    raise InputError(f"column {column!r} (slicing spec {spec}): {problem}")


def check_loss_fn(plan, path, first_row):
    """Preflight: the config's loss_fn runs on the data set's first row, as workers run it.

    A loss_fn that raises (a feature the files lack, a bug) or returns the
    wrong shape would fail every worker: found here, named in one line. A
    bad first row is left to the pipeline and the invalid_rows policy.
    """
    if plan.config.head.get("loss_fn") is None:
        return
    from pipeline.evaluate import EvaluateBatch  # the DoFn's own evaluation of a batch

    evaluate = EvaluateBatch(plan)
    evaluate.setup()
    try:
        evaluate.evaluate_models(first_row)
    except LossFnError as e:
        columns = f"; {path} has columns {first_row.schema.names}" if isinstance(e.__cause__, KeyError) else ""
        raise InputError(f"{e} (on the first row of {path}){columns}") from None
    except BadInputError:
        pass


def dictionary_columns(plan, first_row):
    """Parquet string columns read only for slicing: read dictionary-encoded."""
    if plan.file_format != "parquet" or first_row is None:
        return ()
    other_roles = {m.logits for m in plan.models} | {plan.label_column, plan.weight_column}
    other_roles |= set(plan.passthrough)
    names = first_row.schema.names
    return tuple(
        column for column, role in plan.named_columns().items()
        if role.startswith("slicing spec") and column not in other_roles and column in names
        and (pa.types.is_string(first_row.schema.field(column).type)
             or pa.types.is_large_string(first_row.schema.field(column).type))
    )


def data_set_widths(plan, first_row):
    """The list lengths every row must have, from the data set's first row.

    None when there is no readable row (nothing to check) or the first row
    is itself bad: it is named when its batch is evaluated.
    """
    if first_row is None:
        return None
    try:
        return input_widths(first_row, plan.models[0].logits, plan.weight_column)
    except BadInputError:
        return None


def predictions_schema(plan, first_row):
    """Arrow schema of the predictions output, from the data set's first row."""
    if first_row is None:
        raise InputError("no input file has a readable row to take the predictions' schema from")
    for column in plan.passthrough:
        if column not in first_row.schema.names:
            raise InputError(f"--passthrough column {column!r} is not in the input")
    logits = column_values(first_row, plan.models[0].logits, "logits")
    width = logits.shape[1] if logits.ndim == 2 else 1
    fields = []
    for model in plan.models:
        for field in prediction_fields(plan.head, plan.prediction_keys, width):
            fields.append(field.with_name(plan.prediction_column(model, field.name)))
    return pa.schema(fields + [first_row.schema.field(c) for c in plan.passthrough])


def prediction_fields(head, prediction_keys, logits_width):
    """Arrow fields of the head's predictions, known before the pipeline runs."""
    probe = np.zeros((1, logits_width, 1) if logits_width > 1 else (1, 1), dtype=np.float32)
    sample = head.predictions(probe, prediction_keys)
    return [pa.field(key, to_arrow(sample[key]).type) for key in prediction_keys]


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_info(input_pattern, file_format, config, runner, label=None):
    """The `run` section of metrics.json (the commit step adds `seconds`)."""
    return {
        "input": input_pattern,
        "format": file_format,
        "config": config.as_dict(),
        "runner": runner,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "label": label,
        "versions": {name: _version(name) for name in VERSIONED_PACKAGES},
    }
