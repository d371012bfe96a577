"""The ``skewless run`` job: read, validate, split, analyze and transform, write, export, record.

The pipeline is :func:`build_pipeline`: ``ReadRawData`` -> [``DropRemovedDuplicates``] ->
[``JoinConsensusLabels``] -> ``PrepareRawBatches`` -> ``AnalyzeAndTransform`` ->
``WriteTransformedSplits`` (``pipelines/prepare/transforms.py``). With ``--analysis-cache`` the
transform_fn is made first (``pipelines/prepare/incremental.py``) and one pass does the rest.
The job runs in the job scaffold (``pipelines/runtime/job.py``): a run that fails a check
publishes only its dead letters, statistics and ``run.json``.
"""

import dataclasses
import os
import time
from collections.abc import Sequence

import pyarrow as pa
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

import schemas
from pipelines.dedup import job as dedup
from pipelines.dedup.config import config_from_dict
from pipelines.dedup.transforms import DropRemovedDuplicates
from pipelines.errors import UsageError
from pipelines.formats import decode
from pipelines.io import files, input_files, read
from pipelines.io import staging as outputs
from pipelines.io.write import WriteDeadLetters
from pipelines.labels import join as join_labels
from pipelines.labels.join import JoinConsensusLabels
from pipelines.lineage import run_record
from pipelines.lineage import store as lineage
from pipelines.prepare import accounting, export, parity
from pipelines.prepare.transforms import (
    PARQUET,
    TFRECORD,
    AnalyzeAndTransform,
    PrepareRawBatches,
    WriteTransformedSplits,
    tensor_adapter_config,
)
from pipelines.quality import anomalies, statistics
from pipelines.report import html as report
from pipelines.runtime import beam_patches
from pipelines.runtime.job import Job, JobSpec, LineageOutput, silent
from pipelines.runtime.options import pipeline_options, runner_name

__all__ = ["OUTPUT_FORMATS", "RunConfig", "TRANSFORM_OUTPUTS", "build_pipeline", "run"]

OUTPUT_FORMATS = (TFRECORD, PARQUET)
TRANSFORM_OUTPUTS = ("transform_fn", "transformed_metadata", "metadata", "transformed", "parity", "serving_model")
# with --labels, rows the label policy drops are in dropped/ (kept on failure, like dead_letter/)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What ``skewless run`` was asked to do (everything but the Beam options).

    Attributes:
        output: Output directory (local or ``gs://``).
        dataset: A bundled dataset's name, or the path of a dataset folder (or its ``config.yaml``).
        inputs: File patterns; empty means the dataset's bundled sample.
        eval_fraction: Share of rows for eval, by a hash of each row's key.
        max_invalid_fraction: Above this share of dead-lettered rows the run fails.
        range_bytes: Size of the byte ranges CSV files are read in.
        parity_fraction: Share of rows whose serving-graph output is checked against Beam's.
        slice_by: Raw columns whose values slice the statistics.
        lineage_db: The lineage store (default: ``lineage.default_db_path()``).
        write_report: Whether to write ``report.html``.
        labels: A ``consensus.csv`` to join by ``label_key``, or None.
        label_key: The raw column holding the item id of each row.
        label_policy: ``drop``, ``keep`` or ``weight`` (see ``pipelines/labels/join.py``).
        analysis_cache: A directory of per-span analyzer caches (``pipelines/prepare/incremental.py``), or None.
        output_format: ``tfrecord`` (gzip tf.Examples, what ``skewless train`` reads) or ``parquet``
            (snappy Parquet, one plain column per transformed feature).
        csv_format: How the CSV inputs are written (``input_files.CsvFormat``: delimiter, quoted newlines,
            encoding, decimal comma).
    """

    output: str
    dataset: str = "taxi"
    inputs: Sequence[str] = ()
    eval_fraction: float = 0.2
    max_invalid_fraction: float = 0.01
    range_bytes: int = read.DEFAULT_RANGE_BYTES
    parity_fraction: float = 0.01
    slice_by: Sequence[str] = ()
    lineage_db: str | None = None
    write_report: bool = True
    labels: str | None = None
    label_key: str | None = None
    label_policy: str = "drop"
    analysis_cache: str | None = None
    output_format: str = "tfrecord"
    csv_format: input_files.CsvFormat = input_files.DEFAULT_CSV_FORMAT


def build_pipeline(
    pipeline,
    config: RunConfig,
    dataset: schemas.Dataset,
    reader: read.ReadRawData,
    output_dir: str,
    removed_ids: list[str] | None = None,
    analyzed: bool = False,
) -> None:
    """Adds the run's transforms to ``pipeline``, writing under ``output_dir``.

    Args:
        pipeline: The Beam pipeline.
        config: What to run.
        dataset: The dataset.
        reader: The ``ReadRawData`` of the planned inputs.
        output_dir: The (staging) output directory.
        removed_ids: Ids the dataset's dedup stage removed, or None without one.
        analyzed: Whether ``output_dir/transform_fn`` exists already (incremental analysis).
    """
    raw = pipeline | "ReadRawData" >> reader
    raw[read.ReadRawData.DEAD_LETTER] | "WriteDeadLetters" >> WriteDeadLetters(
        os.path.join(output_dir, "dead_letter", "dead_letter"), outputs.temp_dir(output_dir, "dead_letter")
    )
    batches = raw[read.ReadRawData.BATCHES]
    if removed_ids is not None:
        batches = batches | "DropRemovedDuplicates" >> DropRemovedDuplicates(removed_ids, dataset.config["dedup"]["id"])
    if config.labels:
        joined = batches | "JoinConsensusLabels" >> JoinConsensusLabels(
            config.labels, config.label_key, config.label_policy
        )
        joined[join_labels.DROPPED] | "WriteDroppedRows" >> WriteDeadLetters(
            os.path.join(output_dir, "dropped", "dropped"), outputs.temp_dir(output_dir, "dropped")
        )
        batches = joined["batches"]
    transformed = (
        batches
        | "PrepareRawBatches"
        >> PrepareRawBatches(
            config.slice_by,
            config.parity_fraction,
            os.path.join(output_dir, "stats", "pre_transform.json"),
            config.eval_fraction,
        )
        | "AnalyzeAndTransform"
        >> AnalyzeAndTransform(
            dataset,
            config.eval_fraction,
            _passthrough(config, dataset),
            output_dir,
            analyzed,
            with_metadata=config.output_format == PARQUET,
        )
    )
    transformed | "WriteTransformedSplits" >> WriteTransformedSplits(output_dir, config.output_format, config.slice_by)


def _passthrough(config: RunConfig, dataset: schemas.Dataset) -> list[tuple[str, pa.DataType]]:
    """The columns the batches carry through the transform besides the schema's: the label join's,
    the parity sample's raw examples, the slice columns' copies."""
    fields = {f.name: f.type for f in decode.arrow_schema(dataset.schema)}
    passthrough = join_labels.passthrough_fields(config.label_policy) if config.labels else []
    passthrough += [(parity.RAW_EXAMPLE_COLUMN, pa.large_list(pa.large_binary()))]
    passthrough += [(statistics.SLICE_PREFIX + name, fields[name]) for name in config.slice_by]
    return passthrough


def run(
    config: RunConfig,
    beam_args: Sequence[str] = (),
    progress=silent,
    input_hashes: run_record.FileHashes | None = None,
) -> dict:
    """Runs the job and returns its run record (also written to ``<output>/run.json``).

    Args:
        config: What to run.
        beam_args: Pass-through Beam flags (runner, workers, Dataflow options).
        progress: Called with the name of each stage as it starts.
        input_hashes: The inputs' hashes, started by the caller (the command line starts them
            while TensorFlow loads); used when they are of the files ``config.inputs`` name.

    Returns:
        The run record.

    Raises:
        UsageError: Unknown dataset, unreadable or mismatched input (nothing is written).
        CheckFailed: Too many invalid rows or broken row accounting; the output directory then
            holds only ``dead_letter/``, ``stats/pre_transform.json`` and ``run.json`` (status ``failed``).
    """
    started = time.time()
    try:
        dataset = schemas.load_dataset(config.dataset)
        dataset.user_preprocessing_fn()  # a config naming a missing module or function: said now, nothing written
    except (ValueError, ImportError) as error:
        raise UsageError(str(error)) from None
    # the dataset's missing-value tokens, and any the command line adds
    missing = (*dataset.missing_values, *config.csv_format.missing_values)
    config = dataclasses.replace(config, csv_format=dataclasses.replace(config.csv_format, missing_values=missing))
    if not config.inputs and dataset.sample is None:
        raise UsageError(f"dataset {dataset.name} has no sample: pass --input")
    patterns = list(config.inputs) or [str(dataset.sample)]
    sources = input_files.expand_patterns(patterns)
    if input_hashes is not None and input_hashes.paths != [path for path, _ in sources]:
        input_hashes = None
    dedup_config = _check_config(config, dataset, sources)
    reader = read.ReadRawData(
        sources, dataset.schema, dataset.split_key, range_bytes=config.range_bytes, csv_format=config.csv_format
    )
    options = pipeline_options(list(beam_args))
    parameters = {
        "inputs": patterns,
        "eval_fraction": config.eval_fraction,
        "max_invalid_fraction": config.max_invalid_fraction,
        "parity_sample": config.parity_fraction,
        "slice_by": list(config.slice_by),
        "labels": config.labels,
        "label_key": config.label_key,
        "label_policy": config.label_policy if config.labels else None,
        "output_format": config.output_format,
        **config.csv_format.parameters(),
        "runner": runner_name(options),
        "pipeline_options": options.get_all_options(drop_default=True),
    }
    spec = JobSpec("run", config.output, parameters, ("dataset", dataset.ref), "run.json", config.lineage_db)
    job = Job(spec, progress=progress, options=options, started=started)
    job.timings["plan"] = time.time() - started
    record = {
        "status": "running",
        "command": run_record.command_line(),
        "dataset": dataset.ref,
        "parameters": parameters,
        "versions": run_record.package_versions(),
        "beam_patches": beam_patches.installed(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "lineage": {"run_id": job.recorder.id, "store": config.lineage_db or lineage.default_db_path()},
    }

    def write_report(staging: str) -> None:
        job.progress("writing the report")
        report.write_report(staging, shown_as=config.output)

    return job.execute(
        lambda staging: _run_in_staging(
            job, staging, config, dataset, reader, sources, record, dedup_config, input_hashes
        ),
        lambda record: _lineage_inputs(dataset, record),
        lambda record: _lineage_outputs(config, record),
        after_record=write_report if config.write_report else None,
        failure_of=lambda record: record["reason"],
    )


def _write_anomalies(staging: str, schema, counters: dict, rows: int) -> None:
    """Writes the raw rows' schema violations as TFDV's ``Anomalies`` (``anomalies.pbtxt``): one
    entry per feature at fault with its dead letters' reasons and counts."""
    by_feature = read.dead_letters_by_feature(counters)
    anomalies.write_text(anomalies.from_dead_letters(by_feature, rows, schema), files.join(staging, "anomalies.pbtxt"))


def _check_config(config: RunConfig, dataset: schemas.Dataset, sources: list[tuple[str, int]]):
    """Refuses options that do not fit the dataset or each other (exit 2, nothing written).

    Returns:
        The dataset's dedup config, or None when it has no ``dedup:`` section.
    """
    if config.output_format not in OUTPUT_FORMATS:
        raise UsageError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, got {config.output_format!r}")
    if not 0.0 <= config.eval_fraction < 1.0:
        raise UsageError(f"--eval-fraction must be in [0, 1), got {config.eval_fraction}")
    if "split" in config.slice_by:
        raise UsageError("--slice-by split: the statistics are sliced by the train/eval split already (as 'split')")
    unknown = sorted(set(config.slice_by) - set(dataset.feature_names))
    if unknown:
        raise UsageError(f"--slice-by names columns the schema lacks: {', '.join(unknown)}")
    if config.labels:
        input_files.expand_patterns([config.labels])
        if config.label_key not in dataset.feature_names:
            raise UsageError(f"--label-key must name a raw column of the schema, got {config.label_key!r}")
        if config.label_policy not in join_labels.POLICIES:
            raise UsageError(f"--label-policy must be one of {', '.join(join_labels.POLICIES)}")
    if config.analysis_cache and (config.labels or dataset.config.get("dedup")):
        raise UsageError("--analysis-cache cannot be combined with --labels or a dataset with a dedup: section")
    dedup_config = None
    if dataset.config.get("dedup"):
        dedup_config = config_from_dict(dataset.config["dedup"])
        if dedup_config.id not in dataset.feature_names:
            raise UsageError(f"dataset {dataset.name}: dedup id {dedup_config.id!r} is not a raw column of the schema")
        if any(input_files.input_format_of(path) != input_files.CSV for path, _ in sources):
            raise UsageError(f"dataset {dataset.name} deduplicates its input first: inputs must be CSV")
    if config.labels:  # the options are sound: now the file (one streamed pass)
        join_labels.check_consensus(config.labels)
    return dedup_config


def _lineage_inputs(dataset: schemas.Dataset, record: dict) -> list[tuple[str, str, dict]]:
    """The run's inputs as lineage records them: data files, schema, preprocessing code."""
    import transforms.common

    schema_hash = lineage.schema_hash(dataset.schema)
    inputs = [
        (entry["uri"], "RawData", {"rows": entry["rows"], "sha256": entry["sha256"], "schema_hash": schema_hash})
        for entry in record["inputs"]
    ]
    inputs.append((str(dataset.schema_path), "Schema", {"schema_hash": schema_hash}))
    # the dataset's preprocessing_fn, and the shared helpers it runs with (row_id, metadata columns)
    for module in (dataset.preprocessing_module(), transforms.common):
        if getattr(module, "__file__", None):
            inputs.append((module.__file__, "PreprocessingCode", {}))
    return inputs


def _lineage_outputs(config: RunConfig, record: dict) -> list[LineageOutput]:
    """The run's published outputs as lineage records them (only what a failed run keeps, if it failed)."""
    counts = record["counts"]
    published = [LineageOutput("dead_letter", "DeadLetters", counts["rows_dead_lettered"])]
    published.append(LineageOutput("stats", "Statistics"))
    if config.write_report:
        published.append(LineageOutput("report.html", "Report"))
    if "dedup" in record:
        published.append(LineageOutput("dedup", "DedupOutputs", record["dedup"]["records"]["kept"]))
    if not record["reason"]:
        published += [
            LineageOutput("transform_fn", "TransformGraph"),
            LineageOutput("transformed", "TransformedExamples", counts["rows_train"] + counts["rows_eval"]),
            LineageOutput("serving_model", "ServingModel"),
        ]
    return published


def _run_in_staging(
    job: Job, staging: str, config, dataset, reader, sources, record: dict, dedup_config, input_hashes
) -> dict:
    """Runs the stages into ``staging`` and returns the run record (``reason`` names a failed check).
    ``input_hashes``: the inputs' hashes if already started (``run_record.FileHashes``), or None."""
    removed_ids = None
    known_hashes = None  # {path: sha256} of the inputs, when the incremental analysis hashed them
    if dedup_config is not None:
        with job.stage("dedup", "dedup stage (the dataset config's `dedup:` section)"):
            summary = dedup.run_dedup(
                [path for path, _ in sources],
                dataclasses.replace(
                    dedup_config,
                    csv_delimiter=config.csv_format.delimiter or dedup_config.csv_delimiter,
                    encoding=config.csv_format.encoding or dedup_config.encoding,
                    missing_values=(*dedup_config.missing_values, *config.csv_format.missing_values),
                ),
                os.path.join(staging, "dedup"),
                options=job.options,
                record_lineage=False,
                progress=job.progress,
            )
            removed_ids = dedup.removed_ids(os.path.join(staging, "dedup"))
            record["dedup"] = {k: v for k, v in summary.items() if k not in ("inputs", "lineage_run_id")}
    if config.analysis_cache:
        from pipelines.prepare import incremental

        job.progress(f"incremental analysis with the cache in {config.analysis_cache}")
        record["analysis"] = incremental.analyze_with_cache(
            dataset,
            sources,
            config.analysis_cache,
            tensor_adapter_config(dataset.schema),
            config.eval_fraction,
            job.options,
            staging,
            config.range_bytes,
            config.csv_format,
            input_hashes,
        )
        job.timings["analysis"] = record["analysis"]["seconds"]
        known_hashes = record["analysis"].pop("sha256")  # for run.json: the files are not hashed twice
    # hashed beside the pipeline, unless started already (while TensorFlow loaded) or done by the analysis
    hashes = None if known_hashes else input_hashes or run_record.FileHashes([path for path, _ in sources])
    counters = job.run_pipeline(
        lambda pipeline: build_pipeline(
            pipeline, config, dataset, reader, staging, removed_ids, analyzed=bool(config.analysis_cache)
        ),
        f"reading, validating, analysing, transforming, writing on {job.runner}",
    )
    counts = accounting.counts_of(counters)
    job.timings["decode_cpu"] = counters.get((read.METRICS_NAMESPACE, "decode_msecs"), 0) / 1000
    job.timings["encode_cpu"] = counters.get((read.METRICS_NAMESPACE, "encode_msecs"), 0) / 1000
    finishing = time.time()
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(dataset.schema), os.path.join(staging, "metadata"))
    _write_anomalies(staging, dataset.schema, counters, counts["rows_read"])
    failure = accounting.check_counts(counts, config.max_invalid_fraction)
    if not failure:
        with job.stage("export", "exporting the serving model"):
            export.export_serving_model(staging, os.path.join(staging, "serving_model"))
        with job.stage("parity", "checking serving parity"):
            record["parity"] = parity.verify_parity(staging)
        if record["parity"]["mismatched_features"]:
            failure = f"serving graph differs from Beam on {', '.join(record['parity']['mismatched_features'])}"
    if failure:
        for name in TRANSFORM_OUTPUTS:
            outputs.remove_tree(os.path.join(staging, name))
        outputs.remove_tree(os.path.join(staging, "stats", "post_transform.json"))
        outputs.remove_tree(os.path.join(staging, "stats", "post_transform"))
    record["workers"] = job.workers()  # the runner, its job ids, what the workers ran
    by_source = {name: value for (space, name), value in counters.items() if space == read.ROWS_BY_SOURCE_NAMESPACE}
    sha256 = known_hashes or hashes.result()
    ignored = reader.ignored_columns_read(counters)
    record["inputs"] = [
        {
            "uri": path,
            "bytes": size,
            "sha256": sha256[path],
            "rows": by_source.get(path, 0),
            "ignored_columns": ignored.get(path, []),
        }
        for path, size in sources
    ]
    timings = job.timings
    timings["finish"] = time.time() - finishing - timings.get("export", 0) - timings.get("parity", 0)
    timings["total"] = time.time() - job.started
    record.update(
        status="failed" if failure else "succeeded",
        reason=failure,
        counts=counts,
        timings={k: round(v, 3) for k, v in timings.items()},
        output=config.output,
    )
    return record
