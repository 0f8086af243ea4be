"""The history of runs (pipeline/history.py, SPEC §8) and baselines taken from it.

- the rows of a run: one per (model, slice, metric), counts, intervals,
  withheld slices kept with null values; --history URLs;
- SQLite: created with its schema and an index on time, appended in one
  transaction, concurrent writers lose nothing, the newest earlier run read back;
- through the command line: two runs into a SQLite history, the second gated
  against `--baseline_run history:latest`; two runs at once; a failed run
  writes no row;
- BigQuery: the rows the pipeline itself hands its sink, and the Dataflow dry
  run of a job that writes them with Beam's WriteToBigQuery (and reads the
  baseline with ReadFromBigQuery).
"""

import datetime
import glob
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest

from pipeline import build, history, plan, runners, validation
from pipeline.config import load_config
from pipeline.history import COLUMNS, TABLE, BigQueryHistory, HistoryError, SQLiteHistory
from tests.conftest import RUN_PIPELINE
from tests.datafiles import head_results, run_cli, scores, two_model_scores, write_config, write_parquet

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = {"weight_column": "weight", "thresholds": [0.5]}
ROWS = 2000
COUNTRIES = np.array(["DE", "US"])
METRICS_PER_SLICE = 13  # the head's 12 keys with one threshold, and loss


# ---- rows -------------------------------------------------------------------------------


def _entry(model, key, metrics, count=100, **extra):
    name = "Overall" if not key else "_X_".join(key) + ":" + "_X_".join(str(v) for v in key.values())
    return {"model": model, "slice": key, "slice_name": name, "example_count": count,
            "weighted_example_count": count * 2.0, "metrics": metrics, **extra}


DOCUMENT = {
    "slices": [
        _entry("candidate", {}, {"auc": 0.75, "loss": 0.5},
               confidence_intervals={"auc": {"lower": 0.7, "upper": 0.8, "standard_error": 0.025}}),
        _entry("candidate", {"country": "DE"}, {"auc": 0.625, "loss": 0.25}),
        _entry("candidate", {"country": "FR"}, None, count=3),  # below min_slice_size
        _entry("base", {}, {"auc": 0.5, "loss": 0.75}),
    ],
    "run": {"input": ["a/*.parquet", "b/*.parquet"], "started": "2026-11-24T02:00:00.5+00:00", "seconds": 12.5,
            "label": "nightly", "runner": "DirectRunner"},
}


def test_rows_are_one_per_model_slice_and_metric():
    rows = history.rows(DOCUMENT, {"validation_ok": False}, "r1", "out")
    assert [(r["model"], r["slice_name"], r["metric"], r["value"], r["lower"], r["upper"]) for r in rows] == [
        ("candidate", "Overall", "auc", 0.75, 0.7, 0.8),
        ("candidate", "Overall", "loss", 0.5, None, None),
        ("candidate", "country:DE", "auc", 0.625, None, None),
        ("candidate", "country:DE", "loss", 0.25, None, None),
        ("candidate", "country:FR", "auc", None, None, None),  # withheld: the counts are kept
        ("candidate", "country:FR", "loss", None, None, None),
        ("base", "Overall", "auc", 0.5, None, None),
        ("base", "Overall", "loss", 0.75, None, None),
    ]
    assert all(set(r) == set(COLUMNS) for r in rows)
    fr = rows[4]
    assert fr == {"run_id": "r1", "started": "2026-11-24T02:00:00.5+00:00", "seconds": 12.5, "label": "nightly",
                  "input": "a/*.parquet, b/*.parquet", "output": "out", "runner": "DirectRunner",
                  "validation_ok": False, "model": "candidate", "slice_name": "country:FR",
                  "slice": '{"country": "FR"}', "metric": "auc", "value": None, "lower": None, "upper": None,
                  "example_count": 3, "weighted_example_count": 6.0}


def test_a_runs_rows_give_back_its_slices_as_a_baseline():
    rows = history.rows(DOCUMENT, {"validation_ok": True}, "r1", "out")
    baseline = history.baseline_from_rows(rows, "history sqlite:///h.db")
    assert baseline.source == ("history sqlite:///h.db: run r1 (started 2026-11-24T02:00:00.5+00:00, "
                               "label nightly)")
    assert baseline.entries[("candidate", "country:DE")] == {
        "metrics": {"auc": 0.625, "loss": 0.25}, "example_count": 100, "weighted_example_count": 200.0}
    assert baseline.entries[("candidate", "country:FR")]["metrics"] is None
    assert baseline.entries[("base", "Overall")]["metrics"] == {"auc": 0.5, "loss": 0.75}
    assert history.baseline_from_rows([], "history x").missing == "no earlier run in it"


URLS = {
    "sqlite:///runs.db": SQLiteHistory("sqlite:///runs.db", "runs.db"),
    "sqlite:////var/lib/runs.db": SQLiteHistory("sqlite:////var/lib/runs.db", "/var/lib/runs.db"),
    "bigquery:p-123:evals.history": BigQueryHistory("bigquery:p-123:evals.history", "p-123", "evals", "history"),
    "bigquery:example.com:p-1:evals.h": BigQueryHistory("bigquery:example.com:p-1:evals.h", "example.com:p-1",
                                                        "evals", "h"),  # a domain-scoped project
}
BAD_URLS = {
    "sqlite:///": "--history sqlite:///: no file path after sqlite:///",
    "bigquery:p-123:evals": "--history bigquery:p-123:evals: a BigQuery history is bigquery:PROJECT:DATASET.TABLE",
    "postgres://db/x": "--history postgres://db/x: must be sqlite:///PATH or bigquery:PROJECT:DATASET.TABLE",
}


@pytest.mark.parametrize("url", list(URLS))
def test_history_urls(url):
    assert history.parse_url(url) == URLS[url]


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_bad_history_urls_are_named(url):
    with pytest.raises(HistoryError) as raised:
        history.parse_url(url)
    assert str(raised.value) == BAD_URLS[url]


# ---- SQLite -------------------------------------------------------------------------------


def _rows_of_run(run_id, started):
    document = dict(DOCUMENT, run=dict(DOCUMENT["run"], started=started))
    return history.rows(document, {"validation_ok": True}, run_id, "out")


def _query(path, sql, *args):
    with sqlite3.connect(path) as connection:
        return connection.execute(sql, args).fetchall()


def test_sqlite_history_is_created_with_its_schema_and_an_index_on_time(tmp_path):
    path = str(tmp_path / "deep" / "runs.db")
    store = history.parse_url(f"sqlite:///{path}")
    store.prepare()
    assert [r[1] for r in _query(path, f"PRAGMA table_info({TABLE})")] == list(COLUMNS)
    assert _query(path, "SELECT name FROM sqlite_master WHERE type = 'index'") == [(f"{TABLE}_started",)]
    assert [r[2] for r in _query(path, f"PRAGMA index_info({TABLE}_started)")] == ["started"]
    store.prepare()  # again: nothing changes
    assert _query(path, f"SELECT count(*) FROM {TABLE}") == [(0,)]


def test_sqlite_history_of_another_schema_is_refused(tmp_path):
    path = str(tmp_path / "runs.db")
    _query(path, f"CREATE TABLE {TABLE} (run_id TEXT, value REAL)")
    with pytest.raises(HistoryError, match=rf"^--history sqlite:///{path}: table {TABLE} has columns "
                                           r"\['run_id', 'value'\], not this program's \['run_id', 'started',"):
        history.parse_url(f"sqlite:///{path}").prepare()


def test_the_latest_run_is_the_newest_that_started_before(tmp_path):
    store = history.parse_url(f"sqlite:///{tmp_path / 'runs.db'}")
    store.prepare()
    store.append(_rows_of_run("old", "2026-11-22T02:00:00+00:00"))
    store.append(_rows_of_run("new", "2026-11-23T02:00:00.000001+00:00"))
    store.append(_rows_of_run("later", "2026-11-24T02:00:00+00:00"))
    latest = store.latest_run_rows(before="2026-11-24T01:00:00+00:00")
    assert {r["run_id"] for r in latest} == {"new"} and len(latest) == 8
    assert [r["metric"] for r in latest[:2]] == ["auc", "loss"]  # in the order written
    assert store.latest_run_rows(before="2026-11-22T02:00:00+00:00") == []
    assert store.latest_baseline("2026-11-22T00:00:00+00:00").missing == "no earlier run in it"


def test_an_append_is_all_or_nothing(tmp_path):
    store = history.parse_url(f"sqlite:///{tmp_path / 'runs.db'}")
    store.prepare()
    rows = _rows_of_run("r", "2026-11-24T02:00:00+00:00")
    rows[5] = dict(rows[5], example_count=None)  # NOT NULL fails on the sixth row
    with pytest.raises(HistoryError, match=r"the run's rows could not be appended: NOT NULL constraint failed: "
                                           r"metric_history.example_count$"):
        store.append(rows)
    assert _query(store.path, f"SELECT count(*) FROM {TABLE}") == [(0,)]


def _append_runs(path, writer, runs):
    store = history.parse_url(f"sqlite:///{path}")
    for i in range(runs):
        store.append(_rows_of_run(f"{writer}-{i}", f"2026-11-24T02:00:{i:02d}+00:00") * 25)


def test_concurrent_writers_lose_nothing(tmp_path):
    """Processes appending 200-row runs at once: every run is there, whole."""
    path = str(tmp_path / "runs.db")
    history.parse_url(f"sqlite:///{path}").prepare()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_runs, args=(path, w, 30)) for w in ("a", "b", "c")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    per_run = _query(path, f"SELECT run_id, count(*) FROM {TABLE} GROUP BY run_id")
    assert len(per_run) == 90 and {count for _, count in per_run} == {200}


# ---- through the command line --------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Yesterday's model (score_v1) and today's (logits) on the same rows, with countries."""
    columns = two_model_scores(ROWS, 5, COUNTRIES)
    return write_parquet(tmp_path_factory.mktemp("history_data") / "scores.parquet", columns), columns


def _auc(columns, logits):
    return head_results(HEAD, columns[logits], columns["label"], columns["weight"])[0]["auc"]


def _config(path, logits, gates=None):
    sections = {"slicing_specs": [{"feature_keys": ["country"]}]}
    if gates:
        sections["validation"] = {"thresholds": {"auc": {"change_threshold": gates}}}
    return write_config(path, HEAD, {"logits": logits, "label": "label"}, **sections)


def _history_rows(path):
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(f"SELECT * FROM {TABLE} ORDER BY rowid")]


def test_two_nights_into_sqlite_history_the_second_gated_against_the_first(cli, data, tmp_path):
    path, columns = data
    db = tmp_path / "history" / "runs.db"
    url = f"sqlite:///{db}"  # sqlite:////abs/path
    first = cli("--input", path, "--config", _config(tmp_path / "v1.yaml", "score_v1"), "--output",
                tmp_path / "day1", "--history", url, "--run_label", "day1")
    assert first.returncode == 0, first.stderr
    per_run = 3 * METRICS_PER_SLICE  # Overall, country:DE, country:US
    assert f"history: {per_run} rows appended to {url}" in first.stdout
    day1 = json.load(open(tmp_path / "day1" / "metrics.json"))

    gates = {"direction": "higher_is_better", "absolute": 0}
    second = cli("--input", path, "--config", _config(tmp_path / "v2.yaml", "logits", gates), "--output",
                 tmp_path / "day2", "--history", url, "--run_label", "day2", "--baseline_run", "history:latest")
    assert second.returncode == 0, second.stderr
    assert "validation: ok, 2 checks passed (BLESSED)" in second.stdout
    rows = _history_rows(db)
    runs = list(dict.fromkeys(r["run_id"] for r in rows))
    assert len(runs) == 2 and len(rows) == 2 * per_run
    verdict = json.load(open(tmp_path / "day2" / "validation.json"))
    assert verdict["baseline"] == f"history {url}: run {runs[0]} (started {day1['run']['started']}, label day1)"
    report = open(tmp_path / "day2" / "report.html").read()  # the overall metrics' trend, from the history
    assert '<h2 id="history">History</h2>' in report and "2 runs, this one last." in report
    assert 'id="history"' not in open(tmp_path / "day1" / "report.html").read()  # no earlier run yet

    # Yesterday's model again: it fails against the newest run (day2's model); against day1 it would pass.
    third = cli("--input", path, "--config", _config(tmp_path / "v3.yaml", "score_v1", gates), "--output",
                tmp_path / "day3", "--history", url, "--baseline_run", "history:latest")
    assert third.returncode == 3, third.stderr
    today, yesterday = _auc(columns, "logits"), _auc(columns, "score_v1")
    message = (f"Overall: auc {yesterday:.6g} vs baseline {today:.6g}: diff {yesterday - today:.6g} < absolute 0 "
               "(higher_is_better)")
    assert [line for line in third.stderr.splitlines() if line.startswith("validation")] == [
        f"validation failed: {message}"]
    verdict = json.load(open(tmp_path / "day3" / "validation.json"))
    assert runs[1] in verdict["baseline"] and [f["message"] for f in verdict["failures"]] == [message]

    rows = _history_rows(db)
    assert len(rows) == 3 * per_run  # a run that fails its gates is history all the same
    by_run = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    one, two, three = by_run.values()
    assert {r["label"] for r in one} == {"day1"} and {r["label"] for r in two} == {"day2"}
    assert {r["label"] for r in three} == {None}
    assert [r["validation_ok"] for r in (one[0], two[0], three[0])] == [1, 1, 0]
    assert one[0]["started"] == day1["run"]["started"] and one[0]["seconds"] == day1["run"]["seconds"]
    overall = {r["metric"]: r["value"] for r in one if r["slice_name"] == "Overall"}
    assert overall == day1["metrics"]
    assert {r["slice_name"] for r in two} == {"Overall", "country:DE", "country:US"}
    de = [r for r in two if r["slice_name"] == "country:DE"][0]
    assert json.loads(de["slice"]) == {"country": "DE"} and de["example_count"] == int(
        (columns["country"] == "DE").sum())
    assert {r["input"] for r in rows} == {path} and {r["runner"] for r in rows} == {"DirectRunner"}


def test_two_runs_at_once_into_one_history_lose_nothing(data, tmp_path):
    path, _ = data
    db = tmp_path / "runs.db"
    config = _config(tmp_path / "c.yaml", "logits")
    runs = [subprocess.Popen([sys.executable, RUN_PIPELINE, "--input", path, "--config", config,
                              "--output", str(tmp_path / f"out{i}"), "--history", f"sqlite:///{db}",
                              "--run_label", f"run{i}"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
    rows = _history_rows(db)
    counts = {}
    for row in rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    assert counts == {"run0": 3 * METRICS_PER_SLICE, "run1": 3 * METRICS_PER_SLICE}
    assert len({r["run_id"] for r in rows}) == 2


def test_a_failed_run_writes_no_history_row(cli, tmp_path):
    columns = scores(300, seed=2)
    columns["label"][17] = 3  # the run fails on this row (invalid_rows: fail)
    path = write_parquet(tmp_path / "bad.parquet", columns)
    db = tmp_path / "runs.db"
    run = cli("--input", path, "--config", write_config(tmp_path / "c.yaml", HEAD), "--output", tmp_path / "out",
              "--history", f"sqlite:///{db}")
    assert run.returncode == 1 and "row 17" in run.stderr, run.stderr
    assert _history_rows(db) == []  # the table is made before the run; no row is added
    assert not os.path.exists(tmp_path / "out" / "metrics.json")


@pytest.mark.parametrize("extra, message", [
    (["--baseline_run", "history:latest"], "error: --baseline_run history:latest needs --history"),
    (["--history", "sqlite:///{tmp}"], "error: --history sqlite:///{tmp}: cannot use {tmp}: "),
    (["--history", "mysql://h/db"], "error: --history mysql://h/db: must be sqlite:///PATH or "
                                    "bigquery:PROJECT:DATASET.TABLE"),
    (["--baseline_run", "{tmp}/none.json"], "error: --baseline_run {tmp}/none.json: cannot be read: "),
])
def test_history_and_baseline_errors_exit_2_before_the_run(data, tmp_path, capsys, extra, message):
    config = _config(tmp_path / "c.yaml", "logits")
    extra = [a.format(tmp=tmp_path) for a in extra]  # a directory is no SQLite file
    code = run_cli(["--input", data[0], "--config", config, "--output", tmp_path / "out", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message.format(tmp=tmp_path)) and len(err.splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "out")


# ---- BigQuery: written by the pipeline ----------------------------------------------------


class _RowsToFile(BigQueryHistory):
    """A history the pipeline writes, as BigQuery's is, into JSON lines instead of a table."""

    def __init__(self, prefix):
        super().__init__("test", "p", "d", "t")
        object.__setattr__(self, "prefix", prefix)

    def sink(self):
        return beam.Map(json.dumps) | beam.io.WriteToText(self.prefix)


def test_the_pipeline_hands_its_sink_the_committed_runs_rows(data, tmp_path):
    path, _ = data
    config = load_config(_config(tmp_path / "c.yaml", "logits"))
    sink = _RowsToFile(str(tmp_path / "rows" / "part"))
    info = plan.run_info(path, "parquet", config, "DirectRunner", label="bq")
    p = beam.Pipeline(runner=runners.direct_runner(runners.pipeline_options([])))
    build.build(p, plan.resolve(config, [path], "parquet"), str(tmp_path / "out"), info, run_id="run-7",
                history=sink)
    p.run().wait_until_finish()
    written = [json.loads(line) for f in glob.glob(str(tmp_path / "rows" / "part*")) for line in open(f)]
    document = json.load(open(tmp_path / "out" / "metrics.json"))
    verdict = json.load(open(tmp_path / "out" / "validation.json"))
    assert sorted(written, key=json.dumps) == sorted(
        history.rows(document, verdict, "run-7", str(tmp_path / "out")), key=json.dumps)
    assert len(written) == 3 * METRICS_PER_SLICE and {r["label"] for r in written} == {"bq"}


def test_a_run_failing_its_commit_hands_its_sink_no_row(tmp_path):
    """Too many rejected rows: the commit step fails, so nothing follows it."""
    columns = scores(300, seed=4)
    columns["label"][[3, 30]] = 5
    path = write_parquet(tmp_path / "bad.parquet", columns)
    config = load_config(write_config(tmp_path / "c.yaml", HEAD, invalid_rows={"policy": "reject",
                                                                               "max_fraction": 0.001}))
    sink = _RowsToFile(str(tmp_path / "rows" / "part"))
    p = beam.Pipeline(runner=runners.direct_runner(runners.pipeline_options([])))
    build.build(p, plan.resolve(config, [path], "parquet"), str(tmp_path / "out"),
                plan.run_info(path, "parquet", config, "DirectRunner"), history=sink)
    with pytest.raises(Exception, match=r"2 of 300 rows rejected"):
        p.run().wait_until_finish()
    assert [line for f in glob.glob(str(tmp_path / "rows" / "part*")) for line in open(f)] == []
    assert not os.path.exists(tmp_path / "out" / "metrics.json")


def test_the_bigquery_sink_appends_with_load_jobs_to_the_named_table():
    sink = history.parse_url("bigquery:p-123:evals.metric_history").sink()
    assert isinstance(sink, beam.io.WriteToBigQuery)
    assert (sink.table_reference.projectId, sink.table_reference.datasetId, sink.table_reference.tableId) == (
        "p-123", "evals", "metric_history")
    assert sink.method == beam.io.WriteToBigQuery.Method.FILE_LOADS
    assert sink.create_disposition == beam.io.BigQueryDisposition.CREATE_IF_NEEDED
    assert sink.write_disposition == beam.io.BigQueryDisposition.WRITE_APPEND
    fields = sink.schema["fields"]
    assert [f["name"] for f in fields] == list(COLUMNS)
    assert {f["name"]: f["type"] for f in fields}["started"] == "TIMESTAMP"


class _Tables:
    """Beam's BigQueryWrapper as far as table_exists uses it: the tables that exist."""

    def __init__(self, existing):
        self.existing = existing

    def __call__(self):
        return self

    def get_table(self, project, dataset, table):
        from apitools.base.py.exceptions import HttpError

        if (project, dataset, table) in self.existing:
            return object()
        raise HttpError({"status": "404"}, b"Not found: Table", "https://bigquery/...")


def test_a_bigquery_history_without_its_table_has_no_earlier_run(monkeypatch):
    """The first night: the job's query would fail on a missing table, so the launcher asks first."""
    from apache_beam.io.gcp import bigquery_tools

    store = history.parse_url("bigquery:p-123:evals.h")
    monkeypatch.setattr(bigquery_tools, "BigQueryWrapper", _Tables({("p-123", "evals", "h")}))
    assert isinstance(store.latest_baseline("2026-11-24T02:00:00+00:00"), history.LatestInBigQuery)
    monkeypatch.setattr(bigquery_tools, "BigQueryWrapper", _Tables(set()))
    none_yet = store.latest_baseline("2026-11-24T02:00:00+00:00")
    assert (none_yet.source, none_yet.missing) == ("history bigquery:p-123:evals.h", "no earlier run in it")
    # A dry run asks nothing: the job is built with the query.
    offline = history.resolve_baseline("history:latest", store, "2026-11-24T02:00:00+00:00", offline=True)
    assert isinstance(offline, history.LatestInBigQuery)


def test_the_latest_run_query_of_a_bigquery_history():
    latest = history.LatestInBigQuery(history.parse_url("bigquery:p-123:evals.h"), "2026-11-24T02:00:00+00:00")
    assert latest.query() == (
        "SELECT * FROM `p-123.evals.h` WHERE run_id = (SELECT run_id FROM `p-123.evals.h` "
        "WHERE started < TIMESTAMP('2026-11-24T02:00:00+00:00') ORDER BY started DESC, run_id DESC LIMIT 1)")
    started = datetime.datetime(2026, 11, 23, 2, tzinfo=datetime.timezone.utc)  # BigQuery gives datetimes
    rows = [dict(r, started=started) for r in history.rows(DOCUMENT, {"validation_ok": True}, "r0", "o")]
    baseline = latest.resolve(rows)
    assert baseline.source == ("history bigquery:p-123:evals.h: run r0 (started 2026-11-23T02:00:00+00:00, "
                               "label nightly)")
    assert baseline.entries[("candidate", "Overall")]["metrics"] == {"auc": 0.75, "loss": 0.5}


DATAFLOW = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=p-123", "--region=us-central1",
            "--temp_location=gs://valid-bucket/tmp", "--setup_file", os.path.join(PROJECT_ROOT, "setup.py")]


def test_dataflow_dry_run_builds_a_job_writing_the_history_to_bigquery(data, tmp_path, capsys, no_gcs):
    path, _ = data
    gates = {"direction": "higher_is_better", "absolute": -0.01}
    config = _config(tmp_path / "c.yaml", "logits", gates)
    code = run_cli(["--input", path, "--config", config, "--output", "gs://valid-bucket/eval", *DATAFLOW,
                    "--history", "bigquery:p-123:evals.metric_history", "--baseline_run", "history:latest"])
    assert code == 0, capsys.readouterr().err
    assert "dry run: DataflowRunner job built and translated, not submitted" in capsys.readouterr().out

    loaded = load_config(config)
    store = history.parse_url("bigquery:p-123:evals.metric_history")
    info = plan.run_info(path, "parquet", loaded, "DataflowRunner")
    gates = validation.Gates.of(loaded, history.resolve_baseline("history:latest", store, info["started"],
                                                                 offline=True))
    p = beam.Pipeline(options=runners.pipeline_options(DATAFLOW))
    build.build(p, plan.resolve(loaded, [path], "parquet"), "gs://valid-bucket/eval", info, gates=gates,
                history=store)
    names = {t.unique_name for t in p.run().job.proto_pipeline.components.transforms.values()}
    assert {"Commit", "HistoryRows", "WriteHistory", "WriteHistory/BigQueryBatchFileLoads", "ReadBaseline"} <= names


def test_dataflow_preflight_names_a_bucket_gcs_cannot_have(data, tmp_path, capsys, no_gcs):
    """gs://b is no bucket name: named at once (Beam would look up a default bucket over the network)."""
    args = [a.replace("valid-bucket", "b") for a in DATAFLOW]
    code = run_cli(["--input", data[0], "--config", _config(tmp_path / "c.yaml", "logits"), "--output",
                    "gs://valid-bucket/eval", *args, "--history", "bigquery:p-123:evals.metric_history"])
    err = capsys.readouterr().err
    assert code == 2 and "temp_location" in err and len(err.splitlines()) == 1, err
