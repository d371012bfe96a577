"""``skewless infer-schema``: bootstrap a raw schema.pbtxt from data, for review."""

import argparse
import sys

from pipelines.cli import arguments

NAME = "infer-schema"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "infer-schema",
        help="bootstrap a raw schema.pbtxt from data, for review",
        description="Reads CSV, Parquet or tf.Example TFRecord files in a stream and writes a tensorflow_metadata "
        "Schema: types, required or optional, values a row (tf.Example lists), non-negative numeric domains, "
        "string domains for low-cardinality strings, and an annotation with what was observed for each "
        "feature. Review it before use.",
        epilog="example:\n  skewless infer-schema --input 'data/new/*.csv' --output schemas/new/schema.pbtxt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN", help="CSV or Parquet files")
    parser.add_argument("--output", required=True, metavar="FILE", help="where to write schema.pbtxt")
    arguments.add_csv_arguments(parser, numbers=True)
    parser.add_argument(
        "--max-domain-size", type=int, default=20, help="most distinct values for a string domain (default: 20)"
    )


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    from google.protobuf import text_format

    from pipelines.io import files
    from pipelines.quality.infer_schema import infer

    schema = infer(
        args.input,
        max_domain_size=args.max_domain_size,
        delimiter=args.csv_delimiter,
        encoding=args.encoding,
        decimal_comma=args.decimal_comma,
        missing_values=tuple(args.missing_value),
    ).schema
    files.write_text(
        args.output,
        "# Inferred by `skewless infer-schema`: review types, presence and domains before use.\n"
        + text_format.MessageToString(schema),
    )
    skipped = "".join(f"; {comment}" for comment in schema.annotation.comment)
    print(f"skewless infer-schema: {len(schema.feature)} features -> {args.output}{skipped}", file=sys.stderr)
    return 0
