"""The package as a user installs it: sdist -> wheel -> installed in a
directory of its own, run from another one through the console script
`beam-head-eval` (SPEC §6) and `python -m run_pipeline`.

Dependencies come from this environment (--no-deps); a full install into a
clean virtual environment is the same with the dependencies downloaded.
"""

import glob
import os
import subprocess
import sys
import tarfile

import pytest

from tests.datafiles import assert_metrics_equal, read_metrics, scores, write_tfrecord

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(install directory, environment that imports from it): the wheel of this checkout's sdist."""
    root = tmp_path_factory.mktemp("install")
    dist, egg = root / "dist", root / "egg"
    os.makedirs(egg)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg), "sdist", "--dist-dir", str(dist)],
        cwd=PROJECT_ROOT, check=True, capture_output=True,
    )
    (sdist,) = glob.glob(str(dist / "*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("setup.py", "run_pipeline.py", "head/__init__.py", "head/metrics.py", "pipeline/cli.py",
                   "pipeline/read.py", "pipeline/runners.py", "pipeline/dask_runner.py", "pipeline/errors.py",
                   "pipeline/tfrecord.py", "pipeline/_tfrecord.c", "configs/default.yaml",
                   "configs/custom_loss.yaml", "configs/example_losses.py", "data/demo/scores.parquet"):
        assert needed in names, f"{needed} missing from the sdist"
    target = root / "installed"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), sdist],
                   check=True, capture_output=True)
    (wheel,) = glob.glob(str(dist / "*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), wheel], check=True, capture_output=True)
    return target, dict(os.environ, PYTHONPATH=str(target))


def test_the_wheel_holds_the_configs_demo_data_and_extension(installed):
    target, _ = installed
    assert os.path.isfile(target / "pipeline" / "configs" / "default.yaml")
    assert os.path.isfile(target / "pipeline" / "configs" / "example_losses.py")
    assert os.path.isfile(target / "pipeline" / "demo" / "scores.parquet")
    assert glob.glob(str(target / "pipeline" / "_tfrecord*.so")), "the TFRecord extension was not built"


def test_the_console_script_runs_the_demo_from_anywhere(installed, tmp_path):
    target, env = installed
    done = subprocess.run([str(target / "bin" / "beam-head-eval")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    demo = read_metrics(tmp_path / "demo_output")
    assert demo["run"]["input"] == str(target / "pipeline" / "demo" / "scores.parquet")
    assert demo["run"]["config"]["head"]["thresholds"] == [0.3, 0.5, 0.7]
    assert demo["example_count"] == 100_000
    # The report's inlined style and script ship with the package.
    assert os.path.isfile(target / "pipeline" / "report.js") and os.path.isfile(target / "pipeline" / "report.css")
    assert os.path.getsize(tmp_path / "demo_output" / "report.html") > 20_000
    # python -m run_pipeline, with worker processes importing the installed packages.
    done = subprocess.run(
        [sys.executable, "-m", "run_pipeline", "--input", os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet"),
         "--output", "out", *MULTI_PROCESS],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_metrics_equal(read_metrics(tmp_path / "out")["metrics"], demo["metrics"], what="installed, 2 processes")


def test_the_packaged_loss_fn_imports_the_same_installed_and_in_a_checkout(installed, tmp_path):
    """configs/custom_loss.yaml names pipeline.configs.example_losses:focal: the same numbers
    through the installed console script outside the checkout and from the checkout."""
    target, env = installed
    demo = os.path.join(PROJECT_ROOT, "data", "demo", "scores.parquet")
    done = subprocess.run(
        [str(target / "bin" / "beam-head-eval"), "--input", demo, "--output", "installed",
         "--config", str(target / "pipeline" / "configs" / "custom_loss.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run(
        [sys.executable, os.path.join(PROJECT_ROOT, "run_pipeline.py"), "--input", demo, "--output",
         tmp_path / "checkout", "--config", os.path.join(PROJECT_ROOT, "configs", "custom_loss.yaml")],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    installed_run, checkout_run = read_metrics(tmp_path / "installed"), read_metrics(tmp_path / "checkout")
    assert installed_run["run"]["config"]["head"]["loss_fn"] == "pipeline.configs.example_losses:focal"
    assert_metrics_equal(installed_run["metrics"], checkout_run["metrics"], rel_tol=0, what="installed vs checkout")


def test_the_installed_tfrecord_framing_reads(installed, tmp_path):
    _, env = installed
    tfrecord = write_tfrecord(tmp_path / "scores.tfrecord", scores(500))
    done = subprocess.run([sys.executable, "-m", "run_pipeline", "--input", tfrecord, "--output", "tf_out"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metrics(tmp_path / "tf_out")["rows_evaluated"] == 500
