"""Power chain: a single-line diagram, mains → ATS ← generator, ATS → UPS rings → load, live path lit."""

from __future__ import annotations

import dash
from dash import Input, Output, html
from dash.development.base_component import Component

from dashboard import ids
from dashboard.blocks import age, badge, fact_list
from dashboard.live import live_cache
from dashboard.pages import Page, PageContext
from dashboard.power_chain import PowerChainView, UpsBranch, power_chain_view

LINE_TEXT = {"live": "carrying load", "dead": "no power flow", "unknown": "unknown"}


def node_box(node) -> html.Div:
    """One box of the diagram: label, state word, facts, data age."""
    return html.Div(className=f"fw-node fw-node--{node.kind} fw-state--{node.state}", **{"data-node": node.key},
                    children=[
        html.Div(node.label, className="fw-node-label"),
        html.Div([badge(node.state, node.status_text)], className="fw-node-status"),
        fact_list(node.facts),
        age(node.age_text) if node.device_id else html.Span(),
    ])


def wire(state: str, direction: str, name: str) -> html.Div:
    """A line of the diagram; its class says whether it carries the load (and the title says it in words)."""
    return html.Div(className=f"fw-wire fw-wire--{direction} fw-wire--{state}", title=LINE_TEXT[state],
                    **{"data-line": name, "data-state": state})


def branch(item: UpsBranch) -> html.Div:
    """One UPS ring: feed from the bus, the UPS, its output, the load."""
    return html.Div(className="fw-branch", **{"data-ups": item.ups.key}, children=[
        wire(item.feed, "v", f"bus-{item.ups.key}"),
        node_box(item.ups),
        wire(item.output, "v", f"{item.ups.key}-load"),
        node_box(item.load),
    ])


def diagram(view: PowerChainView) -> list[Component]:
    """The whole single-line diagram."""
    bus = "live" if any(b.feed == "live" for b in view.branches) else (
        "unknown" if view.ats is None or any(b.feed == "unknown" for b in view.branches) else "dead")
    top: list[Component] = [node_box(view.mains), wire(view.mains_line, "h", "mains-ats")]
    top.append(node_box(view.ats) if view.ats else html.Div("no ATS configured", className="fw-node fw-node--none"))
    for generator, line in view.generators:
        top += [wire(line, "h", f"{generator.key}-ats"), node_box(generator)]
    return [
        html.Div(view.summary, className=f"fw-chain-summary fw-chain-summary--{view.source or 'unknown'}",
                 **{"data-source": view.source or "unknown"}),
        html.Div(top, className="fw-chain-top"),
        wire(bus, "v", "ats-bus"),
        wire(bus, "h", "bus"),
        html.Div([branch(b) for b in view.branches], className="fw-chain-branches"),
    ]


def render(ctx: PageContext) -> list[Component]:
    """The page's live contents for the current tick (cached: every screen shares one rendering)."""
    cache = live_cache(ctx)
    return cache.get(("page", "power"), lambda: diagram(cache.snapshot().view("power", power_chain_view)))


def layout(ctx: PageContext, _query: dict[str, str]) -> Component:
    """The page as navigation shows it (already filled, the next tick refreshes it)."""
    return html.Section(className="fw-screen fw-screen--power", children=[
        html.Div(render(ctx), id=ids.POWER_BODY, className="fw-chain"),
    ])


def register(app: dash.Dash, ctx: PageContext) -> None:
    """Refresh the diagram every tick."""
    app.callback(Output(ids.POWER_BODY, "children"), Input(ids.TICK, "n_intervals"),
                 prevent_initial_call=True)(lambda _n: render(ctx))


PAGE = Page(name="power", path="/power", title="Power", layout=layout, register=register, order=11, wall=True)
