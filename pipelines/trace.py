"""Per-record provenance: from a transformed example's ``row_id`` back to its raw line(s).

``row_id`` is computed inside the transform graph from the raw values (``transforms.common.row_id``),
so the run's own ``serving_model`` recomputes it exactly: this module re-reads the run's recorded CSV
inputs in blocks, decodes them as the run did, asks the serving graph for each row's ``row_id`` and
reports the lines whose id is wanted (``skewless lineage row``). Nothing extra is written at run time.
"""

import json
import os
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems

from pipelines import decode, read
from pipelines.errors import UsageError

__all__ = ["find_rows"]

_BLOCK_LINES = 20_000


def _blocks_of_lines(path: str) -> Iterable[tuple[list[bytes], list[int], int]]:
    """(lines, byte offsets, line number of the first) after the header, ``_BLOCK_LINES`` at a time."""
    with FileSystems.open(path) as handle:
        offset = len(handle.readline())
        lines, offsets, first_line, line_number = [], [], 2, 2
        for line in handle:
            lines.append(line)
            offsets.append(offset)
            offset += len(line)
            line_number += 1
            if len(lines) == _BLOCK_LINES:
                yield lines, offsets, first_line
                lines, offsets, first_line = [], [], line_number
        if lines:
            yield lines, offsets, first_line


def find_rows(run_dir: str, row_ids: set[int]) -> list[dict]:
    """The raw lines of a run's CSV inputs whose ``row_id`` is in ``row_ids``.

    Returns:
        One dict per matching line: row_id, source, byte offset, line number (1 = header), raw line.

    Raises:
        UsageError: ``run_dir`` is not a successful run output with a serving model.
    """
    from pipelines.serving import ServingModel

    run_json = os.path.join(run_dir, "run.json")
    model_dir = os.path.join(run_dir, "serving_model")
    if not os.path.isfile(run_json) or not os.path.isdir(model_dir):
        raise UsageError(f"{run_dir} is not a `skewless run` output with a serving_model/")
    with open(run_json, encoding="utf-8") as handle:
        inputs = [entry["uri"] for entry in json.load(handle).get("inputs", [])]
    model = ServingModel(model_dir, signature="transform_features")
    found = []
    for path in inputs:
        if read.input_format_of(path) != "csv":
            continue
        columns = read.csv_header(path)
        for lines, offsets, first_line in _blocks_of_lines(path):
            block = decode.decode_csv_block(b"".join(lines), columns, model.schema, path, offsets[0])
            if block.batch is None:
                continue
            dead = {letter["offset"] for letter in block.dead_letters}
            valid = [i for i, offset in enumerate(offsets) if offset not in dead]
            examples = model._encoder.encode(block.batch)
            ids = model.predict_examples(examples)["row_id"]
            for position, row_id in enumerate(ids.tolist()):
                if row_id in row_ids:
                    i = valid[position]
                    found.append(
                        {
                            "row_id": row_id,
                            "source": path,
                            "offset": offsets[i],
                            "line": first_line + i,
                            "raw": lines[i].decode("utf-8", "backslashreplace").rstrip("\r\n"),
                        }
                    )
    return found
