"""End to end: ``skewless run`` on sample rows mixed with bad ones, once per scenario, many checks each."""

import hashlib
import json
import os
import re
import sys
import zlib

import numpy as np
import pytest
import tensorflow_transform as tft

from pipelines import cli
from tests.helpers import as_multiset, read_tfrecords, sample_lines, saved_model_tags, transformed_rows

pytestmark = pytest.mark.e2e

N_GOOD = 3000
BAD_LINES = {
    "1,2,3": "wrong field count: expected 18, found 3",
    "": "empty line",
}


def _bad_rows(header: str, good: str) -> dict[str, str]:
    """Lines that break the schema in one field each, made from a good line, with their reasons."""
    columns = header.split(",")
    rows = dict(BAD_LINES)
    for column, value, reason in [
        ("trip_start_hour", "25", "outside domain: 25 not in [0, 23]"),
        ("trip_start_day", "Mon", "unparsable int: 'Mon'"),
        ("fare", "-3.5", "outside domain: -3.5 not in [0, ]"),
        ("trip_miles", "", "missing required feature"),
        ("tips", "1.2.3", "unparsable float: '1.2.3'"),
    ]:
        fields = good.split(",")
        fields[columns.index(column)] = value
        rows[",".join(fields)] = reason
    return rows


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A CSV of N_GOOD sample rows with six bad rows spread through it."""
    header, lines = sample_lines(N_GOOD)
    bad = _bad_rows(header, lines[0])
    body = list(lines)
    for i, line in enumerate(bad):
        body.insert(400 * (i + 1), line)
    path = tmp_path_factory.mktemp("input") / "trips.csv"
    fields = lines[1].split(",")
    fields[header.split(",").index("payment_type")] = "Caf\xe9"
    latin1 = ",".join(fields).encode("latin-1")  # not UTF-8
    bad[latin1.decode("utf-8", "backslashreplace")] = "invalid UTF-8"
    path.write_bytes((header + "\n" + "\n".join(body) + "\n").encode() + latin1 + b"\n")
    return path, lines, bad


@pytest.fixture(scope="module")
def run_dir(sample, tmp_path_factory):
    path, _, _ = sample
    out = tmp_path_factory.mktemp("runs") / "out"
    code = cli.main(["run", "--input", str(path), "--output", str(out), "--slice-by", "payment_type"])
    assert code == 0
    return out


def test_output_layout_is_complete_and_nothing_else_is_left(run_dir):
    assert sorted(os.listdir(run_dir)) == [
        "anomalies.pbtxt",
        "dead_letter",
        "metadata",
        "parity",
        "report.html",
        "run.json",
        "serving_model",
        "stats",
        "transform_fn",
        "transformed",
        "transformed_metadata",
    ]
    assert os.listdir(run_dir.parent) == ["out"]  # no staging directory left behind
    names = sorted(os.listdir(run_dir / "transformed"))  # one file a bundle: one each here
    assert [re.sub("[0-9a-f]{32}", "ID", name) for name in names] == ["eval-ID.tfrecord.gz", "train-ID.tfrecord.gz"]


def test_transform_output_loads_with_raw_and_transformed_specs(run_dir, taxi_dataset):
    output = tft.TFTransformOutput(str(run_dir))
    assert output.raw_feature_spec() == taxi_dataset.feature_spec()
    assert sorted(output.transformed_feature_spec()) == sorted(
        [f"{name}_xf" for name in taxi_dataset.feature_names if name not in ("tips", "trip_start_timestamp")]
        + ["big_tipper", "row_id"]  # provenance: every example carries its row_id
    )
    assert output.vocabulary_by_name("payment_type")[:2] == [b"Cash", b"Credit Card"]
    # taxi's preprocessing_fn is traced into a TF1 graph (tf_compat_v1); serving gets a TF2 SavedModel
    assert saved_model_tags(run_dir / "transform_fn") == [["transform"]]
    assert saved_model_tags(run_dir / "serving_model") == [["serve"]]


def test_every_row_is_accounted_for(run_dir, sample):
    _, good, bad = sample
    train, eval_ = transformed_rows(run_dir, "train"), transformed_rows(run_dir, "eval")
    dead = [json.loads(line) for path in (run_dir / "dead_letter").glob("*.jsonl") for line in open(path)]
    assert len(train) + len(eval_) == len(good)
    assert sorted((d["raw"], d["reason"]) for d in dead) == sorted(bad.items())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["counts"] == {
        "rows_read": len(good) + len(bad),
        "rows_train": len(train),
        "rows_eval": len(eval_),
        "rows_dead_lettered": len(bad),
        "rows_dropped_by_policy": 0,
        "blank_lines_at_end": 0,
        "dropped_reasons": {},
        "dead_letter_reasons": {
            "empty line": 1,
            "invalid UTF-8": 1,
            "missing required feature": 1,
            "outside domain": 2,
            "unparsable float": 1,
            "unparsable int": 1,
            "wrong field count": 1,
        },
    }


def test_every_example_carries_a_row_id_that_leads_back_to_its_raw_line(run_dir, sample, capsys):
    path, good, _ = sample
    rows = transformed_rows(run_dir, "train") + transformed_rows(run_dir, "eval")
    header = sample_lines(0)[0].split(",")
    assert "company" in header and "company" not in rows[0]  # taxi names no metadata columns (people does)
    ids = [r["row_id"][0] for r in rows]
    assert len(set(ids)) == len(set(good))  # identical raw lines share an id; distinct ones never do
    wanted = rows[7]["row_id"][0]
    capsys.readouterr()
    assert cli.main(["lineage", "row", str(wanted), "--run", str(run_dir), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    lines = path.read_bytes().split(b"\n")
    assert found and all(f["source"] == str(path) and f["row_id"] == wanted for f in found)
    for f in found:
        assert lines[f["line"] - 1].decode() == f["raw"] and f["raw"] in good
        assert path.read_bytes()[f["offset"] :].startswith(f["raw"].encode())
    assert cli.main(["lineage", "row", "12345", "--run", str(run_dir)]) == 1  # no such row


def test_statistics_before_and_after_the_transform_sliced_by_payment_type(run_dir, sample):
    _, good, _ = sample
    pre = json.loads((run_dir / "stats" / "pre_transform.json").read_text())["slices"]
    post = json.loads((run_dir / "stats" / "post_transform.json").read_text())["slices"]
    record = json.loads((run_dir / "run.json").read_text())
    for stats in (pre, post):
        assert stats["ALL"]["num_rows"] == len(good)
        assert stats["split=train"]["num_rows"] == record["counts"]["rows_train"]
        assert stats["split=eval"]["num_rows"] == record["counts"]["rows_eval"]
        slices = [key for key in stats if key.startswith("payment_type=")]
        assert len(slices) == len(stats) - 3
        assert sum(stats[key]["num_rows"] for key in slices) == len(good)
    payments = [line.split(",")[13] for line in good]
    assert pre["payment_type=Cash"]["num_rows"] == payments.count("Cash")
    assert post["payment_type=Cash"]["num_rows"] == payments.count("Cash")
    assert (
        pre["ALL"]["features"]["trip_start_hour"]["min"] == 0 and pre["ALL"]["features"]["trip_start_hour"]["max"] == 23
    )
    assert post["ALL"]["features"]["fare_xf"]["type"] == "numeric"
    assert sorted(post["ALL"]["features"]) == sorted(
        json.loads((run_dir / "run.json").read_text())["parity"]["features"]
    )


def test_z_scores_have_mean_0_and_deviation_1_over_the_analyzed_rows(run_dir):
    """The three z-scores share one analyzer, computed in float64 (``transforms/taxi.py``): over the
    train rows, which the analysis saw, they have mean 0 and standard deviation 1 to float32's
    precision. (In float32, one analyzer for the three summed each column of a batch in order, and
    the deviation of trip_miles came out 4e-5 off on the 15k-row sample.)"""
    rows = transformed_rows(run_dir, "train")
    for key in ("trip_miles_xf", "fare_xf", "trip_seconds_xf"):
        values = np.array([row[key][0] for row in rows], dtype=np.float64)
        assert abs(values.mean()) < 1e-7, key
        assert abs(values.std() - 1.0) < 1e-7, key


def test_split_is_the_documented_hash_of_each_line(run_dir, sample):
    _, good, _ = sample
    expected_eval = sum(1 for line in good if zlib.crc32(line.encode()) % 10_000 < 2_000)
    assert len(transformed_rows(run_dir, "eval")) == expected_eval
    assert 0.17 < expected_eval / len(good) < 0.23


def test_run_json_records_inputs_parameters_and_versions(run_dir, sample):
    path, good, bad = sample
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["reason"] is None
    assert record["inputs"] == [
        {
            "uri": str(path),
            "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": len(good) + len(bad),
            "ignored_columns": [],
        }
    ]
    assert record["parameters"]["eval_fraction"] == 0.2
    assert record["parameters"]["runner"] == "FnApiRunner"
    assert record["versions"]["tensorflow-transform"] == "1.21.0"
    assert record["versions"]["apache-beam"] == "2.77.0"
    assert set(record["timings"]) >= {"plan", "pipeline", "export", "parity", "finish", "total"}
    assert record["parity"]["passed"] and record["parity"]["rows_checked"] > 0


@pytest.fixture(scope="module")
def multiprocess_rerun_dir(sample, tmp_path_factory):
    """A rerun with two worker processes; what they (and the run) wrote to stderr is kept in
    ``stderr.txt`` beside the output (the workers write to file descriptor 2 directly)."""
    path, _, _ = sample
    base = tmp_path_factory.mktemp("rerun")
    out = base / "out"
    argv = ["run", "--input", str(path), "--output", str(out), "--quiet"]
    sys.stderr.flush()
    saved = os.dup(2)
    with open(base / "stderr.txt", "wb") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            code = cli.main(argv + ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
    assert code == 0, (base / "stderr.txt").read_text()
    return out


def test_a_multiprocess_rerun_gives_identical_records_and_vocabularies(run_dir, multiprocess_rerun_dir):
    for split in ("train", "eval"):
        assert as_multiset(transformed_rows(multiprocess_rerun_dir, split)) == as_multiset(
            transformed_rows(run_dir, split)
        )
    for vocabulary in ("payment_type", "company"):
        assert (multiprocess_rerun_dir / "transform_fn" / "assets" / vocabulary).read_bytes() == (
            run_dir / "transform_fn" / "assets" / vocabulary
        ).read_bytes()
    record = json.loads((multiprocess_rerun_dir / "run.json").read_text())
    assert record["parameters"]["pipeline_options"]["direct_running_mode"] == "multi_processing"


def _dead_letters(output) -> list[str]:
    return sorted(line for path in (output / "dead_letter").iterdir() for line in path.read_text().splitlines())


def test_a_run_without_the_beam_patches_gives_the_same_outputs(sample, run_dir, tmp_path):
    """``SKEWLESS_BEAM_PATCHES=0``: the console script in a process of its own, Beam left as it is."""
    import subprocess

    path, _, _ = sample
    out = tmp_path / "unpatched"
    skewless = os.path.join(os.path.dirname(sys.executable), "skewless")
    argv = [skewless, "run", "--input", str(path), "--output", str(out), "--slice-by", "payment_type", "--quiet"]
    result = subprocess.run(argv, env={**os.environ, "SKEWLESS_BEAM_PATCHES": "0"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # switched off, no patch is even tried: no warning either
    unpatched, patched = (json.loads((d / "run.json").read_text()) for d in (out, run_dir))
    assert (unpatched["beam_patches"], len(patched["beam_patches"])) == ([], 5)
    assert unpatched["counts"] == patched["counts"]
    assert unpatched["parity"] == patched["parity"]
    for split in ("train", "eval"):
        assert as_multiset(transformed_rows(out, split)) == as_multiset(transformed_rows(run_dir, split))
    for vocabulary in ("payment_type", "company"):
        assert (out / "transform_fn" / "assets" / vocabulary).read_bytes() == (
            run_dir / "transform_fn" / "assets" / vocabulary
        ).read_bytes()
    assert _dead_letters(out) == _dead_letters(run_dir)
    for stats in ("pre_transform.json", "post_transform.json"):
        assert json.loads((out / "stats" / stats).read_text()) == json.loads((run_dir / "stats" / stats).read_text())


def test_worker_processes_start_without_tensorflow_notices(multiprocess_rerun_dir):
    """Workers run ``pipelines.runtime.worker``: TensorFlow's native notices (oneDNN, CUDA) and its Python
    INFO lines stay off stderr, which a quiet run leaves empty."""
    stderr = (multiprocess_rerun_dir.parent / "stderr.txt").read_text()
    assert stderr == "", stderr[:2000]


def _touch_pid_file(_, directory: str) -> None:
    from pipelines.runtime import overlap

    with open(os.path.join(directory, str(os.getpid())), "w") as handle:
        handle.write(str(overlap.background_threads()))


def test_multi_processing_options_really_run_workers_in_other_processes(tmp_path):
    import apache_beam as beam

    from pipelines.runtime.options import pipeline_options

    options = pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    with beam.Pipeline(options=options) as p:
        _ = p | beam.Create(range(8)) | beam.Reshuffle() | beam.Map(_touch_pid_file, str(tmp_path))
    worker_pids = {int(name) for name in os.listdir(tmp_path)}
    assert worker_pids and os.getpid() not in worker_pids
    # two workers on two cores or fewer work inline; on a larger machine each keeps its threads
    inline = 2 >= len(os.sched_getaffinity(0))
    assert {(tmp_path / str(pid)).read_text() for pid in worker_pids} == {str(not inline)}


def test_blank_lines_that_end_a_file_are_not_rows_but_blank_lines_inside_are_dead_letters(tmp_path, capsys):
    """A 20-row export with a blank line after its rows succeeds: the blank line is not a row."""
    header, lines = sample_lines(20)
    path = tmp_path / "blank_lines.csv"
    path.write_bytes((header + "\r\n" + "\r\n".join([*lines[:10], "", *lines[10:]]) + "\r\n\r\n \r\n").encode())
    out = tmp_path / "out"
    assert cli.main(["run", "--input", str(path), "--output", str(out), "--max-invalid-fraction", "0.1"]) == 0
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert (counts["rows_read"], counts["rows_train"] + counts["rows_eval"], counts["blank_lines_at_end"]) == (
        21,
        20,
        2,
    )
    assert counts["dead_letter_reasons"] == {"empty line": 1}
    assert "blank lines at file ends                2" in capsys.readouterr().err
    ends_only = tmp_path / "ends_only.csv"
    ends_only.write_text(header + "\n" + "\n".join(lines) + "\n\n\n")
    assert cli.main(["run", "--input", str(ends_only), "--output", str(tmp_path / "out2"), "--quiet"]) == 0


def test_too_many_invalid_rows_fail_the_run_but_keep_dead_letters(tmp_path, capsys):
    header, lines = sample_lines(10)
    path = tmp_path / "mostly_bad.csv"
    path.write_text(header + "\n" + "\n".join(lines + ["x,y"] * 3) + "\n")
    out = tmp_path / "out"
    assert cli.main(["run", "--input", str(path), "--output", str(out), "--max-invalid-fraction", "0.2"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "skewless run: error: 3 of 13 rows invalid (23.08% > --max-invalid-fraction 20.00%; "
        "most common: 'wrong field count' x3); see dead_letter/"
    )
    assert sorted(os.listdir(out)) == ["anomalies.pbtxt", "dead_letter", "report.html", "run.json", "stats"]
    assert sorted(os.listdir(out / "stats")) == ["pre_transform", "pre_transform.json"]  # what the valid rows were
    assert "wrong field count" in (out / "anomalies.pbtxt").read_text()
    record = json.loads((out / "run.json").read_text())
    assert (record["status"], record["counts"]["rows_dead_lettered"]) == ("failed", 3)
    assert len((out / "dead_letter").joinpath(os.listdir(out / "dead_letter")[0]).read_text().splitlines()) == 3
    reason = record["reason"]
    for argv in (  # the commands that read a transform output are told why there is none
        ["check-skew", "--transform-output", str(out), "--input", str(path)],
        ["train", "--transform-output", str(out)],
        ["compare-poc", "--poc", "benchmarks/taxi_poc.py:prepare", "--input", str(path), str(out)],
    ):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"skewless {argv[0]}: error: {out} holds a run that failed ({reason}): "
            f"it has no transform output for {argv[0]}"
        )


def test_damage_that_lost_rows_nobody_can_count_fails_the_run_whatever_the_threshold():
    from pipelines.prepare import accounting

    counts = {"rows_read": 10_001, "rows_train": 8_000, "rows_eval": 2_000, "rows_dropped_by_policy": 0}
    counts |= {"rows_dead_lettered": 1, "dead_letter_reasons": {"truncated file": 1}}
    assert accounting.check_counts(counts, max_invalid_fraction=1.0) == (
        "damaged inputs lost rows, their number unknown ('truncated file' x1); see dead_letter/ for where, "
        "then repair the files or fetch them again"
    )
    counts["dead_letter_reasons"] = {"lost TFRecord records": 1}
    assert "('lost TFRecord records' x1)" in accounting.check_counts(counts, max_invalid_fraction=1.0)
    counts["dead_letter_reasons"] = {"corrupt TFRecord": 1}  # one record, counted: the threshold decides
    assert accounting.check_counts(counts, max_invalid_fraction=0.01) is None


def _write_parquet_and_tfrecord(csv_path, directory, schema):
    """The same rows as Parquet (flat typed columns) and as raw tf.Example TFRecords."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    types = {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float64(), schema_pb2.BYTES: pa.string()}
    table = pa_csv.read_csv(
        str(csv_path),
        convert_options=pa_csv.ConvertOptions(column_types={f.name: types[f.type] for f in schema.feature}),
    )
    pq.write_table(table, directory / "trips.parquet")
    with tf.io.TFRecordWriter(str(directory / "trips.tfrecord")) as writer:
        for index, row in enumerate(table.to_pylist()):
            feature = {}
            for name, value in row.items():
                if value is None or value == "":
                    continue
                if isinstance(value, str):
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                elif isinstance(value, int):
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                else:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            feature["notes"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a feature the schema lacks"]))
            if index == 300:  # a feature only a later example carries
                feature["late_note"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_csv_parquet_and_tfrecord_inputs_give_the_same_transformed_rows(tmp_path, taxi_dataset, capsys):
    header, lines = sample_lines(500)
    csv_path = tmp_path / "trips.csv"
    csv_path.write_text(header + "\n" + "\n".join(lines) + "\n")
    _write_parquet_and_tfrecord(csv_path, tmp_path, taxi_dataset.schema)
    import pandas as pd  # as a notebook writes it: ints with gaps become floats, strings categoricals

    frame = pd.read_csv(csv_path)
    frame["company"], frame["payment_type"] = (
        frame["company"].astype("category"),
        frame["payment_type"].astype("category"),
    )
    assert frame["pickup_community_area"].dtype == "float64"
    frame["notes"] = "a column the schema lacks"
    frame.to_parquet(tmp_path / "pandas.parquet")
    tsv_lines = [f"note\t{header}", *(f"n{i}\t{line}" for i, line in enumerate(lines))]  # and one here
    (tmp_path / "trips.tsv").write_text("\n".join(line.replace(",", "\t") for line in tsv_lines) + "\n")
    results = {}
    for name in ("trips.csv", "trips.parquet", "trips.tfrecord", "pandas.parquet", "trips.tsv"):
        out = tmp_path / f"out-{name}"
        argv = ["run", "--input", str(tmp_path / name), "--output", str(out), "--eval-fraction", "0"]
        assert cli.main(argv) == 0, name
        assert read_tfrecords(str(out / "transformed" / "eval-*")) == []
        results[name] = as_multiset(transformed_rows(out, "train"))
    assert len(results["trips.csv"]) == 500
    assert results["trips.parquet"] == results["trips.csv"]
    assert results["trips.tfrecord"] == results["trips.csv"]
    assert results["pandas.parquet"] == results["trips.csv"]
    assert results["trips.tsv"] == results["trips.csv"]  # a .tsv file's fields are tab-separated
    ignored = {
        name: json.loads((tmp_path / f"out-{name}" / "run.json").read_text())["inputs"][0]["ignored_columns"]
        for name in results
    }  # columns the schema lacks are read past, in Parquet and tf.Examples as in CSV, and recorded
    assert ignored == {
        "trips.csv": [],
        "trips.parquet": [],
        "trips.tfrecord": ["late_note", "notes"],  # every example's, not the first's only
        "pandas.parquet": ["notes"],
        "trips.tsv": ["note"],
    }

    from pipelines.lineage import trace  # `lineage row` reads the .tsv with its tabs too

    wanted = {row["row_id"][0] for row in transformed_rows(tmp_path / "out-trips.tsv", "train")[:5]}
    found = trace.find_rows(str(tmp_path / "out-trips.tsv"), wanted)
    assert {f["row_id"] for f in found} == wanted
    assert all(f["raw"].split("\t", 1)[1].replace("\t", ",") in lines for f in found)
    fare = header.split(",").index("fare")
    for name in ("trips.parquet", "trips.tfrecord"):  # and Parquet rows and tf.Examples, by index
        wanted = {row["row_id"][0] for row in transformed_rows(tmp_path / f"out-{name}", "train")[:5]}
        found = trace.find_rows(str(tmp_path / f"out-{name}"), wanted)
        assert {f["row_id"] for f in found} == wanted, name
        for f in found:
            cell = lines[f["offset"]].split(",")[fare]
            assert (f["line"], json.loads(f["raw"])["fare"]) == (None, [pytest.approx(float(cell))] if cell else None)
    capsys.readouterr()
    assert cli.main(["lineage", "row", str(found[0]["row_id"]), "--run", str(tmp_path / "out-trips.tfrecord")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"{tmp_path / 'trips.tfrecord'} (record {found[0]['offset']}, row_id {found[0]['row_id']}): " in printed[1]


def test_allow_quoted_newlines_reads_values_spanning_lines_as_parquet_holds_them(tmp_path, capsys):
    import csv
    import gzip
    import io

    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    header, lines = sample_lines(300)
    company = header.split(",").index("company")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header.split(","))
    for i, row in enumerate(csv.reader(lines)):
        if i % 10 == 0:
            row[company] = f'{row[company]}\n"branch" {i % 3}'
        writer.writerow(row)
    text = out.getvalue().encode()
    (tmp_path / "trips.csv.gz").write_bytes(gzip.compress(text))
    table = pa_csv.read_csv(io.BytesIO(text), parse_options=pa_csv.ParseOptions(newlines_in_values=True))
    assert table.num_rows == 300 and sum("\n" in (c or "") for c in table.column("company").to_pylist()) == 30
    pq.write_table(table, tmp_path / "trips.parquet")

    argv = ["run", "--input", str(tmp_path / "trips.csv.gz"), "--eval-fraction", "0", "--no-report"]
    assert cli.main([*argv, "--output", str(tmp_path / "lines")]) == 1  # each line a record: 60 halves
    assert "most common: 'malformed CSV' x60" in capsys.readouterr().err
    assert cli.main([*argv, "--output", str(tmp_path / "quoted"), "--allow-quoted-newlines"]) == 0
    record = json.loads((tmp_path / "quoted" / "run.json").read_text())
    assert record["parameters"]["allow_quoted_newlines"] is True
    assert (record["counts"]["rows_read"], record["counts"]["rows_dead_lettered"]) == (300, 0)
    parquet = ["run", "--input", str(tmp_path / "trips.parquet"), "--eval-fraction", "0", "--no-report"]
    assert cli.main([*parquet, "--output", str(tmp_path / "parquet")]) == 0
    rows = as_multiset(transformed_rows(tmp_path / "quoted", "train"))
    assert len(rows) == 300
    assert rows == as_multiset(transformed_rows(tmp_path / "parquet", "train"))

    from pipelines.lineage import trace  # `skewless lineage row` finds every record, a value spanning lines whole

    ids = {row["row_id"][0] for row in transformed_rows(tmp_path / "quoted", "train")}
    found = trace.find_rows(str(tmp_path / "quoted"), ids)
    records = [text[f["offset"] :].decode() for f in found]
    assert len(found) == 300 and sum("\n" in f["raw"] for f in found) == 30
    assert all(record.startswith(f["raw"] + "\n") for f, record in zip(found, records, strict=True))
    assert all(f["line"] == text[: f["offset"]].count(b"\n") + 1 for f in found)


def test_encoding_reads_cp1252_and_utf16_files_as_their_utf8_copy_reads(tmp_path, capsys):
    header, lines = sample_lines(200)
    company = header.split(",").index("company")
    rows = [line.split(",") for line in lines]
    for i, row in enumerate(rows[::5]):
        row[company] = f"Taxi Café Zürich {i % 3}"  # in every encoding below
    text = "\n".join([header, *(",".join(row) for row in rows)]) + "\n"
    outputs = {}
    for name, encoding in (("utf8.csv", None), ("cp1252.csv", "cp1252"), ("utf16.csv", "utf-16")):
        (tmp_path / name).write_bytes(text.encode(encoding or "utf-8"))
        out = tmp_path / f"out-{name}"
        argv = ["run", "--input", str(tmp_path / name), "--output", str(out), "--eval-fraction", "0", "--no-report"]
        assert cli.main(argv + (["--encoding", encoding] if encoding else [])) == 0, name
        outputs[name] = out
    expected = as_multiset(transformed_rows(outputs["utf8.csv"], "train"))
    assert len(expected) == 200
    for name in ("cp1252.csv", "utf16.csv"):
        assert as_multiset(transformed_rows(outputs[name], "train")) == expected, name

    # a European spreadsheet's export: semicolons, decimal commas, cp1252
    from schemas import load_dataset

    schema = load_dataset("taxi").schema
    float_names = {f.name for f in schema.feature if f.type == 3}  # schema_pb2.FLOAT
    floats = {i for i, name in enumerate(header.split(",")) if name in float_names}
    european = [";".join(v.replace(".", ",") if i in floats else v for i, v in enumerate(row)) for row in rows]
    (tmp_path / "excel.csv").write_bytes(("\n".join([header.replace(",", ";"), *european]) + "\n").encode("cp1252"))
    out = tmp_path / "out-excel"
    argv = ["run", "--input", str(tmp_path / "excel.csv"), "--output", str(out), "--eval-fraction", "0", "--no-report"]
    assert cli.main([*argv, "--csv-delimiter", ";", "--decimal-comma", "--encoding", "cp1252"]) == 0
    assert as_multiset(transformed_rows(out, "train")) == expected
    record = json.loads((outputs["cp1252.csv"] / "run.json").read_text())
    assert record["parameters"]["encoding"] == "cp1252" and record["counts"]["rows_dead_lettered"] == 0

    from pipelines.lineage import trace  # `lineage row` re-encodes the recorded inputs as the run did

    wanted = {row["row_id"][0] for row in transformed_rows(outputs["utf16.csv"], "train")}
    found = trace.find_rows(str(outputs["utf16.csv"]), wanted)
    assert sorted(f["raw"] for f in found) == sorted(",".join(row) for row in rows)
    capsys.readouterr()
    argv = ["run", "--input", str(tmp_path / "cp1252.csv"), "--output", str(tmp_path / "bad"), "--no-report"]
    assert cli.main(argv) == 1  # read as UTF-8, each row with an accent is dead-lettered
    last = capsys.readouterr().err.strip().splitlines()[-1]
    hint = "(a file in another encoding? pass --encoding, e.g. cp1252)"
    assert last.endswith(f"most common: 'invalid UTF-8' x40); see dead_letter/ {hint}")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--input", "{tmp}/missing.csv"], "no input file matches {tmp}/missing.csv"),
        (["--dataset", "nope"], "unknown dataset 'nope': neither a bundled dataset (people, taxi) nor a folder"),
        (["--input", "{tmp}/notes.json"], "cannot tell the format of {tmp}/notes.json"),
    ],
)
def test_bad_usage_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "notes.json").write_text("{}")
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli.main(["run", "--output", str(out), *argv]) == 2
    *progress, error = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("skewless run: error: " + message.format(tmp=tmp_path))
    assert all(line.startswith("[") for line in progress)
    assert not out.exists()


def test_an_eval_fraction_outside_0_1_is_rejected_by_the_parser(capsys):
    assert cli.main(["run", "--output", "x", "--eval-fraction", "2"]) == 2
    assert "--eval-fraction: must be between 0 and 1, got 2.0" in capsys.readouterr().err


def test_statistics_protos_hold_the_jsons_figures_per_split_and_slice(run_dir, sample):
    """``stats/{pre,post}_transform/FeatureStats.pb``: TFDV's DatasetFeatureStatisticsList, one
    dataset for every row, one per split and one per slice, with the JSON's figures."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    for stage in ("pre_transform", "post_transform"):
        stats = json.loads((run_dir / "stats" / f"{stage}.json").read_text())["slices"]
        proto = statistics_pb2.DatasetFeatureStatisticsList.FromString(
            (run_dir / "stats" / stage / "FeatureStats.pb").read_bytes()
        )
        names = [dataset.name for dataset in proto.datasets]
        assert names[:3] == ["All Examples", "train", "eval"]
        assert sorted(names[3:]) == sorted(key.replace("=", "_") for key in stats if key.startswith("payment_type="))
        for dataset in proto.datasets:
            key = {"All Examples": "ALL", "train": "split=train", "eval": "split=eval"}.get(dataset.name)
            key = key or "payment_type=" + dataset.name.removeprefix("payment_type_")
            assert dataset.num_examples == stats[key]["num_rows"]
            assert sorted(f.path.step[0] for f in dataset.features) == sorted(stats[key]["features"])
    pre = json.loads((run_dir / "stats" / "pre_transform.json").read_text())["slices"]["ALL"]["features"]
    proto = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        (run_dir / "stats" / "pre_transform" / "FeatureStats.pb").read_bytes()
    )
    features = {f.path.step[0]: f for f in proto.datasets[0].features}
    fare, payment = features["fare"], features["payment_type"]
    assert fare.type == statistics_pb2.FeatureNameStatistics.FLOAT
    assert features["trip_start_hour"].type == statistics_pb2.FeatureNameStatistics.INT
    assert (fare.num_stats.mean, fare.num_stats.std_dev) == (pre["fare"]["mean"], pre["fare"]["std"])
    assert (fare.num_stats.min, fare.num_stats.max, fare.num_stats.num_zeros) == (
        pre["fare"]["min"],
        pre["fare"]["max"],
        pre["fare"]["zeros"],
    )
    assert fare.num_stats.median == pre["fare"]["quantiles"][10]
    assert fare.num_stats.common_stats.num_non_missing == pre["fare"]["count"]
    assert fare.num_stats.common_stats.num_missing == pre["fare"]["missing"]
    standard, quantiles = fare.num_stats.histograms
    assert quantiles.type == statistics_pb2.Histogram.QUANTILES and len(quantiles.buckets) == 10
    assert sum(b.sample_count for b in standard.buckets) == pre["fare"]["num_values"]
    assert payment.type == statistics_pb2.FeatureNameStatistics.STRING
    assert payment.string_stats.unique == pre["payment_type"]["unique"]
    assert [(v.value, v.frequency) for v in payment.string_stats.top_values] == [
        (top["value"], top["count"]) for top in pre["payment_type"]["top"]
    ]
    assert payment.string_stats.avg_length == pytest.approx(pre["payment_type"]["avg_length"])
    assert payment.string_stats.rank_histogram.buckets[0].label == "Cash"


def test_the_raw_rows_schema_violations_are_tfdv_anomalies(run_dir):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    anomalies = text_format.Parse((run_dir / "anomalies.pbtxt").read_text(), anomalies_pb2.Anomalies())
    reasons = {name: [r.type for r in info.reason] for name, info in anomalies.anomaly_info.items()}
    info = anomalies_pb2.AnomalyInfo
    assert reasons == {
        "fare": [info.FLOAT_TYPE_BIG_FLOAT],
        "payment_type": [info.ENUM_TYPE_INVALID_UTF8],
        "tips": [info.FLOAT_TYPE_STRING_NOT_FLOAT],
        "trip_miles": [info.FEATURE_TYPE_LOW_FRACTION_PRESENT],
        "trip_start_day": [info.INT_TYPE_NOT_INT_STRING],
        "trip_start_hour": [info.INT_TYPE_BIG_INT],
    }
    record = json.loads((run_dir / "run.json").read_text())
    rows = record["counts"]["rows_read"]
    assert anomalies.anomaly_info["fare"].description == f"1 of {rows} rows: outside domain."
    assert anomalies.dataset_anomaly_info.reason  # the whole-record reasons (ragged lines, bad UTF-8)
    assert anomalies.baseline.feature[0].name == "company"
