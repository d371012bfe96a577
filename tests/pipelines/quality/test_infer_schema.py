"""infer-schema: types, presence and domains from data, and agreement with the hand-written taxi schema."""

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines import cli
from pipelines.quality.infer_schema import infer_schema
from tests.helpers import SAMPLE_CSV

pytestmark = pytest.mark.e2e


def test_small_csv_exact_schema(tmp_path):
    path = tmp_path / "small.csv"
    rows = ["n,x,s,t"] + [f"{i},{i / 2 if i % 5 else ''},{'ab'[i % 2]},free text {i}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    schema = infer_schema([str(path)])
    expected = text_format.Parse(
        """
        feature { name: "n" type: INT int_domain { min: 0 } presence { min_fraction: 1.0 min_count: 1 }
                  shape { dim { size: 1 } } annotation { comment: "observed: 40 rows, 0 missing, range [0, 39]" } }
        feature { name: "x" type: FLOAT float_domain { min: 0 } presence { min_count: 0 } value_count { min: 0 max: 1 }
                  annotation { comment: "observed: 40 rows, 8 missing, range [0.5, 19.5]" } }
        feature { name: "s" type: BYTES presence { min_fraction: 1.0 min_count: 1 } shape { dim { size: 1 } }
                  string_domain { name: "s" value: "a" value: "b" }
                  annotation { comment: "observed: 40 rows, 0 missing, 2 distinct values" } }
        feature { name: "t" type: BYTES presence { min_fraction: 1.0 min_count: 1 } shape { dim { size: 1 } }
                  annotation { comment: "observed: 40 rows, 0 missing, 40 distinct values" } }
        """,
        schema_pb2.Schema(),
    )
    assert schema == expected


def test_the_taxi_sample_gives_the_taxi_types_and_required_set(taxi_dataset, tmp_path):
    out = tmp_path / "schema.pbtxt"
    assert cli.main(["infer-schema", "--input", str(SAMPLE_CSV), "--output", str(out)]) == 0
    inferred = text_format.Parse(out.read_text(), schema_pb2.Schema())
    assert {f.name: f.type for f in inferred.feature} == {f.name: f.type for f in taxi_dataset.schema.feature}
    required = {f.name for f in inferred.feature if f.presence.min_fraction == 1}
    # the hand-written schema also lets fare and tips be missing (the label handles a missing fare)
    assert required - {"fare", "tips"} == {f.name for f in taxi_dataset.schema.feature if f.presence.min_fraction == 1}
    payment = next(f for f in inferred.feature if f.name == "payment_type")
    assert list(payment.string_domain.value) == [
        "Cash",
        "Credit Card",
        "Dispute",
        "No Charge",
        "Pcard",
        "Prcard",
        "Unknown",
    ]


def test_a_missing_input_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["infer-schema", "--input", str(tmp_path / "none.csv"), "--output", str(tmp_path / "s")]) == 2
    assert "no input file matches" in capsys.readouterr().err


def test_a_gzip_csv_with_a_byte_order_mark_gives_the_same_schema_as_the_plain_file(tmp_path):
    import gzip

    plain = infer_schema([str(SAMPLE_CSV)])
    path = tmp_path / "sample.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + SAMPLE_CSV.read_bytes()))  # a gzip with a byte-order mark
    assert infer_schema([str(path)]) == plain
    assert "observed: 15002 rows" in plain.feature[0].annotation.comment[0]


def test_a_cp1252_file_read_with_its_encoding_gives_the_utf8_files_schema(tmp_path):
    text = "city;n\n" + "".join(f"{'Zürich' if i % 2 else 'Genève'};{i}\n" for i in range(40))
    (tmp_path / "utf8.csv").write_text(text, encoding="utf-8")
    (tmp_path / "cp1252.csv").write_bytes(text.encode("cp1252"))
    expected = infer_schema([str(tmp_path / "utf8.csv")], delimiter=";")
    assert list(expected.feature[0].string_domain.value) == ["Genève", "Zürich"]
    assert infer_schema([str(tmp_path / "cp1252.csv")], delimiter=";", encoding="cp1252") == expected


def test_decimal_commas_are_numbers_with_the_flag_and_text_without(tmp_path):
    (tmp_path / "points.csv").write_text("x;n\n" + "".join(f"{i}.5;{i}\n" for i in range(30)))
    (tmp_path / "commas.csv").write_text("x;n\n" + "".join(f"{i},5;{i}\n" for i in range(30)))
    expected = infer_schema([str(tmp_path / "points.csv")], delimiter=";")
    assert expected.feature[0].type == schema_pb2.FLOAT
    assert infer_schema([str(tmp_path / "commas.csv")], delimiter=";", decimal_comma=True) == expected
    assert infer_schema([str(tmp_path / "commas.csv")], delimiter=";").feature[0].type == schema_pb2.BYTES
    assert infer_schema([str(tmp_path / "points.csv")], delimiter=";", decimal_comma=True).feature[0].type == (
        schema_pb2.BYTES
    )


def _example(**features) -> bytes:
    import tensorflow as tf

    feature = {}
    for name, values in features.items():
        if values and isinstance(values[0], int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        elif values and isinstance(values[0], float):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_tf_examples_give_their_list_types_presence_and_values_a_row(tmp_path):
    from pipelines.formats import tfrecord_records

    examples = [
        _example(n=[i], x=[i / 2], tags=[b"a", b"b"][: i % 3], first=[b"s"]) if i else _example(x=[0.0], tags=[b"c"])
        for i in range(30)
    ]
    (tmp_path / "a.tfrecord").write_bytes(tfrecord_records.frame(examples[:20]))
    (tmp_path / "b.tfrecord").write_bytes(tfrecord_records.frame(examples[20:]))
    schema = infer_schema([str(tmp_path / "*.tfrecord")], min_domain_support=1)
    expected = text_format.Parse(
        """
        feature { name: "tags" type: BYTES presence { min_count: 0 } value_count { min: 0 max: 2 }
                  string_domain { name: "tags" value: "a" value: "b" value: "c" }
                  annotation { comment: "observed: 30 rows, 9 missing, 1 to 2 values a row, 3 distinct values" } }
        feature { name: "x" type: FLOAT float_domain { min: 0 } presence { min_fraction: 1.0 min_count: 1 }
                  shape { dim { size: 1 } } annotation { comment: "observed: 30 rows, 0 missing, range [0, 14.5]" } }
        feature { name: "first" type: BYTES presence { min_count: 0 } value_count { min: 0 max: 1 }
                  string_domain { name: "first" value: "s" }
                  annotation { comment: "observed: 30 rows, 1 missing, 1 distinct values" } }
        feature { name: "n" type: INT int_domain { min: 0 } presence { min_count: 0 } value_count { min: 0 max: 1 }
                  annotation { comment: "observed: 30 rows, 1 missing, range [1, 29]" } }
        """,
        schema_pb2.Schema(),
    )
    assert sorted(schema.feature, key=lambda f: f.name) == sorted(expected.feature, key=lambda f: f.name)


def test_the_taxi_sample_as_tf_examples_gives_the_csv_schemas_types_and_presence(tmp_path):
    import csv

    from pipelines.formats import tfrecord_records

    csv_schema = {f.name: f for f in infer_schema([str(SAMPLE_CSV)]).feature}
    examples = []
    with open(SAMPLE_CSV) as handle:
        for row in csv.DictReader(handle):
            features = {}
            for name, cell in row.items():
                if cell == "":
                    continue
                kind = csv_schema[name].type
                features[name] = (
                    [cell.encode()]
                    if kind == schema_pb2.BYTES
                    else [int(cell) if kind == schema_pb2.INT else float(cell)]
                )
            examples.append(_example(**features))
    (tmp_path / "taxi.tfrecord.gz").write_bytes(__import__("gzip").compress(tfrecord_records.frame(examples)))
    out = tmp_path / "schema.pbtxt"
    assert cli.main(["infer-schema", "--input", str(tmp_path / "taxi.tfrecord.gz"), "--output", str(out)]) == 0
    inferred = {f.name: f for f in text_format.Parse(out.read_text(), schema_pb2.Schema()).feature}
    assert {n: (f.type, f.presence.min_fraction, list(f.string_domain.value)) for n, f in inferred.items()} == {
        n: (f.type, f.presence.min_fraction, list(f.string_domain.value)) for n, f in csv_schema.items()
    }


def test_a_feature_of_two_list_types_or_a_damaged_file_is_a_one_line_usage_error(tmp_path, capsys):
    from pipelines.formats import tfrecord_records

    path = tmp_path / "mixed.tfrecord"
    path.write_bytes(tfrecord_records.frame([_example(n=[1])] * 2000 + [_example(n=[1.5])]))  # in two batches
    assert cli.main(["infer-schema", "--input", str(path), "--output", str(tmp_path / "s")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "feature 'n' is a int64_list in some examples and a float_list in others: no one schema type reads both"
        )
    )
    path.write_bytes(tfrecord_records.frame([_example(n=[1])] * 3)[:-5])
    assert cli.main(["infer-schema", "--input", str(path), "--output", str(tmp_path / "s")]) == 2
    assert "truncated TFRecord" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_gzip_csv_cut_short_is_a_one_line_usage_error(tmp_path, capsys):
    import gzip

    compressed = gzip.compress(SAMPLE_CSV.read_bytes())
    (tmp_path / "cut.csv.gz").write_bytes(compressed[: len(compressed) // 2])
    argv = ["infer-schema", "--input", str(tmp_path / "cut.csv.gz"), "--output", str(tmp_path / "s.pbtxt")]
    assert cli.main(argv) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"skewless infer-schema: error: {tmp_path / 'cut.csv.gz'}: Truncated compressed stream"
    )
    assert not (tmp_path / "s.pbtxt").exists()


def test_rows_with_a_wrong_number_of_fields_are_skipped_counted_and_named(tmp_path, capsys):
    """One ragged row does not fail the inference (run dead-letters such rows); the schema's
    annotation and the command's line say how many were skipped, with the first."""
    good = ["n,s"] + [f"{i},{'ab'[i % 2]}" for i in range(30)]
    clean, ragged = tmp_path / "clean.csv", tmp_path / "ragged.csv"
    clean.write_text("\n".join(good) + "\n")
    ragged.write_text("\n".join(good[:10] + ["7", "1,a,extra"] + good[10:]) + "\n")
    schema = infer_schema([str(ragged)])
    assert list(schema.annotation.comment) == [
        f"skipped: 2 rows with a wrong number of fields, the first in {ragged}: '7'"
    ]
    schema.ClearField("annotation")
    assert schema == infer_schema([str(clean)])
    out = tmp_path / "schema.pbtxt"
    assert cli.main(["infer-schema", "--input", str(ragged), "--output", str(out)]) == 0
    assert "2 features -> " in capsys.readouterr().err and "skipped: 2 rows" in out.read_text()


def test_no_rows_to_infer_from_is_a_usage_error_that_suspects_the_delimiter(tmp_path, capsys):
    header_only, semicolons = tmp_path / "header.csv", tmp_path / "semi.csv"
    header_only.write_text("n,s\n")
    semicolons.write_text("n,s\n" + "".join(f"{i};a;b\n" for i in range(5)))
    out = str(tmp_path / "schema.pbtxt")
    assert cli.main(["infer-schema", "--input", str(header_only), "--output", out]) == 2
    assert "the inputs hold no rows to infer types from\n" in capsys.readouterr().err
    assert cli.main(["infer-schema", "--input", str(semicolons), "--output", out]) == 2
    err = capsys.readouterr().err
    assert "no rows to infer types from (skipped: 5 rows with a wrong number of fields" in err
    assert "is the delimiter right?" in err


def test_r_style_na_cells_make_numbers_with_gaps_and_leading_zeros_make_strings(tmp_path):
    """A column that would be numbers but for ``NA`` (R's write.csv, pandas' default list) is numbers
    with those cells missing, counted; the texts found become the dataset's missing values, and a
    string column's ``NA`` is then missing too. Digits with a leading zero stay strings."""
    from pipelines.quality.infer_schema import infer

    path = tmp_path / "r.csv"
    rows = ["id,zip,height,weight,species,code"]
    rows += [
        f"{i},0{8100 + i},{'NA' if i % 4 == 0 else 4 + i / 10},{'N/A' if i == 3 else i},sp{i % 3},{i}"
        for i in range(20)
    ]
    rows[6] = rows[6].replace("sp2", "NA")
    path.write_text("\n".join(rows) + "\n")
    schema, tokens, columns = infer([str(path)])
    assert tokens == ["N/A", "NA"]
    assert (columns["species"].distinct, columns["zip"].distinct, columns["weight"][1:]) == (3, 20, (0, 19))
    features = {f.name: f for f in schema.feature}
    assert {name: schema_pb2.FeatureType.Name(f.type) for name, f in features.items()} == {
        "id": "INT",
        "zip": "BYTES",  # 08100...: the zero is part of the value
        "height": "FLOAT",
        "weight": "INT",
        "species": "BYTES",
        "code": "INT",
    }
    assert list(features["height"].annotation.comment) == ["observed: 20 rows, 5 missing ('NA' x5), range [4.1, 5.9]"]
    assert list(features["weight"].annotation.comment) == ["observed: 20 rows, 1 missing ('N/A' x1), range [0, 19]"]
    assert list(features["species"].annotation.comment) == ["observed: 20 rows, 1 missing, 3 distinct values"]
    assert features["species"].HasField("value_count")  # optional: its NA is missing
    assert features["zip"].presence.min_fraction == 1.0
    assert "missing-value texts (config.yaml missing_values): N/A, NA" in schema.annotation.comment


def test_na_in_a_column_of_words_is_a_word_unless_a_number_column_says_otherwise(tmp_path):
    from pipelines.quality.infer_schema import infer

    path = tmp_path / "regions.csv"
    path.write_text("region,n\n" + "".join(f"{'NA' if i % 2 else 'EU'},{i}\n" for i in range(10)))
    schema, tokens, _ = infer([str(path)])
    assert tokens == []
    (region, _) = schema.feature
    assert list(region.string_domain.value) == []  # 2 values seen 5 times each: below the support of 10
    assert region.annotation.comment[0] == "observed: 10 rows, 0 missing, 2 distinct values"
    assert infer([str(path)], missing_values=("NA",)).missing_values == ["NA"]
