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

`cores` is skewless's CPU seconds (its own and its worker processes') over its wall seconds: how many
cores it kept busy. `--cpus N` pins both commands, and every process they start, to the first N
cores, as on a smaller machine: `--cpus 1` beside a two-worker run on both cores shows how the job
scales with cores, which a two-core machine cannot show with two workers against one (one worker
already keeps more than one core busy).
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
import typing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from generate_taxi import generate  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SKEWLESS = shutil.which("skewless", path=os.path.dirname(sys.executable)) or "skewless"


class Timed(typing.NamedTuple):
    """One command's measurement."""

    wall_s: float
    peak_rss_mb: float
    cpu_s: float  # user + system, the command's and its waited-for children's
    stderr: str
    code: int


def _timed(command: list[str], memory_limit_gb: float | None = None, cpus: int | None = None) -> Timed:
    """Runs a command under /usr/bin/time -v and measures it.

    ``memory_limit_gb`` caps the command's address space (``RLIMIT_AS``): allocations beyond it
    fail, as they would on a machine with that much memory and no swap. ``cpus`` pins the command
    and every process it starts to this machine's first ``cpus`` cores, as on a smaller machine.
    """

    def limit() -> None:
        if memory_limit_gb:
            size = int(memory_limit_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if cpus:
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cpus])

    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, preexec_fn=limit)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    cpu = sum(
        float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", result.stderr).group(1)) for kind in ("User", "System")
    )
    return Timed(hours * 3600 + minutes * 60 + seconds, peak_kb / 1024, cpu, result.stderr, result.returncode)


def measure(input_csv: pathlib.Path, beam_args: list[str], cpus: int | None = None) -> dict:
    """Runs `skewless run` once on ``input_csv``; returns wall and CPU seconds, peak RSS and counts."""
    with tempfile.TemporaryDirectory(prefix="skewless-bench-") as tmp:
        out = pathlib.Path(tmp) / "out"
        command = [SKEWLESS, "run", "--input", str(input_csv), "--output", str(out), "--quiet", *beam_args]
        timed = _timed(command, cpus=cpus)
        if timed.code:
            raise SystemExit(f"skewless run failed:\n{timed.stderr[-2000:]}")
        record = json.loads((out / "run.json").read_text())
    return {
        "wall_s": timed.wall_s,
        "cpu_s": timed.cpu_s,
        "peak_rss_mb": timed.peak_rss_mb,
        "rows": record["counts"]["rows_read"],
        "pipeline_s": record["timings"]["pipeline"],
    }


def measure_poc(input_csv: pathlib.Path, memory_limit_gb: float | None = None, cpus: int | None = None) -> dict:
    """Runs the pandas POC once on ``input_csv``; returns wall seconds and peak RSS, and ``failed``
    (the last line of its error) when it could not finish, e.g. out of memory under the limit."""
    with tempfile.TemporaryDirectory(prefix="skewless-bench-poc-") as tmp:
        command = [sys.executable, str(HERE / "taxi_poc.py"), str(input_csv), f"{tmp}/out.parquet"]
        timed = _timed(command, memory_limit_gb, cpus)
    lines = [
        line
        for line in timed.stderr.splitlines()
        if line.strip() and not line.startswith(("\t", "Command exited", "Command terminated"))
    ]
    failed = (lines[-1] if lines else f"exit {timed.code}") if timed.code else None
    return {"wall_s": timed.wall_s, "peak_rss_mb": timed.peak_rss_mb, "failed": failed}


def summarise(pairs: list[tuple[dict, dict | None]]) -> dict:
    """Median wall times, largest peaks and the median of the per-pair ratios of repeated runs."""
    ours = [o for o, _ in pairs]
    with_poc = [(o, p) for o, p in pairs if p and not p["failed"]]
    return {
        "wall_s": statistics.median(o["wall_s"] for o in ours),
        "cpu_s": statistics.median(o["cpu_s"] for o in ours),
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
    cores = ours["cpu_s"] / ours["wall_s"]
    return f"{label:>12} {ours['wall_s']:>10.1f} {rate:>9,.0f} {cores:>5.2f} {ours['peak_rss_mb']:>8,.0f} {poc_text}"


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
    parser.add_argument(
        "--cpus",
        type=int,
        help="run both on this machine's first N cores only (e.g. 1, to measure how a job scales with cores)",
    )
    parser.add_argument("beam_args", nargs="*", help="Beam flags after --, e.g. --direct_num_workers=2")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    available = len(os.sched_getaffinity(0))
    if args.cpus is not None and not 1 <= args.cpus <= available:
        parser.error(f"--cpus must be between 1 and the {available} cores available, got {args.cpus}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if args.cpus:
        print(f"pinned to {args.cpus} of them")
    print(f"beam args: {' '.join(args.beam_args) or '(default in-process runner)'}")
    print(
        f"{'rows':>12} {'skewless s':>10} {'rows/s':>9} {'cores':>5} {'peak MB':>8} "
        f"{'pandas s':>9} {'peak MB':>8} {'ratio':>6}"
    )
    for rows in args.rows:
        path = args.data_dir / f"taxi_{rows}.csv"
        if not path.exists():
            generate(rows, path)
        pairs = []
        for _ in range(args.repeat):
            ours = measure(path, args.beam_args, args.cpus)
            assert ours["rows"] == rows, ours
            poc = None if args.no_poc else measure_poc(path, args.poc_memory_limit_gb, args.cpus)
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
