"""``skewless export-tfx``: lay a run's outputs out as TFX's Transform component does."""

import argparse
import json
import sys

NAME = "export-tfx"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "export-tfx",
        help="lay a run's outputs out as TFX's Transform component does",
        description="Lays DIR out under DEST as TFX's Transform component does: transform_graph/, "
        "transformed_examples/Split-train/ and Split-eval/ (transformed_examples-*-of-*.gz), pre_transform_schema/, "
        "pre_transform_stats/, post_transform_schema/, post_transform_stats/; hard links where both are on one "
        "local file system, else copies. Prints the Importer properties a TFX pipeline or Vertex AI needs "
        "(split_names, file_format, payload_format) as JSON on stdout.",
        epilog="example:\n  skewless export-tfx out/demo --to out/demo-tfx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="a `skewless run` output directory (tfrecord output format)")
    parser.add_argument("--to", required=True, metavar="DEST", help="where the TFX layout goes (replaced)")


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.prepare.export_tfx import RECORD, export_tfx

    result = export_tfx(args.dir, args.to)
    print(json.dumps(result["properties"], indent=2))
    splits = ", ".join(f"{split}: {count} file(s)" for split, count in result["splits"].items())
    laid_out = " ".join(f"{name}/" for name in result["artifacts"])
    print(f"skewless export-tfx: {args.to}: {laid_out} {RECORD} ({splits})", file=sys.stderr)
    return 0
