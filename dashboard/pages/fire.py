"""Fire and suppression: panel zones, pre-action, gas, VESDA. Display only: no control of any panel."""

from __future__ import annotations

import dash
from dash import Input, Output, html
from dash.development.base_component import Component

from dashboard import ids
from dashboard.blocks import badge, fact_list, panel
from dashboard.fire_safety import FireSystem, FireView, ZoneCell, fire_view
from dashboard.live import live_cache
from dashboard.pages import Page, PageContext

CLASS_NAMES = {"firepanel": "fire panel", "preaction": "pre-action sprinklers", "gas": "gas suppression",
               "vesda": "aspirating smoke detection"}


def zone(cell: ZoneCell) -> html.Div:
    """One detection zone: number, condition word, event type."""
    return html.Div(className=f"fw-zone fw-state--{cell.state}", **{"data-zone": str(cell.number)}, children=[
        html.Div(f"Zone {cell.number}", className="fw-zone-number"),
        badge(cell.state, cell.status_text),
        html.Div(cell.event.replace("_", " "), className="fw-zone-event"),
    ])


def smoke_bar(fraction: float) -> html.Div:
    """VESDA smoke relative to the Fire 1 threshold, as a bar (the number is in the facts too)."""
    return html.Div(className="fw-smoke", title="smoke relative to the Fire 1 threshold", children=[
        html.Div(className="fw-smoke-fill", style={"width": f"{fraction * 100:.0f}%"}),
        html.Span(f"{fraction * 100:.0f} % of Fire 1", className="fw-smoke-text"),
    ])


def system(item: FireSystem) -> html.Section:
    """A fire panel, pre-action valve, gas system or detector."""
    body: list[Component] = [html.Div(f"{CLASS_NAMES.get(item.device_class, item.device_class)} · {item.room}",
                                      className="fw-panel-meta")]
    if item.zones:
        body.append(html.Div([zone(z) for z in item.zones], className="fw-zones"))
    if item.smoke_fraction is not None:
        body.append(smoke_bar(item.smoke_fraction))
    body.append(fact_list(item.facts, "fw-facts--compact"))
    return panel(item.label, item.state, item.status_text, body, item.age_text,
                 f"fw-fire-system fw-fire-system--{item.device_class}",
                 **{"data-device": item.device_id})


def content(view: FireView) -> list[Component]:
    """The site's fire status in one line, then every system."""
    return [
        html.Div([badge(view.state, view.status_text),
                  html.Span("read-only: facwatch never resets, silences or acknowledges a fire panel",
                            className="fw-readonly-note")], className="fw-fire-summary"),
        html.Div([system(s) for s in view.systems], className="fw-fire-grid"),
    ]


def render(ctx: PageContext) -> list[Component]:
    """The fire systems for the current tick (cached: every screen shares one rendering)."""
    cache = live_cache(ctx)
    return cache.get(("page", "fire"), lambda: content(cache.snapshot().view("fire", fire_view)))


def layout(ctx: PageContext, _query: dict[str, str]) -> Component:
    """The page as navigation shows it (already filled, the next tick refreshes it)."""
    return html.Section(className="fw-screen fw-screen--fire", children=[
        html.Div(render(ctx), id=ids.FIRE_BODY, className="fw-fire"),
    ])


def register(app: dash.Dash, ctx: PageContext) -> None:
    """Refresh the fire systems every tick."""
    app.callback(Output(ids.FIRE_BODY, "children"), Input(ids.TICK, "n_intervals"),
                 prevent_initial_call=True)(lambda _n: render(ctx))


PAGE = Page(name="fire", path="/fire", title="Fire", layout=layout, register=register, order=13, wall=True)
