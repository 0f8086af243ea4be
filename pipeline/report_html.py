"""report.html: one self-contained page of a run's results (SPEC §7).

The page opens offline, from disk or a bucket: its style (report.css) and
script (report.js) are inlined, it loads nothing (a Content-Security-Policy
forbids any fetch), and system fonts are used. Tables are written here as
HTML, every string from the data escaped (html.escape); the plots are drawn
in the browser as SVG by report.js from a JSON block of the page (kept
inert: `<`, `>` and `&` are \\u-escaped inside it, and the script only ever
sets text with textContent/setAttribute). Drawing in the page lets the
reader pick any slice without pre-rendering thousands of images; README
("Reports") says why this and not a charting library.
"""

import datetime
import html
import json
import os

import numpy as np

from pipeline.strict_json import to_json

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Curves embedded for at most this many slices per model (the largest, and
# always the overall slice): a page over 10,000 slices stays a few MB.
MAX_PLOTTED_SLICES = 500
# Shown first in the slice table and the per-model table; the rest follow.
KEY_METRICS = ("auc", "auc_precision_recall", "average_loss", "accuracy", "precision", "recall",
               "prediction/mean", "label/mean")
DIFF_METRICS = ("auc", "average_loss")  # diff columns of the slice table
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:; connect-src 'none'; font-src 'none'")


def _e(value):
    """Escaped text of any value from the data."""
    return html.escape(str(value), quote=True)


def _num(value):
    if value is None:
        return "\u2013"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{value:,d}"
    if value != value:
        return "NaN"
    return f"{value:.6g}"


def _cell(value, cls="num"):
    data = "" if value is None or isinstance(value, str) else f' data-v="{_e(repr(float(value)))}"'
    return f'<td class="{cls}"{data}>{_e(_num(value) if not isinstance(value, str) else value)}</td>'


def _inline_json(payload):
    """JSON for a <script type="application/json"> block: nothing in it can end the block."""
    text = to_json(payload)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _asset(name):
    with open(os.path.join(PACKAGE_DIR, name), encoding="utf-8") as f:
        return f.read()


def _model_label(model):
    return model if model else "model"


def _metric_keys(entries):
    """Every metric key of the entries, the key metrics first (head name suffixes allowed)."""
    keys = []
    for e in entries:
        for k in e["metrics"] or ():
            if k not in keys:
                keys.append(k)

    def rank(k):
        return next((i for i, m in enumerate(KEY_METRICS) if _is(k, m)), len(KEY_METRICS))

    return sorted(keys, key=lambda k: (rank(k), keys.index(k)))


def _is(key, name):
    """Whether metric `key` is `name`, maybe suffixed with the head's name ("auc/my_head")."""
    return key == name or (key.startswith(name + "/") and "threshold" not in key
                           and "/" not in key[len(name) + 1:])


def _find(metrics, name):
    """The value of metric `name` (maybe suffixed with the head's name), or None."""
    return next((v for k, v in (metrics or {}).items() if _is(k, name)), None)


# ---- the data the script draws ------------------------------------------------

def _rounded(values):
    """Floats (NaN or None: undefined, null in the JSON) rounded to 6 decimals: smaller pages, same pictures."""
    if not isinstance(values, np.ndarray):
        values = [np.nan if v is None else v for v in values]
    return np.round(np.asarray(values, dtype=np.float64), 6)


def _curve(entry, plots):
    matrices = plots["confusion_matrices"]
    calibration = plots["calibration_histogram"]
    weight = np.array(calibration["num_weighted_examples"], dtype=np.float64)
    shown = weight > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        prediction = np.array(calibration["total_weighted_refined_prediction"], dtype=np.float64)[shown] / weight[shown]
        label = np.array(calibration["total_weighted_label"], dtype=np.float64)[shown] / weight[shown]
    return {
        "model": entry["model"],
        "slice_name": entry["slice_name"],
        "auc": _find(entry["metrics"], "auc"),
        "auc_pr": _find(entry["metrics"], "auc_precision_recall"),
        "roc": [_rounded(matrices["false_positive_rate"]), _rounded(matrices["recall"])],
        "pr": [_rounded(matrices["recall"]), _rounded(matrices["precision"])],
        "calibration": [_rounded(prediction), _rounded(label), _rounded(weight[shown])],
        "thresholds": {k: _rounded(v) for k, v in plots["confusion_matrices_at_thresholds"].items()},
    }


def _curves(document, plots):
    """Curves of the overall slice and of the largest MAX_PLOTTED_SLICES slices per model."""
    by_model = {}
    for entry, plot in zip(document["slices"], plots["plots"]):
        if plot["confusion_matrices"] is not None:
            by_model.setdefault(entry["model"], []).append((entry, plot))
    curves, names, left_out = [], [], 0
    for model, pairs in by_model.items():
        kept = sorted(pairs, key=lambda p: (bool(p[0]["slice"]), -p[0]["example_count"]))[:MAX_PLOTTED_SLICES]
        left_out += len(pairs) - len(kept)
        for entry, plot in kept:
            curves.append(_curve(entry, plot))
            if entry["slice_name"] not in names:
                names.append(entry["slice_name"])
    return curves, names, left_out


def _history(document, history):
    """The overall metrics of earlier runs (history rows) and this run, oldest first."""
    if not history:
        return None
    runs = {}
    for row in history:
        if row.get("slice_name", "Overall") != "Overall":
            continue
        run = runs.setdefault((row["started"], row.get("run_id") or ""), {"started": row["started"],
                                                                          "label": row.get("label"), "values": {}})
        run["values"][(row["model"], row["metric"])] = row["value"]
    info = document.get("run", {})
    current = {"started": str(info.get("started", "")), "label": info.get("label"), "values": {}}
    for entry in document["slices"]:
        if not entry["slice"]:
            for k, v in (entry["metrics"] or {}).items():
                current["values"][(entry["model"], k)] = v
    ordered = [runs[k] for k in sorted(runs)] + [current]
    metrics = sorted({m for run in ordered for _, m in run["values"]})
    models = sorted({m for run in ordered for m, _ in run["values"]})
    return {
        "runs": [{"started": r["started"], "label": r["label"]} for r in ordered],
        "values": {metric: {model: [r["values"].get((model, metric)) for r in ordered] for model in models}
                   for metric in metrics},
    }


# ---- the page -------------------------------------------------------------------

def _verdict(validation):
    if validation is None:
        return '<div class="verdict none">No validation configured for this run.</div>'
    ok = bool(validation.get("validation_ok"))
    failures = validation.get("failures") or []
    checks = validation.get("checks")
    head = (f'<div class="verdict {"ok" if ok else "failed"}" id="verdict">'
            f'{"Validation passed (BLESSED)" if ok else "Validation FAILED (NOT_BLESSED)"}'
            f'{_e(f": {checks} checks, {len(failures)} failed") if checks is not None else ""}</div>')
    if not failures:
        return head
    rows = "".join(
        f"<tr><td>{_e(_model_label(f.get('model')))}</td><td>{_e(f.get('slice_name') or '')}</td>"
        f"<td>{_e(f.get('metric'))}</td>{_cell(f.get('value'))}{_cell(f.get('baseline'))}"
        f"<td><code>{_e(json.dumps(f.get('threshold'), sort_keys=True))}</code></td>"
        f"<td>{_e(f.get('message', ''))}</td></tr>"
        for f in failures)
    return (head + '<div class="scroll"><table id="failures"><thead><tr><th>model</th><th>slice</th><th>metric</th>'
            '<th class="num">value</th><th class="num">baseline</th><th>threshold</th><th>message</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _summary(document):
    run = document.get("run", {})
    inputs = run.get("input")
    rows = [
        ("input", ", ".join(inputs) if isinstance(inputs, (list, tuple)) else inputs),
        ("format", run.get("format")),
        ("label", run.get("label")),
        ("runner", run.get("runner")),
        ("started", run.get("started")),
        ("seconds", run.get("seconds")),
        ("rows read", document.get("rows_read")),
        ("rows evaluated", document.get("rows_evaluated")),
        ("rows rejected", document.get("rows_rejected")),
        ("example count", document.get("example_count")),
        ("weighted example count", document.get("weighted_example_count")),
    ]
    config = run.get("config") or {}
    columns = config.get("columns") or {}
    head = config.get("head") or {}
    rows += [("label column", columns.get("label")), ("weight column", head.get("weight_column")),
             ("thresholds", ", ".join(str(t) for t in head.get("thresholds") or []))]
    for reason, count in (document.get("rejected_by_reason") or {}).items():
        rows.append((f"rejected: {reason}", count))
    for unreadable in document.get("unreadable_files") or []:
        rows.append(("unreadable file", f"{unreadable.get('file')}: {unreadable.get('error')}"))
    versions = run.get("versions") or {}
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_num(v) if not isinstance(v, str) else v)}</td></tr>"
                   for k, v in rows if v not in (None, "", []))
    return (f'<table class="kv" id="summary">{body}</table>'
            f"<details><summary>config</summary><pre>{_e(to_json(config, indent=True))}</pre></details>")


def _interval_text(interval):
    if not interval:
        return ""
    return f"[{_num(interval.get('lower'))}, {_num(interval.get('upper'))}], SE {_num(interval.get('standard_error'))}"


def _model_tables(document, baseline_models):
    overall = [e for e in document["slices"] if not e["slice"]]
    parts = []
    for entry in overall:
        model = entry["model"]
        tag = ' <span class="baseline-tag">(baseline)</span>' if model in baseline_models else ""
        intervals = entry.get("confidence_intervals") or {}
        diff = entry.get("diff") or {}
        diff_intervals = entry.get("diff_confidence_intervals") or {}
        header = '<tr><th>metric</th><th class="num">value</th>'
        header += '<th>interval</th>' if intervals else ""
        header += '<th class="num">diff vs baseline</th>' if diff else ""
        header += "<th>diff interval</th>" if diff_intervals else ""
        rows = []
        for key in _metric_keys([entry]):
            row = f"<tr><td>{_e(key)}</td>{_cell(entry['metrics'][key])}"
            if intervals:
                row += f"<td>{_e(_interval_text(intervals.get(key)))}</td>"
            if diff:
                row += _cell(diff.get(key))
            if diff_intervals:
                row += f"<td>{_e(_interval_text(diff_intervals.get(key)))}</td>"
            rows.append(row + "</tr>")
        counts = (f'<p class="note">{_e(_num(entry["example_count"]))} examples, weighted '
                  f'{_e(_num(entry["weighted_example_count"]))}</p>')
        parts.append(f'<h3>{_e(_model_label(model))}{tag}</h3>{counts}'
                     f'<table class="metrics" data-model="{_e(model)}"><thead>{header}</tr></thead>'
                     f'<tbody>{"".join(rows)}</tbody></table>')
    return "".join(parts)


def _slice_table(document, multi_model):
    entries = document["slices"]
    keys = _metric_keys(entries)
    diffs = [k for k in keys if any(_is(k, d) for d in DIFF_METRICS)
             and any(e.get("diff") for e in entries)]
    head = ("<tr>" + ("<th>model</th>" if multi_model else "") + "<th>slice</th>"
            '<th class="num">examples</th><th class="num">weighted examples</th>'
            + "".join(f'<th class="num">{_e(k)}</th>' for k in keys)
            + "".join(f'<th class="num">{_e(k)} diff</th>' for k in diffs) + "</tr>")
    rows = []
    for e in entries:
        metrics = e["metrics"] or {}
        intervals = e.get("confidence_intervals") or {}
        diff = e.get("diff") or {}
        cells = []
        for k in keys:
            cell = _cell(metrics.get(k))
            if k in intervals:
                cell = cell.replace("<td ", f'<td title="{_e(_interval_text(intervals[k]))}" ', 1)
            cells.append(cell)
        rows.append(
            f'<tr data-slice="{_e(e["slice_name"])}" data-model="{_e(e["model"])}">'
            + (f"<td>{_e(_model_label(e['model']))}</td>" if multi_model else "")
            + f'<td class="slice">{_e(e["slice_name"])}</td>'
            + _cell(e["example_count"]) + _cell(e["weighted_example_count"])
            + "".join(cells) + "".join(_cell(diff.get(k)) for k in diffs) + "</tr>")
    return (f'<table id="slice-table"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')


def render(document, plots, validation=None, history=None):
    """The page as a string. `plots` is plots.json's content (reports.plots_document)."""
    run = document.get("run", {})
    config = run.get("config") or {}
    baseline_models = {m.get("name") for m in config.get("models") or [] if m.get("is_baseline")}
    models = list(dict.fromkeys(e["model"] for e in document["slices"]))
    curves, plotted, left_out = _curves(document, plots)
    history_data = _history(document, history)
    data = {"models": models, "curves": curves, "history": history_data}
    inputs = run.get("input")
    title = ", ".join(inputs) if isinstance(inputs, (list, tuple)) else str(inputs or "")
    options = "".join(f'<option value="{_e(name)}">{_e(name)}</option>' for name in plotted)
    note = (f'<p class="note">Curves are embedded for the overall slice and the {MAX_PLOTTED_SLICES} largest '
            f"slices per model ({left_out} more are in plots.json).</p>" if left_out else "")
    history_section = ""
    if history_data:
        metric_options = "".join(
            f'<option value="{_e(m)}"{" selected" if m == "auc" else ""}>{_e(m)}</option>'
            for m in history_data["values"])
        history_section = (
            '<h2 id="history">History</h2><div class="controls">metric: '
            f'<select id="history-metric">{metric_options}</select></div>'
            f'<div class="charts"><div id="plot-history"></div></div>'
            f'<p class="note">{len(history_data["runs"])} runs, this one last.</p>')
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>beam-head-eval report: {_e(title)}</title>
<style>
{_asset("report.css")}
</style>
</head>
<body>
<main>
<h1>Evaluation report{f": {_e(run.get('label'))}" if run.get("label") else ""}</h1>
<p class="subtitle">{_e(title)}</p>
{_verdict(validation)}
<h2>Run</h2>
{_summary(document)}
<h2>Overall metrics</h2>
{_model_tables(document, baseline_models)}
<h2 id="plots">Plots: <span id="plots-slice"></span></h2>
<div class="controls">slice: <select id="slice-picker">{options}</select>
<span class="note">(or click a row of the slice table)</span></div>
{note}
<div class="charts"><div id="plot-roc"></div><div id="plot-pr"></div><div id="plot-calibration"></div></div>
<p class="note">Open circles: the head's thresholds. Calibration: one dot per prediction bucket
(Keras AUC's 200 buckets), weighted mean label against weighted mean prediction.</p>
<div class="scroll"><table id="threshold-table"></table></div>
<h2 id="slices">Slices</h2>
<div class="controls">filter: <input id="slice-filter" type="search" placeholder="slice name">
<span class="note">click a column to sort; metrics withheld below min_slice_size show \u2013</span></div>
<div class="scroll slice-scroll">{_slice_table(document, len(models) > 1)}</div>
{history_section}
<footer>beam-head-eval, generated {_e(generated)}. metrics.json and plots.json hold every value shown.</footer>
</main>
<script type="application/json" id="report-data">{_inline_json(data)}</script>
<script>
{_asset("report.js")}
</script>
</body>
</html>
"""
