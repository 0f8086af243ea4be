"""plots.png: the overall slice's ROC, precision-recall and calibration plots, every model.

For e-mail and chat, where an HTML page does not open. Drawn with
matplotlib's Agg canvas directly (no pyplot: no global state, no GUI
backend, a faster import), from plots.json's content.
"""

import io

import numpy as np

from pipeline.report_html import _find


_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _text(value):
    return "n/a" if value is None else f"{value:.4f}"


def _array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def render(document, plots):
    """PNG bytes of the overall plots of every model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins, not a layout engine: constrained layout measured every
    # text twice and took half of the drawing time (0.3 of 0.6 s).
    figure = Figure(figsize=(13.5, 4.4), dpi=100)
    figure.subplots_adjust(left=0.045, right=0.99, bottom=0.11, top=0.93, wspace=0.2)
    canvas = FigureCanvasAgg(figure)
    roc, pr, calibration = figure.subplots(1, 3)
    for entry, plot in zip(document["slices"], plots["plots"]):
        if entry["slice"] or plot["confusion_matrices"] is None:
            continue
        name = entry["model"] or "model"
        metrics = entry["metrics"] or {}
        matrices = plot["confusion_matrices"]
        fpr, recall, precision = (_array(matrices[k]) for k in ("false_positive_rate", "recall", "precision"))
        line, = roc.plot(fpr, recall, label=f"{name} (AUC {_text(_find(metrics, 'auc'))})")
        color = line.get_color()
        pr.plot(recall, precision, color=color,
                label=f"{name} (AUC-PR {_text(_find(metrics, 'auc_precision_recall'))})")
        at = plot["confusion_matrices_at_thresholds"]
        roc.plot(_array(at["false_positive_rate"]), _array(at["recall"]), "o", color=color, mfc="white")
        pr.plot(_array(at["recall"]), _array(at["precision"]), "o", color=color, mfc="white")
        histogram = plot["calibration_histogram"]
        weight = _array(histogram["num_weighted_examples"])
        shown = weight > 0
        calibration.plot(_array(histogram["total_weighted_refined_prediction"])[shown] / weight[shown],
                         _array(histogram["total_weighted_label"])[shown] / weight[shown],
                         ".-", color=color, label=name, markersize=3, linewidth=1)
    for axes, title, x, y in ((roc, "ROC (overall)", "false positive rate", "true positive rate"),
                              (pr, "Precision-recall (overall)", "recall", "precision"),
                              (calibration, "Calibration (overall)", "mean prediction", "mean label")):
        axes.set_title(title)
        axes.set_xlabel(x)
        axes.set_ylabel(y)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xticks(_TICKS)
        axes.set_yticks(_TICKS)
        axes.grid(alpha=0.3)
        if axes is not pr:
            axes.plot([0, 1], [0, 1], "--", color="#999999", linewidth=1)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right" if axes is not pr else "lower left", fontsize=8)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()
