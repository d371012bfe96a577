"""The package as Dataflow stages it (--setup_file builds an sdist; workers install it)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parent.parent
NEEDED = [
    "transforms/taxi.py",
    "transforms/common.py",
    "schemas/taxi/schema.pbtxt",
    "schemas/taxi/config.yaml",
    "schemas/taxi/data.csv",
    "schemas/people/signups.csv",
    "pipelines/prepare/run.py",
    "pipelines/cli/entry.py",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    source = tmp_path_factory.mktemp("src") / "skewless"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "out", "data", "*.egg-info", "build"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    return dist


def test_sdist_contains_transforms_and_schemas(built):
    (sdist,) = built.glob("skewless-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert set(NEEDED) <= names


def test_wheel_contains_transforms_and_schemas_and_the_console_script(built):
    (wheel,) = built.glob("skewless-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        assert "skewless = pipelines.cli:console_main" in archive.read(entry_points).decode()
    assert set(NEEDED) <= names
    assert not any(name.startswith("tests/") for name in names)


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """A fresh virtual environment outside the source tree with Skewless installed from its wheel.

    Its dependencies come from the test's own environment (a ``.pth`` line: installing TensorFlow
    again would take minutes); Skewless itself only from the wheel, and no ``PYTHONPATH``.
    """
    import sysconfig

    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = built.glob("skewless-*.whl")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True)
    return venv


def _clean_environment() -> dict:
    """The environment without what could point Python at the source tree."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run_installed(venv, argv, cwd):
    command = [str(venv / "bin" / "skewless"), *argv]
    return subprocess.run(command, cwd=cwd, env=_clean_environment(), capture_output=True, text=True)


def test_the_installed_wheel_runs_the_bundled_datasets_from_any_directory(installed, tmp_path):
    where = _run_installed(installed, ["lineage", "runs", "--json"], tmp_path)
    assert where.returncode == 0, where.stderr
    code = "import pipelines, schemas; print(pipelines.__file__); print(schemas.load_dataset('taxi').sample)"
    paths = subprocess.run(
        [str(installed / "bin" / "python"), "-c", code],
        cwd=tmp_path,
        env=_clean_environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(installed)) for path in paths), paths  # nothing from the source tree
    for argv, rows in (
        (["run", "--output", "taxi"], 15_002),
        (["run", "--dataset", "people", "--output", "people"], 2_002),
    ):
        result = _run_installed(installed, [*argv, "--quiet"], tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        record = json.loads((tmp_path / argv[-1] / "run.json").read_text())
        assert record["counts"]["rows_read"] == rows
        assert record["inputs"][0]["uri"].startswith(str(installed))
        assert record["parity"]["passed"]
