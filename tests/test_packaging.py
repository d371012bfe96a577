"""The package as Dataflow stages it (--setup_file builds an sdist; workers install it)."""

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
