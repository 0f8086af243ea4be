"""Command line: `python run_pipeline.py --input GLOB --config FILE --output DIR`.

Our own flags are parsed here; every other argument is a Beam pipeline option
(--runner, --project, --temp_location, --direct_num_workers, ...). With no
arguments, the bundled demo data is evaluated with configs/default.yaml on the
DirectRunner and the metrics are printed.
"""

import argparse
import logging
import os
import re
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from head import PREDICTION_KEYS
from pipeline import build, output
from pipeline.config import ConfigError, load_config
from pipeline.evaluate import InvalidRowError, UnreadableFileError
from pipeline.read import DEFAULT_BATCH_SIZE, FORMATS, InputError, infer_format, match_files

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_INPUT = os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet")
DEFAULT_CONFIG = os.path.join(PROJECT_ROOT, "configs", "default.yaml")
DEMO_OUTPUT = "demo_output"


def _comma_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run_pipeline.py",
        description="Evaluate scored examples with tf.estimator.BinaryClassHead semantics on Beam.",
        epilog="Any other argument is passed to Beam's PipelineOptions.",
    )
    parser.add_argument("--input", help="file pattern (local or gs://) of Parquet or TFRecord files")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the extension)")
    parser.add_argument("--config", help="evaluation config YAML (default: configs/default.yaml)")
    parser.add_argument("--output", help="output directory (local or gs://)")
    parser.add_argument(
        "--predictions", type=_comma_list, default=[],
        help=f"comma-separated prediction keys to write per example ({','.join(PREDICTION_KEYS)})",
    )
    parser.add_argument(
        "--passthrough", type=_comma_list, default=[],
        help="comma-separated input columns copied into the predictions output",
    )
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="rows per record batch (default %(default)s)")
    args, beam_args = parser.parse_known_args(argv)
    demo = args.input is None
    if demo:
        args.input = DEMO_INPUT
        args.output = args.output or DEMO_OUTPUT
    args.config = args.config or DEFAULT_CONFIG
    if not args.output:
        parser.error("--output is required with --input")
    for key in args.predictions:
        if key not in PREDICTION_KEYS:
            parser.error(f"--predictions: unknown key {key!r} (valid: {', '.join(PREDICTION_KEYS)})")
    if args.passthrough and not args.predictions:
        parser.error("--passthrough needs --predictions")
    if args.batch_size <= 0:
        parser.error("--batch_size must be positive")
    return args, beam_args


def _find(exception, kind):
    """The first exception of `kind` in a chain (Beam wraps DoFn errors)."""
    seen = set()
    while exception is not None and id(exception) not in seen:
        if isinstance(exception, kind):
            return exception
        seen.add(id(exception))
        exception = exception.__cause__ or exception.__context__
    return None


def main(argv=None):
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
        paths = match_files(args.input)
        file_format = args.format or infer_format(args.input, paths)
        options = PipelineOptions(beam_args)
        runner = options.view_as(StandardOptions).runner or "DirectRunner"
        info = build.run_info(args.input, file_format, config, runner)
        pipeline = beam.Pipeline(options=options)
        staging = build.build(
            pipeline, paths, file_format, config, args.output, info,
            prediction_keys=args.predictions, passthrough=args.passthrough,
            batch_size=args.batch_size,
        )
    except (ConfigError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Beam logs a DoFn's exception with its traceback before re-raising it;
    # known input errors are reported below in one line instead.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as e:  # report bad data plainly; anything else as is
        output.remove_staging(staging)
        known = _find(e, (InvalidRowError, UnreadableFileError, InputError, output.OutputCheckError))
        if known is None:
            raise
        # Beam appends the failing step's name; the message says what matters.
        message = re.sub(r" \[while running .*\]$", "", str(known))
        print(f"error: {message}", file=sys.stderr)
        return 1
    metrics_path = output.join(args.output, output.METRICS_FILE)
    if runner.endswith("DataflowRunner"):
        print(f"Dataflow job done; metrics go to {metrics_path}")
        return 0
    document = output.read_json(metrics_path)
    print(f"{args.input} ({file_format}), config {args.config}")
    print(output.format_table(document))
    _warn_about_set_aside_data(document, args.output)
    print(f"written: {metrics_path}")
    return 0


def _warn_about_set_aside_data(document, output_dir):
    """Rejected rows, unreadable files and negative weights are said out loud."""
    if document["rows_rejected"]:
        print(f"warning: {document['rows_rejected']} of {document['rows_read']} rows rejected, "
              f"set aside in {output.join(output_dir, 'rejected')}:", file=sys.stderr)
        for reason, count in document["rejected_by_reason"].items():
            print(f"  {count:>10}  {reason}", file=sys.stderr)
    for unreadable in document["unreadable_files"]:
        print(f"warning: unreadable file {unreadable['file']} (after {unreadable['rows_read_before_error']} "
              f"rows): {unreadable['error']}", file=sys.stderr)
    if document["negative_weight_examples"]:
        print(f"warning: {document['negative_weight_examples']} examples have negative weights "
              "(the head allows them)", file=sys.stderr)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    sys.exit(main())
