"""The ``skewless labels`` job: consolidate labels from several annotators.

```
ReadAnnotations (Beam: parse, validate, normalise) -> annotations/*.parquet + dead_letter/*.jsonl
  -> integer-coded arrays -> agreement (agreement.py) -> consensus (consensus.py) -> HLP
  -> consensus.csv, agreement.json, review.csv
```
Reading, validation and normalisation (``--merge-map``, ``--uncertain-label``) run on Beam and
scale out; the cleaned annotations are then held as integer codes (about 9 bytes each) for the
iterative Dawid-Skene EM and the agreement measures, so tens of millions fit on one machine.
"""

import dataclasses
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from apache_beam.io.filesystem import BeamIOError

from pipelines.errors import CheckFailed, UsageError
from pipelines.formats import decode
from pipelines.io import files, input_files, text_records
from pipelines.io import staging as outputs
from pipelines.io.write import WriteDeadLetters
from pipelines.labels import agreement, consensus
from pipelines.labels import join as join_labels
from pipelines.labels import rounds as label_rounds
from pipelines.lineage import run_record
from pipelines.runtime.job import Job, JobSpec, LineageOutput, silent

__all__ = ["LabelsConfig", "ReadAnnotations", "run_labels"]

LEVELS = ("nominal", "ordinal", "interval", "ratio")
METHODS = ("dawid-skene", "majority")
_ANNOTATION_SCHEMA = pa.schema(
    [("item", pa.string()), ("annotator", pa.string()), ("label", pa.string()), ("gold", pa.string())]
)


@dataclasses.dataclass(frozen=True)
class LabelsConfig:
    """What ``skewless labels`` was asked to do.

    Attributes:
        annotations: CSV file patterns, long format (one row per item, annotator, label).
        output: Output directory.
        item_col, annotator_col, label_col: Column names.
        gold_col: Column of expert labels, or None.
        method: ``dawid-skene`` or ``majority``.
        level: Krippendorff's alpha level (``ordinal``/``interval``/``ratio`` need numeric labels).
        merge_map: Path of a YAML ``{label: merged_label}`` map, or None.
        uncertain_label: A label meaning "unintelligible / cannot tell", kept out of the consensus
            and counted, or None.
        review_below: Items whose consensus confidence is below this go to review.
        round: Name of this labelling round (``label_rounds``), or None.
        previous_rounds: A ``rounds.json`` or labels output with earlier rounds (default: ``output``'s).
        lineage_db: The lineage store (default: ``lineage.default_db_path()``).
        csv_delimiter: The CSV field delimiter; None: a tab for ``.tsv[.gz]`` files, else a comma.
        encoding: The CSV files' text encoding when not UTF-8 (``cp1252``, ``utf-16``, ...).
        missing_values: Cell texts read as empty, e.g. ``NA`` (an empty item, annotator or label is
            a dead letter).
    """

    annotations: Sequence[str]
    output: str
    item_col: str = "item"
    annotator_col: str = "annotator"
    label_col: str = "label"
    gold_col: str | None = None
    method: str = "dawid-skene"
    level: str = "nominal"
    merge_map: str | None = None
    uncertain_label: str | None = None
    review_below: float = 0.7
    round: str | None = None
    previous_rounds: str | None = None
    lineage_db: str | None = None
    csv_delimiter: str | None = None
    encoding: str | None = None
    missing_values: tuple[str, ...] = ()


class _ParseAnnotationRange(beam.DoFn):
    """Parses the records of one annotation file with pyarrow into (item, annotator, label, gold) batches."""

    def __init__(self, columns: list[str], indices: dict[str, int], merge: dict[str, str]):
        self._columns, self._indices, self._merge = columns, indices, merge

    def process(self, text_file: text_records.TextFile):
        for block in text_records.text_record_blocks(text_file):
            if block.problem:  # annotations lost, their number unknown: the job fails after saying where
                beam.metrics.Metrics.counter("skewless", "annotations_lost_to_damage").inc()
                yield self._dead(text_file.path, block.offset, "", block.problem)
            else:
                yield from self._parse(block, text_file.path, text_file.delimiter, text_file.missing_values)

    def _dead(self, source: str, offset: int | None, raw: str, reason: str):
        beam.metrics.Metrics.counter("skewless", "annotations_dead_lettered").inc()
        return beam.pvalue.TaggedOutput("dead_letter", decode.dead_letter(source, offset, raw, None, reason))

    def _parse(self, block, source: str, delimiter: str, missing_values=()):
        include = [self._columns[i] for i in self._indices.values()]
        table, ragged = text_records.parse_csv_block(block.data, self._columns, include, delimiter, missing_values)
        offsets = text_records.RecordOffsets(block.data, block.offset, [index for index, _, _ in ragged])
        for index, raw, reason in ragged:
            yield self._dead(source, offsets.of_record(index), raw, reason)
        values = {
            key: pc.utf8_trim_whitespace(text_records.as_text(table.column(self._columns[index]).combine_chunks()))
            for key, index in self._indices.items()
        }
        usable = np.ones(table.num_rows, dtype=bool)
        for key in ("item", "annotator", "label"):
            empty = np.asarray(pc.equal(pc.utf8_length(values[key]), 0))
            for row in np.flatnonzero(empty & usable):
                raw = ",".join(str(values[k][int(row)]) for k in values)
                yield self._dead(source, offsets.of_row(int(row)), raw, f"missing {key}")
            usable &= ~empty
        label = values["label"]
        for old, new in self._merge.items():
            merged = pc.equal(label, old)
            count = pc.sum(pc.and_(merged, pa.array(usable))).as_py() or 0
            if count:
                beam.metrics.Metrics.counter("skewless.merged_labels", old).inc(count)
            label = pc.if_else(merged, new, label)
        gold = values.get("gold", pa.array([""] * table.num_rows, pa.string()))
        for old, new in self._merge.items():  # expert labels use the merged classes too
            gold = pc.if_else(pc.equal(gold, old), new, gold)
        beam.metrics.Metrics.counter("skewless", "annotations_read").inc(int(usable.sum()))
        if usable.any():
            keep = pa.array(usable)
            yield pa.Table.from_arrays(
                [values["item"].filter(keep), values["annotator"].filter(keep), label.filter(keep), gold.filter(keep)],
                schema=_ANNOTATION_SCHEMA,
            )


class ReadAnnotations(beam.PTransform):
    """Reads long-format annotation CSVs, file by file: main output Arrow tables of (item, annotator,
    label, gold), ``dead_letter`` output for rows that cannot be used."""

    def __init__(
        self,
        files,
        columns: list[str],
        indices: dict[str, int],
        merge: dict[str, str],
        delimiter: str | None = None,
        encoding: str | None = None,
        missing_values: Sequence[str] = (),
    ):
        super().__init__()
        self._files = text_records.plan_text_files(files, delimiter, encoding, missing_values)
        self._columns, self._indices, self._merge = columns, indices, merge

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ParseAnnotations"
            >> beam.ParDo(_ParseAnnotationRange(self._columns, self._indices, self._merge)).with_outputs(
                "dead_letter", main="annotations"
            )
        )


def _load_merge_map(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        mapping = yaml.safe_load(files.read_text(path)) or {}
    except (OSError, yaml.YAMLError, BeamIOError) as error:
        raise UsageError(f"cannot read --merge-map {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(mapping, dict):
        raise UsageError(f"--merge-map {path} must be a mapping of label: merged_label")
    return {str(k): str(v) for k, v in mapping.items()}


def _label_order(names: list[str], level: str) -> tuple[list[str], np.ndarray | None]:
    """Labels sorted (numerically when they all are numbers); their values for alpha."""
    try:
        values = [float(n) for n in names]
    except ValueError:
        if level != "nominal":
            raise UsageError(f"--level {level} needs numeric labels; got e.g. {names[:3]}") from None
        return sorted(names), None
    order = np.argsort(values, kind="stable")
    return [names[i] for i in order], np.array(values)[order]


def _encode(table: pa.Table, column: str, order: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
    names = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if order is None:
        return codes, names
    remap = np.array([order.index(n) for n in names], dtype=np.int64)
    return remap[codes], order


def _summarise(config: LabelsConfig, table: pa.Table) -> tuple[dict, list, list]:
    """Agreement, consensus and HLP from the cleaned annotations table."""
    uncertain_mask = np.zeros(table.num_rows, dtype=bool)
    if config.uncertain_label is not None:
        uncertain_mask = np.asarray(pc.equal(table.column("label"), config.uncertain_label).fill_null(False))
    items_all, item_names = _encode(table, "item")
    annotators_all, annotator_names = _encode(table, "annotator")
    # one vote per annotator and item: later repeats are counted and left out
    key = items_all * len(annotator_names) + annotators_all
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(table.num_rows, dtype=bool)
    keep[first] = True
    duplicates = int(table.num_rows - keep.sum())
    voting = keep & ~uncertain_mask
    certain = table.filter(pa.array(voting))
    if certain.num_rows == 0:
        raise UsageError("no usable annotations (all dead-lettered, duplicated or uncertain)")
    raw_labels = pc.unique(certain.column("label")).to_pylist()
    label_names, label_values = _label_order(raw_labels, config.level)
    labels, _ = _encode(certain, "label", label_names)
    items, annotators = items_all[voting], annotators_all[voting]
    n_items, n_annotators, n_labels = len(item_names), len(annotator_names), len(label_names)
    counts = agreement.item_label_counts(items, labels, n_items, n_labels)
    majority = consensus.majority_vote(items, labels, n_items, n_labels, annotators, n_annotators)
    dawid_skene = consensus.dawid_skene(items, annotators, labels, n_items, n_annotators, n_labels)
    result = majority if config.method == "majority" else dawid_skene
    confusions = dawid_skene.confusions  # annotator quality uses them whichever method decides
    n_votes = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        item_agreement = np.where(
            n_votes >= 2, (np.square(counts).sum(axis=1) - n_votes) / (n_votes * (n_votes - 1)), np.nan
        )
    uncertain_per_item = np.bincount(items_all[keep & uncertain_mask], minlength=n_items)
    confidence = result.posteriors[np.arange(n_items), result.labels]
    has_votes = n_votes > 0
    flagged = (confidence < config.review_below) | result.tied | ~has_votes

    gold = None
    gold_report = {}
    quality = consensus.annotator_quality(items, annotators, labels, n_items, n_annotators, n_labels, confusions)
    hlp = {"vs_others": consensus.human_level_performance(items, labels, n_items, n_labels)}
    if config.gold_col:
        gold = _gold_by_item(table, items_all, n_items, label_names)
        known = gold >= 0
        gold_report = {
            "items_with_gold": int(known.sum()),
            "consensus_accuracy": float((result.labels[known] == gold[known]).mean()) if known.any() else None,
            "majority_accuracy": float((majority.labels[known] == gold[known]).mean()) if known.any() else None,
        }
        hlp["vs_gold"] = consensus.human_level_performance(items, labels, n_items, n_labels, reference=gold)
        scored = gold[items] >= 0
        correct = np.bincount(annotators[scored], weights=labels[scored] == gold[items[scored]], minlength=n_annotators)
        graded = np.bincount(annotators[scored], minlength=n_annotators)
        for a, entry in enumerate(quality):
            entry["accuracy_vs_gold"] = float(correct[a] / graded[a]) if graded[a] else None
    kappa, pairs = agreement.mean_pairwise_cohen_kappa(items, annotators, labels, n_labels)
    per_class = agreement.per_class_agreement(counts)
    report = {
        "annotations": int(table.num_rows),
        "annotations_used": int(voting.sum()),
        "duplicates_ignored": duplicates,
        "items": n_items,
        "annotators": n_annotators,
        "labels": label_names,
        "uncertain": {
            "label": config.uncertain_label,
            "annotations": int((keep & uncertain_mask).sum()),
            "items_only_uncertain": int(((uncertain_per_item > 0) & ~has_votes).sum()),
        },
        "percent_agreement": agreement.percent_agreement(counts),
        "fleiss_kappa": agreement.fleiss_kappa(counts),
        "mean_pairwise_cohen_kappa": {"value": kappa, "pairs": pairs, "min_shared_items": 5},
        "krippendorff_alpha": {
            "level": config.level,
            "value": agreement.krippendorff_alpha(counts, label_values, config.level),
        },
        "per_class_agreement": {name: _finite(v) for name, v in zip(label_names, per_class, strict=True)},
        "most_confused": agreement.most_confused_pairs(counts, label_names),
        "consensus": {
            "method": config.method,
            "iterations": result.iterations,
            "ties": int(result.tied.sum()),
            "flagged_for_review": int(flagged.sum()),
            "review_below": config.review_below,
        },
        "gold": gold_report,
        "hlp": hlp,
        "annotator_quality": {name: q for name, q in zip(annotator_names, quality, strict=True)},
    }
    consensus_rows = []
    for i in range(n_items):
        label = label_names[result.labels[i]] if has_votes[i] else (config.uncertain_label or "")
        consensus_rows.append(
            [
                item_names[i],
                label,
                f"{confidence[i] if has_votes[i] else 0.0:.6f}",
                int(n_votes[i] + uncertain_per_item[i]),
                "" if np.isnan(item_agreement[i]) else f"{item_agreement[i]:.6f}",
                int(flagged[i]),
            ]
        )
    review_rows = _review_rows(
        table, items_all, keep, item_names, label_names, result, confidence, item_agreement, flagged, has_votes
    )
    return report, consensus_rows, review_rows


def _gold_by_item(table: pa.Table, items_all: np.ndarray, n_items: int, label_names: list[str]) -> np.ndarray:
    """Each item's expert label index (its first non-empty gold): -1 when none, -2 when the gold label
    is not among the annotators' labels."""
    gold = np.full(n_items, -1, dtype=np.int64)
    given = np.asarray(pc.greater(pc.utf8_length(table.column("gold")), 0).fill_null(False))
    rows = np.flatnonzero(given)
    items, first = np.unique(items_all[rows], return_index=True)
    index = {name: i for i, name in enumerate(label_names)}
    texts = table.column("gold").take(pa.array(rows[first])).to_pylist()
    gold[items] = [index.get(text, -2) for text in texts]
    return gold


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _review_rows(
    table, items_all, keep, item_names, label_names, result, confidence, item_agreement, flagged, has_votes
):
    """Flagged items, least certain first, with every label given (annotator=label)."""
    given: dict[int, list[str]] = {}
    annotators = table.column("annotator").to_pylist()
    labels = table.column("label").to_pylist()
    golds = table.column("gold").to_pylist()
    gold_of: dict[int, str] = {}
    flagged_items = set(np.flatnonzero(flagged).tolist())
    for row, i in enumerate(items_all.tolist()):
        if i in flagged_items and keep[row]:
            given.setdefault(i, []).append(f"{annotators[row]}={labels[row]}")
            if golds[row]:
                gold_of.setdefault(i, golds[row])
    order = sorted(flagged_items, key=lambda i: (confidence[i] if has_votes[i] else -1.0, item_names[i]))
    return [
        [
            item_names[i],
            label_names[result.labels[i]] if has_votes[i] else "",
            f"{confidence[i] if has_votes[i] else 0.0:.6f}",
            "" if np.isnan(item_agreement[i]) else f"{item_agreement[i]:.6f}",
            int(result.tied[i]),
            "; ".join(sorted(given.get(i, []))),
            gold_of.get(i, ""),
        ]
        for i in order
    ]


def run_labels(config: LabelsConfig, beam_args: Sequence[str] = (), progress=silent) -> dict:
    """Runs the labels job; returns ``agreement.json``'s content (``progress`` is called with each
    stage's name as it starts).

    Raises:
        UsageError: Unreadable input, missing columns, bad options.
    """
    if config.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if config.level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}")
    sources = input_files.expand_patterns(list(config.annotations))
    merge = _load_merge_map(config.merge_map)
    wanted = {"item": config.item_col, "annotator": config.annotator_col, "label": config.label_col}
    if config.gold_col:
        wanted["gold"] = config.gold_col
    columns = text_records.shared_csv_columns(sources, list(wanted.values()), config.csv_delimiter, config.encoding)
    indices = {key: columns.index(name) for key, name in wanted.items()}
    return run_labels_job(
        config,
        beam_args,
        progress,
        lambda job, staging: _labels_in_staging(job, staging, config, sources, columns, indices, merge),
        LINEAGE_OUTPUTS,
    )


LINEAGE_OUTPUTS = [
    ("consensus.csv", "ConsensusLabels"),
    ("agreement.json", "AgreementReport"),
    ("review.csv", "ReviewList"),
    ("dead_letter", "DeadLetters"),
]


def run_labels_job(config, beam_args, progress, body, lineage_outputs: list[tuple[str, str]]) -> dict:
    """Runs a labels job of any kind in the job scaffold and returns its report.

    Args:
        config: The job's config (``LabelsConfig`` or ``UnstructuredLabelsConfig``).
        beam_args: Pass-through Beam flags.
        progress: Called with each stage's name as it starts.
        body: ``body(job, staging)`` writes the outputs under ``staging`` and returns the report.
        lineage_outputs: ``(name, artifact type)`` of the outputs lineage records.
    """
    parameters = {k: v for k, v in dataclasses.asdict(config).items() if k != "lineage_db"}
    spec = JobSpec("labels", config.output, parameters, ("labels", config.output), "agreement.json", config.lineage_db)
    job = Job(spec, beam_args, progress)
    report = job.execute(
        lambda staging: body(job, staging),
        lambda report: [(entry["uri"], "Annotations", {"sha256": entry["sha256"]}) for entry in report["inputs"]],
        lambda _: [LineageOutput(name, artifact_type) for name, artifact_type in lineage_outputs],
    )
    report["lineage_run_id"] = job.recorder.id
    return report


def _labels_in_staging(job: Job, staging: str, config, sources, columns, indices, merge) -> dict:
    def build(pipeline):
        parsed = pipeline | "ReadAnnotations" >> ReadAnnotations(
            sources, columns, indices, merge, config.csv_delimiter, config.encoding, config.missing_values
        )
        parsed.dead_letter | "WriteDeadLetters" >> WriteDeadLetters(
            files.join(staging, "dead_letter", "dead_letter"), outputs.temp_dir(staging, "dead_letter")
        )
        parsed.annotations | "WriteAnnotations" >> beam.io.WriteToParquetBatched(
            files.join(staging, "annotations", "annotations"), _ANNOTATION_SCHEMA, file_name_suffix=".parquet"
        )

    counters = job.run_pipeline(build, f"reading, validating and normalising annotations on {job.runner}")
    lost = counters.get(("skewless", "annotations_lost_to_damage"), 0)
    if lost:  # annotations lost, their number unknown: no consensus over what is left
        raise CheckFailed(text_records.lost_to_damage("annotations", lost))
    table = files.read_parquet(files.match(files.join(staging, "annotations", "*.parquet")))
    table = _ANNOTATION_SCHEMA.empty_table() if table is None else table
    job.progress(f"agreement, {config.method} consensus and HLP over {table.num_rows:,} annotations")
    report, consensus_rows, review_rows = _summarise(config, table)
    report["dead_lettered"] = counters.get(("skewless", "annotations_dead_lettered"), 0)
    report["merged"] = {name: v for (space, name), v in counters.items() if space == "skewless.merged_labels"}
    report["inputs"] = [{"uri": path, "bytes": size, "sha256": run_record.file_sha256(path)} for path, size in sources]
    if config.round:
        previous = label_rounds.load_rounds(config.previous_rounds or config.output)
        report["round"] = config.round
        report["rounds"] = label_rounds.update_rounds(
            previous,
            config.round,
            "classes",
            "percent agreement",
            report["percent_agreement"],
            report["per_class_agreement"],
        )
        files.write_json(files.join(staging, "rounds.json"), {"rounds": report["rounds"]})
    report["seconds"] = job.seconds()
    files.write_csv(files.join(staging, "consensus.csv"), list(join_labels.CONSENSUS_COLUMNS), consensus_rows)
    files.write_csv(
        files.join(staging, "review.csv"),
        ["item", "consensus", "confidence", "agreement", "tie", "labels", "gold"],
        review_rows,
    )
    return report
