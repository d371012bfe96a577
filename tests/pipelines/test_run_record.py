"""run_record.file_sha256: streaming hashes, computed once per unchanged local file."""

import hashlib
import os

from pipelines import run_record


def test_a_file_is_hashed_once_while_unchanged_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert run_record.file_sha256(str(path)) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    opened = []
    real_open = run_record.FileSystems.open
    monkeypatch.setattr(run_record.FileSystems, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    assert run_record.file_sha256(str(path)) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert opened == []  # served from the memo
    path.write_bytes(b"a,b\n1,3\n")
    os.utime(path, ns=(1, 1))  # a new modification time, as an edit gives
    assert run_record.file_sha256(str(path)) == hashlib.sha256(b"a,b\n1,3\n").hexdigest()
    assert len(opened) == 1
