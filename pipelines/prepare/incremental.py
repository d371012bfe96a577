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

import concurrent.futures
import hashlib
import json
import os
import pickle
import time

import apache_beam as beam
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from google.protobuf import text_format
from tensorflow_transform.beam import analysis_graph_builder, analyzer_cache
from tfx_bsl.tfxio import tensor_adapter

from pipelines.errors import READ_BREAKS, CheckFailed
from pipelines.formats import decode, tfrecord_records
from pipelines.io import input_files, read
from pipelines.io import staging as outputs
from pipelines.lineage import run_record
from pipelines.prepare.split import SplitTrainEval

__all__ = ["ReadAnalysisCache", "WriteAnalysisCache", "analyze_with_cache", "span_keys"]

_MANIFEST = "MANIFEST"  # tf.Transform's cache layout (analyzer_cache.WriteAnalysisCacheToFS): a pickled
_METADATA = "METADATA"  # {cache entry key: index}, the entries' TFRecord files <index>-*-of-*, and the
# span's metadata (its size in bytes) in METADATA-*-of-*


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
        how = json.dumps(
            {**(reading or {}), "delimiter": input_files.delimiter_of(path, csv_delimiter)}, sort_keys=True
        )
        keys[path] = analyzer_cache.DatasetKey(f"span_{digest[:32]}_{hashlib.sha256(how.encode()).hexdigest()[:16]}")
    return keys


def _matched(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _cached_records(pattern: str) -> list[bytes] | None:
    """The records of the files matching ``pattern`` (each checksum verified); None if there is no
    such file or one is damaged."""
    paths, records = _matched(pattern), []
    if not paths:
        return None
    for path in paths:
        try:
            # Python's gzip (input_files.open_input) raises where a file is cut short, even between two
            # records; Beam's decompressing reader would return an early end of file there
            with input_files.open_input(path) as handle:
                for record in tfrecord_records.read_records(handle):
                    if record.problem:
                        return None
                    records.append(record.data)
        except READ_BREAKS:
            return None
    return records


def _span_entries(cache_dir: str, key: analyzer_cache.DatasetKey, needed: list[bytes]) -> tuple[dict | None, bool]:
    """Where the span's cache entries in ``needed`` are, if its cache holds them all intact.

    Returns:
        ``(patterns, damaged)``: ``patterns`` maps each needed cache entry key to its files' pattern,
        and None to the span's metadata; it is None when the span is to be analyzed: no cache for
        it, a cache made for another preprocessing_fn (the manifest lacks a needed entry), or a
        damaged one (``damaged``: an entry or the metadata missing, cut short or failing a checksum).
    """
    if not needed:
        return None, False
    folder = os.path.join(cache_dir, key.key)
    present, manifest = _read_manifest(folder)
    if not present:
        return None, False
    if manifest is None:
        return None, True
    if not set(needed) <= set(manifest):
        return None, False
    patterns = {entry: os.path.join(folder, f"{manifest[entry]}-*-of-*") for entry in needed}
    patterns[None] = os.path.join(folder, f"{_METADATA}-*-of-*")
    if any(_cached_records(pattern) is None for pattern in patterns.values()):
        return None, True
    return patterns, False


class _ReadCacheFiles(beam.DoFn):
    """Reads each (output tag, file pattern, is metadata) into its tagged output."""

    def process(self, entry):
        tag, pattern, is_metadata = entry
        records = _cached_records(pattern)
        if records is None:
            raise CheckFailed(f"analysis cache entry {pattern} changed or was damaged during the run")
        for data in records:
            value = analyzer_cache.DatasetCacheMetadata.decode(data) if is_metadata else data
            yield beam.pvalue.TaggedOutput(tag, value)


class ReadAnalysisCache(beam.PTransform):
    """Reads the cached accumulators of the spans (``analyzer_cache.ReadAnalysisCacheFromFS``'s
    result, ``{DatasetKey: DatasetCache}``) in one stage.

    tf.Transform's reader reads each cache entry, and each span's metadata, in Beam stages of their
    own, dozens of bundles for a few spans. Here one DoFn reads
    every file into its own tagged output. A span is included only when its cache holds every entry
    in ``needed`` and they read back intact (each TFRecord checksum verified while the pipeline is
    built; the files are small): a damaged span is analyzed afresh, never half reused, and listed
    in ``damaged``.

    Args:
        cache_dir: The analysis cache folder.
        keys: The spans' dataset keys.
        needed: The cache entry keys the preprocessing_fn needs
            (``analysis_graph_builder.get_analysis_cache_entry_keys``).
    """

    def __init__(self, cache_dir: str, keys, needed):
        super().__init__()
        self._spans, self.damaged = {}, []
        for key in keys:
            patterns, damaged = _span_entries(cache_dir, key, list(needed))
            if patterns is not None:
                self._spans[key] = patterns
            elif damaged:
                self.damaged.append(key)

    def expand(self, pbegin):
        if not self._spans:
            return {}
        files, tags = [], {}
        for span, (key, patterns) in enumerate(self._spans.items()):
            for number, (entry, pattern) in enumerate(patterns.items()):
                tags[key, entry] = f"span{span}_{'metadata' if entry is None else number}"
                files.append((tags[key, entry], pattern, entry is None))
        read = (
            pbegin
            | "CacheFiles" >> beam.Create(files, reshuffle=False)
            | "ReadCacheFiles" >> beam.ParDo(_ReadCacheFiles()).with_outputs(*tags.values())
        )
        return {
            key: analyzer_cache.DatasetCache(
                {entry: read[tags[key, entry]] for entry in patterns if entry is not None},
                read[tags[key, None]],
            )
            for key, patterns in self._spans.items()
        }


def _read_manifest(folder: str) -> tuple[bool, dict | None]:
    """Whether the span has a manifest, and the manifest (``{cache entry key: index}``), None when
    there is none or it is unreadable."""
    path = os.path.join(folder, _MANIFEST)
    if not FileSystems.exists(path):
        return False, None
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            manifest = pickle.loads(handle.read())
    except Exception:  # noqa: BLE001 - whatever an unreadable manifest raises, it names nothing
        return True, None
    return True, manifest if isinstance(manifest, dict) else None


class _WriteSpanCache(beam.DoFn):
    """Writes one span's cache entries and metadata, then its manifest (see WriteAnalysisCache)."""

    def __init__(self, cache_dir: str, entries: dict[str, list[bytes]]):
        self._cache_dir, self._entries = cache_dir, entries

    def process(self, element):
        span, values = element
        records: dict = {}
        for entry, value in values:
            records.setdefault(entry, []).append(value)
        folder = os.path.join(self._cache_dir, span)
        manifest = _read_manifest(folder)[1] or {}  # an unreadable one is replaced
        index = max(manifest.values(), default=-1) + 1
        if not FileSystems.exists(folder):
            FileSystems.mkdirs(folder)
        written = {}
        for entry in self._entries[span]:  # every entry, an empty one too: its file says it is empty
            path = os.path.join(folder, f"{index}-00000-of-00001.gz")
            with FileSystems.create(path, compression_type=CompressionTypes.GZIP) as handle:
                handle.write(tfrecord_records.frame(records.get(entry, [])))
            written[entry], index = index, index + 1
        if None in records:
            path = os.path.join(folder, f"{_METADATA}-00000-of-00001")
            with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                handle.write(tfrecord_records.frame(records[None]))
        staged = os.path.join(folder, f"{_MANIFEST}.tmp-{os.getpid()}")
        with FileSystems.create(staged, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(pickle.dumps({**manifest, **written}, protocol=0))  # tf.Transform's own format
        if FileSystems.exists(os.path.join(folder, _MANIFEST)):
            FileSystems.delete([os.path.join(folder, _MANIFEST)])
        FileSystems.rename([staged], [os.path.join(folder, _MANIFEST)])
        yield span


class WriteAnalysisCache(beam.PTransform):
    """Writes tf.Transform's output cache (``{DatasetKey: DatasetCache}``) to ``cache_dir`` in the
    layout ``analyzer_cache.WriteAnalysisCacheToFS`` writes and reads, each span whole.

    tf.Transform's writer writes each span's manifest while the pipeline is built, before any entry
    exists, and each entry in Beam stages of its own: a run stopped midway left manifests naming
    missing files, and each entry cost two bundles. Here each span's entries and metadata are
    written by one DoFn and its manifest last (staged, then renamed), so a manifest names only
    files that were written whole; a span cached before keeps its other entries (new ones take the
    next indices, as tf.Transform numbers them). Returns the spans written.

    Args:
        cache_dir: The analysis cache folder.
        output_cache: What ``AnalyzeDatasetWithCache`` returned beside the transform_fn.
    """

    def __init__(self, cache_dir: str, output_cache: dict):
        super().__init__()
        self._cache_dir, self._cache = cache_dir, output_cache

    def expand(self, pbegin):
        keyed, entries = [], {}
        for number, key in enumerate(sorted(self._cache)):
            cache = self._cache[key]
            entries[key.key] = list(cache.cache_dict)
            for index, (entry, values) in enumerate(cache.cache_dict.items()):
                keyed.append(values | f"Key{number}_{index}" >> beam.Map(lambda v, s=key.key, e=entry: (s, (e, v))))
            if cache.metadata is not None:
                keyed.append(
                    cache.metadata | f"KeyMetadata{number}" >> beam.Map(lambda m, s=key.key: (s, (None, m.encode())))
                )
        if not keyed:
            return pbegin | "NoSpans" >> beam.Create([])
        return (
            keyed
            | "Flatten" >> beam.Flatten(pipeline=pbegin.pipeline)
            | "GroupBySpan" >> beam.GroupByKey()
            | "WriteSpans" >> beam.ParDo(_WriteSpanCache(self._cache_dir, entries))
        )


def analyze_with_cache(
    dataset,
    files,
    cache_dir: str,
    adapter_config,
    eval_fraction: float,
    options,
    staging: str,
    range_bytes: int,
    csv_format: input_files.CsvFormat = input_files.DEFAULT_CSV_FORMAT,
    input_hashes: run_record.FileHashes | None = None,
) -> dict:
    """Analyzes the train rows of the spans that are not cached, reusing the cache for the others;
    writes ``<staging>/transform_fn`` and updates the cache. ``input_hashes``: the files' hashes,
    if already started (the command line starts them while TensorFlow loads).

    Returns:
        ``{"cache", "analyzed": [paths], "reused": [paths], "damaged": [paths], "seconds", "sha256":
        {path: hash}}``: ``damaged`` are the analyzed spans whose cache was found damaged (they
        are cached afresh); the files' hashes, which name the spans, serve the run's record too
        (``run.json``'s ``inputs``), so that the files are not read a second time for them.
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
    specs = tensor_adapter.TensorAdapter(adapter_config).OriginalTypeSpecs()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # hashing releases the GIL; tracing holds it
        hashing = pool.submit(input_hashes.result) if input_hashes else pool.submit(_file_hashes, files)
        # the entries an analyzer caches are the same for every span: one key stands for them all
        needed = analysis_graph_builder.get_analysis_cache_entry_keys(
            preprocessing_fn, specs, [analyzer_cache.DatasetKey("span")], dataset.tf_compat_v1
        )
        hashes = hashing.result()
    keys = span_keys(files, reading, csv_format.delimiter, hashes)
    pipeline = beam.Pipeline(options=options)
    analyzed, reused = [], []
    with tft_beam.Context(temp_dir=os.path.join(staging, outputs.TEMP), force_tf_compat_v1=dataset.tf_compat_v1):
        cache_reader = ReadAnalysisCache(cache_dir, list(keys.values()), needed)
        input_cache = pipeline | "ReadAnalysisCache" >> cache_reader
        data = {}
        for index, (path, size) in enumerate(files):
            key = keys[path]
            if key in input_cache:
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
        _ = pipeline | "WriteAnalysisCache" >> WriteAnalysisCache(cache_dir, output_cache or {})
    pipeline.run().wait_until_finish()
    seconds = round(time.time() - started, 3)
    damaged = [path for path, _ in files if keys[path] in cache_reader.damaged]
    return {
        "cache": cache_dir,
        "analyzed": analyzed,
        "reused": reused,
        "damaged": damaged,
        "seconds": seconds,
        "sha256": hashes,
    }
