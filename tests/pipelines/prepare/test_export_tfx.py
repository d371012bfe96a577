"""skewless export-tfx: a run laid out as TFX's Transform component does, read back as TFX reads it."""

import json
import os

import pytest

from pipelines import cli
from tests.helpers import parse_examples, read_tfrecords, sample_lines

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    header, lines = sample_lines(600)
    folder = tmp_path_factory.mktemp("tfx")
    (folder / "trips.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    assert cli.main(["run", "--input", str(folder / "trips.csv"), "--output", str(folder / "run"), "--quiet"]) == 0
    return folder


def test_the_layout_is_tfx_transforms(exported, capsys):
    capsys.readouterr()
    assert cli.main(["export-tfx", str(exported / "run"), "--to", str(exported / "tfx")]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "split_names": '["train", "eval"]',
        "file_format": "tfrecords_gzip",
        "payload_format": "FORMAT_TF_EXAMPLE",
    }
    tfx = exported / "tfx"
    assert sorted(os.listdir(tfx)) == [
        "export_tfx.json",
        "post_transform_schema",
        "post_transform_stats",
        "pre_transform_schema",
        "pre_transform_stats",
        "transform_graph",
        "transformed_examples",
    ]
    assert sorted(os.listdir(tfx / "transform_graph")) == ["metadata", "transform_fn", "transformed_metadata"]
    assert sorted(os.listdir(tfx / "transformed_examples")) == ["Split-eval", "Split-train"]
    assert os.listdir(tfx / "transformed_examples" / "Split-train") == ["transformed_examples-00000-of-00001.gz"]
    assert os.listdir(tfx / "pre_transform_stats") == ["FeatureStats.pb"]
    assert (tfx / "pre_transform_schema" / "schema.pbtxt").read_bytes() == (
        exported / "run" / "metadata" / "schema.pbtxt"
    ).read_bytes()
    assert sorted(os.listdir(exported)) == ["run", "tfx", "trips.csv"]  # nothing staged left beside it


def test_tfx_reads_the_graph_and_every_record_of_both_splits(exported):
    import tensorflow as tf
    import tensorflow_transform as tft

    tfx = exported / "tfx"
    graph = tft.TFTransformOutput(str(tfx / "transform_graph"))
    spec = graph.transformed_feature_spec()
    record = json.loads((exported / "run" / "run.json").read_text())
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(str(tfx / "transformed_examples" / f"Split-{split}" / "*.gz"))
        parsed = list(
            tf.data.TFRecordDataset(files, compression_type="GZIP").map(lambda r: tf.io.parse_example(r, spec))
        )
        assert len(parsed) == record["counts"][f"rows_{split}"] > 0
        exported_rows = parse_examples(read_tfrecords(str(tfx / "transformed_examples" / f"Split-{split}" / "*.gz")))
        run_rows = parse_examples(read_tfrecords(str(exported / "run" / "transformed" / f"{split}-*.tfrecord.gz")))
        assert exported_rows == run_rows


def test_local_files_are_hard_links_not_copies(exported):
    (source,) = (exported / "run" / "transformed").glob("train-*.tfrecord.gz")
    target = exported / "tfx" / "transformed_examples" / "Split-train" / "transformed_examples-00000-of-00001.gz"
    assert os.stat(source).st_ino == os.stat(target).st_ino


def test_a_second_export_replaces_the_first_and_other_folders_are_refused(exported, capsys):
    assert cli.main(["export-tfx", str(exported / "run"), "--to", str(exported / "tfx")]) == 0
    assert cli.main(["export-tfx", str(exported), "--to", str(exported / "elsewhere")]) == 2
    assert "has no run.json" in capsys.readouterr().err


def test_a_run_written_as_parquet_is_refused_with_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    record = {"status": "succeeded", "parameters": {"output_format": "parquet"}, "counts": {}}
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    assert cli.main(["export-tfx", str(tmp_path / "run"), "--to", str(tmp_path / "tfx")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("holds Parquet examples: TFX reads tf.Examples (run with --output-format tfrecord)")
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nothing written
