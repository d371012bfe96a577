"""``skewless serve --processes N``: N server processes on the same ports.

The first process binds the ports with ``SO_REUSEPORT`` and, once it listens, starts the other
N-1 on the same ports (the kernel then spreads new connections over the processes). Each process
loads the model and batches its own requests: Python's GIL keeps one process to about one core,
and on this machine one process's gRPC handling alone keeps a core busy. The first process prints
the ready line once every process listens, and on SIGTERM or SIGINT stops the others with it
(each answers what it has in flight). Counters (``/monitoring/prometheus/metrics``) are per
process: a scrape sees the process that answered it (``X-Skewless-Process`` names it).
"""

import re
import signal
import subprocess
import sys
import threading
import time

__all__ = ["ServerProcesses"]

_READY = re.compile(r"skewless serve: .* on http://")
_START_SECONDS = 300  # loading TensorFlow and the model, on a busy machine


class ServerProcesses:
    """The other processes of ``--processes N``.

    Args:
        argv: ``skewless serve`` arguments for them, without ``--port``/``--grpc-port``.
        count: How many to start.
    """

    def __init__(self, argv: list[str], count: int):
        self._argv = list(argv)
        self._count = count
        self._processes: list[subprocess.Popen] = []

    def start(self, rest_port: int, grpc_port: int | None) -> None:
        """Starts them on the first process's ports; returns once every one listens.

        Raises:
            OSError: One exited or did not listen in time (the others are stopped).
        """
        ports = ["--port", str(rest_port)] + (["--grpc-port", str(grpc_port)] if grpc_port is not None else [])
        command = [sys.executable, "-c", "from pipelines.cli import console_main; console_main()", "serve"]
        ready = []
        for _ in range(self._count):
            process = subprocess.Popen(
                [*command, *self._argv, *ports, "--processes", "1", "--reuse-port"],
                stderr=subprocess.PIPE,
                text=True,
            )
            self._processes.append(process)
            event = threading.Event()
            ready.append(event)
            threading.Thread(target=_forward, args=(process, event), daemon=True).start()
        deadline = time.monotonic() + _START_SECONDS
        for process, event in zip(self._processes, ready, strict=True):
            while not event.wait(0.2):
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise OSError(f"a server process did not start (exit {process.poll()})")

    def stop_soon(self) -> None:
        """SIGTERM to each, without waiting (they drain while this process drains too)."""
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def stop(self, seconds: float = 60.0) -> None:
        """SIGTERM to each (they answer what is in flight), then waits; kills any still running."""
        self.stop_soon()
        for process in self._processes:
            try:
                process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []


def _forward(process: subprocess.Popen, ready: threading.Event) -> None:
    """Sets ``ready`` at the process's ready line (not repeated); forwards its other lines."""
    for line in process.stderr:
        if not ready.is_set() and _READY.search(line):
            ready.set()
            continue
        if ready.is_set() and "skewless serve: stopped" in line:
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
