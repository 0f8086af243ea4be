"""Reading scored examples as Arrow record batches.

Both formats are read by DoFns over the matched files, so the same reading
works on every runner (Beam's DaskRunner cannot run ReadFromParquet's
splittable read) and every batch knows its file and the index of its first
row in that file, which bad-input errors need.

- Parquet: each file is cut into ranges of whole row groups (from the footer
  only), ranges are redistributed with Reshuffle, and each range is read in
  batches of `batch_size` rows with only the needed columns.
- TFRecord (tf.train.Example): tf.data reads a whole file in batches of
  serialized records (CRC-checked, C++), and tfx-bsl's
  ExamplesToRecordBatchDecoder decodes each batch to Arrow. Beam's per-record
  ReadFromTFRecord is several times slower here.
"""

import re
import typing

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.evaluate import COUNTER_NAMESPACE

DEFAULT_BATCH_SIZE = 65536
# Row groups are grouped into read ranges of about this many rows.
RANGE_ROWS = 1 << 20
FORMATS = ("parquet", "tfrecord")


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


class InputError(ValueError):
    """A file that cannot be read or matched."""


def infer_format(pattern, paths):
    """`parquet` or `tfrecord` from the file extension."""
    for name in [pattern] + list(paths):
        lower = name.lower()
        if lower.endswith((".parquet", ".parq", ".pq")):
            return "parquet"
        if any(ext in lower for ext in (".tfrecord", ".tfrecords", ".tfr")):
            return "tfrecord"
    raise InputError(
        f"--input {pattern}: cannot infer the format from the file names; pass --format "
        f"({' or '.join(FORMATS)})"
    )


def match_files(pattern):
    """Sorted paths matched by a local or gs:// pattern; an error if none."""
    try:
        result = FileSystems.match([pattern])[0]
    except Exception as e:  # Beam raises BeamIOError, wrapping the cause
        raise InputError(f"--input {pattern}: cannot list files: {e}") from e
    paths = sorted(m.path for m in result.metadata_list)
    if not paths:
        raise InputError(f"--input {pattern}: no files matched")
    return paths


def _open_parquet(path):
    # pyarrow reads local files natively (faster than a Python file object);
    # anything else (gs://, ...) goes through Beam's FileSystems.
    if FileSystems.get_scheme(path) in (None, "file"):
        return pq.ParquetFile(path)
    return pq.ParquetFile(FileSystems.open(path))


class SplitParquetFile(beam.DoFn):
    """path -> ReadRanges of whole row groups, from the footer alone."""

    def process(self, path):
        try:
            metadata = _open_parquet(path).metadata
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
            yield SourceBatch(path, 0, None, f"not a readable Parquet file: {e}")
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
    """ReadRange -> SourceBatch of the needed columns (all when None)."""

    def __init__(self, columns, batch_size=DEFAULT_BATCH_SIZE):
        self._columns = None if columns is None else list(columns)
        self._batch_size = batch_size
        self._input_bytes = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "input_bytes")

    def process(self, element):
        if isinstance(element, SourceBatch):  # the file's footer was unreadable
            yield element
            return
        path, row = element.path, element.first_row
        try:
            parquet_file = _open_parquet(path)
            columns = None  # all of them
            if self._columns is not None:
                # Missing columns are left for the evaluation to name.
                names = set(parquet_file.schema_arrow.names)
                columns = [c for c in self._columns if c in names]
            for batch in parquet_file.iter_batches(
                batch_size=self._batch_size, row_groups=list(element.row_groups), columns=columns
            ):
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

    With a `feature_spec` ({name: (dtype, length)}, see dense_feature_spec)
    each batch is parsed by tf.io.parse_example into dense columns, about
    2.5x faster than the general decoder; a batch that does not fit the spec
    (a missing feature, another length or type) is decoded by tfx-bsl's
    ExamplesToRecordBatchDecoder instead, so the evaluation can name the bad
    row. Without a spec every batch is decoded that way, with all features.
    """

    def __init__(self, batch_size=DEFAULT_BATCH_SIZE, feature_spec=None):
        self._batch_size = batch_size
        self._feature_spec = dict(feature_spec) if feature_spec else None
        self._input_bytes = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "input_bytes")

    def setup(self):
        # Imported here: only the TFRecord path pays for TensorFlow.
        import tensorflow as tf
        from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

        self._tf = tf
        self._decoder = ExamplesToRecordBatchDecoder()
        self._parse_spec = None
        if self._feature_spec:
            self._parse_spec = {
                name: tf.io.FixedLenFeature([length], tf.as_dtype(dtype))
                for name, (dtype, length) in self._feature_spec.items()
            }

    def _decode(self, records):
        tf = self._tf
        if self._parse_spec is not None:
            try:
                parsed = tf.io.parse_example(records, self._parse_spec)
            except tf.errors.InvalidArgumentError:
                pass  # not this spec's shape: the general decoder shows where
            else:
                return pa.RecordBatch.from_pydict(
                    {name: _dense_to_arrow(tensor.numpy()) for name, tensor in parsed.items()}
                )
        return self._decoder.DecodeBatch(records.numpy().tolist())

    def process(self, path):
        tf = self._tf
        compression = "GZIP" if path.endswith(".gz") else ""
        dataset = (
            tf.data.TFRecordDataset(path, compression_type=compression, buffer_size=8 << 20)
            .batch(self._batch_size)
            .prefetch(1)  # read the next batch while this one is evaluated
        )
        first_row = 0
        consumed = 0  # bytes of the records read, with their 16 framing bytes
        try:
            for records in dataset:
                batch = self._decode(records)
                yield SourceBatch(path, first_row, batch)
                first_row += batch.num_rows
                consumed += int(tf.reduce_sum(tf.strings.length(records))) + 16 * batch.num_rows
        except Exception as e:  # DataLossError (bad CRC, truncated), decode errors
            yield SourceBatch(
                path, first_row, None,
                f"cannot read TFRecord from record {first_row} on: {_tf_error_text(e)}",
            )
            return
        size = _file_size(path)
        if not compression and size is not None and consumed != size:
            # tf.data ends quietly at a record header cut short: never lose it.
            yield SourceBatch(
                path, first_row, None,
                f"{size - consumed} bytes after record {first_row - 1} are not a whole "
                "record (truncated file?)",
            )
            return
        self._input_bytes.inc(size or 0)


def _tf_error_text(error):
    """A TF error's message without its op plumbing."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", message)
    return re.sub(r"' failed with .*$", "", message).strip()


def _dense_to_arrow(values):
    """[n, length] from parse_example -> large_list<T>, as tfx-bsl decodes it.

    Both decoding paths give the same Arrow types, so batches of either kind
    mix freely downstream (predictions' passthrough columns, for one).
    """
    rows, length = values.shape
    flat = values.reshape(-1)
    array = pa.array(flat, type=pa.large_binary()) if flat.dtype == object else pa.array(flat)
    offsets = pa.array(np.arange(0, rows * length + 1, length, dtype=np.int64))
    return pa.LargeListArray.from_arrays(offsets, array)


def dense_feature_spec(batch, columns):
    """{name: (dtype, length)} of `columns` from a decoded first row, or None.

    None when a column is missing there or is not one list of numbers or
    bytes: such data is decoded by the general decoder throughout.
    """
    dtypes = {pa.float32(): "float32", pa.int64(): "int64", pa.large_binary(): "string"}
    spec = {}
    for name in columns:
        index = batch.schema.get_field_index(name)
        if index < 0:
            return None
        column = batch.column(index)
        dtype = dtypes.get(getattr(column.type, "value_type", None))
        length = len(column[0].values) if column.is_valid()[0].as_py() else 0
        if dtype is None or length == 0:
            return None
        spec[name] = (dtype, length)
    return spec


def _file_size(path):
    try:
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except Exception:  # a file system that cannot tell: the check is skipped
        return None


def first_batch(path, file_format):
    """The first row of a file as a record batch, read as the pipeline reads it."""
    if file_format == "parquet":
        metadata = _open_parquet(path).metadata
        first_group = ReadRange(path, (0,), 0, metadata.row_group(0).num_rows if metadata.num_row_groups else 0)
        reader = ReadParquetRange(columns=None, batch_size=1)
        sources = reader.process(first_group) if metadata.num_row_groups else []
    else:
        reader = ReadTFRecordFile(batch_size=1)
        reader.setup()
        sources = reader.process(path)
    for source in sources:
        if source.error:
            raise InputError(f"{path}: {source.error}")
        return source.batch
    return None


class ReadBatches(beam.PTransform):
    """Matched file paths -> PCollection of SourceBatch."""

    def __init__(self, paths, file_format, columns, batch_size=DEFAULT_BATCH_SIZE, feature_spec=None):
        super().__init__()
        self._paths = list(paths)
        self._format = file_format
        self._columns = columns
        self._batch_size = batch_size
        self._feature_spec = feature_spec  # TFRecord: dense parsing of these columns

    def expand(self, pbegin):
        files = pbegin | "Files" >> beam.Create(self._paths)
        if self._format == "parquet":
            ranges = (
                files
                | "SplitParquet" >> beam.ParDo(SplitParquetFile())
                | "SpreadRanges" >> beam.Reshuffle()
            )
            return ranges | "ReadParquet" >> beam.ParDo(
                ReadParquetRange(self._columns, self._batch_size)
            )
        return (
            files
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadTFRecord" >> beam.ParDo(ReadTFRecordFile(self._batch_size, self._feature_spec))
        )
