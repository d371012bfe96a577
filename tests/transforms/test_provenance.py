"""row_id and metadata columns: exact semantics of the content fingerprint, and the wrapper."""

import numpy as np
import pytest
import tensorflow as tf

import schemas
from transforms import common

pytestmark = pytest.mark.unit


def _sparse(values, dtype):
    """A [batch, 1] SparseTensor; None = missing."""
    indices = [[i, 0] for i, v in enumerate(values) if v is not None]
    kept = [v for v in values if v is not None]
    return tf.SparseTensor(
        tf.constant(indices, tf.int64, shape=[len(indices), 2]), tf.constant(kept, dtype), [len(values), 1]
    )


def _ids(name_values, fare_values):
    inputs = {"name": _sparse(name_values, tf.string), "fare": _sparse(fare_values, tf.float32)}
    return common.row_id(inputs).numpy().tolist()


def test_row_id_is_a_fingerprint_of_all_raw_values():
    ids = _ids(["a", "a", "b", "a", None, "", "a", "a"], [1.5, 1.5, 1.5, 2.5, 1.5, 1.5, None, 0.0])
    assert ids[0] == ids[1]  # same content, same id
    assert len({ids[0], ids[2], ids[3], ids[4], ids[6], ids[7]}) == 6  # any value differs: another id
    assert ids[4] == ids[5]  # a missing string and an empty one are the same raw value
    assert ids[6] != ids[7]  # a missing number is not zero
    assert all(0 <= i < 1 << 62 for i in ids)
    # exact float bits, not a rounded text form: neighbouring float32 values get different ids
    neighbour = float(np.nextafter(np.float32(0.1), np.float32(1)))
    close = _ids(["a", "a"], [0.1, neighbour])
    assert close[0] != close[1]
    assert _ids(["a"], [1.5]) == [ids[0]]  # stable across calls (and processes: it is a fingerprint)


def test_row_id_is_the_fingerprint_of_the_documented_int64_row():
    """Pins the definition (ids written by earlier runs must stay valid): per raw feature in name
    order, a string's 62-bit hash ('' when missing), a float's bits, an int, or the missing marker;
    farmhash64 of that row, masked to 62 bits."""
    inputs = {
        "y": _sparse([7, None], tf.int64),
        "x": tf.constant([[1.5], [-2.0]], tf.float32),
        "s": _sparse([None, "abc"], tf.string),
    }
    strings = tf.strings.to_hash_bucket_fast(tf.constant(["", "abc"]), 1 << 62).numpy()
    floats = np.array([1.5, -2.0], np.float32).view(np.int32).astype(np.int64)
    rows = np.array([[strings[0], floats[0], 7], [strings[1], floats[1], common._MISSING]], np.int64)
    expected = tf.bitcast(tf.fingerprint(tf.constant(rows)), tf.int64).numpy() & ((1 << 62) - 1)
    assert common.row_id(inputs).numpy().tolist() == expected.tolist()


def test_with_provenance_adds_row_id_and_metadata_without_touching_the_rest():
    def preprocessing_fn(inputs):
        return {"name_xf": tf.strings.upper(common.fill_in_missing(inputs["name"]))}

    inputs = {"name": _sparse(["a", None], tf.string), "plant": _sparse([None, "p7"], tf.string)}
    outputs = common.with_provenance(inputs, preprocessing_fn, ("plant",))
    assert sorted(outputs) == ["name_xf", "plant", "row_id"]
    assert outputs["plant"].numpy().tolist() == [b"", b"p7"]
    with pytest.raises(ValueError, match="already outputs 'name_xf'"):
        common.with_provenance(inputs, preprocessing_fn, ("name_xf",))


def test_datasets_wrap_their_preprocessing_fn_with_provenance():
    people = schemas.load_dataset("people")
    assert people.metadata_columns == ("channel",)
    assert people.not_model_inputs == ("row_id", "channel")
    assert people.preprocessing_fn().keywords["metadata_columns"] == ("channel",)
    assert schemas.load_dataset("taxi").not_model_inputs == ("row_id",)
