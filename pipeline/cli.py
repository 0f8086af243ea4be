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
from apache_beam.io.filesystems import FileSystems

from head import PREDICTION_KEYS
from pipeline import build, output, plan, reports, runners
from pipeline.config import ConfigError, load_config
from head.slicing import SlicingError
from pipeline.evaluate import COUNTER_NAMESPACE, InvalidRowError, UnreadableFileError
from pipeline.read import DEFAULT_BATCH_SIZE, FORMATS, InputError, infer_format, match_files

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.dirname(PACKAGE_DIR)
# In a checkout the demo data and configs are the repository's; installed
# (pip, Dataflow workers), the copies setup.py ships inside `pipeline`.
IN_CHECKOUT = os.path.isfile(os.path.join(PROJECT_ROOT, "setup.py")) and os.path.isfile(
    os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet")
)
if IN_CHECKOUT:
    DEMO_INPUT = os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet")
    DEFAULT_CONFIG = os.path.join(PROJECT_ROOT, "configs", "default.yaml")
else:
    DEMO_INPUT = os.path.join(PACKAGE_DIR, "demo", "scores.parquet")
    DEFAULT_CONFIG = os.path.join(PACKAGE_DIR, "configs", "default.yaml")
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
    # As with `python -m`: modules in the working directory (a config's
    # loss_fn) import, whichever way the program was started.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    options = runners.pipeline_options(beam_args)
    runner = runners.runner_name(options)
    dataflow, dry_run = runners.is_dataflow(options), runners.is_dry_run(options)
    problem = _remote_path_problem(args, dataflow, dry_run)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        paths = match_files(args.input)
        file_format = args.format or infer_format(args.input, paths)
        info = plan.run_info(args.input, file_format, config, runner)
        evaluation = plan.resolve(config, paths, file_format, args.predictions, args.passthrough)
        pipeline = beam.Pipeline(runner=runners.direct_runner(options), options=options)
        staging = build.build(pipeline, evaluation, args.output, info, batch_size=args.batch_size)
    except (ConfigError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Beam logs a DoFn's exception with its traceback before re-raising it;
    # known input errors are reported below in one line instead.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    if not dataflow:
        runners.export_import_path()  # for worker processes started here
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as e:  # report bad data plainly; anything else as is
        output.remove_staging(staging)
        known = _find(e, (InvalidRowError, UnreadableFileError, InputError, SlicingError,
                          output.OutputCheckError))
        if known is None:
            raise
        # Beam appends the failing step's name; the message says what matters.
        message = re.sub(r" \[while running .*\]$", "", str(known))
        print(f"error: {message}", file=sys.stderr)
        return 1
    metrics_path = output.join(args.output, output.METRICS_FILE)
    if dataflow and dry_run:  # translated only: nothing ran, nothing to read
        print(f"dry run: {runner} job built and translated, not submitted; a run writes {metrics_path}")
        return 0
    counts = runners.counters(result)
    document = output.read_json(metrics_path)
    print(f"{args.input} ({file_format}), config {args.config}")
    print(output.format_table(document))
    _warn_about_set_aside_data(document, args.output)
    if counts is not None:
        line = ", ".join(f"{name}={value}" for name, value in sorted(counts.items()))
        logging.info("counters (%s): %s", COUNTER_NAMESPACE, line)
        print(f"counters ({COUNTER_NAMESPACE}): {line}")
    print(f"written: {metrics_path}")
    for line in reports.describe(args.output, config):
        print(line)
    return 0


def _remote_path_problem(args, dataflow, dry_run):
    """Dataflow workers cannot see this machine's disk: gs:// paths there."""
    if not dataflow:
        return None
    if FileSystems.get_scheme(args.output) in (None, "file"):
        return f"--output {args.output}: Dataflow writes to a gs:// directory"
    if not dry_run and FileSystems.get_scheme(args.input) in (None, "file"):
        return f"--input {args.input}: Dataflow workers read gs:// files (local paths only with --dry_run)"
    return None


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
