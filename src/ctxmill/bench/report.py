"""A self-contained HTML page from the results log: scores over time, tokens against coverage.

The charts are inline SVG written here (no plotting library, no scripts, no external files), so the
page opens anywhere and can be attached to a CI run as it is.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
WIDTH, HEIGHT = 760, 320
PAD_L, PAD_R, PAD_T, PAD_B = 56, 190, 16, 48


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _run_label(entry: dict[str, Any]) -> str:
    stamp = str(entry.get("timestamp", ""))[:16].replace("T", " ")
    rev = entry.get("git_revision")
    return f"{stamp} {str(rev)[:7]}" if rev else stamp


def line_chart(
    series: dict[str, list[float | None]],
    x_labels: Sequence[str],
    *,
    y_max: float = 1.0,
    threshold: float | None = None,
    y_label: str = "",
    bold: str | None = None,
) -> str:
    """An SVG line chart: one polyline per series over the runs in ``x_labels``."""
    w = WIDTH - PAD_L - PAD_R
    h = HEIGHT - PAD_T - PAD_B
    n = len(x_labels)

    def x(i: int) -> float:
        return PAD_L + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        return PAD_T + h * (1 - v / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">'
    ]
    for k in range(6):
        v = y_max * k / 5
        parts.append(
            f'<line x1="{PAD_L}" x2="{PAD_L + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
            f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{v:.1f}</text>"
        )
    parts.append(
        f'<text x="14" y="{PAD_T + h / 2:.0f}" font-size="11" '
        f'transform="rotate(-90 14 {PAD_T + h / 2:.0f})" text-anchor="middle">{_esc(y_label)}</text>'
    )
    if threshold is not None:
        parts.append(
            f'<line x1="{PAD_L}" x2="{PAD_L + w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
            f'stroke="#555" stroke-dasharray="5,4"/>'
            f'<text x="{PAD_L + w - 2}" y="{y(threshold) - 4:.1f}" font-size="10" '
            f'text-anchor="end">gate {threshold:g}</text>'
        )
    step = max(1, n // 8)
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{PAD_T + h + 16}" font-size="10" '
                f'text-anchor="middle">{_esc(label[:16])}</text>'
            )
    for j, (name, values) in enumerate(series.items()):
        color = "#000" if name == bold else PALETTE[j % len(PALETTE)]
        width = 3 if name == bold else 1.6
        points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{width}"/>'
            )
        for px, py in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
        ly = PAD_T + 12 + 15 * j
        parts.append(
            f'<rect x="{PAD_L + w + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{PAD_L + w + 26}" y="{ly + 1}" font-size="11">{_esc(name[:26])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def scatter(points: Sequence[tuple[float, float, str, bool]], *, x_label: str, y_label: str) -> str:
    """An SVG scatter of (x, y, label, latest) points; the latest run's points are filled."""
    w = WIDTH - PAD_L - PAD_R
    h = HEIGHT - PAD_T - PAD_B
    x_max = max((p[0] for p in points), default=1.0) * 1.1 or 1.0
    names = list(dict.fromkeys(p[2] for p in points))

    def x(v: float) -> float:
        return PAD_L + w * v / x_max

    def y(v: float) -> float:
        return PAD_T + h * (1 - v)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">'
    ]
    for k in range(6):
        v = k / 5
        parts.append(
            f'<line x1="{PAD_L}" x2="{PAD_L + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
            f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{v:.1f}</text>"
        )
        xv = x_max * k / 5
        parts.append(
            f'<text x="{x(xv):.1f}" y="{PAD_T + h + 16}" font-size="10" text-anchor="middle">'
            f"{xv:,.0f}</text>"
        )
    parts.append(
        f'<text x="{PAD_L + w / 2:.0f}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">'
        f"{_esc(x_label)}</text>"
        f'<text x="14" y="{PAD_T + h / 2:.0f}" font-size="11" '
        f'transform="rotate(-90 14 {PAD_T + h / 2:.0f})" text-anchor="middle">{_esc(y_label)}</text>'
    )
    for px, py, name, latest in points:
        color = PALETTE[names.index(name) % len(PALETTE)]
        fill = color if latest else "none"
        parts.append(
            f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="{5 if latest else 3.5}" '
            f'fill="{fill}" stroke="{color}"><title>{_esc(name)}: {px:,.0f} tokens, '
            f"coverage {py:.2f}</title></circle>"
        )
    for j, name in enumerate(names):
        ly = PAD_T + 12 + 15 * j
        color = PALETTE[j % len(PALETTE)]
        parts.append(
            f'<rect x="{PAD_L + w + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{PAD_L + w + 26}" y="{ly + 1}" font-size="11">{_esc(name[:26])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _golden_section(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "<h2>Golden-context coverage</h2><p>No golden runs in this log yet.</p>"
    labels = [_run_label(r) for r in runs]
    names: list[str] = []
    for run in runs:
        for t in run.get("tasks", []):
            name = f"{t.get('set')}/{t.get('id')}"
            if name not in names:
                names.append(name)
    series: dict[str, list[float | None]] = {n: [] for n in names}
    series["average"] = []
    points: list[tuple[float, float, str, bool]] = []
    for i, run in enumerate(runs):
        by_name = {f"{t.get('set')}/{t.get('id')}": t for t in run.get("tasks", [])}
        for n in names:
            task = by_name.get(n)
            series[n].append(task.get("coverage") if task else None)
            if task and task.get("coverage") is not None:
                points.append(
                    (float(task.get("tokens") or 0), float(task["coverage"]), n, i == len(runs) - 1)
                )
        series["average"].append(run.get("average_coverage"))
    threshold = (runs[-1].get("settings") or {}).get("threshold")
    latest = runs[-1]
    rows = "".join(
        f"<tr><td>{_esc(t.get('set'))}</td><td>{_esc(t.get('id'))}</td>"
        f"<td>{_fmt(t.get('coverage'))}</td><td>{_fmt(t.get('precision'))}</td>"
        f"<td>{t.get('tokens', 0):,}</td><td>{_esc(t.get('budget') or '')}</td>"
        f"<td>{_esc(', '.join(c['id'] for c in t.get('claims', []) if not c.get('covered')))}"
        "</td></tr>"
        for t in latest.get("tasks", [])
    )
    return (
        "<h2>Golden-context coverage</h2>"
        f"<p>{len(runs)} runs; latest {_esc(_run_label(latest))}: average coverage "
        f"<b>{_fmt(latest.get('average_coverage'))}</b>, precision "
        f"{_fmt(latest.get('average_precision'))}.</p>"
        "<h3>Coverage per task over time</h3>"
        + line_chart(
            series,
            labels,
            threshold=float(threshold) if threshold is not None else None,
            y_label="coverage",
            bold="average",
        )
        + "<h3>Tokens against coverage</h3>"
        "<p>Every task of every run; filled points are the latest run.</p>"
        + scatter(points, x_label="tokens in context.md", y_label="coverage")
        + "<h3>Latest run</h3><table><tr><th>set</th><th>task</th><th>coverage</th>"
        "<th>precision</th><th>tokens</th><th>budget</th><th>claims missed</th></tr>"
        + rows
        + "</table>"
    )


def _locomo_section(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return ""
    labels = [_run_label(r) for r in runs]
    systems = ["ctxmill", "bm25", "recency"]
    series: dict[str, list[float | None]] = {s: [] for s in systems}
    rows = []
    for run in runs:
        summary = run.get("summary") or {}
        for s in systems:
            series[s].append((summary.get(s) or {}).get("in_context_recall"))
        ours = summary.get("ctxmill") or {}
        bm25 = summary.get("bm25") or {}
        rows.append(
            f"<tr><td>{_esc(_run_label(run))}</td>"
            f"<td>{_esc((run.get('settings') or {}).get('budget'))}</td>"
            f"<td>{summary.get('questions', '')}</td>"
            f"<td>{_fmt(ours.get('recall@10'), 3)}</td><td>{_fmt(bm25.get('recall@10'), 3)}</td>"
            f"<td>{_fmt(ours.get('in_context_recall'), 3)}</td>"
            f"<td>{_fmt(bm25.get('in_context_recall'), 3)}</td>"
            f"<td>{_fmt(summary.get('ratio_vs_bm25'), 2)}</td></tr>"
        )
    return (
        "<h2>LoCoMo retrieval</h2><h3>In-context evidence recall over time</h3>"
        + line_chart(series, labels, y_label="evidence recall", bold="ctxmill")
        + "<table><tr><th>run</th><th>budget</th><th>questions</th><th>ctxmill R@10</th>"
        "<th>BM25 R@10</th><th>ctxmill in context</th><th>BM25 in context</th>"
        "<th>ratio</th></tr>" + "".join(rows) + "</table>"
    )


def render_report(entries: list[dict[str, Any]], *, title: str = "ctxmill benchmarks") -> str:
    golden = [e for e in entries if e.get("kind") == "golden"]
    locomo = [e for e in entries if e.get("kind") == "locomo"]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:left}th{background:#f4f4f4}svg{display:block;margin:.5em 0}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{style}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p>{len(entries)} runs in the log.</p>"
        + _golden_section(golden)
        + _locomo_section(locomo)
        + "</body></html>\n"
    )
