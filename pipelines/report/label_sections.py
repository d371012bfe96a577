"""The report's label sections: agreement, annotator quality and the pairwise heatmap, for every kind."""

from pipelines.io import files
from pipelines.report.elements import escape, heatmap_svg, html_table, read_json, with_interval

_HEATMAP_ANNOTATORS = 15


def pairwise_agreement(labels_dir: str, report: dict) -> tuple[list[str], list[list[float | None]]]:
    """Agreement between the most active annotators, from the cleaned annotations."""
    import numpy as np

    table = files.read_parquet(files.match(files.join(labels_dir, "annotations", "*.parquet")))
    if table is None:
        return [], []
    annotators = table.column("annotator").to_pylist()
    items = table.column("item").to_pylist()
    labels = table.column("label").to_pylist()
    quality = report.get("annotator_quality", {})
    top = sorted(quality, key=lambda a: -quality[a]["annotations"])[:_HEATMAP_ANNOTATORS]
    index = {a: i for i, a in enumerate(top)}
    by_item: dict[str, dict[int, str]] = {}
    for item, annotator, label in zip(items, annotators, labels, strict=True):
        if annotator in index:
            by_item.setdefault(item, {})[index[annotator]] = label
    agree = np.zeros((len(top), len(top)))
    shared = np.zeros((len(top), len(top)))
    for given in by_item.values():
        for a, la in given.items():
            for b, lb in given.items():
                shared[a, b] += 1
                agree[a, b] += la == lb
    matrix = [
        [float(agree[a, b] / shared[a, b]) if shared[a, b] else None for b in range(len(top))] for a in range(len(top))
    ]
    return top, matrix


def labels_section(labels_dir: str | None, model_metrics: dict | None) -> str:
    if not labels_dir:
        return (
            "<section id='labels'><h2>Label agreement</h2><p class='muted'>No labels output given "
            "(<code>skewless report DIR --labels LABELS_DIR</code>).</p></section>"
        )
    report = read_json(files.join(labels_dir, "agreement.json")) or {}
    if not report:
        return (
            "<section id='labels'><h2>Label agreement</h2>"
            f"<p class='bad'>No agreement.json in {escape(labels_dir)}</p></section>"
        )
    if report.get("kind") in ("boxes", "text"):
        return unstructured_labels_section(report, model_metrics)
    hlp = report["hlp"]["vs_others"]
    measures = [
        ["percent agreement", report["percent_agreement"]],
        ["Fleiss' kappa", report["fleiss_kappa"]],
        ["mean pairwise Cohen's kappa", report["mean_pairwise_cohen_kappa"]["value"]],
        [
            f"Krippendorff's alpha ({escape(report['krippendorff_alpha']['level'])})",
            report["krippendorff_alpha"]["value"],
        ],
        ["HLP (vs the other annotators)", with_interval(hlp["accuracy"], hlp["ci95"])],
    ]
    if "vs_gold" in report["hlp"]:
        gold = report["hlp"]["vs_gold"]
        measures.append(["HLP (vs gold)", with_interval(gold["accuracy"], gold["ci95"])])
    if model_metrics:
        measures.append(["model accuracy (eval)", model_metrics["accuracy"]])
    per_class = [[escape(k), v] for k, v in report["per_class_agreement"].items()]
    confused = [[escape(" ↔ ".join(p["labels"])), p["pairs"], p["share"]] for p in report["most_confused"]]
    quality = sorted(report["annotator_quality"].items(), key=lambda kv: -kv[1]["annotations"])
    quality_rows = [
        [
            escape(name),
            q["annotations"],
            q.get("accuracy_vs_others"),
            q.get("accuracy_vs_gold"),
            q.get("spammer_score"),
            "<span class='bad'>spammer</span>" if q.get("spammer") else "",
        ]
        for name, q in quality
    ]
    names, matrix = pairwise_agreement(labels_dir, report)
    heatmap = heatmap_svg(names, matrix) if names else ""
    return (
        f"<section id='labels'><h2>Label agreement</h2><p>{report['annotations']:,} annotations of "
        f"{report['items']:,} items by {report['annotators']:,} annotators; "
        f"{report['consensus']['flagged_for_review']:,} items to review.</p>"
        f"{html_table(['measure', 'value'], measures)}"
        f"<div class='features'><div><h3>Per-class agreement</h3>{html_table(['class', 'agreement'], per_class)}</div>"
        f"<div><h3>Most-confused label pairs</h3>{html_table(['labels', 'pairs', 'share'], confused)}</div></div>"
        f"<h3>Annotator × annotator agreement ({len(names)} most active)</h3>{heatmap}"
        f"<details><summary>Per-annotator quality ({len(quality_rows)})</summary>"
        + html_table(
            ["annotator", "annotations", "vs others", "vs gold", "spammer score", ""], quality_rows, sortable=True
        )
        + "</details></section>"
    )


def unstructured_labels_section(report: dict, model_metrics: dict | None) -> str:
    """The label section for ``--kind boxes`` or ``--kind text`` outputs."""
    hlp = report["hlp"]
    ci = "" if hlp["value"] is None else f"{hlp['value']:.4f} [{hlp['ci95'][0]:.4f}, {hlp['ci95'][1]:.4f}]"
    if report["kind"] == "boxes":
        measures = [
            ["mean IoU of matched boxes", report["mean_iou"]],
            ["share of boxes unmatched", report["unmatched_share"]],
            ["annotator pairs with different box counts", report["count_disagreement"]],
            ["class agreement of matched boxes", report["class_agreement"]],
        ]
        columns = ["annotator", "items", "boxes per item", "relative area", "mean IoU with others"]
        keys = ["items", "boxes_per_item", "relative_area", "mean_iou_with_others"]
    else:
        measures = [
            ["mean pairwise WER", report["mean_pairwise_wer"]],
            ["unintelligible tags", report["unintelligible_tags"]],
        ]
        columns = ["annotator", "items", "words per item", "unintelligible tags", "mean pairwise WER"]
        keys = ["items", "words_per_item", "unintelligible_tags", "mean_pairwise_wer"]
    measures.append([f"HLP ({escape(hlp['measure'])})", ci or "-"])
    if model_metrics:
        measures.append(["model accuracy (eval)", model_metrics["accuracy"]])
    stats = [[escape(name), *[entry.get(k) for k in keys]] for name, entry in report["annotators_stats"].items()]
    conventions = [
        [escape(c["annotator"]), escape(c["convention"]), escape(c["detail"])] for c in report.get("conventions", [])
    ]
    return (
        f"<section id='labels'><h2>Label agreement ({escape(report['kind'])})</h2><p>{report['annotations']:,} "
        f"annotations of {report['items']:,} items by {report['annotators']:,} annotators; "
        f"{report['review_items']:,} items to review.</p>"
        f"{html_table(['measure', 'value'], measures)}"
        + (
            f"<h3>Conventions</h3>{html_table(['annotator', 'convention', 'detail'], conventions)}"
            if conventions
            else ""
        )
        + f"<h3>Annotators</h3>{html_table(columns, stats, sortable=True)}</section>"
    )
