"""`skewless run --output-format parquet`: the same transformed rows as the TFRecord output, as columns."""

import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The bundled sample run three times: default TFRecord output, Parquet output, and Parquet
    output after an incremental analysis (whose transformed metadata is read, not deferred)."""
    base = tmp_path_factory.mktemp("parquet")
    outputs = {}
    for name, output_format, extra in [
        ("tfrecord", "tfrecord", []),
        ("parquet", "parquet", []),
        ("parquet_cached", "parquet", ["--analysis-cache", str(base / "cache")]),
    ]:
        out = base / name
        argv = ["run", "--output", str(out), "--no-report", "--lineage-db", str(base / "lineage.db"), *extra]
        assert cli.main([*argv, "--output-format", output_format]) == 0
        outputs[name] = out
    return outputs


def _tfrecord_rows(out) -> dict[int, dict]:
    import tensorflow as tf
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(str(out)).transformed_feature_spec()
    rows = {}
    for split in ("train", "eval"):
        files = sorted(glob.glob(os.path.join(out, "transformed", f"{split}-*.tfrecord.gz")))
        for records in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
            parsed = {name: value.numpy() for name, value in tf.io.parse_example(records, spec).items()}
            for i, row_id in enumerate(parsed["row_id"]):
                rows[int(row_id)] = {name: values[i] for name, values in parsed.items()}
    return rows


def _parquet_table(out, split: str):
    files = sorted(glob.glob(os.path.join(out, "transformed", f"{split}-*.parquet")))
    assert files
    return pq.ParquetDataset(files).read()


def test_run_record_names_the_format_and_counts_every_row(runs):
    record = json.loads((runs["parquet"] / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["parameters"]["output_format"] == "parquet"
    counts = record["counts"]
    assert counts["rows_train"] + counts["rows_eval"] == counts["rows_read"] - counts["rows_dead_lettered"]
    assert _parquet_table(runs["parquet"], "train").num_rows == counts["rows_train"]
    assert _parquet_table(runs["parquet"], "eval").num_rows == counts["rows_eval"]
    assert not glob.glob(os.path.join(runs["parquet"], "transformed", "*.tfrecord.gz"))
    assert not os.path.exists(runs["parquet"] / "tmp")  # bundles' files were moved, the rest removed
    assert record["parity"]["passed"] and record["parity"]["rows_checked"] > 0


def test_columns_are_plain_and_values_equal_the_tfrecord_output(runs):
    expected = _tfrecord_rows(runs["tfrecord"])
    tables = [_parquet_table(runs["parquet"], split) for split in ("train", "eval")]
    assert sum(t.num_rows for t in tables) == len(expected)
    names = sorted(next(iter(expected.values())))
    for table in tables:
        assert sorted(table.column_names) == names
        assert {str(field.type) for field in table.schema} <= {"int64", "float"}  # one value a row: no lists
        columns = {name: table.column(name).to_numpy() for name in names}
        for i, row_id in enumerate(columns["row_id"]):
            want = expected[int(row_id)]
            for name in names:
                np.testing.assert_array_equal(columns[name][i], want[name], err_msg=f"{name} of row {row_id}")


def test_train_refuses_a_parquet_output(runs, capsys):
    assert cli.main(["train", "--transform-output", str(runs["parquet"])]) == 2
    assert "--output-format parquet" in capsys.readouterr().err


def test_plain_columns_follow_the_schema_not_the_batch():
    import pyarrow as pa

    from pipelines.io.write import flat_table

    one_each = pa.array([[1], [2]], pa.large_list(pa.int64()))
    batch = pa.RecordBatch.from_arrays([one_each, one_each], names=["scalar", "varlen"])
    table = flat_table(batch, frozenset({"scalar"}))
    # a VarLen feature whose rows happen to hold one value each stays a list column
    assert table.schema.field("scalar").type == pa.int64()
    assert table.schema.field("varlen").type == pa.large_list(pa.int64())
    assert table.column("scalar").to_pylist() == [1, 2]
    missing = pa.RecordBatch.from_arrays([pa.array([[1], []], pa.large_list(pa.int64()))], names=["scalar"])
    with pytest.raises(ValueError, match="'scalar' has a row without exactly one value"):
        flat_table(missing, frozenset({"scalar"}))


def test_scalar_features_are_the_fixed_len_features_of_shape_empty(runs):
    import tensorflow_transform as tft

    from pipelines.io.write import scalar_features

    metadata = tft.TFTransformOutput(str(runs["parquet"])).transformed_metadata
    assert scalar_features(metadata) == frozenset(_parquet_table(runs["parquet"], "train").column_names)


def test_publishing_moves_a_finished_file_once(tmp_path):
    from pipelines.io.write import publish_file

    temp = tmp_path / "tmp" / "abc.parquet"
    temp.parent.mkdir()
    temp.write_bytes(b"data")
    final = publish_file(str(temp), str(tmp_path / "transformed" / "train"))
    assert final == str(tmp_path / "transformed" / "train-abc.parquet")
    assert not temp.exists() and (tmp_path / "transformed" / "train-abc.parquet").read_bytes() == b"data"
    assert publish_file(str(temp), str(tmp_path / "transformed" / "train")) == final  # a retry: no error
    with pytest.raises(FileNotFoundError):
        publish_file(str(tmp_path / "tmp" / "lost.parquet"), str(tmp_path / "transformed" / "train"))


def test_parquet_after_an_incremental_analysis_equals_the_plain_parquet_output(runs):
    record = json.loads((runs["parquet_cached"] / "run.json").read_text())
    assert record["analysis"]["analyzed"] and record["parity"]["passed"]
    for split in ("train", "eval"):
        cached, plain = _parquet_table(runs["parquet_cached"], split), _parquet_table(runs["parquet"], split)
        assert cached.schema == plain.schema
        assert cached.sort_by("row_id").equals(plain.sort_by("row_id"))
