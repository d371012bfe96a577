"""Writing outputs: transformed tf.Examples as gzip TFRecord shards, and dead letters as JSON lines."""

import json
import time

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes

__all__ = ["WriteDeadLetters", "WriteTransformedExamples"]

METRICS_NAMESPACE = "skewless"


class _EncodeExamples(beam.DoFn):
    """Encodes transformed RecordBatches into serialized tf.Examples, one C++ call per batch."""

    def __init__(self, counter_name: str):
        self._counter_name = counter_name
        self._encoder = None

    def setup(self):
        from tfx_bsl.coders import example_coder

        self._encoder = example_coder.RecordBatchToExamplesEncoder()
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, self._counter_name)
        self._msecs = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "encode_msecs")

    def process(self, element: tuple[pa.RecordBatch, dict]):
        batch, _ = element
        started = time.perf_counter()
        examples = self._encoder.encode(batch)
        self._msecs.inc(int((time.perf_counter() - started) * 1000))
        self._rows.inc(len(examples))
        yield from examples


class WriteTransformedExamples(beam.PTransform):
    """Writes ``(RecordBatch, passthrough)`` pairs from tf.Transform as gzip tf.Example shards.

    Counts the rows written in the ``skewless`` counter named ``counter_name``.
    """

    def __init__(self, file_path_prefix: str, counter_name: str):
        super().__init__()
        self._prefix = file_path_prefix
        self._counter_name = counter_name

    def expand(self, transformed):
        return (
            transformed
            | "EncodeExamples" >> beam.ParDo(_EncodeExamples(self._counter_name))
            | "WriteTFRecords"
            >> beam.io.WriteToTFRecord(
                self._prefix, file_name_suffix=".tfrecord.gz", compression_type=CompressionTypes.GZIP
            )
        )


class WriteDeadLetters(beam.PTransform):
    """Writes dead-letter dicts as JSON lines to ``<prefix>-SSSSS-of-NNNNN.jsonl``."""

    def __init__(self, file_path_prefix: str):
        super().__init__()
        self._prefix = file_path_prefix

    def expand(self, dead_letters):
        return (
            dead_letters
            | "ToJson" >> beam.Map(lambda record: json.dumps(record, ensure_ascii=False, sort_keys=True))
            | "WriteJsonLines" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )
