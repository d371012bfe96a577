"""Errors that end a command with a one-line reason and a documented exit code."""

import zlib

__all__ = ["READ_BREAKS", "CheckFailed", "Interrupted", "SkewlessError", "UsageError"]

# what reading a damaged or cut-short compressed input raises (gzip: EOFError at a cut,
# BadGzipFile, an OSError, at a bad checksum, zlib.error in damaged data)
READ_BREAKS = (EOFError, OSError, zlib.error)


class SkewlessError(Exception):
    """Base class: ``exit_code`` is what the command line returns."""

    exit_code = 1


class CheckFailed(SkewlessError):
    """A check the command performs failed (exit 1): too many invalid rows, a parity mismatch..."""

    exit_code = 1


class UsageError(SkewlessError):
    """Bad usage or unreadable input (exit 2)."""

    exit_code = 2


class Interrupted(BaseException):
    """The command was stopped by a signal: SIGTERM (what schedulers, ``timeout`` and container
    stops send) or SIGINT (Ctrl-C). A ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` (Beam's own included) swallows or rewraps it on its way out; the staging
    directory is removed on the way (``outputs.staged_directory``). Exit code 128 + the signal.
    """

    def __init__(self, signal_name: str, signal_number: int):
        super().__init__(f"stopped by {signal_name}")
        self.exit_code = 128 + signal_number
