"""A Beam coder for Arrow RecordBatches, and a way to tell Beam a collection holds them.

Beam measures the size of elements by encoding a sample of them: the first ten to thirty of every
collection, then fewer. A collection Beam knows nothing about is encoded by pickling, which copies
every buffer of a batch only to count bytes. ``RecordBatchCoder`` encodes as an Arrow IPC stream
when a batch really crosses a process or a stage, and estimates the size from the batch's buffers
without encoding.
"""

import struct
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa

__all__ = ["KeyedBatch", "KeyedBatchCoder", "RecordBatchCoder", "of_record_batches", "of_type"]


class KeyedBatch(NamedTuple):
    """Raw rows on their way through the first pass: a batch and its rows' keys (a tuple still)."""

    batch: pa.RecordBatch
    keys: np.ndarray


class RecordBatchCoder(beam.coders.Coder):
    """Arrow IPC stream bytes of one RecordBatch; its size estimate is ``RecordBatch.nbytes``."""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        return pa.ipc.open_stream(encoded).read_next_batch()

    def estimate_size(self, batch: pa.RecordBatch) -> int:
        return batch.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return pa.RecordBatch


class KeyedBatchCoder(beam.coders.Coder):
    """A ``KeyedBatch``: the batch as by ``RecordBatchCoder``, then the keys' bytes; its size
    estimate is the buffers' size."""

    _HEADER = struct.Struct("<Q8s")  # the batch's encoded length, the keys' dtype

    def encode(self, value: KeyedBatch) -> bytes:
        batch = RecordBatchCoder().encode(value.batch)
        keys = np.ascontiguousarray(value.keys)
        return self._HEADER.pack(len(batch), keys.dtype.str.encode()) + batch + keys.tobytes()

    def decode(self, encoded: bytes) -> KeyedBatch:
        length, dtype = self._HEADER.unpack_from(encoded)
        start = self._HEADER.size
        batch = RecordBatchCoder().decode(encoded[start : start + length])
        keys = np.frombuffer(encoded[start + length :], np.dtype(dtype.rstrip(b"\0").decode())).copy()
        return KeyedBatch(batch, keys)

    def estimate_size(self, value: KeyedBatch) -> int:
        return value.batch.nbytes + value.keys.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return KeyedBatch


beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)
beam.coders.registry.register_coder(KeyedBatch, KeyedBatchCoder)


def of_type(collection: beam.PCollection, element_type) -> beam.PCollection:
    """Declares the type of ``collection``'s elements (so Beam codes them with the registered coders)
    and returns it; for outputs whose type Beam cannot infer, e.g. tagged outputs."""
    collection.element_type = element_type
    return collection


def of_record_batches(collection: beam.PCollection) -> beam.PCollection:
    """``of_type(collection, pa.RecordBatch)``."""
    return of_type(collection, pa.RecordBatch)
