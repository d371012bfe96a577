"""Coders for Arrow batches: exact round trips, and size estimates that do not encode."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.io.coders import KeyedBatch, KeyedBatchCoder, RecordBatchCoder, of_record_batches, of_type

BATCH = pa.record_batch(
    {
        "fare": pa.array([[1.5], None, [3.25]], pa.large_list(pa.float32())),
        "company": pa.array([["a"], ["b"], []], pa.large_list(pa.large_binary())),
    }
)

pytestmark = pytest.mark.pipeline


def test_record_batches_round_trip_and_are_sized_by_their_buffers():
    coder = RecordBatchCoder()
    assert coder.decode(coder.encode(BATCH)).equals(BATCH)
    assert coder.estimate_size(BATCH) == BATCH.nbytes
    assert beam.coders.registry.get_coder(pa.RecordBatch) == coder


def test_keyed_batches_round_trip_with_their_keys_dtype():
    coder = KeyedBatchCoder()
    keys = np.array([2**63 + 5, 7, 0], np.uint64)
    decoded = coder.decode(coder.encode(KeyedBatch(BATCH, keys)))
    assert isinstance(decoded, KeyedBatch) and decoded.batch.equals(BATCH)
    assert decoded.keys.dtype == np.uint64 and decoded.keys.tolist() == keys.tolist()
    assert coder.estimate_size(KeyedBatch(BATCH, keys)) == BATCH.nbytes + 24
    assert beam.coders.registry.get_coder(KeyedBatch) == coder


def _rows(batch: pa.RecordBatch) -> list:
    return batch.to_pylist()


def test_declared_collections_cross_stages_with_their_coders():
    with TestPipeline() as pipeline:
        batches = of_record_batches(pipeline | "Batches" >> beam.Create([BATCH]) | "Same" >> beam.Map(lambda b: b))
        moved = batches | "Move" >> beam.Reshuffle()  # a stage boundary: elements are encoded
        assert_that(moved | "Rows" >> beam.FlatMap(_rows), equal_to(BATCH.to_pylist()), label="Rows")
        keyed = pipeline | "Keyed" >> beam.Create([KeyedBatch(BATCH, np.arange(3, dtype=np.int64))])
        keyed = of_type(keyed | "SameKeyed" >> beam.Map(lambda k: k), KeyedBatch) | "MoveKeyed" >> beam.Reshuffle()
        assert_that(keyed | "Keys" >> beam.FlatMap(lambda k: k.keys.tolist()), equal_to([0, 1, 2]), label="Keys")
    assert batches.element_type is pa.RecordBatch
