"""Arrow record batches -> the head's numpy inputs, vectorised.

A column holds either one value per row (Parquet scalar; a tf.Example feature
of length 1) or a fixed-length list per row (the head's [D0, D1, ... DN, 1]
with D1 = list length). Problems raise BadInputError naming the row within the
batch and the column, so the pipeline can name the file and the row in it.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from head.binary_class_head import BadInputError

_LIST_TYPES = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


def _is_list(arrow_type):
    return any(check(arrow_type) for check in _LIST_TYPES)


def _is_string(arrow_type):
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
    )


def _numeric_or_string(arrow_type):
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or (
        pa.types.is_boolean(arrow_type) or _is_string(arrow_type)
    )


def _reject(mask, column, reason, detail=None):
    raise BadInputError(column, np.asarray(mask, dtype=bool), reason, detail)


def _all_rows(batch):
    return np.ones(batch.num_rows, dtype=bool)


def list_lengths(array):
    """Per-row list lengths (null rows: -1), or None for a scalar column."""
    if not _is_list(array.type):
        return None
    return pc.list_value_length(array).fill_null(-1).to_numpy(zero_copy_only=False)


def column_values(batch, name, role, allow_string=False, width=None):
    """A column of `batch` as numpy: shape [n] for scalars, [n, D] for lists.

    `role` ('logits', 'labels', 'weights') names the column in errors.
    Length-1 lists are scalars: tf.Example has no other way to hold one.
    `width` is the list length every row must have (1: one value per row);
    None takes the batch's first row, which only suits a single batch.
    """
    index = batch.schema.get_field_index(name)
    if index < 0:
        _reject(_all_rows(batch), f"{role} ({name})", "column is missing",
                f"columns: {batch.schema.names}")
    array = batch.column(index)
    column = f"{role} ({name})" if role != name else name
    if array.null_count:
        _reject(array.is_null().to_numpy(zero_copy_only=False), column, "value is missing (null)")
    lengths = list_lengths(array)
    value_type = array.type.value_type if lengths is not None else array.type
    if not _numeric_or_string(value_type) or (_is_string(value_type) and not allow_string):
        expected = "strings or numbers" if allow_string else "numbers"
        _reject(_all_rows(batch), column, f"wrong type: expected {expected} or a list of them",
                f"column has type {array.type}")
    if width is None:
        width = int(lengths[0]) if lengths is not None and len(lengths) else 1
    if lengths is None:
        if width != 1:
            _reject(_all_rows(batch), column, "list length does not match the data set's",
                    f"one value per row, expected lists of {width}")
        return array.to_numpy(zero_copy_only=False)
    values = array.flatten()
    if values.null_count:
        # Null inside a list: name the row that holds it.
        owner = pc.list_parent_indices(array).to_numpy()
        bad = np.zeros(batch.num_rows, dtype=bool)
        bad[owner[values.is_null().to_numpy(zero_copy_only=False)]] = True
        _reject(bad, column, "list holds a missing (null) value")
    wrong = lengths != width
    if wrong.any():
        _reject(wrong, column, "list length does not match the data set's",
                f"expected {width}, this row has {lengths[wrong][0]}")
    flat = values.to_numpy(zero_copy_only=False)
    if width == 1:
        return flat
    return flat.reshape(len(lengths), width)


def input_widths(batch, logits_column, weight_column=None):
    """List lengths of the logits and weight columns in a batch's first row.

    Fixed once per data set (from its first row), so every batch is checked
    against the same shape whatever the batching. Rows of `batch` that do not
    match its first row raise BadInputError (with a mask over all its rows).
    """
    logits = column_values(batch, logits_column, "logits")
    widths = {"logits": logits.shape[1] if logits.ndim == 2 else 1, "weights": 1}
    if weight_column:
        weights = column_values(batch, weight_column, "weights")
        widths["weights"] = weights.shape[1] if weights.ndim == 2 else 1
    return widths


def head_inputs(batch, logits_column, label_column, weight_column=None, widths=None):
    """(logits [n,1] or [n,D,1], labels, weights or None) from one batch.

    `widths` ({'logits': D, 'weights': 1 or D}, from input_widths) is the
    data set's shape; without it, this batch's first row sets it.
    """
    widths = widths or input_widths(batch, logits_column, weight_column)
    width = widths["logits"]
    logits = column_values(batch, logits_column, "logits", width=width)
    labels = column_values(batch, label_column, "labels", allow_string=True, width=width)
    weights = None
    if weight_column:
        if widths["weights"] not in (1, width):
            _reject(_all_rows(batch), f"weights ({weight_column})",
                    "list length does not match the logits'",
                    f"weights have {widths['weights']}, logits {width}")
        weights = column_values(batch, weight_column, "weights", width=widths["weights"])
    return logits[..., np.newaxis], labels, weights


def to_arrow(values):
    """A numpy array [n, ...] as an Arrow array of (nested) fixed-size lists.

    A trailing dimension of 1 (the head's logits_dimension) is dropped, so a
    [n, 1] prediction becomes one scalar per row.
    """
    values = np.asarray(values)
    if values.ndim > 1 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.dtype == object:
        array = pa.array(values.ravel(), type=pa.string())
    else:
        array = pa.array(values.ravel())
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array
