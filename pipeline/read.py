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
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

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


class ReadTFRecordFile(beam.DoFn):
    """path -> SourceBatch of decoded tf.train.Examples (all features)."""

    def __init__(self, batch_size=DEFAULT_BATCH_SIZE):
        self._batch_size = batch_size

    def setup(self):
        # Imported here: only the TFRecord path pays for TensorFlow.
        import tensorflow as tf
        from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

        self._tf = tf
        self._decoder = ExamplesToRecordBatchDecoder()

    def process(self, path):
        tf = self._tf
        compression = "GZIP" if path.endswith(".gz") else ""
        dataset = tf.data.TFRecordDataset(
            path, compression_type=compression, buffer_size=8 << 20
        ).batch(self._batch_size)
        first_row = 0
        try:
            for records in dataset.as_numpy_iterator():
                batch = self._decoder.DecodeBatch(records.tolist())
                yield SourceBatch(path, first_row, batch)
                first_row += batch.num_rows
        except Exception as e:  # DataLossError (bad CRC, truncated), decode errors
            message = getattr(e, "message", None) or str(e)
            # Drop TF's op plumbing ({{function_node ...}}, [Op:...] name:).
            message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", message)
            yield SourceBatch(
                path, first_row, None,
                f"cannot read TFRecord from record {first_row} on: {message.strip()}",
            )


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

    def __init__(self, paths, file_format, columns, batch_size=DEFAULT_BATCH_SIZE):
        super().__init__()
        self._paths = list(paths)
        self._format = file_format
        self._columns = columns
        self._batch_size = batch_size

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
            | "ReadTFRecord" >> beam.ParDo(ReadTFRecordFile(self._batch_size))
        )
