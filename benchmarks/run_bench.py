#!/usr/bin/env python
"""The benchmark: run_pipeline.py against a numpy reference and TFMA, side by side.

    make bench                                # or: .venv/bin/python benchmarks/run_bench.py
    .venv/bin/python benchmarks/run_bench.py --quick             # smoke run, small data
    .venv/bin/python benchmarks/run_bench.py --repeats 5 --skip-tfma --skip-extras

In one run and on the same generated files (bench_data/, reused when the
manifest matches):

- Parquet 2M / 10M / 20M rows (1M-row shards, 128k-row row groups; the
  smaller sets are the first shards of the 20M set), TFRecord 1M rows and
  100k rows (4 shards each), plus the bundled demo (data/demo/scores.parquet);
- each case runs `run_pipeline.py` (in-process DirectRunner) and
  benchmarks/reference.py (pyarrow or tf.data + numpy, one process)
  alternately, `--repeats` times each, every run a whole process timed from
  outside (wall from fork to exit, peak RSS from /usr/bin/time -v);
- Parquet 20M and TFRecord 1M also run with `--direct_num_workers=2` (both
  cores through the FnApiRunner), alternating with the others; their metrics
  are compared with one worker's (equal to rounding);
- TFMA (benchmarks/tfma_run.py, model-free run_model_analysis) once on the
  100k TFRecord set;
- the pipeline's metrics are checked against the reference's (1e-6 relative);
- benchmarks/tfrecord_profile.py: CPU per TFRecord record of framing, our
  decoding and the Arrow batch, against tfx-bsl's decoder and
  tf.io.parse_example;
- start-up: `python -X importtime` of a whole demo run, and of
  `import apache_beam` alone; Beam's floor (benchmarks/beam_floor.py, a
  one-element pipeline on the same runner, `--repeats` times), next to what
  the TFRecord-vs-TFMA target allows (--skip-extras leaves out these last
  three and the two-worker runs);
- the outputs' cost on the largest Parquet set: the pipeline with
  `outputs: {report: false, plots: false, tfma: false}`, with report and
  plots on (the default), and with tfma/ too, alternately, plus a process
  that only imports TFMA (the tfma/ output may add that and 2 s).

Results: a markdown table on stdout and in bench_output/results.md, all
numbers in bench_output/results.json, each run's output under
bench_output/runs/ and its log under bench_output/logs/. The machine is
shared and noisy: only ratios of runs made side by side mean much. A failing
run is recorded in the table with its error; the bench goes on.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import make_data  # noqa: E402

TIME_BIN = "/usr/bin/time"
GIB = 1 << 30
AGREEMENT_TOLERANCE = 1e-6

# (rows per Parquet shard, row group size, Parquet shards of each size,
#  TFRecord rows (4 shards), TFMA rows (4 shards))
FULL = {
    "parquet_shard_rows": 1_000_000,
    "parquet_row_group": 131_072,
    "parquet_small_shards": 2,  # the memory comparison's small size
    "parquet_mid_shards": 10,
    "parquet_large_shards": 20,
    "tfrecord_rows": 1_000_000,
    "tfma_rows": 100_000,
    "tfrecord_shards": 4,
}
QUICK = {
    "parquet_shard_rows": 100_000,
    "parquet_row_group": 16_384,
    "parquet_small_shards": 2,
    "parquet_mid_shards": 10,
    "parquet_large_shards": 20,
    "tfrecord_rows": 100_000,
    "tfma_rows": 10_000,
    "tfrecord_shards": 4,
}


# Cases also run with --direct_num_workers=2 (both cores through Beam's FnApiRunner).
TWO_WORKER_CASES = ("parquet_large_shards", "tfrecord_rows")


def human(rows):
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if rows >= size and rows % (size // 10) == 0:
            value = rows / size
            return f"{value:g}{unit}"
    return str(rows)


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---- running one whole process --------------------------------------------


def _rss_kib(time_output):
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
    return int(match.group(1)) if match else None


def _cpu_seconds(time_output):
    """User + system CPU seconds (less sensitive than wall to a busy machine)."""
    times = re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", time_output)
    return sum(float(t) for t in times) if len(times) == 2 else None


def _error_line(text):
    """The line that says what went wrong: the last 'error'/Error line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^(error:|\w*(Error|Exception)\b)", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def run_process(name, argv, log_path, timeout):
    """Runs argv (a whole process) under /usr/bin/time -v; wall, peak RSS, error."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    time_path = log_path + ".time"
    use_time = os.access(TIME_BIN, os.X_OK)
    command = ([TIME_BIN, "-v", "-o", time_path] if use_time else []) + argv
    record = {"name": name, "argv": argv, "log": os.path.relpath(log_path, ROOT)}
    started = time.perf_counter()
    try:
        with open(log_path, "w") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                record.update(wall=None, error=f"timed out after {timeout} s")
                return record
    except OSError as e:
        record.update(wall=None, error=f"cannot start: {e}")
        return record
    record["wall"] = time.perf_counter() - started
    record["rss_kib"] = record["cpu_s"] = None
    if use_time and os.path.exists(time_path):
        with open(time_path) as f:
            time_output = f.read()
        record["rss_kib"] = _rss_kib(time_output)
        record["cpu_s"] = _cpu_seconds(time_output)
    if returncode != 0:
        with open(log_path, errors="replace") as f:
            record["error"] = f"exit {returncode}: {_error_line(f.read())}"
    return record


# ---- metrics agreement ------------------------------------------------------


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def compare_metrics(pipeline, reference):
    """(ok, max relative difference, key) of the pipeline's metrics vs the reference's."""
    if pipeline is None or reference is None:
        return None, None, "missing metrics"
    worst, worst_key = 0.0, None
    pairs = [(k, v, reference["metrics"].get(k)) for k, v in pipeline["metrics"].items()]
    pairs += [(k, pipeline[k], reference.get(k)) for k in ("example_count", "weighted_example_count")]
    for key, a, b in pairs:
        if b is None:
            return False, None, f"{key} missing in the reference"
        scale = max(abs(a), abs(b))
        diff = abs(a - b) / scale if scale else 0.0
        if diff > worst or worst_key is None:
            worst, worst_key = diff, key
    return worst <= AGREEMENT_TOLERANCE, worst, worst_key


def compare_tfma(pipeline, tfma):
    """Max relative difference of TFMA's metrics that mean the same as the head's."""
    if pipeline is None or tfma is None:
        return None, None
    same = {
        "binary_accuracy": "accuracy", "precision": "precision", "recall": "recall",
        "auc": "auc", "auc_precision_recall": "auc_precision_recall",
        "mean_label": "label/mean", "mean_prediction": "prediction/mean",
        "binary_crossentropy": "average_loss",
    }
    worst, worst_key = 0.0, None
    for tfma_key, head_key in same.items():
        a, b = tfma["metrics"].get(tfma_key), pipeline["metrics"].get(head_key)
        if not isinstance(a, (int, float)) or b is None:
            continue
        diff = abs(a - b) / max(abs(a), abs(b), 1e-300)
        if worst_key is None or diff > worst:
            worst, worst_key = diff, tfma_key
    return worst, worst_key


# ---- the cases ----------------------------------------------------------------


def make_datasets(sizes, data_dir):
    """Generates or reuses every data set; {set name: {rows, glob, format} or {error}}."""
    sets = {}
    parquet_dir = os.path.join(data_dir, "parquet")
    shard_rows = sizes["parquet_shard_rows"]
    try:
        make_data.make_set(parquet_dir, "parquet", sizes["parquet_large_shards"], shard_rows,
                           sizes["parquet_row_group"], log=log)
        for key in ("parquet_small_shards", "parquet_mid_shards", "parquet_large_shards"):
            rows = sizes[key] * shard_rows
            view = make_data.make_view(parquet_dir, os.path.join(data_dir, f"parquet-{human(rows).lower()}"),
                                       sizes[key])
            sets[key] = dict(view, format="parquet")
    except Exception as e:  # noqa: BLE001 - recorded, the rest goes on
        for key in ("parquet_small_shards", "parquet_mid_shards", "parquet_large_shards"):
            sets.setdefault(key, {"error": f"data: {type(e).__name__}: {e}",
                                  "rows": sizes[key] * shard_rows, "format": "parquet"})
    for key in ("tfrecord_rows", "tfma_rows"):
        rows = sizes[key]
        directory = os.path.join(data_dir, f"tfrecord-{human(rows).lower()}")
        shards = sizes["tfrecord_shards"]
        try:
            manifest = make_data.make_set(directory, "tfrecord", shards, rows // shards, log=log)
            sets[key] = {"rows": manifest["rows"], "bytes": manifest["total_bytes"],
                         "glob": os.path.join(directory, "*.tfrecord"), "format": "tfrecord"}
        except Exception as e:  # noqa: BLE001
            sets[key] = {"error": f"data: {type(e).__name__}: {e}", "rows": rows, "format": "tfrecord"}
    demo = os.path.join(ROOT, "data", "demo", "scores.parquet")
    sets["demo"] = {"rows": 100_000, "glob": demo, "format": "parquet", "config": "configs/default.yaml"}
    if not os.path.exists(demo):
        sets["demo"]["error"] = f"missing {demo}"
    return sets


def data_bytes(sizes):
    """About how many bytes run_bench's data take (20 B per Parquet row, 130 B per TFRecord row)."""
    return (sizes["parquet_large_shards"] * sizes["parquet_shard_rows"] * 20
            + (sizes["tfrecord_rows"] + sizes["tfma_rows"]) * 130)


def check_disk(data_dir, needed):
    """An error message when `needed` bytes of data (twice, for room) would not fit in data_dir."""
    os.makedirs(data_dir, exist_ok=True)
    free = shutil.disk_usage(data_dir).free
    if free < 2 * needed:
        return f"only {free / GIB:.1f} GiB free in {data_dir}, the data needs about {needed / GIB:.1f} GiB"
    return None


def run_case(case, repeats, python, out_dir, timeout, config, two_workers=False):
    """Alternates pipeline (and, with two_workers, pipeline on 2 worker threads) and reference runs."""
    name = case["name"]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    config = case.get("config", config)
    tools = ["pipeline"] + (["pipeline_2w"] if two_workers else []) + ["reference"]
    runs = {tool: [] for tool in tools}
    if case.get("error"):
        case["runs"] = runs
        return case
    fmt = case["format"]
    for repeat in range(repeats):
        for tool in tools:
            if tool == "reference":
                output = metrics_path = os.path.join(out_dir, "runs", slug, f"reference-{repeat}.json")
                argv = [python, "benchmarks/reference.py"]
            else:
                output = os.path.join(out_dir, "runs", slug, f"{tool}-{repeat}")
                metrics_path = os.path.join(output, "metrics.json")
                argv = [python, "run_pipeline.py", "--runner=DirectRunner", "--direct_running_mode=in_memory"]
                if tool == "pipeline_2w":  # the FnApiRunner's bundles split over 2 threads
                    argv.append("--direct_num_workers=2")
            argv += ["--input", case["glob"], "--format", fmt, "--config", config, "--output", output]
            record = run_process(tool, argv, os.path.join(out_dir, "logs", slug, f"{tool}-{repeat}.log"), timeout)
            record["metrics_path"] = metrics_path
            runs[tool].append(record)
            log(_run_line(name, record, repeat))
    case["runs"] = runs
    for tool in runs:
        case[tool] = summarize(runs[tool], case["rows"])
    last = {tool: next((r for r in reversed(runs[tool]) if not r.get("error")), None) for tool in tools}
    if last["pipeline"] and last["reference"]:
        agree, worst, key = compare_metrics(load_json(last["pipeline"]["metrics_path"]),
                                            load_json(last["reference"]["metrics_path"]))
        case["agreement"] = {"ok": agree, "max_relative_difference": worst, "key": key}
    if two_workers and last["pipeline"] and last["pipeline_2w"]:
        # Two threads combine the sums in another order: equal to rounding.
        one, two = (load_json(last[t]["metrics_path"]) for t in ("pipeline", "pipeline_2w"))
        identical = one is not None and two is not None and all(
            one.get(k) == two.get(k) for k in ("metrics", "example_count", "weighted_example_count"))
        agree, worst, key = compare_metrics(one, two)
        case["two_workers"] = {"identical": identical, "ok": agree, "max_relative_difference": worst, "key": key}
    return case


def run_profile(case, python, out_dir, timeout):
    """benchmarks/tfrecord_profile.py on a TFRecord set: CPU per record of each step."""
    output = os.path.join(out_dir, "runs", "tfrecord-profile.json")
    argv = [python, "benchmarks/tfrecord_profile.py", "--input", case["glob"], "--output", output]
    log(f"TFRecord per-record profile: {case['name']}")
    record = run_process("profile", argv, os.path.join(out_dir, "logs", "tfrecord-profile.log"), timeout)
    return dict(record, name=case["name"], result=load_json(output))


def _import_times(log_path):
    """(total seconds, [(top-level module, seconds)] largest first) from `python -X importtime` output."""
    top = []
    with open(log_path, errors="replace") as f:
        for line in f:
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line.rstrip())
            if match:  # one space before the name: imported by the program itself
                top.append((match.group(2), int(match.group(1)) / 1e6))
    return sum(t for _, t in top), sorted(top, key=lambda item: -item[1])


def run_startup(python, out_dir, timeout, demo):
    """Import time of a whole local demo run (python -X importtime) and of `import apache_beam` alone."""
    log("Start-up: python -X importtime")
    result = {}
    commands = {
        "demo run (run_pipeline.py, local)": [python, "-X", "importtime", "run_pipeline.py", "--input", demo,
                                              "--output", os.path.join(out_dir, "runs", "startup-demo"),
                                              "--runner=DirectRunner", "--direct_running_mode=in_memory"],
        "import apache_beam (everything)": [python, "-X", "importtime", "-c", "import apache_beam"],
    }
    for label, argv in commands.items():
        log_path = os.path.join(out_dir, "logs", "startup", re.sub(r"[^a-z0-9]+", "-", label.lower()) + ".log")
        record = run_process("startup", argv, log_path, timeout)
        total, top = _import_times(log_path) if not record.get("error") else (None, [])
        result[label] = dict(record, import_seconds=total, largest=top[:4])
    return result


def run_floor(python, out_dir, timeout, repeats):
    """Beam's floor (benchmarks/beam_floor.py): the whole-process wall of a one-element pipeline."""
    log(f"Beam's floor: {repeats} run(s)")
    runs = [run_process("floor", [python, "benchmarks/beam_floor.py"],
                        os.path.join(out_dir, "logs", "floor", f"floor-{repeat}.log"), timeout)
            for repeat in range(repeats)]
    return summarize(runs, 1)


def _floor_lines(report):
    """What the TFRecord-vs-TFMA target leaves a run, next to Beam's floor."""
    floor, tfrecord = report.get("floor"), (report.get("cases") or {}).get("tfrecord_rows")
    tfma_rate = _get(report.get("tfma"), "tfma", "rows_per_s")
    if not floor or not tfrecord or not tfma_rate:
        return []
    allowed = tfrecord["rows"] / (TFRECORD_VS_TFMA * tfma_rate)
    return ["", f"TFRecord {human(tfrecord['rows'])} at {TFRECORD_VS_TFMA}x TFMA's {_rate(tfma_rate)} rows/s: "
                f"at most {allowed:.2f} s, whole process; measured {_f(_get(tfrecord, 'pipeline', 'median_wall'))} s. "
                f"Beam's floor, the same runner and start-up running a one-element pipeline "
                f"(benchmarks/beam_floor.py, median of {floor.get('runs', 0)}): {_wall(floor)} s."]


# The outputs' cost (`outputs` in the config): names, their outputs section.
OUTPUT_CASES = (
    ("outputs off", {"report": False, "plots": False, "tfma": False}),
    ("report + plots", {"report": True, "plots": True, "tfma": False}),
    ("report + plots + tfma", {"report": True, "plots": True, "tfma": True}),
)
TFMA_IMPORT = "import tensorflow_model_analysis"


def run_output_cases(case, repeats, python, out_dir, timeout, config):
    """The pipeline on `case` with each OUTPUT_CASES config, alternately, and TFMA's import alone."""
    import yaml

    result = {"name": case["name"], "rows": case["rows"], "error": case.get("error"), "runs": {}}
    if case.get("error"):
        return result
    with open(os.path.join(ROOT, config)) as f:
        base = yaml.safe_load(f)
    configs = {}
    for name, outputs in OUTPUT_CASES:
        path = os.path.join(out_dir, "configs", re.sub(r"[^a-z0-9]+", "-", name) + ".yaml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(dict(base, outputs=outputs), f)
        configs[name] = path
        result["runs"][name] = []
    result["runs"][TFMA_IMPORT] = []
    for repeat in range(repeats):
        for name, _ in OUTPUT_CASES:
            slug = re.sub(r"[^a-z0-9]+", "-", name)
            output = os.path.join(out_dir, "runs", "outputs", f"{slug}-{repeat}")
            argv = [python, "run_pipeline.py", "--input", case["glob"], "--format", case["format"],
                    "--config", configs[name], "--output", output,
                    "--runner=DirectRunner", "--direct_running_mode=in_memory"]
            record = run_process(name, argv, os.path.join(out_dir, "logs", "outputs", f"{slug}-{repeat}.log"), timeout)
            result["runs"][name].append(record)
            log(_run_line(f"outputs {case['name']}", record, repeat))
        record = run_process("tfma import", [python, "-c", TFMA_IMPORT],
                             os.path.join(out_dir, "logs", "outputs", f"tfma-import-{repeat}.log"), timeout)
        result["runs"][TFMA_IMPORT].append(record)
        log(_run_line("import TFMA", record, repeat))
    result["summary"] = {name: summarize(runs, case["rows"]) for name, runs in result["runs"].items()}
    return result


def output_targets(outputs):
    """The issue's two limits on what the outputs may cost."""
    walls = {name: (summary or {}).get("median_wall") for name, summary in (outputs.get("summary") or {}).items()}
    off, on, tfma = (walls.get(name) for name, _ in OUTPUT_CASES)
    import_wall = walls.get(TFMA_IMPORT)
    rows = human(outputs["rows"]) if outputs.get("rows") else "?"
    extra = tfma - on - import_wall if None not in (tfma, on, import_wall) else None
    out = []
    for label, value, op, limit, unit in (
            (f"Parquet {rows}: wall with report + plots / outputs off", _ratio(on, off), "<=", 1.3, "x"),
            (f"Parquet {rows}: tfma/ output's extra wall - TFMA import wall", extra, "<=", 2.0, " s")):
        verdict = "ERROR (not measured)" if value is None else (
            "PASS" if {"<=": value <= limit}[op] else "FAIL")
        out.append({"target": label, "value": value, "op": op, "limit": limit, "unit": unit, "result": verdict})
    return out


def run_tfma(case, python, out_dir, timeout, repeats):
    runs = []
    if not case.get("error"):
        for repeat in range(repeats):
            output = os.path.join(out_dir, "runs", "tfma", f"tfma-{repeat}")
            argv = [python, "benchmarks/tfma_run.py", "--input", case["glob"], "--output", output,
                    "--runner=DirectRunner", "--direct_running_mode=in_memory"]
            record = run_process("tfma", argv, os.path.join(out_dir, "logs", "tfma", f"tfma-{repeat}.log"), timeout)
            record["metrics_path"] = os.path.join(output, "metrics.json")
            runs.append(record)
            log(_run_line("TFMA " + case["name"], record, repeat))
    result = {"name": "TFMA " + case["name"], "rows": case["rows"], "glob": case.get("glob"),
              "error": case.get("error"), "runs": runs, "tfma": summarize(runs, case["rows"])}
    ok = [r for r in runs if not r.get("error")]
    if ok:
        document = load_json(ok[-1]["metrics_path"]) or {}
        result["seconds_in_run_model_analysis"] = document.get("seconds_in_run_model_analysis")
    return result


def _run_line(name, record, repeat):
    if record.get("error"):
        return f"  {name:<22} {record['name']:<9} #{repeat}: ERROR {record['error']}"
    rss = f", {record['rss_kib'] / 1024:.0f} MiB" if record.get("rss_kib") else ""
    cpu = f", {record['cpu_s']:.2f} s CPU" if record.get("cpu_s") is not None else ""
    return f"  {name:<22} {record['name']:<9} #{repeat}: {record['wall']:.2f} s{cpu}{rss}"


def summarize(runs, rows):
    ok = [r for r in runs if not r.get("error") and r.get("wall") is not None]
    errors = [r["error"] for r in runs if r.get("error")]
    if not ok:
        return {"error": errors[0] if errors else "not run", "errors": len(errors)}
    walls = [r["wall"] for r in ok]
    rss = [r["rss_kib"] for r in ok if r.get("rss_kib")]
    cpu = [r["cpu_s"] for r in ok if r.get("cpu_s") is not None]
    median = statistics.median(walls)
    return {
        "runs": len(ok),
        "errors": len(errors),
        "error": errors[0] if errors else None,
        "median_wall": median,
        "min_wall": min(walls),
        "max_wall": max(walls),
        "rows_per_s": rows / median if median else None,
        "peak_rss_mib": max(rss) / 1024 if rss else None,
        "median_rss_mib": statistics.median(rss) / 1024 if rss else None,
        "median_cpu_s": statistics.median(cpu) if cpu else None,
    }


# ---- targets and the table ----------------------------------------------------


def _get(case, tool, key):
    summary = (case or {}).get(tool) or {}
    return summary.get(key)


def _ratio(a, b):
    return a / b if a is not None and b else None


TFRECORD_VS_TFMA = 300  # issue 14: TFRecord rows/s at least this many times TFMA's


def targets(cases, tfma, sizes):
    small, large = cases.get("parquet_small_shards"), cases.get("parquet_large_shards")
    tfrecord, demo = cases.get("tfrecord_rows"), cases.get("demo")
    tfma_rate = _get(tfma, "tfma", "rows_per_s")
    large_rows = human(large["rows"]) if large else "?"
    rss_small, rss_large = _get(small, "pipeline", "peak_rss_mib"), _get(large, "pipeline", "peak_rss_mib")
    rows = [
        (f"Parquet {large_rows}: pipeline rows/s / reference rows/s",
         _ratio(_get(large, "pipeline", "rows_per_s"), _get(large, "reference", "rows_per_s")), ">=", 1.0, "x"),
        (f"TFRecord {human(sizes['tfrecord_rows'])}: pipeline rows/s / tf.data reference rows/s",
         _ratio(_get(tfrecord, "pipeline", "rows_per_s"), _get(tfrecord, "reference", "rows_per_s")), ">=", 3.0, "x"),
        (f"TFRecord: pipeline rows/s ({human(sizes['tfrecord_rows'])}) / TFMA rows/s ({human(sizes['tfma_rows'])})",
         _ratio(_get(tfrecord, "pipeline", "rows_per_s"), tfma_rate), ">=", TFRECORD_VS_TFMA, "x"),
        (f"Parquet: pipeline rows/s ({large_rows}) / TFMA rows/s ({human(sizes['tfma_rows'])})",
         _ratio(_get(large, "pipeline", "rows_per_s"), tfma_rate), ">=", 1000, "x"),
        (f"Parquet {large_rows}: pipeline peak RSS", rss_large, "<=", 1024, " MiB"),
        (f"Parquet: pipeline peak RSS {large_rows} / {human(small['rows']) if small else '?'}",
         _ratio(rss_large, rss_small), "<=", 1.3, "x"),
        ("Demo 100k Parquet, whole process: pipeline rows/s / reference rows/s",
         _ratio(_get(demo, "pipeline", "rows_per_s"), _get(demo, "reference", "rows_per_s")), ">=", 0.33, "x"),
        ("Demo 100k Parquet: pipeline whole-process wall (median)",
         _get(demo, "pipeline", "median_wall"), "<", 6.0, " s"),
    ]
    out = []
    for label, value, op, limit, unit in rows:
        if value is None:
            verdict = "ERROR (not measured)"
        else:
            ok = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
            verdict = "PASS" if ok else "FAIL"
        out.append({"target": label, "value": value, "op": op, "limit": limit, "unit": unit, "result": verdict})
    return out


def _f(value, fmt="{:.2f}", missing="-"):
    return fmt.format(value) if value is not None else missing


def _rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _cell(text):
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _wall(summary):
    if not summary or summary.get("median_wall") is None:
        return "ERROR: " + _cell((summary or {}).get("error", "not run"))
    text = f"{summary['median_wall']:.2f} ({summary['min_wall']:.2f}-{summary['max_wall']:.2f})"
    if summary.get("errors"):
        text += f" [{summary['errors']} failed: {_cell(summary['error'])}]"
    return text


def markdown(report):
    cases, tfma = report["cases"], report["tfma"]
    lines = [
        f"# beam-head-eval benchmark ({'quick' if report['quick'] else 'full'})",
        "",
        f"{report['started']}, {report['machine']}, git {report['git']}, "
        f"{report['repeats']} runs each (alternating), load average at start/end "
        f"{report['load_start']} / {report['load_end']}, {report['seconds']:.0f} s in all.",
        "Whole process (interpreter start to exit), DirectRunner in-process; wall: median (min-max) s;"
        " rows/s = rows / median wall; RSS = peak over the runs (CPU seconds per run: results.json).",
        "",
        "| case | rows | pipeline wall s | pipeline rows/s | pipeline CPU s / wall s | pipeline RSS MiB "
        "| reference wall s | reference rows/s | reference RSS MiB | pipeline/reference rows/s | metrics agree |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    warnings = []
    for case in cases.values():
        if case.get("error"):
            lines.append(f"| {case['name']} | {case['rows']:,} | ERROR: {_cell(case['error'])} | | | | | | | | |")
            continue
        p, r = case.get("pipeline") or {}, case.get("reference") or {}
        agreement = case.get("agreement")
        if agreement is None:
            agree = "-"
        elif agreement["ok"]:
            agree = f"yes (max rel. diff {agreement['max_relative_difference']:.1e})"
        else:
            agree = "**NO**"
            worst = agreement.get("max_relative_difference")
            warnings.append(
                f"| **WARNING** | {case['name']}: pipeline and reference metrics differ: "
                f"{agreement['key']} rel. diff {_f(worst, '{:.2e}')} > {AGREEMENT_TOLERANCE:g} | | | | | | | | | |"
            )
        lines.append(
            f"| {case['name']} | {case['rows']:,} | {_wall(p)} | {_rate(p.get('rows_per_s'))} | "
            f"{_f(_ratio(p.get('median_cpu_s'), p.get('median_wall')))} | {_f(p.get('peak_rss_mib'), '{:.0f}')} | {_wall(r)} | {_rate(r.get('rows_per_s'))} | "
            f"{_f(r.get('peak_rss_mib'), '{:.0f}')} | "
            f"{_f(_ratio(p.get('rows_per_s'), r.get('rows_per_s')), '{:.2f}x')} | {agree} |"
        )
    lines += warnings
    lines += ["", "| TFMA (model-free run_model_analysis) | rows | wall s | rows/s | RSS MiB "
              "| in run_model_analysis s | pipeline rows/s, same files | pipeline/TFMA, same files "
              "| metrics vs pipeline (max rel. diff) |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    t = tfma.get("tfma") or {}
    same = cases.get("tfma_rows") or {}
    if tfma.get("skipped"):
        lines.append(f"| {tfma['name']} | {tfma['rows']:,} | skipped | | | | | | |")
    else:
        lines.append(
            f"| {tfma['name']} | {tfma['rows']:,} | {_wall(t) if not tfma.get('error') else 'ERROR: ' + _cell(tfma['error'])} | "
            f"{_rate(t.get('rows_per_s'))} | {_f(t.get('peak_rss_mib'), '{:.0f}')} | "
            f"{_f(tfma.get('seconds_in_run_model_analysis'), '{:.1f}')} | "
            f"{_rate(_get(same, 'pipeline', 'rows_per_s'))} | "
            f"{_f(_ratio(_get(same, 'pipeline', 'rows_per_s'), t.get('rows_per_s')), '{:.0f}x')} | "
            f"{_f(tfma.get('max_relative_difference'), '{:.1e}')} ({tfma.get('worst_key') or '-'}) |"
        )
    lines += _two_worker_lines(cases) + _profile_lines(report.get("profile")) + _startup_lines(report.get("startup"))
    outputs = report.get("outputs") or {}
    if outputs.get("summary") or outputs.get("error"):
        lines += ["", f"| outputs ({outputs.get('name')}) | wall s | CPU s | RSS MiB |", "| --- | --- | ---: | ---: |"]
        if outputs.get("error"):
            lines.append(f"| ERROR: {_cell(outputs['error'])} | | | |")
        for name, summary in (outputs.get("summary") or {}).items():
            lines.append(f"| {name} | {_wall(summary)} | {_f(summary.get('median_cpu_s'))} | "
                         f"{_f(summary.get('peak_rss_mib'), '{:.0f}')} |")
    lines += ["", "| target | measured | limit | result |", "| --- | ---: | ---: | --- |"]
    for t in report["targets"]:
        value = t["value"]
        shown = "-" if value is None else (f"{value:,.0f}{t['unit']}" if value >= 100 else f"{value:.2f}{t['unit']}")
        lines.append(f"| {t['target']} | {shown} | {t['op']} {t['limit']:g}{t['unit']} | {t['result']} |")
    lines += _floor_lines(report)
    if report["quick"]:
        lines += ["", "Quick mode: smaller data; the targets are stated for the full sizes."]
    if report.get("notes"):
        lines += [""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _two_worker_lines(cases):
    rows = [c for c in cases.values() if c.get("pipeline_2w")]
    if not rows:
        return []
    lines = ["", "Both cores: the same runs with `--direct_num_workers=2` (the FnApiRunner splits each bundle "
             "over two threads; its multi_threading mode would add gRPC between them), alternating with the "
             "others.", "",
             "| case | 1 worker rows/s | 2 workers wall s | 2 workers rows/s | 2 workers CPU s / wall s "
             "| 2 workers / 1 worker | metrics vs 1 worker |", "| --- | ---: | --- | ---: | ---: | ---: | --- |"]
    for case in rows:
        one, two = case.get("pipeline") or {}, case["pipeline_2w"]
        same = case.get("two_workers") or {}
        if same.get("identical"):
            identical = "identical"
        elif same.get("ok") is None:
            identical = "-"
        else:
            identical = (f"{'equal to rounding' if same['ok'] else '**DIFFER**'} (max rel. diff "
                         f"{_f(same.get('max_relative_difference'), '{:.1e}')}, {same.get('key')})")
        lines.append(
            f"| {case['name']} | {_rate(one.get('rows_per_s'))} | {_wall(two)} | {_rate(two.get('rows_per_s'))} | "
            f"{_f(_ratio(two.get('median_cpu_s'), two.get('median_wall')))} | "
            f"{_f(_ratio(two.get('rows_per_s'), one.get('rows_per_s')), '{:.2f}x')} | {identical} |"
        )
    return lines


def _profile_lines(profile):
    if not profile:
        return []
    if profile.get("error") or not profile.get("result"):
        return ["", f"TFRecord per-record profile: ERROR {_cell(profile.get('error', 'no result'))}"]
    result = profile["result"]
    lines = ["", f"TFRecord per record ({profile['name']}, files in memory, one thread, CPU time, median; "
             f"CRC-32C: {result['crc32c']}; benchmarks/tfrecord_profile.py):", "",
             "| step | CPU us per record |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in result["cpu_us_per_record"].items()]
    return lines


def _startup_lines(startup):
    if not startup:
        return []
    lines = ["", "Start-up (`python -X importtime`, one run each):", "",
             "| what | wall s | imports s | largest imports (s) |", "| --- | ---: | ---: | --- |"]
    for label, record in startup.items():
        largest = ", ".join(f"{name} {seconds:.2f}" for name, seconds in record.get("largest", []))
        wall = "ERROR: " + _cell(record["error"]) if record.get("error") else _f(record.get("wall"))
        lines.append(f"| {label} | {wall} | {_f(record.get('import_seconds'))} | {largest} |")
    return lines


def _git():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, 1 run each: a smoke run")
    parser.add_argument("--repeats", type=int, help="runs of pipeline and of reference per case (default 3; 1 with --quick)")
    parser.add_argument("--tfma-repeats", type=int, default=1, help="TFMA runs (default 1)")
    parser.add_argument("--skip-tfma", action="store_true")
    parser.add_argument("--skip-extras", action="store_true",
                        help="no two-worker runs, TFRecord per-record profile or start-up measurement")
    parser.add_argument("--only-outputs", action="store_true",
                        help="only the outputs' cost on the largest Parquet set (no reference, no TFMA run)")
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "bench_data"))
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "bench_output"))
    parser.add_argument("--config", default="benchmarks/bench.yaml")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is killed")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = QUICK if args.quick else FULL
    data_dir = os.path.join(args.data_dir, "quick") if args.quick else args.data_dir
    out_dir = os.path.abspath(args.out_dir)
    started = time.perf_counter()
    report = {
        "quick": args.quick, "repeats": repeats, "sizes": sizes, "git": _git(), "machine": _machine(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()), "notes": [],
    }
    if os.path.isdir(os.path.join(out_dir, "runs")):
        shutil.rmtree(os.path.join(out_dir, "runs"))  # the outputs of the last bench
    disk_error = check_disk(data_dir, data_bytes(sizes))
    if disk_error:
        log(f"error: {disk_error}")
        datasets = {k: {"error": disk_error, "rows": 0, "format": "-"} for k in
                    ("parquet_small_shards", "parquet_mid_shards", "parquet_large_shards", "tfrecord_rows", "tfma_rows")}
    else:
        datasets = make_datasets(sizes, data_dir)
    if "demo" not in datasets:
        datasets["demo"] = {"rows": 100_000, "glob": os.path.join(ROOT, "data", "demo", "scores.parquet"),
                            "format": "parquet", "config": "configs/default.yaml"}
    names = {
        "parquet_small_shards": "Parquet {}", "parquet_mid_shards": "Parquet {}",
        "parquet_large_shards": "Parquet {}", "tfrecord_rows": "TFRecord {}",
        "tfma_rows": "TFRecord {}", "demo": "Demo Parquet {} (default.yaml)",
    }
    cases = {}
    if args.only_outputs:
        names = {}
    for key, template in names.items():
        case = dict(datasets[key], key=key, name=template.format(human(datasets[key]["rows"])))
        if case.get("glob"):
            case["glob"] = os.path.relpath(case["glob"], ROOT) if case["glob"].startswith(ROOT) else case["glob"]
        log(f"{case['name']}: {repeats} x (pipeline, reference)")
        try:
            two_workers = key in TWO_WORKER_CASES and not args.skip_extras
            cases[key] = run_case(case, repeats, args.python, out_dir, args.timeout, args.config, two_workers)
        except Exception as e:  # noqa: BLE001 - a broken case must not end the bench
            traceback.print_exc()
            cases[key] = dict(case, error=f"bench: {type(e).__name__}: {e}")
    large = dict(datasets["parquet_large_shards"])
    large["name"] = f"Parquet {human(large['rows'])}"
    if large.get("glob", "").startswith(ROOT):
        large["glob"] = os.path.relpath(large["glob"], ROOT)
    log(f"outputs' cost, {large['name']}: {repeats} x {len(OUTPUT_CASES)} configs + TFMA import")
    try:
        report["outputs"] = run_output_cases(large, repeats, args.python, out_dir, args.timeout, args.config)
    except Exception as e:  # noqa: BLE001 - recorded, the rest goes on
        traceback.print_exc()
        report["outputs"] = {"name": large["name"], "error": f"bench: {type(e).__name__}: {e}"}
    tfma_case = cases.get("tfma_rows") or dict(datasets["tfma_rows"], name="TFRecord", error="not run")
    if args.skip_tfma or args.only_outputs:
        tfma = {"name": "TFMA " + tfma_case["name"], "rows": tfma_case["rows"], "skipped": True}
    else:
        log(f"TFMA {tfma_case['name']}: {args.tfma_repeats} run(s)")
        try:
            tfma = run_tfma(tfma_case, args.python, out_dir, args.timeout, args.tfma_repeats)
            ok = [r for r in tfma_case.get("runs", {}).get("pipeline", []) if not r.get("error")]
            if ok and tfma["runs"]:
                worst, key = compare_tfma(load_json(ok[-1]["metrics_path"]),
                                          load_json(tfma["runs"][-1]["metrics_path"]))
                tfma.update(max_relative_difference=worst, worst_key=key)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            tfma = {"name": "TFMA " + tfma_case["name"], "rows": tfma_case["rows"], "error": str(e)}
    if not (args.skip_extras or args.only_outputs):
        if not cases["tfrecord_rows"].get("error"):
            report["profile"] = run_profile(cases["tfrecord_rows"], args.python, out_dir, args.timeout)
        report["startup"] = run_startup(args.python, out_dir, args.timeout, cases["demo"]["glob"])
        report["floor"] = run_floor(args.python, out_dir, args.timeout, repeats)
    report["notes"].append(
        "TFMA's metrics use the probability feature (float32 sigmoid of the logit); its "
        "binary_crossentropy clips probabilities and its AUC bucketing differs slightly, so it agrees "
        "with the head only to about 1e-5 (last column); the reference must agree to 1e-6.")
    report["cases"] = cases
    report["tfma"] = tfma
    report["targets"] = ([] if args.only_outputs else targets(cases, tfma, sizes)) + output_targets(report["outputs"])
    report["seconds"] = time.perf_counter() - started
    report["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    write_results(out_dir, "results", report, markdown(report))
    return 0


def write_results(out_dir, stem, report, text):
    """STEM.md (the table, also printed) and STEM.json (every number) in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    print(text)
    log(f"written: {os.path.join(out_dir, stem + '.md')}, {os.path.join(out_dir, stem + '.json')}")


if __name__ == "__main__":
    sys.exit(main())
