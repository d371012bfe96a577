"""Incremental analysis: a rolling window of spans, cold against warm (``skewless run --analysis-cache``).

    .venv/bin/python benchmarks/incremental_benchmark.py --rows-per-span 500000

Generates eight taxi-like spans (one file each, ``benchmarks/generate_taxi.py`` with seeds 1..8),
then runs, each as the real console script:

1. cold: spans 1..7 with an empty analysis cache (every span analyzed; the cache is written);
2. warm: spans 2..8 with that cache (only span 8 analyzed; 2..7 reused);
3. plain: spans 2..8 without a cache (analysis inside the main pipeline, for the total).

and prints the analysis time of runs 1 and 2 (``run.json: timings.analysis``), their ratio, and each
run's wall time. ``--repeat N`` repeats runs 1 and 2 N times (each pair with a fresh cache, back to
back, so a burst of load hits both alike) and prints the median of the pairs' ratios.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import generate_taxi  # noqa: E402


def _run(spans: list[str], out: str, cache: str | None, lineage: str) -> tuple[float, dict]:
    argv = [str(ROOT / ".venv" / "bin" / "skewless"), "run", "--output", out, "--no-report", "--quiet"]
    argv += ["--lineage-db", lineage] + (["--analysis-cache", cache] if cache else [])
    for span in spans:
        argv += ["--input", span]
    started = time.time()
    subprocess.run(argv, check=True)
    seconds = time.time() - started
    return seconds, json.loads(pathlib.Path(out, "run.json").read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-span", type=int, default=500_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="cold/warm pairs, each with a fresh cache, and their median ratio"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    with tempfile.TemporaryDirectory() as folder:
        spans = [
            str(generate_taxi.generate(args.rows_per_span, pathlib.Path(folder, f"span{k}.csv"), seed=k))
            for k in range(1, 9)
        ]
        lineage = os.path.join(folder, "lineage.db")
        print(f"{7 * args.rows_per_span:,} rows per run (7 spans of {args.rows_per_span:,})")
        print(f"{'run':<34} {'analysis s':>10} {'wall s':>8}  spans analyzed / reused")
        ratios = []
        for attempt in range(args.repeat):
            cache = os.path.join(folder, f"cache{attempt}")
            cold_s, cold = _run(spans[:7], os.path.join(folder, f"cold{attempt}"), cache, lineage)
            warm_s, warm = _run(spans[1:], os.path.join(folder, f"warm{attempt}"), cache, lineage)
            for label, wall, record in (
                ("cold: spans 1..7, empty cache", cold_s, cold),
                ("warm: spans 2..8, cache of 1..7", warm_s, warm),
            ):
                analysis = record["analysis"]
                counts = f"{len(analysis['analyzed'])} / {len(analysis['reused'])}"
                print(f"{label:<34} {record['timings']['analysis']:>10.1f} {wall:>8.1f}  {counts}", flush=True)
            ratios.append(cold["timings"]["analysis"] / warm["timings"]["analysis"])
            print(f"analysis {ratios[-1]:.1f}x faster with the cache", flush=True)
        plain_s, _ = _run(spans[1:], os.path.join(folder, "plain"), None, lineage)
    print(f"{'plain: spans 2..8, no cache':<34} {'(inside)':>10} {plain_s:>8.1f}")
    if args.repeat > 1:
        print(f"median of {args.repeat} back-to-back pairs: {statistics.median(ratios):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
