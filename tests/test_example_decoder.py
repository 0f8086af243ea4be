"""pipeline.tfrecord.decode_examples (pipeline/_example.c) against TensorFlow's parsers.

The reference for every record is tfx-bsl's ExamplesToRecordBatchDecoder
without a schema, which parses with protobuf's C++ parser (the pipeline's
fallback decoder): a record is malformed for our decoder exactly when
protobuf refuses it, and every requested feature's row is what protobuf's
merge rules give. Records come from three generators (hypothesis): valid
tf.train.Examples made with the protobuf API, wire-level encodings with
what the wire format allows (duplicate and reordered fields, merged values,
unknown fields and groups, packed and unpacked lists, overlong varints,
non-UTF-8 keys), and random damage to both. tf.io.parse_example checks the
values of valid examples once more.
"""

import struct

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

from pipeline import _tfrecord, tfrecord

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["logits", "label", "id", "", "é", "a_rather_long_feature_name_for_a_slice"]
KINDS = ["float", "int", "bytes"]
GENERAL = ExamplesToRecordBatchDecoder()
MALFORMED, MISMATCH = "malformed", "mismatch"


# ---- framing records into a Piece -----------------------------------------------------------


def _frame(records):
    out = bytearray()
    for record in records:
        header = struct.pack("<Q", len(record))
        out += header + struct.pack("<I", _tfrecord.masked_crc32c(header))
        out += record + struct.pack("<I", _tfrecord.masked_crc32c(record))
    return bytes(out)


def _piece(records, split=None):
    """A Piece of the records, in two chunks when `split` (the first chunk's record count) is given."""
    split = len(records) if split is None else split
    first, second = _frame(records[:split]), _frame(records[split:])
    # Each chunk starts at an offset, as in read_pieces' buffers.
    segments = [(b"\0" * 7 + first, 7, split)]
    if split < len(records):
        segments.append((b"\0" * 3 + second, 3, len(records) - split))
    return tfrecord.Piece(0, 0, tuple(segments), len(records))


# ---- the reference ---------------------------------------------------------------------------


def _values(value_list, kind):
    """Comparable values: floats as their bits (NaN payloads included)."""
    if value_list is None:
        return None
    if kind == "float":
        return [struct.pack("<f", v) for v in value_list]
    return list(value_list)


def _reference_row(record, name, kind):
    """What protobuf says record's feature `name` is: MALFORMED, MISMATCH, None or its values."""
    try:
        batch = GENERAL.DecodeBatch([record])
    except RuntimeError as e:
        assert "Unable to parse example" in str(e), e
        return MALFORMED
    index = batch.schema.get_field_index(name)
    if index < 0 or batch.schema.field(index).type == pa.null():
        return None  # absent, or a Feature with no kind
    column = batch.column(index)
    if column.type.value_type != tfrecord.VALUE_TYPES[kind]:
        return MISMATCH
    return _values(column[0].as_py(), kind)


def _check(records, features, split=None):
    """decode_examples(records) agrees with the reference, record by record."""
    decoded = tfrecord.decode_examples(_piece(records, split), features)
    expected = {name: [_reference_row(r, name, kind) for r in records] for name, kind in features.items()}
    first_bad = next((i for i, r in enumerate(records) if _reference_row(r, "", "float") == MALFORMED), None)
    if first_bad is None:
        assert decoded.malformed is None
        assert decoded.records == len(records)
    else:
        assert decoded.malformed is not None, f"record {first_bad} should be malformed"
        assert decoded.malformed.startswith(f"record {first_bad} at byte ")
        assert decoded.records == first_bad
    rows = decoded.records
    assert decoded.batch.schema == pa.schema(
        [pa.field(name, pa.large_list(tfrecord.VALUE_TYPES[kind])) for name, kind in features.items()]
    )
    assert decoded.batch.num_rows == rows or not features
    for name, kind in features.items():
        column = decoded.batch.column(name)
        column.validate(full=True)
        want = expected[name][:rows]
        got = [_values(v, kind) for v in column.to_pylist()]
        assert got == [None if w == MISMATCH else w for w in want], name
        assert (name in decoded.mismatched) == (MISMATCH in want), name
    return decoded


# ---- valid examples, made with protobuf -------------------------------------------------------

floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
int64s = st.integers(-(2**63), 2**63 - 1)
value_lists = {
    "float": st.lists(floats32, max_size=6),
    "int": st.lists(int64s, max_size=6),
    "bytes": st.lists(st.binary(max_size=12), max_size=6),
}


@st.composite
def examples(draw):
    example = tf.train.Example()
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES))):
        feature = example.features.feature[name]
        kind = draw(st.sampled_from(KINDS + ["none"]))
        if kind == "float":
            feature.float_list.value.extend(draw(value_lists["float"]))
        elif kind == "int":
            feature.int64_list.value.extend(draw(value_lists["int"]))
        elif kind == "bytes":
            feature.bytes_list.value.extend(draw(value_lists["bytes"]))
    return example.SerializeToString()


requests = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(KINDS), max_size=4)


@FUZZ
@given(st.lists(examples(), min_size=1, max_size=8), requests, st.data())
def test_valid_examples_decode_as_protobuf_parses_them(records, features, data):
    _check(records, features, split=data.draw(st.integers(0, len(records))))


@FUZZ
@given(st.lists(examples(), min_size=1, max_size=6), requests)
def test_valid_examples_decode_as_tf_io_parse_example_gives_them(records, features):
    decoded = tfrecord.decode_examples(_piece(records), features)
    dtypes = {"float": tf.float32, "int": tf.int64, "bytes": tf.string}
    for name, kind in features.items():
        parsed = [tf.train.Example.FromString(r).features.feature for r in records]
        if any(name in f and f[name].WhichOneof("kind") not in (None, f"{kind}_list".replace("int_", "int64_"))
               for f in parsed):
            assert name in decoded.mismatched
            continue
        sparse = tf.io.parse_example(tf.constant(records), {name: tf.io.VarLenFeature(dtypes[kind])})[name]
        dense = tf.sparse.to_dense(sparse, default_value=b"" if kind == "bytes" else 0)
        lengths = np.bincount(sparse.indices.numpy()[:, 0], minlength=len(records))
        for row, values in enumerate(decoded.batch.column(name).to_pylist()):
            expected = dense[row, : lengths[row]].numpy().tolist()
            assert _values(values or [], kind) == _values(expected, kind)


# ---- anything the wire format allows -----------------------------------------------------------


def _varint(value, extra=0):
    """Little-endian base-128, with `extra` redundant continuation bytes (still the same value)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append(value & 0x7F)
        value >>= 7
        if not value:
            break
        out[-1] |= 0x80
    for _ in range(extra):
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


def _tag(field, wire, extra=0):
    return _varint(field << 3 | wire, extra)


def _len(field, payload, extra=0):
    return _tag(field, 2) + _varint(len(payload), extra) + payload


@st.composite
def unknown_fields(draw, depth=0):
    field = draw(st.integers(1, 40))
    wire = draw(st.sampled_from([0, 1, 2, 5] + ([3] if depth < 3 else [])))
    if wire == 0:
        return _tag(field, 0) + _varint(draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2)))
    if wire == 1:
        return _tag(field, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return _tag(field, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire == 2:
        return _len(field, draw(st.binary(max_size=8)))
    inner = b"".join(draw(st.lists(unknown_fields(depth + 1), max_size=2)))
    return _tag(field, 3) + inner + _tag(field, 4)


@st.composite
def value_list(draw, kind):
    """A BytesList / FloatList / Int64List body, in pieces, packed or not, with unknown fields."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        choice = draw(st.sampled_from(["values", "values", "unknown", "wrong wire type"]))
        if choice == "unknown":
            parts.append(draw(unknown_fields()))
        elif choice == "wrong wire type":  # an unknown field to protobuf
            parts.append(_tag(1, 1) + bytes(8) if kind != "float" else _tag(1, 0) + b"\x01")
        elif kind == "bytes":
            parts += [_len(1, v, draw(st.integers(0, 1))) for v in draw(value_lists["bytes"])]
        elif kind == "float":
            values = [struct.pack("<f", v) for v in draw(value_lists["float"])]
            parts.append(_len(1, b"".join(values)) if draw(st.booleans())
                         else b"".join(_tag(1, 5) + v for v in values))
        else:
            values = [_varint(v, draw(st.integers(0, 1))) for v in draw(value_lists["int"])]
            parts.append(_len(1, b"".join(values)) if draw(st.booleans())
                         else b"".join(_tag(1, 0) + v for v in values))
    return b"".join(parts)


@st.composite
def feature_messages(draw):
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        choice = draw(st.sampled_from(["list", "list", "unknown", "wrong wire type"]))
        if choice == "list":
            kind = draw(st.sampled_from(KINDS))
            parts.append(_len({"bytes": 1, "float": 2, "int": 3}[kind], draw(value_list(kind))))
        elif choice == "unknown":
            parts.append(draw(unknown_fields()))
        else:
            parts.append(_tag(draw(st.integers(1, 3)), 0) + b"\x05")
    return b"".join(parts)


keys = st.one_of(
    st.sampled_from(NAMES).map(str.encode),
    st.binary(max_size=4),  # often not UTF-8
    st.sampled_from([b"\xc3\xa9", b"\xe6\x97\xa5", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"\xc0\xaf"]),
)


@st.composite
def entries(draw):
    fields = [_len(1, k) for k in draw(st.lists(keys, max_size=2))]
    fields += [_len(2, v) for v in draw(st.lists(feature_messages(), max_size=2))]
    fields += draw(st.lists(unknown_fields(), max_size=1))
    return b"".join(draw(st.permutations(fields)))


@st.composite
def wire_examples(draw):
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        parts.append(_len(1, b"".join(_len(1, e) for e in draw(st.lists(entries(), max_size=5)))))
    parts += draw(st.lists(unknown_fields(), max_size=2))
    return b"".join(draw(st.permutations(parts)))


@FUZZ
@given(st.lists(wire_examples(), min_size=1, max_size=6), requests)
def test_wire_level_examples_decode_as_protobuf_parses_them(records, features):
    _check(records, features)


# ---- damage --------------------------------------------------------------------------------------


@st.composite
def damaged(draw):
    record = bytearray(draw(st.one_of(examples(), wire_examples())))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, len(record)))
        if how == "flip" and at < len(record):
            record[at] ^= draw(st.integers(1, 255))
        elif how == "truncate":
            del record[at:]
        elif how == "insert":
            record[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif at < len(record):
            del record[at]
    return bytes(record)


@FUZZ
@given(st.lists(st.one_of(damaged(), st.binary(max_size=40), examples()), min_size=1, max_size=6), requests)
def test_damaged_records_are_refused_exactly_when_protobuf_refuses_them(records, features):
    _check(records, features)


# ---- a file's first row: all its features --------------------------------------------------------


def _comparable(batch):
    kinds = {pa.float32(): "float", pa.int64(): "int", pa.large_binary(): "bytes"}
    return [
        (field.name, field.type, [_values(v, kinds.get(getattr(field.type, "value_type", None)))
                                  for v in column.to_pylist()])
        for field, column in zip(batch.schema, batch.columns)
    ]


@FUZZ
@given(st.one_of(examples(), wire_examples(), damaged()))
def test_first_example_has_all_features_as_tfx_bsl_decodes_them(record):
    piece = _piece([record, BASE])
    try:
        expected = GENERAL.DecodeBatch([record])
    except RuntimeError:
        with pytest.raises(tfrecord.ExampleError, match="^record 0 at byte 0 is not a tf.train.Example: "):
            tfrecord.decode_first_example(piece)
        return
    got = tfrecord.decode_first_example(piece)
    assert got.schema == expected.schema
    assert got.num_rows == expected.num_rows == 1
    assert _comparable(got) == _comparable(expected)


# ---- edges, each checked against the reference (which must see both outcomes) ------------------


def _example(*entries):
    return _len(1, b"".join(_len(1, e) for e in entries))


def _entry(key, feature):
    return _len(1, key) + _len(2, feature)


def _groups(depth):
    return _tag(9, 3) * depth + _tag(9, 4) * depth


FLOAT_1 = _len(2, _len(1, struct.pack("<f", 1.0)))
INT_1 = _len(3, _len(1, b"\x01"))
BASE = _example(_entry(b"logits", FLOAT_1))


EDGES = {
    # protobuf's recursion limit (100) counts messages and groups
    "groups 100 deep in Example": (BASE + _groups(100), BASE + _groups(101)),
    "groups 97 deep in Feature": (
        _example(_entry(b"logits", FLOAT_1 + _groups(97))),
        _example(_entry(b"logits", FLOAT_1 + _groups(98))),
    ),
    "groups 96 deep in FloatList": (
        _example(_entry(b"logits", _len(2, _len(1, b"\0\0\x80?") + _groups(96)))),
        _example(_entry(b"logits", _len(2, _len(1, b"\0\0\x80?") + _groups(97)))),
    ),
    "tags of 5 bytes at most": (BASE + _tag(9, 0, extra=4) + b"\x01", BASE + _tag(9, 0, extra=5) + b"\x01"),
    "varints of 10 bytes at most": (BASE + _tag(9, 0) + _varint(3, extra=9), BASE + _tag(9, 0) + _varint(3, extra=10)),
    "lengths of 5 bytes at most": (BASE + _tag(9, 2) + _varint(1, extra=4) + b"x",
                                   BASE + _tag(9, 2) + _varint(1, extra=5) + b"x"),
    "packed floats in whole values": (
        _example(_entry(b"logits", _len(2, _len(1, bytes(8))))),
        _example(_entry(b"logits", _len(2, _len(1, bytes(7))))),
    ),
    "end-group tags only in their group": (BASE + _tag(9, 3) + _tag(9, 4), BASE + _tag(9, 3) + _tag(8, 4)),
    "field number 0": (BASE + _tag(9, 0) + b"\x00", BASE + _tag(0, 0) + b"\x00"),
    "wire types 0-5": (BASE + _tag(9, 5) + bytes(4), BASE + _tag(9, 6) + bytes(4)),
    "UTF-8 names": (_example(_entry("日本".encode(), FLOAT_1)), _example(_entry(b"\xe6\x97", FLOAT_1))),
    "no surrogates in names": (_example(_entry(b"\xed\x9f\xbf", FLOAT_1)), _example(_entry(b"\xed\xa0\x80", FLOAT_1))),
    "no overlong UTF-8": (_example(_entry(b"\xc2\x80", FLOAT_1)), _example(_entry(b"\xc1\xbf", FLOAT_1))),
    "int64 varints fit 10 bytes": (
        _example(_entry(b"label", _len(3, _len(1, b"\xff" * 9 + b"\x7f")))),
        _example(_entry(b"label", _len(3, _len(1, b"\xff" * 10 + b"\x01")))),
    ),
    "bytes values within their list": (
        _example(_entry(b"id", _len(1, _len(1, b"abc")))),
        _example(_entry(b"id", _len(1, _tag(1, 2) + b"\x05abc"))),
    ),
}


@pytest.mark.parametrize("case", EDGES, ids=list(EDGES))
def test_edges_of_the_wire_format(case):
    accepted, refused = EDGES[case]
    features = {"logits": "float", "label": "int", "id": "bytes"}
    assert _reference_row(accepted, "logits", "float") != MALFORMED
    assert _reference_row(refused, "logits", "float") == MALFORMED
    assert _check([accepted], features).malformed is None
    assert _check([accepted, refused], features).malformed is not None


NUL_NAMES = {
    "a name ends at a NUL byte": _example(_entry(b"\x00ogits", FLOAT_1), _entry(b"l\x00gits", FLOAT_1)),
    "two names become one": _example(_entry(b"a\x00b", FLOAT_1), _entry(b"a\x00c", INT_1)),
    "in the order of the whole names": _example(_entry(b"b\x00", FLOAT_1), _entry(b"a", INT_1), _entry(b"a\x00", INT_1)),
}


@pytest.mark.parametrize("case", NUL_NAMES, ids=list(NUL_NAMES))
def test_first_example_names_end_at_nul_as_in_tfx_bsl(case):
    record = NUL_NAMES[case]
    got, expected = tfrecord.decode_first_example(_piece([record])), GENERAL.DecodeBatch([record])
    assert got.schema == expected.schema
    assert _comparable(got) == _comparable(expected)


MERGES = {
    "a later entry replaces an earlier one": _example(
        _entry(b"logits", FLOAT_1), _entry(b"logits", _len(2, _len(1, struct.pack("<ff", 2, 3))))),
    "values of one entry are merged": _len(1, _len(1, _len(1, b"logits") + _len(2, FLOAT_1) + _len(2, FLOAT_1))),
    "a key after the value counts": _len(1, _len(1, _len(2, FLOAT_1) + _len(1, b"logits"))),
    "the last key counts": _len(1, _len(1, _len(1, b"logits") + _len(1, b"id") + _len(2, FLOAT_1))),
    "another kind replaces the list": _example(_entry(b"logits", FLOAT_1 + _len(3, _len(1, b"\x05")) + FLOAT_1)),
    "two features fields are merged": BASE + _example(_entry(b"label", _len(3, _len(1, b"\x01")))),
    "an entry without a value has no kind": _example(_entry(b"logits", FLOAT_1), _len(1, b"logits")),
    "an entry without a key is named ''": _len(1, _len(1, _len(2, FLOAT_1))),
}


@pytest.mark.parametrize("case", MERGES, ids=list(MERGES))
def test_protobuf_merge_rules(case):
    _check([MERGES[case], BASE], {"logits": "float", "label": "int", "id": "bytes", "": "float"})


def test_large_lists_and_values_across_many_records():
    rng = np.random.default_rng(1)
    records = []
    for i in range(2000):
        example = tf.train.Example()
        example.features.feature["logits"].float_list.value.extend(rng.normal(size=i % 300))
        example.features.feature["id"].bytes_list.value.extend([bytes(rng.integers(0, 256, i % 50, dtype=np.uint8))])
        records.append(example.SerializeToString())
    _check(records, {"logits": "float", "id": "bytes", "label": "int"}, split=777)


def test_bad_arguments_are_errors_not_crashes():
    piece = _piece([BASE])
    with pytest.raises(ValueError, match="kind must be"):
        tfrecord.decode_examples(piece, {"logits": "double"})
    with pytest.raises(ValueError, match="does not hold the whole records"):
        _tfrecord.decode_examples([(_frame([BASE])[:-1], 0, 1)], [])
    with pytest.raises(ValueError, match="does not hold the whole records"):
        _tfrecord.decode_examples([(_frame([BASE]), 0, 2)], [])
    with pytest.raises(ValueError, match="within its buffer"):
        _tfrecord.decode_examples([(b"", 1, 0)], [])
