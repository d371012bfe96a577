"""Keeping the validated batches of a run's first pass for its second, in Arrow IPC files.

``skewless run`` needs its data twice: once to analyze (the transform graph's constants need a full
pass over the training data) and once to transform with the result. Holding the batches between
the passes would make memory grow with the data; decoding the input again costs a second parse and
validation. Instead the first pass writes the batches, as they go by, into LZ4-compressed Arrow IPC
streams under the run's temporary directory, and the second pass reads them back: no second
decode, memory flat, and the files live where the runner's temp files do (local disk, or
``gs://`` on Dataflow).

A bundle starts a new file every ``file_bytes`` of batch data, so the second pass has one element
per file to spread over its workers. The files are deleted with the run's temporary directory.
"""

import uuid
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.io import files
from pipelines.io import staging as outputs
from pipelines.io.coders import of_record_batches
from pipelines.runtime import overlap

__all__ = ["ReadSpilledBatches", "SpillBatches", "tag_of", "with_tag_column"]

DEFAULT_FILE_BYTES = 128 << 20  # of uncompressed batch data: about 400k taxi rows
_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class _SpillFile:
    """One IPC stream being written; used by one thread at a time."""

    def __init__(self, prefix: str, schema: pa.Schema):
        self.path = f"{prefix}-{uuid.uuid4().hex}.arrows"
        self.schema = schema
        self.bytes = 0
        if outputs.is_local(self.path):  # Arrow's own writer: native writes, without the GIL
            files.make_dirs(files.dirname(files.absolute(self.path)))
            self._handle = pa.OSFile(self.path, "wb")
        else:
            self._handle = FileSystems.create(self.path)
        self._writer = pa.ipc.new_stream(self._handle, schema, options=_OPTIONS)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.bytes += batch.nbytes

    def close(self) -> str:
        self._writer.close()
        self._handle.close()
        return self.path


class _WriteSpill(overlap.BackgroundDoFn):
    """Writes batches to IPC files on a background thread; outputs ``(tag, path)`` of each file once closed."""

    def __init__(self, prefix: str, tag: str, file_bytes: int):
        self._prefix = prefix
        self._tag = tag
        self._file_bytes = file_bytes
        self._file: _SpillFile | None = None
        self._context = None

    def start_bundle(self):
        super().start_bundle()
        if self._file is not None:  # left open by a failed bundle; its path was never output
            self._file.close()
            self._file = None
        self._context = None

    def _write(self, batch: pa.RecordBatch) -> list[str]:
        """Runs on the background thread (one at a time, in order); returns the paths it closed."""
        closed = []
        if self._file is not None and (self._file.bytes >= self._file_bytes or batch.schema != self._file.schema):
            closed.append(self._file.close())
            self._file = None
        if self._file is None:
            self._file = _SpillFile(self._prefix, batch.schema)
        self._file.write(batch)
        return closed

    def process(self, batch: pa.RecordBatch, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        self._context = (window, timestamp)
        for paths, _ in self._background.submit(self._write, batch, context=self._context):
            for path in paths:
                yield self._tag, path

    def finish_bundle(self):
        done = self._background.drain()
        if self._file is not None:
            done.append(([self._file.close()], self._context))
            self._file = None
        for paths, context in done:
            yield from self.windowed([(self._tag, path) for path in paths], context)


class SpillBatches(beam.PTransform):
    """Writes RecordBatches to LZ4 Arrow IPC stream files ``<prefix>-<uuid>.arrows``.

    Returns ``(tag, path)`` for each file written (read them back with ``ReadSpilledBatches``); the
    tag names the PCollection the batches came from.
    """

    def __init__(self, prefix: str, tag: str, file_bytes: int = DEFAULT_FILE_BYTES):
        super().__init__()
        self._prefix = prefix
        self._tag = tag
        self._file_bytes = file_bytes

    def expand(self, batches):
        return batches | "WriteIpcFiles" >> beam.ParDo(_WriteSpill(self._prefix, self._tag, self._file_bytes))


def with_tag_column(batch: pa.RecordBatch, tag: str, tags: Sequence[str], tag_column: str) -> pa.RecordBatch:
    """``batch`` with the column ``tag_column``: the index of ``tag`` in ``tags`` on every row, as
    ``large_list<int64>`` of one value (the shape tf.Transform passes through)."""
    rows = batch.num_rows
    index = np.full(rows, tags.index(tag), np.int64)
    return batch.append_column(tag_column, pa.LargeListArray.from_arrays(np.arange(rows + 1, dtype=np.int64), index))


def _read_spill_file(element: tuple[str, str], tags: list[str], tag_column: str):
    tag, path = element
    # a local file is read by Arrow's own file reader (native reads, without the GIL); through a
    # Python file object every read would hold the GIL and copy once more
    with pa.OSFile(path) if outputs.is_local(path) else FileSystems.open(path) as handle:
        for batch in pa.ipc.open_stream(handle):
            yield with_tag_column(batch, tag, tags, tag_column)


def tag_of(batch_tags: pa.Array, tags: list[str]) -> str:
    """The tag of a batch ``ReadSpilledBatches`` read, from its ``tag_column`` (one value for all rows)."""
    return tags[batch_tags[0].as_py()[0]]


class ReadSpilledBatches(beam.PTransform):
    """Reads back the batches of the ``(tag, path)`` files ``SpillBatches`` wrote, as one collection.

    Each batch gets the column ``tag_column`` (``large_list<int64>`` of one value a row, the shape
    tf.Transform passes through): the index of its tag in ``tags``, the same for all its rows (a
    file holds one tag). So one step (one tf.Transform graph, loaded once) serves every tag, and
    :func:`tag_of` tells the batches apart afterwards. The files are spread over workers, and the
    reshuffle also makes sure no file is read before the stage that wrote it has finished.
    """

    def __init__(self, tags: list[str], tag_column: str):
        super().__init__()
        self._tags = list(tags)
        self._tag_column = tag_column

    def expand(self, files):
        batches = (
            files
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadIpcFiles" >> beam.FlatMap(_read_spill_file, self._tags, self._tag_column)
        )
        return of_record_batches(batches)  # sized without pickling (pipelines/io/coders.py)
