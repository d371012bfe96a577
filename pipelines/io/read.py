"""Reading raw data: CSV, Parquet or tf.Example TFRecord files into validated Arrow RecordBatches.

``ReadRawData`` is the edge of the pipeline: it expands file patterns (local or ``gs://``), reads
large CSV files in byte ranges so that the work spreads over workers (whole files, streamed in
blocks, when compressed or when quoted values may hold newlines: ``pipelines/io/csv_records.py``),
decodes in Arrow (``pipelines/io/decode.py``), validates against the schema
(``pipelines/quality/validate.py``), and returns two PCollections: ``batches`` of
``(RecordBatch, row_key_hashes)`` and ``dead_letter`` dicts.
"""

import codecs
import concurrent.futures
import contextlib
import csv
import dataclasses
import functools
import gzip
import io
import json
import os
import re
import time
import typing
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.errors import READ_BREAKS, UsageError
from pipelines.io import coders, csv_records, decode, tfrecord_records
from pipelines.io.coders import KeyedBatch
from pipelines.runtime import overlap

__all__ = [
    "BLANK_LINES_AT_END",
    "CSV",
    "CsvFormat",
    "DEFAULT_CSV_FORMAT",
    "PARQUET",
    "TFRECORD",
    "UNKNOWN_LOSS_REASONS",
    "ReadRawData",
    "cut_blank_lines_at_end",
    "delimiter_of",
    "expand_patterns",
    "input_format_of",
    "open_csv",
    "open_input",
    "reencoded",
]

METRICS_NAMESPACE = "skewless"
ROWS_BY_SOURCE_NAMESPACE = "skewless.rows_read_by_source"
DEAD_LETTER_NAMESPACE = "skewless.dead_letter_reasons"
DEAD_LETTER_FEATURE_NAMESPACE = "skewless.dead_letter_features"  # counter names: "<feature>|<reason>"
IGNORED_FEATURES_NAMESPACE = "skewless.ignored_features"  # counter names: JSON ["<file>", "<feature>"]
CSV, PARQUET, TFRECORD = "csv", "parquet", "tfrecord"
_SUFFIXES = {
    ".csv": CSV,
    ".csv.gz": CSV,
    ".txt": CSV,
    ".tsv": CSV,
    ".tsv.gz": CSV,
    ".parquet": PARQUET,
    ".pq": PARQUET,
    ".tfrecord": TFRECORD,
    ".tfrecord.gz": TFRECORD,
    ".tfrecords": TFRECORD,
    ".tfrecords.gz": TFRECORD,
}
TAB_SUFFIXES = (".tsv", ".tsv.gz")  # CSV files whose fields are tab-separated unless told otherwise
DEFAULT_RANGE_BYTES = 32 << 20
_BLOCK_BYTES = 8 << 20
_TFRECORD_BATCH = 2000
_PARQUET_BATCH = 65536


def input_format_of(path: str) -> str:
    """The input format of a file by its name (``csv``, ``parquet`` or ``tfrecord``).

    Raises:
        UsageError: For an unknown suffix.
    """
    lowered = path.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return _SUFFIXES[suffix]
    raise UsageError(f"cannot tell the format of {path}: name it *.csv, *.parquet or *.tfrecord[.gz]")


def expand_patterns(patterns: Sequence[str]) -> list[tuple[str, int]]:
    """Expands file patterns into ``(path, size)`` pairs, sorted by path, each file once.

    A local pattern is made absolute first: Beam's local file system matches nothing for a bare
    relative glob such as ``*.csv``, and ``a.csv`` and ``./a.csv`` are then one file, not two.

    A pattern naming a directory (local, or a ``gs://`` prefix without glob characters) stands for
    the files under it, as Spark and Hadoop write a dataset (``trips.parquet/part-*.parquet``):
    their bookkeeping files, whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``), are
    left out.

    Raises:
        UsageError: When a pattern matches no file.
    """
    files = {}
    for pattern in patterns:
        if FileSystems.get_scheme(pattern) is None:
            pattern = os.path.abspath(os.path.expanduser(pattern))
        matches = _match(pattern)
        if _names_a_directory(pattern, matches):
            matches = [m for m in _match(pattern.rstrip("/") + "/**") if not _is_bookkeeping(m.path)]
        if not matches:
            raise UsageError(f"no input file matches {pattern}")
        for metadata in matches:
            files[metadata.path] = metadata.size_in_bytes
    return sorted(files.items())


def _match(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception as error:  # noqa: BLE001 - filesystems raise their own error types
        raise UsageError(f"cannot read {pattern}: {str(error).splitlines()[0]}") from None


def _names_a_directory(pattern: str, matches: list) -> bool:
    if FileSystems.get_scheme(pattern) is None:
        return os.path.isdir(pattern)
    return pattern.endswith("/") or (not matches and not any(c in pattern for c in "*?["))


def _is_bookkeeping(path: str) -> bool:
    """A Hadoop/Spark bookkeeping file (``_SUCCESS``, ``_metadata``, ``.part-0.crc``), not data."""
    return os.path.basename(path.rstrip("/")).startswith(("_", "."))


def reencoded(encoding: str | None) -> str | None:
    """The codec name of a text encoding other than UTF-8 (whose files are read re-encoded), else None."""
    if not encoding:
        return None
    name = codecs.lookup(encoding).name
    return None if name in ("utf-8", "utf-8-sig") else name


# dead-letter reasons for damage that lost an unknown number of rows: a run fails on any of them,
# whatever --max-invalid-fraction says
UNKNOWN_LOSS_REASONS = (decode.TRUNCATED_FILE, tfrecord_records.LOST_RECORDS)


@contextlib.contextmanager
def open_input(path: str) -> Iterator:
    """Opens an input file for reading, decompressed by its name.

    A gzip file is read by Python's ``gzip``, which raises ``EOFError`` when the file ends before
    its end-of-stream marker (a download or copy cut short) and an error for damaged data: Beam's
    decompressing reader returns end-of-file there, so a cut ``.csv.gz`` lost its second half
    without a word. (ISA-L's faster ``igzip`` drops the output of the read that meets the break.)
    Other compressions are Beam's.
    """
    if CompressionTypes.detect_compression_type(path) == CompressionTypes.GZIP:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            with gzip.GzipFile(fileobj=raw, mode="rb") as handle:
                yield _ReadUpToTheBreak(handle)
        return
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        yield handle


class _ReadUpToTheBreak:
    """A decompressing reader that hands over every byte decompressed before a break.

    ``read(n)`` of a gzip file loops over the decompressor in C, and a break (``EOFError`` at a
    cut) drops what that call had decompressed: up to ``n`` bytes of good records. Here a read is
    made of pieces of at most 1 MiB (``read1``); at a break, the pieces already read are returned
    and the error is raised by the next read.
    """

    _PIECE = 1 << 20

    def __init__(self, handle):
        self._handle = handle
        self._error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self._error is not None:
            raise self._error
        wanted = size if size is not None and size >= 0 else 1 << 62
        pieces, got = [], 0
        while got < wanted:
            try:
                piece = self._handle.read1(min(wanted - got, self._PIECE))
            except READ_BREAKS as error:
                if not pieces:
                    raise
                self._error = error
                break
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return b"".join(pieces)

    def readline(self) -> bytes:
        return self._handle.readline()

    def seek(self, position: int) -> int:
        return self._handle.seek(position)

    def tell(self) -> int:
        return self._handle.tell()


@contextlib.contextmanager
def open_csv(path: str, encoding: str | None = None) -> Iterator:
    """Opens a CSV file (decompressed, :func:`open_input`) for reading as UTF-8 bytes: as it is, or
    re-encoded from ``encoding`` (:class:`csv_records.Utf8Reader`, forward only)."""
    with open_input(path) as handle:
        codec = reencoded(encoding)
        yield csv_records.Utf8Reader(handle, codec) if codec else handle


def delimiter_of(path: str, delimiter: str | None = None) -> str:
    """The field delimiter of a CSV file: ``delimiter`` when given, else a tab for ``.tsv[.gz]``
    files and a comma for the others."""
    if delimiter:
        return delimiter
    return "\t" if path.lower().endswith(TAB_SUFFIXES) else ","


@dataclasses.dataclass(frozen=True)
class CsvFormat:
    """How a job's CSV files are written: one value that every raw-data reader takes (``run``,
    ``check-skew``, the incremental analysis, ``lineage row``), recorded in ``run.json``.

    Attributes:
        delimiter: The field delimiter; None: a tab for ``.tsv[.gz]`` files, else a comma
            (:func:`delimiter_of`).
        quoted_newlines: Quoted values may hold newlines (RFC 4180): a record ends at a newline
            outside quotes, and each file is read whole (``pipelines/io/csv_records.py``).
        encoding: The text encoding when not UTF-8 (e.g. ``cp1252``): each file is then read whole,
            re-encoded to UTF-8 (dead-letter offsets count UTF-8 bytes). Kept as its codec name.
        decimal_comma: Floats are written with a decimal comma (``12,45``).
    """

    delimiter: str | None = None
    quoted_newlines: bool = False
    encoding: str | None = None
    decimal_comma: bool = False

    def __post_init__(self):
        object.__setattr__(self, "encoding", reencoded(self.encoding))

    def parameters(self) -> dict:
        """The format as ``run.json``'s ``parameters`` record it."""
        return {
            "allow_quoted_newlines": self.quoted_newlines,
            "csv_delimiter": self.delimiter,
            "encoding": self.encoding,
            "decimal_comma": self.decimal_comma,
        }

    @classmethod
    def from_parameters(cls, parameters: dict) -> "CsvFormat":
        """The format a run recorded (:meth:`parameters`); the defaults for a run that recorded none."""
        return cls(
            parameters.get("csv_delimiter"),
            bool(parameters.get("allow_quoted_newlines")),
            parameters.get("encoding"),
            bool(parameters.get("decimal_comma")),
        )


DEFAULT_CSV_FORMAT = CsvFormat()  # commas (tabs for .tsv), one line a record, UTF-8, decimal points


@dataclasses.dataclass(frozen=True)
class _CsvRange:
    """Records of one CSV file starting in bytes ``[start, end)``; ``end`` None means to the end.

    A file whose header does not match the schema has ``header_error`` set: its lines are
    dead-lettered with that reason rather than guessed at.
    """

    path: str
    start: int
    end: int | None
    columns: tuple[str, ...]
    header_error: str | None = None
    delimiter: str = ","
    last: bool = True  # the file's last range: blank lines that end the file are not records


def _read_header(path: str, delimiter: str = ",", encoding: str | None = None) -> tuple[list[str] | None, int]:
    """The column names of a CSV file (None if not UTF-8) and the byte length of its header line
    (in UTF-8 bytes when the file is re-encoded from ``encoding``).

    A UTF-8 byte-order mark (as spreadsheet programs write) is not part of the first name.
    """
    with open_csv(path, encoding) as handle:
        line = handle.readline()
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, len(line)
    return next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), []), len(line)


def _header_error(columns: list[str] | None, expected: list[str]) -> str | None:
    """Why a CSV header cannot be read by the schema: not UTF-8, a schema column missing, or a name
    repeated. Columns the schema lacks are not an error: they are ignored, as in Parquet files,
    and reported (:attr:`ReadRawData.ignored_columns`)."""
    if columns is None:
        return "header mismatch: the header line is not UTF-8 (pass --encoding, e.g. utf-16 or cp1252)"
    missing = [c for c in expected if c not in columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if missing or repeated:
        return f"header mismatch: missing {missing or 'none'}, repeated {repeated or 'none'}, {len(columns)} columns"
    return None


def _ignored(columns: Sequence[str] | None, schema: schema_pb2.Schema) -> list[str]:
    """The columns of a file that the schema lacks, in file order."""
    expected = {f.name for f in schema.feature}
    return [c for c in columns or () if c not in expected]


def _plan_csv_ranges(
    files: Sequence[tuple[str, int]],
    schema: schema_pb2.Schema,
    range_bytes: int,
    csv_format: CsvFormat = DEFAULT_CSV_FORMAT,
) -> list[_CsvRange]:
    """Checks each file's header against the schema and cuts the files into byte ranges.

    A compressed file, or any file when quoted values may hold newlines (where a record starts is
    then known only from the file's start) or when it is re-encoded, is one range, read to its end.
    Each file's delimiter is the format's, or the one its name implies (:func:`delimiter_of`).
    """
    whole = csv_format.quoted_newlines or csv_format.encoding is not None
    expected = [f.name for f in schema.feature]
    ranges = []
    for path, size in files:
        file_delimiter = delimiter_of(path, csv_format.delimiter)
        columns, header_bytes = _read_header(path, file_delimiter, csv_format.encoding)
        error = _header_error(columns, expected)
        columns = tuple(columns or ())
        if whole or CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
            ranges.append(_CsvRange(path, header_bytes, None, columns, error, file_delimiter))
            continue
        # the ranges are cut before the blank lines that end the file, and the last one reads them
        # to the end: a range holding only some of them would take them for rows
        content = _content_end(path, size)
        for start in range(header_bytes, max(content, header_bytes + 1), range_bytes):
            end = min(start + range_bytes, content)
            last = end >= content
            ranges.append(_CsvRange(path, start, size if last else end, columns, error, file_delimiter, last=last))
    return ranges


_BLANK = b" \t\r\n"
_ALL_BLANK = re.compile(rb"[ \t\r\n]*\Z")  # matched from a block's start: stops at its first other byte, no copy


def _content_end(path: str, size: int, chunk_bytes: int = 1 << 16) -> int:
    """Where the blank lines that end an uncompressed file begin: the offset just after the line
    holding its last byte that is not a space, tab, carriage return or newline (0 when it has none,
    ``size`` when that line has no newline). The file is read backwards from its end."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        end, first_newline_after = size, size - 1  # the first newline in the blank bytes read so far
        while end > 0:
            start = max(0, end - chunk_bytes)
            handle.seek(start)
            chunk = handle.read(end - start)
            content = len(chunk.rstrip(_BLANK))
            newline = chunk.find(b"\n", content)
            if newline >= 0:
                first_newline_after = start + newline
            if content:
                return first_newline_after + 1
            end = start
    return 0


def _check_parquet_columns(path: str, schema: schema_pb2.Schema) -> list[str]:
    """Checks that a Parquet file has every schema feature, with a castable type; returns the
    columns the schema lacks (ignored)."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        try:
            file_schema = pq.read_schema(handle)
        except pa.ArrowException as error:
            raise UsageError(f"{path}: not a readable Parquet file ({error})") from None
    for feature in schema.feature:
        if feature.name not in file_schema.names:
            raise UsageError(f"{path}: column {feature.name!r} of the schema is absent")
        column_type = file_schema.field(feature.name).type
        if pa.types.is_list(column_type) or pa.types.is_large_list(column_type):
            column_type = column_type.value_type
        if pa.types.is_dictionary(column_type):  # e.g. a pandas categorical: read as its values
            column_type = column_type.value_type
        if pa.types.is_null(column_type):  # no value in the whole column (as pandas writes one): all missing
            continue
        numeric = pa.types.is_integer(column_type) or pa.types.is_floating(column_type)
        textual = (
            pa.types.is_string(column_type)
            or pa.types.is_large_string(column_type)
            or pa.types.is_binary(column_type)
            or pa.types.is_large_binary(column_type)
        )
        if feature.type == schema_pb2.BYTES and not textual or feature.type != schema_pb2.BYTES and not numeric:
            raise UsageError(
                f"{path}: column {feature.name!r} has type {column_type}, the schema says "
                f"{schema_pb2.FeatureType.Name(feature.type)}"
            )
    return _ignored(file_schema.names, schema)


def _read_lines_in_range(handle, start: int, end: int) -> tuple[bytes, int]:
    """Reads the whole lines that start in ``[start, end)``; returns them and their offset."""
    begin = start
    if start > 0:
        handle.seek(start - 1)
        if handle.read(1) != b"\n":
            partial = handle.readline()  # the rest of a line owned by the previous range
            begin = start + len(partial)
    if begin >= end:
        return b"", begin
    # the last line is the one holding byte end - 1: find where it ends, then read once (appending
    # the rest of that line to a block of tens of MB would copy the block)
    handle.seek(end - 1)
    last = handle.readline()
    handle.seek(begin)
    return (handle.read(end - 1 + len(last) - begin) if last else handle.read()), begin


def _blocks(data: bytes, block_bytes: int) -> Iterable[tuple[bytes, int]]:
    """Cuts ``data`` into blocks of whole lines of about ``block_bytes``; yields (block, offset)."""
    position = 0
    while position < len(data):
        cut = data.find(b"\n", position + block_bytes)
        cut = len(data) if cut < 0 else cut + 1
        yield data[position:cut], position
        position = cut


BLANK_LINES_AT_END = "blank_lines_at_end"  # counter: blank lines that end a CSV file, not rows


class _Block(typing.NamedTuple):
    """Whole records of a CSV file as read: ``data`` from byte ``offset``; ``problem`` when the file
    broke off at ``offset`` (``data`` is then empty); ``blank_lines_at_end`` cut after ``data``."""

    data: bytes
    offset: int
    problem: str | None = None
    blank_lines_at_end: int = 0


def cut_blank_lines_at_end(block: bytes) -> tuple[bytes, int]:
    """``block`` without the blank lines (nothing but spaces, tabs or a carriage return) that end
    it, and how many there were; the newline ending its last record is kept."""
    content = len(block.rstrip(b" \t\r\n"))
    newline = block.find(b"\n", content)
    kept = block[: newline + 1] if content and newline >= 0 else block[:content]
    tail = block[len(kept) :]
    return kept, tail.count(b"\n") + (1 if tail and not tail.endswith(b"\n") else 0)


def _range_blocks(
    handle, start: int, end: int | None, quoted_newlines: bool, block_bytes: int = _BLOCK_BYTES, last: bool = False
) -> Iterator[_Block]:
    """Blocks of whole records of one range, with their offsets in the file.

    A byte range (``end`` set) is read at once and cut at lines; a whole file (``end`` None) is
    streamed from ``start`` in blocks, cut at records (``csv_records``), so that memory stays bounded
    however large the file (a compressed one included). The ``last`` range of a file stops before
    the blank lines that end the file (editors and exporters often add some), however many blocks
    they fill: they are not records, and the last block says how many there were.
    """
    held = []  # the last block with records, then the blocks of nothing but blank lines after it
    for block in _blocks_as_read(handle, start, end, quoted_newlines, block_bytes):
        if held and block.problem is None and _ALL_BLANK.match(block.data):
            held.append(block)
            continue
        yield from held
        held = [block]
    if last and held and held[-1].problem is None:  # a file that broke off has no end
        cuts = [cut_blank_lines_at_end(block.data) for block in held]
        blank = sum(lines for _, lines in cuts)
        held = [held[0]._replace(data=cuts[0][0], blank_lines_at_end=blank)]
    yield from held


def _blocks_as_read(handle, start: int, end: int | None, quoted_newlines: bool, block_bytes: int) -> Iterator[_Block]:
    if end is None:
        handle.seek(start)
        position = start
        try:
            for block, offset in csv_records.record_blocks(handle, block_bytes, quoted_newlines):
                yield _Block(block, start + offset)
                position = start + offset + len(block)
        except READ_BREAKS as error:  # the record being read when the file broke is not yielded
            yield _Block(b"", position, decode.truncated_file_reason(position, f"{type(error).__name__}: {error}"))
        return
    data, begin = _read_lines_in_range(handle, start, end)
    for block, offset in _blocks(data, block_bytes):
        yield _Block(block, begin + offset)


class _DecodeBlocks(beam.DoFn):
    """Common counters and tagged outputs of the decoding DoFns."""

    def __init__(self, schema: schema_pb2.Schema, split_key: Sequence[str], counted: bool = True):
        self._schema = schema
        self._split_key = tuple(split_key)
        self._counted = counted
        self._rows_read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_read")
        self._rows_dead = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_dead_lettered")
        self._decode_msecs = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "decode_msecs")

    def setup(self):
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="skewless-decode")

    def teardown(self):
        self._executor.shutdown(wait=True)

    def _emit(self, block: decode.DecodedBlock, source: str, seconds: float):
        if not self._counted:  # data counted elsewhere (a separate analysis read): no counters, no dead letters
            if block.batch is not None:
                yield KeyedBatch(block.batch, block.keys)
            return
        self._rows_read.inc(block.rows_read)
        beam.metrics.Metrics.counter(ROWS_BY_SOURCE_NAMESPACE, source).inc(block.rows_read)
        if seconds:
            self._decode_msecs.inc(int(seconds * 1000))
        for record in block.dead_letters:
            self._rows_dead.inc()
            reason = record["reason"].split(":")[0]
            beam.metrics.Metrics.counter(DEAD_LETTER_NAMESPACE, reason).inc()
            beam.metrics.Metrics.counter(DEAD_LETTER_FEATURE_NAMESPACE, f"{record['feature'] or ''}|{reason}").inc()
            yield beam.pvalue.TaggedOutput(ReadRawData.DEAD_LETTER, record)
        for name in block.extra_features:  # tf.Example features the schema lacks: listed in run.json
            beam.metrics.Metrics.counter(IGNORED_FEATURES_NAMESPACE, json.dumps([source, name])).inc()
        if block.batch is not None:
            yield KeyedBatch(block.batch, block.keys)


class _DecodeCsvRange(_DecodeBlocks):
    def __init__(self, schema, split_key, counted: bool = True, csv_format: CsvFormat = DEFAULT_CSV_FORMAT):
        super().__init__(schema, split_key, counted)
        self._csv_format = csv_format

    def process(self, rng: _CsvRange):
        with open_csv(rng.path, self._csv_format.encoding) as handle:
            blocks = _range_blocks(handle, rng.start, rng.end, self._csv_format.quoted_newlines, last=rng.last)
            # the next blocks decode on a background thread while this one goes down the stage
            decoded_blocks = overlap.in_background(functools.partial(self._decode_block, rng), blocks, self._executor)
            for decoded, seconds, blank_lines_at_end in decoded_blocks:
                if blank_lines_at_end and self._counted:  # counted here: metrics belong to the DoFn's thread
                    beam.metrics.Metrics.counter(METRICS_NAMESPACE, BLANK_LINES_AT_END).inc(blank_lines_at_end)
                yield from self._emit(decoded, rng.path, seconds)

    def _decode_block(self, rng: _CsvRange, item: _Block) -> tuple[decode.DecodedBlock, float, int]:
        """The block decoded, the seconds it took and the blank lines cut after it."""
        block, offset, problem, blank_lines_at_end = item
        if problem:  # the file broke off here: one dead letter says so
            return decode.lost_rows(rng.path, [offset], problem), 0.0, 0
        if rng.header_error:
            quoted = self._csv_format.quoted_newlines
            undecodable = decode.undecodable_lines(block, rng.path, offset, rng.header_error, quoted)
            return undecodable, 0.0, blank_lines_at_end
        started = time.perf_counter()
        decoded = decode.decode_csv_block(
            block,
            rng.columns,
            self._schema,
            rng.path,
            offset,
            self._split_key,
            rng.delimiter,
            self._csv_format.quoted_newlines,
            self._csv_format.decimal_comma,
        )
        return decoded, time.perf_counter() - started, blank_lines_at_end


class _DecodeParquetFile(_DecodeBlocks):
    """Reads a Parquet file's schema columns row group by row group and decodes them in batches.

    A row group that cannot be read (damaged pages, a bad checksum) does not stop the job: each of
    its rows not yet read is a dead letter (the footer says how many there are), and reading goes
    on with the next row group.
    """

    def process(self, path: str):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            pieces = _parquet_pieces(handle, [f.name for f in self._schema.feature])
            decode_piece = functools.partial(self._decode_piece, path)
            for decoded, seconds in overlap.in_background(decode_piece, pieces, self._executor):
                yield from self._emit(decoded, path, seconds)

    def _decode_piece(self, path: str, piece: tuple) -> tuple[decode.DecodedBlock, float]:
        # a method, not a function nested in process(): Beam warns about a process() whose source
        # has both yield and return, nested functions included
        first, batch, problem, lost = piece
        if problem:
            return decode.lost_rows(path, range(first, first + lost), problem), 0.0
        started = time.perf_counter()
        table = pa.Table.from_batches([batch])
        decoded = decode.decode_table(table, self._schema, path, self._split_key, first)
        return decoded, time.perf_counter() - started


def _parquet_pieces(handle, columns: list[str]) -> Iterator[tuple[int, pa.RecordBatch | None, str | None, int]]:
    """``(first row index, batch, None, 0)`` for each batch read, and ``(first row index, None,
    problem, rows lost)`` for the unread rest of a row group that fails to read."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(handle)
    first = 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        done = 0
        try:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, row_groups=[group], columns=columns):
                yield first + done, batch, None, 0
                done += batch.num_rows
        except (OSError, pa.ArrowException) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            problem = f"unreadable Parquet row group: group {group} ({rows} rows from row {first}): {message}"
            for start in range(done, rows, _PARQUET_BATCH):  # dead letters in batches too: bounded memory
                yield first + start, None, problem, min(_PARQUET_BATCH, rows - start)
        first += rows


class _DecodeTFRecordFile(_DecodeBlocks):
    """Reads a TFRecord file's records with their checksums verified (``pipelines/io/tfrecord_records.py``)
    and decodes them in batches; each piece of damage is a dead letter, and reading goes on."""

    def process(self, path: str):
        with open_input(path) as handle:
            batches = tfrecord_records.batches(tfrecord_records.read_records(handle), _TFRECORD_BATCH)
            decode_batch = functools.partial(self._decode_batch, path)
            for decoded, seconds in overlap.in_background(decode_batch, batches, self._executor):
                yield from self._emit(decoded, path, seconds)

    def _decode_batch(self, path: str, batch: list) -> tuple[decode.DecodedBlock, float]:
        started = time.perf_counter()
        first = batch[0]
        if first.problem:  # damage: no record to show, the reason says where
            return decode.lost_rows(path, [first.index], first.problem), 0.0
        decoded = decode.decode_examples([r.data for r in batch], self._schema, path, first.index, self._split_key)
        return decoded, time.perf_counter() - started


class ReadRawData(beam.PTransform):
    """Reads, decodes and validates raw records.

    Returns a ``DoOutputsTuple`` with ``batches`` (``(pa.RecordBatch, np.ndarray)`` pairs: list-typed
    valid rows and their uint32 row-key hashes) and ``dead_letter`` (dicts, see
    ``decode.dead_letter``). Rows read are counted in the ``skewless`` namespace (``rows_read``,
    ``rows_dead_lettered``), per source and per dead-letter reason.

    Columns a file has and the schema lacks are read past (not validated, not output); planning
    lists a CSV or Parquet file's in ``ignored_columns`` (from its header or schema), and
    :meth:`ignored_columns_read` adds, once the pipeline has run, a TFRecord file's (the features
    the schema lacks of all its tf.Examples, as decoding met them: a tf.Example's features may
    differ from record to record). A CSV file missing a schema column, or naming one twice, has
    every record dead-lettered with the header's fault.
    """

    BATCHES = "batches"
    DEAD_LETTER = "dead_letter"

    def __init__(
        self,
        files: Sequence[tuple[str, int]],
        schema: schema_pb2.Schema,
        split_key: Sequence[str] = (),
        range_bytes: int = DEFAULT_RANGE_BYTES,
        counted: bool = True,
        csv_format: CsvFormat = DEFAULT_CSV_FORMAT,
    ):
        """Plans the reads; raises UsageError at construction for unreadable inputs.

        Args:
            files: ``(path, size)`` pairs from :func:`expand_patterns`, all of one format.
            schema: The raw schema.
            split_key: Columns whose values key the train/eval split (empty: the whole record).
            range_bytes: Size of the byte ranges an uncompressed CSV file is cut into.
            counted: False for data whose rows and dead letters are counted elsewhere (the separate
                read of ``--analysis-cache``): no counters, no dead letters.
            csv_format: How CSV inputs are written (delimiter, quoted newlines, encoding, decimal comma).
        """
        super().__init__()
        formats = {input_format_of(path) for path, _ in files}
        if len(formats) != 1:
            raise UsageError(f"inputs mix formats {sorted(formats)}: run one format at a time")
        self._format = formats.pop()
        self._files = list(files)
        self._schema = schema
        self._split_key = tuple(split_key)
        self._counted = counted
        self._csv_format = csv_format
        self._csv_ranges = []
        self.ignored_columns: dict[str, list[str]] = {}  # per file, its columns the schema lacks
        self.header_errors: dict[str, str] = {}  # per CSV file whose lines are all dead letters: why
        if self._format == CSV:
            self._csv_ranges = _plan_csv_ranges(self._files, schema, range_bytes, csv_format)
            for rng in self._csv_ranges:
                if rng.header_error:
                    self.header_errors[rng.path] = rng.header_error
                else:
                    self.ignored_columns[rng.path] = _ignored(rng.columns, schema)
        elif self._format == PARQUET:
            for path, _ in self._files:
                self.ignored_columns[path] = _check_parquet_columns(path, schema)
        self.ignored_columns = {path: columns for path, columns in self.ignored_columns.items() if columns}

    def ignored_columns_read(self, counters: dict) -> dict[str, list[str]]:
        """:attr:`ignored_columns` once the pipeline has run, with a TFRecord file's: the features
        the schema lacks of all its tf.Examples, as decoding counted them (``counters``: the run's,
        as ``run_record.collect_counters`` gives them), sorted."""
        columns = dict(self.ignored_columns)
        for (space, name), _ in counters.items():
            if space == IGNORED_FEATURES_NAMESPACE:
                path, feature = json.loads(name)
                columns[path] = sorted({*columns.get(path, ()), feature})
        return columns

    def expand(self, pbegin):
        decoded = self._decode(pbegin)
        coders.of_type(decoded[self.BATCHES], KeyedBatch)  # sized without pickling (pipelines/io/coders.py)
        return decoded

    def _decode(self, pbegin):
        tags = (self.DEAD_LETTER,)
        if self._format == CSV:
            return (
                pbegin
                | "ListCsvRanges" >> beam.Create(self._csv_ranges)
                | "SpreadCsvRanges" >> beam.Reshuffle()
                | "DecodeCsv"
                >> beam.ParDo(
                    _DecodeCsvRange(self._schema, self._split_key, self._counted, self._csv_format)
                ).with_outputs(*tags, main=self.BATCHES)
            )
        if self._format == PARQUET:
            return (
                pbegin
                | "ListParquetFiles" >> beam.Create([path for path, _ in self._files])
                | "SpreadParquetFiles" >> beam.Reshuffle()
                | "DecodeParquet"
                >> beam.ParDo(_DecodeParquetFile(self._schema, self._split_key, self._counted)).with_outputs(
                    *tags, main=self.BATCHES
                )
            )
        return (
            pbegin
            | "ListTFRecordFiles" >> beam.Create([path for path, _ in self._files])
            | "SpreadTFRecordFiles" >> beam.Reshuffle()
            | "DecodeTFRecords"
            >> beam.ParDo(_DecodeTFRecordFile(self._schema, self._split_key, self._counted)).with_outputs(
                *tags, main=self.BATCHES
            )
        )


@dataclasses.dataclass(frozen=True)
class TextFile:
    """A headed CSV file whose records start at byte ``start`` (after the header)."""

    path: str
    start: int
    delimiter: str = ","
    encoding: str | None = None


def plan_text_files(
    files: Sequence[tuple[str, int]], delimiter: str | None = None, encoding: str | None = None
) -> list[TextFile]:
    """The headed CSV files to read, each whole: their quoted values may hold newlines, so where a
    record starts is known only from the start of the file (``pipelines/io/csv_records.py``). Each
    file's delimiter is ``delimiter``, or the one its name implies (:func:`delimiter_of`); files in
    another ``encoding`` than UTF-8 are read re-encoded (:func:`open_csv`)."""
    planned = []
    for path, _ in files:
        with open_csv(path, encoding) as handle:
            header_bytes = len(handle.readline())
        planned.append(TextFile(path, header_bytes, delimiter_of(path, delimiter), reencoded(encoding)))
    return planned


def text_record_blocks(text_file: TextFile, block_bytes: int = _BLOCK_BYTES) -> Iterator[_Block]:
    """The records of a headed CSV file in blocks of whole records, streamed (bounded memory); a
    compressed file that breaks off (a ``.csv.gz`` cut short) gives the blocks before the break,
    then an empty block whose ``problem`` is the ``truncated file`` dead-letter reason."""
    with open_csv(text_file.path, text_file.encoding) as handle:
        yield from _blocks_as_read(handle, text_file.start, None, True, block_bytes)


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
    block: bytes, columns: list[str], include: list[str] | None = None, delimiter: str = ","
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Whole CSV records (no header; quoted values may hold newlines) as a table of binary columns.

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
        read_options=decode.block_read_options(columns, block),
        parse_options=pa_csv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid_row, newlines_in_values=True
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.binary() for c in columns},
            strings_can_be_null=False,
            include_columns=include or columns,
        ),
    )
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
                yield from self._parse(block, text_file.path, text_file.delimiter)

    def _dead(self, source: str, offset: int | None, raw: str, feature: str | None, reason: str):
        beam.metrics.Metrics.counter(self._namespace, f"{self._what}_dead_lettered").inc()
        return beam.pvalue.TaggedOutput("dead_letter", decode.dead_letter(source, offset, raw, feature, reason))

    def _parse(self, block: _Block, source: str, delimiter: str):
        table, ragged = parse_csv_block(block.data, self._columns, delimiter=delimiter)
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
