#!/usr/bin/env python
"""TFMA, model-free, on the benchmark's TFRecord files: the comparison point.

`tfma.run_model_analysis` with no model: the EvalConfig's model spec names
the label, the prediction (the `probability` feature: TFMA wants a
probability, not a logit) and the example weight; the metrics are those the
head reports, weighted by the example weights, with AUC on 200 thresholds as
Keras' default. Writes the overall slice's metrics as JSON.

    python benchmarks/tfma_run.py --input 'bench_data/tfrecord-100k/*.tfrecord' \
        --output out/ [beam options]

Slices, models and intervals (benchmarks/slices_bench.py): `--model
NAME=PREDICTION_KEY` (repeatable; one ModelSpec each, the same label and
weight), `--baseline NAME` (is_baseline on that model: TFMA adds `*_diff`
metrics), `--slice country,device` (repeatable; one SlicingSpec with those
feature keys, the overall slice always included), `--confidence-intervals
jackknife|poisson_bootstrap` (TFMA's 20 samples). metrics.json then also
holds "slices": every (model, slice) with its metrics and, with intervals,
"confidence_intervals": {metric: {lower, upper}}.

    python benchmarks/tfma_run.py --input ... --output out/ \
        --model candidate=probability --model production=probability_v1 \
        --baseline production --slice country --slice device --slice country,device
"""

import argparse
import json
import os
import sys
import time

METRICS = (
    ("ExampleCount", ""),
    ("WeightedExampleCount", ""),
    ("BinaryAccuracy", ""),
    ("Precision", ""),
    ("Recall", ""),
    ("AUC", '"num_thresholds": 200'),
    ("AUCPrecisionRecall", '"num_thresholds": 200'),
    ("MeanLabel", ""),
    ("MeanPrediction", ""),
    ("BinaryCrossentropy", ""),
)


def eval_config(label_key="label", prediction_key="probability", weight_key="weight",
                models=(), baseline=None, slices=(), confidence_intervals=None):
    """models: ((name, prediction key), ...) (default: one unnamed model scored by
    prediction_key); slices: tuples of feature keys; confidence_intervals: None,
    "jackknife" or "poisson_bootstrap"."""
    # The protos themselves: tfma 0.52's top-level module no longer re-exports them.
    from google.protobuf import wrappers_pb2
    from tensorflow_model_analysis.proto import config_pb2 as tfma

    options = tfma.Options()
    if confidence_intervals:
        options.compute_confidence_intervals.CopyFrom(wrappers_pb2.BoolValue(value=True))
        options.confidence_intervals.method = getattr(
            tfma.ConfidenceIntervalOptions, confidence_intervals.upper())
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                name=name,
                label_key=label_key,
                prediction_key=key,
                example_weight_key=weight_key,
                is_baseline=name == baseline if baseline else False,
            )
            for name, key in (models or (("", prediction_key),))
        ],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name=name, config="{%s}" % config if config else "")
                    for name, config in METRICS
                ],
                example_weights=tfma.ExampleWeightOptions(weighted=True, unweighted=False),
            )
        ],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=list(keys)) for keys in slices],
        options=options,
    )


def _value(value):
    for kind in ("doubleValue", "double_value"):
        if kind in value:
            return value[kind]
    return value


def _flat(by_output):
    """{metric name: value} of one slice's {output: {sub key: {name: value}}}."""
    flat = {}
    for by_sub_key in by_output.values():
        for metrics in by_sub_key.values():
            for name, value in metrics.items():
                flat[name] = _value(value)
    return flat


def overall_metrics(result):
    """{metric name: value} of the overall slice of an EvalResult."""
    for slice_key, by_output in result.slicing_metrics:
        if slice_key == ():
            return _flat(by_output)
    return {}


def _slice_value(value):
    return value.decode() if isinstance(value, bytes) else value


def _bounds(value):
    """(point estimate, {lower, upper}) of a bounded value; (value, None) otherwise."""
    bounded = value.get("boundedValue") if isinstance(value, dict) else None
    if not bounded:
        return value, None
    return bounded.get("value"), {"lower": bounded.get("lowerBound"), "upper": bounded.get("upperBound")}


def slice_entries(result, model_name):
    """[{model, slice, metrics[, confidence_intervals]}] of every slice of an EvalResult."""
    entries = []
    for slice_key, by_output in result.slicing_metrics:
        metrics, intervals = {}, {}
        for name, value in _flat(by_output).items():
            metrics[name], bounds = _bounds(value)
            if bounds:
                intervals[name] = bounds
        entry = {"model": model_name, "slice": {k: _slice_value(v) for k, v in slice_key},
                 "metrics": metrics}
        if intervals:
            entry["confidence_intervals"] = intervals
        entries.append(entry)
    return entries


def _model(text):
    name, sep, key = text.partition("=")
    if not sep or not name or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=PREDICTION_KEY, got {text!r}")
    return name, key


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="TFRecord file pattern")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--model", type=_model, action="append", default=[],
                        help="NAME=PREDICTION_KEY: one model spec (repeatable)")
    parser.add_argument("--baseline", help="the --model NAME that is the baseline")
    parser.add_argument("--slice", action="append", default=[],
                        help="comma-separated feature keys: one slicing spec (repeatable)")
    parser.add_argument("--confidence-intervals", choices=("jackknife", "poisson_bootstrap"))
    args, beam_args = parser.parse_known_args(argv)
    if args.baseline and args.baseline not in [name for name, _ in args.model]:
        parser.error(f"--baseline {args.baseline}: not a --model name")
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions

    os.makedirs(args.output, exist_ok=True)
    started = time.perf_counter()
    result = tfma.run_model_analysis(
        eval_config=eval_config(models=args.model, baseline=args.baseline,
                                slices=[tuple(s.split(",")) for s in args.slice],
                                confidence_intervals=args.confidence_intervals),
        data_location=args.input,
        file_format="tfrecords",
        output_path=os.path.join(args.output, "tfma"),
        pipeline_options=PipelineOptions(beam_args),
    )
    seconds = time.perf_counter() - started
    results = result.get_results() if args.model else [result]
    names = [name for name, _ in args.model] or [""]
    metrics = {name: _bounds(value)[0] for name, value in overall_metrics(results[0]).items()}
    document = {"metrics": metrics, "seconds_in_run_model_analysis": round(seconds, 3)}
    if args.model or args.slice or args.confidence_intervals:
        document["slices"] = [entry for name, one in zip(names, results)
                              for entry in slice_entries(one, name)]
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(document, f, indent=2, default=str)
    print(f"tfma: {metrics.get('example_count')} examples in {seconds:.1f} s "
          f"(run_model_analysis), auc {metrics.get('auc')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
