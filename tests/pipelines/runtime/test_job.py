"""The job scaffold: staged outputs, the record, lineage and failure publishing, one way for every job."""

import json
import os

import apache_beam as beam
import pytest

from pipelines.errors import CheckFailed
from pipelines.lineage.store import LineageStore
from pipelines.runtime.job import Job, JobSpec, LineageOutput

pytestmark = pytest.mark.pipeline


def _job(tmp_path, lines: list[str], name: str = "out") -> Job:
    spec = JobSpec("demo", str(tmp_path / name), {"n": 1}, ("demo", name), "demo.json", str(tmp_path / "lineage.db"))
    return Job(spec, progress=lines.append)


def _write(staging: str, name: str, text: str) -> None:
    with open(os.path.join(staging, name), "w") as handle:
        handle.write(text)


def _inputs(record):
    return [(record["input"], "Data", {})]


def _outputs(record):
    return [LineageOutput("result.txt", "Result", 2), LineageOutput("kept.txt", "Kept")]


def test_a_job_publishes_its_outputs_and_record_and_records_lineage(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    lines = []
    job = _job(tmp_path, lines)

    def body(staging):
        _write(staging, "result.txt", "A\nB\n")
        return {"input": str(source), "rows": 2}

    record = job.execute(body, _inputs, _outputs, after_record=lambda staging: _write(staging, "kept.txt", "k"))
    assert record == {"input": str(source), "rows": 2}
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["demo.json", "kept.txt", "result.txt"]
    assert json.loads((out / "demo.json").read_text()) == record
    assert [name for name in os.listdir(tmp_path) if name.startswith("out.tmp-")] == []
    assert lines == ["recording lineage"]
    shown = LineageStore(str(tmp_path / "lineage.db")).show(job.recorder.id)
    assert (shown["command"], shown["status"], shown["reason"]) == ("demo", "succeeded", None)
    assert [(a["uri"], a["type"]) for a in shown["inputs"]] == [(str(source), "Data")]
    assert sorted((a["name"], a["type"], a["rows"]) for a in shown["outputs"]) == [
        ("kept.txt", "Kept", None),
        ("result.txt", "Result", 2),
    ]


def test_a_failed_check_publishes_what_the_job_kept_then_fails_with_its_line(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\n")
    job = _job(tmp_path, [])

    def body(staging):
        _write(staging, "kept.txt", "dead letters")
        return {"input": str(source), "failure": "3 of 4 rows invalid"}

    with pytest.raises(CheckFailed, match="^3 of 4 rows invalid$"):
        job.execute(body, _inputs, _outputs)
    assert sorted(os.listdir(tmp_path / "out")) == ["demo.json", "kept.txt"]
    shown = LineageStore(str(tmp_path / "lineage.db")).show(job.recorder.id)
    assert (shown["status"], shown["reason"]) == ("failed", "3 of 4 rows invalid")
    assert [a["name"] for a in shown["outputs"]] == ["kept.txt"]  # result.txt was never published


def test_an_error_inside_the_job_publishes_nothing_and_marks_the_run_failed(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text("{}")  # an earlier output, left as it was
    job = _job(tmp_path, [])

    def body(staging):
        _write(staging, "result.txt", "half")
        raise KeyboardInterrupt  # as the command line raises on SIGINT

    with pytest.raises(KeyboardInterrupt):
        job.execute(body, _inputs, _outputs)
    assert os.listdir(tmp_path / "out") == ["run.json"]
    assert (tmp_path / "out" / "run.json").read_text() == "{}"
    assert [name for name in os.listdir(tmp_path) if name.startswith("out.tmp-")] == []
    shown = LineageStore(str(tmp_path / "lineage.db")).show(job.recorder.id)
    assert (shown["status"], shown["reason"]) == ("failed", "KeyboardInterrupt: ")


def test_pipelines_run_with_the_jobs_options_and_give_their_counters_and_seconds(tmp_path):
    lines = []
    job = _job(tmp_path, lines)

    def count(x):
        beam.metrics.Metrics.counter("demo", "seen").inc(x)
        return x

    counters = job.run_pipeline(lambda p: p | beam.Create([1, 2, 3]) | beam.Map(count), "counting", "counting")
    assert counters[("demo", "seen")] == 6
    assert lines == ["counting"]
    assert job.timings["counting"] > 0
    with job.stage("export", "exporting"):
        pass
    with job.stage("export"):
        pass
    assert lines == ["counting", "exporting"] and set(job.timings) == {"counting", "export"}


def test_a_job_inside_another_records_no_lineage_of_its_own(tmp_path):
    spec = JobSpec("demo", str(tmp_path / "inner"), {}, ("demo", "inner"), "demo.json", record_lineage=False)
    job = Job(spec)
    assert job.recorder is None
    assert job.execute(lambda staging: {"rows": 0}, _inputs, _outputs) == {"rows": 0}
    assert os.listdir(tmp_path / "inner") == ["demo.json"]
