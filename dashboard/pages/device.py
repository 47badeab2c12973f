"""Device: every point of one device, its poll health, its alerts and its error history (/device?device=ID)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import dash
from dash import Input, Output, dcc, html

from alerts.model import AlertState
from collectors.model import REACHABLE_POINT
from config.schema import Device
from dashboard.device_views import (
    EVENT_LIMIT,
    EVENTS_S,
    HISTORY_BUCKETS,
    HISTORY_S,
    device_options,
    event_rows,
    find_device,
    health_view,
    missing_rows,
    point_rows,
    unreachable_periods,
)
from dashboard.operator_ui import badge, format_time, notice, page_frame, section, stored_alerts, table
from dashboard.pages import Page, PageContext
from dashboard.trend_data import parse_series, series_key

log = logging.getLogger(__name__)

NAME = "device"
SELECT = "device-select"
BODY = "device-body"
TICK = "device-tick"
HISTORY_PERIOD_S = 60.0  # the day-long error history need not be re-read every tick


class DevicePage:
    """The Device page's callbacks (plain methods; unit tests call them directly)."""

    def __init__(self, ctx: PageContext):
        self.ctx = ctx

    def refresh(self, _n: Any, device_id: Any) -> Any:
        """The whole body for the chosen device."""
        site = self.ctx.sources.site
        device = find_device(site, device_id)
        if device is None:
            return notice("choose a configured device", "info")
        now = self.ctx.sources.clock()
        try:
            readings = self.ctx.cache.get(("device-latest", device.id),
                                          lambda: self.ctx.sources.store.latest([device.id]))
        except Exception:
            log.exception("device page: cannot read the store")
            return notice("store unavailable", "error")
        history = self.ctx.cache.get(("device-history", device.id), lambda: self._history(device),
                                     period=HISTORY_PERIOD_S)
        return self.body(device, readings, now, history)

    def _history(self, device: Device) -> dict[str, Any]:
        """Reachability and missing readings over the last day, and the device's events of the last week."""
        store, now = self.ctx.sources.store, self.ctx.sources.clock()
        start = now - HISTORY_S
        points = [spec.name for spec in self.ctx.sources.site.profile(device).points]
        out: dict[str, Any] = {"bucket_s": HISTORY_S / HISTORY_BUCKETS, "failed": False}
        try:
            out["reachable"] = store.query(device.id, REACHABLE_POINT, start, now, HISTORY_BUCKETS)
            out["per_point"] = {p: store.query(device.id, p, start, now, HISTORY_BUCKETS) for p in points}
            out["events"] = store.events(now - EVENTS_S, now, device=device.id, limit=EVENT_LIMIT)
        except Exception:
            log.exception("device page: cannot read the history of %s", device.id)
            out.update(reachable=[], per_point={}, events=[], failed=True)
        return out

    def body(self, device: Device, readings: list, now: float, history: dict[str, Any]) -> list:
        """Identity, poll health, active alerts, every point, then the error history."""
        site, tz = self.ctx.sources.site, self.ctx.tz
        health = health_view(site, device, readings, now)
        room = next((r.name for r in site.config.rooms if r.id == device.room), device.room)
        identity = html.Dl(className="op-facts", children=[
            *_fact("Name", device.label), *_fact("Id", device.id), *_fact("Class", device.device_class),
            *_fact("Profile", device.profile), *_fact("Room", room),
            *_fact("Address", f"{device.host}:{device.port}"), *_fact("Polled", health.poll_interval)])
        health_box = html.Dl(className="op-facts", id="device-health", children=[
            html.Div([html.Dt("Reachability"), html.Dd(badge(health.reachable, health.state))]),
            *_fact("Last poll", health.last_poll), *_fact("Poll duration", health.poll_duration)])
        rows = point_rows(site, device, readings, now)
        points = table(("point", "value", "unit", "state", "quality", "age", "description", ""),
                       [(r.point, html.Span(r.value, className="op-value", **{"data-point": r.point}), r.unit,
                         badge(r.severity, r.severity) if r.severity else "", r.quality, r.age, r.description,
                         self._trend_link(device, r.point) if r.numeric else "")
                        for r in rows], "this profile has no points",
                       [f"op-row op-row--{r.quality.replace(' ', '')}" for r in rows])
        outages = unreachable_periods(history["reachable"], history["bucket_s"])
        missing = missing_rows(history["per_point"])
        events = event_rows(history["events"])
        return [
            html.Div(className="op-columns", children=[
                section("device-identity", device.label, identity),
                section("device-poll-health", "Poll health", health_box),
            ]),
            section("device-alerts", "Active alerts", self._alerts(device)),
            section("device-points", "All points", points),
            section("device-errors", "Error history", [
                notice("the store could not be read", "error") if history["failed"] else "",
                html.H3("Not answering (last 24 h, 15 min resolution)"),
                table(("from", "until"), [(format_time(p.start, tz), format_time(p.end, tz)) for p in outages],
                      "answered every poll in the last 24 h"),
                html.H3("Missing or invalid readings (last 24 h)"),
                table(("interval from", "point", "missing/invalid", "good"),
                      [(format_time(r.start, tz), r.point, str(r.missing), str(r.good)) for r in missing[:100]],
                      "no missing or invalid readings in the last 24 h"),
                html.H3("Events (traps, last 7 days)"),
                table(("time", "kind", "name", "severity", "detail"),
                      [(format_time(e.ts, tz), e.kind, e.name, badge(e.severity, e.severity), e.detail)
                       for e in events], "no events in the last 7 days"),
            ]),
        ]

    def _trend_link(self, device: Device, point: str) -> Any:
        """A link to this point's trend, built only from a configured device and a profile point."""
        chosen = parse_series(self.ctx.sources.site, [series_key(device.id, point)])
        if not chosen:
            return ""
        return dcc.Link("trend", href="/trends?" + urlencode({"series": chosen[0].key}), className="op-link")

    def _alerts(self, device: Device) -> Any:
        try:
            alerts = stored_alerts(self.ctx)
        except Exception:
            log.exception("device page: alert state unavailable")
            return notice("alert state unavailable", "error")
        if alerts is None:
            return notice("no alert state available to this dashboard", "info")
        rows = [a for a in alerts.values() if a.labels.get("device") == device.id
                and a.state in (AlertState.PENDING, AlertState.FIRING)]
        return table(("severity", "state", "rule", "summary", "since", "acknowledged by"),
                     [(badge(str(a.severity).upper(), str(a.severity)), str(a.state), a.rule, a.summary,
                       format_time(a.fired_at or a.active_since, self.ctx.tz), a.acknowledged_by or "")
                      for a in rows], "no active alerts on this device")


def _fact(term: str, value: str) -> list:
    return [html.Div([html.Dt(term), html.Dd(value)])]


def layout(ctx: PageContext, query: dict[str, str]) -> html.Div:
    """A device picker (preset from ``?device=``) over the device's details."""
    site = ctx.sources.site
    chosen = find_device(site, query.get("device"))
    value = chosen.id if chosen else (site.devices[0].id if site.devices else None)
    return page_frame(NAME, "Device", children=[
        html.Div(className="op-controls", children=[
            html.Label(className="op-field op-field--wide", children=[
                html.Span("Device", className="op-label"),
                dcc.Dropdown(id=SELECT, options=device_options(site), value=value, clearable=False,
                             searchable=True)]),
        ]),
        html.Div(id=BODY, className="op-body", children=html.P("loading…")),
        dcc.Interval(id=TICK, interval=round(site.config.dashboard.refresh_s * 1000), n_intervals=0),
    ])


def register(app: dash.Dash, ctx: PageContext) -> DevicePage:
    """Wire the Device callbacks."""
    page = DevicePage(ctx)
    app.callback(Output(BODY, "children"), Input(TICK, "n_intervals"), Input(SELECT, "value"))(page.refresh)
    return page


PAGE = Page(name=NAME, path="/device", title="Device", layout=layout, register=register, order=50)
