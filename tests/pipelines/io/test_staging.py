"""Output directories are complete or absent."""

import os

import pytest

from pipelines.errors import UsageError
from pipelines.io import staging as outputs

pytestmark = pytest.mark.pipeline


def test_a_successful_block_publishes_and_replaces_the_old_output(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "run.json").write_text("{}")  # an earlier run's output
    (final / "stale.txt").write_text("old run")
    with outputs.staged_directory(str(final)) as staging:
        assert os.path.dirname(staging) == str(tmp_path) and os.path.basename(staging).startswith("out.tmp-")
        assert not (final / "new.txt").exists()
        with open(os.path.join(staging, "new.txt"), "w") as handle:
            handle.write("new run")
    assert sorted(os.listdir(final)) == ["new.txt"]
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("record", outputs.RECORDS)
def test_any_commands_earlier_output_or_an_empty_directory_may_be_replaced(tmp_path, record):
    (tmp_path / "empty").mkdir()
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / record).write_text("{}")
    for name in ("empty", "earlier", "absent"):
        outputs.check_replaceable(str(tmp_path / name))


def test_a_directory_that_is_not_an_output_or_a_file_is_refused_and_left_alone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "trips.csv").write_text("the user's data")
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(UsageError, match=f"--output {data} exists and is not a Skewless output .*refusing"):
        with outputs.staged_directory(str(data) + "/"):
            raise AssertionError("no work may start")
    with pytest.raises(UsageError, match="notes.txt is not a directory: refusing to replace it"):
        with outputs.staged_directory(str(tmp_path / "notes.txt")):
            raise AssertionError("no work may start")
    assert sorted(os.listdir(tmp_path)) == ["data", "notes.txt"]  # no staging directory either
    assert os.listdir(data) == ["trips.csv"]


def test_the_scratch_directory_is_never_published(tmp_path):
    final = tmp_path / "out"
    with outputs.staged_directory(str(final)) as staging:
        assert outputs.temp_dir(staging, "spill") == os.path.join(staging, "tmp", "spill")
        os.makedirs(outputs.temp_dir(staging, "spill"))
        open(os.path.join(outputs.temp_dir(staging, "spill"), "left.arrow"), "w").close()
        open(os.path.join(staging, "run.json"), "w").close()
    assert sorted(os.listdir(final)) == ["run.json"]


def test_a_failing_block_leaves_the_previous_output_untouched_and_no_staging(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "run.json").write_text("previous run")
    with pytest.raises(RuntimeError, match="pipeline died"):
        with outputs.staged_directory(str(final)) as staging:
            open(os.path.join(staging, "partial.txt"), "w").close()
            raise RuntimeError("pipeline died")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(final)) == ["run.json"]


def test_a_failing_first_run_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with outputs.staged_directory(str(tmp_path / "new" / "out")):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "new") == []


def test_stagings_of_killed_jobs_on_this_host_are_deleted_by_the_next_job_and_no_other(tmp_path):
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = socket.gethostname()
    owners = {
        "killed": f"{here} {gone.stdout.strip()}",  # a job killed outright: its process is gone
        "running": f"{here} {os.getpid()}",  # a live job writing the same output
        "elsewhere": f"another-host {gone.stdout.strip()}",  # another machine on a shared disk
        "unowned": None,  # not written by this code: not ours to judge
    }
    for name, owner in owners.items():
        os.makedirs(tmp_path / f"out.tmp-{name}" / "tmp")
        if owner:
            (tmp_path / f"out.tmp-{name}" / "tmp" / "owner").write_text(owner + "\n")
    with outputs.staged_directory(str(tmp_path / "out")) as staging:
        with open(os.path.join(staging, "tmp", "owner")) as handle:
            assert handle.read() == f"{here} {os.getpid()}\n"
        left = sorted(os.listdir(tmp_path))
    assert left == sorted(["out.tmp-running", "out.tmp-elsewhere", "out.tmp-unowned", os.path.basename(staging)])
    assert sorted(os.listdir(tmp_path)) == ["out", "out.tmp-elsewhere", "out.tmp-running", "out.tmp-unowned"]
    assert os.listdir(tmp_path / "out") == []  # the owner file went with tmp/


def test_bundle_files_hold_every_element_once_and_only_published_files_remain(tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.io.write import WriteBundleFiles

    prefix, temp = str(tmp_path / "out" / "part"), str(tmp_path / "tmp" / "part")
    lines = [f"line {i}\n".encode() for i in range(1000)]

    def published_files(paths):
        assert all(os.path.dirname(path) == str(tmp_path / "out") for path in paths)
        assert all(os.path.basename(path).startswith("part-") and path.endswith(".txt") for path in paths)
        assert sorted(paths) == sorted(str(path) for path in (tmp_path / "out").iterdir())

    with TestPipeline() as pipeline:
        written = (
            pipeline
            | beam.Create(lines)
            | "Rebundle" >> beam.Reshuffle()  # elements arrive in more than one bundle or order
            | WriteBundleFiles(prefix, temp, ".txt")
        )
        assert_that(written, published_files)
        empty = (
            pipeline
            | "None" >> beam.Create([], reshuffle=False)
            | "WriteNone" >> WriteBundleFiles(str(tmp_path / "empty" / "part"), str(tmp_path / "tmp" / "empty"), ".txt")
        )
        assert_that(empty, equal_to([]), label="NoFiles")
    contents = sorted(line for path in (tmp_path / "out").iterdir() for line in path.read_bytes().splitlines(True))
    assert contents == sorted(lines)
    assert os.listdir(tmp_path / "empty") == []  # the directory says "nothing": no file
    assert not os.path.exists(temp) or os.listdir(temp) == []  # every bundle's file moved into place


def test_a_remote_tree_is_deleted_object_by_object(monkeypatch):
    from types import SimpleNamespace

    from pipelines.io.staging import FileSystems

    objects = {"gs://b/out/tmp/spill/a.arrows", "gs://b/out/tmp/parity/p.jsonl", "gs://b/out/run.json"}

    def match(patterns):
        (pattern,) = patterns
        assert pattern == "gs://b/out/tmp/**"
        found = [SimpleNamespace(path=path) for path in sorted(objects) if path.startswith("gs://b/out/tmp/")]
        return [SimpleNamespace(metadata_list=found)]

    def delete(paths):
        for path in paths:
            objects.remove(path)

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    monkeypatch.setattr(FileSystems, "exists", staticmethod(lambda path: path in objects))  # a prefix: False
    monkeypatch.setattr(FileSystems, "delete", staticmethod(delete))
    outputs.remove_tree("gs://b/out/tmp/")
    assert objects == {"gs://b/out/run.json"}
    outputs.remove_tree("gs://b/out/tmp")  # nothing left: no error
