"""Writing outputs: transformed tf.Examples as gzip TFRecord shards, parity pairs and dead letters."""

import json
import time

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes

from pipelines.parity import RAW_EXAMPLE_COLUMN, encode_pair

__all__ = ["EncodeExamples", "WriteDeadLetters", "WriteExamples", "WriteParityPairs"]

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
        index = batch.schema.get_field_index(RAW_EXAMPLE_COLUMN)
        raw_examples = batch.column(index).to_pylist() if index >= 0 else None
        # passthrough columns (parity sample, slice copies) are not transformed features
        batch = batch.select([name for name in batch.schema.names if not name.startswith("__")])
        examples = self._encoder.encode(batch)
        self._msecs.inc(int((time.perf_counter() - started) * 1000))
        self._rows.inc(len(examples))
        yield from examples
        if raw_examples is not None:
            for raw, example in zip(raw_examples, examples, strict=True):
                if raw:
                    yield beam.pvalue.TaggedOutput(EncodeExamples.PARITY, encode_pair(raw[0], example))


class EncodeExamples(beam.PTransform):
    """Turns tf.Transform's ``(RecordBatch, passthrough)`` output into serialized tf.Examples.

    Returns the examples (main output) and, for rows of the parity sample, JSON lines pairing the
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


class WriteExamples(beam.PTransform):
    """Writes serialized examples to ``<prefix>-SSSSS-of-NNNNN.tfrecord.gz``."""

    def __init__(self, file_path_prefix: str):
        super().__init__()
        self._prefix = file_path_prefix

    def expand(self, examples):
        return examples | "WriteTFRecords" >> beam.io.WriteToTFRecord(
            self._prefix, file_name_suffix=".tfrecord.gz", compression_type=CompressionTypes.GZIP
        )


class WriteParityPairs(beam.PTransform):
    """Writes parity pairs (JSON lines) to ``<prefix>-SSSSS-of-NNNNN.jsonl``."""

    def __init__(self, file_path_prefix: str):
        super().__init__()
        self._prefix = file_path_prefix

    def expand(self, pairs):
        return pairs | "WriteJsonLines" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")


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
