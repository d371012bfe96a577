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

import dataclasses
import json
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.dedup import matching
from pipelines.dedup import model as dedup_model
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.transforms import (
    NAMESPACE,
    ApplyPolicy,
    ClusterMatches,
    ReadRecords,
    SampleById,
    ScorePairs,
    _CountTerms,
    normalise_record,
)
from pipelines.errors import CheckFailed, UsageError
from pipelines.io import files, input_files, shuffle, text_records
from pipelines.io import staging as outputs
from pipelines.io.write import WriteDeadLetters
from pipelines.lineage import run_record
from pipelines.runtime.job import Job, JobSpec, LineageOutput, silent
from pipelines.runtime.options import LOCAL_RUNNER, runner_name

__all__ = ["removed_ids", "run_dedup"]


# ----------------------------------------------------------------------------------------- reading


_csv_line = text_records.csv_line


# ------------------------------------------------------------------------------- normalise, block, score


# ------------------------------------------------------------------------------------ clusters, policy


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


def _build(pipeline, config: DedupConfig, sources, columns, staging: str, model: dict | None):
    read_out = pipeline | "ReadRecords" >> ReadRecords(
        sources,
        columns,
        config.id,
        config.csv_delimiter,
        config.encoding,
        _group_by_temp(pipeline, staging, "ids"),
        config.missing_values,
    )
    records = read_out["records"]
    read_out["dead_letter"] | "WriteDeadLetters" >> WriteDeadLetters(
        files.join(staging, "dead_letter", "dead_letter"), outputs.temp_dir(staging, "dead_letter")
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
    model_pc | "WriteModel" >> beam.Map(_write_json, files.join(staging, "model.json"))
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
        files.join(staging, "pairs.csv"),
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
        files.join(staging, "clusters.csv"),
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
        files.join(staging, "review.csv"),
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
                files.join(staging, "records", prefix), file_name_suffix=".csv", header=_csv_line(out_columns)
            )
        )
    (
        decided["removed"]
        | "RemovedToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
        | "WriteRemoved"
        >> beam.io.WriteToText(files.join(staging, "removed.jsonl"), num_shards=1, shard_name_template="")
    )


def _write_json(value, path: str) -> None:
    files.write_json(path, value)


def run_dedup(
    inputs: Sequence[str],
    config: DedupConfig,
    output: str,
    model_path: str | None = None,
    beam_args: Sequence[str] = (),
    lineage_db: str | None = None,
    progress=silent,
    record_lineage: bool = True,
    options: PipelineOptions | None = None,
) -> dict:
    """Runs the dedup job into ``output``; returns the summary written to ``dedup.json``.

    ``record_lineage=False`` when a calling job (``skewless run``) records the outputs as its own;
    ``options``: the calling job's pipeline options (``beam_args`` are then ignored).

    Raises:
        UsageError: Unreadable input, missing columns, a model for other fields.
        CheckFailed: Too many dead-lettered records, or records unaccounted for.
    """
    config.validate()
    sources = input_files.expand_patterns(list(inputs))
    wanted = [config.id, *config.fields]
    columns = text_records.shared_csv_columns(sources, wanted, config.csv_delimiter, config.encoding)
    for reserved in ("cluster_id", "is_canonical"):
        if reserved in columns:
            raise UsageError(f"{sources[0][0]}: column {reserved!r} is added by dedup; rename it")
    model = None
    if model_path:
        try:
            model = dedup_model.load_model(model_path)
            dedup_model.check_model(model, config)
        except (OSError, ValueError, BeamIOError) as error:
            raise UsageError(f"--model {model_path}: {str(error).splitlines()[0]}") from error
    parameters = {"inputs": list(inputs), "config": dataclasses.asdict(config), "model": model_path}
    spec = JobSpec("dedup", output, parameters, ("dedup", output), "dedup.json", lineage_db, record_lineage)
    job = Job(spec, beam_args, progress, options=options)
    try:
        summary = job.execute(
            lambda staging: _dedup_in_staging(job, staging, config, sources, columns, model),
            lambda summary: [(entry["uri"], "Records", {"sha256": entry["sha256"]}) for entry in summary["inputs"]],
            lambda _: [LineageOutput(name, artifact_type) for name, artifact_type in LINEAGE_OUTPUTS],
        )
    except CheckFailed as error:
        if record_lineage:
            raise
        raise CheckFailed(f"dedup: {error}") from None  # inside a calling job: say which stage failed
    if job.recorder is not None:
        summary["lineage_run_id"] = job.recorder.id
    return summary


LINEAGE_OUTPUTS = [
    ("records", "DeduplicatedRecords"),
    ("pairs.csv", "ScoredPairs"),
    ("clusters.csv", "DuplicateClusters"),
    ("review.csv", "ReviewList"),
    ("model.json", "DedupModel"),
    ("removed.jsonl", "RemovedRecords"),
    ("dead_letter", "DeadLetters"),
]


def removed_ids(output: str) -> list[str]:
    """The ids of the records ``removed.jsonl`` under ``output`` lists."""
    text = files.read_text(files.join(output, "removed.jsonl"))
    return [json.loads(line)["id"] for line in text.splitlines() if line.strip()]


def _dedup_in_staging(job: Job, staging: str, config, sources, columns, model) -> dict:
    counters = job.run_pipeline(
        lambda pipeline: _build(pipeline, config, sources, columns, staging, model),
        f"reading, scoring and clustering records on {job.runner}",
    )
    counters = {name: value for (space, name), value in counters.items() if space == NAMESPACE}
    summary = _summary(config, counters, staging)
    summary["inputs"] = [{"uri": p, "bytes": size, "sha256": run_record.file_sha256(p)} for p, size in sources]
    summary["seconds"] = job.seconds()
    if summary.get("failure"):
        for name in ("records", "removed.jsonl", "pairs.csv", "clusters.csv", "review.csv"):
            outputs.remove_tree(files.join(staging, name))
    return summary


def _summary(config: DedupConfig, counters: dict, staging: str) -> dict:
    read_count = counters.get("records_read", 0)
    dead = counters.get("records_dead_lettered", 0)
    kept = counters.get("records_kept", 0)
    removed = counters.get("records_removed", 0)
    model = files.read_json(files.join(staging, "model.json"))
    clusters = {}
    for row in files.read_csv(files.join(staging, "clusters.csv")):
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
