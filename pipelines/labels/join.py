"""Joining consensus labels (from ``skewless labels``) into ``skewless run`` by item id.

Each raw row's ``--label-key`` value is looked up in ``consensus.csv`` (a Beam side input, so it
scales with the number of items). The consensus label and its confidence ride through tf.Transform
as passthrough columns and land in every transformed example as ``consensus_label`` and
``consensus_confidence`` (and ``sample_weight`` under the ``weight`` policy), beside the features.
Rows without a consensus label, or whose label is flagged for review, follow an explicit policy:

* ``drop``: the row goes to ``dropped/*.jsonl`` with the reason, and is counted;
* ``keep``: the row stays, with an empty label and confidence 0 when it has none;
* ``weight``: the row stays, with ``sample_weight`` = the label's confidence (0 without a label).
"""

import codecs
import csv
import gzip
import json
import zlib

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.errors import UsageError
from pipelines.formats.decode import first_values_as_text
from pipelines.io.coders import KeyedBatch, of_type
from pipelines.io.input_files import open_input

__all__ = [
    "AttachConsensusLabels",
    "JoinConsensusLabels",
    "CONFIDENCE_COLUMN",
    "CONSENSUS_COLUMNS",
    "LABEL_COLUMN",
    "POLICIES",
    "ReadConsensus",
    "WEIGHT_COLUMN",
    "check_consensus",
    "passthrough_fields",
]

# the columns of the consensus.csv `skewless labels` writes for classes (its one source of truth)
CONSENSUS_COLUMNS = ("item", "label", "confidence", "n_annotations", "agreement", "flagged")

LABEL_COLUMN = "consensus_label"
CONFIDENCE_COLUMN = "consensus_confidence"
WEIGHT_COLUMN = "sample_weight"
POLICIES = ("drop", "keep", "weight")
DROPPED = "dropped"


def passthrough_fields(policy: str) -> list[tuple[str, pa.DataType]]:
    """The columns the join appends, in order."""
    fields = [(LABEL_COLUMN, pa.large_list(pa.large_binary())), (CONFIDENCE_COLUMN, pa.large_list(pa.float32()))]
    if policy == "weight":
        fields.append((WEIGHT_COLUMN, pa.large_list(pa.float32())))
    return fields


def check_consensus(path: str) -> int:
    """Checks, before the run, that ``path`` is a classes ``consensus.csv`` a join can trust; returns
    its number of items.

    The header must be ``CONSENSUS_COLUMNS`` (a boxes or text consensus has other columns), each
    line must have that many fields, a confidence in [0, 1], ``flagged`` 0 or 1, and no item may
    appear twice (which label would a row get?). One streamed pass holding the items, as the join's
    side input will. A ``.gz`` file is read by Python's gzip, which notices a file cut short (the
    join's Beam reader would stop early at the cut without a word).

    Raises:
        UsageError: Naming the line and the fault.
    """
    try:
        return _check_consensus_lines(path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:  # a consensus.csv.gz cut short or damaged
        raise UsageError(
            f"--labels {path}: the file is cut short or damaged ({type(error).__name__}: {error})"
        ) from None


def _check_consensus_lines(path: str) -> int:
    seen = set()
    with open_input(path) as handle:
        # lines as read (each with its newline, so a quoted value may span lines), decoded as they come
        lines = csv.reader(codecs.iterdecode(iter(handle.readline, b""), "utf-8-sig"))
        header = next(lines, [])
        if tuple(header) != CONSENSUS_COLUMNS:
            raise UsageError(
                f"--labels {path} is not a classes consensus.csv of `skewless labels`: its columns are "
                f"{','.join(header) or 'none'}, expected {','.join(CONSENSUS_COLUMNS)}"
            )
        for number, fields in enumerate(lines, start=2):
            if len(fields) != len(CONSENSUS_COLUMNS):
                raise UsageError(
                    f"--labels {path}, line {number}: {len(fields)} fields, expected {len(CONSENSUS_COLUMNS)}"
                )
            item, _, confidence, _, _, flagged = fields
            try:
                valid = 0.0 <= float(confidence) <= 1.0  # False for NaN
            except ValueError:
                valid = False
            if not valid:
                raise UsageError(
                    f"--labels {path}, line {number}: confidence {confidence!r} is not a number from 0 to 1"
                )
            if flagged not in ("0", "1"):
                raise UsageError(f"--labels {path}, line {number}: flagged {flagged!r} is not 0 or 1")
            if item in seen:
                raise UsageError(f"--labels {path}, line {number}: item {item!r} appears twice")
            seen.add(item)
    return len(seen)


def _parse_consensus(line: str):
    item, label, confidence, _, _, flagged = next(csv.reader([line]))
    return item, (label, float(confidence), flagged == "1")


class ReadConsensus(beam.PTransform):
    """Reads a ``consensus.csv`` into ``(item, (label, confidence, flagged))`` pairs."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadConsensusLines" >> beam.io.ReadFromText(self._path, skip_header_lines=1)
            | "ParseConsensus" >> beam.Map(_parse_consensus)
        )


class _AttachLabels(beam.DoFn):
    def __init__(self, key: str, policy: str):
        self._key, self._policy = key, policy

    def process(self, element, labels: dict):
        batch, keys = element
        items = first_values_as_text(batch.column(batch.schema.get_field_index(self._key)))
        found = [labels.get(item) if item is not None else None for item in items]
        usable = np.array([entry is not None and not entry[2] for entry in found], dtype=bool)
        if self._policy == "drop" and not usable.all():
            for row in np.flatnonzero(~usable):
                reason = "no consensus label" if found[row] is None else "consensus flagged for review"
                beam.metrics.Metrics.counter("skewless", "rows_dropped_by_policy").inc()
                beam.metrics.Metrics.counter("skewless.dropped_reasons", reason).inc()
                row_values = batch.slice(int(row), 1).to_pylist()[0]
                yield beam.pvalue.TaggedOutput(
                    DROPPED,
                    {"item": items[row], "reason": reason, "row": json.dumps(row_values, default=_text)},
                )
            keep = pa.array(usable)
            batch, keys, found = batch.filter(keep), keys[usable], [f for f, u in zip(found, usable, strict=True) if u]
        if batch.num_rows == 0:
            return
        labels_column = [[e[0].encode()] if e is not None else None for e in found]
        confidences = [[e[1]] if e is not None else [0.0] for e in found]
        batch = batch.append_column(LABEL_COLUMN, pa.array(labels_column, pa.large_list(pa.large_binary())))
        batch = batch.append_column(CONFIDENCE_COLUMN, pa.array(confidences, pa.large_list(pa.float32())))
        if self._policy == "weight":
            batch = batch.append_column(WEIGHT_COLUMN, pa.array(confidences, pa.large_list(pa.float32())))
        yield KeyedBatch(batch, keys)


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class AttachConsensusLabels(beam.PTransform):
    """Adds the consensus label columns to ``(RecordBatch, keys)`` pairs under a policy.

    Returns the pairs (main output) and ``dropped`` records, each counted as dropped by policy.
    """

    def __init__(self, consensus, key: str, policy: str):
        super().__init__()
        self._consensus, self._key, self._policy = consensus, key, policy

    def expand(self, batches):
        joined = batches | "LookUpConsensus" >> beam.ParDo(
            _AttachLabels(self._key, self._policy), beam.pvalue.AsDict(self._consensus)
        ).with_outputs(DROPPED, main="batches")
        of_type(joined.batches, KeyedBatch)  # sized without pickling (pipelines/io/coders.py)
        return joined


class JoinConsensusLabels(beam.PTransform):
    """Joins the consensus labels of a ``consensus.csv`` into ``(RecordBatch, keys)`` pairs by the
    item id in ``key``, under a policy: what ``skewless run --labels`` applies.

    Returns the labelled pairs (``batches``) and the ``dropped`` records (:class:`AttachConsensusLabels`).
    """

    def __init__(self, path: str, key: str, policy: str):
        super().__init__()
        self._path, self._key, self._policy = path, key, policy

    def expand(self, batches):
        consensus = batches.pipeline | "ReadConsensus" >> ReadConsensus(self._path)
        return batches | "AttachConsensusLabels" >> AttachConsensusLabels(consensus, self._key, self._policy)
