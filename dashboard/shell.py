"""The shell around every page: header, navigation, stale/down banner, playlist bar, routed page, timer.

Every string a user or device can name is a text child (React escapes it); links only point at the
pages' own paths.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import dash
from dash import ALL, Input, Output, State, dcc, html
from dash.development.base_component import Component

from auth.model import Identity
from dashboard import ids
from dashboard.data import header_view
from dashboard.live import live_cache
from dashboard.pages import Page, PageContext
from dashboard.playlist import step
from dashboard.status import banner, new_critical

log = logging.getLogger(__name__)

MAX_QUERY = 2000  # a URL's query is user input: bounded before parsing
NOT_FOUND_TITLE = "Page not found"
USER = "header-user"
LOGOUT = "header-logout"


def signed_in(who: Identity | None) -> list[Component]:
    """Who is signed in and a sign-out link (a wall screen shows its token's name and no link)."""
    if who is None:
        return []
    if who.is_kiosk:
        return [html.Span(f"wall screen {who.name.removeprefix('kiosk:')}", id=USER, className="fw-user")]
    return [html.Span(f"{who.name} ({who.role.value})", id=USER, className="fw-user", style={"marginRight": "0.6em"}),
            # a plain link: /logout answers with a one-button POST form (CSRF-checked), so no link logs anyone out
            html.A("Sign out", href="/logout", id=LOGOUT, className="fw-logout")]


def shell(site_name: str, pages: Sequence[Page], refresh_ms: int, who: Identity | None = None) -> html.Div:
    """The document: header with navigation, banner, playlist bar, page container, timer and stores.

    ``who``: the signed-in identity when the dashboard has accounts (shown in the header).
    """
    return html.Div(id=ids.PAGE, className="fw-page", children=[
        dcc.Location(id=ids.URL, refresh=False),
        html.Header(className="fw-header", children=[
            html.Div(className="fw-brand", children=[
                html.Span("facwatch", className="fw-logo"),
                html.H1(site_name, id=ids.SITE_NAME, className="fw-site"),
            ]),
            html.Nav(id=ids.NAV, className="fw-nav", children=[
                dcc.Link(page.title, href=page.path, id=ids.nav_link(page.name), className="fw-nav-link")
                for page in pages]),
            html.Div(className="fw-status", children=[
                html.Span("waiting for data…", id=ids.UPDATED, className="fw-updated fw-updated--nodata",
                          role="status"),
                html.Span("", id=ids.CLOCK, className="fw-clock"),
                *signed_in(who),
            ]),
        ]),
        html.Div(id=ids.BANNER, className="fw-banner fw-banner--none", role="alert", children=[]),
        html.Div(id=ids.PLAYLIST, className="fw-playlist fw-playlist--off", children=[
            html.Span("", id=ids.PLAYLIST_TEXT, className="fw-playlist-text"),
            html.Button("Resume", id=ids.PLAYLIST_RESUME, className="fw-playlist-resume", n_clicks=0),
        ]),
        html.Main(id=ids.PAGE_CONTAINER, className="fw-main"),
        dcc.Interval(id=ids.TICK, interval=refresh_ms, n_intervals=0),
        dcc.Store(id=ids.PLAYLIST_STATE, storage_type="memory"),
    ])


def parse_query(search: Any) -> dict[str, str]:
    """``?a=1&b=2`` as a dict (first value wins); anything odd gives an empty dict."""
    if not isinstance(search, str) or len(search) > MAX_QUERY:
        return {}
    query: dict[str, str] = {}
    for key, value in parse_qsl(search.lstrip("?"), keep_blank_values=True):
        query.setdefault(key, value)
    return query


def not_found(path: str) -> html.Section:
    """A plain page for a path no page has (the path is shown as text)."""
    return html.Section(className="fw-not-found", children=[
        html.H2(NOT_FOUND_TITLE),
        html.P(["Nothing is at ", html.Code(path), ". Choose a page above."]),
    ])


class ShellCallbacks:
    """Routing, the header/banner refresh and the playlist, bound to one app's pages and context."""

    def __init__(self, ctx: PageContext, pages: Sequence[Page]):
        self.ctx = ctx
        self.pages = list(pages)
        self.by_path = {page.path: page for page in self.pages}
        self.wall = [(page.path, page.title) for page in self.pages if page.wall]

    def route(self, pathname: Any, search: Any, link_ids: Sequence[Any] = ()) -> tuple[Component, list[str], str]:
        """The page for the URL, the classes of the links ``link_ids`` and the shell's class (kiosk hides the nav)."""
        path = pathname if isinstance(pathname, str) else "/"
        query = parse_query(search)
        page = self.by_path.get(path)
        if page is None:
            content: Component = not_found(path)
        else:
            try:
                content = page.layout(self.ctx, query)
            except Exception:
                log.exception("page %s failed to render", page.name)
                content = html.Section(className="fw-not-found", children=[html.H2("This page failed to render"),
                                                                           html.P("See the dashboard log.")])
        current = page.name if page is not None else None
        links = [f"fw-nav-link{' fw-nav-link--active' if isinstance(i, dict) and i.get('page') == current else ''}"
                 for i in link_ids]
        kiosk = "rotate" in query or "kiosk" in query
        return content, links, "fw-page fw-page--kiosk" if kiosk else "fw-page"

    def status(self, _n: int | None) -> tuple[str, str, str, list, str]:
        """Clock, "updated N s ago", and the banner of everything that makes the pages untrustworthy."""
        cache = live_cache(self.ctx)
        snapshot = cache.snapshot()
        header = header_view(snapshot.site, cache.latest(), snapshot.now, self.ctx.tz)
        messages = banner(snapshot)
        children = [html.Div(m.text, className=f"fw-banner-message fw-banner-message--{m.kind}") for m in messages]
        banner_class = "fw-banner" if messages else "fw-banner fw-banner--none"
        return header.clock_text, header.updated_text, f"fw-updated fw-updated--{header.state}", children, banner_class

    def playlist(self, _n: int | None, resume_clicks: Any, pathname: Any, search: Any,
                 state: Any) -> tuple[Any, Any, str, str]:
        """Step the playlist: navigate, keep its state, show what it does (or that it is paused)."""
        snapshot = live_cache(self.ctx).snapshot()
        state = state if isinstance(state, dict) else None
        clicks = resume_clicks if isinstance(resume_clicks, int) else 0
        resume = clicks > int((state or {}).get("clicks", 0))  # a click since the last step
        result = step(state, now=snapshot.now,
                      path=pathname if isinstance(pathname, str) else "/", query=parse_query(search),
                      pages=self.wall, critical=new_critical(snapshot), resume=resume)
        if not result.text:
            return dash.no_update, None, "", "fw-playlist fw-playlist--off"
        css = "fw-playlist fw-playlist--paused" if result.paused else "fw-playlist"
        return result.navigate or dash.no_update, {**result.state, "clicks": clicks}, result.text, css


def register(app: dash.Dash, ctx: PageContext, pages: Sequence[Page]) -> ShellCallbacks:
    """Wire the shell's callbacks; return them (tests call them directly)."""
    callbacks = ShellCallbacks(ctx, pages)
    app.callback(
        Output(ids.PAGE_CONTAINER, "children"),
        Output({"type": ids.NAV_LINK, "page": ALL}, "className"),
        Output(ids.PAGE, "className"),
        Input(ids.URL, "pathname"),
        Input(ids.URL, "search"),
        State({"type": ids.NAV_LINK, "page": ALL}, "id"),
    )(callbacks.route)
    app.callback(
        Output(ids.CLOCK, "children"),
        Output(ids.UPDATED, "children"),
        Output(ids.UPDATED, "className"),
        Output(ids.BANNER, "children"),
        Output(ids.BANNER, "className"),
        Input(ids.TICK, "n_intervals"),
    )(callbacks.status)
    app.callback(
        Output(ids.URL, "pathname"),
        Output(ids.PLAYLIST_STATE, "data"),
        Output(ids.PLAYLIST_TEXT, "children"),
        Output(ids.PLAYLIST, "className"),
        Input(ids.TICK, "n_intervals"),
        Input(ids.PLAYLIST_RESUME, "n_clicks"),
        State(ids.URL, "pathname"),
        State(ids.URL, "search"),
        State(ids.PLAYLIST_STATE, "data"),
    )(callbacks.playlist)
    return callbacks
