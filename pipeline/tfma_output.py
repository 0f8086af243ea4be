"""tfma/: a run's results in TensorFlow Model Analysis' own format (`outputs.tfma`).

Written with TFMA's proto classes and converters so that its loaders and
notebook views read them as a TFMA run's:

    eval_result = tfma.load_eval_result("OUTPUT/tfma", model_name="candidate")
    tfma.view.render_slicing_metrics(eval_result, slicing_column="country")
    tfma.view.render_plot(eval_result)
    tfma.load_validation_result("OUTPUT/tfma").validation_ok

- `metrics-00000-of-00001.tfrecord`: one MetricsForSlice per slice (TFMA's
  serialized slice key, columns sorted, so slicer.stringify_slice_key gives
  metrics.json's slice_name), every model's metrics in it under
  MetricKey(name=our metric key, model_name=the model); `example_count` and
  `weighted_example_count` too; intervals as `confidence_interval` (lower,
  upper, standard error); diffs (candidate - baseline) under is_diff=True.
  An undefined value (null in metrics.json) is NaN, as TFMA writes it. The
  matrices at the head's thresholds are the structured metric
  `confusion_matrices_at_thresholds` (as TFMA's ConfusionMatrixAtThresholds
  metric).
- `plots-00000-of-00001.tfrecord`: one PlotsForSlice per slice: per model
  the ROC/PR confusion matrices at Keras AUC's 200 thresholds and the
  calibration histogram under the default (unnamed) plot key, as TFMA's
  confusion_matrix_plot and calibration_plot write them (TFMA's views know
  one plot per model).
  CalibrationHistogramBuckets keep TFMA's field names; our buckets are Keras'
  (lower, upper] (plots.json names them so).
- `validations.tfrecord` (when the run has a validation verdict): one
  ValidationResult (validation_ok, failures per slice).
- `eval_config.json`: TFMA's EvalRun (EvalConfig with a ModelSpec per model
  and the slicing specs; model_locations name the models) as TFMA's
  EvalConfigWriter serializes it.

No other file here starts with `metrics`, `plots` or `validations` (TFMA's
loaders glob those prefixes). Importing this module imports TFMA (and
TensorFlow): it is imported only when `outputs.tfma` is on.
"""

import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from google.protobuf import json_format
from tensorflow_model_analysis.metrics import calibration_plot, confusion_matrix_plot, metric_types
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.writers import eval_config_writer
from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as tfma_writer

METRICS_FILE = "metrics-00000-of-00001.tfrecord"
PLOTS_FILE = "plots-00000-of-00001.tfrecord"
VALIDATIONS_FILE = "validations.tfrecord"  # TFMA writes its one record unsharded
EVAL_CONFIG_FILE = f"{eval_config_writer.EVAL_CONFIG_FILE}.{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}"
THRESHOLD_MATRICES = "confusion_matrices_at_thresholds"
_MATRIX_FIELDS = ("threshold", "true_positives", "false_positives", "true_negatives", "false_negatives",
                  "precision", "recall", "false_positive_rate", "f1", "accuracy")


def slice_key(slice_dict):
    """TFMA's slice key of a metrics.json slice: (column, value) pairs, columns sorted.

    Strings (and bucket ranges, written "[18, 30)") are bytes values, booleans
    and integers int64, other numbers float, as TFMA's slicer makes them.
    """
    key = []
    for column in sorted(slice_dict):
        value = slice_dict[column]
        if isinstance(value, bool):
            value = int(value)
        key.append((column, value))
    return tuple(key)


def _float(value):
    return float("nan") if value is None else float(value)


def _key(name, model, is_diff=False):
    return metric_types.MetricKey(name=name, model_name=model, is_diff=is_diff)


def _interval(bounds, degrees_of_freedom):
    interval = metrics_for_slice_pb2.ConfidenceInterval(
        lower_bound=tfma_writer.convert_metric_value_to_proto(_float(bounds.get("lower"))),
        upper_bound=tfma_writer.convert_metric_value_to_proto(_float(bounds.get("upper"))),
        standard_error=tfma_writer.convert_metric_value_to_proto(_float(bounds.get("standard_error"))),
    )
    if degrees_of_freedom is not None:
        interval.degrees_of_freedom.value = degrees_of_freedom
    return interval


def metrics_for_slice(key, entries, plot_entries=(), degrees_of_freedom=None):
    """One MetricsForSlice: every model's entry of one slice (metrics.json, plots.json entries)."""
    values, intervals = {}, {}
    for entry in entries:
        model = entry["model"]
        values[_key("example_count", model)] = float(entry["example_count"])
        values[_key("weighted_example_count", model)] = float(entry["weighted_example_count"])
        for is_diff, metrics_field, intervals_field in ((False, "metrics", "confidence_intervals"),
                                                         (True, "diff", "diff_confidence_intervals")):
            for name, value in (entry.get(metrics_field) or {}).items():
                values[_key(name, model, is_diff)] = _float(value)
            for name, bounds in (entry.get(intervals_field) or {}).items():
                intervals[_key(name, model, is_diff)] = bounds
    result = tfma_writer.convert_slice_metrics_to_proto((key, values), add_metrics_callbacks=None)
    for pair in result.metric_keys_and_values:
        bounds = intervals.get(metric_types.MetricKey.from_proto(pair.key))
        if bounds:
            pair.confidence_interval.CopyFrom(_interval(bounds, degrees_of_freedom))
    for entry in plot_entries:  # a structured metric, as TFMA's ConfusionMatrixAtThresholds metric
        result.metric_keys_and_values.add(
            key=_key(THRESHOLD_MATRICES, entry["model"]).to_proto(),
            value=metrics_for_slice_pb2.MetricValue(
                confusion_matrix_at_thresholds=_matrices(entry["confusion_matrices_at_thresholds"])))
    return result


def _matrices(fields):
    out = metrics_for_slice_pb2.ConfusionMatrixAtThresholds()
    columns = [np.array([np.nan if v is None else v for v in fields[f]], dtype=np.float64) for f in _MATRIX_FIELDS]
    for row in zip(*(c.tolist() for c in columns)):
        out.matrices.add(**dict(zip(_MATRIX_FIELDS, row)))
    return out


def _calibration(fields):
    out = metrics_for_slice_pb2.CalibrationHistogramBuckets()
    names = ("lower_threshold_exclusive", "upper_threshold_inclusive", "num_weighted_examples",
             "total_weighted_label", "total_weighted_refined_prediction")
    for lower, upper, weight, label, prediction in zip(*(fields[n] for n in names)):
        bucket = out.buckets.add(lower_threshold_inclusive=lower, upper_threshold_exclusive=upper)
        bucket.num_weighted_examples.value = weight
        bucket.total_weighted_label.value = label
        bucket.total_weighted_refined_prediction.value = prediction
    return out


def plots_for_slice(key, plot_entries):
    """One PlotsForSlice: every model's plots of one slice (plots.json entries)."""
    plots = {}
    for entry in plot_entries:
        model = entry["model"]
        plots[metric_types.PlotKey(confusion_matrix_plot.CONFUSION_MATRIX_PLOT_NAME, model_name=model)] = (
            _matrices(entry["confusion_matrices"]))
        plots[metric_types.PlotKey(calibration_plot.CALIBRATION_PLOT_NAME, model_name=model)] = (
            _calibration(entry["calibration_histogram"]))
    return tfma_writer.convert_slice_plots_to_proto((key, plots), add_metrics_callbacks=None)


def _metric_threshold(threshold):
    """A validation.json threshold as TFMA's MetricThreshold (empty when it is not one)."""
    proto = config_pb2.MetricThreshold()
    if not isinstance(threshold, dict):
        return proto
    fields = {k: v for k, v in threshold.items() if k in ("value_threshold", "change_threshold")}
    change = dict(fields.get("change_threshold") or {})
    if "direction" in change:
        change["direction"] = str(change["direction"]).upper()
        fields["change_threshold"] = change
    try:
        return json_format.ParseDict(fields, proto, ignore_unknown_fields=True)
    except json_format.ParseError:
        return config_pb2.MetricThreshold()


def validation_result(verdict):
    """validation.json's verdict as TFMA's ValidationResult, failures grouped by slice."""
    result = validation_result_pb2.ValidationResult(validation_ok=bool(verdict["validation_ok"]))
    by_slice = {}
    for failure in verdict.get("failures") or []:
        key = slice_key(failure.get("slice") or {})
        if key not in by_slice:
            by_slice[key] = result.metric_validations_per_slice.add(slice_key=slicer_lib.serialize_slice_key(key))
        by_slice[key].failures.add(
            metric_key=_key(failure["metric"], failure.get("model") or "").to_proto(),
            metric_threshold=_metric_threshold(failure.get("threshold")),
            metric_value=tfma_writer.convert_metric_value_to_proto(_float(failure.get("value"))),
            message=failure.get("message") or "",
        )
    return result


def eval_config(document):
    """TFMA's EvalConfig of the run: a ModelSpec per model, the slicing specs."""
    config = (document.get("run") or {}).get("config") or {}
    columns = config.get("columns") or {}
    head = config.get("head") or {}
    models = config.get("models") or [{"name": "", "logits": columns.get("logits")}]
    out = config_pb2.EvalConfig()
    for model in models:
        out.model_specs.add(name=model["name"], label_key=columns.get("label") or "",
                            prediction_key=model.get("logits") or "",
                            example_weight_key=head.get("weight_column") or "",
                            is_baseline=bool(model.get("is_baseline")))
    for spec in config.get("slicing_specs") or [{}]:
        out.slicing_specs.add(feature_keys=spec.get("feature_keys") or [],
                              feature_values={k: str(v) for k, v in (spec.get("feature_values") or {}).items()})
    return out


def _write_records(path, messages):
    with tf.io.TFRecordWriter(path) as writer:
        for message in messages:
            writer.write(message.SerializeToString())


def write(directory, document, plots, plan, validation=None):
    """Writes tfma/ under `directory`; returns the names of the files written."""
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)
    intervals = getattr(plan.config, "confidence_intervals", None)
    samples = getattr(intervals, "num_samples", None)
    degrees_of_freedom = samples - 1 if samples else None
    slices = {}  # slice name -> (TFMA key, [entries], [plot entries]), in metrics.json's order
    for entry, plot in zip(document["slices"], plots["plots"]):
        key, entries, plot_entries = slices.setdefault(entry["slice_name"], (slice_key(entry["slice"]), [], []))
        entries.append(entry)
        if plot["confusion_matrices"] is not None:
            plot_entries.append(plot)
    _write_records(FileSystems.join(directory, METRICS_FILE),
                   (metrics_for_slice(key, entries, plot_entries, degrees_of_freedom)
                    for key, entries, plot_entries in slices.values()))
    _write_records(FileSystems.join(directory, PLOTS_FILE),
                   (plots_for_slice(key, plot_entries) for key, _, plot_entries in slices.values() if plot_entries))
    names = [METRICS_FILE, PLOTS_FILE]
    if validation is not None:
        _write_records(FileSystems.join(directory, VALIDATIONS_FILE), [validation_result(validation)])
        names.append(VALIDATIONS_FILE)
    run = document.get("run") or {}
    inputs = run.get("input")
    serialized = eval_config_writer._serialize_eval_run(  # TFMA's own EvalRun serialization
        eval_config(document), ", ".join(inputs) if isinstance(inputs, (list, tuple)) else str(inputs or ""),
        str(run.get("format") or ""), {model: "" for model in dict.fromkeys(e["model"] for e in document["slices"])})
    with FileSystems.create(FileSystems.join(directory, EVAL_CONFIG_FILE)) as f:
        f.write(serialized.encode("utf-8"))
    names.append(EVAL_CONFIG_FILE)
    return names
