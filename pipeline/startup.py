"""Start-up of a command-line run: a local run imports only what it uses, and
the heap keeps the memory a batch frees for the next one.

Of the 2.3 s that `import apache_beam` and a first pipeline cost here, about
1.5 s go to modules Beam and pyarrow import only optionally, behind
`except ImportError`, and a local run never uses:
- the Google Cloud I/O apache_beam.io registers (BigQuery, whose client
  pulls in IPython through tqdm.notebook, Pub/Sub, GCS; about 0.7 s), the
  gs:// file system (0.25 s), the Dataflow API client (0.08 s) and the
  Google API client library's errors (apitools, 0.06 s), and MongoDB's
  client (pymongo and its bson, 0.05-0.1 s) for Beam's MongoDB I/O;
- IPython (0.35 s), imported by Beam on the first transform applied only to
  ask whether this is an IPython session;
- pandas (0.3 s): Beam's DataFrame type hints, and pyarrow, which imports
  it to ask whether a value is a pandas object.
`lean_imports(argv)`, called before Beam is imported, hides exactly these
from the code of Beam, pyarrow and this project when the command line names
a local runner and no gs:// path: they behave as where the modules are not
installed. (This project never imports them itself; pyarrow's compiled code
has no Python frames, so its imports of pandas show as made by the code that
called pyarrow.) Any other code, a config's loss_fn say, still imports them
as usual. Worker processes (the multi-process DirectRunner, Dask workers)
import everything.

`python -X importtime run_pipeline.py ...` shows what start-up costs.

`skip_teardown_at_exit()` and `exit(status)`: once a run has written and
closed everything and said its exit status, the interpreter's teardown
(freeing every module's objects one by one: 0.15 s of a 1.4 s demo run)
does nothing anyone can see. The exit runs every other atexit function
first (logging's, the drawing child's, Dask's), flushes stdout and stderr,
then ends the process with the status. A run that ends by an exception
(a bug's traceback, Ctrl-C) has no status said and tears down as usual.

`keep_freed_memory()`: every batch allocates and frees the same large numpy
temporaries (hundreds of KiB to MiB each). glibc's malloc serves them with
fresh mmap()s or hands the heap's top back to the kernel after each batch,
so every batch page-faults its memory in again: 680k page faults and 1.3-1.7
s of system time on 20M Parquet rows (of 5-6 s). Keeping freed memory
(mmap threshold 32 MiB, trim threshold 256 MiB) leaves 27k faults and 0.2 s;
peak RSS moves by a few MiB, as the same memory is reused.
"""

import atexit
import ctypes
import importlib.abc
import logging
import os
import sys

HIDDEN = (
    "apache_beam.io.gcp.bigquery",  # apache_beam.io: BigQuery, Pub/Sub, GCS, cross-language I/O
    "apache_beam.io.gcp.gcsfilesystem",  # the gs:// file system
    "google.cloud.dataflow",  # the Dataflow job API, for the DataflowRunner
    "apitools",  # Google API HTTP errors, for Beam's retry filters
    "bson",  # apache_beam.io.mongodbio: MongoDB's client
    "pymongo",
    "IPython",
    "pandas",
)
HIDDEN_FROM = ("apache_beam", "pyarrow", "head", "pipeline")
# --runner values of runs in this process (or its local workers), lower case.
LOCAL_RUNNERS = {
    None, "directrunner", "daskrunner", "pipeline.runners.daskrunner",
    "apache_beam.runners.dask.dask_runner.daskrunner",
}


def is_local_run(argv):
    """Whether command-line arguments name a local runner and no gs:// path.

    Every argument is searched for "gs://" (input, output, config, temp or
    staging locations), so this errs towards importing everything.
    """
    runner = None
    for i, arg in enumerate(argv):
        if "gs://" in arg:
            return False
        if arg == "--runner" and i + 1 < len(argv):
            runner = argv[i + 1]
        elif arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    return (runner.lower() if runner else None) in LOCAL_RUNNERS


class HideFromBeam(importlib.abc.MetaPathFinder):
    """Refuses the HIDDEN modules to imports made by the code of HIDDEN_FROM."""

    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN and _importer().split(".", 1)[0] in HIDDEN_FROM:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: pipeline/startup.py)", name=name)
        return None  # the other finders decide


def _importer():
    """Name of the module whose code is importing (the first frame outside importlib)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return frame.f_globals.get("__name__") or "" if frame is not None else ""


def lean_imports(argv):
    """Hides HIDDEN from HIDDEN_FROM for the rest of this process if argv is a local run.

    Call before anything imports Beam; it changes nothing once Beam is imported.
    """
    if "apache_beam" in sys.modules or not is_local_run(argv):
        return False
    if not any(isinstance(finder, HideFromBeam) for finder in sys.meta_path):
        sys.meta_path.insert(0, HideFromBeam())
    # Its one warning says that the (hidden) MongoDB client is missing.
    logging.getLogger("apache_beam.io.mongodbio").setLevel(logging.ERROR)
    return True


# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest dynamic threshold
TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory():
    """Makes glibc's malloc keep freed memory for reuse (see above); False where there is no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; musl and macOS have none
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def start_drawing(argv):
    """Starts plots.png's drawing process now in a local run (pipeline/report_png.py).

    A run with a report (the default) finds it ready when its pipeline ends;
    a run without one ends it once the config is read.
    """
    if is_local_run(argv) and not {"-h", "--help"} & set(argv) and not any(
            a.startswith("--dry_run") for a in argv):
        from pipeline import report_png

        report_png.start_early()


_said_status = []  # the status exit() was given


def skip_teardown_at_exit():
    """Ends the process at exit without its teardown, once exit() has said its status.

    Call it before anything else registers an atexit function: they run in
    reverse order, so this one runs after all of those registered later.
    """
    atexit.register(_end_without_teardown)


def exit(status):
    """sys.exit(status), said to the skip_teardown_at_exit() function."""
    _said_status.append(status)
    sys.exit(status)


def _end_without_teardown():
    if not _said_status:
        return
    logging.shutdown()  # registered when logging was imported, before this: it would not run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream: what the teardown would meet
            pass
    os._exit(_said_status[-1])
