"""The Beam steps of duplicate detection: read the records, score candidate pairs, cluster the
matches, apply the policy; and the step ``skewless run`` uses to drop what a dedup run removed."""

import heapq
import typing
import zlib
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.dedup import matching
from pipelines.dedup.config import IDENTIFIER_KINDS, DedupConfig
from pipelines.formats import decode
from pipelines.io import shuffle, text_records
from pipelines.io.coders import KeyedBatch, of_type

__all__ = [
    "ApplyPolicy",
    "ClusterMatches",
    "DropRemovedDuplicates",
    "ReadRecords",
    "SampleById",
    "ScorePairs",
    "band_of",
    "normalise_record",
]

NAMESPACE = "skewless.dedup"


_PAIR_CHUNK = 200_000


def _dead(source: str, offset: int | None, raw: str, feature: str | None, reason: str):
    beam.metrics.Metrics.counter(NAMESPACE, "records_dead_lettered").inc()
    return beam.pvalue.TaggedOutput("dead_letter", decode.dead_letter(source, offset, raw, feature, reason))


class _KeepFirstOfEachId(beam.DoFn):
    """Keeps one record per id (the first in sort order of values, then file and offset); the
    others are dead letters naming their file and offset."""

    def __init__(self, columns: list[str]):
        self._columns = columns

    def process(self, element):
        record_id, sourced = element  # (file, offset, record)
        sourced = sorted(sourced, key=lambda each: ([each[2][c] for c in self._columns], each[0], each[1] or 0))
        yield sourced[0][2]
        for source, offset, other in sourced[1:]:
            line = text_records.csv_line([other[c] for c in self._columns])
            yield _dead(source, offset, line, None, f"repeated record id {record_id!r}")


class ReadRecords(beam.PTransform):
    """Reads headed CSV files into record dicts (``main``) and dead letters (``dead_letter``).

    ``group_temp``: where the group-by on the record id keeps its state (``shuffle.group_by_key``).
    """

    def __init__(
        self,
        files: Sequence[tuple[str, int]],
        columns: list[str],
        id_column: str,
        delimiter: str | None = None,
        encoding: str | None = None,
        group_temp: str | None = None,
        missing_values: Sequence[str] = (),
    ):
        super().__init__()
        self._files = text_records.plan_text_files(files, delimiter, encoding, missing_values)
        self._columns, self._id = columns, id_column
        self._group_temp = group_temp

    def expand(self, pbegin):
        parsed = (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Reshuffle" >> beam.Reshuffle()
            | "Parse"
            >> beam.ParDo(
                text_records.ParseCsvRecords(
                    self._columns, {self._id: "empty record id"}, NAMESPACE, "records", with_source=True
                )
            ).with_outputs("dead_letter", main="records")
        )
        unique = (
            parsed.records
            | "KeyById" >> beam.Map(lambda sourced, key: (sourced[2][key], sourced), self._id)
            | "GroupById" >> shuffle.group_by_key(self._group_temp)
            | "KeepFirstOfEachId"
            >> beam.ParDo(_KeepFirstOfEachId(self._columns)).with_outputs("dead_letter", main="records")
        )
        dead = (parsed.dead_letter, unique.dead_letter) | "MergeDeadLetters" >> beam.Flatten()
        return {"records": unique.records, "dead_letter": dead}


def normalise_record(record: dict, config: DedupConfig) -> tuple:
    """``(id, normalised values, block keys)`` of one record; a block key is None when a field is missing."""
    values = tuple(matching.normalise(kind, record.get(field)) for field, kind in config.fields.items())
    by_field = dict(zip(config.fields, values, strict=False))
    keys = tuple(
        None if any(by_field[f] is None for f in rule) else "\x1f".join(by_field[f] for f in rule)
        for rule in config.blocking
    )
    return record[config.id], values, keys


class _CountTerms(beam.CombineFn):
    """field -> value -> count, over the normalised values of the term-frequency fields."""

    def __init__(self, positions: dict[str, int]):
        self._positions = positions

    def create_accumulator(self):
        return {field: {} for field in self._positions}

    def add_input(self, accumulator, element):
        values = element[1]
        for field, position in self._positions.items():
            value = values[position]
            if value is not None:
                counts = accumulator[field]
                counts[value] = counts.get(value, 0) + 1
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            for field, counts in other.items():
                target = merged[field]
                for value, count in counts.items():
                    target[value] = target.get(value, 0) + count
        return merged

    def extract_output(self, accumulator):
        frequencies = {}
        for field, counts in accumulator.items():
            total = sum(counts.values())
            frequencies[field] = {value: count / total for value, count in counts.items()} if total else {}
        return frequencies


class ScorePairs(beam.DoFn):
    """Scores the candidate pairs of blocks in vectorised chunks; yields (id_a, id_b, probability).

    Input: ``((rule index, block key), [normalised records])``. A pair that also shares the key of an
    earlier rule is skipped (it is scored in that rule's block), so each pair is scored once. Only
    pairs at or above the review threshold are emitted; every scored pair is counted.
    """

    def __init__(self, config: DedupConfig):
        self._config = config
        self._fields = list(config.fields.items())
        self._tf_fields = [f for f, kind in self._fields if kind in matching.TF_KINDS]

    def start_bundle(self):
        self._records: list[tuple] = []
        self._left: list[np.ndarray] = []
        self._right: list[np.ndarray] = []
        self._rules: list[np.ndarray] = []
        self._pending = 0
        self._side_inputs = None

    def process(self, element, model, frequencies):
        (rule, _), members = element
        members = list(members)
        n = len(members)
        if n < 2:
            return
        if n > self._config.max_block_size:
            beam.metrics.Metrics.counter(NAMESPACE, "blocks_too_large").inc()
            beam.metrics.Metrics.counter(NAMESPACE, "pairs_not_compared").inc(n * (n - 1) // 2)
            return
        self._side_inputs = (model, frequencies)
        offset = len(self._records)
        self._records.extend(members)
        for start in range(n - 1):
            right = np.arange(start + 1, n, dtype=np.int64) + offset
            self._left.append(np.full(len(right), start + offset, dtype=np.int64))
            self._right.append(right)
            self._rules.append(np.full(len(right), rule, dtype=np.int16))
            self._pending += len(right)
            if self._pending >= _PAIR_CHUNK:
                yield from self._flush(model, frequencies)
                if start < n - 2:  # the block goes on in the next chunk
                    offset = 0
                    self._records.extend(members)

    def finish_bundle(self):
        if self._pending:
            for pair in self._flush(*self._side_inputs):
                yield WindowedValue(pair, 0, [GlobalWindow()])

    def _flush(self, model, frequencies):
        records = self._records
        left, right = np.concatenate(self._left), np.concatenate(self._right)
        rules = np.concatenate(self._rules)
        self._records, self._left, self._right, self._rules, self._pending = [], [], [], [], 0
        keep = np.ones(len(left), dtype=bool)
        for j in range(len(self._config.blocking)):
            keys = np.array([r[2][j] for r in records], dtype=object)
            present = np.array([k is not None for k in keys])
            earlier = rules > j
            if earlier.any():
                keep &= ~(earlier & present[left] & (keys[left] == keys[right]))
        left, right = left[keep], right[keep]
        beam.metrics.Metrics.counter(NAMESPACE, "pairs_compared").inc(int(len(left)))
        if not len(left):
            return
        levels, tf_left, tf_right = {}, {}, {}
        for position, (field, kind) in enumerate(self._fields):
            values = np.array([r[1][position] for r in records], dtype=object)
            levels[field] = matching.comparison_levels(kind, values[left], values[right])
            if field in self._tf_fields:
                table = frequencies.get(field, {})
                freq = np.array([np.nan if v is None else table.get(v, np.nan) for v in values], dtype=np.float64)
                tf_left[field], tf_right[field] = freq[left], freq[right]
        probabilities = matching.probabilities(matching.match_weights(levels, model, tf_left, tf_right))
        ids = np.array([r[0] for r in records], dtype=object)
        conflict = np.zeros(len(left), dtype=bool)
        if self._config.identifier_conflict == "review":
            identifiers = [(f, kind) for f, kind in self._fields if kind in IDENTIFIER_KINDS]
            agree = np.zeros(len(left), dtype=bool)
            for field, kind in identifiers:
                conflict |= (levels[field] >= 0) & (levels[field] <= IDENTIFIER_KINDS[kind])
                agree |= levels[field] == len(matching.LEVELS[kind])
            conflict &= ~agree
        for i in np.flatnonzero(probabilities >= self._config.review):
            a, b = ids[left[i]], ids[right[i]]
            probability = float(probabilities[i])
            band = band_of(probability, self._config, bool(conflict[i]))
            yield (a, b, probability, band) if a < b else (b, a, probability, band)


def band_of(probability: float, config: DedupConfig, identifier_conflict: bool = False) -> str:
    """``match``, ``review`` or ``distinct``; a pair with an identifier conflict is at most ``review``."""
    if probability >= config.match and not identifier_conflict:
        return "match"
    return "review" if probability >= config.review else "distinct"


class ClusterMatches(beam.CombineFn):
    """Connected components of match pairs: ``{id: cluster_id}``, the cluster id being its smallest id.

    Union-find over the match pairs only (a small share of the records), so it fits one worker.
    """

    def create_accumulator(self):
        return {}

    @staticmethod
    def _find(parent: dict, x):
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def _union(self, parent: dict, a, b) -> None:
        root_a, root_b = self._find(parent, a), self._find(parent, b)
        if root_a != root_b:
            low, high = (root_a, root_b) if root_a < root_b else (root_b, root_a)
            parent[high] = low
            parent.setdefault(low, low)

    def add_input(self, parent, pair):
        self._union(parent, pair[0], pair[1])
        return parent

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            for child, parent in other.items():
                self._union(merged, child, parent)
        return merged

    def extract_output(self, parent):
        return {x: self._find(parent, x) for x in list(parent)}


def _completeness(record: dict, id_column: str) -> int:
    return sum(1 for key, value in record.items() if key != id_column and value.strip())


class _ChooseCanonical(beam.DoFn):
    """Per match cluster: the most complete record (ties: smallest id) is canonical."""

    def __init__(self, config: DedupConfig):
        self._config = config

    def process(self, element, best_scores):
        cluster_id, records = element
        records = sorted(records, key=lambda r: (-_completeness(r, self._config.id), r[self._config.id]))
        canonical = records[0][self._config.id]
        for position, record in enumerate(records):
            flagged = {**record, "cluster_id": cluster_id, "is_canonical": "true" if position == 0 else "false"}
            if position == 0 or self._config.policy == "flag":
                yield flagged
                continue
            beam.metrics.Metrics.counter(NAMESPACE, "records_removed").inc()
            yield beam.pvalue.TaggedOutput(
                "removed",
                {
                    "id": record[self._config.id],
                    "record": record,
                    "cluster_id": cluster_id,
                    "canonical_id": canonical,
                    "match_probability": best_scores.get(record[self._config.id]),
                    "reason": "duplicate of the cluster's canonical (most complete) record",
                },
            )


class ApplyPolicy(beam.PTransform):
    """Adds ``cluster_id``/``is_canonical``; under ``keep-canonical`` moves non-canonical cluster members
    to ``removed`` (with cluster, canonical id and best match probability).

    Outputs: ``single`` (records in no cluster), ``kept`` (the cluster members kept), ``removed``,
    and ``in_review`` (the records of ``review_ids``, for the review sheet). One stage reads the
    records and routes them all: on the in-process runner, every further stage reading them, and
    every merge of two stages' outputs (a ``Flatten``), would hold another copy of them in memory.
    ``group_temp``: where the group-by on the cluster keeps its state (``shuffle.group_by_key``).
    """

    def __init__(self, config: DedupConfig, clusters, best_scores, review_ids, group_temp: str | None = None):
        super().__init__()
        self._config, self._clusters, self._best = config, clusters, best_scores
        self._review_ids, self._group_temp = review_ids, group_temp

    def expand(self, records):
        id_column = self._config.id

        def route(record, clusters, review_ids):
            record_id = record[id_column]
            if record_id in review_ids:
                yield beam.pvalue.TaggedOutput("in_review", record)
            cluster = clusters.get(record_id)
            if cluster is None:
                yield beam.pvalue.TaggedOutput("single", {**record, "cluster_id": record_id, "is_canonical": "true"})
            else:
                yield cluster, record

        routed = records | "RouteByCluster" >> beam.FlatMap(
            route, beam.pvalue.AsSingleton(self._clusters), beam.pvalue.AsSingleton(self._review_ids)
        ).with_output_types(tuple[typing.Any, typing.Any]).with_outputs("single", "in_review", main="clustered")
        chosen = (
            routed.clustered
            | "GroupByCluster" >> shuffle.group_by_key(self._group_temp)
            | "ChooseCanonical"
            >> beam.ParDo(_ChooseCanonical(self._config), beam.pvalue.AsDict(self._best)).with_outputs(
                "removed", main="kept"
            )
        )
        return {"single": routed.single, "kept": chosen.kept, "removed": chosen.removed, "in_review": routed.in_review}


class SampleById(beam.CombineFn):
    """A deterministic sample of ``size`` normalised records: those with the smallest CRC-32 of their
    id (so a rerun fits the same model on the same data), returned in id order."""

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return []

    def _push(self, heap: list, item) -> None:
        if len(heap) < self._size:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)

    def add_input(self, heap, record):
        self._push(heap, (-zlib.crc32(record[0].encode("utf-8", "surrogatepass")), record[0], record))
        return heap

    def merge_accumulators(self, heaps):
        heaps = iter(heaps)
        merged = next(heaps)
        for heap in heaps:
            for item in heap:
                self._push(merged, item)
        return merged

    def extract_output(self, heap):
        return [record for _, _, record in sorted(heap, key=lambda item: item[1])]


class DropRemovedDuplicates(beam.PTransform):
    """Drops rows of ``(RecordBatch, keys)`` pairs whose id the dedup policy removed.

    Counted as dropped by policy, reason ``duplicate removed by dedup``; the rows themselves are in
    ``dedup/removed.jsonl``.
    """

    def __init__(self, removed_ids: Sequence[str], id_column: str):
        super().__init__()
        self._removed_ids, self._id = frozenset(removed_ids), id_column

    def expand(self, batches):
        id_column = self._id
        removed_ids = batches.pipeline | "DuplicatesRemovedByDedup" >> beam.Create([self._removed_ids])

        def drop(element, removed):
            batch, keys = element
            if not removed:
                yield element
                return
            ids = decode.first_values_as_text(batch.column(batch.schema.get_field_index(id_column)))
            keep = np.array([i not in removed for i in ids], dtype=bool)
            if not keep.all():
                dropped = int((~keep).sum())
                beam.metrics.Metrics.counter("skewless", "rows_dropped_by_policy").inc(dropped)
                beam.metrics.Metrics.counter("skewless.dropped_reasons", "duplicate removed by dedup").inc(dropped)
                batch, keys = batch.filter(pa.array(keep)), keys[keep]
            if batch.num_rows:
                yield KeyedBatch(batch, keys)

        return of_type(batches | "DropRemoved" >> beam.FlatMap(drop, beam.pvalue.AsSingleton(removed_ids)), KeyedBatch)
