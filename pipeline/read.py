"""Reading scored examples as Arrow record batches.

Both formats are read by DoFns over the matched files, so the same reading
works on every runner (Beam's DaskRunner cannot run ReadFromParquet's
splittable read) and every batch knows its file and the index of its first
row in that file, which bad-input errors need.

- Parquet: each file is cut into ranges of whole row groups (from the footer
  only), ranges are redistributed with Reshuffle, and each range is read in
  batches of `batch_size` rows with only the needed columns, the next batch
  on a thread of its own while the current one is evaluated.
- TFRecord (tf.train.Example): pipeline.tfrecord reads a whole file's
  records in batches (CRC-checked, in C, without importing TensorFlow, on a
  thread of its own) and decodes the needed features straight to Arrow (in
  C, on two threads; tfx-bsl's ExamplesToRecordBatchDecoder when all
  features are needed), while the main thread evaluates. Beam's
  per-record ReadFromTFRecord is several times slower here.
"""

import collections
import concurrent.futures
import os
import re
import struct
import threading
import typing

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline import _tfrecord, tfrecord
from pipeline.errors import UsageError
from pipeline.evaluate import COUNTER_NAMESPACE

DEFAULT_BATCH_SIZE = 65536
# Row groups are grouped into read ranges of about this many rows.
RANGE_ROWS = 1 << 20
FORMATS = ("parquet", "tfrecord")
# TFRecord: records decoded at a time, and threads decoding them.
DECODE_ROWS = 16384
DECODE_THREADS = 2
# TFRecord bytes read for a file's first row (more if it is longer).
FIRST_ROW_CHUNK_BYTES = 64 << 10


class SourceBatch(typing.NamedTuple):
    """A record batch and where it came from, or why a file could not be read.

    A file that fails to read yields one SourceBatch with `batch` None and
    `error` set (`first_row`: rows of that read range that came before the
    failure); the evaluation step then fails the job or reports the file,
    as the config's invalid_rows policy says.
    """

    path: str
    first_row: int  # index in the file of the batch's first row
    batch: object  # pyarrow.RecordBatch, or None with `error`
    error: typing.Optional[str] = None


class ReadRange(typing.NamedTuple):
    """Whole row groups of one Parquet file: rows [first_row, first_row + num_rows)."""

    path: str
    row_groups: tuple
    first_row: int
    num_rows: int


class InputError(UsageError):
    """A file that cannot be read or matched."""


# How each format's files are named (a compressed TFRecord: `.tfrecord.gz`).
_PARQUET_EXTENSIONS = (".parquet", ".parq", ".pq")
_TFRECORD_MARKS = (".tfrecord", ".tfrecords", ".tfr")
_GLOB_CHARACTERS = re.compile(r"[*?\[]")
# A directory's files, as Hadoop and pyarrow.dataset list them: without
# names starting with these (_SUCCESS, _temporary/, .part-0.crc, ...).
_HIDDEN_PREFIXES = ("_", ".")


def _format_of_name(path):
    lower = path.lower()
    if lower.endswith(_PARQUET_EXTENSIONS):
        return "parquet"
    if any(mark in lower for mark in _TFRECORD_MARKS):
        return "tfrecord"
    return None


def infer_format(patterns, paths):
    """`parquet` or `tfrecord` from the file names, else from the first file's bytes."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    named = {}
    for path in paths:
        named.setdefault(_format_of_name(path), path)
    named.pop(None, None)
    if len(named) > 1:
        examples = ", ".join(named[f] for f in FORMATS)
        raise InputError(f"--input {' '.join(patterns)}: both Parquet and TFRecord files ({examples}); "
                         "one format per run")
    if named:
        return next(iter(named))
    sniffed = sniff_format(paths[0]) if paths else None
    if sniffed:
        return sniffed
    raise InputError(
        f"--input {' '.join(patterns)}: cannot infer the format from the file names or the first "
        f"file's bytes; pass --format ({' or '.join(FORMATS)})"
    )


def match_files(patterns):
    """Every input file: each of `patterns` is a file pattern or a directory.

    A directory (local or gs://, with or without a trailing slash) means every
    file under it except names starting with `_` or `.`. Each pattern's paths
    are sorted; a path matched twice is read once. An error if a pattern
    matches nothing.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths = []
    for pattern in patterns:
        try:
            found = _match(pattern)
        except InputError:
            raise
        except Exception as e:  # Beam raises BeamIOError, wrapping the cause
            raise InputError(f"--input {pattern}: cannot list files: {e}") from e
        paths += found
    return list(dict.fromkeys(paths))


def _match(pattern):
    local = FileSystems.get_scheme(pattern) in (None, "file")
    if pattern.endswith("/") or (local and os.path.isdir(pattern)):
        return _directory_files(pattern)
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not paths and not local and not _GLOB_CHARACTERS.search(pattern):
        return _directory_files(pattern)  # an object store's "directory": a prefix
    if not paths:
        raise InputError(f"--input {pattern}: no files matched")
    return paths


def _directory_files(directory):
    root = directory.rstrip("/")
    files = []
    for metadata in FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list:
        relative = metadata.path[len(root):].strip("/")
        if metadata.path.endswith("/") or any(
            part.startswith(_HIDDEN_PREFIXES) for part in relative.split("/")
        ):
            continue  # a hidden or underscore name, or an object store's folder marker
        files.append(metadata.path)
    if not files:
        raise InputError(
            f"--input {directory}: no files in the directory (names starting with _ or . are skipped)"
        )
    return sorted(files)


# ---- what a file is, from its first bytes ------------------------------------------

_PARQUET_MAGIC = b"PAR1"
_FORMAT_NAMES = {"parquet": "Parquet", "tfrecord": "TFRecord"}


def _first_bytes(path):
    """The file's first bytes (decompressed as the readers decompress), b"" if unreadable."""
    try:
        with FileSystems.open(
            path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO
        ) as f:
            return f.read(_tfrecord.HEADER_BYTES)
    except Exception:  # unreadable: the reader names the problem
        return b""


def _format_of_bytes(head):
    if head[:4] == _PARQUET_MAGIC:
        return "parquet"
    if len(head) == _tfrecord.HEADER_BYTES and struct.unpack("<I", head[8:])[0] == _tfrecord.masked_crc32c(head[:8]):
        return "tfrecord"
    return None


def sniff_format(path):
    """'parquet' or 'tfrecord' from a file's first bytes; None if neither (or unreadable).

    Parquet starts with its magic; TFRecord with a record header whose
    length's masked CRC-32C matches (1 in 2**32 by chance).
    """
    return _format_of_bytes(_first_bytes(path))


def check_format(path, file_format):
    """InputError when the file is plainly of the other format (before the pipeline runs)."""
    sniffed = sniff_format(path)
    if sniffed and sniffed != file_format:
        raise InputError(f"{path}: {_not_a(file_format, sniffed)}")


_WHY_NOT = {
    "parquet": "it does not start with Parquet's magic PAR1",
    "tfrecord": "its first record header fails its CRC check",
}


def _not_a(file_format, sniffed):
    if sniffed and sniffed != file_format:
        why = f"it is a {_FORMAT_NAMES[sniffed]} file: --format {sniffed}"
    else:
        why = _WHY_NOT[file_format]
    return f"not a {_FORMAT_NAMES[file_format]} file ({why})"


def _parquet_error(path, error):
    """Why a Parquet footer could not be read: not Parquet at all, or damaged."""
    head = _first_bytes(path)
    if head and _format_of_bytes(head) != "parquet":
        return _not_a("parquet", _format_of_bytes(head))
    return f"not a readable Parquet file: {error}"


def _tfrecord_error(path, error):
    """A TFRecord framing error; at the first record's header: not TFRecord at all."""
    if error.records_before == 0:
        head = _first_bytes(path)
        if len(head) == _tfrecord.HEADER_BYTES and _format_of_bytes(head) != "tfrecord":
            return _not_a("tfrecord", _format_of_bytes(head))
    return f"cannot read TFRecord: {error}"


def _open_parquet(path, dictionary_columns=None):
    # pyarrow reads local files natively (faster than a Python file object);
    # anything else (gs://, ...) goes through Beam's FileSystems.
    source = path if FileSystems.get_scheme(path) in (None, "file") else FileSystems.open(path)
    return pq.ParquetFile(source, read_dictionary=dictionary_columns)


class SplitParquetFile(beam.DoFn):
    """path -> ReadRanges of whole row groups, from the footer alone."""

    def process(self, path):
        try:
            metadata = _open_parquet(path).metadata
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
            yield SourceBatch(path, 0, None, _parquet_error(path, e))
            return
        groups, first_row, rows = [], 0, 0
        for index in range(metadata.num_row_groups):
            groups.append(index)
            rows += metadata.row_group(index).num_rows
            if rows >= RANGE_ROWS:
                yield ReadRange(path, tuple(groups), first_row, rows)
                first_row += rows
                groups, rows = [], 0
        if groups:
            yield ReadRange(path, tuple(groups), first_row, rows)


class ReadParquetRange(beam.DoFn):
    """ReadRange -> SourceBatch of the needed columns (all when None).

    `dictionary_columns` (string columns only slicing reads) arrive
    dictionary-encoded, as Parquet stores them: slicing then needs no
    encoding of its own. The next batch is read on a thread of its own
    (pyarrow releases the GIL) while the current one is evaluated.
    """

    def __init__(self, columns, batch_size=DEFAULT_BATCH_SIZE, dictionary_columns=()):
        self._columns = None if columns is None else list(columns)
        self._batch_size = batch_size
        self._dictionary_columns = list(dictionary_columns) or None
        self._input_bytes = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "input_bytes")

    def setup(self):
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "read-parquet")

    def teardown(self):
        self._reader.shutdown()

    def process(self, element):
        if isinstance(element, SourceBatch):  # the file's footer was unreadable
            yield element
            return
        path, row = element.path, element.first_row
        try:
            parquet_file = _open_parquet(path, self._dictionary_columns)
            columns = None  # all of them
            if self._columns is not None:
                # Missing columns are left for the evaluation to name.
                names = set(parquet_file.schema_arrow.names)
                columns = [c for c in self._columns if c in names]
            batches = parquet_file.iter_batches(
                batch_size=self._batch_size, row_groups=list(element.row_groups), columns=columns
            )
            for batch in _read_ahead(self._reader, batches):
                yield SourceBatch(path, row, batch)
                row += batch.num_rows
        except Exception as e:  # a truncated or corrupt row group
            yield SourceBatch(path, row, None, f"cannot read Parquet row groups {list(element.row_groups)}: {e}")
            return
        if row - element.first_row != element.num_rows:
            # Never lose rows silently: the footer said how many there are.
            yield SourceBatch(
                path, row, None,
                f"read {row - element.first_row} rows of row groups {list(element.row_groups)}, "
                f"the footer says {element.num_rows}",
            )
            return
        self._input_bytes.inc(_compressed_bytes(parquet_file.metadata, element.row_groups, columns))


def _compressed_bytes(metadata, row_groups, columns):
    """Stored (compressed) bytes of the column chunks read (all columns when None)."""
    wanted = None if columns is None else set(columns)
    total = 0
    for index in row_groups:
        group = metadata.row_group(index)
        for j in range(group.num_columns):
            chunk = group.column(j)
            if wanted is None or chunk.path_in_schema.split(".")[0] in wanted:
                total += chunk.total_compressed_size
    return total


class ReadTFRecordFile(beam.DoFn):
    """path -> SourceBatch of decoded tf.train.Examples.

    pipeline.tfrecord reads the records (CRC-checked, without TensorFlow).
    With `feature_types` ({name: "float"|"int"|"bytes"}, see feature_types)
    only those features are decoded, by pipeline.tfrecord.decode_examples,
    about 7x less CPU than tfx-bsl's decoder; a batch where one has another
    type, or is absent from every record, is decoded with all features by
    tfx-bsl's ExamplesToRecordBatchDecoder instead, so the evaluation can
    name the bad row or column. Without `feature_types` every batch is
    decoded that way. Both decoders release the GIL, so batches are decoded
    on DECODE_THREADS threads while earlier ones are evaluated.
    """

    def __init__(self, batch_size=DEFAULT_BATCH_SIZE, feature_types=None):
        self._batch_size = batch_size
        self._feature_types = dict(feature_types) if feature_types else None
        self._input_bytes = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "input_bytes")

    def setup(self):
        self._decoders = threading.local()  # a tfx-bsl decoder must not be shared by threads
        self._pool = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, "decode-tfrecord")
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "read-tfrecord")

    def teardown(self):
        self._pool.shutdown()
        self._reader.shutdown()

    def _decode(self, piece):
        """(record batch of the piece's records, or of those before a malformed one; error or None)."""
        if self._feature_types:
            decoded = tfrecord.decode_examples(piece, self._feature_types)
            if decoded.malformed:
                return decoded.batch, decoded.malformed
            batch = decoded.batch
            if not decoded.mismatched and not any(c.null_count == len(c) for c in batch.columns):
                return batch, None
            # A feature of another type, or one none of these records has:
            # decoded generally, the evaluation names the row or the column.
        if not hasattr(self._decoders, "general"):
            from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

            self._decoders.general = ExamplesToRecordBatchDecoder()
        records = piece.records()
        try:
            return self._decoders.general.DecodeBatch(records), None
        except Exception as e:  # noqa: BLE001 - named below
            # Our decoder names a malformed record (with no features it only
            # parses), and the records before it are read; other errors (a
            # feature of two types) are tfx-bsl's, for the whole piece.
            check = tfrecord.decode_examples(piece, {})
            if check.malformed is None:
                return None, (
                    f"cannot decode records {piece.first_record}-{piece.first_record + piece.count - 1} "
                    f"as tf.train.Examples: {e}"
                )
            before = records[: check.records]
            return (self._decoders.general.DecodeBatch(before) if before else None), check.malformed

    def process(self, path):
        # Decoding in pieces of DECODE_ROWS keeps the decoder's working set
        # in cache.
        # The file is read and framed on a thread of its own (both release
        # the GIL) ahead of the decoding.
        pieces = _read_ahead(self._reader, tfrecord.read_pieces(path, min(self._batch_size, DECODE_ROWS)))
        first_row = 0
        try:
            for piece, decoded in _map_ahead(self._pool, self._decode, pieces, DECODE_THREADS):
                batch, error = decoded.result()
                if batch is not None and batch.num_rows:
                    yield SourceBatch(path, first_row, batch)
                    first_row += batch.num_rows
                if error:
                    yield SourceBatch(path, first_row, None, f"cannot read TFRecord: {error}")
                    return
        except tfrecord.TFRecordError as e:
            yield SourceBatch(path, e.records_before, None, _tfrecord_error(path, e))
            return
        except Exception as e:  # OSError, zlib.error: the file itself cannot be read
            yield SourceBatch(path, first_row, None, f"cannot read TFRecord: {e}")
            return
        self._input_bytes.inc(_file_size(path) or 0)


def _read_ahead(pool, items):
    """Yields the items of an iterator in order, the next one taken on `pool` while the caller works."""
    pending = pool.submit(next, items, None)
    try:
        while True:
            item = pending.result()  # raises what the iterator raised
            if item is None:
                return
            pending = pool.submit(next, items, None)
            yield item
    finally:  # when the caller stops early: the iterator is not left running
        if not pending.cancel():
            pending.exception()


def _map_ahead(pool, function, items, ahead):
    """Yields (item, future of function(item)) in order, `ahead` items in flight.

    When `items` raises, the items before are yielded first.
    """
    pending = collections.deque()
    try:
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) > ahead:
                yield pending.popleft()
    except Exception:
        while pending:
            yield pending.popleft()
        raise
    while pending:
        yield pending.popleft()


def feature_types(batch, columns):
    """{name: "float"|"int"|"bytes"} of `columns` in a decoded first row, or None.

    None when a column is missing there or has no type (an empty feature):
    then all features are decoded, as the first row's types are unknown.
    """
    kinds = {pa.float32(): "float", pa.int64(): "int", pa.large_binary(): "bytes"}
    types = {}
    for name in columns:
        index = batch.schema.get_field_index(name)
        kind = kinds.get(getattr(batch.schema.field(index).type, "value_type", None)) if index >= 0 else None
        if kind is None:
            return None
        types[name] = kind
    return types


def _file_size(path):
    try:
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except Exception:  # a file system that cannot tell: counted as 0
        return None


def first_batch(path, file_format):
    """The first row of a file as a record batch, read as the pipeline reads it."""
    if file_format == "parquet":
        metadata = _open_parquet(path).metadata
        first_group = ReadRange(path, (0,), 0, metadata.row_group(0).num_rows if metadata.num_row_groups else 0)
        reader = ReadParquetRange(columns=None, batch_size=1)
        reader.setup()
        try:
            return _first_source_batch(path, reader.process(first_group) if metadata.num_row_groups else [])
        finally:
            reader.teardown()
    else:
        # Decoded as ReadTFRecordFile decodes without feature types (all
        # features, as tfx-bsl does), by our decoder: no tfx-bsl to import.
        try:
            for piece in tfrecord.read_pieces(path, 1, chunk_bytes=FIRST_ROW_CHUNK_BYTES):
                return tfrecord.decode_first_example(piece)
        except Exception as e:  # TFRecordError, ExampleError, OSError, zlib.error
            raise InputError(f"{path}: cannot read TFRecord: {e}") from e
        return None


def _first_source_batch(path, sources):
    for source in sources:
        if source.error:
            raise InputError(f"{path}: {source.error}")
        return source.batch
    return None


class ReadBatches(beam.PTransform):
    """Matched file paths -> PCollection of SourceBatch."""

    def __init__(self, paths, file_format, columns, batch_size=DEFAULT_BATCH_SIZE, feature_types=None,
                 dictionary_columns=()):
        super().__init__()
        self._paths = list(paths)
        self._format = file_format
        self._columns = columns
        self._batch_size = batch_size
        self._feature_types = feature_types  # TFRecord: decode only these features
        self._dictionary_columns = dictionary_columns  # Parquet: read dictionary-encoded

    def expand(self, pbegin):
        files = pbegin | "Files" >> beam.Create(self._paths)
        if self._format == "parquet":
            ranges = (
                files
                | "SplitParquet" >> beam.ParDo(SplitParquetFile())
                | "SpreadRanges" >> beam.Reshuffle()
            )
            return ranges | "ReadParquet" >> beam.ParDo(
                ReadParquetRange(self._columns, self._batch_size, self._dictionary_columns)
            )
        return (
            files
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadTFRecord" >> beam.ParDo(ReadTFRecordFile(self._batch_size, self._feature_types))
        )
