"""Beam's SDK worker for local ``multi_processing`` runs, with TensorFlow's start-up notices hidden.

``--direct_running_mode=multi_processing`` starts each worker process as ``python -m
apache_beam.runners.worker.sdk_worker_main``. TensorFlow, imported there when the first
tf.Transform DoFn is unpickled, prints its native oneDNN and CUDA notices to stderr, which no
environment variable turns off: six lines a worker under the run's own summary.
``pipelines.runtime.beam_patches`` has Beam start this module instead. It loads TensorFlow as the CLI does
(notices hidden, garbage collector tuned: ``process.load_tensorflow``) and then runs Beam's worker
main, unchanged.
"""

import logging
import os
import signal
import sys


def main() -> None:
    """Loads TensorFlow quietly, then runs Beam's SDK worker (it reads its addresses from the
    environment Beam gives the process).

    The runner owns the worker's life. A Ctrl-C, which the terminal sends to every process of the
    job, or a SIGTERM sent to all of them (systemd, ``kill -- -PGID``) is left to the runner
    process, which unwinds and stops its workers: a worker ignores both (it still ends when the
    runner's control channel closes, even if the runner was killed). When Beam's worker main
    returns (the runner stopped the worker, maybe mid-bundle after an interrupt) the process ends at
    once, without tracebacks from bundle threads that the interpreter's teardown would cut short.
    """
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    from pipelines.runtime.process import load_tensorflow

    load_tensorflow()
    from pipelines.runtime import beam_patches

    beam_patches.install()
    # TensorFlow, imported before Beam sets up the worker's logging, gave its logger a handler of
    # its own: keep its INFO and WARNING lines off stderr, as the CLI does in the main process
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
