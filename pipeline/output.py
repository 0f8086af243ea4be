"""Writing results through Beam's FileSystems (local paths or gs://)."""

import json
import uuid

from apache_beam.io.filesystems import FileSystems

METRICS_FILE = "metrics.json"


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


def metrics_document(result, run_info):
    """The metrics.json document (SPEC §7) from the CombineFn's output."""
    return {
        "metrics": result["metrics"],
        "example_count": result["example_count"],
        "weighted_example_count": result["weighted_example_count"],
        "slices": [],
        "run": run_info,
    }


def format_table(document):
    """The metrics as a two-column text table, for the terminal."""
    rows = list(document["metrics"].items()) + [
        ("example_count", document["example_count"]),
        ("weighted_example_count", document["weighted_example_count"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  {'-' * 12}"]
    for key, value in rows:
        shown = f"{value:d}" if isinstance(value, int) else f"{value:.6f}"
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)
