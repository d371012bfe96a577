"""``skewless dedup``: find probable duplicate records, cluster them, apply a review policy."""

import argparse
import sys

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "dedup"
PASSES_BEAM_FLAGS = True  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "dedup",
        help="find probable duplicate records, cluster them, apply a review policy",
        description="Blocks and scores candidate pairs with a Fellegi-Sunter model (fitted with splink on DuckDB "
        "from a sample, or --model), on Beam, and writes DIR/pairs.csv (pairs at or above the review band), "
        "DIR/clusters.csv (connected components of match pairs), DIR/review.csv (review-band pairs side by "
        "side), DIR/model.json, DIR/records/ (with cluster_id and is_canonical), DIR/removed.jsonl "
        "(keep-canonical), DIR/dead_letter/ and DIR/dedup.json. Review-band pairs never remove a record. "
        "Unknown flags go to Beam.",
        epilog="example:\n  skewless dedup --input schemas/people/signups.csv --config data/dedup/people.yaml "
        "--output out/dedup\n\nconfig YAML:\n  id: rec_id\n  blocking: [[surname], [given_name, postcode]]\n"
        "  fields: {given_name: name, surname: name, date_of_birth: date, email: email}\n"
        "  thresholds: {match: 0.95, review: 0.5}\n  policy: flag            # or keep-canonical",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN", help="headed CSV files")
    parser.add_argument("--config", required=True, metavar="YAML", help="dedup config (see below)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--model", metavar="JSON", help="reuse a model.json instead of fitting one")
    parser.add_argument("--policy", choices=["flag", "keep-canonical"], help="override the config's policy")
    parser.add_argument("--lineage-db", metavar="FILE", help=arguments.LINEAGE_DB_HELP)
    arguments.add_csv_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--json", action="store_true", help="print dedup.json on stdout")


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import dataclasses
    import json

    process.tune_garbage_collector()  # a million record dicts pass through: 9% of a 300k-record run went to collections
    from pipelines.dedup.config import load_dedup_config
    from pipelines.dedup.job import run_dedup

    progress = arguments.progress_printer(args.quiet)
    config = load_dedup_config(args.config)
    if args.policy:
        config = dataclasses.replace(config, policy=args.policy)
    if args.csv_delimiter:
        config = dataclasses.replace(config, csv_delimiter=args.csv_delimiter)
    if args.encoding:
        config = dataclasses.replace(config, encoding=args.encoding)
    if args.missing_value:
        config = dataclasses.replace(config, missing_values=(*config.missing_values, *args.missing_value))
    summary = run_dedup(args.input, config, args.output, args.model, beam_args, args.lineage_db, progress)
    if args.json:
        print(json.dumps(arguments.json_safe(summary), indent=2, sort_keys=True, default=str))
    if not args.quiet:
        records, pairs, clusters = summary["records"], summary["pairs"], summary["clusters"]
        print(
            f"skewless dedup: {records['read']:,} records read, {records['dead_lettered']:,} dead-lettered; "
            f"{pairs['compared']:,} candidate pairs scored: {pairs['match']:,} match, {pairs['review']:,} review\n"
            f"{clusters['count']:,} clusters of {clusters['records']:,} records; policy {summary['policy']}: "
            f"{records['kept']:,} kept, {records['removed']:,} removed\noutputs in {args.output}/: records/ pairs.csv "
            "clusters.csv review.csv model.json removed.jsonl dead_letter/ dedup.json",
            file=sys.stderr,
        )
    return 0
