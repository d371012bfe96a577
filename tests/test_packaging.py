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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process, seconds: float = 90) -> None:
    import socket
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service on port {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


@pytest.fixture(scope="module")
def worker_pool(installed, tmp_path_factory):
    """Beam's job service, as a process of its own, and an EXTERNAL worker pool whose Python is the
    wheel's environment (started in another working directory, without PYTHONPATH): the workers
    unpickle the DoFns and run them with nothing but the installed package, as Dataflow's do.

    The worker pool starts each SDK worker with the ``python`` on its PATH: the wheel's first.
    """
    job_port, pool_port = _free_port(), _free_port()
    logs = tmp_path_factory.mktemp("services")
    pool_cwd = tmp_path_factory.mktemp("worker-cwd")
    environment = _clean_environment()
    worker_environment = dict(environment, PATH=f"{installed / 'bin'}{os.pathsep}{environment.get('PATH', '')}")
    job_service = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
        cwd=logs,
        env=environment,
        stdout=open(logs / "job_service.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    pool = subprocess.Popen(
        [str(installed / "bin" / "python"), "-m", "apache_beam.runners.worker.worker_pool_main"]
        + ["--service_port", str(pool_port)],
        cwd=pool_cwd,
        env=worker_environment,
        stdout=open(logs / "worker_pool.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(job_port, job_service)
        _wait_for_port(pool_port, pool)
        yield {"job_port": job_port, "pool_port": pool_port, "pool_cwd": pool_cwd, "logs": logs}
    finally:
        for process in (pool, job_service):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def portable_and_local(worker_pool, tmp_path_factory):
    """The bundled sample run on the PortableRunner with the worker pool, and in-process."""
    from pipelines import cli

    out = tmp_path_factory.mktemp("portable")
    portable = [
        "--runner",
        "PortableRunner",
        f"--job_endpoint=localhost:{worker_pool['job_port']}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{worker_pool['pool_port']}",
    ]
    codes = {
        "portable": cli.main(["run", "--output", str(out / "portable"), "--quiet", *portable]),
        "local": cli.main(["run", "--output", str(out / "local"), "--quiet"]),
    }
    return out, codes


def test_the_worker_pool_imports_skewless_from_the_wheel_only(installed, worker_pool):
    code = "import pipelines, transforms, schemas; print(pipelines.__file__, transforms.__file__, schemas.__file__)"
    paths = subprocess.run(
        ["python", "-c", code],
        cwd=worker_pool["pool_cwd"],
        env=dict(_clean_environment(), PATH=f"{installed / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(paths) == 3 and all(path.startswith(str(installed)) for path in paths), paths


def test_a_run_on_the_portable_runner_equals_an_in_process_run(portable_and_local, worker_pool):
    from tests.helpers import parse_examples, read_tfrecords

    out, codes = portable_and_local
    assert codes == {"portable": 0, "local": 0}, (worker_pool["logs"] / "worker_pool.log").read_text()[-3000:]
    portable, local = (json.loads((out / name / "run.json").read_text()) for name in ("portable", "local"))
    assert portable["counts"] == local["counts"]
    assert portable["parity"]["passed"] and portable["parity"]["rows_checked"] > 0
    for split in ("train", "eval"):
        patterns = [str(out / name / "transformed" / f"{split}-*.tfrecord.gz") for name in ("portable", "local")]
        rows = [
            sorted(json.dumps(row, sort_keys=True, default=repr) for row in parse_examples(read_tfrecords(pattern)))
            for pattern in patterns
        ]
        assert rows[0] and rows[0] == rows[1]
    vocabularies = sorted(p.name for p in (out / "local" / "transform_fn" / "assets").iterdir())
    assert vocabularies == ["company", "payment_type"]
    for name in vocabularies:
        assert (out / "portable" / "transform_fn" / "assets" / name).read_bytes() == (
            out / "local" / "transform_fn" / "assets" / name
        ).read_bytes()


def test_run_json_records_the_runner_its_job_id_and_the_worker_environment(portable_and_local, worker_pool):
    out, _ = portable_and_local
    portable = json.loads((out / "portable" / "run.json").read_text())["workers"]
    assert portable["runner"] == "PortableRunner"
    assert len(portable["job_ids"]) == 1 and portable["job_ids"][0].startswith("job-")
    assert portable["environment"] == {"kind": "external", "config": f"localhost:{worker_pool['pool_port']}"}
    local = json.loads((out / "local" / "run.json").read_text())["workers"]
    assert local == {"runner": "FnApiRunner", "job_ids": [], "environment": {"kind": "in-process"}}


def test_the_flex_template_entry_point_runs_the_job_from_the_wheel(installed, tmp_path):
    """``docs/dataflow/run_job.py`` as the template launcher runs it: the wheel's Python, the
    template's parameter names (``--eval_fraction``), Beam's options passed through."""
    from tests.helpers import sample_lines

    header, lines = sample_lines(500)
    (tmp_path / "trips.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    entry = ROOT / "docs" / "dataflow" / "run_job.py"
    argv = [f"--input={tmp_path / 'trips.csv'}", f"--output={tmp_path / 'out'}", "--eval_fraction=0.5"]
    result = subprocess.run(
        [str(installed / "bin" / "python"), str(entry), *argv, "--parity_sample=0.2", "--runner=DirectRunner"],
        cwd=tmp_path,
        env=_clean_environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["parameters"]["eval_fraction"] == 0.5 and record["parity"]["passed"]
    assert record["counts"]["rows_read"] == 500 and record["workers"]["runner"] == "FnApiRunner"
