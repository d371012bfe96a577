"""Lineage: run -> train recorded with hashes, transitive queries, stale inputs, concurrency, OpenLineage."""

import hashlib
import json
import multiprocessing
import sqlite3

import pytest

from pipelines import cli
from pipelines.lineage import recording
from pipelines.lineage import store as lineage
from tests.helpers import PROJECT_ROOT, sample_lines

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A private store; a sample CSV -> skewless run -> skewless train."""
    folder = tmp_path_factory.mktemp("lineage")
    db = str(folder / "store.db")
    header, lines = sample_lines(600)
    csv_path = folder / "trips.csv"
    csv_path.write_text(header + "\n" + "\n".join(lines) + "\n")
    out = folder / "out"
    assert cli.main(["run", "--input", str(csv_path), "--output", str(out), "--lineage-db", db]) == 0
    assert cli.main(["train", "--transform-output", str(out), "--epochs", "1", "--lineage-db", db]) == 0
    return db, csv_path, out


def _query(db, *argv, capsys) -> list | dict:
    assert cli.main(["lineage", *argv, "--json", "--lineage-db", db]) == 0
    return json.loads(capsys.readouterr().out)


def test_downstream_of_the_csv_lists_the_graph_serving_model_and_trained_model(chain, capsys):
    db, csv_path, out = chain
    found = {a["uri"]: a for a in _query(db, "downstream", str(csv_path), capsys=capsys)}
    for name in ("transform_fn", "serving_model", "transformed", "model/serving"):
        artifact = found[str(out / name)]
        assert artifact["content_hash"] == lineage.content_hash(str(out / name))[0]
    assert found[str(out / "serving_model")]["type"] == "ServingModel"
    assert found[str(out / "transformed")]["rows"] == 600


def test_upstream_of_the_trained_model_reaches_the_csv_with_its_sha256(chain, capsys):
    db, csv_path, out = chain
    found = {a["uri"]: a for a in _query(db, "upstream", str(out / "model" / "serving"), capsys=capsys)}
    assert found[str(csv_path)]["content_hash"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert found[str(csv_path)]["rows"] == 600
    assert found[str(PROJECT_ROOT / "schemas" / "taxi" / "schema.pbtxt")]["type"] == "Schema"
    assert found[str(PROJECT_ROOT / "transforms" / "taxi.py")]["type"] == "PreprocessingCode"
    assert found[str(PROJECT_ROOT / "transforms" / "common.py")]["type"] == "PreprocessingCode"  # row_id


def test_runs_and_show_record_the_execution(chain, capsys):
    db, csv_path, out = chain
    runs = _query(db, "runs", capsys=capsys)
    assert [(r["command"], r["status"], r["context"]) for r in runs] == [
        ("train", "succeeded", "taxi"),
        ("run", "succeeded", "taxi"),
    ]
    run_id = json.loads((out / "run.json").read_text())["lineage"]["run_id"]
    shown = _query(db, "show", run_id[:6], capsys=capsys)
    assert shown["id"] == run_id and shown["runner"] == "FnApiRunner"
    assert shown["parameters"]["eval_fraction"] == 0.2
    assert shown["versions"]["tensorflow-transform"] == "1.21.0"
    assert {a["type"] for a in shown["outputs"]} == {
        "DeadLetters",
        "Report",
        "Statistics",
        "TransformGraph",
        "TransformedExamples",
        "ServingModel",
    }


def test_stale_lists_what_depends_on_a_changed_input(chain, capsys):
    db, csv_path, out = chain
    assert _query(db, "stale", capsys=capsys) == []
    original = csv_path.read_bytes()
    csv_path.write_bytes(original + original.splitlines(keepends=True)[1])
    try:
        (entry,) = _query(db, "stale", capsys=capsys)
    finally:
        csv_path.write_bytes(original)
    assert entry["input"]["uri"] == str(csv_path)
    assert {a["uri"] for a in entry["dependents"]} >= {str(out / "serving_model"), str(out / "model" / "serving")}


def test_a_failed_run_is_recorded_with_its_reason(tmp_path, capsys):
    db = str(tmp_path / "store.db")
    header, lines = sample_lines(5)
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n" + "\n".join(lines + ["x"] * 5) + "\n")
    assert cli.main(["run", "--input", str(path), "--output", str(tmp_path / "o"), "--lineage-db", db]) == 1
    capsys.readouterr()
    (run,) = _query(db, "runs", capsys=capsys)
    assert run["status"] == "failed" and run["reason"].startswith("5 of 10 rows invalid")
    shown = _query(db, "show", run["id"], capsys=capsys)
    assert sorted(a["type"] for a in shown["outputs"]) == ["DeadLetters", "Report", "Statistics"]


def _record_many(db: str, worker: int, folder: str) -> None:
    for i in range(15):
        recorder = recording.Recorder("run", {"worker": worker, "i": i}, ("dataset", "concurrency"), None, db)
        path = f"{folder}/w{worker}-{i}.txt"
        with open(path, "w") as handle:
            handle.write(f"{worker} {i}")
        recorder.input(path, "RawData")
        recorder.output(path + ".out", "Nothing")  # missing: skipped, not an error
        recorder.finish("succeeded")
        assert recorder.warning is None


def test_concurrent_processes_leave_the_store_intact(tmp_path):
    db = str(tmp_path / "store.db")
    lineage.LineageStore(db).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record_many, args=(db, w, str(tmp_path))) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert connection.execute("SELECT COUNT(*), SUM(status = 'succeeded') FROM executions").fetchone() == (60, 60)
    assert connection.execute("SELECT COUNT(*) FROM events").fetchone() == (60,)
    assert connection.execute("SELECT COUNT(DISTINCT uri) FROM artifacts").fetchone() == (60,)


def test_openlineage_events_go_to_the_configured_transport(tmp_path, monkeypatch):
    log = tmp_path / "openlineage.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(log))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    source = tmp_path / "in.csv"
    source.write_text("a\n1\n")
    recorder = recording.Recorder("run", {}, ("dataset", "demo"), None, str(tmp_path / "store.db"))
    recorder.input(str(source), "RawData", schema_hash="abc123")
    recorder.output(str(source), "Copy")
    recorder.finish("succeeded")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[1]["job"] == {"namespace": "skewless", "name": "skewless.run.demo", "facets": {}}
    assert events[1]["inputs"][0]["name"] == str(source)
    (field,) = events[1]["inputs"][0]["facets"]["schema"]["fields"]
    assert (field["name"], field["type"]) == ("schema_sha256", "abc123")
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]


def test_sources_inventory_is_registered_and_listed(tmp_path, capsys):
    db = str(tmp_path / "store.db")
    registered = _query(db, "sources", "--register", str(PROJECT_ROOT / "data" / "sources.yaml"), capsys=capsys)
    assert [s["name"] for s in registered] == [
        "chicago_taxi_full",
        "chicago_taxi_sample",
        "febrl_synthetic_people",
        "rte_crowd_labels",
    ]
    assert registered[1]["properties"]["cost"] == "free"


def test_an_unknown_artifact_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["lineage", "upstream", "nowhere.csv", "--lineage-db", str(tmp_path / "s.db")]) == 2
    assert "no recorded artifact matches 'nowhere.csv'" in capsys.readouterr().err
