"""``skewless check-skew``: check serving inputs against the training statistics and schema."""

import argparse
import sys

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "check-skew"
PASSES_BEAM_FLAGS = True  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "check-skew",
        help="check serving inputs against the training statistics and schema",
        description="Validates a batch of serving inputs against DIR's raw schema and compares its statistics "
        "with DIR/stats/pre_transform.json: L-infinity distance for strings, Jensen-Shannon divergence "
        "for numbers, new string values, rows rejected per feature. Prints a JSON report on stdout; "
        "exit 1 when a threshold is crossed. Unknown flags are passed to Beam.",
        epilog="examples:\n  skewless check-skew --transform-output out/demo --input 'serving/2026-11-27/*.csv'\n"
        "  skewless check-skew --transform-output out/demo --input batch.csv --thresholds skew.yaml\n\n"
        "thresholds YAML (all optional):\n"
        "  default: {linf: 0.1, js: 0.1, new_values: 0.01, invalid: 0.01, missing: 0.1}\n"
        "  features: {fare: {js: 0.05}}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transform-output", required=True, metavar="DIR", help="a `skewless run` output directory")
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN", help="serving input files")
    parser.add_argument("--thresholds", metavar="YAML", help="thresholds config (default: the defaults above)")
    parser.add_argument("--output", metavar="FILE", help="also write the JSON report here")
    parser.add_argument(
        "--anomalies",
        metavar="FILE",
        help="also write the result as TFDV's Anomalies proto (text format; tfdv.load_anomalies_text reads it)",
    )
    parser.add_argument(
        "--statistics",
        metavar="FILE",
        help="also write the serving batch's statistics as TFDV's DatasetFeatureStatisticsList (FeatureStats.pb)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no table on stderr (the JSON report still goes to stdout)"
    )
    arguments.add_csv_arguments(parser, numbers=True, quoted_newlines=True)


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines.errors import CheckFailed
    from pipelines.lineage import run_record

    progress = arguments.progress_printer(args.quiet)
    run_record.require_transform_output(args.transform_output, "check-skew")
    progress("loading TensorFlow and Beam")
    process.load_tensorflow()
    from pipelines.quality.skew import check_skew, failure_reason

    progress("reading, validating and describing the serving inputs on Beam")
    report = check_skew(
        args.transform_output,
        args.input,
        args.thresholds,
        beam_args,
        arguments.csv_format(args),
        anomalies_path=args.anomalies,
        statistics_path=args.statistics,
    )
    text = json.dumps(arguments.json_safe(report), indent=2)
    print(text)
    if args.output:
        from pipelines.io import files

        files.write_text(args.output, text + "\n")
    lines = [f"{'feature':<26} {'distance':<15} {'value':>8} {'limit':>6}  anomalies"]
    for name, entry in report["features"].items():
        lines.append(
            f"{name:<26} {entry['distance']:<15} {entry['value']:>8.4f} {entry['threshold']:>6}  "
            + ("; ".join(entry["anomalies"]) or "-")
        )
    lines.append(f"{report['rows']} serving rows checked against {report['training_rows']} training rows")
    if not args.quiet:
        print("\n".join(lines), file=sys.stderr)
    if not report["passed"]:
        raise CheckFailed(failure_reason(report))
    return 0
