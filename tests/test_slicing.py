"""head/slicing.py: TFMA slice membership and keyed states, against plain Python.

Membership is checked against an obviously-correct row loop; metrics of
every (model, slice) against BinaryClassHead run on exactly that slice's
rows; and, with hypothesis, the keyed states do not depend on how the rows
are split into batches or in which order states merge (<= 1e-12 relative).
The real estimator head's per-slice values are in test_golden_slices.py.
"""

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from head import BinaryClassHead, EvaluatedBatch
from head.slicing import Bucket, SliceSpec, SliceStates, SlicingError, slice_name, slice_states

REL = 1e-12


def _batch(n=400, seed=0):
    rng = np.random.default_rng(seed)
    country = rng.choice(["DE", "FR", "US", None], n, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    tags = [list(rng.choice(["a", "b", "c"], int(rng.integers(0, 4)))) if rng.random() > 0.1 else None
            for _ in range(n)]
    age = rng.integers(10, 70, n).astype(np.float64)
    age[rng.random(n) < 0.05] = np.nan
    return pa.record_batch({
        "country": pa.array(country, pa.string()),
        "device": pa.array(rng.choice(["mobile", "desktop"], n)).dictionary_encode(),
        "tags": pa.array(tags, pa.list_(pa.string())),
        "age": pa.array(age),
        "year": pa.array(rng.integers(2020, 2023, n)),
        "flag": pa.array(rng.random(n) < 0.5),
        "feature_bytes": pa.array([[c.encode()] if c else [] for c in country], pa.large_list(pa.large_binary())),
    })


def _row_values(batch, column):
    """A row's values of a column as a set (lists: every value; null/NaN/missing: none)."""
    if column not in batch.schema.names:
        return [set() for _ in range(batch.num_rows)]
    out = []
    for value in batch.column(column).to_pylist():
        values = value if isinstance(value, list) else [value]
        values = [v.decode() if isinstance(v, bytes) else v for v in values]
        out.append({v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})
    return out


def _reference_slices(batch, spec):
    """{slice key: sorted rows} by a row loop over SPEC §5's rules."""
    per_column = {c: _row_values(batch, c) for c in spec.columns}
    slices = {}
    for row in range(batch.num_rows):
        if any(value not in per_column[c][row] for c, value in spec.feature_values):
            continue
        choices = []
        for column in spec.feature_keys:
            values = per_column[column][row]
            bounds = spec.boundaries(column)
            if bounds is not None:
                edges = [-math.inf, *bounds, math.inf]
                values = {next(Bucket(float(lo), float(hi), "") for lo, hi in zip(edges, edges[1:])
                               if lo <= v < hi) for v in values}
            choices.append([(column, v) for v in values])
        for combination in itertools.product(*choices):
            key = tuple(sorted(list(spec.feature_values) + list(combination)))
            slices.setdefault(key, set()).add(row)
    return {k: sorted(v) for k, v in slices.items()}


SPECS = [
    SliceSpec(),
    SliceSpec(("country",)),
    SliceSpec(("device",)),
    SliceSpec(("country", "device")),
    SliceSpec(("tags",)),
    SliceSpec(("tags", "country")),
    SliceSpec(("year",), (("flag", True),)),
    SliceSpec((), (("country", "DE"), ("device", "mobile"))),
    SliceSpec((), (("tags", "b"),)),
    SliceSpec((), (("country", "nowhere"),)),
    SliceSpec(("age",), (), (("age", (18, 30, 50)),)),
    SliceSpec(("age", "country"), (), (("age", (40,)),)),
    SliceSpec(("feature_bytes",)),
    SliceSpec(("missing_column",)),
    SliceSpec(("flag",)),
]


def _bucket_free(key):
    return tuple((c, (v.lo, v.hi) if isinstance(v, Bucket) else v) for c, v in key)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_membership_equals_a_row_loop(spec):
    batch = _batch()
    rows, codes, keys = spec.rows(batch)
    ours = {}
    for row, code in zip(rows.tolist(), codes.tolist()):
        ours.setdefault(_bucket_free(keys[code]), []).append(row)
    assert len(keys) == len(set(keys)) == len(ours), "every key listed once and used"
    expected = {_bucket_free(k): v for k, v in _reference_slices(batch, spec).items()}
    assert {k: sorted(v) for k, v in ours.items()} == expected


def test_yaml_values_are_converted_to_the_column_type():
    batch = pa.record_batch({"year": pa.array([2020, 2021, 2021]), "code": pa.array(["7", "8", "7"]),
                             "score": pa.array([0.5, 1.0, 1.0])})
    assert SliceSpec((), (("year", "2021"),)).rows(batch)[0].tolist() == [1, 2]
    assert SliceSpec((), (("code", 7),)).rows(batch)[2] == [(("code", "7"),)]
    assert SliceSpec((), (("score", 1),)).rows(batch)[0].tolist() == [1, 2]
    with pytest.raises(SlicingError, match="feature_values year"):
        SliceSpec((), (("year", "x"),)).rows(batch)


def test_bucket_names_and_order():
    batch = pa.record_batch({"age": pa.array([5, 18, 29, 30, 50, 90, None])})
    _, _, keys = SliceSpec(("age",), (), (("age", (18, 30, 50)),)).rows(batch)
    assert sorted(str(k[0][1]) for k in keys) == ["[-inf, 18)", "[18, 30)", "[30, 50)", "[50, inf)"]
    assert [str(k[0][1]) for k in sorted(keys)] == ["[-inf, 18)", "[18, 30)", "[30, 50)", "[50, inf)"]


def test_slice_names_are_tfma_style():
    assert slice_name(()) == "Overall"
    assert slice_name((("country", "DE"),)) == "country:DE"
    assert slice_name((("device", "mobile"), ("country", "DE"))) == "country_X_device:DE_X_mobile"


def test_unsliceable_types_are_named():
    batch = pa.record_batch({"when": pa.array([1, 2], pa.timestamp("s")), "name": pa.array(["a", "b"])})
    with pytest.raises(SlicingError, match="'when'.*strings, integers"):
        SliceSpec(("when",)).rows(batch)
    with pytest.raises(SlicingError, match="bucket_boundaries need a numeric column"):
        SliceSpec(("name",), (), (("name", (1,)),)).rows(batch)


# ---- metrics per (model, slice) -----------------------------------------------------------------


HEAD = BinaryClassHead("w", thresholds=[0.3, 0.5, 0.7])


def _scores(n, seed, width=1):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.2, 2.0, (2, n, width, 1)).astype(np.float32)  # two models
    labels = (rng.random((n, width)) < 0.45).astype(np.float32)
    labels[rng.random((n, width)) < 0.1] = 0.5
    weights = rng.gamma(2.0, 1.0, n).astype(np.float32)
    return logits, labels, weights


def _evaluated(logits, labels, weights, rows):
    """Both models' EvaluatedBatch for `rows`, one model after the other."""
    features = {"w": weights[rows]}
    return [HEAD.evaluate_batch(logits[m, rows], labels[rows], features) for m in range(2)]


def _states(batch, logits, labels, weights, specs, rows):
    sub = batch.take(pa.array(rows))
    evaluated = EvaluatedBatch.concatenate(_evaluated(logits, labels, weights, rows))
    return slice_states(HEAD.layout, specs, evaluated, sub, logits.shape[2])


@pytest.mark.parametrize("width", [1, 3])
def test_every_model_and_slice_equals_the_head_on_that_slice(width):
    batch = _batch(600, seed=1)
    logits, labels, weights = _scores(600, 2, width)
    states = _states(batch, logits, labels, weights, SPECS, np.arange(600))
    checked = 0
    for s, spec in enumerate(SPECS):
        expected_slices = {_bucket_free(k): v for k, v in _reference_slices(batch, spec).items()}
        for m in range(2):
            if not expected_slices:
                assert (m, s) not in states
                continue
            keys, totals = states[m, s].sorted_items()
            totals = totals[:, 0]  # no confidence-interval samples: one state vector per slice
            assert [_bucket_free(k) for k in keys] == sorted(expected_slices)
            ours = HEAD.metric_arrays(totals)
            for i, key in enumerate(keys):
                rows = np.asarray(expected_slices[_bucket_free(key)])
                direct = HEAD.results(HEAD.add_to_state(HEAD.new_state(), _evaluated(
                    logits, labels, weights, rows)[m]))
                for metric, value in direct.items():
                    assert math.isclose(ours[metric][i], value, rel_tol=1e-9, abs_tol=1e-12), (spec, key, metric)
                assert HEAD.layout.part(totals[i], "examples") == len(rows) * width
                checked += 1
    assert checked > 80


def test_states_of_different_heads_do_not_merge():
    other = BinaryClassHead(thresholds=[0.5])
    with pytest.raises(ValueError, match="different heads"):
        SliceStates(HEAD.layout).merge(SliceStates.of_sums(other.layout, [()], np.zeros((1, 1, other.layout.size))))
    with pytest.raises(ValueError, match="different heads"):
        HEAD.new_state().merge(other.new_state())


def test_max_slices_is_an_error_naming_the_spec():
    spec = SliceSpec(("id",))
    states = SliceStates(HEAD.layout, max_slices=5, spec=spec)
    states.merge(SliceStates.of_sums(HEAD.layout, [(("id", i),) for i in range(5)], np.zeros((5, 1, HEAD.layout.size))))
    with pytest.raises(SlicingError, match=r"slicing spec \{feature_keys: \[id\]\} has more than max_slices 5"):
        states.merge(SliceStates.of_sums(HEAD.layout, [(("id", 9),)], np.zeros((1, 1, HEAD.layout.size))))
    with pytest.raises(SlicingError, match="max_slices 3"):
        SliceStates.of_sums(HEAD.layout, [(("id", i),) for i in range(4)], np.zeros((4, 1, HEAD.layout.size)),
                            max_slices=3, spec=spec)


# ---- split invariance -----------------------------------------------------------------------------


def _merged(batch, logits, labels, weights, specs, bounds, order):
    total = {}
    parts = [_states(batch, logits, labels, weights, specs, np.arange(a, b)) for a, b in bounds if b > a]
    for i in order:
        if i >= len(parts):
            continue
        for key, states in parts[i].items():
            total.setdefault(key, SliceStates(HEAD.layout)).merge(states)
    return total


def _assert_same(a, b):
    assert set(a) == set(b)
    for key in a:
        keys_a, totals_a = a[key].sorted_items()
        keys_b, totals_b = b[key].sorted_items()
        assert keys_a == keys_b
        ma, mb = HEAD.metric_arrays(totals_a[:, 0]), HEAD.metric_arrays(totals_b[:, 0])
        for metric in ma:
            np.testing.assert_allclose(ma[metric], mb[metric], rtol=REL, atol=1e-15, err_msg=str((key, metric)))


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 300), max_size=8), seed=st.integers(0, 3),
       order_seed=st.integers(0, 1000))
def test_slices_do_not_depend_on_batching_or_merge_order(cuts, seed, order_seed):
    n = 300
    batch = _batch(n, seed=seed)
    logits, labels, weights = _scores(n, seed + 10)
    edges = sorted({0, n, *cuts})
    bounds = list(zip(edges, edges[1:]))
    order = np.random.default_rng(order_seed).permutation(len(bounds)).tolist()
    single = _merged(batch, logits, labels, weights, SPECS, [(0, n)], [0])
    split = _merged(batch, logits, labels, weights, SPECS, bounds, order)
    _assert_same(single, split)
