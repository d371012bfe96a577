"""``skewless run --dataset people``: the dedup stage inside the run, with every row accounted for."""

import csv
import json
import os

import pytest

from pipelines import cli
from tests.helpers import PROJECT_ROOT, parse_examples, read_tfrecords, saved_model_tags

pytestmark = pytest.mark.e2e

SAMPLE = PROJECT_ROOT / "schemas" / "people" / "signups.csv"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("people") / "out"
    assert cli.main(["run", "--dataset", "people", "--output", str(out), "--parity-sample", "1", "--quiet"]) == 0
    return str(out)


def test_rows_removed_by_dedup_are_counted_as_dropped_by_policy(run_dir):
    record = json.load(open(os.path.join(run_dir, "run.json")))
    counts, dedup = record["counts"], record["dedup"]
    with open(SAMPLE, newline="") as handle:
        sample = list(csv.DictReader(handle))
    removed = [json.loads(line) for line in open(os.path.join(run_dir, "dedup", "removed.jsonl"))]
    assert counts["rows_read"] == len(sample) == dedup["records"]["read"]
    assert counts["rows_dropped_by_policy"] == len(removed) == dedup["records"]["removed"] > 0
    assert counts["dropped_reasons"] == {"duplicate removed by dedup": len(removed)}
    assert counts["rows_train"] + counts["rows_eval"] == dedup["records"]["kept"] == len(sample) - len(removed)
    examples = read_tfrecords(os.path.join(run_dir, "transformed", "*.tfrecord.gz"))
    assert len(examples) == counts["rows_train"] + counts["rows_eval"]
    # on this sample every removed row is a second sign-up of the person its canonical record is
    entity = {row["rec_id"]: row["entity_id"] for row in sample}
    assert all(entity[e["id"]] == entity[e["canonical_id"]] for e in removed)
    assert {"nova-web", "nova-app"}.isdisjoint(e["id"] for e in removed)


def test_transformed_values_and_serving_parity(run_dir):
    record = json.load(open(os.path.join(run_dir, "run.json")))
    assert record["parity"]["passed"] and record["parity"]["mismatched_features"] == []
    rows = parse_examples(read_tfrecords(os.path.join(run_dir, "transformed", "*.tfrecord.gz")))
    assert set(rows[0]) == {
        "channel_xf",
        "locality_xf",
        "email_domain_xf",
        "has_phone_xf",
        "has_date_of_birth_xf",
        "row_id",  # provenance
        "channel",  # the dataset's metadata column, as it is in the raw data
    }
    assert {row["channel"] for row in rows} == {(b"web",), (b"app",)}
    assert {row["has_phone_xf"] for row in rows} == {(0,), (1,)}
    vocabulary = open(os.path.join(run_dir, "transform_fn", "assets", "channel")).read().split()
    assert sorted(vocabulary) == ["app", "web"]
    # people's preprocessing_fn is traced as a tf.function (tf_compat_v1: false), into a TF2 SavedModel
    assert saved_model_tags(os.path.join(run_dir, "transform_fn")) == [["serve"]]


def test_report_and_lineage_show_the_dedup_stage(run_dir):
    page = open(os.path.join(run_dir, "report.html"), encoding="utf-8").read()
    assert "keep-canonical" in page and "nova-web" in page  # the Nova Ng pair is listed for review
    assert os.path.isfile(os.path.join(run_dir, "dedup", "model.json"))
