"""Strict JSON (pipeline/output.py, SPEC §7): every JSON the program writes
parses with a strict parser; an undefined value (NaN, ±Infinity) is null,
never the NaN / Infinity tokens Python's json writes by default.
"""

import json
import math

import numpy as np
import pytest

from pipeline import output
from tests.datafiles import read_rejected, run_cli, scores, write_config, write_parquet


def strict_loads(text):
    """json.loads that refuses NaN, Infinity and -Infinity, as RFC 8259 parsers do."""

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_strict_loads_refuses_what_python_writes_by_default():
    with pytest.raises(ValueError, match="not strict JSON: NaN"):
        strict_loads(json.dumps({"x": math.nan}))


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"auc": math.nan, "loss": math.inf, "n": 3}, {"auc": None, "loss": None, "n": 3}),
        ([1.5, -math.inf, [math.nan, "NaN"]], [1.5, None, [None, "NaN"]]),
        ((np.float64("nan"), np.float64(0.25)), [None, 0.25]),
        ({"w": np.float32("inf"), "v": np.float32(0.5)}, {"w": None, "v": 0.5}),
        ({"ok": True, "none": None, "text": "Infinity"}, {"ok": True, "none": None, "text": "Infinity"}),
        # numpy arrays as written into plots.json: NaN rows, broadcast (strided) views
        ({"x": np.array([np.nan, 0.5, np.inf]), "t": np.broadcast_to(np.array([0.25, 1.0]), (2, 2))[:, 1]},
         {"x": [None, 0.5, None], "t": [1.0, 1.0]}),
    ],
)
def test_to_json_writes_null_for_undefined_values(value, expected):
    assert strict_loads(output.to_json(value)) == expected


def test_to_json_default_and_indent():
    assert json.loads(output.to_json({"b": b"\xff"}, default=lambda v: v.hex())) == {"b": "ff"}
    assert output.to_json({"a": 1}, indent=2) == '{\n  "a": 1\n}'


def test_written_json_is_strict(tmp_path):
    path = output.write_json_atomically(str(tmp_path / "m.json"), {"metrics": {"auc": math.nan, "x": 1.0}})
    with open(path) as f:
        assert strict_loads(f.read()) == {"metrics": {"auc": None, "x": 1.0}}


def test_the_table_shows_an_undefined_metric_as_null():
    metrics = {"auc": None, "accuracy": 0.5}
    overall = {"model": "", "slice": {}, "slice_name": "Overall", "example_count": 2,
               "weighted_example_count": 2.0, "metrics": metrics}
    document = {"metrics": metrics, "example_count": 2, "weighted_example_count": 2.0,
                "rows_read": 2, "rows_rejected": 0, "slices": [overall], "run": {"config": {}}}
    lines = output.format_table(document).splitlines()
    assert lines[2].split() == ["auc", "null"]
    assert lines[3].split() == ["accuracy", "0.500000"]


def test_rejected_rows_values_and_metrics_json_are_strict(tmp_path):
    """Rows rejected for NaN or infinite logits and weights: their values are null in JSON."""
    columns = scores(200, seed=8)
    columns["logits"][[3, 4, 5]] = [np.nan, np.inf, -np.inf]
    columns["weight"][7] = np.inf
    path = write_parquet(tmp_path / "scores.parquet", columns)
    config = write_config(tmp_path / "reject.yaml", head={"weight_column": "weight"},
                          invalid_rows={"policy": "reject", "max_fraction": 0.1})
    assert run_cli(["--input", path, "--config", config, "--output", tmp_path / "out"]) == 0
    with open(tmp_path / "out" / "metrics.json") as f:
        document = strict_loads(f.read())
    assert document["rows_rejected"] == 4
    values = {row["row"]: strict_loads(row["values"]) for row in read_rejected(tmp_path / "out")}
    assert values == {
        3: {"logits": None, "label": int(columns["label"][3]), "weight": float(columns["weight"][3])},
        4: {"logits": None, "label": int(columns["label"][4]), "weight": float(columns["weight"][4])},
        5: {"logits": None, "label": int(columns["label"][5]), "weight": float(columns["weight"][5])},
        7: {"logits": float(columns["logits"][7]), "label": int(columns["label"][7]), "weight": None},
    }
