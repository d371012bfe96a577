"""SpillBatches / ReadSpilledBatches: what the first pass writes, the second reads back, by tag."""

import glob
import os

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.io.spill import ReadSpilledBatches, SpillBatches, tag_of, with_tag_column

pytestmark = pytest.mark.pipeline


def _batch(start: int, rows: int, extra: bool = False) -> pa.RecordBatch:
    columns = {
        "id": pa.array([[i] for i in range(start, start + rows)], pa.large_list(pa.int64())),
        "name": pa.array(
            [[f"n{i}".encode()] if i % 3 else None for i in range(start, start + rows)],
            pa.large_list(pa.large_binary()),
        ),
    }
    if extra:  # a batch of another schema starts a new file
        columns["weight"] = pa.array([[0.5]] * rows, pa.large_list(pa.float32()))
    return pa.RecordBatch.from_pydict(columns)


def _rows(batch: pa.RecordBatch) -> list[tuple]:
    names = batch.schema.names
    return [tuple(row[n][0] if row[n] else None for n in names) for row in batch.to_pylist()]


@pytest.fixture(scope="module")
def spilled(tmp_path_factory):
    """One pipeline: 2 tags, 40 + 10 batches of 50 rows, files of about 4 batches each."""
    directory = tmp_path_factory.mktemp("spill")
    train = [_batch(i * 50, 50, extra=i >= 38) for i in range(40)]
    eval_ = [_batch(10_000 + i * 50, 50) for i in range(10)]
    expected_train = [row for b in train for row in _rows(b)]
    expected_eval = [row for b in eval_ for row in _rows(b)]
    file_bytes = 4 * train[0].nbytes - 1
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        files = (
            p | "Train" >> beam.Create(train) | "SpillTrain" >> SpillBatches(f"{directory}/train", "train", file_bytes),
            p | "Eval" >> beam.Create(eval_) | "SpillEval" >> SpillBatches(f"{directory}/eval", "eval", file_bytes),
        ) | beam.Flatten()
        read = files | ReadSpilledBatches(["train", "eval"], "tag") | beam.Map(_by_tag, ["train", "eval"])
        train_rows = read | "TrainRows" >> beam.FlatMap(lambda tagged: _rows(tagged[1]) if tagged[0] == "train" else [])
        eval_rows = read | "EvalRows" >> beam.FlatMap(lambda tagged: _rows(tagged[1]) if tagged[0] == "eval" else [])
        assert_that(train_rows, equal_to(expected_train), label="TrainRows")
        assert_that(eval_rows, equal_to(expected_eval), label="EvalRows")
        assert_that(
            files | "Tags" >> beam.Map(lambda f: (f[0], os.path.basename(f[1]).split("-")[0])),
            lambda got: _check_tags(got),
            label="Tags",
        )
    return directory


def _by_tag(batch: pa.RecordBatch, tags: list[str]) -> tuple[str, pa.RecordBatch]:
    """The batch's tag (checked to be one for all its rows) and the batch without the tag column."""
    column = batch.column("tag")
    assert column.type == pa.large_list(pa.int64()) and len({tuple(v) for v in column.to_pylist()}) == 1
    return tag_of(column, tags), batch.drop_columns(["tag"])


def _check_tags(got):
    assert {tag for tag, _ in got} == {"train", "eval"}
    assert all(tag == prefix for tag, prefix in got)


def test_every_row_comes_back_under_its_tag(spilled):
    """Asserted inside the fixture's pipeline (assert_that fails the pipeline otherwise)."""
    assert os.path.isdir(spilled)


def test_files_roll_by_size_and_schema(spilled):
    train_files = glob.glob(f"{spilled}/train-*.arrows")
    # 38 batches of one schema in files of 4 batches (10 files), then 2 of another schema (1 file)
    assert len(train_files) == 11
    schemas = {tuple(pa.ipc.open_stream(pa.OSFile(f)).schema.names) for f in train_files}
    assert schemas == {("id", "name"), ("id", "name", "weight")}
    assert len(glob.glob(f"{spilled}/eval-*.arrows")) == 3


def test_files_are_lz4_compressed_ipc_streams(spilled):
    path = sorted(glob.glob(f"{spilled}/eval-*.arrows"))[0]
    with pa.OSFile(path) as handle:
        batches = list(pa.ipc.open_stream(handle))
    assert sum(b.num_rows for b in batches) in (100, 200)
    assert os.path.getsize(path) < sum(b.nbytes for b in batches)


@pytest.mark.parametrize("local", [True, False])
def test_a_spill_file_reads_back_through_arrow_or_beam_filesystems(tmp_path, monkeypatch, local):
    """Local files go through Arrow's native file; others (gs://) through Beam's FileSystems."""
    from pipelines.io import spill
    from pipelines.io import staging as outputs

    monkeypatch.setattr(outputs, "is_local", lambda path: local)
    batches = [_batch(0, 5), _batch(5, 3)]
    written = spill._SpillFile(str(tmp_path / "new_dir" / "train"), batches[0].schema)
    for batch in batches:
        written.write(batch)
    path = written.close()
    read = list(spill._read_spill_file(("eval", path), ["train", "eval"], "tag"))
    assert [_rows(b.drop_columns(["tag"])) for b in read] == [_rows(b) for b in batches]
    assert [tag_of(b.column("tag"), ["train", "eval"]) for b in read] == ["eval", "eval"]


def test_with_tag_column_tags_every_row_as_tf_transform_passes_it_through():
    """What a run with a known transform_fn (``--analysis-cache``) does instead of spilling."""
    batch = _batch(0, 3)
    tagged = with_tag_column(batch, "eval", ["train", "eval"], "tag")
    assert tagged.schema.names == ["id", "name", "tag"]
    assert tagged.column("tag").type == pa.large_list(pa.int64())
    assert tagged.column("tag").to_pylist() == [[1], [1], [1]]
    assert tag_of(tagged.column("tag"), ["train", "eval"]) == "eval"
    assert tagged.drop_columns(["tag"]).equals(batch)
