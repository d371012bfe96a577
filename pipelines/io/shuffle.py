"""A group-by whose state is on disk, and a collection kept on disk, for the in-process runner.

Beam's local runner (``FnApiRunner``) holds a ``GroupByKey``'s every value in memory, decoded, until
the group is read, so memory grows with the data.
:class:`GroupByKeyOnDisk` instead appends each ``(key, value)`` to one of ``partitions`` files by a
hash of the key, as the elements go by, and then groups one partition at a time: memory holds one
partition's groups (a ``partitions``-th of the data), the rest waits on disk.

It also holds a whole collection in memory while a later stage waits to read it, and copies it
again to feed that stage: :class:`KeepOnDisk` writes such a collection to files as it is made, and
the reading stage reads them back.

Distributed runners have a shuffle of their own (Dataflow's shuffle service) and do not hold
collections in memory; there Beam's ``GroupByKey`` is used (:func:`group_by_key`), and collections
pass as they are (:func:`keep_on_disk`).

Keys must pickle to the same bytes when they are equal (strings, numbers, tuples of them), since
the pickle's CRC-32 picks the partition. The order of the values within a group is not defined,
as with ``GroupByKey``.
"""

import os
import pickle
import struct
import uuid
import zlib
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["DEFAULT_PARTITIONS", "GroupByKeyOnDisk", "KeepOnDisk", "group_by_key", "keep_on_disk", "partition_of"]

DEFAULT_PARTITIONS = 64
_LENGTH = struct.Struct("<I")
_WRITE_BUFFER = 1 << 20


def _pickled(value) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def partition_of(key, partitions: int) -> int:
    """The partition of ``key``: the CRC-32 of its pickle, the same in every process (``hash`` of a
    string is not: it is salted per process), so that workers agree."""
    return _partition(_pickled(key), partitions)


def _partition(pickled_key: bytes, partitions: int) -> int:
    return zlib.crc32(pickled_key) % partitions


class _PiecesFile:
    """A file of length-prefixed pieces (``length | bytes``), written in 1 MiB pieces: a partition's
    file holds ``pickled key, pickled value`` for each element, a kept collection's ``pickled
    element``."""

    def __init__(self, path: str):
        self.path = path
        self._handle = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self._pending: list[bytes] = []
        self._bytes = 0
        self.written = 0  # bytes appended so far

    def append(self, *pieces: bytes) -> None:
        for piece in pieces:
            self._pending += (_LENGTH.pack(len(piece)), piece)
            self._bytes += _LENGTH.size + len(piece)
            self.written += _LENGTH.size + len(piece)
        if self._bytes >= _WRITE_BUFFER:
            self._flush()

    def _flush(self) -> None:
        self._handle.write(b"".join(self._pending))
        self._pending, self._bytes = [], 0

    def close(self) -> str:
        self._flush()
        self._handle.close()
        return self.path


class _WritePartitions(beam.DoFn):
    """Appends each (key, value) to its partition's file of this bundle; outputs (partition, path)."""

    def __init__(self, prefix: str, partitions: int):
        self._prefix, self._partitions = prefix, partitions

    def start_bundle(self):
        self._files: dict[int, _PiecesFile] = {}

    def process(self, element):
        key, value = element
        key = _pickled(key)
        partition = _partition(key, self._partitions)  # partition_of, the key pickled once for both uses
        if partition not in self._files:
            self._files[partition] = _PiecesFile(f"{self._prefix}-{partition:04d}-{uuid.uuid4().hex}")
        self._files[partition].append(key, _pickled(value))

    def finish_bundle(self):
        files, self._files = self._files, {}
        for partition, file in sorted(files.items()):
            yield WindowedValue((partition, file.close()), MIN_TIMESTAMP, [GlobalWindow()])


def _pieces(path: str) -> Iterator[memoryview]:
    """The pieces of a :class:`_PiecesFile`, in order."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        data = memoryview(handle.read())
    position, unpack, size = 0, _LENGTH.unpack_from, _LENGTH.size
    while position < len(data):
        (length,) = unpack(data, position)
        yield data[position + size : position + size + length]
        position += size + length


def _group_file(path: str, groups: dict) -> None:
    """Adds the file's values to ``groups`` (pickled key -> [pickled values])."""
    pieces = _pieces(path)
    for key in pieces:
        groups.setdefault(bytes(key), []).append(next(pieces))


class _GroupPartition(beam.DoFn):
    """Reads one partition's files, groups them by key, deletes them and outputs (key, [values])."""

    def process(self, element):
        _, paths = element
        paths = sorted(paths)
        groups: dict[bytes, list] = {}
        for path in paths:
            _group_file(path, groups)
        FileSystems.delete(paths)
        for key, values in groups.items():
            yield pickle.loads(key), [pickle.loads(value) for value in values]


class GroupByKeyOnDisk(beam.PTransform):
    """``GroupByKey`` with its state in files under ``temp_dir`` (see the module's docstring).

    Args:
        temp_dir: Where the partition files go; each is deleted once grouped.
        partitions: How many partitions; memory holds about a ``partitions``-th of the data.
    """

    def __init__(self, temp_dir: str, partitions: int = DEFAULT_PARTITIONS):
        super().__init__()
        self._prefix, self._partitions = os.path.join(temp_dir, "part"), partitions

    def expand(self, pairs):
        return (
            pairs
            | "WritePartitions" >> beam.ParDo(_WritePartitions(self._prefix, self._partitions))
            | "GroupFilesByPartition" >> beam.GroupByKey()
            | "GroupPartitions" >> beam.ParDo(_GroupPartition())
        )


class _WriteElements(beam.DoFn):
    """Appends each element, pickled, to this bundle's file; outputs a file's path once it holds
    ``file_bytes`` (and the last one when the bundle ends)."""

    def __init__(self, prefix: str, file_bytes: int):
        self._prefix, self._file_bytes = prefix, file_bytes

    def start_bundle(self):
        self._file: _PiecesFile | None = None

    def process(self, element):
        if self._file is None:
            self._file = _PiecesFile(f"{self._prefix}-{uuid.uuid4().hex}")
        self._file.append(_pickled(element))
        if self._file.written >= self._file_bytes:
            file, self._file = self._file, None
            yield file.close()

    def finish_bundle(self):
        if self._file is not None:
            file, self._file = self._file, None
            yield WindowedValue(file.close(), MIN_TIMESTAMP, [GlobalWindow()])


def _read_elements(path: str):
    for piece in _pieces(path):
        yield pickle.loads(piece)


class KeepOnDisk(beam.PTransform):
    """The same collection, kept in files under ``temp_dir`` between the stage that makes it and the
    stages that read it (see the module's docstring).

    The in-process runner holds a collection that a later stage reads (one waiting for a side
    input, say) in memory, whole, and copies it again to feed that stage; written to files as it
    is made, only the files' paths wait. Each reading stage reads the files back. The files go
    with ``temp_dir``.

    Args:
        temp_dir: Where the files go.
        file_bytes: Pickled bytes a file holds before the next one is started.
    """

    def __init__(self, temp_dir: str, file_bytes: int = 32 << 20):
        super().__init__()
        self._prefix, self._file_bytes = os.path.join(temp_dir, "kept"), file_bytes

    def expand(self, elements):
        return (
            elements
            | "WriteFiles" >> beam.ParDo(_WriteElements(self._prefix, self._file_bytes))
            | "SpreadFiles" >> beam.Reshuffle()  # also: no file is read before the stage writing it ends
            | "ReadFiles" >> beam.FlatMap(_read_elements)
        )


def keep_on_disk(temp_dir: str | None) -> beam.PTransform:
    """:class:`KeepOnDisk` under ``temp_dir``, or nothing (the collection itself) when None (a
    runner that does not hold collections in memory)."""
    return beam.Map(lambda element: element) if temp_dir is None else KeepOnDisk(temp_dir)


def group_by_key(temp_dir: str | None) -> beam.PTransform:
    """:class:`GroupByKeyOnDisk` under ``temp_dir``, or Beam's ``GroupByKey`` when None (a runner
    with a shuffle of its own)."""
    return beam.GroupByKey() if temp_dir is None else GroupByKeyOnDisk(temp_dir)
