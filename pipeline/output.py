"""Writing results through Beam's FileSystems (local paths or gs://)."""

import json
import uuid

from apache_beam.io.filesystems import FileSystems

METRICS_FILE = "metrics.json"
# Outputs written by Beam sinks: staged first, moved into place on success.
STAGED_OUTPUTS = ("predictions", "rejected")


class OutputCheckError(ValueError):
    """The run's counts do not allow writing results."""


def join(directory, *names):
    return FileSystems.join(directory, *names)


def write_json_atomically(path, payload):
    """Writes JSON to a temporary name, then renames: never a partial file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as f:
        f.write(json.dumps(payload, indent=2, sort_keys=False).encode("utf-8"))
        f.write(b"\n")
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])
    return path


def read_json(path):
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def staging_dir(output_dir, run_id):
    return join(output_dir, f".staging-{run_id}")


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
    return path


def remove_staging(staging):
    if FileSystems.exists(staging):
        FileSystems.delete([staging])


def format_table(document):
    """The metrics as a two-column text table, for the terminal."""
    counts = ("example_count", "weighted_example_count", "rows_read", "rows_rejected")
    rows = list(document["metrics"].items()) + [(k, document[k]) for k in counts]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  {'-' * 12}"]
    for key, value in rows:
        shown = f"{value:d}" if isinstance(value, int) else f"{value:.6f}"
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)
