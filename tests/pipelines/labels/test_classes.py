"""skewless labels end to end: the RTE crowd data with gold, and a hand-made file with every option."""

import csv
import json

import pytest

from pipelines import cli
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.e2e

RTE = PROJECT_ROOT / "data" / "crowd" / "rte.standardized.csv"
RTE_COLUMNS = ["--item-col", "orig_id", "--annotator-col", "!amt_worker_ids", "--label-col", "response"]


@pytest.fixture(scope="module")
def rte(tmp_path_factory):
    out = tmp_path_factory.mktemp("rte") / "out"
    argv = ["labels", "--annotations", str(RTE), "--output", str(out), *RTE_COLUMNS, "--gold-col", "gold"]
    assert cli.main([*argv, "--lineage-db", str(out.parent / "lineage.db")]) == 0
    return out


def test_lineage_records_the_labels_run_and_its_runner(rte, capsys):
    db = str(rte.parent / "lineage.db")
    capsys.readouterr()
    assert cli.main(["lineage", "runs", "--json", "--lineage-db", db]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["command"], r["status"]) for r in runs] == [("labels", "succeeded")]
    assert cli.main(["lineage", "show", runs[0]["id"], "--json", "--lineage-db", db]) == 0
    assert json.loads(capsys.readouterr().out)["runner"] == "FnApiRunner"


def test_rte_outputs_and_counts(rte):
    assert sorted(p.name for p in rte.iterdir()) == [
        "agreement.json",
        "annotations",
        "consensus.csv",
        "dead_letter",
        "review.csv",
    ]
    report = json.loads((rte / "agreement.json").read_text())
    assert (report["annotations"], report["items"], report["annotators"], report["labels"]) == (
        8000,
        800,
        164,
        ["0", "1"],
    )
    assert report["dead_lettered"] == 0 and report["duplicates_ignored"] == 0


def test_rte_consensus_is_as_accurate_as_published_aggregators(rte):
    report = json.loads((rte / "agreement.json").read_text())
    # crowd-kit 1.4.2 on the same file: DawidSkene 0.9275, MajorityVote 0.91875
    assert report["gold"]["consensus_accuracy"] >= 0.9275
    assert report["gold"]["majority_accuracy"] >= 0.91875
    consensus = list(csv.DictReader(open(rte / "consensus.csv")))
    assert len(consensus) == 800
    gold = {}
    for row in csv.DictReader(open(RTE)):
        gold[row["orig_id"]] = row["gold"]
    accuracy = sum(row["label"] == gold[row["item"]] for row in consensus) / 800
    assert accuracy == pytest.approx(report["gold"]["consensus_accuracy"])
    assert all(int(row["n_annotations"]) == 10 for row in consensus)


def test_rte_agreement_measures_are_consistent(rte):
    report = json.loads((rte / "agreement.json").read_text())
    # binary labels, 10 per item: Krippendorff's nominal alpha is Fleiss' kappa corrected for sample size
    assert report["krippendorff_alpha"]["value"] == pytest.approx(report["fleiss_kappa"], abs=0.005)
    assert 0.5 < report["percent_agreement"] < 0.8
    assert report["mean_pairwise_cohen_kappa"]["pairs"] > 0
    assert set(report["per_class_agreement"]) == {"0", "1"}
    hlp = report["hlp"]
    assert hlp["vs_gold"]["ci95"][0] < hlp["vs_gold"]["accuracy"] < hlp["vs_gold"]["ci95"][1]
    assert hlp["vs_others"]["scored_annotations"] == 8000
    quality = report["annotator_quality"]
    assert len(quality) == 164 and all("accuracy_vs_gold" in q and "confusion" in q for q in quality.values())


def test_review_lists_uncertain_items_least_confident_first_with_every_label(rte):
    rows = list(csv.DictReader(open(rte / "review.csv")))
    report = json.loads((rte / "agreement.json").read_text())
    assert len(rows) == report["consensus"]["flagged_for_review"] > 0
    confidences = [float(r["confidence"]) for r in rows]
    assert confidences == sorted(confidences) and confidences[-1] < 0.7
    assert all(len(r["labels"].split("; ")) == 10 for r in rows)


def test_merge_map_uncertain_label_duplicates_and_dead_letters(tmp_path):
    path = tmp_path / "defects.csv"
    path.write_text(
        "image,inspector,defect\n"
        "i1,ann,scratch_deep\ni1,bob,scratch_light\ni1,cat,dent\n"
        "i2,ann,dent\ni2,bob,dent\ni2,cat,unsure\n"
        "i3,ann,unsure\ni3,bob,unsure\n"
        "i4,ann,dent\ni4,ann,scratch_deep\ni4,bob,dent\n"
        "i5,,dent\ni5,bob\n"
    )
    merge = tmp_path / "merge.yaml"
    merge.write_text("scratch_deep: scratch\nscratch_light: scratch\n")
    out = tmp_path / "out"
    argv = [
        "labels",
        "--annotations",
        str(path),
        "--output",
        str(out),
        "--item-col",
        "image",
        "--annotator-col",
        "inspector",
        "--label-col",
        "defect",
        "--merge-map",
        str(merge),
        "--uncertain-label",
        "unsure",
        "--method",
        "majority",
    ]
    assert cli.main(argv) == 0
    report = json.loads((out / "agreement.json").read_text())
    assert report["merged"] == {"scratch_deep": 2, "scratch_light": 1}
    assert report["labels"] == ["dent", "scratch"]
    assert report["uncertain"] == {"label": "unsure", "annotations": 3, "items_only_uncertain": 1}
    assert report["duplicates_ignored"] == 1  # ann labelled i4 twice: the first label counts
    assert report["dead_lettered"] == 2
    consensus = {r["item"]: r for r in csv.DictReader(open(out / "consensus.csv"))}
    assert consensus["i1"]["label"] == "scratch" and consensus["i1"]["confidence"] == "0.666667"
    assert consensus["i2"]["label"] == "dent" and consensus["i2"]["n_annotations"] == "3"
    assert (consensus["i3"]["label"], consensus["i3"]["flagged"]) == ("unsure", "1")
    assert consensus["i4"]["label"] == "dent"
    dead = [json.loads(line) for f in (out / "dead_letter").glob("*.jsonl") for line in open(f)]
    assert sorted(d["reason"] for d in dead) == ["missing annotator", "wrong field count: expected 3, found 2"]
    data = path.read_bytes()
    assert sorted(data[d["offset"] :].split(b"\n")[0] for d in dead) == [b"i5,,dent", b"i5,bob"]


def test_missing_columns_are_a_usage_error(tmp_path, capsys):
    assert cli.main(["labels", "--annotations", str(RTE), "--output", str(tmp_path / "o")]) == 2
    assert "no column 'item'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_gold_labels_are_merged_like_the_annotators_labels(tmp_path):
    path = tmp_path / "gold.csv"
    path.write_text(
        "item,annotator,label,gold\n"
        "i1,ann,scratch_deep,scratch_light\ni1,bob,scratch_light,scratch_light\n"
        "i2,ann,dent,dent\ni2,bob,dent,\n"
        "i3,ann,dent,scratch_deep\ni3,bob,scratch_deep,\n"
    )
    merge = tmp_path / "merge.yaml"
    merge.write_text("scratch_deep: scratch\nscratch_light: scratch\n")
    out = tmp_path / "out"
    argv = ["labels", "--annotations", str(path), "--output", str(out), "--gold-col", "gold", "--merge-map", str(merge)]
    assert cli.main(argv) == 0
    report = json.loads((out / "agreement.json").read_text())
    assert report["gold"]["items_with_gold"] == 3
    quality = report["annotator_quality"]
    # gold per item (from any row): i1 scratch, i2 dent, i3 scratch; ann misses i3, bob gets all three
    assert (quality["ann"]["accuracy_vs_gold"], quality["bob"]["accuracy_vs_gold"]) == (pytest.approx(2 / 3), 1.0)


def test_a_tab_separated_utf16_copy_gives_the_same_consensus(rte, tmp_path):
    import csv

    tsv = tmp_path / "rte.tsv"  # tab-separated by its name, UTF-16 as a spreadsheet's "Unicode text" export
    with open(RTE, encoding="utf-8", newline="") as source, open(tsv, "w", encoding="utf-16", newline="") as target:
        csv.writer(target, delimiter="\t", lineterminator="\n").writerows(csv.reader(source))
    out = tmp_path / "out"
    argv = ["labels", "--annotations", str(tsv), "--output", str(out), *RTE_COLUMNS, "--gold-col", "gold"]
    assert cli.main([*argv, "--encoding", "utf-16"]) == 0
    for name in ("consensus.csv", "review.csv"):
        assert (out / name).read_text() == (rte / name).read_text(), name


def test_a_cut_gzip_input_fails_with_one_line_saying_annotations_were_lost(tmp_path, capsys):
    """A ``.csv.gz`` cut short (a download or copy interrupted): the annotations before the break
    are read, the break is a ``truncated file`` dead letter, and the job fails since no consensus
    should stand on an unknown loss."""
    import gzip

    data = gzip.compress(RTE.read_bytes())
    cut = tmp_path / "rte.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli.main(["labels", "--annotations", str(cut), "--output", str(out), *RTE_COLUMNS, "--quiet"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "skewless labels: error: damaged inputs lost annotations, their number unknown ('truncated file' x1); "
        "repair the files or fetch them again"
    )
    assert not out.exists()  # nothing published


def test_one_annotator_an_item_gives_undefined_measures_as_null_not_a_crash(tmp_path, capsys):
    """Agreement and HLP need items labelled twice: with one annotator they are undefined. The
    summary line crashed on them, and agreement.json held NaN, which strict JSON parsers refuse."""
    from pipelines.report import label_sections

    path = tmp_path / "single.csv"
    path.write_text("item,annotator,label\n" + "".join(f"i{i},a1,{i % 2}\n" for i in range(30)))
    out = tmp_path / "out"
    assert cli.main(["labels", "--annotations", str(path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "agreement -, Fleiss' kappa -, Krippendorff's alpha -; HLP - (agreement needs items labelled" in err

    def refuse(constant):
        raise ValueError(f"not standard JSON: {constant}")

    report = json.loads((out / "agreement.json").read_text(), parse_constant=refuse)
    assert (report["percent_agreement"], report["fleiss_kappa"], report["hlp"]["vs_others"]["accuracy"]) == (
        None,
        None,
        None,
    )
    assert report["annotators"] == 1 and report["items"] == 30
    section = label_sections.labels_section(str(out), None)
    assert "HLP (vs the other annotators)" in section


def test_a_label_written_as_na_is_a_missing_label_with_missing_value(tmp_path):
    """``--missing-value NA``: an R-style ``NA`` label is missing, dead-lettered as such, not a class."""
    path = tmp_path / "na.csv"
    path.write_text(
        "item,annotator,label\n"
        + "".join(f"i{i},a{j},{'NA' if (i, j) == (3, 1) else i % 2}\n" for i in range(6) for j in range(3))
    )
    plain, with_na = tmp_path / "plain", tmp_path / "with_na"
    assert cli.main(["labels", "--annotations", str(path), "--output", str(plain), "--quiet"]) == 0
    argv = ["labels", "--annotations", str(path), "--output", str(with_na), "--missing-value", "NA", "--quiet"]
    assert cli.main(argv) == 0
    plain_report = json.loads((plain / "agreement.json").read_text())
    na_report = json.loads((with_na / "agreement.json").read_text())
    assert (plain_report["annotations"], plain_report["dead_lettered"]) == (18, 0)
    assert (na_report["annotations"], na_report["dead_lettered"]) == (17, 1)
    dead = [json.loads(line) for p in (with_na / "dead_letter").iterdir() for line in p.read_text().splitlines()]
    assert [d["reason"] for d in dead] == ["missing label"]
    assert (plain_report["labels"], na_report["labels"]) == (["0", "1", "NA"], ["0", "1"])
