"""The outputs people and tools read besides metrics.json (SPEC §7, config `outputs`).

- plots.json (`outputs.plots`): per (model, slice) the ROC/PR points
  (confusion matrices at Keras AUC's 200 thresholds), the confusion matrices
  at the head's thresholds and TFMA's calibration histogram (head.plots).
- report.html and plots.png (`outputs.report`): pipeline/report_html.py,
  pipeline/report_png.py.
- tfma/ (`outputs.tfma`): pipeline/tfma_output.py (imports TFMA only then).

The plot data come from the same combined states as the metrics
(`slice_plots`, one step per (model, slicing spec)); the commit step stages
every file (`stage`) before anything is moved, then `publish` moves them into
place with the other outputs, so a failed run leaves an earlier run's
reports untouched and a run with an output turned off removes the earlier one.
"""

import numpy as np
from apache_beam.io.filesystems import FileSystems

from head.plots import plot_data
from head.slicing import slice_name
from pipeline.strict_json import to_json

PLOTS_FILE = "plots.json"
REPORT_FILE = "report.html"
PNG_FILE = "plots.png"
TFMA_DIR = "tfma"
REPORT_OUTPUTS = (PLOTS_FILE, REPORT_FILE, PNG_FILE, TFMA_DIR)
# The plots of one slice, in plots.json's order.
PLOTS = ("confusion_matrices", "confusion_matrices_at_thresholds", "calibration_histogram")
_STAGED = "reports"  # under the run's staging directory


_drawer = []  # the Drawer preload() started, used by the next stage()


def preload(config):
    """Readies the process that will draw plots.png, so it imports matplotlib while a local pipeline runs."""
    if not _drawer:
        from pipeline import report_png

        drawer = report_png.take_drawer(config.outputs["report"])
        if drawer is not None:
            _drawer.append(drawer)


def _point_states(plan, totals):
    """The point-estimate states of [n, ...] combined states.

    With confidence intervals (issue 10) the combined states carry samples;
    the plots show the point estimate, as the metrics do.
    """
    intervals = getattr(plan.config, "confidence_intervals", None)
    if intervals:
        return intervals.point_and_samples(totals)[0]
    return totals[:, 0] if totals.ndim == 3 else totals


def slice_plots(keyed_states, plan):
    """((model index, spec index), SliceStates) -> ((model name, spec index), (slice names, plot data)).

    The plot data of every slice of the key at once, from the same combined
    states as the metrics: {plot: {field: array [slices, points]}}.
    """
    (m, s), states = keyed_states
    keys, totals = states.sorted_items()
    point = _point_states(plan, np.asarray(totals))
    # The overall slice, and each spec's largest max_plot_slices slices: 10,000 slices'
    # curves would be about a gigabyte of JSON that nobody plots.
    limit = len(keys) if s == 0 else plan.config.outputs["max_plot_slices"]
    counts = plan.layout.part(point, "examples")
    kept = np.sort(np.argsort(-counts, kind="stable")[:limit])
    return (plan.models[m].name, s), ([slice_name(keys[i]) for i in kept], plot_data(plan.layout, point[kept]))


def plots_document(document, keyed_plots):
    """plots.json: the plot data of every slice entry of `document`, in its order.

    `keyed_plots` are slice_plots' outputs, in any order. An entry holds the
    slice's identity and counts as in metrics.json, then per plot
    {field: [value per point]}; undefined values (0 / 0) are null, and a slice
    whose metrics are withheld (min_slice_size) has its plots withheld too.
    Values stay numpy rows (views of each key's arrays, NaN for undefined)
    until written: with 10,000 slices, Python lists of every point took
    gigabytes.
    """
    rows = {}  # (model, slice name) -> (its spec's plot data, row): the first spec that made the slice
    for (model, _), (names, data) in sorted(keyed_plots, key=lambda item: item[0][1]):
        arrays = {plot: {field: np.asarray(values, dtype=np.float64) for field, values in fields.items()}
                  for plot, fields in data.items()}
        for i, name in enumerate(names):
            if (model, name) not in rows:
                rows[model, name] = (arrays, i)
    plots = []
    for entry in document["slices"]:
        out = {k: entry[k] for k in ("model", "slice", "slice_name", "example_count", "weighted_example_count")}
        found = rows.get((entry["model"], entry["slice_name"]))
        for plot in PLOTS:
            if found is None or entry["metrics"] is None:
                out[plot] = None
            else:
                arrays, i = found
                out[plot] = {field: values[i] for field, values in arrays[plot].items()}
        plots.append(out)
    return {"plots": plots}


def write_plots(path, plots):
    """plots.json, one entry at a time (only one entry's text exists at once)."""
    with FileSystems.create(path) as f:
        f.write(b'{"plots":[')
        for i, entry in enumerate(plots["plots"]):
            f.write((",\n" if i else "\n").encode("utf-8") + to_json(entry).encode("utf-8"))
        f.write(b"\n]}\n")
    return path


def _write(path, data):
    with FileSystems.create(path) as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def stage(document, keyed_plots, plan, staging, validation=None, history=None):
    """Writes the configured outputs under `staging`; returns {name relative to the output: staged path}.

    `validation` is validation.json's content when the run has one (shown in
    the report, written to tfma/); `history` the earlier runs' history rows
    of the overall slices (the report's trend).
    """
    outputs = plan.config.outputs
    if not plan.config.writes_plots:
        return {}
    root = FileSystems.join(staging, _STAGED)
    staged = {}
    plots = plots_document(document, keyed_plots)
    if outputs["report"]:
        from pipeline import report_html, report_png

        # Drawn by the preloaded child while this process writes the rest, else here.
        png = _drawer.pop().start(document, plots) if _drawer else lambda: report_png.render(document, plots)
        staged[REPORT_FILE] = _write(FileSystems.join(root, REPORT_FILE),
                                     report_html.render(document, plots, validation, history))
    if outputs["plots"]:
        staged[PLOTS_FILE] = write_plots(FileSystems.join(root, PLOTS_FILE), plots)
    if outputs["report"]:
        staged[PNG_FILE] = _write(FileSystems.join(root, PNG_FILE), png())
    if outputs["tfma"]:
        from pipeline import tfma_output  # imports TFMA (and TensorFlow): only when asked for

        for name in tfma_output.write(FileSystems.join(root, TFMA_DIR), document, plots, plan, validation):
            staged[f"{TFMA_DIR}/{name}"] = FileSystems.join(root, TFMA_DIR, name)
    return staged


def publish(staged, output_dir):
    """Moves staged outputs into `output_dir`, replacing (or removing) an earlier run's."""
    old = []
    for name in REPORT_OUTPUTS:
        path = FileSystems.join(output_dir, name)
        if name == TFMA_DIR and not FileSystems.exists(path):  # object stores: no directory, its files
            old += [m.path for m in FileSystems.match([FileSystems.join(path, "*")])[0].metadata_list]
        elif FileSystems.exists(path):
            old.append(path)
    if old:
        FileSystems.delete(old)
    tfma_dir = FileSystems.join(output_dir, TFMA_DIR)
    if any(name.startswith(TFMA_DIR + "/") for name in staged) and not FileSystems.exists(tfma_dir):
        FileSystems.mkdirs(tfma_dir)  # local disks need it; object stores ignore it
    names = sorted(staged)
    if names:
        FileSystems.rename([staged[n] for n in names], [FileSystems.join(output_dir, *n.split("/")) for n in names])
    return [FileSystems.join(output_dir, *n.split("/")) for n in names]


def describe(output_dir, config):
    """Lines for the terminal: where the run's reports are."""
    outputs, lines = config.outputs, []
    if outputs["report"]:
        lines.append(f"report: {FileSystems.join(output_dir, REPORT_FILE)} "
                     f"(overall plots: {FileSystems.join(output_dir, PNG_FILE)})")
    if outputs["plots"]:
        lines.append(f"plots: {FileSystems.join(output_dir, PLOTS_FILE)}")
    if outputs["tfma"]:
        lines.append(f"tfma: {FileSystems.join(output_dir, TFMA_DIR)} (tfma.load_eval_result)")
    return lines
