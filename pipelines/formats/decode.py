"""Decoding raw records into the list-typed Arrow RecordBatches that tf.Transform consumes.

Pure functions, no Beam: the PTransforms in ``pipelines/io/read.py`` call them on blocks of input.
Every input row ends either in the returned batch or in the returned dead letters, with a reason.

A decoded batch has one ``large_list`` column per schema feature, in schema order (the layout
``tfx_bsl``'s ``ExamplesToRecordBatchDecoder`` produces): INT -> ``large_list<int64>``,
FLOAT -> ``large_list<float32>``, BYTES -> ``large_list<large_binary>``; a missing value is a null
list.
"""

import csv
import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from isal import isal_zlib
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.quality import validate

__all__ = [
    "DecodedBlock",
    "TRUNCATED_FILE",
    "arrow_schema",
    "decode_dicts",
    "decode_table",
    "dead_letter",
    "first_values",
    "lost_rows",
    "truncated_file_reason",
    "row_key_hashes",
    "split_key_hashes",
    "SPLIT_KEY_VERSION",
]

ARROW_VALUE_TYPES = {
    schema_pb2.INT: pa.int64(),
    schema_pb2.FLOAT: pa.float32(),
    schema_pb2.BYTES: pa.large_binary(),
}
_INT_PATTERN = r"^[+-]?[0-9]+$"
_INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


@dataclasses.dataclass
class DecodedBlock:
    """The result of decoding one block of raw records.

    Attributes:
        batch: The valid rows as a list-typed RecordBatch, or None when no row is valid.
        keys: One uint32 hash per valid row, of the record (or of its split-key columns); it drives the
            deterministic train/eval split.
        dead_letters: One dict per invalid row (see :func:`dead_letter`).
        rows_read: How many raw records the block held.
        extra_features: The features of the block's tf.Examples that the schema lacks (ignored).
    """

    batch: pa.RecordBatch | None
    keys: np.ndarray
    dead_letters: list[dict]
    rows_read: int
    extra_features: list[str] = dataclasses.field(default_factory=list)


def dead_letter(source: str, offset: int | None, raw: str, feature: str | None, reason: str) -> dict:
    """A dead-letter record, as written to ``dead_letter/*.jsonl``.

    Args:
        source: The file the record came from.
        offset: Byte offset of a CSV line (or index of a TFRecord record) in the source, if known.
        raw: The raw record as text (undecodable bytes escaped).
        feature: The feature at fault, or None when the whole record is.
        reason: Why the record was rejected.

    Returns:
        The record as a dict.
    """
    return {"source": source, "offset": offset, "raw": raw, "feature": feature, "reason": reason}


def arrow_schema(schema: schema_pb2.Schema) -> pa.Schema:
    """The Arrow schema of decoded batches for a raw schema."""
    return pa.schema([(f.name, pa.large_list(ARROW_VALUE_TYPES[f.type])) for f in schema.feature])


def first_values(column: pa.Array) -> pa.Array:
    """The first value of each row of a list column (null for null or empty lists)."""
    has_values = pc.greater(pc.list_value_length(column).fill_null(0), 0)
    return pc.list_element(pc.if_else(has_values, column, None), 0)


def first_values_as_text(column: pa.Array) -> list[str | None]:
    """Each row's first value of a list column as text (bytes decoded, numbers formatted; None if empty)."""
    return [
        None if v is None else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
        for v in first_values(column).to_pylist()
    ]


def to_list_array(values: pa.Array) -> pa.LargeListArray:
    """Wraps a flat array into a list array with one value per row and null lists for nulls."""
    valid = np.asarray(values.is_valid())
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(valid, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), values.drop_null(), mask=pa.array(~valid))


def text_of(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace").rstrip("\r")


# Bumped whenever the key a row is split by changes (2: a CSV record's carriage return is not part
# of it, and split_key columns are keyed on their decoded values in every format), so that the
# incremental analysis never reuses accumulators of rows split the old way.
SPLIT_KEY_VERSION = 2


def row_key_hashes(keys: Sequence[bytes]) -> np.ndarray:
    """Stable uint32 hashes (CRC-32) of row keys, identical on every machine and run.

    ISA-L's CRC-32 (the same checksum as ``zlib.crc32``) takes 65 instead of 175 ns a taxi line.
    """
    return np.fromiter(map(isal_zlib.crc32, keys), dtype=np.uint32, count=len(keys))


def record_keys(records: list[bytes], data: bytes) -> list[bytes]:
    """The split keys of whole CSV records: each record without a carriage return before its
    newline, so that a file saved with Windows line endings splits its rows as the same file with
    Unix ones (the check for a carriage return is one scan of ``data`` in C)."""
    if b"\r" not in data:
        return records
    return [record[:-1] if record.endswith(b"\r") else record for record in records]


def parse_column(
    values: pa.Array, feature: schema_pb2.Feature, decimal_comma: bool = False, missing_values: Sequence[str] = ()
) -> tuple[pa.Array, np.ndarray, Callable[[int], str]]:
    """Parses a column of CSV cells (binary) into typed values.

    With ``decimal_comma``, a float's decimal mark is a comma (``12,45``) and a cell with a point
    is invalid, as Arrow's reader with ``decimal_point=","`` has it. An empty cell, and one whose
    text (spaces trimmed) is one of ``missing_values``, is a missing value.

    Returns:
        The typed values (null where missing or invalid), a boolean mask of invalid cells, and a
        function giving the reason for an invalid cell.
    """
    invalid = np.zeros(len(values), dtype=bool)
    try:
        text = values.cast(pa.string())
    except pa.ArrowInvalid:
        cells = values.to_pylist()
        for i, cell in enumerate(cells):
            try:
                cell.decode("utf-8")
            except UnicodeDecodeError:
                invalid[i] = True
        text = pa.array(
            [None if bad else c.decode("utf-8") for c, bad in zip(cells, invalid, strict=True)], pa.string()
        )
    tokens = pa.array(list(missing_values), pa.string()) if missing_values else None
    if feature.type == schema_pb2.BYTES:
        missing = np.asarray(pc.equal(pc.binary_length(text), 0).fill_null(True))
        if tokens is not None:
            missing |= np.asarray(pc.is_in(pc.utf8_trim_whitespace(text), tokens).fill_null(False))
        typed = pc.if_else(pa.array(missing | invalid), None, text).cast(pa.large_binary())
        return typed, invalid, lambda i: "invalid UTF-8"
    trimmed = pc.utf8_trim_whitespace(text)
    missing = np.asarray(pc.equal(pc.utf8_length(trimmed), 0).fill_null(True))
    if tokens is not None:
        missing |= np.asarray(pc.is_in(trimmed, tokens).fill_null(False))
        trimmed = pc.if_else(pa.array(missing), "", trimmed)
    pattern, type_name = (_INT_PATTERN, "int") if feature.type == schema_pb2.INT else (_FLOAT_PATTERN, "float")
    if decimal_comma and feature.type == schema_pb2.FLOAT:
        point = pc.match_substring(trimmed, ".").fill_null(False)
        trimmed = pc.if_else(point, "a point", pc.replace_substring(trimmed, ",", "."))  # "a point": malformed
    well_formed = np.asarray(pc.match_substring_regex(trimmed, pattern).fill_null(False))
    invalid |= ~missing & ~well_formed
    well_formed_text = pc.if_else(pa.array(well_formed), trimmed, None)
    if feature.type == schema_pb2.INT:
        try:
            parsed = pc.cast(well_formed_text, pa.int64())
        except pa.ArrowInvalid:  # a value beyond int64: find it cell by cell
            values = [None if v is None else int(v) for v in well_formed_text.to_pylist()]
            overflow = np.array([v is not None and not _INT64_MIN <= v <= INT64_MAX for v in values])
            invalid |= overflow
            parsed = pa.array([None if bad else v for v, bad in zip(values, overflow, strict=True)], pa.int64())
    else:
        # Parse to float64 and round to float32, as float(text) into a tf.train.FloatList does, so
        # that serving clients building tf.Examples in Python get bit-identical values.
        wide = pc.cast(well_formed_text, pa.float64())
        overflow = np.asarray(pc.greater(pc.abs(wide), FLOAT32_MAX).fill_null(False))
        invalid |= overflow
        parsed = pc.cast(pc.if_else(pa.array(overflow), None, wide), pa.float32(), safe=False)
    cells = text

    def reason(i: int) -> str:
        cell = cells[i].as_py()
        if cell is None:
            return "invalid UTF-8"
        return f"unparsable {type_name}: {cell!r}"

    return parsed, invalid, reason


def finish_block(
    schema: schema_pb2.Schema,
    columns: dict[str, pa.Array],
    parse_invalid: dict[str, tuple[np.ndarray, Callable[[int], str]]],
    keys: np.ndarray,
    rows_read: int,
    raw_of: Callable[[int], tuple[int | None, str]],
    source: str,
    row_reasons: dict[int, tuple[str | None, str]] | None = None,
) -> DecodedBlock:
    """Validates typed list columns, splits valid rows from dead letters."""
    num_rows = len(keys)
    batch = pa.RecordBatch.from_arrays([columns[f.name] for f in schema.feature], schema=arrow_schema(schema))
    reasons = dict(row_reasons or {})
    for feature in schema.feature:
        if feature.name in parse_invalid:
            mask, reason_of = parse_invalid[feature.name]
            for i in np.flatnonzero(mask):
                reasons.setdefault(int(i), (feature.name, reason_of(int(i))))
    for i, feature_name, reason in validate.find_violations(batch, schema):
        reasons.setdefault(i, (feature_name, reason))
    dead = []
    for i in sorted(reasons):
        offset, raw = raw_of(i)
        feature_name, reason = reasons[i]
        dead.append(dead_letter(source, offset, raw, feature_name, reason))
    if reasons:
        keep = np.ones(num_rows, dtype=bool)
        keep[list(reasons)] = False
        batch = batch.filter(pa.array(keep))
        keys = keys[keep]
    return DecodedBlock(batch if batch.num_rows else None, keys, dead, rows_read)


# the record-by-record path's Python csv module refuses a field over 128 KiB by default: a long
# free-text value would be a dead letter there and a value on the Arrow paths
csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))


def _cell_text(value) -> bytes:
    """A JSON value as the text a CSV cell would hold ('' for missing)."""
    if isinstance(value, list) and len(value) <= 1:
        value = value[0] if value else None
    if value is None:
        return b""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" gives
            raise TypeError(f"unsupported value {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"unsupported value {value!r}")
    return repr(value).encode()


def decode_dicts(rows: Sequence[dict], schema: schema_pb2.Schema, source: str = "request") -> DecodedBlock:
    """Decodes JSON-like dicts (serving requests) exactly as CSV cells are decoded.

    Numbers and strings become the text of a CSV cell and go through the same parsing and
    validation, so a value accepted (or rejected) in training data is accepted (or rejected) the
    same way at serving time. A missing key, ``null`` or ``""`` is a missing value.

    Args:
        rows: One dict per record, keyed by raw feature name.
        schema: The raw schema.
        source: Name for dead letters.

    Returns:
        The DecodedBlock (``offset`` of a dead letter is the index of the row).
    """
    names = [f.name for f in schema.feature]
    cells = {name: [] for name in names}
    row_reasons = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            row, row_reasons[i] = {}, (None, f"not an object: {type(row).__name__}")
        unknown = sorted(set(row) - set(names))
        if unknown:
            row_reasons.setdefault(i, (unknown[0], "unknown feature"))
        for name in names:
            try:
                cells[name].append(_cell_text(row.get(name)))
            except TypeError as error:
                cells[name].append(b"")
                row_reasons.setdefault(i, (name, f"unsupported value: {str(error).split(' ', 2)[-1]}"))
    table = pa.table({name: pa.array(values, pa.binary()) for name, values in cells.items()})
    texts = [json.dumps(row, sort_keys=True, default=str) for row in rows]
    keys = row_key_hashes([t.encode() for t in texts])
    return decode_text_table(table, schema, keys, lambda i: (i, texts[i]), source, row_reasons)


TRUNCATED_FILE = "truncated file"  # a dead-letter reason: a compressed input broke off


def truncated_file_reason(offset: int, error: str) -> str:
    """The dead-letter reason of a compressed input whose decompression broke after ``offset``
    decompressed bytes (``error`` names the exception): rows lost, their number unknown."""
    return (
        f"{TRUNCATED_FILE}: decompression stopped after byte {offset} ({error}); "
        "the records from there on are lost, their number unknown"
    )


def lost_rows(source: str, offsets: Iterable[int], reason: str) -> DecodedBlock:
    """A block of no rows and one dead letter (with no raw record) per offset: rows that damage
    made unreadable, each counted as read and dead-lettered."""
    dead = [dead_letter(source, offset, "", None, reason) for offset in offsets]
    return DecodedBlock(None, np.zeros(0, np.uint32), dead, len(dead))


def split_key_hashes(batch: pa.RecordBatch, split_key: Sequence[str]) -> np.ndarray:
    """The split keys of decoded rows from the values of the ``split_key`` columns: each row's
    first values as text (missing as empty), joined by a unit separator, hashed.

    Taken from the decoded values, not the raw text, so a row keys the same in every input format
    and however its numbers are written (``12.50`` and ``12.5``).
    """
    texts = []
    for name in split_key:
        values = first_values(batch.column(batch.schema.get_field_index(name)))
        if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
            values = pc.cast(values, pa.string())
        texts.append(pc.cast(values, pa.large_binary()).fill_null(b""))
    separator = pa.scalar(b"\x1f", pa.large_binary())
    return row_key_hashes(pc.binary_join_element_wise(*texts, separator).to_pylist())


def keyed_by_columns(block: DecodedBlock, split_key: Sequence[str]) -> DecodedBlock:
    """The block with its keys taken from the ``split_key`` columns' values (as it is when none)."""
    if split_key and block.batch is not None:
        block.keys = split_key_hashes(block.batch, split_key)
    return block


def _decoded(column: pa.ChunkedArray) -> pa.Array:
    """A column as plain values (a dictionary-encoded one decoded)."""
    column = column.combine_chunks()
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def decode_table(
    table: pa.Table,
    schema: schema_pb2.Schema,
    source: str,
    split_key: Sequence[str] = (),
    first_index: int = 0,
) -> DecodedBlock:
    """Decodes a flat Arrow table (from Parquet) into a list-typed batch and dead letters.

    Args:
        table: One scalar column per schema feature (extra columns are ignored).
        schema: The raw schema.
        source: File name, for dead letters.
        split_key: Columns whose values key the split; empty keys it on the whole row.
        first_index: Index of the table's first row in its source, for dead letters.

    Returns:
        The DecodedBlock.

    Raises:
        ValueError: When a column is absent or its type cannot be cast to the schema's type.
    """
    columns, parse_invalid = {}, {}
    for feature in schema.feature:
        if feature.name not in table.column_names:
            raise ValueError(f"{source}: column {feature.name!r} of the schema is absent")
        values = _decoded(table.column(feature.name))  # a categorical column: its values
        target = ARROW_VALUE_TYPES[feature.type]
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            columns[feature.name] = values.cast(pa.large_list(target))
            continue
        if feature.type != schema_pb2.BYTES and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            typed, invalid = fit_numbers(values, feature.type)
            columns[feature.name] = to_list_array(typed)
            parse_invalid[feature.name] = (invalid, unfit_reason(values, feature.type))
            continue
        try:
            values = values.cast(target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(
                f"{source}: column {feature.name!r} has type {values.type}, not castable to {target}: {error}"
            ) from None
        columns[feature.name] = to_list_array(values)
    if split_key:  # keyed on the decoded values below
        keys = np.zeros(table.num_rows, np.uint32)
    else:
        as_text = [pc.cast(_decoded(table.column(f.name)), pa.string()).fill_null("") for f in schema.feature]
        keys = row_key_hashes([s.encode() for s in pc.binary_join_element_wise(*as_text, "\x1f").to_pylist()])

    def raw_of(row: int) -> tuple[int, str]:
        return first_index + row, json.dumps(table.slice(row, 1).to_pylist()[0], default=str)

    return keyed_by_columns(
        finish_block(schema, columns, parse_invalid, keys, table.num_rows, raw_of, source), split_key
    )


def decode_text_table(
    table: pa.Table,
    schema: schema_pb2.Schema,
    keys: np.ndarray,
    raw_of: Callable[[int], tuple[int | None, str]],
    source: str,
    row_reasons: dict[int, tuple[str | None, str]] | None = None,
    decimal_comma: bool = False,
    missing_values: Sequence[str] = (),
) -> DecodedBlock:
    """Parses a table of text cells (one binary column per feature) and validates it.

    Numeric columns that Arrow's CSV reader has parsed already (``_typed_columns``) are taken as
    they are, floats rounded to float32 as ``float(text)`` into a FloatList would be.
    """
    columns, parse_invalid = {}, {}
    for feature in schema.feature:
        column = table.column(feature.name).combine_chunks()
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            columns[feature.name] = to_list_array(pc.cast(column, ARROW_VALUE_TYPES[feature.type], safe=False))
            continue
        values, invalid, reason_of = parse_column(column, feature, decimal_comma, missing_values)
        columns[feature.name] = to_list_array(values)
        parse_invalid[feature.name] = (invalid, reason_of)
    return finish_block(schema, columns, parse_invalid, keys, table.num_rows, raw_of, source, row_reasons)


def unfit_reason(values: pa.Array, feature_type: int) -> Callable[[int], str]:
    """The dead-letter reason of a number that does not fit the schema's type (``fit_numbers``)."""
    type_name = "int" if feature_type == schema_pb2.INT else "float"
    return lambda i: f"unparsable {type_name}: {values[i].as_py()!r}"


def fit_numbers(values: pa.Array, feature_type: int) -> tuple[pa.Array, np.ndarray]:
    """Numbers (any Arrow int or float type) as the schema's type, and a mask of those that do not fit.

    A cell that does not fit becomes null and is marked: for INT, a fraction, NaN, an infinity or a
    value beyond int64 (a float column, as pandas stores integers with gaps, converts when whole);
    for FLOAT, NaN, an infinity or a value beyond float32 (as for CSV cells).
    """
    if feature_type == schema_pb2.INT and pa.types.is_integer(values.type):
        limit = pa.scalar(INT64_MAX, pa.uint64())
        bad = pc.greater(values, limit) if values.type == pa.uint64() else pa.array(np.zeros(len(values), bool))
        return pc.if_else(bad, None, values).cast(pa.int64()), np.asarray(bad.fill_null(False))
    wide = values.cast(pa.float64())
    bad = pc.invert(pc.is_finite(wide))
    if feature_type == schema_pb2.INT:
        bad = pc.or_(bad, pc.or_(pc.not_equal(pc.floor(wide), wide), pc.greater_equal(pc.abs(wide), 2.0**63)))
        return pc.if_else(bad, None, wide).cast(pa.int64()), np.asarray(bad.fill_null(False))
    bad = pc.or_(bad, pc.greater(pc.abs(wide), FLOAT32_MAX))
    return pc.if_else(bad, None, wide).cast(pa.float32(), safe=False), np.asarray(bad.fill_null(False))
