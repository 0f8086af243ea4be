"""Writing results through Beam's FileSystems (local paths or gs://)."""

import glob
import json
import math
import os
import threading
import uuid

from apache_beam.io.filesystems import FileSystems

METRICS_FILE = "metrics.json"
# Outputs written by Beam sinks: staged first, moved into place on success.
STAGED_OUTPUTS = ("predictions", "rejected")
STAGING_PREFIX = ".staging-"


class OutputCheckError(ValueError):
    """The run's counts do not allow writing results."""


def join(directory, *names):
    return FileSystems.join(directory, *names)


def to_json(value, **kwargs):
    """Strict JSON (RFC 8259) text of `value`: NaN and +-Infinity become null.

    Python's json writes them as the tokens NaN and Infinity, which strict
    parsers (JavaScript's JSON.parse, jq, BigQuery) reject. Every JSON the
    program writes goes through here; `kwargs` are json.dumps's.
    """
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value):
    if isinstance(value, float):  # numpy's float64 too
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if hasattr(value, "dtype") and value.dtype.kind == "f" and value.ndim == 0:  # numpy float32 scalars
        return _finite(float(value))
    return value


def write_json_atomically(path, payload):
    """Writes strict JSON to a temporary name, then renames: never a partial file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as f:
        f.write(to_json(payload, indent=2).encode("utf-8"))
        f.write(b"\n")
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])
    return path


def read_json(path):
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def staging_dir(output_dir, run_id):
    return join(output_dir, f"{STAGING_PREFIX}{run_id}")


def metrics_document(result, run_info):
    """The metrics.json document (SPEC §7) from the CombineFn's output."""
    counts = {k: v for k, v in result.items() if k != "metrics"}
    return {"metrics": result["metrics"], **counts, "slices": [], "run": run_info}


def check_counts(document, max_fraction):
    """Every row read is evaluated or rejected; rejections within the limit."""
    read, evaluated = document["rows_read"], document["rows_evaluated"]
    rejected = document["rows_rejected"]
    if read != evaluated + rejected:
        raise OutputCheckError(
            f"rows do not reconcile: read {read} != evaluated {evaluated} + rejected {rejected}"
        )
    if rejected > max_fraction * read:
        reasons = "; ".join(f"{k}: {v}" for k, v in document["rejected_by_reason"].items())
        raise OutputCheckError(
            f"{rejected} of {read} rows rejected ({rejected / read:.4%}), more than "
            f"invalid_rows.max_fraction {max_fraction:g}: {reasons}"
        )


def commit(document, output_dir, staging, max_fraction, staged_files=()):
    """The run's last step: check, move staged outputs into place, write metrics.json.

    Until this runs, a directory holding an earlier run's outputs is untouched;
    metrics.json is written last, so it exists only for a complete run.
    """
    check_counts(document, max_fraction)
    for name in STAGED_OUTPUTS:
        final_dir = join(output_dir, name)
        staged = sorted(f for f in staged_files if f.startswith(join(staging, name) + "/"))
        # An earlier run's files go, whether or not this run writes this kind.
        old = [m.path for m in FileSystems.match([join(final_dir, "*")])[0].metadata_list]
        if old:
            FileSystems.delete(old)
        if not staged:
            continue
        if not FileSystems.exists(final_dir):
            FileSystems.mkdirs(final_dir)  # local disks need it; object stores ignore it
        FileSystems.rename(staged, [join(final_dir, f.rsplit("/", 1)[1]) for f in staged])
    path = write_json_atomically(join(output_dir, METRICS_FILE), document)
    remove_staging(staging)
    remove_abandoned_staging(output_dir)
    return path


def _local(path):
    return FileSystems.get_scheme(path) in (None, "file")


def remove_staging(staging):
    """Deletes a staging directory and everything in it (no error if absent)."""
    if _local(staging):
        if FileSystems.exists(staging):
            FileSystems.delete([staging])
        return
    # Object stores have no directories: the objects under the prefix go.
    objects = [m.path for m in FileSystems.match([join(staging, "**")])[0].metadata_list]
    if objects:
        FileSystems.delete(objects)


def remove_abandoned_staging(output_dir):
    """Deletes the staging directories of runs killed before they could clean up.

    Called once a run has committed. A run writing to the same output
    directory at the same moment would lose its staged files; but two runs
    writing one output directory at once overwrite each other's outputs anyway.
    """
    if _local(output_dir):
        stagings = glob.glob(os.path.join(glob.escape(output_dir), STAGING_PREFIX + "*"))
    else:
        found = FileSystems.match([join(output_dir, STAGING_PREFIX + "*", "**")])[0].metadata_list
        root = output_dir.rstrip("/")
        stagings = {join(root, m.path[len(root):].lstrip("/").split("/", 1)[0]) for m in found}
    for staging in sorted(stagings):
        remove_staging(staging)


def remove_staging_within(staging, seconds):
    """remove_staging, given up after `seconds`; None when done, else why not.

    After a failure the program must end promptly with its one-line error,
    even when the store is slow or unreachable; staging left behind is
    removed by the next run into the same output directory that succeeds.
    """
    outcome = []

    def remove():
        try:
            remove_staging(staging)
            outcome.append(None)
        except Exception as e:  # reported by the caller, in one line
            outcome.append(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")

    worker = threading.Thread(target=remove, name="remove-staging", daemon=True)
    worker.start()
    worker.join(seconds)
    return outcome[0] if outcome else f"not done within {seconds:g} s"


def format_table(document):
    """The metrics as a two-column text table, for the terminal."""
    counts = ("example_count", "weighted_example_count", "rows_read", "rows_rejected")
    rows = list(document["metrics"].items()) + [(k, document[k]) for k in counts]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  {'-' * 12}"]
    for key, value in rows:
        if value is None:  # undefined (null in metrics.json)
            shown = "null"
        else:
            shown = f"{value:d}" if isinstance(value, int) else f"{value:.6f}"
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)
