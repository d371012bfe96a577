"""What several commands share: argument types, the CSV options, JSON output and progress lines."""

import argparse
import sys
import time

LINEAGE_DB_HELP = "lineage store (default: $SKEWLESS_LINEAGE_DB or ~/.local/share/skewless/lineage.db)"


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def delimiter(text: str) -> str:
    """A CSV field delimiter: one character, or ``tab`` / ``\\t`` for a tab."""
    text = "\t" if text in ("tab", "\\t") else text
    if len(text) != 1 or text in '"\r\n':
        raise argparse.ArgumentTypeError(f"must be one character (or 'tab'), not a quote or newline: {text!r}")
    return text


def encoding(text: str) -> str:
    """A text encoding Python knows (``cp1252``, ``latin-1``, ``utf-16``, ...)."""
    import codecs

    try:
        return codecs.lookup(text).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown text encoding {text!r}") from None


_ENCODING_HELP = "text encoding of the CSV files when not UTF-8, e.g. cp1252 or utf-16 (each file is then read whole)"


_DECIMAL_COMMA_HELP = "CSV floats are written with a decimal comma (12,45), as in ';'-separated exports"


_DELIMITER_HELP = "CSV field delimiter, e.g. ';' or tab (default: a tab for .tsv[.gz] files, else a comma)"


def add_csv_arguments(
    parser: argparse.ArgumentParser, numbers: bool = False, quoted_newlines: bool = False, missing: bool = True
) -> None:
    """The options that say how CSV inputs are written: delimiter, encoding and (``missing``) the
    texts of missing values; with ``numbers``, decimal commas; with ``quoted_newlines``, values
    spanning lines."""
    parser.add_argument("--csv-delimiter", type=delimiter, metavar="CHAR", help=_DELIMITER_HELP)
    parser.add_argument("--encoding", type=encoding, metavar="NAME", help=_ENCODING_HELP)
    if numbers:
        parser.add_argument("--decimal-comma", action="store_true", help=_DECIMAL_COMMA_HELP)
    if missing:
        parser.add_argument(
            "--missing-value",
            action="append",
            default=[],
            metavar="TEXT",
            help="a cell text that means a missing value, e.g. NA (repeatable; the empty cell always does)",
        )
    if quoted_newlines:
        parser.add_argument(
            "--allow-quoted-newlines",
            action="store_true",
            help="CSV quoted values may hold newlines (RFC 4180); each CSV file is then read whole, not in byte ranges",
        )


def csv_format(args: argparse.Namespace):
    """The ``input_files.CsvFormat`` of a command's CSV options (:func:`add_csv_arguments` with both)."""
    from pipelines.io.input_files import CsvFormat

    return CsvFormat(
        args.csv_delimiter, args.allow_quoted_newlines, args.encoding, args.decimal_comma, tuple(args.missing_value)
    )


def json_safe(value):
    """``run_record.json_safe``, imported when needed (it brings Beam)."""
    from pipelines.lineage import run_record

    return run_record.json_safe(value)


def shown(value, spec: str) -> str:
    """A measure for the summary line: ``-`` when it is undefined (None or NaN)."""
    return "-" if value is None or value != value else format(value, spec)


def progress_printer(quiet: bool):
    """Prints ``[elapsed] stage`` lines to stderr (nothing when quiet)."""
    started = time.time()

    def progress(stage: str) -> None:
        if not quiet:
            print(f"[{time.time() - started:6.1f}s] {stage}", file=sys.stderr, flush=True)

    return progress
