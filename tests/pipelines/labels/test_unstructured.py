"""``skewless labels --kind boxes|text``: exact values on hand-made cases, planted conventions, rounds."""

import csv
import json
import math
import random

import pytest

from pipelines import cli
from pipelines.labels import boxes, transcripts

pytestmark = pytest.mark.e2e


def _write(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


# ------------------------------------------------------------------------------------ hand-made cases


def test_two_annotators_boxes_exact_values():
    a = [(0, 0, 10, 10, "iguana"), (20, 0, 30, 10, "iguana")]
    b = [(0, 0, 10, 10, "iguana"), (20, 0, 30, 20, "iguana")]  # second box twice as tall: IoU 0.5
    comparison = boxes.compare_annotators(a, b)
    assert comparison["ious"] == [1.0, 0.5]
    assert (comparison["unmatched"], comparison["count_differs"], comparison["a_merges"]) == (0, False, 0)
    assert comparison["log_area_ratios"] == pytest.approx([0.0, math.log(0.5)])
    assert boxes.score_against(a, b) == pytest.approx(0.75)
    fused = boxes.consensus_boxes({"a": a, "b": b}, min_annotators=2)
    assert [c["box"] for c in fused] == [(0.0, 0.0, 10.0, 10.0), (20.0, 0.0, 30.0, 15.0)]
    assert boxes.iou_matrix([(0, 0, 2, 2, "x")], [(1, 1, 3, 3, "x")])[0, 0] == pytest.approx(1 / 7)


def test_one_box_around_two_is_a_merge_and_unmatched():
    whole = [(0, 0, 30, 10, "iguana")]
    parts = [(0, 0, 10, 10, "iguana"), (20, 0, 30, 10, "iguana")]
    comparison = boxes.compare_annotators(whole, parts)
    assert comparison["ious"] == [] and comparison["unmatched"] == 3  # IoU 1/3 each: below 0.5
    assert (comparison["a_merges"], comparison["b_merges"], comparison["count_differs"]) == (1, 0, True)
    summary = boxes.item_summary("img", {"whole": whole, "parts": parts})
    assert summary["review_reasons"] == ["whole draws one box where parts draws several"]


def test_normaliser_and_wer_exact_values():
    n = transcripts.Normaliser()
    assert n.words("um, today's weather") == n.words("Um... today's weather.") == ["todays", "weather"]
    assert n.words("[unintelligible] weather") == ["[unintelligible]", "weather"]
    assert n.words("Twenty-one cats and one hundred and five dogs") == ["21", "cats", "and", "105", "dogs"]
    assert transcripts.wer(["the", "cat", "sat"], ["the", "cat", "sat", "down"]) == pytest.approx(1 / 3)
    assert transcripts.pairwise_wer(["the", "cat", "sat"], ["the", "cat", "sat", "down"]) == pytest.approx(
        (1 / 3 + 1 / 4) / 2
    )
    assert transcripts.wer(["a", "b", "c", "d"], ["a", "x", "c"]) == pytest.approx(2 / 4)
    custom = transcripts.Normaliser.from_dict({"fillers": ["like"], "number_words": False})
    assert custom.words("Um like twenty") == ["um", "twenty"]
    with pytest.raises(ValueError, match="unknown normaliser option 'colour'"):
        transcripts.Normaliser.from_dict({"colour": True})


def test_rover_votes_word_by_word():
    votes = [s.split() for s in ("the cat sat on the mat", "the cat sat on a mat", "a cat sat on the mat today")]
    assert transcripts.rover(votes) == "the cat sat on the mat".split()
    assert transcripts.rover(
        [["[unintelligible]", "weather"], ["[unintelligible]", "weather"], ["the", "weather"]]
    ) == [
        "[unintelligible]",
        "weather",
    ]


# --------------------------------------------------------------------------- generated, with conventions


def _box_rows(seed: int, round_noise: float) -> list[list]:
    """30 images of one or two iguanas; annotators a1, a2, a3 draw them as they are (with jitter),
    'merger' draws one box around two iguanas side by side, 'tail' includes the occluded tail
    (boxes about 1.8x the area)."""
    rng = random.Random(seed)
    rows = []
    for i in range(30):
        objects = [(10, 10, 40, 30)] if i % 3 == 0 else [(10, 10, 40, 30), (45, 12, 75, 32)]
        for annotator in ("a1", "a2", "a3", "merger", "tail"):
            drawn = list(objects)
            if annotator == "merger" and len(objects) == 2:
                drawn = [(10, 10, 75, 32)]
            for x0, y0, x1, y1 in drawn:
                if annotator == "tail":
                    x1 = x0 + (x1 - x0) * 1.8
                jitter = [rng.uniform(-round_noise, round_noise) for _ in range(4)]
                rows.append(
                    [f"img{i:02d}", annotator, x0 + jitter[0], y0 + jitter[1], x1 + jitter[2], y1 + jitter[3], "iguana"]
                )
    rows.append(["img99", "a1", 5, 5, 1, 1, "iguana"])  # inverted: a dead letter
    rows.append(["img99", "a1", "wide", 5, 10, 10, "iguana"])  # unparsable: a dead letter
    return rows


@pytest.fixture(scope="module")
def boxes_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boxes")
    header = ["image", "annotator", "x_min", "y_min", "x_max", "y_max", "class"]
    out = folder / "out"
    for name, noise in (("v1", 3.0), ("v2", 0.5)):
        path = _write(folder / f"{name}.csv", header, _box_rows(1, noise))
        argv = ["labels", "--kind", "boxes", "--annotations", path, "--output", str(out), "--item-col", "image"]
        assert cli.main([*argv, "--label-col", "class", "--round", name, "--quiet"]) == 0
    return out


def test_planted_box_conventions_are_detected(boxes_run):
    report = json.loads((boxes_run / "agreement.json").read_text())
    found = {(c["annotator"], c["convention"]) for c in report["conventions"]}
    assert found == {("merger", "merges boxes"), ("tail", "larger boxes")}
    tail = next(c for c in report["conventions"] if c["annotator"] == "tail")
    assert 1.5 <= tail["area_ratio"] <= 1.8  # 1.8x the faithful annotators' boxes, less against merger's
    stats = report["annotators_stats"]
    assert stats["a1"]["boxes_per_item"] == pytest.approx(50 / 30) and stats["merger"]["boxes_per_item"] == 1.0
    assert (report["items"], report["annotators"], report["dead_lettered"]) == (30, 5, 2)
    dead = [json.loads(line) for path in (boxes_run / "dead_letter").glob("*.jsonl") for line in open(path)]
    assert sorted(d["reason"].split(" ")[0] for d in dead) == ["empty", "unparsable"]
    for d in dead:  # each names its file and the byte offset of its line there
        assert open(d["source"], "rb").read()[d["offset"] :].split(b"\n")[0].decode().rstrip("\r") == d["raw"]
    with open(boxes_run / "review.csv") as handle:
        review = list(csv.DictReader(handle))
    # every image is in review: 'tail' draws larger boxes everywhere, 'merger' merges on two iguanas
    assert len(review) == 30
    two = next(r for r in review if r["item"] == "img01")
    assert "merger draws one box where a1 draws several" in two["reasons"]


def test_box_consensus_and_hlp(boxes_run):
    with open(boxes_run / "consensus.csv") as handle:
        consensus = list(csv.DictReader(handle))
    by_item = {}
    for row in consensus:
        by_item.setdefault(row["item"], []).append(row)
    assert len(by_item["img00"]) == 1 and len(by_item["img01"]) == 2  # one and two iguanas
    first = by_item["img01"][0]
    assert abs(float(first["x_min"]) - 10) < 1 and int(first["annotators"]) >= 3
    report = json.loads((boxes_run / "agreement.json").read_text())
    hlp = report["hlp"]
    assert 0 < hlp["ci95"][0] <= hlp["value"] <= hlp["ci95"][1] <= 1
    assert hlp["per_annotator"]["a1"] > hlp["per_annotator"]["tail"]


def test_rounds_show_agreement_change_per_class(boxes_run):
    rounds = json.loads((boxes_run / "rounds.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == ["v1", "v2"]
    assert rounds[1]["change_since"] == "v1" and rounds[1]["overall_change"] > 0  # less jitter in v2
    assert rounds[1]["per_class_change"]["iguana"] == pytest.approx(
        rounds[1]["per_class"]["iguana"] - rounds[0]["per_class"]["iguana"]
    )


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    rows = [
        ["clip1", "ann1", "um, today's weather"],
        ["clip1", "ann2", "Um... today's weather."],
        ["clip1", "ann3", "[unintelligible] weather"],
        ["clip2", "ann1", "the cat sat on the mat"],
        ["clip2", "ann2", "the cat sat on a mat"],
        ["clip2", "ann3", "a cat sat on the mat today"],
        ["", "ann1", "no item"],
    ]
    path = _write(folder / "t.csv", ["clip", "worker", "transcript"], rows)
    out = folder / "out"
    argv = ["labels", "--kind", "text", "--annotations", path, "--output", str(out), "--item-col", "clip"]
    assert cli.main([*argv, "--annotator-col", "worker", "--label-col", "transcript", "--round", "r1", "--quiet"]) == 0
    return out


def test_transcripts_agreement_consensus_and_hlp(text_run):
    report = json.loads((text_run / "agreement.json").read_text())
    # clip1: ann1 = ann2, each vs ann3 0.5 both ways -> (0 + 0.5 + 0.5) / 3
    # clip2: ann1/ann2 1/6, ann1/ann3 (2/6 + 2/7)/2, ann2/ann3 (3/6 + 3/7)/2
    clip2 = [1 / 6, (2 / 6 + 2 / 7) / 2, (3 / 6 + 3 / 7) / 2]
    assert report["per_item"]["clip1"] == pytest.approx(1 / 3)
    assert report["per_item"]["clip2"] == pytest.approx(sum(clip2) / 3)
    assert report["mean_pairwise_wer"] == pytest.approx((1 / 3 * 3 + sum(clip2)) / 6)
    assert report["unintelligible_tags"] == 1 and report["dead_lettered"] == 1
    assert report["normaliser"]["fillers"][:2] == ["um", "uh"]
    with open(text_run / "consensus.csv") as handle:
        consensus = {r["item"]: r["consensus"] for r in csv.DictReader(handle)}
    assert consensus == {"clip1": "todays weather", "clip2": "the cat sat on the mat"}
    # HLP: each annotator vs the ROVER consensus of the other two
    hlp = report["hlp"]
    assert hlp["per_annotator"]["ann3"] > hlp["per_annotator"]["ann1"]
    with open(text_run / "review.csv") as handle:
        review = {r["item"]: r["reasons"] for r in csv.DictReader(handle)}
    assert "only ann3 marked part of it [unintelligible]" in review["clip1"]
    assert json.loads((text_run / "rounds.json").read_text())["rounds"][0]["per_class"]["all"] == pytest.approx(
        1 - report["mean_pairwise_wer"]
    )


def test_rounds_work_for_classes_too(tmp_path, capsys):
    out = tmp_path / "out"
    first = [["i1", "a", "cat"], ["i1", "b", "dog"], ["i2", "a", "dog"], ["i2", "b", "dog"]]
    second = [["i1", "a", "cat"], ["i1", "b", "cat"], ["i2", "a", "dog"], ["i2", "b", "dog"]]
    for name, rows in (("v1", first), ("v2", second)):
        path = _write(tmp_path / f"{name}.csv", ["item", "annotator", "label"], rows)
        assert cli.main(["labels", "--annotations", path, "--output", str(out), "--round", name]) == 0
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert [(r["round"], r["overall"]) for r in rounds] == [("v1", 0.5), ("v2", 1.0)]
    assert rounds[1]["overall_change"] == 0.5 and rounds[1]["plateau"] is False
    table = capsys.readouterr().err
    assert "agreement by round (percent agreement)" in table and "1.000 (+0.500)" in table


def test_the_report_shows_box_agreement_and_conventions(boxes_run, text_run, tmp_path):
    from pipelines.report import html as report

    for labels_dir, expected in (
        (boxes_run, ["Label agreement (boxes)", "merges boxes", "larger boxes"]),
        (text_run, ["Label agreement (text)", "mean pairwise WER"]),
    ):
        page = open(report.write_report(str(tmp_path), labels_dir=str(labels_dir)), encoding="utf-8").read()
        assert all(text in page for text in expected)


def test_a_cut_gzip_transcript_file_fails_with_one_line(tmp_path, capsys):
    import gzip

    rows = [[f"clip{i}", f"ann{i % 3}", f"the cat sat on mat number {i}"] for i in range(3000)]
    plain = _write(tmp_path / "t.csv", ["clip", "worker", "transcript"], rows)
    data = gzip.compress(open(plain, "rb").read())
    cut = tmp_path / "t.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    argv = ["labels", "--kind", "text", "--annotations", str(cut), "--output", str(tmp_path / "out"), "--quiet"]
    capsys.readouterr()
    assert cli.main([*argv, "--item-col", "clip", "--annotator-col", "worker", "--label-col", "transcript"]) == 1
    assert capsys.readouterr().err.strip() == (
        "skewless labels: error: damaged inputs lost annotations, their number unknown ('truncated file' x1); "
        "repair the files or fetch them again"
    )
    assert not (tmp_path / "out").exists()
