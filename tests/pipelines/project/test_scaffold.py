"""A POC promoted as its user would: ``init`` on a public CSV with R-style NA cells and a
three-class string label (the Palmer penguins, shipped in the ``palmerpenguins`` package), then
``run``, ``train``, ``serve`` with nulls, ``verify-parity``, and the generated test."""

import importlib.resources
import json
import pathlib
import urllib.request

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
from pipelines import cli

pytestmark = pytest.mark.e2e

SPECIES = {"Adelie", "Chinstrap", "Gentoo"}
INSTANCE = {  # R's NA arrives as a JSON null at serving time
    "island": "Biscoe",
    "bill_length_mm": 45.1,
    "bill_depth_mm": None,
    "flipper_length_mm": 210,
    "body_mass_g": 4800,
    "sex": None,
    "year": 2008,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """``init``, ``run`` and ``train`` of the penguins, from a directory of their own."""
    root = tmp_path_factory.mktemp("penguins")
    data = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
    (root / "data.csv").write_bytes(data.read_bytes())
    assert (
        cli.main(["init", "penguins", "--input", str(root / "data.csv"), "--label", "species", "--dir", str(root)]) == 0
    )
    out = root / "out"
    assert cli.main(["run", "--dataset", str(root / "schemas" / "penguins"), "--output", str(out), "--quiet"]) == 0
    assert cli.main(["train", "--transform-output", str(out)]) == 0
    return root, out


def test_init_writes_the_project_with_na_as_missing_and_the_label_optional(project):
    root, _ = project
    dataset = schemas.load_dataset(str(root / "schemas" / "penguins"))
    assert dataset.missing_values == ("", "NA")
    assert dataset.label == "species_xf"
    assert dataset.sample == root / "data.csv"
    features = {f.name: f for f in dataset.schema.feature}
    assert {name: schema_pb2.FeatureType.Name(f.type) for name, f in features.items()} == {
        "species": "BYTES",
        "island": "BYTES",
        "bill_length_mm": "FLOAT",  # NA cells and all
        "bill_depth_mm": "FLOAT",
        "flipper_length_mm": "INT",
        "body_mass_g": "INT",
        "sex": "BYTES",
        "year": "INT",
    }
    assert features["bill_length_mm"].annotation.comment[0] == (
        "observed: 344 rows, 2 missing ('NA' x2), range [32.1, 59.6]"
    )
    # every column optional: serving requests have no label, and a null elsewhere is filled, not refused
    assert [name for name, f in features.items() if f.presence.min_fraction or f.shape.dim] == []
    assert features["island"].annotation.comment[-1].startswith("present in every sample row; optional")
    module = (root / "transforms" / "penguins.py").read_text()
    assert "tft.compute_and_apply_vocabulary(" in module and "tft.scale_to_z_score(" in module


def test_run_reads_every_na_as_missing_and_dead_letters_nothing(project):
    _, out = project
    record = json.loads((out / "run.json").read_text())
    counts = record["counts"]
    assert (counts["rows_read"], counts["rows_dead_lettered"], counts["rows_train"] + counts["rows_eval"]) == (
        344,
        0,
        344,
    )
    assert record["parameters"]["missing_values"] == ["", "NA"]
    assert record["parity"]["passed"] and record["parity"]["rows_checked"] >= 100


def test_train_fits_three_classes_and_serve_answers_instances_with_nulls(project):
    from pipelines.serving.model import ServingModel
    from pipelines.serving.server import Server, ServerOptions

    _, out = project
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert (metrics["kind"], metrics["classes"], metrics["label"]) == ("multiclass", 3, "species_xf")
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["log_loss"] > 0
    model = ServingModel(str(out / "model" / "serving"))
    (prediction,) = model.predict([INSTANCE])
    assert prediction["classes"] in SPECIES
    assert len(prediction["probabilities"]) == 3 and sum(prediction["probabilities"]) == pytest.approx(1, abs=1e-5)
    server = Server(model, ServerOptions(port=0)).start()
    try:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/default:predict"
        nulls = dict.fromkeys(INSTANCE)  # every feature null: still a prediction
        body = json.dumps({"instances": [INSTANCE, {**INSTANCE, "island": "Dream"}, nulls]}).encode()
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as answer:
            predictions = json.loads(answer.read())["predictions"]
        body = json.dumps({"examples": [INSTANCE]}).encode()
        with urllib.request.urlopen(urllib.request.Request(url.replace(":predict", ":classify"), body)) as answer:
            (classified,) = json.loads(answer.read())["results"]
    finally:
        server.stop()
    # Classify labels the classes by name, in the order of the probabilities
    assert sorted(model.class_labels(3)) == sorted(SPECIES) and [c[0] for c in classified] == model.class_labels(3)
    assert [c[1] for c in classified] == pytest.approx(prediction["probabilities"], abs=1e-6)
    assert max(classified, key=lambda c: c[1])[0] == prediction["classes"]
    assert predictions[0]["classes"] == prediction["classes"]
    assert predictions[0]["probabilities"] == pytest.approx(prediction["probabilities"], abs=1e-6)
    assert predictions[1]["classes"] in SPECIES and predictions[2]["classes"] in SPECIES


def test_verify_parity_passes_and_the_generated_test_passes(project, tmp_path):
    root, out = project
    assert cli.main(["verify-parity", str(out)]) == 0
    generated = schemas.load_module_file(root / "tests" / "test_penguins.py")
    generated.test_the_preprocessing_fn_runs_on_a_handful_of_rows(tmp_path)


def test_init_refuses_to_overwrite_and_a_bad_label_writes_nothing(project, tmp_path, capsys):
    root, _ = project
    config = (root / "schemas" / "penguins" / "config.yaml").read_text()
    argv = ["init", "penguins", "--input", str(root / "data.csv"), "--dir", str(root)]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"skewless init: error: {root / 'schemas' / 'penguins' / 'schema.pbtxt'} exists: "
        "refusing to overwrite it (pass --force to replace the project's files)"
    )
    assert (root / "schemas" / "penguins" / "config.yaml").read_text() == config
    assert (
        cli.main(["init", "other", "--input", str(root / "data.csv"), "--label", "beak", "--dir", str(tmp_path)]) == 2
    )
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("skewless init: error: --label 'beak' is not a column of the input; columns: species, island,")
    )
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["init", "my-data", "--input", str(root / "data.csv"), "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "skewless init: error: the dataset name must be a Python identifier (letters, digits, _), got 'my-data'"
    )
    assert cli.main(["init", "gone", "--input", str(tmp_path / "gone.csv"), "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("skewless init: error: no input file matches")
    assert list(tmp_path.iterdir()) == []


def test_a_number_label_is_regression(project, tmp_path):
    root, _ = project
    argv = ["init", "mass", "--input", str(root / "data.csv"), "--label", "bill_depth_mm", "--dir", str(tmp_path)]
    assert cli.main(argv) == 0
    out = tmp_path / "out"
    assert cli.main(["run", "--dataset", str(tmp_path / "schemas" / "mass"), "--output", str(out), "--quiet"]) == 0
    assert cli.main(["train", "--transform-output", str(out), "--epochs", "2"]) == 0
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["kind"] == "regression" and metrics["rmse"] > 0 and metrics["mae"] > 0


def test_check_skew_and_lineage_row_read_na_as_the_run_did(project, capsys):
    from tests.helpers import transformed_rows

    root, out = project
    capsys.readouterr()
    assert cli.main(["check-skew", "--transform-output", str(out), "--input", str(root / "data.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 344 and not any(report["rejected_rows"].values())
    rows = transformed_rows(out, "train") + transformed_rows(out, "eval")
    row = next(r for r in rows if r["bill_depth_mm_xf"] == (0.0,))  # a missing number: 0, the mean
    assert cli.main(["lineage", "row", str(row["row_id"][0]), "--run", str(out), "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert ",NA," in found["raw"] or found["raw"].endswith(",NA")


def test_r_row_names_and_id_columns_are_not_model_inputs(tmp_path):
    """R's write.csv adds an unnamed first column of row numbers; a sorted export would leak the
    label through it. It, and columns named like ids, stay out of the generated preprocessing_fn."""
    from pipelines.project.scaffold import init_project

    path = tmp_path / "export.csv"
    rows = [f'"{i}",{i * 7},{4 + i / 10 if i % 9 else "NA"},"{"ab"[(i - 1) // 20]}"' for i in range(1, 41)]
    path.write_text('"","user_id","length","kind"\n' + "\n".join(rows) + "\n")
    project = init_project("export", [str(path)], label="kind", directory=str(tmp_path))
    module = pathlib.Path(project.module).read_text()
    assert "# the unnamed first column (R's row names): an identifier of rows, not a model input" in module
    assert "# 'user_id': an identifier of rows, not a model input" in module
    assert "outputs['length_xf']" in module and "outputs['_xf']" not in module and "user_id_xf" not in module
    test = pathlib.Path(project.test).read_text()
    assert "assert sorted(features) == ['kind_xf', 'length_xf', 'row_id']" in test
    assert project.missing_values == ("NA",) and project.label_kind == "classes"


def test_an_int_label_of_a_small_range_is_classes_and_a_wide_one_a_number(tmp_path):
    from pipelines.project.scaffold import init_project

    path = tmp_path / "ints.csv"
    path.write_text(
        "x,grade,mass\n" + "".join(f"{i},{i % 5 + 1 if i != 7 else 'NA'},{3000 + 17 * i}\n" for i in range(60))
    )
    classes = init_project("grades", [str(path)], label="grade", directory=str(tmp_path / "a"))
    number = init_project("masses", [str(path)], label="mass", directory=str(tmp_path / "b"))
    assert (classes.label_kind, number.label_kind) == ("classes", "regression")
    module = pathlib.Path(classes.module).read_text()
    # an int class as text, a missing one (NA) as no text: -1, left out of training, never a class "-1"
    assert "label = _dense(_as_text(inputs['grade']), '')" in module
    assert (
        "outputs['mass_xf'] = _dense(_as_float(inputs['mass']), float('nan'))"
        in pathlib.Path(number.module).read_text()
    )
    out = tmp_path / "out"
    assert (
        cli.main(["run", "--dataset", str(tmp_path / "a" / "schemas" / "grades"), "--output", str(out), "--quiet"]) == 0
    )
    from tests.helpers import transformed_rows

    labels = sorted(r["grade_xf"][0] for r in transformed_rows(out, "train") + transformed_rows(out, "eval"))
    assert labels.count(-1) == 1 and set(labels) == {-1, 0, 1, 2, 3, 4}


def test_a_parquet_export_scaffolds_a_project_whose_generated_test_passes(project, tmp_path):
    import pandas as pd

    from pipelines.project.scaffold import init_project

    root, _ = project
    pd.read_csv(root / "data.csv").to_parquet(tmp_path / "penguins.parquet")  # pandas' NaN: Parquet nulls
    made = init_project("penguins", [str(tmp_path / "penguins.parquet")], label="species", directory=str(tmp_path))
    assert made.label_kind == "classes" and made.missing_values == ()
    generated = schemas.load_module_file(made.test)
    generated.test_the_preprocessing_fn_runs_on_a_handful_of_rows(tmp_path / "generated")
