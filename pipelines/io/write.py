"""Writing outputs: transformed tf.Examples as gzip TFRecord shards, parity pairs and dead letters."""

import json
import time
import uuid
from collections.abc import Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from isal import isal_zlib

from pipelines.formats import example_encoding, tfrecord_records
from pipelines.io import files
from pipelines.prepare.parity import RAW_EXAMPLE_COLUMN, encode_pair
from pipelines.runtime import overlap

__all__ = [
    "EncodeExamples",
    "WriteBundleFiles",
    "WriteDeadLetters",
    "WriteExamples",
    "WriteParityPairs",
    "WriteParquet",
    "commit_and_publish",
    "flat_table",
    "json_line",
    "publish_file",
    "scalar_features",
    "gzip_member",
]

METRICS_NAMESPACE = "skewless"


GZIP_LEVEL = 1  # the output is written once and read a few times: favour speed


def gzip_member(pieces: Iterable[bytes | memoryview], level: int = GZIP_LEVEL) -> bytes:
    """``pieces`` (bytes-like objects), one after the other, as one gzip member; concatenated members
    form a valid gzip file.

    Compressed with ISA-L (``isal``): standard gzip, about 5x faster than zlib at level 1 on
    transformed examples (0.6 against 3.0 microseconds a row) and slightly smaller.
    """
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
    return b"".join([*map(compressor.compress, pieces), compressor.flush()])


def _split_parity_sample(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[int], dict[int, list[bytes]]]:
    """The transformed features of a batch (passthrough columns dropped), the rows of the parity
    sample and each sampled row's raw example."""
    index = batch.schema.get_field_index(RAW_EXAMPLE_COLUMN)
    raw_examples, sampled = {}, []
    if index >= 0:
        column = batch.column(index)
        sampled = np.flatnonzero(pc.fill_null(pc.list_value_length(column), 0).to_numpy() > 0).tolist()
        raw_examples = dict(zip(sampled, column.take(pa.array(sampled, pa.int64())).to_pylist(), strict=True))
    # passthrough columns (parity sample, slice copies) are not transformed features
    return batch.select([name for name in batch.schema.names if not name.startswith("__")]), sampled, raw_examples


def _encode_batch(encoder, batch: pa.RecordBatch) -> tuple[bytes, list[bytes], int, float]:
    """Encodes, frames and compresses one transformed batch; returns the gzip member, the parity
    pairs of its sampled rows, its row count and the seconds it took.

    Batches of one int64 or float32 per row and column (the usual transformed features) take the
    vectorised encoder (``pipelines/formats/example_encoding.py``); any other, ``tfx_bsl``'s.
    """
    started = time.perf_counter()
    batch, sampled, raw_examples = _split_parity_sample(batch)
    vectorised = example_encoding.encode_framed(batch, sampled)
    if vectorised is not None:
        records, examples, _ = vectorised
    else:
        encoded = encoder.encode(batch)
        records, examples = [tfrecord_records.frame(encoded)], {row: encoded[row] for row in sampled}
    # one element per batch, framed and compressed here (in parallel on every worker):
    # Beam's per-element cost is paid once per batch
    pairs = [encode_pair(raw_examples[row][0], examples[row]) for row in sampled]
    return gzip_member(records), pairs, batch.num_rows, time.perf_counter() - started


class _TransformedBatchesDoFn(overlap.BackgroundDoFn):
    """Shared by the writers of transformed batches: the tf.Example encoder (for the parity sample
    and batches the vectorised encoder does not take), the row counter and the encoding time."""

    def __init__(self, counter_name: str):
        self._counter_name = counter_name
        self._encoder = None

    def setup(self):
        from tfx_bsl.coders import example_coder

        super().setup()
        self._encoder = example_coder.RecordBatchToExamplesEncoder()
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, self._counter_name)
        self._msecs = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "encode_msecs")

    def _count(self, rows: int, seconds: float) -> None:
        self._rows.inc(rows)
        self._msecs.inc(int(seconds * 1000))


class _EncodeExamples(_TransformedBatchesDoFn):
    """Encodes transformed RecordBatches into framed, gzipped tf.Examples, one call per batch.

    The encoding, framing and compression of a batch run on a background thread
    (``pipelines/runtime/overlap.py``) while the stage transforms the next batches.
    """

    def process(self, batch: pa.RecordBatch, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        for result, _ in self._background.submit(_encode_batch, self._encoder, batch, context=(window, timestamp)):
            yield from self._outputs(result)

    def finish_bundle(self):
        for result, context in self._background.drain():
            yield from self.windowed(self._outputs(result), context)

    def _outputs(self, result):
        framed, pairs, rows, seconds = result
        self._count(rows, seconds)
        yield framed
        for pair in pairs:
            yield beam.pvalue.TaggedOutput(EncodeExamples.PARITY, pair)


class EncodeExamples(beam.PTransform):
    """Turns transformed RecordBatches (tf.Transform's output batches) into serialized tf.Examples.

    Returns the examples (main output: one element per batch, its records framed as TFRecord file
    content and gzip-compressed as one gzip member) and, for rows of the parity sample, JSON lines
    pairing the
    raw example with its transformed one (``parity``). Counts rows in the ``skewless`` counter
    ``counter_name``.
    """

    PARITY = "parity"

    def __init__(self, counter_name: str):
        super().__init__()
        self._counter_name = counter_name

    def expand(self, transformed):
        return transformed | "Encode" >> beam.ParDo(_EncodeExamples(self._counter_name)).with_outputs(
            self.PARITY, main="examples"
        )


def scalar_features(metadata) -> frozenset[str]:
    """The transformed features of one value a row (``FixedLenFeature`` of shape ``[]``), from
    tf.Transform's transformed ``DatasetMetadata``."""
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils

    specs = schema_utils.schema_as_feature_spec(metadata.schema).feature_spec
    return frozenset(
        name for name, spec in specs.items() if isinstance(spec, tf.io.FixedLenFeature) and not list(spec.shape)
    )


def flat_table(batch: pa.RecordBatch, scalars: frozenset[str]) -> pa.Table:
    """Transformed features as a table: a feature in ``scalars`` becomes a plain column of its one
    value a row; any other stays a list column. The choice is the schema's, never the batch's, so
    every file of a run has the same columns.

    Raises:
        ValueError: A feature in ``scalars`` has a row without exactly one value.
    """
    columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name in scalars:
            values = example_encoding.one_value_per_row(column)
            if values is None:
                raise ValueError(f"transformed feature {name!r} has a row without exactly one value")
            column = values
        columns.append(column)
    return pa.Table.from_arrays(columns, names=batch.schema.names)


def publish_file(temp_path: str, prefix: str) -> str:
    """Moves a file a finished bundle wrote to ``<prefix>-<its name>``; done already is no error
    (a retried step), so only files of bundles that succeeded reach the output."""
    final = f"{prefix}-{temp_path.rsplit('/', 1)[-1]}"
    if FileSystems.exists(temp_path):
        files.make_dirs(files.dirname(final))
        FileSystems.rename([temp_path], [final])
    elif not FileSystems.exists(final):
        raise FileNotFoundError(f"neither {temp_path} nor {final} exists")
    return final


class _WriteParquetFiles(_TransformedBatchesDoFn):
    """Writes transformed batches to one Parquet file per bundle in a temporary directory, on a
    background thread (``pipelines/runtime/overlap.py``); outputs the parity pairs of sampled rows and,
    tagged ``files``, the path of the file once the bundle is done."""

    FILES = "files"

    def __init__(self, temp_dir: str, counter_name: str):
        super().__init__(counter_name)
        self._temp_dir = temp_dir
        self._file = None
        self._context = None
        self._scalars: frozenset[str] | None = None  # from the side input, the same for every batch

    def start_bundle(self):
        super().start_bundle()
        if self._file is not None:  # left open by a failed bundle: never published
            self._close()
        self._context = None

    def _close(self) -> str:
        path, handle, writer = self._file
        self._file = None
        writer.close()
        handle.close()
        return path

    def _write(self, batch: pa.RecordBatch, scalars: frozenset[str]) -> tuple[list[str], int, float]:
        """Runs on the background thread (one batch at a time, in order)."""
        started = time.perf_counter()
        features, sampled, raw_examples = _split_parity_sample(batch)
        table = flat_table(features, scalars)
        if self._file is None:
            path = FileSystems.join(self._temp_dir, f"{uuid.uuid4().hex}.parquet")
            handle = FileSystems.create(path)
            self._file = (path, handle, pq.ParquetWriter(handle, table.schema, compression="snappy"))
        self._file[2].write_table(table)
        examples = self._encoder.encode(features.take(pa.array(sampled, pa.int64()))) if sampled else []
        pairs = [encode_pair(raw_examples[row][0], example) for row, example in zip(sampled, examples, strict=True)]
        return pairs, features.num_rows, time.perf_counter() - started

    def _outputs(self, result):
        pairs, rows, seconds = result
        self._count(rows, seconds)
        yield from pairs

    def process(
        self, batch: pa.RecordBatch, metadata, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam
    ):
        self._context = (window, timestamp)
        if self._scalars is None:
            self._scalars = scalar_features(metadata)
        submitted = self._background.submit(self._write, batch, self._scalars, context=self._context)
        for result, _ in submitted:
            yield from self._outputs(result)

    def finish_bundle(self):
        done = self._background.drain()
        for result, context in done:
            yield from self.windowed(self._outputs(result), context)
        if self._file is not None:
            path = self._close()
            yield from self.windowed([beam.pvalue.TaggedOutput(self.FILES, path)], self._context)


class WriteParquet(beam.PTransform):
    """Writes transformed RecordBatches (tf.Transform's output batches) as Parquet files
    ``<prefix>-<uuid>.parquet`` (snappy; a feature of one value a row is a plain column, see
    ``flat_table``); returns the parity pairs of sampled rows, as ``EncodeExamples`` does. Counts
    rows in the ``skewless`` counter ``counter_name``.

    Each bundle writes its file in ``temp_dir``; files are moved into place only after every
    bundle that wrote them succeeded (a reshuffle commits them), as Beam's own file sinks do, so a
    retried bundle never leaves a partial or duplicate file in the output.

    Args:
        file_path_prefix: Where the files go, e.g. ``<output>/transformed/train``.
        counter_name: The row counter.
        temp_dir: Where bundles write before the files are moved.
        metadata: tf.Transform's transformed metadata (``TransformDataset``'s deferred metadata):
            which features are of one value a row.
    """

    def __init__(self, file_path_prefix: str, counter_name: str, temp_dir: str, metadata):
        super().__init__()
        self._prefix = file_path_prefix
        self._counter_name = counter_name
        self._temp_dir = temp_dir
        self._metadata = metadata

    def expand(self, transformed):
        written = transformed | "WriteParquetFiles" >> beam.ParDo(
            _WriteParquetFiles(self._temp_dir, self._counter_name), beam.pvalue.AsSingleton(self._metadata)
        ).with_outputs(_WriteParquetFiles.FILES, main="pairs")
        commit_and_publish(written[_WriteParquetFiles.FILES], self._prefix)
        return written.pairs


class _WriteBundleFiles(beam.DoFn):
    """Writes the elements (bytes) of each bundle, as they come, to one new file in ``temp_dir``;
    outputs the file's path when the bundle finishes. A local output directory is made even when
    there is nothing to write (an empty ``dead_letter/`` says "none")."""

    def __init__(self, file_path_prefix: str, temp_dir: str, suffix: str):
        self._prefix = file_path_prefix
        self._temp_dir = temp_dir
        self._suffix = suffix
        self._file = None

    def setup(self):
        files.make_dirs(files.dirname(self._prefix))

    def start_bundle(self):
        self._close_abandoned()

    def process(self, data: bytes, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        if self._file is None:
            path = FileSystems.join(self._temp_dir, f"{uuid.uuid4().hex}{self._suffix}")
            handle = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
            self._file = (path, handle, (window, timestamp))
        self._file[1].write(data)

    def finish_bundle(self):
        if self._file is not None:
            path, handle, context = self._file
            self._file = None
            handle.close()
            yield from overlap.BackgroundDoFn.windowed([path], context)

    def teardown(self):
        self._close_abandoned()

    def _close_abandoned(self) -> None:
        if self._file is not None:  # left open by a failed bundle: never published
            self._file[1].close()
            self._file = None


def commit_and_publish(files, file_path_prefix: str):
    """Moves the files finished bundles wrote into place as ``<prefix>-<name>``, once a reshuffle
    has committed them (a retried bundle's file is never published; see :func:`publish_file`)."""
    return files | "CommitFiles" >> beam.Reshuffle() | "PublishFiles" >> beam.Map(publish_file, file_path_prefix)


class WriteBundleFiles(beam.PTransform):
    """Writes bytes elements, as they are, to files ``<prefix>-<uuid><suffix>``, one per bundle.

    Each bundle writes its file in ``temp_dir``; the files are moved into place after the bundles
    that wrote them committed, as Beam's file sinks do. Nothing to write, no file. Three steps and
    one fused stage more, where ``beam.io.WriteToText`` applies about 35 transforms and runs five
    stages: the run writes seven outputs, and on a small input their start-up was a second.

    Args:
        file_path_prefix: Where the files go, e.g. ``<output>/dead_letter/dead_letter``.
        temp_dir: Where bundles write before the files are moved (removed with the run's ``tmp/``).
        suffix: The files' name ending, e.g. ``.jsonl``.
    """

    def __init__(self, file_path_prefix: str, temp_dir: str, suffix: str):
        super().__init__()
        self._prefix = file_path_prefix
        self._temp_dir = temp_dir
        self._suffix = suffix

    def expand(self, data):
        files = data | "WriteBundleFiles" >> beam.ParDo(_WriteBundleFiles(self._prefix, self._temp_dir, self._suffix))
        return commit_and_publish(files, self._prefix)


def json_line(record) -> bytes:
    """One JSON line (UTF-8, keys sorted): a dead letter, or a parity pair already encoded."""
    text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, sort_keys=True)
    return f"{text}\n".encode()


class WriteExamples(beam.PTransform):
    """Writes framed example batches to ``<prefix>-<uuid>.tfrecord.gz`` (gzip TFRecord files that
    ``tf.data.TFRecordDataset(..., compression_type="GZIP")`` reads; see :class:`WriteBundleFiles`)."""

    def __init__(self, file_path_prefix: str, temp_dir: str):
        super().__init__()
        self._prefix = file_path_prefix
        self._temp_dir = temp_dir

    def expand(self, framed_batches):
        return framed_batches | "WriteTFRecords" >> WriteBundleFiles(self._prefix, self._temp_dir, ".tfrecord.gz")


class _WriteJsonLines(beam.PTransform):
    """Writes records (dicts, or JSON strings as they are) as JSON lines to ``<prefix>-<uuid>.jsonl``."""

    def __init__(self, file_path_prefix: str, temp_dir: str):
        super().__init__()
        self._prefix = file_path_prefix
        self._temp_dir = temp_dir

    def expand(self, records):
        return (
            records
            | "ToJsonLines" >> beam.Map(json_line)
            | "WriteJsonLines" >> WriteBundleFiles(self._prefix, self._temp_dir, ".jsonl")
        )


class WriteParityPairs(_WriteJsonLines):
    """Writes parity pairs (JSON lines) to ``<prefix>-<uuid>.jsonl``."""


class WriteDeadLetters(_WriteJsonLines):
    """Writes dead-letter dicts as JSON lines to ``<prefix>-<uuid>.jsonl`` (none: no file)."""
