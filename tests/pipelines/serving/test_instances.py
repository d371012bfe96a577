"""The fast instance decoder gives the reference decoder's examples and rejections, value for value."""

import csv
import math
import random

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder

from pipelines.formats import decode
from pipelines.serving import instances
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.unit

SCHEMA = text_format.Parse(
    """
    feature { name: "n" type: INT presence { min_fraction: 1 } int_domain { min: 0 max: 23 } }
    feature { name: "big" type: INT }
    feature { name: "x" type: FLOAT float_domain { min: 0 max: 100 } }
    feature { name: "y" type: FLOAT }
    feature { name: "colour" type: BYTES string_domain { value: ["red", "green"] } }
    feature { name: "note" type: BYTES }
    feature { name: "label" type: FLOAT presence { min_fraction: 1 } not_in_environment: "SERVING" }
    default_environment: "TRAINING"
    default_environment: "SERVING"
    """,
    schema_pb2.Schema(),
)
GOOD = {"n": 5, "x": 1.5, "colour": "red"}
AWKWARD = [
    {},  # a required feature missing
    GOOD,
    {"n": "5", "x": "1.5", "colour": "red"},  # numbers as text
    {"n": " 7 ", "x": "\t2e1\n", "y": "+.5", "colour": "green"},  # padded text, exponent, sign
    {"n": "\u00a07", "x": 1},  # a non-ASCII space: the reference decides
    {"n": 5.0},  # a float for an int
    {"n": True},  # a boolean
    {"n": 24},  # outside the int domain
    {"n": -1},
    {"n": 23, "x": 100.0, "y": -0.0},  # on the bounds
    {"n": 0, "x": 100.00001},  # just beyond a float bound (float32 100.00001 > 100)
    {"n": 0, "x": -1e-46},  # rounds to -0.0 in float32: inside [0, 100]
    {"n": 0, "x": float("nan")},
    {"n": 0, "y": float("inf")},
    {"n": 0, "y": "nan"},
    {"n": 0, "y": 3.4028234663852886e38},  # float32's largest
    {"n": 0, "y": 3.4028236e38},  # beyond it, though it would round down
    {"n": 0, "y": 10**400},  # beyond float64
    {"n": 0, "y": 7},  # an int for a float
    {"n": 0, "big": 2**63 - 1},
    {"n": 0, "big": 2**63},
    {"n": 0, "big": -(2**63)},
    {"n": 0, "big": "-9223372036854775808"},
    {"n": 0, "big": "99999999999999999999"},
    {"n": 0, "colour": "blue"},  # outside the string domain
    {"n": 0, "colour": ""},  # missing
    {"n": 0, "note": "  "},  # a value (not trimmed for strings)
    {"n": 0, "note": 12},
    {"n": 0, "note": 1.25},
    {"n": 0, "note": "caf\u00e9 \u2603"},
    {"n": 0, "note": "\ud800"},  # a lone surrogate
    {"n": 0, "note": None, "y": None, "big": ""},
    {"n": [3], "y": [], "note": ["a"]},  # one-value lists
    {"n": [3, 4]},  # two values
    {"n": [[3]]},
    {"n": {"a": 1}},
    {"n": " "},  # only spaces: missing, and n is required
    {"n": 0, "label": 1.0},  # the label may be there
    {"n": 0, "colour": "red", "unknown": 1, "other": "x"},  # unknown features: ignored
    7,  # not an object
    "text",
    None,
]


def _reference(rows: list, schema: schema_pb2.Schema) -> tuple[list, list]:
    """The reference path: decode_dicts on the rows without unknown features, then tfx_bsl's encoder."""
    names = {f.name for f in schema.feature}
    known = [{k: v for k, v in r.items() if k in names} if isinstance(r, dict) else r for r in rows]
    block = decode.decode_dicts(known, schema)
    encoded = example_coder.RecordBatchToExamplesEncoder().encode(block.batch) if block.batch is not None else []
    rejections = [(d["offset"], d["feature"], d["reason"]) for d in block.dead_letters]
    return [tf.train.Example.FromString(e) for e in encoded], rejections


def _fast(rows: list, decoder: instances.InstanceDecoder) -> tuple[list, list, instances.Decoded]:
    decoded = decoder.decode(rows)
    rejections = [(d["offset"], d["feature"], d["reason"]) for d in decoded.dead_letters]
    return [tf.train.Example.FromString(e) for e in decoded.examples], rejections, decoded


@pytest.mark.parametrize("small_batch", [10**6, 0])  # every batch row by row; every batch by column
@pytest.mark.parametrize("copies", [1, 2])
def test_the_fast_path_gives_the_references_examples_and_rejections(copies, small_batch, monkeypatch):
    monkeypatch.setattr(instances, "SMALL_BATCH", small_batch)
    decoder = instances.InstanceDecoder(SCHEMA)
    rows = AWKWARD * copies
    examples, rejections, decoded = _fast(rows, decoder)
    expected_examples, expected_rejections = _reference(rows, decoder.schema)
    assert examples == expected_examples
    assert rejections == expected_rejections
    assert decoded.valid == sorted(set(range(len(rows))) - {r[0] for r in rejections})
    assert decoded.unknown_features == {"unknown": copies, "other": copies}
    assert 0 < decoded.fast < len(rows) - len(rejections)  # some went the fast way, some to the reference


def test_a_batch_is_serialized_to_the_bytes_of_the_row_by_row_path(monkeypatch):
    generator = random.Random(7)
    numbers = [0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63), None]
    texts = ["", "a", "caf\u00e9 \u2603", "x" * 200, None]
    rows = [
        {
            "n": generator.randrange(24),
            "big": generator.choice(numbers),
            "x": generator.choice([0.0, 1.5, 100.0, 1e-40, generator.uniform(0, 100), None]),
            "y": generator.choice([-0.0, -1.25, 3.4028234663852886e38, generator.uniform(-1e9, 1e9), None]),
            "colour": generator.choice(["red", "green", None]),
            "note": generator.choice(texts),
        }
        for _ in range(500)
    ]
    rows = [{k: v for k, v in row.items() if v is not None or generator.random() < 0.5} for row in rows]
    decoder = instances.InstanceDecoder(SCHEMA)
    monkeypatch.setattr(instances, "SMALL_BATCH", 10**6)
    by_row = decoder.decode(rows)
    monkeypatch.setattr(instances, "SMALL_BATCH", 0)
    by_column = decoder.decode(rows)
    assert by_column.fast == by_row.fast == len(rows) and by_column.dead_letters == []
    assert by_column.examples == by_row.examples  # byte for byte
    with_rejections = rows[:50] + AWKWARD  # some rows go to the reference (tfx_bsl: its own entry order)
    expected = [decoder.decode([row]) for row in with_rejections]
    got = decoder.decode(with_rejections)
    assert [tf.train.Example.FromString(e) for e in got.examples] == [
        tf.train.Example.FromString(e) for one in expected for e in one.examples
    ]
    assert got.examples[:50] == by_row.examples[:50]


def test_a_batch_with_a_feature_name_too_long_for_the_byte_layout_is_encoded_by_tfx_bsl(monkeypatch):
    long_name = "a_feature_named_at_length_" + "x" * 100
    schema = text_format.Parse(
        f'feature {{ name: "{long_name}" type: INT }} feature {{ name: "note" type: BYTES }}', schema_pb2.Schema()
    )
    rows = [{long_name: i, "note": f"n{i % 3}"} for i in range(40)] + [{"note": None}]
    monkeypatch.setattr(instances, "SMALL_BATCH", 0)
    decoder = instances.InstanceDecoder(schema)
    examples, rejections, decoded = _fast(rows, decoder)
    assert not decoder._short_keys and decoded.fast == len(rows)
    assert (examples, rejections) == _reference(rows, decoder.schema)


def test_each_awkward_value_is_taken_or_refused_as_training_does():
    decoder = instances.InstanceDecoder(SCHEMA)
    _, rejections, decoded = _fast(AWKWARD, decoder)
    refused = {offset: (feature, reason) for offset, feature, reason in rejections}
    assert refused[0] == ("n", "missing required feature")
    assert refused[5] == ("n", "unparsable int: '5.0'")
    assert refused[6][0] == "n" and refused[6][1].startswith("unsupported value")
    assert refused[7] == ("n", "outside domain: 24 not in [0, 23]")
    assert refused[10][0] == "x" and refused[10][1].startswith("outside domain")
    assert refused[12] == ("x", "unparsable float: 'nan'")
    assert refused[16] == ("y", "unparsable float: '3.4028236e+38'")
    assert refused[20] == ("big", "unparsable int: '9223372036854775808'")
    assert refused[24] == ("colour", "outside domain: 'blue' not in the string domain")
    assert refused[30][0] == "note" and refused[30][1].startswith("unsupported value")
    assert refused[33][0] == "n" and refused[33][1].startswith("unsupported value")
    assert refused[39] == (None, "not an object: int")
    taken = set(decoded.valid)
    assert {1, 2, 3, 4, 9, 11, 15, 19, 21, 22, 25, 26, 27, 28, 29, 31, 32, 37, 38} <= taken
    assert 36 not in taken  # spaces only: missing, and n is required
    by_index = dict(zip(decoded.valid, decoded.examples, strict=True))
    example = tf.train.Example.FromString(by_index[11]).features.feature
    assert math.copysign(1, example["x"].float_list.value[0]) == -1  # -0.0, as the reference has it
    note = tf.train.Example.FromString(by_index[28]).features.feature["note"].bytes_list.value
    assert note == [b"1.25"]  # a number for a string: its JSON text


def test_the_label_kept_out_of_serving_is_not_required_there_but_is_in_training():
    serving = instances.InstanceDecoder(SCHEMA)
    assert serving.decode([GOOD]).dead_letters == []
    training = instances.InstanceDecoder(SCHEMA, environment="TRAINING")
    (dead,) = training.decode([GOOD]).dead_letters
    assert (dead["feature"], dead["reason"]) == ("label", "missing required feature")
    plain = schema_pb2.Schema()
    plain.CopyFrom(SCHEMA)
    assert instances.for_environment(plain, "SERVING") is not plain  # environments: a relaxed copy
    del plain.default_environment[:]
    for feature in plain.feature:
        del feature.not_in_environment[:]
    assert instances.for_environment(plain, "SERVING") is plain  # none: the schema as it is


def test_the_bundled_sample_decodes_the_same_both_ways(taxi_dataset):
    """Every sample row, as typed JSON and as CSV text, in one batch and one at a time."""
    schema = taxi_dataset.schema
    types = {f.name: f.type for f in schema.feature}
    with open(PROJECT_ROOT / "schemas" / "taxi" / "data.csv", newline="") as handle:
        text_rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)][:400]
    typed_rows = [
        {
            k: int(v) if types[k] == schema_pb2.INT else float(v) if types[k] == schema_pb2.FLOAT else v
            for k, v in row.items()
        }
        for row in text_rows
    ]
    decoder = instances.InstanceDecoder(schema)
    for rows in (text_rows, typed_rows):
        examples, rejections, decoded = _fast(rows, decoder)
        assert (examples, rejections) == _reference(rows, decoder.schema)
        assert decoded.fast == len(rows) and not rejections
        one_by_one = [tf.train.Example.FromString(decoder.decode([row]).examples[0]) for row in rows[:50]]
        assert one_by_one == examples[:50]
