"""Bootstrapping a raw schema from data, for a person to review (like TFDV's ``infer_schema``).

Reads CSV (every cell as text, then the same parsing rules as ``decode``), Parquet (Arrow types)
or tf.Example TFRecord files (each feature's list type) in a stream of batches, so memory stays
bounded whatever the size. Per column it infers:

* the type: INT if every non-empty value is an integer, FLOAT if every one is a number, else BYTES;
  a CSV column that would be numbers but for cells such as ``NA`` (pandas' default missing-value
  texts, ``MISSING_VALUE_TEXTS``) is numbers with those cells missing, and those texts become the
  dataset's ``missing_values``; digits with a leading zero (``08123``: postcodes, ids) are strings
  (a tf.Example feature has its list's type: one written as ``int64_list`` in some examples and
  ``float_list`` in others cannot be read by any one schema, and is reported);
* presence: required (``min_fraction: 1``, ``shape [1]``) when no row lacks it, else optional;
* the number of values: one a row, or (tf.Example lists) ``value_count`` with the least and most seen;
* a domain: ``min: 0`` for numbers never negative; an inline ``string_domain`` for strings with
  at most ``max_domain_size`` distinct values seen at least ``min_domain_support`` times each on
  average;
* an ``annotation`` comment with what was observed (rows, missing, range or distinct values),
  so the reviewer sees the evidence beside each decision.
"""

import collections
import dataclasses
import re
import typing

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.errors import UsageError
from pipelines.io import input_files, read

__all__ = ["MISSING_VALUE_TEXTS", "ColumnFacts", "Inference", "infer", "infer_schema"]

_INT = re.compile(r"^\s*[+-]?[0-9]+\s*$")
_LEADING_ZERO = r"^[+-]?0[0-9]"  # 08123: the zero is part of the value (a postcode, an id), not a number
_DISTINCT_CAP = 1000
# pandas' read_csv default na_values, the texts a POC script in pandas already read as missing
MISSING_VALUE_TEXTS = (
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip


def _as_numbers(cells: pa.Array, decimal_comma: bool) -> pa.Array | None:
    """Text cells as float64, or None when one is not a number (with ``decimal_comma``, ``12,45`` is
    one and ``12.45`` is not, as ``skewless run --decimal-comma`` reads them)."""
    if decimal_comma:
        if pc.any(pc.match_substring(cells, ".")).as_py():
            return None
        cells = pc.replace_substring(cells, ",", ".")
    try:
        return pc.cast(cells, pa.float64())
    except pa.ArrowInvalid:
        return None


@dataclasses.dataclass
class _Column:
    rows: int = 0
    missing: int = 0
    all_int: bool = True
    all_number: bool = True
    minimum: float | None = None
    maximum: float | None = None
    distinct: set = dataclasses.field(default_factory=set)
    distinct_overflow: bool = False
    fewest_values: int = 1  # per row where present (lists: tf.Example features)
    most_values: int = 1
    list_type: str | None = None  # a tf.Example feature's list type: int64, float or bytes
    tokens: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # NA, ... cells

    def add_text(self, values: pa.Array, decimal_comma: bool = False, candidates: pa.Array = None) -> None:
        """Adds CSV cells; ``candidates``: texts that may mean a missing value (``MISSING_VALUE_TEXTS``)."""
        candidates = pa.array(MISSING_VALUE_TEXTS) if candidates is None else candidates
        text = pc.utf8_trim_whitespace(values.cast(pa.string()))
        present = pc.greater(pc.utf8_length(text), 0).fill_null(False)
        self.rows += len(values)
        self.missing += len(values) - pc.sum(present).as_py() if len(values) else 0
        is_token = pc.and_(present, pc.is_in(text, candidates).fill_null(False))
        if pc.any(is_token).as_py():
            for entry in pc.value_counts(text.filter(is_token)).to_pylist():
                self.tokens[entry["values"]] += entry["counts"]
            present = pc.and_(present, pc.invert(is_token))
        cells = text.filter(present)
        if not len(cells):
            return
        if (self.all_int or self.all_number) and pc.any(pc.match_substring_regex(cells, _LEADING_ZERO)).as_py():
            self.all_int = self.all_number = False  # a leading zero is part of the value: a string
        if self.all_int:
            self.all_int = pc.all(pc.match_substring_regex(cells, _INT.pattern)).as_py()
        if self.all_number:
            numbers = _as_numbers(cells, decimal_comma)
            if numbers is None:
                self.all_number = False
            else:
                self._add_range(numbers)
        self._add_distinct(values.filter(present))

    @property
    def numbers_but_for_tokens(self) -> bool:
        """Whether the column is numbers once its missing-value texts are missing."""
        return self.all_number and self.rows - self.missing - sum(self.tokens.values()) > 0

    def with_missing(self, missing_values: set[str]) -> "_Column":
        """The column with the cells of ``missing_values`` missing and other such texts as values."""
        adopted = sum(count for token, count in self.tokens.items() if token in missing_values)
        column = dataclasses.replace(self, missing=self.missing + adopted, distinct=set(self.distinct))
        kept = [token for token in self.tokens if token not in missing_values]
        if kept:  # texts that are values here (a string column's "NA"): the column is strings
            column.all_int = column.all_number = False
            column._add_distinct(pa.array([token.encode() for token in kept], pa.binary()))
        return column

    def add_typed(self, values: pa.Array) -> None:
        self.rows += len(values)
        self.missing += values.null_count
        present = values.drop_null()
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            self.all_int = self.all_int and pa.types.is_integer(values.type)
            self._add_range(present.cast(pa.float64()))
        else:
            self.all_int = self.all_number = False
        self._add_distinct(present)

    def add_lists(self, values: pa.Array, name: str, source: str) -> None:
        """A list column of decoded tf.Examples (null type: the feature is in none of the batch's rows)."""
        self.rows += len(values)
        if pa.types.is_null(values.type):
            self.missing += len(values)
            return
        lengths = pc.list_value_length(values).fill_null(0)
        present = pc.greater(lengths, 0)
        count = pc.sum(present).as_py() or 0
        self.missing += len(values) - count
        if not count:
            return
        kept = pc.filter(lengths, present)
        fewest, most = pc.min(kept).as_py(), pc.max(kept).as_py()
        first = self.list_type is None
        self.fewest_values = fewest if first else min(self.fewest_values, fewest)
        self.most_values = most if first else max(self.most_values, most)
        flat = pc.list_flatten(values)
        list_type = (
            "int64" if pa.types.is_integer(flat.type) else "float" if pa.types.is_floating(flat.type) else "bytes"
        )
        if self.list_type not in (None, list_type):
            raise UsageError(
                f"{source}: feature {name!r} is a {self.list_type}_list in some examples and a {list_type}_list "
                "in others: no one schema type reads both"
            )
        self.list_type = list_type
        if list_type == "bytes":
            self.all_int = self.all_number = False
        else:
            self.all_int = self.all_int and list_type == "int64"
            self._add_range(flat.cast(pa.float64()))
        self._add_distinct(flat)

    def _add_range(self, numbers: pa.Array) -> None:
        if len(numbers):
            low, high = pc.min(numbers).as_py(), pc.max(numbers).as_py()
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)

    def _add_distinct(self, values: pa.Array) -> None:
        if not self.distinct_overflow:
            self.distinct.update(pc.unique(values).to_pylist())
            if len(self.distinct) > _DISTINCT_CAP:
                self.distinct_overflow = True
                self.distinct.clear()


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _feature(name: str, column: _Column, max_domain_size: int, min_domain_support: int) -> schema_pb2.Feature:
    feature = schema_pb2.Feature(name=name)
    present = column.rows - column.missing
    if present and column.all_int:
        feature.type = schema_pb2.INT
    elif present and column.all_number:
        feature.type = schema_pb2.FLOAT
    else:
        feature.type = schema_pb2.BYTES
    scalar = column.most_values <= 1
    if column.missing == 0 and column.rows and scalar:
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        feature.shape.dim.add().size = 1
    elif scalar:
        feature.presence.min_count = 0
        feature.value_count.min = 0
        feature.value_count.max = 1
    else:  # a list: as many values as were seen
        if column.missing == 0:
            feature.presence.min_fraction = 1.0
            feature.presence.min_count = 1
        else:
            feature.presence.min_count = 0
        feature.value_count.min = 0 if column.missing else column.fewest_values
        feature.value_count.max = column.most_values
    observed = f"observed: {column.rows} rows, {column.missing} missing"
    counted = [f"{token!r} x{count}" for token, count in sorted(column.tokens.items()) if count and column.all_number]
    if counted:
        observed += f" ({', '.join(counted)})"
    if not scalar:
        observed += f", {column.fewest_values} to {column.most_values} values a row"
    if feature.type != schema_pb2.BYTES and column.minimum is not None:
        observed += f", range [{_number(column.minimum)}, {_number(column.maximum)}]"
        if column.minimum >= 0:
            domain = feature.int_domain if feature.type == schema_pb2.INT else feature.float_domain
            domain.min = 0
    elif feature.type == schema_pb2.BYTES:
        if column.distinct_overflow:
            observed += f", more than {_DISTINCT_CAP} distinct values"
        else:
            values = sorted(_text(v) for v in column.distinct)
            observed += f", {len(values)} distinct values"
            if values and len(values) <= max_domain_size and present >= min_domain_support * len(values):
                feature.string_domain.name = name
                feature.string_domain.value.extend(values)
    feature.annotation.comment.append(observed)
    return feature


class ColumnFacts(typing.NamedTuple):
    """What was observed of one column: distinct values (None: more than could be kept), range."""

    distinct: int | None
    minimum: float | None
    maximum: float | None


class Inference(typing.NamedTuple):
    """What :func:`infer` found: the schema, the missing-value texts, the facts behind each feature."""

    schema: schema_pb2.Schema
    missing_values: list[str]
    columns: dict[str, ColumnFacts]


def _facts(columns: dict[str, "_Column"]) -> dict[str, ColumnFacts]:
    return {
        name: ColumnFacts(None if c.distinct_overflow else len(c.distinct), c.minimum, c.maximum)
        for name, c in columns.items()
    }


def infer_schema(patterns: list[str], **options) -> schema_pb2.Schema:
    """The schema :func:`infer` finds, for the same arguments."""
    return infer(patterns, **options).schema


def infer(
    patterns: list[str],
    max_domain_size: int = 20,
    min_domain_support: int = 10,
    delimiter: str | None = None,
    encoding: str | None = None,
    decimal_comma: bool = False,
    missing_values: tuple[str, ...] = (),
) -> Inference:
    """Infers a raw schema from CSV, Parquet or tf.Example TFRecord files.

    Args:
        patterns: File patterns (local or ``gs://``), all of one format.
        max_domain_size: Most distinct values a string feature may have to get a string domain.
        min_domain_support: Least average number of rows per distinct value for a string domain.
        delimiter: The CSV field delimiter (None: a tab for ``.tsv[.gz]`` files, else a comma).
        encoding: The CSV files' text encoding when not UTF-8.
        decimal_comma: CSV floats are written with a decimal comma (``12,45``).
        missing_values: Texts that mean a missing value whatever the columns hold, besides those
            found.

    Returns:
        The schema, features in file column order (tf.Examples: in the order first seen); the
        texts that mean a missing value in the CSV files (``MISSING_VALUE_TEXTS`` found in columns
        that are numbers but for them; every column then reads them as missing); and per column
        what was observed.

    Raises:
        UsageError: Unreadable inputs, mixed formats, files whose headers differ, a damaged
            TFRecord, or a tf.Example feature of two list types.
    """
    files = input_files.expand_patterns(patterns)
    formats = {input_files.input_format_of(path) for path, _ in files}
    if len(formats) != 1:
        raise UsageError("infer-schema reads one format at a time")
    if formats == {input_files.TFRECORD}:
        examples = _example_columns(files)
        return Inference(_schema_of(examples, max_domain_size, min_domain_support), [], _facts(examples))
    columns: dict[str, _Column] = {}
    order: list[str] | None = None
    ragged = _Ragged()
    given = [str(token) for token in missing_values if str(token) != ""]
    candidates = pa.array(sorted({*MISSING_VALUE_TEXTS, *given}))
    for path, _ in files:
        for batch in _batches(
            path, formats == {input_files.CSV}, input_files.delimiter_of(path, delimiter), encoding, ragged
        ):
            if order is None:
                order = batch.schema.names
                columns = {name: _Column() for name in order}
            elif batch.schema.names != order:
                raise UsageError(f"{path}: columns {batch.schema.names} differ from the first file's {order}")
            for name, values in zip(batch.schema.names, batch.columns, strict=True):
                if formats == {input_files.CSV}:
                    columns[name].add_text(values, decimal_comma, candidates)
                else:
                    columns[name].add_typed(values)
    hint = f" ({ragged.comment()}; is the delimiter right?)" if ragged.count else ""
    tokens = sorted({*given, *(token for c in columns.values() if c.numbers_but_for_tokens for token in c.tokens)})
    columns = {name: columns[name].with_missing(set(tokens)) for name in order or []}
    schema = _schema_of(columns, max_domain_size, min_domain_support, hint)
    if tokens:
        schema.annotation.comment.append(f"missing-value texts (config.yaml missing_values): {', '.join(tokens)}")
    if ragged.count:
        schema.annotation.comment.append(ragged.comment())
    return Inference(schema, tokens, _facts(columns))


@dataclasses.dataclass
class _Ragged:
    """The CSV rows with a wrong number of fields: skipped (a schema is inferred from the others,
    as ``skewless run`` dead-letters them), counted, and the first kept as an example."""

    count: int = 0
    example: str = ""

    def skip(self, path: str, row) -> str:
        if not self.count:
            self.example = f"in {path}: {row.text[:200]!r}"
        self.count += 1
        return "skip"

    def comment(self) -> str:
        rows = "1 row" if self.count == 1 else f"{self.count} rows"
        return f"skipped: {rows} with a wrong number of fields, the first {self.example}"


def _schema_of(
    columns: dict[str, _Column], max_domain_size: int, min_domain_support: int, hint: str = ""
) -> schema_pb2.Schema:
    if not any(column.rows for column in columns.values()):  # a header only, or no example at all
        raise UsageError(f"the inputs hold no rows to infer types from{hint}")
    schema = schema_pb2.Schema()
    for name, column in columns.items():
        schema.feature.append(_feature(name, column, max_domain_size, min_domain_support))
    return schema


def _example_columns(files: list[tuple[str, int]], batch_size: int = 2000) -> dict[str, _Column]:
    """Each feature of the tf.Examples in ``files``, in the order first seen; a feature missing from
    some examples counts them as missing."""
    from tfx_bsl.coders import example_coder

    from pipelines.formats import tfrecord_records

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    columns: dict[str, _Column] = {}
    total = 0

    def add(batch_records: list[bytes], path: str) -> None:
        nonlocal total
        try:
            batch = decoder.DecodeBatch(batch_records)
        except Exception as error:  # noqa: BLE001 - the C++ decoder raises untyped errors
            raise UsageError(f"{path}: {str(error).splitlines()[0]}") from None
        for name, values in zip(batch.schema.names, batch.columns, strict=True):
            column = columns.setdefault(name, _Column(rows=total, missing=total))  # absent until now
            column.add_lists(values, name, path)
        total += batch.num_rows
        for column in columns.values():  # absent from this batch
            column.missing += total - column.rows
            column.rows = total

    for path, _ in files:
        with input_files.open_input(path) as handle:  # as `skewless run` reads it: a cut .gz is damage too
            for run in tfrecord_records.batches(tfrecord_records.read_records(handle), batch_size):
                if run[0].problem:
                    raise UsageError(f"{path}: {run[0].problem}: infer-schema reads sound files only")
                add([record.data for record in run], path)
    return columns


def _batches(path: str, is_csv: bool, delimiter: str, encoding: str | None = None, ragged: _Ragged | None = None):
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        try:
            if is_csv:
                header, _ = read.read_header(path, delimiter, encoding)  # a byte-order mark is not a name
                if header is None:
                    raise UsageError(f"{path}: the header line is not UTF-8")
                stream = pa.PythonFile(handle, mode="r")
                if CompressionTypes.detect_compression_type(path) == CompressionTypes.GZIP:
                    stream = pa.CompressedInputStream(stream, "gzip")  # pyarrow cannot read Beam's gzip handle
                reader = pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(block_size=8 << 20, encoding=encoding or "utf8"),
                    parse_options=pa_csv.ParseOptions(
                        delimiter=delimiter,
                        invalid_row_handler=(lambda row: ragged.skip(path, row)) if ragged else None,
                    ),
                    convert_options=pa_csv.ConvertOptions(
                        column_types={name: pa.binary() for name in header}, strings_can_be_null=False
                    ),
                )
                yield from reader
            else:
                yield from pq.ParquetFile(handle).iter_batches(batch_size=65536)
        except (pa.ArrowException, OSError, EOFError) as error:  # OSError: a gzip file cut short
            raise UsageError(f"{path}: {str(error).splitlines()[0]}") from None
