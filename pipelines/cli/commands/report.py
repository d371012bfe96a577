"""``skewless report``: write DIR/report.html, a self-contained page about a run."""

import argparse
import sys

NAME = "report"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "report",
        help="write DIR/report.html, a self-contained page about a run",
        description="Writes DIR/report.html: run summary and row accounting, dead letters with examples, feature "
        "statistics with histograms before and after the transform, skew (DIR/skew.json from check-skew --output), "
        "label agreement (--labels), lineage. One file, no network.",
        epilog="example:\n  skewless report out/demo --labels out/rte",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="a `skewless run` output directory")
    parser.add_argument("--labels", metavar="LABELS_DIR", help="a `skewless labels` output to include")


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.errors import UsageError
    from pipelines.io import files
    from pipelines.report.html import write_report

    if not files.exists(files.join(args.dir, "run.json")):
        raise UsageError(f"{args.dir} has no run.json: is it a `skewless run` output?")
    if args.labels and not files.exists(files.join(args.labels, "agreement.json")):
        raise UsageError(f"{args.labels} has no agreement.json: is it a `skewless labels` output?")
    path = write_report(args.dir, args.labels)
    print(f"skewless report: {path}", file=sys.stderr)
    return 0
