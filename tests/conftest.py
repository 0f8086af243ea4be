"""Fixtures shared by the test modules."""

import os
import subprocess
import sys

import pytest

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
