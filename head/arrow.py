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


def column_values(batch, name, role, allow_string=False):
    """A column of `batch` as numpy: shape [n] for scalars, [n, D] for lists.

    `role` ('logits', 'labels', 'weights') names the column in errors.
    Length-1 lists are scalars: tf.Example has no other way to hold one.
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
    if lengths is None:
        return array.to_numpy(zero_copy_only=False)
    values = array.flatten()
    if values.null_count:
        # Null inside a list: name the row that holds it.
        owner = pc.list_parent_indices(array).to_numpy()
        bad = np.zeros(batch.num_rows, dtype=bool)
        bad[owner[values.is_null().to_numpy(zero_copy_only=False)]] = True
        _reject(bad, column, "list holds a missing (null) value")
    width = lengths[0] if len(lengths) else 1
    if (lengths != width).any():
        _reject(lengths != width, column, "list length differs from the batch's first row",
                f"the first row has {width}")
    if width == 0:
        _reject(lengths == 0, column, "list is empty")
    flat = values.to_numpy(zero_copy_only=False)
    if width == 1:
        return flat
    return flat.reshape(len(lengths), width)


def head_inputs(batch, logits_column, label_column, weight_column=None):
    """(logits [n,1] or [n,D,1], labels, weights or None) from one batch."""
    logits = column_values(batch, logits_column, "logits")
    labels = column_values(batch, label_column, "labels", allow_string=True)
    weights = column_values(batch, weight_column, "weights") if weight_column else None
    width = logits.shape[1] if logits.ndim == 2 else 1
    label_width = labels.shape[1] if labels.ndim == 2 else 1
    if label_width != width:
        _reject(np.ones(len(labels), dtype=bool), f"labels ({label_column})",
                "list length does not match the logits'",
                f"labels have {label_width}, logits {width}")
    if weights is not None and weights.ndim == 2 and weights.shape[1] != width:
        _reject(np.ones(len(weights), dtype=bool), f"weights ({weight_column})",
                "list length does not match the logits'",
                f"weights have {weights.shape[1]}, logits {width}")
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
