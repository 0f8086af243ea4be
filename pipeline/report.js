// beam-head-eval report: draws the plots of report.html as SVG from the JSON
// embedded in the page (#report-data), sorts and filters the slice table.
// No library and nothing from the network; every string from the data is
// set as text (textContent, setAttribute), never parsed as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"];

  function node(name, attrs, parent, text) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function html(name, parent, text, cls) {
    var e = document.createElement(name);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    if (parent) parent.appendChild(e);
    return e;
  }

  function color(model) {
    var i = data.models.indexOf(model);
    return COLORS[(i < 0 ? 0 : i) % COLORS.length];
  }

  function modelLabel(model) { return model === "" ? "model" : model; }

  function fmt(v) {
    if (v === null || v === undefined) return "\u2013";
    if (Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3)) return v.toExponential(3);
    return String(Math.round(v * 1e4) / 1e4);
  }

  // A line chart: series [{label, color, x: [], y: [], dots: bool, marks: [[x, y, text]]}].
  function chart(container, opts) {
    container.textContent = "";
    var W = 380, H = 330, L = 52, R = 14, T = 30, B = 46;
    var xr = opts.xRange || [0, 1], yr = opts.yRange || [0, 1];
    var svg = node("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
                           "class": "chart"}, container);
    node("title", {}, svg, opts.title);
    function x(v) { return L + (v - xr[0]) / (xr[1] - xr[0] || 1) * (W - L - R); }
    function y(v) { return H - B - (v - yr[0]) / (yr[1] - yr[0] || 1) * (H - T - B); }
    node("text", {x: W / 2, y: 18, "text-anchor": "middle", "class": "chart-title"}, svg, opts.title);
    node("rect", {x: L, y: T, width: W - L - R, height: H - T - B, "class": "plot-area"}, svg);
    // x ticks: given positions (e.g. one per run) or five even ones; y ticks: five even ones.
    var xAt = opts.xTicksAt || [0, 1, 2, 3, 4].map(function (i) { return xr[0] + (xr[1] - xr[0]) * i / 4; });
    xAt.forEach(function (fx) {
      node("line", {x1: x(fx), x2: x(fx), y1: T, y2: H - B, "class": "grid"}, svg);
      node("text", {x: x(fx), y: H - B + 14, "text-anchor": "middle", "class": "tick"}, svg,
           opts.xTicks ? opts.xTicks(fx) : fmt(fx));
    });
    for (var i = 0; i <= 4; i++) {
      var fy = yr[0] + (yr[1] - yr[0]) * i / 4;
      node("line", {x1: L, x2: W - R, y1: y(fy), y2: y(fy), "class": "grid"}, svg);
      node("text", {x: L - 5, y: y(fy) + 3, "text-anchor": "end", "class": "tick"}, svg, fmt(fy));
    }
    node("text", {x: L + (W - L - R) / 2, y: H - 8, "text-anchor": "middle", "class": "axis"}, svg, opts.xLabel);
    node("text", {x: 12, y: T + (H - T - B) / 2, "text-anchor": "middle", "class": "axis",
                  transform: "rotate(-90 12 " + (T + (H - T - B) / 2) + ")"}, svg, opts.yLabel);
    if (opts.diagonal) {
      node("line", {x1: x(xr[0]), y1: y(yr[0]), x2: x(xr[1]), y2: y(yr[1]), "class": "diagonal"}, svg);
    }
    var drawn = 0;
    opts.series.forEach(function (s, k) {
      var points = [];
      for (var j = 0; j < s.x.length; j++) {
        if (s.x[j] !== null && s.y[j] !== null) points.push([x(s.x[j]), y(s.y[j]), j]);
      }
      if (!points.length) return;
      drawn++;
      node("polyline", {points: points.map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join(" "),
                        fill: "none", stroke: s.color, "stroke-width": 2, "class": "series"}, svg);
      if (s.dots) {
        points.forEach(function (p) {
          var c = node("circle", {cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 3, fill: s.color}, svg);
          if (s.tips) node("title", {}, c, s.tips[p[2]]);
        });
      }
      (s.marks || []).forEach(function (m) {
        if (m[0] === null || m[1] === null) return;
        var c = node("circle", {cx: x(m[0]).toFixed(1), cy: y(m[1]).toFixed(1), r: 4.5, fill: "#fff",
                                stroke: s.color, "stroke-width": 2}, svg);
        node("title", {}, c, m[2]);
      });
      var legend = opts.legend || "top-left", n = opts.series.length;
      var lx = legend.indexOf("right") >= 0 ? W - R - 165 : L + 8;
      var ly = legend.indexOf("bottom") >= 0 ? H - B - 8 - 16 * (n - 1 - k) : T + 14 + 16 * k;
      node("rect", {x: lx, y: ly - 9, width: 10, height: 10, fill: s.color}, svg);
      node("text", {x: lx + 14, y: ly, "class": "legend"}, svg, s.label);
    });
    if (!drawn) {
      node("text", {x: L + (W - L - R) / 2, y: T + (H - T - B) / 2, "text-anchor": "middle", "class": "empty"},
           svg, "no data for this slice");
    }
  }

  // ---- plots of one slice, every model overlaid -------------------------------
  var curves = {};
  data.curves.forEach(function (c) { (curves[c.slice_name] = curves[c.slice_name] || []).push(c); });

  function thresholdMarks(c, xField, yField) {
    var t = c.thresholds;
    if (!t) return [];
    return t.threshold.map(function (v, i) {
      return [t[xField][i], t[yField][i], "threshold " + v];
    });
  }

  function showSlice(name) {
    var list = curves[name] || [];
    document.getElementById("plots-slice").textContent = name;
    chart(document.getElementById("plot-roc"), {
      title: "ROC", xLabel: "false positive rate", yLabel: "true positive rate (recall)", diagonal: true,
      legend: "bottom-right",
      series: list.map(function (c) {
        return {label: modelLabel(c.model) + " AUC " + fmt(c.auc), color: color(c.model), x: c.roc[0], y: c.roc[1],
                marks: thresholdMarks(c, "false_positive_rate", "recall")};
      })
    });
    chart(document.getElementById("plot-pr"), {
      title: "Precision-recall", xLabel: "recall", yLabel: "precision", legend: "bottom-left",
      series: list.map(function (c) {
        return {label: modelLabel(c.model) + " AUC-PR " + fmt(c.auc_pr), color: color(c.model), x: c.pr[0], y: c.pr[1],
                marks: thresholdMarks(c, "recall", "precision")};
      })
    });
    chart(document.getElementById("plot-calibration"), {
      title: "Calibration", xLabel: "mean prediction (logistic)", yLabel: "mean label", diagonal: true,
      series: list.map(function (c) {
        return {label: modelLabel(c.model), color: color(c.model), x: c.calibration[0], y: c.calibration[1], dots: true,
                tips: c.calibration[2].map(function (w, i) {
                  return "prediction " + fmt(c.calibration[0][i]) + ", label " + fmt(c.calibration[1][i]) +
                         ", weighted examples " + fmt(w);
                })};
      })
    });
    var table = document.getElementById("threshold-table");
    table.textContent = "";
    var withThresholds = list.filter(function (c) { return c.thresholds && c.thresholds.threshold.length; });
    if (!withThresholds.length) return;
    var fields = ["threshold", "true_positives", "false_positives", "true_negatives", "false_negatives",
                  "precision", "recall", "false_positive_rate", "f1", "accuracy"];
    var head = html("tr", html("thead", table));
    html("th", head, "model");
    fields.forEach(function (f) { html("th", head, f.replace(/_/g, " ")); });
    var body = html("tbody", table);
    withThresholds.forEach(function (c) {
      c.thresholds.threshold.forEach(function (_, i) {
        var row = html("tr", body);
        html("td", row, modelLabel(c.model));
        fields.forEach(function (f) { html("td", row, fmt(c.thresholds[f][i]), "num"); });
      });
    });
  }

  var picker = document.getElementById("slice-picker");
  if (picker) {
    picker.addEventListener("change", function () { showSlice(picker.value); });
    showSlice(picker.value);
  }

  // ---- slice table: sort by any column, filter by slice, pick a slice ---------
  var table = document.getElementById("slice-table");
  if (table) {
    var tbody = table.tBodies[0];
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, column) {
      th.addEventListener("click", function () {
        var descending = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var rows = Array.prototype.slice.call(tbody.rows);
        var numeric = th.classList.contains("num");
        function key(row) {
          var cell = row.cells[column];
          if (!numeric) return cell.textContent;
          var v = parseFloat(cell.getAttribute("data-v"));
          return isNaN(v) ? -Infinity : v;
        }
        rows.sort(function (a, b) {
          var ka = key(a), kb = key(b);
          var order = ka < kb ? -1 : ka > kb ? 1 : 0;
          return descending ? -order : order;
        });
        rows.forEach(function (r) { tbody.appendChild(r); });
      });
    });
    tbody.addEventListener("click", function (event) {
      var row = event.target.closest("tr");
      if (!row || !picker) return;
      var name = row.getAttribute("data-slice");
      if (!curves[name]) return;
      picker.value = name;
      showSlice(name);
      document.getElementById("plots").scrollIntoView();
    });
    var filter = document.getElementById("slice-filter");
    filter.addEventListener("input", function () {
      var text = filter.value.toLowerCase();
      Array.prototype.forEach.call(tbody.rows, function (row) {
        row.hidden = text !== "" && row.getAttribute("data-slice").toLowerCase().indexOf(text) < 0;
      });
    });
  }

  // ---- history: the overall metrics of earlier runs ----------------------------
  var history = data.history;
  var metricPicker = document.getElementById("history-metric");
  if (history && metricPicker) {
    var showHistory = function () {
      var metric = metricPicker.value, lo = Infinity, hi = -Infinity;
      var series = data.models.map(function (model) {
        var values = (history.values[metric] || {})[model] || [];
        values.forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
        return {label: modelLabel(model), color: color(model), dots: true,
                x: values.map(function (_, i) { return i; }), y: values,
                tips: values.map(function (v, i) {
                  var run = history.runs[i];
                  return run.started + (run.label ? " (" + run.label + ")" : "") + ": " + fmt(v);
                })};
      });
      if (lo === Infinity) { lo = 0; hi = 1; }
      var pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.01 || 0.01;
      var last = Math.max(history.runs.length - 1, 1);
      chart(document.getElementById("plot-history"), {
        title: metric + ", overall, by run", xLabel: "run (oldest to newest)", yLabel: metric,
        xRange: [0, last], yRange: [lo - pad, hi + pad], series: series,
        xTicksAt: history.runs.length <= 6 ? history.runs.map(function (_, i) { return i; }) : undefined,
        xTicks: function (v) {
          var run = history.runs[Math.round(v)];
          return run ? (run.label || run.started.slice(0, 10)) : "";
        }
      });
    };
    metricPicker.addEventListener("change", showHistory);
    showHistory();
  }
})();
