"""The benchmark harness itself: timing, peak memory and the POC's memory cap."""

import sys

import pytest

from benchmarks import run_benchmark

pytestmark = pytest.mark.unit


def test_timed_reports_wall_and_cpu_time_peak_memory_and_exit_code():
    busy = (
        "import time; x = bytearray(200 << 20); end = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    )
    timed = run_benchmark._timed([sys.executable, "-c", busy])
    assert timed.code == 0
    assert 0.3 <= timed.cpu_s <= timed.wall_s + 0.05 < 60
    assert timed.peak_rss_mb > 200  # the 200 MiB buffer is resident


def test_cpus_pins_the_command_and_its_children_to_that_many_cores():
    script = "import os, subprocess, sys; print(len(os.sched_getaffinity(0))); sys.stdout.flush(); " + (
        "subprocess.run([sys.executable, '-c', 'import os; print(len(os.sched_getaffinity(0)))'])"
    )
    command = ["/bin/sh", "-c", f'{sys.executable} -c "{script}" >&2']
    assert run_benchmark._timed(command, cpus=1).stderr.split()[:2] == ["1", "1"]


def test_memory_limit_makes_an_oversized_allocation_fail():
    script = "import numpy; numpy.ones(1 << 28)"  # 2 GiB of float64
    timed = run_benchmark._timed([sys.executable, "-c", script], memory_limit_gb=1.0)
    assert timed.code != 0
    assert "MemoryError" in timed.stderr or "Unable to allocate" in timed.stderr
    assert run_benchmark._timed([sys.executable, "-c", "x = bytearray(100 << 20)"], memory_limit_gb=1.0).code == 0


def test_repeated_runs_are_summarised_by_medians_of_back_to_back_pairs():
    pairs = [
        ({"wall_s": 30.0, "cpu_s": 40.0, "peak_rss_mb": 1500}, {"wall_s": 10.0, "peak_rss_mb": 600, "failed": None}),
        ({"wall_s": 40.0, "cpu_s": 50.0, "peak_rss_mb": 1600}, {"wall_s": 20.0, "peak_rss_mb": 610, "failed": None}),
        ({"wall_s": 35.0, "cpu_s": 60.0, "peak_rss_mb": 1400}, {"wall_s": 10.0, "peak_rss_mb": 590, "failed": None}),
    ]
    summary = run_benchmark.summarise(pairs)
    assert summary == {
        "wall_s": 35.0,
        "cpu_s": 50.0,
        "peak_rss_mb": 1600,
        "poc_wall_s": 10.0,
        "poc_peak_rss_mb": 610,
        "ratio": 3.0,  # the pairs' ratios are 3.0, 2.0 and 3.5: not the medians' 35 / 10
    }
    assert run_benchmark.summarise([(pairs[0][0], None)])["ratio"] is None


def test_a_repeat_below_one_is_a_one_line_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["run_benchmark.py", "--rows", "15000", "--repeat", "0"])
    with pytest.raises(SystemExit) as exit_:
        run_benchmark.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--repeat must be at least 1, got 0")


def test_more_cpus_than_available_is_a_one_line_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["run_benchmark.py", "--rows", "15000", "--cpus", "999"])
    with pytest.raises(SystemExit) as exit_:
        run_benchmark.main()
    assert exit_.value.code == 2
    assert "--cpus must be between 1 and the" in capsys.readouterr().err.strip().splitlines()[-1]


def test_an_incremental_repeat_below_one_is_a_one_line_usage_error(capsys):
    from benchmarks import incremental_benchmark

    with pytest.raises(SystemExit) as exit_:
        incremental_benchmark.main(["--repeat", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--repeat must be at least 1, got 0")


def test_the_tfdv_comparison_calls_figures_that_differ_by_name():
    from benchmarks import tfdv_compare

    numbers = {
        "count": [10, 10],
        "missing": [0, 0],
        "min": [1.0, 1.0],
        "max": [9.0, 9.0],
        "mean": [5.0, 5.0 * (1 + 1e-7)],
        "std": [2.0, 2.0],
        "quantile_rank_error": 0.001,
    }
    strings = {"count": [3, 3], "missing": [1, 1], "top": [[("a", 2)], [("a", 2)]], "unique": [2, 2]}
    rows = [
        dict(numbers, feature="x"),
        dict(numbers, feature="far", mean=[5.0, 5.1]),
        dict(numbers, feature="coarse", quantile_rank_error=0.02),
        dict(numbers, feature="shifted", max=[9.0, 9.5]),
        dict(strings, feature="s"),
        dict(strings, feature="t", top=[[("a", 2)], [("a", 1)]]),
        {"feature": "gone", "problem": "TFDV has no such feature"},
    ]
    lines, disagree = tfdv_compare._agreement(rows)
    assert len(lines) == 7
    assert disagree == ["far", "coarse", "shifted", "t", "gone"]
