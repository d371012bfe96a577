"""Per-record provenance: from a transformed example's ``row_id`` back to its raw record.

``row_id`` is computed inside the transform graph from the raw values (``transforms.common.row_id``),
so the run's own ``serving_model`` recomputes it exactly: this module re-reads the run's recorded
inputs in blocks, cuts and decodes them as the run did (CSV lines, or records under the run's
``--allow-quoted-newlines``; Parquet row groups; TFRecord records), asks the serving graph for each
row's ``row_id`` and reports the records whose id is wanted (``skewless lineage row``). Nothing
extra is written at run time.
"""

import json
from collections.abc import Iterable

import pyarrow as pa

from pipelines.errors import UsageError
from pipelines.formats import csv_records, decode, decode_csv, decode_examples
from pipelines.io import files, input_files, read, text_records

__all__ = ["find_rows"]

_BLOCK_BYTES = 4 << 20
_RECORDS_PER_BLOCK = 5000


def _blocks_of_records(
    path: str, quoted_newlines: bool, encoding: str | None = None
) -> Iterable[tuple[bytes, list[bytes], list[int], list[int]]]:
    """Blocks of whole records after the header, cut as the run cut them: ``(block, records, byte
    offsets, line numbers)`` (line 1 is the header; a record spanning lines has its first)."""
    with input_files.open_csv(path, encoding) as handle:
        start = len(handle.readline())
        line_number = 2
        for block, offset in csv_records.record_blocks(handle, _BLOCK_BYTES, quoted_newlines):
            records = csv_records.split_records(block, quoted_newlines)
            offsets, numbers, position = [], [], start + offset
            for record in records:
                offsets.append(position)
                numbers.append(line_number)
                position += len(record) + 1
                line_number += record.count(b"\n") + 1
            yield block, records, offsets, numbers


def find_rows(run_dir: str, row_ids: set[int]) -> list[dict]:
    """The raw records of a run's inputs whose ``row_id`` is in ``row_ids``.

    Returns:
        One dict per matching record: row_id, source, offset, line, raw. For CSV: the byte offset
        (in the decompressed text), the line number (1 = header; a record spanning lines has its
        first) and the record's text. For Parquet and TFRecord: the record's index in the file (as
        in dead letters), no line, and the decoded values as JSON.

    Raises:
        UsageError: ``run_dir`` is not a successful run output with a serving model.
    """
    from pipelines.serving.model import ServingModel

    run_json = files.join(run_dir, "run.json")
    model_dir = files.join(run_dir, "serving_model")
    if not files.exists(run_json) or not files.exists(files.join(model_dir, "saved_model.pb")):
        raise UsageError(f"{run_dir} is not a `skewless run` output with a serving_model/")
    record = files.read_json(run_json)
    inputs = [entry["uri"] for entry in record.get("inputs", [])]
    csv_format = input_files.CsvFormat.from_parameters(record.get("parameters", {}))
    model = ServingModel(model_dir, signature="transform_features")
    found = []
    for path in inputs:
        if input_files.input_format_of(path) != input_files.CSV:
            found += _find_in_records(path, row_ids, model)
            continue
        file_delimiter = input_files.delimiter_of(path, csv_format.delimiter)
        columns = text_records.csv_header(path, file_delimiter, csv_format.encoding)
        for block, records, offsets, numbers in _blocks_of_records(
            path, csv_format.quoted_newlines, csv_format.encoding
        ):
            decoded = decode_csv.decode_csv_block(
                block,
                columns,
                model.schema,
                path,
                offsets[0],
                delimiter=file_delimiter,
                quoted_newlines=csv_format.quoted_newlines,
                decimal_comma=csv_format.decimal_comma,
                missing_values=csv_format.missing_values,
            )
            for i, row_id in _row_ids(decoded, offsets, model):
                if row_id in row_ids:
                    found.append(
                        {
                            "row_id": row_id,
                            "source": path,
                            "offset": offsets[i],
                            "line": numbers[i],
                            "raw": records[i].decode("utf-8", "backslashreplace").rstrip("\r"),
                        }
                    )
    return found


def _find_in_records(path: str, row_ids: set[int], model) -> list[dict]:
    """The matching rows of a Parquet or TFRecord input, decoded as the run decoded them."""
    found = []
    parquet = input_files.input_format_of(path) == input_files.PARQUET
    with input_files.open_input(path) as handle:
        blocks = _parquet_blocks(handle, path, model.schema) if parquet else _example_blocks(handle, path, model.schema)
        for first, decoded in blocks:
            for row, (i, row_id) in enumerate(_row_ids(decoded, range(first, first + decoded.rows_read), model)):
                if row_id in row_ids:
                    values = decoded.batch.slice(row, 1).to_pylist()[0]
                    found.append(
                        {
                            "row_id": row_id,
                            "source": path,
                            "offset": first + i,
                            "line": None,
                            "raw": json.dumps(values, default=_text, sort_keys=True),
                        }
                    )
    return found


def _row_ids(decoded: decode.DecodedBlock, offsets, model) -> list[tuple[int, int]]:
    """``(position of its record among ``offsets``, row_id)`` for each row the block decoded, in
    batch order: the block's records are at ``offsets``, and those its dead letters name are not
    rows."""
    if decoded.batch is None:
        return []
    dead = {letter["offset"] for letter in decoded.dead_letters}
    kept = [i for i, offset in enumerate(offsets) if offset not in dead]
    from tfx_bsl.coders import example_coder

    examples = example_coder.RecordBatchToExamplesEncoder().encode(decoded.batch)
    ids = model.predict_examples(examples)["row_id"]
    return list(zip(kept, ids.tolist(), strict=True))


def _parquet_blocks(handle, path: str, schema) -> Iterable[tuple[int, decode.DecodedBlock]]:
    """``(index of the first row, decoded block)`` of a Parquet file, read as the run read it."""
    for first, batch, _, _ in read._parquet_pieces(handle, [f.name for f in schema.feature]):
        if batch is not None:
            yield first, decode.decode_table(pa.Table.from_batches([batch]), schema, path, (), first)


def _example_blocks(handle, path: str, schema) -> Iterable[tuple[int, decode.DecodedBlock]]:
    """``(index of the first record, decoded block)`` of runs of intact records of a TFRecord file."""
    from pipelines.formats import tfrecord_records

    for run in tfrecord_records.batches(tfrecord_records.read_records(handle), _RECORDS_PER_BLOCK):
        if not run[0].problem:  # damage has no row to trace
            yield run[0].index, decode_examples.decode_examples([r.data for r in run], schema, path, run[0].index)


def _text(value) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
