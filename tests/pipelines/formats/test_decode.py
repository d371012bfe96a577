"""Decoding CSV, Arrow tables and tf.Examples into list-typed batches, with exact dead letters."""

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.formats import decode, decode_csv, decode_examples
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.unit

SCHEMA = text_format.Parse(
    """
    feature { name: "n" type: INT presence { min_fraction: 1 } shape { dim { size: 1 } } int_domain { min: 0 max: 9 } }
    feature { name: "x" type: FLOAT value_count { min: 0 max: 1 } float_domain { min: 0 } }
    feature { name: "s" type: BYTES value_count { min: 0 max: 1 } }
    """,
    schema_pb2.Schema(),
)
COLUMNS = ["s", "n", "x"]  # file order differs from schema order on purpose


def _rows(block: decode.DecodedBlock) -> list[dict]:
    return block.batch.to_pylist() if block.batch is not None else []


def test_valid_rows_become_list_columns_in_schema_order():
    data = b'b,1,2.5\n"q,uoted",2,\n,3,-0\n'
    block = decode_csv.decode_csv_block(data, COLUMNS, SCHEMA, "f.csv")
    assert block.batch.schema == pa.schema(
        [("n", pa.large_list(pa.int64())), ("x", pa.large_list(pa.float32())), ("s", pa.large_list(pa.large_binary()))]
    )
    assert _rows(block) == [
        {"n": [1], "x": [2.5], "s": [b"b"]},
        {"n": [2], "x": None, "s": [b"q,uoted"]},
        {"n": [3], "x": [-0.0], "s": None},
    ]
    assert block.dead_letters == []
    assert block.rows_read == 3
    assert block.keys.tolist() == decode.row_key_hashes([b"b,1,2.5", b'"q,uoted",2,', b",3,-0"]).tolist()


def test_every_kind_of_bad_line_is_dead_lettered_with_its_reason():
    lines = [
        b"ok,1,1.0",  # offset 0
        b"a,2",  # ragged
        b"",  # empty line
        b"c,x3,1.0",  # unparsable int
        b"d,4,1e999",  # float overflow
        b"e,4,abc",  # unparsable float
        b"f,,1.0",  # missing required
        b"g,12,1.0",  # int domain
        b"h,5,-1.5",  # float domain
        b"\xff\xfe,6,1.0",  # invalid UTF-8
        b"i,99999999999999999999,1.0",  # beyond int64
        b"ok2,7,",  # fine
    ]
    block = decode_csv.decode_csv_block(b"\n".join(lines) + b"\n", COLUMNS, SCHEMA, "f.csv", base_offset=100)
    offsets = np.cumsum([0] + [len(line) + 1 for line in lines]) + 100
    got = [(d["offset"], d["raw"], d["feature"], d["reason"]) for d in block.dead_letters]
    assert sorted(got) == [
        (offsets[1], "a,2", None, "wrong field count: expected 3, found 2"),
        (offsets[2], "", None, "empty line"),
        (offsets[3], "c,x3,1.0", "n", "unparsable int: 'x3'"),
        (offsets[4], "d,4,1e999", "x", "unparsable float: '1e999'"),
        (offsets[5], "e,4,abc", "x", "unparsable float: 'abc'"),
        (offsets[6], "f,,1.0", "n", "missing required feature"),
        (offsets[7], "g,12,1.0", "n", "outside domain: 12 not in [0, 9]"),
        (offsets[8], "h,5,-1.5", "x", "outside domain: -1.5 not in [0, ]"),
        (offsets[9], "\\xff\\xfe,6,1.0", "s", "invalid UTF-8"),
        (offsets[10], "i,99999999999999999999,1.0", "n", "unparsable int: '99999999999999999999'"),
    ]
    assert all(d["source"] == "f.csv" for d in block.dead_letters)
    assert _rows(block) == [{"n": [1], "x": [1.0], "s": [b"ok"]}, {"n": [7], "x": None, "s": [b"ok2"]}]
    assert block.rows_read == len(lines)
    assert len(block.keys) == 2


def test_a_quoted_newline_falls_back_to_one_record_per_line():
    data = b'a,1,1.0\n"b\nc",2,2.0\nd,3,3.0\n'
    block = decode_csv.decode_csv_block(data, COLUMNS, SCHEMA, "f.csv")
    assert [r["s"] for r in _rows(block)] == [[b"a"], [b"d"]]
    hint = "malformed CSV: unbalanced quotes (a quoted value spanning lines needs --allow-quoted-newlines)"
    assert [(d["raw"], d["reason"]) for d in block.dead_letters] == [('"b', hint), ('c",2,2.0', hint)]
    assert block.rows_read == 4


@pytest.mark.parametrize("bad", [b"", b"z,1,oops\n"])  # fast path / careful path
def test_with_quoted_newlines_a_value_spans_lines_and_offsets_are_records(bad):
    data = b'a,1,1.0\n"two\nlines ""q""",2,2.0\n' + bad + b'"x\r\ny",3,\nd,4,4.0\n'
    block = decode_csv.decode_csv_block(data, COLUMNS, SCHEMA, "f.csv", base_offset=100, quoted_newlines=True)
    assert [r["s"] for r in _rows(block)] == [[b"a"], [b'two\nlines "q"'], [b"x\r\ny"], [b"d"]]
    assert [r["n"] for r in _rows(block)] == [[1], [2], [3], [4]]
    assert block.rows_read == 4 + bool(bad)
    assert [(d["offset"], d["raw"]) for d in block.dead_letters] == (
        [(100 + data.index(bad), "z,1,oops")] if bad else []
    )
    records = [b"a,1,1.0", b'"two\nlines ""q""",2,2.0', b'"x\r\ny",3,', b"d,4,4.0"]
    assert block.keys.tolist() == decode.row_key_hashes(records).tolist()


def test_with_quoted_newlines_a_stray_quote_is_dead_lettered_without_the_hint():
    data = b'a,1,1.0\nb",2,2.0\nc,3,3.0\n'  # what csv_records cuts off after a stray quote
    block = decode_csv.decode_csv_block(data, COLUMNS, SCHEMA, "f.csv", quoted_newlines=True)
    assert [(d["offset"], d["raw"], d["reason"]) for d in block.dead_letters] == [
        (8, 'b",2,2.0\nc,3,3.0', "malformed CSV: unbalanced quotes")
    ]
    assert [r["s"] for r in _rows(block)] == [[b"a"]]
    assert block.rows_read == 2


def test_split_key_columns_key_the_hash():
    schema = text_format.Parse(
        'feature { name: "n" type: INT } feature { name: "x" type: FLOAT } feature { name: "s" type: BYTES }',
        schema_pb2.Schema(),
    )
    block = decode_csv.decode_csv_block(b"a,1,1.0\na,2,2.0\n", COLUMNS, schema, "f.csv", split_key=["s"])
    assert block.keys[0] == block.keys[1]


@pytest.mark.parametrize("quoted_newlines", [False, True])
def test_windows_line_endings_key_rows_as_unix_ones_do(quoted_newlines):
    unix = decode_csv.decode_csv_block(
        b'b,1,2.5\n"q,\nuoted",2,\n,3,-0', COLUMNS, SCHEMA, "f.csv", quoted_newlines=quoted_newlines
    )
    windows = decode_csv.decode_csv_block(
        b'b,1,2.5\r\n"q,\nuoted",2,\r\n,3,-0\r\n', COLUMNS, SCHEMA, "f.csv", quoted_newlines=quoted_newlines
    )
    assert windows.keys.tolist() == unix.keys.tolist()
    assert _rows(windows) == _rows(unix)
    assert len(set(unix.keys.tolist())) == unix.rows_read - len(unix.dead_letters)


@pytest.mark.parametrize("careful", [False, True])
def test_split_key_columns_of_any_type_key_rows_by_value_the_same_in_every_format(careful, monkeypatch):
    schema = text_format.Parse(
        'feature { name: "n" type: INT } feature { name: "x" type: FLOAT } feature { name: "s" type: BYTES }',
        schema_pb2.Schema(),
    )
    if careful:  # every cell through the text path
        monkeypatch.setattr(decode_csv, "_typed_columns", lambda *args, **kwargs: None)
    csv = decode_csv.decode_csv_block(
        b"a,1,1.5\na,01,1.50\nb,1,2.5\n,,\n", COLUMNS, schema, "f.csv", split_key=["n", "x"]
    )
    assert csv.dead_letters == []
    keys = csv.keys.tolist()
    assert keys[0] == keys[1] != keys[2] != keys[3]  # 01 is 1 and 1.50 is 1.5; the empty row keys too
    table = pa.table({"s": ["a", "b", None], "n": [1, 1, None], "x": [1.5, 2.5, None]})
    parquet = decode.decode_table(table, schema, "f.parquet", split_key=["n", "x"])
    assert parquet.keys.tolist() == [keys[0], keys[2], keys[3]]
    import tensorflow as tf

    def example(n, x):
        feature = {} if n is None else {"n": tf.train.Feature(int64_list=tf.train.Int64List(value=[n]))}
        if x is not None:
            feature["x"] = tf.train.Feature(float_list=tf.train.FloatList(value=[x]))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    examples = decode_examples.decode_examples(
        [example(1, 1.5), example(1, 2.5), example(None, None)], schema, "f", 0, ["n", "x"]
    )
    assert examples.keys.tolist() == [keys[0], keys[2], keys[3]]


def test_an_empty_block_reads_nothing():
    block = decode_csv.decode_csv_block(b"", COLUMNS, SCHEMA, "f.csv")
    assert (block.batch, block.dead_letters, block.rows_read) == (None, [], 0)


def test_string_domains_inline_and_named():
    schema = text_format.Parse(
        """
        feature { name: "s" type: BYTES string_domain { value: "a" value: "b" } }
        feature { name: "t" type: BYTES domain: "colours" }
        string_domain { name: "colours" value: "red" value: "green" }
        """,
        schema_pb2.Schema(),
    )
    block = decode_csv.decode_csv_block(b"a,red\nc,green\nb,blue\n,\n", ["s", "t"], schema, "f.csv")
    assert _rows(block) == [{"s": [b"a"], "t": [b"red"]}, {"s": None, "t": None}]
    assert [(d["feature"], d["reason"]) for d in block.dead_letters] == [
        ("s", "outside domain: 'c' not in the string domain"),
        ("t", "outside domain: 'blue' not in the string domain"),
    ]


def test_decode_table_casts_flat_columns_and_dead_letters_violations():
    table = pa.table({"n": [1, None, 3], "x": [0.5, 1.0, None], "s": ["a", "b", None], "extra": [1, 2, 3]})
    block = decode.decode_table(table, SCHEMA, "f.parquet")
    assert _rows(block) == [{"n": [1], "x": [0.5], "s": [b"a"]}, {"n": [3], "x": None, "s": None}]
    assert block.dead_letters == [
        {
            "source": "f.parquet",
            "offset": 1,
            "raw": '{"n": null, "x": 1.0, "s": "b", "extra": 2}',
            "feature": "n",
            "reason": "missing required feature",
        }
    ]


def test_decode_table_dead_letters_numbers_that_do_not_fit_the_schema_type():
    nan, inf = float("nan"), float("inf")
    table = pa.table(
        {
            "n": pa.array([1.0, 2.5, nan, 1e19, 4.0, 5.0, 6.0], pa.float64()),  # pandas: ints with gaps as floats
            "x": pa.array([0.5, 1.0, 1.0, 1.0, nan, -inf, 1e300], pa.float64()),
            "s": pa.array(["a"] * 7).dictionary_encode(),  # a pandas categorical
        }
    )
    block = decode.decode_table(table, SCHEMA, "f.parquet")
    assert _rows(block) == [{"n": [1], "x": [0.5], "s": [b"a"]}]
    assert [(d["offset"], d["feature"], d["reason"]) for d in block.dead_letters] == [
        (1, "n", "unparsable int: 2.5"),
        (2, "n", "unparsable int: nan"),
        (3, "n", "unparsable int: 1e+19"),
        (4, "x", "unparsable float: nan"),
        (5, "x", "unparsable float: -inf"),
        (6, "x", "unparsable float: 1e+300"),
    ]
    unsigned = pa.table({"n": pa.array([3, 2**64 - 1], pa.uint64()), "x": [1.0, 1.0], "s": ["a", "a"]})
    block = decode.decode_table(unsigned, SCHEMA, "f.parquet")
    assert [r["n"] for r in _rows(block)] == [[3]]
    assert [d["reason"] for d in block.dead_letters] == [f"unparsable int: {2**64 - 1}"]


def test_decode_table_rejects_a_column_of_the_wrong_type():
    with pytest.raises(ValueError, match="column 'n' has type string"):
        decode.decode_table(pa.table({"n": ["x"], "x": [1.0], "s": ["a"]}), SCHEMA, "f.parquet")


def test_decode_examples_dead_letters_undecodable_and_invalid_records():
    import tensorflow as tf

    def example(**features):
        feature = {}
        for key, value in features.items():
            if isinstance(value, int):
                feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            else:
                feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    records = [example(n=1, x=[2.0]), b"not a proto", example(n=2, x=[1.0, 2.0]), example(x=[1.0])]
    records += [example(n=3, x=[float("nan")]), example(n=4, x=[float("inf")])]  # would poison the analyzers
    block = decode_examples.decode_examples(records, SCHEMA, "f.tfrecord", first_index=10)
    assert _rows(block) == [{"n": [1], "x": [2.0], "s": None}]
    assert [(d["offset"], d["feature"], d["reason"].split(":")[0]) for d in block.dead_letters] == [
        (11, None, "undecodable tf.Example"),
        (12, "x", "too many values"),
        (13, "n", "missing required feature"),
        (14, "x", "not a finite float"),
        (15, "x", "not a finite float"),
    ]
    assert [d["reason"] for d in block.dead_letters[-2:]] == ["not a finite float: nan", "not a finite float: inf"]
    assert block.rows_read == 6


EQUIVALENCE_SCHEMA = text_format.Parse(
    """
    feature { name: "n" type: INT value_count { min: 0 max: 1 } }
    feature { name: "x" type: FLOAT value_count { min: 0 max: 1 } }
    feature { name: "s" type: BYTES value_count { min: 0 max: 1 } }
    """,
    schema_pb2.Schema(),
)


@pytest.mark.parametrize(
    "data",
    [
        # plainly valid cells: the fast path (Arrow's converters) decodes them
        b"a,007,1e5\nb,+5,.5\nc,-0,5.\nd,,+1.5\n,9223372036854775807,3.4028234e38\n"
        b'"e",-9223372036854775808,1e-50\n"",42,""\nf,"3",-2.5E-3\n g , 1 , 2.5 \n',
        # one bad cell each: the block takes the careful path, with dead letters
        b"a,1,nan\nb,2,1.5\n",
        b"a,1,inf\n",
        b"a,1,3.5e38\n",
        b"a,9223372036854775808,1\n",
        b"a,1.0,1\nb,2,2\n",
        b"a, ,1\n",
        b"a,0x10,1\n",
        b"a,-0X1f,1\n",
        b"a,1,0x1p3\n",
        b"a,1,1,extra\nb,2,2\n",
        b"\xff,1,1\nb,2,2\n",
        b'a,1,"2\n.5"\nb,3,4\n',
    ],
)
def test_the_fast_path_decodes_exactly_as_the_careful_path(data, monkeypatch):
    """Arrow's CSV converters (fast path) and the cell-by-cell validated parse (careful path) give
    the same batch, keys and dead letters for any block."""
    fast = decode_csv.decode_csv_block(data, COLUMNS, EQUIVALENCE_SCHEMA, "f.csv")
    monkeypatch.setattr(decode_csv, "_typed_columns", lambda *args: None)
    careful = decode_csv.decode_csv_block(data, COLUMNS, EQUIVALENCE_SCHEMA, "f.csv")
    assert (fast.batch is None) == (careful.batch is None)
    if fast.batch is not None:
        assert fast.batch.equals(careful.batch), (fast.batch.to_pylist(), careful.batch.to_pylist())
    assert fast.keys.tolist() == careful.keys.tolist()
    assert fast.dead_letters == careful.dead_letters
    assert fast.rows_read == careful.rows_read


def test_plainly_valid_blocks_take_the_fast_path(monkeypatch):
    tables = []
    real = decode_csv._typed_columns
    monkeypatch.setattr(decode_csv, "_typed_columns", lambda *args: tables.append(real(*args)) or tables[-1])
    block = decode_csv.decode_csv_block(b"a,1,2.5\nb,,\n", COLUMNS, EQUIVALENCE_SCHEMA, "f.csv")
    assert tables[0].column("n").type == pa.int64() and tables[0].column("x").type == pa.float64()
    assert _rows(block) == [{"n": [1], "x": [2.5], "s": [b"a"]}, {"n": None, "x": None, "s": [b"b"]}]
    decode_csv.decode_csv_block(b"a,1,nan\n", COLUMNS, EQUIVALENCE_SCHEMA, "f.csv")
    assert tables[1] is None


def test_the_bundled_taxi_sample_decodes_the_same_on_both_paths(monkeypatch):

    import schemas

    path = PROJECT_ROOT / "schemas" / "taxi" / "data.csv"
    header, _, data = path.read_bytes().partition(b"\n")
    columns = header.decode().strip().split(",")
    schema = schemas.load_dataset("taxi").schema
    fast = decode_csv.decode_csv_block(data, columns, schema, "data.csv")
    monkeypatch.setattr(decode_csv, "_typed_columns", lambda *args: None)
    careful = decode_csv.decode_csv_block(data, columns, schema, "data.csv")
    assert fast.batch.num_rows == fast.rows_read == 15002
    assert fast.batch.equals(careful.batch)
    assert fast.keys.tolist() == careful.keys.tolist()
    assert fast.dead_letters == careful.dead_letters == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"0x1F", True),
        (b"a,-0X1f\n", True),
        (b"a,1,0x", True),
        (b"", False),
        (b"0", False),
        (b"x0,X0,Taxi 0,10 x", False),
        (b"0\nx", False),
        (b"0\xf8", False),  # 0xF8 | 0x20 is not "x"
    ],
)
def test_hex_prefixes_are_found_anywhere_in_a_block(data, expected):
    assert decode_csv._has_hex_prefix(data) is expected


def test_row_key_hashes_are_zlib_crc32():
    """The split depends on these values: they must stay CRC-32, whatever computes it."""
    import zlib

    keys = [b"", b"a", b"2,Taxi Affiliation Services,5.25", bytes(range(256)) * 40]
    assert decode.row_key_hashes(keys).tolist() == [zlib.crc32(k) for k in keys]
    assert decode.row_key_hashes(keys).dtype == np.uint32


@pytest.mark.parametrize(
    "data",
    [
        b"a;1;2,5\nb;2;-0,125\nc;3;1e3\nd;4;\n",  # plainly valid: Arrow's converters with decimal_point=","
        b'a;1;2,5\nb;2;"1.5"\nc;3;1,2,3\nd;4;7\n',  # a point, two commas: dead letters
    ],
)
def test_decimal_commas_decode_the_same_on_both_paths(data, monkeypatch):
    fast = decode_csv.decode_csv_block(data, COLUMNS, EQUIVALENCE_SCHEMA, "f.csv", delimiter=";", decimal_comma=True)
    monkeypatch.setattr(decode_csv, "_typed_columns", lambda *args: None)
    careful = decode_csv.decode_csv_block(data, COLUMNS, EQUIVALENCE_SCHEMA, "f.csv", delimiter=";", decimal_comma=True)
    assert fast.batch.equals(careful.batch) and fast.dead_letters == careful.dead_letters
    rows = {r["s"][0]: r["x"] for r in _rows(careful)}
    if b"b;2;-0,125" in data:
        assert rows == {b"a": [2.5], b"b": [-0.125], b"c": [1000.0], b"d": None}
    else:
        assert rows == {b"a": [2.5], b"d": [7.0]}
        assert [d["reason"] for d in careful.dead_letters] == ["unparsable float: '1.5'", "unparsable float: '1,2,3'"]


def test_tf_examples_decode_as_written_and_with_the_schema_alike_and_name_the_features_it_lacks():
    """Decoding without the schema (the fast path, which sees every feature) and with it (the path
    for a block holding a record the schema cannot read) give the same rows and the same features
    the schema lacks: here one feature of the 7th example only."""
    import tensorflow as tf

    def example(i: int, extra: bool) -> bytes:
        feature = {
            "trip_miles": tf.train.Feature(float_list=tf.train.FloatList(value=[i / 2])),
            "company": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"c%d" % i] if i % 3 else [])),
            "trip_start_hour": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 24])),
            "pickup_latitude": tf.train.Feature(),  # a feature with no list at all
        }
        if extra:
            feature["late_note"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(
        """
        feature { name: "trip_miles" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
        feature { name: "company" type: BYTES value_count { min: 0 max: 1 } }
        feature { name: "trip_start_hour" type: INT presence { min_fraction: 1 } shape { dim { size: 1 } } }
        feature { name: "pickup_latitude" type: FLOAT value_count { min: 0 max: 1 } }
        """,
        schema_pb2.Schema(),
    )
    records = [example(i, i == 7) for i in range(20)]
    mistyped = tf.train.Example(
        features=tf.train.Features(feature={"trip_miles": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))})
    ).SerializeToString()  # an int64_list for a FLOAT: the schema cannot read it
    # the mistyped record first: the decoder that fails on it must not spoil the records after it
    fast = decode_examples.decode_examples(records, schema, "f.tfrecord")
    careful = decode_examples.decode_examples([mistyped, *records], schema, "f.tfrecord", first_index=None)
    assert decode_examples._decode_as_written(records, schema)[0] is not None  # the fast path was taken
    assert decode_examples._decode_as_written([mistyped, *records], schema)[0] is None
    assert fast.extra_features == careful.extra_features == ["late_note"]
    assert fast.dead_letters == []
    assert [d["reason"].split(":")[0] for d in careful.dead_letters] == ["undecodable tf.Example"]
    assert fast.batch.num_rows == 20 and careful.batch.equals(fast.batch) and list(careful.keys) == list(fast.keys)
    assert fast.rows_read == 20 and careful.rows_read == 21


@pytest.mark.parametrize("with_a_bad_line", [False, True])
def test_a_value_longer_than_arrows_read_block_is_a_value_not_a_dead_letter(with_a_bad_line):
    """A 3 MiB free-text value: Arrow refused it with its default 1 MiB blocks ("straddling object"),
    and the record-by-record path with Python's 128 KiB field limit, so the row was dead-lettered as
    malformed CSV (and `skewless labels` stopped with the error)."""
    long_text = b"y" * (3 << 20)
    spanning = [b'"one value', b'over two lines",4,'] if with_a_bad_line else []  # the record-by-record path
    lines = [b"a,1,1.5", b'"' + long_text + b'",2,', b"c,3,", *spanning]
    block = decode_csv.decode_csv_block(b"\n".join(lines) + b"\n", COLUMNS, SCHEMA, "f.csv")
    assert [row["s"] for row in _rows(block)] == [[b"a"], [long_text], [b"c"]]
    assert [d["reason"].split(":")[0] for d in block.dead_letters] == ["malformed CSV"] * len(spanning)


@pytest.mark.parametrize("careful", [False, True])
def test_missing_value_texts_are_missing_in_every_column_and_on_both_paths(careful, monkeypatch):
    """R and pandas write a missing value as ``NA``: with it among the missing-value texts, a number
    column with NA cells reads as numbers with gaps, and a string column's NA is missing too."""
    schema = text_format.Parse(
        'feature { name: "n" type: INT value_count { min: 0 max: 1 } }'
        'feature { name: "x" type: FLOAT value_count { min: 0 max: 1 } }'
        'feature { name: "s" type: BYTES value_count { min: 0 max: 1 } }',
        schema_pb2.Schema(),
    )
    if careful:
        monkeypatch.setattr(decode_csv, "_typed_columns", lambda *args, **kwargs: None)
    data = b"a,1,NA\nNA,NA,2.5\n N/A , 3 ,1.5\nNAN,4,\n"
    block = decode_csv.decode_csv_block(data, COLUMNS, schema, "f.csv", missing_values=("NA", "N/A"))
    assert _rows(block) == [
        {"n": [1], "x": None, "s": [b"a"]},
        {"n": None, "x": [2.5], "s": None},
        {"n": [3], "x": [1.5], "s": None},  # spaces around a missing-value text: still missing
        {"n": [4], "x": None, "s": [b"NAN"]},  # only the texts listed
    ]
    assert block.dead_letters == []
    unlisted = decode_csv.decode_csv_block(data, COLUMNS, schema, "f.csv")
    assert [(d["feature"], d["reason"]) for d in unlisted.dead_letters] == [
        ("x", "unparsable float: 'NA'"),
        ("n", "unparsable int: 'NA'"),
    ]
    assert _rows(unlisted)[0]["s"] == [b" N/A "]  # a value, when it is not listed
