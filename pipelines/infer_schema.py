"""Bootstrapping a raw schema from data, for a person to review (like TFDV's ``infer_schema``).

Reads CSV (every cell as text, then the same parsing rules as ``decode``) or Parquet (Arrow types)
in a stream of batches, so memory stays bounded whatever the size. Per column it infers:

* the type: INT if every non-empty value is an integer, FLOAT if every one is a number, else BYTES;
* presence: required (``min_fraction: 1``, ``shape [1]``) when no row lacks it, else optional;
* a domain: ``min: 0`` for numbers never negative; an inline ``string_domain`` for strings with
  at most ``max_domain_size`` distinct values seen at least ``min_domain_support`` times each on
  average;
* an ``annotation`` comment with what was observed (rows, missing, range or distinct values),
  so the reviewer sees the evidence beside each decision.
"""

import dataclasses
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines import read
from pipelines.errors import UsageError

__all__ = ["infer_schema"]

_INT = re.compile(r"^\s*[+-]?[0-9]+\s*$")
_DISTINCT_CAP = 1000


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

    def add_text(self, values: pa.Array, decimal_comma: bool = False) -> None:
        text = pc.utf8_trim_whitespace(values.cast(pa.string()))
        present = pc.greater(pc.utf8_length(text), 0).fill_null(False)
        self.rows += len(values)
        self.missing += len(values) - pc.sum(present).as_py() if len(values) else 0
        cells = text.filter(present)
        if not len(cells):
            return
        if self.all_int:
            self.all_int = pc.all(pc.match_substring_regex(cells, _INT.pattern)).as_py()
        if self.all_number:
            numbers = _as_numbers(cells, decimal_comma)
            if numbers is None:
                self.all_number = False
            else:
                self._add_range(numbers)
        self._add_distinct(values.filter(present))

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
    if column.missing == 0 and column.rows:
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        feature.shape.dim.add().size = 1
    else:
        feature.presence.min_count = 0
        feature.value_count.min = 0
        feature.value_count.max = 1
    observed = f"observed: {column.rows} rows, {column.missing} missing"
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


def infer_schema(
    patterns: list[str],
    max_domain_size: int = 20,
    min_domain_support: int = 10,
    delimiter: str | None = None,
    encoding: str | None = None,
    decimal_comma: bool = False,
) -> schema_pb2.Schema:
    """Infers a raw schema from CSV or Parquet files.

    Args:
        patterns: File patterns (local or ``gs://``), all CSV or all Parquet.
        max_domain_size: Most distinct values a string feature may have to get a string domain.
        min_domain_support: Least average number of rows per distinct value for a string domain.
        delimiter: The CSV field delimiter (None: a tab for ``.tsv[.gz]`` files, else a comma).
        encoding: The CSV files' text encoding when not UTF-8.
        decimal_comma: CSV floats are written with a decimal comma (``12,45``).

    Returns:
        The schema, features in file column order.

    Raises:
        UsageError: Unreadable inputs, other formats, or files whose headers differ.
    """
    files = read.expand_patterns(patterns)
    formats = {read.input_format_of(path) for path, _ in files}
    if formats - {read.CSV, read.PARQUET} or len(formats) != 1:
        raise UsageError("infer-schema reads CSV or Parquet files, one format at a time")
    columns: dict[str, _Column] = {}
    order: list[str] | None = None
    for path, _ in files:
        for batch in _batches(path, formats == {read.CSV}, read.delimiter_of(path, delimiter), encoding):
            if order is None:
                order = batch.schema.names
                columns = {name: _Column() for name in order}
            elif batch.schema.names != order:
                raise UsageError(f"{path}: columns {batch.schema.names} differ from the first file's {order}")
            for name, values in zip(batch.schema.names, batch.columns, strict=True):
                if formats == {read.CSV}:
                    columns[name].add_text(values, decimal_comma)
                else:
                    columns[name].add_typed(values)
    schema = schema_pb2.Schema()
    for name in order or []:
        schema.feature.append(_feature(name, columns[name], max_domain_size, min_domain_support))
    return schema


def _batches(path: str, is_csv: bool, delimiter: str, encoding: str | None = None):
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        try:
            if is_csv:
                header, _ = read._read_header(
                    path, delimiter, encoding
                )  # a byte-order mark is not part of the first name
                if header is None:
                    raise UsageError(f"{path}: the header line is not UTF-8")
                stream = pa.PythonFile(handle, mode="r")
                if CompressionTypes.detect_compression_type(path) == CompressionTypes.GZIP:
                    stream = pa.CompressedInputStream(stream, "gzip")  # pyarrow cannot read Beam's gzip handle
                reader = pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(block_size=8 << 20, encoding=encoding or "utf8"),
                    parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                    convert_options=pa_csv.ConvertOptions(
                        column_types={name: pa.binary() for name in header}, strings_can_be_null=False
                    ),
                )
                yield from reader
            else:
                yield from pq.ParquetFile(handle).iter_batches(batch_size=65536)
        except pa.ArrowException as error:
            raise UsageError(f"{path}: {str(error).splitlines()[0]}") from None
