"""Alerts: active and history, acknowledge with a note, silences and maintenance windows, who did what.

Operator actions only become commands in the store (``sources.actions``); the alerting loop in the
collector applies them within a tick (alerts/commands.py ``CommandApplier``), and this page shows the
outcome on its next refresh. Every action asks ``dashboard.access.authorise`` on the server: with
accounts the signed-in identity must hold the permission (acknowledge; silence; maintenance for a
maintenance window) and signs the command; without accounts (the loopback demo) a typed name does.
The request's source address is recorded with it. Without ``sources.actions`` the page is read-only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html, no_update
from plotly.utils import PlotlyJSONEncoder

from alerts.commands import Command, SilenceRecord
from alerts.model import Alert
from auth.model import Permission
from dashboard import access
from dashboard.alert_views import (
    DURATIONS,
    HISTORY_LIMIT,
    KINDS,
    STARTS,
    AlertRow,
    HistoryRow,
    ack_options,
    action_rows,
    active_rows,
    active_summary,
    history_entries,
    history_rows,
    silence_matchers,
    silence_rows,
    silence_window,
)
from dashboard.operator_ui import (
    badge,
    device_link,
    format_time,
    locked,
    notice,
    page_frame,
    rules_of,
    section,
    stored_alerts,
    table,
    transitions_of,
)
from dashboard.pages import Page, PageContext

log = logging.getLogger(__name__)

NAME = "alerts"
TICK = "alerts-tick"
ACTIVE = "alerts-active"
HISTORY = "alerts-history"
SILENCES = "alerts-silences"
ACTIONS = "alerts-actions"
ESCALATION_NOTE = "alerts-escalation-note"
AUTHOR = "alerts-author"
ACK_ALERT = "alerts-ack-alert"
ACK_NOTE = "alerts-ack-note"
ACK_SUBMIT = "alerts-ack-submit"
ACK_MESSAGE = "alerts-ack-message"
SIL_DEVICE = "alerts-silence-device"
SIL_RULE = "alerts-silence-rule"
SIL_KIND = "alerts-silence-kind"
SIL_DURATION = "alerts-silence-duration"
SIL_START = "alerts-silence-start"
SIL_REASON = "alerts-silence-reason"
SIL_SUBMIT = "alerts-silence-submit"
SIL_MESSAGE = "alerts-silence-message"
EXPIRE = "alerts-expire"  # dict id type: {"type": EXPIRE, "silence": id}
EXPIRE_MESSAGE = "alerts-expire-message"
SENT = "alerts-sent"  # digests of the tables the browser has, so unchanged ones are not re-sent every tick
MAX_ROWS = 100  # a mains failure can raise hundreds: the worst hundred, and how many more
PICK = "alerts-pick"  # dict id type: {"type": PICK, "alert": fingerprint} — fills both forms from a row
READ_ONLY = "read-only dashboard: operator actions are disabled here (use the CLI or the main dashboard)"
APPLIED_SOON = "the alerting loop applies it within a few seconds; the tables below show the outcome"


@dataclass(frozen=True)
class AlertsModel:
    """What the page read this tick (None: that source is absent or failed)."""

    alerts: dict[str, Alert] | None
    silences: list[SilenceRecord] | None
    escalations: dict[str, tuple[str, float]] | None
    commands: list[Command] | None
    history: list[HistoryRow] | None


class AlertsPage:
    """The Alerts page's callbacks (plain methods; unit tests call them directly)."""

    def __init__(self, ctx: PageContext):
        self.ctx = ctx
        self._outbox: Any = None
        self._outbox_tried = False
        self._lock = threading.Lock()

    @property
    def now(self) -> float:
        """The dashboard's clock."""
        return self.ctx.sources.clock()

    # --- reading ---------------------------------------------------------------------------------

    def alerts(self) -> dict[str, Alert] | None:
        """Every stored alert by fingerprint, once per tick; None when there is no alert state."""
        return stored_alerts(self.ctx)

    def escalations(self) -> dict[str, tuple[str, float]] | None:
        """Fingerprint → (receiver, escalated at), or None when the notification log cannot be read."""
        outbox = self._open_outbox()
        if outbox is None:
            return None
        try:
            return self.ctx.cache.get("alerts-escalations", outbox.escalations)
        except Exception:
            log.exception("alerts page: cannot read escalations")
            return None

    def _open_outbox(self) -> Any:
        with self._lock:
            if not self._outbox_tried:
                self._outbox_tried = True
                path = getattr(self.ctx.sources.store, "path", None)
                try:
                    from alerts.outbox import Outbox
                    if path is not None and hasattr(Outbox, "escalations"):
                        self._outbox = Outbox(path)
                except Exception:
                    log.exception("alerts page: cannot open the notification log")
            return self._outbox

    def model(self) -> AlertsModel:
        """Everything the page reads, once per tick for every browser."""
        return self.ctx.cache.get("alerts-page", self._read)

    def _read(self) -> AlertsModel:
        actions = self.ctx.sources.actions
        alerts = self._guard(self.alerts)
        silences = self._guard(lambda: locked(self.ctx, lambda: actions.silences(include_ended=True)[:50])) \
            if actions else []
        commands = self._guard(lambda: locked(self.ctx, lambda: actions.history(100))) if actions else None
        history = None
        if alerts is not None:
            history = self._guard(lambda: history_rows(self.ctx.sources.site, self._recent(alerts)))
        return AlertsModel(alerts, silences, self.escalations(), commands, history)

    def _recent(self, alerts: dict[str, Alert]) -> list[tuple]:
        """The newest HISTORY_LIMIT transitions of all alerts, in one query."""
        store = self.ctx.sources.alerts
        recent = getattr(store, "recent_transitions", None)
        if callable(recent):  # the store's own API, once it has one
            return locked(self.ctx, lambda: recent(HISTORY_LIMIT))
        conn = getattr(store, "conn", None)
        if conn is None:
            return history_entries(alerts, transitions_of(self.ctx))
        # alerts/state.py has no "latest transitions" query yet; reading its table directly costs one
        # indexed query instead of one per stored alert (hundreds during a mains failure).
        return locked(self.ctx, lambda: conn.execute(
            "SELECT rule, labels, from_state, to_state, severity, at, scenario FROM alert_transition "
            "ORDER BY id DESC LIMIT ?", (HISTORY_LIMIT,)).fetchall())

    def refresh(self, n: Any, current_options: Any = None, sent: Any = None) -> tuple:
        """The tables, each only when it differs from what the browser has (by digest), and the new digests."""
        outputs = self.tables(n, current_options)
        sent = sent if isinstance(sent, list) and len(sent) == len(outputs) else [None] * len(outputs)
        digests = [None if out is no_update else _digest(out) for out in outputs]
        fresh = [no_update if digest is not None and digest == old else out
                 for out, digest, old in zip(outputs, digests, sent, strict=True)]
        return (*fresh, [digest or old for digest, old in zip(digests, sent, strict=True)])

    def tables(self, _n: Any, current_options: Any = None) -> tuple:
        """(active table, ack choices, silences table, actions table, history table, escalation note).

        The choices are only sent when they changed, so an operator's open dropdown is not reset every tick.
        """
        m, now = self.model(), self.now
        if m.alerts is None:
            active = notice("no alert state available to this dashboard", "error")
            rows: list[AlertRow] = []
        else:
            rows = active_rows(self.ctx.sources.site, m.alerts.values(), m.silences or [], m.escalations or {}, now)
            active = self.active_table(rows)
        history = notice("no alert state available", "error") if m.history is None else self.history_table(m.history)
        note = ("" if m.escalations is not None else
                "escalation state unavailable (no notification log in this store)")
        options = ack_options(rows)
        return (active, no_update if options == current_options else options, self.silences_table(m.silences or []),
                self.actions_table(m.commands, m.alerts), history, note)

    def _guard(self, read: Any) -> Any:
        try:
            return read()
        except Exception:
            log.exception("alerts page: cannot read the store")
            return None

    # --- tables ----------------------------------------------------------------------------------

    def active_table(self, rows: list[AlertRow]) -> Any:
        """Active alerts (the worst ``MAX_ROWS``): severity, state, rule, where, summary, since, who handles it.

        No ages ("5 s ago") here: the table is only re-sent when an alert changes, not on every tick.
        """
        site, tz = self.ctx.sources.site, self.ctx.tz
        cells, classes = [], []
        for r in rows[:MAX_ROWS]:
            handling = []
            if r.acked_by:
                handling.append(html.Div(f"acknowledged by {r.acked_by} at {format_time(r.acked_at, tz)}",
                                         className="op-acked"))
                if r.ack_note:
                    handling.append(html.Div(r.ack_note, className="op-note"))
            if r.silenced_by:
                handling.append(html.Div("silenced by " + ", ".join(f"#{i}" for i in r.silenced_by),
                                         className="op-silenced"))
            if r.escalated:
                handling.append(html.Div(f"escalated to {r.escalated[0]} at {format_time(r.escalated[1], tz)}",
                                         className="op-escalated"))
            where = device_link(site, r.device, r.where) if r.device else r.where
            pick = html.Button("Select", id={"type": PICK, "alert": r.fingerprint}, n_clicks=0,
                               className="op-button op-button--small", title="fill the forms above with this alert")
            cells.append((badge(r.severity.upper(), r.severity), r.state, r.rule, where, r.summary,
                          format_time(r.since, tz),
                          badge(r.status, r.status), handling, r.scenario or "",
                          pick if self.ctx.sources.actions is not None else ""))
            classes.append(f"op-row op-row--{r.status}")
        listed = table(("severity", "state", "rule", "where", "summary", "since", "status", "handled", "drill", ""),
                       cells, "no active alerts", classes)
        return [html.P(active_summary(rows), className="op-intro", id="alerts-summary"), listed,
                html.P(f"… and {len(rows) - MAX_ROWS} more, less severe or newer", className="op-intro")
                if len(rows) > MAX_ROWS else ""]

    def pick(self, _clicks: Any) -> tuple:
        """Fill the acknowledge form with the row's alert, and the silence form with its device and rule."""
        trigger = dash.ctx.triggered_id
        if not isinstance(trigger, dict) or not any(t.get("value") for t in dash.ctx.triggered):
            return no_update, no_update, no_update
        alert = (self.alerts() or {}).get(str(trigger.get("alert")))
        if alert is None:
            return no_update, no_update, no_update
        device = alert.labels.get("device")
        return alert.fingerprint, device if device in {d.id for d in self.ctx.sources.site.devices} else None, \
            alert.rule

    def history_table(self, rows: list[HistoryRow]) -> Any:
        """The latest state changes, newest first."""
        return table(("time", "rule", "where", "from", "to", "severity", "drill"),
                     [(format_time(r.at, self.ctx.tz), r.rule, r.where, r.from_state, r.to_state, r.severity,
                       r.scenario or "") for r in rows], "no alert history yet")

    def silences_table(self, silences: list) -> Any:
        """Silences and maintenance windows, each with an Expire button while not ended."""
        tz = self.ctx.tz
        cells = []
        writable = self.ctx.sources.actions is not None
        for s in silence_rows(silences, self.now):
            button = html.Button("Expire", id={"type": EXPIRE, "silence": s.id}, className="op-button op-button--small",
                                 n_clicks=0) if writable and s.state != "ended" else ""
            cells.append((f"#{s.id}", s.kind, badge(s.state, s.state), s.matchers, s.reason, s.author,
                          format_time(s.starts_at, tz), format_time(s.ends_at, tz), button))
        return table(("id", "kind", "state", "matches", "reason", "by", "from", "until", ""), cells,
                     "no silences or maintenance windows")

    def actions_table(self, commands: Any, alerts: dict[str, Alert] | None) -> Any:
        """Who did what: the operator command log."""
        if commands is None:
            return notice("no operator command log available to this dashboard", "info")
        rows = action_rows(commands, alerts)
        return table(("#", "requested", "by", "from", "what", "outcome", "detail"),
                     [(str(r.id), format_time(r.requested_at, self.ctx.tz), r.author, r.source, r.what,
                       badge(r.outcome, r.outcome), r.detail) for r in rows], "no operator actions yet")

    # --- actions ---------------------------------------------------------------------------------

    def acknowledge(self, n_clicks: Any, author: Any, fingerprint: Any, note: Any) -> Any:
        """Queue an acknowledgement; the message says what happened or why not."""
        if not n_clicks:
            return no_update
        actions = self.ctx.sources.actions
        if actions is None:
            return notice(READ_ONLY, "error")
        try:
            actor = access.authorise(self.ctx.sources, Permission.ACKNOWLEDGE, _text(author))
        except access.Refused as exc:
            return notice(str(exc), "error")
        if not fingerprint:
            return notice("choose the alert to acknowledge", "error")
        try:
            command = locked(self.ctx, lambda: actions.request_ack(str(fingerprint), actor.name, _text(note),
                                                                   source=actor.source))
        except ValueError as exc:
            return notice(f"not sent: {exc}", "error")
        return notice(f"acknowledgement #{command} requested — {APPLIED_SOON}", "ok")

    def silence(self, n_clicks: Any, author: Any, device: Any, rule: Any, kind: Any, duration: Any,
                reason: Any, start: Any = 0) -> Any:
        """Queue a silence or maintenance window (reason and expiry required; it may start later)."""
        if not n_clicks:
            return no_update
        actions = self.ctx.sources.actions
        if actions is None:
            return notice(READ_ONLY, "error")
        permission = Permission.MAINTENANCE if kind == "maintenance" else Permission.SILENCE
        try:
            actor = access.authorise(self.ctx.sources, permission, _text(author))
        except access.Refused as exc:
            return notice(str(exc), "error")
        try:
            matchers = silence_matchers(self.ctx.sources.site, device, rule)
            starts_at, ends_at = silence_window(start, duration, self.now)
            command = locked(self.ctx, lambda: actions.request_silence(
                matchers, ends_at, _text(reason), actor.name, starts_at=starts_at,
                kind="maintenance" if kind == "maintenance" else "silence", source=actor.source))
        except ValueError as exc:
            return notice(f"not sent: {exc}", "error")
        when = "" if starts_at <= self.now else f"from {format_time(starts_at, self.ctx.tz)} "
        return notice(f"{'maintenance window' if kind == 'maintenance' else 'silence'} #{command} requested "
                      f"{when}until {format_time(ends_at, self.ctx.tz)} — {APPLIED_SOON}", "ok")

    def expire(self, clicks: Any, author: Any) -> Any:
        """Queue the expiry of the silence whose button was pressed."""
        trigger = dash.ctx.triggered_id
        if not isinstance(trigger, dict) or not any(t.get("value") for t in dash.ctx.triggered):
            return no_update
        return self.expire_silence(trigger.get("silence"), author)

    def expire_silence(self, silence_id: Any, author: Any) -> Any:
        """Queue the expiry of one silence."""
        actions = self.ctx.sources.actions
        if actions is None:
            return notice(READ_ONLY, "error")
        try:
            actor = access.authorise(self.ctx.sources, Permission.SILENCE, _text(author))
        except access.Refused as exc:
            return notice(str(exc), "error")
        if isinstance(silence_id, bool) or not isinstance(silence_id, int):
            return notice("unknown silence", "error")
        try:
            command = locked(self.ctx, lambda: actions.request_expire(silence_id, actor.name, source=actor.source))
        except ValueError as exc:
            return notice(f"not sent: {exc}", "error")
        return notice(f"expiry of silence #{silence_id} requested (command #{command}) — {APPLIED_SOON}", "ok")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _rule_names(ctx: PageContext) -> list[str]:
    return sorted(rule.name for rule in rules_of(ctx))


def layout(ctx: PageContext, query: dict[str, str]) -> html.Div:
    """Active alerts, the two action forms, silences, who did what, and the history."""
    site = ctx.sources.site
    writable = ctx.sources.actions is not None
    devices = [{"label": f"{d.label} ({d.id})" if d.name else d.id, "value": d.id} for d in site.devices]
    rules = [{"label": name, "value": name} for name in _rule_names(ctx)]
    forms = [notice(READ_ONLY, "error")] if not writable else []
    # Convenience only: the callbacks ask access.authorise on the server whatever the browser shows.
    who = access.viewer(ctx.sources)
    may_ack = writable and (who is None or who.may(Permission.ACKNOWLEDGE))
    may_silence = writable and (who is None or who.may(Permission.SILENCE) or who.may(Permission.MAINTENANCE))
    if writable and who is not None and not (may_ack or may_silence):
        forms.append(notice(f"signed in as {who.name} ({who.role.value}): this role may look, not act", "info"))
    forms.append(html.Div(className="op-columns", children=[
        html.Form(className="op-form", id="alerts-ack-form", children=[
            html.H2("Acknowledge", className="op-section-title"),
            _field("Alert", dcc.Dropdown(id=ACK_ALERT, options=[], placeholder="choose an active alert",
                                         disabled=not may_ack)),
            _field("Note", dcc.Input(id=ACK_NOTE, type="text", maxLength=2000, placeholder="what you are doing",
                                     disabled=not may_ack, className="op-input", debounce=False)),
            html.Button("Acknowledge", id=ACK_SUBMIT, type="button", className="op-button", n_clicks=0,
                        disabled=not may_ack),
            html.Div(id=ACK_MESSAGE, className="op-message"),
        ], **{"aria-label": "acknowledge an alert"}),
        html.Form(className="op-form", id="alerts-silence-form", children=[
            html.H2("Silence or maintenance window", className="op-section-title"),
            _field("Device", dcc.Dropdown(id=SIL_DEVICE, options=devices, value=query.get("device") or None,
                                          placeholder="any device", disabled=not may_silence)),
            _field("Rule", dcc.Dropdown(id=SIL_RULE, options=rules, placeholder="any rule", disabled=not may_silence)),
            _field("Kind", dcc.RadioItems(id=SIL_KIND, options=[{"label": label, "value": v} for label, v in KINDS],
                                          value="silence", inline=True, className="op-radio")),
            _field("Starts", dcc.Dropdown(id=SIL_START, options=[{"label": label, "value": s} for label, s in STARTS],
                                          value=0, clearable=False, disabled=not may_silence)),
            _field("For", dcc.Dropdown(id=SIL_DURATION, options=[{"label": label, "value": s}
                                                                 for label, s in DURATIONS],
                                       placeholder="how long (required)", disabled=not may_silence)),
            _field("Reason", dcc.Input(id=SIL_REASON, type="text", maxLength=2000, placeholder="why (required)",
                                       disabled=not may_silence, className="op-input")),
            html.Button("Silence", id=SIL_SUBMIT, type="button", className="op-button", n_clicks=0,
                        disabled=not may_silence),
            html.Div(id=SIL_MESSAGE, className="op-message"),
        ], **{"aria-label": "silence alerts"}),
    ]))
    return page_frame(NAME, "Alerts", intro=_intro(ctx), children=[
        _author(ctx, writable),
        *forms,
        section(ACTIVE, "Active alerts", html.Div(id=f"{ACTIVE}-body", children=html.P("loading…"))),
        html.P("", id=ESCALATION_NOTE, className="op-intro"),
        section(SILENCES, "Silences and maintenance windows", [
            html.Div(id=EXPIRE_MESSAGE, className="op-message"), html.Div(id=f"{SILENCES}-body")]),
        section(ACTIONS, "Who did what", html.Div(id=f"{ACTIONS}-body")),
        section(HISTORY, "History", html.Div(id=f"{HISTORY}-body")),
        dcc.Store(id=SENT, storage_type="memory"),
        dcc.Interval(id=TICK, interval=round(site.config.dashboard.refresh_s * 1000), n_intervals=0),
    ])


def _intro(ctx: PageContext) -> str:
    queued = "Actions are queued for the alerting loop, which applies them within a few seconds. "
    who = access.viewer(ctx.sources)
    if who is not None:
        return queued + f"They are signed as {who.name} ({who.role.value}) and recorded with your address."
    if access.accounts_enabled(ctx.sources):
        return queued + "They are signed with your account and your address."
    return queued + "No accounts here: your name and your address are recorded with each action."


def _author(ctx: PageContext, writable: bool) -> html.Div:
    """The "your name" field; with accounts it is hidden and ignored (the signed-in identity signs)."""
    if access.accounts_enabled(ctx.sources):
        return html.Div(dcc.Input(id=AUTHOR, type="hidden", value=""), style={"display": "none"})
    return html.Div(className="op-controls", children=[
        _field("Your name", dcc.Input(id=AUTHOR, type="text", maxLength=200, placeholder="required for actions",
                                      disabled=not writable, className="op-input",
                                      persistence=True, persistence_type="local")),
    ])


def _digest(value: Any) -> str:
    """A digest of a component tree (or any JSON-able value) as the browser would receive it."""
    return hashlib.sha1(json.dumps(value, cls=PlotlyJSONEncoder, sort_keys=True).encode(),
                        usedforsecurity=False).hexdigest()


def _field(label: str, control: Any) -> html.Label:
    return html.Label(className="op-field", children=[html.Span(label, className="op-label"), control])


def register(app: dash.Dash, ctx: PageContext) -> AlertsPage:
    """Wire the Alerts callbacks."""
    page = AlertsPage(ctx)
    app.callback(
        Output(f"{ACTIVE}-body", "children"), Output(ACK_ALERT, "options"), Output(f"{SILENCES}-body", "children"),
        Output(f"{ACTIONS}-body", "children"), Output(f"{HISTORY}-body", "children"),
        Output(ESCALATION_NOTE, "children"), Output(SENT, "data"),
        Input(TICK, "n_intervals"), State(ACK_ALERT, "options"), State(SENT, "data"),
    )(page.refresh)
    app.callback(
        Output(ACK_MESSAGE, "children"),
        Input(ACK_SUBMIT, "n_clicks"), State(AUTHOR, "value"), State(ACK_ALERT, "value"), State(ACK_NOTE, "value"),
        prevent_initial_call=True,
    )(page.acknowledge)
    app.callback(
        Output(SIL_MESSAGE, "children"),
        Input(SIL_SUBMIT, "n_clicks"), State(AUTHOR, "value"), State(SIL_DEVICE, "value"), State(SIL_RULE, "value"),
        State(SIL_KIND, "value"), State(SIL_DURATION, "value"), State(SIL_REASON, "value"), State(SIL_START, "value"),
        prevent_initial_call=True,
    )(page.silence)
    app.callback(
        Output(ACK_ALERT, "value"), Output(SIL_DEVICE, "value"), Output(SIL_RULE, "value"),
        Input({"type": PICK, "alert": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )(page.pick)
    app.callback(
        Output(EXPIRE_MESSAGE, "children"),
        Input({"type": EXPIRE, "silence": ALL}, "n_clicks"), State(AUTHOR, "value"),
        prevent_initial_call=True,
    )(page.expire)
    return page


PAGE = Page(name=NAME, path="/alerts", title="Alerts", layout=layout, register=register, order=30)
