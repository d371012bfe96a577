"""The run report: one self-contained HTML file (inline CSS, SVG plots, no network).

Built from what a run wrote (``run.json``, ``stats/``, ``dead_letter/``, ``model/metrics.json``,
``skew.json``) and, when given, a labels output (``agreement.json``, ``annotations/``). Every value
that comes from the data goes through :func:`html.escape`, so a cell like
``<script>alert(1)</script>`` shows as text.
"""

import csv
import glob
import html
import json
import math
import os

__all__ = ["write_report"]

_MAX_DEAD_EXAMPLES = 3
_HEATMAP_ANNOTATORS = 15

_STYLE = """
body {
  font: 14px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif;
  margin: 0;
  color: #1d2433;
  background: #f5f6f8;
}
header { background: #1d2433; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; } header p { margin: 4px 0 0; color: #c7ccd6; }
nav { padding: 8px 32px; background: #fff; border-bottom: 1px solid #dde1e7; position: sticky; top: 0; }
nav a { margin-right: 16px; color: #2d5bd7; text-decoration: none; }
main { padding: 16px 32px 48px; max-width: 1300px; }
section {
  background: #fff;
  border: 1px solid #dde1e7;
  border-radius: 8px;
  padding: 16px 20px;
  margin: 16px 0;
}
h2 { font-size: 18px; margin: 0 0 12px; } h3 { font-size: 15px; margin: 16px 0 8px; }
table { border-collapse: collapse; margin: 4px 0 8px; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eceff3; text-align: left; vertical-align: top; }
th { color: #5b6475; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #167d3c; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #dde1e7; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; } .card span { color: #5b6475; font-size: 12px; }
.features { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 12px; }
.feature { border: 1px solid #eceff3; border-radius: 6px; padding: 8px 10px; }
.feature h3 { margin: 0 0 4px; }
code, pre { font: 12px ui-monospace, Menlo, monospace; }
pre { white-space: pre-wrap; word-break: break-all; background: #f5f6f8; padding: 4px 6px; margin: 2px 0; }
.muted { color: #5b6475; } details summary { cursor: pointer; color: #2d5bd7; }
"""

_SCRIPT = """
(function () {
  document.querySelectorAll('table.sortable th').forEach(function (header, index) {
    header.style.cursor = 'pointer';
    header.addEventListener('click', function () {
      var body = header.closest('table').tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var numeric = rows.every(function (r) { return !isNaN(parseFloat(r.cells[index].textContent)); });
      rows.sort(function (a, b) {
        var x = a.cells[index].textContent, y = b.cells[index].textContent;
        return numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  document.body.setAttribute('data-rendered', 'yes');
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.{digits}g}"


def _with_interval(value: float | None, interval: list) -> str:
    """``0.8000 [0.7000, 0.9000]``, or ``-`` when the measure is undefined (one annotator an item)."""
    return "-" if value is None else f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def _table(header: list[str], rows: list[list], sortable: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(_number(c))}</td>'
            if isinstance(c, int | float) and not isinstance(c, bool)
            else f"<td>{'-' if c is None else c}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table class="{"sortable" if sortable else ""}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _bars(values: list[float], labels: list[str], width: int = 360, height: int = 110, color: str = "#2d5bd7") -> str:
    """A bar chart as inline SVG; labels become tooltips."""
    if not values:
        return '<p class="muted">no values</p>'
    top = max(values) or 1
    gap = 1
    bar = max((width - gap * len(values)) / len(values), 1)
    parts = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = (value / top) * (height - 14)
        x = i * (bar + gap)
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{_e(label)}: {_e(_number(value))}</title></rect>"
        )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#9aa3b2"/>{"".join(parts)}</svg>'
    )


def _histogram(feature: dict, color: str) -> str:
    histogram = feature.get("histogram")
    if histogram:
        edges = ["-inf"] + [_number(b) for b in histogram["boundaries"]] + ["inf"]
        labels = [f"[{edges[i]}, {edges[i + 1]})" for i in range(len(histogram["counts"]))]
        return _bars(histogram["counts"], labels, color=color)
    if feature.get("top"):
        top = feature["top"][:20]
        return _bars([t["count"] for t in top], [t["value"] for t in top], color=color)
    return '<p class="muted">no values</p>'


def _feature_summary(feature: dict) -> str:
    if feature["type"] == "numeric":
        fields = [("count", feature["count"]), ("missing", feature["missing"])]
        fields += [(k, feature.get(k)) for k in ("min", "max", "mean", "std")]
    else:
        fields = [("count", feature["count"]), ("missing", feature["missing"]), ("unique", feature.get("unique"))]
        top = ", ".join(f"{_e(t['value'])} ({t['count']:,})" for t in feature.get("top", [])[:5])
        fields.append(("top", top))
    return " · ".join(f"<span class='muted'>{_e(k)}</span> {v if k == 'top' else _e(_number(v))}" for k, v in fields)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def _summary_section(run: dict) -> str:
    counts = run.get("counts", {})
    status_class = "ok" if run.get("status") == "succeeded" else "bad"
    cards = [
        ("rows read", counts.get("rows_read")),
        ("train", counts.get("rows_train")),
        ("eval", counts.get("rows_eval")),
        ("dead-lettered", counts.get("rows_dead_lettered")),
    ]
    parity = run.get("parity") or {}
    parity_text = (
        f"<span class='ok'>passed</span> on {parity.get('rows_checked', 0):,} rows"
        if parity.get("passed")
        else f"<span class='bad'>failed</span>: {_e(', '.join(parity.get('mismatched_features', [])))}"
        if parity
        else "<span class='muted'>not run</span>"
    )
    read, accounted = (
        counts.get("rows_read", 0),
        sum(counts.get(k, 0) for k in ("rows_train", "rows_eval", "rows_dead_lettered")),
    )
    rows = [
        ["status", f"<span class='{status_class}'>{_e(run.get('status'))}</span> {_e(run.get('reason') or '')}"],
        ["dataset", _e(run.get("dataset"))],
        [
            "row accounting",
            f"read {read:,} = train + eval + dead-lettered {accounted:,} "
            + ("<span class='ok'>✓</span>" if read == accounted else "<span class='bad'>✗</span>"),
        ],
        ["serving parity", parity_text],
        ["runner", _e(run.get("parameters", {}).get("runner"))],
        ["started", _e(run.get("started_at"))],
        ["lineage run", f"<code>{_e((run.get('lineage') or {}).get('run_id', '-'))}</code>"],
    ]
    timings = _table(["stage", "seconds"], [[_e(k), v] for k, v in sorted(run.get("timings", {}).items())])
    versions = _table(["package", "version"], [[_e(k), _e(v)] for k, v in sorted(run.get("versions", {}).items())])
    inputs = _table(
        ["input", "bytes", "rows", "sha256"],
        [[_e(i["uri"]), i["bytes"], i["rows"], f"<code>{_e(i['sha256'][:16])}…</code>"] for i in run.get("inputs", [])],
    )
    cards_html = "".join(f"<div class='card'><b>{_e(_number(v))}</b><span>{_e(k)}</span></div>" for k, v in cards)
    return (
        f"<section id='summary'><h2>Run summary</h2><div class='cards'>{cards_html}</div>"
        f"{_table(['', ''], rows)}<h3>Inputs</h3>{inputs}"
        f"<div class='features'><div><h3>Timings</h3>{timings}</div>"
        f"<div><h3>Versions</h3>{versions}</div></div></section>"
    )


def _dead_letter_section(directory: str, run: dict) -> str:
    reasons = (run.get("counts") or {}).get("dead_letter_reasons", {})
    examples: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(directory, "dead_letter", "*.jsonl"))):
        with open(path) as handle:
            for line in handle:
                record = json.loads(line)
                bucket = examples.setdefault(record["reason"].split(":")[0], [])
                if len(bucket) < _MAX_DEAD_EXAMPLES:
                    bucket.append(record)
    if not reasons:
        return "<section id='dead-letters'><h2>Dead letters</h2><p class='ok'>No row was rejected.</p></section>"
    rows = []
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        shown = "".join(
            f"<pre>{_e(r['raw'])}</pre><span class='muted'>{_e(r['source'])} @ {_e(r['offset'])}"
            f" · {_e(r.get('feature') or 'record')}: {_e(r['reason'])}</span>"
            for r in examples.get(reason, [])
        )
        rows.append([_e(reason), count, shown])
    return f"<section id='dead-letters'><h2>Dead letters</h2>{_table(['reason', 'rows', 'examples'], rows)}</section>"


def _features_section(directory: str) -> str:
    pre = (_read_json(os.path.join(directory, "stats", "pre_transform.json")) or {}).get("slices", {})
    post = (_read_json(os.path.join(directory, "stats", "post_transform.json")) or {}).get("slices", {})
    if not pre:
        return "<section id='features'><h2>Features</h2><p class='muted'>No statistics.</p></section>"
    blocks = []
    post_features = post.get("ALL", {}).get("features", {})
    for name, feature in sorted(pre["ALL"]["features"].items()):
        transformed = post_features.get(f"{name}_xf")
        after = (
            f"<div class='muted'>after the transform: <code>{_e(name)}_xf</code></div>"
            f"{_histogram(transformed, '#d97706')}"
            f"<div>{_feature_summary(transformed)}</div>"
            if transformed
            else "<div class='muted'>not a model input as such</div>"
        )
        blocks.append(
            f"<div class='feature'><h3>{_e(name)} <span class='muted'>{_e(feature['type'])}</span></h3>"
            f"{_histogram(feature, '#2d5bd7')}<div>{_feature_summary(feature)}</div>{after}</div>"
        )
    others = sorted(set(post_features) - {f"{n}_xf" for n in pre["ALL"]["features"]})
    for name in others:
        blocks.append(
            f"<div class='feature'><h3>{_e(name)} <span class='muted'>transformed only</span></h3>"
            f"{_histogram(post_features[name], '#d97706')}<div>{_feature_summary(post_features[name])}</div></div>"
        )
    slices = [[_e(k), v["num_rows"]] for k, v in sorted(pre.items()) if k != "ALL"]
    slice_table = f"<h3>Slices</h3>{_table(['slice', 'rows'], slices, sortable=True)}" if slices else ""
    return (
        "<section id='features'><h2>Features before and after the transform</h2>"
        "<p class='muted'>Blue: raw values (histogram over the 20-quantile bins, or the most frequent values). "
        "Orange: the transformed feature.</p>"
        f"<div class='features'>{''.join(blocks)}</div>{slice_table}</section>"
    )


def _skew_section(directory: str, shown_as: str) -> str:
    skew = _read_json(os.path.join(directory, "skew.json"))
    if not skew:
        return (
            "<section id='skew'><h2>Skew and drift</h2><p class='muted'>No serving batch checked yet: "
            f"<code>skewless check-skew --transform-output {_e(shown_as)} --input ... --output "
            f"{_e(os.path.join(shown_as, 'skew.json'))}</code></p></section>"
        )
    rows = [
        [
            _e(name),
            _e(e["distance"]),
            e["value"],
            e["threshold"],
            "<span class='ok'>ok</span>"
            if e["passed"]
            else f"<span class='bad'>{_e('; '.join(e['anomalies']))}</span>",
        ]
        for name, e in sorted(skew["features"].items())
    ]
    verdict = "<span class='ok'>passed</span>" if skew["passed"] else "<span class='bad'>failed</span>"
    return (
        f"<section id='skew'><h2>Skew and drift</h2><p>{verdict}: {skew['rows']:,} serving rows against "
        f"{skew['training_rows']:,} training rows</p>"
        f"{_table(['feature', 'distance', 'value', 'threshold', 'verdict'], rows, sortable=True)}</section>"
    )


def _pairwise_agreement(labels_dir: str, report: dict) -> tuple[list[str], list[list[float | None]]]:
    """Agreement between the most active annotators, from the cleaned annotations."""
    import numpy as np
    import pyarrow.parquet as pq

    paths = sorted(glob.glob(os.path.join(labels_dir, "annotations", "*.parquet")))
    if not paths:
        return [], []
    table = pq.read_table(paths)
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


def _heatmap(names: list[str], matrix: list[list[float | None]], cell: int = 22) -> str:
    size = cell * len(names)
    parts = []
    for a, row in enumerate(matrix):
        for b, value in enumerate(row):
            fill = "#eceff3" if value is None else f"hsl({int(120 * value)}, 60%, {int(85 - 35 * value)}%)"
            text = "no shared items" if value is None else f"{value:.2f}"
            parts.append(
                f'<rect x="{b * cell}" y="{a * cell}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                f"<title>{_e(names[a])} × {_e(names[b])}: {_e(text)}</title></rect>"
            )
    legend = "".join(f"<li><code>{i}</code> {_e(n)}</li>" for i, n in enumerate(names))
    return (
        f'<div class="features"><svg width="{size}" height="{size}" role="img">{"".join(parts)}</svg>'
        f"<ol start='0' class='muted'>{legend}</ol></div>"
    )


def _labels_section(labels_dir: str | None, model_metrics: dict | None) -> str:
    if not labels_dir:
        return (
            "<section id='labels'><h2>Label agreement</h2><p class='muted'>No labels output given "
            "(<code>skewless report DIR --labels LABELS_DIR</code>).</p></section>"
        )
    report = _read_json(os.path.join(labels_dir, "agreement.json")) or {}
    if not report:
        return (
            "<section id='labels'><h2>Label agreement</h2>"
            f"<p class='bad'>No agreement.json in {_e(labels_dir)}</p></section>"
        )
    if report.get("kind") in ("boxes", "text"):
        return _unstructured_labels_section(report, model_metrics)
    hlp = report["hlp"]["vs_others"]
    measures = [
        ["percent agreement", report["percent_agreement"]],
        ["Fleiss' kappa", report["fleiss_kappa"]],
        ["mean pairwise Cohen's kappa", report["mean_pairwise_cohen_kappa"]["value"]],
        [f"Krippendorff's alpha ({_e(report['krippendorff_alpha']['level'])})", report["krippendorff_alpha"]["value"]],
        ["HLP (vs the other annotators)", _with_interval(hlp["accuracy"], hlp["ci95"])],
    ]
    if "vs_gold" in report["hlp"]:
        gold = report["hlp"]["vs_gold"]
        measures.append(["HLP (vs gold)", _with_interval(gold["accuracy"], gold["ci95"])])
    if model_metrics:
        measures.append(["model accuracy (eval)", model_metrics["accuracy"]])
    per_class = [[_e(k), v] for k, v in report["per_class_agreement"].items()]
    confused = [[_e(" ↔ ".join(p["labels"])), p["pairs"], p["share"]] for p in report["most_confused"]]
    quality = sorted(report["annotator_quality"].items(), key=lambda kv: -kv[1]["annotations"])
    quality_rows = [
        [
            _e(name),
            q["annotations"],
            q.get("accuracy_vs_others"),
            q.get("accuracy_vs_gold"),
            q.get("spammer_score"),
            "<span class='bad'>spammer</span>" if q.get("spammer") else "",
        ]
        for name, q in quality
    ]
    names, matrix = _pairwise_agreement(labels_dir, report)
    heatmap = _heatmap(names, matrix) if names else ""
    return (
        f"<section id='labels'><h2>Label agreement</h2><p>{report['annotations']:,} annotations of "
        f"{report['items']:,} items by {report['annotators']:,} annotators; "
        f"{report['consensus']['flagged_for_review']:,} items to review.</p>"
        f"{_table(['measure', 'value'], measures)}"
        f"<div class='features'><div><h3>Per-class agreement</h3>{_table(['class', 'agreement'], per_class)}</div>"
        f"<div><h3>Most-confused label pairs</h3>{_table(['labels', 'pairs', 'share'], confused)}</div></div>"
        f"<h3>Annotator × annotator agreement ({len(names)} most active)</h3>{heatmap}"
        f"<details><summary>Per-annotator quality ({len(quality_rows)})</summary>"
        + _table(["annotator", "annotations", "vs others", "vs gold", "spammer score", ""], quality_rows, sortable=True)
        + "</details></section>"
    )


def _unstructured_labels_section(report: dict, model_metrics: dict | None) -> str:
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
    measures.append([f"HLP ({_e(hlp['measure'])})", ci or "-"])
    if model_metrics:
        measures.append(["model accuracy (eval)", model_metrics["accuracy"]])
    stats = [[_e(name), *[entry.get(k) for k in keys]] for name, entry in report["annotators_stats"].items()]
    conventions = [[_e(c["annotator"]), _e(c["convention"]), _e(c["detail"])] for c in report.get("conventions", [])]
    return (
        f"<section id='labels'><h2>Label agreement ({_e(report['kind'])})</h2><p>{report['annotations']:,} "
        f"annotations of {report['items']:,} items by {report['annotators']:,} annotators; "
        f"{report['review_items']:,} items to review.</p>"
        f"{_table(['measure', 'value'], measures)}"
        + (f"<h3>Conventions</h3>{_table(['annotator', 'convention', 'detail'], conventions)}" if conventions else "")
        + f"<h3>Annotators</h3>{_table(columns, stats, sortable=True)}</section>"
    )


def _lineage_section(directory: str, run: dict, shown_as: str) -> str:
    inputs = [i["uri"] for i in run.get("inputs", [])]
    outputs = [
        name
        for name in ("transform_fn", "transformed", "serving_model", "stats", "dead_letter", "model")
        if os.path.exists(os.path.join(directory, name))
    ]
    height = 40 + 34 * max(len(inputs), len(outputs), 1)
    parts = []
    middle = height / 2
    parts.append(f'<rect x="330" y="{middle - 18}" width="140" height="36" rx="6" fill="#1d2433"/>')
    parts.append(f'<text x="400" y="{middle + 5}" fill="#fff" text-anchor="middle">skewless run</text>')
    for i, uri in enumerate(inputs):
        y = 30 + 34 * i
        parts.append(f'<line x1="300" y1="{y}" x2="330" y2="{middle}" stroke="#9aa3b2"/>')
        parts.append(
            f'<text x="295" y="{y + 4}" text-anchor="end">{_e(os.path.basename(uri))}<title>{_e(uri)}</title></text>'
        )
    for i, name in enumerate(outputs):
        y = 30 + 34 * i
        parts.append(f'<line x1="470" y1="{middle}" x2="500" y2="{y}" stroke="#9aa3b2"/>')
        parts.append(f'<text x="505" y="{y + 4}">{_e(name)}/</text>')
    run_id = (run.get("lineage") or {}).get("run_id", "")
    return (
        f"<section id='lineage'><h2>Lineage</h2><svg width='760' height='{height}' role='img'>{''.join(parts)}</svg>"
        f"<p class='muted'>Full provenance with hashes: <code>skewless lineage show {_e(run_id)}</code>, "
        f"<code>skewless lineage upstream {_e(os.path.join(shown_as, 'serving_model'))}</code></p></section>"
    )


def _duplicates_section(directory: str, review_rows: int = 20) -> str:
    summary = _read_json(os.path.join(directory, "dedup", "dedup.json"))
    if not summary:
        return (
            "<section id='duplicates'><h2>Duplicate review</h2><p class='muted'>No duplicate detection ran for this "
            "dataset (its config has no <code>dedup:</code> section).</p></section>"
        )
    records, pairs, clusters = summary["records"], summary["pairs"], summary["clusters"]
    measures = [
        ["policy", _e(summary["policy"])],
        ["thresholds (match / review)", f"{summary['thresholds']['match']} / {summary['thresholds']['review']}"],
        [
            "records read / kept / removed / dead-lettered",
            f"{records['read']:,} / {records['kept']:,} / {records['removed']:,} / {records['dead_lettered']:,}",
        ],
        ["candidate pairs scored", f"{pairs['compared']:,}"],
        ["match pairs / review pairs", f"{pairs['match']:,} / {pairs['review']:,}"],
        ["clusters (records, largest)", f"{clusters['count']:,} ({clusters['records']:,}, {clusters['largest']})"],
        ["pairs not compared (oversized blocks)", f"{pairs['not_compared_in_oversized_blocks']:,}"],
        ["prior P(match) of two random records", f"{summary['model']['probability_two_random_records_match']:.3g}"],
    ]
    review = []
    path = os.path.join(directory, "dedup", "review.csv")
    if os.path.isfile(path):
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            columns = [c[:-2] for c in header[3::2]]
            for row in reader:
                if len(review) >= review_rows:
                    break
                sides = [f"{_e(row[3 + 2 * i])} | {_e(row[4 + 2 * i])}" for i in range(len(columns))]
                review.append(
                    [
                        _e(row[0]),
                        _e(row[1]),
                        row[2],
                        "; ".join(f"{_e(c)}: {v}" for c, v in zip(columns, sides, strict=True)),
                    ]
                )
    return (
        "<section id='duplicates'><h2>Duplicate review</h2>"
        f"{_table(['measure', 'value'], measures)}"
        f"<h3>Pairs for a person to decide ({min(review_rows, pairs['review']):,} of {pairs['review']:,}; all in "
        "<code>dedup/review.csv</code>)</h3>"
        + _table(["id a", "id b", "match probability", "a | b"], review)
        + "<p class='muted'>Review-band pairs are never removed; removed records are in "
        "<code>dedup/removed.jsonl</code> with their cluster and score.</p></section>"
    )


def write_report(directory: str, labels_dir: str | None = None, shown_as: str | None = None) -> str:
    """Writes ``<directory>/report.html`` for a run output; returns its path.

    Args:
        directory: The run output (or its staging directory).
        labels_dir: A ``skewless labels`` output to include.
        shown_as: The directory name to show (the final one, when writing into staging).
    """
    run = _read_json(os.path.join(directory, "run.json")) or {}
    metrics = _read_json(os.path.join(directory, "model", "metrics.json"))
    sections = [
        _summary_section(run),
        _dead_letter_section(directory, run),
        _features_section(directory),
        _skew_section(directory, shown_as or directory),
        _labels_section(labels_dir, metrics),
        _duplicates_section(directory),
        _lineage_section(directory, run, shown_as or directory),
    ]
    nav = "".join(
        f'<a href="#{anchor}">{title}</a>'
        for anchor, title in [
            ("summary", "Summary"),
            ("dead-letters", "Dead letters"),
            ("features", "Features"),
            ("skew", "Skew"),
            ("labels", "Labels"),
            ("duplicates", "Duplicates"),
            ("lineage", "Lineage"),
        ]
    )
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>Skewless report: {_e(run.get('dataset', ''))}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Skewless run report</h1><p>{_e(run.get('dataset', ''))} · {_e(shown_as or directory)} · "
        f"{_e(run.get('started_at', ''))}</p></header><nav>{nav}</nav><main>{''.join(sections)}</main>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
    path = os.path.join(directory, "report.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path
