"""TFRecord framing: records framed for writing, and read back with every checksum verified, past damage.

A TFRecord file is a sequence of ``length (uint64 LE) | masked CRC-32C of length | data | masked
CRC-32C of data``. TensorFlow's and Beam's readers stop the whole job at the first damaged byte
(a file cut short by an interrupted copy, a flipped bit). Here damage is reported where it is and
reading goes on, so the records around it are kept and the damage is dead-lettered and counted:

- a record whose data fails its checksum (its length is sound) is one bad record; reading goes on
  with the next;
- a length that fails its checksum means where the next record starts is unknown: the reader
  scans forward for the next offset where a length and its data both pass their checksums (two
  CRC-32Cs, a false match has odds of about 1 in 2**64) and reports the bytes skipped, whose
  number of records cannot be known;
- a file that ends inside a record reports the truncated record;
- a compressed file whose decompression breaks (a ``.tfrecord.gz`` cut short) ends with one
  ``truncated file`` report, the record being read then included.

The file is streamed in blocks: memory is bounded by the block size plus the longest record.
"""

import dataclasses
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import google_crc32c

from pipelines.errors import READ_BREAKS
from pipelines.formats.decode import truncated_file_reason

__all__ = ["LOST_RECORDS", "Record", "batches", "frame", "masked_crc", "read_records"]

LOST_RECORDS = "lost TFRecord records"  # a dead-letter reason: records lost to a damaged length

_HEADER = 12  # length (8 bytes) and its masked CRC (4 bytes)
_FOOTER = 4  # the data's masked CRC
_BLOCK_BYTES = 8 << 20
_MAX_RECORD_BYTES = 1 << 31  # a length beyond this is damage, not a record


@dataclasses.dataclass(frozen=True)
class Record:
    """One record of a TFRecord file, or one piece of damage.

    Attributes:
        index: The record's position among the file's records (damage takes a position too).
        offset: Byte offset of the record (or of the damage) in the uncompressed file.
        data: The record's payload; None for damage.
        problem: Why this is damage, e.g. ``corrupt TFRecord: data checksum mismatch``; None for a
            record.
    """

    index: int
    offset: int
    data: bytes | None
    problem: str | None = None


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(records: list[bytes]) -> bytes:
    """Frames serialized records as TFRecord file content (length, its CRC, data, its CRC each)."""
    parts = []
    for record in records:
        length = struct.pack("<Q", len(record))
        parts += (length, struct.pack("<I", masked_crc(length)), record, struct.pack("<I", masked_crc(record)))
    return b"".join(parts)


class _Stream:
    """A forward-only window over a file handle: ``need(n)`` makes ``n`` bytes available at ``pos``."""

    def __init__(self, handle: BinaryIO, block_bytes: int):
        self._handle = handle
        self._block_bytes = block_bytes
        self.buffer = b""
        self.pos = 0  # position in buffer
        self.base = 0  # file offset of buffer[0]
        self.eof = False
        self.error: str | None = None  # why reading stopped before the end, if it did

    def need(self, n: int) -> bool:
        """Whether ``n`` bytes from ``pos`` are available (reading more if needed)."""
        while len(self.buffer) - self.pos < n and not self.eof:
            try:
                chunk = self._handle.read(max(self._block_bytes, n - (len(self.buffer) - self.pos)))
            except READ_BREAKS as error:  # e.g. a damaged gzip stream
                self.error = f"{type(error).__name__}: {error}"
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self.base += self.pos
            self.buffer = self.buffer[self.pos :] + chunk
            self.pos = 0
        return len(self.buffer) - self.pos >= n

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def remaining(self) -> int:
        return len(self.buffer) - self.pos


def _sound_header(stream: _Stream) -> int | None:
    """The record length at ``stream.pos`` if its header is intact, else None (12 bytes available)."""
    header = stream.buffer[stream.pos : stream.pos + _HEADER]
    (length,) = struct.unpack("<Q", header[:8])
    (crc,) = struct.unpack("<I", header[8:])
    if masked_crc(header[:8]) != crc or length > _MAX_RECORD_BYTES:
        return None
    return length


def _record_at(stream: _Stream) -> tuple[int, bytes] | None:
    """``(length, data)`` of an intact record at ``stream.pos`` (both checksums pass), else None."""
    if not stream.need(_HEADER):
        return None
    length = _sound_header(stream)
    if length is None or not stream.need(_HEADER + length + _FOOTER):
        return None
    data, sound = _payload(stream, length)
    return (length, data) if sound else None


def _payload(stream: _Stream, length: int) -> tuple[bytes, bool]:
    """The data of the record at ``stream.pos`` (its ``length`` bytes available) and whether it
    passes its checksum."""
    start = stream.pos + _HEADER
    data = stream.buffer[start : start + length]
    (crc,) = struct.unpack("<I", stream.buffer[start + length : start + length + _FOOTER])
    return data, masked_crc(data) == crc


def read_records(handle: BinaryIO, block_bytes: int = _BLOCK_BYTES) -> Iterator[Record]:
    """The records of a TFRecord file (opened decompressed), damage included, in file order.

    A file that cannot be read to its end (a damaged gzip stream) ends with one more piece of
    damage naming the error.
    """
    stream = _Stream(handle, block_bytes)
    index = yield from _framed_records(stream)
    if stream.error:
        yield Record(index, stream.offset, None, truncated_file_reason(stream.offset, stream.error))


def batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Runs of up to ``size`` consecutive intact records, in order; each piece of damage alone."""
    run = []
    for record in records:
        if run and (record.problem or len(run) == size):
            yield run
            run = []
        if record.problem:
            yield [record]
        else:
            run.append(record)
    if run:
        yield run


def _framed_records(stream: _Stream) -> Iterator[Record]:
    """The records and damage of ``stream``; returns the next record index."""
    index = 0
    while stream.need(1):
        offset = stream.offset
        if not stream.need(_HEADER):
            if stream.error:  # not the file's end but a break in its decompression: said once, below
                return index
            yield Record(
                index,
                offset,
                None,
                f"truncated TFRecord: the file ends {stream.remaining()} bytes into the header at byte {offset}",
            )
            return index + 1
        length = _sound_header(stream)
        if length is not None:
            if not stream.need(_HEADER + length + _FOOTER):
                if stream.error:
                    return index
                available = stream.remaining() - _HEADER
                yield Record(
                    index,
                    offset,
                    None,
                    f"truncated TFRecord: the file ends {available} bytes into the {length}-byte record "
                    f"at byte {offset}",
                )
                return index + 1
            data, sound = _payload(stream, length)
            stream.pos += _HEADER + length + _FOOTER
            if sound:
                yield Record(index, offset, data)
            else:
                yield Record(
                    index, offset, None, f"corrupt TFRecord: data checksum mismatch in the record at byte {offset}"
                )
            index += 1
            continue
        # the length is damaged: find the next intact record
        stream.pos += 1
        while stream.need(1) and _record_at(stream) is None:
            stream.pos += 1
        skipped = stream.offset - offset
        end = "the end of the file" if not stream.need(1) else f"an intact record at byte {stream.offset}"
        yield Record(
            index,
            offset,
            None,
            f"{LOST_RECORDS}: length checksum mismatch at byte {offset}; {skipped} bytes skipped to {end} "
            "(the records in them are lost, their number unknown)",
        )
        index += 1
    return index
