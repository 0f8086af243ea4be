"""plots.json, report.html, plots.png and tfma/ of a sliced two-model run (pipeline/reports.py).

One run through the CLI (a subprocess, as a user runs it) with every output
on; its plots are checked against curves computed here with numpy from the
input rows, and TFMA's own loaders read tfma/ back with metrics.json's and
plots.json's values.
"""

import json
import math
import html.parser
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, RUN_PIPELINE
from tests.datafiles import read_metrics, scores, write_config, write_parquet

XSS = "<script>alert(1)</script>"
NOTES = (XSS, "plain", '<img src=x onerror=console.error("xss")>', 'a&b "quoted" \u00e9')
THRESHOLDS = [0.3, 0.5, 0.7]
MIN_SLICE_SIZE = 50
NUM_SAMPLES = 10  # jackknife groups: every entry has intervals, every diff too
EPSILON = 1e-7
KERAS_THRESHOLDS = np.array([-EPSILON] + [i / 199 for i in range(1, 199)] + [1 + EPSILON])


def _columns(rows=24000, seed=5):
    columns = scores(rows, seed=seed)
    rng = np.random.default_rng(seed + 1)
    columns["score_v1"] = (columns["logits"] * 0.6 + rng.normal(0, 1.0, rows)).astype(np.float32)
    columns["note"] = np.array(NOTES)[rng.integers(0, len(NOTES), rows)]
    country = np.array(["de", "fr", "us"])[rng.integers(0, 3, rows)]
    country[:7] = "zz"  # a slice below min_slice_size: counts, no metrics, no plots
    columns["country"] = country
    return columns


def run(tmp_path, config, output, data_path, check=True):
    result = subprocess.run([sys.executable, RUN_PIPELINE, "--input", data_path, "--config", config,
                             "--output", output], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def config_for(tmp_path, name, outputs):
    return write_config(
        tmp_path / name, head={"weight_column": "weight", "thresholds": THRESHOLDS},
        models=[{"name": "candidate", "logits": "logits"},
                {"name": "baseline", "logits": "score_v1", "is_baseline": True}],
        slicing_specs=[{"feature_keys": ["note"]}, {"feature_keys": ["country"]}],
        confidence_intervals={"method": "jackknife", "num_samples": NUM_SAMPLES},
        min_slice_size=MIN_SLICE_SIZE, outputs=outputs)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reports")
    columns = _columns()
    data_path = write_parquet(tmp_path / "scores.parquet", columns)
    output = tmp_path / "out"
    config = config_for(tmp_path, "all.yaml", {"report": True, "plots": True, "tfma": True})
    result = run(tmp_path, config, output, data_path)
    with open(output / "plots.json") as f:
        plots = json.load(f, parse_constant=lambda c: pytest.fail(f"plots.json has {c}"))
    return {"columns": columns, "output": output, "stdout": result.stdout, "document": read_metrics(output),
            "plots": plots, "tmp": tmp_path, "data": data_path}


# ---- plots.json against numpy ---------------------------------------------------------------------

def _reference(logits, labels, weights):
    """Curves computed directly from rows: confusion matrices at thresholds and calibration buckets."""
    p = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32).astype(np.float64)
    positive = labels != 0
    w = weights.astype(np.float64)

    def matrices(thresholds):
        predicted = p[None, :] > np.asarray(thresholds, dtype=np.float64)[:, None]
        tp = (predicted & positive) @ w
        fp = (predicted & ~positive) @ w
        fn = w[positive].sum() - tp
        tn = w[~positive].sum() - fp
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"true_positives": tp, "false_positives": fp, "true_negatives": tn, "false_negatives": fn,
                    "precision": tp / (tp + fp), "recall": tp / (tp + fn), "false_positive_rate": fp / (fp + tn),
                    "f1": 2 * tp / (2 * tp + fp + fn), "accuracy": (tp + tn) / (tp + tn + fp + fn)}

    bucket = np.searchsorted(KERAS_THRESHOLDS, p, side="left") - 1  # (t_j, t_j+1]
    calibration = {
        "num_weighted_examples": np.bincount(bucket, w, 199),
        "total_weighted_label": np.bincount(bucket, w * labels, 199),
        "total_weighted_refined_prediction": np.bincount(bucket, w * p, 199),
    }
    return {"confusion_matrices": matrices(np.float32(KERAS_THRESHOLDS)),
            "confusion_matrices_at_thresholds": matrices(np.float32(THRESHOLDS)),
            "calibration_histogram": calibration}


def _values(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def test_plots_json_equals_curves_computed_from_the_rows(evaluated):
    columns, plots = evaluated["columns"], evaluated["plots"]["plots"]
    document = evaluated["document"]
    assert [(p["model"], p["slice_name"]) for p in plots] == [(e["model"], e["slice_name"])
                                                             for e in document["slices"]]
    checked = 0
    for entry in plots:
        rows = np.ones(len(columns["label"]), dtype=bool)
        for column, value in entry["slice"].items():
            rows &= columns[column] == value
        assert entry["example_count"] == rows.sum()
        if entry["example_count"] < MIN_SLICE_SIZE and entry["slice"]:
            assert all(entry[p] is None for p in ("confusion_matrices", "confusion_matrices_at_thresholds",
                                                  "calibration_histogram")), entry["slice_name"]
            continue
        logits = columns["logits" if entry["model"] == "candidate" else "score_v1"][rows]
        expected = _reference(logits, columns["label"][rows], columns["weight"][rows])
        for plot, fields in expected.items():
            for field, values in fields.items():
                np.testing.assert_allclose(_values(entry[plot][field]), values, rtol=1e-9, atol=1e-6,
                                           err_msg=f"{entry['model']} {entry['slice_name']} {plot} {field}")
        assert entry["confusion_matrices_at_thresholds"]["threshold"] == THRESHOLDS
        checked += 1
    assert checked == 2 * (1 + len(NOTES) + 3)  # both models: overall, every note, de/fr/us


def test_undefined_points_are_null_never_nan(evaluated):
    with open(evaluated["output"] / "plots.json") as f:
        text = f.read()
    assert "NaN" not in text and "Infinity" not in text
    overall = evaluated["plots"]["plots"][0]
    assert overall["confusion_matrices"]["precision"][-1] is None  # nothing predicted above 1 + epsilon


def test_cli_says_where_the_outputs_are(evaluated):
    output = str(evaluated["output"])
    assert f"report: {os.path.join(output, 'report.html')}" in evaluated["stdout"]
    assert f"tfma: {os.path.join(output, 'tfma')}" in evaluated["stdout"]


def test_png_holds_the_overall_plots(evaluated):
    from PIL import Image

    with Image.open(evaluated["output"] / "plots.png") as image:
        assert image.format == "PNG" and image.width > 1000
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colors) > 50  # lines, text and markers, not a blank canvas


def test_png_drawn_by_the_child_process_is_the_one_drawn_here(evaluated):
    from pipeline import report_png

    document, plots = evaluated["document"], evaluated["plots"]
    drawn = report_png.Drawer().start(document, plots)()
    assert drawn == report_png.render(document, plots)
    with open(evaluated["output"] / "plots.png", "rb") as f:
        assert f.read() == drawn  # the run's own (drawn by its child)


def test_png_drawn_over_the_rendered_background_is_matplotlibs_whole_draw(evaluated):
    import io

    from pipeline import report_png

    figure = report_png._Figure()
    drawn = report_png._draw(figure, evaluated["document"], evaluated["plots"])
    assert len(figure.axes[0].get_lines()) == 1 + 2 * 2  # the diagonal; each model's curve and thresholds
    whole = io.BytesIO()
    figure.canvas.print_png(whole)  # every artist drawn again, in matplotlib's order
    assert drawn == whole.getvalue()


def test_an_unused_drawer_ends_its_process_and_a_failed_one_says_why(evaluated):
    from pipeline import report_png

    drawer = report_png.Drawer()
    process = drawer._process
    drawer.close()
    assert process.poll() is not None
    report_png.start_early()  # as run_pipeline.py does, before the config is read
    early = report_png._early[0]._process
    assert report_png.take_drawer(False) is None and early.wait(timeout=10) is not None  # no report: ended
    broken = report_png.Drawer().start({"slices": [{"slice": {}}]}, {"plots": [{}]})
    with pytest.raises(RuntimeError, match=r"(?s)drawing plots.png failed: .*KeyError"):
        broken()


# ---- report.html ------------------------------------------------------------------------------------

class _Page(html.parser.HTMLParser):
    """Every tag with its attributes, and the text of table cells."""

    def __init__(self):
        super().__init__()
        self.tags, self.cells, self._in_cell = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        self._in_cell = tag == "td"

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)

    def handle_endtag(self, tag):
        self._in_cell = False


def test_report_is_self_contained_and_escapes_data(evaluated):
    with open(evaluated["output"] / "report.html", encoding="utf-8") as f:
        page = f.read()
    assert XSS not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the slice table shows it as text
    # Nothing is loaded from anywhere: no src/href attribute, a CSP that forbids fetching.
    parsed = _Page()
    parsed.feed(page)
    assert not [(tag, name) for tag, attrs in parsed.tags for name, _ in attrs
                if name in ("src", "href", "srcset", "action", "formaction", "poster", "background")]
    assert [tag for tag, _ in parsed.tags].count("script") == 2  # the data block and the inline script
    assert "@import" not in page and "url(" not in page
    assert f"note:{XSS}" in parsed.cells  # as text in the slice table
    # the overall metrics with their intervals and the diffs' (metrics.json's values, as shown)
    overall = next(e for e in evaluated["document"]["slices"] if e["model"] == "candidate" and not e["slice"])
    auc = overall["confidence_intervals"]["auc"]
    assert f"[{auc['lower']:.6g}, {auc['upper']:.6g}], SE {auc['standard_error']:.6g}" in parsed.cells
    assert f"{overall['diff']['auc']:.6g}" in parsed.cells
    assert "default-src 'none'" in page
    # The embedded data cannot end its script block.
    data = page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data
    report = json.loads(data)
    assert {c["slice_name"] for c in report["curves"]} >= {"Overall", f"note:{XSS}"}


# ---- tfma/ through TFMA's loaders ----------------------------------------------------------------

def _double(value):
    return float("nan") if value is None else value


def _same(actual, expected, what):
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        assert math.isnan(actual), what
    else:
        assert actual == pytest.approx(expected, rel=1e-12, abs=1e-15), what


def test_tfma_files_are_what_its_loaders_glob(evaluated):
    names = sorted(os.listdir(evaluated["output"] / "tfma"))
    assert names == ["eval_config.json", "metrics-00000-of-00001.tfrecord", "plots-00000-of-00001.tfrecord",
                     "validations.tfrecord"]  # every run has a verdict (min_example_count at least)


def test_tfma_load_eval_result_reads_every_metric_and_diff(evaluated):
    import tensorflow_model_analysis as tfma

    document, directory = evaluated["document"], str(evaluated["output"] / "tfma")
    results = tfma.load_eval_results(directory)  # every model named in eval_config.json
    assert len(results.get_results()) == 2
    for model in ("candidate", "baseline"):
        result = tfma.load_eval_result(directory, model_name=model)
        by_name = {tfma.slicer.stringify_slice_key(key): metrics[""][""] for key, metrics in result.slicing_metrics}
        entries = [e for e in document["slices"] if e["model"] == model]
        assert set(by_name) == {e["slice_name"] for e in entries}
        for entry in entries:
            loaded = by_name[entry["slice_name"]]
            assert loaded["example_count"]["doubleValue"] == entry["example_count"]
            _same(loaded["weighted_example_count"]["doubleValue"], entry["weighted_example_count"], "weighted")
            for key, value in (entry.get("diff") or {}).items():
                bounds = entry["diff_confidence_intervals"][key]
                loaded_diff = loaded[f"{key}_diff"]["boundedValue"]  # TFMA's view of a value with an interval
                _same(loaded_diff["value"], value, f"{model} {entry['slice_name']} {key} diff")
                _same(loaded_diff["lowerBound"], bounds["lower"], f"{key} diff lower")
                _same(loaded_diff["upperBound"], bounds["upper"], f"{key} diff upper")
            for key, bounds in (entry.get("confidence_intervals") or {}).items():
                value = entry["metrics"][key]
                loaded_value = loaded[key]["boundedValue"]
                _same(loaded_value["value"], value, f"{model} {entry['slice_name']} {key}")
                _same(loaded_value["lowerBound"], bounds["lower"], f"{key} lower")
                _same(loaded_value["upperBound"], bounds["upper"], f"{key} upper")
            if entry["metrics"] is None:
                assert "auc" not in loaded
            else:
                assert set(entry["confidence_intervals"]) == set(entry["metrics"])
        assert any(e.get("diff") for e in entries) == (model == "candidate")
    # the config: a ModelSpec per model, the slicing specs
    config = tfma.load_eval_result(directory, model_name="candidate").config
    assert [(m.name, m.is_baseline, m.label_key, m.example_weight_key) for m in config.model_specs] == [
        ("candidate", False, "label", "weight"), ("baseline", True, "label", "weight")]
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], ["note"], ["country"]]  # overall first


def test_tfma_load_plots_reads_every_plot(evaluated):
    import tensorflow_model_analysis as tfma

    directory = str(evaluated["output"] / "tfma")
    plots = {(e["model"], e["slice_name"]): e for e in evaluated["plots"]["plots"]}
    seen = 0
    for plots_for_slice in tfma.load_plots(directory):
        name = tfma.slicer.stringify_slice_key(tfma.slicer.deserialize_slice_key(plots_for_slice.slice_key))
        for pair in plots_for_slice.plot_keys_and_values:
            expected = plots[pair.key.model_name, name]
            matrices = pair.value.confusion_matrix_at_thresholds.matrices
            for field, values in expected["confusion_matrices"].items():
                np.testing.assert_array_equal([getattr(m, field) for m in matrices], _values(values), err_msg=field)
            buckets = pair.value.calibration_histogram_buckets.buckets
            calibration = expected["calibration_histogram"]
            assert [b.lower_threshold_inclusive for b in buckets] == calibration["lower_threshold_exclusive"]
            for field in ("num_weighted_examples", "total_weighted_label", "total_weighted_refined_prediction"):
                assert [getattr(b, field).value for b in buckets] == calibration[field], field
            seen += 1
    assert seen == sum(1 for e in plots.values() if e["confusion_matrices"] is not None)
    # the matrices at the head's thresholds: a structured metric of each slice
    for metrics_for_slice in tfma.load_metrics(directory):
        name = tfma.slicer.stringify_slice_key(tfma.slicer.deserialize_slice_key(metrics_for_slice.slice_key))
        for pair in metrics_for_slice.metric_keys_and_values:
            if pair.key.name == "confusion_matrices_at_thresholds":
                expected = plots[pair.key.model_name, name]["confusion_matrices_at_thresholds"]
                matrices = pair.value.confusion_matrix_at_thresholds.matrices
                for field, values in expected.items():
                    np.testing.assert_array_equal([getattr(m, field) for m in matrices], _values(values))


def test_tfma_notebook_views_render(evaluated):
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(str(evaluated["output"] / "tfma"), model_name="candidate")
    metrics_view = tfma.view.render_slicing_metrics(result, slicing_column="country")
    assert {row["slice"] for row in metrics_view.data} >= {"country:de", "country:fr", "country:us"}
    plot_view = tfma.view.render_plot(result)
    assert set(plot_view.data) >= {"calibrationHistogramBuckets", "confusionMatrixAtThresholds"}


def test_tfma_standard_errors_and_degrees_of_freedom(evaluated):
    import tensorflow_model_analysis as tfma

    entries = {(e["model"], e["slice_name"]): e for e in evaluated["document"]["slices"]}
    checked = 0
    for metrics_for_slice in tfma.load_metrics(str(evaluated["output"] / "tfma")):
        name = tfma.slicer.stringify_slice_key(tfma.slicer.deserialize_slice_key(metrics_for_slice.slice_key))
        for pair in metrics_for_slice.metric_keys_and_values:
            entry = entries[pair.key.model_name, name]
            intervals = entry.get("diff_confidence_intervals" if pair.key.is_diff else "confidence_intervals") or {}
            if pair.key.name in intervals:
                interval = pair.confidence_interval
                _same(interval.standard_error.double_value.value, intervals[pair.key.name]["standard_error"], name)
                assert interval.degrees_of_freedom.value == NUM_SAMPLES - 1
                checked += 1
    assert checked > 100


def test_tfma_validation_result_reads_the_verdict_back(evaluated, tmp_path):
    """validation.json's verdict (issue 11's format) through TFMA's load_validation_result."""
    import tensorflow_model_analysis as tfma

    from pipeline import tfma_output

    document = evaluated["document"]
    verdict = {"validation_ok": False, "checks": 3, "failures": [
        {"model": "candidate", "slice": {"note": XSS}, "slice_name": f"note:{XSS}", "metric": "auc",
         "value": 0.61, "baseline": None, "threshold": {"value_threshold": {"lower_bound": 0.75}},
         "message": "auc 0.61 < 0.75"},
        {"model": "candidate", "slice": {}, "slice_name": "Overall", "metric": "auc", "value": 0.7,
         "baseline": 0.72, "threshold": {"change_threshold": {"direction": "higher_is_better", "absolute": -0.01}},
         "message": "diff -0.02 < -0.01"}]}

    class Plan:  # what write() reads of the plan
        config = type("Config", (), {"confidence_intervals": None})

    directory = str(tmp_path / "tfma")
    names = tfma_output.write(directory, document, evaluated["plots"], Plan, verdict)
    assert sorted(names) == sorted(os.listdir(directory))
    assert "validations.tfrecord" in names
    validation = tfma.load_validation_result(directory)
    assert validation.validation_ok is False
    failures = {tfma.slicer.stringify_slice_key(tfma.slicer.deserialize_slice_key(v.slice_key)): v.failures
                for v in validation.metric_validations_per_slice}
    assert set(failures) == {f"note:{XSS}", "Overall"}
    failure = failures[f"note:{XSS}"][0]
    assert (failure.metric_key.name, failure.metric_key.model_name, failure.message) == (
        "auc", "candidate", "auc 0.61 < 0.75")
    assert failure.metric_value.double_value.value == 0.61
    assert failure.metric_threshold.value_threshold.lower_bound.value == 0.75
    change = failures["Overall"][0].metric_threshold.change_threshold
    from tensorflow_model_analysis.proto import config_pb2

    assert (change.direction, change.absolute.value) == (config_pb2.MetricDirection.HIGHER_IS_BETTER, -0.01)


# ---- outputs turned off --------------------------------------------------------------------------

def test_outputs_off_write_none_and_remove_an_earlier_runs(evaluated):
    tmp_path, output = evaluated["tmp"], evaluated["tmp"] / "off"
    run(tmp_path, config_for(tmp_path, "all_again.yaml", {"tfma": True}), output, evaluated["data"])
    assert (output / "report.html").exists() and (output / "tfma" / "eval_config.json").exists()
    off = config_for(tmp_path, "off.yaml", {"report": False, "plots": False, "tfma": False})
    result = run(tmp_path, off, output, evaluated["data"])
    assert sorted(os.listdir(output)) == ["BLESSED", "metrics.json", "validation.json"]  # the verdict stays
    assert "report:" not in result.stdout
    # the same metrics either way: the calibration state changes nothing else
    assert read_metrics(output)["slices"] == evaluated["document"]["slices"]


def test_tfma_is_imported_only_when_asked_for(tmp_path):
    """A run without outputs.tfma never imports TFMA (its import alone takes seconds)."""
    code = ("import sys\n"
            "from pipeline.cli import main\n"
            "assert main(sys.argv[1:]) == 0\n"
            "print('TFMA', 'tensorflow_model_analysis' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code, "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": PROJECT_ROOT})
    assert "TFMA False" in result.stdout, result.stderr[-2000:]
    assert (tmp_path / "out" / "report.html").exists()


# ---- report.html in a browser ------------------------------------------------------------------------

def _with_verdict_and_history(evaluated, tmp_path):
    """The run's report rendered with a failed verdict and two earlier runs' history rows."""
    from pipeline import report_html

    document = evaluated["document"]
    verdict = {"validation_ok": False, "checks": 4, "failures": [
        {"model": "candidate", "slice": {"note": XSS}, "slice_name": f"note:{XSS}", "metric": "auc",
         "value": 0.61, "baseline": None, "threshold": {"value_threshold": {"lower_bound": 0.75}},
         "message": f"candidate, note:{XSS}: auc 0.61 < 0.75"}]}
    history = [{"run_id": f"r{i}", "started": f"2026-01-0{i}T00:00:00+00:00", "label": f"nightly {XSS}",
                "model": e["model"], "slice_name": "Overall", "metric": k, "value": v - 0.01 * i}
               for i in (1, 2) for e in document["slices"] if not e["slice"] for k, v in e["metrics"].items()]
    path = tmp_path / "report_with_verdict.html"
    path.write_text(report_html.render(document, evaluated["plots"], verdict, history), encoding="utf-8")
    return path


def _not_blank(png, box):
    from PIL import Image
    import io

    with Image.open(io.BytesIO(png)) as image:
        region = image.convert("RGB").crop(box)
        return len(region.getcolors(maxcolors=1 << 20))


def test_report_in_headless_chromium_offline(evaluated, tmp_path):
    from tests.browser import Browser, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    browser = Browser()
    try:
        for path in (evaluated["output"] / "report.html", _with_verdict_and_history(evaluated, tmp_path)):
            browser.events.clear()
            browser.open(path)
            # every chart drew its curves: one polyline per model and a dot per calibration bucket
            drawn = browser.evaluate(
                "['plot-roc', 'plot-pr', 'plot-calibration'].map("
                "id => document.querySelectorAll('#' + id + ' polyline.series').length)")
            assert drawn == [2, 2, 2], drawn
            assert browser.evaluate("document.querySelectorAll('#plot-calibration circle').length") > 100
            assert browser.evaluate("document.querySelectorAll('#threshold-table tbody tr').length") == 6
            # the script slice value is text: in the table and, picked, as the plots' title (had the
            # <img onerror> value become markup, its console.error would be among the problems below)
            cells = browser.evaluate("[...document.querySelectorAll('#slice-table td.slice')].map(c => c.textContent)")
            assert f"note:{XSS}" in cells
            assert browser.evaluate("document.querySelectorAll('#slice-table script, #slice-table img').length") == 0
            browser.evaluate(f"[...document.querySelectorAll('#slice-table tbody tr')].find("
                             f"r => r.dataset.slice === {json.dumps('note:' + XSS)}).click()")
            assert browser.evaluate("document.getElementById('plots-slice').textContent") == f"note:{XSS}"
            assert browser.evaluate("document.querySelectorAll('#plot-roc polyline.series').length") == 2
            # sorting by a numeric column orders the rows by value
            browser.evaluate("[...document.querySelectorAll('#slice-table th')].find(th => th.textContent === 'examples').click()")
            counts = browser.evaluate(
                "[...document.querySelectorAll('#slice-table tbody tr')].map(r => +r.cells[3].dataset.v)")
            assert counts == sorted(counts) and len(counts) == 2 * (1 + len(NOTES) + 4)
            browser.evaluate("window.scrollTo(0, document.getElementById('plots').offsetTop)")
            shot = browser.screenshot()
            assert _not_blank(shot, (0, 0, 1300, 900)) > 20
            assert browser.problems() == [], browser.problems()
        # the second page: the verdict, its failure as text, and the history trend
        assert browser.evaluate("document.getElementById('verdict').textContent").startswith("Validation FAILED")
        assert XSS in browser.evaluate("document.getElementById('failures').textContent")
        assert browser.evaluate("document.querySelectorAll('#plot-history polyline.series').length") == 2
    finally:
        browser.close()


# ---- the outputs section of the config ----------------------------------------------------------

@pytest.mark.parametrize("outputs, expected", [
    ({"report": "yes"}, "outputs.report: must be true or false, got 'yes'"),
    ({"pdf": True}, "outputs.pdf: unknown key"),
])
def test_outputs_config_errors_exit_2_naming_the_field(tmp_path, capsys, outputs, expected):
    from tests.datafiles import run_cli

    data_path = write_parquet(tmp_path / "scores.parquet", scores(20))
    config = write_config(tmp_path / "c.yaml", outputs=outputs)
    assert run_cli(["--input", data_path, "--config", config, "--output", tmp_path / "out"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: config ") and expected in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_calibration_state_only_when_an_output_needs_it(tmp_path):
    from pipeline.config import parse_config
    from pipeline.plan import resolve

    data_path = write_parquet(tmp_path / "scores.parquet", scores(20))
    base = {"head": {}, "columns": {"logits": "logits", "label": "label"}}
    for outputs, kept in (({}, True), ({"report": False, "plots": False}, False),
                          ({"report": False, "plots": False, "tfma": True}, True)):
        plan = resolve(parse_config(dict(base, outputs=outputs)), [data_path], "parquet")
        assert plan.layout.calibration is kept, outputs


def test_plots_of_the_largest_max_plot_slices_slices_per_spec(tmp_path):
    """outputs.max_plot_slices bounds the plotted slices of each spec; the overall slice is always plotted."""
    from tests.datafiles import read_metrics, run_cli, scores, write_config, write_files
    import json
    import numpy as np

    columns = scores(3000, seed=4)
    columns["group"] = np.array([f"g{i % 7}" if i % 3 else "big" for i in range(3000)])
    pattern, _ = write_files(tmp_path / "in", "parquet", [columns])
    config = write_config(tmp_path / "c.yaml", slicing_specs=[{"feature_keys": ["group"]}],
                          outputs={"report": False, "plots": True, "max_plot_slices": 2})
    assert run_cli(["--input", pattern, "--config", config, "--output", tmp_path / "out"]) == 0
    document = read_metrics(tmp_path / "out")
    plots = json.loads((tmp_path / "out" / "plots.json").read_text())["plots"]
    assert [p["slice_name"] for p in plots] == [e["slice_name"] for e in document["slices"]]
    plotted = {p["slice_name"] for p in plots if p["confusion_matrices"] is not None}
    largest = sorted((e for e in document["slices"] if e["slice"]), key=lambda e: -e["example_count"])[:2]
    assert plotted == {"Overall"} | {e["slice_name"] for e in largest}
