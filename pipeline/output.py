"""Writing results through Beam's FileSystems (local paths or gs://)."""

import datetime
import glob
import json
import os
import threading
import uuid

import numpy as np
from apache_beam.io.filesystems import FileSystems

from head import MetricState
from head.slicing import OVERALL, Bucket, slice_name
from pipeline import reports, validation
from pipeline.errors import DataError
from pipeline.strict_json import to_json

METRICS_FILE = "metrics.json"
# Outputs written by Beam sinks: staged first, moved into place on success.
STAGED_OUTPUTS = ("predictions", "rejected")
STAGING_PREFIX = ".staging-"
# Where a run that failed its counts (too many rejected rows) keeps them:
# OUTPUT/failed-RUN_ID/rejected/, beside an earlier run's outputs, untouched.
FAILED_PREFIX = "failed-"


class OutputCheckError(DataError):
    """The run's counts do not allow writing results."""


def join(directory, *names):
    return FileSystems.join(directory, *names)


def write_json_atomically(path, payload):
    """Writes strict JSON to a temporary name, then renames: never a partial file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as f:
        f.write(to_json(payload, indent=True).encode("utf-8"))
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


def slice_results(keyed_states, plan):
    """((model index, spec index), SliceStates) -> (the key, its slice entries of metrics.json).

    Every metric of every slice is computed at once from the stacked state
    vectors; slices below min_slice_size (except the overall slice) keep
    their counts and get "metrics": null.
    """
    key, states = keyed_states
    keys, totals = states.sorted_items()
    return key, list(_entries(plan, plan.models[key[0]], keys, totals))


def _entries(plan, model, keys, totals):
    """metrics.json entries of one model's slices from their states [n, samples, size].

    With confidence intervals, every metric of a shown slice gets lower,
    upper and standard_error from its values on the K samples (computed for
    all slices and samples at once); the values travel on in `_samples` for
    the diffs' intervals and are dropped from the document.
    """
    layout, intervals = plan.layout, plan.config.confidence_intervals
    if intervals:  # every metric of every slice and sample at once
        values, sample_values, bounds = intervals.metrics(
            lambda states: plan.head.metric_arrays(states, layout), totals)
        point = intervals.point_and_samples(totals)[0]
    else:
        point = totals[:, 0]
        values = plan.head.metric_arrays(point, layout)
    counts = layout.part(point, "examples")
    weights = layout.part(point, "weight")
    for i, key in enumerate(keys):
        count = int(counts[i])
        shown = bool(key == OVERALL or count >= plan.config.min_slice_size)
        entry = {
            "model": model.name,
            "slice": {column: _json_slice_value(value) for column, value in key},
            "slice_name": slice_name(key),
            "example_count": count,
            "weighted_example_count": float(weights[i]),
            "metrics": {k: float(v[i]) for k, v in values.items()} if shown else None,
        }
        if intervals and shown:
            entry["confidence_intervals"] = {k: _interval(*(b[i] for b in bounds[k])) for k in values}
            entry["_samples"] = np.stack([sample_values[k][i] for k in values])  # [metrics, K]
        yield entry


def _interval(lower, upper, standard_error):
    return {"lower": float(lower), "upper": float(upper), "standard_error": float(standard_error)}


def _with_interval(entry, key):
    value = entry["metrics"][key]
    bounds = (entry.get("confidence_intervals") or {}).get(key)
    if value is None or not bounds or bounds["upper"] is None:
        return value
    return f"{value:.6f} ± {bounds['upper'] - value:.6f}"


def _json_slice_value(value):
    return str(value) if isinstance(value, Bucket) else value


def metrics_document(counts, keyed_results, plan, run_info):
    """The metrics.json document (SPEC §7).

    `keyed_results` are slice_results' outputs, in any order. Slices are
    listed per model: the overall slice first, then each slicing spec's
    slices in spec order (values sorted; a slice an earlier spec already
    made is not repeated); non-baseline models' slices that
    the baseline also has get `diff` (candidate - baseline). The top-level
    metrics and counts are the first non-baseline model's overall slice.
    """
    by_key = dict(keyed_results)
    intervals = plan.config.confidence_intervals
    empty = MetricState(plan.layout, (1, intervals.state_samples if intervals else 1)).totals()
    slices = []
    for m, model in enumerate(plan.models):
        if (m, 0) not in by_key:  # no row evaluated: the overall slice is empty
            by_key[m, 0] = list(_entries(plan, model, [OVERALL], empty))
        listed = set()  # a slice two specs make (same key, same rows) is listed once, as TFMA does
        for s in range(len(plan.slicing_specs)):
            for entry in by_key.get((m, s), []):
                if entry["slice_name"] not in listed:
                    listed.add(entry["slice_name"])
                    slices.append(entry)
    baseline = plan.config.baseline
    if baseline is not None:
        base = {(id_spec, e["slice_name"]): e for id_spec in range(len(plan.slicing_specs))
                for e in by_key.get((baseline, id_spec), [])}
        for m in range(len(plan.models)):
            if m == baseline:
                continue
            for id_spec in range(len(plan.slicing_specs)):
                for entry in by_key.get((m, id_spec), []):
                    other = base.get((id_spec, entry["slice_name"]))
                    if other and entry["metrics"] is not None and other["metrics"] is not None:
                        entry["diff"] = {k: v - other["metrics"][k] for k, v in entry["metrics"].items()}
                        if "_samples" in entry:  # paired: the same rows left out of both
                            diffs = np.array(list(entry["diff"].values()))
                            bounds = intervals.intervals(diffs, entry["_samples"] - other["_samples"])
                            entry["diff_confidence_intervals"] = {
                                k: _interval(*(b[j] for b in bounds)) for j, k in enumerate(entry["diff"])}
    for entry in slices:
        entry.pop("_samples", None)
    primary = next(i for i, model in enumerate(plan.models) if not model.is_baseline)
    overall = by_key[primary, 0][0]
    return {
        "metrics": overall["metrics"],
        "example_count": overall["example_count"],
        "weighted_example_count": overall["weighted_example_count"],
        **counts,
        "slices": slices,
        "run": run_info,
    }


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


def commit(document, output_dir, staging, max_fraction, staged_files=(), plan=None, plots=(), *, gates,
           baseline_rows=None, history_rows=None):
    """The run's last step: check, validate, move staged outputs into place, write metrics.json.

    Until this runs, a directory holding an earlier run's outputs is untouched;
    metrics.json is written last, so it exists only for a complete run. The
    verdict on the results against `gates` (validation.Gates; its baseline
    resolved with `baseline_rows` when the pipeline read them from a BigQuery
    history) is written as validation.json beside an empty BLESSED or
    NOT_BLESSED. With `plan`, the configured plots, report and tfma/ outputs
    (pipeline.reports) are written from the document, `plots` (slice_plots'
    outputs), the verdict and `history_rows` (earlier runs' overall rows).
    Returns (the document, the verdict).
    """
    try:
        check_counts(document, max_fraction)
    except OutputCheckError as e:
        kept = _keep_rejected(output_dir, staging, staged_files)
        if kept is None:
            raise
        raise OutputCheckError(f"{e}; the rejected rows are kept in {kept}") from None
    document["run"] = {**document["run"], "seconds": _seconds_since(document["run"]["started"])}
    if baseline_rows is not None:
        gates = gates.with_history_rows(baseline_rows)
    verdict = validation.validate(document, gates)
    staged_reports = (reports.stage(document, plots, plan, staging, verdict, history_rows)
                      if plan is not None else {})
    for name in STAGED_OUTPUTS:
        final_dir = join(output_dir, name)
        # An earlier run's files go, whether or not this run writes this kind.
        old = [m.path for m in FileSystems.match([join(final_dir, "*")])[0].metadata_list]
        if old:
            FileSystems.delete(old)
        _move(_staged(staged_files, staging, name), final_dir)
    if plan is not None:
        reports.publish(staged_reports, output_dir)
    write_json_atomically(join(output_dir, validation.VALIDATION_FILE), verdict)
    _write_marker(output_dir, validation.marker(verdict))
    write_json_atomically(join(output_dir, METRICS_FILE), document)
    remove_staging(staging)
    remove_abandoned_staging(output_dir)
    return document, verdict


def _seconds_since(started):
    """Wall time since the run started (an ISO-8601 time), to the millisecond."""
    elapsed = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(started)
    return round(elapsed.total_seconds(), 3)


def _write_marker(output_dir, name):
    """An empty BLESSED or NOT_BLESSED file; an earlier run's other marker goes."""
    for other in (validation.BLESSED, validation.NOT_BLESSED):
        path = join(output_dir, other)
        if other != name and FileSystems.exists(path):
            FileSystems.delete([path])
    FileSystems.create(join(output_dir, name)).close()


def _staged(staged_files, staging, name):
    return sorted(f for f in staged_files if f.startswith(join(staging, name) + "/"))


def _move(files, directory):
    if not files:
        return
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)  # local disks need it; object stores ignore it
    FileSystems.rename(files, [join(directory, f.rsplit("/", 1)[1]) for f in files])


def _keep_rejected(output_dir, staging, staged_files):
    """A failed run's rejected rows, moved out of staging (which goes): where, or None if none."""
    staged = _staged(staged_files, staging, "rejected")
    if not staged:
        return None
    run_id = staging.rstrip("/").rsplit("/", 1)[-1][len(STAGING_PREFIX):]
    kept = join(output_dir, f"{FAILED_PREFIX}{run_id}", "rejected")
    _move(staged, kept)
    return kept


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


def _table_value(value):
    if value is None:  # undefined (null in metrics.json)
        return "null"
    if isinstance(value, str):  # value ± half-width
        return value
    return f"{value:d}" if isinstance(value, int) else f"{value:.6f}"


def format_table(document):
    """The overall metrics of each model as a text table, for the terminal.

    With confidence intervals, a metric reads `value ± half-width`.
    """
    overall = [e for e in document["slices"] if not e["slice"]]
    names = [e["model"] or "value" for e in overall]
    keys = list(overall[0]["metrics"])
    rows = [(k, [_with_interval(e, k) for e in overall]) for k in keys]
    rows += [(k, [e[k] for e in overall]) for k in ("example_count", "weighted_example_count")]
    rows += [(k, [document[k]] * len(overall)) for k in ("rows_read", "rows_rejected")]
    width = max(len(k) for k, _ in rows)
    shown = [(k, [_table_value(v) for v in values]) for k, values in rows]
    columns = [max(12, len(n), *(len(values[i]) for _, values in shown)) for i, n in enumerate(names)]
    lines = [f"{'metric'.ljust(width)}  " + "  ".join(n.rjust(c) for n, c in zip(names, columns)),
             f"{'-' * width}  " + "  ".join("-" * c for c in columns)]
    for key, values in shown:
        lines.append(f"{key.ljust(width)}  " + "  ".join(v.rjust(c) for v, c in zip(values, columns)))
    intervals = document["run"].get("config", {}).get("confidence_intervals")
    if intervals:
        lines.append(f"± half-width of the {intervals['level']:.0%} confidence interval "
                     f"({intervals['method']}, {intervals['num_samples']} samples)")
    per_model = len(document["slices"]) // max(len(overall), 1)
    if per_model > 1:
        lines.append(f"{per_model} slices per model (overall included) in metrics.json")
    return "\n".join(lines)
