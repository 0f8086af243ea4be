"""Reading TFRecord without TensorFlow.

The framing (pipeline.tfrecord over the C extension) must give exactly the
records tf.data gives and refuse damaged files as TensorFlow does; the
selective decoding (only the needed features) must equal tfx-bsl's general
decoding.
"""

import os

import google_crc32c
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from pipeline import _tfrecord, tfrecord
from pipeline.read import ReadTFRecordFile, _map_ahead, feature_types, first_batch
from tests.datafiles import tfrecord_record_offsets, write_tfrecord

COLUMNS = ["logits", "label", "weight"]


def _random_records(seed=0, n=300):
    """Payloads of many sizes: empty, 1-5000 bytes, and one of 300 kB."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 5000, n)
    sizes[[0, 17]] = 0
    sizes[100] = 300_000
    return [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes]


def _write_records(path, records, compression=None):
    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _tf_data_records(path, compression=""):
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type=compression)]


def _read_all(path, batch_size, chunk_bytes=tfrecord.CHUNK_BYTES):
    return list(tfrecord.read_record_batches(str(path), batch_size, chunk_bytes))


@pytest.mark.parametrize("batch_size, chunk_bytes", [(1, 1000), (7, 4096), (64, 100_000), (1000, 16 << 20)])
def test_framing_gives_the_records_tf_data_gives(tmp_path, batch_size, chunk_bytes):
    records = _random_records()
    path = _write_records(tmp_path / "r.tfrecord", records)
    batches = _read_all(path, batch_size, chunk_bytes)
    assert [r for b in batches for r in b] == records == _tf_data_records(path)
    assert all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size


def test_gzip_files_are_read_by_their_extension(tmp_path):
    records = _random_records(seed=1)
    path = _write_records(tmp_path / "r.tfrecord.gz", records, compression="GZIP")
    assert _tf_data_records(path, "GZIP") == records
    assert [r for b in _read_all(path, 50, 1000) for r in b] == records


def test_empty_file_has_no_records(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    assert _read_all(path, 10) == []


def test_masked_crc_is_tfrecords(tmp_path):
    rng = np.random.default_rng(3)
    for size in [0, 1, 7, 8, 9, 63, 64, 65, 1000]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        crc = google_crc32c.value(data)
        masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        assert _tfrecord.masked_crc32c(data) == masked, size


def _spoil(path, offset, *, flip=None, truncate=None):
    data = bytearray(open(path, "rb").read())
    if flip is not None:
        data[offset + flip] ^= 0xFF
    if truncate is not None:
        data = data[: offset + truncate]
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (dict(flip=2), "length CRC mismatch (corrupted file)"),
        (dict(flip=9), "length CRC mismatch (corrupted file)"),  # the length's CRC itself
        (dict(flip=12 + 10), "data CRC mismatch (corrupted file)"),
        (dict(flip="footer"), "data CRC mismatch (corrupted file)"),
        (dict(truncate=5), "is cut short: the file ends 5 bytes into its header (truncated file?)"),
        (dict(truncate=12 + 10), "is cut short: the file ends 22 bytes into its {size} bytes (truncated file?)"),
        (dict(truncate="footer"), "is cut short: the file ends {cut} bytes into its {size} bytes (truncated file?)"),
    ],
)
@pytest.mark.parametrize("batch_size, chunk_bytes", [(7, 1000), (1000, 16 << 20)])
def test_damage_is_named_after_every_whole_record_before_it(tmp_path, spoil, problem, batch_size, chunk_bytes):
    records = _random_records(seed=2)
    path = _write_records(tmp_path / "r.tfrecord", records)
    damaged = 150
    offset, length = tfrecord_record_offsets(path)[damaged]
    if spoil.get("flip") == "footer":
        spoil = dict(flip=12 + length + 1)
    if spoil.get("truncate") == "footer":
        spoil = dict(truncate=12 + length + 2)
    _spoil(path, offset, **spoil)
    reader = tfrecord.read_record_batches(path, batch_size, chunk_bytes)
    read = []
    with pytest.raises(tfrecord.TFRecordError) as error:
        for batch in reader:
            read += batch
    assert read == records[:damaged]
    assert error.value.records_before == damaged
    cut = spoil.get("truncate")
    expected = f"record {damaged} at byte {offset}" + ("" if cut else ": ")
    expected += (" " if cut else "") + problem.format(size=16 + length, cut=cut)
    assert str(error.value) == expected
    if cut is not None and cut < 12:
        # tf.data ends quietly in a cut header, dropping the tail unseen.
        assert _tf_data_records(path) == records[:damaged]
    else:
        with pytest.raises(tf.errors.DataLossError):  # TensorFlow refuses it too
            _tf_data_records(path)


def test_map_ahead_yields_what_came_before_a_failure():
    import concurrent.futures

    def items():
        yield from range(5)
        raise tfrecord.TFRecordError("broken", 5)

    seen = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        with pytest.raises(tfrecord.TFRecordError):
            for item, future in _map_ahead(pool, lambda x: x * 10, items(), 2):
                seen.append((item, future.result()))
    assert seen == [(i, i * 10) for i in range(5)]


# ---- decoding -----------------------------------------------------------------------------


def _read(path, types, batch_size):
    reader = ReadTFRecordFile(batch_size=batch_size, feature_types=types)
    reader.setup()
    try:
        return list(reader.process(path))
    finally:
        reader.teardown()


@pytest.fixture()
def scores(tmp_path):
    rng = np.random.default_rng(7)
    n = 1000
    columns = {
        "logits": rng.normal(size=n).astype(np.float32),
        "label": (rng.random(n) < 0.4).astype(np.int64),
        "weight": rng.random(n).astype(np.float32),
        "multi": rng.normal(size=(n, 3)).astype(np.float32),
        "country": np.array(["de", "fr"])[rng.integers(0, 2, n)],
    }
    return tmp_path, columns


def test_selective_decoding_equals_general_decoding(scores):
    tmp_path, columns = scores
    path = write_tfrecord(str(tmp_path / "a.tfrecord"), columns)
    wanted = COLUMNS + ["multi", "country"]
    types = feature_types(first_batch(path, "tfrecord"), wanted)
    assert types == {"logits": "float", "label": "int", "weight": "float", "multi": "float", "country": "bytes"}
    selective = _read(path, types, 300)
    general = _read(path, None, 300)
    assert [s.first_row for s in selective] == [0, 300, 600, 900]
    for a, b in zip(selective, general):
        assert a.error is None and b.error is None
        assert a.batch.schema.names == wanted
        assert a.batch.equals(b.batch.select(wanted)), (a.batch.schema, b.batch.schema)


def test_missing_feature_is_a_null(scores):
    tmp_path, columns = scores
    weights = list(columns["weight"])
    weights[450] = None  # write_tfrecord leaves the feature out
    path = write_tfrecord(str(tmp_path / "b.tfrecord"), dict(columns, weight=weights))
    sources = _read(path, feature_types(first_batch(path, "tfrecord"), COLUMNS), 300)
    weight = pa.concat_arrays([s.batch.column(s.batch.schema.get_field_index("weight")) for s in sources])
    assert weight.null_count == 1 and not weight.is_valid()[450].as_py()
    assert sum(s.batch.num_rows for s in sources) == 1000


def test_batch_of_another_type_is_decoded_generally(scores):
    """Rows 300-599 hold integer weights: their batch comes from the general decoder."""
    tmp_path, columns = scores
    parts = []
    for start, stop, dtype in [(0, 300, np.float32), (300, 600, np.int64), (600, 1000, np.float32)]:
        part = {k: v[start:stop] for k, v in columns.items()}
        part["weight"] = (part["weight"] * 10).astype(dtype)
        parts.append(write_tfrecord(str(tmp_path / f"part{start}.tfrecord"), part))
    path = str(tmp_path / "mixed.tfrecord")
    with open(path, "wb") as out:
        for part in parts:
            out.write(open(part, "rb").read())
    sources = _read(path, feature_types(first_batch(path, "tfrecord"), COLUMNS), 300)
    assert [s.error for s in sources] == [None] * 4
    types = [s.batch.schema.field("weight").type.value_type for s in sources]
    assert types == [pa.float32(), pa.int64(), pa.float32(), pa.float32()]
    assert "multi" in sources[1].batch.schema.names  # all features, from the general decoder


@pytest.mark.parametrize("types", [None, {"logits": "float"}], ids=["all features", "selected"])
def test_a_record_that_is_not_an_example_is_named_after_the_records_before_it(tmp_path, types):
    good = tf.train.Example()
    good.features.feature["logits"].float_list.value.append(0.5)
    records = [good.SerializeToString()] * 3 + [b"\xff\x01garbage"] + [good.SerializeToString()]
    path = _write_records(tmp_path / "junk.tfrecord", records)
    offset = tfrecord_record_offsets(path)[3][0]
    sources = _read(path, types, 300)
    assert [s.first_row for s in sources] == [0, 3]
    assert sources[0].batch.column("logits").to_pylist() == [[0.5]] * 3
    assert sources[1].batch is None
    assert sources[1].error == (
        f"cannot read TFRecord: record 3 at byte {offset} is not a tf.train.Example: "
        "invalid wire type (byte 0 of its data)"
    )


def test_no_types_when_the_first_row_lacks_a_column(scores):
    tmp_path, columns = scores
    path = write_tfrecord(str(tmp_path / "c.tfrecord"), columns)
    assert feature_types(first_batch(path, "tfrecord"), COLUMNS + ["nope"]) is None


def test_pipeline_does_not_import_tensorflow(tmp_path):
    """The TFRecord path never imports TensorFlow (3-6 s of start-up)."""
    import subprocess
    import sys

    path = write_tfrecord(str(tmp_path / "d.tfrecord"), {"logits": [0.5, -1.0], "label": [1, 0], "weight": [1.0, 2.0]})
    code = (
        "import sys; from pipeline import cli; "
        f"code = cli.main(['--input', {path!r}, '--output', {str(tmp_path / 'out')!r}]); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-2000:]


def test_read_ahead_gives_the_items_in_order_then_the_error_and_stops_with_its_caller():
    import concurrent.futures

    from pipeline.read import _read_ahead

    taken = []

    def items(fail_at):
        for i in range(5):
            if i == fail_at:
                raise OSError("disk on fire")
            taken.append(i)
            yield i

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert list(_read_ahead(pool, items(None))) == [0, 1, 2, 3, 4]
        got = []
        with pytest.raises(OSError, match="disk on fire"):
            for item in _read_ahead(pool, items(3)):
                got.append(item)
        assert got == [0, 1, 2]
        taken.clear()
        ahead = _read_ahead(pool, items(None))
        assert next(ahead) == 0
        ahead.close()  # the next item is cancelled, or waited for: none is taken after
        after_close = list(taken)
        assert after_close in ([0], [0, 1])
        pool.submit(lambda: None).result()  # the pool has nothing left running
        assert taken == after_close
