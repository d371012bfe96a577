"""The real ``skewless`` console script, in a subprocess, as users call it."""

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

SKEWLESS = shutil.which("skewless", path=os.path.dirname(sys.executable))
BUFFERED = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as in a shell


@pytest.mark.skipif(SKEWLESS is None, reason="the package is not installed (run `make test`)")
class TestConsoleScript:
    def test_help_lists_the_commands(self):
        # stdout to a pipe is block-buffered: the fast exit must flush it
        result = subprocess.run([SKEWLESS, "--help"], capture_output=True, text=True, check=True, env=BUFFERED)
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
        *progress, error = result.stderr.strip().splitlines()
        assert error == f"skewless run: error: no input file matches {tmp_path / 'none.csv'}"
        assert all(line.startswith("[") for line in progress)  # stage lines, then the one-line error

    def test_a_run_exits_0_with_its_outputs_published_and_its_summary_flushed(self, tmp_path):
        from tests.helpers import PROJECT_ROOT

        lines = (PROJECT_ROOT / "schemas" / "taxi" / "data.csv").read_text().splitlines(keepends=True)
        (tmp_path / "in.csv").write_text("".join(lines[:401]))
        out = tmp_path / "out"
        result = subprocess.run(
            [SKEWLESS, "run", "--input", str(tmp_path / "in.csv"), "--output", str(out), "--no-report"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        # the last line, written just before the fast exit; no report.html was asked for
        assert result.stderr.rstrip().endswith("parity/ anomalies.pbtxt run.json")
        assert "WARNING" not in result.stderr  # tf.Transform's TF1-mode notice is expected, not shown
        assert not (out / "report.html").exists()
        record = json.loads((out / "run.json").read_text())
        assert record["status"] == "succeeded"
        assert record["counts"]["rows_train"] + record["counts"]["rows_eval"] == 400
        assert (out / "serving_model" / "saved_model.pb").exists()
        assert not [path for path in tmp_path.iterdir() if path.name not in ("in.csv", "out")]

    def test_sigterm_mid_run_exits_143_in_one_line_and_leaves_the_earlier_output_whole(self, tmp_path):
        from tests.helpers import sample_lines

        header, lines = sample_lines()
        (tmp_path / "in.csv").write_text(header + "\n" + "\n".join(lines * 20) + "\n")  # 300k rows: seconds of work
        out = tmp_path / "out"
        out.mkdir()
        (out / "run.json").write_text('{"an": "earlier run"}')
        argv = [SKEWLESS, "run", "--input", str(tmp_path / "in.csv"), "--output", str(out), "--no-report"]
        argv += ["--lineage-db", str(tmp_path / "lineage.db")]
        job = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        for line in job.stderr:  # progress lines; the pipeline starts after this one
            if "reading, validating" in line:
                job.terminate()  # SIGTERM, as schedulers, `timeout` and `docker stop` send
                break
        assert job.wait(timeout=120) == 143
        assert job.stderr.read().strip().splitlines() == [
            f"skewless run: stopped by SIGTERM; {out} is never half-written (published whole or not at all)"
        ]
        assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv", "lineage.db", "out"]  # no staging
        assert os.listdir(out) == ["run.json"] and json.loads((out / "run.json").read_text()) == {"an": "earlier run"}

    def test_missing_command_exits_2(self):
        result = subprocess.run([SKEWLESS], capture_output=True, text=True)
        assert result.returncode == 2
        assert "the following arguments are required: COMMAND" in result.stderr


COMMANDS = [
    "run",
    "verify-parity",
    "train",
    "serve",
    "compare-poc",
    "infer-schema",
    "check-skew",
    "labels",
    "dedup",
    "lineage",
    "report",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command, capsys):
    from pipelines import cli

    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: skewless {command}" in text and "example" in text


def test_top_level_help_lists_every_command(capsys):
    from pipelines import cli

    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(command in text for command in COMMANDS)


def test_an_unknown_flag_of_a_non_beam_command_is_a_one_line_usage_error(capsys):
    from pipelines import cli

    assert cli.main(["report", "out", "--colour"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "skewless: error: unrecognized arguments: --colour"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dedup", "--input", "{csv}", "--config", "{people}", "--output", "{out}"], "no column 'given_name'"),
        (["dedup", "--input", "{csv}", "--config", "{csv}", "--output", "{out}"], "dedup config needs"),
        (
            ["labels", "--kind", "boxes", "--annotations", "{csv}", "--output", "{out}", "--item-col", "rec_id"],
            "no column 'annotator'",
        ),
        (
            [
                "labels",
                "--kind",
                "boxes",
                "--annotations",
                "{csv}",
                "--output",
                "{out}",
                "--item-col",
                "rec_id",
                "--annotator-col",
                "b",
            ],
            "no column 'x_min'",
        ),
        (
            ["labels", "--kind", "text", "--annotations", "{csv}", "--output", "{out}", "--label-col", "b"],
            "no column 'item'",
        ),
        (
            ["labels", "--kind", "boxes", "--annotations", "{csv}", "--output", "{out}", "--box-cols", "a,b"],
            "four column",
        ),
        (["lineage", "row", "1", "--run", "{out}"], "not a `skewless run` output"),
        (["dedup", "--input", "{reserved}", "--config", "{mini}", "--output", "{out}"], "column 'cluster_id' is added"),
        (
            ["dedup", "--input", "{csv}", "--config", "{mini}", "--output", "{out}", "--model", "{model}"],
            "the model compares",
        ),
        (
            ["labels", "--kind", "text", "--annotations", "{csv}", "--output", "{out}", "--normaliser", "{norm}"],
            "unknown normaliser option 'colour'",
        ),
        (
            ["run", "--output", "{out}", "--analysis-cache", "{cache}", "--labels", "{csv}", "--label-key", "company"],
            "--analysis-cache cannot be combined",
        ),
        (["run", "--output", "{out}", "--output-format", "csv"], "argument --output-format: invalid choice: 'csv'"),
    ],
)
def test_new_commands_fail_bad_usage_in_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    from pipelines import cli
    from tests.helpers import PROJECT_ROOT

    (tmp_path / "in.csv").write_text("rec_id,b\n1,2\n")
    (tmp_path / "reserved.csv").write_text("rec_id,b,cluster_id\n1,x,3\n")
    (tmp_path / "mini.yaml").write_text("id: rec_id\nblocking: [[b]]\nfields: {b: name}\n")
    (tmp_path / "model.json").write_text('{"version": 1, "fields": {"zz": {"kind": "name", "levels": []}}}')
    (tmp_path / "norm.yaml").write_text("colour: true\n")
    values = {name: str(tmp_path / name) for name in ("reserved.csv", "mini.yaml", "model.json", "norm.yaml")}
    values = {name.split(".")[0]: path for name, path in values.items()}
    values.update(csv=str(tmp_path / "in.csv"), out=str(tmp_path / "out"), cache=str(tmp_path / "cache"))
    values["people"] = str(PROJECT_ROOT / "data" / "dedup" / "people.yaml")
    assert cli.main([arg.format(**values) for arg in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("skewless")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_importing_the_pipelines_loads_keras_2_only():
    # TensorFlow loads Keras 3 (and pandas) at import unless TF_USE_LEGACY_KERAS is set first
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}
    code = "import sys, pipelines.prepare.run; print(sorted({'keras', 'tf_keras'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "['tf_keras']"


def test_loading_tensorflow_tunes_the_collector_and_the_gil_switch_interval():
    import gc

    from pipelines.runtime import process

    process.load_tensorflow()  # what every command that runs a pipeline does first
    assert gc.get_threshold() == process.GC_THRESHOLDS
    assert sys.getswitchinterval() == pytest.approx(process.SWITCH_INTERVAL_S)


def test_tensorflow_loads_with_the_collector_tuned_first_and_its_unused_modules_deferred(tmp_path):
    code = (
        "import gc, sys; from pipelines.runtime import lazy_imports, process; process.load_tensorflow()\n"
        "print(gc.get_stats()[2]['collections'])\n"
        "kinds = lambda: [type(sys.modules[name]).__name__ for name in sorted(lazy_imports.DEFERRED)]\n"
        "import tensorflow as tf; add = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([2])])\n"
        f"tf.saved_model.save(tf.Module(), {str(tmp_path / 'model')!r}, signatures=add.get_concrete_function())\n"
        "print(*kinds()); import googleapiclient.discovery as d, scipy.linalg, scipy.ndimage\n"
        "print(callable(d.build), scipy.linalg.norm([3, 4]), scipy.ndimage.sum([1, 2])); print(*kinds())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    collections, before, used, after = result.stdout.strip().splitlines()
    assert collections == "0"  # with Python's default thresholds the import alone ran ~800, 5 of them full
    # imported by TensorFlow, not yet run, not even by a save (AutoGraph reads every module's __file__)
    assert before.split() == ["_DeferredModule"] * 3
    assert used == "True 5.0 3"  # each works on first use
    assert after.split() == ["module"] * 3


@pytest.mark.parametrize(("set_by_user", "backend"), [(None, "jemalloc"), ("system", "system")])
def test_arrow_allocates_from_jemalloc_unless_the_user_chose(set_by_user, backend):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if set_by_user:
        env["ARROW_DEFAULT_MEMORY_POOL"] = set_by_user
    code = (
        "import os, pipelines, pyarrow as pa; from tfx_bsl.coders import example_coder; "
        "print(pa.default_memory_pool().backend_name, os.environ.get('ARROW_DEFAULT_MEMORY_POOL'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == f"{backend} {set_by_user}"  # the variable is not left behind
    if not set_by_user:  # tfx-bsl's Arrow (system allocator only) saw no variable to complain about
        assert "Unsupported backend" not in result.stderr


@pytest.mark.parametrize("command", ["run", "labels", "dedup"])
def test_an_output_that_holds_other_files_is_refused_before_any_work_and_left_whole(tmp_path, capsys, command):
    """``--output data`` (the input's own directory, say) is never replaced: the input is kept."""
    from pipelines import cli
    from tests.helpers import PROJECT_ROOT, SAMPLE_CSV

    data = tmp_path / "data"
    data.mkdir()
    (data / "in.csv").write_text("".join(SAMPLE_CSV.read_text().splitlines(keepends=True)[:50]))
    rte, people = PROJECT_ROOT / "data" / "crowd" / "rte.standardized.csv", PROJECT_ROOT / "schemas" / "people"
    argv = {
        "run": ["run", "--input", str(data / "in.csv")],
        "labels": [
            "labels",
            "--annotations",
            str(rte),
            "--item-col",
            "orig_id",
            "--annotator-col",
            "!amt_worker_ids",
            "--label-col",
            "response",
        ],
        "dedup": [
            "dedup",
            "--input",
            str(sorted(people.glob("*.csv"))[0]),
            "--config",
            str(PROJECT_ROOT / "data" / "dedup" / "people.yaml"),
        ],
    }[command]
    assert cli.main([*argv, "--output", str(data)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"skewless {command}: error: --output {data} exists and is not a Skewless output")
    assert sorted(os.listdir(tmp_path)) == ["data"] and os.listdir(data) == ["in.csv"]


def test_csv_delimiter_takes_one_character_or_tab(capsys):
    from pipelines import cli

    parser = cli.build_parser()
    for text, expected in ((";", ";"), ("tab", "\t"), ("\\t", "\t"), ("|", "|")):
        args = parser.parse_args(["run", "--output", "o", "--csv-delimiter", text])
        assert args.csv_delimiter == expected
    assert parser.parse_args(["check-skew", "--transform-output", "o", "--input", "i"]).csv_delimiter is None
    for bad in ('"', ";;", ""):
        assert cli.main(["run", "--output", "o", "--csv-delimiter", bad]) == 2
        assert "argument --csv-delimiter: must be one character" in capsys.readouterr().err
    assert parser.parse_args(["labels", "--annotations", "a", "--output", "o", "--encoding", "CP1252"]).encoding == (
        "cp1252"
    )
    assert cli.main(["dedup", "--input", "i", "--config", "c", "--output", "o", "--encoding", "klingon"]) == 2
    assert "argument --encoding: unknown text encoding 'klingon'" in capsys.readouterr().err
