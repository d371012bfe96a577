"""ReadRawData: byte ranges that cover every line once, headers checked, formats told apart."""

import csv
import gzip
import io

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.errors import UsageError
from pipelines.formats import blocks as byte_blocks
from pipelines.formats import csv_records
from pipelines.io import input_files, read, text_records
from tests.helpers import sample_lines

pytestmark = pytest.mark.pipeline


@pytest.mark.parametrize("range_bytes", [1, 7, 16, 17, 50, 1000])
def test_byte_ranges_cover_every_line_exactly_once(range_bytes):
    lines = [b"h", b"", b"alpha", b"b", b"", b"gamma-delta-epsilon", b"z"]
    for trailing_newline in (True, False):
        data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
        got = []
        for start in range(0, len(data), range_bytes):
            chunk, begin = byte_blocks.read_lines_in_range(io.BytesIO(data), start, min(start + range_bytes, len(data)))
            assert data[begin : begin + len(chunk)] == chunk
            if chunk:
                got.extend(chunk[:-1].split(b"\n") if chunk.endswith(b"\n") else chunk.split(b"\n"))
        assert got == lines, (range_bytes, trailing_newline)


def test_blocks_cut_on_line_boundaries():
    data = b"aaaa\nbb\ncccccc\nd"
    blocks = list(byte_blocks.split_blocks(data, 3))
    assert blocks == [(b"aaaa\n", 0), (b"bb\ncccccc\n", 5), (b"d", 15)]


def test_input_format_of():
    assert input_files.input_format_of("gs://b/x/part-1.CSV") == input_files.CSV
    assert input_files.input_format_of("a.csv.gz") == input_files.CSV
    assert input_files.input_format_of("a.parquet") == input_files.PARQUET
    assert input_files.input_format_of("train-00000-of-00001.tfrecord.gz") == input_files.TFRECORD
    with pytest.raises(UsageError, match="cannot tell the format"):
        input_files.input_format_of("a.json")


def test_a_header_that_does_not_match_the_schema_dead_letters_its_file(tmp_path, taxi_dataset):
    header, lines = sample_lines(2)
    path = tmp_path / "bad_header.csv"
    path.write_text(header.replace("fare,", "fares,") + "\n" + "\n".join(lines) + "\n")
    (rng,) = read._plan_csv_ranges(input_files.expand_patterns([str(path)]), taxi_dataset.schema, 1 << 20)
    assert rng.header_error == "header mismatch: missing ['fare'], repeated none, 18 columns"
    twice = tmp_path / "twice.csv"
    twice.write_text(header + ",tips\n" + "\n".join(f"{line},0" for line in lines) + "\n")
    (rng,) = read._plan_csv_ranges(input_files.expand_patterns([str(twice)]), taxi_dataset.schema, 1 << 20)
    assert rng.header_error == "header mismatch: missing none, repeated ['tips'], 19 columns"


def test_columns_the_schema_lacks_are_read_past_and_listed(tmp_path, taxi_dataset):
    header, lines = sample_lines(3)
    plain, extra = tmp_path / "plain.csv", tmp_path / "extra.csv"
    plain.write_text(header + "\n" + "\n".join(lines) + "\n")
    extra.write_text(f"id,{header},note\n" + "\n".join(f"{i},{line},n" for i, line in enumerate(lines)) + "\n")
    readers = {
        path: read.ReadRawData(input_files.expand_patterns([str(path)]), taxi_dataset.schema) for path in (plain, extra)
    }
    assert readers[plain].ignored_columns == {}
    assert readers[extra].ignored_columns == {str(extra): ["id", "note"]}
    (rng,) = read._plan_csv_ranges(input_files.expand_patterns([str(extra)]), taxi_dataset.schema, 1 << 20)
    assert rng.header_error is None
    from pipelines.formats import decode_csv

    with open(extra, "rb") as handle:
        data, _ = byte_blocks.read_lines_in_range(handle, rng.start, rng.end)
    block = decode_csv.decode_csv_block(data, rng.columns, taxi_dataset.schema, str(extra))
    with open(plain, "rb") as handle:
        plain_data, _ = byte_blocks.read_lines_in_range(handle, len(header) + 1, plain.stat().st_size)
    expected = decode_csv.decode_csv_block(plain_data, header.split(","), taxi_dataset.schema, str(plain))
    assert block.dead_letters == [] and block.batch.equals(expected.batch)
    (latin1,) = read._plan_csv_ranges([(_write(tmp_path / "l.csv", b"caf\xe9\n1\n"), 8)], taxi_dataset.schema, 99)
    assert (
        latin1.header_error == "header mismatch: the header line is not UTF-8 (pass --encoding, e.g. utf-16 or cp1252)"
    )


def test_a_byte_order_mark_before_the_header_is_not_part_of_the_first_column(tmp_path, taxi_dataset):
    header, lines = sample_lines(3)
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + "\r\n" + "\r\n".join(lines) + "\r\n").encode())
    (rng,) = read._plan_csv_ranges(input_files.expand_patterns([str(path)]), taxi_dataset.schema, 1 << 20)
    assert rng.header_error is None and rng.columns == tuple(header.split(","))
    assert rng.start == len(header) + 5  # BOM and CRLF included in the header bytes
    with open(path, "rb") as handle:
        data, _ = byte_blocks.read_lines_in_range(handle, rng.start, rng.end)
    from pipelines.formats import decode_csv

    block = decode_csv.decode_csv_block(data, rng.columns, taxi_dataset.schema, str(path))
    assert (block.batch.num_rows, block.dead_letters) == (3, [])
    assert block.batch.column(block.batch.schema.get_field_index("tips")).to_pylist() == [
        [float(line.split(",")[-1])] for line in lines
    ]


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_pattern_that_matches_nothing_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no input file matches"):
        input_files.expand_patterns([str(tmp_path / "*.csv")])


def test_a_relative_glob_matches_and_each_file_is_read_once_however_it_is_named(tmp_path, monkeypatch):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n2\n")
    monkeypatch.chdir(tmp_path)
    files = input_files.expand_patterns(["*.csv", "a.csv", "./a.csv", str(tmp_path / "a.csv")])
    assert files == [(str(tmp_path / "a.csv"), 4), (str(tmp_path / "b.csv"), 4)]


@pytest.mark.parametrize("encoding", [None, "utf-16"])
def test_a_csv_gz_cut_short_keeps_every_whole_record_before_the_cut_and_says_where_it_broke(
    tmp_path, taxi_dataset, encoding
):
    header, lines = sample_lines()
    text = header + "\n" + "\n".join(lines) + "\n"
    compressed = gzip.compress(text.encode(encoding or "utf-8"))
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(compressed[: len(compressed) // 2])  # a download cut short
    with gzip.open(path, "rb") as handle:  # what survives, as Python's gzip reads it
        survived = b""
        try:
            while piece := handle.read1(1 << 16):
                survived += piece
        except EOFError:
            pass
    survived = survived.decode(encoding or "utf-8", errors="ignore")
    whole = survived[: survived.rfind("\n") + 1].splitlines()[1:]  # whole records after the header
    assert 0 < len(whole) < len(lines)
    csv_format = input_files.CsvFormat(encoding=encoding)
    files = input_files.expand_patterns([str(path)])
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        raw = p | read.ReadRawData(files, taxi_dataset.schema, csv_format=csv_format)
        rows = raw[read.ReadRawData.BATCHES] | beam.Map(lambda element: element[0].num_rows)
        assert_that(rows | beam.CombineGlobally(sum), equal_to([len(whole)]), label="WholeRecords")
        reasons = raw[read.ReadRawData.DEAD_LETTER] | beam.Map(lambda d: (d["raw"], d["reason"].split(" (")[0]))
        offset = len(header) + 1 + len("\n".join(whole)) + 1
        assert_that(
            reasons,
            equal_to([("", f"truncated file: decompression stopped after byte {offset}")]),
            label="OneDeadLetter",
        )


def test_a_directory_stands_for_its_data_files_as_spark_writes_a_dataset(tmp_path, monkeypatch):
    dataset = tmp_path / "trips.parquet"
    (dataset / "month=1").mkdir(parents=True)
    for name in ("part-0.parquet", "month=1/part-1.parquet", "_SUCCESS", ".part-0.parquet.crc", "_metadata"):
        (dataset / name).write_bytes(b"12345")
    monkeypatch.chdir(tmp_path)
    expected = [(str(dataset / "month=1" / "part-1.parquet"), 5), (str(dataset / "part-0.parquet"), 5)]
    assert input_files.expand_patterns(["trips.parquet"]) == expected
    assert input_files.expand_patterns([str(dataset) + "/"]) == expected
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no input file matches"):
        input_files.expand_patterns(["empty"])


def test_read_raw_data_in_small_ranges_keeps_every_row(tmp_path, taxi_dataset):
    header, lines = sample_lines(40)
    columns = header.split(",")
    bad = ["1,2,3", lines[0] + ",extra"]
    body = lines[:20] + bad + lines[20:]
    path = tmp_path / "part.csv"
    path.write_text(header + "\n" + "\n".join(body) + "\n")
    files = input_files.expand_patterns([str(path)])
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


def test_a_damaged_tfrecord_file_keeps_its_intact_records_and_dead_letters_the_damage(tmp_path, taxi_dataset):
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipelines.formats import tfrecord_records

    header, lines = sample_lines(300)
    columns = header.split(",")
    fare = columns.index("fare")
    types = {f.name: f.type for f in taxi_dataset.schema.feature}
    examples = []
    for line in lines:
        feature = {}
        for name, cell in zip(columns, line.split(","), strict=True):
            if not cell:
                continue
            if types[name] == schema_pb2.BYTES:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[cell.encode()]))
            elif types[name] == schema_pb2.INT:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(cell)]))
            else:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(cell)]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    framed = bytearray(tfrecord_records.frame(examples))
    starts = [sum(16 + len(e) for e in examples[:i]) for i in range(len(examples))]
    framed[starts[100] + 20] ^= 0x01  # a bit of record 100's data
    path = tmp_path / "damaged.tfrecord"
    path.write_bytes(bytes(framed[: starts[299] + 30]))  # cut inside the last record
    kept = [float(line.split(",")[fare]) for i, line in enumerate(lines) if i not in (100, 299)]
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        raw = p | read.ReadRawData(input_files.expand_patterns([str(path)]), taxi_dataset.schema)
        fares = raw[read.ReadRawData.BATCHES] | beam.FlatMap(lambda element: element[0].column("fare").to_pylist())
        assert_that(fares | beam.Map(lambda v: round(v[0], 2)), equal_to([round(f, 2) for f in kept]), label="Kept")
        assert_that(
            raw[read.ReadRawData.DEAD_LETTER] | beam.Map(lambda d: (d["offset"], d["reason"].split(" at byte")[0])),
            equal_to(
                [
                    (100, "corrupt TFRecord: data checksum mismatch in the record"),
                    (299, f"truncated TFRecord: the file ends 18 bytes into the {len(examples[299])}-byte record"),
                ]
            ),
            label="DeadLetters",
        )


def test_a_damaged_parquet_row_group_is_dead_lettered_row_by_row_and_the_others_are_kept(
    tmp_path, taxi_dataset, monkeypatch
):
    monkeypatch.setattr(read, "_PARQUET_BATCH", 100)  # groups of 250 rows read (and dead-lettered) in 3 batches
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    header, lines = sample_lines(1000)
    assert header.startswith("pickup_community_area,")
    lines[750] = "99" + lines[750][lines[750].index(",") :]  # outside 1..77, in the 4th group: its file index
    path = tmp_path / "trips.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    table = pa_csv.read_csv(path)
    table = table.append_column("notes", pa.array(["x"] * table.num_rows))  # not read at all
    pq.write_table(table, tmp_path / "trips.parquet", row_group_size=250)
    metadata = pq.ParquetFile(tmp_path / "trips.parquet").metadata
    damaged = bytearray((tmp_path / "trips.parquet").read_bytes())
    start = metadata.row_group(1).column(table.column_names.index("fare")).data_page_offset
    damaged[start + 10 : start + 50] = b"\xff" * 40  # the 2nd row group's fare pages
    (tmp_path / "trips.parquet").write_bytes(bytes(damaged))
    files = input_files.expand_patterns([str(tmp_path / "trips.parquet")])
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        raw = p | read.ReadRawData(files, taxi_dataset.schema)
        rows = raw[read.ReadRawData.BATCHES] | beam.Map(lambda element: element[0].num_rows)
        assert_that(rows | beam.CombineGlobally(sum), equal_to([1000 - 250 - 1]), label="Kept")
        assert_that(rows | beam.combiners.Count.Globally(), equal_to([3 * 3]), label="BatchesOf100")
        dead = raw[read.ReadRawData.DEAD_LETTER] | beam.Map(lambda d: (d["offset"], d["reason"].split(":")[0]))
        expected = [(i, "unreadable Parquet row group") for i in range(250, 500)] + [(750, "outside domain")]
        assert_that(dead, equal_to(expected), label="DeadLetters")


@pytest.mark.parametrize("dofn", [read._DecodeCsvRange, read._DecodeParquetFile, read._DecodeTFRecordFile])
def test_no_decoder_makes_beam_warn_about_yield_and_return(dofn):
    """Beam logs a warning for every ParDo whose process() source has both ``yield`` and ``return
    <value>`` (nested functions included); none of ours may."""
    from apache_beam.transforms import core

    assert not core._check_fn_use_yield_and_return(dofn.process)


def _taxi_csv_with_multiline_companies(n: int) -> tuple[str, list[str], list[str]]:
    """The sample's header, ``n`` of its rows as CSV records with every third company name holding a
    newline (quoted), and the company names."""
    header, lines = sample_lines(n)
    columns = header.split(",")
    index = columns.index("company")
    records, companies = [], []
    for i, row in enumerate(csv.reader(lines)):
        if i % 3 == 0:
            row[index] = f'{row[index]}\nbranch "{i}"'
        companies.append(row[index])
        records.append(text_records.csv_line(row))
    return header, records, companies


def test_with_quoted_newlines_each_file_is_one_range_streamed_in_blocks(tmp_path, taxi_dataset):
    header, records, _ = _taxi_csv_with_multiline_companies(30)
    data = ("\n".join(records) + "\n").encode()
    plain = _write(tmp_path / "multi.csv", header.encode() + b"\n" + data)
    files = input_files.expand_patterns([plain])
    assert len(read._plan_csv_ranges(files, taxi_dataset.schema, 64)) > 1
    (rng,) = read._plan_csv_ranges(files, taxi_dataset.schema, 64, input_files.CsvFormat(quoted_newlines=True))
    assert (rng.start, rng.end) == (len(header) + 1, None)
    gzipped = _write(tmp_path / "multi.csv.gz", gzip.compress(header.encode() + b"\n" + data))
    for path in (plain, gzipped):
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
            blocks = list(byte_blocks.range_blocks(handle, rng.start, None, True, block_bytes=100))
        assert len(blocks) > 5
        assert blocks[0][1] == rng.start
        assert all(offset == rng.start + data.find(block) for block, offset, *_ in blocks)
        assert b"".join(block for block, *_ in blocks) == data
        assert [r.decode() for block, *_ in blocks for r in csv_records.split_records(block, True)] == records


def test_read_raw_data_with_quoted_newlines_keeps_multiline_values(tmp_path, taxi_dataset):
    header, records, companies = _taxi_csv_with_multiline_companies(40)
    bad = '1,2,"3\n4"'
    path = _write(
        tmp_path / "multi.csv", (header + "\n" + "\n".join([*records[:20], bad, *records[20:]]) + "\n").encode()
    )
    files = input_files.expand_patterns([path])
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        raw = p | read.ReadRawData(
            files, taxi_dataset.schema, range_bytes=500, csv_format=input_files.CsvFormat(quoted_newlines=True)
        )
        got = raw[read.ReadRawData.BATCHES] | beam.FlatMap(lambda element: element[0].column("company").to_pylist())
        assert_that(got, equal_to([[c.encode()] if c else None for c in companies]), label="CheckCompanies")
        assert_that(
            raw[read.ReadRawData.DEAD_LETTER] | beam.Map(lambda d: (d["raw"], d["reason"])),
            equal_to([(bad, "wrong field count: expected 18, found 3")]),
            label="CheckDeadLetters",
        )


def test_text_files_are_parsed_whole_so_a_multiline_value_is_never_cut(tmp_path):
    rows = [[str(i), f"worker{i % 3}", f"line one\nline {i}" if i % 4 == 0 else f"plain {i}"] for i in range(40)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["item", "annotator", "text"], *rows])
    path = _write(tmp_path / "annotations.csv", out.getvalue().encode())
    (text_file,) = text_records.plan_text_files(input_files.expand_patterns([path]))
    assert text_file == text_records.TextFile(path, len(b"item,annotator,text\n"))
    parsed, blocks = [], [block.data for block in text_records.text_record_blocks(text_file, block_bytes=40)]
    for block in blocks:
        table, ragged = text_records.parse_csv_block(block, ["item", "annotator", "text"])
        assert ragged == []
        parsed += [[v.decode() for v in row.values()] for row in table.to_pylist()]
    assert len(blocks) > 10
    assert parsed == rows


def test_record_offsets_locate_records_across_blocks_and_quoted_newlines(tmp_path):
    """Dead letters of whole-file CSV reads (labels, dedup) name their record's byte offset: the
    block's offset plus the record's start, a quoted value's newline not ending a record."""
    rows = ["1,a,plain", '2,b,"two\nlines"', "3,c", "4,d,plain", "5,e,x,y", "6,f,plain"] * 5
    data = ("item,annotator,text\n" + "\n".join(rows) + "\n").encode()
    path = _write(tmp_path / "a.csv", data)
    (text_file,) = text_records.plan_text_files(input_files.expand_patterns([path]))
    located, table_rows = [], []
    for block in text_records.text_record_blocks(text_file, block_bytes=50):
        table, ragged = text_records.parse_csv_block(block.data, ["item", "annotator", "text"])
        offsets = text_records.RecordOffsets(block.data, block.offset, [index for index, _, _ in ragged])
        located += [(data[offsets.of_record(index) :].split(b"\n")[0], raw) for index, raw, _ in ragged]
        table_rows += [data[offsets.of_row(row) :].split(b"\n")[0] for row in range(table.num_rows)]
        assert offsets.of_record(table.num_rows + len(ragged)) is None  # past the block's records
    assert located == [(b"3,c", "3,c"), (b"5,e,x,y", "5,e,x,y")] * 5
    assert table_rows == [r.split("\n")[0].encode() for r in rows if r[0] not in "35"]


def test_a_parquet_column_with_no_value_at_all_is_read_as_missing(tmp_path, taxi_dataset):
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from pipelines.formats import decode

    header, lines = sample_lines(20)
    table = pa_csv.read_csv(io.BytesIO(("\n".join([header, *lines]) + "\n").encode()))
    index = table.schema.get_field_index("trip_seconds")
    table = table.set_column(index, "trip_seconds", pa.nulls(table.num_rows))  # type null, as pandas writes
    pq.write_table(table, tmp_path / "nulls.parquet")
    read._check_parquet_columns(str(tmp_path / "nulls.parquet"), taxi_dataset.schema)  # no UsageError
    block = decode.decode_table(pq.read_table(tmp_path / "nulls.parquet"), taxi_dataset.schema, "nulls.parquet")
    assert block.batch.num_rows + len(block.dead_letters) == 20
    assert block.batch.column(block.batch.schema.get_field_index("trip_seconds")).null_count == block.batch.num_rows
    bad = table.set_column(index, "trip_seconds", pa.array(["x"] * table.num_rows))
    pq.write_table(bad, tmp_path / "text.parquet")
    with pytest.raises(UsageError, match="column 'trip_seconds' has type string, the schema says INT"):
        read._check_parquet_columns(str(tmp_path / "text.parquet"), taxi_dataset.schema)


def test_a_compressed_file_is_read_to_its_end_past_beams_16_mib_read_buffer(tmp_path, taxi_dataset):
    """Beam's ``CompressedFile.read()`` without a size returns at most 16 MiB: every row past a
    .csv.gz input's first 16 MiB of text must still be read."""
    header, lines = sample_lines()
    body = ("\n".join(lines) + "\n").encode() * 12  # 21 MiB of text
    assert len(body) > 16 << 20
    path = _write(tmp_path / "big.csv.gz", gzip.compress(header.encode() + b"\n" + body, compresslevel=1))
    (rng,) = read._plan_csv_ranges(input_files.expand_patterns([path]), taxi_dataset.schema, 1 << 20)
    for quoted in (False, True):
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
            blocks = list(byte_blocks.range_blocks(handle, rng.start, rng.end, quoted))
        assert sum(len(block) for block, *_ in blocks) == len(body)
        assert sum(block.count(b"\n") for block, *_ in blocks) == 12 * len(lines)
    (text_file,) = text_records.plan_text_files(input_files.expand_patterns([path]))
    assert b"".join(block.data for block in text_records.text_record_blocks(text_file)) == body


def test_each_csv_file_has_its_delimiter_a_tab_for_tsv_files_unless_told(tmp_path, taxi_dataset):
    header, lines = sample_lines(30)
    semi = _write(tmp_path / "semi.csv", ("\n".join(x.replace(",", ";") for x in [header, *lines]) + "\n").encode())
    tabs = _write(tmp_path / "tabs.tsv", ("\n".join(x.replace(",", "\t") for x in [header, *lines]) + "\n").encode())
    assert [input_files.delimiter_of(p) for p in ("a.csv", "a.TSV", "a.tsv.gz", "a.txt")] == [",", "\t", "\t", ","]
    assert input_files.delimiter_of("a.tsv", ";") == ";"
    files = input_files.expand_patterns([semi, tabs])
    ranges = read._plan_csv_ranges(files, taxi_dataset.schema, 1 << 20, input_files.CsvFormat(delimiter=None))
    assert [(r.delimiter, r.header_error is None) for r in ranges] == [(",", False), ("\t", True)]
    (semi_range,) = read._plan_csv_ranges(files[:1], taxi_dataset.schema, 1 << 20, input_files.CsvFormat(delimiter=";"))
    assert semi_range.header_error is None and semi_range.columns == tuple(header.split(","))
    fares = sorted(line.split(",")[header.split(",").index("fare")] for line in lines)
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as p:
        raw = p | read.ReadRawData(
            input_files.expand_patterns([semi]), taxi_dataset.schema, csv_format=input_files.CsvFormat(delimiter=";")
        )
        got = raw[read.ReadRawData.BATCHES] | beam.FlatMap(lambda element: element[0].column("fare").to_pylist())
        assert_that(got | beam.Map(lambda fare: f"{fare[0]:g}"), equal_to([f"{float(f):g}" for f in fares]))


@pytest.mark.parametrize(
    ("block", "kept", "blank"),
    [
        (b"a,1\nb,2\n", b"a,1\nb,2\n", 0),
        (b"a,1\nb,2", b"a,1\nb,2", 0),  # no newline at the end: nothing to cut
        (b"a,1\nb,2\n\n", b"a,1\nb,2\n", 1),
        (b"a,1\r\nb,2\r\n\r\n \t\r\n", b"a,1\r\nb,2\r\n", 2),
        (b"a,1\nb,2 \n  ", b"a,1\nb,2 \n", 1),  # spaces after the last record stay; a last blank line counts
        (b"a,1\n\nb,2\n", b"a,1\n\nb,2\n", 0),  # a blank line inside is not cut (it is dead-lettered)
        (b"\n\n", b"", 2),
        (b"", b"", 0),
    ],
)
def test_blank_lines_that_end_a_block_are_cut_and_counted(block, kept, blank):
    assert byte_blocks.cut_blank_lines_at_end(block) == (kept, blank)


def test_only_the_last_range_of_a_file_stops_before_its_blank_lines(tmp_path, taxi_dataset):
    header, lines = sample_lines(40)
    body = "\n".join(lines) + "\n\n \n\n"
    path = _write(tmp_path / "blank_end.csv", (header + "\n" + body).encode())
    ranges = read._plan_csv_ranges(input_files.expand_patterns([path]), taxi_dataset.schema, 1000)
    assert len(ranges) > 2 and [r.last for r in ranges] == [False] * (len(ranges) - 1) + [True]
    blocks = []
    for rng in ranges:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            blocks += list(byte_blocks.range_blocks(handle, rng.start, rng.end, False, last=rng.last))
    assert b"".join(b.data for b in blocks).decode() == "\n".join(lines) + "\n"
    assert [b.blank_lines_at_end for b in blocks] == [0] * (len(blocks) - 1) + [3]


@pytest.mark.parametrize("compressed", [False, True])
def test_blank_lines_that_end_a_file_are_not_rows_however_many_ranges_and_blocks_they_span(
    tmp_path, taxi_dataset, compressed
):
    """2,000 bytes of blank lines end the file: range boundaries (every 500 bytes) and block
    boundaries (every 64 bytes) fall among them, and none of them is taken for a row."""
    header, lines = sample_lines(40)
    blank_lines = ["", " ", "\t\r"] * 250
    body = "\n".join(lines) + "\n" + "\n".join(blank_lines)  # the last blank line has no newline
    data = (header + "\n" + body).encode()
    path = _write(
        tmp_path / ("blank_end.csv.gz" if compressed else "blank_end.csv"), gzip.compress(data) if compressed else data
    )
    ranges = read._plan_csv_ranges(input_files.expand_patterns([path]), taxi_dataset.schema, 500)
    content_end = len(header) + 1 + len("\n".join(lines)) + 1
    if not compressed:
        assert byte_blocks.content_end(path, len(data), chunk_bytes=100) == content_end
        assert all(r.end <= content_end for r in ranges[:-1]) and ranges[-1].end == len(data)
    blocks = []
    for rng in ranges:
        with input_files.open_input(path) as handle:
            blocks += list(byte_blocks.range_blocks(handle, rng.start, rng.end, False, block_bytes=64, last=rng.last))
    assert b"".join(b.data for b in blocks).decode() == "\n".join(lines) + "\n"
    assert [b.blank_lines_at_end for b in blocks] == [0] * (len(blocks) - 1) + [len(blank_lines)]


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"h\na\nb\n", 6),
        (b"h\na\nb", 5),  # no newline after the last line: the file's size
        (b"h\na\nb \r\n\n  \n", 8),  # spaces after a value belong to its line
        (b"h\na\n\nb\n\n", 7),  # a blank line inside is content
        (b"\n \n", 0),
        (b"", 0),
    ],
)
def test_content_end_is_where_the_blank_lines_that_end_a_file_begin(tmp_path, data, end):
    path = _write(tmp_path / "f.csv", data)
    assert [byte_blocks.content_end(path, len(data), chunk_bytes=c) for c in (1, 2, 3, 1 << 16)] == [end] * 4


def test_a_tfrecord_files_ignored_features_are_those_of_its_examples_beyond_the_schema(tmp_path, taxi_dataset):
    """Decoding lists a TFRecord file's features the schema lacks, from every tf.Example (a later
    one's too); damage before them, a gzip file, an empty file and a record that is not a
    tf.Example are handled, not raised."""
    import tensorflow as tf

    from pipelines.formats import tfrecord_records
    from pipelines.lineage import run_record

    def example(**features) -> bytes:
        values = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])) for name in features}
        return tf.train.Example(features=tf.train.Features(feature=values)).SerializeToString()

    first = example(trip_start_hour=1, trip_start_day=1, notes=1, batch=1)
    framed = bytearray(tfrecord_records.frame([first, example(other=1)]))
    damaged = bytearray(tfrecord_records.frame([example(lost=1)]))
    damaged[-1] ^= 0xFF  # the first record's data fails its checksum: the next one is read
    files = {
        "plain.tfrecord": bytes(framed),
        "damaged_first.tfrecord": bytes(damaged + framed),
        "empty.tfrecord": b"",
        "not_examples.tfrecord": tfrecord_records.frame([b"\xff\xff not a proto"]),
    }
    (tmp_path / "zipped.tfrecord.gz").write_bytes(gzip.compress(bytes(framed)))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = sorted(tmp_path.iterdir())
    reader = read.ReadRawData([(str(p), p.stat().st_size) for p in paths], taxi_dataset.schema)
    assert reader.ignored_columns == {}  # known once the records are decoded
    pipeline = beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"]))
    _ = pipeline | reader
    result = pipeline.run()
    result.wait_until_finish()
    assert reader.ignored_columns_read(run_record.collect_counters(result)) == {
        str(tmp_path / "damaged_first.tfrecord"): ["batch", "notes", "other"],
        str(tmp_path / "plain.tfrecord"): ["batch", "notes", "other"],
        str(tmp_path / "zipped.tfrecord.gz"): ["batch", "notes", "other"],
    }


def test_a_text_value_longer_than_arrows_read_block_is_parsed_not_an_error():
    """`skewless labels` stopped with "straddling object straddles two block boundaries" on a 2 MiB
    free-text annotation (Arrow's default read block is 1 MiB)."""
    text = "z" * (2 << 20)
    table, ragged = text_records.parse_csv_block(
        f'i1,a1,"{text}"\ni2,a2,short\n'.encode(), ["item", "annotator", "text"]
    )
    assert ragged == [] and table.column("text").to_pylist() == [text.encode(), b"short"]


def test_text_records_read_missing_value_texts_as_empty_cells():
    """What ``labels`` and ``dedup`` read: a cell whose text is listed (spaces trimmed) is empty."""
    data = b'a,NA,x\n" NA ",b,N/A\nNAN,,c\n'
    table, ragged = text_records.parse_csv_block(data, ["p", "q", "r"], missing_values=("NA", "N/A"))
    assert ragged == []
    assert table.to_pydict() == {"p": [b"a", b"", b"NAN"], "q": [b"", b"b", b""], "r": [b"x", b"", b"c"]}


def test_a_dedup_config_lists_its_missing_value_texts():
    from pipelines.dedup.config import config_from_dict
    from pipelines.errors import UsageError

    raw = {"id": "rec_id", "blocking": [["surname"]], "fields": {"surname": "name"}, "missing_values": ["NA", "null"]}
    assert config_from_dict(raw).missing_values == ("NA", "null")
    assert config_from_dict({**raw, "missing_values": []}).missing_values == ()
    with pytest.raises(UsageError, match="quoted cell texts"):
        config_from_dict({**raw, "missing_values": ["NA", None]})  # a bare null in YAML
