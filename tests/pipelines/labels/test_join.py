"""skewless run --labels: consensus labels joined by item id, under each policy, with every row counted."""

import json

import pytest

from pipelines import cli
from tests.helpers import sample_lines, transformed_rows

pytestmark = pytest.mark.e2e

N = 300


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """300 sample rows; consensus labels keyed by trip_start_timestamp for most of them."""
    folder = tmp_path_factory.mktemp("join")
    header, lines = sample_lines(N)
    columns = header.split(",")
    stamp = columns.index("trip_start_timestamp")
    keys = sorted({line.split(",")[stamp] for line in lines})
    rows = ["item,label,confidence,n_annotations,agreement,flagged"]
    labelled = {}
    for i, key in enumerate(keys):
        if i % 10 == 0:
            continue  # no consensus for these items
        flagged = i % 10 == 1
        labelled[key] = ("tipper" if i % 2 else "other", 0.5 if flagged else 0.9, flagged)
        rows.append(f"{key},{labelled[key][0]},{labelled[key][1]},3,0.66,{int(flagged)}")
    consensus = folder / "consensus.csv"
    consensus.write_text("\n".join(rows) + "\n")
    data = folder / "trips.csv"
    data.write_text(header + "\n" + "\n".join(lines) + "\n")
    stamps = [line.split(",")[stamp] for line in lines]
    return folder, data, consensus, stamps, labelled


def _run(inputs, policy: str):
    folder, data, consensus, _, _ = inputs
    out = folder / f"out-{policy}"
    argv = [
        "run",
        "--input",
        str(data),
        "--output",
        str(out),
        "--labels",
        str(consensus),
        "--label-key",
        "trip_start_timestamp",
        "--label-policy",
        policy,
        "--parity-sample",
        "1",
    ]
    assert cli.main(argv) == 0
    return out


def test_drop_policy_writes_every_dropped_row_and_keeps_the_accounting(inputs):
    _, _, _, stamps, labelled = inputs
    out = _run(inputs, "drop")
    usable = [s for s in stamps if s in labelled and not labelled[s][2]]
    record = json.loads((out / "run.json").read_text())
    counts = record["counts"]
    assert counts["rows_read"] == N
    assert counts["rows_train"] + counts["rows_eval"] == len(usable)
    assert counts["rows_dropped_by_policy"] == N - len(usable)
    assert counts["dropped_reasons"] == {
        "consensus flagged for review": sum(1 for s in stamps if s in labelled and labelled[s][2]),
        "no consensus label": sum(1 for s in stamps if s not in labelled),
    }
    dropped = [json.loads(line) for f in (out / "dropped").glob("*.jsonl") for line in open(f)]
    assert sorted(d["item"] for d in dropped) == sorted(s for s in stamps if s not in usable)
    rows = transformed_rows(out, "train") + transformed_rows(out, "eval")
    got = sorted((r["consensus_label"][0].decode(), round(r["consensus_confidence"][0], 3)) for r in rows)
    assert got == sorted((labelled[s][0], 0.9) for s in usable)
    assert record["parity"]["passed"]


def test_weight_policy_keeps_every_row_with_its_confidence_as_weight(inputs):
    _, _, _, stamps, labelled = inputs
    out = _run(inputs, "weight")
    rows = transformed_rows(out, "train") + transformed_rows(out, "eval")
    assert len(rows) == N
    weights = sorted(round(r["sample_weight"][0], 3) for r in rows)
    assert weights == sorted(round(labelled[s][1], 3) if s in labelled else 0.0 for s in stamps)
    assert sum(1 for r in rows if r["consensus_label"] == ()) == sum(1 for s in stamps if s not in labelled)


def test_a_label_key_outside_the_schema_is_a_usage_error(inputs, capsys):
    folder, data, consensus, _, _ = inputs
    argv = [
        "run",
        "--input",
        str(data),
        "--output",
        str(folder / "x"),
        "--labels",
        str(consensus),
        "--label-key",
        "nope",
    ]
    assert cli.main(argv) == 2
    assert "--label-key must name a raw column of the schema, got 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "item,box,x0,y0,x1,y1,label,annotators,mean_iou\n1,0,1,1,2,2,car,3,0.9\n",
            "is not a classes consensus.csv of `skewless labels`: its columns are item,box,x0,y0,x1,y1,label,"
            "annotators,mean_iou, expected item,label,confidence,n_annotations,agreement,flagged",
        ),
        (
            "item,label,confidence,n_annotations,agreement,flagged\n1,a,0.9,3,1,0\n1,b,0.8,3,1,0\n",
            "line 3: item '1' appears twice",
        ),
        ("item,label,confidence,n_annotations,agreement,flagged\n1,a,0.9,3,1\n", "line 2: 5 fields, expected 6"),
        (
            "item,label,confidence,n_annotations,agreement,flagged\n1,a,1.5,3,1,0\n",
            "line 2: confidence '1.5' is not a number from 0 to 1",
        ),
        (
            "item,label,confidence,n_annotations,agreement,flagged\n1,a,nan,3,1,0\n",
            "line 2: confidence 'nan' is not a number from 0 to 1",
        ),
        (
            "item,label,confidence,n_annotations,agreement,flagged\n1,a,0.5,3,1,yes\n",
            "line 2: flagged 'yes' is not 0 or 1",
        ),
    ],
)
def test_a_labels_file_a_join_cannot_trust_is_refused_before_the_run(inputs, capsys, text, error):
    folder, data, _, _, _ = inputs
    bad = folder / "bad_consensus.csv"
    bad.write_text(text)
    argv = ["run", "--input", str(data), "--output", str(folder / "refused"), "--labels", str(bad)]
    assert cli.main([*argv, "--label-key", "trip_start_timestamp"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"skewless run: error: --labels {bad}{',' if error.startswith('line') else ''} {error}"
    assert not (folder / "refused").exists()


def test_a_consensus_written_by_skewless_labels_with_quoted_items_and_a_bom_passes_the_check(tmp_path):
    from pipelines.labels import join as join_labels

    path = tmp_path / "consensus.csv"
    path.write_text(
        '\ufeffitem,label,confidence,n_annotations,agreement,flagged\n"a,1",x,1.0,3,1.0,0\nb,"y\nz",0,1,1,1\n'
    )
    assert join_labels.check_consensus(str(path)) == 2


def test_a_gzipped_consensus_is_checked_whole_and_one_cut_short_is_refused(tmp_path):
    """``--labels consensus.csv.gz``: Beam's reader stops early where a gzip file is cut short, so
    the check reads it with Python's gzip, which notices the cut."""
    import gzip

    import pytest

    from pipelines.errors import UsageError
    from pipelines.labels import join as join_labels

    lines = ["item,label,confidence,n_annotations,agreement,flagged"] + [f"i{n},x,1.0,3,1.0,0" for n in range(5000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    whole, cut = tmp_path / "consensus.csv.gz", tmp_path / "cut.csv.gz"
    whole.write_bytes(data)
    cut.write_bytes(data[:-8])  # every line there, only gzip's end missing
    assert join_labels.check_consensus(str(whole)) == 5000
    with pytest.raises(UsageError, match=r"--labels .*cut\.csv\.gz: the file is cut short or damaged \(EOFError"):
        join_labels.check_consensus(str(cut))
