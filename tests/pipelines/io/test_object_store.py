"""Every command on an object store (``ram://``, GCS-like: no directories, rename = copy + delete),
in-process: each published tree equals a local run's, nothing stray, nothing written to local disk.

The same commands run twice, once on local paths and once on ``ram://`` (``tests/object_store.py``),
and the trees are compared file by file: the same names (bundle file names are random), the same
bytes where a command writes the same bytes twice, the same records otherwise.
"""

import csv
import gzip
import io
import json
import os
import re
import tempfile

import pytest

from pipelines import cli
from pipelines.io import files
from tests import object_store
from tests.helpers import PROJECT_ROOT, parse_examples, sample_lines

pytestmark = pytest.mark.e2e

ROWS = 2000
RTE = PROJECT_ROOT / "data" / "crowd" / "rte.standardized.csv"
RTE_COLUMNS = ["--item-col", "orig_id", "--annotator-col", "!amt_worker_ids", "--label-col", "response"]
PEOPLE = PROJECT_ROOT / "schemas" / "people" / "signups.csv"
PEOPLE_CONFIG = PROJECT_ROOT / "data" / "dedup" / "people.yaml"
BUCKET = "ram://bucket"
_RANDOM = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _inputs() -> dict[str, bytes]:
    """The commands' inputs: name -> bytes."""
    header, lines = sample_lines(ROWS)
    columns = header.split(",")
    stamp = columns.index("trip_start_timestamp")
    keys = sorted({line.split(",")[stamp] for line in lines})
    consensus = ["item,label,confidence,n_annotations,agreement,flagged"]
    consensus += [f"{key},{'tipper' if i % 2 else 'other'},0.9,3,0.66,0" for i, key in enumerate(keys) if i % 10]
    boxes = [["image", "annotator", "x_min", "y_min", "x_max", "y_max", "class"]]
    for image in range(6):
        for annotator, shift in (("a1", 0), ("a2", 1), ("a3", 2)):
            boxes.append([f"img{image}", annotator, 10 + shift, 10, 50 + shift, 40, "cat" if image % 2 else "dog"])
    text = [["clip", "worker", "transcript"]]
    for clip, said in (("c1", "the cat sat on the mat"), ("c2", "today's weather is fine")):
        for worker, variant in (("w1", said), ("w2", said.replace("the", "a")), ("w3", said + " today")):
            text.append([clip, worker, variant])
    return {
        "trips.csv": (header + "\n" + "\n".join(lines) + "\n").encode(),
        "consensus.csv": ("\n".join(consensus) + "\n").encode(),
        "rte.csv": RTE.read_bytes(),
        "people.csv": PEOPLE.read_bytes(),
        "people.yaml": PEOPLE_CONFIG.read_bytes(),
        "boxes.csv": _csv(boxes),
        "text.csv": _csv(text),
    }


def _csv(rows) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def _commands(inp: str, out: str) -> list[tuple[str, list[str]]]:
    """(name, argv) of every command, in order, reading under ``inp`` and writing under ``out``."""
    run = ["run", "--input", f"{inp}/trips.csv", "--quiet", "--parity-sample", "0.1"]
    join = ["--labels", f"{inp}/consensus.csv", "--label-key", "trip_start_timestamp"]
    labels = ["labels", "--quiet"]
    skew = ["check-skew", "--transform-output", f"{out}/run", "--input", f"{inp}/trips.csv", "--quiet"]
    return [
        ("run", [*run, "--output", f"{out}/run"]),
        ("run-parquet", [*run, "--output", f"{out}/parquet", "--output-format", "parquet", "--no-report"]),
        ("run-cached", [*run, "--output", f"{out}/cached", "--analysis-cache", f"{out}/cache", "--no-report"]),
        ("run-cached-again", [*run, "--output", f"{out}/cached", "--analysis-cache", f"{out}/cache", "--no-report"]),
        ("run-labels", [*run, "--output", f"{out}/joined", *join, "--no-report"]),
        ("run-dedup", ["run", "--dataset", "people", "--input", f"{inp}/people.csv", "--output", f"{out}/people"]),
        ("check-skew", skew),
        ("check-skew-output", [*skew, "--output", f"{out}/run/skew.json"]),
        ("train", ["train", "--transform-output", f"{out}/run", "--epochs", "1"]),
        ("report", ["report", f"{out}/run", "--labels", f"{out}/rte"]),
        ("verify-parity", ["verify-parity", f"{out}/run"]),
        ("export-tfx", ["export-tfx", f"{out}/run", "--to", f"{out}/tfx"]),
        (
            "check-skew-anomalies",
            [*skew, "--anomalies", f"{out}/skew/anomalies.pbtxt", "--statistics", f"{out}/skew/FeatureStats.pb"],
        ),  # fmt: skip
        (
            "labels",
            [*labels, "--annotations", f"{inp}/rte.csv", "--output", f"{out}/rte", *RTE_COLUMNS, "--round", "r1"],
        ),  # fmt: skip
        (
            "labels-boxes",
            [
                *labels,
                "--kind",
                "boxes",
                "--annotations",
                f"{inp}/boxes.csv",
                "--output",
                f"{out}/boxes",
                "--item-col",
                "image",
                "--label-col",
                "class",
                "--round",
                "r1",
            ],
        ),  # fmt: skip
        (
            "labels-text",
            [
                *labels,
                "--kind",
                "text",
                "--annotations",
                f"{inp}/text.csv",
                "--output",
                f"{out}/text",
                "--item-col",
                "clip",
                "--annotator-col",
                "worker",
                "--label-col",
                "transcript",
            ],
        ),  # fmt: skip
        (
            "dedup",
            [
                "dedup",
                "--input",
                f"{inp}/people.csv",
                "--config",
                f"{inp}/people.yaml",
                "--output",
                f"{out}/dedup",
                "--quiet",
            ],
        ),  # fmt: skip
        (
            "dedup-model",
            [
                "dedup",
                "--input",
                f"{inp}/people.csv",
                "--config",
                f"{inp}/people.yaml",
                "--output",
                f"{out}/dedup-again",
                "--model",
                f"{out}/dedup/model.json",
                "--quiet",
            ],
        ),  # fmt: skip
        ("lineage", ["lineage", "upstream", f"{out}/run/serving_model", "--json"]),
    ]


def _order(commands):
    """``report`` reads the labels output: run the label commands before it."""
    names = [name for name, _ in commands]
    first = [c for c in commands if c[0].startswith("labels")]
    rest = [c for c in commands if not c[0].startswith("labels")]
    assert len(first) + len(rest) == len(names)
    return first + rest


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Runs every command locally and on ``ram://``; returns the local output root, the exit codes
    of both, and the files written to the local disk during the ``ram://`` runs."""
    object_store.install()
    object_store.clear()
    local = tmp_path_factory.mktemp("local")
    (local / "in").mkdir()
    for name, data in _inputs().items():
        (local / "in" / name).write_bytes(data)
        files.write_bytes(f"{BUCKET}/in/{name}", data)
    codes_local, codes_ram = {}, {}
    for name, argv in _order(_commands(str(local / "in"), str(local / "out"))):
        codes_local[name] = cli.main(argv)
    # the ram:// runs: the working directory and the temporary directory are empty folders,
    # watched for anything written to them
    watched = tmp_path_factory.mktemp("watched")
    cwd, scratch = watched / "cwd", watched / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    previous_cwd, previous_tempdir = os.getcwd(), tempfile.tempdir
    os.chdir(cwd)
    tempfile.tempdir = str(scratch)
    try:
        for name, argv in _order(_commands(f"{BUCKET}/in", f"{BUCKET}/out")):
            codes_ram[name] = cli.main(argv)
    finally:
        os.chdir(previous_cwd)
        tempfile.tempdir = previous_tempdir
    written = sorted(str(p.relative_to(watched)) for p in watched.rglob("*") if p.is_file())
    return local / "out", codes_local, codes_ram, written


def _names(root: str) -> list[str]:
    return sorted(_RANDOM.sub("<id>", name) for name in files.list_files(root))


def test_every_command_succeeds_locally_and_on_the_object_store(trees):
    _, codes_local, codes_ram, _ = trees
    assert codes_local == {name: 0 for name in codes_local}
    assert codes_ram == codes_local


def test_nothing_is_written_to_the_local_disk(trees):
    assert trees[3] == []


@pytest.mark.parametrize(
    "tree",
    [
        "run",
        "parquet",
        "cached",
        "cache",
        "joined",
        "people",
        "rte",
        "boxes",
        "text",
        "dedup",
        "dedup-again",
        "tfx",
        "skew",
    ],
)
def test_each_tree_has_the_local_runs_files_and_nothing_stray(trees, tree):
    local = str(trees[0] / tree)
    assert _names(f"{BUCKET}/out/{tree}") == _names(local)


def test_nothing_stray_beside_the_outputs():
    """No staging directory, scratch or temporary file is left under the bucket's output prefix."""
    tops = sorted({path[len(f"{BUCKET}/out/") :].split("/")[0] for path in object_store.objects(f"{BUCKET}/out/")})
    assert tops == sorted(
        [
            "boxes",
            "cache",
            "cached",
            "dedup",
            "dedup-again",
            "joined",
            "parquet",
            "people",
            "rte",
            "run",
            "skew",
            "text",
            "tfx",
        ]
    )


@pytest.mark.parametrize(
    "name",
    [
        "run/metadata/schema.pbtxt",
        "run/transform_fn/assets/payment_type",
        "run/transformed_metadata/schema.pbtxt",
        "run/serving_model/assets.extra/schema.pbtxt",
        "run/stats/pre_transform.json",
        "run/stats/post_transform.json",
        "run/anomalies.pbtxt",
        "skew/anomalies.pbtxt",
        "tfx/transform_graph/transform_fn/assets/payment_type",
        "tfx/pre_transform_schema/schema.pbtxt",
        "run/skew.json",
        "run/model/metrics.json",
        "rte/consensus.csv",
        "rte/review.csv",
        "rte/rounds.json",
        "boxes/consensus.csv",
        "boxes/rounds.json",
        "text/consensus.csv",
        "dedup/pairs.csv",
        "dedup/clusters.csv",
        "dedup/review.csv",
        "dedup/removed.jsonl",
        "dedup/model.json",
        "people/dedup/clusters.csv",
    ],
)
def test_outputs_hold_the_same_bytes(trees, name):
    assert files.read_bytes(f"{BUCKET}/out/{name}") == (trees[0] / name).read_bytes()


def _records(root: str, pattern: str) -> list[str]:
    """The parsed tf.Examples of the files, as sorted JSON (a map's serialized order may vary)."""
    from apache_beam.io.tfrecordio import _TFRecordUtil

    records = []
    for path in files.match(f"{root}/{pattern}"):
        handle = gzip.GzipFile(fileobj=io.BytesIO(files.read_bytes(path)))
        while (record := _TFRecordUtil.read_record(handle)) is not None:
            records.append(record)
    return sorted(json.dumps(row, sort_keys=True, default=repr) for row in parse_examples(records))


@pytest.mark.parametrize("tree", ["run", "cached", "joined", "people"])
def test_transformed_examples_are_the_same_records(trees, tree):
    for split in ("train", "eval"):
        ram = _records(f"{BUCKET}/out/{tree}", f"transformed/{split}-*.tfrecord.gz")
        assert ram and ram == _records(str(trees[0] / tree), f"transformed/{split}-*.tfrecord.gz")


def test_parquet_output_holds_the_same_rows(trees):
    def rows(root):
        table = files.read_parquet(files.match(f"{root}/parquet/transformed/*.parquet"))
        return sorted(json.dumps(row, sort_keys=True) for row in table.to_pylist())

    assert rows(BUCKET + "/out") == rows(str(trees[0]))


def test_the_second_cached_run_reused_the_object_store_cache(trees):
    record = json.loads(files.read_bytes(f"{BUCKET}/out/cached/run.json"))
    local = json.loads((trees[0] / "cached" / "run.json").read_bytes())
    assert len(record["analysis"]["reused"]) == len(local["analysis"]["reused"]) == 1
    assert record["analysis"]["reused"] == [f"{BUCKET}/in/trips.csv"]
    assert record["counts"] == local["counts"]


def test_run_records_agree_but_for_where_and_when(trees):
    ram = json.loads(files.read_bytes(f"{BUCKET}/out/run/run.json"))
    local = json.loads((trees[0] / "run" / "run.json").read_bytes())
    assert ram["status"] == local["status"] == "succeeded"
    assert ram["counts"] == local["counts"]
    assert [i["sha256"] for i in ram["inputs"]] == [i["sha256"] for i in local["inputs"]]
    assert ram["inputs"][0]["uri"] == f"{BUCKET}/in/trips.csv"


def test_the_report_reads_the_object_store(trees):
    page = files.read_text(f"{BUCKET}/out/run/report.html")
    assert "Label agreement" in page and "No agreement.json" not in page
    assert "skew.json" in page
