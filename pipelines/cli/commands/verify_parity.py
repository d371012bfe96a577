"""``skewless verify-parity``: check that the serving graph gives what the Beam pipeline wrote, row by row."""

import argparse
import sys

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "verify-parity"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "verify-parity",
        help="check that the serving graph gives what the Beam pipeline wrote, row by row",
        description="Feeds the run's parity sample (raw rows) through DIR/serving_model and compares every "
        "transformed feature with the examples Beam wrote: strings and ints equal, floats within 1e-6. "
        "Exit 1 on any mismatch.",
        epilog="example:\n  skewless verify-parity out/demo --json > parity.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="a `skewless run` output directory")
    parser.add_argument("--model", metavar="MODEL_DIR", help="serving SavedModel (default: DIR/serving_model)")
    parser.add_argument("--max-rows", type=int, default=20_000, help="check at most this many rows (default: 20000)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _parity_lines(report: dict) -> list[str]:
    lines = [f"{'feature':<32} {'mismatches':>10} {'max |diff|':>12}"]
    for name, entry in report["features"].items():
        diff = "-" if entry["max_abs_diff"] is None else f"{entry['max_abs_diff']:.3g}"
        lines.append(f"{name:<32} {entry['mismatches']:>10} {diff:>12}")
        if entry.get("example"):
            lines.append(f"    {entry['example']}")
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines.append(f"parity {verdict}: {report['rows_checked']} rows checked")
    return lines


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines.errors import CheckFailed, UsageError
    from pipelines.io import files

    if not files.is_dir(files.join(args.dir, "parity")):
        raise UsageError(f"{args.dir} has no parity/ sample: is it a `skewless run` output?")
    process.load_tensorflow()
    from pipelines.prepare import parity

    report = parity.verify_parity(args.dir, args.model, args.max_rows)
    if args.json:
        print(json.dumps(arguments.json_safe(report), indent=2))
    print("\n".join(_parity_lines(report)), file=sys.stderr)
    if not report["passed"]:
        reason = ", ".join(report["mismatched_features"]) or "no rows to check"
        raise CheckFailed(f"serving graph differs from Beam: {reason}")
    return 0
