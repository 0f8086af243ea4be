"""Results do not depend on how the data is split into batches or merged.

The metric state is a vector of compensated (TwoSum) weighted sums, so one
batch, many batches of any sizes (1, empty, uneven), shuffled rows and partial
states merged in any order or tree must give the same value for every metric
to 1e-12 relative. Hypothesis checks the same for arbitrary small inputs and
partitions, and that merge is commutative and associative.
"""

import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from head import BinaryClassHead, SUM, SUM_OVER_BATCH_SIZE

REL = 1e-12
THRESHOLDS = [0.3, 0.5, 0.7]


def assert_same(a, b, rel=REL, abs_floor=1e-15, what=""):
    assert list(a) == list(b), f"{what}: keys differ"
    for key in a:
        x, y = a[key], b[key]
        assert abs(x - y) <= max(rel * max(abs(x), abs(y)), abs_floor), (
            f"{what} {key}: {x!r} vs {y!r} (rel diff {abs(x - y) / max(abs(x), abs(y)):.3g})"
        )


# ---- data and helpers ----------------------------------------------------------


@functools.lru_cache(maxsize=None)
def dataset(n, dims, seed):
    """Weighted soft-label scores: logits, labels, per-row weights."""
    rng = np.random.default_rng(seed)
    shape = (n, 1) if dims is None else (n, dims, 1)
    logits = rng.normal(0.2, 2.5, size=shape).astype(np.float32)
    logits.reshape(-1)[::97] = 0.0  # exact ties at logistic 0.5
    logits.reshape(-1)[5::101] = 40.0  # saturated: logistic 1.0
    labels = (rng.random(shape) < 1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    soft = rng.random(shape) < 0.3
    labels[soft] = rng.random(int(soft.sum())).astype(np.float32)
    labels = labels[..., 0]
    weights = rng.gamma(2.0, 1.0, size=n).astype(np.float32)
    weights[rng.random(n) < 0.05] = 0.0
    for array in (logits, labels, weights):
        array.setflags(write=False)
    return logits, labels, weights


def make_head(reduction=SUM_OVER_BATCH_SIZE, name=None):
    return BinaryClassHead("w", thresholds=THRESHOLDS, loss_reduction=reduction, name=name,
                           regularization_losses=[0.5])


def state_of(head, logits, labels, weights, bounds):
    """One state fed batch by batch; `bounds` are consecutive [start, stop) pairs."""
    state = head.new_state()
    for start, stop in bounds:
        state = head.update_metrics(
            state, {"w": weights[start:stop]}, logits[start:stop], labels[start:stop]
        )
    return state


def chunk_states(head, logits, labels, weights, bounds):
    return [state_of(head, logits, labels, weights, [b]) for b in bounds]


def bounds_from_sizes(sizes):
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def fixed_sizes(n, size):
    return [size] * (n // size) + ([n % size] if n % size else [])


def ragged_sizes(n, seed):
    """Empty batches, a run of size-1 batches, then random sizes, ending empty."""
    rng = np.random.default_rng(seed)
    sizes = [0, 0, 1, 0]
    sizes += [1] * 150 + [0, 2, 3, 0, 1]
    while sum(sizes) < n:
        size = int(rng.choice([0, 1, 7, int(rng.integers(1, 30000))]))
        sizes.append(min(size, n - sum(sizes)))
    sizes += [0]
    assert sum(sizes) == n and 0 in sizes and 1 in sizes
    return sizes


def merge_left(states):
    total = states[0]
    for s in states[1:]:
        total = total.merge(s)
    return total


def merge_right(states):
    total = states[-1]
    for s in reversed(states[:-1]):
        total = total.merge(s)
    return total


def merge_tree(states):
    while len(states) > 1:
        paired = [a.merge(b) for a, b in zip(states[::2], states[1::2])]
        states = paired + ([states[-1]] if len(states) % 2 else [])
    return states[0]


def merge_shuffled(states, seed=3):
    order = np.random.default_rng(seed).permutation(len(states))
    return merge_left([states[i] for i in order])


def merge_into_fresh(head):
    def merge(states):
        total = head.new_state()
        for s in states:
            total.merge(s)
        return total

    return merge


# ---- 200k rows ---------------------------------------------------------------------

N = 200_000


@pytest.fixture(scope="module")
def big():
    return dataset(N, None, 7)


@pytest.fixture(scope="module")
def big_single(big):
    logits, labels, weights = big
    results = {}
    for reduction in (SUM, SUM_OVER_BATCH_SIZE):
        head = make_head(reduction)
        state = state_of(head, logits, labels, weights, [(0, N)])
        results[reduction] = (state.example_count, head.results(state))
    return results


PARTITIONS = {
    "65536": lambda n: fixed_sizes(n, 65536),
    "1000": lambda n: fixed_sizes(n, 1000),
    "4097": lambda n: fixed_sizes(n, 4097),
    "ragged": lambda n: ragged_sizes(n, 11),
    "ragged_other": lambda n: ragged_sizes(n, 12),
}


@pytest.mark.parametrize("reduction", [SUM, SUM_OVER_BATCH_SIZE])
@pytest.mark.parametrize("partition", sorted(PARTITIONS))
def test_batches_equal_one_batch(big, big_single, partition, reduction):
    logits, labels, weights = big
    head = make_head(reduction)
    state = state_of(head, logits, labels, weights, bounds_from_sizes(PARTITIONS[partition](N)))
    count, expected = big_single[reduction]
    assert state.example_count == count == N
    assert_same(head.results(state), expected, what=partition)


@pytest.mark.parametrize("batch_sizes", [None, "ragged"])
def test_shuffled_rows_equal_original_order(big, big_single, batch_sizes):
    logits, labels, weights = big
    order = np.random.default_rng(5).permutation(N)
    head = make_head(SUM_OVER_BATCH_SIZE)
    sizes = [N] if batch_sizes is None else ragged_sizes(N, 13)
    state = state_of(head, logits[order], labels[order], weights[order], bounds_from_sizes(sizes))
    assert_same(head.results(state), big_single[SUM_OVER_BATCH_SIZE][1])


MERGES = {
    "left": lambda head: merge_left,
    "right": lambda head: merge_right,
    "tree": lambda head: merge_tree,
    "shuffled": lambda head: merge_shuffled,
    "into_fresh": merge_into_fresh,
}


@pytest.mark.parametrize("merge", sorted(MERGES))
def test_merged_states_equal_one_batch(big, big_single, merge):
    logits, labels, weights = big
    head = make_head(SUM)
    states = chunk_states(head, logits, labels, weights, bounds_from_sizes(ragged_sizes(N, 14)))
    assert len(states) > 150
    merged = MERGES[merge](head)(states)
    count, expected = big_single[SUM]
    assert merged.example_count == count
    assert_same(head.results(merged), expected, what=merge)


def test_merge_of_batched_states_and_shuffled_rows(big, big_single):
    """Shuffled rows, split unevenly, each part batched differently, merged as a tree."""
    logits, labels, weights = big
    order = np.random.default_rng(9).permutation(N)
    logits, labels, weights = logits[order], labels[order], weights[order]
    head = make_head(SUM_OVER_BATCH_SIZE)
    cuts = [0, 1, 1, 50_000, 50_001, 123_456, N]
    states = []
    for i, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
        sizes = fixed_sizes(stop - start, [1, 997, 65536][i % 3]) or [0]
        parts = [(start + a, start + b) for a, b in bounds_from_sizes(sizes)]
        states.append(state_of(head, logits, labels, weights, parts))
    merged = merge_tree(states[::-1])
    assert merged.example_count == N
    assert_same(head.results(merged), big_single[SUM_OVER_BATCH_SIZE][1])


def test_evaluate_batch_and_add_to_state_equal_update_metrics(big, big_single):
    logits, labels, weights = big
    head = make_head(SUM_OVER_BATCH_SIZE)
    state = head.new_state()
    for start, stop in bounds_from_sizes(fixed_sizes(N, 30_000)):
        evaluated = head.evaluate_batch(logits[start:stop], labels[start:stop],
                                        {"w": weights[start:stop]})
        assert len(evaluated) == stop - start
        state = head.add_to_state(state, evaluated)
    assert_same(head.results(state), big_single[SUM_OVER_BATCH_SIZE][1])


def test_multidim_batches_merges_and_shuffles():
    n = 50_000
    logits, labels, weights = dataset(n, 4, 8)
    head = make_head(SUM_OVER_BATCH_SIZE, name="md")
    single_state = state_of(head, logits, labels, weights, [(0, n)])
    single = head.results(single_state)
    assert single_state.example_count == 4 * n
    batched = state_of(head, logits, labels, weights, bounds_from_sizes(ragged_sizes(n, 15)))
    assert batched.example_count == 4 * n
    assert_same(head.results(batched), single, what="batched")
    order = np.random.default_rng(6).permutation(n)
    shuffled = state_of(head, logits[order], labels[order], weights[order],
                        bounds_from_sizes(fixed_sizes(n, 777)))
    assert_same(head.results(shuffled), single, what="shuffled")
    for merge in (merge_left, merge_right, merge_tree, merge_shuffled):
        states = chunk_states(head, logits, labels, weights, bounds_from_sizes(ragged_sizes(n, 16)))
        assert_same(head.results(merge(states)), single, what=merge.__name__)


def test_results_do_not_change_the_state(big):
    logits, labels, weights = big
    head = make_head(SUM)
    state = state_of(head, logits[:1000], labels[:1000], weights[:1000], [(0, 1000)])
    first = head.results(state)
    assert head.results(state) == first
    more = state_of(head, logits[1000:2000], labels[1000:2000], weights[1000:2000], [(0, 1000)])
    state.merge(more)
    both = head.results(state_of(head, logits[:2000], labels[:2000], weights[:2000], [(0, 2000)]))
    assert_same(head.results(state), both)


# ---- hypothesis ----------------------------------------------------------------------

HYPOTHESIS_ABS = 1e-12


@st.composite
def small_datasets(draw, max_rows=40):
    n = draw(st.integers(0, max_rows))
    dims = draw(st.sampled_from([None, None, 3]))
    shape = (n, 1) if dims is None else (n, dims, 1)
    logits = draw(hnp.arrays(np.float32, shape, elements=st.floats(-20, 20, width=32)))
    if draw(st.booleans()):
        label_values = st.sampled_from([0.0, 1.0])
    else:
        label_values = st.floats(0, 1, width=32)
    labels = draw(hnp.arrays(np.float32, shape[:-1], elements=label_values))
    weights = draw(hnp.arrays(np.float32, (n,), elements=st.floats(0, 100, width=32)))
    return logits, labels, weights


@st.composite
def partitions(draw, n):
    cuts = draw(st.lists(st.integers(0, n), max_size=10))
    edges = [0] + sorted(cuts) + [n]
    return list(zip(edges[:-1], edges[1:]))


HEADS = st.builds(
    BinaryClassHead,
    weight_column=st.just("w"),
    thresholds=st.sampled_from([None, [0.5], THRESHOLDS]),
    loss_reduction=st.sampled_from([SUM, SUM_OVER_BATCH_SIZE]),
)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), head=HEADS)
def test_any_partition_equals_one_batch(data, head):
    logits, labels, weights = data.draw(small_datasets())
    n = len(logits)
    bounds = data.draw(partitions(n))
    single = head.results(state_of(head, logits, labels, weights, [(0, n)]))
    batched = state_of(head, logits, labels, weights, bounds)
    assert_same(head.results(batched), single, abs_floor=HYPOTHESIS_ABS)
    merged = merge_left(chunk_states(head, logits, labels, weights, bounds))
    assert_same(head.results(merged), single, abs_floor=HYPOTHESIS_ABS)
    order = data.draw(st.permutations(range(n)))
    order = np.asarray(order, dtype=np.intp)
    shuffled = state_of(head, logits[order], labels[order], weights[order], bounds)
    assert_same(head.results(shuffled), single, abs_floor=HYPOTHESIS_ABS)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), head=HEADS)
def test_merge_is_commutative_and_associative(data, head):
    parts = [data.draw(small_datasets(max_rows=15)) for _ in range(3)]

    def fresh():
        return [state_of(head, lg, lb, w, [(0, len(lg))]) for lg, lb, w in parts]

    a, b, _ = fresh()
    ab = head.results(a.merge(b))
    a, b, _ = fresh()
    ba = head.results(b.merge(a))
    assert_same(ab, ba, abs_floor=HYPOTHESIS_ABS)
    a, b, c = fresh()
    left = head.results(a.merge(b).merge(c))
    a, b, c = fresh()
    right = head.results(a.merge(b.merge(c)))
    assert_same(left, right, abs_floor=HYPOTHESIS_ABS)
    a, b, c = fresh()
    assert a.merge(b).merge(c).example_count == sum(
        lg.size for lg, _, _ in parts
    )
    a, b, c = fresh()
    shuffled = head.results(c.merge(a).merge(b))
    assert_same(left, shuffled, abs_floor=HYPOTHESIS_ABS)
