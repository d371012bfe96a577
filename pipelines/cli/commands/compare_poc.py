"""``skewless compare-poc``: compare a pandas proof of concept with the pipeline, feature by feature."""

import argparse
import sys

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "compare-poc"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "compare-poc",
        help="compare a pandas proof of concept with the pipeline, feature by feature",
        description="Runs the POC function on the raw CSV and the same rows through DIR/serving_model; prints, per "
        "feature, the share of rows that differ and the largest difference, beside the bound the POC module's "
        "EXPECTED_DIFFERENCES states for it. Exit 1 when a feature differs without an explanation or beyond "
        "its bound.",
        epilog="example:\n  skewless compare-poc --poc benchmarks/taxi_poc.py:prepare \\\n"
        "      --input schemas/taxi/data.csv out/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--poc", required=True, metavar="MODULE:FUNCTION", help="module (or .py path) and function")
    parser.add_argument("--input", required=True, metavar="CSV", help="the raw rows")
    parser.add_argument("dir", metavar="DIR", help="a `skewless run` output directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines.errors import CheckFailed, UsageError
    from pipelines.io import files
    from pipelines.lineage import run_record

    run_record.require_transform_output(args.dir, "compare-poc")
    if not files.exists(files.join(args.dir, "serving_model", "saved_model.pb")):
        raise UsageError(f"{args.dir} has no serving_model/: is it a `skewless run` output?")
    process.load_tensorflow()
    from pipelines.quality.compare_poc import compare_poc

    report = compare_poc(args.poc, args.input, args.dir)
    if args.json:
        print(json.dumps(arguments.json_safe(report), indent=2))
    lines = [f"{'feature':<28} {'mismatch':>9} {'bound':>7} {'max |diff|':>11} {'bound':>9}  explanation"]
    for name, entry in report["features"].items():
        bound = entry.get("bound") or {}
        diff = "-" if entry["max_abs_diff"] is None else f"{entry['max_abs_diff']:.3g}"
        rate = "-" if entry["mismatch_rate"] is None else f"{entry['mismatch_rate']:.2%}"
        share_bound = "-" if bound.get("max_share") is None else f"{bound['max_share']:.1%}"
        diff_bound = "-" if bound.get("max_abs_diff") is None else f"{bound['max_abs_diff']:.3g}"
        lines.append(f"{name:<28} {rate:>9} {share_bound:>7} {diff:>11} {diff_bound:>9}  {entry['explanation'] or ''}")
    lines.append(f"{report['rows']} rows compared, {report['rows_rejected_by_pipeline']} rejected by the pipeline")
    print("\n".join(lines), file=sys.stderr)
    if report["unexplained"]:
        raise CheckFailed(f"unexplained differences on {', '.join(report['unexplained'])}")
    return 0
