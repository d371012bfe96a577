"""Cutting CSV bytes into whole records: at every newline, or only at newlines outside quotes.

A CSV record normally ends at a newline. RFC 4180 also lets a quoted value hold newlines
(``"first line\nsecond line"``); such data is cut with ``quoted_newlines=True``, where a record ends
only at a newline with an even number of quote marks before it (since the record's start): an
escaped quote inside a quoted value (``""``) counts twice, so it never changes the parity.

Where a record starts can only be known by reading from the start of the file, so data cut this
way is read as whole files, streamed in blocks (:func:`record_blocks`), never split into byte
ranges (BigQuery's ``allow_quoted_newlines`` and Spark's ``multiLine`` make the same trade).

A stray quote mark (``5" screen``, unquoted) makes every newline after it look quoted. Once the
record it opens has grown past ``max_record_bytes`` with no end, the line holding it is cut off as
a record of its own (which the decoders dead-letter as unbalanced) and the cutting starts afresh
after it, so a stray quote costs its own line and at most ``max_record_bytes`` of buffering.

Files in another text encoding than UTF-8 are cut the same way after :class:`Utf8Reader` has
re-encoded them, so that the rest of the pipeline only ever sees UTF-8.
"""

import codecs
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from pipelines.errors import READ_BREAKS

__all__ = ["MAX_RECORD_BYTES", "Utf8Reader", "record_blocks", "record_ends", "split_records"]

MAX_RECORD_BYTES = 8 << 20  # the longest record (a quoted value spanning lines) read whole
_NEWLINE, _QUOTE = 0x0A, 0x22


def record_ends(data: bytes, quoted_newlines: bool) -> np.ndarray:
    """Offsets in ``data`` (which starts at a record's start) of the newlines that end records."""
    view = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(view == _NEWLINE)
    if not quoted_newlines or not len(newlines):
        return newlines
    quotes = np.flatnonzero(view == _QUOTE)
    if not len(quotes):
        return newlines
    quotes_before = np.searchsorted(quotes, newlines)  # no quote sits at a newline's offset
    return newlines[quotes_before % 2 == 0]


def _last_record_end(data: bytes, quoted_newlines: bool) -> int:
    """The offset of the last newline ending a record in ``data``, or -1."""
    if not quoted_newlines:
        return data.rfind(b"\n")
    ends = record_ends(data, True)
    return int(ends[-1]) if len(ends) else -1


def split_records(data: bytes, quoted_newlines: bool) -> list[bytes]:
    """The records of ``data`` without their ending newline (the last may have none).

    With ``quoted_newlines`` False, the lines of ``data``. A trailing newline adds no empty record.
    """
    if quoted_newlines:
        ends = record_ends(data, True)
        if len(ends) != data.count(b"\n"):  # some newline is inside quotes
            starts = np.concatenate([[0], ends + 1]).tolist()
            records = [data[s:e] for s, e in zip(starts, [*ends.tolist(), len(data)], strict=True)]
            if records[-1].endswith(b"\n"):  # the file's last newline, inside a quote never closed
                records[-1] = records[-1][:-1]
            if records[-1] == b"":
                records.pop()
            return records
    records = data.split(b"\n")
    if records and records[-1] == b"":
        records.pop()
    return records


def record_blocks(
    handle: BinaryIO,
    block_bytes: int,
    quoted_newlines: bool,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[tuple[bytes, int]]:
    """Reads ``handle`` from where it stands to its end in blocks of whole records.

    Memory stays bounded by ``block_bytes`` plus the longest record: the partial record at the end
    of each read is carried into the next block.

    Args:
        handle: A binary file object positioned at a record's start (after the header).
        block_bytes: About how many bytes to read at a time.
        quoted_newlines: Whether a newline inside quotes belongs to its value (see the module).
        max_record_bytes: With ``quoted_newlines``, how long an unfinished record may grow before
            its first line is taken for a line with a stray quote and cut off on its own.

    Yields:
        ``(block, offset)``: newline-terminated records (the file's last may lack its newline) and
        the block's offset from where ``handle`` stood.
    """
    pending, offset = b"", 0
    while True:
        chunk = handle.read(block_bytes)
        data = pending + chunk if pending else chunk
        if not chunk:
            if data:
                yield data, offset
            return
        cut = _last_record_end(data, quoted_newlines) + 1
        if not cut and quoted_newlines and len(data) > max_record_bytes:
            cut = data.find(b"\n") + 1  # a stray quote: its line is a record on its own
        if not cut:  # no whole record yet
            pending = data
            continue
        yield data[:cut], offset
        pending, offset = data[cut:], offset + cut


class Utf8Reader:
    """A binary file of text in another encoding (cp1252, latin-1, UTF-16, ...), read as UTF-8 bytes.

    Forward only: ``read``, ``readline`` and a ``seek`` ahead of the current position (offsets count
    UTF-8 bytes). Bytes the encoding does not define are passed through unchanged
    (``surrogateescape``), so the row holding them is dead-lettered as invalid UTF-8 rather than
    dropped or silently altered. When the underlying file breaks (a cut-short gzip), what was
    decoded before the break is read first, and the error is raised after it.
    """

    def __init__(self, raw: BinaryIO, encoding: str, chunk_bytes: int = 1 << 20):
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
        self._chunk_bytes = chunk_bytes
        self._buffer = b""
        self._eof = False
        self._position = 0
        self._error: BaseException | None = None

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._eof:
            if self._error is not None:  # the file broke: what was decoded before goes first
                if self._buffer:
                    return
                raise self._error
            try:
                raw = self._raw.read(max(size - len(self._buffer), self._chunk_bytes))
            except READ_BREAKS as error:  # a compressed file cut short or damaged
                self._error = error
                continue
            self._eof = not raw
            self._buffer += self._decoder.decode(raw, final=self._eof).encode("utf-8", "surrogateescape")

    def _take(self, size: int) -> bytes:
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self._position += len(out)
        return out

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of UTF-8 (all that is left when ``size`` is negative)."""
        if size is None or size < 0:
            size = 1 << 62
        self._fill(size)
        return self._take(size)

    def readline(self) -> bytes:
        """The next line, with its newline."""
        while b"\n" not in self._buffer and not self._eof:
            self._fill(len(self._buffer) + self._chunk_bytes)
        end = self._buffer.find(b"\n")
        return self._take(len(self._buffer) if end < 0 else end + 1)

    def seek(self, position: int) -> None:
        """Moves ahead to ``position`` (UTF-8 bytes from the start); a reader cannot move back."""
        if position < self._position:
            raise ValueError("a re-encoded file is read forward only")
        while self._position < position and self.read(min(position - self._position, self._chunk_bytes)):
            pass

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
