#!/usr/bin/env python
"""The slices, models and intervals benchmark (issues 9 and 10): `make bench` runs it after run_bench.py.

    .venv/bin/python benchmarks/slices_bench.py            # full: 20M Parquet rows, 3 runs each
    .venv/bin/python benchmarks/slices_bench.py --quick    # smoke run: 2M rows, 1 run each

On the same generated files (bench_data/sliced/, benchmarks/sliced_data.py:
20 Parquet shards of 1M rows with two models' logits, label, weight, and
country (50 values), device (4) and store (10,000) columns; the 10M view is
the first 10 shards), in one run, each case a whole `run_pipeline.py`
process timed from outside (run_bench.run_process), the cases alternating,
`--repeats` times:

  a  20M rows, unsliced, one model (benchmarks/bench.yaml)
  b  20M rows, two models (candidate: logits; production: score_v1, the
     baseline), sliced by country, device and country x device (~255 slices)
  c  10M rows, the two models sliced by store (10,000 slices)
  d  b + confidence_intervals jackknife, 20 groups
  e  b + confidence_intervals poisson_bootstrap, 20 replicates

and once each, TFMA (benchmarks/tfma_run.py, model-free) with the same two
models and slices on the 100k-row TFRecord set, and with its jackknife and
Poisson bootstrap (20 samples) on the 10k-row set (TFMA with intervals is
very slow); the pipeline runs once with b's config on the 100k set so slices
can be compared with TFMA's.

Checks: b's overall candidate metrics equal a's (1e-9 relative), as do d's
and e's point estimates; a few slices against TFMA (reported, not failed:
TFMA's AUC interpolates slightly differently). Results: bench_output/slices.md
and slices.json; run outputs under bench_output/runs/slices/, logs under
bench_output/logs/slices/.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import time
import traceback

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run_bench  # noqa: E402
import sliced_data  # noqa: E402
from run_bench import human, log, run_process, summarize  # noqa: E402

GIB_MIB = 1024
SAME_TOLERANCE = 1e-9  # a sliced run's overall slice vs the unsliced run: the same sums
FULL = {"shard_rows": 1_000_000, "row_group": 131_072, "shards": 20, "mid_shards": 10,
        "tfma_rows": 100_000, "tfma_interval_rows": 10_000, "tfrecord_shards": 4}
QUICK = {"shard_rows": 100_000, "row_group": 16_384, "shards": 20, "mid_shards": 10,
         "tfma_rows": 10_000, "tfma_interval_rows": 2_000, "tfrecord_shards": 4}
MODELS = [{"name": "candidate", "logits": "logits"},
          {"name": "production", "logits": "score_v1", "is_baseline": True}]
SLICES = [{"feature_keys": ["country"]}, {"feature_keys": ["device"]},
          {"feature_keys": ["country", "device"]}]
TFMA_MODELS = ["candidate=probability", "production=probability_v1"]
TFMA_SLICES = ["country", "device", "country,device"]
# Slices compared with TFMA's (besides the overall slice), for both models.
# TFMA's names of the head's metrics (those that mean the same; run_bench.compare_tfma's list).
TFMA_NAMES = {
    "binary_accuracy": "accuracy", "precision": "precision", "recall": "recall",
    "auc": "auc", "auc_precision_recall": "auc_precision_recall",
    "mean_label": "label/mean", "mean_prediction": "prediction/mean",
    "binary_crossentropy": "average_loss",
}
COMPARED_SLICES = [{"country": "US"}, {"device": "tablet"}, {"country": "DE", "device": "mobile"}]


def case_configs(base_config):
    """{case: config dict}: bench.yaml's head and columns, plus each case's models, slices, intervals."""
    with open(os.path.join(ROOT, base_config)) as f:
        base = yaml.safe_load(f)
    two_models = dict(base, columns={k: v for k, v in base["columns"].items() if k != "logits"},
                      models=MODELS)
    sliced = dict(two_models, slicing_specs=SLICES)
    return {
        "a": base,
        "b": sliced,
        "c": dict(two_models, slicing_specs=[{"feature_keys": ["store"]}], max_slices=10_000),
        "d": dict(sliced, confidence_intervals={"method": "jackknife", "num_samples": 20}),
        "e": dict(sliced, confidence_intervals={"method": "poisson_bootstrap", "num_samples": 20}),
    }


CASES = {  # case: (description, data set)
    "a": ("unsliced, one model", "large"),
    "b": ("2 models, country + device + cross", "large"),
    "c": ("2 models, by store", "mid"),
    "d": ("b + jackknife 20", "large"),
    "e": ("b + Poisson bootstrap 20", "large"),
}


def make_datasets(sizes, data_dir):
    """{set: {rows, glob, format}} (or {error}): the Parquet set, its 10M view, the TFRecord sets."""
    sets = {}
    parquet_dir = os.path.join(data_dir, "sliced")
    try:
        manifest = sliced_data.make_set(parquet_dir, "parquet", sizes["shards"], sizes["shard_rows"],
                                        sizes["row_group"], log=log)
        sets["large"] = {"rows": manifest["rows"], "glob": os.path.join(parquet_dir, "*.parquet"),
                         "format": "parquet"}
        rows = sizes["mid_shards"] * sizes["shard_rows"]
        view = run_bench.make_data.make_view(
            parquet_dir, os.path.join(data_dir, f"sliced-{human(rows).lower()}"), sizes["mid_shards"])
        sets["mid"] = dict(view, format="parquet")
    except Exception as e:  # noqa: BLE001 - recorded, the rest goes on
        for key, shards in (("large", sizes["shards"]), ("mid", sizes["mid_shards"])):
            sets.setdefault(key, {"error": f"data: {type(e).__name__}: {e}",
                                  "rows": shards * sizes["shard_rows"], "format": "parquet"})
    for key in ("tfma_rows", "tfma_interval_rows"):
        rows, shards = sizes[key], sizes["tfrecord_shards"]
        directory = os.path.join(data_dir, f"sliced-tfrecord-{human(rows).lower()}")
        try:
            manifest = sliced_data.make_set(directory, "tfrecord", shards, rows // shards, log=log)
            sets[key] = {"rows": manifest["rows"], "glob": os.path.join(directory, "*.tfrecord"),
                         "format": "tfrecord"}
        except Exception as e:  # noqa: BLE001
            sets[key] = {"error": f"data: {type(e).__name__}: {e}", "rows": rows, "format": "tfrecord"}
    for entry in sets.values():
        if entry.get("glob", "").startswith(ROOT):
            entry["glob"] = os.path.relpath(entry["glob"], ROOT)
    return sets


def data_bytes(sizes):
    """About how many bytes the sliced data take (25 B per Parquet row, 200 B per TFRecord row)."""
    return (sizes["shards"] * sizes["shard_rows"] * 25
            + (sizes["tfma_rows"] + sizes["tfma_interval_rows"]) * 200)


# ---- running -------------------------------------------------------------------


def pipeline_run(python, data, config_path, out_dir, tag, timeout):
    """One whole run_pipeline.py process; its run_process record plus metrics_path."""
    output = os.path.join(out_dir, "runs", "slices", tag)
    argv = [python, "run_pipeline.py", "--input", data["glob"], "--format", data["format"],
            "--config", config_path, "--output", output,
            "--runner=DirectRunner", "--direct_running_mode=in_memory"]
    record = run_process("pipeline", argv, os.path.join(out_dir, "logs", "slices", tag + ".log"), timeout)
    record["metrics_path"] = os.path.join(output, "metrics.json")
    return record


def tfma_run(python, data, out_dir, tag, timeout, intervals=None):
    output = os.path.join(out_dir, "runs", "slices", tag)
    argv = [python, "benchmarks/tfma_run.py", "--input", data["glob"], "--output", output,
            "--baseline", "production"]
    for model in TFMA_MODELS:
        argv += ["--model", model]
    for keys in TFMA_SLICES:
        argv += ["--slice", keys]
    if intervals:
        argv += ["--confidence-intervals", intervals]
    argv += ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
    record = run_process("tfma", argv, os.path.join(out_dir, "logs", "slices", tag + ".log"), timeout)
    record["metrics_path"] = os.path.join(output, "metrics.json")
    return record


def _run_line(name, record):
    if record.get("error"):
        return f"  {name:<28} ERROR {record['error']}"
    rss = f", {record['rss_kib'] / 1024:.0f} MiB" if record.get("rss_kib") else ""
    cpu = f", {record['cpu_s']:.2f} s CPU" if record.get("cpu_s") is not None else ""
    return f"  {name:<28} {record['wall']:.2f} s{cpu}{rss}"


# ---- checks ----------------------------------------------------------------------


def _entries(document):
    return (document or {}).get("slices") or []


def find_slice(document, model, slice_dict):
    for entry in _entries(document):
        if entry.get("model") == model and entry.get("slice") == slice_dict:
            return entry
    return None


def max_relative_difference(a, b, keys=None):
    """(max relative difference, key) over the numeric keys both dicts have (or `keys`)."""
    worst, worst_key = None, None
    for key in keys or sorted(set(a) & set(b)):
        x, y = a.get(key), b.get(key)
        if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            if x != y:
                return float("inf"), key
            continue
        scale = max(abs(x), abs(y))
        diff = abs(x - y) / scale if scale else 0.0
        if worst is None or diff > worst:
            worst, worst_key = diff, key
    return worst, worst_key


def same_overall(unsliced, sliced, model="candidate"):
    """Max relative difference of a sliced run's overall slice of `model` vs the unsliced run."""
    if unsliced is None or sliced is None:
        return None, "missing metrics"
    entry = find_slice(sliced, model, {})
    if entry is None:
        return None, f"no overall slice of {model}"
    a = dict(unsliced["metrics"], example_count=unsliced["example_count"],
             weighted_example_count=unsliced["weighted_example_count"])
    b = dict(entry["metrics"], example_count=entry["example_count"],
             weighted_example_count=entry["weighted_example_count"])
    if set(a) != set(b):
        return float("inf"), f"keys differ: {sorted(set(a) ^ set(b))}"
    return max_relative_difference(a, b)


AUCS = ("auc", "auc_precision_recall")


def versus_tfma(pipeline, tfma):
    """[{model, slice, max_relative_difference, key, without_auc, diff_abs}] for the overall slice
    and COMPARED_SLICES of both models: the metrics TFMA shares with the head (run_bench's
    mapping), the same without the AUCs (TFMA interpolates them differently), and the
    candidate's diffs vs TFMA's `*_diff` metrics (absolute: diffs are near 0)."""
    rows = []
    for model in ("candidate", "production"):
        for slice_dict in [{}] + COMPARED_SLICES:
            ours, theirs = find_slice(pipeline, model, slice_dict), find_slice(tfma, model, slice_dict)
            row = {"model": model, "slice": slice_dict, "max_relative_difference": None}
            rows.append(row)
            if ours is None or theirs is None or not ours.get("metrics"):
                row["key"] = "missing in " + ("TFMA" if ours else "pipeline")
                continue
            row["max_relative_difference"], row["key"] = run_bench.compare_tfma(
                {"metrics": ours["metrics"]}, {"metrics": theirs["metrics"]})
            row["without_auc"], row["without_auc_key"] = run_bench.compare_tfma(
                {"metrics": {k: v for k, v in ours["metrics"].items() if k not in AUCS}},
                {"metrics": theirs["metrics"]})
            if ours.get("diff"):
                ours_diff = {k: v for k, v in ours["diff"].items() if v is not None}
                theirs_diff = {k[:-len("_diff")]: v for k, v in theirs["metrics"].items() if k.endswith("_diff")}
                pairs = [(head_key, theirs_diff.get(tfma_key), ours_diff.get(head_key))
                         for tfma_key, head_key in TFMA_NAMES.items()]
                pairs = [(k, a, b) for k, a, b in pairs if isinstance(a, (int, float)) and b is not None]
                if pairs:
                    row["diff_abs"], row["diff_key"] = max((abs(a - b), k) for k, a, b in pairs)
    return rows


def interval_widths(pipeline, tfma):
    """[{slice, metric, pipeline, tfma, ratio}]: interval widths (upper - lower) of the candidate on
    the same rows. Not equal by design (different sample assignments; TFMA's bootstrap is random),
    only of the same size."""
    rows = []
    for slice_dict in ({}, COMPARED_SLICES[0]):
        ours, theirs = find_slice(pipeline, "candidate", slice_dict), find_slice(tfma, "candidate", slice_dict)
        for tfma_key in ("auc", "binary_accuracy", "binary_crossentropy"):
            head_key = TFMA_NAMES[tfma_key]
            a = ((ours or {}).get("confidence_intervals") or {}).get(head_key) or {}
            b = ((theirs or {}).get("confidence_intervals") or {}).get(tfma_key) or {}
            width = [x["upper"] - x["lower"] if isinstance(x.get("upper"), (int, float))
                     and isinstance(x.get("lower"), (int, float)) else None for x in (a, b)]
            rows.append({"slice": slice_dict, "metric": head_key, "pipeline": width[0], "tfma": width[1],
                         "ratio": run_bench._ratio(width[0], width[1])})
    return rows


def slice_count(document):
    """Slices per model (the first model's), or None."""
    entries = _entries(document)
    if not entries:
        return None
    first = entries[0]["model"]
    return sum(1 for e in entries if e["model"] == first)


# ---- targets and the table ---------------------------------------------------------


def _rate(case, tool="pipeline"):
    return run_bench._get(case, tool, "rows_per_s")


def targets(cases, tfma):
    ratio = run_bench._ratio
    get = run_bench._get
    rows = [
        ("issue 9: b rows/s / a rows/s (sliced two-model vs unsliced)", ratio(_rate(cases["b"]), _rate(cases["a"])), ">=", 0.5, "x"),
        ("issue 9: b rows/s / TFMA sliced two-model rows/s", ratio(_rate(cases["b"]), _rate(tfma["sliced"], "tfma")), ">=", 1000, "x"),
        ("issue 9: b peak RSS", get(cases["b"], "pipeline", "peak_rss_mib"), "<=", GIB_MIB, " MiB"),
        (f"issue 9: c ({cases['c'].get('slices') or '?'} slices per model, {human(cases['c']['rows'])} rows) peak RSS", get(cases["c"], "pipeline", "peak_rss_mib"), "<=", 2 * GIB_MIB, " MiB"),
        ("issue 10: d (jackknife 20) rows/s / b rows/s", ratio(_rate(cases["d"]), _rate(cases["b"])), ">=", 0.5, "x"),
        ("issue 10: e (Poisson bootstrap 20) rows/s / b rows/s", ratio(_rate(cases["e"]), _rate(cases["b"])), ">=", 0.25, "x"),
        ("issue 10: d rows/s / TFMA jackknife rows/s", ratio(_rate(cases["d"]), _rate(tfma["jackknife"], "tfma")), ">=", 1000, "x"),
        ("issue 10: e rows/s / TFMA Poisson bootstrap rows/s", ratio(_rate(cases["e"]), _rate(tfma["poisson_bootstrap"], "tfma")), ">=", 1000, "x"),
        ("issue 10: d peak RSS", get(cases["d"], "pipeline", "peak_rss_mib"), "<=", 1.5 * GIB_MIB, " MiB"),
        ("issue 10: e peak RSS", get(cases["e"], "pipeline", "peak_rss_mib"), "<=", 1.5 * GIB_MIB, " MiB"),
    ]
    out = []
    for label, value, op, limit, unit in rows:
        if value is None:
            verdict = "ERROR (not measured)"
        else:
            verdict = "PASS" if (value >= limit if op == ">=" else value <= limit) else "FAIL"
        out.append({"target": label, "value": value, "op": op, "limit": limit, "unit": unit, "result": verdict})
    return out


def _shown(value, unit):
    if value is None:
        return "-"
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:.2f}{unit}"


def markdown(report):
    f, cell, rate, wall = run_bench._f, run_bench._cell, run_bench._rate, run_bench._wall
    lines = [
        f"# beam-head-eval benchmark: slices, models, intervals ({'quick' if report['quick'] else 'full'})",
        "",
        f"{report['started']}, {report['machine']}, git {report['git']}, {report['repeats']} runs per "
        f"pipeline case (alternating), load average at start/end {report['load_start']} / "
        f"{report['load_end']}, {report['seconds']:.0f} s in all.",
        "Whole process (interpreter start to exit), DirectRunner in-process; wall: median (min-max) s;"
        " rows/s = rows / median wall; RSS = peak over the runs.",
        "",
        "| case | rows | slices per model | wall s | rows/s | peak RSS MiB | CPU s (median) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for key, case in report["cases"].items():
        name = f"{key}: {case['description']}"
        if case.get("error"):
            lines.append(f"| {name} | {case['rows']:,} | | ERROR: {cell(case['error'])} | | | |")
            continue
        p = case.get("pipeline") or {}
        lines.append(f"| {name} | {case['rows']:,} | {f(case.get('slices'), '{:,}')} | {wall(p)} | "
                     f"{rate(p.get('rows_per_s'))} | {f(p.get('peak_rss_mib'), '{:.0f}')} | "
                     f"{f(p.get('median_cpu_s'))} |")
    lines += ["", "| TFMA (model-free, 2 models, same slices), 1 run | rows | wall s | rows/s "
              "| in run_model_analysis s | peak RSS MiB | pipeline case / TFMA rows/s |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for key, (label, ours) in {"sliced": ("no intervals", "b"), "jackknife": ("jackknife 20", "d"),
                               "poisson_bootstrap": ("Poisson bootstrap 20", "e")}.items():
        t = report["tfma"].get(key) or {}
        summary = t.get("tfma") or {}
        if t.get("skipped"):
            lines.append(f"| {label} | {t.get('rows', 0):,} | skipped | | | | |")
            continue
        lines.append(
            f"| {label} | {t.get('rows', 0):,} | {wall(summary)} | {rate(summary.get('rows_per_s'))} | "
            f"{f(t.get('seconds_in_run_model_analysis'), '{:.1f}')} | {f(summary.get('peak_rss_mib'), '{:.0f}')} | "
            f"{ours}: {f(run_bench._ratio(_rate(report['cases'][ours]), summary.get('rows_per_s')), '{:,.0f}x')} |")
    lines += ["", "| check | value | limit | result |", "| --- | ---: | ---: | --- |"]
    for check in report["checks"]:
        value = check.get("max_relative_difference")
        lines.append(f"| {cell(check['check'])} | {f(value, '{:.1e}')} ({cell(check.get('key') or '-')}) | "
                     f"{check['limit']} | {check['result']} |")
    lines += ["", f"| TFMA vs pipeline (same {human(report['tfma']['sliced']['rows'])} TFRecord rows): "
              "model, slice | max rel. diff (metric) | without the AUCs | diff vs TFMA's *_diff (abs.) |",
              "| --- | --- | --- | --- |"]
    for row in report.get("versus_tfma") or []:
        lines.append(f"| {row['model']}, {cell(json.dumps(row['slice']))} | "
                     f"{f(row['max_relative_difference'], '{:.1e}')} ({cell(row.get('key') or '-')}) | "
                     f"{f(row.get('without_auc'), '{:.1e}')} ({cell(row.get('without_auc_key') or '-')}) | "
                     + (f"{row['diff_abs']:.1e} ({cell(row['diff_key'])})" if row.get("diff_abs") is not None
                        else "-") + " |")
    if report.get("interval_widths"):
        lines += ["", f"| interval width, candidate, same {human(report['tfma']['jackknife']['rows'])} TFRecord "
                  "rows: method, slice, metric | pipeline | TFMA | pipeline / TFMA |", "| --- | ---: | ---: | ---: |"]
        for method, rows in report["interval_widths"].items():
            for row in rows:
                lines.append(f"| {method}, {cell(json.dumps(row['slice']))}, {row['metric']} | "
                             f"{f(row['pipeline'], '{:.4f}')} | {f(row['tfma'], '{:.4f}')} | {f(row['ratio'])} |")
    lines += ["", "| target | measured | limit | result |", "| --- | ---: | ---: | --- |"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {_shown(t['value'], t['unit'])} | {t['op']} {t['limit']:g}{t['unit']} "
                     f"| {t['result']} |")
    if report["quick"]:
        lines += ["", "Quick mode: smaller data; the targets are stated for the full sizes."]
    if report.get("notes"):
        lines += [""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


# ---- main ----------------------------------------------------------------------------


def run_cases(datasets, configs, repeats, python, out_dir, timeout):
    cases = {}
    for key, (description, data_key) in CASES.items():
        data = datasets[data_key]
        cases[key] = {"description": description, "rows": data["rows"], "glob": data.get("glob"),
                      "config": configs[key], "error": data.get("error"), "runs": []}
    for repeat in range(repeats):
        for key, case in cases.items():
            if case.get("error"):
                continue
            tag = f"{key}-{repeat}"
            try:
                record = pipeline_run(python, datasets[CASES[key][1]], case["config"], out_dir, tag, timeout)
            except Exception as e:  # noqa: BLE001 - a broken case must not end the bench
                traceback.print_exc()
                record = {"name": "pipeline", "wall": None, "error": f"bench: {type(e).__name__}: {e}"}
            case["runs"].append(record)
            log(_run_line(f"{key} ({case['description']}) #{repeat}", record))
    for case in cases.values():
        case["pipeline"] = summarize(case["runs"], case["rows"])
        ok = [r for r in case["runs"] if not r.get("error")]
        case["document"] = run_bench.load_json(ok[-1]["metrics_path"]) if ok else None
        case["slices"] = slice_count(case["document"])
    return cases


def run_tfma_cases(datasets, python, out_dir, timeout, skip):
    tfma = {}
    for key, data_key, intervals in (("sliced", "tfma_rows", None),
                                     ("jackknife", "tfma_interval_rows", "jackknife"),
                                     ("poisson_bootstrap", "tfma_interval_rows", "poisson_bootstrap")):
        data = datasets[data_key]
        entry = {"rows": data["rows"], "glob": data.get("glob"), "intervals": intervals}
        if skip or data.get("error"):
            entry.update(skipped=skip, error=data.get("error"), tfma={"error": data.get("error") or "skipped"})
            tfma[key] = entry
            continue
        log(f"TFMA {key} on {human(data['rows'])} TFRecord rows")
        record = tfma_run(python, data, out_dir, f"tfma-{key}", timeout, intervals)
        log(_run_line(f"TFMA {key}", record))
        entry.update(runs=[record], tfma=summarize([record], data["rows"]))
        if not record.get("error"):
            document = run_bench.load_json(record["metrics_path"]) or {}
            entry["seconds_in_run_model_analysis"] = document.get("seconds_in_run_model_analysis")
            entry["document_path"] = record["metrics_path"]
        tfma[key] = entry
    return tfma


def checks(cases, tfma_pipeline, tfma):
    out = []
    unsliced = cases["a"].get("document")
    for key in ("b", "d", "e"):
        worst, what = same_overall(unsliced, cases[key].get("document"))
        ok = worst is not None and worst <= SAME_TOLERANCE
        out.append({"check": f"{key} overall (candidate) vs a (unsliced), every metric and count",
                    "max_relative_difference": worst, "key": what, "limit": f"<= {SAME_TOLERANCE:g}",
                    "result": "PASS" if ok else ("FAIL" if worst is not None else "ERROR")})
    rows = []
    if tfma_pipeline and tfma["sliced"].get("document_path"):
        rows = versus_tfma(run_bench.load_json(tfma_pipeline["metrics_path"]),
                           run_bench.load_json(tfma["sliced"]["document_path"]))
        found = [r["max_relative_difference"] for r in rows if r["max_relative_difference"] is not None]
        out.append({"check": "pipeline vs TFMA, same TFRecord rows, overall + 3 slices x 2 models "
                             "(TFMA's metrics from float32 probabilities; reported only)",
                    "max_relative_difference": max(found) if found else None,
                    "key": max(rows, key=lambda r: r["max_relative_difference"] or 0)["key"] if found else None,
                    "limit": "~1e-4 (info)", "result": "info"})
    return out, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, 1 run each: a smoke run")
    parser.add_argument("--repeats", type=int, help="runs of each pipeline case (default 3; 1 with --quick)")
    parser.add_argument("--tfma-repeats", type=int, default=1, help="accepted for run_bench's BENCH_ARGS; TFMA runs once")
    parser.add_argument("--skip-tfma", action="store_true")
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "bench_data"))
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "bench_output"))
    parser.add_argument("--config", default="benchmarks/bench.yaml", help="the head and columns of every case")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run before it is killed")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = QUICK if args.quick else FULL
    data_dir = os.path.join(args.data_dir, "quick") if args.quick else args.data_dir
    out_dir = os.path.abspath(args.out_dir)
    started = time.perf_counter()
    report = {
        "quick": args.quick, "repeats": repeats, "sizes": sizes, "git": run_bench._git(),
        "machine": run_bench._machine(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()), "notes": [],
    }
    for sub in ("runs", "logs"):
        if os.path.isdir(os.path.join(out_dir, sub, "slices")):
            shutil.rmtree(os.path.join(out_dir, sub, "slices"))  # the last bench's
    config_dir = os.path.join(out_dir, "runs", "slices", "configs")
    os.makedirs(config_dir, exist_ok=True)
    configs = {}
    for key, config in case_configs(args.config).items():
        configs[key] = os.path.join(config_dir, f"{key}.yaml")
        with open(configs[key], "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
    disk_error = run_bench.check_disk(data_dir, data_bytes(sizes))
    if disk_error:
        log(f"error: {disk_error}")
        datasets = {k: {"error": disk_error, "rows": 0, "format": "-"}
                    for k in ("large", "mid", "tfma_rows", "tfma_interval_rows")}
    else:
        datasets = make_datasets(sizes, data_dir)
    log(f"slices bench: cases {', '.join(CASES)} x {repeats}")
    cases = run_cases(datasets, configs, repeats, args.python, out_dir, args.timeout)
    tfma_pipeline = None
    if not datasets["tfma_rows"].get("error"):
        tfma_pipeline = pipeline_run(args.python, datasets["tfma_rows"], configs["b"], out_dir,
                                     "b-on-tfma-rows", args.timeout)
        log(_run_line("b on the TFMA TFRecord rows", tfma_pipeline))
        if tfma_pipeline.get("error"):
            report["notes"].append(f"b on the TFMA rows failed: {tfma_pipeline['error']}")
            tfma_pipeline = None
    tfma = run_tfma_cases(datasets, args.python, out_dir, args.timeout, args.skip_tfma)
    report["checks"], report["versus_tfma"] = checks(cases, tfma_pipeline, tfma)
    report["interval_widths"] = {}
    for key, method in (("d", "jackknife"), ("e", "poisson_bootstrap")):
        if datasets["tfma_interval_rows"].get("error") or not tfma[method].get("document_path"):
            continue
        record = pipeline_run(args.python, datasets["tfma_interval_rows"], configs[key], out_dir,
                              f"{key}-on-tfma-interval-rows", args.timeout)
        log(_run_line(f"{key} on the TFMA interval rows", record))
        if record.get("error"):
            report["notes"].append(f"{key} on the TFMA interval rows failed: {record['error']}")
            continue
        report["interval_widths"][method] = interval_widths(
            run_bench.load_json(record["metrics_path"]), run_bench.load_json(tfma[method]["document_path"]))
    report["notes"] += [
        "Every case reads the same generated files (bench_data/sliced/; c reads its first 10 shards);"
        " configs: bench_output/runs/slices/configs/.",
        "TFMA's ratios compare rows/s on different sizes (TFMA is too slow for 20M rows; with intervals,"
        f" even for {human(sizes['tfma_rows'])}): the pipeline on {human(datasets['large']['rows'])} Parquet"
        " rows vs TFMA on the TFRecord sets, as in run_bench.",
        "TFMA's example_count is weighted when example weights are on, so counts are not compared with"
        " it; its AUC interpolates between its 200 thresholds slightly differently.",
    ]
    for case in cases.values():
        case.pop("document", None)
    report["cases"] = cases
    report["tfma"] = tfma
    report["targets"] = targets(cases, tfma)
    report["seconds"] = time.perf_counter() - started
    report["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    run_bench.write_results(out_dir, "slices", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
