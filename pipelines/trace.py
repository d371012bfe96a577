"""Per-record provenance: from a transformed example's ``row_id`` back to its raw line(s).

``row_id`` is computed inside the transform graph from the raw values (``transforms.common.row_id``),
so the run's own ``serving_model`` recomputes it exactly: this module re-reads the run's recorded CSV
inputs in blocks, cuts and decodes them as the run did (lines, or records under the run's
``--allow-quoted-newlines``), asks the serving graph for each row's ``row_id`` and reports the
records whose id is wanted (``skewless lineage row``). Nothing extra is written at run time.
"""

import json
import os
from collections.abc import Iterable

from pipelines import csv_records, decode, read
from pipelines.errors import UsageError

__all__ = ["find_rows"]

_BLOCK_BYTES = 4 << 20


def _blocks_of_records(
    path: str, quoted_newlines: bool, encoding: str | None = None
) -> Iterable[tuple[bytes, list[bytes], list[int], list[int]]]:
    """Blocks of whole records after the header, cut as the run cut them: ``(block, records, byte
    offsets, line numbers)`` (line 1 is the header; a record spanning lines has its first)."""
    with read.open_csv(path, encoding) as handle:
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
    """The raw records of a run's CSV inputs whose ``row_id`` is in ``row_ids``.

    Returns:
        One dict per matching record: row_id, source, byte offset (in the decompressed text), line
        number (1 = header; a record spanning lines has its first), raw record.

    Raises:
        UsageError: ``run_dir`` is not a successful run output with a serving model.
    """
    from pipelines.serving import ServingModel

    run_json = os.path.join(run_dir, "run.json")
    model_dir = os.path.join(run_dir, "serving_model")
    if not os.path.isfile(run_json) or not os.path.isdir(model_dir):
        raise UsageError(f"{run_dir} is not a `skewless run` output with a serving_model/")
    with open(run_json, encoding="utf-8") as handle:
        record = json.load(handle)
    inputs = [entry["uri"] for entry in record.get("inputs", [])]
    csv_format = read.CsvFormat.from_parameters(record.get("parameters", {}))
    model = ServingModel(model_dir, signature="transform_features")
    found = []
    for path in inputs:
        if read.input_format_of(path) != "csv":
            continue
        file_delimiter = read.delimiter_of(path, csv_format.delimiter)
        columns = read.csv_header(path, file_delimiter, csv_format.encoding)
        for block, records, offsets, numbers in _blocks_of_records(
            path, csv_format.quoted_newlines, csv_format.encoding
        ):
            decoded = decode.decode_csv_block(
                block,
                columns,
                model.schema,
                path,
                offsets[0],
                delimiter=file_delimiter,
                quoted_newlines=csv_format.quoted_newlines,
                decimal_comma=csv_format.decimal_comma,
            )
            if decoded.batch is None:
                continue
            dead = {letter["offset"] for letter in decoded.dead_letters}
            valid = [i for i, offset in enumerate(offsets) if offset not in dead]
            examples = model._encoder.encode(decoded.batch)
            ids = model.predict_examples(examples)["row_id"]
            for position, row_id in enumerate(ids.tolist()):
                if row_id in row_ids:
                    i = valid[position]
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
