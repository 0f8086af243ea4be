"""The history of runs (`--history URL`): one row per (run, model, slice, metric).

Two stores, one schema (HISTORY_SCHEMA):
- `sqlite:///PATH` (the embedded default; `sqlite:////abs/path` for an
  absolute path, as SQLAlchemy spells it): Python's sqlite3. The file and
  table are created when missing; the launcher appends a completed run's rows
  in one transaction once the pipeline has finished (a SQLite file lives on
  the machine that runs the command, whatever the runner). Concurrent runs
  wait for each other's transaction (BEGIN IMMEDIATE with a busy timeout),
  so none loses rows.
- `bigquery:PROJECT:DATASET.TABLE`: written by the pipeline itself with
  Beam's BigQuery sink (batch file loads, the table created when missing,
  appended to), from the rows the commit step emits, so a Dataflow job writes
  its own history.

Rows exist only for a run that completed (exit status 0 or 3); a run that
failed writes none. `--baseline_run history:latest` takes the newest earlier
run of the history as the baseline (resolve_baseline).
"""

import contextlib
import dataclasses
import json
import os
import re
import sqlite3

import apache_beam as beam

from pipeline.errors import UsageError
from pipeline.validation import BaselineError, ExternalBaseline, load_baseline_run

TABLE = "metric_history"
LATEST = "history:latest"
SQLITE_TIMEOUT_SECONDS = 300.0  # how long a writer waits for another's transaction

# (column, SQLite type, BigQuery type, BigQuery mode, meaning): the one schema.
HISTORY_SCHEMA = (
    ("run_id", "TEXT", "STRING", "REQUIRED", "the run's id (also its staging directory's)"),
    ("started", "TEXT", "TIMESTAMP", "REQUIRED", "when the run started, ISO-8601 UTC (metrics.json run.started)"),
    ("seconds", "REAL", "FLOAT", "NULLABLE", "the run's wall time (run.seconds)"),
    ("label", "TEXT", "STRING", "NULLABLE", "--run_label"),
    ("input", "TEXT", "STRING", "REQUIRED", "--input"),
    ("output", "TEXT", "STRING", "REQUIRED", "--output"),
    ("runner", "TEXT", "STRING", "NULLABLE", "the Beam runner"),
    ("validation_ok", "INTEGER", "BOOLEAN", "REQUIRED", "the run's verdict (1: BLESSED, 0: NOT_BLESSED)"),
    ("model", "TEXT", "STRING", "REQUIRED", "the model's name (\"\" without models:)"),
    ("slice_name", "TEXT", "STRING", "REQUIRED", "TFMA's slice name: Overall, country:DE, ..."),
    ("slice", "TEXT", "STRING", "REQUIRED", "the slice's columns and values, as JSON"),
    ("metric", "TEXT", "STRING", "REQUIRED", "the metric key, as in metrics.json"),
    ("value", "REAL", "FLOAT", "NULLABLE", "the value; null when withheld (below min_slice_size)"),
    ("lower", "REAL", "FLOAT", "NULLABLE", "the confidence interval's lower bound; null when intervals are off"),
    ("upper", "REAL", "FLOAT", "NULLABLE", "the confidence interval's upper bound; null when intervals are off"),
    ("example_count", "INTEGER", "INTEGER", "REQUIRED", "the slice's example count"),
    ("weighted_example_count", "REAL", "FLOAT", "REQUIRED", "the slice's sum of weights"),
)
COLUMNS = tuple(c[0] for c in HISTORY_SCHEMA)


class HistoryError(UsageError):
    """A --history URL that cannot be used, found before the pipeline runs."""


def rows(document, verdict, run_id, output_dir):
    """The history rows of a completed run: one per (model, slice, metric).

    A slice whose metrics were withheld has a row per metric key (of its
    model's overall slice) with value null, so its counts are kept.
    """
    run = document["run"]
    inputs = run["input"]
    common = {
        "run_id": run_id,
        "started": run["started"],
        "seconds": run.get("seconds"),
        "label": run.get("label"),
        "input": inputs if isinstance(inputs, str) else ", ".join(inputs),
        "output": str(output_dir),
        "runner": run.get("runner"),
        "validation_ok": bool(verdict["validation_ok"]),
    }
    keys = {e["model"]: list(e["metrics"]) for e in document["slices"] if not e["slice"] and e["metrics"]}
    out = []
    for entry in document["slices"]:
        metrics = entry["metrics"] or dict.fromkeys(keys.get(entry["model"], []))
        intervals = entry.get("confidence_intervals") or {}
        where = {
            "model": entry["model"],
            "slice_name": entry["slice_name"],
            "slice": json.dumps(entry["slice"], sort_keys=True),
            "example_count": int(entry["example_count"]),
            "weighted_example_count": float(entry["weighted_example_count"]),
        }
        for metric, value in metrics.items():
            interval = intervals.get(metric) or {}
            out.append({**common, **where, "metric": metric, "value": value,
                        "lower": interval.get("lower"), "upper": interval.get("upper")})
    return out


def commit_rows(committed, run_id, output_dir):
    """rows() of what the commit step returns (the document, the verdict)."""
    document, verdict = committed
    return rows(document, verdict, run_id, output_dir)


def baseline_from_rows(history_rows, source):
    """An ExternalBaseline from one run's history rows; none at all: a named missing baseline."""
    if not history_rows:
        return ExternalBaseline(source, {}, missing="no earlier run in it")
    entries = {}
    for row in history_rows:
        key = (row["model"], row["slice_name"])
        entry = entries.setdefault(key, {"metrics": {}, "example_count": row["example_count"],
                                         "weighted_example_count": row["weighted_example_count"]})
        entry["metrics"][row["metric"]] = row["value"]
    for entry in entries.values():
        if all(v is None for v in entry["metrics"].values()):
            entry["metrics"] = None  # withheld in that run
    first = history_rows[0]
    label = f", label {first['label']}" if first.get("label") else ""
    return ExternalBaseline(f"{source}: run {first['run_id']} (started {first['started']}{label})", entries)


# ---- SQLite ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SQLiteHistory:
    url: str
    path: str

    in_pipeline = False  # appended by the launcher after the run

    def _connect(self):
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        return sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT_SECONDS, isolation_level=None)

    def _create(self, connection):
        columns = ",\n  ".join(
            f"{name} {sql_type}{' NOT NULL' if mode == 'REQUIRED' else ''}"
            for name, sql_type, _, mode, _ in HISTORY_SCHEMA)
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {columns}\n)")
        connection.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_started ON {TABLE} (started)")

    def prepare(self):
        """Creates the file and table when missing; HistoryError when it cannot be used."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
            with self._transaction() as connection:
                names = [r[1] for r in connection.execute(f"PRAGMA table_info({TABLE})")]
                if names and names != list(COLUMNS):
                    raise HistoryError(f"--history {self.url}: table {TABLE} has columns {names}, "
                                       f"not this program's {list(COLUMNS)}")
                self._create(connection)
        except (OSError, sqlite3.Error) as e:
            raise HistoryError(f"--history {self.url}: cannot use {self.path}: {e}") from None

    @contextlib.contextmanager
    def _transaction(self):
        """A connection holding the write lock (BEGIN IMMEDIATE waits for it); commits on success."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def append(self, history_rows):
        """Appends rows in one transaction: all of them or none (HistoryError)."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        try:
            with self._transaction() as connection:
                self._create(connection)
                connection.executemany(
                    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                    [tuple(row[c] for c in COLUMNS) for row in history_rows])
        except sqlite3.Error as e:
            raise HistoryError(f"--history {self.url}: the run's rows could not be appended: {e}") from None

    def latest_run_rows(self, before):
        """The rows of the newest run that started before `before` (ISO-8601); [] when none."""
        connection = self._connect()
        connection.row_factory = sqlite3.Row
        try:
            latest = connection.execute(
                f"SELECT started, run_id FROM {TABLE} WHERE started < ? "
                "ORDER BY started DESC, run_id DESC LIMIT 1", (before,)).fetchone()
            if latest is None:
                return []
            found = connection.execute(
                f"SELECT * FROM {TABLE} WHERE started = ? AND run_id = ? ORDER BY rowid",
                (latest["started"], latest["run_id"])).fetchall()
            return [dict(row) for row in found]
        finally:
            connection.close()

    def earlier_overall_rows(self, before):
        """The overall slices' rows of the runs that started before `before`, oldest first (the report's trend)."""
        connection = self._connect()
        connection.row_factory = sqlite3.Row
        try:
            found = connection.execute(f"SELECT * FROM {TABLE} WHERE slice_name = 'Overall' AND started < ? "
                                       "ORDER BY started, rowid", (before,)).fetchall()
            return [dict(row) for row in found]
        finally:
            connection.close()

    def latest_baseline(self, before, offline=False):
        """--baseline_run history:latest: read when the run starts (a local file, offline too)."""
        return baseline_from_rows(self.latest_run_rows(before), f"history {self.url}")


# ---- BigQuery --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BigQueryHistory:
    url: str
    project: str
    dataset: str
    table: str

    in_pipeline = True  # the pipeline writes it (WriteToBigQuery)

    def prepare(self):
        """Nothing to check offline: the job creates the table when missing."""

    def earlier_overall_rows(self, before):
        """None: the report's trend is not read from BigQuery (query the table instead)."""
        return None

    @property
    def sql_name(self):
        return f"`{self.project}.{self.dataset}.{self.table}`"

    def table_reference(self):
        from apache_beam.io.gcp.internal.clients.bigquery import TableReference

        return TableReference(projectId=self.project, datasetId=self.dataset, tableId=self.table)

    @staticmethod
    def schema():
        return {"fields": [{"name": name, "type": bq_type, "mode": mode, "description": meaning}
                           for name, _, bq_type, mode, meaning in HISTORY_SCHEMA]}

    def sink(self):
        """Beam's BigQuery sink, appending with batch load jobs (atomic per load)."""
        return beam.io.WriteToBigQuery(
            self.table_reference(), schema=self.schema(),
            create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
            method=beam.io.WriteToBigQuery.Method.FILE_LOADS)

    def latest_baseline(self, before, offline=False):
        """--baseline_run history:latest: read by the pipeline (LatestInBigQuery).

        Its query fails on a table that does not exist yet, so the launcher
        asks BigQuery first (not `offline`, a dry run): no table is a history
        without an earlier run, whose change thresholds fail, named, as a
        new SQLite history's do; this run's rows then create the table.
        """
        if not offline and not self.table_exists():
            return baseline_from_rows([], f"history {self.url}")
        return LatestInBigQuery(self, before)

    def table_exists(self):
        """Whether the table exists (Beam's BigQuery client, the launcher's credentials)."""
        from apache_beam.io.gcp.bigquery_tools import BigQueryWrapper
        from apitools.base.py.exceptions import HttpError

        try:
            BigQueryWrapper().get_table(self.project, self.dataset, self.table)
        except HttpError as e:
            if e.status_code == 404:
                return False
            raise HistoryError(f"--history {self.url}: cannot read the table: {e}") from None
        return True


@dataclasses.dataclass(frozen=True)
class LatestInBigQuery:
    """The newest run before `before` in a BigQuery history: read by the pipeline.

    build() reads `query()` with Beam's ReadFromBigQuery into a side input of
    the commit step, which resolves it (Gates.with_history_rows).
    """

    history: BigQueryHistory
    before: str

    @property
    def source(self):
        return f"history {self.history.url}"

    def query(self):
        table = self.history.sql_name
        before = self.before.replace("'", "")  # an ISO-8601 time of ours; no quote can occur
        return (f"SELECT * FROM {table} WHERE run_id = (SELECT run_id FROM {table} "
                f"WHERE started < TIMESTAMP('{before}') ORDER BY started DESC, run_id DESC LIMIT 1)")

    def resolve(self, history_rows):
        normalised = [{**row, "started": _iso(row["started"])} for row in history_rows]
        return baseline_from_rows(normalised, self.source)


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# ---- URLs --------------------------------------------------------------------------------


def parse_url(url):
    """--history URL -> SQLiteHistory | BigQueryHistory (None: no history)."""
    if url is None:
        return None
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise HistoryError(f"--history {url}: no file path after sqlite:///")
        return SQLiteHistory(url, path)
    if url.startswith("bigquery:"):
        match = re.fullmatch(r"bigquery:(?P<project>[^:]+(?::[^:]+)?):(?P<dataset>\w+)\.(?P<table>[\w$-]+)", url)
        if match is None:
            raise HistoryError(f"--history {url}: a BigQuery history is bigquery:PROJECT:DATASET.TABLE")
        return BigQueryHistory(url, match["project"], match["dataset"], match["table"])
    raise HistoryError(f"--history {url}: must be sqlite:///PATH or bigquery:PROJECT:DATASET.TABLE")


def resolve_baseline(baseline_run, history, started, offline=False):
    """--baseline_run: None, an earlier run's metrics.json, or history:latest.

    `offline` (a dry run): nothing is asked of a remote history.
    """
    if baseline_run is None:
        return None
    if baseline_run == LATEST:
        if history is None:
            raise BaselineError(f"--baseline_run {LATEST} needs --history")
        return history.latest_baseline(started, offline)
    return load_baseline_run(baseline_run)
