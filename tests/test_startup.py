"""pipeline.startup: a local command-line run imports only what it uses, with the same results.

Each run is a fresh interpreter (`python run_pipeline.py`), as the hiding
only works before Beam is first imported.
"""

import json
import os
import subprocess
import sys

import pytest

from pipeline import startup
from tests.datafiles import run_cli

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEMO = os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet")
# A run as run_pipeline.py does it, then what this process imported.
RUN = (
    "import json, sys\n"
    "from pipeline import startup\n"
    "lean = startup.lean_imports(sys.argv[1:])\n"
    "from pipeline.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hidden = [m for m in startup.HIDDEN if m in sys.modules]\n"
    "import pandas  # any code but Beam's, pyarrow's and ours still can\n"
    "print(json.dumps({'lean': lean, 'hidden_imported': hidden}))\n"
    "sys.exit(code)\n"
)


@pytest.mark.parametrize(
    "argv, local",
    [
        ([], True),
        (["--input", "a.parquet", "--output", "out", "--runner=DirectRunner"], True),
        (["--runner", "DaskRunner", "--dask_local_workers", "2"], True),
        (["--runner=directrunner"], True),
        (["--input", "gs://bucket/a.parquet", "--output", "out"], False),
        (["--output", "out", "--temp_location=gs://bucket/tmp"], False),
        (["--runner=DataflowRunner", "--output", "out"], False),
        (["--runner", "PortableRunner"], False),
    ],
)
def test_local_runs_are_recognised(argv, local):
    assert startup.is_local_run(argv) is local


def _run(args, cwd):
    result = subprocess.run(
        [sys.executable, "-c", RUN] + [str(a) for a in args],
        capture_output=True, text=True, cwd=cwd, env=dict(os.environ, PYTHONPATH=PROJECT_ROOT),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bson" not in result.stderr  # no warning about a module hidden on purpose
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_local_run_skips_the_hidden_modules_and_gives_the_same_metrics(tmp_path):
    report = _run(["--input", DEMO, "--output", tmp_path / "lean"], tmp_path)
    assert report == {"lean": True, "hidden_imported": []}
    assert run_cli(["--input", DEMO, "--output", tmp_path / "full"]) == 0  # this process imported everything
    lean, full = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("lean", "full"))
    assert lean["metrics"] == full["metrics"]
    assert lean["example_count"] == full["example_count"] == 100_000


def test_a_loss_fn_can_import_what_beam_does_not_get(tmp_path):
    (tmp_path / "pandas_losses_for_test.py").write_text(
        "import numpy as np\nimport pandas as pd\n\n"
        "def ce(labels, logits):\n"
        "    x = pd.Series(logits.astype(np.float64).ravel()).to_numpy().reshape(logits.shape)\n"
        "    return (np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))).astype(np.float32)\n"
    )
    (tmp_path / "eval.yaml").write_text("head: {loss_fn: 'pandas_losses_for_test:ce'}\n")
    report = _run(["--input", DEMO, "--config", "eval.yaml", "--output", tmp_path / "out"], tmp_path)
    assert report["lean"] is True and "pandas" in report["hidden_imported"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["example_count"] == 100_000


def test_a_run_with_gs_paths_imports_everything(tmp_path):
    """A Dataflow dry run with gs:// paths: nothing is hidden (the GCS file system is there)."""
    code = (
        "import sys\n"
        "from pipeline import startup\n"
        "assert startup.lean_imports(['--input', 'gs://bucket/x.parquet']) is False\n"
        "import apache_beam\n"
        "from apache_beam.io.filesystems import FileSystems\n"
        "assert FileSystems.get_scheme('gs://bucket/x') == 'gs'\n"
        "FileSystems.get_filesystem('gs://bucket/x')\n"
        "assert 'apache_beam.io.gcp.bigquery' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=PROJECT_ROOT))
    assert result.returncode == 0, result.stderr[-3000:]


# Batch-like numpy temporaries (0.5-2 MiB), allocated and freed 50 times; prints the page faults.
ALLOCATE = (
    "import resource, sys\n"
    "import numpy as np\n"
    "from pipeline import startup\n"
    "if sys.argv[1] == 'keep':\n"
    "    assert startup.keep_freed_memory() is True\n"
    "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "before = faults()\n"
    "for _ in range(50):\n"
    "    x = np.random.default_rng(0).random(1 << 16)\n"
    "    above = (x[:, None] > np.linspace(0, 1, 4)).astype(np.float64)\n"
    "    buckets = np.bincount(np.searchsorted(np.linspace(0, 1, 200), x), minlength=201)\n"
    "    longer = np.concatenate([x, x, x, x])\n"
    "    del x, above, buckets, longer\n"
    "print(faults() - before)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_spares_the_page_faults_of_every_batch():
    def faults(mode):
        result = subprocess.run([sys.executable, "-c", ALLOCATE, mode], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=PROJECT_ROOT))
        assert result.returncode == 0, result.stderr[-3000:]
        return int(result.stdout)

    default, kept = faults("default"), faults("keep")
    # Each pass faults in its ~3.5 MiB (900 pages) again by default; kept, only the first does.
    assert default > 50 * 500 and kept < 3000, (default, kept)


# A program ending as run_pipeline.py does: what is flushed, what runs, what is skipped.
ENDING = (
    "import atexit, sys\n"
    "from pipeline import startup\n"
    "startup.skip_teardown_at_exit()\n"
    "atexit.register(print, 'atexit ran', file=sys.stderr)  # registered later: runs first\n"
    "class Freed:\n"
    "    def __del__(self):\n"
    "        print('torn down', file=sys.stderr)\n"
    "sys.modules['freed_at_teardown'] = type(sys)('freed_at_teardown')\n"
    "sys.modules['freed_at_teardown'].value = Freed()\n"
    "sys.stdout.write('x' * 100_000)  # still buffered when the exit comes\n"
    "if sys.argv[1] == 'status':\n"
    "    startup.exit(3)\n"
    "raise RuntimeError('a bug')\n"
)


@pytest.mark.parametrize("ending", ["status", "exception"])
def test_a_said_exit_status_skips_only_the_teardown(ending):
    result = subprocess.run([sys.executable, "-c", ENDING, ending], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=PROJECT_ROOT))
    assert result.stdout == "x" * 100_000
    assert "atexit ran" in result.stderr
    if ending == "status":
        assert result.returncode == 3 and "torn down" not in result.stderr
    else:  # no status said: the traceback, and the usual teardown
        assert result.returncode == 1 and "RuntimeError: a bug" in result.stderr
        assert "torn down" in result.stderr
