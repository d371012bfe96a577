"""run_record.file_sha256: streaming hashes, computed once per unchanged local file, also in the background."""

import hashlib
import os

import pytest

from pipelines.lineage import run_record

pytestmark = pytest.mark.unit


def test_a_file_is_hashed_once_while_unchanged_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert run_record.file_sha256(str(path)) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    opened = []
    real_open = run_record.files.open_read
    monkeypatch.setattr(run_record.files, "open_read", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    assert run_record.file_sha256(str(path)) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert opened == []  # served from the memo
    path.write_bytes(b"a,b\n1,3\n")
    os.utime(path, ns=(1, 1))  # a new modification time, as an edit gives
    assert run_record.file_sha256(str(path)) == hashlib.sha256(b"a,b\n1,3\n").hexdigest()
    assert len(opened) == 1


def test_background_hashes_equal_hashlib_and_name_every_file(tmp_path):
    paths = []
    for index, body in enumerate([b"x" * (9 << 20), b"", b"a,b\n1,2\n"]):  # one file spans two chunks
        path = tmp_path / f"part-{index}.csv"
        path.write_bytes(body)
        paths.append(str(path))
    hashes = run_record.FileHashes(paths)
    assert hashes.result() == {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in paths}


def test_files_hashed_two_at_a_time_equal_hashlib(tmp_path):
    paths = []
    for index in range(5):
        path = tmp_path / f"span{index}.csv"
        path.write_bytes(bytes([index]) * (index << 20))  # 0 to 4 MiB
        paths.append(str(path))
    expected = {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in paths}
    assert run_record.files_sha256(paths, threads=2) == expected
    assert list(run_record.files_sha256(paths[::-1], threads=2)) == paths[::-1]  # in the order given
    assert run_record.files_sha256([], threads=2) == {}


def test_a_background_hashing_error_is_raised_by_result(tmp_path):
    hashes = run_record.FileHashes([str(tmp_path / "missing.csv")])
    with pytest.raises(Exception, match="missing.csv"):  # Beam's FileSystems raises its own error type
        hashes.result()
