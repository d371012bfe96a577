"""The one file layer: every read and write of Skewless's own inputs, outputs, caches and reports.

A URI goes through Beam's ``FileSystems``, so ``gs://`` and any registered Beam file system behave
alike, with one set of credentials; a local path takes Python's own file calls (the same bytes,
without Beam's import in a process that needs nothing else of Beam). On an object store there are no
directories: a "directory" is a name prefix, it exists when an object is under it, and making one
is nothing to do. The few local-only shortcuts (making a local directory, the absolute form of a
relative path) live here too, so the rest of the code never asks which kind of path it holds.

TensorFlow reads and writes its own files (SavedModels, tf.Transform's outputs) with
``tf.io.gfile``; Skewless's code does not.

One JSON writer (:func:`write_json`: standard JSON, ``null`` for an undefined measure) and one CSV
writer (:func:`write_csv`: ``\\n`` line ends, UTF-8) serve every output.
"""

import contextlib
import csv
import io
import json
import math
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator

__all__ = [
    "absolute",
    "basename",
    "copy",
    "copy_tree",
    "dirname",
    "exists",
    "is_dir",
    "is_local",
    "join",
    "json_safe",
    "list_files",
    "local_fingerprint",
    "make_dirs",
    "match",
    "open_read",
    "open_write",
    "read_bytes",
    "read_json",
    "read_parquet",
    "read_csv",
    "read_text",
    "remove",
    "remove_tree",
    "scratch_directory",
    "size",
    "to_json",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_text",
]


def _filesystems():
    """Beam's ``FileSystems``, imported when first needed: a process that only reads local files
    (``skewless serve`` loading a model) does not pay Beam's import (about a second)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


_CHUNK = 8 << 20


def _raw():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local file system (no ``scheme://``)."""
    return "://" not in str(path)


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined by ``/`` (local paths and URIs alike)."""
    path = str(base)
    for part in parts:
        path = posixpath.join(path, part) if path else part
    return path


def basename(path: str) -> str:
    """The last name of ``path`` (a trailing ``/`` ignored)."""
    return posixpath.basename(str(path).rstrip("/"))


def dirname(path: str) -> str:
    """``path`` without its last name (``gs://bucket/a/b`` gives ``gs://bucket/a``)."""
    return posixpath.dirname(str(path).rstrip("/"))


def absolute(path: str) -> str:
    """A local path made absolute (``~`` expanded); a URI as it is."""
    path = str(path)
    return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path


def exists(path: str) -> bool:
    """Whether a file (an object) is at ``path``; a directory is not a file."""
    if is_local(path):
        return os.path.isfile(path)
    return _filesystems().exists(path)


def is_dir(path: str) -> bool:
    """Whether ``path`` is a directory: locally, one that exists; on an object store, a prefix with
    at least one object under it."""
    if is_local(path):
        return os.path.isdir(path)
    return bool(_filesystems().match([str(path).rstrip("/") + "/**"], limits=[1])[0].metadata_list)


def match(pattern: str) -> list[str]:
    """The files matching a glob pattern (``*`` within a name, ``**`` across names), sorted."""
    return sorted(metadata.path for metadata in _filesystems().match([str(pattern)])[0].metadata_list)


def list_files(directory: str) -> list[str]:
    """Every file under ``directory``, as paths relative to it, sorted ("" when there is none)."""
    directory = str(directory).rstrip("/")
    if is_local(directory) and not os.path.isdir(directory):
        return []
    return sorted(path[len(directory) + 1 :] for path in match(directory + "/**"))


def size(path: str) -> int:
    """The size of a file in bytes."""
    if is_local(path):
        return os.path.getsize(path)
    return _filesystems().match([str(path)], limits=[1])[0].metadata_list[0].size_in_bytes


def local_fingerprint(path: str) -> tuple[str, int, int] | None:
    """``(absolute path, size, modification time in ns)`` of a local file, None for any other path:
    what tells a local file unchanged since it was last read (a cache key)."""
    if not is_local(path) or not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def make_dirs(path: str) -> None:
    """Makes a local directory and its parents; nothing to do on an object store."""
    if is_local(path):
        os.makedirs(path, exist_ok=True)


def open_read(path: str, text: bool = False, encoding: str = "utf-8", newline: str | None = None):
    """Opens a file for reading, as it is (never decompressed by its name).

    Args:
        path: The file.
        text: Read text (decoded with ``encoding``) rather than bytes.
        encoding: The text encoding.
        newline: As for ``open``: ``""`` for the ``csv`` module.
    """
    path = str(path)
    if is_local(path):
        return open(path, "r" if text else "rb", encoding=encoding if text else None, newline=newline if text else None)
    handle = _filesystems().open(path, compression_type=_raw())
    return io.TextIOWrapper(handle, encoding=encoding, newline=newline) if text else handle


def open_write(path: str, text: bool = False, encoding: str = "utf-8", newline: str | None = "\n"):
    """Opens a file for writing (replacing it; local parent directories are made), as it is.

    On an object store the file appears whole when the handle is closed.
    """
    path = str(path)
    if is_local(path):
        make_dirs(dirname(absolute(path)))
        return open(path, "w" if text else "wb", encoding=encoding if text else None, newline=newline if text else None)
    handle = _filesystems().create(path, compression_type=_raw())
    return io.TextIOWrapper(handle, encoding=encoding, newline=newline) if text else handle


def read_bytes(path: str) -> bytes:
    """A file's bytes."""
    with open_read(path) as handle:
        return handle.read()


def read_text(path: str, encoding: str = "utf-8") -> str:
    """A file's text."""
    return read_bytes(path).decode(encoding)


def write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to a file, replacing it."""
    with open_write(path) as handle:
        handle.write(data)


def write_text(path: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to a file, replacing it."""
    write_bytes(path, text.encode("utf-8"))


def json_safe(value):
    """``value`` with every NaN or infinite float (an undefined measure: a kappa over one class, an
    agreement with one annotator) as None, so that the JSON written is standard (``null``): Python
    would write ``NaN``, which strict parsers (browsers' ``JSON.parse``, jq, most languages) refuse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def to_json(payload, indent: int | None = 2) -> str:
    """``payload`` as standard JSON (:func:`json_safe`), keys sorted."""
    return json.dumps(json_safe(payload), indent=indent, sort_keys=True, default=str, allow_nan=False)


def write_json(path: str, payload, indent: int | None = 2) -> None:
    """Writes ``payload`` as standard JSON (keys sorted, ``null`` for NaN or infinity) and a newline."""
    write_text(path, to_json(payload, indent) + "\n")


def read_json(path: str):
    """A JSON file's value."""
    return json.loads(read_bytes(path))


def write_csv(path: str, header: Iterable[str], rows: Iterable[Iterable]) -> None:
    """Writes a CSV file (UTF-8, ``\\n`` line ends, quoted where needed) with its header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(header))
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path: str) -> Iterator[dict]:
    """The rows of a CSV file with a header, as dicts."""
    with open_read(path, text=True, newline="") as handle:
        yield from csv.DictReader(handle)


def read_parquet(paths: Iterable[str], columns: list[str] | None = None):
    """The Parquet files ``paths`` as one pyarrow Table, each handed to pyarrow as a file object
    from this layer (never a URI pyarrow would resolve with file systems of its own)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        with open_read(path) as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(tables) if tables else None


@contextlib.contextmanager
def scratch_directory(name: str, temp_location: str | None, near: str):
    """A scratch directory that workers write and the driver reads, deleted afterwards.

    Under ``temp_location`` (Beam's ``--temp_location``; on Dataflow a ``gs://`` path) when given;
    else beside ``near`` (the output the job reads or writes) when that is remote, as a staging
    directory is; else a local temporary directory.

    Args:
        name: What the scratch is for, in its name (``check-skew``).
        temp_location: The pipeline's temporary location, or None.
        near: A path whose file system the job's files live on.
    """
    token = uuid.uuid4().hex[:8]
    if temp_location:
        path = join(temp_location, f"skewless-{name}-{token}")
    elif not is_local(near):
        path = f"{str(near).rstrip('/')}.tmp-{name}-{token}"
    else:
        with tempfile.TemporaryDirectory(prefix=f"skewless-{name}-") as local:
            yield local
        return
    try:
        yield path
    finally:
        remove_tree(path)


def remove(path: str) -> None:
    """Deletes a file if it is there."""
    if exists(path):
        _filesystems().delete([str(path)])


def remove_tree(path: str) -> None:
    """Deletes a directory tree (or a file), local or remote, if it exists.

    On an object store a "directory" is only a name prefix, so every object under ``<path>/`` is
    matched and deleted.
    """
    path = str(path).rstrip("/")
    if is_local(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        return
    targets = match(path + "/**")
    if _filesystems().exists(path):
        targets.append(path)
    if targets:
        _filesystems().delete(targets)


def copy(source: str, destination: str) -> None:
    """Copies one file, never whole in memory: by its file system's own copy when both are on one
    (a server-side copy on GCS), else streamed in chunks from one to the other."""
    filesystems = _filesystems()
    if filesystems.get_scheme(source) == filesystems.get_scheme(destination):
        make_dirs(dirname(absolute(destination)))
        filesystems.copy([source], [destination])
        return
    with open_read(source) as reader, open_write(destination) as writer:
        shutil.copyfileobj(reader, writer, _CHUNK)


def copy_tree(source: str, destination: str) -> list[str]:
    """Copies every file under ``source`` to the same name under ``destination``; returns the names."""
    names = list_files(source)
    for name in names:
        copy(join(source, name), join(destination, name))
    return names
