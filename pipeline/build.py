"""Assembles the evaluation pipeline: read -> evaluate -> combine -> write."""

import uuid

import apache_beam as beam

from pipeline import output, reports
from pipeline.evaluate import (
    METRICS_TAG,
    PREDICTIONS_TAG,
    REJECTED_SCHEMA,
    REJECTED_TAG,
    EvaluateBatch,
    RowCountsCombineFn,
    SliceStatesCombineFn,
)
from pipeline.read import DEFAULT_BATCH_SIZE, ReadBatches


class EvaluateScores(beam.PTransform):
    """SourceBatches -> (row counts, keyed slice results, predictions, rejected rows).

    A composite that another pipeline can reuse: evaluates every model on
    every batch, combines the metric states per (model, slicing spec) with
    combiner lifting (so many slices never funnel through one worker) and
    computes each key's metrics where its states were combined. After it is
    applied, `plots` holds each key's plot data (pipeline.reports.slice_plots)
    when the plan keeps calibration state (an output needs plots), else None.
    """

    def __init__(self, plan):
        super().__init__()
        self._plan = plan
        self.plots = None

    def expand(self, batches):
        plan = self._plan
        evaluated = batches | "Evaluate" >> beam.ParDo(EvaluateBatch(plan)).with_outputs(
            METRICS_TAG, PREDICTIONS_TAG, REJECTED_TAG, main="counts")
        counts = evaluated.counts | "CountRows" >> beam.CombineGlobally(RowCountsCombineFn())
        states = evaluated[METRICS_TAG] | "CombineSlices" >> beam.CombinePerKey(
            SliceStatesCombineFn(plan.layout, plan.config.max_slices))
        results = states | "SliceMetrics" >> beam.Map(output.slice_results, plan)
        # Plot data (plots.json, report, tfma/) from the same combined states.
        self.plots = states | "SlicePlots" >> beam.Map(reports.slice_plots, plan) if plan.calibration else None
        return counts, results, evaluated[PREDICTIONS_TAG], evaluated[REJECTED_TAG]


def build(p, plan, output_dir, info, batch_size=DEFAULT_BATCH_SIZE, run_id=None):
    """Adds the evaluation to pipeline `p`; returns the staging directory.

    Sink outputs (predictions, rejected rows) are written under a staging
    directory; the last step checks the counts, moves them into output_dir
    and writes metrics.json, so a failed run changes nothing there.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    staging = output.staging_dir(output_dir, run_id)
    batches = p | "Read" >> ReadBatches(
        plan.paths, plan.file_format, plan.read_columns, batch_size, plan.decode_features,
        plan.dictionary_columns)
    evaluate = EvaluateScores(plan)
    counts, results, predictions, rejected = batches | "EvaluateScores" >> evaluate

    written = []
    if plan.prediction_keys:
        written.append(_write_parquet(predictions, staging, "predictions", plan.prediction_schema))
    if plan.config.rejects_rows:
        written.append(_write_parquet(rejected, staging, "rejected", REJECTED_SCHEMA))
    staged_files = (
        written | "StagedFiles" >> beam.Flatten() if written else p | "NoStagedFiles" >> beam.Create([])
    )
    _ = (
        counts
        | "Document" >> beam.Map(output.metrics_document, beam.pvalue.AsList(results), plan, info)
        | "Commit" >> beam.Map(
            output.commit, output_dir, staging, plan.config.invalid_rows["max_fraction"],
            staged_files=beam.pvalue.AsList(staged_files),
            plan=plan, plots=beam.pvalue.AsList(evaluate.plots) if evaluate.plots is not None else (),
        )
    )
    return staging


def _write_parquet(tables, staging, name, schema):
    return tables | f"Write{name.title()}" >> beam.io.WriteToParquetBatched(
        output.join(staging, name, name), schema=schema, file_name_suffix=".parquet"
    )
