"""The ``skewless dedup`` job: find probable duplicate records, score, cluster, apply a policy.

```
ReadRecords (CSV files, pyarrow) -> dead letters (ragged rows, empty or repeated ids)
  -> NormaliseRecords -> term frequencies (Beam count)  ----------------------.
                      -> sample -> fit the model with splink on DuckDB -----.   |
                      -> BlockRecords (one key per blocking rule) -> ScorePairs (numpy/rapidfuzz)
  -> pairs >= review band -> pairs.csv, review.csv
  -> match pairs -> ClusterMatches (connected components) -> clusters.csv
  -> ApplyPolicy (flag | keep-canonical) -> records/*.csv, removed.jsonl
```
Blocking, scoring and the policy run on Beam; splink (``pipelines.dedup.model``) only estimates the
model's parameters from a sample (or ``--model`` reuses a ``model.json``). Every input record ends in
exactly one of ``records/``, ``removed.jsonl`` or ``dead_letter/``; the job checks that count and fails
otherwise. Review-band pairs never remove anything: only match-band pairs form clusters.
"""

import csv
import dataclasses
import heapq
import io
import json
import os
import time
import typing
import zlib
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import yaml
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.dedup import matching
from pipelines.dedup import model as dedup_model
from pipelines.errors import CheckFailed, UsageError
from pipelines.io import decode, input_files, shuffle, text_records
from pipelines.io import staging as outputs
from pipelines.io.coders import KeyedBatch, of_type
from pipelines.io.write import WriteDeadLetters
from pipelines.lineage import run_record
from pipelines.lineage import store as lineage
from pipelines.runtime.options import LOCAL_RUNNER, pipeline_options, runner_name

__all__ = ["DedupConfig", "load_dedup_config", "run_dedup", "ScorePairs", "ClusterMatches"]

NAMESPACE = "skewless.dedup"
POLICIES = ("flag", "keep-canonical")
BANDS = ("match", "review", "distinct")
_PAIR_CHUNK = 200_000
# kind -> highest comparison level that still means "a different identifier": e-mails with neither the
# same address nor the same local part (even if similar), phones that are not within one digit.
IDENTIFIER_KINDS = {"email": 1, "phone": 0}


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    """A dedup config (the YAML file, or a dataset config's ``dedup:`` section).

    Attributes:
        id: The unique record id column.
        blocking: Rules; a candidate pair shares all (normalised, non-empty) fields of at least one.
        fields: Compared field -> comparison kind (``matching.KINDS``).
        match: Pairs with a match probability at or above this are matches (form clusters).
        review: Pairs from here up to ``match`` go to review; below it they are distinct.
        policy: ``flag`` (add cluster_id/is_canonical, remove nothing) or ``keep-canonical``.
        training_sample: Records sampled to fit the model.
        u_max_pairs: Random pairs splink samples to estimate u probabilities.
        max_block_size: Larger blocks are not compared (counted and reported): tighten the rule.
        max_invalid_fraction: Above this share of dead-lettered records the job fails.
        prior_guess: Starting prior for EM (probability that two random records match).
        identifier_conflict: ``review`` (default): a pair with an e-mail (or phone) present in both
            records and different (e-mails: neither the same address nor the same local part; phones:
            more than one digit apart), and no e-mail or phone that agrees exactly, is never a match,
            at most review, whatever its probability: two sign-ups with the same name and town but
            different e-mails may be two people, and a person should decide.
            ``score``: the model's probability alone decides.
        csv_delimiter: The CSV field delimiter; None: a tab for ``.tsv[.gz]`` files, else a comma.
        encoding: The CSV files' text encoding when not UTF-8 (``cp1252``, ``utf-16``, ...).
    """

    id: str
    blocking: tuple[tuple[str, ...], ...]
    fields: dict
    match: float = 0.95
    review: float = 0.5
    policy: str = "flag"
    training_sample: int = 100_000
    u_max_pairs: float = 2e6
    max_block_size: int = 5000
    max_invalid_fraction: float = 0.01
    prior_guess: float = 1e-4
    identifier_conflict: str = "review"
    csv_delimiter: str | None = None
    encoding: str | None = None

    def validate(self) -> None:
        """Raises UsageError on an inconsistent config."""
        if not self.blocking:
            raise UsageError("dedup config: `blocking` needs at least one rule")
        for field, kind in self.fields.items():
            if kind not in matching.KINDS:
                raise UsageError(f"dedup config: field {field!r} has kind {kind!r}; kinds: {', '.join(matching.KINDS)}")
        for rule in self.blocking:
            for field in rule:
                if field not in self.fields:
                    raise UsageError(f"dedup config: blocking field {field!r} is not under `fields`")
        if not 0.0 < self.review <= self.match <= 1.0:
            raise UsageError(
                f"dedup config: need 0 < review <= match <= 1, got review {self.review}, match {self.match}"
            )
        if self.identifier_conflict not in ("review", "score"):
            raise UsageError(
                f"dedup config: identifier_conflict must be review or score, got {self.identifier_conflict!r}"
            )
        if self.policy not in POLICIES:
            raise UsageError(f"dedup config: policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")


def config_from_dict(raw: dict) -> DedupConfig:
    """Builds a DedupConfig from parsed YAML (raises UsageError on missing or unknown keys)."""
    if not isinstance(raw, dict) or "id" not in raw or "blocking" not in raw or "fields" not in raw:
        raise UsageError("dedup config needs `id`, `blocking` and `fields`")
    thresholds = raw.get("thresholds") or {}
    known = {f.name for f in dataclasses.fields(DedupConfig)} | {"thresholds"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UsageError(f"dedup config: unknown key {unknown[0]!r}")
    blocking = tuple(tuple([rule] if isinstance(rule, str) else rule) for rule in raw["blocking"])
    extra = {
        k: raw[k]
        for k in (
            "training_sample",
            "u_max_pairs",
            "max_block_size",
            "max_invalid_fraction",
            "csv_delimiter",
            "encoding",
        )
        if k in raw
    }
    config = DedupConfig(
        id=str(raw["id"]),
        blocking=blocking,
        fields={str(k): str(v) for k, v in raw["fields"].items()},
        match=float(thresholds.get("match", 0.95)),
        review=float(thresholds.get("review", 0.5)),
        policy=str(raw.get("policy", "flag")),
        **extra,
    )
    config.validate()
    return config


def load_dedup_config(path: str) -> DedupConfig:
    """Reads a dedup YAML file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return config_from_dict(yaml.safe_load(handle))
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read dedup config {path}: {error}") from error


# ----------------------------------------------------------------------------------------- reading


def _dead(source: str, offset: int | None, raw: str, feature: str | None, reason: str):
    beam.metrics.Metrics.counter(NAMESPACE, "records_dead_lettered").inc()
    return beam.pvalue.TaggedOutput("dead_letter", decode.dead_letter(source, offset, raw, feature, reason))


_csv_line = text_records.csv_line


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
            line = _csv_line([other[c] for c in self._columns])
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
    ):
        super().__init__()
        self._files = text_records.plan_text_files(files, delimiter, encoding)
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


# ------------------------------------------------------------------------------- normalise, block, score


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


# ------------------------------------------------------------------------------------ clusters, policy


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


# ----------------------------------------------------------------------------------------- the job


def _write_single_csv(pcoll, path: str, header: Sequence[str], label: str):
    return (
        pcoll
        | f"{label}ToCsv" >> beam.Map(_csv_line)
        | f"Write{label}" >> beam.io.WriteToText(path, num_shards=1, shard_name_template="", header=_csv_line(header))
    )


def _review_ids(pairs):
    """The set of the record ids in review ``pairs`` (one element)."""
    return (
        pairs
        | "ReviewIds" >> beam.FlatMap(lambda p: [p[0], p[1]])
        | "DistinctReviewIds" >> beam.Distinct()
        | "ReviewIdSet" >> beam.combiners.ToSet()
    )


def _review_rows(pairs, in_review, columns: list[str]):
    """The review sheet's rows: each review pair with its two records (``in_review``) side by side."""

    def rows(_, pairs, by_id):
        for id_a, id_b, probability, _ in sorted(pairs, key=lambda p: (-p[2], p[0], p[1])):
            a, b = by_id.get(id_a, {}), by_id.get(id_b, {})
            yield [id_a, id_b, f"{probability:.6f}", *[v for c in columns for v in (a.get(c, ""), b.get(c, ""))]]

    return (
        pairs.pipeline
        | "OneReviewList" >> beam.Create([None])
        | "ReviewRows"
        >> beam.FlatMap(
            rows,
            beam.pvalue.AsList(pairs),
            beam.pvalue.AsDict(in_review | "ById" >> beam.Map(lambda r, key: (r[key], r), columns[0])),
        )
    )


def _group_by_temp(pipeline, staging: str, name: str) -> str | None:
    """Where a group-by, or a collection kept for a later stage, keeps its state on the in-process
    runner (on disk, ``pipelines/io/shuffle.py``); None on a runner with a shuffle of its own."""
    return outputs.temp_dir(staging, f"groups_{name}") if runner_name(pipeline.options) == LOCAL_RUNNER else None


def _build(pipeline, config: DedupConfig, files, columns, staging: str, model: dict | None):
    read_out = pipeline | "ReadRecords" >> ReadRecords(
        files, columns, config.id, config.csv_delimiter, config.encoding, _group_by_temp(pipeline, staging, "ids")
    )
    records = read_out["records"]
    read_out["dead_letter"] | "WriteDeadLetters" >> WriteDeadLetters(
        os.path.join(staging, "dead_letter", "dead_letter"), outputs.temp_dir(staging, "dead_letter")
    )
    normalised = records | "NormaliseRecords" >> beam.Map(normalise_record, config)
    positions = {f: i for i, (f, kind) in enumerate(config.fields.items()) if kind in matching.TF_KINDS}
    frequencies = normalised | "TermFrequencies" >> beam.CombineGlobally(_CountTerms(positions))
    if model is None:
        names = list(config.fields)
        model_pc = (
            normalised
            | "SampleForTraining" >> beam.CombineGlobally(SampleById(config.training_sample))
            | "FitModelWithSplink"
            >> beam.Map(
                lambda sample: dedup_model.fit_model(
                    [{"__id": r[0], **dict(zip(names, r[1], strict=False))} for r in sample], config
                )
            )
        )
    else:
        model_pc = pipeline | "GivenModel" >> beam.Create([model])
    model_pc | "WriteModel" >> beam.Map(_write_json, os.path.join(staging, "model.json"))
    scored = (
        normalised
        | "BlockRecords"
        >> beam.FlatMap(lambda r: [((rule, key), r) for rule, key in enumerate(r[2]) if key is not None])
        | "GroupByBlock" >> shuffle.group_by_key(_group_by_temp(pipeline, staging, "blocks"))
        | "ScorePairs"
        >> beam.ParDo(ScorePairs(config), beam.pvalue.AsSingleton(model_pc), beam.pvalue.AsSingleton(frequencies))
    )

    def count_band(pair):
        beam.metrics.Metrics.counter(NAMESPACE, f"pairs_{pair[3]}").inc()
        return pair

    scored = scored | "CountBands" >> beam.Map(count_band)
    _write_single_csv(
        scored | "PairRows" >> beam.Map(lambda p: [p[0], p[1], f"{p[2]:.6f}", p[3]]),
        os.path.join(staging, "pairs.csv"),
        ["id_a", "id_b", "match_probability", "band"],
        "Pairs",
    )
    matches = scored | "MatchPairs" >> beam.Filter(lambda p: p[3] == "match")
    review = scored | "ReviewPairs" >> beam.Filter(lambda p: p[3] == "review")
    clusters = matches | "ClusterMatches" >> beam.CombineGlobally(ClusterMatches())
    best = (
        matches
        | "ScorePerRecord" >> beam.FlatMap(lambda p: [(p[0], p[2]), (p[1], p[2])])
        | "BestScore" >> beam.CombinePerKey(max)
    )
    _write_single_csv(
        clusters
        | "ClusterRows"
        >> beam.FlatMap(lambda c: sorted([[i, cid] for i, cid in c.items()], key=lambda r: (r[1], r[0]))),
        os.path.join(staging, "clusters.csv"),
        ["id", "cluster_id"],
        "Clusters",
    )
    # read again once the clusters are known: on the local runner, kept on disk until then
    records = records | "KeepRecords" >> shuffle.keep_on_disk(_group_by_temp(pipeline, staging, "records"))
    decided = records | "ApplyPolicy" >> ApplyPolicy(
        config, clusters, best, _review_ids(review), _group_by_temp(pipeline, staging, "clusters")
    )
    review_columns = [config.id] + [c for c in columns if c != config.id]
    _write_single_csv(
        _review_rows(review, decided["in_review"], review_columns),
        os.path.join(staging, "review.csv"),
        ["id_a", "id_b", "match_probability", *[f"{c}_{side}" for c in review_columns for side in ("a", "b")]],
        "Review",
    )
    out_columns = [*columns, "cluster_id", "is_canonical"]

    def count_kept(record):
        beam.metrics.Metrics.counter(NAMESPACE, "records_kept").inc()
        return [record[c] for c in out_columns]

    # records in no cluster and the cluster members kept are written by the stages that make them,
    # to shards of their own (records-*.csv, clustered-*.csv): merging them first would hold them
    for output, prefix in (("single", "records"), ("kept", "clustered")):
        (
            decided[output]
            | f"CountKept{prefix.title()}" >> beam.Map(count_kept)
            | f"{prefix.title()}ToCsv" >> beam.Map(_csv_line)
            | f"Write{prefix.title()}"
            >> beam.io.WriteToText(
                os.path.join(staging, "records", prefix), file_name_suffix=".csv", header=_csv_line(out_columns)
            )
        )
    (
        decided["removed"]
        | "RemovedToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
        | "WriteRemoved"
        >> beam.io.WriteToText(os.path.join(staging, "removed.jsonl"), num_shards=1, shard_name_template="")
    )


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


def _write_json(value, path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def _silent(stage: str) -> None:
    del stage


def run_dedup(
    inputs: Sequence[str],
    config: DedupConfig,
    output: str,
    model_path: str | None = None,
    beam_args: Sequence[str] = (),
    lineage_db: str | None = None,
    progress=_silent,
    record_lineage: bool = True,
) -> dict:
    """Runs the dedup job into ``output``; returns the summary written to ``dedup.json``.

    ``record_lineage=False`` when a calling job (``skewless run``) records the outputs as its own.

    Raises:
        UsageError: Unreadable input, missing columns, a model for other fields.
        CheckFailed: Too many dead-lettered records, or records unaccounted for.
    """
    started = time.time()
    config.validate()
    files = input_files.expand_patterns(list(inputs))
    columns = text_records.shared_csv_columns(files, [config.id, *config.fields], config.csv_delimiter, config.encoding)
    for reserved in ("cluster_id", "is_canonical"):
        if reserved in columns:
            raise UsageError(f"{files[0][0]}: column {reserved!r} is added by dedup; rename it")
    model = None
    if model_path:
        try:
            model = dedup_model.load_model(model_path)
            dedup_model.check_model(model, config)
        except (OSError, ValueError) as error:
            raise UsageError(f"--model {model_path}: {error}") from error
    options = pipeline_options(list(beam_args))
    parameters = {"inputs": list(inputs), "config": dataclasses.asdict(config), "model": model_path}
    if not record_lineage:
        summary = _dedup_in_staging(config, files, columns, output, model, options, started, progress)
        if summary.get("failure"):
            raise CheckFailed(f"dedup: {summary['failure']}")
        return summary
    recorder = lineage.Recorder("dedup", parameters, ("dedup", output), runner_name(options), lineage_db)
    summary = recorder.record_job(
        lambda: _dedup_in_staging(config, files, columns, output, model, options, started, progress),
        "Records",
        output,
        [
            ("records", "DeduplicatedRecords"),
            ("pairs.csv", "ScoredPairs"),
            ("clusters.csv", "DuplicateClusters"),
            ("review.csv", "ReviewList"),
            ("model.json", "DedupModel"),
            ("removed.jsonl", "RemovedRecords"),
            ("dead_letter", "DeadLetters"),
        ],
    )
    if summary.get("failure"):
        raise CheckFailed(summary["failure"])
    return summary


def removed_ids(output: str) -> list[str]:
    """The ids of the records ``removed.jsonl`` under ``output`` lists."""
    with FileSystems.open(os.path.join(output, "removed.jsonl")) as handle:
        return [json.loads(line)["id"] for line in io.TextIOWrapper(handle, encoding="utf-8") if line.strip()]


class DropRemovedDuplicates(beam.PTransform):
    """Drops rows of ``(RecordBatch, keys)`` pairs whose id the dedup policy removed.

    Counted as dropped by policy, reason ``duplicate removed by dedup``; the rows themselves are in
    ``dedup/removed.jsonl``.
    """

    def __init__(self, removed, id_column: str):
        super().__init__()
        self._removed, self._id = removed, id_column

    def expand(self, batches):
        id_column = self._id

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

        return of_type(
            batches | "DropRemoved" >> beam.FlatMap(drop, beam.pvalue.AsSingleton(self._removed)), KeyedBatch
        )


def _dedup_in_staging(config, files, columns, output, model, options, started, progress) -> dict:
    with outputs.staged_directory(output) as staging:
        progress(f"reading, scoring and clustering records on {runner_name(options)}")
        pipeline = beam.Pipeline(options=options)
        _build(pipeline, config, files, columns, staging, model)
        result = pipeline.run()
        result.wait_until_finish()
        counters = {
            name: value for (space, name), value in run_record.collect_counters(result).items() if space == NAMESPACE
        }
        summary = _summary(config, counters, staging)
        summary["inputs"] = [{"uri": p, "bytes": size, "sha256": run_record.file_sha256(p)} for p, size in files]
        summary["seconds"] = round(time.time() - started, 3)
        if summary.get("failure"):
            for name in ("records", "removed.jsonl", "pairs.csv", "clusters.csv", "review.csv"):
                outputs.remove_tree(os.path.join(staging, name))
        run_record.write_json(os.path.join(staging, "dedup.json"), summary)
    return summary


def _summary(config: DedupConfig, counters: dict, staging: str) -> dict:
    read_count = counters.get("records_read", 0)
    dead = counters.get("records_dead_lettered", 0)
    kept = counters.get("records_kept", 0)
    removed = counters.get("records_removed", 0)
    with open(os.path.join(staging, "model.json"), encoding="utf-8") as handle:
        model = json.load(handle)
    clusters = {}
    with open(os.path.join(staging, "clusters.csv"), encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            clusters[row["cluster_id"]] = clusters.get(row["cluster_id"], 0) + 1
    summary = {
        "policy": config.policy,
        "thresholds": {"match": config.match, "review": config.review},
        "records": {"read": read_count, "dead_lettered": dead, "kept": kept, "removed": removed},
        "pairs": {
            "compared": counters.get("pairs_compared", 0),
            "match": counters.get("pairs_match", 0),
            "review": counters.get("pairs_review", 0),
            "not_compared_in_oversized_blocks": counters.get("pairs_not_compared", 0),
            "oversized_blocks": counters.get("blocks_too_large", 0),
        },
        "clusters": {
            "count": len(clusters),
            "records": sum(clusters.values()),
            "largest": max(clusters.values(), default=0),
        },
        "model": {
            "probability_two_random_records_match": model["probability_two_random_records_match"],
            "trained_on_records": model.get("trained_on_records"),
            "estimated_with": model.get("estimated_with"),
        },
    }
    lost = counters.get("records_lost_to_damage", 0)
    if lost:  # no threshold can weigh records nobody can count
        summary["failure"] = text_records.lost_to_damage("records", lost, "see dead_letter/ for where, then ")
    elif read_count != kept + removed + dead:
        summary["failure"] = (
            f"records unaccounted for: read {read_count} != kept {kept} + removed {removed} + dead-lettered {dead}"
        )
    elif read_count and dead / read_count > config.max_invalid_fraction:
        summary["failure"] = (
            f"{dead} of {read_count} records dead-lettered ({dead / read_count:.2%} > max_invalid_fraction "
            f"{config.max_invalid_fraction:.2%}); see dead_letter/"
        )
    return summary
