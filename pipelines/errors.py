"""Errors that end a command with a one-line reason and a documented exit code."""

__all__ = ["CheckFailed", "SkewlessError", "UsageError"]


class SkewlessError(Exception):
    """Base class: ``exit_code`` is what the command line returns."""

    exit_code = 1


class CheckFailed(SkewlessError):
    """A check the command performs failed (exit 1): too many invalid rows, a parity mismatch..."""

    exit_code = 1


class UsageError(SkewlessError):
    """Bad usage or unreadable input (exit 2)."""

    exit_code = 2
