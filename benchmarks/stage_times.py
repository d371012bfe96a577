"""Where a `skewless run` spends its time: wall seconds per fused Beam stage, in-process.

    .venv/bin/python benchmarks/stage_times.py run --input benchmarks/data/taxi_1000000.csv \
        --output /tmp/stages --no-report --quiet

Runs the CLI's ``main(argv)`` in this process on the in-process runner, timing every bundle the
runner executes, and prints the total (imports excluded), the time inside stages, and the slowest
stages (a stage's name lists the transforms fused into it). The rest of the total is start-up,
tracing, pipeline construction, export and the parity check (see ``run.json`` timings).
``STAGES=N`` in the environment prints the N slowest stages (default 8).
"""

import collections
import os
import sys
import time


def main(argv: list[str]) -> None:
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    seconds: collections.Counter = collections.Counter()
    bundles: collections.Counter = collections.Counter()
    execute = fn_runner.FnApiRunner._execute_bundle

    def timed(self, context, bundle_context_manager, bundle_input):
        started = time.perf_counter()
        try:
            return execute(self, context, bundle_context_manager, bundle_input)
        finally:
            name = bundle_context_manager.stage.name
            seconds[name] += time.perf_counter() - started
            bundles[name] += 1

    fn_runner.FnApiRunner._execute_bundle = timed
    from pipelines.cli import main as skewless

    started = time.perf_counter()
    code = skewless(argv)
    print(f"total {time.perf_counter() - started:.1f} s, in stages {sum(seconds.values()):.1f} s (exit {code})")
    for name, spent in seconds.most_common(int(os.environ.get("STAGES", "8"))):
        print(f"{spent:8.2f} s {bundles[name]:4d} bundles  {name[:150]}")


if __name__ == "__main__":
    main(sys.argv[1:])
