"""The benchmark harness itself: timing, peak memory and the POC's memory cap."""

import sys

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
