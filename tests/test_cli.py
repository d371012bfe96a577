"""The real ``skewless`` console script, in a subprocess, as users call it."""

import os
import shutil
import subprocess
import sys

import pytest

SKEWLESS = shutil.which("skewless", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(SKEWLESS is None, reason="the package is not installed (run `make test`)")
class TestConsoleScript:
    def test_help_lists_the_commands(self):
        result = subprocess.run([SKEWLESS, "--help"], capture_output=True, text=True, check=True)
        assert "run" in result.stdout and "usage: skewless" in result.stdout

    def test_run_help_shows_options_and_examples(self):
        result = subprocess.run([SKEWLESS, "run", "--help"], capture_output=True, text=True, check=True)
        for option in ("--dataset", "--input", "--output", "--eval-fraction", "--max-invalid-fraction"):
            assert option in result.stdout
        assert "--runner DataflowRunner" in result.stdout

    def test_unreadable_input_exits_2_with_one_line(self, tmp_path):
        result = subprocess.run(
            [SKEWLESS, "run", "--input", str(tmp_path / "none.csv"), "--output", str(tmp_path / "out")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert result.stderr.strip() == f"skewless run: error: no input file matches {tmp_path / 'none.csv'}"

    def test_missing_command_exits_2(self):
        result = subprocess.run([SKEWLESS], capture_output=True, text=True)
        assert result.returncode == 2
        assert "the following arguments are required: COMMAND" in result.stderr
