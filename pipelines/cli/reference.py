"""The command reference (``docs/reference/commands.md``), generated from the parser itself.

``make docs`` writes it; a test fails when the file and the parser drift apart.
"""

import argparse
import sys

from pipelines.cli.entry import build_parser

__all__ = ["commands_markdown", "main"]

HEADER = (
    "# Command reference\n\n"
    "Generated from `skewless --help` by `make docs` (`python -m pipelines.cli.reference`); do not edit.\n"
    "Flags a pipeline command does not know are passed to Beam as pipeline options.\n"
)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            name = ", ".join(f"`{option}`" for option in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}`"
        if action.nargs == 0:
            value = ""
        elif action.choices:
            value = " \\| ".join(f"`{choice}`" for choice in action.choices)
        else:
            value = f"`{action.metavar or action.dest.upper()}`"
        if action.nargs in ("+", "*"):
            value += " ..."
        default = "required" if action.required else ""
        if not action.required and action.default not in (None, False, [], argparse.SUPPRESS):
            default = f"`{action.default}`"
        if action.option_strings and isinstance(action, argparse._AppendAction):
            default = (default + ", " if default else "") + "repeatable"
        rows.append(f"| {name} | {value} | {default} | {_cell(action.help or '')} |")
    return rows


def _section(level: str, title: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    lines = [f"{level} `{title}`", "", _cell(summary)]
    if parser.description:
        lines += ["", _cell(parser.description)]
    rows = _option_rows(parser)
    if rows:
        lines += ["", "| option | value | default | meaning |", "|---|---|---|---|", *rows]
    if parser.epilog:
        lines += ["", "```", parser.epilog.strip("\n"), "```"]
    return [*lines, ""]


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return []


def commands_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown reference of every command and its options.

    Args:
        parser: The command line's parser; ``build_parser()`` when None.

    Returns:
        The text of ``docs/reference/commands.md``.
    """
    parser = parser or build_parser()
    lines = [HEADER]
    for name, command, summary in _subparsers(parser):
        lines += _section("##", f"skewless {name}", command, summary)
        for query, sub, query_summary in _subparsers(command):
            lines += _section("###", f"skewless {name} {query}", sub, query_summary)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Writes the reference to the path given (default: stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    text = commands_markdown()
    if argv:
        with open(argv[0], "w", encoding="utf-8") as handle:  # a file in this repository's docs/
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
