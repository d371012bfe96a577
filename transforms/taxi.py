"""The Chicago taxi preparation: what the TFX taxi example does, written once for Beam and serving.

Raw feature names, types and presence come from ``schemas/taxi/schema.pbtxt``; this module only
says which transformation each raw feature gets. ``tests/transforms/test_taxi.py`` checks that
every schema feature is in exactly one group below.
"""

import tensorflow as tf
import tensorflow_transform as tft

from transforms.common import fill_in_missing, transformed_name, vocabulary_ids

__all__ = [
    "BUCKET_FEATURE_KEYS",
    "CATEGORICAL_FEATURE_KEYS",
    "DENSE_FLOAT_FEATURE_KEYS",
    "FARE_KEY",
    "LABEL_KEY",
    "TIPS_KEY",
    "UNUSED_FEATURE_KEYS",
    "VOCAB_FEATURE_KEYS",
    "preprocessing_fn",
]

DENSE_FLOAT_FEATURE_KEYS = ["trip_miles", "fare", "trip_seconds"]
VOCAB_FEATURE_KEYS = ["payment_type", "company"]
VOCAB_SIZE = 1000
OOV_SIZE = 10
BUCKET_FEATURE_KEYS = ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"]
FEATURE_BUCKET_COUNT = 10
QUANTILES_EPSILON = min(1.0 / FEATURE_BUCKET_COUNT, 0.01)  # tft.bucketize's default
CATEGORICAL_FEATURE_KEYS = [
    "trip_start_hour",
    "trip_start_day",
    "trip_start_month",
    "pickup_census_tract",
    "dropoff_census_tract",
    "pickup_community_area",
    "dropoff_community_area",
]
TIPS_KEY = "tips"
FARE_KEY = "fare"  # also a dense float feature
UNUSED_FEATURE_KEYS = ["trip_start_timestamp"]
LABEL_KEY = "big_tipper"
BIG_TIP_FRACTION = 0.2


def preprocessing_fn(inputs: dict) -> dict:
    """Prepares raw taxi features for training and serving.

    Args:
        inputs: Raw features keyed by schema name (dense ``[batch, 1]`` or sparse).

    Returns:
        Transformed features: z-scores (float32), vocabulary ids, quantile bucket ids, categorical
        ints (int64), all of shape ``[batch]``, and the label ``big_tipper`` (1 when tips exceed 20%
        of the fare, 0 otherwise and when the fare is missing).
    """
    outputs = {}
    # one analyzer per kind of analysis, over stacked columns: four analyzers instead of nine, so
    # fewer Beam stages and cache entries (README). float64: one elementwise analyzer sums each
    # batch's column in order, which in float32 put the deviation 5e-5 off at 1M rows.
    floats = tf.stack([tf.cast(fill_in_missing(inputs[key]), tf.float64) for key in DENSE_FLOAT_FEATURE_KEYS], axis=1)
    z_scores = tf.cast(tft.scale_to_z_score(floats, elementwise=True), tf.float32)
    for index, key in enumerate(DENSE_FLOAT_FEATURE_KEYS):
        outputs[transformed_name(key)] = z_scores[:, index]
    for key in VOCAB_FEATURE_KEYS:
        value = fill_in_missing(inputs[key])
        # exact, tft.vocabulary's vocabulary here: 61 companies and 7 payment types, fewer than
        # VOCAB_SIZE distinct values (see common.vocabulary_ids)
        outputs[transformed_name(key)] = vocabulary_ids(value, VOCAB_SIZE, OOV_SIZE, vocab_filename=key)
    coordinates = tf.stack([fill_in_missing(inputs[key]) for key in BUCKET_FEATURE_KEYS], axis=1)
    boundaries = tft.quantiles(coordinates, FEATURE_BUCKET_COUNT, QUANTILES_EPSILON, reduce_instance_dims=False)
    boundaries = tf.reshape(boundaries, [len(BUCKET_FEATURE_KEYS), -1])
    for index, key in enumerate(BUCKET_FEATURE_KEYS):
        outputs[transformed_name(key)] = tft.apply_buckets(coordinates[:, index], boundaries[index : index + 1])
    for key in CATEGORICAL_FEATURE_KEYS:
        outputs[transformed_name(key)] = fill_in_missing(inputs[key])
    fare = fill_in_missing(inputs[FARE_KEY], default=float("nan"))
    tips = fill_in_missing(inputs[TIPS_KEY])
    big_tipper = tf.greater(tips, tf.multiply(fare, BIG_TIP_FRACTION))
    outputs[LABEL_KEY] = tf.where(tf.math.is_nan(fare), tf.zeros_like(fare, tf.int64), tf.cast(big_tipper, tf.int64))
    return outputs
