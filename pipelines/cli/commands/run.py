"""``skewless run``: read, validate, split, analyze and transform a dataset; write transformed examples."""

import argparse
import sys
import time

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "run"
PASSES_BEAM_FLAGS = True  # flags it does not know are Beam pipeline options

EPILOG = """examples:
  skewless run --output out/demo
  skewless run --input 'data/trips-*.csv' --output out/trips --eval-fraction 0.1
  skewless run --output out/mp --direct_running_mode=multi_processing --direct_num_workers=2
  skewless run --input gs://bucket/trips/*.csv --output gs://bucket/out --runner DataflowRunner \\
      --project my-project --region europe-west1 --temp_location gs://bucket/tmp --setup_file ./setup.py
"""


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "run",
        help="read, validate, split, analyze and transform a dataset; write transformed examples",
        description="Runs the dataset's preprocessing_fn on Beam: transform_fn/, transformed_metadata/, "
        "metadata/, transformed/{train,eval}-*.tfrecord.gz, dead_letter/*.jsonl and run.json under OUTPUT. "
        "Unknown flags are passed to Beam.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        default="taxi",
        metavar="NAME_OR_PATH",
        help="a bundled dataset (taxi, people) or a dataset folder holding config.yaml, or that file (default: taxi)",
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="PATTERN",
        help="input files (CSV, Parquet or tf.Example TFRecord; glob, gs:// allowed; repeatable); "
        "default: the dataset's bundled sample",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory (replaced when the run ends)")
    parser.add_argument(
        "--eval-fraction",
        type=arguments.fraction,
        default=0.2,
        help="share of rows for eval, by row hash (default: 0.2)",
    )
    parser.add_argument(
        "--max-invalid-fraction",
        type=arguments.fraction,
        default=0.01,
        help="fail (exit 1) when more than this share of rows is dead-lettered (default: 0.01)",
    )
    parser.add_argument(
        "--slice-by",
        action="append",
        default=[],
        metavar="COLUMN",
        help="also compute statistics per value of this raw column (repeatable)",
    )
    parser.add_argument("--lineage-db", metavar="FILE", help=arguments.LINEAGE_DB_HELP)
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")
    parser.add_argument(
        "--output-format",
        choices=["tfrecord", "parquet"],
        default="tfrecord",
        help="transformed/ as gzip TFRecords of tf.Examples (default; what `skewless train` reads) or as "
        "snappy Parquet files, one column per transformed feature",
    )
    arguments.add_csv_arguments(parser, numbers=True, quoted_newlines=True)
    parser.add_argument(
        "--analysis-cache",
        metavar="DIR",
        help="incremental analysis: each input file is a span; reuse the cached analysis of spans seen before",
    )
    parser.add_argument("--labels", metavar="CSV", help="consensus.csv from `skewless labels` to join by --label-key")
    parser.add_argument("--label-key", metavar="COLUMN", help="raw column holding each row's item id (with --labels)")
    parser.add_argument(
        "--label-policy",
        choices=["drop", "keep", "weight"],
        default="drop",
        help="rows without a consensus label or with a flagged one: drop (to dropped/), keep, or weight by "
        "confidence (default: drop)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--json", action="store_true", help="print the run record (run.json) on stdout")
    parser.add_argument(
        "--parity-sample",
        type=arguments.fraction,
        default=0.01,
        metavar="FRACTION",
        help="share of rows whose serving-graph output is checked against Beam's (at least 100 rows; default: 0.01)",
    )


def _start_hashing(patterns: list[str] | None):
    """Starts hashing the input files on a thread while TensorFlow loads (which keeps one core busy
    for a second or two), for ``run.json`` and the analysis cache's span keys: a ``FileHashes``, or
    None when no ``--input`` was given or the patterns do not resolve (the run then says why)."""
    if not patterns:
        return None
    from pipelines.io import input_files
    from pipelines.lineage import run_record

    try:
        files = input_files.expand_patterns(patterns)
    except Exception:  # noqa: BLE001 - the run reports unreadable inputs with its own message
        return None
    return run_record.FileHashes([path for path, _ in files])


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    started = time.time()
    progress = arguments.progress_printer(args.quiet)
    process.tune_garbage_collector()  # before any import (process.load_tensorflow tunes it too)
    input_hashes = _start_hashing(args.input)
    progress("loading TensorFlow, tf.Transform and Beam")
    process.load_tensorflow()
    from pipelines.prepare import run as run_job

    progress("planning the inputs")
    record = run_job.run(
        run_job.RunConfig(
            output=args.output,
            dataset=args.dataset,
            inputs=args.input,
            eval_fraction=args.eval_fraction,
            max_invalid_fraction=args.max_invalid_fraction,
            parity_fraction=args.parity_sample,
            slice_by=args.slice_by,
            lineage_db=args.lineage_db,
            write_report=not args.no_report,
            labels=args.labels,
            label_key=args.label_key,
            label_policy=args.label_policy,
            analysis_cache=args.analysis_cache,
            output_format=args.output_format,
            csv_format=arguments.csv_format(args),
        ),
        beam_args,
        progress,
        input_hashes,
    )
    if args.json:
        print(json.dumps(arguments.json_safe(record), indent=2, default=str))
    if args.quiet:
        return 0
    counts = record["counts"]
    from pipelines.io import files

    where = files.absolute(args.output)
    rows = [
        ("rows read", counts["rows_read"]),
        ("train", counts["rows_train"]),
        ("eval", counts["rows_eval"]),
        ("dead-lettered", counts["rows_dead_lettered"]),
        *((f"  {reason}", n) for reason, n in counts["dead_letter_reasons"].items()),
        *((("dropped by policy", counts["rows_dropped_by_policy"]),) if counts["rows_dropped_by_policy"] else ()),
        *((f"  {reason}", n) for reason, n in counts["dropped_reasons"].items()),
        *((("blank lines at file ends", counts["blank_lines_at_end"]),) if counts.get("blank_lines_at_end") else ()),
        ("parity rows checked", record["parity"]["rows_checked"]),
    ]
    table = "\n".join(f"  {name:<28} {value:>12,}" for name, value in rows)
    ignored = sorted({c for entry in record["inputs"] for c in entry.get("ignored_columns", [])})
    if ignored:
        counted = sum(1 for entry in record["inputs"] if entry.get("ignored_columns"))
        table += f"\n  columns not in the schema, ignored ({counted} file{'s' * (counted > 1)}): {', '.join(ignored)}"
    if "analysis" in record:  # --analysis-cache
        analysis = record["analysis"]
        damaged = f", {len(analysis['damaged'])} of them because their cache was damaged" if analysis["damaged"] else ""
        table += (
            f"\n  analysis cache: {len(analysis['reused'])} span(s) reused, {len(analysis['analyzed'])} analyzed"
            f"{damaged} ({analysis['seconds']:.1f} s)"
        )
    print(
        f"skewless run: succeeded in {time.time() - started:.1f} s; serving parity "
        + ("passed" if record["parity"]["passed"] else "not checked: no row in the parity sample")
        + f"\n{table}\n"
        f"outputs in {where}/: transform_fn/ transformed_metadata/ metadata/ transformed/ serving_model/ "
        "stats/ dead_letter/ parity/ anomalies.pbtxt run.json"
        + ("" if args.no_report else " report.html")
        + (" dedup/" if "dedup" in record else ""),
        file=sys.stderr,
    )
    return 0
