"""The ``skewless`` entry point: parses the command line, runs one command, ends with its exit code.

Every command prints a short summary to stderr and exits 0 on success, 1 when a check it performs
fails, 2 on bad usage or unreadable input, 130/143 when stopped by SIGINT/SIGTERM, always with a
one-line reason. Flags a command does not know are Beam pipeline options (``--runner``,
``--direct_num_workers``, ``--project``, ...) for the commands that run a pipeline.
"""

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Sequence

from pipelines.cli.commands import COMMANDS
from pipelines.runtime import beam_patches, process

__all__ = ["build_parser", "console_main", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's parser: one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog="skewless",
        description="Replicable ML data preparation on Apache Beam + TensorFlow Transform.",
        epilog="Run 'skewless COMMAND --help' for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


@contextlib.contextmanager
def _interruptible(received: list):
    """While a command runs, SIGTERM and SIGINT raise ``errors.Interrupted`` in the main thread, so
    the command unwinds (staging removed, the lineage run marked failed) and exits 128 + the
    signal with one line, instead of dying with a half-written staging directory (SIGTERM) or a
    traceback (Ctrl-C). Each signal's exception is appended to ``received``. Outside the main
    thread (a caller's worker thread) nothing is installed."""
    import signal

    from pipelines.errors import Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number, _frame):
        received.append(Interrupted(signal.Signals(number).name, number))
        raise received[-1]

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 success, 1 a check failed, 2 bad usage or unreadable input, 128 + the
        signal's number when stopped by SIGTERM (143) or SIGINT (130).
    """
    from pipelines.errors import SkewlessError

    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        command = COMMANDS[args.command]
        if rest and not command.PASSES_BEAM_FLAGS:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    process.quiet_libraries()
    beam_patches.install()
    signals = []
    try:
        with _interruptible(signals):
            return command.handle(args, rest)
    except BaseException as error:  # noqa: BLE001 - every ending is one line and an exit code
        if signals:  # its Interrupted may arrive rewrapped (Beam adds the step's name): the signal decides
            output = getattr(args, "output", None)
            left = f"; {output} is never half-written (published whole or not at all)" if output else ""
            print(f"skewless {args.command}: {signals[0]}{left}", file=sys.stderr)
            return signals[0].exit_code
        if isinstance(error, SkewlessError):
            print(f"skewless {args.command}: error: {error}", file=sys.stderr)
            return error.exit_code
        if not isinstance(error, Exception) or os.environ.get("SKEWLESS_DEBUG"):
            raise
        message = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        print(
            f"skewless {args.command}: error: {type(error).__name__}: {message[:300]} "
            "(set SKEWLESS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def console_main() -> None:
    """Entry point of the ``skewless`` console script.

    Ends the process as soon as the command has returned, without Python's interpreter teardown:
    unloading TensorFlow and Beam takes seconds after every output has been written, closed and
    published. Exit handlers still run and the standard
    streams are flushed first. An exception escaping ``main`` (``SKEWLESS_DEBUG=1``) exits normally.
    """
    code = main()
    _exit_now(code)


def _exit_now(code: int) -> None:
    """Runs the exit handlers, flushes the standard streams and ends the process with ``code``."""
    import atexit

    atexit._run_exitfuncs()  # logging.shutdown among them
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
