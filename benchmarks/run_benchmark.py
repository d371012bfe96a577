"""Wall time, rows/s and peak RSS of `skewless run` beside the pandas POC, on generated taxi-like CSVs.

    .venv/bin/python benchmarks/run_benchmark.py --rows 15000 1000000 10000000
    .venv/bin/python benchmarks/run_benchmark.py --rows 1000000 -- --direct_running_mode=multi_processing \
        --direct_num_workers=2

Inputs are generated once per size under benchmarks/data/ (deterministic, see generate_taxi.py).
Each run is a fresh process under /usr/bin/time, so the figures include start-up (imports,
pipeline construction) as a user sees them: `skewless run` (validate, analyze, transform, write
gzip TFRecords, export, parity, statistics, report, lineage) and `benchmarks/taxi_poc.py` (pandas:
read the CSV, the same preparation, write Parquet). Peak RSS is the largest of the process and its
waited-for children (worker processes in multi-processing mode). `--no-poc` skips pandas;
`--poc-memory-limit-gb` caps the POC's address space (at this machine's memory, it shows the size
where pandas no longer fits: `--rows 45000000 --poc-memory-limit-gb 23`).

`--repeat N` runs each size N times, skewless and pandas back to back each time, and adds a median
line (median wall times, the largest peak, the median of the back-to-back ratios): on a shared
machine a burst of load can slow one run by a third, and a pair measured together is hit alike.
"""

import argparse
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from generate_taxi import generate  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SKEWLESS = shutil.which("skewless", path=os.path.dirname(sys.executable)) or "skewless"


def _timed(command: list[str], memory_limit_gb: float | None = None) -> tuple[float, float, str, int]:
    """Runs a command under /usr/bin/time -v; returns wall seconds, peak RSS in MB, stderr, exit code.

    ``memory_limit_gb`` caps the command's address space (``RLIMIT_AS``): allocations beyond it
    fail, as they would on a machine with that much memory and no swap.
    """

    def limit() -> None:
        if memory_limit_gb:
            size = int(memory_limit_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, preexec_fn=limit)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return hours * 3600 + minutes * 60 + seconds, peak_kb / 1024, result.stderr, result.returncode


def measure(input_csv: pathlib.Path, beam_args: list[str]) -> dict:
    """Runs `skewless run` once on ``input_csv``; returns wall seconds, peak RSS and counts."""
    with tempfile.TemporaryDirectory(prefix="skewless-bench-") as tmp:
        out = pathlib.Path(tmp) / "out"
        command = [SKEWLESS, "run", "--input", str(input_csv), "--output", str(out), "--quiet", *beam_args]
        wall, peak, stderr, code = _timed(command)
        if code:
            raise SystemExit(f"skewless run failed:\n{stderr[-2000:]}")
        record = json.loads((out / "run.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mb": peak,
        "rows": record["counts"]["rows_read"],
        "pipeline_s": record["timings"]["pipeline"],
    }


def measure_poc(input_csv: pathlib.Path, memory_limit_gb: float | None = None) -> dict:
    """Runs the pandas POC once on ``input_csv``; returns wall seconds and peak RSS, and ``failed``
    (the last line of its error) when it could not finish, e.g. out of memory under the limit."""
    with tempfile.TemporaryDirectory(prefix="skewless-bench-poc-") as tmp:
        command = [sys.executable, str(HERE / "taxi_poc.py"), str(input_csv), f"{tmp}/out.parquet"]
        wall, peak, stderr, code = _timed(command, memory_limit_gb)
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("\t", "Command exited", "Command terminated"))
    ]
    return {"wall_s": wall, "peak_rss_mb": peak, "failed": (lines[-1] if lines else f"exit {code}") if code else None}


def summarise(pairs: list[tuple[dict, dict | None]]) -> dict:
    """Median wall times, largest peaks and the median of the per-pair ratios of repeated runs."""
    ours = [o for o, _ in pairs]
    with_poc = [(o, p) for o, p in pairs if p and not p["failed"]]
    return {
        "wall_s": statistics.median(o["wall_s"] for o in ours),
        "peak_rss_mb": max(o["peak_rss_mb"] for o in ours),
        "poc_wall_s": statistics.median(p["wall_s"] for _, p in with_poc) if with_poc else None,
        "poc_peak_rss_mb": max(p["peak_rss_mb"] for _, p in with_poc) if with_poc else None,
        "ratio": statistics.median(o["wall_s"] / p["wall_s"] for o, p in with_poc) if with_poc else None,
    }


def _line(label: str, rows: int, ours: dict, poc: dict | None, ratio: float | None = None) -> str:
    if poc is None:
        poc_text = ""
    elif poc.get("failed"):
        poc_text = f"  pandas failed after {poc['wall_s']:.1f} s at {poc['peak_rss_mb']:,.0f} MB: {poc['failed'][:80]}"
    else:
        ratio = ours["wall_s"] / poc["wall_s"] if ratio is None else ratio
        poc_text = f"{poc['wall_s']:>9.1f} {poc['peak_rss_mb']:>8,.0f} {ratio:>6.1f}"
    rate = rows / ours["wall_s"]
    return f"{label:>12} {ours['wall_s']:>10.1f} {rate:>9,.0f} {ours['peak_rss_mb']:>8,.0f} {poc_text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[15000, 1_000_000])
    parser.add_argument("--data-dir", type=pathlib.Path, default=HERE / "data")
    parser.add_argument("--no-poc", action="store_true", help="do not run the pandas POC")
    parser.add_argument(
        "--poc-memory-limit-gb",
        type=float,
        help="cap the POC's address space (e.g. at this machine's memory, to show where it no longer fits)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per size, with a median line")
    parser.add_argument("beam_args", nargs="*", help="Beam flags after --, e.g. --direct_num_workers=2")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"beam args: {' '.join(args.beam_args) or '(default in-process runner)'}")
    print(f"{'rows':>12} {'skewless s':>10} {'rows/s':>9} {'peak MB':>8} {'pandas s':>9} {'peak MB':>8} {'ratio':>6}")
    for rows in args.rows:
        path = args.data_dir / f"taxi_{rows}.csv"
        if not path.exists():
            generate(rows, path)
        pairs = []
        for _ in range(args.repeat):
            ours = measure(path, args.beam_args)
            assert ours["rows"] == rows, ours
            poc = None if args.no_poc else measure_poc(path, args.poc_memory_limit_gb)
            pairs.append((ours, poc))
            print(_line(f"{rows:,}", rows, ours, poc), flush=True)
        if args.repeat > 1:
            median = summarise(pairs)
            poc = (
                None
                if median["poc_wall_s"] is None
                else {"wall_s": median["poc_wall_s"], "peak_rss_mb": median["poc_peak_rss_mb"]}
            )
            print(_line("median", rows, median, poc, median["ratio"]), flush=True)


if __name__ == "__main__":
    main()
