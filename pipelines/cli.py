"""The ``skewless`` command line.

Every command prints a short summary to stderr and exits 0 on success, 1 when a check it performs
fails, 2 on bad usage or unreadable input, always with a one-line reason. Flags a command does not
know are Beam pipeline options (``--runner``, ``--direct_num_workers``, ``--project``, ...).
"""

import argparse
import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

from pipelines import lazy_imports

__all__ = ["load_tensorflow", "main"]

_EPILOG_RUN = """examples:
  skewless run --output out/demo
  skewless run --input 'data/trips-*.csv' --output out/trips --eval-fraction 0.1
  skewless run --output out/mp --direct_running_mode=multi_processing --direct_num_workers=2
  skewless run --input gs://bucket/trips/*.csv --output gs://bucket/out --runner DataflowRunner \\
      --project my-project --region europe-west1 --temp_location gs://bucket/tmp --setup_file ./setup.py
"""


def _quiet_libraries() -> None:
    """Keeps TensorFlow's and Beam's start-up chatter off stderr (warnings and errors still show)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # (Keras: see pipelines/__init__.py)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    if not os.environ.get("SKEWLESS_DEBUG"):  # a failing step is reported in one line by main()
        logging.getLogger("apache_beam.runners").setLevel(logging.CRITICAL)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").addFilter(_not_the_tf_compat_v1_notice)


def _not_the_tf_compat_v1_notice(record: logging.LogRecord) -> bool:
    """Drops tf.Transform's notice that it traces in TF1 mode: the dataset config asks for it
    (``tf_compat_v1``, documented in the README), and the notice came twice a run."""
    return not str(record.msg).startswith("Tensorflow Transform is running in tf.compat.v1 mode")


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hides what native code prints while TensorFlow loads (CUDA and oneDNN notices that no
    environment variable turns off); Python exceptions still surface once it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_LINEAGE_DB_HELP = "lineage store (default: $SKEWLESS_LINEAGE_DB or ~/.local/share/skewless/lineage.db)"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _delimiter(text: str) -> str:
    """A CSV field delimiter: one character, or ``tab`` / ``\\t`` for a tab."""
    text = "\t" if text in ("tab", "\\t") else text
    if len(text) != 1 or text in '"\r\n':
        raise argparse.ArgumentTypeError(f"must be one character (or 'tab'), not a quote or newline: {text!r}")
    return text


def _encoding(text: str) -> str:
    """A text encoding Python knows (``cp1252``, ``latin-1``, ``utf-16``, ...)."""
    import codecs

    try:
        return codecs.lookup(text).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown text encoding {text!r}") from None


_ENCODING_HELP = "text encoding of the CSV files when not UTF-8, e.g. cp1252 or utf-16 (each file is then read whole)"
_DECIMAL_COMMA_HELP = "CSV floats are written with a decimal comma (12,45), as in ';'-separated exports"
_DELIMITER_HELP = "CSV field delimiter, e.g. ';' or tab (default: a tab for .tsv[.gz] files, else a comma)"


def _add_csv_arguments(parser: argparse.ArgumentParser, numbers: bool = False, quoted_newlines: bool = False) -> None:
    """The options that say how CSV inputs are written: delimiter and encoding; with ``numbers``,
    decimal commas; with ``quoted_newlines``, values spanning lines."""
    parser.add_argument("--csv-delimiter", type=_delimiter, metavar="CHAR", help=_DELIMITER_HELP)
    parser.add_argument("--encoding", type=_encoding, metavar="NAME", help=_ENCODING_HELP)
    if numbers:
        parser.add_argument("--decimal-comma", action="store_true", help=_DECIMAL_COMMA_HELP)
    if quoted_newlines:
        parser.add_argument(
            "--allow-quoted-newlines",
            action="store_true",
            help="CSV quoted values may hold newlines (RFC 4180); each CSV file is then read whole, not in byte ranges",
        )


def _csv_format(args: argparse.Namespace):
    """The ``read.CsvFormat`` of a command's CSV options (:func:`_add_csv_arguments` with both)."""
    from pipelines.read import CsvFormat

    return CsvFormat(args.csv_delimiter, args.allow_quoted_newlines, args.encoding, args.decimal_comma)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skewless",
        description="Replicable ML data preparation on Apache Beam + TensorFlow Transform.",
        epilog="Run 'skewless COMMAND --help' for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="read, validate, split, analyze and transform a dataset; write transformed examples",
        description="Runs the dataset's preprocessing_fn on Beam: transform_fn/, transformed_metadata/, "
        "metadata/, transformed/{train,eval}-*.tfrecord.gz, dead_letter/*.jsonl and run.json under OUTPUT. "
        "Unknown flags are passed to Beam.",
        epilog=_EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--dataset", default="taxi", help="dataset name under schemas/ (default: taxi)")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="PATTERN",
        help="input files (CSV, Parquet or tf.Example TFRecord; glob, gs:// allowed; repeatable); "
        "default: the dataset's bundled sample",
    )
    run.add_argument("--output", required=True, metavar="DIR", help="output directory (replaced when the run ends)")
    run.add_argument(
        "--eval-fraction", type=_fraction, default=0.2, help="share of rows for eval, by row hash (default: 0.2)"
    )
    run.add_argument(
        "--max-invalid-fraction",
        type=_fraction,
        default=0.01,
        help="fail (exit 1) when more than this share of rows is dead-lettered (default: 0.01)",
    )
    run.add_argument(
        "--slice-by",
        action="append",
        default=[],
        metavar="COLUMN",
        help="also compute statistics per value of this raw column (repeatable)",
    )
    run.add_argument("--lineage-db", metavar="FILE", help=_LINEAGE_DB_HELP)
    run.add_argument("--no-report", action="store_true", help="do not write report.html")
    run.add_argument(
        "--output-format",
        choices=["tfrecord", "parquet"],
        default="tfrecord",
        help="transformed/ as gzip TFRecords of tf.Examples (default; what `skewless train` reads) or as "
        "snappy Parquet files, one column per transformed feature",
    )
    _add_csv_arguments(run, numbers=True, quoted_newlines=True)
    run.add_argument(
        "--analysis-cache",
        metavar="DIR",
        help="incremental analysis: each input file is a span; reuse the cached analysis of spans seen before",
    )
    run.add_argument("--labels", metavar="CSV", help="consensus.csv from `skewless labels` to join by --label-key")
    run.add_argument("--label-key", metavar="COLUMN", help="raw column holding each row's item id (with --labels)")
    run.add_argument(
        "--label-policy",
        choices=["drop", "keep", "weight"],
        default="drop",
        help="rows without a consensus label or with a flagged one: drop (to dropped/), keep, or weight by "
        "confidence (default: drop)",
    )
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("--json", action="store_true", help="print the run record (run.json) on stdout")
    run.add_argument(
        "--parity-sample",
        type=_fraction,
        default=0.01,
        metavar="FRACTION",
        help="share of rows whose serving-graph output is checked against Beam's (default: 0.01)",
    )

    parity = commands.add_parser(
        "verify-parity",
        help="check that the serving graph gives what the Beam pipeline wrote, row by row",
        description="Feeds the run's parity sample (raw rows) through DIR/serving_model and compares every "
        "transformed feature with the examples Beam wrote: strings and ints equal, floats within 1e-6. "
        "Exit 1 on any mismatch.",
        epilog="example:\n  skewless verify-parity out/demo --json > parity.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parity.add_argument("dir", metavar="DIR", help="a `skewless run` output directory")
    parity.add_argument("--model", metavar="MODEL_DIR", help="serving SavedModel (default: DIR/serving_model)")
    parity.add_argument("--max-rows", type=int, default=20_000, help="check at most this many rows (default: 20000)")
    parity.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    train = commands.add_parser(
        "train",
        help="train a baseline Keras model on a run's transformed examples",
        description="Trains a small Keras (tf_keras) model on DIR/transformed/train-*, evaluates on eval-*, and "
        "writes DIR/model/metrics.json (accuracy, auc, log_loss) and DIR/model/serving/, a SavedModel whose "
        "serving_default takes raw serialized tf.Examples and returns probabilities.",
        epilog="example:\n  skewless train --transform-output out/demo --epochs 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--transform-output", required=True, metavar="DIR", help="a `skewless run` output directory")
    train.add_argument("--label", help="transformed feature to predict (default: the dataset config's label)")
    train.add_argument("--epochs", type=int, default=5, help="passes over the training data (default: 5)")
    train.add_argument("--lineage-db", metavar="FILE", help=_LINEAGE_DB_HELP)

    serve = commands.add_parser(
        "serve",
        help="serve a model over the TensorFlow Serving REST API",
        description="Answers GET /v1/models/NAME (status) and POST /v1/models/NAME:predict with "
        '{"instances": [raw feature dicts]}, like TensorFlow Serving; malformed requests get a 400.',
        epilog="examples:\n  skewless serve --model out/demo/model/serving --port 8501\n"
        '  curl -d \'{"instances": [{"trip_miles": 1.2, ...}]}\' localhost:8501/v1/models/default:predict',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--model", required=True, metavar="DIR", help="serving_model/ or model/serving/ directory")
    serve.add_argument("--port", type=int, default=8501, help="port (default: 8501; 0 picks a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--model-name", default="default", help="the NAME in /v1/models/NAME (default: default)")

    poc = commands.add_parser(
        "compare-poc",
        help="compare a pandas proof of concept with the pipeline, feature by feature",
        description="Runs the POC function on the raw CSV and the same rows through DIR/serving_model; prints, per "
        "feature, the share of rows that differ and the largest difference, with the POC module's "
        "EXPECTED_DIFFERENCES explanations. Exit 1 when a feature differs without an explanation.",
        epilog="example:\n  skewless compare-poc --poc benchmarks/taxi_poc.py:prepare \\\n"
        "      --input data/taxi/data.csv out/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    poc.add_argument("--poc", required=True, metavar="MODULE:FUNCTION", help="module (or .py path) and function")
    poc.add_argument("--input", required=True, metavar="CSV", help="the raw rows")
    poc.add_argument("dir", metavar="DIR", help="a `skewless run` output directory")
    poc.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    infer = commands.add_parser(
        "infer-schema",
        help="bootstrap a raw schema.pbtxt from data, for review",
        description="Reads CSV, Parquet or tf.Example TFRecord files in a stream and writes a tensorflow_metadata "
        "Schema: types, required or optional, values a row (tf.Example lists), non-negative numeric domains, "
        "string domains for low-cardinality strings, and an annotation with what was observed for each "
        "feature. Review it before use.",
        epilog="example:\n  skewless infer-schema --input 'data/new/*.csv' --output schemas/new/schema.pbtxt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    infer.add_argument("--input", action="append", required=True, metavar="PATTERN", help="CSV or Parquet files")
    infer.add_argument("--output", required=True, metavar="FILE", help="where to write schema.pbtxt")
    _add_csv_arguments(infer, numbers=True)
    infer.add_argument(
        "--max-domain-size", type=int, default=20, help="most distinct values for a string domain (default: 20)"
    )

    skew = commands.add_parser(
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
    skew.add_argument("--transform-output", required=True, metavar="DIR", help="a `skewless run` output directory")
    skew.add_argument("--input", action="append", required=True, metavar="PATTERN", help="serving input files")
    skew.add_argument("--thresholds", metavar="YAML", help="thresholds config (default: the defaults above)")
    skew.add_argument("--output", metavar="FILE", help="also write the JSON report here")
    skew.add_argument("--quiet", action="store_true", help="no table on stderr (the JSON report still goes to stdout)")
    _add_csv_arguments(skew, numbers=True, quoted_newlines=True)

    labels = commands.add_parser(
        "labels",
        help="agreement, consensus labels and human-level performance from several annotators",
        description="Reads long-format annotations (one row per item, annotator, label), on Beam, and writes "
        "DIR/consensus.csv, DIR/agreement.json (percent agreement, Fleiss' kappa, mean pairwise Cohen's kappa, "
        "Krippendorff's alpha, per-class agreement, most-confused pairs, annotator quality, HLP), "
        "DIR/review.csv (uncertain items with every label) and DIR/dead_letter/. Unknown flags go to Beam.",
        epilog="example:\n  skewless labels --annotations data/crowd/rte.standardized.csv --output out/rte \\\n"
        "      --item-col orig_id --annotator-col '!amt_worker_ids' --label-col response --gold-col gold",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    labels.add_argument(
        "--kind", choices=["classes", "boxes", "text"], default="classes", help="kind of label (default: classes)"
    )
    labels.add_argument("--annotations", action="append", required=True, metavar="CSV", help="annotation files")
    labels.add_argument("--output", required=True, metavar="DIR", help="output directory")
    labels.add_argument("--item-col", default="item", help="item id column (default: item)")
    labels.add_argument("--annotator-col", default="annotator", help="annotator id column (default: annotator)")
    labels.add_argument("--label-col", default="label", help="label column (default: label)")
    labels.add_argument("--gold-col", help="expert label column, if any")
    labels.add_argument("--method", choices=["dawid-skene", "majority"], default="dawid-skene", help="consensus")
    labels.add_argument(
        "--level", choices=["nominal", "ordinal", "interval", "ratio"], default="nominal", help="Krippendorff level"
    )
    labels.add_argument("--merge-map", metavar="YAML", help="labels to merge before aggregation: {label: merged}")
    labels.add_argument("--uncertain-label", metavar="NAME", help="label meaning 'cannot tell': counted, not voted")
    labels.add_argument("--lineage-db", metavar="FILE", help=_LINEAGE_DB_HELP)
    _add_csv_arguments(labels)
    labels.add_argument("--quiet", action="store_true", help="print nothing but errors")
    labels.add_argument("--json", action="store_true", help="print agreement.json on stdout")
    labels.add_argument(
        "--review-below", type=_fraction, default=0.7, help="review items with confidence below this (default: 0.7)"
    )
    labels.add_argument(
        "--round", metavar="NAME", help="tag this labelling round (e.g. instructions-v2); see rounds.json"
    )
    labels.add_argument(
        "--previous-rounds",
        metavar="PATH",
        help="rounds.json (or labels output) with earlier rounds (default: --output's)",
    )
    labels.add_argument(
        "--box-cols", default="x_min,y_min,x_max,y_max", help="boxes: the four coordinate columns, comma-separated"
    )
    labels.add_argument("--iou-threshold", type=_fraction, default=0.5, help="boxes: IoU at which boxes match (0.5)")
    labels.add_argument(
        "--min-annotators", type=int, help="boxes: annotators a consensus box needs (default: majority)"
    )
    labels.add_argument("--normaliser", metavar="YAML", help="text: normaliser options (see README)")
    labels.add_argument(
        "--review-above", type=_fraction, default=0.3, help="text: review items with mean pairwise WER above this (0.3)"
    )

    dedup = commands.add_parser(
        "dedup",
        help="find probable duplicate records, cluster them, apply a review policy",
        description="Blocks and scores candidate pairs with a Fellegi-Sunter model (fitted with splink on DuckDB "
        "from a sample, or --model), on Beam, and writes DIR/pairs.csv (pairs at or above the review band), "
        "DIR/clusters.csv (connected components of match pairs), DIR/review.csv (review-band pairs side by "
        "side), DIR/model.json, DIR/records/ (with cluster_id and is_canonical), DIR/removed.jsonl "
        "(keep-canonical), DIR/dead_letter/ and DIR/dedup.json. Review-band pairs never remove a record. "
        "Unknown flags go to Beam.",
        epilog="example:\n  skewless dedup --input 'data/people/*.csv' --config data/dedup/people.yaml "
        "--output out/dedup\n\nconfig YAML:\n  id: rec_id\n  blocking: [[surname], [given_name, postcode]]\n"
        "  fields: {given_name: name, surname: name, date_of_birth: date, email: email}\n"
        "  thresholds: {match: 0.95, review: 0.5}\n  policy: flag            # or keep-canonical",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dedup.add_argument("--input", action="append", required=True, metavar="PATTERN", help="headed CSV files")
    dedup.add_argument("--config", required=True, metavar="YAML", help="dedup config (see below)")
    dedup.add_argument("--output", required=True, metavar="DIR", help="output directory")
    dedup.add_argument("--model", metavar="JSON", help="reuse a model.json instead of fitting one")
    dedup.add_argument("--policy", choices=["flag", "keep-canonical"], help="override the config's policy")
    dedup.add_argument("--lineage-db", metavar="FILE", help=_LINEAGE_DB_HELP)
    _add_csv_arguments(dedup)
    dedup.add_argument("--quiet", action="store_true", help="print nothing but errors")
    dedup.add_argument("--json", action="store_true", help="print dedup.json on stdout")

    lineage = commands.add_parser(
        "lineage",
        help="where artifacts came from and what each input fed",
        description="Queries the lineage store that run, labels and train record into.",
        epilog="examples:\n  skewless lineage downstream data/taxi/data.csv"
        "\n  skewless lineage upstream out/demo/serving_model"
        "\n  skewless lineage runs\n  skewless lineage show 3f2a\n  skewless lineage stale --json"
        "\n  skewless lineage sources --register data/sources.yaml"
        "\n  skewless lineage row 1234567890123 --run out/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    queries = lineage.add_subparsers(dest="query", metavar="QUERY", required=True)
    for name, text in [
        ("upstream", "what ARTIFACT was built from, transitively"),
        ("downstream", "what was built from ARTIFACT, transitively"),
    ]:
        query = queries.add_parser(name, help=text, description=f"Lists {text}. ARTIFACT: a path, hash prefix or id.")
        query.add_argument("artifact", metavar="ARTIFACT")
    queries.add_parser("runs", help="recorded executions, newest first").add_argument("--limit", type=int, default=50)
    queries.add_parser("show", help="one execution with its inputs and outputs").add_argument("run", metavar="RUN")
    queries.add_parser("stale", help="artifacts whose recorded inputs have changed on disk since")
    row = queries.add_parser(
        "row",
        help="the raw record(s) of a transformed example's row_id (CSV, Parquet, TFRecord inputs)",
        description="Re-reads the run's recorded CSV inputs and prints the lines whose row_id (computed by the "
        "run's own serving graph) is ROW_ID: source, byte offset, line number and the raw line.",
    )
    row.add_argument("row_id", metavar="ROW_ID", type=int, nargs="+")
    row.add_argument("--run", required=True, metavar="DIR", help="the `skewless run` output the example came from")
    sources = queries.add_parser("sources", help="the data inventory (sources.yaml)")
    sources.add_argument("--register", metavar="YAML", help="register or update the sources of this file first")
    for query in queries.choices.values():
        query.add_argument("--json", action="store_true", help="machine-readable output")
        query.add_argument("--lineage-db", metavar="FILE", help=_LINEAGE_DB_HELP)

    report = commands.add_parser(
        "report",
        help="write DIR/report.html, a self-contained page about a run",
        description="Writes DIR/report.html: run summary and row accounting, dead letters with examples, feature "
        "statistics with histograms before and after the transform, skew (DIR/skew.json from check-skew --output), "
        "label agreement (--labels), lineage. One file, no network.",
        epilog="example:\n  skewless report out/demo --labels out/rte",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("dir", metavar="DIR", help="a `skewless run` output directory")
    report.add_argument("--labels", metavar="LABELS_DIR", help="a `skewless labels` output to include")
    return parser


def _report(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.errors import UsageError
    from pipelines.report import write_report

    if not os.path.isfile(os.path.join(args.dir, "run.json")):
        raise UsageError(f"{args.dir} has no run.json: is it a `skewless run` output?")
    if args.labels and not os.path.isfile(os.path.join(args.labels, "agreement.json")):
        raise UsageError(f"{args.labels} has no agreement.json: is it a `skewless labels` output?")
    path = write_report(args.dir, args.labels)
    print(f"skewless report: {path}", file=sys.stderr)
    return 0


def _lineage(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    import yaml

    from pipelines.errors import UsageError
    from pipelines.lineage import LineageStore

    if args.query == "row":
        load_tensorflow()
        from pipelines.trace import find_rows

        result = find_rows(args.run, set(args.row_id))
        lines = [f"{len(result)} raw records for row_id {', '.join(map(str, args.row_id))}"] + [
            f"  {r['source']}:{r['line']} (byte {r['offset']}, row_id {r['row_id']}): {r['raw']}"
            if r["line"] is not None
            else f"  {r['source']} (record {r['offset']}, row_id {r['row_id']}): {r['raw']}"
            for r in result
        ]
        print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
        return 0 if result else 1
    store = LineageStore(args.lineage_db)
    if args.query in ("upstream", "downstream"):
        result = getattr(store, args.query)(args.artifact)
        lines = [f"{args.query} of {args.artifact}: {len(result)} artifacts"] + [
            f"  {a['type']:<20} {a['uri']}  sha256:{a['content_hash'][:16]}  (run {a['execution']})" for a in result
        ]
    elif args.query == "runs":
        result = store.runs(args.limit)
        lines = [f"{'run':<17} {'command':<8} {'status':<10} {'started':<26} in/out  context"] + [
            f"{r['id']:<17} {r['command']:<8} {r['status']:<10} {r['started_at']:<26} {r['inputs']}/{r['outputs']}"
            f"     {r['context'] or ''}"
            for r in result
        ]
    elif args.query == "show":
        result = store.show(args.run)
        lines = [
            f"run {result['id']}: {result['command']} {result['status']}"
            + (f" ({result['reason']})" if result["reason"] else ""),
            f"  started {result['started_at']}, ended {result['ended_at']}, git {result['git_commit'] or '-'}",
        ]
        for kind in ("inputs", "outputs"):
            lines.append(f"  {kind}:")
            lines += [f"    {a['type']:<20} {a['uri']}  sha256:{a['content_hash'][:16]}" for a in result[kind]]
    elif args.query == "stale":
        result = store.stale()
        lines = [f"{len(result)} changed inputs"]
        for entry in result:
            lines.append(
                f"  {entry['input']['uri']} (recorded {entry['input']['content_hash'][:12]}, now {entry['now'][:12]})"
            )
            lines += [
                f"    stale: {a['type']:<20} {a['uri']}  sha256:{a['content_hash'][:16]}" for a in entry["dependents"]
            ]
    else:
        if args.register:
            try:
                with open(args.register) as handle:
                    inventory = yaml.safe_load(handle) or {}
            except (OSError, yaml.YAMLError) as error:
                raise UsageError(f"cannot read {args.register}: {str(error).splitlines()[0]}") from None
            if not isinstance(inventory.get("sources"), dict):
                raise UsageError(f"{args.register} must have a 'sources:' mapping of name -> properties")
            store.register_sources(inventory["sources"])
        result = store.sources()
        lines = [f"{len(result)} data sources"] + [
            f"  {s['name']}: " + ", ".join(f"{k}={v}" for k, v in s["properties"].items()) for s in result
        ]
    store.close()
    print(json.dumps(result, indent=2, default=str) if args.json else "\n".join(lines))
    return 0


def _json_safe(value):
    """``run_record.json_safe``, imported when needed (it brings Beam)."""
    from pipelines import run_record

    return run_record.json_safe(value)


def _shown(value, spec: str) -> str:
    """A measure for the summary line: ``-`` when it is undefined (None or NaN)."""
    return "-" if value is None or value != value else format(value, spec)


def _labels(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines.label_rounds import rounds_table

    progress = _progress_printer(args.quiet)
    if args.kind != "classes":
        return _unstructured_labels(args, beam_args, progress)
    from pipelines.labels import LabelsConfig, run_labels

    report = run_labels(
        LabelsConfig(
            annotations=args.annotations,
            output=args.output,
            item_col=args.item_col,
            annotator_col=args.annotator_col,
            label_col=args.label_col,
            gold_col=args.gold_col,
            method=args.method,
            level=args.level,
            merge_map=args.merge_map,
            uncertain_label=args.uncertain_label,
            review_below=args.review_below,
            round=args.round,
            previous_rounds=args.previous_rounds,
            lineage_db=args.lineage_db,
            csv_delimiter=args.csv_delimiter,
            encoding=args.encoding,
        ),
        beam_args,
        progress,
    )
    if args.json:
        print(json.dumps(_json_safe(report), indent=2, sort_keys=True, default=str))
    if args.quiet:
        return 0
    hlp = report["hlp"]["vs_others"]
    gold = report["gold"].get("consensus_accuracy")
    ci = "" if hlp["accuracy"] is None else f" [{hlp['ci95'][0]:.3f}, {hlp['ci95'][1]:.3f}]"
    print(
        f"skewless labels: {report['annotations']:,} annotations of {report['items']:,} items by "
        f"{report['annotators']:,} annotators ({report['dead_lettered']} dead-lettered)\n"
        f"agreement {_shown(report['percent_agreement'], '.3f')}, "
        f"Fleiss' kappa {_shown(report['fleiss_kappa'], '.3f')}, "
        f"Krippendorff's alpha {_shown(report['krippendorff_alpha']['value'], '.3f')}; "
        f"HLP {_shown(hlp['accuracy'], '.3f')}{ci}"
        + (" (agreement needs items labelled by two annotators or more: '-' is undefined)" if ci == "" else "")
        + (f"; consensus accuracy vs gold {gold:.4f}" if gold is not None else "")
        + f"\n{report['consensus']['flagged_for_review']} items to review; outputs in {args.output}/: "
        "consensus.csv agreement.json review.csv annotations/ dead_letter/",
        file=sys.stderr,
    )
    if report.get("rounds"):
        print(rounds_table(report["rounds"]), file=sys.stderr)
    return 0


def _unstructured_labels(args: argparse.Namespace, beam_args: list[str], progress) -> int:
    import json

    from pipelines.errors import UsageError
    from pipelines.label_rounds import rounds_table
    from pipelines.labels_unstructured import UnstructuredLabelsConfig, conventions_text, run_unstructured_labels

    box_cols = tuple(c.strip() for c in args.box_cols.split(","))
    if len(box_cols) != 4:
        raise UsageError(f"--box-cols needs four column names, got {args.box_cols!r}")
    report = run_unstructured_labels(
        UnstructuredLabelsConfig(
            kind=args.kind,
            annotations=args.annotations,
            output=args.output,
            item_col=args.item_col,
            annotator_col=args.annotator_col,
            label_col=args.label_col,
            box_cols=box_cols,
            iou_threshold=args.iou_threshold,
            min_annotators=args.min_annotators,
            normaliser=args.normaliser,
            review_above=args.review_above,
            round=args.round,
            previous_rounds=args.previous_rounds,
            lineage_db=args.lineage_db,
            csv_delimiter=args.csv_delimiter,
            encoding=args.encoding,
        ),
        beam_args,
        progress,
    )
    if args.json:
        print(json.dumps(_json_safe(report), indent=2, sort_keys=True, default=str))
    if args.quiet:
        return 0
    hlp = report["hlp"]
    ci = "" if hlp["value"] is None else f" [{hlp['ci95'][0]:.3f}, {hlp['ci95'][1]:.3f}]"

    if args.kind == "boxes":
        measures = (
            f"mean IoU {_shown(report['mean_iou'], '.3f')}, "
            f"unmatched boxes {_shown(report['unmatched_share'], '.1%')}, "
            f"box count differs on {_shown(report['count_disagreement'], '.1%')} of annotator pairs"
        )
    else:
        measures = (
            f"mean pairwise WER {_shown(report['mean_pairwise_wer'], '.3f')}, "
            f"{report['unintelligible_tags']} unintelligible tags"
        )
    lines = [
        f"skewless labels ({args.kind}): {report['annotations']:,} annotations of {report['items']:,} items by "
        f"{report['annotators']:,} annotators ({report['dead_lettered']} dead-lettered)",
        measures,
        f"HLP {_shown(hlp['value'], '.3f')}{ci} ({hlp['measure']})",
        *conventions_text(report),
        f"{report['review_items']} items to review; outputs in {args.output}/: consensus.csv agreement.json "
        "review.csv items/ dead_letter/" + (" rounds.json" if report.get("rounds") else ""),
    ]
    if report.get("rounds"):
        lines.append(rounds_table(report["rounds"]))
    print("\n".join(lines), file=sys.stderr)
    return 0


def _dedup(args: argparse.Namespace, beam_args: list[str]) -> int:
    import dataclasses
    import json

    _tune_garbage_collector()  # a million record dicts pass through: 9% of a 300k-record run went to collections
    from pipelines.dedup import load_dedup_config, run_dedup

    progress = _progress_printer(args.quiet)
    config = load_dedup_config(args.config)
    if args.policy:
        config = dataclasses.replace(config, policy=args.policy)
    if args.csv_delimiter:
        config = dataclasses.replace(config, csv_delimiter=args.csv_delimiter)
    if args.encoding:
        config = dataclasses.replace(config, encoding=args.encoding)
    summary = run_dedup(args.input, config, args.output, args.model, beam_args, args.lineage_db, progress)
    if args.json:
        print(json.dumps(_json_safe(summary), indent=2, sort_keys=True, default=str))
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


def _infer_schema(args: argparse.Namespace, beam_args: list[str]) -> int:
    from google.protobuf import text_format

    from pipelines.infer_schema import infer_schema

    schema = infer_schema(
        args.input,
        max_domain_size=args.max_domain_size,
        delimiter=args.csv_delimiter,
        encoding=args.encoding,
        decimal_comma=args.decimal_comma,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        handle.write("# Inferred by `skewless infer-schema`: review types, presence and domains before use.\n")
        handle.write(text_format.MessageToString(schema))
    skipped = "".join(f"; {comment}" for comment in schema.annotation.comment)
    print(f"skewless infer-schema: {len(schema.feature)} features -> {args.output}{skipped}", file=sys.stderr)
    return 0


def _check_skew(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines import run_record
    from pipelines.errors import CheckFailed

    progress = _progress_printer(args.quiet)
    run_record.require_transform_output(args.transform_output, "check-skew")
    progress("loading TensorFlow and Beam")
    load_tensorflow()
    from pipelines.skew import check_skew, failure_reason

    progress("reading, validating and describing the serving inputs on Beam")
    report = check_skew(args.transform_output, args.input, args.thresholds, beam_args, _csv_format(args))
    text = json.dumps(_json_safe(report), indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
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


def _compare_poc(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines import run_record
    from pipelines.errors import CheckFailed, UsageError

    run_record.require_transform_output(args.dir, "compare-poc")
    if not os.path.isdir(os.path.join(args.dir, "serving_model")):
        raise UsageError(f"{args.dir} has no serving_model/: is it a `skewless run` output?")
    load_tensorflow()
    from pipelines.compare_poc import compare_poc

    report = compare_poc(args.poc, args.input, args.dir)
    if args.json:
        print(json.dumps(_json_safe(report), indent=2))
    lines = [f"{'feature':<28} {'mismatch':>9} {'max |diff|':>11}  explanation"]
    for name, entry in report["features"].items():
        diff = "-" if entry["max_abs_diff"] is None else f"{entry['max_abs_diff']:.3g}"
        rate = "-" if entry["mismatch_rate"] is None else f"{entry['mismatch_rate']:.2%}"
        lines.append(f"{name:<28} {rate:>9} {diff:>11}  {entry['explanation'] or ''}")
    lines.append(f"{report['rows']} rows compared, {report['rows_rejected_by_pipeline']} rejected by the pipeline")
    print("\n".join(lines), file=sys.stderr)
    if report["unexplained"]:
        raise CheckFailed(f"unexplained differences on {', '.join(report['unexplained'])}")
    return 0


def load_tensorflow():
    """Imports TensorFlow with its native start-up notices hidden, with the garbage collector
    tuned first and the modules it never needs deferred (``pipelines.lazy_imports``), and sets the
    GIL's switch interval for the pipeline that follows."""
    _tune_garbage_collector()  # before the imports: TensorFlow's alone ran 826 collections, 0.5 s
    with _native_stderr_silenced(), lazy_imports.deferred():
        import tensorflow as tf
        import tensorflow_transform  # noqa: F401 - its native notices hidden too

        tf.config.list_physical_devices("GPU")  # probes CUDA now, while its notices are hidden
    gc.freeze()  # what the imports made is long-lived: never scanned again
    sys.setswitchinterval(SWITCH_INTERVAL_S)


GC_THRESHOLDS = (50_000, 20, 10)
# How long a thread holds the GIL while another waits for it (Python's default: 5 ms). The
# background threads (decoding, statistics, encoding: pipelines/overlap.py) release the GIL around
# every Arrow, numpy and sketch call, and each time they wait up to the interval to get it back from
# the stage's thread: five statistics batches took 6.3 s beside a busy thread at 5 ms, 1.1 s at
# 0.5 ms (the busy thread's own rate unchanged). A 2M-row run: median 20.8 -> 20.1 s.
SWITCH_INTERVAL_S = 0.0005


def _tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic-garbage collections for the commands that load TensorFlow, and for
    ``skewless dedup``, whose records travel as Python dicts (300k records: 40 against 44 s).

    Importing TensorFlow, tracing graphs and building a Beam pipeline allocate millions of
    long-lived objects: with Python's default thresholds (700, 10, 10) a 15k-row ``skewless run``
    spent 1.3 s in 1,700 collections, 0.9 s of it in full ones re-scanning them; with these, set
    before the imports (whose objects ``load_tensorflow`` then freezes), about 20 collections and
    0.2 s. Data moves in Arrow batches, a few Python objects per thousands of rows, so memory is not
    affected (see docs/performance.md).
    """
    gc.set_threshold(*GC_THRESHOLDS)


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


def _verify_parity(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines.errors import CheckFailed, UsageError

    if not os.path.isdir(os.path.join(args.dir, "parity")) and "://" not in args.dir:
        raise UsageError(f"{args.dir} has no parity/ sample: is it a `skewless run` output?")
    load_tensorflow()
    from pipelines import parity

    report = parity.verify_parity(args.dir, args.model, args.max_rows)
    if args.json:
        print(json.dumps(_json_safe(report), indent=2))
    print("\n".join(_parity_lines(report)), file=sys.stderr)
    if not report["passed"]:
        reason = ", ".join(report["mismatched_features"]) or "no rows to check"
        raise CheckFailed(f"serving graph differs from Beam: {reason}")
    return 0


def _train(args: argparse.Namespace, beam_args: list[str]) -> int:
    import schemas
    from pipelines import run_record
    from pipelines.errors import UsageError

    record = run_record.require_transform_output(args.transform_output, "train")
    dataset = record["dataset"]
    if record.get("parameters", {}).get("output_format", "tfrecord") != "tfrecord":
        raise UsageError(
            f"{args.transform_output} was written with --output-format {record['parameters']['output_format']}: "
            "`skewless train` reads tf.Example TFRecords (rerun without --output-format)"
        )
    label = args.label or schemas.load_dataset(dataset).label
    if not label:
        raise UsageError("the dataset config names no label: pass --label")
    load_tensorflow()
    from pipelines import train

    try:
        metrics = train.train(args.transform_output, label, args.epochs, dataset, args.lineage_db)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(
        f"skewless train: eval accuracy {metrics['accuracy']:.4f}, AUC {metrics['auc']:.4f}, "
        f"log loss {metrics['log_loss']:.4f}\nmodel in {os.path.join(args.transform_output, 'model')}/: "
        "metrics.json serving/",
        file=sys.stderr,
    )
    return 0


def _serve(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.errors import Interrupted, UsageError

    if not os.path.isfile(os.path.join(args.model, "saved_model.pb")):
        raise UsageError(f"{args.model} is not a SavedModel directory")
    load_tensorflow()
    from pipelines import serving

    model = serving.ServingModel(args.model)
    try:
        server = serving.make_server(model, args.host, args.port, args.model_name)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    host, port = server.server_address[:2]
    print(
        f"skewless serve: {args.model} as '{args.model_name}' on http://{host}:{port}/v1/models/{args.model_name}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C or SIGTERM: a normal stop
        pass
    finally:
        server.server_close()
    return 0


def _progress_printer(quiet: bool):
    """Prints ``[elapsed] stage`` lines to stderr (nothing when quiet)."""
    started = time.time()

    def progress(stage: str) -> None:
        if not quiet:
            print(f"[{time.time() - started:6.1f}s] {stage}", file=sys.stderr, flush=True)

    return progress


def _start_hashing(patterns: list[str] | None):
    """Starts hashing the input files on a thread while TensorFlow loads (which keeps one core busy
    for a second or two), for ``run.json`` and the analysis cache's span keys: a ``FileHashes``, or
    None when no ``--input`` was given or the patterns do not resolve (the run then says why)."""
    if not patterns:
        return None
    from pipelines import read, run_record

    try:
        files = read.expand_patterns(patterns)
    except Exception:  # noqa: BLE001 - the run reports unreadable inputs with its own message
        return None
    return run_record.FileHashes([path for path, _ in files])


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    started = time.time()
    progress = _progress_printer(args.quiet)
    _tune_garbage_collector()  # before any import (load_tensorflow tunes it too)
    input_hashes = _start_hashing(args.input)
    progress("loading TensorFlow, tf.Transform and Beam")
    load_tensorflow()
    from pipelines import run as run_job

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
            csv_format=_csv_format(args),
        ),
        beam_args,
        progress,
        input_hashes,
    )
    if args.json:
        print(json.dumps(_json_safe(record), indent=2, default=str))
    if args.quiet:
        return 0
    counts = record["counts"]
    where = args.output if "://" in args.output else os.path.abspath(args.output)
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
        files = sum(1 for entry in record["inputs"] if entry.get("ignored_columns"))
        table += f"\n  columns not in the schema, ignored ({files} file{'s' * (files > 1)}): {', '.join(ignored)}"
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
        "stats/ dead_letter/ parity/ run.json"
        + ("" if args.no_report else " report.html")
        + (" dedup/" if "dedup" in record else ""),
        file=sys.stderr,
    )
    return 0


_COMMANDS = {
    "run": _run,
    "verify-parity": _verify_parity,
    "train": _train,
    "serve": _serve,
    "compare-poc": _compare_poc,
    "infer-schema": _infer_schema,
    "check-skew": _check_skew,
    "labels": _labels,
    "dedup": _dedup,
    "lineage": _lineage,
    "report": _report,
}
_BEAM_COMMANDS = {"run", "check-skew", "labels", "dedup"}  # commands that pass unknown flags to Beam


@contextlib.contextmanager
def _interruptible(received: list):
    """While a command runs, SIGTERM and SIGINT raise ``errors.Interrupted`` in the main thread, so
    the command unwinds (staging removed, the lineage run marked failed) and exits 128 + the
    signal with one line, instead of dying with a half-written staging directory (SIGTERM) or a
    traceback (Ctrl-C). Each signal's exception is appended to ``received``. Outside the main
    thread (a caller's worker thread) nothing is installed."""
    import signal

    from pipelines.errors import Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number, _frame):
        received.append(Interrupted(signal.Signals(number).name, number))
        raise received[-1]

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 success, 1 a check failed, 2 bad usage or unreadable input, 128 + the
        signal's number when stopped by SIGTERM (143) or SIGINT (130).
    """
    from pipelines.errors import SkewlessError

    parser = _build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and args.command not in _BEAM_COMMANDS:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    _quiet_libraries()
    signals = []
    try:
        with _interruptible(signals):
            return _COMMANDS[args.command](args, rest)
    except BaseException as error:  # noqa: BLE001 - every ending is one line and an exit code
        if signals:  # its Interrupted may arrive rewrapped (Beam adds the step's name): the signal decides
            output = getattr(args, "output", None)
            left = f"; {output} is never half-written (published whole or not at all)" if output else ""
            print(f"skewless {args.command}: {signals[0]}{left}", file=sys.stderr)
            return signals[0].exit_code
        if isinstance(error, SkewlessError):
            print(f"skewless {args.command}: error: {error}", file=sys.stderr)
            return error.exit_code
        if not isinstance(error, Exception) or os.environ.get("SKEWLESS_DEBUG"):
            raise
        message = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        print(
            f"skewless {args.command}: error: {type(error).__name__}: {message[:300]} "
            "(set SKEWLESS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def console_main() -> None:
    """Entry point of the ``skewless`` console script.

    Ends the process as soon as the command has returned, without Python's interpreter teardown:
    unloading TensorFlow and Beam took about 1.7 s after every output had been written, closed and
    published (a quarter of a small run's fixed cost). Exit handlers still run and the standard
    streams are flushed first. An exception escaping ``main`` (``SKEWLESS_DEBUG=1``) exits normally.
    """
    code = main()
    _exit_now(code)


def _exit_now(code: int) -> None:
    """Runs the exit handlers, flushes the standard streams and ends the process with ``code``."""
    import atexit

    atexit._run_exitfuncs()  # logging.shutdown among them
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
