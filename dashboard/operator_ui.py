"""Small layout pieces shared by the operator pages (Trends, Alerts, Device, Scenarios).

Every string from a device, a config file or an operator goes in as a text child, which React
escapes: no markdown, no ``dangerously_allow_html``, and no such string in an ``href``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from dash import dcc, html

from alerts.model import Alert
from alerts.rules import Rule, load_rules
from config.load import Site
from config.yamlfile import ConfigError

if TYPE_CHECKING:
    from dashboard.pages import PageContext

T = TypeVar("T")


def format_time(ts: float | None, tz: tzinfo | None = None) -> str:
    """``2026-11-22 21:30:05`` in the dashboard's zone; empty for None."""
    if ts is None:
        return ""
    moment = datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def page_frame(name: str, title: str, children: Sequence[Any], intro: str = "") -> html.Div:
    """The common frame of an operator page: a heading, an optional line of help, the content."""
    head = [html.H1(title, className="op-title")]
    if intro:
        head.append(html.P(intro, className="op-intro"))
    return html.Div(id=f"{name}-page", className="op-page", children=[*head, *children])


def section(component_id: str, title: str, children: Any, extra: Any = None) -> html.Section:
    """A titled panel."""
    head = [html.H2(title, className="op-section-title")]
    if extra is not None:
        head.append(extra)
    return html.Section(id=component_id, className="op-section",
                        children=[html.Div(head, className="op-section-head"), html.Div(children)])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str, row_classes: Sequence[str] = ()) -> Any:
    """A plain table (cells are text or components), or a muted line when there are no rows."""
    if not rows:
        return html.P(empty, className="op-empty")
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if index < len(row_classes) else ""
        body.append(html.Tr([html.Td(cell) for cell in row], className=css))
    return html.Table(className="op-table", children=[
        html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(body)])


def badge(text: str, state: str) -> html.Span:
    """A coloured word (the word itself says it, colour is only a second signal)."""
    return html.Span(text, className=f"op-badge op-badge--{state}")


def device_link(site: Site, device_id: str, text: str | None = None) -> Any:
    """A link to the Device page of a CONFIGURED device (ids are validated slugs); plain text otherwise."""
    try:
        device = site.device(device_id)
    except KeyError:
        return device_id
    return dcc.Link(text if text is not None else device.label, href="/device?" + urlencode({"device": device.id}),
                    className="op-link")


def notice(text: str, kind: str = "info") -> html.Div:
    """A one-line message: ``info``, ``ok``, ``error``."""
    return html.Div(text, className=f"op-notice op-notice--{kind}", role="status")


# --- shared reads ----------------------------------------------------------------------------------

def locked(ctx: PageContext, read: Callable[[], T]) -> T:
    """Run a read or write of the alert-state or action store under the app's lock for their connections.

    Those stores keep ONE sqlite connection each, shared by every dashboard thread; the app's LiveCache
    serialises its own use of them with a lock, and the operator pages take the same one.
    """
    lock = getattr(ctx.cache, "_locked", None)  # LiveCache; a plain TickCache (unit tests) has none
    return lock(read) if callable(lock) else read()


def stored_alerts(ctx: PageContext) -> dict[str, Alert] | None:
    """Every stored alert by fingerprint (read once per tick); None without alert state."""
    store = ctx.sources.alerts
    if store is None:
        return None
    return ctx.cache.get("operator-alerts", lambda: locked(ctx, store.load))


def transitions_of(ctx: PageContext) -> Callable[[str], Sequence[tuple]]:
    """The logged transitions of one alert, read under the lock (empty without alert state)."""
    store = ctx.sources.alerts
    if store is None:
        return lambda fp: []
    return lambda fp: locked(ctx, lambda: store.transitions(fp))


def rules_of(ctx: PageContext) -> Sequence[Rule]:
    """The alert rules the dashboard was built with (the app loads them once), else the default files."""
    rules = getattr(ctx.cache, "rules", None)
    if rules is None:
        rules = ctx.sources.rules
    if rules is None:
        try:
            rules = ctx.cache.get("operator-rules", lambda: tuple(load_rules()), period=3600)
        except (ConfigError, OSError):
            rules = ()
    return rules
