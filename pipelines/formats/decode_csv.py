"""Decoding CSV records into list-typed Arrow batches: vectorised in Arrow, with a careful
cell-by-cell path that words the dead letters, and a record-by-record path for broken quoting."""

import csv
import io
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.formats import csv_records
from pipelines.formats.decode import (
    FLOAT32_MAX,
    DecodedBlock,
    dead_letter,
    decode_text_table,
    keyed_by_columns,
    record_keys,
    row_key_hashes,
    text_of,
)

__all__ = ["UNBALANCED_QUOTES", "block_read_options", "decode_csv_block", "undecodable_lines"]

UNBALANCED_QUOTES = "malformed CSV: unbalanced quotes"
_SPANNING_HINT = " (a quoted value spanning lines needs --allow-quoted-newlines)"


def block_read_options(column_names: Sequence[str], data: bytes) -> pa_csv.ReadOptions:
    """Arrow's read options for a block of CSV records in memory: one Arrow block for all of it.
    With Arrow's default (1 MiB blocks), a record longer than that (a long free-text value) is
    refused ("straddling object straddles two block boundaries"); reading the block at once costs
    nothing more."""
    return pa_csv.ReadOptions(
        column_names=list(column_names), use_threads=False, block_size=max(1 << 20, len(data) + 1)
    )


def _read_csv(
    data: bytes,
    column_names: Sequence[str],
    delimiter: str,
    on_invalid_row: Callable,
    column_types: dict,
    quoted_newlines: bool = False,
    **convert,
) -> pa.Table | None:
    """A block of CSV records read by Arrow with the given column types, or None if Arrow refuses it."""
    try:
        return pa_csv.read_csv(
            io.BytesIO(data),
            read_options=block_read_options(column_names, data),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid_row,
                newlines_in_values=quoted_newlines,
            ),
            convert_options=pa_csv.ConvertOptions(column_types=column_types, strings_can_be_null=False, **convert),
        )
    except pa.ArrowInvalid:
        return None


_ARROW_CSV_TYPES = {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float64(), schema_pb2.BYTES: pa.binary()}


def _has_hex_prefix(data: bytes) -> bool:
    """Whether ``data`` holds "0x" or "0X": two numpy passes over the bytes, which (unlike
    ``bytes.find``, 8x slower here) release the GIL for the stage's other threads."""
    view = np.frombuffer(data, dtype=np.uint8)
    x = (view[1:] | 0x20) == ord("x")  # "x" or "X"
    return bool(x.any()) and bool((x & (view[:-1] == ord("0"))).any())


def _typed_columns(
    data: bytes,
    column_names: Sequence[str],
    schema: schema_pb2.Schema,
    delimiter: str,
    on_invalid_row: Callable,
    ragged: dict[int, str],
    line_count: int,
    quoted_newlines: bool = False,
    decimal_comma: bool = False,
    missing_values: Sequence[str] = (),
) -> pa.Table | None:
    """The fast path: Arrow's CSV converters parse numeric columns while reading.

    Returns None (the block then takes the careful, cell-by-cell-validated path) as soon as any
    cell is not plainly valid: Arrow refuses a number (junk, a lone space, overflow), a float is not
    finite or beyond float32, or the block holds "0x" (Arrow would read a hexadecimal int).
    Otherwise every number is what the careful path would parse: both use Arrow's string-to-number
    conversion (which trims spaces, as the careful path does), a float as float64 first.
    ``tests/pipelines/formats/test_decode.py`` checks both paths give the same batches and dead letters.
    """
    if _has_hex_prefix(data):  # Arrow reads "0x1F" as an int; the schema's ints are decimal
        return None
    types = {f.name: _ARROW_CSV_TYPES[f.type] for f in schema.feature}
    column_types = {c: types.get(c, pa.binary()) for c in column_names}
    table = _read_csv(
        data,
        column_names,
        delimiter,
        on_invalid_row,
        column_types,
        quoted_newlines,
        null_values=["", *missing_values],
        decimal_point="," if decimal_comma else ".",
    )
    if table is None or table.num_rows + len(ragged) != line_count:  # refused, or a quoted cell spans lines
        return None
    for feature in schema.feature:
        if feature.type == schema_pb2.FLOAT:
            column = table.column(feature.name)
            wide = pc.or_kleene(pc.invert(pc.is_finite(column)), pc.greater(pc.abs(column), FLOAT32_MAX))
            if pc.any(wide).as_py():
                return None
    return table


def undecodable_lines(
    data: bytes, source: str, base_offset: int, reason: str, quoted_newlines: bool = False
) -> DecodedBlock:
    """Dead-letters every record of ``data`` with ``reason`` (e.g. a file whose header is wrong).

    A record is a line, or with ``quoted_newlines`` a line or several joined by a quoted value.
    """
    records = csv_records.split_records(data, quoted_newlines)
    dead, offset = [], base_offset
    for record in records:
        dead.append(dead_letter(source, offset, text_of(record), None, reason))
        offset += len(record) + 1
    return DecodedBlock(None, np.zeros(0, np.uint32), dead, len(records))


def decode_csv_block(
    data: bytes,
    column_names: Sequence[str],
    schema: schema_pb2.Schema,
    source: str,
    base_offset: int = 0,
    split_key: Sequence[str] = (),
    delimiter: str = ",",
    quoted_newlines: bool = False,
    decimal_comma: bool = False,
    missing_values: Sequence[str] = (),
) -> DecodedBlock:
    """Decodes whole CSV records (no header) into a list-typed batch and dead letters.

    A record is one line; with ``quoted_newlines``, a quoted value may also hold newlines, and a
    record ends at a newline outside quotes (``pipelines/formats/csv_records.py``).

    Parsing is vectorised in Arrow; Python touches each record only to hash it. A block of plainly
    valid cells has its numbers parsed by Arrow's CSV reader (``_typed_columns``); a block with any
    doubtful cell is read as text and every cell validated (the careful path, which words the dead
    letters). A record Arrow does not cut where :func:`csv_records.split_records` does (unbalanced
    quotes) sends the block through a slower record-by-record path.

    Args:
        data: Complete records of CSV, newline-terminated except maybe the last.
        column_names: The CSV columns in file order (from the file's header).
        schema: The raw schema; every feature must be a column.
        source: File name, for dead letters.
        base_offset: Byte offset of ``data`` in the file, for dead letters.
        split_key: Columns whose values key the split; empty keys it on the whole record.
        delimiter: The field delimiter.
        quoted_newlines: Whether a newline inside quotes belongs to its value.
        decimal_comma: Whether floats are written with a decimal comma (``12,45``), as in the CSV
            exports of many European locales (with ``;`` as the delimiter).
        missing_values: Cell texts besides the empty cell that mean a missing value (``NA``, ...).

    Returns:
        The DecodedBlock.
    """
    lines = csv_records.split_records(data, quoted_newlines)  # one record each
    if not lines:
        return DecodedBlock(None, np.zeros(0, np.uint32), [], 0)
    ragged: dict[int, str] = {}

    def on_invalid_row(row) -> str:
        ragged[row.number - 1] = f"wrong field count: expected {row.expected_columns}, found {row.actual_columns}"
        return "skip"

    table = _typed_columns(
        data,
        column_names,
        schema,
        delimiter,
        on_invalid_row,
        ragged,
        len(lines),
        quoted_newlines,
        decimal_comma,
        missing_values,
    )
    if table is None:  # the careful path: every cell as text, validated
        ragged.clear()
        text_types = {c: pa.binary() for c in column_names}
        table = _read_csv(data, column_names, delimiter, on_invalid_row, text_types, quoted_newlines)
        if table is None or table.num_rows + len(ragged) != len(lines):
            table, ragged = _parse_lines_one_by_one(lines, column_names, delimiter, quoted_newlines)

    line_lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    line_starts = np.concatenate([[0], np.cumsum(line_lengths + 1)])

    def offset_of(i: int) -> int:
        return base_offset + int(line_starts[i])

    parsed_lines = [i for i in range(len(lines)) if i not in ragged] if ragged else range(len(lines))
    row_of_line = {i: row for row, i in enumerate(parsed_lines)} if ragged else None
    row_reasons = {}
    for i in np.flatnonzero(line_lengths <= 2):  # only short lines can be blank
        if not lines[i].strip(b"\r \t") and i not in ragged:
            row_reasons[row_of_line[i] if ragged else int(i)] = (None, "empty line")
    dead = [dead_letter(source, offset_of(i), text_of(lines[i]), None, reason) for i, reason in sorted(ragged.items())]
    if split_key:  # keyed on the decoded values below
        keys = np.zeros(table.num_rows, np.uint32)
    else:
        keys = row_key_hashes(record_keys([lines[i] for i in parsed_lines] if ragged else lines, data))

    def raw_of(row: int) -> tuple[int, str]:
        i = parsed_lines[row]
        return offset_of(i), text_of(lines[i])

    block = decode_text_table(table, schema, keys, raw_of, source, row_reasons, decimal_comma, missing_values)
    block.dead_letters = dead + block.dead_letters
    block.rows_read = len(lines)
    return keyed_by_columns(block, split_key)


def _parse_lines_one_by_one(
    lines: list[bytes], column_names: Sequence[str], delimiter: str, quoted_newlines: bool = False
) -> tuple[pa.Table, dict[int, str]]:
    """Slow path: splits each record on its own, so that a record is always exactly one row.

    A record with an odd number of quote marks is dead-lettered: without ``quoted_newlines`` it is
    one line of a record whose quoted value spans lines; with it, a line with a stray quote mark
    that ``csv_records`` cut off on its own.
    """
    ragged, rows = {}, []
    unbalanced = UNBALANCED_QUOTES if quoted_newlines else UNBALANCED_QUOTES + _SPANNING_HINT
    for i, line in enumerate(lines):
        if line.count(b'"') % 2:
            ragged[i] = unbalanced
            continue
        try:
            text = line.decode("utf-8", errors="surrogateescape")
            fields = next(csv.reader([text], delimiter=delimiter, strict=True), [])
        except csv.Error as error:
            ragged[i] = f"malformed CSV: {error}"
            continue
        if not line.strip(b"\r \t"):
            fields = [""] * len(column_names)
        if len(fields) != len(column_names):
            ragged[i] = f"wrong field count: expected {len(column_names)}, found {len(fields)}"
            continue
        rows.append([f.encode("utf-8", errors="surrogateescape") for f in fields])
    arrays = [pa.array([r[j] for r in rows], pa.binary()) for j in range(len(column_names))]
    return pa.table(arrays, names=list(column_names)), ragged
