"""Fixtures shared by the test modules."""

import math
import os
import subprocess
import sys

import pytest

from tests.datafiles import (
    REL_TOL,
    assert_metrics_equal,
    head_results,
    read_metrics,
    run_cli,
    scores,
    split_rows,
    write_config,
    write_files,
    write_parquet,
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PIPELINE = os.path.join(PROJECT_ROOT, "run_pipeline.py")


@pytest.fixture
def cli(tmp_path):
    """`python run_pipeline.py ARGS...` in a subprocess, as a user runs it.

    Runs in a fresh directory under tmp_path (this checkout's packages come
    first on sys.path, as for any script); returns the CompletedProcess with
    text stdout and stderr.
    """
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    def run(*args, timeout=600):
        return subprocess.run(
            [sys.executable, RUN_PIPELINE, *(str(a) for a in args)],
            cwd=workdir, capture_output=True, text=True, timeout=timeout,
        )

    return run


@pytest.fixture
def no_gcs(monkeypatch):
    """Fails the test if anything opens a GCS client (Dataflow dry runs are offline)."""
    from apache_beam.io.gcp import gcsio

    touched = []

    def refuse(self, *args, **kwargs):
        touched.append(args)
        raise AssertionError("GCS touched in a dry run")

    monkeypatch.setattr(gcsio.GcsIO, "__init__", refuse)
    yield touched
    assert not touched


# The runner tests' data set (tests/test_runners.py, tests/test_dask_runner.py).
RUNNER_FILE_SIZES = (1100, 700, 1500, 900)  # rows per input file
RUNNER_ROW_GROUP_SIZE = 300
RUNNER_HEAD = {"weight_column": "weight", "thresholds": [0.25, 0.5, 0.75]}
RUNNER_COLUMNS = {"logits": "logits", "label": "label"}
RUNNER_FORMATS = ("parquet", "tfrecord")


@pytest.fixture(scope="session")
def runner_inputs(tmp_path_factory):
    """(columns, {input name: pattern}, config path): the same rows as Parquet and TFRecord.

    'parquet-shuffled' holds the same files under names that sort differently,
    so the pipeline meets the rows in another order.
    """
    columns = scores(sum(RUNNER_FILE_SIZES), seed=11)
    parts = split_rows(columns, RUNNER_FILE_SIZES)
    root = tmp_path_factory.mktemp("runner-inputs")
    patterns = {}
    for file_format in RUNNER_FORMATS:
        patterns[file_format], _ = write_files(
            root / file_format, file_format, parts, row_group_size=RUNNER_ROW_GROUP_SIZE
        )
    shuffled = root / "parquet-shuffled"
    os.makedirs(shuffled)
    for name, part in zip(("c", "a", "d", "b"), parts):
        write_parquet(shuffled / f"scores-{name}.parquet", part, row_group_size=RUNNER_ROW_GROUP_SIZE)
    patterns["parquet-shuffled"] = str(shuffled / "scores-*.parquet")
    config = write_config(root / "config.yaml", head=dict(RUNNER_HEAD), columns=RUNNER_COLUMNS)
    return columns, patterns, config


@pytest.fixture(scope="session")
def runner_reference(runner_inputs, tmp_path_factory):
    """In-process DirectRunner metrics.json per format (checked against the head itself)."""
    columns, patterns, config = runner_inputs
    expected, count, weighted = head_results(
        dict(RUNNER_HEAD), columns["logits"], columns["label"], columns["weight"]
    )
    documents = {}
    for file_format in RUNNER_FORMATS:
        output = tmp_path_factory.mktemp(f"reference-{file_format}")
        assert run_cli(["--input", patterns[file_format], "--config", config, "--output", output]) == 0
        document = read_metrics(output)
        assert_metrics_equal(document["metrics"], expected, what=f"in-process {file_format} vs the head")
        assert document["example_count"] == count
        assert math.isclose(document["weighted_example_count"], weighted, rel_tol=REL_TOL)
        documents[file_format] = document
    return documents


@pytest.fixture(scope="module")
def dask_cluster():
    """A real dask.distributed scheduler and 2 worker processes, on the loopback interface only."""
    distributed = pytest.importorskip("distributed")
    from pipeline import runners

    runners.export_import_path()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster
