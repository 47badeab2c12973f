"""The device overview page: tiles by room and a trend panel, always part of the app (``OVERVIEW``).

``PageCallbacks`` are plain methods (unit-tested directly), wired by ``register``.

The shell's one ``dcc.Interval`` drives everything. Each tick, the tile callback renders every tile from
ONE ``store.latest()`` call and the trend callback draws one ``store.query()``; both results are cached
per tick, so any number of screens cost one query of each kind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import dash
import plotly.graph_objects as go
from dash import ALL, Input, Output, Patch, State
from dash.development.base_component import Component

from dashboard import ids
from dashboard.data import (
    TREND_RANGES,
    TrendRequest,
    page_model,
    point_options,
    tile_views,
    trend_request,
    unit_symbol,
)
from dashboard.figures import empty_figure, trend_figure
from dashboard.layout import dropdown_options, overview, tile_body, tile_class
from dashboard.live import live_cache
from dashboard.pages import Page, PageContext
from storage.base import Bucket

log = logging.getLogger(__name__)

STORE_UNAVAILABLE = "store unavailable"


class PageCallbacks:
    """The callbacks of the overview page, bound to one app's context (site, store, per-tick cache)."""

    def __init__(self, ctx: PageContext):
        self.sources = ctx.sources
        self.cache = live_cache(ctx)
        self._tz = ctx.tz
        self._store_ok = True
        self._health_lock = threading.Lock()

    def refresh(self, _n_intervals: int | None, tile_ids: Sequence[Any]) -> tuple[list, list]:
        """The class and contents of every tile (in the order of ``tile_ids``)."""
        site, now = self.sources.site, self.sources.clock()
        readings = self.cache.latest()
        views = {view.device_id: view for view in tile_views(site, readings or [], now)}
        classes, bodies = [], []
        for tile_id in tile_ids:
            view = views.get(tile_id.get("device")) if isinstance(tile_id, dict) else None
            classes.append(tile_class(view.state if view else "nodata"))
            bodies.append(tile_body(view) if view else [])
        return classes, bodies

    def points(self, device_id: Any, current: Any) -> tuple[list[dict], Any]:
        """Point choices of the chosen device; keep the current point if that device has it."""
        options = point_options(self.sources.site, device_id)
        values = [option.value for option in options]
        value = current if current in values else (values[0] if values else None)
        return dropdown_options(options), value

    def trend(self, _n_intervals: int | None, device_id: Any, point: Any, range_s: Any,
              shown: Any = None) -> tuple[go.Figure | Patch, str, str | None]:
        """The trend graph, its title and what it now shows, for the chosen device, point and range.

        When the browser already shows this series, only the traces are sent (a ``Patch``): the layout,
        and with it the operator's zoom, stays as it is in the browser. ``uirevision`` alone does not
        keep the zoom in Dash 4.4, whose dcc.Graph copies each zoom into its figure prop (dash#3882), so
        the next full figure from the server counts as a deliberate change of the axis range.
        """
        request = trend_request(self.sources.site, device_id, point, range_s, self.sources.clock())
        if request is None:
            return empty_figure("choose a device and a point"), "", None
        key = ("trend", request.device.id, request.spec.name, range_s)
        # A bucket is range/600 wide: redrawing a 7-day graph (17 min buckets) every 2 s shows nothing new
        # but costs a scan of a week of samples, so long ranges refresh about four times per bucket.
        figure = self.cache.get(key, lambda: self._trend(request), period=request.bucket_s / 4)
        showing = figure.layout.uirevision if figure.data else None
        if showing is not None and shown == showing:
            patch = Patch()
            patch["data"] = [trace.to_plotly_json() for trace in figure.data]
            return patch, trend_title(request), showing
        return figure, trend_title(request), showing

    def _trend(self, request: TrendRequest) -> go.Figure:
        buckets = self._query(request)
        revision = f"{request.device.id}|{request.spec.name}|{request.end - request.start:.0f}"
        return trend_figure(
            buckets or [], start=request.start, end=request.end, bucket_s=request.bucket_s,
            poll_interval_s=request.device.poll_interval_s, unit=unit_symbol(request.spec.unit),
            uirevision=revision, tz=self._tz, message=STORE_UNAVAILABLE if buckets is None else None)

    def _query(self, request: TrendRequest) -> list[Bucket] | None:
        try:
            buckets = self.sources.store.query(request.device.id, request.spec.name, request.start, request.end,
                                               request.max_points)
        except Exception:
            self._store_failed()
            return None
        self._store_recovered()
        return buckets

    def _store_failed(self) -> None:
        # Log the way down once, not every tick of every screen.
        with self._health_lock:
            was_ok, self._store_ok = self._store_ok, False
        if was_ok:
            log.exception("dashboard cannot read the store; showing STORE UNAVAILABLE until it answers")

    def _store_recovered(self) -> None:
        with self._health_lock:
            was_ok, self._store_ok = self._store_ok, True
        if not was_ok:
            log.warning("dashboard reads the store again")


def trend_title(request: TrendRequest) -> str:
    """The words above the graph: device, point with unit, range."""
    span = round(request.end - request.start)
    range_label = next((label for label, seconds in TREND_RANGES if seconds == span), f"{span} s")
    unit = unit_symbol(request.spec.unit)
    point = f"{request.spec.name} ({unit})" if unit else request.spec.name
    return f"{request.device.label} — {point}, last {range_label}"


def register(app: dash.Dash, ctx: PageContext) -> PageCallbacks:
    """Wire the overview page's callbacks into ``app``; return them (tests and diagnostics use them)."""
    callbacks = PageCallbacks(ctx)
    app.callback(
        Output({"type": ids.TILE, "device": ALL}, "className"),
        Output({"type": ids.TILE_BODY, "device": ALL}, "children"),
        Input(ids.TICK, "n_intervals"),
        State({"type": ids.TILE, "device": ALL}, "id"),
    )(callbacks.refresh)
    app.callback(
        Output(ids.TREND_POINT, "options"),
        Output(ids.TREND_POINT, "value"),
        Input(ids.TREND_DEVICE, "value"),
        State(ids.TREND_POINT, "value"),
        prevent_initial_call=True,  # the layout already holds the default device's points
    )(callbacks.points)
    app.callback(
        Output(ids.TREND_GRAPH, "figure"),
        Output(ids.TREND_TITLE, "children"),
        Output(ids.TREND_SHOWN, "data"),
        Input(ids.TICK, "n_intervals"),
        Input(ids.TREND_DEVICE, "value"),
        Input(ids.TREND_POINT, "value"),
        Input(ids.TREND_RANGE, "value"),
        State(ids.TREND_SHOWN, "data"),
    )(callbacks.trend)
    return callbacks


def _layout(ctx: PageContext, _query: dict[str, str]) -> Component:
    return overview(page_model(ctx.sources.site))


# The walking skeleton's page, kept until the Trends page takes over the trend panel.
OVERVIEW = Page(name="overview", path="/", title="Devices", layout=_layout, register=register, order=90)
