"""The deterministic train/eval split."""

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.io.coders import of_record_batches
from pipelines.io.spill import with_tag_column

__all__ = ["SplitTrainEval", "eval_mask"]

_BUCKETS = 10_000


def eval_mask(keys: np.ndarray, eval_fraction: float) -> np.ndarray:
    """Which rows go to eval: those whose key hash falls in the first ``eval_fraction`` of buckets.

    Args:
        keys: uint32 row-key hashes (``decode.row_key_hashes``).
        eval_fraction: Share of rows for eval, in [0, 1].

    Returns:
        A boolean mask, True for eval rows. The same keys always give the same mask.
    """
    return (keys % _BUCKETS) < round(eval_fraction * _BUCKETS)


class _Split(beam.DoFn):
    def __init__(self, eval_fraction: float, tag_column: str | None):
        self._eval_fraction = eval_fraction
        self._tag_column = tag_column

    def process(self, element):  # (batch, keys): a KeyedBatch or a plain tuple
        batch, keys = element
        is_eval = eval_mask(keys, self._eval_fraction)
        if (~is_eval).any():
            yield self._output(batch.filter(pa.array(~is_eval)), SplitTrainEval.TRAIN)
        if is_eval.any():
            yield self._output(batch.filter(pa.array(is_eval)), SplitTrainEval.EVAL)

    def _output(self, batch: pa.RecordBatch, split: str):
        if self._tag_column is not None:
            return with_tag_column(batch, split, SplitTrainEval.SPLITS, self._tag_column)
        return batch if split == SplitTrainEval.TRAIN else beam.pvalue.TaggedOutput(split, batch)


class SplitTrainEval(beam.PTransform):
    """Splits ``(RecordBatch, row_key_hashes)`` pairs into ``train`` and ``eval`` RecordBatches.

    A row's split depends only on its key, so a rerun (on any runner, in any order) splits the
    same rows the same way, and identical records always land in the same split.

    With ``tag_column``, the result is one collection instead of two: each batch holds the rows of
    one split and the column ``tag_column``, the split's index in ``SPLITS`` (see
    ``spill.with_tag_column``), so that one step can transform both splits without a ``Flatten``
    (which the in-process runner would materialise).
    """

    TRAIN = "train"
    EVAL = "eval"
    SPLITS = (TRAIN, EVAL)

    def __init__(self, eval_fraction: float, tag_column: str | None = None):
        super().__init__()
        if not 0.0 <= eval_fraction <= 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
        self._eval_fraction = eval_fraction
        self._tag_column = tag_column

    def expand(self, batches):
        split = beam.ParDo(_Split(self._eval_fraction, self._tag_column))
        if self._tag_column is not None:
            return of_record_batches(batches | "SplitByKeyHash" >> split)
        splits = batches | "SplitByKeyHash" >> split.with_outputs(self.EVAL, main=self.TRAIN)
        for split in (self.TRAIN, self.EVAL):
            of_record_batches(splits[split])  # sized without pickling (pipelines/io/coders.py)
        return splits
