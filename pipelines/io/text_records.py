"""Headed text files read whole, for the jobs that read records rather than features (``labels``,
``dedup``, ``lineage row``): planning, blocks of whole records, Arrow parsing, dead-letter offsets."""

import csv
import dataclasses
import io
from collections.abc import Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from pipelines.errors import UsageError
from pipelines.formats import csv_records, decode, decode_csv
from pipelines.formats.blocks import (
    BLOCK_BYTES,
    Block,
    blocks_as_read,
)
from pipelines.io.input_files import (
    delimiter_of,
    open_csv,
    reencoded,
)


@dataclasses.dataclass(frozen=True)
class TextFile:
    """A headed CSV file whose records start at byte ``start`` (after the header)."""

    path: str
    start: int
    delimiter: str = ","
    encoding: str | None = None
    missing_values: tuple[str, ...] = ()  # cell texts read as empty (besides the empty cell)


def plan_text_files(
    files: Sequence[tuple[str, int]],
    delimiter: str | None = None,
    encoding: str | None = None,
    missing_values: Sequence[str] = (),
) -> list[TextFile]:
    """The headed CSV files to read, each whole: their quoted values may hold newlines, so where a
    record starts is known only from the start of the file (``pipelines/formats/csv_records.py``). Each
    file's delimiter is ``delimiter``, or the one its name implies (:func:`delimiter_of`); files in
    another ``encoding`` than UTF-8 are read re-encoded (:func:`open_csv`)."""
    planned = []
    for path, _ in files:
        with open_csv(path, encoding) as handle:
            header_bytes = len(handle.readline())
        tokens = tuple(str(token) for token in missing_values if str(token) != "")
        planned.append(TextFile(path, header_bytes, delimiter_of(path, delimiter), reencoded(encoding), tokens))
    return planned


def text_record_blocks(text_file: TextFile, block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """The records of a headed CSV file in blocks of whole records, streamed (bounded memory); a
    compressed file that breaks off (a ``.csv.gz`` cut short) gives the blocks before the break,
    then an empty block whose ``problem`` is the ``truncated file`` dead-letter reason."""
    with open_csv(text_file.path, text_file.encoding) as handle:
        yield from blocks_as_read(handle, text_file.start, None, True, block_bytes)


def lost_to_damage(what: str, count: int, see: str = "") -> str:
    """The one-line reason a job fails with when compressed inputs broke off: ``what`` (records,
    annotations) were lost, their number unknown, which no threshold can weigh."""
    return (
        f"damaged inputs lost {what}, their number unknown ('{decode.TRUNCATED_FILE}' x{count}); {see}"
        "repair the files or fetch them again"
    )


def as_text(column: pa.Array) -> pa.Array:
    """A binary column as UTF-8 text (invalid bytes escaped, never dropped)."""
    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:  # invalid UTF-8 somewhere: escape it rather than lose the row
        return pa.array([v.decode("utf-8", "backslashreplace") for v in column.to_pylist()], pa.string())


def csv_header(path: str, delimiter: str | None = None, encoding: str | None = None) -> list[str]:
    """The column names on the first line of a CSV file (a byte-order mark is not part of the first)."""
    with open_csv(path, encoding) as handle:
        line = handle.readline().decode("utf-8-sig", errors="replace")
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter_of(path, delimiter)), [])


def shared_csv_columns(
    files: Sequence[tuple[str, int]],
    required: Sequence[str],
    delimiter: str | None = None,
    encoding: str | None = None,
) -> list[str]:
    """The header the CSV ``files`` share, checked to name every ``required`` column.

    Raises:
        UsageError: A required column is missing, or a file's header differs from the first's.
    """
    columns = csv_header(files[0][0], delimiter, encoding)
    missing = [name for name in required if name not in columns]
    if missing:
        raise UsageError(f"{files[0][0]}: no column {missing[0]!r} (columns: {', '.join(columns)})")
    for path, _ in files[1:]:
        if csv_header(path, delimiter, encoding) != columns:
            raise UsageError(f"{path}: header differs from {files[0][0]}'s")
    return columns


def csv_line(values: Sequence[str]) -> str:
    """One CSV line (no newline) of ``values``, quoted as needed."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def parse_csv_block(
    block: bytes,
    columns: list[str],
    include: list[str] | None = None,
    delimiter: str = ",",
    missing_values: Sequence[str] = (),
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Whole CSV records (no header; quoted values may hold newlines) as a table of binary columns;
    a cell whose text (spaces trimmed) is one of ``missing_values`` is read as empty.

    Returns:
        The table (``include`` columns, default all) and ``(record index, raw record, reason)`` for
        each record with the wrong number of fields (skipped from the table), the index counting
        the block's records from 0.
    """
    ragged = []

    def on_invalid_row(row) -> str:
        reason = f"wrong field count: expected {row.expected_columns}, found {row.actual_columns}"
        ragged.append((row.number - 1, row.text, reason))
        return "skip"

    table = pa_csv.read_csv(
        io.BytesIO(block),
        read_options=decode_csv.block_read_options(columns, block),
        parse_options=pa_csv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid_row, newlines_in_values=True
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.binary() for c in columns},
            strings_can_be_null=False,
            include_columns=include or columns,
        ),
    )
    if missing_values:
        tokens = pa.array([str(token) for token in missing_values], pa.string())
        empty = pa.scalar(b"", pa.binary())
        for index, name in enumerate(table.column_names):
            column = table.column(index)
            text = pc.utf8_trim_whitespace(column.cast(pa.string(), safe=False))
            missing = pc.is_in(text, tokens).fill_null(False)
            table = table.set_column(index, name, pc.if_else(missing, empty, column))
    return table, ragged


class RecordOffsets:
    """Where a block's records start in their file, for dead letters: the block's records are
    found (:func:`csv_records.record_ends`, quoted values holding newlines) on first use, so only
    for a block with a dead letter, or when every record's offset is kept (``with_source``).

    Args:
        block: Whole CSV records, as :func:`parse_csv_block` parses them.
        offset: The block's byte offset in the file.
        ragged: The indices of the records :func:`parse_csv_block` skipped, to find a table row's
            record.
    """

    def __init__(self, block: bytes, offset: int, ragged: Sequence[int] = ()):
        self._block, self._offset, self._ragged = block, offset, sorted(ragged)
        self._starts: np.ndarray | None = None

    def of_record(self, index: int) -> int | None:
        """The byte offset of the block's record ``index`` (None if the index is past its records)."""
        if self._starts is None:
            self._starts = np.concatenate([[0], csv_records.record_ends(self._block, True) + 1])
        # a start at the block's very end begins no record: the last record's newline ends the block
        if not 0 <= index < len(self._starts) or (index and self._starts[index] >= len(self._block)):
            return None
        return self._offset + int(self._starts[index])

    def of_row(self, row: int) -> int | None:
        """The byte offset of the record read as the table's ``row`` (the ragged ones skipped)."""
        index = row
        for skipped in self._ragged:
            if skipped > index:
                break
            index += 1
        return self.of_record(index)


class ParseCsvRecords(beam.DoFn):
    """Parses the CSV records of a ``TextFile`` into dicts of strings, with pyarrow.

    Ragged rows, and rows with an empty value in a ``required`` column, go to the ``dead_letter``
    output with their raw line and reason; every row is counted as ``<what>_read`` and each dead
    letter as ``<what>_dead_lettered`` in ``namespace``. A compressed file that breaks off (a
    ``.csv.gz`` cut short) keeps the records before the break and ends with one ``truncated file``
    dead letter, also counted as ``<what>_lost_to_damage``: records were lost, their number unknown.

    Args:
        columns: The file's columns (its header).
        required: Column -> reason given when it is empty.
        namespace: Beam metrics namespace.
        what: Counter prefix (``records``, ``annotations``).
        with_source: Emit ``(file, byte offset, record)`` instead of records, for dead letters
            made later.
    """

    def __init__(self, columns: list[str], required: dict[str, str], namespace: str, what: str, with_source=False):
        self._columns, self._required, self._namespace, self._what = columns, required, namespace, what
        self._with_source = with_source

    def process(self, text_file: TextFile):
        for block in text_record_blocks(text_file):
            if block.problem:  # records lost, their number unknown: one dead letter says where
                beam.metrics.Metrics.counter(self._namespace, f"{self._what}_read").inc()
                beam.metrics.Metrics.counter(self._namespace, f"{self._what}_lost_to_damage").inc()
                yield self._dead(text_file.path, block.offset, "", None, block.problem)
            else:
                yield from self._parse(block, text_file.path, text_file.delimiter, text_file.missing_values)

    def _dead(self, source: str, offset: int | None, raw: str, feature: str | None, reason: str):
        beam.metrics.Metrics.counter(self._namespace, f"{self._what}_dead_lettered").inc()
        return beam.pvalue.TaggedOutput("dead_letter", decode.dead_letter(source, offset, raw, feature, reason))

    def _parse(self, block: Block, source: str, delimiter: str, missing_values: Sequence[str] = ()):
        table, ragged = parse_csv_block(block.data, self._columns, delimiter=delimiter, missing_values=missing_values)
        offsets = RecordOffsets(block.data, block.offset, [index for index, _, _ in ragged])
        read_counter = beam.metrics.Metrics.counter(self._namespace, f"{self._what}_read")
        for index, raw, reason in ragged:
            read_counter.inc()
            yield self._dead(source, offsets.of_record(index), raw, None, reason)
        columns = [as_text(table.column(c).combine_chunks()).to_pylist() for c in self._columns]
        required = [(self._columns.index(c), c, reason) for c, reason in self._required.items()]
        for row, values in enumerate(zip(*columns, strict=True)):
            read_counter.inc()
            empty = next(((c, reason) for i, c, reason in required if not values[i].strip()), None)
            if empty:
                yield self._dead(source, offsets.of_row(row), csv_line(values), empty[0], empty[1])
                continue
            record = dict(zip(self._columns, values, strict=True))
            yield (source, offsets.of_row(row), record) if self._with_source else record
