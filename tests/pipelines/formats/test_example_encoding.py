"""The vectorised tf.Example encoder writes what tfx_bsl's encoder writes, framed as TFRecords."""

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from pipelines.formats import example_encoding
from pipelines.formats.tfrecord_records import frame as frame_tfrecords

pytestmark = pytest.mark.unit


def _ints(values) -> pa.Array:
    return pa.array([[int(v)] for v in values], pa.large_list(pa.int64()))


def _floats(values) -> pa.Array:
    return pa.array([[float(v)] for v in values], pa.large_list(pa.float32()))


def _awkward_batch(rows: int = 3000) -> pa.RecordBatch:
    rng = np.random.default_rng(7)
    edges = [0, 1, 127, 128, 16383, 16384, -1, -(2**63), 2**63 - 1, 2**62 - 1]
    floats = rng.normal(size=rows).astype(np.float32)
    floats[:6] = [np.nan, np.inf, -np.inf, -0.0, 3.4e38, 1e-45]
    return pa.RecordBatch.from_arrays(
        [
            _ints(rng.integers(0, 10, rows)),  # one varint byte
            _ints(np.resize(edges, rows)),  # 1 to 10 varint bytes
            _ints(rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64)),
            _floats(floats),
            _ints(rng.integers(0, 2**62, rows, dtype=np.int64)),
        ],
        ["a", "edges_xf", "n" * 100, "fare_xf", "row_id"],
    )


def _parse_records(content: bytes, tmp_path) -> list[tf.train.Example]:
    path = tmp_path / "records.tfrecord"
    path.write_bytes(content)  # TFRecordDataset checks both CRCs of every record
    return [tf.train.Example.FromString(record.numpy()) for record in tf.data.TFRecordDataset(str(path))]


def _encoded_in_row_order(batch, tmp_path, keep_rows=None):
    """The parsed examples of ``encode_framed``, put back in row order, its kept examples and the
    rows of its records in record order."""
    pieces, kept, order = example_encoding.encode_framed(batch, keep_rows)
    parsed = _parse_records(b"".join(pieces), tmp_path)
    assert sorted(order.tolist()) == list(range(batch.num_rows))  # every row once
    by_row = dict(zip(order.tolist(), parsed, strict=True))
    return [by_row[row] for row in range(batch.num_rows)], kept, order


# 1: every batch takes the matrix-per-layout path; 10**9: every batch of two layouts or more the mask
BOTH_PATHS = pytest.mark.parametrize("layout_share", [1, 10**9], ids=["per-layout", "masked"])


@BOTH_PATHS
def test_awkward_values_encode_to_the_same_examples_as_tfx_bsl(tmp_path, monkeypatch, layout_share):
    monkeypatch.setattr(example_encoding, "MAX_LAYOUT_SHARE", layout_share)
    batch = _awkward_batch()
    ours, kept, order = _encoded_in_row_order(batch, tmp_path, [0, 1, 2999])
    reference = example_coder.RecordBatchToExamplesEncoder().encode(batch)
    assert len(ours) == batch.num_rows
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine == tf.train.Example.FromString(theirs)
    assert ours[1].features.feature["edges_xf"].int64_list.value == [1]
    assert ours[6].features.feature["edges_xf"].int64_list.value == [-1]
    assert ours[7].features.feature["edges_xf"].int64_list.value == [-(2**63)]
    assert np.isnan(ours[0].features.feature["fare_xf"].float_list.value[0])
    assert sorted(kept) == [0, 1, 2999]
    assert tf.train.Example.FromString(kept[2999]) == tf.train.Example.FromString(reference[2999])
    # the framing is TFRecord's (TFRecordDataset checked both CRCs of every record above), and each
    # example as long as tfx_bsl's
    pieces, _, _ = example_encoding.encode_framed(batch)
    assert sum(map(len, pieces)) == len(frame_tfrecords(reference))


@BOTH_PATHS
def test_a_sliced_batch_encodes_its_own_rows(tmp_path, monkeypatch, layout_share):
    monkeypatch.setattr(example_encoding, "MAX_LAYOUT_SHARE", layout_share)
    batch = _awkward_batch().slice(1000, 7)
    ours, _, _ = _encoded_in_row_order(batch, tmp_path)
    reference = example_coder.RecordBatchToExamplesEncoder().encode(batch)
    assert ours == [tf.train.Example.FromString(r) for r in reference]


def test_records_come_grouped_by_layout_each_group_in_row_order_unless_layouts_are_many(tmp_path, monkeypatch):
    # varint sizes: column a 1 or 2 bytes, b 1 byte or 5; the float is always 4 bytes
    a = [5, 300, 7, 300, 9] * 200
    b = [2**30, 1, 1, 2**30, 2**30] * 200
    batch = pa.RecordBatch.from_arrays([_ints(a), _ints(b), _floats([0.5] * 1000)], ["a", "b", "f"])
    ours, _, order = _encoded_in_row_order(batch, tmp_path)
    layouts = {(1, 1): [2], (1, 5): [0, 4], (2, 1): [1], (2, 5): [3]}  # rows of each, in every 5
    assert order.tolist() == [row + 5 * k for rows in layouts.values() for k in range(200) for row in rows]
    assert [e.features.feature["a"].int64_list.value[0] for e in ours] == a
    # 4 layouts in 400 rows, one per 100: past one per MAX_LAYOUT_SHARE = 128, the mask, in row order
    assert example_encoding.MAX_LAYOUT_SHARE == 128
    assert example_encoding.encode_framed(batch.slice(0, 400))[2].tolist() == list(range(400))


@BOTH_PATHS
def test_a_batch_of_many_layouts_in_many_columns(tmp_path, monkeypatch, layout_share):
    monkeypatch.setattr(example_encoding, "MAX_LAYOUT_SHARE", layout_share)
    rng = np.random.default_rng(3)
    columns = [_ints(rng.choice([0, 200, 70_000], size=400)) for _ in range(20)]  # 3**20 possible layouts
    batch = pa.RecordBatch.from_arrays(columns, [f"c{i}" for i in range(20)])
    ours, kept, _ = _encoded_in_row_order(batch, tmp_path, keep_rows=[0, 399])
    reference = example_coder.RecordBatchToExamplesEncoder().encode(batch)
    assert ours == [tf.train.Example.FromString(r) for r in reference]
    assert {row: tf.train.Example.FromString(example) for row, example in kept.items()} == {
        0: ours[0],
        399: ours[399],
    }


@pytest.mark.parametrize(
    "column",
    [
        pa.array([[1, 2], [3, 4]], pa.large_list(pa.int64())),  # two values a row
        pa.array([[1], None], pa.large_list(pa.int64())),  # a missing row
        pa.array([[1], [None]], pa.large_list(pa.int64())),  # a null value
        pa.array([[b"x"], [b"y"]], pa.large_list(pa.large_binary())),  # strings
        pa.array([[1.0], [2.0]], pa.large_list(pa.float64())),
    ],
)
def test_other_layouts_are_left_to_tfx_bsl(column):
    assert example_encoding.encode_framed(pa.RecordBatch.from_arrays([column], ["x"])) is None


def test_long_names_and_empty_batches_are_left_to_tfx_bsl():
    assert example_encoding.encode_framed(pa.RecordBatch.from_arrays([_ints([1])], ["k" * 101])) is None
    assert example_encoding.encode_framed(pa.RecordBatch.from_arrays([_ints([])], ["x"])) is None
