"""Dataset configs and the raw taxi schema."""

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
from tests.helpers import sample_lines

pytestmark = pytest.mark.unit


def test_taxi_schema_names_exactly_the_sample_columns(taxi_dataset):
    header, _ = sample_lines(0)
    assert sorted(taxi_dataset.feature_names) == sorted(header.split(","))
    assert len(taxi_dataset.feature_names) == 18


def test_required_features_are_fixed_len_and_the_others_var_len(taxi_dataset):
    spec = taxi_dataset.feature_spec()
    required = sorted(name for name, s in spec.items() if isinstance(s, tf.io.FixedLenFeature))
    assert required == [
        "payment_type",
        "trip_miles",
        "trip_start_day",
        "trip_start_hour",
        "trip_start_month",
        "trip_start_timestamp",
    ]
    assert spec["fare"] == tf.io.VarLenFeature(tf.float32)
    assert spec["company"] == tf.io.VarLenFeature(tf.string)
    assert spec["trip_start_hour"] == tf.io.FixedLenFeature([1], tf.int64)


def test_value_domains(taxi_dataset):
    features = {f.name: f for f in taxi_dataset.schema.feature}
    assert (features["trip_start_hour"].int_domain.min, features["trip_start_hour"].int_domain.max) == (0, 23)
    assert (features["trip_start_day"].int_domain.min, features["trip_start_day"].int_domain.max) == (1, 7)
    assert (features["trip_start_month"].int_domain.min, features["trip_start_month"].int_domain.max) == (1, 12)
    for name in ("fare", "trip_miles", "tips"):
        assert features[name].float_domain.min == 0 and not features[name].float_domain.HasField("max")
    assert features["trip_seconds"].int_domain.min == 0


def test_config_points_at_the_preprocessing_fn_and_the_sample(taxi_dataset):
    from transforms import taxi

    assert taxi_dataset.user_preprocessing_fn() is taxi.preprocessing_fn
    assert taxi_dataset.sample == schemas.PROJECT_ROOT / "data" / "taxi" / "data.csv"
    assert taxi_dataset.split_key == ()
    assert schemas.dataset_names() == ["people", "taxi"]


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="unknown dataset 'cars'; known: people, taxi"):
        schemas.load_dataset("cars")


def test_people_schema_matches_its_sample_and_its_dedup_section():
    dataset = schemas.load_dataset("people")
    header = dataset.sample.read_text().splitlines()[0].split(",")
    assert dataset.feature_names == header
    dedup = dataset.config["dedup"]
    assert dedup["id"] in header and set(dedup["fields"]) <= set(header)
    assert {f.name: f.type for f in dataset.schema.feature}["postcode"] == schema_pb2.BYTES


def test_config_columns_must_name_schema_features(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "schema.pbtxt").write_text('feature { name: "x" type: INT }\n')
    monkeypatch.setattr(schemas, "SCHEMAS_DIR", tmp_path)
    for key in ("split_key", "metadata_columns"):
        (folder / "config.yaml").write_text(f"schema: schema.pbtxt\npreprocessing_fn: m:f\n{key}: [plant]\n")
        with pytest.raises(ValueError, match=f"{key} names unknown features \\['plant'\\]"):
            schemas.load_dataset("toy")


def test_tf_compat_v1_defaults_to_true_and_must_be_a_boolean(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "schema.pbtxt").write_text('feature { name: "x" type: INT }\n')
    monkeypatch.setattr(schemas, "SCHEMAS_DIR", tmp_path)
    (folder / "config.yaml").write_text("schema: schema.pbtxt\npreprocessing_fn: m:f\n")
    assert schemas.load_dataset("toy").tf_compat_v1 is True
    (folder / "config.yaml").write_text("schema: schema.pbtxt\npreprocessing_fn: m:f\ntf_compat_v1: false\n")
    assert schemas.load_dataset("toy").tf_compat_v1 is False
    (folder / "config.yaml").write_text("schema: schema.pbtxt\npreprocessing_fn: m:f\ntf_compat_v1: 'no'\n")
    with pytest.raises(ValueError, match="tf_compat_v1 must be true or false"):
        schemas.load_dataset("toy")


def test_the_bundled_datasets_exercise_both_tracing_modes():
    assert schemas.load_dataset("taxi").tf_compat_v1 and not schemas.load_dataset("people").tf_compat_v1
