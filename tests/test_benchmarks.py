"""The benchmark harness itself: timing, peak memory and the POC's memory cap."""

import sys

import pytest

from benchmarks import run_benchmark


def test_timed_reports_wall_time_peak_memory_and_exit_code():
    wall, peak_mb, _, code = run_benchmark._timed([sys.executable, "-c", "x = bytearray(200 << 20)"])
    assert code == 0
    assert 0 < wall < 60
    assert peak_mb > 200  # the 200 MiB buffer is resident


def test_memory_limit_makes_an_oversized_allocation_fail():
    script = "import numpy; numpy.ones(1 << 28)"  # 2 GiB of float64
    _, _, stderr, code = run_benchmark._timed([sys.executable, "-c", script], memory_limit_gb=1.0)
    assert code != 0
    assert "MemoryError" in stderr or "Unable to allocate" in stderr
    _, _, _, code = run_benchmark._timed([sys.executable, "-c", "x = bytearray(100 << 20)"], memory_limit_gb=1.0)
    assert code == 0


def test_repeated_runs_are_summarised_by_medians_of_back_to_back_pairs():
    pairs = [
        ({"wall_s": 30.0, "peak_rss_mb": 1500}, {"wall_s": 10.0, "peak_rss_mb": 600, "failed": None}),
        ({"wall_s": 40.0, "peak_rss_mb": 1600}, {"wall_s": 20.0, "peak_rss_mb": 610, "failed": None}),
        ({"wall_s": 35.0, "peak_rss_mb": 1400}, {"wall_s": 10.0, "peak_rss_mb": 590, "failed": None}),
    ]
    summary = run_benchmark.summarise(pairs)
    assert summary == {
        "wall_s": 35.0,
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
