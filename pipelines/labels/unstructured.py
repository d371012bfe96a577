"""``skewless labels --kind boxes|text``: agreement, conventions, consensus and HLP for boxes and transcripts.

```
ReadCsvRecords (Beam) -> ParseAnnotation (coordinates / transcript; bad rows are dead letters)
  -> GroupByKey(item) -> SummariseItem (pipelines/labels/boxes.py or pipelines/labels/transcripts.py, per item)
  -> items/*.jsonl -> aggregate (agreement, per annotator, conventions, HLP with bootstrap CIs)
  -> agreement.json, consensus.csv, review.csv, rounds.json
```
The per-item work (Hungarian matching, box fusion, word alignment) runs on Beam and scales with the
number of items; only the per-item summaries are aggregated in the driver.
"""

import dataclasses
import json
import math
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import yaml
from apache_beam.io.filesystem import BeamIOError

from pipelines.errors import CheckFailed, UsageError
from pipelines.formats import decode
from pipelines.io import files, input_files, text_records
from pipelines.io import staging as outputs
from pipelines.io.write import WriteDeadLetters
from pipelines.labels import boxes, transcripts
from pipelines.labels import rounds as label_rounds
from pipelines.labels.classes import run_labels_job
from pipelines.lineage import run_record
from pipelines.runtime.job import Job, silent

__all__ = ["UnstructuredLabelsConfig", "run_unstructured_labels"]

NAMESPACE = "skewless.labels"
KINDS = ("boxes", "text")


@dataclasses.dataclass(frozen=True)
class UnstructuredLabelsConfig:
    """What ``skewless labels --kind boxes|text`` was asked to do.

    Attributes:
        kind: ``boxes`` or ``text``.
        annotations: CSV file patterns, one row per (item, annotator, box) or (item, annotator, transcript).
        output: Output directory.
        item_col, annotator_col: Column names.
        label_col: The box's class (boxes; may be absent: one class) or the transcript (text).
        box_cols: The x_min, y_min, x_max, y_max columns.
        iou_threshold: Boxes match at this IoU or above.
        min_annotators: Annotators a consensus box needs (default: a majority of the item's).
        normaliser: Path of a YAML of ``transcripts.Normaliser`` options, or None for the defaults.
        review_above: Text items whose mean pairwise WER is above this go to review.
        round: Name of this labelling round, or None.
        previous_rounds: A ``rounds.json`` (or labels output) with earlier rounds; default: the output's.
        lineage_db: The lineage store.
        csv_delimiter: The CSV field delimiter; None: a tab for ``.tsv[.gz]`` files, else a comma.
        encoding: The CSV files' text encoding when not UTF-8 (``cp1252``, ``utf-16``, ...).
        missing_values: Cell texts read as empty, e.g. ``NA``.
    """

    kind: str
    annotations: Sequence[str]
    output: str
    item_col: str = "item"
    annotator_col: str = "annotator"
    label_col: str = "label"
    box_cols: tuple[str, str, str, str] = ("x_min", "y_min", "x_max", "y_max")
    iou_threshold: float = boxes.IOU_THRESHOLD
    min_annotators: int | None = None
    normaliser: str | None = None
    review_above: float = 0.3
    round: str | None = None
    previous_rounds: str | None = None
    lineage_db: str | None = None
    csv_delimiter: str | None = None
    encoding: str | None = None
    missing_values: tuple[str, ...] = ()


class _ParseAnnotation(beam.DoFn):
    """A CSV record dict -> ``(item, (annotator, value))``; value a Box or a list of normalised words."""

    def __init__(self, config: UnstructuredLabelsConfig, has_label: bool, normaliser: transcripts.Normaliser):
        self._config, self._has_label, self._normaliser = config, has_label, normaliser

    def process(self, sourced: tuple[str, int | None, dict]):
        source, offset, record = sourced
        c = self._config
        item, annotator = record[c.item_col].strip(), record[c.annotator_col].strip()
        if c.kind == "text":
            words = self._normaliser.words(record[c.label_col])
            beam.metrics.Metrics.counter(NAMESPACE, "unintelligible_tags").inc(
                words.count(self._normaliser.unintelligible)
            )
            yield item, (annotator, words)
            return
        try:
            x_min, y_min, x_max, y_max = (float(record[col]) for col in c.box_cols)
        except ValueError:
            yield self._dead(source, offset, record, "unparsable box coordinate")
            return
        if not all(math.isfinite(v) for v in (x_min, y_min, x_max, y_max)) or x_max <= x_min or y_max <= y_min:
            yield self._dead(source, offset, record, "empty or inverted box (x_max <= x_min or y_max <= y_min)")
            return
        label = record[c.label_col].strip() if self._has_label else "object"
        yield item, (annotator, (x_min, y_min, x_max, y_max, label or "object"))

    def _dead(self, source: str, offset: int | None, record: dict, reason: str):
        beam.metrics.Metrics.counter(NAMESPACE, "annotations_dead_lettered").inc()
        raw = text_records.csv_line(list(record.values()))
        return beam.pvalue.TaggedOutput("dead_letter", decode.dead_letter(source, offset, raw, None, reason))


def _summarise_boxes(element, threshold: float, min_annotators: int | None):
    item, annotations = element
    by_annotator: dict[str, list] = {}
    for annotator, box in annotations:
        by_annotator.setdefault(annotator, []).append(box)
    summary = boxes.item_summary(item, by_annotator, threshold)
    if min_annotators is not None:
        summary["consensus"] = boxes.consensus_boxes(by_annotator, min_annotators, threshold)
    return summary


def _summarise_text(element, review_above: float, tag: str):
    item, annotations = element
    by_annotator = {}
    for annotator, words in sorted(annotations):
        by_annotator.setdefault(annotator, words)  # one transcript per annotator and item: the first
    names = sorted(by_annotator)
    pairs = [
        {"a": names[x], "b": names[y], "wer": transcripts.pairwise_wer(by_annotator[names[x]], by_annotator[names[y]])}
        for x in range(len(names))
        for y in range(x + 1, len(names))
    ]
    loo = {}
    for name in names:
        others = [by_annotator[o] for o in names if o != name]
        if others:
            loo[name] = transcripts.wer(transcripts.rover(others), by_annotator[name])
    mean_wer = float(np.mean([p["wer"] for p in pairs])) if pairs else None
    tagged = {name: by_annotator[name].count(tag) for name in names}
    reasons = []
    if mean_wer is not None and mean_wer > review_above:
        reasons.append(f"mean pairwise WER {mean_wer:.2f} > {review_above}")
    if any(tagged.values()) and not all(tagged.values()):
        reasons.append(f"only {', '.join(n for n in names if tagged[n])} marked part of it {tag}")
    return {
        "item": item,
        "annotators": names,
        "transcripts": {name: " ".join(by_annotator[name]) for name in names},
        "words": {name: len(by_annotator[name]) for name in names},
        "unintelligible": tagged,
        "pairs": pairs,
        "mean_pairwise_wer": mean_wer,
        "consensus": " ".join(transcripts.rover(list(by_annotator.values()))),
        "leave_one_out": loo,
        "review_reasons": reasons,
    }


def _bootstrap_mean(per_item_sums: np.ndarray, per_item_counts: np.ndarray, resamples: int = 1000, seed: int = 0):
    """Ratio of sums with a 95% interval from resampling items."""
    if per_item_counts.sum() == 0:
        return None, [None, None]
    rng = np.random.default_rng(seed)
    n = len(per_item_sums)
    picks = rng.integers(0, n, size=(resamples, n))
    ratios = per_item_sums[picks].sum(axis=1) / np.maximum(per_item_counts[picks].sum(axis=1), 1e-12)
    value = float(per_item_sums.sum() / per_item_counts.sum())
    return value, [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]


def _hlp(summaries: list[dict], lower_is_better: bool) -> dict:
    sums = np.array([sum(v for v in s["leave_one_out"].values() if v is not None) for s in summaries], dtype=float)
    counts = np.array([sum(v is not None for v in s["leave_one_out"].values()) for s in summaries], dtype=float)
    value, ci = _bootstrap_mean(sums, counts)
    per_annotator: dict[str, list[float]] = {}
    for s in summaries:
        for name, score in s["leave_one_out"].items():
            if score is not None:
                per_annotator.setdefault(name, []).append(score)
    return {
        "value": value,
        "ci95": ci,
        "measure": "WER vs the consensus of the others (lower is better)"
        if lower_is_better
        else "matched-IoU score vs the consensus of the others (1 = identical boxes)",
        "scored": int(counts.sum()),
        "per_annotator": {name: float(np.mean(v)) for name, v in sorted(per_annotator.items())},
    }


def _aggregate_boxes(summaries: list[dict]) -> tuple[dict, list, list]:
    ious = [iou for s in summaries for p in s["pairs"] for iou in p["ious"]]
    unmatched = sum(p["unmatched"] for s in summaries for p in s["pairs"])
    total = sum(p["boxes"] for s in summaries for p in s["pairs"])
    pairs = [p for s in summaries for p in s["pairs"]]
    class_agree = [ok for p in pairs for ok in p["class_agree"]]
    per_class: dict[str, list[float]] = {}  # matched boxes of the same class, by class
    for p in pairs:
        for iou, same, label in zip(p["ious"], p["class_agree"], p["classes"], strict=True):
            if same:
                per_class.setdefault(label, []).append(iou)
    annotators: dict[str, dict] = {}
    for s in summaries:
        for name, count in s["counts"].items():
            entry = annotators.setdefault(name, {"items": 0, "boxes": 0, "log_area_ratios": [], "ious": []})
            entry["items"] += 1
            entry["boxes"] += count
        for p in s["pairs"]:
            annotators[p["a"]]["log_area_ratios"] += p["log_area_ratios"]
            annotators[p["b"]]["log_area_ratios"] += [-r for r in p["log_area_ratios"]]
            annotators[p["a"]]["ious"] += p["ious"]
            annotators[p["b"]]["ious"] += p["ious"]
    per_annotator = {
        name: {
            "items": e["items"],
            "boxes_per_item": e["boxes"] / e["items"],
            "relative_area": math.exp(float(np.mean(e["log_area_ratios"]))) if e["log_area_ratios"] else None,
            "mean_iou_with_others": float(np.mean(e["ious"])) if e["ious"] else None,
        }
        for name, e in sorted(annotators.items())
    }
    report = {
        "mean_iou": float(np.mean(ious)) if ious else None,
        "unmatched_share": unmatched / total if total else None,
        "count_disagreement": float(np.mean([p["count_differs"] for p in pairs])) if pairs else None,
        "class_agreement": float(np.mean(class_agree)) if class_agree else None,
        "per_class_agreement": {c: float(np.mean(v)) for c, v in sorted(per_class.items())},
        "per_item": {
            s["item"]: float(np.mean([i for p in s["pairs"] for i in p["ious"]]))
            if any(p["ious"] for p in s["pairs"])
            else None
            for s in summaries
        },
        "annotators_stats": per_annotator,
        "conventions": boxes.detect_conventions(summaries),
        "hlp": _hlp(summaries, lower_is_better=False),
    }
    consensus_rows = [
        [s["item"], k, *c["box"], c["label"], c["annotators"], f"{c['mean_iou']:.6f}"]
        for s in summaries
        for k, c in enumerate(s["consensus"])
    ]
    review_rows = [
        [s["item"], "; ".join(s["review_reasons"]), "; ".join(f"{n}:{s['counts'][n]}" for n in s["annotators"])]
        for s in summaries
        if s["review_reasons"]
    ]
    return report, consensus_rows, review_rows


def _aggregate_text(summaries: list[dict], normaliser: transcripts.Normaliser) -> tuple[dict, list, list]:
    wers = [p["wer"] for s in summaries for p in s["pairs"]]
    annotators: dict[str, dict] = {}
    for s in summaries:
        for name in s["annotators"]:
            entry = annotators.setdefault(name, {"items": 0, "words": 0, "unintelligible": 0, "wers": []})
            entry["items"] += 1
            entry["words"] += s["words"][name]
            entry["unintelligible"] += s["unintelligible"][name]
        for p in s["pairs"]:
            annotators[p["a"]]["wers"].append(p["wer"])
            annotators[p["b"]]["wers"].append(p["wer"])
    mean_wer = float(np.mean(wers)) if wers else None
    report = {
        "mean_pairwise_wer": mean_wer,
        "per_class_agreement": {"all": 1 - mean_wer} if mean_wer is not None else {},
        "unintelligible_tags": sum(e["unintelligible"] for e in annotators.values()),
        "per_item": {s["item"]: s["mean_pairwise_wer"] for s in summaries},
        "annotators_stats": {
            name: {
                "items": e["items"],
                "words_per_item": e["words"] / e["items"],
                "unintelligible_tags": e["unintelligible"],
                "mean_pairwise_wer": float(np.mean(e["wers"])) if e["wers"] else None,
            }
            for name, e in sorted(annotators.items())
        },
        "normaliser": dataclasses.asdict(normaliser),
        "hlp": _hlp(summaries, lower_is_better=True),
    }
    consensus_rows = [
        [
            s["item"],
            s["consensus"],
            len(s["annotators"]),
            "" if s["mean_pairwise_wer"] is None else f"{s['mean_pairwise_wer']:.6f}",
        ]
        for s in summaries
    ]
    review_rows = [
        [s["item"], "; ".join(s["review_reasons"]), " | ".join(f"{n}: {s['transcripts'][n]}" for n in s["annotators"])]
        for s in summaries
        if s["review_reasons"]
    ]
    return report, consensus_rows, review_rows


def _load_normaliser(path: str | None) -> transcripts.Normaliser:
    if not path:
        return transcripts.Normaliser()
    try:
        return transcripts.Normaliser.from_dict(yaml.safe_load(files.read_text(path)))
    except (OSError, yaml.YAMLError, ValueError, TypeError, BeamIOError) as error:
        raise UsageError(f"--normaliser {path}: {str(error).splitlines()[0]}") from None


def run_unstructured_labels(config: UnstructuredLabelsConfig, beam_args: Sequence[str] = (), progress=silent) -> dict:
    """Runs the boxes/text labels job; returns ``agreement.json``'s content.

    Raises:
        UsageError: Unreadable input, missing columns, bad options.
    """
    if config.kind not in KINDS:
        raise UsageError(f"--kind must be one of classes, {', '.join(KINDS)}")
    normaliser = _load_normaliser(config.normaliser)
    sources = input_files.expand_patterns(list(config.annotations))
    needed = [config.item_col, config.annotator_col]
    needed += list(config.box_cols) if config.kind == "boxes" else [config.label_col]
    columns = text_records.shared_csv_columns(sources, needed, config.csv_delimiter, config.encoding)
    has_label = config.label_col in columns
    previous = label_rounds.load_rounds(config.previous_rounds or config.output)
    return run_labels_job(
        config,
        beam_args,
        progress,
        lambda job, staging: _in_staging(job, staging, config, sources, columns, has_label, normaliser, previous),
        LINEAGE_OUTPUTS,
    )


LINEAGE_OUTPUTS = [
    ("consensus.csv", "ConsensusLabels"),
    ("agreement.json", "AgreementReport"),
    ("review.csv", "ReviewList"),
    ("items", "ItemSummaries"),
    ("dead_letter", "DeadLetters"),
]


def _in_staging(job: Job, staging: str, config, sources, columns, has_label, normaliser, previous) -> dict:
    required = {config.item_col: "empty item", config.annotator_col: "empty annotator"}

    def build(pipeline):
        records = (
            pipeline
            | "Files"
            >> beam.Create(
                text_records.plan_text_files(sources, config.csv_delimiter, config.encoding, config.missing_values)
            )
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadCsvRecords"
            >> beam.ParDo(
                text_records.ParseCsvRecords(columns, required, NAMESPACE, "annotations", with_source=True)
            ).with_outputs("dead_letter", main="records")
        )
        parsed = records.records | "ParseAnnotations" >> beam.ParDo(
            _ParseAnnotation(config, has_label, normaliser)
        ).with_outputs("dead_letter", main="annotations")
        (
            (records.dead_letter, parsed.dead_letter)
            | "MergeDeadLetters" >> beam.Flatten()
            | "WriteDeadLetters"
            >> WriteDeadLetters(
                files.join(staging, "dead_letter", "dead_letter"), outputs.temp_dir(staging, "dead_letter")
            )
        )
        grouped = parsed.annotations | "GroupByItem" >> beam.GroupByKey()
        if config.kind == "boxes":
            summaries = grouped | "SummariseItems" >> beam.Map(
                _summarise_boxes, config.iou_threshold, config.min_annotators
            )
        else:
            summaries = grouped | "SummariseItems" >> beam.Map(
                _summarise_text, config.review_above, normaliser.unintelligible
            )
        (
            summaries
            | "ToJson" >> beam.Map(lambda s: json.dumps(s, sort_keys=True))
            | "WriteItems" >> beam.io.WriteToText(files.join(staging, "items", "items"), file_name_suffix=".jsonl")
        )

    counters = job.run_pipeline(build, f"reading annotations and summarising items ({config.kind}) on {job.runner}")
    counters = {n: v for (space, n), v in counters.items() if space == NAMESPACE}
    lost = counters.get("annotations_lost_to_damage", 0)
    if lost:  # records lost, their number unknown: no consensus over what is left
        raise CheckFailed(text_records.lost_to_damage("annotations", lost))
    job.progress("agreement, conventions, consensus and HLP")
    paths = files.match(files.join(staging, "items", "*.jsonl"))
    summaries = sorted(
        (json.loads(line) for p in paths for line in files.read_text(p).splitlines() if line.strip()),
        key=lambda s: s["item"],
    )
    if config.kind == "boxes":
        report, consensus_rows, review_rows = _aggregate_boxes(summaries)
        consensus_header = ["item", "box", *config.box_cols, "label", "annotators", "mean_iou"]
        review_header = ["item", "reasons", "boxes_per_annotator"]
        measure, overall = "mean IoU of matched boxes", report["mean_iou"]
    else:
        report, consensus_rows, review_rows = _aggregate_text(summaries, normaliser)
        consensus_header = ["item", "consensus", "annotators", "mean_pairwise_wer"]
        review_header = ["item", "reasons", "transcripts"]
        measure = "1 - mean pairwise WER"
        overall = None if report["mean_pairwise_wer"] is None else 1 - report["mean_pairwise_wer"]
    annotations = counters.get("annotations_read", 0)
    report.update(
        kind=config.kind,
        items=len(summaries),
        annotators=len({a for s in summaries for a in s["annotators"]}),
        annotations=annotations,
        dead_lettered=counters.get("annotations_dead_lettered", 0),
        review_items=len(review_rows),
        inputs=[{"uri": p, "bytes": size, "sha256": run_record.file_sha256(p)} for p, size in sources],
    )
    if config.kind == "boxes":
        report["iou_threshold"] = config.iou_threshold
    if config.round:
        rounds = label_rounds.update_rounds(
            previous, config.round, config.kind, measure, overall, report["per_class_agreement"]
        )
        report["round"] = config.round
        report["rounds"] = rounds
        files.write_json(files.join(staging, "rounds.json"), {"rounds": rounds})
    report["seconds"] = job.seconds()
    files.write_csv(files.join(staging, "consensus.csv"), consensus_header, consensus_rows)
    files.write_csv(files.join(staging, "review.csv"), review_header, review_rows)
    return report


def conventions_text(report: dict) -> list[str]:
    """Human lines about detected conventions (boxes)."""
    return [f"  convention: {c['annotator']} {c['convention']}: {c['detail']}" for c in report.get("conventions", [])]
