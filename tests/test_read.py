"""The TFRecord reader's two decoding paths give the same record batches."""

import numpy as np
import pyarrow as pa
import pytest

from pipeline.read import ReadTFRecordFile, dense_feature_spec, first_batch
from tests.datafiles import write_tfrecord

COLUMNS = ["logits", "label", "weight"]


def _read(path, spec, batch_size):
    reader = ReadTFRecordFile(batch_size=batch_size, feature_spec=spec)
    reader.setup()
    return list(reader.process(path))


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


def test_dense_path_equals_general_decoder(scores):
    tmp_path, columns = scores
    path = str(tmp_path / "a.tfrecord")
    write_tfrecord(path, columns)
    wanted = COLUMNS + ["multi", "country"]
    spec = dense_feature_spec(first_batch(path, "tfrecord"), wanted)
    assert spec == {
        "logits": ("float32", 1), "label": ("int64", 1), "weight": ("float32", 1),
        "multi": ("float32", 3), "country": ("string", 1),
    }
    dense = _read(path, spec, 300)
    general = _read(path, None, 300)
    assert [s.first_row for s in dense] == [0, 300, 600, 900]
    for a, b in zip(dense, general):
        assert a.error is None and b.error is None
        assert a.batch.select(wanted).equals(b.batch.select(wanted)), (a.batch.schema, b.batch.schema)


def test_batch_that_does_not_fit_the_spec_falls_back(scores):
    """A row missing a feature: that batch is decoded generally (a null there)."""
    tmp_path, columns = scores
    path = str(tmp_path / "b.tfrecord")
    weights = list(columns["weight"])
    weights[450] = None  # write_tfrecord leaves the feature out
    write_tfrecord(path, dict(columns, weight=weights))
    spec = dense_feature_spec(first_batch(path, "tfrecord"), COLUMNS)
    sources = _read(path, spec, 300)
    assert [s.first_row for s in sources] == [0, 300, 600, 900]
    weight = pa.concat_arrays([s.batch.column(s.batch.schema.get_field_index("weight")) for s in sources])
    assert weight.null_count == 1 and not weight.is_valid()[450].as_py()
    assert sum(s.batch.num_rows for s in sources) == 1000


def test_no_spec_when_the_first_row_lacks_a_column(scores):
    tmp_path, columns = scores
    path = str(tmp_path / "c.tfrecord")
    write_tfrecord(path, columns)
    assert dense_feature_spec(first_batch(path, "tfrecord"), COLUMNS + ["nope"]) is None
