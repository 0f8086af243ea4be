"""The records of a TFRecord file, in batches, without TensorFlow.

The file is opened with Beam's FileSystems (any file system Beam knows;
compression from the extension, e.g. `.gz` for TFRecord's GZIP) and read in
large chunks; the C extension `pipeline._tfrecord` finds the records in each
chunk and checks both CRCs of every record, as TensorFlow's reader does.
Importing TensorFlow only to read the framing would cost 3-6 s per process.
"""

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline import _tfrecord

CHUNK_BYTES = 16 << 20


class TFRecordError(ValueError):
    """A damaged record; `records_before` records of the file were read whole."""

    def __init__(self, message, records_before):
        super().__init__(message)
        self.records_before = records_before


def read_record_batches(path, batch_size, chunk_bytes=CHUNK_BYTES):
    """Yields lists of at most `batch_size` serialized records, in file order.

    Every whole record before a damaged one is yielded first; then
    TFRecordError names the damaged record's index and byte offset (in the
    uncompressed stream).
    """
    batch = []
    count = 0  # records read
    buffer, pos = b"", 0  # unread bytes are buffer[pos:]
    offset = 0  # file offset of buffer[0]
    with FileSystems.open(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO
    ) as f:
        while True:
            records, pos, needed, problem = _tfrecord.split_records(buffer, pos, batch_size - len(batch))
            batch += records
            count += len(records)
            if problem:
                if batch:
                    yield batch
                raise TFRecordError(
                    f"record {count} at byte {offset + pos}: {problem} (corrupted file)", count
                )
            if len(batch) == batch_size:
                yield batch
                batch = []
                continue
            chunk = f.read(max(chunk_bytes, needed - (len(buffer) - pos)))
            if not chunk:
                break
            buffer, offset, pos = buffer[pos:] + chunk, offset + pos, 0
    left = len(buffer) - pos
    if left:
        if batch:
            yield batch
        what = "header" if needed == _tfrecord.HEADER_BYTES else f"{needed} bytes"
        raise TFRecordError(
            f"record {count} at byte {offset + pos} is cut short: the file ends "
            f"{left} bytes into its {what} (truncated file?)",
            count,
        )
    if batch:
        yield batch
