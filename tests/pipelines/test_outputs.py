"""Output directories are complete or absent."""

import os

import pytest

from pipelines import outputs


def test_a_successful_block_publishes_and_replaces_the_old_output(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale.txt").write_text("old run")
    with outputs.staged_directory(str(final)) as staging:
        assert os.path.dirname(staging) == str(tmp_path) and os.path.basename(staging).startswith("out.tmp-")
        assert not (final / "new.txt").exists()
        with open(os.path.join(staging, "new.txt"), "w") as handle:
            handle.write("new run")
    assert sorted(os.listdir(final)) == ["new.txt"]
    assert os.listdir(tmp_path) == ["out"]


def test_a_failing_block_leaves_the_previous_output_untouched_and_no_staging(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "kept.txt").write_text("previous run")
    with pytest.raises(RuntimeError, match="pipeline died"):
        with outputs.staged_directory(str(final)) as staging:
            open(os.path.join(staging, "partial.txt"), "w").close()
            raise RuntimeError("pipeline died")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(final)) == ["kept.txt"]


def test_a_failing_first_run_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with outputs.staged_directory(str(tmp_path / "new" / "out")):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "new") == []
