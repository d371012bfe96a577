"""csv_records: records cut at lines, or at newlines outside quotes, streamed in bounded blocks."""

import csv
import io

import pytest

from pipelines.formats import csv_records

pytestmark = pytest.mark.unit

# records as written by Python's csv module: quoted newlines, escaped quotes, a CRLF newline inside
ROWS = [
    ["1", "plain", "x"],
    ["2", "two\nlines", "y"],
    ["3", 'say ""hi""\nthen\nleave', ""],
    ["4", "", "z"],
    ["5", "crlf\r\ninside", "w"],
    ["6", "last", "v"],
]


def _csv(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _parsed(records: list[bytes]) -> list[list[str]]:
    return [next(csv.reader([r.decode()])) for r in records]


def test_records_end_only_at_newlines_outside_quotes():
    data = _csv(ROWS)
    assert _parsed(csv_records.split_records(data, quoted_newlines=True)) == ROWS
    assert csv_records.split_records(data, quoted_newlines=False) == data.rstrip(b"\n").split(b"\n")
    assert data[csv_records.record_ends(data, True)[0]] == ord("\n")


@pytest.mark.parametrize(
    "data, quoted, expected",
    [
        (b"", True, []),
        (b"a\n\nb", True, [b"a", b"", b"b"]),
        (b'"a\nb"', True, [b'"a\nb"']),  # the last record without its newline
        (b'"a\nb"\n', False, [b'"a', b'b"']),
        (b'x,"a""\nb"\ny\n', True, [b'x,"a""\nb"', b"y"]),  # an escaped quote keeps the value open
    ],
)
def test_split_records_edge_cases(data, quoted, expected):
    assert csv_records.split_records(data, quoted) == expected


@pytest.mark.parametrize("block_bytes", [1, 5, 16, 40, 1 << 20])
@pytest.mark.parametrize("quoted", [True, False])
def test_record_blocks_stream_every_record_once_at_its_offset(block_bytes, quoted):
    data = _csv(ROWS) + b"7,no newline at the end,u"
    got = []
    for block, offset in csv_records.record_blocks(io.BytesIO(data), block_bytes, quoted):
        assert data[offset : offset + len(block)] == block
        assert block.endswith(b"\n") or offset + len(block) == len(data)
        got += csv_records.split_records(block, quoted)
    assert got == csv_records.split_records(data, quoted)
    if quoted:
        assert _parsed(got) == [*ROWS, ["7", "no newline at the end", "u"]]


def test_a_stray_quote_costs_its_own_line_once_the_record_outgrows_the_limit():
    lines = [b"1,ok,a", b'2,5" screen,b'] + [b"%d,fine,c" % i for i in range(3, 40)]
    data = b"\n".join(lines) + b"\n"
    blocks = list(csv_records.record_blocks(io.BytesIO(data), 16, True, max_record_bytes=64))
    records = [r for block, _ in blocks for r in csv_records.split_records(block, True)]
    assert records == lines
    # without a limit the stray quote opens a value that never closes: the rest is one record
    unlimited = list(csv_records.record_blocks(io.BytesIO(data), 16, True, max_record_bytes=1 << 20))
    assert [csv_records.split_records(block, True) for block, _ in unlimited] == [[lines[0]], [b"\n".join(lines[1:])]]


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16"])
def test_utf8_reader_re_encodes_in_small_chunks_forward_only(encoding):
    text = "name,city\nRenée,Zürich\n" + "x,Malmö\n" * 50
    reader = csv_records.Utf8Reader(io.BytesIO(text.encode(encoding)), encoding, chunk_bytes=3)
    header = reader.readline()
    assert header == b"name,city\n" and reader.tell() == len(header)
    reader.seek(len(header) + 1)  # ahead only
    assert reader.read(5) == "enée".encode()
    with pytest.raises(ValueError, match="forward only"):
        reader.seek(0)
    blocks = list(csv_records.record_blocks(reader, 7, False))
    assert b"".join(b for b, _ in blocks).decode() == text[len("name,city\nR") + 4 :]


def test_utf8_reader_passes_undefined_bytes_through_unchanged():
    reader = csv_records.Utf8Reader(io.BytesIO(b"ok,\x80\nbad,\x81\n"), "cp1252")
    assert reader.read() == "ok,€\nbad,".encode() + b"\x81\n"  # 0x81 is not cp1252: invalid UTF-8 downstream
