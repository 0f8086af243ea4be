"""Confidence intervals that are exact functions of the data and a seed.

The sampling unit is the input row. Which jackknife group a row falls in, or
its Poisson bootstrap counts, come from a counter-based hash of (seed, the
row's file name, its row number in the file), so the samples, and the
intervals, do not depend on the runner, the batching, the file order or the
number of workers. The file name is taken without its directory and without
its format and compression extensions: the same files copied to a bucket, or
converted between Parquet and TFRecord, give the same intervals.

- `jackknife`: delete-a-group with K groups. The states keep each group's
  sums; leave-one-out state k is the total minus group k, and
  SE^2 = (K - 1) / K * sum_k (theta_-k - mean theta_-k)^2.
- `poisson_bootstrap`: R replicates; replicate r counts row i
  Poisson(1)-many times. SE = sample standard deviation (ddof 1) of theta_r.

Bounds = the full-data point estimate -/+ t(level, K - 1) * SE, where K is
num_samples (Student's t with K - 1 degrees of freedom).
"""

import functools
import hashlib
import math
import posixpath

import numpy as np

JACKKNIFE = "jackknife"
POISSON_BOOTSTRAP = "poisson_bootstrap"
METHODS = (JACKKNIFE, POISSON_BOOTSTRAP)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# P(Poisson(1) <= k), k = 0, 1, ...: beyond k = 18 the tail is below 2^-64.
_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(19)])


def _mix(x, copy=True):
    """splitmix64's finaliser: a bijective, well-mixing map of uint64 arrays.

    In place on a copy of `x` (or on `x`, copy=False), with no other
    temporaries: for large arrays their allocation cost as much as the
    arithmetic.
    """
    x = np.array(x, dtype=np.uint64, copy=copy)
    shifted = np.empty_like(x)
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        x ^= np.right_shift(x, np.uint64(shift), out=shifted)
        x *= np.uint64(factor)
    x ^= np.right_shift(x, np.uint64(31), out=shifted)
    return x


# Extensions that say how a file is stored, not which rows it holds.
_STORAGE_EXTENSIONS = (".gz", ".parquet", ".parq", ".pq", ".tfrecord", ".tfrecords", ".tfr")


def file_identity(path):
    """The part of a file's path that identifies its rows: its name, less storage extensions."""
    name = posixpath.basename(path.rstrip("/"))
    while name.lower().endswith(_STORAGE_EXTENSIONS) and "." in name[1:]:
        name = name[: name.rindex(".")]
    return name


def _file_key(seed, path):
    text = f"{int(seed)}\0{file_identity(path)}"
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def row_hashes(seed, path, rows_in_file):
    """A 64-bit hash per row: a function of (seed, file, row number in the file) only."""
    rows = np.asarray(rows_in_file, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_file_key(seed, path) + rows * _GOLDEN)


def _uniform(hashes):
    """The top 53 bits of each hash as a float in [0, 1)."""
    return (hashes >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def jackknife_groups(hashes, num_groups):
    """The group (0 .. K - 1) of each row."""
    return np.minimum((_uniform(hashes) * num_groups).astype(np.intp), num_groups - 1)


_UNDECIDED = 255  # in the count table: the top bits of the draw do not decide its count


def _poisson_table(bits=16):
    """Poisson(1) counts by the top `bits` bits of a draw (uint8), _UNDECIDED where they do not decide it.

    A draw u in [j / 2^bits, (j + 1) / 2^bits) has count #{k: CDF(k) <= u};
    it is table[j] unless a CDF value falls inside that range (a few of the
    2^bits ranges), where the rest of the draw decides.
    """
    edges = np.arange((1 << bits) + 1, dtype=np.float64) / (1 << bits)
    table = np.searchsorted(_POISSON_CDF, edges[:-1], side="right")
    undecided = table != np.searchsorted(_POISSON_CDF, np.nextafter(edges[1:], 0), side="right")
    table[undecided] = _UNDECIDED
    return table.astype(np.uint8)


_COUNT_BITS = 16
_COUNT_TABLE = _poisson_table(_COUNT_BITS)
_LANES = 64 // _COUNT_BITS  # replicates drawn from one 64-bit hash


def poisson_draws(hashes, num_replicates, rows=None, replicates=None):
    """Uniform draws in [0, 1) of (row, replicate) pairs: where replicate r of row i falls.

    The top 16 bits of draw (i, r) are lane r % 4 of hash(row hash, r // 4):
    one hash serves four replicates. The bits below come from a second hash
    of (row hash, r), needed only where the top bits do not decide the count
    (poisson_counts). `rows`, `replicates` pick pairs; default every pair,
    [rows, R].
    """
    if rows is None:
        rows, replicates = np.indices((len(hashes), num_replicates)).reshape(2, -1)
    replicates = np.asarray(replicates, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words = _mix(hashes[rows] ^ _mix((replicates // np.uint64(_LANES) + np.uint64(1)) * _GOLDEN))
        below = _mix(hashes[rows] ^ _mix((replicates + np.uint64(num_replicates + 1)) * _GOLDEN))
    top = (words >> (np.uint64(_COUNT_BITS) * (replicates % np.uint64(_LANES)))) & np.uint64((1 << _COUNT_BITS) - 1)
    return (top.astype(np.float64) + _uniform(below)) / (1 << _COUNT_BITS)


def poisson_counts(hashes, num_replicates):
    """[rows, R] Poisson(1) counts (uint8): replicate r's count of each row.

    Exactly searchsorted(CDF, poisson_draws(...)); the 16-bit table decides
    all but about 1 in 3,000 draws, whose full draw is then made.
    """
    lanes = -(-num_replicates // _LANES)
    with np.errstate(over="ignore"):
        words = _mix(hashes[:, None] ^ _mix(np.arange(1, lanes + 1, dtype=np.uint64) * _GOLDEN)[None, :],
                     copy=False)
    # Little-endian 16-bit lanes: lane k of a word is bits 16k .. 16k + 15, on any machine.
    top = words.astype("<u8", copy=False).view("<u2")[:, :num_replicates]
    counts = _COUNT_TABLE[top]
    undecided = np.flatnonzero(counts == _UNDECIDED)  # flat: 2-D nonzero costs 40x more
    if len(undecided):
        rows, replicates = np.divmod(undecided, num_replicates)
        draws = poisson_draws(hashes, num_replicates, rows, replicates)
        counts.reshape(-1)[undecided] = np.searchsorted(_POISSON_CDF, draws, side="right")
    return counts


@functools.lru_cache(maxsize=None)
def _t_quantile(degrees_of_freedom, probability):
    from scipy.special import stdtrit  # scipy is heavy to import; only runs with intervals need it

    return float(stdtrit(degrees_of_freedom, probability))


class IntervalSpec:
    """A config's `confidence_intervals`: method, num_samples, level, seed."""

    def __init__(self, method=JACKKNIFE, num_samples=20, level=0.95, seed=0):
        self.method = method
        self.num_samples = int(num_samples)
        self.level = float(level)
        self.seed = int(seed)

    def as_dict(self):
        return {"method": self.method, "num_samples": self.num_samples, "level": self.level,
                "seed": self.seed}

    def __eq__(self, other):
        return isinstance(other, IntervalSpec) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return f"IntervalSpec({self.as_dict()})"

    @property
    def state_samples(self):
        """How many state vectors each (model, slice) keeps: groups, or the data plus replicates."""
        return self.num_samples if self.method == JACKKNIFE else self.num_samples + 1

    def row_samples(self, path, rows_in_file):
        """What the histogram pass (head.slicing.slice_states) needs of these rows:
        {groups, num_groups} for the jackknife, {counts [rows, R]} for the bootstrap."""
        hashes = row_hashes(self.seed, path, rows_in_file)
        if self.method == JACKKNIFE:
            return {"groups": jackknife_groups(hashes, self.num_samples), "num_groups": self.num_samples}
        return {"counts": poisson_counts(hashes, self.num_samples)}

    def point_and_samples(self, totals):
        """State vectors [..., S, size] -> (the full data's [..., size], the samples' [..., K, size])."""
        if self.method == JACKKNIFE:
            total = totals.sum(axis=-2)
            return total, total[..., None, :] - totals  # leave-one-group-out
        return totals[..., 0, :], totals[..., 1:, :]

    def standard_error(self, samples):
        """SE of an estimate from its values on the K samples (last axis)."""
        samples = np.asarray(samples, dtype=np.float64)
        k = samples.shape[-1]
        if self.method == JACKKNIFE:
            spread = samples - samples.mean(axis=-1, keepdims=True)
            return np.sqrt((k - 1) / k * (spread ** 2).sum(axis=-1))
        return samples.std(axis=-1, ddof=1)

    def t_value(self):
        """Student's t quantile for a two-sided `level` interval with K - 1 degrees of freedom."""
        return _t_quantile(self.num_samples - 1, 0.5 + self.level / 2)

    def intervals(self, point, samples):
        """(lower, upper, standard_error) arrays, centred on the point estimate."""
        error = self.standard_error(samples)
        half = self.t_value() * error
        return point - half, point + half, error

    def metrics(self, metric_arrays, totals):
        """Every metric with its interval, for states [n, S, size] (S = state_samples).

        `metric_arrays` maps state vectors [..., size] to {metric key: [...]}
        (BinaryClassHead.metric_arrays): it runs once on the points and once
        on all samples. Returns (values {key: [n]}, sample values {key: [n, K]},
        bounds {key: (lower, upper, standard_error), each [n]}).
        """
        point, samples = self.point_and_samples(totals)
        values, sample_values = metric_arrays(point), metric_arrays(samples)
        bounds = {k: self.intervals(values[k], sample_values[k]) for k in values}
        return values, sample_values, bounds
