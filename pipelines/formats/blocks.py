"""CSV bytes in blocks of whole records: a file's byte ranges cut at newlines, blocks read from a
range, and the blank lines that end a file told apart from records."""

import re
import typing
from collections.abc import Iterable, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import READ_BREAKS
from pipelines.formats import csv_records, decode

BLOCK_BYTES = 8 << 20


_BLANK = b" \t\r\n"


_ALL_BLANK = re.compile(rb"[ \t\r\n]*\Z")  # matched from a block's start: stops at its first other byte, no copy


def content_end(path: str, size: int, chunk_bytes: int = 1 << 16) -> int:
    """Where the blank lines that end an uncompressed file begin: the offset just after the line
    holding its last byte that is not a space, tab, carriage return or newline (0 when it has none,
    ``size`` when that line has no newline). The file is read backwards from its end."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        end, first_newline_after = size, size - 1  # the first newline in the blank bytes read so far
        while end > 0:
            start = max(0, end - chunk_bytes)
            handle.seek(start)
            chunk = handle.read(end - start)
            content = len(chunk.rstrip(_BLANK))
            newline = chunk.find(b"\n", content)
            if newline >= 0:
                first_newline_after = start + newline
            if content:
                return first_newline_after + 1
            end = start
    return 0


def read_lines_in_range(handle, start: int, end: int) -> tuple[bytes, int]:
    """Reads the whole lines that start in ``[start, end)``; returns them and their offset."""
    begin = start
    if start > 0:
        handle.seek(start - 1)
        if handle.read(1) != b"\n":
            partial = handle.readline()  # the rest of a line owned by the previous range
            begin = start + len(partial)
    if begin >= end:
        return b"", begin
    # the last line is the one holding byte end - 1: find where it ends, then read once (appending
    # the rest of that line to a block of tens of MB would copy the block)
    handle.seek(end - 1)
    last = handle.readline()
    handle.seek(begin)
    return (handle.read(end - 1 + len(last) - begin) if last else handle.read()), begin


def split_blocks(data: bytes, block_bytes: int) -> Iterable[tuple[bytes, int]]:
    """Cuts ``data`` into blocks of whole lines of about ``block_bytes``; yields (block, offset)."""
    position = 0
    while position < len(data):
        cut = data.find(b"\n", position + block_bytes)
        cut = len(data) if cut < 0 else cut + 1
        yield data[position:cut], position
        position = cut


BLANK_LINES_AT_END = "blank_lines_at_end"  # counter: blank lines that end a CSV file, not rows


class Block(typing.NamedTuple):
    """Whole records of a CSV file as read: ``data`` from byte ``offset``; ``problem`` when the file
    broke off at ``offset`` (``data`` is then empty); ``blank_lines_at_end`` cut after ``data``."""

    data: bytes
    offset: int
    problem: str | None = None
    blank_lines_at_end: int = 0


def cut_blank_lines_at_end(block: bytes) -> tuple[bytes, int]:
    """``block`` without the blank lines (nothing but spaces, tabs or a carriage return) that end
    it, and how many there were; the newline ending its last record is kept."""
    content = len(block.rstrip(b" \t\r\n"))
    newline = block.find(b"\n", content)
    kept = block[: newline + 1] if content and newline >= 0 else block[:content]
    tail = block[len(kept) :]
    return kept, tail.count(b"\n") + (1 if tail and not tail.endswith(b"\n") else 0)


def range_blocks(
    handle, start: int, end: int | None, quoted_newlines: bool, block_bytes: int = BLOCK_BYTES, last: bool = False
) -> Iterator[Block]:
    """Blocks of whole records of one range, with their offsets in the file.

    A byte range (``end`` set) is read at once and cut at lines; a whole file (``end`` None) is
    streamed from ``start`` in blocks, cut at records (``csv_records``), so that memory stays bounded
    however large the file (a compressed one included). The ``last`` range of a file stops before
    the blank lines that end the file (editors and exporters often add some), however many blocks
    they fill: they are not records, and the last block says how many there were.
    """
    held = []  # the last block with records, then the blocks of nothing but blank lines after it
    for block in blocks_as_read(handle, start, end, quoted_newlines, block_bytes):
        if held and block.problem is None and _ALL_BLANK.match(block.data):
            held.append(block)
            continue
        yield from held
        held = [block]
    if last and held and held[-1].problem is None:  # a file that broke off has no end
        cuts = [cut_blank_lines_at_end(block.data) for block in held]
        blank = sum(lines for _, lines in cuts)
        held = [held[0]._replace(data=cuts[0][0], blank_lines_at_end=blank)]
    yield from held


def blocks_as_read(handle, start: int, end: int | None, quoted_newlines: bool, block_bytes: int) -> Iterator[Block]:
    if end is None:
        handle.seek(start)
        position = start
        try:
            for block, offset in csv_records.record_blocks(handle, block_bytes, quoted_newlines):
                yield Block(block, start + offset)
                position = start + offset + len(block)
        except READ_BREAKS as error:  # the record being read when the file broke is not yielded
            yield Block(b"", position, decode.truncated_file_reason(position, f"{type(error).__name__}: {error}"))
        return
    data, begin = read_lines_in_range(handle, start, end)
    for block, offset in split_blocks(data, block_bytes):
        yield Block(block, begin + offset)
