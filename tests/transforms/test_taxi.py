"""The taxi preprocessing_fn: exact values on hand-made rows, and its agreement with the schema."""

import math

import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.beam import tft_unit

import schemas
from transforms import common, taxi

pytestmark = pytest.mark.unit

N = 20


def _rows() -> list[dict]:
    """20 rows whose transformed values can be worked out by hand (see the expectations)."""
    rows = []
    for i in range(N):
        coordinate = float(i + 1)  # 1..20: ten quantile buckets put v in bucket (v - 1) // 2
        rows.append(
            {
                "trip_miles": [float(i + 1)],
                "fare": [] if i == 0 else [10.0],
                "trip_seconds": [] if i == 5 else [60 * i],
                "tips": [float(i)],
                "payment_type": ["Cash" if i < 12 else "Credit Card" if i < 18 else "No Charge"],
                "company": ["B"] if i < 10 else ["A"] if i < 16 else [],
                "pickup_latitude": [coordinate],
                "pickup_longitude": [coordinate],
                "dropoff_latitude": [coordinate],
                "dropoff_longitude": [coordinate],
                "trip_start_hour": [i],
                "trip_start_day": [1 + i % 7],
                "trip_start_month": [1 + i % 12],
                "trip_start_timestamp": [1_400_000_000 + i],
                "pickup_census_tract": [],
                "dropoff_census_tract": [17031000000 + i],
                "pickup_community_area": [i % 77 + 1],
                "dropoff_community_area": [] if i % 2 else [8],
            }
        )
    return rows


def _z_scores(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std for v in values]


def _expected() -> list[dict]:
    miles = _z_scores([float(i + 1) for i in range(N)])
    fares = _z_scores([0.0] + [10.0] * (N - 1))  # the missing fare is filled with 0
    seconds = _z_scores([0.0 if i == 5 else 60.0 * i for i in range(N)])
    expected = []
    for i in range(N):
        row = {
            "trip_miles_xf": miles[i],
            "fare_xf": fares[i],
            "trip_seconds_xf": seconds[i],
            # vocabularies are ordered by frequency: Cash 12, Credit Card 6, No Charge 2; B 10, A 6.
            # tf.Transform keeps empty strings out of vocabularies: a missing company ('') hashes
            # into one of the 10 OOV buckets, id 2 + 3.
            "payment_type_xf": 0 if i < 12 else 1 if i < 18 else 2,
            "company_xf": 0 if i < 10 else 1 if i < 16 else 5,
            "trip_start_hour_xf": i,
            "trip_start_day_xf": 1 + i % 7,
            "trip_start_month_xf": 1 + i % 12,
            "pickup_census_tract_xf": 0,
            "dropoff_census_tract_xf": 17031000000 + i,
            "pickup_community_area_xf": i % 77 + 1,
            "dropoff_community_area_xf": 0 if i % 2 else 8,
            # tips = i against 20% of a 10.0 fare: strictly above 2; no fare (row 0) means 0
            "big_tipper": 1 if i > 2 else 0,
        }
        for key in taxi.BUCKET_FEATURE_KEYS:
            row[common.transformed_name(key)] = i // 2
        expected.append(row)
    return expected


class TaxiPreprocessingTest(tft_unit.TransformTestCase):
    def test_analyze_and_transform_exact_values(self):
        dataset = schemas.load_dataset("taxi")
        metadata = tft.DatasetMetadata(dataset.schema)
        self.assertAnalyzeAndTransformResults(
            _rows(),
            metadata,
            taxi.preprocessing_fn,
            _expected(),
            expected_vocab_file_contents={
                "payment_type": [b"Cash", b"Credit Card", b"No Charge"],
                "company": [b"B", b"A"],
            },
            force_tf_compat_v1=False,
        )


def test_every_schema_feature_has_exactly_one_role(taxi_dataset):
    groups = [
        taxi.DENSE_FLOAT_FEATURE_KEYS,
        taxi.VOCAB_FEATURE_KEYS,
        taxi.BUCKET_FEATURE_KEYS,
        taxi.CATEGORICAL_FEATURE_KEYS,
        [taxi.TIPS_KEY],
        taxi.UNUSED_FEATURE_KEYS,
    ]
    keys = [key for group in groups for key in group]
    assert sorted(keys) == sorted(taxi_dataset.feature_names)
    assert taxi.FARE_KEY in taxi.DENSE_FLOAT_FEATURE_KEYS


def test_fill_in_missing_densifies_sparse_and_flattens_dense():
    sparse = tf.SparseTensor(indices=[[0, 0], [2, 0]], values=[1.5, 2.5], dense_shape=[3, 1])
    assert common.fill_in_missing(sparse).numpy().tolist() == [1.5, 0.0, 2.5]
    assert math.isnan(common.fill_in_missing(sparse, default=float("nan")).numpy()[1])
    strings = tf.SparseTensor(indices=[[1, 0]], values=["x"], dense_shape=[2, 1])
    assert common.fill_in_missing(strings).numpy().tolist() == [b"", b"x"]
    assert common.fill_in_missing(tf.constant([[3], [4]])).numpy().tolist() == [3, 4]


def test_transformed_name():
    assert common.transformed_name("fare") == "fare_xf"
