"""The ``skewless`` command line: the entry point, exit codes, signals and one module per command."""

from pipelines.cli.entry import build_parser, console_main, main

__all__ = ["build_parser", "console_main", "main"]
