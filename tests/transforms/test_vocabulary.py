"""common.vocabulary_ids: most frequent first, ties in descending order (as tft.vocabulary), exact while the distinct
values fit in top_k (values outside the vocabulary at serving: tests/pipelines/serving/test_model.py)."""

import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.beam import tft_unit

from transforms import common

pytestmark = pytest.mark.unit


def _preprocessing_fn(inputs):
    x = tf.reshape(inputs["x"], [-1])
    return {"x_xf": common.vocabulary_ids(x, top_k=4, num_oov_buckets=2, vocab_filename="x")}


class VocabularyIdsTest(tft_unit.TransformTestCase):
    def test_frequency_order_with_ties_in_descending_order_whatever_the_input_order(self):
        # counts: c 3, a 2, b 2, d 1 (four distinct values, top_k 4): c, then the tie b, a, then d
        schema = schema_pb2.Schema()
        feature = schema.feature.add(name="x", type=schema_pb2.BYTES)
        feature.shape.dim.add(size=1)
        feature.presence.min_fraction = 1.0
        vocabulary = {"c": 0, "b": 1, "a": 2, "d": 3}
        for values in (["b", "c", "a", "d", "c", "a", "b", "c"], ["a", "d", "a", "c", "b", "c", "b", "c"]):
            self.assertAnalyzeAndTransformResults(
                [{"x": [v]} for v in values],
                tft.DatasetMetadata(schema),
                _preprocessing_fn,
                [{"x_xf": vocabulary[v]} for v in values],
                expected_vocab_file_contents={"x": [b"c", b"b", b"a", b"d"]},
                force_tf_compat_v1=False,
            )
