"""Assembles the evaluation pipeline: read -> evaluate -> combine -> write."""

import datetime
import importlib.metadata
import uuid

import apache_beam as beam
import pyarrow as pa

from pipeline import output
from pipeline.evaluate import (
    PREDICTIONS_TAG,
    REJECTED_SCHEMA,
    REJECTED_TAG,
    EvaluateBatch,
    HeadMetricsCombineFn,
    prediction_schema_fields,
)
from head import BadInputError
from head.arrow import column_values, input_widths
from pipeline.read import (
    DEFAULT_BATCH_SIZE,
    InputError,
    ReadBatches,
    feature_types,
    first_batch,
)


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_info(input_pattern, file_format, config, runner):
    return {
        "input": input_pattern,
        "format": file_format,
        "config": config.as_dict(),
        "runner": runner,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": {
            name: _version(name)
            for name in ("beam-head-eval", "apache-beam", "pyarrow", "numpy", "tfx-bsl")
        },
    }


def build(
    p,
    paths,
    file_format,
    config,
    output_dir,
    info,
    prediction_keys=(),
    passthrough=(),
    batch_size=DEFAULT_BATCH_SIZE,
    run_id=None,
):
    """Adds the evaluation to pipeline `p`; returns the staging directory.

    Sink outputs (predictions, rejected rows) are written under a staging
    directory; the last step checks the counts, moves them into output_dir
    and writes metrics.json, so a failed run changes nothing there.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    staging = output.staging_dir(output_dir, run_id)
    columns = [config.columns["logits"], config.columns["label"]]
    if config.weight_column:
        columns.append(config.weight_column)
    columns += [c for c in passthrough if c not in columns]
    needs_all = "features" in getattr(config.build_head(), "_loss_fn_args", ())
    first_row = first_row_of_data_set(paths, file_format)
    widths = data_set_widths(first_row, config)
    decoded_features = None
    if file_format == "tfrecord" and first_row is not None and not needs_all:
        decoded_features = feature_types(first_row, columns)
    batches = p | "Read" >> ReadBatches(
        paths, file_format, None if needs_all else columns, batch_size, decoded_features
    )
    evaluated = batches | "Evaluate" >> beam.ParDo(
        EvaluateBatch(config, widths, prediction_keys, passthrough)
    ).with_outputs(PREDICTIONS_TAG, REJECTED_TAG, main="outcomes")

    written = []
    if prediction_keys:
        schema = predictions_schema(first_row, config, prediction_keys, passthrough)
        written.append(_write_parquet(evaluated[PREDICTIONS_TAG], staging, "predictions", schema))
    if config.rejects_rows:
        written.append(_write_parquet(evaluated[REJECTED_TAG], staging, "rejected", REJECTED_SCHEMA))
    staged_files = (
        written | "StagedFiles" >> beam.Flatten() if written else p | "NoStagedFiles" >> beam.Create([])
    )

    max_fraction = config.invalid_rows["max_fraction"]
    _ = (
        evaluated.outcomes
        | "Combine" >> beam.CombineGlobally(HeadMetricsCombineFn(config))
        | "Document" >> beam.Map(output.metrics_document, info)
        | "Commit" >> beam.Map(
            output.commit, output_dir, staging, max_fraction,
            staged_files=beam.pvalue.AsList(staged_files),
        )
    )
    return staging


def _write_parquet(tables, staging, name, schema):
    return tables | f"Write{name.title()}" >> beam.io.WriteToParquetBatched(
        output.join(staging, name, name), schema=schema, file_name_suffix=".parquet"
    )


def first_row_of_data_set(paths, file_format):
    """The first row of the first file that has a readable one, or None."""
    for path in paths:
        try:
            batch = first_batch(path, file_format)
        except Exception:  # InputError, ArrowInvalid, OSError: as SplitParquetFile catches
            continue  # unreadable: reported (or fatal) when the pipeline reads it
        if batch is not None:
            return batch
    return None


def data_set_widths(first_row, config):
    """The list lengths every row must have, from the data set's first row.

    None when there is no readable row (nothing to check) or the first row
    is itself bad: it is named when its batch is evaluated.
    """
    if first_row is None:
        return None
    try:
        return input_widths(first_row, config.columns["logits"], config.weight_column)
    except BadInputError:
        return None


def predictions_schema(first_row, config, prediction_keys, passthrough):
    """Arrow schema of the predictions output, from the data set's first row."""
    if first_row is None:
        raise InputError("no input file has a readable row to take the predictions' schema from")
    for column in list(passthrough) + [config.columns["logits"]]:
        if column not in first_row.schema.names:
            raise InputError(f"--passthrough column {column!r} is not in the input")
    logits = column_values(first_row, config.columns["logits"], "logits")
    width = logits.shape[1] if logits.ndim == 2 else 1
    fields = prediction_schema_fields(
        config.build_head(), prediction_keys, width, [first_row.schema.field(c) for c in passthrough]
    )
    return pa.schema(fields)