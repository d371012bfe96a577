"""The ``skewless run`` job: read, validate, split, analyze and transform, write, record.

```
ReadRawData -> AttachRawExamples -> SplitTrainEval -> AnalyzeDataset(train) -> transform_fn -> WriteTransformFn
            -> WriteDeadLetters                    -> SpillBatches (Arrow files)
            -> GeneratePreTransformStatistics         -> ReadSpilledBatches -> TransformDataset (train + eval)
                                                      -> statistics, EncodeExamples -> WriteTrainData, WriteEvalData
```
With ``--analysis-cache`` the transform_fn is made first (``pipelines/prepare/incremental.py``), so one pass
does it all: SplitTrainEval (one collection, each batch tagged with its split) -> TransformDataset,
nothing spilled.
Everything is written into a staging sibling of the output directory, which is renamed into place
when the run ends; a run that fails a check publishes only its dead letters and ``run.json``.
"""

import dataclasses
import os
import sys
import time
from collections.abc import Sequence

import apache_beam as beam
import pyarrow as pa
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

import schemas
from pipelines.dedup import job as dedup
from pipelines.dedup.config import config_from_dict
from pipelines.dedup.transforms import DropRemovedDuplicates
from pipelines.errors import CheckFailed, UsageError
from pipelines.io import blocks, coders, decode, input_files, read, spill
from pipelines.io import staging as outputs
from pipelines.io.input_files import input_format_of
from pipelines.io.write import EncodeExamples, WriteDeadLetters, WriteExamples, WriteParityPairs, WriteParquet
from pipelines.labels import join as join_labels
from pipelines.lineage import run_record
from pipelines.lineage import store as lineage
from pipelines.prepare import export, parity
from pipelines.prepare.split import SplitTrainEval
from pipelines.quality import statistics
from pipelines.report import html as report
from pipelines.runtime import beam_patches
from pipelines.runtime.options import pipeline_options, runner_name

__all__ = ["RunConfig", "TRANSFORM_OUTPUTS", "run"]

TFRECORD, PARQUET = "tfrecord", "parquet"
OUTPUT_FORMATS = (TFRECORD, PARQUET)
SPLIT_COLUMN = "__split__"  # the second pass's batches: 0 train, 1 eval (pipelines/io/spill.py)
TRANSFORM_OUTPUTS = ("transform_fn", "transformed_metadata", "metadata", "transformed", "parity", "serving_model")
# with --labels, rows the label policy drops are in dropped/ (kept on failure, like dead_letter/)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What ``skewless run`` was asked to do (everything but the Beam options).

    Attributes:
        output: Output directory (local or ``gs://``).
        dataset: A dataset name under ``schemas/``.
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


def _tensor_adapter_config(
    schema, passthrough: Sequence[tuple[str, pa.DataType]] = ()
) -> tensor_adapter.TensorAdapterConfig:
    """Raw features as tensors; passthrough columns (parity sample, slice copies) ride along."""
    arrow_schema = decode.arrow_schema(schema)
    for name, data_type in passthrough:
        arrow_schema = arrow_schema.append(pa.field(name, data_type))
    return tensor_adapter.TensorAdapterConfig(
        arrow_schema, tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    )


def _build(
    pipeline,
    config: RunConfig,
    dataset: schemas.Dataset,
    reader,
    staging: str,
    removed_ids: list[str] | None = None,
    analyzed: bool = False,
) -> None:
    """Adds the run's transforms to ``pipeline``, writing under ``staging``.

    The data goes through twice: the first pass reads, validates, describes and analyzes, and
    writes the validated, split batches to Arrow files under ``<staging>/tmp/spill``; the second
    reads those back to transform and write them (``pipelines/io/spill.py``). No step holds the whole
    data set, so memory stays flat however large the input, and the input is decoded once. When
    ``analyzed``, ``<staging>/transform_fn`` exists already (incremental analysis): it is read, and
    one pass transforms the batches as they are read, with nothing spilled.
    """
    raw = pipeline | "ReadRawData" >> reader
    raw[read.ReadRawData.DEAD_LETTER] | "WriteDeadLetters" >> WriteDeadLetters(
        os.path.join(staging, "dead_letter", "dead_letter"), outputs.temp_dir(staging, "dead_letter")
    )
    raw_batches = raw[read.ReadRawData.BATCHES]
    if removed_ids is not None:
        removed = pipeline | "DuplicatesRemovedByDedup" >> beam.Create([frozenset(removed_ids)])
        raw_batches = raw_batches | "DropRemovedDuplicates" >> DropRemovedDuplicates(
            removed, dataset.config["dedup"]["id"]
        )
    if config.labels:
        consensus = pipeline | "ReadConsensus" >> join_labels.ReadConsensus(config.labels)
        joined = raw_batches | "JoinConsensusLabels" >> join_labels.AttachConsensusLabels(
            consensus, config.label_key, config.label_policy
        )
        joined[join_labels.DROPPED] | "WriteDroppedRows" >> WriteDeadLetters(
            os.path.join(staging, "dropped", "dropped"), outputs.temp_dir(staging, "dropped")
        )
        raw_batches = joined["batches"]
    (
        raw_batches
        | "DropRowKeys" >> beam.Map(lambda element: element[0]).with_output_types(pa.RecordBatch)
        | "GeneratePreTransformStatistics" >> statistics.GenerateStatistics(config.slice_by)
        | "WritePreTransformStatistics"
        >> statistics.WriteStatistics(os.path.join(staging, "stats", "pre_transform.json"))
    )
    fields = {f.name: f.type for f in decode.arrow_schema(dataset.schema)}
    passthrough = join_labels.passthrough_fields(config.label_policy) if config.labels else []
    passthrough += [(parity.RAW_EXAMPLE_COLUMN, pa.large_list(pa.large_binary()))]
    passthrough += [(statistics.SLICE_PREFIX + name, fields[name]) for name in config.slice_by]
    transform_config = _tensor_adapter_config(dataset.schema, passthrough)  # the batches' exact columns
    prepared = (
        raw_batches
        | "AttachRawExamples" >> parity.AttachRawExamples(config.parity_fraction)
        | "AttachSliceColumns" >> statistics.AttachSliceColumns(config.slice_by)
    )
    splits_read = list(SplitTrainEval.SPLITS)
    # both splits are transformed in one step, each batch tagged with its split (passed through)
    tagged_config = _tensor_adapter_config(dataset.schema, [*passthrough, (SPLIT_COLUMN, pa.large_list(pa.int64()))])
    passthrough_keys = {name for name, _ in passthrough} | {SPLIT_COLUMN}
    with tft_beam.Context(
        temp_dir=os.path.join(staging, outputs.TEMP),
        passthrough_keys=passthrough_keys,
        force_tf_compat_v1=dataset.tf_compat_v1,
    ):
        if analyzed:  # the transform_fn is there already: one pass, the split batches transformed as they come
            tagged = prepared | "SplitTrainEval" >> SplitTrainEval(config.eval_fraction, tag_column=SPLIT_COLUMN)
            transform_fn = pipeline | "ReadTransformFn" >> tft_beam.ReadTransformFn(staging)
        else:  # analyzed here; the second pass reads the first pass's batches back (pipelines/io/spill.py)
            splits = prepared | "SplitTrainEval" >> SplitTrainEval(config.eval_fraction)
            transform_fn = (
                splits[SplitTrainEval.TRAIN],
                transform_config,
            ) | "AnalyzeTrainData" >> tft_beam.AnalyzeDataset(dataset.preprocessing_fn())
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(staging)
            spill_prefix = outputs.temp_dir(staging, "spill")
            spill_files = (
                splits[SplitTrainEval.TRAIN]
                | "SpillTrainBatches" >> spill.SpillBatches(f"{spill_prefix}/train", SplitTrainEval.TRAIN),
                splits[SplitTrainEval.EVAL]
                | "SpillEvalBatches" >> spill.SpillBatches(f"{spill_prefix}/eval", SplitTrainEval.EVAL),
            ) | "FlattenSpilledFiles" >> beam.Flatten()
            tagged = spill_files | "ReadSpilledBatches" >> spill.ReadSpilledBatches(splits_read, SPLIT_COLUMN)
        transformed, transformed_metadata = (
            (tagged, tagged_config),
            transform_fn,
        ) | "TransformData" >> tft_beam.TransformDataset(output_record_batches=True)
    routed = transformed | "RouteSplits" >> beam.FlatMap(_route_split, splits_read).with_outputs(
        *splits_read, main="batches"
    )
    (
        coders.of_record_batches(routed.batches)
        | "GeneratePostTransformStatistics" >> statistics.GenerateStatistics(config.slice_by)
        | "WritePostTransformStatistics"
        >> statistics.WriteStatistics(os.path.join(staging, "stats", "post_transform.json"))
    )
    # typed, so that Beam sizes their batches from the buffers rather than by pickling a sample
    transformed_train = coders.of_record_batches(routed[SplitTrainEval.TRAIN])
    transformed_eval = coders.of_record_batches(routed[SplitTrainEval.EVAL])
    if config.output_format == PARQUET:
        if analyzed:  # read with the transform_fn (--analysis-cache): known already, not deferred
            metadata = pipeline | "TransformedMetadata" >> beam.Create([transformed_metadata])
        else:
            metadata = transformed_metadata.deferred_metadata
        temp_dir = outputs.temp_dir(staging, "parquet")
        train_pairs = transformed_train | "WriteTrainData" >> WriteParquet(
            os.path.join(staging, "transformed", "train"), "rows_train", f"{temp_dir}/train", metadata
        )
        eval_pairs = transformed_eval | "WriteEvalData" >> WriteParquet(
            os.path.join(staging, "transformed", "eval"), "rows_eval", f"{temp_dir}/eval", metadata
        )
    else:
        train = transformed_train | "EncodeTrainData" >> EncodeExamples("rows_train")
        eval_ = transformed_eval | "EncodeEvalData" >> EncodeExamples("rows_eval")
        train.examples | "WriteTrainData" >> WriteExamples(
            os.path.join(staging, "transformed", "train"), outputs.temp_dir(staging, "transformed")
        )
        eval_.examples | "WriteEvalData" >> WriteExamples(
            os.path.join(staging, "transformed", "eval"), outputs.temp_dir(staging, "transformed")
        )
        train_pairs, eval_pairs = train[EncodeExamples.PARITY], eval_[EncodeExamples.PARITY]
    # one sink per split, written where the pairs are made: a Flatten of the two made the runner
    # hold every pair in memory until both were complete
    prefix = os.path.join(staging, parity.PAIRS_PREFIX)
    train_pairs | "WriteTrainParityPairs" >> WriteParityPairs(f"{prefix}-train", outputs.temp_dir(staging, "parity"))
    eval_pairs | "WriteEvalParityPairs" >> WriteParityPairs(f"{prefix}-eval", outputs.temp_dir(staging, "parity"))


def _route_split(element: tuple[pa.RecordBatch, dict], splits: list[str]):
    """A transformed batch without the split column tf.Transform passed through: as it is (for the
    statistics of both splits) and tagged with its split (to be written). The passthrough dict is
    dropped: the batch holds the passthrough columns too."""
    batch, _ = element
    split = spill.tag_of(batch.column(SPLIT_COLUMN), splits)
    batch = batch.drop_columns([SPLIT_COLUMN])
    yield batch
    yield beam.pvalue.TaggedOutput(split, batch)


def _counts(counters: dict[tuple[str, str], int]) -> dict:
    ns = read.METRICS_NAMESPACE
    return {
        "rows_read": counters.get((ns, "rows_read"), 0),
        "rows_train": counters.get((ns, "rows_train"), 0),
        "rows_eval": counters.get((ns, "rows_eval"), 0),
        "rows_dead_lettered": counters.get((ns, "rows_dead_lettered"), 0),
        "rows_dropped_by_policy": counters.get((ns, "rows_dropped_by_policy"), 0),
        # blank lines that end a CSV file: not rows, not dead letters, but never dropped unsaid
        "blank_lines_at_end": counters.get((ns, blocks.BLANK_LINES_AT_END), 0),
        "dropped_reasons": {
            name: value for (space, name), value in sorted(counters.items()) if space == "skewless.dropped_reasons"
        },
        "dead_letter_reasons": {
            name: value for (space, name), value in sorted(counters.items()) if space == read.DEAD_LETTER_NAMESPACE
        },
    }


def _check_counts(counts: dict, max_invalid_fraction: float) -> str | None:
    """The reason the run fails its row accounting or invalid-row threshold, or None."""
    read_rows, dead = counts["rows_read"], counts["rows_dead_lettered"]
    accounted = counts["rows_train"] + counts["rows_eval"] + dead + counts["rows_dropped_by_policy"]
    if accounted != read_rows:
        return (
            f"row accounting broken: read {read_rows} != train + eval + dead-lettered + dropped by policy {accounted}"
        )
    if read_rows == 0:
        return "no rows were read"
    lost = {reason: n for reason, n in counts["dead_letter_reasons"].items() if reason in read.UNKNOWN_LOSS_REASONS}
    if lost:  # no threshold can weigh rows nobody can count
        found = ", ".join(f"{reason!r} x{n}" for reason, n in lost.items())
        return (
            f"damaged inputs lost rows, their number unknown ({found}); see dead_letter/ for where, "
            "then repair the files or fetch them again"
        )
    if dead / read_rows > max_invalid_fraction:
        top = max(counts["dead_letter_reasons"].items(), key=lambda kv: kv[1], default=("?", 0))
        return (
            f"{dead} of {read_rows} rows invalid ({dead / read_rows:.2%} > --max-invalid-fraction "
            f"{max_invalid_fraction:.2%}; most common: {top[0]!r} x{top[1]}); see dead_letter/"
            + _FAILURE_HINTS.get(top[0], "")
        )
    return None


# what the most common dead-letter reason usually means, when it is a reading option's business
_FAILURE_HINTS = {
    "invalid UTF-8": " (a file in another encoding? pass --encoding, e.g. cp1252)",
    "header mismatch": " (each dead letter gives the header's fault)",
}


def _silent(stage: str) -> None:
    del stage


def run(
    config: RunConfig,
    beam_args: Sequence[str] = (),
    progress=_silent,
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
            holds only ``dead_letter/`` and ``run.json`` (status ``failed``).
    """
    started = time.time()
    try:
        dataset = schemas.load_dataset(config.dataset)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.output_format not in OUTPUT_FORMATS:
        raise UsageError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, got {config.output_format!r}")
    if not 0.0 <= config.eval_fraction < 1.0:
        raise UsageError(f"--eval-fraction must be in [0, 1), got {config.eval_fraction}")
    patterns = list(config.inputs) or [str(dataset.sample)]
    files = input_files.expand_patterns(patterns)
    if input_hashes is not None and input_hashes.paths != [path for path, _ in files]:
        input_hashes = None
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
        if any(input_format_of(path) != "csv" for path, _ in files):
            raise UsageError(f"dataset {dataset.name} deduplicates its input first: inputs must be CSV")
    if config.labels:  # the options are sound: now the file (one streamed pass)
        join_labels.check_consensus(config.labels)
    reader = read.ReadRawData(
        files,
        dataset.schema,
        dataset.split_key,
        range_bytes=config.range_bytes,
        csv_format=config.csv_format,
    )
    options = pipeline_options(list(beam_args))
    timings = {"plan": time.time() - started}
    record = {
        "status": "running",
        "command": run_record.command_line(),
        "dataset": dataset.name,
        "parameters": {
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
        },
        "versions": run_record.package_versions(),
        "beam_patches": beam_patches.installed(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    recorder = lineage.Recorder(
        "run", record["parameters"], ("dataset", dataset.name), runner_name(options), config.lineage_db
    )
    record["lineage"] = {"run_id": recorder.id, "store": config.lineage_db or lineage.default_db_path()}
    try:
        failure = _run_in_staging(
            config,
            dataset,
            reader,
            options,
            files,
            record,
            timings,
            started,
            progress,
            beam_args,
            dedup_config,
            input_hashes,
        )
    except BaseException as error:
        recorder.fail(error)
        raise
    progress("recording lineage")
    _record_lineage(recorder, config, dataset, record, failure)
    if failure:
        raise CheckFailed(failure)
    return record


def _record_lineage(recorder, config: RunConfig, dataset, record: dict, failure: str | None) -> None:
    """Inputs (data files, schema, preprocessing code) and published outputs of the run."""
    import importlib.util

    schema_hash = lineage.schema_hash(dataset.schema)
    for entry in record["inputs"]:
        recorder.input(entry["uri"], "RawData", rows=entry["rows"], sha256=entry["sha256"], schema_hash=schema_hash)
    recorder.input(
        str(schemas.SCHEMAS_DIR / dataset.name / dataset.config["schema"]), "Schema", schema_hash=schema_hash
    )
    # the dataset's preprocessing_fn, and the shared helpers it runs with (row_id, metadata columns)
    for name in (dataset.preprocessing_fn_path.partition(":")[0], "transforms.common"):
        module = importlib.util.find_spec(name)
        if module and module.origin:
            recorder.input(module.origin, "PreprocessingCode")
    counts = record["counts"]
    outputs_by_type = [("dead_letter", "DeadLetters", counts["rows_dead_lettered"]), ("stats", "Statistics", None)]
    if config.write_report:
        outputs_by_type.append(("report.html", "Report", None))
    if "dedup" in record:
        outputs_by_type.append(("dedup", "DedupOutputs", record["dedup"]["records"]["kept"]))
    if not failure:
        outputs_by_type += [
            ("transform_fn", "TransformGraph", None),
            ("transformed", "TransformedExamples", counts["rows_train"] + counts["rows_eval"]),
            ("serving_model", "ServingModel", None),
        ]
    for name, artifact_type, rows in outputs_by_type:
        recorder.output(os.path.join(config.output, name), artifact_type, name=name, rows=rows)
    recorder.finish("failed" if failure else "succeeded", failure)
    if recorder.warning:
        print(f"skewless run: warning: {recorder.warning}", file=sys.stderr)


def _run_in_staging(
    config, dataset, reader, options, files, record, timings, started, progress, beam_args, dedup_config, input_hashes
) -> str | None:
    """Runs the pipeline into a staging directory and publishes it; returns a check failure or None.
    ``input_hashes``: the inputs' hashes if already started (``run_record.FileHashes``), or None."""
    with outputs.staged_directory(config.output) as staging:
        removed_ids = None
        known_hashes = None  # {path: sha256} of the inputs, when the incremental analysis hashed them
        if dedup_config is not None:
            progress("dedup stage (the dataset config's `dedup:` section)")
            deduplicating = time.time()
            summary = dedup.run_dedup(
                [path for path, _ in files],
                dataclasses.replace(
                    dedup_config,
                    csv_delimiter=config.csv_format.delimiter or dedup_config.csv_delimiter,
                    encoding=config.csv_format.encoding or dedup_config.encoding,
                ),
                os.path.join(staging, "dedup"),
                beam_args=beam_args,
                record_lineage=False,
                progress=progress,
            )
            removed_ids = dedup.removed_ids(os.path.join(staging, "dedup"))
            record["dedup"] = {k: v for k, v in summary.items() if k not in ("inputs", "lineage_run_id")}
            timings["dedup"] = time.time() - deduplicating
        if config.analysis_cache:
            from pipelines.prepare import incremental

            progress(f"incremental analysis with the cache in {config.analysis_cache}")
            record["analysis"] = incremental.analyze_with_cache(
                dataset,
                files,
                config.analysis_cache,
                _tensor_adapter_config(dataset.schema),
                config.eval_fraction,
                options,
                staging,
                config.range_bytes,
                config.csv_format,
                input_hashes,
            )
            timings["analysis"] = record["analysis"]["seconds"]
            known_hashes = record["analysis"].pop("sha256")  # for run.json: the files are not hashed twice
        pipeline_started = time.time()
        progress(f"reading, validating, analysing, transforming, writing on {runner_name(options)}")
        pipeline = beam.Pipeline(options=options)
        _build(pipeline, config, dataset, reader, staging, removed_ids, analyzed=bool(config.analysis_cache))
        # hashed beside the pipeline, unless started already (while TensorFlow loaded) or done by the analysis
        hashes = None if known_hashes else input_hashes or run_record.FileHashes([path for path, _ in files])
        result = pipeline.run()
        result.wait_until_finish()
        timings["pipeline"] = time.time() - pipeline_started
        counters = run_record.collect_counters(result)
        counts = _counts(counters)
        timings["decode_cpu"] = counters.get((read.METRICS_NAMESPACE, "decode_msecs"), 0) / 1000
        timings["encode_cpu"] = counters.get((read.METRICS_NAMESPACE, "encode_msecs"), 0) / 1000
        finishing = time.time()
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata(dataset.schema), os.path.join(staging, "metadata"))
        failure = _check_counts(counts, config.max_invalid_fraction)
        if not failure:
            progress("exporting the serving model")
            exporting = time.time()
            export.export_serving_model(staging, os.path.join(staging, "serving_model"))
            timings["export"] = time.time() - exporting
            progress("checking serving parity")
            checking = time.time()
            record["parity"] = parity.verify_parity(staging)
            timings["parity"] = time.time() - checking
            if record["parity"]["mismatched_features"]:
                failure = f"serving graph differs from Beam on {', '.join(record['parity']['mismatched_features'])}"
        if failure:
            for name in TRANSFORM_OUTPUTS:
                outputs.remove_tree(os.path.join(staging, name))
            outputs.remove_tree(os.path.join(staging, "stats", "post_transform.json"))
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
            for path, size in files
        ]
        timings["finish"] = time.time() - finishing - timings.get("export", 0) - timings.get("parity", 0)
        timings["total"] = time.time() - started
        record.update(
            status="failed" if failure else "succeeded",
            reason=failure,
            counts=counts,
            timings={k: round(v, 3) for k, v in timings.items()},
            output=config.output,
        )
        run_record.write_json(os.path.join(staging, "run.json"), record)
        if config.write_report:
            progress("writing the report")
            report.write_report(staging, shown_as=config.output)
    return failure
