"""head/intervals.py: the samples are functions of (seed, file, row); the intervals cover.

Statistics: 400 data sets are drawn (with replacement) from a fixed finite
population whose metrics are known exactly; for each method, the 95%
intervals of auc, accuracy, average_loss, precision and a per-slice auc must
cover the population value in 90-98% of data sets, and the reported
standard error must be within 25% of the estimate's spread across data sets.
"""

import math

import numpy as np
import pyarrow as pa
import pytest

from head import BinaryClassHead, StateLayout
from head.intervals import (
    JACKKNIFE,
    POISSON_BOOTSTRAP,
    IntervalSpec,
    file_identity,
    jackknife_groups,
    poisson_counts,
    row_hashes,
)
from head.slicing import OVERALL, SliceSpec, slice_states
from tests.datafiles import run_cli, scores, write_config, write_files

POPULATION = 100_000
DATA_SETS = 400
ROWS = 3_000
METRICS = ("auc", "accuracy", "average_loss", "precision")
SPECS = (SliceSpec(), SliceSpec(("country",)))
SLICE = (("country", "C"),)  # 20% of rows: about 600 per data set


def _population():
    rng = np.random.default_rng(2026)
    logits = rng.normal(0.0, 1.5, POPULATION)
    labels = (rng.random(POPULATION) < 1 / (1 + np.exp(-(0.8 * logits + 0.2)))).astype(np.float64)
    country = rng.choice(np.array(["A", "B", "C"]), POPULATION, p=[0.5, 0.3, 0.2])
    return logits.astype(np.float32), labels, country


def _states(head, spec, rows, logits, labels, country, path):
    """{slice key: state vectors [S, size]} of these rows (one histogram pass)."""
    batch = pa.record_batch({"country": pa.array(country[rows])})
    evaluated = head.evaluate_batch(logits[rows, None], labels[rows, None])
    samples = spec.row_samples(path, np.arange(len(rows))) if spec else {}
    states = slice_states(head.layout, SPECS, evaluated, batch, **samples)
    out = {}
    for (_, s), slice_states_ in sorted(states.items()):
        keys, totals = slice_states_.sorted_items()
        out.update(zip(keys, totals))
    return out


@pytest.fixture(scope="module")
def population():
    head = BinaryClassHead()
    logits, labels, country = _population()
    states = _states(head, None, np.arange(POPULATION), logits, labels, country, "population")
    truth = {key: {k: float(v) for k, v in head.metric_arrays(states[key][0]).items()}
             for key in (OVERALL, SLICE)}
    return head, (logits, labels, country), truth


@pytest.mark.parametrize("method", [JACKKNIFE, POISSON_BOOTSTRAP])
def test_intervals_cover_the_population_value(population, method):
    head, columns, truth = population
    spec = IntervalSpec(method=method, num_samples=20, level=0.95, seed=11)
    rng = np.random.default_rng(7)
    checked = [(OVERALL, m) for m in METRICS] + [(SLICE, "auc")]
    estimates = {c: [] for c in checked}
    errors = {c: [] for c in checked}
    covered = {c: 0 for c in checked}
    for d in range(DATA_SETS):
        rows = rng.integers(0, POPULATION, ROWS)
        states = _states(head, spec, rows, *columns, path=f"gs://bucket/scores-{d:04d}.parquet")
        for key in (OVERALL, SLICE):
            values, _, bounds = spec.metrics(head.metric_arrays, states[key][None])
            for slice_key, metric in checked:
                if slice_key != key:
                    continue
                lower, upper, error = (float(b[0]) for b in bounds[metric])
                point = float(values[metric][0])
                assert lower <= point <= upper and math.isclose(point - lower, upper - point, rel_tol=1e-9)
                estimates[key, metric].append(point)
                errors[key, metric].append(error)
                covered[key, metric] += lower <= truth[key][metric] <= upper
    for check in checked:
        coverage = covered[check] / DATA_SETS
        assert 0.90 <= coverage <= 0.98, (method, check, coverage)
        spread = np.std(estimates[check], ddof=1)
        reported = math.sqrt(np.mean(np.square(errors[check])))
        assert 0.75 <= reported / spread <= 1.25, (method, check, reported, spread)


def test_samples_are_a_function_of_seed_file_and_row_only():
    rows = np.arange(10_000)
    hashes = row_hashes(3, "a.parquet", rows)
    # The same rows in any order or batching hash the same.
    order = np.random.default_rng(0).permutation(rows)
    assert np.array_equal(row_hashes(3, "a.parquet", order), hashes[order])
    assert np.array_equal(np.concatenate([row_hashes(3, "a.parquet", rows[:997]),
                                          row_hashes(3, "a.parquet", rows[997:])]), hashes)
    # The file's name identifies it; not its directory or storage format.
    for same in ("gs://bucket/day/a.parquet", "/data/a.tfrecord.gz", "a.tfrecords", "a"):
        assert np.array_equal(row_hashes(3, same, rows), hashes), same
    # Another seed or file gives other hashes.
    assert (row_hashes(4, "a.parquet", rows) != hashes).mean() > 0.999
    assert (row_hashes(3, "b.parquet", rows) != hashes).mean() > 0.999


def test_file_identity_drops_directory_and_storage_extensions():
    assert file_identity("gs://b/x/part-0001.snappy.parquet") == "part-0001.snappy"
    assert file_identity("/d/scores.2026-11-24.tfrecord.gz") == "scores.2026-11-24"
    assert file_identity(".parquet") == ".parquet"


def test_jackknife_groups_are_balanced():
    groups = jackknife_groups(row_hashes(0, "f", np.arange(200_000)), 20)
    counts = np.bincount(groups, minlength=20)
    assert groups.min() == 0 and groups.max() == 19
    assert np.all(np.abs(counts - 10_000) < 5 * math.sqrt(10_000))


def test_poisson_counts_are_poisson_one_and_independent_across_replicates():
    counts = poisson_counts(row_hashes(0, "f", np.arange(100_000)), 20)
    assert counts.shape == (100_000, 20) and counts.min() == 0
    expected = np.array([math.exp(-1) / math.factorial(k) for k in range(5)])
    observed = np.array([(counts == k).mean() for k in range(5)])
    assert np.all(np.abs(observed - expected) < 0.005)
    assert abs(counts.mean() - 1) < 0.005 and abs(counts.var() - 1) < 0.01
    correlation = np.corrcoef(counts[:, :5].T)[np.triu_indices(5, 1)]
    assert np.all(np.abs(correlation) < 0.02)


def test_poisson_counts_table_lookup_is_exactly_the_cdf_search():
    from head.intervals import _POISSON_CDF, poisson_draws

    hashes = row_hashes(9, "f", np.arange(50_000))
    counts = poisson_counts(hashes, 30)
    draws = poisson_draws(hashes, 30).reshape(50_000, 30)
    assert np.array_equal(counts, np.searchsorted(_POISSON_CDF, draws, side="right"))
    assert np.all((draws >= 0) & (draws < 1))
    # Draws at and around every CDF value, where the table alone cannot decide.
    edges = (_POISSON_CDF[:-1] * (1 << 53)).astype(np.uint64)
    near = (edges[:, None] + np.arange(-2, 3, dtype=np.int64).astype(np.uint64)[None, :]).ravel() << np.uint64(11)
    from head import intervals

    top = (near >> np.uint64(48)).astype(np.intp)
    table = intervals._COUNT_TABLE[top].astype(np.int64)
    table[table == intervals._UNDECIDED] = -1
    expected = np.searchsorted(_POISSON_CDF, intervals._uniform(near), side="right")
    assert np.all((table == expected) | (table == -1))


def test_jackknife_standard_error_and_bounds_by_formula():
    spec = IntervalSpec(method=JACKKNIFE, num_samples=5, level=0.9)
    samples = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    expected = math.sqrt(4 / 5 * ((samples - samples.mean()) ** 2).sum())
    lower, upper, error = spec.intervals(np.float64(10.0), samples)
    assert math.isclose(error, expected)
    assert math.isclose(upper - 10.0, 2.131846786326649 * expected)  # t(0.95, 4 df)
    assert math.isclose(10.0 - lower, upper - 10.0)


def test_bootstrap_standard_error_is_the_replicates_sample_deviation():
    spec = IntervalSpec(method=POISSON_BOOTSTRAP, num_samples=4, level=0.95)
    samples = np.array([[1.0, 2.0, 4.0, 3.0]])
    _, _, error = spec.intervals(np.array([2.0]), samples)
    assert math.isclose(error[0], np.std(samples[0], ddof=1))


def test_jackknife_point_is_the_total_and_samples_leave_one_group_out():
    spec = IntervalSpec(method=JACKKNIFE, num_samples=3)
    groups = np.arange(12.0).reshape(1, 3, 4)
    point, samples = spec.point_and_samples(groups)
    assert np.array_equal(point, groups.sum(axis=1))
    assert np.array_equal(samples[0, 1], groups[0, 0] + groups[0, 2])


def test_bootstrap_states_count_each_row_its_poisson_times():
    head = BinaryClassHead()
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(500, 1)).astype(np.float32), (rng.random((500, 1)) < 0.4) * 1.0
    spec = IntervalSpec(method=POISSON_BOOTSTRAP, num_samples=3, seed=5)
    samples = spec.row_samples("x.parquet", np.arange(500))
    evaluated = head.evaluate_batch(logits, labels)
    batch = pa.record_batch({"id": pa.array(np.arange(500))})
    states = slice_states(head.layout, (SliceSpec(),), evaluated, batch, **samples)
    totals = states[0, 0].sorted_items()[1][0]
    assert np.allclose(totals[0], head.layout.sums(evaluated)[0])
    for r in range(3):
        repeat = np.repeat(np.arange(500), samples["counts"][:, r])
        replicate = head.evaluate_batch(logits[repeat], labels[repeat])
        assert np.allclose(totals[1 + r], head.layout.sums(replicate)[0], rtol=1e-12)


def test_bootstrap_states_of_list_valued_slices_count_each_row_its_poisson_times():
    """A row in several slices (a list column) counts its Poisson times in each; BLOCK_ROWS blocks."""
    head = BinaryClassHead()
    rng = np.random.default_rng(3)
    n = 1200
    logits, labels = rng.normal(size=(n, 1)).astype(np.float32), (rng.random((n, 1)) < 0.4) * 1.0
    tags = [sorted(set(rng.choice(["x", "y", "z"], int(k)))) for k in rng.integers(0, 3, n)]
    spec = IntervalSpec(method=POISSON_BOOTSTRAP, num_samples=3, seed=5)
    samples = spec.row_samples("x.parquet", np.arange(n))
    batch = pa.record_batch({"tags": pa.array(tags, pa.list_(pa.string()))})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("head.slicing.BLOCK_ROWS", 500)
        states = slice_states(head.layout, (SliceSpec(("tags",)),), head.evaluate_batch(logits, labels), batch,
                              **samples)
    keys, totals = states[0, 0].sorted_items()
    assert [dict(key)["tags"] for key in keys] == ["x", "y", "z"]
    for key, total in zip(keys, totals):
        rows = np.array([dict(key)["tags"] in t for t in tags])
        assert np.allclose(total[0], head.layout.sums(head.evaluate_batch(logits[rows], labels[rows]))[0])
        for r in range(3):
            repeat = np.repeat(np.flatnonzero(rows), samples["counts"][rows, r])
            replicate = head.evaluate_batch(logits[repeat], labels[repeat])
            assert np.allclose(total[1 + r], head.layout.sums(replicate)[0], rtol=1e-12)


@pytest.mark.parametrize("elements_per_row", [1, 2])
def test_jackknife_states_hold_each_groups_rows_and_the_datas_calibration(elements_per_row):
    head = BinaryClassHead()
    layout = StateLayout(head.layout.thresholds, calibration=True)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(500, elements_per_row, 1)).astype(np.float32)
    labels = (rng.random((500, elements_per_row, 1)) < 0.4) * 1.0
    spec = IntervalSpec(method=JACKKNIFE, num_samples=4, seed=5)
    samples = spec.row_samples("x.parquet", np.arange(500))
    batch = pa.record_batch({"id": pa.array(np.arange(500))})
    states = slice_states(layout, (SliceSpec(),), head.evaluate_batch(logits, labels), batch, elements_per_row,
                          **samples)
    totals = states[0, 0].sorted_items()[1][0]
    data = layout.sums(head.evaluate_batch(logits, labels))[0]
    calibration = layout.parts["calibration"]
    for k in range(4):
        rows = samples["groups"] == k
        group = layout.sums(head.evaluate_batch(logits[rows], labels[rows]))[0]
        # The data's calibration (plots only) is kept in group 0 alone.
        group[calibration] = data[calibration] if k == 0 else 0.0
        assert np.allclose(totals[k], group, rtol=1e-12)
    point, _ = spec.point_and_samples(totals[None])
    assert np.allclose(point[0], data, rtol=1e-12)


INTERVAL_CONFIG_ERRORS = {
    "unknown key": ({"method": "jackknife", "samples": 20}, "confidence_intervals.samples"),
    "method": ({"method": "bootstrap"}, "confidence_intervals.method: must be one of jackknife, poisson_bootstrap"),
    "num_samples": ({"num_samples": 1}, "confidence_intervals.num_samples"),
    "level": ({"level": 95}, "confidence_intervals.level: must be a number in (0, 1)"),
    "seed": ({"seed": -1}, "confidence_intervals.seed"),
}


@pytest.mark.parametrize("case", list(INTERVAL_CONFIG_ERRORS))
def test_interval_config_errors_name_the_field(tmp_path, capsys, case):
    intervals, message = INTERVAL_CONFIG_ERRORS[case]
    pattern, _ = write_files(tmp_path / "in", "parquet", [scores(50)])
    config = write_config(tmp_path / "config.yaml", confidence_intervals=intervals)
    code = run_cli(["--input", pattern, "--config", config, "--output", tmp_path / "out"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: config ") and message in err, err
    assert not (tmp_path / "out").exists()
