"""Dataset configs and the raw taxi schema."""

import pathlib
import sys

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
    assert taxi_dataset.sample == schemas.PROJECT_ROOT / "schemas" / "taxi" / "data.csv"
    assert taxi_dataset.split_key == ()
    assert schemas.dataset_names() == ["people", "taxi"]


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match=r"^unknown dataset 'cars': neither a bundled dataset \(people, taxi\) nor a"):
        schemas.load_dataset("cars")


def _project(tmp_path, config: str, module: str | None = None) -> pathlib.Path:
    """A user's project: ``schemas/mine/`` (the taxi schema, ``config``) and ``transforms/mine.py``."""
    folder = tmp_path / "schemas" / "mine"
    folder.mkdir(parents=True)
    (folder / "schema.pbtxt").write_text((schemas.SCHEMAS_DIR / "taxi" / "schema.pbtxt").read_text())
    (folder / "config.yaml").write_text(config)
    if module is not None:
        (tmp_path / "transforms").mkdir()
        (tmp_path / "transforms" / "mine.py").write_text(module)
    return folder


def test_a_dataset_is_found_by_its_folder_or_its_config_and_loads_its_module_by_path(tmp_path, monkeypatch):
    module = "import transforms.common\n\ndef preprocessing_fn(inputs):\n    return {'fare_xf': inputs['fare']}\n"
    config = (
        "schema: schema.pbtxt\npreprocessing_fn: ../../transforms/mine.py:preprocessing_fn\nsample: ../../data/x.csv\n"
    )
    folder = _project(tmp_path, config, module)
    monkeypatch.chdir(tmp_path)
    by_folder, by_file = schemas.load_dataset("schemas/mine"), schemas.load_dataset(str(folder / "config.yaml"))
    assert (by_folder.name, by_folder.ref, by_folder.folder) == ("mine", str(folder / "config.yaml"), folder)
    assert by_file.ref == by_folder.ref and by_file.sample == tmp_path / "data" / "x.csv"
    assert by_folder.schema_path == folder / "schema.pbtxt"
    function = by_folder.user_preprocessing_fn()
    # loaded under a name of its own: the user's transforms/ does not shadow Skewless's, nor the reverse
    module_name = function.__module__
    assert module_name.startswith("skewless_user_mine_") and module_name != "transforms.mine"
    assert by_file.user_preprocessing_fn() is function
    assert sys.modules["transforms.common"].__file__.startswith(str(schemas.PROJECT_ROOT))
    assert schemas.load_dataset(by_folder.ref).ref == by_folder.ref  # run.json's ref finds it again


_HEAD = "schema: schema.pbtxt\npreprocessing_fn: ../../transforms/"


@pytest.mark.parametrize(
    ("config", "module", "message"),
    [
        ("schema: schema.pbtxt\npreprocessing_fn: ../../transforms/gone.py:fn\n", None, "no module file "),
        (
            "schema: schema.pbtxt\npreprocessing_fn: ../../transforms/mine.py:other\n",
            "def fn(x):\n    return x\n",
            "has no function 'other'",
        ),
        (
            "schema: schema.pbtxt\npreprocessing_fn: ../../transforms/mine.py:fn\n",
            "import nowhere_to_be_found\n",
            "cannot be loaded: ModuleNotFoundError",
        ),
        ("schema: schema.pbtxt\npreprocessing_fn: no_such_package.mod:fn\n", None, "No module named 'no_such_package'"),
        ("schema: missing.pbtxt\npreprocessing_fn: a:b\n", None, "no schema file"),
        ("schema: schema.pbtxt\npreprocessing_fn: fn\n", None, "preprocessing_fn must be 'module:function'"),
        ("- a list\n", None, "must be a mapping"),
    ],
)
def test_a_config_naming_what_is_not_there_says_which(tmp_path, config, module, message):
    folder = _project(tmp_path, config, module)
    with pytest.raises((ValueError, ImportError), match=message):
        schemas.load_dataset(str(folder)).user_preprocessing_fn()


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
