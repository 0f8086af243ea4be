"""Ctrl-C and SIGTERM (pipeline/cli.py), as a user meets them: the program
stops with one line on stderr and exit status 130 / 143, its staging
directory is removed and no process of the job is left. A run killed before
it could clean up (SIGKILL) leaves its staging directory; the next
successful run into that output removes it.

The run is stopped while it evaluates (its loss_fn blocks), with the staging
directory on disk. Ctrl-C reaches every process of the terminal's
foreground job: the signal goes to the run's process group. Dask: see
tests/test_dask_runner.py.
"""

import os
import signal

import pytest

from tests.datafiles import processes_left, read_metrics, run_cli, scores, start_slow_run, write_parquet

# (signal, sent to, Beam options, exit status)
CASES = {
    "ctrl_c": ("SIGINT", "group", [], 130),
    "sigterm": ("SIGTERM", "process", [], 143),
    "ctrl_c_worker_processes": (
        "SIGINT", "group", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"], 130,
    ),
}


@pytest.fixture(scope="module")
def small_input(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("signals") / "scores.parquet", scores(3000, seed=4))


@pytest.mark.parametrize("case", list(CASES))
def test_a_signal_stops_the_run_in_one_line(small_input, tmp_path, case):
    signal_name, to, options, status = CASES[case]
    process, output = start_slow_run(tmp_path, small_input, *options)
    number = getattr(signal, signal_name)
    if to == "group":
        os.killpg(process.pid, number)
    else:
        os.kill(process.pid, number)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err[-3000:]
    assert err == f"error: interrupted by {signal_name}: run stopped, its staging directory removed\n"
    assert os.listdir(output) == []
    assert processes_left(process.pid) == []


def test_a_successful_run_removes_staging_left_by_killed_runs(small_input, tmp_path):
    process, output = start_slow_run(tmp_path, small_input)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (left,) = [name for name in os.listdir(output) if name.startswith(".staging-")]
    assert os.listdir(output / left), "the killed run staged nothing"
    os.makedirs(output / ".staging-0123456789ab")  # an empty one, left by a run killed early
    assert run_cli(["--input", small_input, "--output", output]) == 0
    assert not [name for name in os.listdir(output) if name.startswith(".staging-")]
    assert "metrics.json" in os.listdir(output)
    assert read_metrics(output)["rows_read"] == 3000
