"""Command line: `python run_pipeline.py --input GLOB --config FILE --output DIR`.

Our own flags are parsed here; every other argument is a Beam pipeline option
(--runner, --project, --temp_location, --direct_num_workers, ...). With no
arguments, the bundled demo data is evaluated with configs/default.yaml on the
DirectRunner and the metrics are printed. The installed console script
`beam-head-eval` is this main().

Every known error ends the program with one line on stderr and the exit
status of its kind (pipeline/errors.py); anything else is a bug of ours and
shows its traceback.
"""

import argparse
import logging
import os
import re
import signal
import sys
import threading
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from head import PREDICTION_KEYS
from pipeline import build, output, plan, reports, runners, validation
from pipeline import history as run_history
from pipeline.config import load_config
from pipeline.errors import KNOWN, Interrupted, Terminated, known_cause
from pipeline.evaluate import COUNTER_NAMESPACE
from pipeline.read import DEFAULT_BATCH_SIZE, FORMATS, check_format, infer_format, match_files
from pipeline.runners import RunnerError

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
# How long a failed or interrupted run may spend removing its staging
# directory before it gives up (an unreachable bucket must not hold the exit).
CLEANUP_SECONDS = 20


def _comma_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with an error in one line (the usage is --help's)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv):
    parser = _ArgumentParser(
        prog="run_pipeline.py",
        description="Evaluate scored examples with tf.estimator.BinaryClassHead semantics on Beam.",
        epilog="Any other argument is passed to Beam's PipelineOptions.",
    )
    parser.add_argument(
        "--input", action="append",
        help="file pattern or directory (local or gs://) of Parquet or TFRecord files; "
        "repeat it for several (a directory: every file in it but names starting with _ or .)",
    )
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
    parser.add_argument("--baseline_run", metavar="METRICS_JSON",
                        help="the baseline of change thresholds: an earlier run's metrics.json (local or "
                        f"gs://), or {run_history.LATEST} (the newest earlier run in --history)")
    parser.add_argument("--history", metavar="URL",
                        help="append the run to a history: sqlite:///PATH or bigquery:PROJECT:DATASET.TABLE")
    parser.add_argument("--run_label", metavar="TEXT", help="a label for the run (metrics.json, history)")
    args, beam_args = parser.parse_known_args(argv)
    demo = args.input is None
    if demo:
        args.input = [DEMO_INPUT]
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


class _Signals:
    """While active, SIGINT and SIGTERM raise Interrupted / Terminated in the main thread.

    Only the first one raises: a second Ctrl-C during the (time-bounded)
    cleanup is ignored, so the program still ends with its one line.
    `received` is the class of the first, wherever Beam re-wrapped it.
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = Terminated if signum == signal.SIGTERM else Interrupted
            raise self.received()

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def main(argv=None):
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    # As with `python -m`: modules in the working directory (a config's
    # loss_fn) import, whichever way the program was started.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    with _Signals() as signals:
        try:
            return _evaluate(args, beam_args, signals)
        except KNOWN as e:
            message = str(e)
            if isinstance(e, Interrupted) and not message:
                message = f"interrupted by {e.signal_name} before the pipeline ran"
            print(f"error: {message}", file=sys.stderr)
            return e.exit_status


def _evaluate(args, beam_args, signals):
    options = runners.pipeline_options(beam_args)
    runner = runners.runner_name(options)
    dataflow, dry_run = runners.is_dataflow(options), runners.is_dry_run(options)
    beam_runner = runners.create_runner(options)
    _check_remote_paths(args, dataflow, dry_run)
    config = load_config(args.config)
    if not dataflow and not dry_run:
        runners.export_import_path()  # for worker processes started here
        reports.preload(config)  # the commit step runs here too; its child starts now
    if dataflow:
        runners.check_dataflow(options, beam_runner, config.head["loss_fn"])
    paths = match_files(args.input)
    file_format = args.format or infer_format(args.input, paths)
    check_format(paths[0], file_format)
    shown_input = args.input[0] if len(args.input) == 1 else args.input
    info = plan.run_info(shown_input, file_format, config, runner, label=args.run_label)
    history = run_history.parse_url(args.history)
    if history is not None:
        history.prepare()
    gates = validation.Gates.of(
        config, run_history.resolve_baseline(args.baseline_run, history, info["started"], offline=dry_run))
    evaluation = plan.resolve(config, paths, file_format, args.predictions, args.passthrough)
    pipeline = beam.Pipeline(runner=beam_runner, options=options)
    run_id = uuid.uuid4().hex
    staging = build.build(pipeline, evaluation, args.output, info, batch_size=args.batch_size,
                          run_id=run_id, gates=gates, history=history)
    metrics_path = output.join(args.output, output.METRICS_FILE)
    if dry_run and not dataflow:  # Beam's dry run is Dataflow's: others stop here
        _say(f"dry run: {runner} pipeline built, not run; a run writes {metrics_path}")
        return 0
    # Beam logs a DoFn's exception with its traceback before re-raising it;
    # known input errors are reported below in one line instead.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except BaseException as e:  # report bad data and interrupts plainly; anything else as is
        # A dry run wrote nothing: no cleanup, and no call to the bucket.
        left = None if dry_run else output.remove_staging_within(staging, CLEANUP_SECONDS)
        left = f"; {staging} left ({left}): the next successful run removes it" if left else ""
        if signals.received:  # however Beam wrapped it
            name = signals.received.signal_name
            raise signals.received(
                f"interrupted by {name}: run stopped{left or ', its staging directory removed'}"
            ) from None
        known = known_cause(e)
        if known is None:
            raise
        # Beam appends the failing step's name; the message says what matters.
        message = re.sub(r" \[while running .*\]$", "", str(known))
        print(f"error: {message}{left}", file=sys.stderr)
        return known.exit_status
    if dataflow and dry_run:  # translated only: nothing ran, nothing to read
        _say(f"dry run: {runner} job built and translated, not submitted; a run writes {metrics_path}")
        return 0
    counts = runners.counters(result)
    document = output.read_json(metrics_path)
    verdict = output.read_json(output.join(args.output, validation.VALIDATION_FILE))
    _say(f"{' '.join(args.input)} ({file_format}), config {args.config}")
    _say(output.format_table(document))
    _warn_about_set_aside_data(document, args.output)
    if counts is not None:
        line = ", ".join(f"{name}={value}" for name, value in sorted(counts.items()))
        logging.info("counters (%s): %s", COUNTER_NAMESPACE, line)
        _say(f"counters ({COUNTER_NAMESPACE}): {line}")
    _say(f"written: {metrics_path}")
    for line in reports.describe(args.output, config):
        _say(line)
    if history is not None and not history.in_pipeline:  # the pipeline wrote a BigQuery history
        rows = run_history.rows(document, verdict, run_id, args.output)
        try:
            history.append(rows)
        except run_history.HistoryError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        _say(f"history: {len(rows)} rows appended to {args.history}")
    _say(validation.summary(verdict))
    for line in validation.failure_lines(verdict):
        print(line, file=sys.stderr)
    return 0 if verdict["validation_ok"] else 3


def _say(text):
    """A line of the run's terminal output (stdout).

    When stdout's reader has gone (`... | head -3`), the rest of the output
    goes nowhere, as Python's documentation advises, and the run goes on:
    its history row and its exit status do not depend on who reads.
    """
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _check_remote_paths(args, dataflow, dry_run):
    """Dataflow workers cannot see this machine's disk: gs:// paths there."""
    if not dataflow:
        return
    if FileSystems.get_scheme(args.output) in (None, "file"):
        raise RunnerError(f"--output {args.output}: Dataflow writes to a gs:// directory")
    for pattern in args.input:
        if not dry_run and FileSystems.get_scheme(pattern) in (None, "file"):
            raise RunnerError(
                f"--input {pattern}: Dataflow workers read gs:// files (local paths only with --dry_run)"
            )


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
