"""An object store for tests: a Beam file system for ``ram://`` that behaves like GCS.

The objects live in TensorFlow's in-memory ``ram://`` file system, so what Beam writes TensorFlow
reads and the other way round, as with ``gs://``. The Beam side behaves as GCS does:

- there are no directories: a "directory" is only a name prefix, ``mkdirs`` does nothing and
  ``exists`` is true for objects only;
- ``rename`` is a copy followed by a delete, object by object.

TensorFlow's RAM file system cannot rename a directory (GCS's TensorFlow file system can, object
by object, and tf.Transform renames its output directories with ``tf.io.gfile.rename``):
:func:`install` adds that for ``ram://`` paths only. Its listing of directories is unreliable
(implicit directories are missed, ``assets.extra/`` may be listed under ``assets/``); a glob of an
explicit depth is right, so objects are listed that way.

Importing this module registers the file system with Beam (``FileSystems`` finds subclasses).
"""

import io
import posixpath
import time

import tensorflow as tf
from apache_beam.io.filesystem import (
    BeamIOError,
    CompressedFile,
    CompressionTypes,
    FileMetadata,
    FileSystem,
)

SCHEME = "ram"
PREFIX = "ram://"
MAX_DEPTH = 16  # the deepest object name below a listed prefix (a SavedModel's are about 8 deep)


def _objects(prefix: str) -> list[str]:
    """Every object (never a directory) whose name starts with ``prefix``."""
    base = prefix if prefix.endswith("/") else posixpath.dirname(prefix) + "/"
    if base == PREFIX:
        base = PREFIX
    found = set()
    pattern = base.rstrip("/")
    for _ in range(MAX_DEPTH):
        pattern += "/*"
        for path in tf.io.gfile.glob(pattern):
            if path.startswith(prefix) and not tf.io.gfile.isdir(path):
                found.add(path)
    return sorted(found)


def _copy(source: str, destination: str) -> None:
    """Copies one object. Not ``tf.io.gfile.copy``: TensorFlow's RAM file system takes a name that
    prefixes another (``MANIFEST`` beside ``MANIFEST.tmp-1``) for a directory and copies into it."""
    with tf.io.gfile.GFile(source, "rb") as handle:
        data = handle.read()
    with tf.io.gfile.GFile(destination, "wb") as handle:
        handle.write(data)


class _Writer(io.BytesIO):
    """A write channel: the object appears, whole, when it is closed (as on GCS)."""

    mode = "wb"  # what Beam's CompressedFile asks

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            with tf.io.gfile.GFile(self._path, "wb") as handle:
                handle.write(self.getvalue())
        super().close()


class _Reader(io.BytesIO):
    mode = "rb"


class RamFileSystem(FileSystem):
    """Beam's view of ``ram://``: an object store without directories, like GCS."""

    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        path = basepath
        for part in paths:
            path = path.rstrip("/") + "/" + part.lstrip("/")
        return path

    def split(self, path):
        path = path.strip()
        if not path.startswith(PREFIX):
            raise ValueError(f"{path!r} is not a ram:// path")
        head, _, tail = path[len(PREFIX) :].rpartition("/")
        return PREFIX + head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path in _objects(dir_or_prefix):
            yield self.metadata(path)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        raw = _Writer(path)
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if not self.exists(path):
            raise BeamIOError("Open operation failed", {path: FileNotFoundError(path)})
        with tf.io.gfile.GFile(path, "rb") as handle:
            raw = _Reader(handle.read())
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def copy(self, source_file_names, destination_file_names):
        exceptions = {}
        for source, destination in zip(source_file_names, destination_file_names, strict=True):
            try:
                if source.endswith("/"):
                    for path in _objects(source):
                        _copy(path, destination + path[len(source) :])
                else:
                    _copy(source, destination)
            except Exception as error:  # noqa: BLE001
                exceptions[(source, destination)] = error
        if exceptions:
            raise BeamIOError("Copy operation failed", exceptions)

    def rename(self, source_file_names, destination_file_names):
        exceptions = {}
        for source, destination in zip(source_file_names, destination_file_names, strict=True):
            try:
                _copy(source, destination)
                tf.io.gfile.remove(source)
            except Exception as error:  # noqa: BLE001
                exceptions[(source, destination)] = error
        if exceptions:
            raise BeamIOError("Rename operation failed", exceptions)

    def exists(self, path):
        return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)

    def size(self, path):
        return tf.io.gfile.stat(path).length

    def last_updated(self, path):
        return _UPDATED.setdefault(path, time.time())

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        try:
            return FileMetadata(path, self.size(path), self.last_updated(path))
        except Exception as error:  # noqa: BLE001
            raise BeamIOError("Metadata operation failed", {path: error}) from None

    def delete(self, paths):
        exceptions = {}
        for path in paths:
            try:
                # as GCS: "dir/" deletes every object under it; a name, the objects it matches (if any)
                if path.endswith("/"):
                    targets = _objects(path)
                else:
                    targets = [metadata.path for metadata in self.match([path])[0].metadata_list]
                for target in targets:
                    tf.io.gfile.remove(target)
            except Exception as error:  # noqa: BLE001
                exceptions[path] = error
        if exceptions:
            raise BeamIOError("Delete operation failed", exceptions)


_UPDATED: dict[str, float] = {}


def objects(prefix: str = PREFIX) -> list[str]:
    """Every object under ``prefix``, sorted."""
    return _objects(prefix)


def clear() -> None:
    """Deletes every object (and TensorFlow's explicit directories) in ``ram://``."""
    for path in _objects(PREFIX):
        tf.io.gfile.remove(path)
    for path in sorted(tf.io.gfile.glob(PREFIX + "*"), reverse=True):
        tf.io.gfile.rmtree(path)


_tf_rename = tf.io.gfile.rename


def _rename(src, dst, overwrite=False):
    """``tf.io.gfile.rename`` that renames a ``ram://`` directory object by object, as GCS's does."""
    src, dst = str(src), str(dst)
    if src.startswith(PREFIX) and tf.io.gfile.isdir(src):
        prefix = src.rstrip("/") + "/"
        for path in _objects(prefix):
            target = dst.rstrip("/") + "/" + path[len(prefix) :]
            _copy(path, target)
            tf.io.gfile.remove(path)
        if tf.io.gfile.exists(src):
            tf.io.gfile.rmtree(src)
        return
    _tf_rename(src, dst, overwrite)


def install() -> None:
    """Lets ``tf.io.gfile.rename`` rename ``ram://`` directories (see the module's docstring)."""
    tf.io.gfile.rename = _rename
