"""The demo's report: live performance per simulated day with markers at drift onset, detection and
promotion, and the timeline — one self-contained HTML file (inline SVG) and its JSON twin."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftloop.demo.plan import DemoResult
    from driftloop.storage import ObjectStore

__all__ = ["write_report"]

_W, _H, _PAD = 760, 300, 40
_MARKERS = (("drift onset", "#d62728"), ("detected", "#ff7f0e"), ("promoted", "#2ca02c"))


def write_report(store: ObjectStore, result: DemoResult) -> str:
    """Write ``demo/report.html`` and ``demo/report.json`` to ``store``; returns the HTML's URI."""
    document = _document(result)
    store.write_bytes("demo/report.json", json.dumps(document, indent=2, default=str).encode())
    store.write_bytes("demo/report.html", _html(result, document).encode())
    return store.uri("demo/report.html")


def _document(result: DemoResult) -> dict[str, Any]:
    return {
        "onset": result.onset.isoformat(),
        "detected": result.detected.isoformat() if result.detected else None,
        "promoted": result.promoted.isoformat() if result.promoted else None,
        "final_version": result.final_version,
        "seconds": round(result.seconds, 1),
        "days": [
            {
                "day": r.day.isoformat(),
                "version": r.version,
                "requests": r.requests,
                "roc_auc": r.roc_auc,
                "f1": r.f1,
                "decision": r.decision,
                "events": r.events,
            }
            for r in result.rows
        ],
    }


def _html(result: DemoResult, document: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{r.day}</td><td>v{r.version if r.version is not None else '-'}</td><td>{r.requests}</td>"
        f"<td>{_num(r.roc_auc)}</td><td>{_num(r.f1)}</td><td>{html.escape(r.decision)}</td>"
        f"<td>{'<br>'.join(html.escape(e) for e in r.events)}</td></tr>"
        for r in result.rows
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>driftloop demo</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}}th{{background:#f3f3f3}}
.k{{color:#666}}</style></head><body>
<h1>driftloop demo — the loop closing on its own</h1>
<p class="k">drift onset {document["onset"]} · detected {document["detected"] or "never"} · new version
promoted {document["promoted"] or "never"} · production at the end: v{document["final_version"]} ·
{document["seconds"]} s</p>
<h2>Live performance per simulated day (labelled live traffic)</h2>
{_chart(result)}
<h2>Timeline</h2>
<table><tr><th>day</th><th>serving</th><th>requests</th><th>live ROC AUC</th><th>live F1</th>
<th>monitor</th><th>loop events</th></tr>{rows}</table>
</body></html>"""


def _chart(result: DemoResult) -> str:
    days = [r.day for r in result.rows]
    if not days:
        return "<p>no live days</p>"
    n = len(days)

    def x(i: float) -> float:
        return _PAD + (_W - 2 * _PAD) * (i / max(n - 1, 1))

    top = _PAD + 12 * len(_MARKERS)  # one row of marker labels each, above the plot

    def y(v: float) -> float:
        return _H - _PAD - (_H - _PAD - top) * v

    parts = [
        f'<svg width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fff"/>',
    ]
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="4" y="{y(v) + 4:.1f}" font-size="11">{v:.2f}</text>')
    when = {"drift onset": result.onset, "detected": result.detected, "promoted": result.promoted}
    # Each marker's label has a row of its own: onset and detection are often a day or two apart,
    # and labels on one row ran into each other.
    for row, (label, colour) in enumerate(_MARKERS):
        day = when[label]
        if day is not None and day in days:
            i = days.index(day)
            label_y = _PAD - 8 + 12 * row
            anchor, dx = ("end", -3) if x(i) > _W - 120 else ("start", 3)
            parts.append(
                f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{label_y - 8}" y2="{_H - _PAD}" '
                f'stroke="{colour}" stroke-dasharray="4 3"/>'
            )
            parts.append(
                f'<text x="{x(i) + dx:.1f}" y="{label_y}" font-size="11" fill="{colour}" '
                f'text-anchor="{anchor}">{label} {day:%m-%d}</text>'
            )
    for name, colour in (("roc_auc", "#1f77b4"), ("f1", "#9467bd")):
        points = [(x(i), y(v)) for i, r in enumerate(result.rows) if (v := getattr(r, name)) is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points)
    parts.append(f'<text x="{_W - 150}" y="{_H - 8}" font-size="12" fill="#1f77b4">ROC AUC</text>')
    parts.append(f'<text x="{_W - 80}" y="{_H - 8}" font-size="12" fill="#9467bd">F1</text>')
    for i, d in enumerate(days):
        parts.append(f'<text x="{x(i) - 14:.1f}" y="{_H - _PAD + 14}" font-size="10">{d:%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
