"""The file layer (``pipelines/io/files.py``): its functions on local paths and on an object store,
and a check over the source that no other module reads or writes files on its own."""

import ast
import json
import pathlib

import pytest

from pipelines.io import files
from tests import object_store

pytestmark = pytest.mark.unit

PACKAGE = pathlib.Path(__file__).resolve().parents[3] / "pipelines"

# Modules that may touch the local disk directly, and why.
LOCAL_BY_NATURE = {
    "io/files.py": "the layer itself (local shortcuts)",
    "io/staging.py": "the layer: local staging directories renamed in one step, abandoned ones found by owner",
    "project/scaffold.py": "skewless init writes the user's own local repository",
    "cli/commands/init.py": "skewless init shows paths relative to the working directory",
    "cli/reference.py": "writes this repository's docs/reference/commands.md",
    "lineage/store.py": "the lineage store is a local SQLite file",
    "runtime/process.py": "redirects file descriptors to os.devnull",
}
# os.path's functions that only handle strings (the same for a path and a URI on POSIX)
STRING_ONLY = {"join", "basename", "dirname", "splitext", "sep"}
FORBIDDEN_MODULES = {"glob", "shutil", "pathlib", "tempfile"}
FORBIDDEN_OS = {"listdir", "makedirs", "mkdir", "remove", "unlink", "rename", "replace", "walk", "scandir", "stat"}


def _bare_file_calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"import {name}" for name in names if name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id == "open":
                found.append(f"open() at line {node.lineno}")
            elif isinstance(function, ast.Attribute):
                owner = ast.unparse(function.value)
                if owner == "os.path" and function.attr not in STRING_ONLY:
                    found.append(f"os.path.{function.attr}() at line {node.lineno}")
                elif owner == "os" and function.attr in FORBIDDEN_OS:
                    found.append(f"os.{function.attr}() at line {node.lineno}")
    return found


def test_no_module_reads_or_writes_files_outside_the_layer():
    offences = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in LOCAL_BY_NATURE:
            continue
        calls = _bare_file_calls(ast.parse(path.read_text(), filename=name))
        if calls:
            offences[name] = calls
    assert offences == {}


def test_the_check_finds_bare_calls():
    source = "import glob\nimport os\nopen('x')\nos.path.exists('y')\nos.makedirs('z')\nos.path.join('a', 'b')\n"
    assert _bare_file_calls(ast.parse(source)) == [
        "import glob",
        "open() at line 3",
        "os.path.exists() at line 4",
        "os.makedirs() at line 5",
    ]


@pytest.fixture(params=["local", "object store"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    object_store.clear()
    return f"{object_store.PREFIX}bucket/{tmp_path.name}"


def test_write_read_list_copy_and_remove(root):
    files.write_text(files.join(root, "a", "b.txt"), "héllo\n")
    files.write_bytes(files.join(root, "c.bin"), b"\x00\x01")
    assert files.read_text(files.join(root, "a", "b.txt")) == "héllo\n"
    assert files.exists(files.join(root, "c.bin")) and not files.exists(files.join(root, "a"))
    assert files.is_dir(files.join(root, "a")) and not files.is_dir(files.join(root, "nothing"))
    assert files.list_files(root) == ["a/b.txt", "c.bin"]
    assert files.size(files.join(root, "c.bin")) == 2
    assert files.copy_tree(root, files.join(root + "-copy")) == ["a/b.txt", "c.bin"]
    assert files.read_bytes(files.join(root + "-copy", "c.bin")) == b"\x00\x01"
    files.remove_tree(root)
    assert files.list_files(root) == [] and files.list_files(root + "-copy") == ["a/b.txt", "c.bin"]


def test_one_json_writer_writes_standard_json(root):
    path = files.join(root, "m.json")
    files.write_json(path, {"b": float("nan"), "a": [1.5, float("inf")]})
    assert files.read_text(path) == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": null\n}\n'
    assert json.loads(files.read_text(path), parse_constant=pytest.fail) == {"a": [1.5, None], "b": None}


def test_one_csv_writer_ends_lines_with_newline(root):
    path = files.join(root, "t.csv")
    files.write_csv(path, ["item", "text"], [["1", 'say "hi", twice'], ["2", "two\nlines"]])
    assert files.read_bytes(path) == b'item,text\n1,"say ""hi"", twice"\n2,"two\nlines"\n'
    assert list(files.read_csv(path)) == [{"item": "1", "text": 'say "hi", twice'}, {"item": "2", "text": "two\nlines"}]


def test_parquet_is_read_through_file_objects(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for index in range(2):
        with files.open_write(files.join(root, f"part-{index}.parquet")) as handle:
            pq.write_table(pa.table({"x": [index, index + 10]}), handle)
    table = files.read_parquet(files.match(files.join(root, "*.parquet")))
    assert table.column("x").to_pylist() == [0, 10, 1, 11]
    assert files.read_parquet([]) is None


def test_paths():
    assert files.join("gs://b/x", "y", "z.json") == "gs://b/x/y/z.json"
    assert files.dirname("gs://b/x/y/") == "gs://b/x" and files.basename("gs://b/x/y/") == "y"
    assert files.absolute("gs://b/x") == "gs://b/x" and files.absolute("rel").startswith("/")
    assert files.is_local("/tmp/x") and not files.is_local("ram://x")


def test_a_scratch_directory_lives_beside_a_remote_output_and_is_deleted(tmp_path):
    near = f"{object_store.PREFIX}bucket/{tmp_path.name}/out"
    with files.scratch_directory("check", None, near) as scratch:
        assert scratch.startswith(f"{near}.tmp-check-")
        files.write_text(files.join(scratch, "x.json"), "{}")
        assert files.list_files(scratch) == ["x.json"]
    assert files.list_files(scratch) == []
    with files.scratch_directory("check", f"{object_store.PREFIX}tmp", near) as scratch:
        assert scratch.startswith(f"{object_store.PREFIX}tmp/skewless-check-")
    with files.scratch_directory("check", None, str(tmp_path / "out")) as scratch:
        assert files.is_local(scratch) and files.is_dir(scratch)
    assert not files.is_dir(scratch)


def test_a_file_is_copied_within_and_across_file_systems(tmp_path):
    data = bytes(range(256)) * 40_000  # 10 MB: more than one chunk
    local = str(tmp_path / "a" / "data.bin")
    files.write_bytes(local, data)
    remote = f"{object_store.PREFIX}bucket/{tmp_path.name}/copy/data.bin"
    files.copy(local, remote)  # across: streamed
    files.copy(remote, remote + ".2")  # within the object store: its own copy
    files.copy(remote + ".2", str(tmp_path / "b" / "back.bin"))  # and back, into a new local folder
    assert files.read_bytes(str(tmp_path / "b" / "back.bin")) == data
    assert files.list_files(files.dirname(remote)) == ["data.bin", "data.bin.2"]
