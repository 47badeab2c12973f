"""Rooms: every rack inlet on a floor grid coloured by the rules' envelopes, and the CRACs of the room."""

from __future__ import annotations

import dash
from dash import Input, Output, html
from dash.development.base_component import Component

from dashboard import ids
from dashboard.blocks import age, badge, fact_item, fact_list, panel
from dashboard.climate import CracCard, RackCell, RoomView, room_views
from dashboard.live import live_cache
from dashboard.pages import Page, PageContext


def rack(cell: RackCell) -> html.Article:
    """One rack inlet: temperature large, humidity and dew point under it, state and age."""
    return html.Article(className=f"fw-rack fw-state--{cell.state}", **{"data-device": cell.device_id}, children=[
        html.Div(cell.label, className="fw-rack-label"),
        html.Dl([fact_item(cell.temperature)], className="fw-facts fw-rack-main"),
        html.Dl([fact_item(cell.humidity), fact_item(cell.dew_point)], className="fw-facts fw-rack-more"),
        html.Div([badge(cell.state, cell.status_text), age(cell.age_text)], className="fw-rack-foot"),
    ])


def crac(card: CracCard) -> html.Article:
    """One cooling unit."""
    return html.Article(className=f"fw-crac fw-state--{card.state}", **{"data-device": card.device_id}, children=[
        html.Div([html.Span(card.label, className="fw-crac-label"), badge(card.state, card.status_text)],
                 className="fw-crac-head"),
        fact_list(card.facts),
        age(card.age_text),
    ])


def room(view: RoomView) -> html.Section:
    """A room: summary line, legend, rack grid, CRACs."""
    return panel(view.name, view.state, view.state.upper(), [
        html.Div(className="fw-room-summary", children=[
            html.Span(["hottest inlet ", html.B(view.hottest)]),
            html.Span(["CRACs ", html.B(view.cracs_running)]) if view.cracs else html.Span(),
        ]),
        html.Div([html.Div(f"colours: {line}", className="fw-legend-line") for line in view.legend],
                 className="fw-legend"),
        html.Div([rack(cell) for cell in view.racks], className="fw-floor"),
        html.Div([crac(card) for card in view.cracs], className="fw-cracs"),
    ], extra_class="fw-room-panel", **{"data-room": view.room_id})


def render(ctx: PageContext) -> list[Component]:
    """The rooms for the current tick (cached: every screen shares one rendering)."""
    cache = live_cache(ctx)
    return cache.get(("page", "rooms"), lambda: [room(v) for v in cache.snapshot().view("rooms", room_views)]
                     or [html.P("No rooms with rack sensors or CRACs are configured.")])


def layout(ctx: PageContext, _query: dict[str, str]) -> Component:
    """The page as navigation shows it (already filled, the next tick refreshes it)."""
    return html.Section(className="fw-screen fw-screen--rooms", children=[
        html.Div(render(ctx), id=ids.ROOMS_BODY, className="fw-rooms-grid"),
    ])


def register(app: dash.Dash, ctx: PageContext) -> None:
    """Refresh the rooms every tick."""
    app.callback(Output(ids.ROOMS_BODY, "children"), Input(ids.TICK, "n_intervals"),
                 prevent_initial_call=True)(lambda _n: render(ctx))


PAGE = Page(name="rooms", path="/rooms", title="Rooms", layout=layout, register=register, order=12, wall=True)
