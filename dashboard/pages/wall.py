"""The wall (kiosk): the whole site in one view — power, cooling, fire, active alerts with age and owner.

``/wall?rotate=30`` makes it the first stop of the playlist (the shell rotates and pauses it).
"""

from __future__ import annotations

from collections.abc import Sequence

import dash
from dash import Input, Output, html
from dash.development.base_component import Component

from collectors.model import Severity
from dashboard import ids
from dashboard.blocks import age, badge, fact_item, panel
from dashboard.data import SEVERITY_RANK, worst
from dashboard.live import Fact, live_cache
from dashboard.pages import Page, PageContext
from dashboard.power_chain import Node, PowerChainView
from dashboard.status import AlertRow, WallView, wall_view

SOURCE_TEXT = {"mains": "ON MAINS", "generator": "ON GENERATOR", "battery": "ON BATTERY", "none": "NO SOURCE"}
KEY_FACTS = {"ups": ("load", "runtime at full load"), "generator": ("fuel at full load",), "ats": ("mode",),
             "mains": ("voltage",)}


def _state(states: Sequence[str]) -> str:
    """The worst of some tile states; stale or silent devices count as unknown."""
    known = [Severity(s) for s in states if s in {v.value for v in Severity}]
    result = worst(known)
    if any(s in ("stale", "nodata") for s in states) and SEVERITY_RANK[result] < SEVERITY_RANK[Severity.WARNING]:
        return "stale"
    return result.value


def summary_row(label: str, state: str, status_text: str, facts: Sequence[Fact] = (), age_text: str = "",
                key: str = "") -> html.Div:
    """One line of a wall panel: name, state word, one or two key values, data age."""
    return html.Div(className=f"fw-row fw-state--{state}", **{"data-row": key or label}, children=[
        html.Span(label, className="fw-row-label"),
        age(age_text) if age_text else html.Span(),
        badge(state, status_text),
        html.Dl([fact_item(f) for f in facts], className="fw-facts fw-row-facts") if facts else html.Span(),
    ])


def _node_row(node: Node) -> html.Div:
    wanted = KEY_FACTS.get(node.kind, ())
    facts = [f for f in node.facts if f.label in wanted]
    return summary_row(node.label, node.state, node.status_text, facts, node.age_text, node.key)


def power_panel(view: PowerChainView) -> html.Section:
    """Where the load's power comes from, and each source and UPS in one line."""
    nodes = [view.mains, *([view.ats] if view.ats else []), *(g for g, _ in view.generators),
             *(b.ups for b in view.branches)]
    state = _state([n.state for n in nodes])
    rows = [html.Div(view.summary, className="fw-wall-summary", **{"data-source": view.source or "unknown"})]
    rows += [_node_row(n) for n in nodes]
    return panel("Power", state, SOURCE_TEXT.get(view.source or "", "SOURCE UNKNOWN"), rows,
                 extra_class="fw-wall-power")


def cooling_panel(view: WallView) -> html.Section:
    """Each room: its state, hottest inlet and CRACs running."""
    rows = [summary_row(room.name, room.state, room.state.upper(),
                        [Fact("hottest inlet", room.hottest), Fact("CRACs", room.cracs_running)], key=room.room_id)
            for room in view.rooms]
    state = _state([room.state for room in view.rooms])
    return panel("Cooling", state, state.upper(), rows or [html.P("no rooms with sensors")],
                 extra_class="fw-wall-cooling")


def fire_panel(view: WallView) -> html.Section:
    """The site's fire status and each system's state."""
    rows = [summary_row(s.label, s.state, s.status_text, age_text=s.age_text, key=s.device_id)
            for s in view.fire.systems]
    return panel("Fire", view.fire.state, view.fire.status_text, rows, extra_class="fw-wall-fire")


def alert_row(row: AlertRow) -> html.Tr:
    """One active alert: severity, what, where, how long, who owns it."""
    what = [html.Span(row.summary, className="fw-alert-summary")]
    if row.drill:
        what.append(html.Span("DRILL", className="fw-marker"))
    if row.state != "firing":
        what.append(html.Span(row.state, className="fw-marker"))
    owner = "fw-owner" if row.acknowledged else "fw-owner fw-owner--none"
    return html.Tr(className=f"fw-alert fw-alert--{row.severity}", **{"data-alert": row.fingerprint}, children=[
        html.Td(badge(row.severity, row.severity.upper())),
        html.Td(what),
        html.Td(row.device, className="fw-alert-device"),
        html.Td(row.age_text, className="fw-alert-age"),
        html.Td(row.owner, className=owner),
    ])


def alerts_panel(view: WallView) -> html.Section:
    """The active alerts, firing first, worst first."""
    if not view.alerts_available:
        return panel("Active alerts", "stale", "NO ALERT STATE", [html.P("alert state is not available here")],
                     extra_class="fw-wall-alerts")
    state = _state([row.severity for row in view.alerts if row.state == "firing"])
    count = len(view.alerts) + view.alerts_hidden
    body: list[Component] = [html.Table(className="fw-alerts", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("severity", "alert", "device", "for", "owner")])),
        html.Tbody([alert_row(row) for row in view.alerts]),
    ])] if view.alerts else [html.P("No alert firing", className="fw-all-clear")]
    if view.alerts_hidden:
        body.append(html.P(f"… and {view.alerts_hidden} more firing on the Alerts page", className="fw-more"))
    if view.pending:
        body.append(html.P(f"{view.pending} pending (waiting out their hold time)", className="fw-more"))
    return panel("Active alerts", state, f"{count} FIRING" if count else "NONE FIRING", body,
                 extra_class="fw-wall-alerts")


def content(view: WallView) -> list[Component]:
    """The four wall panels."""
    return [power_panel(view.power), cooling_panel(view), fire_panel(view), alerts_panel(view)]


def render(ctx: PageContext) -> list[Component]:
    """The wall for the current tick (cached: twenty screens share one rendering)."""
    cache = live_cache(ctx)
    return cache.get(("page", "wall"), lambda: content(wall_view(cache.snapshot())))


def layout(ctx: PageContext, _query: dict[str, str]) -> Component:
    """The page as navigation shows it (already filled, the next tick refreshes it)."""
    return html.Section(className="fw-screen fw-screen--wall", children=[
        html.Div(render(ctx), id=ids.WALL_BODY, className="fw-wall"),
    ])


def register(app: dash.Dash, ctx: PageContext) -> None:
    """Refresh the wall every tick."""
    app.callback(Output(ids.WALL_BODY, "children"), Input(ids.TICK, "n_intervals"),
                 prevent_initial_call=True)(lambda _n: render(ctx))


PAGE = Page(name="wall", path="/wall", title="Wall", layout=layout, register=register, order=10, wall=True)
