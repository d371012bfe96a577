"""The composite transforms of ``skewless run``: prepare the raw batches, analyze and transform them,
write the transformed splits.

```
raw batches -> PrepareRawBatches -> AnalyzeAndTransform -> WriteTransformedSplits
               (raw statistics,      (split, analyze train,   (statistics, examples or Parquet
                parity sample,        transform_fn, spill,     per split, parity pairs)
                slice columns)        transform both splits)
```
"""

import os
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow_transform.beam as tft_beam
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

import schemas
from pipelines.formats import decode
from pipelines.io import coders, spill
from pipelines.io import staging as outputs
from pipelines.io.write import EncodeExamples, WriteExamples, WriteParityPairs, WriteParquet
from pipelines.prepare import parity
from pipelines.prepare.split import SplitTrainEval, eval_mask
from pipelines.quality import feature_stats, statistics

__all__ = [
    "PARQUET",
    "SPLIT_COLUMN",
    "TFRECORD",
    "AnalyzeAndTransform",
    "PrepareRawBatches",
    "WriteTransformedSplits",
    "tensor_adapter_config",
]

TFRECORD, PARQUET = "tfrecord", "parquet"
SPLIT_COLUMN = "__split__"  # the second pass's batches: 0 train, 1 eval (pipelines/io/spill.py)
BATCHES, METADATA = "batches", "metadata"


def tensor_adapter_config(
    schema, passthrough: Sequence[tuple[str, pa.DataType]] = ()
) -> tensor_adapter.TensorAdapterConfig:
    """Raw features as tensors; passthrough columns (parity sample, slice copies) ride along."""
    arrow_schema = decode.arrow_schema(schema)
    for name, data_type in passthrough:
        arrow_schema = arrow_schema.append(pa.field(name, data_type))
    return tensor_adapter.TensorAdapterConfig(
        arrow_schema, tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    )


class PrepareRawBatches(beam.PTransform):
    """Validated ``(RecordBatch, keys)`` pairs made ready for tf.Transform.

    Writes the statistics of the raw rows (overall, per split, per slice; JSON and TFDV's proto),
    and adds the raw example of each row in the parity sample and a copy of each ``slice_by``
    column (passed through the transform).

    Args:
        slice_by: Raw columns whose values slice the statistics.
        parity_fraction: Share of rows whose serving-graph output is checked against Beam's.
        statistics_path: Where the raw rows' statistics are written.
        eval_fraction: The split's share of eval rows (each row's split is sliced on).
    """

    def __init__(self, slice_by: Sequence[str], parity_fraction: float, statistics_path: str, eval_fraction: float):
        super().__init__()
        self._slice_by, self._parity_fraction, self._statistics_path = list(slice_by), parity_fraction, statistics_path
        self._eval_fraction = eval_fraction

    def expand(self, raw_batches):
        (
            raw_batches
            | "AttachSplits" >> beam.Map(_with_split_slice, self._eval_fraction).with_output_types(pa.RecordBatch)
            | "GeneratePreTransformStatistics"
            >> statistics.GenerateStatistics(self._slice_by, partition=feature_stats.SPLIT_SLICE)
            | "WritePreTransformStatistics" >> statistics.WriteStatistics(self._statistics_path, with_proto=True)
        )
        return (
            raw_batches
            | "AttachRawExamples" >> parity.AttachRawExamples(self._parity_fraction)
            | "AttachSliceColumns" >> statistics.AttachSliceColumns(self._slice_by)
        )


class AnalyzeAndTransform(beam.PTransform):
    """Splits prepared batches into train and eval, analyzes train, transforms both splits.

    The data goes through twice: the first pass splits and analyzes, writes ``transform_fn/`` and
    keeps the split batches in Arrow files under the staging ``tmp/spill``; the second reads those
    back and transforms them (``pipelines/io/spill.py``), so no step holds the whole data set and
    the input is decoded once. With ``analyzed``, ``transform_fn/`` is under ``output_dir``
    already (the incremental analysis): one pass transforms the batches as they are split.

    Args:
        dataset: The dataset (schema, ``preprocessing_fn``, tracing mode).
        eval_fraction: Share of rows for eval.
        passthrough: Columns besides the schema's that the batches carry through the transform.
        output_dir: Where ``transform_fn/`` is written (or read, when ``analyzed``); its ``tmp/``
            holds tf.Transform's and the spill's temporary files.
        analyzed: Whether ``transform_fn/`` exists already.
        with_metadata: Also return the transformed metadata as a one-element PCollection.

    Returns:
        ``{"batches": transformed batches, each with its split in SPLIT_COLUMN}``, and with
        ``with_metadata`` the ``"metadata"``.
    """

    def __init__(
        self,
        dataset: schemas.Dataset,
        eval_fraction: float,
        passthrough: Sequence[tuple[str, pa.DataType]],
        output_dir: str,
        analyzed: bool = False,
        with_metadata: bool = False,
    ):
        super().__init__()
        self._dataset, self._eval_fraction, self._passthrough = dataset, eval_fraction, list(passthrough)
        self._output_dir, self._analyzed, self._with_metadata = output_dir, analyzed, with_metadata

    def expand(self, prepared):
        dataset, output_dir, pipeline = self._dataset, self._output_dir, prepared.pipeline
        splits_read = list(SplitTrainEval.SPLITS)
        # both splits are transformed in one step, each batch tagged with its split (passed through)
        tagged_config = tensor_adapter_config(
            dataset.schema, [*self._passthrough, (SPLIT_COLUMN, pa.large_list(pa.int64()))]
        )
        with tft_beam.Context(
            temp_dir=os.path.join(output_dir, outputs.TEMP),
            passthrough_keys={name for name, _ in self._passthrough} | {SPLIT_COLUMN},
            force_tf_compat_v1=dataset.tf_compat_v1,
        ):
            if self._analyzed:  # the transform_fn is there already: the split batches transformed as they come
                tagged = prepared | "SplitTrainEval" >> SplitTrainEval(self._eval_fraction, tag_column=SPLIT_COLUMN)
                transform_fn = pipeline | "ReadTransformFn" >> tft_beam.ReadTransformFn(output_dir)
            else:  # analyzed here; the second pass reads the first pass's batches back
                splits = prepared | "SplitTrainEval" >> SplitTrainEval(self._eval_fraction)
                transform_fn = (
                    splits[SplitTrainEval.TRAIN],
                    tensor_adapter_config(dataset.schema, self._passthrough),  # the batches' exact columns
                ) | "AnalyzeTrainData" >> tft_beam.AnalyzeDataset(dataset.preprocessing_fn())
                _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(output_dir)
                spill_prefix = outputs.temp_dir(output_dir, "spill")
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
        result = {BATCHES: transformed}
        if self._with_metadata:
            if self._analyzed:  # read with the transform_fn: known already, not deferred
                result[METADATA] = pipeline | "TransformedMetadata" >> beam.Create([transformed_metadata])
            else:
                result[METADATA] = transformed_metadata.deferred_metadata
        return result


def _with_split_slice(element, eval_fraction: float) -> pa.RecordBatch:
    """A raw batch with each row's split (``train``/``eval``, as ``SplitTrainEval`` will split it)
    in the statistics' split slice column; the row keys dropped."""
    batch, keys = element
    splits = np.where(eval_mask(keys, eval_fraction), SplitTrainEval.EVAL, SplitTrainEval.TRAIN)
    return batch.append_column(statistics.SLICE_PREFIX + feature_stats.SPLIT_SLICE, pa.array(splits, pa.string()))


def _route_split(element: tuple[pa.RecordBatch, dict], splits: list[str]):
    """A transformed batch without the split column tf.Transform passed through: with its split as
    the statistics' split slice column (for the statistics) and tagged with its split (to be
    written). The passthrough dict is dropped: the batch holds the passthrough columns too."""
    batch, _ = element
    split = spill.tag_of(batch.column(SPLIT_COLUMN), splits)
    batch = batch.drop_columns([SPLIT_COLUMN])
    split_slice = pa.array([split] * batch.num_rows, pa.string())
    yield batch.append_column(statistics.SLICE_PREFIX + feature_stats.SPLIT_SLICE, split_slice)
    yield beam.pvalue.TaggedOutput(split, batch)


class WriteTransformedSplits(beam.PTransform):
    """Writes what :class:`AnalyzeAndTransform` returns: the transformed rows' statistics, each
    split's examples (gzip tf.Example TFRecords, or Parquet with the ``metadata``), and the parity
    pairs of the sampled rows.

    Args:
        output_dir: Where ``stats/``, ``transformed/`` and ``parity/`` are written.
        output_format: ``tfrecord`` or ``parquet``.
        slice_by: Raw columns whose values slice the statistics.
    """

    def __init__(self, output_dir: str, output_format: str, slice_by: Sequence[str]):
        super().__init__()
        self._output_dir, self._output_format, self._slice_by = output_dir, output_format, list(slice_by)

    def expand(self, transformed):
        output_dir, splits = self._output_dir, list(SplitTrainEval.SPLITS)
        routed = transformed[BATCHES] | "RouteSplits" >> beam.FlatMap(_route_split, splits).with_outputs(
            *splits, main="batches"
        )
        (
            coders.of_record_batches(routed.batches)
            | "GeneratePostTransformStatistics"
            >> statistics.GenerateStatistics(self._slice_by, partition=feature_stats.SPLIT_SLICE)
            | "WritePostTransformStatistics"
            >> statistics.WriteStatistics(os.path.join(output_dir, "stats", "post_transform.json"), with_proto=True)
        )
        # typed, so that Beam sizes their batches from the buffers rather than by pickling a sample
        train = coders.of_record_batches(routed[SplitTrainEval.TRAIN])
        eval_ = coders.of_record_batches(routed[SplitTrainEval.EVAL])
        examples = os.path.join(output_dir, "transformed")
        if self._output_format == PARQUET:
            temp_dir = outputs.temp_dir(output_dir, "parquet")
            metadata = transformed[METADATA]
            train_pairs = train | "WriteTrainData" >> WriteParquet(
                f"{examples}/train", "rows_train", f"{temp_dir}/train", metadata
            )
            eval_pairs = eval_ | "WriteEvalData" >> WriteParquet(
                f"{examples}/eval", "rows_eval", f"{temp_dir}/eval", metadata
            )
        else:
            temp_dir = outputs.temp_dir(output_dir, "transformed")
            encoded_train = train | "EncodeTrainData" >> EncodeExamples("rows_train")
            encoded_eval = eval_ | "EncodeEvalData" >> EncodeExamples("rows_eval")
            encoded_train.examples | "WriteTrainData" >> WriteExamples(f"{examples}/train", temp_dir)
            encoded_eval.examples | "WriteEvalData" >> WriteExamples(f"{examples}/eval", temp_dir)
            train_pairs, eval_pairs = encoded_train[EncodeExamples.PARITY], encoded_eval[EncodeExamples.PARITY]
        # one sink per split, written where the pairs are made: a Flatten of the two made the runner
        # hold every pair in memory until both were complete
        prefix, temp_dir = os.path.join(output_dir, parity.PAIRS_PREFIX), outputs.temp_dir(output_dir, "parity")
        train_pairs | "WriteTrainParityPairs" >> WriteParityPairs(f"{prefix}-train", temp_dir)
        eval_pairs | "WriteEvalParityPairs" >> WriteParityPairs(f"{prefix}-eval", temp_dir)
