"""Decoding serialized tf.Examples into list-typed Arrow batches: decoded as written, then checked
against the schema's types; a block the schema cannot read is decoded record by record."""

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.formats.decode import (
    ARROW_VALUE_TYPES,
    DecodedBlock,
    dead_letter,
    finish_block,
    keyed_by_columns,
    row_key_hashes,
)

__all__ = ["decode_examples"]


def _index(first: int | None, i: int) -> int | None:
    return None if first is None else first + i


def decode_examples(
    records: Sequence[bytes],
    schema: schema_pb2.Schema,
    source: str,
    first_index: int | None = 0,
    split_key: Sequence[str] = (),
) -> DecodedBlock:
    """Decodes serialized tf.Examples into a list-typed batch and dead letters.

    Args:
        records: Serialized ``tf.train.Example`` protos.
        schema: The raw schema.
        source: File name, for dead letters.
        first_index: Index of ``records[0]`` in its source, for dead letters, if known.
        split_key: Columns whose values key the split; empty keys it on the serialized record.

    Returns:
        The DecodedBlock.
    """
    from tfx_bsl.coders import example_coder

    good, dead = list(range(len(records))), []
    batch, extra = _decode_as_written(records, schema)
    if batch is None:  # a record the schema cannot read: decode with it, to find and dead-letter such records
        serialized = schema.SerializeToString()
        decoder = example_coder.ExamplesToRecordBatchDecoder(serialized)
        good = []
        for i, record in enumerate(records):
            try:
                decoder.DecodeBatch([record])
                good.append(i)
            except Exception as error:  # noqa: BLE001 - the C++ decoder raises untyped errors
                reason = f"undecodable tf.Example: {str(error).splitlines()[0]}"
                dead.append(dead_letter(source, _index(first_index, i), repr(record), None, reason))
                # a decoder that failed midway keeps the half-built columns: its next batch fails with
                # "Mismatching child array lengths", so the next records need a fresh one
                decoder = example_coder.ExamplesToRecordBatchDecoder(serialized)
        batch = decoder.DecodeBatch([records[i] for i in good]) if good else None
        extra = _feature_names([records[i] for i in good], schema)
    if batch is None:
        return DecodedBlock(None, np.zeros(0, np.uint32), dead, len(records), extra)
    columns = {}
    for feature in schema.feature:
        index = batch.schema.get_field_index(feature.name)
        target = pa.large_list(ARROW_VALUE_TYPES[feature.type])
        columns[feature.name] = batch.column(index).cast(target) if index >= 0 else pa.nulls(batch.num_rows, target)

    def raw_of(row: int) -> tuple[int, str]:
        return _index(first_index, good[row]), repr(records[good[row]])

    keys = np.zeros(len(good), np.uint32) if split_key else row_key_hashes([records[i] for i in good])
    block = finish_block(schema, columns, {}, keys, batch.num_rows, raw_of, source)
    block.dead_letters = dead + block.dead_letters
    block.rows_read = len(records)
    block.extra_features = extra
    return keyed_by_columns(block, split_key)


def _decode_as_written(records: Sequence[bytes], schema: schema_pb2.Schema) -> tuple[pa.RecordBatch | None, list[str]]:
    """The tf.Examples decoded with the types they were written with (tfx-bsl's decoder without a
    schema: as fast as with one, and it sees every feature), and the features the schema lacks.

    None when the schema could not read them all: a record that is not a tf.Example, a feature of
    the schema written with another list type than its type's (``int64_list`` for a FLOAT), or one
    written with two list types; the caller then decodes with the schema, record by record.
    """
    from tfx_bsl.coders import example_coder

    try:
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(records))
    except Exception:  # noqa: BLE001 - the C++ decoder raises untyped errors
        return None, []
    types = {f.name: ARROW_VALUE_TYPES[f.type] for f in schema.feature}
    for field in batch.schema:
        if field.name in types and not pa.types.is_null(field.type):  # null: no values in any record
            value_type = field.type.value_type
            if not (pa.types.is_null(value_type) or value_type == types[field.name]):
                return None, []
    return batch, sorted(name for name in batch.schema.names if name not in types)


def _feature_names(records: Sequence[bytes], schema: schema_pb2.Schema) -> list[str]:
    """The features of ``records`` (tf.Examples the schema reads) that the schema lacks, parsed one
    by one: only for blocks holding a record the schema cannot read."""
    from tensorflow.core.example import example_pb2

    known = {f.name for f in schema.feature}
    names = set()
    for record in records:
        names.update(example_pb2.Example.FromString(record).features.feature)
    return sorted(names - known)
