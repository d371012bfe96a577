"""Incremental analysis: a rolling window of spans, cold against warm (``skewless run --analysis-cache``).

    .venv/bin/python benchmarks/incremental_benchmark.py --rows-per-span 500000

Generates eight taxi-like spans (one file each, ``benchmarks/generate_taxi.py`` with seeds 1..8),
then runs, each as the real console script:

1. cold: spans 1..7 with an empty analysis cache (every span analyzed; the cache is written);
2. warm: spans 2..8 with that cache (only span 8 analyzed; 2..7 reused);
3. plain: spans 2..8 without a cache (analysis inside the main pipeline, for the total).

and prints the analysis time of runs 1 and 2 (``run.json: timings.analysis``), their ratio, and each
run's wall time.
"""

import argparse
import json
import os
import pathlib
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        spans = [
            str(generate_taxi.generate(args.rows_per_span, pathlib.Path(folder, f"span{k}.csv"), seed=k))
            for k in range(1, 9)
        ]
        cache, lineage = os.path.join(folder, "cache"), os.path.join(folder, "lineage.db")
        cold_s, cold = _run(spans[:7], os.path.join(folder, "cold"), cache, lineage)
        warm_s, warm = _run(spans[1:], os.path.join(folder, "warm"), cache, lineage)
        plain_s, _ = _run(spans[1:], os.path.join(folder, "plain"), None, lineage)
    rows = 7 * args.rows_per_span
    cold_a, warm_a = cold["timings"]["analysis"], warm["timings"]["analysis"]
    print(f"{rows:,} rows per run (7 spans of {args.rows_per_span:,})")
    print(f"{'run':<34} {'analysis s':>10} {'wall s':>8}  spans analyzed / reused")
    for label, seconds, wall, record in (
        ("cold: spans 1..7, empty cache", cold_a, cold_s, cold),
        ("warm: spans 2..8, cache of 1..7", warm_a, warm_s, warm),
    ):
        counts = f"{len(record['analysis']['analyzed'])} / {len(record['analysis']['reused'])}"
        print(f"{label:<34} {seconds:>10.1f} {wall:>8.1f}  {counts}")
    print(f"{'plain: spans 2..8, no cache':<34} {'(inside)':>10} {plain_s:>8.1f}")
    print(f"analysis {cold_a / warm_a:.1f}x faster with the cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
