"""Incremental analysis over spans: ``skewless run --analysis-cache DIR``.

Daily pipelines analyze rolling windows of input files (spans). With an analysis cache, each input
file is a span whose dataset key is its content hash and a hash of how its rows are read and split
(``span_<sha256 prefix>_<reading>``, see :func:`span_keys`); tf.Transform's
``AnalyzeDatasetWithCache`` stores every analyzer's accumulators per span under DIR, and a later run
over a window that shares spans reads those accumulators instead of the rows. A span counts as cached
only when DIR holds every cache entry the current ``preprocessing_fn`` needs for it
(``get_analysis_cache_entry_keys``): a changed preprocessing_fn or a changed file is analyzed again.

The analysis runs as its own Beam pipeline (reading only the spans that are not cached) and writes
``transform_fn/``; the main pipeline then validates, describes, transforms and writes all rows with
that transform_fn, in one pass. ``run.json`` records which spans were analyzed and which reused, and the time.
"""

import hashlib
import json
import os
import time

import apache_beam as beam
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_transform.beam import analysis_graph_builder, analyzer_cache
from tfx_bsl.tfxio import tensor_adapter

from pipelines import decode, outputs, read, run_record
from pipelines.split import SplitTrainEval

__all__ = ["analyze_with_cache", "span_keys"]


def _file_hashes(files) -> dict[str, str]:
    """``{path: sha256}`` of the input files, hashed on every core."""
    return run_record.files_sha256([path for path, _ in files], threads=os.cpu_count() or 1)


def span_keys(
    files, reading: dict | None = None, csv_delimiter: str | None = None, hashes: dict[str, str] | None = None
) -> dict[str, analyzer_cache.DatasetKey]:
    """input path -> dataset key named after the file's content and how its rows were chosen.

    The accumulators cached for a span are those of its valid train rows, so they hold only for the
    same content read the same way: ``reading`` (the schema, the split and the CSV options) is part
    of the key, ``span_<content sha256>_<reading sha256>``, with the file's own CSV delimiter. A
    changed file, schema, eval fraction, split key or delimiter makes a new span, analyzed afresh,
    never a stale reuse. ``hashes`` (``{path: sha256}``) are the files' hashes when known already.
    """
    if hashes is None:
        hashes = _file_hashes(files)
    keys = {}
    for path, digest in hashes.items():
        how = json.dumps({**(reading or {}), "delimiter": read.delimiter_of(path, csv_delimiter)}, sort_keys=True)
        keys[path] = analyzer_cache.DatasetKey(f"span_{digest[:32]}_{hashlib.sha256(how.encode()).hexdigest()[:16]}")
    return keys


def analyze_with_cache(
    dataset,
    files,
    cache_dir: str,
    adapter_config,
    eval_fraction: float,
    options,
    staging: str,
    range_bytes: int,
    csv_format: read.CsvFormat = read.DEFAULT_CSV_FORMAT,
) -> dict:
    """Analyzes the train rows of the spans that are not cached, reusing the cache for the others;
    writes ``<staging>/transform_fn`` and updates the cache.

    Returns:
        ``{"cache", "analyzed": [paths], "reused": [paths], "seconds", "sha256": {path: hash}}``:
        the files' hashes, which name the spans, serve the run's record too (``run.json``'s
        ``inputs``), so that the files are not read a second time for them.
    """
    started = time.time()
    preprocessing_fn = dataset.preprocessing_fn()
    reading = {
        "dataset": dataset.name,
        "schema": text_format.MessageToString(dataset.schema),
        "split_key": list(dataset.split_key),
        "split_key_version": decode.SPLIT_KEY_VERSION,
        "eval_fraction": eval_fraction,
        "quoted_newlines": csv_format.quoted_newlines,
        "encoding": csv_format.encoding,
        "decimal_comma": csv_format.decimal_comma,
    }
    hashes = _file_hashes(files)
    keys = span_keys(files, reading, csv_format.delimiter, hashes)
    specs = tensor_adapter.TensorAdapter(adapter_config).OriginalTypeSpecs()
    needed = analysis_graph_builder.get_analysis_cache_entry_keys(
        preprocessing_fn, specs, list(keys.values()), dataset.tf_compat_v1
    )
    pipeline = beam.Pipeline(options=options)
    analyzed, reused = [], []
    with tft_beam.Context(temp_dir=os.path.join(staging, outputs.TEMP), force_tf_compat_v1=dataset.tf_compat_v1):
        input_cache = pipeline | "ReadAnalysisCache" >> analyzer_cache.ReadAnalysisCacheFromFS(
            cache_dir, list(keys.values())
        )
        data = {}
        for index, (path, size) in enumerate(files):
            key = keys[path]
            cached = input_cache.get(key)
            if cached is not None and needed and set(needed) <= set(cached.cache_dict):
                data[key] = None  # tf.Transform reads no rows for it: no stages of its own either
                reused.append(path)
                continue
            reader = read.ReadRawData(
                [(path, size)],
                dataset.schema,
                dataset.split_key,
                range_bytes,
                counted=False,
                csv_format=csv_format,
            )
            batches = (pipeline | f"ReadSpan{index}" >> reader)[read.ReadRawData.BATCHES]
            data[key] = (batches | f"SplitSpan{index}" >> SplitTrainEval(eval_fraction))[SplitTrainEval.TRAIN]
            analyzed.append(path)
        transform_fn, output_cache = (data, input_cache, adapter_config) | "AnalyzeSpansWithCache" >> (
            tft_beam.AnalyzeDatasetWithCache(preprocessing_fn, pipeline=pipeline)
        )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(staging)
        _ = output_cache | "WriteAnalysisCache" >> analyzer_cache.WriteAnalysisCacheToFS(
            pipeline, cache_dir, list(keys.values())
        )
    pipeline.run().wait_until_finish()
    seconds = round(time.time() - started, 3)
    return {"cache": cache_dir, "analyzed": analyzed, "reused": reused, "seconds": seconds, "sha256": hashes}
