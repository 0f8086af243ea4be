"""TFMA slicing of Arrow record batches, vectorised, and keyed metric states.

A `SliceSpec` is TFMA's SlicingSpec (plus `bucket_boundaries` for numeric
ranges). `SliceSpec.rows(batch)` says which rows of a record batch are in
which of its slices, with Arrow compute and numpy only (dictionary encoding,
`np.unique`), never a Python loop over rows:

- no keys and no values: the overall slice, every row;
- `feature_keys`: one slice per distinct value; several keys: one slice per
  combination of values present in a row (the cross);
- a list-valued column puts a row in the slice of each of its values;
- a null, NaN, missing or empty value puts the row in no slice of the spec;
- `feature_values` keeps only rows holding those values;
- `bucket_boundaries` slices a numeric column by ranges [lo, hi).

A slice key is TFMA's: a tuple of (column, value) pairs sorted by column;
the overall slice is (). `SliceStates` holds the metric states of one
(model, spec) by slice key and merges by addition.
"""

import dataclasses
import math
import typing

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from head.metrics import MetricState, replicate_weights

OVERALL = ()


class Bucket(typing.NamedTuple):
    """A numeric range [lo, hi) of a `bucket_boundaries` slice; sorts by range."""

    lo: float
    hi: float
    text: str  # "[18, 30)", "[-inf, 18)", "[50, inf)"

    def __str__(self):
        return self.text


def _number_text(x):
    return {math.inf: "inf", -math.inf: "-inf"}.get(x, str(x))


class SlicingError(ValueError):
    """A slicing problem found in the data (a column's type, too many slices)."""


def _is_list(arrow_type):
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or (
        pa.types.is_fixed_size_list(arrow_type))


def _is_binary(arrow_type):
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def _is_text(arrow_type):
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or _is_binary(arrow_type)


def _is_number(arrow_type):
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def sliceable_type_problem(arrow_type, bucketed=False):
    """Why a column of this type cannot be sliced (None when it can)."""
    value_type = _value_type(arrow_type)
    if bucketed:
        if not _is_number(value_type):
            return f"bucket_boundaries need a numeric column, this one has type {arrow_type}"
    elif not (_is_text(value_type) or _is_number(value_type) or pa.types.is_boolean(value_type)):
        return f"slicing needs strings, integers, floats or booleans, this column has type {arrow_type}"
    return None


def _value_type(arrow_type):
    """The type of a column's values: inside lists and dictionaries."""
    if _is_list(arrow_type):
        arrow_type = arrow_type.value_type
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _encoded(batch, column, boundaries=None):
    """(rows, codes, values, value type): each value of `column` as a code into `values`.

    Null and NaN values are left out, and so is a column the batch lacks (a
    tf.Example feature none of its records has): such rows are in no slice.
    With `boundaries`, values are the Buckets of the column's numbers.
    """
    index = batch.schema.get_field_index(column)
    if index < 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), [], None
    array = batch.column(index)
    problem = sliceable_type_problem(array.type, bucketed=boundaries is not None)
    if problem:
        raise SlicingError(f"slice column {column!r}: {problem}")
    if _is_list(array.type):
        rows = pc.list_parent_indices(array).to_numpy()
        values = pc.list_flatten(array)
    else:
        rows = np.arange(len(array))
        values = array
    value_type = _value_type(values.type)
    if pa.types.is_floating(value_type) and not pa.types.is_dictionary(values.type):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, value_type), values)
    if values.null_count:
        valid = values.is_valid()
        rows, values = rows[valid.to_numpy(zero_copy_only=False)], values.filter(valid)
    if boundaries is not None:
        edges = (-math.inf,) + tuple(boundaries) + (math.inf,)
        buckets = [Bucket(float(lo), float(hi), f"[{_number_text(lo)}, {_number_text(hi)})")
                   for lo, hi in zip(edges, edges[1:])]
        numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
        codes = np.searchsorted(np.asarray(boundaries, dtype=np.float64), numbers, side="right")
        return rows, codes, buckets, value_type
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    dictionary = [_python_value(v) for v in encoded.dictionary.to_pylist()]
    return rows, codes, dictionary, value_type


def _cached_encoding(batch, cache, column, boundaries=None):
    """_encoded(batch, column, boundaries), once per batch: `cache` is the batch's dict."""
    if (column, boundaries) not in cache:
        cache[column, boundaries] = _encoded(batch, column, boundaries)
    return cache[column, boundaries]


def _python_value(value):
    """A slice value as the JSON output holds it: tf.Example bytes as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _as_column_type(value, arrow_type):
    """A config value (from YAML) converted to a column's value type."""
    if _is_text(arrow_type):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return text.encode("utf-8") if _is_binary(arrow_type) else text
    if pa.types.is_boolean(arrow_type):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return bool(value)
    if pa.types.is_integer(arrow_type):
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(number)
    return float(value)


@dataclasses.dataclass(frozen=True)
class SliceSpec:
    """TFMA's SlicingSpec: feature_keys, feature_values, plus bucket_boundaries."""

    feature_keys: tuple = ()
    feature_values: tuple = ()  # ((column, value), ...), sorted by column
    bucket_boundaries: tuple = ()  # ((column, (b0, b1, ...)), ...), sorted by column

    @property
    def is_overall(self):
        return not self.feature_keys and not self.feature_values

    @property
    def columns(self):
        """Every column the spec reads, in order, once."""
        names = list(self.feature_keys) + [c for c, _ in self.feature_values]
        return tuple(dict.fromkeys(names))

    def boundaries(self, column):
        return dict(self.bucket_boundaries).get(column)

    def __str__(self):
        parts = []
        if self.feature_keys:
            parts.append(f"feature_keys: [{', '.join(self.feature_keys)}]")
        if self.feature_values:
            values = ", ".join(f"{c}: {v}" for c, v in self.feature_values)
            parts.append(f"feature_values: {{{values}}}")
        if self.bucket_boundaries:
            buckets = ", ".join(f"{c}: {list(b)}" for c, b in self.bucket_boundaries)
            parts.append(f"bucket_boundaries: {{{buckets}}}")
        return "{" + ", ".join(parts) + "}"

    def rows(self, batch, cache=None):
        """(rows, codes, keys): row rows[i] of `batch` is in slice keys[codes[i]].

        A row appears at most once per slice; it appears once in all unless a
        list-valued column puts it in several slices. `cache` (a dict) shares
        each column's encoding between the specs of one batch.
        """
        cache = {} if cache is None else cache
        n = batch.num_rows
        rows = np.arange(n)
        if self.is_overall:
            return rows, np.zeros(n, dtype=np.intp), [OVERALL]
        fixed = []
        for column, value in self.feature_values:
            value_rows, value_codes, dictionary, value_type = _cached_encoding(batch, cache, column)
            wanted, matching = self._matching(column, value, dictionary, value_type)
            has_value = np.zeros(n, dtype=bool)
            has_value[value_rows[np.isin(value_codes, matching)]] = True
            rows = rows[has_value[rows]]
            fixed.append((column, wanted))
        codes = np.zeros(len(rows), dtype=np.intp)
        # slice code -> each key's value code; no slice at all when no row holds the values
        table = np.zeros((1 if len(rows) else 0, 0), dtype=np.intp)
        dictionaries = []
        for column in self.feature_keys:
            value_rows, value_codes, dictionary, _ = _cached_encoding(batch, cache, column, self.boundaries(column))
            rows, codes, table = _cross(rows, codes, table, value_rows, value_codes, len(dictionary), n)
            dictionaries.append(dictionary)
        return rows, codes, self._keys(fixed, dictionaries, table)

    def _matching(self, column, value, dictionary, value_type):
        """(the config's feature value as the column holds it, its codes in `dictionary`)."""
        if value_type is None:  # the batch lacks the column: no row holds the value
            return value, []
        try:
            wanted = _python_value(_as_column_type(value, value_type))
        except (TypeError, ValueError) as e:
            raise SlicingError(f"slicing spec {self}: feature_values {column}: {e} "
                               f"(column type {value_type})") from None
        return wanted, [i for i, v in enumerate(dictionary) if v == wanted and type(v) is type(wanted)]

    def _keys(self, fixed, dictionaries, table):
        """Slice keys of value-code rows `table` [slices, feature_keys] (`fixed`: the feature_values pairs)."""
        if len(self.feature_keys) == 1 and not fixed:  # the common case, 10,000s of keys at times
            column, dictionary = self.feature_keys[0], dictionaries[0]
            return [((column, dictionary[i]),) for i in table[:, 0].tolist()]
        return [tuple(sorted(fixed + [(c, d[i]) for c, d, i in zip(self.feature_keys, dictionaries, codes_of)]))
                for codes_of in table.tolist()]

    def is_listed(self, batch):
        """Whether a column of the spec is list-valued in `batch` (a row may be in several of its slices)."""
        return any(column in batch.schema.names and _is_list(batch.schema.field(column).type)
                   for column in self.columns)

    def encodings(self):
        """The (column, bucket boundaries) encodings the spec reads: feature_keys', then feature_values' (raw)."""
        return [(c, self.boundaries(c)) for c in self.feature_keys] + [(c, None) for c, _ in self.feature_values]


def _renumber(values, bound):
    """(unique, inverse) of non-negative ints below `bound`, like np.unique(return_inverse).

    A presence table (O(n)) when the range is small, else a sort.
    """
    if bound <= (1 << 22):
        present = np.zeros(bound, dtype=bool)
        present[values] = True
        unique = np.flatnonzero(present)
        position = np.cumsum(present) - 1
        return unique, position[values]
    unique, inverse = np.unique(values, return_inverse=True)
    return unique, inverse.reshape(-1)


def _cross(rows, codes, table, value_rows, value_codes, num_values, num_rows):
    """Pairs (row, slice code) times one more key's (row, value code) pairs.

    Every pair of a row is combined with every value of that row (a scalar
    column has at most one); rows without a value drop out. Codes are
    renumbered to the combinations present; `table` maps codes to each
    key's value code.
    """
    count = np.bincount(value_rows, minlength=num_rows)
    if (count <= 1).all():  # one value per row at most: a lookup, no products
        value_of_row = np.full(num_rows, -1, dtype=np.intp)
        value_of_row[value_rows] = value_codes
        values = value_of_row[rows]
        keep = values >= 0
        out_rows, combined = rows[keep], codes[keep] * num_values + values[keep]
    else:
        order = np.argsort(value_rows, kind="stable")
        value_codes = value_codes[order]
        start = np.cumsum(count) - count
        repeats = count[rows]
        out_rows = np.repeat(rows, repeats)
        within = np.arange(len(out_rows)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        combined = np.repeat(codes, repeats) * num_values + value_codes[np.repeat(start[rows], repeats) + within]
    unique, out_codes = _renumber(combined, len(table) * num_values)
    if (count > 1).any():  # a list holding a value twice counts the row once
        pairs = np.unique(out_rows * len(unique) + out_codes)
        out_rows, out_codes = pairs // len(unique), pairs % len(unique)
    table = np.concatenate([table[unique // num_values], (unique % num_values)[:, None]], axis=1)
    return out_rows, out_codes, table


def slice_name(key):
    """TFMA's name of a slice: 'Overall', 'country:DE', 'country_X_device:DE_X_mobile'."""
    if not key:
        return "Overall"
    columns, values = zip(*sorted(key, key=lambda item: item[0]))
    return "_X_".join(columns) + ":" + "_X_".join(str(v) for v in values)


class SliceStates:
    """The metric states of one (model, slicing spec), keyed by slice; merge by addition.

    Each slice holds [samples, size] state vectors (one sample without
    confidence intervals). Rows grow by doubling; `max_slices` bounds them
    (SlicingError beyond), so a spec with too many values fails instead of
    exhausting memory.
    """

    __slots__ = ("layout", "keys", "index", "state", "max_slices", "spec")

    def __init__(self, layout, max_slices=None, spec=None):
        self.layout = layout
        self.keys = []
        self.index = {}
        self.state = None  # MetricState [capacity, samples, size], from the first merge
        self.max_slices = max_slices
        self.spec = spec

    @classmethod
    def of_sums(cls, layout, keys, sums, max_slices=None, spec=None):
        """States holding one batch's vectors `sums` [len(keys), samples, size]."""
        states = cls(layout, max_slices, spec)
        states._check(len(keys))
        states.keys = list(keys)
        states.index = {key: i for i, key in enumerate(keys)}
        states.state = MetricState(layout, hi=np.asarray(sums, dtype=np.float64))
        return states

    def __len__(self):
        return len(self.keys)

    def _check(self, count):
        if self.max_slices is not None and count > self.max_slices:
            raise SlicingError(
                f"slicing spec {self.spec} has more than max_slices {self.max_slices} slices; "
                "raise max_slices or slice by fewer values"
            )

    def _rows_for(self, keys, sample_shape):
        index = self.index
        new = [key for key in keys if key not in index]
        if new:
            self._check(len(self.keys) + len(new))
            for key in new:
                index[key] = len(self.keys)
                self.keys.append(key)
        capacity = 0 if self.state is None else self.state.hi.shape[0]
        if len(self.keys) > capacity:
            grown = MetricState(self.layout, (max(len(self.keys), 2 * capacity),) + sample_shape)
            if capacity:
                grown.hi[:capacity], grown.lo[:capacity] = self.state.hi, self.state.lo
            self.state = grown
        return np.fromiter((index[key] for key in keys), dtype=np.intp, count=len(keys))

    def merge(self, other):
        if other.layout != self.layout:
            raise ValueError("cannot merge metric states of different heads")
        self.spec = self.spec or other.spec
        if other.keys:
            used = len(other.keys)
            rows = self._rows_for(other.keys, other.state.hi.shape[1:-1])
            if rows[-1] == used - 1 and np.array_equal(rows, np.arange(used)):
                rows = slice(0, used)  # the same slices in the same order: no gather, no scatter
            self.state.add(other.state.hi[:used], other.state.lo[:used], where=rows)
        return self

    def sorted_items(self):
        """(keys, totals [n, samples, size]) with keys sorted (TFMA's order of values)."""
        order = np.asarray(sorted(range(len(self.keys)), key=lambda i: self.keys[i]), dtype=np.intp)
        if self.state is None:
            return [], np.zeros((0, 1, self.layout.size))
        return [self.keys[i] for i in order], self.state.totals()[order]


# Rows whose examples go through one histogram call: bounds the temporary
# arrays of a call (a bootstrap's sparse matrix is about 100 bytes per example).
BLOCK_ROWS = 1 << 19
# Combined value codes renumbered with a presence table up to this bound (_renumber).
_TABLE_BOUND = 1 << 22


def _atoms(batch, specs, cache):
    """Each row's atom: the combination of its values of every encoding `specs` read.

    Returns (atom per row, table [atoms, encodings]: each atom's value code
    per encoding, -1 for none, {encoding: table column}). Codes are combined
    mixed-radix and renumbered to the combinations present, one presence
    table pass per group of encodings whose radix product stays small.
    """
    encodings = list(dict.fromkeys(e for spec in specs for e in spec.encodings()))
    num_rows = batch.num_rows
    atom, bound = np.zeros(num_rows, dtype=np.intp), 1
    table = np.zeros((1 if num_rows else 0, 0), dtype=np.intp)
    folded = []  # radixes combined into `atom` since the last renumbering

    def renumber(atom, bound, table):
        unique, atom = _renumber(atom, bound)
        columns, rest = [], unique
        for width in reversed(folded):
            columns.append(rest % width - 1)
            rest = rest // width
        table = np.concatenate([table[rest]] + [c[:, None] for c in reversed(columns)], axis=1)
        folded.clear()
        return atom, len(unique), table

    for column, boundaries in encodings:
        value_rows, value_codes, dictionary, _ = _cached_encoding(batch, cache, column, boundaries)
        width = len(dictionary) + 1
        if folded and bound * width > _TABLE_BOUND:
            atom, bound, table = renumber(atom, bound, table)
        if len(value_rows) == num_rows:  # a value in every row: the rows are 0 .. n - 1
            atom = atom * width + value_codes + 1
        else:
            codes = np.zeros(num_rows, dtype=np.intp)
            codes[value_rows] = value_codes + 1
            atom = atom * width + codes
        bound *= width
        folded.append(width)
    if folded:
        atom, bound, table = renumber(atom, bound, table)
    return atom, table, {e: i for i, e in enumerate(encodings)}


def _spec_codes(batch, spec, table, columns, cache):
    """(each atom's slice code of `spec`, -1 for none; the spec's slice keys)."""
    valid = np.ones(len(table), dtype=bool)
    fixed = []
    for column, value in spec.feature_values:
        _, _, dictionary, value_type = _cached_encoding(batch, cache, column)
        wanted, matching = spec._matching(column, value, dictionary, value_type)
        valid &= np.isin(table[:, columns[column, None]], matching)
        fixed.append((column, wanted))
    values = table[:, [columns[e] for e in spec.encodings()[: len(spec.feature_keys)]]]
    valid &= (values >= 0).all(axis=1)
    codes = np.full(len(table), -1, dtype=np.intp)
    if not valid.any():
        return codes, []
    if not spec.feature_keys:  # the overall slice, or only feature_values: one slice
        codes[valid] = 0
        return codes, [tuple(sorted(fixed))]
    unique, inverse = np.unique(values[valid], axis=0, return_inverse=True)
    codes[valid] = inverse.reshape(-1)
    dictionaries = [_cached_encoding(batch, cache, c, spec.boundaries(c))[2] for c in spec.feature_keys]
    return codes, spec._keys(fixed, dictionaries, unique)


def slice_states(layout, specs, evaluated, batch, elements_per_row=1, max_slices=None,
                 groups=None, num_groups=1, counts=None, cache=None):
    """Every (model, spec)'s SliceStates of one record batch, from one histogram pass.

    `batch` holds (at least) the slice columns of the rows; `evaluated` every
    model's examples one after another (an EvaluatedBatch of n_models *
    num_rows * elements_per_row examples; a row's elements are consecutive).

    Specs whose columns are scalar put a row in at most one slice each; the
    rows' atoms (the combinations of every value those specs read, _atoms)
    are the keys of the pass, each example counted once, and each spec's
    slices are sums of atoms. A spec with a list-valued column (its
    (row, slice) pairs from SliceSpec.rows) adds keys of its own to the same
    pass. Confidence-interval samples are one more axis of the same pass:
    jackknife `groups` [num_rows] (each row's group of K) or Poisson
    bootstrap `counts` [num_rows, R]; each state then holds [K or 1 + R,
    size] vectors. Returns {(model index, spec index): SliceStates}.
    """
    cache = {} if cache is None else cache
    num_rows = batch.num_rows
    per_model = num_rows * elements_per_row
    num_models = len(evaluated) // per_model if per_model else 0
    atom_specs = [s for s, spec in enumerate(specs) if not spec.is_listed(batch)]
    atom, table, columns = _atoms(batch, [specs[s] for s in atom_specs], cache)
    spec_codes = {s: _spec_codes(batch, specs[s], table, columns, cache) for s in atom_specs}
    memberships = {s: spec.rows(batch, cache) for s, spec in enumerate(specs) if s not in spec_codes}
    if len(table) > sum(len(keys) for _, keys in spec_codes.values()):
        # More atoms than slices (specs of many values each, crossed by the rows):
        # each spec's slices are keys of their own.
        for s, (codes, keys) in spec_codes.items():
            row_codes = codes[atom]
            rows = np.flatnonzero(row_codes >= 0)
            memberships[s] = rows, row_codes[rows], keys
        spec_codes, table, atom = {}, table[:0], atom[:0]
    key_rows, key_codes, offsets = [np.arange(len(atom))], [atom], {}
    num_keys = len(table)
    for s, (rows, codes, keys) in sorted(memberships.items()):
        key_rows.append(rows)
        key_codes.append(codes + num_keys)
        offsets[s] = num_keys
        num_keys += len(keys)
    rows, keys = np.concatenate(key_rows), np.concatenate(key_codes)
    every_row_once = len(rows) == num_rows and np.array_equal(rows, np.arange(num_rows))
    samples = num_groups if groups is not None else 1 if counts is None else 1 + counts.shape[1]
    sums = np.zeros((num_models, num_keys, samples, layout.size))  # [model, key, sample, size]
    contiguous = every_row_once and elements_per_row == 1  # a block is a slice of each model's examples
    for start in range(0, len(rows), BLOCK_ROWS):
        block = slice(start, start + BLOCK_ROWS)
        block_rows, block_keys = rows[block], keys[block]
        replicates, count_rows = None, None  # made once per block, for every model
        if contiguous:
            block_groups = None if groups is None else groups[block]
            if counts is not None:
                replicates = replicate_weights(counts[block])
            stop = start + len(block_rows)
            examples = [slice(m * per_model + start, m * per_model + stop) for m in range(num_models)]
        else:  # every element of a row is in the row's slices and samples
            block_keys = np.repeat(block_keys, elements_per_row)
            block_groups = None if groups is None else np.repeat(groups[block_rows], elements_per_row)
            if counts is not None:  # the block's rows' counts only
                counted, count_rows = np.unique(block_rows, return_inverse=True)
                replicates = replicate_weights(counts[counted])
                count_rows = np.repeat(count_rows, elements_per_row)
            elements = (block_rows[:, None] * elements_per_row + np.arange(elements_per_row)).reshape(-1)
            examples = [elements + m * per_model for m in range(num_models)]
        for m in range(num_models):
            layout.sums(_take(evaluated, examples[m]), block_keys, num_keys, replicates, count_rows,
                        block_groups, num_groups, out=sums[m])
    out = {}
    for s, (codes, slice_keys) in spec_codes.items():
        if not slice_keys:  # no row of the batch is in a slice of this spec
            continue
        inside = codes >= 0
        # Atoms grouped by the spec's slice (each slice has at least one), summed.
        order = np.argsort(codes[inside], kind="stable")
        atoms = np.flatnonzero(inside)[order]
        if len(atoms) == len(slice_keys):  # one atom per slice: no sums to make
            spec_sums = sums[:, atoms]
        else:
            grouped = codes[atoms]
            starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
            spec_sums = np.stack([np.add.reduceat(sums[m, atoms], starts, axis=0) for m in range(num_models)])
        out.update(_spec_states(layout, specs[s], s, slice_keys, spec_sums, max_slices))
    for s in sorted(memberships):
        slice_keys = memberships[s][2]
        if not slice_keys:
            continue
        spec_sums = sums[:, offsets[s]: offsets[s] + len(slice_keys)]
        out.update(_spec_states(layout, specs[s], s, slice_keys, spec_sums, max_slices))
    return out


def _spec_states(layout, spec, s, slice_keys, spec_sums, max_slices):
    return {(m, s): SliceStates.of_sums(layout, slice_keys, spec_sums[m], max_slices, spec)
            for m in range(len(spec_sums))}


def _take(evaluated, index):
    return type(evaluated)(*(getattr(evaluated, name)[index] for name in type(evaluated).__slots__))
