"""ReadRawData: byte ranges that cover every line once, headers checked, formats told apart."""

import io

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import read
from pipelines.errors import UsageError
from tests.helpers import sample_lines


@pytest.mark.parametrize("range_bytes", [1, 7, 16, 17, 50, 1000])
def test_byte_ranges_cover_every_line_exactly_once(range_bytes):
    lines = [b"h", b"", b"alpha", b"b", b"", b"gamma-delta-epsilon", b"z"]
    for trailing_newline in (True, False):
        data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
        got = []
        for start in range(0, len(data), range_bytes):
            chunk, begin = read._read_lines_in_range(io.BytesIO(data), start, min(start + range_bytes, len(data)))
            assert data[begin : begin + len(chunk)] == chunk
            if chunk:
                got.extend(chunk[:-1].split(b"\n") if chunk.endswith(b"\n") else chunk.split(b"\n"))
        assert got == lines, (range_bytes, trailing_newline)


def test_blocks_cut_on_line_boundaries():
    data = b"aaaa\nbb\ncccccc\nd"
    blocks = list(read._blocks(data, 3))
    assert blocks == [(b"aaaa\n", 0), (b"bb\ncccccc\n", 5), (b"d", 15)]


def test_input_format_of():
    assert read.input_format_of("gs://b/x/part-1.CSV") == read.CSV
    assert read.input_format_of("a.csv.gz") == read.CSV
    assert read.input_format_of("a.parquet") == read.PARQUET
    assert read.input_format_of("train-00000-of-00001.tfrecord.gz") == read.TFRECORD
    with pytest.raises(UsageError, match="cannot tell the format"):
        read.input_format_of("a.json")


def test_a_header_that_does_not_match_the_schema_dead_letters_its_file(tmp_path, taxi_dataset):
    header, lines = sample_lines(2)
    path = tmp_path / "bad_header.csv"
    path.write_text(header.replace("fare,", "fares,") + "\n" + "\n".join(lines) + "\n")
    (rng,) = read._plan_csv_ranges(read.expand_patterns([str(path)]), taxi_dataset.schema, 1 << 20)
    assert rng.header_error == "header mismatch: missing ['fare'], unexpected ['fares'], 18 columns"
    (latin1,) = read._plan_csv_ranges([(_write(tmp_path / "l.csv", b"caf\xe9\n1\n"), 8)], taxi_dataset.schema, 99)
    assert latin1.header_error == "header mismatch: the header line is not UTF-8"


def test_a_byte_order_mark_before_the_header_is_not_part_of_the_first_column(tmp_path, taxi_dataset):
    header, lines = sample_lines(3)
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + "\r\n" + "\r\n".join(lines) + "\r\n").encode())
    (rng,) = read._plan_csv_ranges(read.expand_patterns([str(path)]), taxi_dataset.schema, 1 << 20)
    assert rng.header_error is None and rng.columns == tuple(header.split(","))
    assert rng.start == len(header) + 5  # BOM and CRLF included in the header bytes
    with open(path, "rb") as handle:
        data, _ = read._read_lines_in_range(handle, rng.start, rng.end)
    from pipelines import decode

    block = decode.decode_csv_block(data, rng.columns, taxi_dataset.schema, str(path))
    assert (block.batch.num_rows, block.dead_letters) == (3, [])
    assert block.batch.column(block.batch.schema.get_field_index("tips")).to_pylist() == [
        [float(line.split(",")[-1])] for line in lines
    ]


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_pattern_that_matches_nothing_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no input file matches"):
        read.expand_patterns([str(tmp_path / "*.csv")])


def test_read_raw_data_in_small_ranges_keeps_every_row(tmp_path, taxi_dataset):
    header, lines = sample_lines(40)
    columns = header.split(",")
    bad = ["1,2,3", lines[0] + ",extra"]
    body = lines[:20] + bad + lines[20:]
    path = tmp_path / "part.csv"
    path.write_text(header + "\n" + "\n".join(body) + "\n")
    files = read.expand_patterns([str(path)])
    expected_fares = sorted(line.split(",")[columns.index("fare")] for line in lines)
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        raw = p | read.ReadRawData(files, taxi_dataset.schema, range_bytes=500)
        fares = (
            raw[read.ReadRawData.BATCHES]
            | beam.FlatMap(lambda element: element[0].column("fare").to_pylist())
            | beam.Map(lambda fare: f"{fare[0]:g}" if fare else "")
        )
        assert_that(fares, equal_to([f"{float(f):g}" if f else "" for f in expected_fares]), label="CheckFares")
        assert_that(
            raw[read.ReadRawData.DEAD_LETTER] | beam.Map(lambda d: (d["raw"], d["reason"])),
            equal_to(
                [
                    (bad[0], "wrong field count: expected 18, found 3"),
                    (bad[1], "wrong field count: expected 18, found 19"),
                ]
            ),
            label="CheckDeadLetters",
        )


@pytest.mark.parametrize("dofn", [read._DecodeCsvRange, read._DecodeParquetFile, read._DecodeExampleBatch])
def test_no_decoder_makes_beam_warn_about_yield_and_return(dofn):
    """Beam logs a warning for every ParDo whose process() source has both ``yield`` and ``return
    <value>`` (nested functions included); a Parquet run used to print it."""
    from apache_beam.transforms import core

    assert not core._check_fn_use_yield_and_return(dofn.process)
