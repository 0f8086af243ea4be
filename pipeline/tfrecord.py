"""The records of a TFRecord file, in pieces, and their features as Arrow, without TensorFlow.

The file is opened with Beam's FileSystems (any file system Beam knows;
compression from the extension, e.g. `.gz` for TFRecord's GZIP) and read in
large chunks; the C extension `pipeline._tfrecord` finds the records in each
chunk and checks both CRCs of every record, as TensorFlow's reader does.
Importing TensorFlow only to read the framing would cost 3-6 s per process.

`decode_examples` decodes the features a run needs straight from the
records into Arrow buffers (pipeline/_example.c, a decoder of the
tf.train.Example wire format that accepts and refuses what protobuf does).
tfx-bsl's ExamplesToRecordBatchDecoder, given a schema of the same
features, gives the same columns but parses every record into a protobuf
message first: per record, about 1.5 us of CPU against 0.2 us here (CRC
checks 0.02-0.03 us; benchmarks/tfrecord_profile.py), which made decoding
the larger part of a TFRecord run.
"""

import typing

import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline import _tfrecord

CHUNK_BYTES = 16 << 20
# The Arrow value type of each feature kind, as tfx-bsl decodes them.
VALUE_TYPES = {"float": pa.float32(), "int": pa.int64(), "bytes": pa.large_binary()}


class TFRecordError(ValueError):
    """A damaged record; `records_before` records of the file were read whole."""

    def __init__(self, message, records_before):
        super().__init__(message)
        self.records_before = records_before


class Piece(typing.NamedTuple):
    """Whole, CRC-checked records of a file, in order, as they lie in the read chunks."""

    first_record: int  # index in the file of the first record
    offset: int  # its byte offset in the (uncompressed) file
    segments: tuple  # (chunk, start, count): `count` records at chunk[start:]
    count: int

    def records(self):
        """The records' data, as a list of bytes."""
        return [r for chunk, start, count in self.segments for r in _tfrecord.split_records(chunk, start, count)[0]]

    def record_offset(self, index):
        """Byte offset in the file of record `first_record + index`."""
        offset = self.offset
        for chunk, start, count in self.segments:
            if index < count:
                return offset + _tfrecord.frame_records(chunk, start, index)[1] - start
            index -= count
            offset += _tfrecord.frame_records(chunk, start, count)[1] - start
        raise IndexError(index)


def read_pieces(path, batch_size, chunk_bytes=CHUNK_BYTES):
    """Yields Pieces of `batch_size` records (the last may have fewer), in file order.

    Every whole record before a damaged one is yielded first; then
    TFRecordError names the damaged record's index and byte offset (in the
    uncompressed stream).
    """
    segments, in_piece, piece_offset = [], 0, 0
    count = 0  # records read
    buffer, pos = b"", 0  # unread bytes are buffer[pos:]
    offset = 0  # file offset of buffer[0]

    def piece():
        return Piece(count - in_piece, piece_offset, tuple(segments), in_piece)

    with FileSystems.open(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO
    ) as f:
        while True:
            if not in_piece:
                piece_offset = offset + pos
            records, end, needed, problem = _tfrecord.frame_records(buffer, pos, batch_size - in_piece)
            if records:
                segments.append((buffer, pos, records))
                in_piece += records
                count += records
            pos = end
            if problem:
                if in_piece:
                    yield piece()
                raise TFRecordError(f"record {count} at byte {offset + pos}: {problem} (corrupted file)", count)
            if in_piece == batch_size:
                yield piece()
                segments, in_piece = [], 0
                continue
            chunk = f.read(max(chunk_bytes, needed - (len(buffer) - pos)))
            if not chunk:
                break
            buffer, offset, pos = buffer[pos:] + chunk, offset + pos, 0
    left = len(buffer) - pos
    if left:
        if in_piece:
            yield piece()
        what = "header" if needed == _tfrecord.HEADER_BYTES else f"{needed} bytes"
        raise TFRecordError(
            f"record {count} at byte {offset + pos} is cut short: the file ends "
            f"{left} bytes into its {what} (truncated file?)",
            count,
        )
    if in_piece:
        yield piece()


def read_record_batches(path, batch_size, chunk_bytes=CHUNK_BYTES):
    """Yields lists of at most `batch_size` serialized records, in file order (see read_pieces)."""
    for piece in read_pieces(path, batch_size, chunk_bytes):
        yield piece.records()


class Decoded(typing.NamedTuple):
    """decode_examples' result."""

    batch: object  # pyarrow.RecordBatch of the records decoded (all, or those before `malformed`)
    records: int  # how many records that is
    mismatched: tuple  # features that have another kind in some record (null there)
    malformed: typing.Optional[str]  # why a record is not a tf.train.Example, naming it


def decode_examples(piece, feature_types):
    """The features {name: "float"|"int"|"bytes"} of a Piece's records as a RecordBatch.

    Columns as tfx-bsl's ExamplesToRecordBatchDecoder gives them:
    large_list<float32 | int64 | large_binary>, null where a record lacks
    the feature (or its Feature has no kind). A feature of another kind is
    null too, and named in `mismatched`. At the first record that is not a
    tf.train.Example, decoding stops: `malformed` names it, `batch` holds
    the records before it.
    """
    names = list(feature_types)
    count, columns, malformed = _tfrecord.decode_examples(
        piece.segments, [(name, feature_types[name]) for name in names]
    )
    arrays, mismatched = [], []
    for name, (validity, null_count, offsets, values, data, mismatched_rows) in zip(names, columns):
        arrays.append(_list_array(feature_types[name], count, validity, null_count, offsets, values, data))
        if mismatched_rows:
            mismatched.append(name)
    batch = pa.RecordBatch.from_arrays(arrays, names=names) if names else _no_columns(count)
    problem = None if malformed is None else _not_an_example(piece, *malformed)
    return Decoded(batch, count, tuple(mismatched), problem)


class ExampleError(ValueError):
    """A record that is not a tf.train.Example."""


def decode_first_example(piece):
    """All features of a Piece's first record, as tfx-bsl's decoder without a schema gives them.

    Columns in order of name, each name cut at a NUL byte; a feature whose
    Feature has no kind is a null column. ExampleError names the record if
    it is not a tf.train.Example.
    """
    chunk, start, _ = piece.segments[0]
    first = piece._replace(segments=((chunk, start, 1),), count=1)
    try:
        entries = _tfrecord.example_features(first.records()[0])
    except ValueError as e:
        raise ExampleError(_not_an_example(first, 0, e.args[1], e.args[0])) from None
    kinds = dict(entries)  # a later entry of a name replaces an earlier one
    names = sorted(kinds)
    batch = decode_examples(first, {name: kinds[name] for name in names if kinds[name]}).batch
    if not names:
        return _no_columns(1)
    columns = [batch.column(name) if kinds[name] else pa.nulls(1) for name in names]
    # tfx-bsl names its Arrow fields from C strings: a name ends at its first
    # NUL byte (two names may become one), in the order of the whole names.
    return pa.RecordBatch.from_arrays(columns, names=[name.partition("\0")[0] for name in names])


def _no_columns(rows):
    return pa.RecordBatch.from_struct_array(pa.array([{}] * rows, type=pa.struct([])))


def _not_an_example(piece, index, where, reason):
    return (
        f"record {piece.first_record + index} at byte {piece.record_offset(index)} is not a "
        f"tf.train.Example: {reason} (byte {where} of its data)"
    )


def _list_array(kind, rows, validity, null_count, offsets, values, data):
    value_type = VALUE_TYPES[kind]
    values = pa.py_buffer(values)
    if kind == "bytes":
        items = pa.Array.from_buffers(value_type, values.size // 8 - 1, [None, values, pa.py_buffer(data)])
    else:
        items = pa.Array.from_buffers(value_type, values.size // value_type.byte_width, [None, values])
    return pa.Array.from_buffers(
        pa.large_list(value_type), rows,
        [pa.py_buffer(validity) if null_count else None, pa.py_buffer(offsets)],
        null_count=null_count, children=[items],
    )
