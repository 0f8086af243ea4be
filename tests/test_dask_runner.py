"""The DaskRunner (pipeline/dask_runner.py) on a dask.distributed cluster (2
worker processes on 127.0.0.1), joined with --dask_client_address, and a local
cluster of its own without it, against the in-process DirectRunner run of the
same files (<= 1e-12 relative, counts exact): multi-output steps, sinks, side
inputs, bad input, splitting; quiet logs; Ctrl-C; the Beam version check.
"""

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import dask_runner, runners
from tests.conftest import RUNNER_COLUMNS, RUNNER_FILE_SIZES, RUNNER_HEAD
from tests.datafiles import (
    RUN_PIPELINE,
    assert_counters,
    assert_same_run,
    printed_counters,
    processes_left,
    read_metrics,
    read_predictions,
    run_and_read,
    run_cli,
    scores,
    split_rows,
    start_slow_run,
    write_config,
    write_files,
)

distributed = pytest.importorskip("distributed")

FORMATS = ("parquet", "tfrecord")
ROWS = sum(RUNNER_FILE_SIZES)


def _dask(cluster, *more):
    return ["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}", *more]


@contextlib.contextmanager
def _task_workers(client):
    """{task name prefix: set of worker addresses} of the tasks run meanwhile."""
    seen = {}
    with distributed.get_task_stream(client) as stream:
        yield seen
    for task in stream.data:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        seen.setdefault(key.rsplit("-", 1)[0], set()).add(task["worker"])


# ---- results, on a cluster joined by address -------------------------------------------


@pytest.mark.parametrize("file_format", FORMATS)
def test_dask_runner_matches_in_process(runner_inputs, runner_reference, dask_cluster, tmp_path, capsys,
                                        file_format):
    _, patterns, config = runner_inputs
    capsys.readouterr()
    with distributed.Client(dask_cluster) as client, _task_workers(client) as workers:
        document = run_and_read(tmp_path, patterns[file_format], config, *_dask(dask_cluster))
    assert_same_run(document, runner_reference[file_format], f"Dask {file_format}")
    assert document["run"]["runner"] == "DaskRunner"
    assert_counters(printed_counters(capsys.readouterr().out), ROWS)
    # The files were read and evaluated by both worker processes (tasks are
    # named after the first step of a fused stage: read, evaluate, partial combine).
    read_stage = "Read-ReadParquet" if file_format == "parquet" else "Read-ReadTFRecord"
    assert len(workers[read_stage]) == 2, workers


# (partitions, batch size, input)
DASK_SPLITS = [(1, 65536, "parquet-shuffled"), (2, 97, "parquet"), (4, 500, "parquet-shuffled")]


@pytest.mark.parametrize("partitions,batch_size,inputs", DASK_SPLITS)
def test_dask_splitting_changes_nothing(runner_inputs, runner_reference, dask_cluster, tmp_path, partitions,
                                        batch_size, inputs):
    _, patterns, config = runner_inputs
    cluster = dask_cluster
    document = run_and_read(tmp_path, patterns[inputs], config, *_dask(cluster, f"--dask_npartitions={partitions}"),
                            "--batch_size", batch_size)
    assert_same_run(document, runner_reference["parquet"],
                    f"Dask, {partitions} partitions, batch {batch_size}, {inputs}")


def test_dask_predictions_and_rejected_rows(dask_cluster, tmp_path):
    """Tagged outputs, sinks (outputs of finish_bundle) and side inputs on Dask."""
    cluster = dask_cluster
    columns = scores(2400, seed=5)
    columns["logits"][[3, 700, 1999]] = np.nan  # rejected, not fatal
    pattern, _ = write_files(tmp_path / "in", "parquet", split_rows(columns, (800, 800, 800)), row_group_size=200)
    config = write_config(tmp_path / "reject.yaml", head=dict(RUNNER_HEAD), columns=RUNNER_COLUMNS,
                          invalid_rows={"policy": "reject", "max_fraction": 0.01})
    extra = ["--predictions", "logistic,class_ids", "--passthrough", "id", "--batch_size", 300]
    local = run_and_read(tmp_path, pattern, config, *extra, name="direct")
    dask = run_and_read(tmp_path, pattern, config, *extra, *_dask(cluster), name="dask")
    assert_same_run(dask, local, "Dask with predictions and rejected rows")
    assert dask["rows_rejected"] == 3 and dask["rejected_by_reason"] == local["rejected_by_reason"]
    ours = read_predictions(tmp_path / "dask").sort_by("id")
    theirs = read_predictions(tmp_path / "direct").sort_by("id")
    assert ours.num_rows == 2400 - 3
    assert ours.equals(theirs)
    rejected = [pq.read_table(f) for f in glob.glob(str(tmp_path / "dask" / "rejected" / "*.parquet"))]
    assert sorted(r for t in rejected for r in t.column("row").to_pylist()) == [3, 399, 700]  # rows in their files


def test_dask_bad_input_fails_naming_the_row(dask_cluster, tmp_path, capsys):
    cluster = dask_cluster
    columns = scores(600, seed=3)
    columns["label"][450] = 7
    pattern, paths = write_files(tmp_path / "in", "parquet", split_rows(columns, (300, 300)))
    config = write_config(tmp_path / "config.yaml", head=dict(RUNNER_HEAD), columns=RUNNER_COLUMNS)
    code = run_cli(["--input", pattern, "--config", config, "--output", tmp_path / "out", *_dask(cluster)])
    assert code == 1
    error = capsys.readouterr().err
    assert f"{paths[1]}, row 150, column labels (label)" in error, error
    assert not os.path.exists(tmp_path / "out" / "metrics.json")


# ---- a local cluster of its own, as a user runs it ------------------------------------------


def test_dask_local_cluster_is_quiet_and_stops_with_the_run(runner_inputs, runner_reference, tmp_path):
    """dask.distributed logs every start, connection and shutdown at INFO: not shown."""
    _, patterns, config = runner_inputs
    process = subprocess.Popen(
        [sys.executable, RUN_PIPELINE, "--input", patterns["parquet"], "--config", config,
         "--output", tmp_path / "out", "--runner=DaskRunner", "--dask_local_workers=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert err == ""
    assert_same_run(read_metrics(tmp_path / "out"), runner_reference["parquet"], "Dask, own local cluster")
    assert_counters(printed_counters(out), ROWS)
    assert processes_left(process.pid) == []  # its worker processes are gone


def test_ctrl_c_stops_a_dask_run_in_one_line(tmp_path):
    """The terminal sends SIGINT to the launcher and the local cluster's workers alike."""
    pattern, _ = write_files(tmp_path / "in", "parquet", [scores(3000, seed=4)])
    process, output = start_slow_run(tmp_path, pattern, "--runner=DaskRunner", "--dask_local_workers=2")
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=90)
    assert process.returncode == 130, err[-3000:]
    assert err == "error: interrupted by SIGINT: run stopped, its staging directory removed\n"
    assert os.listdir(output) == []
    assert processes_left(process.pid) == []


class _ErrsAsItCloses(distributed.WorkerPlugin):
    """A worker that logs an ERROR while it shuts down, as one whose heartbeat
    finds the scheduler already gone does (timing decides whether it happens)."""

    def teardown(self, worker):
        import logging

        logging.getLogger("distributed.worker").error("Failed to communicate with scheduler during heartbeat.")


def test_a_stopped_runs_workers_say_nothing_as_they_shut_down(capfd):
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    client = distributed.Client(cluster)
    client.register_plugin(_ErrsAsItCloses())
    distributed.wait(client.submit(int, pure=False))  # the worker is up
    busy = client.submit(time.sleep, 3, pure=False)  # and busy as the run is stopped
    capfd.readouterr()
    dask_runner._stop_early(client, cluster, [busy])
    assert capfd.readouterr().err == ""
    assert cluster.status.name == "closed"


# ---- what it needs ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.77.0", "2.77.2", "2.77.0rc1"])
def test_the_beam_release_it_was_written_for_passes(version):
    dask_runner.check_beam_version(version)


@pytest.mark.parametrize("version", ["2.78.0", "2.76.1", "3.0.0", "unknown"])
def test_another_beam_release_is_refused(version):
    with pytest.raises(runners.RunnerError) as error:
        dask_runner.check_beam_version(version)
    assert str(error.value) == (
        f"--runner=DaskRunner: pipeline/dask_runner.py is written for Apache Beam 2.77 (it replaces "
        f"translations of that release's DaskRunner), but Beam {version} is installed; install "
        f"apache-beam==2.77.* or use another runner"
    )


# Runs the CLI as run_pipeline.py does, after `setup` (Python) changed the environment.
_CLI_AFTER = "import sys\n{setup}\nfrom pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("import apache_beam; apache_beam.__version__ = '2.78.0'",
         "error: --runner=DaskRunner: pipeline/dask_runner.py is written for Apache Beam 2.77 "),
        ("sys.modules['dask'] = None  # not installed",
         "error: --runner=DaskRunner needs dask.distributed (No module named 'dask."),
    ],
    ids=["another_beam", "no_dask"],
)
def test_what_dask_runner_needs_is_one_line_and_exit_2(runner_inputs, tmp_path, setup, expected):
    _, patterns, config = runner_inputs
    done = subprocess.run(
        [sys.executable, "-c", _CLI_AFTER.format(setup=setup), "--input", patterns["parquet"], "--config", config,
         "--output", tmp_path / "out", "--runner=DaskRunner"],
        cwd=os.path.dirname(RUN_PIPELINE), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(expected), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    if "needs dask" in expected:
        assert done.stderr.endswith("): pip install 'beam-head-eval[dask]'\n")
    assert not os.path.exists(tmp_path / "out")
