"""Pure builders of the pieces the wall pages share: state badges, data ages, fact lists, panels.

Strings from config, devices or users are text children only (React escapes them): no markdown, no
``dangerously_allow_html``, no links built from them.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash import html
from dash.development.base_component import Component

from dashboard.live import Fact


def badge(state: str, text: str) -> html.Span:
    """A state word on its state colour (the word is always there: colour is never the only signal)."""
    return html.Span(text, className=f"fw-badge fw-badge--{state}")


def age(text: str) -> html.Span:
    """How old the data behind a tile is."""
    return html.Span(text or "no data", className="fw-age")


def fact_item(item: Fact) -> html.Div:
    """A label over a value with unit; ``data-fact`` names it for tests and styles."""
    parts: list[Component] = [html.Span(item.text, className="fw-fact-value")]
    if item.unit:
        parts.append(html.Span(item.unit, className="fw-fact-unit"))
    if item.note and item.state in ("stale", "missing", "invalid", "nodata"):
        parts.append(html.Span(item.note, className="fw-marker"))
    title = item.note if item.note and item.state not in ("stale", "missing", "invalid", "nodata") else None
    return html.Div(className=f"fw-fact fw-fact--{item.state or 'plain'}", title=title,
                    **{"data-fact": item.label}, children=[
        html.Dt(item.label, className="fw-fact-label"),
        html.Dd(parts, className="fw-fact-data"),
    ])


def fact_list(facts: Sequence[Fact], extra_class: str = "") -> html.Dl:
    """Facts in a grid."""
    return html.Dl([fact_item(f) for f in facts], className=f"fw-facts {extra_class}".strip())


def panel(title: str, state: str, status_text: str, children: Sequence[Component], age_text: str = "",
          extra_class: str = "", **attributes: str) -> html.Section:
    """A framed panel: title and state badge on top, age on the right, then the contents."""
    head = [html.H2(title, className="fw-panel-title"), badge(state, status_text)]
    if age_text:
        head.append(age(age_text))
    return html.Section(className=f"fw-panel fw-state--{state} {extra_class}".strip(), **attributes, children=[
        html.Div(head, className="fw-panel-head"),
        *children,
    ])
