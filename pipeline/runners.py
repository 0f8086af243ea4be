"""Runners and their options: which runner a run uses, what it needs before
a pipeline is built (the Dataflow preflight), worker import paths, quiet
workers, and the counters a finished run reports.

The Dask runner itself is pipeline/dask_runner.py.
"""

import contextlib
import io
import json
import logging
import os
import site
import subprocess
import sys

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)

from pipeline.errors import UsageError

_LOGGER = logging.getLogger(__name__)

DASK_RUNNER = "pipeline.dask_runner.DaskRunner"
_DASK_ALIASES = ("dask", "daskrunner", "apache_beam.runners.dask.dask_runner.daskrunner")
# Beam's runners by short name ('DirectRunner', ...), lower-cased as Beam matches them.
_KNOWN_RUNNERS = {
    path.rsplit(".", 1)[-1].lower(): path.rsplit(".", 1)[-1] for path in StandardOptions.ALL_KNOWN_RUNNERS
}
_KNOWN_RUNNERS["daskrunner"] = "DaskRunner"
# Running setup.py to learn what it installs: generous, it only imports setuptools.
SETUP_PROBE_SECONDS = 60


class RunnerError(UsageError):
    """A runner or its options cannot be used; found before any pipeline is built."""


# ---- options -------------------------------------------------------------------


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


def pipeline_options(beam_args):
    """PipelineOptions with `--runner=DaskRunner` resolved and `--dry_run` a bool.

    (Beam's --dry_run has no type: `--dry_run=False` would otherwise be a dry run.)
    Every Beam option is parsed here, so that a bad value is a RunnerError
    in one line, not argparse's usage of every Beam option and an exit later.
    """
    options = PipelineOptions(beam_args)
    said = io.StringIO()
    beam_logger = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_logger.level
    beam_logger.setLevel(logging.ERROR)  # unparseable args: warned about once, when the runner parses
    try:
        with contextlib.redirect_stderr(said):
            options.get_all_options()
    except SystemExit:  # argparse has printed its usage and an "error: ..." line
        last = (said.getvalue().strip().splitlines() or ["error: cannot be parsed"])[-1]
        raise RunnerError(f"Beam options: {last.split('error: ', 1)[-1]}") from None
    finally:
        beam_logger.setLevel(level)
    standard = options.view_as(StandardOptions)
    if isinstance(standard.runner, str) and standard.runner.lower() in _DASK_ALIASES:
        standard.runner = DASK_RUNNER
    test = options.view_as(TestOptions)
    test.dry_run = _truthy(test.dry_run)
    return options


def runner_name(options):
    """'DirectRunner', 'DaskRunner', 'DataflowRunner', ... (short, for humans).

    As Beam resolves names: case-insensitive, 'Runner' optional ('dataflow').
    """
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if not isinstance(runner, str):
        runner = type(runner).__name__
    short = runner.rsplit(".", 1)[-1]
    return _KNOWN_RUNNERS.get(short.lower()) or _KNOWN_RUNNERS.get(short.lower() + "runner") or short


def is_dataflow(options):
    return runner_name(options) in ("DataflowRunner", "TestDataflowRunner")


def is_dry_run(options):
    return bool(options.view_as(TestOptions).dry_run)


def create_runner(options):
    """The runner object for the options' --runner; RunnerError if there is none.

    The DirectRunner is direct_runner(options); DaskRunner is
    pipeline.dask_runner's (which checks the installed Beam and dask).
    """
    name = runner_name(options)
    if name == "DirectRunner":
        return direct_runner(options)
    runner = options.view_as(StandardOptions).runner
    if not isinstance(runner, str):
        return runner
    if name == "DaskRunner":
        from pipeline import dask_runner

        return dask_runner.DaskRunner()
    from apache_beam.runners.runner import create_runner as beam_create_runner

    try:
        return beam_create_runner(runner)
    except ValueError:  # Beam's "Unexpected pipeline runner" (with a long list)
        known = sorted(set(_KNOWN_RUNNERS.values()))
        raise RunnerError(f"--runner {runner}: unknown runner (known: {', '.join(known)})") from None
    except (ImportError, AttributeError) as e:
        raise RunnerError(f"--runner {runner}: cannot be loaded: {e}") from None


def direct_runner(options):
    """The runner for the DirectRunner (the default), else None: the options' runner.

    Beam's DirectRunner first tries the Prism runner, which downloads a Go
    binary from GitHub and runs the job in a separate process, and falls
    back to the FnApiRunner when that fails (here, where GitHub cannot be
    reached, after a failed download on every run). The FnApiRunner is
    chosen directly, configured as the DirectRunner configures it, so a
    local run is the same on every machine: in this process, or in the
    processes or threads --direct_running_mode asks for.
    """
    if runner_name(options) != "DirectRunner":
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    quiet_worker_logs()
    return _quiet_workers_runner()(provision_info=fn_runner.ExtendedProvisionInfo(provision))


def _quiet_workers_runner():
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    class FnApiRunner(fn_runner.FnApiRunner):
        """Worker processes (--direct_running_mode=multi_processing) that ignore Ctrl-C.

        The terminal sends SIGINT to every process of the job; the launcher
        handles it (one line, its staging removed) and stops its workers,
        which would otherwise each print a traceback. Beam starts a worker
        with `sh -c COMMAND`: the shell's `trap '' INT` is inherited by it.
        """

        def run_via_runner_api(self, pipeline_proto, options):
            for environment in pipeline_proto.components.environments.values():
                if environment.urn == python_urns.SUBPROCESS_SDK:
                    environment.payload = b"trap '' INT; exec " + environment.payload
            return super().run_via_runner_api(pipeline_proto, options)

    return FnApiRunner


class _WorkerStartNotices(logging.Filter):
    """Drops the warnings every Beam worker process logs when it starts.

    ("No semi_persistent_directory found", "Discarding unparseable args"):
    about Beam's own set-up, nothing a user can act on; a worker's real
    warnings and errors still show.
    """

    NOTICES = ("No semi_persistent_directory found", "Discarding unparseable args")

    def filter(self, record):
        message = record.getMessage()
        return not any(notice in message for notice in self.NOTICES)


def quiet_worker_logs():
    """Worker processes' logs (relayed by the launcher) show warnings and errors only."""
    logger = logging.getLogger("apache_beam.runners.portability.local_job_service")
    if not any(isinstance(f, _WorkerStartNotices) for f in logger.filters):
        logger.addFilter(_WorkerStartNotices())


# ---- Dataflow preflight -------------------------------------------------------------


def check_dataflow(options, runner, loss_fn=None):
    """What a Dataflow job needs that Beam would find late, or in a traceback.

    Checked before any pipeline is built, offline (no network call):
    the package reaches the workers (--setup_file exists, or a container
    image is named), the config's loss_fn module is inside what
    --setup_file ships, and Beam's own option validation passes.
    Raises RunnerError with one line.
    """
    setup_file = options.view_as(SetupOptions).setup_file
    image = options.view_as(WorkerOptions).sdk_container_image
    if setup_file and not os.path.isfile(setup_file):
        raise RunnerError(
            f"--setup_file {setup_file}: no such file (Dataflow workers install this package "
            f"from it: from a checkout, --setup_file ./setup.py)"
        )
    if not setup_file and not image:
        raise RunnerError(
            "--setup_file is missing: Dataflow workers need this package; pass --setup_file "
            "./setup.py (from a checkout), or --sdk_container_image with beam-head-eval installed"
        )
    _check_beam_validation(options, runner)
    if loss_fn and setup_file:
        _check_shipped(loss_fn, setup_file)


def _check_beam_validation(options, runner):
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

    validator = PipelineOptionsValidator(options, runner)
    if is_dry_run(options):
        # Without a valid --temp_location or --staging_location Beam's
        # validation creates a default bucket: a network call, retried for
        # minutes without credentials. A dry run stays offline.
        cloud = options.view_as(GoogleCloudOptions)
        location_errors = [validator.validate_gcs_path(cloud, name) for name in ("temp_location", "staging_location")]
        if all(location_errors):
            raise RunnerError(f"Dataflow options: {location_errors[0][0]} (a dry run needs a gs:// --temp_location)")
    errors = validator.validate()
    if errors:
        problems = "; ".join(" ".join(error.split()).rstrip(".") for error in errors) + "."
        raise RunnerError(f"Dataflow options: {problems}")


# Runs a setup.py with setuptools.setup replaced: prints what it would install.
_SETUP_PROBE = """
import json, runpy, sys
import setuptools
found = {}
def setup(**kwargs):
    found.update(kwargs)
setuptools.setup = setup
sys.argv = [sys.argv[1], "--name"]
runpy.run_path(sys.argv[0], run_name="__main__")
print(json.dumps({"packages": list(found.get("packages") or []),
                  "py_modules": list(found.get("py_modules") or [])}))
"""


def shipped_modules(setup_file):
    """(packages, modules) that a setup.py installs, as its setup() call names them."""
    directory = os.path.dirname(os.path.abspath(setup_file))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SETUP_PROBE, os.path.abspath(setup_file)],
            cwd=directory, capture_output=True, text=True, timeout=SETUP_PROBE_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise RunnerError(f"--setup_file {setup_file}: did not finish in {SETUP_PROBE_SECONDS} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RunnerError(f"--setup_file {setup_file}: fails to run: {last}")
    found = json.loads(lines[-1])
    return found["packages"], found["py_modules"]


def _check_shipped(loss_fn, setup_file):
    """The loss_fn's module is installed on the workers by the setup file."""
    module = loss_fn.split(":", 1)[0]
    packages, modules = shipped_modules(setup_file)
    parent = module.rpartition(".")[0]
    if module in modules or module in packages or parent in packages:
        return
    shipped = ", ".join(sorted(packages) + sorted(modules))
    raise RunnerError(
        f"head.loss_fn {loss_fn}: module {module} is not shipped to Dataflow workers by "
        f"--setup_file {setup_file} (it installs {shipped}); put the module in one of those "
        f"packages and name it by that package, or add its package to that setup.py"
    )


def export_import_path():
    """Lets worker processes started from here import what this process does.

    Multi-process DirectRunner and local Dask workers are new interpreters
    that do not see this process's sys.path: when `head` and `pipeline` are
    not installed (a checkout run from another directory) their directory is
    added to PYTHONPATH, and so is the working directory (a loss_fn module).
    """
    import pipeline

    root = os.path.dirname(os.path.dirname(os.path.abspath(pipeline.__file__)))
    installed = {os.path.abspath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    known = installed | {os.path.abspath(p) for p in current}
    missing = [d for d in dict.fromkeys([root, os.getcwd()]) if d not in known]
    if missing:
        os.environ["PYTHONPATH"] = os.pathsep.join(missing + current)


# ---- counters --------------------------------------------------------------------


def counters(result, namespace=None):
    """{counter name: value} of `namespace`, summed over steps; None if unsupported.

    Committed values where the runner has them, else attempted ones.
    """
    if namespace is None:
        from pipeline.evaluate import COUNTER_NAMESPACE as namespace
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    except (NotImplementedError, AttributeError) as e:
        _LOGGER.info("runner reports no metrics: %s", e)
        return None
    totals = {}
    for item in query.get("counters", []):
        value = item.committed if item.committed is not None else item.attempted
        name = item.key.metric.name
        totals[name] = totals.get(name, 0) + (value or 0)
    return totals
