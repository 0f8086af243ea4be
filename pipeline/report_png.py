"""plots.png: the overall slice's ROC, precision-recall and calibration plots, every model.

For e-mail and chat, where an HTML page does not open. Drawn with
matplotlib's Agg canvas directly (no pyplot: no global state, no GUI
backend, a faster import), from plots.json's content.

A local run draws it in a child process (`Drawer`, started when the run
starts: `python -m pipeline.report_png`), which imports matplotlib and
prepares and renders the empty figure on the other core while the pipeline
runs, then draws the curves over that rendering while the parent writes the
other outputs (0.05 s): importing and drawing took 1.2 s of a 20M-row run's
5 s in the parent, where a thread importing it competed for the GIL.
"""

import atexit
import concurrent.futures
import io
import os
import signal
import subprocess
import sys

import numpy as np

from pipeline.report_html import _find
from pipeline.strict_json import to_json


_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _text(value):
    return "n/a" if value is None else f"{value:.4f}"


def _array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def render(document, plots):
    """PNG bytes of the overall plots of every model."""
    return _draw(_Figure(), document, plots)


class _Figure:
    """The figure with everything but the data (titles, labels, ticks, grids, diagonals), rendered.

    The curves are then drawn over a copy of that rendering (`background`),
    in the order a whole draw would: lines, then the spines (kept out of the
    background for that), then the legends. It gives the same pixels as
    matplotlib's own draw of the finished figure, in a fifth of the time:
    the ticks' texts are not laid out and rendered again.
    """

    def __init__(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # Fixed margins, not a layout engine: constrained layout measured every
        # text twice and took half of the drawing time (0.3 of 0.6 s).
        self.figure = Figure(figsize=(13.5, 4.4), dpi=100)
        self.figure.subplots_adjust(left=0.045, right=0.99, bottom=0.11, top=0.93, wspace=0.2)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.subplots(1, 3)
        for plot, title, x, y in zip(self.axes,
                                     ("ROC (overall)", "Precision-recall (overall)", "Calibration (overall)"),
                                     ("false positive rate", "recall", "mean prediction"),
                                     ("true positive rate", "precision", "mean label")):
            plot.set_title(title)
            plot.set_xlabel(x)
            plot.set_ylabel(y)
            plot.set_xlim(0, 1)
            plot.set_ylim(0, 1.02)
            plot.set_xticks(_TICKS)
            plot.set_yticks(_TICKS)
            plot.grid(alpha=0.3)
        for plot in (self.axes[0], self.axes[2]):  # chance (ROC), perfect calibration
            plot.plot([0, 1], [0, 1], "--", color="#999999", linewidth=1)
        spines = [spine for plot in self.axes for spine in plot.spines.values()]
        for spine in spines:
            spine.set_visible(False)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        for spine in spines:
            spine.set_visible(True)


def _draw(prepared, document, plots):
    """PNG bytes of a `_Figure` with every model's overall curves (once per figure)."""
    import matplotlib.image

    roc, pr, calibration = prepared.axes
    lines = []
    for entry, plot in zip(document["slices"], plots["plots"]):
        if entry["slice"] or plot["confusion_matrices"] is None:
            continue
        name = entry["model"] or "model"
        metrics = entry["metrics"] or {}
        matrices = plot["confusion_matrices"]
        fpr, recall, precision = (_array(matrices[k]) for k in ("false_positive_rate", "recall", "precision"))
        line, = roc.plot(fpr, recall, label=f"{name} (AUC {_text(_find(metrics, 'auc'))})")
        color = line.get_color()
        lines.append(line)
        lines += pr.plot(recall, precision, color=color,
                         label=f"{name} (AUC-PR {_text(_find(metrics, 'auc_precision_recall'))})")
        at = plot["confusion_matrices_at_thresholds"]
        lines += roc.plot(_array(at["false_positive_rate"]), _array(at["recall"]), "o", color=color, mfc="white")
        lines += pr.plot(_array(at["recall"]), _array(at["precision"]), "o", color=color, mfc="white")
        histogram = plot["calibration_histogram"]
        weight = _array(histogram["num_weighted_examples"])
        shown = weight > 0
        lines += calibration.plot(_array(histogram["total_weighted_refined_prediction"])[shown] / weight[shown],
                                  _array(histogram["total_weighted_label"])[shown] / weight[shown],
                                  ".-", color=color, label=name, markersize=3, linewidth=1)
    prepared.canvas.restore_region(prepared.background)
    for line in lines:
        line.axes.draw_artist(line)
    for axes in prepared.axes:
        for spine in axes.spines.values():
            axes.draw_artist(spine)
    for axes in prepared.axes:
        if axes.get_legend_handles_labels()[0]:
            axes.draw_artist(axes.legend(loc="lower right" if axes is not pr else "lower left", fontsize=8))
    buffer = io.BytesIO()
    # What canvas.print_png writes after its own (whole) draw.
    matplotlib.image.imsave(buffer, prepared.canvas.buffer_rgba(), format="png", origin="upper",
                            dpi=prepared.figure.dpi)
    return buffer.getvalue()


def _overall(document, plots):
    """The part of (metrics.json, plots.json) that render() draws: the overall slices."""
    pairs = [(e, p) for e, p in zip(document["slices"], plots["plots"]) if not e["slice"]]
    return {"slices": [e for e, _ in pairs]}, {"plots": [p for _, p in pairs]}


class Drawer:
    """A child process that imports matplotlib now and draws plots.png when given the data."""

    def __init__(self):
        # The child imports this package from where this process does.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.report_png"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        atexit.register(self.close)

    def start(self, document, plots):
        """Sends the plots to draw; returns a function that waits for the PNG's bytes."""
        document, plots = _overall(document, plots)
        request = to_json({"document": document, "plots": plots}).encode("utf-8")
        process, self._process = self._process, None
        # communicate() feeds stdin and drains stdout and stderr together (no
        # full pipe can block either side); on a thread, so this process goes on.
        executor = concurrent.futures.ThreadPoolExecutor(1, "plots-png")
        drawing = executor.submit(process.communicate, request)
        executor.shutdown(wait=False)  # its one thread ends with the drawing

        def result():
            png, error = drawing.result()
            if process.returncode != 0:
                raise RuntimeError(f"drawing plots.png failed: {error.decode('utf-8', 'replace').strip()}")
            return png

        return result

    def close(self):
        """Ends an unused child (a run that failed or wrote no report)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


_early = []  # a Drawer started before the config was read (start_early), not yet taken


def start_early():
    """Starts a Drawer at the very start of a local command-line run (pipeline/startup.py).

    Its 0.7 s of importing and preparing then ends before a short run's
    pipeline does; take_drawer() keeps it, or ends it if the config wants
    no report.
    """
    if not _early:
        _early.append(Drawer())


def take_drawer(wanted):
    """The Drawer of this run (the early one, or a new one); None when no report is `wanted`."""
    drawer = _early.pop() if _early else None
    if not wanted:
        if drawer is not None:
            drawer.close()
        return None
    return drawer or Drawer()


def _child():
    """Drawer's process: prepare the figure, read {document, plots} from stdin, write the PNG to stdout."""
    import orjson

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches the whole group
    prepared = _Figure()
    data = sys.stdin.buffer.read()
    if not data:  # the parent ended without asking
        return
    request = orjson.loads(data)
    sys.stdout.buffer.write(_draw(prepared, request["document"], request["plots"]))
    sys.stdout.buffer.flush()
    # The parent waits for this process's end: no interpreter teardown
    # (0.1 s with matplotlib loaded) once the PNG is out.
    os._exit(0)


if __name__ == "__main__":
    _child()
