"""Scenarios (demo only): list the simulator's scenarios, start or stop one, show the one running.

Talks to the simulator's loopback control endpoint (simulators/control.py) at ``sources.scenario_url``,
the same API ``facwatch scenario`` uses. Scenario names are only ever sent when the simulator listed them.
Starting or stopping one changes what the whole site sees (and pages people): with accounts it needs the
``configure`` permission (admins), asked on the server through ``dashboard.access``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import dash
from dash import ALL, Input, Output, dcc, html, no_update

from auth.model import Permission
from dashboard import access
from dashboard.operator_ui import badge, notice, page_frame, section, table
from dashboard.pages import Page, PageContext

log = logging.getLogger(__name__)

NAME = "scenarios"
TICK = "scenarios-tick"
STATUS = "scenarios-status"
LIST = "scenarios-list"
STOP = "scenarios-stop"
START = "scenarios-start"  # dict id type: {"type": START, "name": scenario}
MESSAGE = "scenarios-message"
TIMEOUT_S = 3.0
NO_SIMULATOR = "no simulator here: scenarios exist only in `facwatch demo` and `facwatch simulate`"


@dataclass(frozen=True, slots=True)
class ControlStatus:
    """What the control endpoint says: the running scenario, the simulated clock, the scenarios offered."""

    active: str | None
    clock_s: float | None
    time_scale: float | None
    scenarios: dict[str, str]
    error: str | None = None


def parse_status(status: int, body: Any) -> ControlStatus:
    """The GET /scenarios answer as a ControlStatus (an error one when it is not what the API promises)."""
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("scenarios"), dict):
        error = body.get("error") if isinstance(body, dict) else None
        return ControlStatus(None, None, None, {}, str(error or f"simulator answered {status}"))
    scenarios = {str(k): str(v) for k, v in body["scenarios"].items()}
    active = body.get("active")
    return ControlStatus(str(active) if active else None, _number(body.get("clock_s")),
                         _number(body.get("time_scale")), scenarios)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summary(description: str) -> str:
    """The first sentence of a scenario's description."""
    return description.split(". ")[0].rstrip(".") + "." if description else ""


class ScenarioClient:
    """HTTP to the control endpoint (``GET /scenarios``, ``POST /scenarios/<name>/start``, ``POST /scenarios/stop``)."""

    def __init__(self, base_url: str, timeout: float = TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def status(self) -> ControlStatus:
        """The simulator's status (an error status when it does not answer)."""
        return parse_status(*self._call("", post=False))

    def start(self, name: str) -> tuple[int, dict]:
        """Start a scenario the simulator listed."""
        return self._call(f"/{quote(name, safe='')}/start", post=True)

    def stop(self) -> tuple[int, dict]:
        """Stop the running scenario."""
        return self._call("/stop", post=True)

    def _call(self, path: str, post: bool) -> tuple[int, dict]:
        request = urllib.request.Request(self.base_url + path, method="POST" if post else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return 599, {"error": f"no simulator answering at {self.base_url}: {reason}"}


def _json(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {"error": "the simulator's answer is not JSON"}
    return body if isinstance(body, dict) else {}


class ScenariosPage:
    """The Scenarios page's callbacks (plain methods; unit tests call them directly)."""

    def __init__(self, ctx: PageContext):
        self.ctx = ctx
        url = ctx.sources.scenario_url
        self.client = ScenarioClient(url) if url else None

    def status(self) -> ControlStatus:
        """The simulator's status, once per tick for every browser."""
        if self.client is None:
            return ControlStatus(None, None, None, {}, NO_SIMULATOR)
        return self.ctx.cache.get("scenarios-status", self.client.status)

    def refresh(self, _n: Any) -> tuple:
        """(status line, scenario table, whether Stop is disabled)."""
        status = self.status()
        if status.error:
            return notice(status.error, "error"), "", True
        if status.active:
            head = [html.Span("running: ", className="op-label"),
                    html.Span(status.active, id="scenarios-active", className="op-badge op-badge--warning")]
        else:
            head = [html.Span("no scenario running", id="scenarios-active", className="op-idle")]
        if status.clock_s is not None:
            head.append(html.Span(f"simulated clock {status.clock_s:g} s, ×{status.time_scale or 1:g}",
                                  className="op-muted"))
        rows = [(name, summary(description),
                 badge("running", "warning") if name == status.active else
                 html.Button("Start", id={"type": START, "name": name}, className="op-button op-button--small",
                             n_clicks=0, disabled=status.active is not None))
                for name, description in status.scenarios.items()]
        return (html.Div(head, className="op-status-line"),
                table(("scenario", "what happens", ""), rows, "the simulator offers no scenarios"),
                status.active is None)

    def act(self, _starts: Any, _stop: Any) -> Any:
        """Start the scenario whose button was pressed, or stop the running one."""
        trigger = dash.ctx.triggered_id
        if trigger is None or not any(t.get("value") for t in dash.ctx.triggered):
            return no_update
        try:
            actor = access.authorise(self.ctx.sources, Permission.CONFIGURE, named=False)
        except access.Refused as exc:
            return notice(str(exc), "error")
        log.info("scenario %s requested by %s from %s", "stop" if trigger == STOP else "start", actor.name,
                 actor.source)
        if trigger == STOP:
            return self.stop()
        if isinstance(trigger, dict):
            return self.start(trigger.get("name"))
        return no_update

    def start(self, name: Any) -> Any:
        """Ask the simulator to start ``name`` (only a name it listed)."""
        if self.client is None:
            return notice(NO_SIMULATOR, "error")
        status = self.client.status()
        if not isinstance(name, str) or name not in status.scenarios:
            return notice("unknown scenario", "error")
        code, body = self.client.start(name)
        if code >= 300:
            return notice(f"not started: {body.get('error') or code}", "error")
        return notice(f"scenario {name} started", "ok")

    def stop(self) -> Any:
        """Ask the simulator to stop the running scenario."""
        if self.client is None:
            return notice(NO_SIMULATOR, "error")
        code, body = self.client.stop()
        if code >= 300:
            return notice(f"not stopped: {body.get('error') or code}", "error")
        return notice("scenario stopped", "ok")


def layout(ctx: PageContext, query: dict[str, str]) -> html.Div:
    """The running scenario with a Stop button, then every scenario with a Start button."""
    site = ctx.sources.site
    return page_frame(NAME, "Scenarios", intro="Simulated incidents and drills, for the demo and for training. "
                      "Their readings and alerts are tagged and never count as real evidence.", children=[
        html.Div(className="op-controls", children=[
            html.Div(id=STATUS, children=html.P("loading…")),
            html.Button("Stop", id=STOP, className="op-button op-button--danger", n_clicks=0, disabled=True),
        ]),
        html.Div(id=MESSAGE, className="op-message"),
        section(LIST, "Scenarios", html.Div(id=f"{LIST}-body")),
        dcc.Interval(id=TICK, interval=round(site.config.dashboard.refresh_s * 1000), n_intervals=0),
    ])


def register(app: dash.Dash, ctx: PageContext) -> ScenariosPage:
    """Wire the Scenarios callbacks."""
    page = ScenariosPage(ctx)
    app.callback(Output(STATUS, "children"), Output(f"{LIST}-body", "children"), Output(STOP, "disabled"),
                 Input(TICK, "n_intervals"))(page.refresh)
    app.callback(Output(MESSAGE, "children"), Input({"type": START, "name": ALL}, "n_clicks"),
                 Input(STOP, "n_clicks"), prevent_initial_call=True)(page.act)
    return page


PAGE = Page(name=NAME, path="/scenarios", title="Scenarios", layout=layout, register=register, order=90,
            demo_only=True)
