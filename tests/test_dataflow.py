"""What ships to Dataflow (docs/dataflow/): the pinned requirements are the tested environment's,
the container installs them and the wheel, and the Flex Template's parameters are `skewless run`'s."""

import argparse
import importlib.util
import json
import re
import sys

import pytest

from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.unit

DATAFLOW = PROJECT_ROOT / "docs" / "dataflow"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins() -> dict[str, str]:
    lines = (DATAFLOW / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_the_requirements_file_pins_the_environment_the_tests_run_in():
    """`make requirements` regenerates it; a dependency added or upgraded without it fails here."""
    pin = _load(PROJECT_ROOT / ".ci" / "pin_requirements.py", "pin_requirements")
    assert (DATAFLOW / "requirements.txt").read_text() == pin.render()


def test_the_requirements_pin_the_stack_and_not_the_test_tools():
    pins = _pins()
    assert pins["tensorflow-transform"] == "1.21.0" and pins["apache-beam"] == "2.77.0"
    assert pins["tensorflow"] == "2.21.0" and pins["tfx-bsl"] == "1.21.0"
    assert "google-cloud-storage" in pins  # apache-beam[gcp]: gs:// paths
    assert not {"pytest", "ruff", "skewless"} & set(pins)


def test_the_container_is_beams_sdk_image_at_the_pinned_version_with_the_requirements_and_the_wheel():
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM apache/beam_python{python}_sdk:{_pins()['apache-beam']}\n" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert re.search(r"pip install --no-cache-dir --no-deps skewless-\*\.whl", dockerfile)
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/skewless/run_job.py" in dockerfile


def _run_options() -> dict[str, argparse.Action]:
    from pipelines.cli.entry import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {option: action for action in commands.choices["run"]._actions for option in action.option_strings}


def test_every_flex_template_parameter_is_a_run_flag_and_input_and_output_are_required():
    run_job = _load(DATAFLOW / "run_job.py", "run_job")
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    options = _run_options()
    names = [parameter["name"] for parameter in metadata["parameters"]]
    assert set(names) == run_job.SKEWLESS_FLAGS
    for name in names:
        (_, flag) = run_job.skewless_argv([f"--{name}=x"])
        assert flag.split("=")[0] in options, name
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
    assert required == {"input", "output"}


def test_the_entry_point_maps_template_names_and_passes_beams_options():
    run_job = _load(DATAFLOW / "run_job.py", "run_job")
    argv = ["--input=gs://b/in/*.csv", "--eval_fraction=0.1", "--runner=DataflowRunner", "--temp_location=gs://b/t"]
    assert run_job.skewless_argv(argv) == [
        "run",
        "--input=gs://b/in/*.csv",
        "--eval-fraction=0.1",
        "--runner=DataflowRunner",
        "--temp_location=gs://b/t",
    ]
