"""SplitTrainEval: a row's split depends on its key hash alone."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.prepare.split import SplitTrainEval, eval_mask

pytestmark = pytest.mark.pipeline


def test_eval_mask_uses_the_first_buckets():
    keys = np.array([0, 1999, 2000, 12345, 10_001], dtype=np.uint32)
    assert eval_mask(keys, 0.2).tolist() == [True, True, False, False, True]
    assert eval_mask(keys, 0.0).tolist() == [False] * 5


def test_eval_fraction_is_checked():
    with pytest.raises(ValueError, match="eval_fraction"):
        SplitTrainEval(1.5)


def test_split_train_eval_routes_rows_by_key():
    batch = pa.RecordBatch.from_pydict({"v": [[1], [2], [3], [4]]})
    keys = np.array([5, 2500, 1999, 9999], dtype=np.uint32)
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        splits = p | beam.Create([(batch, keys)]) | SplitTrainEval(0.2)
        to_values = beam.FlatMap(lambda b: [v[0] for v in b.column("v").to_pylist()])
        assert_that(splits[SplitTrainEval.TRAIN] | "TrainValues" >> to_values, equal_to([2, 4]), label="Train")
        assert_that(splits[SplitTrainEval.EVAL] | "EvalValues" >> to_values, equal_to([1, 3]), label="Eval")


def test_split_train_eval_with_a_tag_column_gives_one_collection_of_tagged_batches():
    """The one-pass run's form (``--analysis-cache``): each batch holds one split's rows and the
    split's index in ``SPLITS`` as a passthrough column."""
    batch = pa.RecordBatch.from_pydict({"v": [[1], [2], [3], [4]]})
    keys = np.array([5, 2500, 1999, 9999], dtype=np.uint32)

    def rows(tagged: pa.RecordBatch) -> list[tuple[int, list[int]]]:
        return [(row["v"][0], row["split"]) for row in tagged.to_pylist()]

    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        tagged = p | beam.Create([(batch, keys)]) | SplitTrainEval(0.2, tag_column="split")
        assert_that(tagged | beam.FlatMap(rows), equal_to([(2, [0]), (4, [0]), (1, [1]), (3, [1])]))
        assert_that(
            tagged | "Batches" >> beam.Map(lambda b: len({tuple(v) for v in b.column("split").to_pylist()})),
            equal_to([1, 1]),
            label="OneSplitPerBatch",
        )
