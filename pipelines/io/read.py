"""Reading raw data: CSV, Parquet or tf.Example TFRecord files into validated Arrow RecordBatches.

``ReadRawData`` is the edge of the pipeline: it expands file patterns (local or ``gs://``), reads
large CSV files in byte ranges so that the work spreads over workers (whole files, streamed in
blocks, when compressed or when quoted values may hold newlines: ``pipelines/formats/csv_records.py``),
decodes in Arrow (``pipelines/formats/decode.py``), validates against the schema
(``pipelines/quality/validate.py``), and returns two PCollections: ``batches`` of
``(RecordBatch, row_key_hashes)`` and ``dead_letter`` dicts.
"""

import concurrent.futures
import csv
import dataclasses
import functools
import json
import time
from collections.abc import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.errors import UsageError
from pipelines.formats import decode, decode_csv, decode_examples, tfrecord_records
from pipelines.formats.blocks import (
    BLANK_LINES_AT_END,
    Block,
    content_end,
    cut_blank_lines_at_end,
    range_blocks,
)
from pipelines.io import coders
from pipelines.io.coders import KeyedBatch
from pipelines.io.input_files import (
    CSV,
    DEFAULT_CSV_FORMAT,
    PARQUET,
    CsvFormat,
    delimiter_of,
    input_format_of,
    open_csv,
    open_input,
)
from pipelines.runtime import overlap

__all__ = [
    "BLANK_LINES_AT_END",
    "UNKNOWN_LOSS_REASONS",
    "ReadRawData",
    "cut_blank_lines_at_end",
    "dead_letters_by_feature",
]

METRICS_NAMESPACE = "skewless"
ROWS_BY_SOURCE_NAMESPACE = "skewless.rows_read_by_source"
DEAD_LETTER_NAMESPACE = "skewless.dead_letter_reasons"
DEAD_LETTER_FEATURE_NAMESPACE = "skewless.dead_letter_features"  # counter names: "<feature>|<reason>"
IGNORED_FEATURES_NAMESPACE = "skewless.ignored_features"  # counter names: JSON ["<file>", "<feature>"]
DEFAULT_RANGE_BYTES = 32 << 20


def dead_letters_by_feature(counters: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """``{feature: {reason: rows}}`` of a job's dead letters, from its counters (the feature
    ``""`` holds the reasons of whole records: ragged lines, undecodable records)."""
    found: dict[str, dict[str, int]] = {}
    for (space, name), value in counters.items():
        if space == DEAD_LETTER_FEATURE_NAMESPACE and value:
            feature, _, reason = name.partition("|")
            found.setdefault(feature, {})[reason] = found.get(feature, {}).get(reason, 0) + value
    return found


_TFRECORD_BATCH = 2000
_PARQUET_BATCH = 65536


# dead-letter reasons for damage that lost an unknown number of rows: a run fails on any of them,
# whatever --max-invalid-fraction says
UNKNOWN_LOSS_REASONS = (decode.TRUNCATED_FILE, tfrecord_records.LOST_RECORDS)


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


def read_header(path: str, delimiter: str = ",", encoding: str | None = None) -> tuple[list[str] | None, int]:
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
        columns, header_bytes = read_header(path, file_delimiter, csv_format.encoding)
        error = _header_error(columns, expected)
        columns = tuple(columns or ())
        if whole or CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
            ranges.append(_CsvRange(path, header_bytes, None, columns, error, file_delimiter))
            continue
        # the ranges are cut before the blank lines that end the file, and the last one reads them
        # to the end: a range holding only some of them would take them for rows
        content = content_end(path, size)
        for start in range(header_bytes, max(content, header_bytes + 1), range_bytes):
            end = min(start + range_bytes, content)
            last = end >= content
            ranges.append(_CsvRange(path, start, size if last else end, columns, error, file_delimiter, last=last))
    return ranges


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
            blocks = range_blocks(handle, rng.start, rng.end, self._csv_format.quoted_newlines, last=rng.last)
            # the next blocks decode on a background thread while this one goes down the stage
            decoded_blocks = overlap.in_background(functools.partial(self._decode_block, rng), blocks, self._executor)
            for decoded, seconds, blank_lines_at_end in decoded_blocks:
                if blank_lines_at_end and self._counted:  # counted here: metrics belong to the DoFn's thread
                    beam.metrics.Metrics.counter(METRICS_NAMESPACE, BLANK_LINES_AT_END).inc(blank_lines_at_end)
                yield from self._emit(decoded, rng.path, seconds)

    def _decode_block(self, rng: _CsvRange, item: Block) -> tuple[decode.DecodedBlock, float, int]:
        """The block decoded, the seconds it took and the blank lines cut after it."""
        block, offset, problem, blank_lines_at_end = item
        if problem:  # the file broke off here: one dead letter says so
            return decode.lost_rows(rng.path, [offset], problem), 0.0, 0
        if rng.header_error:
            quoted = self._csv_format.quoted_newlines
            undecodable = decode_csv.undecodable_lines(block, rng.path, offset, rng.header_error, quoted)
            return undecodable, 0.0, blank_lines_at_end
        started = time.perf_counter()
        decoded = decode_csv.decode_csv_block(
            block,
            rng.columns,
            self._schema,
            rng.path,
            offset,
            self._split_key,
            rng.delimiter,
            self._csv_format.quoted_newlines,
            self._csv_format.decimal_comma,
            self._csv_format.missing_values,
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
    """Reads a TFRecord file's records with their checksums verified (``pipelines/formats/tfrecord_records.py``)
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
        decoded = decode_examples.decode_examples(
            [r.data for r in batch], self._schema, path, first.index, self._split_key
        )
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
