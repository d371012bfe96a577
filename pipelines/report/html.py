"""The run report: one self-contained HTML file (inline CSS, SVG plots, no network).

Built from what a run wrote (``run.json``, ``stats/``, ``dead_letter/``, ``model/metrics.json``,
``skew.json``) and, when given, a labels output (``agreement.json``, ``annotations/``). Every value
that comes from the data goes through :func:`html.escape`, so a cell like
``<script>alert(1)</script>`` shows as text.
"""

import csv
import json

from pipelines.io import files
from pipelines.report.elements import (
    SCRIPT,
    STYLE,
    escape,
    feature_summary,
    format_number,
    histogram_svg,
    html_table,
    read_json,
)
from pipelines.report.label_sections import labels_section

__all__ = ["write_report"]

_MAX_DEAD_EXAMPLES = 3


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
        else f"<span class='bad'>failed</span>: {escape(', '.join(parity.get('mismatched_features', [])))}"
        if parity
        else "<span class='muted'>not run</span>"
    )
    read, accounted = (
        counts.get("rows_read", 0),
        sum(counts.get(k, 0) for k in ("rows_train", "rows_eval", "rows_dead_lettered")),
    )
    rows = [
        [
            "status",
            f"<span class='{status_class}'>{escape(run.get('status'))}</span> {escape(run.get('reason') or '')}",
        ],
        ["dataset", escape(run.get("dataset"))],
        [
            "row accounting",
            f"read {read:,} = train + eval + dead-lettered {accounted:,} "
            + ("<span class='ok'>✓</span>" if read == accounted else "<span class='bad'>✗</span>"),
        ],
        ["serving parity", parity_text],
        ["runner", escape(run.get("parameters", {}).get("runner"))],
        ["started", escape(run.get("started_at"))],
        ["lineage run", f"<code>{escape((run.get('lineage') or {}).get('run_id', '-'))}</code>"],
    ]
    timings = html_table(["stage", "seconds"], [[escape(k), v] for k, v in sorted(run.get("timings", {}).items())])
    versions = html_table(
        ["package", "version"], [[escape(k), escape(v)] for k, v in sorted(run.get("versions", {}).items())]
    )
    inputs = html_table(
        ["input", "bytes", "rows", "sha256"],
        [
            [escape(i["uri"]), i["bytes"], i["rows"], f"<code>{escape(i['sha256'][:16])}…</code>"]
            for i in run.get("inputs", [])
        ],
    )
    cards_html = "".join(
        f"<div class='card'><b>{escape(format_number(v))}</b><span>{escape(k)}</span></div>" for k, v in cards
    )
    return (
        f"<section id='summary'><h2>Run summary</h2><div class='cards'>{cards_html}</div>"
        f"{html_table(['', ''], rows)}<h3>Inputs</h3>{inputs}"
        f"<div class='features'><div><h3>Timings</h3>{timings}</div>"
        f"<div><h3>Versions</h3>{versions}</div></div></section>"
    )


def _dead_letter_section(directory: str, run: dict) -> str:
    reasons = (run.get("counts") or {}).get("dead_letter_reasons", {})
    examples: dict[str, list[dict]] = {}
    for path in files.match(files.join(directory, "dead_letter", "*.jsonl")):
        with files.open_read(path, text=True) as handle:
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
            f"<pre>{escape(r['raw'])}</pre><span class='muted'>{escape(r['source'])} @ {escape(r['offset'])}"
            f" · {escape(r.get('feature') or 'record')}: {escape(r['reason'])}</span>"
            for r in examples.get(reason, [])
        )
        rows.append([escape(reason), count, shown])
    return (
        f"<section id='dead-letters'><h2>Dead letters</h2>{html_table(['reason', 'rows', 'examples'], rows)}</section>"
    )


def _features_section(directory: str) -> str:
    pre = (read_json(files.join(directory, "stats", "pre_transform.json")) or {}).get("slices", {})
    post = (read_json(files.join(directory, "stats", "post_transform.json")) or {}).get("slices", {})
    if not pre:
        return "<section id='features'><h2>Features</h2><p class='muted'>No statistics.</p></section>"
    blocks = []
    post_features = post.get("ALL", {}).get("features", {})
    for name, feature in sorted(pre["ALL"]["features"].items()):
        transformed = post_features.get(f"{name}_xf")
        after = (
            f"<div class='muted'>after the transform: <code>{escape(name)}_xf</code></div>"
            f"{histogram_svg(transformed, '#d97706')}"
            f"<div>{feature_summary(transformed)}</div>"
            if transformed
            else "<div class='muted'>not a model input as such</div>"
        )
        blocks.append(
            f"<div class='feature'><h3>{escape(name)} <span class='muted'>{escape(feature['type'])}</span></h3>"
            f"{histogram_svg(feature, '#2d5bd7')}<div>{feature_summary(feature)}</div>{after}</div>"
        )
    others = sorted(set(post_features) - {f"{n}_xf" for n in pre["ALL"]["features"]})
    for name in others:
        blocks.append(
            f"<div class='feature'><h3>{escape(name)} <span class='muted'>transformed only</span></h3>"
            f"{histogram_svg(post_features[name], '#d97706')}<div>{feature_summary(post_features[name])}</div></div>"
        )
    slices = [[escape(k), v["num_rows"]] for k, v in sorted(pre.items()) if k != "ALL"]
    slice_table = f"<h3>Slices</h3>{html_table(['slice', 'rows'], slices, sortable=True)}" if slices else ""
    return (
        "<section id='features'><h2>Features before and after the transform</h2>"
        "<p class='muted'>Blue: raw values (histogram over the 20-quantile bins, or the most frequent values). "
        "Orange: the transformed feature.</p>"
        f"<div class='features'>{''.join(blocks)}</div>{slice_table}</section>"
    )


def _skew_section(directory: str, shown_as: str) -> str:
    skew = read_json(files.join(directory, "skew.json"))
    if not skew:
        return (
            "<section id='skew'><h2>Skew and drift</h2><p class='muted'>No serving batch checked yet: "
            f"<code>skewless check-skew --transform-output {escape(shown_as)} --input ... --output "
            f"{escape(files.join(shown_as, 'skew.json'))}</code></p></section>"
        )
    rows = [
        [
            escape(name),
            escape(e["distance"]),
            e["value"],
            e["threshold"],
            "<span class='ok'>ok</span>"
            if e["passed"]
            else f"<span class='bad'>{escape('; '.join(e['anomalies']))}</span>",
        ]
        for name, e in sorted(skew["features"].items())
    ]
    verdict = "<span class='ok'>passed</span>" if skew["passed"] else "<span class='bad'>failed</span>"
    return (
        f"<section id='skew'><h2>Skew and drift</h2><p>{verdict}: {skew['rows']:,} serving rows against "
        f"{skew['training_rows']:,} training rows</p>"
        f"{html_table(['feature', 'distance', 'value', 'threshold', 'verdict'], rows, sortable=True)}</section>"
    )


def _lineage_section(directory: str, run: dict, shown_as: str) -> str:
    inputs = [i["uri"] for i in run.get("inputs", [])]
    outputs = [
        name
        for name in ("transform_fn", "transformed", "serving_model", "stats", "dead_letter", "model")
        if files.is_dir(files.join(directory, name))
    ]
    height = 40 + 34 * max(len(inputs), len(outputs), 1)
    parts = []
    middle = height / 2
    parts.append(f'<rect x="330" y="{middle - 18}" width="140" height="36" rx="6" fill="#1d2433"/>')
    parts.append(f'<text x="400" y="{middle + 5}" fill="#fff" text-anchor="middle">skewless run</text>')
    for i, uri in enumerate(inputs):
        y = 30 + 34 * i
        parts.append(f'<line x1="300" y1="{y}" x2="330" y2="{middle}" stroke="#9aa3b2"/>')
        name, title = escape(files.basename(uri)), escape(uri)
        parts.append(f'<text x="295" y="{y + 4}" text-anchor="end">{name}<title>{title}</title></text>')
    for i, name in enumerate(outputs):
        y = 30 + 34 * i
        parts.append(f'<line x1="470" y1="{middle}" x2="500" y2="{y}" stroke="#9aa3b2"/>')
        parts.append(f'<text x="505" y="{y + 4}">{escape(name)}/</text>')
    run_id = (run.get("lineage") or {}).get("run_id", "")
    return (
        f"<section id='lineage'><h2>Lineage</h2><svg width='760' height='{height}' role='img'>{''.join(parts)}</svg>"
        f"<p class='muted'>Full provenance with hashes: <code>skewless lineage show {escape(run_id)}</code>, "
        f"<code>skewless lineage upstream {escape(files.join(shown_as, 'serving_model'))}</code></p></section>"
    )


def _duplicates_section(directory: str, review_rows: int = 20) -> str:
    summary = read_json(files.join(directory, "dedup", "dedup.json"))
    if not summary:
        return (
            "<section id='duplicates'><h2>Duplicate review</h2><p class='muted'>No duplicate detection ran for this "
            "dataset (its config has no <code>dedup:</code> section).</p></section>"
        )
    records, pairs, clusters = summary["records"], summary["pairs"], summary["clusters"]
    measures = [
        ["policy", escape(summary["policy"])],
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
    path = files.join(directory, "dedup", "review.csv")
    if files.exists(path):
        with files.open_read(path, text=True, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            columns = [c[:-2] for c in header[3::2]]
            for row in reader:
                if len(review) >= review_rows:
                    break
                sides = [f"{escape(row[3 + 2 * i])} | {escape(row[4 + 2 * i])}" for i in range(len(columns))]
                review.append(
                    [
                        escape(row[0]),
                        escape(row[1]),
                        row[2],
                        "; ".join(f"{escape(c)}: {v}" for c, v in zip(columns, sides, strict=True)),
                    ]
                )
    return (
        "<section id='duplicates'><h2>Duplicate review</h2>"
        f"{html_table(['measure', 'value'], measures)}"
        f"<h3>Pairs for a person to decide ({min(review_rows, pairs['review']):,} of {pairs['review']:,}; all in "
        "<code>dedup/review.csv</code>)</h3>"
        + html_table(["id a", "id b", "match probability", "a | b"], review)
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
    run = read_json(files.join(directory, "run.json")) or {}
    metrics = read_json(files.join(directory, "model", "metrics.json"))
    sections = [
        _summary_section(run),
        _dead_letter_section(directory, run),
        _features_section(directory),
        _skew_section(directory, shown_as or directory),
        labels_section(labels_dir, metrics),
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
        f"<title>Skewless report: {escape(run.get('dataset', ''))}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Skewless run report</h1><p>{escape(run.get('dataset', ''))} · {escape(shown_as or directory)} · "
        f"{escape(run.get('started_at', ''))}</p></header><nav>{nav}</nav><main>{''.join(sections)}</main>"
        f"<script>{SCRIPT}</script></body></html>"
    )
    path = files.join(directory, "report.html")
    files.write_text(path, page)
    return path
