"""The dashboard's HTML, built from small escaped pieces: the frame with its navigation, tables, charts.

Every value that comes from data (model names, reasons, actors, feature names) goes through
:func:`e`; a chart's figure travels as JSON inside ``<script type="application/json">`` (never
executed, ``</`` escaped) and ``/static/dashboard.js`` draws it, so the pages run no inline script and
the Content-Security-Policy can forbid it.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["PAGES", "chart", "e", "frame", "note", "table"]

# Path → navigation label, in the order the navigation shows them.
PAGES = {
    "/models": "Models",
    "/traffic": "Live traffic",
    "/drift": "Drift",
    "/decisions": "Decisions",
    "/triggers": "Triggers",
    "/retrainings": "Retrainings",
    "/shadow": "Shadow",
    "/guards": "Guards",
}


def e(value: object) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value), quote=True)


def frame(path: str, model: str, title: str, body: str, *, who: str | None = None) -> str:
    """A whole page: navigation (``path`` highlighted; links keep ``model``), heading, ``body``."""
    query = f"?model={e(quote(model, safe=''))}"
    nav = "".join(
        f'<a href="{href}{query}"{" class=active" if href == path else ""}>{e(label)}</a>'
        for href, label in PAGES.items()
    )
    user = f'<span class="who">signed in as {e(who)}</span>' if who else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} — {e(model)} — driftloop</title>"
        '<link rel="icon" href="data:,">'  # no favicon request (a 404 in the browser's console)
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/plotly.min.js" defer></script>'
        '<script src="/static/dashboard.js" defer></script>'
        "</head><body>"
        f'<header><span class="brand">driftloop</span><nav>{nav}</nav>{user}</header>'
        f"<main><h1>{e(title)} <small>{e(model)}</small></h1>{body}</main>"
        "</body></html>\n"
    )


def chart(figure: dict[str, Any], number: int) -> str:
    """The page's chart ``number``: its place on the page and its figure."""
    data = orjson.dumps(figure).decode().replace("</", "<\\/")
    return (
        f'<div class="chart" id="chart-{number}" data-figure="figure-{number}"></div>'
        f'<script type="application/json" id="figure-{number}">{data}</script>'
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str = "nothing yet") -> str:
    """A table of escaped cells; ``empty`` shown instead when there are no rows."""
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return note(empty)
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str, *, kind: str = "muted") -> str:
    """A one-line remark (``kind``: muted, or warn for a source that could not be read)."""
    return f'<p class="{e(kind)}">{e(text)}</p>'
