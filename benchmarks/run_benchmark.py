"""Wall time, rows/s and peak RSS of `skewless run` on generated taxi-like CSVs.

    .venv/bin/python benchmarks/run_benchmark.py --rows 15000 1000000
    .venv/bin/python benchmarks/run_benchmark.py --rows 1000000 -- --direct_running_mode=multi_processing \
        --direct_num_workers=2

Inputs are generated once per size under benchmarks/data/ (deterministic, see generate_taxi.py).
Each run is a fresh `skewless run` process under /usr/bin/time, so the figures include start-up
(imports, pipeline construction) as a user sees them. Peak RSS is the largest of the process and
its waited-for children (worker processes in multi-processing mode).
"""

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from generate_taxi import generate  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SKEWLESS = shutil.which("skewless", path=os.path.dirname(sys.executable)) or "skewless"


def measure(input_csv: pathlib.Path, beam_args: list[str]) -> dict:
    """Runs `skewless run` once on ``input_csv``; returns wall seconds, peak RSS and counts."""
    with tempfile.TemporaryDirectory(prefix="skewless-bench-") as tmp:
        out = pathlib.Path(tmp) / "out"
        command = ["/usr/bin/time", "-v", SKEWLESS, "run", "--input", str(input_csv), "--output", str(out), *beam_args]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"skewless run failed:\n{result.stderr[-2000:]}")
        wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
        hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
        record = json.loads((out / "run.json").read_text())
    return {
        "wall_s": hours * 3600 + minutes * 60 + seconds,
        "peak_rss_mb": peak_kb / 1024,
        "rows": record["counts"]["rows_read"],
        "pipeline_s": record["timings"]["pipeline"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[15000, 1_000_000])
    parser.add_argument("--data-dir", type=pathlib.Path, default=HERE / "data")
    parser.add_argument("beam_args", nargs="*", help="Beam flags after --, e.g. --direct_num_workers=2")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"beam args: {' '.join(args.beam_args) or '(default in-process runner)'}")
    print(f"{'rows':>12} {'wall s':>8} {'pipeline s':>11} {'rows/s':>10} {'peak RSS MB':>12}")
    for rows in args.rows:
        path = args.data_dir / f"taxi_{rows}.csv"
        if not path.exists():
            generate(rows, path)
        figures = measure(path, args.beam_args)
        assert figures["rows"] == rows, figures
        print(
            f"{rows:>12,} {figures['wall_s']:>8.1f} {figures['pipeline_s']:>11.1f} "
            f"{rows / figures['wall_s']:>10,.0f} {figures['peak_rss_mb']:>12,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
