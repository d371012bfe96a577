"""A user's own project: a dataset folder anywhere, its preprocessing_fn loaded from its file."""

import json
import os

import pytest

from pipelines import cli
from tests.helpers import SAMPLE_CSV, as_multiset, transformed_rows

pytestmark = pytest.mark.e2e

MODULE = """import tensorflow as tf
import tensorflow_transform as tft


def _fill(x, value):
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=value)
    return tf.squeeze(x, axis=1)


def preprocessing_fn(inputs):
    fare, tips = _fill(inputs["fare"], 0.0), _fill(inputs["tips"], 0.0)
    return {
        "fare_xf": tft.scale_to_z_score(fare),
        "payment_type_xf": tft.compute_and_apply_vocabulary(_fill(inputs["payment_type"], "")),
        "big_tipper": tf.cast(tips > 0.2 * fare, tf.int64),
    }
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """``schemas/mine/`` (the taxi schema), ``transforms/mine.py`` and ``data/trips.csv`` (300 rows)."""
    root = tmp_path_factory.mktemp("project")
    (root / "schemas" / "mine").mkdir(parents=True)
    (root / "transforms").mkdir()
    (root / "data").mkdir()
    (root / "schemas" / "mine" / "schema.pbtxt").write_text((SAMPLE_CSV.parent / "schema.pbtxt").read_text())
    (root / "schemas" / "mine" / "config.yaml").write_text(
        "schema: schema.pbtxt\npreprocessing_fn: ../../transforms/mine.py:preprocessing_fn\n"
        "sample: ../../data/trips.csv\nlabel: big_tipper\n"
    )
    (root / "transforms" / "mine.py").write_text(MODULE)
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    (root / "data" / "trips.csv").write_text("".join(lines[:301]))
    return root


@pytest.fixture(scope="module")
def runs(project, tmp_path_factory):
    """The project run from another directory: in-process, then with two worker processes."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    previous = os.getcwd()
    os.chdir(elsewhere)
    try:
        dataset = str(project / "schemas" / "mine")
        one = elsewhere / "one"
        assert cli.main(["run", "--dataset", dataset, "--output", str(one), "--quiet"]) == 0
        two = elsewhere / "two"
        workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
        assert cli.main(["run", "--dataset", dataset, "--output", str(two), "--quiet", *workers]) == 0
    finally:
        os.chdir(previous)
    return one, two


def test_a_user_dataset_runs_from_its_folder_with_its_own_module(project, runs):
    one, _ = runs
    record = json.loads((one / "run.json").read_text())
    assert record["dataset"] == str(project / "schemas" / "mine" / "config.yaml")
    assert [entry["uri"] for entry in record["inputs"]] == [str(project / "data" / "trips.csv")]
    assert record["counts"]["rows_read"] == 300
    assert record["counts"]["rows_train"] + record["counts"]["rows_eval"] == 300
    rows = transformed_rows(one, "train")
    assert sorted(rows[0]) == ["big_tipper", "fare_xf", "payment_type_xf", "row_id"]
    # at least 100 rows are checked for parity however small the sample's share (1% of 300 is 3)
    assert record["parity"]["passed"] and record["parity"]["rows_checked"] == 100


def test_worker_processes_give_the_same_rows(runs):
    one, two = runs
    for split in ("train", "eval"):
        assert as_multiset(transformed_rows(two, split)) == as_multiset(transformed_rows(one, split))
    assert json.loads((two / "run.json").read_text())["parity"]["passed"]


def test_lineage_records_the_users_module_and_schema(project, runs, capsys):
    one, _ = runs
    capsys.readouterr()
    assert cli.main(["lineage", "upstream", str(one / "transform_fn"), "--json"]) == 0
    upstream = {(a["type"], a["uri"]) for a in json.loads(capsys.readouterr().out)}
    assert ("PreprocessingCode", str(project / "transforms" / "mine.py")) in upstream
    assert ("Schema", str(project / "schemas" / "mine" / "schema.pbtxt")) in upstream
    assert ("RawData", str(project / "data" / "trips.csv")) in upstream


def test_the_run_records_its_dataset_so_that_later_commands_find_it(project, runs, capsys):
    one, _ = runs
    assert cli.main(["verify-parity", str(one)]) == 0
    assert "parity PASSED: 100 rows checked" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "function", "message"),
    [
        ("gone.py", "preprocessing_fn", "no module file "),
        ("mine.py", "prepare", "has no function 'prepare'"),
    ],
)
def test_a_config_naming_a_missing_module_or_function_is_one_line_and_writes_nothing(
    project, tmp_path, capsys, module, function, message
):
    folder = tmp_path / "schemas" / "broken"
    folder.mkdir(parents=True)
    (folder / "schema.pbtxt").write_text((project / "schemas" / "mine" / "schema.pbtxt").read_text())
    (folder / "config.yaml").write_text(
        f"schema: schema.pbtxt\npreprocessing_fn: {project / 'transforms' / module}:{function}\n"
        f"sample: {project / 'data' / 'trips.csv'}\n"
    )
    out = tmp_path / "out"
    assert cli.main(["run", "--dataset", str(folder), "--output", str(out)]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skewless run:")]
    assert line.startswith("skewless run: error: ") and message in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["schemas"]
