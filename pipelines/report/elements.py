"""The pieces the report is made of: escaped text, numbers, tables, SVG charts, its style and script."""

import html
import math

from pipelines.io import files

STYLE = """
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


SCRIPT = """
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


def escape(value) -> str:
    return html.escape(str(value), quote=True)


def format_number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.{digits}g}"


def with_interval(value: float | None, interval: list) -> str:
    """``0.8000 [0.7000, 0.9000]``, or ``-`` when the measure is undefined (one annotator an item)."""
    return "-" if value is None else f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def html_table(header: list[str], rows: list[list], sortable: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(format_number(c))}</td>'
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


def bar_chart(
    values: list[float], labels: list[str], width: int = 360, height: int = 110, color: str = "#2d5bd7"
) -> str:
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
            f"<title>{escape(label)}: {escape(format_number(value))}</title></rect>"
        )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#9aa3b2"/>{"".join(parts)}</svg>'
    )


def histogram_svg(feature: dict, color: str) -> str:
    histogram = feature.get("histogram")
    if histogram:
        edges = ["-inf"] + [format_number(b) for b in histogram["boundaries"]] + ["inf"]
        labels = [f"[{edges[i]}, {edges[i + 1]})" for i in range(len(histogram["counts"]))]
        return bar_chart(histogram["counts"], labels, color=color)
    if feature.get("top"):
        top = feature["top"][:20]
        return bar_chart([t["count"] for t in top], [t["value"] for t in top], color=color)
    return '<p class="muted">no values</p>'


def feature_summary(feature: dict) -> str:
    if feature["type"] == "numeric":
        fields = [("count", feature["count"]), ("missing", feature["missing"])]
        fields += [(k, feature.get(k)) for k in ("min", "max", "mean", "std")]
    else:
        fields = [("count", feature["count"]), ("missing", feature["missing"]), ("unique", feature.get("unique"))]
        top = ", ".join(f"{escape(t['value'])} ({t['count']:,})" for t in feature.get("top", [])[:5])
        fields.append(("top", top))
    return " · ".join(
        f"<span class='muted'>{escape(k)}</span> {v if k == 'top' else escape(format_number(v))}" for k, v in fields
    )


def read_json(path: str) -> dict | None:
    """A JSON file's value; None when the file is absent or not JSON."""
    if not files.exists(path):
        return None
    try:
        return files.read_json(path)
    except (OSError, ValueError):
        return None


def heatmap_svg(names: list[str], matrix: list[list[float | None]], cell: int = 22) -> str:
    size = cell * len(names)
    parts = []
    for a, row in enumerate(matrix):
        for b, value in enumerate(row):
            fill = "#eceff3" if value is None else f"hsl({int(120 * value)}, 60%, {int(85 - 35 * value)}%)"
            text = "no shared items" if value is None else f"{value:.2f}"
            parts.append(
                f'<rect x="{b * cell}" y="{a * cell}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                f"<title>{escape(names[a])} × {escape(names[b])}: {escape(text)}</title></rect>"
            )
    legend = "".join(f"<li><code>{i}</code> {escape(n)}</li>" for i, n in enumerate(names))
    return (
        f'<div class="features"><svg width="{size}" height="{size}" role="img">{"".join(parts)}</svg>'
        f"<ol start='0' class='muted'>{legend}</ol></div>"
    )
