"""Runners and their options (pipeline/runners.py), against the in-process
DirectRunner run of the same files (<= 1e-12 relative, counts exact):

- which runner a --runner name gives; an unknown one is one line, exit 2;
- DirectRunner with worker processes (--direct_running_mode=multi_processing),
  quiet on stderr;
- splitting (1, 2, 4 workers, --batch_size, file order);
- the Beam counters (rows, bytes) printed at the end;
- DataflowRunner as a dry run: the preflight (--setup_file, the loss_fn's
  module shipped, Beam's option validation: one line, exit 2, offline and
  fast), then built and translated offline (no GCS, no API).

The Dask runner's tests are tests/test_dask_runner.py.
"""

import glob
import os
import subprocess
import sys
import time

import pytest

from pipeline import runners
from tests.conftest import RUNNER_FILE_SIZES
from tests.datafiles import (
    assert_counters,
    assert_same_run,
    printed_counters,
    read_metrics,
    run_and_read,
    run_cli,
    write_config,
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PIPELINE = os.path.join(PROJECT_ROOT, "run_pipeline.py")
FORMATS = ("parquet", "tfrecord")
MULTI_PROCESS = ["--direct_running_mode=multi_processing"]
ROWS = sum(RUNNER_FILE_SIZES)


def run_program(args, cwd=PROJECT_ROOT, timeout=300):
    """`python run_pipeline.py ARGS` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, RUN_PIPELINE, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


# ---- which runner ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["--runner=DirectRunner"], ["--runner", "DirectRunner"], ["--runner=direct"]])
def test_direct_runner_is_the_fn_api_runner_without_trying_prism(args):
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    options = runners.pipeline_options(args)
    assert isinstance(runners.create_runner(options), FnApiRunner)
    assert runners.runner_name(options) == "DirectRunner"


@pytest.mark.parametrize("runner", ["DaskRunner", "DataflowRunner", "BundleBasedDirectRunner"])
def test_other_runners_are_left_to_beam(runner):
    assert runners.direct_runner(runners.pipeline_options([f"--runner={runner}"])) is None


@pytest.mark.parametrize(
    "name, short, runner_class",
    [("dataflow", "DataflowRunner", "DataflowRunner"), ("DataflowRunner", "DataflowRunner", "DataflowRunner"),
     ("dask", "DaskRunner", "DaskRunner"), ("daskrunner", "DaskRunner", "DaskRunner")],
)
def test_runner_names_resolve_as_beam_resolves_them(name, short, runner_class):
    options = runners.pipeline_options([f"--runner={name}"])
    assert runners.runner_name(options) == short
    assert type(runners.create_runner(options)).__name__ == runner_class


def test_an_unknown_runner_is_one_line_and_exit_2(runner_inputs, tmp_path):
    _, patterns, config = runner_inputs
    done = run_program(["--input", patterns["parquet"], "--config", config, "--output", tmp_path / "out",
                        "--runner=SparkleRunner"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --runner SparkleRunner: unknown runner (known: ")
    assert "DataflowRunner" in done.stderr and "DaskRunner" in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert not os.path.exists(tmp_path / "out")


# ---- DirectRunner: in-process and worker processes -----------------------------------


def test_in_process_counters(runner_inputs, runner_reference, tmp_path, capsys):
    _, patterns, config = runner_inputs
    capsys.readouterr()
    run_and_read(tmp_path, patterns["parquet"], config)
    assert_counters(printed_counters(capsys.readouterr().out), ROWS)


def test_multi_process_direct_runner_matches_in_process_and_is_quiet(runner_inputs, runner_reference, tmp_path):
    """A user's run with worker processes: the workers' start-up notices are not shown."""
    _, patterns, config = runner_inputs
    done = run_program(["--input", patterns["parquet"], "--config", config, "--output", tmp_path / "out",
                        "--direct_num_workers=2", *MULTI_PROCESS])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    assert_same_run(read_metrics(tmp_path / "out"), runner_reference["parquet"], "multi-process parquet")
    assert_counters(printed_counters(done.stdout), ROWS)


def test_multi_process_direct_runner_reads_tfrecord(runner_inputs, runner_reference, tmp_path, capsys):
    _, patterns, config = runner_inputs
    capsys.readouterr()
    document = run_and_read(tmp_path, patterns["tfrecord"], config, "--direct_num_workers=2", *MULTI_PROCESS)
    assert_same_run(document, runner_reference["tfrecord"], "multi-process tfrecord")
    assert_counters(printed_counters(capsys.readouterr().out), ROWS)


# (workers, batch size, input): the same rows split in other ways
SPLITS = [(1, 65536, "parquet"), (2, 97, "parquet-shuffled"), (4, 500, "parquet")]


@pytest.mark.parametrize("workers,batch_size,inputs", SPLITS)
def test_multi_process_splitting_changes_nothing(runner_inputs, runner_reference, tmp_path, workers, batch_size,
                                                 inputs):
    _, patterns, config = runner_inputs
    document = run_and_read(tmp_path, patterns[inputs], config, f"--direct_num_workers={workers}",
                            "--batch_size", batch_size, *MULTI_PROCESS)
    assert_same_run(document, runner_reference["parquet"], f"{workers} processes, batch {batch_size}, {inputs}")


# ---- Dataflow, offline ------------------------------------------------------------------

SETUP_FILE = os.path.join(PROJECT_ROOT, "setup.py")
DATAFLOW_OPTIONS = [
    "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project", "test-project",
    "--region", "us-central1", "--temp_location", "gs://valid-bucket/tmp",
]
DATAFLOW = DATAFLOW_OPTIONS + ["--setup_file", SETUP_FILE]


@pytest.mark.parametrize("file_format", FORMATS)
def test_dataflow_dry_run_builds_and_translates(runner_inputs, tmp_path, capsys, no_gcs, file_format):
    _, patterns, config = runner_inputs
    code = run_cli(["--input", patterns[file_format], "--config", config,
                    "--output", "gs://valid-bucket/eval", *DATAFLOW])
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run: DataflowRunner job built and translated, not submitted" in out
    assert "gs://valid-bucket/eval/metrics.json" in out


def test_dataflow_job_holds_the_pipeline_and_the_package(runner_inputs, no_gcs):
    import apache_beam as beam

    from pipeline import build, plan
    from pipeline.config import load_config

    _, patterns, config_path = runner_inputs
    config = load_config(config_path)
    options = runners.pipeline_options(DATAFLOW)
    paths = sorted(glob.glob(patterns["parquet"]))
    p = beam.Pipeline(options=options)
    build.build(p, plan.resolve(config, paths, "parquet"), "gs://valid-bucket/eval",
                plan.run_info(patterns["parquet"], "parquet", config, "DataflowRunner"))
    job = p.run().job
    top = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"Read", "EvaluateScores", "EvaluateScores/CombineSlices", "Document", "Commit"} <= top
    staged = [d.role_payload for env in job.proto_pipeline.components.environments.values()
              for d in env.dependencies]
    assert any(b"workflow.tar.gz" in payload for payload in staged), staged  # setup.py's sdist
    assert job.options.view_as(beam.options.pipeline_options.SetupOptions).setup_file.endswith("setup.py")


def test_dataflow_needs_gs_paths(runner_inputs, capsys):
    _, patterns, config = runner_inputs
    code = run_cli(["--input", patterns["parquet"], "--config", config, "--output", "/tmp/local", *DATAFLOW])
    assert code == 2 and "gs://" in capsys.readouterr().err
    not_dry = [a for a in DATAFLOW if a != "--dry_run=True"] + ["--dry_run=False"]
    code = run_cli(["--input", patterns["parquet"], "--config", config, "--output", "gs://b/o", *not_dry])
    assert code == 2 and "--input" in capsys.readouterr().err


def test_dataflow_dry_run_ships_a_loss_fn_that_setup_py_installs(runner_inputs, tmp_path, capsys, no_gcs):
    """configs/custom_loss.yaml names its loss by the package setup.py installs it as."""
    _, patterns, _ = runner_inputs
    config = os.path.join(PROJECT_ROOT, "configs", "custom_loss.yaml")
    code = run_cli(["--input", patterns["parquet"], "--config", config, "--output", "gs://valid-bucket/eval",
                    *DATAFLOW])
    assert code == 0, capsys.readouterr().err
    assert "dry run: DataflowRunner job built and translated" in capsys.readouterr().out


# (extra arguments, config's loss_fn or None, the one line's start): each fails
# before anything is built, offline, with exit status 2. A worker would fail
# on each of these; the preflight finds them on the launcher.
DATAFLOW_PREFLIGHT = {
    "setup_file_missing": (
        DATAFLOW_OPTIONS + ["--setup_file", "./setup.py"], None,
        "error: --setup_file ./setup.py: no such file (Dataflow workers install this package from it",
    ),
    "no_setup_file": (
        DATAFLOW_OPTIONS, None,
        "error: --setup_file is missing: Dataflow workers need this package; pass --setup_file ./setup.py",
    ),
    "invalid_project": (
        [a if a != "test-project" else "p" for a in DATAFLOW], None,
        "error: Dataflow options: Invalid Project ID (p).",
    ),
    "no_region": (
        [a for a in DATAFLOW if a not in ("--region", "us-central1")], None,
        "error: Dataflow options: Missing required option: region.",
    ),
    "invalid_temp_location": (
        [a if a != "gs://valid-bucket/tmp" else "gs://b/t" for a in DATAFLOW], None,
        "error: Dataflow options: Invalid GCS bucket (gs://b/t), given for the option: temp_location.",
    ),
    "no_region_invalid_project": (
        [a if a != "test-project" else "p" for a in DATAFLOW if a not in ("--region", "us-central1")], None,
        "error: Dataflow options: Invalid Project ID (p). Please make sure you specified the Project ID, "
        "not project description; Missing required option: region.",
    ),
    "logits_column_missing": (
        DATAFLOW, {"columns": {"logits": "logit", "label": "label"}},
        "error: column 'logit' (logits) is not in the input: ",
    ),
    "loss_fn_reads_a_missing_feature": (  # shipped (setup.py installs pipeline.configs)
        DATAFLOW, {"head": {"loss_fn": "pipeline.configs.example_losses:weighted_by_feature"}},
        "error: loss_fn pipeline.configs.example_losses:weighted_by_feature raised KeyError: 'importance' "
        "(on the first row of ",
    ),
    "loss_fn_not_shipped": (  # importable here (the working directory), not on the workers
        DATAFLOW, "local_losses:doubled",
        f"error: head.loss_fn local_losses:doubled: module local_losses is not shipped to "
        f"Dataflow workers by --setup_file {SETUP_FILE} (it installs head, pipeline, pipeline.configs, "
        "pipeline.demo, run_pipeline); put the module in one of those packages",
    ),
}


LOCAL_LOSSES = """
def doubled(labels, logits):
    return 2 * logits
"""


@pytest.mark.parametrize("case", list(DATAFLOW_PREFLIGHT))
def test_dataflow_preflight_fails_fast_in_one_line(runner_inputs, tmp_path, case):
    """As a user runs it, from a directory without setup.py, to a gs:// output.

    A failure on that path must not call the network (Beam's option
    validation would create a default bucket; cleanup would contact the
    output bucket, retrying credentials for minutes): it ends in seconds.
    """
    arguments, config, expected = DATAFLOW_PREFLIGHT[case]
    _, patterns, _ = runner_inputs
    if isinstance(config, str):  # a loss_fn in the working directory
        (tmp_path / "local_losses.py").write_text(LOCAL_LOSSES)
        config = {"head": {"loss_fn": config}}
    config = config or {}
    head = {"weight_column": "weight", **config.get("head", {})}
    config = write_config(tmp_path / "config.yaml", head=head, **{k: v for k, v in config.items() if k != "head"})
    started = time.monotonic()
    done = run_program(["--input", patterns["parquet"], "--config", config, "--output", "gs://valid-bucket/eval",
                        *arguments], cwd=tmp_path)
    seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(expected), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stdout == ""
    assert seconds < 30, f"{seconds:.0f} s: a network call on a failure path?"
