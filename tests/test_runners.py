"""The pipeline on every runner available here, against the in-process
DirectRunner run of the same files (<= 1e-12 relative, counts exact):

- DirectRunner with worker processes (--direct_running_mode=multi_processing);
- Beam's DaskRunner on a dask.distributed cluster (2 worker processes on
  127.0.0.1), joined with --dask_client_address, and a local cluster of its own
  without it; multi-output steps, sinks and bad input included;
- DataflowRunner as a dry run: built and translated offline (no GCS, no API);
- splitting (1, 2, 4 workers or Dask partitions, --batch_size, file order);
- the Beam counters (rows, bytes) printed at the end;
- the package built as an sdist, installed elsewhere and run from another
  working directory.
"""

import contextlib
import glob
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import runners
from tests.datafiles import (
    REL_TOL,
    assert_metrics_equal,
    head_results,
    read_metrics,
    read_predictions,
    run_cli,
    scores,
    split_rows,
    write_config,
    write_files,
    write_parquet,
    write_tfrecord,
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE_SIZES = (1100, 700, 1500, 900)  # rows per input file
ROW_GROUP_SIZE = 300
FORMATS = ("parquet", "tfrecord")
HEAD = {"weight_column": "weight", "thresholds": [0.25, 0.5, 0.75]}
COLUMNS = {"logits": "logits", "label": "label"}
MULTI_PROCESS = ["--direct_running_mode=multi_processing"]
COUNTERS_LINE = "counters (beam_head_eval): "


# ---- data and the reference run ----------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same rows as Parquet and TFRecord, plus Parquet with the files in another order.

    'parquet-shuffled' holds the same files under names that sort differently,
    so the pipeline meets the rows in another order.
    """
    columns = scores(sum(FILE_SIZES), seed=11)
    parts = split_rows(columns, FILE_SIZES)
    root = tmp_path_factory.mktemp("runner-inputs")
    patterns = {}
    for file_format in FORMATS:
        patterns[file_format], _ = write_files(root / file_format, file_format, parts, row_group_size=ROW_GROUP_SIZE)
    shuffled = root / "parquet-shuffled"
    os.makedirs(shuffled)
    for name, part in zip(("c", "a", "d", "b"), parts):
        write_parquet(shuffled / f"scores-{name}.parquet", part, row_group_size=ROW_GROUP_SIZE)
    patterns["parquet-shuffled"] = str(shuffled / "scores-*.parquet")
    config = write_config(root / "config.yaml", head=dict(HEAD), columns=COLUMNS)
    return columns, patterns, config


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """In-process DirectRunner metrics.json per format (checked against the head itself)."""
    columns, patterns, config = data
    expected, count, weighted = head_results(
        dict(HEAD), columns["logits"], columns["label"], columns["weight"]
    )
    documents = {}
    for file_format in FORMATS:
        output = tmp_path_factory.mktemp(f"reference-{file_format}")
        assert run_cli(["--input", patterns[file_format], "--config", config, "--output", output]) == 0
        document = read_metrics(output)
        assert_metrics_equal(document["metrics"], expected, what=f"in-process {file_format} vs the head")
        assert document["example_count"] == count
        assert math.isclose(document["weighted_example_count"], weighted, rel_tol=REL_TOL)
        documents[file_format] = document
    return documents


def _run(tmp_path, pattern, config, *options, name="out"):
    output = tmp_path / name
    code = run_cli(["--input", pattern, "--config", config, "--output", output, *options])
    assert code == 0, f"exit status {code}"
    return read_metrics(output)


def _assert_same_as(document, reference, what):
    assert_metrics_equal(document["metrics"], reference["metrics"], what=what)
    for key in ("example_count", "rows_read", "rows_evaluated", "rows_rejected"):
        assert document[key] == reference[key], (what, key)
    assert math.isclose(
        document["weighted_example_count"], reference["weighted_example_count"], rel_tol=REL_TOL
    ), what


def _printed_counters(capsys):
    """The counters line printed at the end, as {name: int}."""
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(COUNTERS_LINE)]
    assert lines, f"no counters printed in {out!r}"
    return {k: int(v) for k, v in (item.split("=") for item in lines[-1][len(COUNTERS_LINE):].split(", "))}


def _assert_counters(counters, rows):
    assert counters["rows_read"] == rows
    assert counters["rows_evaluated"] == rows
    assert counters["rows_rejected"] == 0
    assert counters["bytes_read"] >= rows * 8  # float32 logits and weights at least
    assert counters["input_bytes"] > 0


# ---- DirectRunner: in-process and worker processes -----------------------------------


@pytest.mark.parametrize("args", [[], ["--runner=DirectRunner"], ["--runner", "DirectRunner"]])
def test_direct_runner_is_the_fn_api_runner_without_trying_prism(args):
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    options = runners.pipeline_options(args)
    assert isinstance(runners.direct_runner(options), FnApiRunner)
    assert runners.runner_name(options) == "DirectRunner"


@pytest.mark.parametrize("runner", ["DaskRunner", "DataflowRunner", "BundleBasedDirectRunner"])
def test_other_runners_are_left_to_beam(runner):
    assert runners.direct_runner(runners.pipeline_options([f"--runner={runner}"])) is None


def test_in_process_counters(data, reference, tmp_path, capsys):
    _, patterns, config = data
    capsys.readouterr()
    _run(tmp_path, patterns["parquet"], config)
    _assert_counters(_printed_counters(capsys), sum(FILE_SIZES))


@pytest.mark.parametrize("file_format", FORMATS)
def test_multi_process_direct_runner_matches_in_process(data, reference, tmp_path, capsys, file_format):
    _, patterns, config = data
    capsys.readouterr()
    document = _run(tmp_path, patterns[file_format], config, "--direct_num_workers=2", *MULTI_PROCESS)
    _assert_same_as(document, reference[file_format], f"multi-process {file_format}")
    _assert_counters(_printed_counters(capsys), sum(FILE_SIZES))


# (workers, batch size, input): the same rows split in other ways
SPLITS = [(1, 65536, "parquet"), (2, 97, "parquet-shuffled"), (4, 500, "parquet")]


@pytest.mark.parametrize("workers,batch_size,inputs", SPLITS)
def test_multi_process_splitting_changes_nothing(data, reference, tmp_path, workers, batch_size, inputs):
    _, patterns, config = data
    document = _run(tmp_path, patterns[inputs], config, f"--direct_num_workers={workers}",
                    "--batch_size", batch_size, *MULTI_PROCESS)
    _assert_same_as(document, reference["parquet"], f"{workers} processes, batch {batch_size}, {inputs}")


# ---- Dask -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster():
    """A real scheduler and 2 worker processes, on the loopback interface only."""
    distributed = pytest.importorskip("distributed")
    runners.export_import_path()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster, distributed.Client(cluster) as client:
        yield cluster, client


def _dask(cluster, *more):
    return ["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}", *more]


@contextlib.contextmanager
def _task_workers(client):
    """{task name prefix: set of worker addresses} of the tasks run meanwhile."""
    import distributed

    seen = {}
    with distributed.get_task_stream(client) as stream:
        yield seen
    for task in stream.data:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        seen.setdefault(key.rsplit("-", 1)[0], set()).add(task["worker"])


@pytest.mark.parametrize("file_format", FORMATS)
def test_dask_runner_matches_in_process(data, reference, dask_cluster, tmp_path, capsys, file_format):
    _, patterns, config = data
    cluster, client = dask_cluster
    capsys.readouterr()
    with _task_workers(client) as workers:
        document = _run(tmp_path, patterns[file_format], config, *_dask(cluster))
    _assert_same_as(document, reference[file_format], f"Dask {file_format}")
    assert document["run"]["runner"] == "DaskRunner"
    _assert_counters(_printed_counters(capsys), sum(FILE_SIZES))
    # The files were read and evaluated by both worker processes (tasks are
    # named after the first step of a fused stage: read, evaluate, partial combine).
    read_stage = "Read-ReadParquet" if file_format == "parquet" else "Read-ReadTFRecord"
    assert len(workers[read_stage]) == 2, workers


# (partitions, batch size, input)
DASK_SPLITS = [(1, 65536, "parquet-shuffled"), (2, 97, "parquet"), (4, 500, "parquet-shuffled")]


@pytest.mark.parametrize("partitions,batch_size,inputs", DASK_SPLITS)
def test_dask_splitting_changes_nothing(data, reference, dask_cluster, tmp_path, partitions, batch_size, inputs):
    _, patterns, config = data
    cluster, _ = dask_cluster
    document = _run(tmp_path, patterns[inputs], config, *_dask(cluster, f"--dask_npartitions={partitions}"),
                    "--batch_size", batch_size)
    _assert_same_as(document, reference["parquet"], f"Dask, {partitions} partitions, batch {batch_size}, {inputs}")


def test_dask_predictions_and_rejected_rows(dask_cluster, tmp_path):
    """Tagged outputs, sinks (outputs of finish_bundle) and side inputs on Dask."""
    cluster, _ = dask_cluster
    columns = scores(2400, seed=5)
    columns["logits"][[3, 700, 1999]] = np.nan  # rejected, not fatal
    pattern, _ = write_files(tmp_path / "in", "parquet", split_rows(columns, (800, 800, 800)), row_group_size=200)
    config = write_config(tmp_path / "reject.yaml", head=dict(HEAD), columns=COLUMNS,
                          invalid_rows={"policy": "reject", "max_fraction": 0.01})
    extra = ["--predictions", "logistic,class_ids", "--passthrough", "id", "--batch_size", 300]
    local = _run(tmp_path, pattern, config, *extra, name="direct")
    dask = _run(tmp_path, pattern, config, *extra, *_dask(cluster), name="dask")
    _assert_same_as(dask, local, "Dask with predictions and rejected rows")
    assert dask["rows_rejected"] == 3 and dask["rejected_by_reason"] == local["rejected_by_reason"]
    ours = read_predictions(tmp_path / "dask").sort_by("id")
    theirs = read_predictions(tmp_path / "direct").sort_by("id")
    assert ours.num_rows == 2400 - 3
    assert ours.equals(theirs)
    rejected = [pq.read_table(f) for f in glob.glob(str(tmp_path / "dask" / "rejected" / "*.parquet"))]
    assert sorted(r for t in rejected for r in t.column("row").to_pylist()) == [3, 399, 700]  # rows in their files


def test_dask_bad_input_fails_naming_the_row(dask_cluster, tmp_path, capsys):
    cluster, _ = dask_cluster
    columns = scores(600, seed=3)
    columns["label"][450] = 7
    pattern, paths = write_files(tmp_path / "in", "parquet", split_rows(columns, (300, 300)))
    config = write_config(tmp_path / "config.yaml", head=dict(HEAD), columns=COLUMNS)
    code = run_cli(["--input", pattern, "--config", config, "--output", tmp_path / "out", *_dask(cluster)])
    assert code == 1
    error = capsys.readouterr().err
    assert f"{paths[1]}, row 150, column labels (label)" in error, error
    assert not os.path.exists(tmp_path / "out" / "metrics.json")


def test_dask_without_address_starts_and_stops_a_local_cluster(data, reference, tmp_path):
    pytest.importorskip("distributed")
    _, patterns, config = data
    before = set(multiprocessing.active_children())
    document = _run(tmp_path, patterns["parquet"], config, "--runner=DaskRunner")
    _assert_same_as(document, reference["parquet"], "Dask, own local cluster")
    assert set(multiprocessing.active_children()) <= before  # its worker processes are gone


# ---- Dataflow, offline ------------------------------------------------------------------

DATAFLOW = [
    "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project", "test-project",
    "--region", "us-central1", "--temp_location", "gs://valid-bucket/tmp",
    "--setup_file", os.path.join(PROJECT_ROOT, "setup.py"),
]


@pytest.fixture
def no_gcs(monkeypatch):
    """Fails the test if anything opens a GCS client."""
    from apache_beam.io.gcp import gcsio

    touched = []

    def refuse(self, *args, **kwargs):
        touched.append(args)
        raise AssertionError("GCS touched in a dry run")

    monkeypatch.setattr(gcsio.GcsIO, "__init__", refuse)
    yield touched
    assert not touched


@pytest.mark.parametrize("file_format", FORMATS)
def test_dataflow_dry_run_builds_and_translates(data, tmp_path, capsys, no_gcs, file_format):
    _, patterns, config = data
    code = run_cli(["--input", patterns[file_format], "--config", config,
                    "--output", "gs://valid-bucket/eval", *DATAFLOW])
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run: DataflowRunner job built and translated, not submitted" in out
    assert "gs://valid-bucket/eval/metrics.json" in out


def test_dataflow_job_holds_the_pipeline_and_the_package(data, no_gcs):
    import apache_beam as beam

    from pipeline import build, plan
    from pipeline.config import load_config

    _, patterns, config_path = data
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


def test_dataflow_needs_gs_paths(data, capsys):
    _, patterns, config = data
    code = run_cli(["--input", patterns["parquet"], "--config", config, "--output", "/tmp/local", *DATAFLOW])
    assert code == 2 and "gs://" in capsys.readouterr().err
    not_dry = [a for a in DATAFLOW if a != "--dry_run=True"] + ["--dry_run=False"]
    code = run_cli(["--input", patterns["parquet"], "--config", config, "--output", "gs://b/o", *not_dry])
    assert code == 2 and "--input" in capsys.readouterr().err


# ---- the package, installed ---------------------------------------------------------------


def test_sdist_installs_and_runs_from_anywhere(tmp_path):
    """sdist -> wheel -> installed in a directory of its own; run from another one.

    Dependencies come from this environment (--no-deps); a full install into a
    clean virtual environment is the same with the dependencies downloaded.
    """
    dist, egg = tmp_path / "dist", tmp_path / "egg"
    os.makedirs(egg)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg), "sdist", "--dist-dir", str(dist)],
        cwd=PROJECT_ROOT, check=True, capture_output=True,
    )
    (sdist,) = glob.glob(str(dist / "*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("setup.py", "run_pipeline.py", "head/__init__.py", "head/metrics.py", "pipeline/cli.py",
                   "pipeline/read.py", "pipeline/runners.py", "pipeline/tfrecord.py", "pipeline/_tfrecord.c",
                   "configs/default.yaml", "data/demo/scores.parquet"):
        assert needed in names, f"{needed} missing from the sdist"

    target = tmp_path / "installed"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), sdist], check=True)
    (wheel,) = glob.glob(str(dist / "*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), wheel], check=True)
    assert os.path.isfile(target / "pipeline" / "configs" / "default.yaml")
    assert os.path.isfile(target / "pipeline" / "demo" / "scores.parquet")
    assert glob.glob(str(target / "pipeline" / "_tfrecord*.so")), "the TFRecord extension was not built"

    elsewhere = tmp_path / "elsewhere"
    os.makedirs(elsewhere)
    env = dict(os.environ, PYTHONPATH=str(target))
    # The console script with no arguments: the demo data and default config it ships.
    done = subprocess.run([str(target / "bin" / "beam-head-eval")], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    demo = read_metrics(elsewhere / "demo_output")
    assert demo["run"]["input"] == str(target / "pipeline" / "demo" / "scores.parquet")
    assert demo["run"]["config"]["head"]["thresholds"] == [0.3, 0.5, 0.7]
    assert demo["example_count"] == 100_000
    # The report's inlined style and script ship with the package.
    assert os.path.isfile(target / "pipeline" / "report.js") and os.path.isfile(target / "pipeline" / "report.css")
    assert os.path.getsize(elsewhere / "demo_output" / "report.html") > 20_000
    # python -m run_pipeline, with worker processes importing the installed packages.
    done = subprocess.run(
        [sys.executable, "-m", "run_pipeline", "--input", os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet"),
         "--output", "out", "--direct_num_workers=2", *MULTI_PROCESS],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_metrics_equal(read_metrics(elsewhere / "out")["metrics"], demo["metrics"], what="installed, 2 processes")
    with open(elsewhere / "out" / "metrics.json") as f:
        assert json.load(f)["rows_read"] == 100_000
    # TFRecord, read by the installed (compiled) framing.
    tfrecord = write_tfrecord(tmp_path / "scores.tfrecord", scores(500))
    done = subprocess.run(
        [sys.executable, "-m", "run_pipeline", "--input", tfrecord, "--output", "tf_out"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metrics(elsewhere / "tf_out")["rows_evaluated"] == 500
