"""Pure layout builders: view-models in, Dash components out (no store, no clock, no callbacks).

Every device- or user-supplied string is passed as a text child, which React escapes; nothing here
uses markdown, ``dangerously_allow_html`` or puts such a string into a link.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash import dcc, html

from dashboard import ids
from dashboard.data import DeviceCard, Option, PageModel, RoomGroup, TileView, ValueView

WAITING = "waiting for data…"


def overview(model: PageModel) -> html.Div:
    """The device overview: tiles grouped by room, then the trend panel (the shell adds header and timer)."""
    return html.Div(className="fw-overview", children=[
        html.Div(id=ids.TILES, className="fw-rooms", children=[room_section(room) for room in model.rooms]),
        trend_panel(model),
    ])


def room_section(room: RoomGroup) -> html.Section:
    """A room heading and the tiles of its devices."""
    return html.Section(className="fw-room", children=[
        html.H2(room.name, className="fw-room-name"),
        html.Div(className="fw-tiles", children=[tile_frame(card) for card in room.devices]),
    ])


def tile_frame(card: DeviceCard) -> html.Article:
    """A device tile: the static head, and a body the tick callback replaces."""
    return html.Article(id=ids.tile(card.device_id), className=tile_class("nodata"),
                        **{"data-device": card.device_id}, children=[
        html.Div(className="fw-tile-head", children=[
            html.H3(card.label, className="fw-tile-label"),
            html.Div(f"{card.device_class} · {card.room}", className="fw-tile-meta"),
        ]),
        html.Div(id=ids.tile_body(card.device_id), className="fw-tile-body", children=html.Div(WAITING)),
    ])


def tile_class(state: str) -> str:
    """CSS classes of a tile in a state (a Severity value, ``stale`` or ``nodata``)."""
    return f"fw-tile fw-tile--{state}"


def tile_body(view: TileView) -> list:
    """The live contents of a tile: state in words, data age, summary values, reasons."""
    children = [
        html.Div(className="fw-tile-state", children=[
            html.Span(view.status_text, className=f"fw-badge fw-badge--{view.state}"),
            html.Span(view.age_text, className="fw-age"),
        ]),
        html.Dl(className="fw-values", children=[value_cell(value) for value in view.values]),
    ]
    if view.reasons:
        children.append(html.Ul(className="fw-reasons", children=[html.Li(reason) for reason in view.reasons]))
    return children


def value_cell(value: ValueView) -> html.Div:
    """A summary point: its label over its value, unit and marker (a dt/dd pair grouped for the grid)."""
    classes = f"fw-value fw-value--{value.status}"
    if value.severity is not None:
        classes += f" fw-value--state fw-value--{value.severity.value}"
    parts = [html.Span(value.text, className="fw-number")]
    if value.unit and value.status in ("good", "stale"):
        parts.append(html.Span(value.unit, className="fw-unit"))
    if value.marker:
        parts.append(html.Span(value.marker, className="fw-marker"))
    return html.Div(className="fw-cell fw-cell--state" if value.severity is not None else "fw-cell", children=[
        html.Dt(value.label, className="fw-value-label"),
        html.Dd(parts, className=classes, title=value.point, **{"data-point": value.point}),
    ])


def trend_panel(model: PageModel) -> html.Section:
    """Device, point and range pickers over one graph."""
    return html.Section(id=ids.TREND, className="fw-trend", children=[
        html.Div(className="fw-trend-controls", children=[
            _picker("Device", ids.TREND_DEVICE, model.device_options, model.default_device),
            _picker("Point", ids.TREND_POINT, model.point_options, model.default_point),
            _picker("Range", ids.TREND_RANGE, model.range_options, model.default_range_s),
        ]),
        html.H2("", id=ids.TREND_TITLE, className="fw-trend-title"),
        # An inline height: a responsive dcc.Graph otherwise sets height 100% of a parent with no height.
        dcc.Graph(id=ids.TREND_GRAPH, className="fw-trend-graph", responsive=True, style={"height": "380px"},
                  config={"displaylogo": False}),
        dcc.Store(id=ids.TREND_SHOWN, storage_type="memory"),
    ])


def _picker(label: str, component_id: str, options: Sequence[Option], value: object) -> html.Div:
    return html.Div(className="fw-picker", children=[
        html.Span(label, className="fw-picker-label"),
        dcc.Dropdown(id=component_id, options=dropdown_options(options), value=value,
                     clearable=False, searchable=False),
    ])


def dropdown_options(options: Sequence[Option]) -> list[dict]:
    """Options in the form dcc.Dropdown takes (labels stay plain strings, rendered as text)."""
    return [{"label": option.label, "value": option.value} for option in options]
