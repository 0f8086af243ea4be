#!/usr/bin/env python
"""TFMA, model-free, on the benchmark's TFRecord files: the comparison point.

`tfma.run_model_analysis` with no model: the EvalConfig's model spec names
the label, the prediction (the `probability` feature: TFMA wants a
probability, not a logit) and the example weight; the metrics are those the
head reports, weighted by the example weights, with AUC on 200 thresholds as
Keras' default. Writes the overall slice's metrics as JSON.

    python benchmarks/tfma_run.py --input 'bench_data/tfrecord-100k/*.tfrecord' \
        --output out/ [beam options]
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


def eval_config(label_key="label", prediction_key="probability", weight_key="weight"):
    # The protos themselves: tfma 0.52's top-level module no longer re-exports them.
    from tensorflow_model_analysis.proto import config_pb2 as tfma

    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                label_key=label_key,
                prediction_key=prediction_key,
                example_weight_key=weight_key,
            )
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
        slicing_specs=[tfma.SlicingSpec()],
    )


def _value(value):
    for kind in ("doubleValue", "double_value"):
        if kind in value:
            return value[kind]
    return value


def overall_metrics(result):
    """{metric name: value} of the overall slice of an EvalResult."""
    for slice_key, by_output in result.slicing_metrics:
        if slice_key == ():
            flat = {}
            for by_sub_key in by_output.values():
                for metrics in by_sub_key.values():
                    for name, value in metrics.items():
                        flat[name] = _value(value)
            return flat
    return {}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="TFRecord file pattern")
    parser.add_argument("--output", required=True, help="output directory")
    args, beam_args = parser.parse_known_args(argv)
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions

    os.makedirs(args.output, exist_ok=True)
    started = time.perf_counter()
    result = tfma.run_model_analysis(
        eval_config=eval_config(),
        data_location=args.input,
        file_format="tfrecords",
        output_path=os.path.join(args.output, "tfma"),
        pipeline_options=PipelineOptions(beam_args),
    )
    seconds = time.perf_counter() - started
    metrics = overall_metrics(result)
    document = {"metrics": metrics, "seconds_in_run_model_analysis": round(seconds, 3)}
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(document, f, indent=2, default=str)
    print(f"tfma: {metrics.get('example_count')} examples in {seconds:.1f} s "
          f"(run_model_analysis), auc {metrics.get('auc')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
