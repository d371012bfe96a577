"""``skewless labels``: agreement, consensus labels and human-level performance from several annotators."""

import argparse
import sys

from pipelines.cli import arguments

NAME = "labels"
PASSES_BEAM_FLAGS = True  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
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
    parser.add_argument(
        "--kind", choices=["classes", "boxes", "text"], default="classes", help="kind of label (default: classes)"
    )
    parser.add_argument("--annotations", action="append", required=True, metavar="CSV", help="annotation files")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--item-col", default="item", help="item id column (default: item)")
    parser.add_argument("--annotator-col", default="annotator", help="annotator id column (default: annotator)")
    parser.add_argument("--label-col", default="label", help="label column (default: label)")
    parser.add_argument("--gold-col", help="expert label column, if any")
    parser.add_argument("--method", choices=["dawid-skene", "majority"], default="dawid-skene", help="consensus")
    parser.add_argument(
        "--level", choices=["nominal", "ordinal", "interval", "ratio"], default="nominal", help="Krippendorff level"
    )
    parser.add_argument("--merge-map", metavar="YAML", help="labels to merge before aggregation: {label: merged}")
    parser.add_argument("--uncertain-label", metavar="NAME", help="label meaning 'cannot tell': counted, not voted")
    parser.add_argument("--lineage-db", metavar="FILE", help=arguments.LINEAGE_DB_HELP)
    arguments.add_csv_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--json", action="store_true", help="print agreement.json on stdout")
    parser.add_argument(
        "--review-below",
        type=arguments.fraction,
        default=0.7,
        help="review items with confidence below this (default: 0.7)",
    )
    parser.add_argument(
        "--round", metavar="NAME", help="tag this labelling round (e.g. instructions-v2); see rounds.json"
    )
    parser.add_argument(
        "--previous-rounds",
        metavar="PATH",
        help="rounds.json (or labels output) with earlier rounds (default: --output's)",
    )
    parser.add_argument(
        "--box-cols", default="x_min,y_min,x_max,y_max", help="boxes: the four coordinate columns, comma-separated"
    )
    parser.add_argument(
        "--iou-threshold", type=arguments.fraction, default=0.5, help="boxes: IoU at which boxes match (0.5)"
    )
    parser.add_argument(
        "--min-annotators", type=int, help="boxes: annotators a consensus box needs (default: majority)"
    )
    parser.add_argument("--normaliser", metavar="YAML", help="text: normaliser options (see README)")
    parser.add_argument(
        "--review-above",
        type=arguments.fraction,
        default=0.3,
        help="text: review items with mean pairwise WER above this (0.3)",
    )


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    from pipelines.labels.rounds import rounds_table

    progress = arguments.progress_printer(args.quiet)
    if args.kind != "classes":
        return _unstructured_labels(args, beam_args, progress)
    from pipelines.labels.classes import LabelsConfig, run_labels

    report = run_labels(
        LabelsConfig(
            gold_col=args.gold_col,
            method=args.method,
            level=args.level,
            merge_map=args.merge_map,
            uncertain_label=args.uncertain_label,
            review_below=args.review_below,
            **_shared_options(args),
        ),
        beam_args,
        progress,
    )
    if args.json:
        print(json.dumps(arguments.json_safe(report), indent=2, sort_keys=True, default=str))
    if args.quiet:
        return 0
    hlp = report["hlp"]["vs_others"]
    gold = report["gold"].get("consensus_accuracy")
    ci = "" if hlp["accuracy"] is None else f" [{hlp['ci95'][0]:.3f}, {hlp['ci95'][1]:.3f}]"
    print(
        f"skewless labels: {report['annotations']:,} annotations of {report['items']:,} items by "
        f"{report['annotators']:,} annotators ({report['dead_lettered']} dead-lettered)\n"
        f"agreement {arguments.shown(report['percent_agreement'], '.3f')}, "
        f"Fleiss' kappa {arguments.shown(report['fleiss_kappa'], '.3f')}, "
        f"Krippendorff's alpha {arguments.shown(report['krippendorff_alpha']['value'], '.3f')}; "
        f"HLP {arguments.shown(hlp['accuracy'], '.3f')}{ci}"
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
    from pipelines.labels.rounds import rounds_table
    from pipelines.labels.unstructured import UnstructuredLabelsConfig, conventions_text, run_unstructured_labels

    box_cols = tuple(c.strip() for c in args.box_cols.split(","))
    if len(box_cols) != 4:
        raise UsageError(f"--box-cols needs four column names, got {args.box_cols!r}")
    report = run_unstructured_labels(
        UnstructuredLabelsConfig(
            kind=args.kind,
            box_cols=box_cols,
            iou_threshold=args.iou_threshold,
            min_annotators=args.min_annotators,
            normaliser=args.normaliser,
            review_above=args.review_above,
            **_shared_options(args),
        ),
        beam_args,
        progress,
    )
    if args.json:
        print(json.dumps(arguments.json_safe(report), indent=2, sort_keys=True, default=str))
    if args.quiet:
        return 0
    hlp = report["hlp"]
    ci = "" if hlp["value"] is None else f" [{hlp['ci95'][0]:.3f}, {hlp['ci95'][1]:.3f}]"

    if args.kind == "boxes":
        measures = (
            f"mean IoU {arguments.shown(report['mean_iou'], '.3f')}, "
            f"unmatched boxes {arguments.shown(report['unmatched_share'], '.1%')}, "
            f"box count differs on {arguments.shown(report['count_disagreement'], '.1%')} of annotator pairs"
        )
    else:
        measures = (
            f"mean pairwise WER {arguments.shown(report['mean_pairwise_wer'], '.3f')}, "
            f"{report['unintelligible_tags']} unintelligible tags"
        )
    lines = [
        f"skewless labels ({args.kind}): {report['annotations']:,} annotations of {report['items']:,} items by "
        f"{report['annotators']:,} annotators ({report['dead_lettered']} dead-lettered)",
        measures,
        f"HLP {arguments.shown(hlp['value'], '.3f')}{ci} ({hlp['measure']})",
        *conventions_text(report),
        f"{report['review_items']} items to review; outputs in {args.output}/: consensus.csv agreement.json "
        "review.csv items/ dead_letter/" + (" rounds.json" if report.get("rounds") else ""),
    ]
    if report.get("rounds"):
        lines.append(rounds_table(report["rounds"]))
    print("\n".join(lines), file=sys.stderr)
    return 0


def _shared_options(args: argparse.Namespace) -> dict:
    """The options every kind of labels job takes: the annotations and their columns, the output,
    rounds, lineage and how the CSV files are written."""
    return {
        "annotations": args.annotations,
        "output": args.output,
        "item_col": args.item_col,
        "annotator_col": args.annotator_col,
        "label_col": args.label_col,
        "round": args.round,
        "previous_rounds": args.previous_rounds,
        "lineage_db": args.lineage_db,
        "csv_delimiter": args.csv_delimiter,
        "encoding": args.encoding,
        "missing_values": tuple(args.missing_value),
    }
