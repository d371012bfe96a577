"""Serving: the exported graph equals the Beam path row by row, on awkward rows; the Python API; compare-poc."""

import base64
import csv
import json
import re
import shutil
import zlib
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines import cli
from pipelines.prepare import parity
from pipelines.serving import model as serving
from tests.helpers import PROJECT_ROOT, sample_lines, transformed_rows
from tests.pipelines.serving.conftest import AWKWARD, REQUIRED

pytestmark = pytest.mark.e2e


def _raw_examples_like_a_client(csv_path, schema) -> list[bytes]:
    """tf.Examples as an independent client would build them from CSV: typed, empty cells left out."""
    types = {f.name: f.type for f in schema.feature}
    examples = []
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            feature = {}
            for name, text in row.items():
                if text == "":
                    continue
                if types[name] == schema_pb2.INT:
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(text)]))
                elif types[name] == schema_pb2.FLOAT:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(text)]))
                else:
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
            examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return examples


def _rows_of(outputs: dict) -> Counter:
    names = sorted(outputs)

    def value(array, i):
        return array[i] if array.dtype == object else array[i].item()

    return Counter(tuple((n, value(outputs[n], i)) for n in names) for i in range(len(outputs[names[0]])))


def test_every_row_of_the_run_went_through_the_parity_check(run_dir):
    out, _ = run_dir
    record = json.loads((out / "run.json").read_text())
    assert record["counts"]["rows_dead_lettered"] == 0
    assert record["parity"]["passed"] is True
    assert record["parity"]["rows_checked"] == 400 + len(AWKWARD)
    assert record["parity"]["mismatched_features"] == []


def test_served_rows_equal_written_rows_for_independently_built_examples(run_dir, taxi_dataset, tmp_path):
    out, csv_path = run_dir
    hermetic = tmp_path / "serving_model"
    shutil.copytree(out / "serving_model", hermetic)  # used away from transform_fn/: it must be hermetic
    signature = tf.saved_model.load(str(hermetic)).signatures["transform_features"]
    served = signature(examples=tf.constant(_raw_examples_like_a_client(csv_path, taxi_dataset.schema)))
    served_rows = _rows_of({k: v.numpy() for k, v in served.items()})
    written = transformed_rows(out, "train") + transformed_rows(out, "eval")
    written_rows = Counter(tuple((k, row[k][0]) for k in sorted(row)) for row in written)
    assert served_rows == written_rows


def test_unseen_vocabulary_lands_in_an_oov_bucket(run_dir):
    out, _ = run_dir
    model = serving.ServingModel(str(out / "serving_model"))
    row = REQUIRED | {"payment_type": "Not In Any Row"}
    (prediction,) = model.predict([row])
    vocabulary = (out / "transform_fn" / "assets" / "payment_type").read_text().splitlines()
    assert "Not In Any Row" not in vocabulary
    assert len(vocabulary) <= prediction["payment_type_xf"] < len(vocabulary) + 10


@pytest.mark.parametrize("which", ["serving_model", "model/serving"])
def test_the_graph_is_called_directly_and_answers_as_the_public_call(run_dir, trained, which):
    out, _ = run_dir
    model = serving.ServingModel(str(out / which))
    assert model._call.__name__ == "call_traced"  # not the fallback: TensorFlow's internals are as expected
    rows = [REQUIRED, REQUIRED | {"payment_type": "Not In Any Row", "trip_miles": "3.25"}, {**REQUIRED, **AWKWARD[2]}]
    examples = tf.constant(model.examples(rows))
    direct = {name: value.numpy().tolist() for name, value in model._call(examples).items()}
    public = {name: value.numpy().tolist() for name, value in model._signature(examples=examples).items()}
    assert direct == public and sorted(direct) == model.output_names
    outputs = model.predict_examples(model.examples(rows))
    columns, predictions = model.columns(outputs), model.rows(outputs)
    if len(model.output_names) == 1:  # the trained model: its one output's values
        assert columns == predictions
    else:  # the transform: a list per output, the rows' values transposed
        assert sorted(columns) == model.output_names
        assert columns == {name: [row[name] for row in predictions] for name in model.output_names}


def test_json_instances_are_decoded_like_csv_cells(run_dir):
    out, _ = run_dir
    model = serving.ServingModel(str(out / "serving_model"))
    as_text = dict(REQUIRED, fare=" 12.5", trip_start_hour=" 7 ")
    as_json = dict(REQUIRED, fare=12.5, trip_start_hour=7, trip_start_month=5, trip_miles=1.5, company=None)
    assert model.predict([as_text]) == model.predict([as_json])
    with pytest.raises(ValueError, match="instance 1, feature 'trip_start_hour': outside domain: 24 not in"):
        model.predict([as_json, dict(as_json, trip_start_hour=24)])
    with pytest.raises(ValueError, match="instance 0, feature 'trip_miles': missing required feature"):
        model.predict([{k: v for k, v in as_json.items() if k != "trip_miles"}])
    assert model.predict([dict(as_json, colour="red", size=3)]) == model.predict([as_json])  # ignored, counted
    assert model.unknown_features == {"colour": 1, "size": 1}
    with pytest.raises(ValueError, match="unsupported value"):
        model.predict([dict(as_json, fare={"x": 1})])


def test_compare_features_reports_each_kind_of_difference():
    served = {"f": np.array([1.0, 2.0, np.nan], np.float32), "i": np.array([1, 2, 3]), "s": np.array([b"a", b"b"])}
    written = {"f": np.array([1.0, 2.0000005, np.nan], np.float32), "i": np.array([1, 5, 3]), "t": np.array([1])}
    report = parity.compare_features(served, written)
    assert report["f"]["mismatches"] == 0 and report["f"]["max_abs_diff"] == pytest.approx(4.768e-7, rel=1e-3)
    assert report["i"] == {
        "mismatches": 1,
        "max_abs_diff": 3.0,
        "example": "row 1: serving np.int64(2) vs beam np.int64(5)",
    }
    assert report["s"]["example"] == "absent from the beam output"
    assert report["t"]["example"] == "absent from the serving output"


def test_verify_parity_fails_on_a_tampered_pair(run_dir, tmp_path, capsys):
    out, _ = run_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    files = sorted((copy / "parity").glob("pairs-*.jsonl"))
    names = [re.sub("[0-9a-f]{32}", "ID", path.name) for path in files]
    assert names == ["pairs-eval-ID.jsonl", "pairs-train-ID.jsonl"]
    pairs_file = files[1]
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    example = tf.train.Example.FromString(base64.b64decode(pairs[3]["transformed"]))
    fare = example.features.feature["fare_xf"].float_list.value
    fare[0] = fare[0] * 1.5 + 1.0
    pairs[3]["transformed"] = base64.b64encode(example.SerializeToString()).decode()
    pairs_file.write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    assert cli.main(["verify-parity", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "serving graph differs from Beam: fare_xf" in err.strip().splitlines()[-1]
    assert cli.main(["verify-parity", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["rows_checked"] == 406


def test_train_metrics_match_the_exported_model_on_the_eval_rows(trained, run_dir, taxi_dataset):
    _, csv_path = run_dir
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics) == {
        *("kind", "classes", "accuracy", "auc", "log_loss", "train_loss"),
        *("epochs", "batch_size", "label", "not_model_inputs"),
    }
    assert (metrics["kind"], metrics["classes"], metrics["label"], metrics["epochs"]) == ("binary", 2, "big_tipper", 2)
    assert metrics["batch_size"] == 32  # a few hundred training rows: small batches
    assert metrics["not_model_inputs"] == ["row_id"]  # provenance columns are not fed to the model
    # The eval rows are those whose line hashes into the first 20% of buckets (see pipelines/prepare/split.py).
    lines = csv_path.read_text().splitlines()[1:]
    examples = _raw_examples_like_a_client(csv_path, taxi_dataset.schema)
    rows = list(csv.DictReader(open(csv_path, newline="")))
    is_eval = [zlib.crc32(line.encode()) % 10_000 < 2_000 for line in lines]
    # big_tipper as the graph computes it, in float32
    tips = np.array([r["tips"] or 0 for r in rows], dtype=np.float32)
    fares = np.array([r["fare"] or "nan" for r in rows], dtype=np.float32)
    labels = ((tips > fares * np.float32(0.2)) & ~np.isnan(fares)).astype(np.float64)[is_eval]
    signature = tf.saved_model.load(str(trained / "serving")).signatures["serving_default"]
    eval_examples = [e for e, keep in zip(examples, is_eval, strict=True) if keep]
    probabilities = signature(examples=tf.constant(eval_examples))["probabilities"].numpy()
    assert probabilities.shape == (len(eval_examples),) and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert metrics["accuracy"] == pytest.approx(np.mean((probabilities > 0.5) == labels), abs=1e-6)
    # Keras computes the log loss from logits, so it is not recomputable from rounded probabilities
    assert metrics["log_loss"] > 0 and 0 <= metrics["auc"] <= 1


POC = str(PROJECT_ROOT / "benchmarks" / "taxi_poc.py")


@pytest.fixture(scope="module")
def clean_csv(tmp_path_factory):
    header, lines = sample_lines(400)
    path = tmp_path_factory.mktemp("poc") / "clean.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def test_compare_poc_explains_every_difference_of_the_shipped_poc(run_dir, clean_csv, capsys):
    out, _ = run_dir
    assert cli.main(["compare-poc", "--poc", f"{POC}:prepare", "--input", str(clean_csv), str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["rows_rejected_by_pipeline"], report["unexplained"]) == (400, 0, [])
    for name in ("trip_start_hour_xf", "trip_start_day_xf", "trip_start_month_xf", "pickup_community_area_xf"):
        assert report["features"][name] == {
            "mismatch_rate": 0.0,
            "max_abs_diff": 0.0,
            "explanation": None,
            "bound": None,
        }
    for name in ("fare_xf", "trip_miles_xf", "trip_seconds_xf"):
        assert report["features"][name]["explanation"].startswith("z-score statistics")
        assert report["features"][name]["bound"]["max_share"] == 1.0


def test_compare_poc_fails_on_an_unexplained_difference(run_dir, clean_csv, tmp_path, capsys):
    out, _ = run_dir
    broken = tmp_path / "broken_poc.py"
    broken.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('taxi_poc', {POC!r})\n"
        "poc = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(poc)\n"
        "EXPECTED_DIFFERENCES = poc.EXPECTED_DIFFERENCES\n"
        "def prepare(raw):\n"
        "    out = poc.prepare(raw)\n"
        "    out['trip_start_hour_xf'] += 1\n"
        "    return out\n"
    )
    assert cli.main(["compare-poc", "--poc", f"{broken}:prepare", "--input", str(clean_csv), str(out), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["unexplained"] == ["trip_start_hour_xf"]
    assert report["features"]["trip_start_hour_xf"] == {
        "mismatch_rate": 1.0,
        "max_abs_diff": 1.0,
        "explanation": "unexplained",
        "bound": None,
    }
    assert captured.err.strip().splitlines()[-1] == (
        "skewless compare-poc: error: unexplained differences on trip_start_hour_xf"
    )


def _poc_with(tmp_path, expected: str, change: str) -> str:
    """A POC that prepares the taxi rows as the shipped one, then ``change``, explained by ``expected``."""
    path = tmp_path / "poc.py"
    path.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('taxi_poc', {POC!r})\n"
        "poc = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(poc)\n"
        f"EXPECTED_DIFFERENCES = {{**poc.EXPECTED_DIFFERENCES, 'trip_start_hour_xf': {expected}}}\n"
        "def prepare(raw):\n"
        "    out = poc.prepare(raw)\n"
        f"    {change}\n"
        "    return out\n"
    )
    return f"{path}:prepare"


@pytest.mark.parametrize(
    ("expected", "change", "explanation"),
    [
        (  # the explanation covers a share of rows, not every row
            "{'reason': 'shifted', 'max_share': 0.05}",
            "out['trip_start_hour_xf'] += 1",
            "beyond its bound (100.00% of rows > 5.00%): shifted",
        ),
        (  # and differences of a size, not any size
            "{'reason': 'shifted', 'max_share': 1.0, 'max_abs_diff': 0.5}",
            "out['trip_start_hour_xf'] += 3",
            "beyond its bound (|diff| 3 > 0.5): shifted",
        ),
        (  # an explanation that states no bound excuses nothing
            "'shifted'",
            "out['trip_start_hour_xf'] += 1",
            "unexplained: the expected difference states no bound (max_share) (shifted)",
        ),
    ],
)
def test_an_expected_difference_explains_only_what_its_bound_covers(
    run_dir, clean_csv, tmp_path, capsys, expected, change, explanation
):
    out, _ = run_dir
    poc = _poc_with(tmp_path, expected, change)
    assert cli.main(["compare-poc", "--poc", poc, "--input", str(clean_csv), str(out), "--json"]) == 1
    captured = capsys.readouterr()
    entry = json.loads(captured.out)["features"]["trip_start_hour_xf"]
    assert entry["explanation"] == explanation
    assert "shifted" in captured.err and captured.err.strip().splitlines()[-1] == (
        "skewless compare-poc: error: unexplained differences on trip_start_hour_xf"
    )


def test_a_difference_within_its_bound_is_explained_and_shown_beside_it(run_dir, clean_csv, tmp_path, capsys):
    out, _ = run_dir
    poc = _poc_with(
        tmp_path, "{'reason': 'shifted', 'max_share': 1.0, 'max_abs_diff': 1.0}", "out['trip_start_hour_xf'] += 1"
    )
    assert cli.main(["compare-poc", "--poc", poc, "--input", str(clean_csv), str(out)]) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trip_start_hour_xf")]
    assert line.split() == ["trip_start_hour_xf", "100.00%", "100.0%", "1", "1", "shifted"]


def test_compare_poc_rejects_a_bad_poc_spec(run_dir, clean_csv, capsys):
    out, _ = run_dir
    assert cli.main(["compare-poc", "--poc", "no_such_module_xyz:prepare", "--input", str(clean_csv), str(out)]) == 2
    assert "cannot import the POC 'no_such_module_xyz'" in capsys.readouterr().err
