"""TFRecord framing: every record read back, damage reported where it is and read past."""

import gzip
import io

import pytest

from pipelines.formats import tfrecord_records
from pipelines.formats.tfrecord_records import Record

pytestmark = pytest.mark.unit

RECORDS = [f"record {i} ".encode() * (i % 7 + 1) for i in range(50)]
FRAMED = tfrecord_records.frame(RECORDS)
OFFSETS = [sum(12 + len(r) + 4 for r in RECORDS[:i]) for i in range(len(RECORDS))]


def _read(data: bytes, block_bytes: int = 64) -> list[Record]:
    return list(tfrecord_records.read_records(io.BytesIO(data), block_bytes))


def test_framing_matches_tensorflow_and_reads_back_in_small_blocks():
    import tensorflow as tf

    with tf.io.TFRecordWriter("ram://framing.tfrecord") as writer:  # TensorFlow's own framing
        for record in RECORDS:
            writer.write(record)
    with tf.io.gfile.GFile("ram://framing.tfrecord", "rb") as handle:
        assert handle.read() == FRAMED
    expected = [Record(i, OFFSETS[i], r) for i, r in enumerate(RECORDS)]
    assert _read(FRAMED) == expected
    assert _read(FRAMED, block_bytes=1 << 20) == expected
    assert _read(b"") == []


def test_a_record_failing_its_data_checksum_is_one_bad_record_and_reading_goes_on():
    damaged = bytearray(FRAMED)
    damaged[OFFSETS[10] + 12 + 3] ^= 0x01  # a bit of record 10's data
    records = _read(bytes(damaged))
    assert len(records) == 50
    assert records[10] == Record(
        10, OFFSETS[10], None, f"corrupt TFRecord: data checksum mismatch in the record at byte {OFFSETS[10]}"
    )
    assert [r.data for r in records if r.index != 10] == RECORDS[:10] + RECORDS[11:]


def test_a_damaged_length_skips_to_the_next_intact_record():
    damaged = bytearray(FRAMED)
    damaged[OFFSETS[20] + 2] ^= 0x40  # record 20's length: where 21 starts is unknown
    records = _read(bytes(damaged))
    skipped = OFFSETS[21] - OFFSETS[20]
    assert records[20] == Record(
        20,
        OFFSETS[20],
        None,
        f"lost TFRecord records: length checksum mismatch at byte {OFFSETS[20]}; {skipped} bytes skipped to an intact "
        f"record at byte {OFFSETS[21]} (the records in them are lost, their number unknown)",
    )
    assert [r.data for r in records] == RECORDS[:20] + [None] + RECORDS[21:]
    assert [r.offset for r in records[21:]] == OFFSETS[21:]


def test_garbage_to_the_end_is_one_piece_of_damage():
    records = _read(FRAMED[: OFFSETS[5]] + b"not a record at all" * 10)
    assert [r.data for r in records] == RECORDS[:5] + [None]
    assert records[5].problem.startswith(
        f"lost TFRecord records: length checksum mismatch at byte {OFFSETS[5]}; 190 bytes"
    )
    assert records[5].problem.endswith(
        "skipped to the end of the file (the records in them are lost, their number unknown)"
    )


@pytest.mark.parametrize(
    ("cut", "problem"),
    [
        (OFFSETS[30] + 5, f"truncated TFRecord: the file ends 5 bytes into the header at byte {OFFSETS[30]}"),
        (
            OFFSETS[30] + 12 + 3,
            f"truncated TFRecord: the file ends 3 bytes into the {len(RECORDS[30])}-byte record at byte {OFFSETS[30]}",
        ),
    ],
)
def test_a_file_cut_short_keeps_its_records_and_reports_the_last(cut, problem):
    records = _read(FRAMED[:cut])
    assert [r.data for r in records] == RECORDS[:30] + [None]
    assert records[30] == Record(30, OFFSETS[30], None, problem)


def test_a_gzip_file_cut_short_is_read_through_beams_decompressing_handle(tmp_path):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    path = tmp_path / "cut.tfrecord.gz"
    path.write_bytes(gzip.compress(FRAMED[: OFFSETS[40] + 20]))
    with FileSystems.open(str(path), compression_type=CompressionTypes.AUTO) as handle:
        records = list(tfrecord_records.read_records(handle))
    assert [r.data for r in records] == RECORDS[:40] + [None]
    assert records[40].problem.startswith("truncated TFRecord")


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_a_gzip_stream_that_breaks_ends_the_file_with_one_more_piece_of_damage(damage):
    import random

    rng = random.Random(7)
    records = [rng.randbytes(200) for _ in range(2000)]  # incompressible: the damage lands mid-file
    compressed = bytearray(gzip.compress(tfrecord_records.frame(records)))
    if damage == "cut":  # the .gz itself cut short: its decompressor raises EOFError
        compressed = compressed[: len(compressed) // 2]
    else:  # a damaged deflate stream: zlib.error, or gzip's CRC check at the end
        compressed[len(compressed) // 2 : len(compressed) // 2 + 64] = bytes(64)
    with gzip.open(io.BytesIO(bytes(compressed))) as handle:
        read = list(tfrecord_records.read_records(handle, block_bytes=4096))
    intact = [r.data for r in read if r.problem is None]
    assert 0 < len(intact) < len(records) and intact == records[: len(intact)]  # a prefix, in order
    assert read[-1].problem.startswith("truncated file: decompression stopped after byte ")
    assert read[-1].index == len(read) - 1
    if damage == "cut":  # the record being read when it broke is part of that one report
        assert [r.index for r in read if r.problem] == [len(intact)]


def test_batches_are_runs_of_intact_records_and_each_piece_of_damage_alone():
    records = [Record(i, i * 10, b"x") for i in range(7)]
    records[3] = Record(3, 30, None, "corrupt TFRecord: data checksum mismatch in the record at byte 30")
    runs = [[r.index for r in run] for run in tfrecord_records.batches(records, 2)]
    assert runs == [[0, 1], [2], [3], [4, 5], [6]]
    assert list(tfrecord_records.batches([], 2)) == []
