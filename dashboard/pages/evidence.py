"""Evidence: what an auditor checks once a quarter, for a chosen period, and the signed pack to take away.

Generator test runs, UPS self-tests, power events, envelope compliance per room and sensor, the thresholds
in force, the audit log's own state — and, apart and labelled, the drills. Every figure is read by the
``evidence`` package's readers (dashboard/evidence_views.py), the same ones the exported pack uses.

The export is authorised on the server (``dashboard.access.authorise(..., "export", name)``), never by
hiding the button; ``evidence.pack.export_pack`` writes the audit record before it builds anything.
Names are pseudonymised unless revealed with a reason. Everything from records is a text child.

On a sharded site (``facwatch collect --shard i/n``) every shard keeps its own records and audit log: the
page offers the shards (default: the one holding the power chain, where generator runs, self-tests and
power events are recorded) and reads, judges and exports one shard at a time, as
``facwatch evidence export --shard I/N`` does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component

from alerts.sharded import shard_set_of
from collectors.sharding import POWER_CHAIN, ShardPlan, plan_shards, shard_site
from dashboard import ids
from dashboard.access import Refused, accounts_enabled, authorise
from dashboard.evidence_views import (
    MISSING,
    AuditStatus,
    ComplianceRow,
    EvidenceSource,
    EvidenceView,
    Kpi,
    Period,
    Section,
    audit_status,
    build_pack,
    evidence_view,
    export_request,
    month_of,
    month_options,
    month_period,
    period_from_dates,
    store_file,
    utc_text,
)
from dashboard.pages import Page, PageContext

log = logging.getLogger(__name__)

NAME = "evidence"
MONTH = "evidence-month"
DATES = "evidence-dates"
REFRESH = "evidence-refresh"
PERIOD = "evidence-period"
BODY = "evidence-body"
AUDIT = "evidence-audit"
KIND = "evidence-kind"
AUTHOR = "evidence-author"
REVEAL = "evidence-reveal"
REASON = "evidence-reason"
EXPORT = "evidence-export"
EXPORT_MESSAGE = "evidence-export-message"
DOWNLOAD = "evidence-download"
SHARD = "evidence-shard"
CACHE_S = 60.0  # a period's figures are recomputed at most once a minute (or on Refresh)
AUDIT_CACHE_S = 30.0  # verify_log reads the whole log: at most twice a minute for every browser
NO_STORE = "this dashboard has no SQLite file to read evidence from (evidence lives in the site's SQLite store)"


class NoEvidenceFile(Exception):
    """There is no SQLite file to read evidence from (the message says why)."""


class EvidencePage:
    """The Evidence page's callbacks (plain methods; unit tests call them directly)."""

    def __init__(self, ctx: PageContext):
        self.ctx = ctx
        self._export_lock = threading.Lock()  # one pack at a time: building one is CPU-heavy

    def rules(self) -> Sequence[Any]:
        """The alert rules the dashboard runs (the envelopes compliance is judged against)."""
        return evidence_rules(self.ctx)

    def readings(self) -> Any:
        """The dashboard's ReadStore: compliance reads the samples there (InfluxDB with ``storage.influx``)."""
        return self.ctx.sources.store

    def source(self, shard: Any = None) -> EvidenceSource:
        """The file, site and readings to read; on a sharded site those of ``shard`` (default: the power chain's)."""
        shards = shard_set_of(self.ctx.sources.alerts)
        if shards is None:
            db = store_file(self.ctx.sources)
            if db is None:
                raise NoEvidenceFile(NO_STORE)
            return EvidenceSource(db, self.ctx.sources.site, self.readings())
        index = shard if _is_shard_index(shard, shards.count) else default_shard(self.ctx)
        file = shards.shard(index)
        if not file.path.is_file():  # never created here: an empty file would pass for a shard without records
            raise NoEvidenceFile(f"shard {file.name} has no SQLite file at {file.path} (has `facwatch collect "
                                 f"--shard {file.name}` ever run?)")
        site = self.ctx.cache.get(("evidence-shard-site", file.shard),
                                  lambda: shard_site(self.ctx.sources.site, file.shard, self.rules()), period=3600)
        # without storage.influx a shard's readings are in its own file, which compliance then reads
        readings = self.readings() if self.ctx.sources.site.influx is not None else None
        return EvidenceSource(file.path, site, readings, file.shard)

    def view(self, period: Period, refresh: int = 0, shard: Any = None) -> EvidenceView | None:
        """The period's figures, computed once a minute for every browser (None without a SQLite file)."""
        try:
            src = self.source(shard)
        except NoEvidenceFile:
            return None
        return self.ctx.cache.get(("evidence", period, refresh, src.shard),
                                  lambda: evidence_view(src.db, src.site, self.rules(), period,
                                                        now=self.ctx.sources.clock(), readings=src.readings),
                                  period=CACHE_S)

    # --- callbacks -------------------------------------------------------------------------------

    def pick_month(self, month: Any) -> tuple[Any, Any]:
        """The month dropdown sets the from/to dates."""
        period = month_period(month)
        if period is None:
            return no_update, no_update
        return period.first_day.isoformat(), period.last_day.isoformat()

    def body(self, first: Any, last: Any, refresh: Any = 0, shard: Any = None) -> tuple[Any, str]:
        """Every section for the chosen period (and shard), and the period in words."""
        try:
            period = period_from_dates(first, last)
        except ValueError as exc:
            return notice(str(exc), "error"), ""
        clicks = refresh if isinstance(refresh, int) else 0
        try:
            src = self.source(shard)
            view = self.view(period, clicks, shard)
        except NoEvidenceFile as exc:
            return notice(str(exc), "error"), period.label
        except Exception:
            log.exception("evidence page: cannot read the evidence")
            return notice("the evidence could not be read; see the dashboard log", "error"), period.label
        if view is None:
            return notice(NO_STORE, "error"), period.label
        where = f", shard {src.shard_name} ({len(src.site.devices)} devices)" if src.shard else ""
        return sections(view), f"Period {period.label}{where}"

    def audit(self, _n: Any = None, shard: Any = None) -> Component:
        """The audit log's state (verify_log; a shard's own on a sharded site), refreshed every AUDIT_CACHE_S."""
        try:
            src = self.source(shard)
        except NoEvidenceFile as exc:
            return notice(str(exc), "error")
        try:
            status = self.ctx.cache.get(("evidence-audit", src.shard), lambda: audit_status(src.db),
                                        period=AUDIT_CACHE_S)
        except Exception:
            log.exception("evidence page: cannot verify the audit log")
            return notice("the audit log could not be verified; see the dashboard log", "error")
        return audit_panel(status)

    def export(self, n_clicks: Any, first: Any, last: Any, kind: Any, author: Any, reveal: Any,
               reason: Any, shard: Any = None) -> tuple[Any, Any]:
        """Authorise, build the pack for the period (and shard; audited by export_pack), hand it to the browser."""
        if not n_clicks:
            return no_update, no_update
        try:
            actor = authorise(self.ctx.sources, "export", author if isinstance(author, str) else None)
        except Refused as exc:
            return notice(f"not exported: {exc}", "error"), no_update
        try:
            request = export_request(first, last, kind, reveal, reason)
        except ValueError as exc:
            return notice(f"not exported: {exc}", "error"), no_update
        try:
            src = self.source(shard)
        except NoEvidenceFile as exc:
            return notice(f"not exported: {exc}", "error"), no_update
        from evidence.auditlog import AuditWriteError

        if not self._export_lock.acquire(timeout=0.5):
            return notice("not exported: another pack is being built; try again in a moment", "error"), no_update
        try:
            pack = build_pack(src.db, src.site, request, actor.name, f"dashboard:{actor.source}",
                              readings=src.readings, shard=src.shard)
        except AuditWriteError as exc:
            return notice(f"export refused: the audit log cannot record it ({exc})", "error"), no_update
        except ValueError as exc:  # a bad request or an unusable signing key
            return notice(f"not exported: {exc}", "error"), no_update
        except (sqlite3.Error, OSError, RuntimeError) as exc:  # RuntimeError: InfluxQueryError (readings)
            log.exception("evidence export failed")
            return notice(f"export failed, nothing written: {exc}", "error"), no_update
        finally:
            self._export_lock.release()
        message = f"shard {src.shard_name}: {pack.message}" if src.shard else pack.message
        return notice(message, "ok"), dcc.send_bytes(pack.content, pack.filename)


def evidence_rules(ctx: PageContext) -> Sequence[Any]:
    """The alert rules the dashboard runs (the envelopes compliance is judged against; the shard plan's too)."""
    rules = getattr(ctx.cache, "rules", None)
    if rules is None:
        rules = ctx.sources.rules
    if rules is None:
        from alerts.rules import load_rules

        rules = ctx.cache.get("evidence-rules", lambda: tuple(load_rules()), period=3600)
    return rules


def shard_plan(ctx: PageContext) -> ShardPlan | None:
    """How the collectors split the site (None: unsharded), as ``facwatch collect --shard`` plans it."""
    shards = shard_set_of(ctx.sources.alerts)
    if shards is None:
        return None
    return ctx.cache.get(("evidence-shard-plan", shards.count),
                         lambda: plan_shards(ctx.sources.site, shards.count, evidence_rules(ctx)), period=3600)


def default_shard(ctx: PageContext) -> int:
    """The shard holding the power chain (generator runs, self-tests, power events are recorded there), else 1."""
    plan = shard_plan(ctx)
    return 1 if plan is None else plan.trap_shard


def _is_shard_index(value: Any, count: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= count


# --- pieces ----------------------------------------------------------------------------------------

def notice(text: str, kind: str = "info") -> html.Div:
    """A one-line message: ``info``, ``ok``, ``error``."""
    return html.Div(text, className=f"ev-notice ev-notice--{kind}", role="status")


def badge(text: str, state: str) -> html.Span:
    """A state word on its colour (the word says it; colour is a second signal)."""
    return html.Span(text, className=f"ev-badge ev-badge--{state}")


def kpis(items: Sequence[Kpi]) -> html.Dl:
    """A row of labelled figures."""
    return html.Dl(className="ev-kpis", children=[
        html.Div(className=f"ev-kpi ev-kpi--{k.state or 'plain'}", **{"data-kpi": k.label},
                 children=[html.Dt(k.label), html.Dd(k.text)]) for k in items])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str, row_attrs: Sequence[dict] = ()) -> Any:
    """A plain table (cells are text or components), or a muted line when there are no rows."""
    if not rows:
        return html.P(empty, className="ev-empty")
    body = []
    for index, row in enumerate(rows):
        attrs = row_attrs[index] if index < len(row_attrs) else {}
        body.append(html.Tr([html.Td(cell) for cell in row], **attrs))
    return html.Table(className="ev-table", children=[html.Thead(html.Tr([html.Th(h) for h in headers])),
                                                      html.Tbody(body)])


def section(key: str, title: str, content: Section, body: Any, intro: str = "", extra_class: str = "") -> html.Section:
    """A titled panel with its KPIs, or the error that kept it empty."""
    children: list[Any] = [html.H2(title, className="ev-section-title")]
    if intro:
        children.append(html.P(intro, className="ev-intro"))
    if content.error:
        children.append(notice(content.error, "error"))
    else:
        if content.kpis:
            children.append(kpis(content.kpis))
        children.append(body)
    return html.Section(id=f"evidence-{key}", className=f"ev-section {extra_class}".strip(), children=children)


def reasons(items: Sequence[str]) -> Any:
    """Why a run failed, one line each."""
    return html.Ul([html.Li(text) for text in items], className="ev-reasons") if items else ""


def notes_cell(items: Sequence[str]) -> Any:
    """A record's notes (e.g. facwatch restarted during it), one line each; a dash when there are none."""
    return html.Ul([html.Li(text) for text in items], className="ev-reasons ev-notes") if items else MISSING


RESULT_STATE = {"pass": "ok", "fail": "critical", "aborted": "critical", "warning": "warning",
                "not judged": "unknown"}


def generator_table(content: Section) -> Any:
    """Generator runs: kind, start, duration at the minimum load, pass/fail with reasons."""
    rows = [(r.device, r.kind, r.start, r.run, [html.Div(r.at_load), html.Div(r.at_load_label, className="ev-muted")],
             r.load_mean, r.start_time, badge(r.result, RESULT_STATE.get(r.result, "unknown")), reasons(r.reasons),
             notes_cell(r.notes))
            for r in content.rows]
    return table(("generator", "kind", "start (UTC)", "run", "longest at min. load", "mean load", "start time",
                  "result", "reasons", "notes"), rows, "no generator runs in this period",
                 [{"data-run": str(r.id)} for r in content.rows])


def ups_table(content: Section) -> Any:
    """UPS self-tests with the battery figures during each."""
    rows = [(r.device, r.start, r.duration, badge(r.result, RESULT_STATE.get(r.result, "unknown")), r.vendor_result,
             r.voltage_dip, r.runtime_min, r.charge_min, notes_cell(r.notes)) for r in content.rows]
    return table(("UPS", "start (UTC)", "duration", "result", "device says", "voltage dip", "lowest runtime",
                  "lowest charge", "notes"), rows, "no UPS self-tests in this period")


def power_table(content: Section) -> Any:
    """Power events, each with its KPIs and notes."""
    rows = [(r.start, r.duration, r.cause, kpis(r.kpis),
             badge("LOAD LOST", "critical") if r.load_lost else badge("load kept", "ok"),
             html.Ul([html.Li(n) for n in r.notes], className="ev-reasons") if r.notes else "")
            for r in content.rows]
    return table(("start (UTC)", "duration", "cause", "KPIs", "load", "notes"), rows, "no power events in this period")


def envelope_cell(row: ComplianceRow) -> Any:
    """Each envelope of a sensor point with the share of the period inside it."""
    return [html.Div(className=f"ev-envelope ev-envelope--{f.state}", **{"data-level": f.level}, children=[
        html.Span(f"{f.level} {f.band}", className="ev-envelope-band"),
        html.Span(f"{f.inside} inside", className="ev-envelope-inside")]) for f in row.envelopes]


def excursions(row: ComplianceRow) -> Any:
    """The stretches outside an envelope with the alert that covered each and its acknowledgement."""
    if not row.excursions:
        return html.Span("none", className="ev-muted")
    items = []
    for e in row.excursions:
        ack = [html.Div(f"acknowledged by {e.acknowledged_by} at {e.acknowledged_at}", className="ev-ack")] \
            if e.acknowledged_by else [html.Div("not acknowledged", className="ev-muted")]
        if e.note:
            ack.append(html.Div(e.note, className="ev-note"))
        items.append(html.Li(className="ev-excursion", children=[
            html.Div(f"{e.level}: {e.start} – {e.end} ({e.duration}), peak {e.peak}; alert: {e.alert}"), *ack]))
    return html.Ul(items, className="ev-excursions")


def compliance_table(content: Section) -> Any:
    """Per room and sensor point: % inside each envelope, gaps, excursions, the rule version."""
    rows = [(r.month, r.room, [html.Div(r.device_label), html.Div(r.device, className="ev-muted")],
             r.point.replace(".", " "), envelope_cell(r),
             [html.Div(r.gap), html.Div(r.gap_detail, className="ev-muted")],
             excursions(r), [html.Div(r.rule, className="ev-muted"), html.Code(r.rule_hash, className="ev-hash")])
            for r in content.rows]
    return table(("month", "room", "sensor", "point", "envelopes", "data gap", "excursions", "rule version"),
                 rows, "no envelope rules match a sensor of this site",
                 [{"data-device": r.device, "data-point": r.point, "className": f"ev-row--{r.state}"}
                  for r in content.rows])


def threshold_table(content: Section) -> Any:
    """Every rule version in force at some time in the period."""
    rows = [(r.rule, html.Code(r.hash, className="ev-hash"), r.valid_from, r.valid_to, r.changed_by, r.reason)
            for r in content.rows]
    return table(("rule", "version", "from (UTC)", "until", "changed by", "reason"), rows,
                 "no rule versions recorded (the alert engine records them when it starts)")


def drills_body(view: EvidenceView) -> Any:
    """Drill runs and the records made during drills: shown apart, never in the figures above."""
    runs = view.drills
    run_rows = [(f"#{r.id}", badge("DRILL", "drill"), r.scenario, r.started, r.ended,
                 badge(r.result, RESULT_STATE.get(r.result, "unknown")), r.time_scale, r.expected, reasons(r.failures))
                for r in runs.rows]
    records = view.drill_records
    record_rows = [(badge("DRILL", "drill"), r.scenario, r.kind, r.device, r.start, r.summary) for r in records.rows]
    parts: list[Any] = []
    if runs.error:
        parts.append(notice(runs.error, "error"))
    else:
        parts += [kpis(runs.kpis), table(("drill", "", "scenario", "started (UTC)", "ended", "result", "speed",
                                          "expected alerts", "failures"), run_rows, "no drills in this period")]
    parts.append(html.H3("Records made during drills and simulations"))
    parts.append(notice(records.error, "error") if records.error else
                 table(("", "scenario", "record", "device", "start (UTC)", "summary"), record_rows,
                       "no drill-tagged records in this period"))
    return parts


def sections(view: EvidenceView) -> list[Component]:
    """The page's body for one period."""
    return [
        section("generator", "Generator test runs", view.generator_runs, generator_table(view.generator_runs),
                "Real runs only. A monthly test passes with the load held unbroken at the minimum load for the "
                "required time (criteria stored with each run)."),
        section("ups", "UPS self-tests", view.ups_tests, ups_table(view.ups_tests)),
        section("power", "Power events", view.power_events, power_table(view.power_events),
                "Each mains failure or UPS-on-battery incident, from first sign to everything back to normal."),
        section("compliance", "Envelope compliance", view.compliance, compliance_table(view.compliance),
                "Per sensor point and month: the share of the period inside each envelope; time without good "
                "data is a gap and never counts as inside. Drill readings are left out."
                + (f" The period is not over: figures up to {utc_text(view.compliance_until)}."
                   if view.compliance_until is not None else "")),
        section("thresholds", "Thresholds in force", view.thresholds, threshold_table(view.thresholds),
                "Every version of every alert rule that applied during the period, with who changed it and why."),
        html.Section(id="evidence-drills", className="ev-section ev-section--drills", children=[
            html.H2(["Drills ", badge("NOT EVIDENCE OF REAL EVENTS", "drill")], className="ev-section-title"),
            html.P("Scripted drills and simulations (facwatch drill, demo scenarios). They are kept out of "
                   "every figure above and out of evidence packs; the drills pack holds the drill runs and their "
                   "timings.", className="ev-intro"),
            *drills_body(view)]),
    ]


def audit_panel(status: AuditStatus) -> Component:
    """The audit log's verification result, head and last checkpoint."""
    state = {"ok": "ok", "problems": "critical", "unavailable": "warning"}[status.state]
    facts = [Kpi("head sequence", status.head_seq), Kpi("records", status.records),
             Kpi("last checkpoint", status.last_checkpoint), Kpi("checkpoints", status.checkpoints)]
    children: list[Any] = [html.Div(badge(status.headline, state), className="ev-audit-headline",
                                    **{"data-state": status.state}), kpis(facts)]
    if status.problems:
        children.append(html.Ul([html.Li(p) for p in status.problems], className="ev-problems"))
    if status.warnings:
        children.append(html.Ul([html.Li(w) for w in status.warnings], className="ev-warnings"))
    return html.Div(children)


def _field(label: str, control: Any, extra: str = "") -> html.Label:
    return html.Label(className=f"ev-field {extra}".strip(), children=[html.Span(label, className="ev-label"), control])


def export_form(ctx: PageContext) -> html.Section:
    """Kind, who, reveal names (with a reason), the button, the building state and the download."""
    fields: list[Any] = [
        _field("Pack", dcc.RadioItems(id=KIND, value="evidence", inline=True, className="ev-radio", options=[
            {"label": "Evidence (real events)", "value": "evidence"}, {"label": "Drills", "value": "drills"}])),
    ]
    if accounts_enabled(ctx.sources):
        fields.append(html.Div(dcc.Input(id=AUTHOR, type="hidden", value=""), className="ev-hidden"))
        who = html.P("The export is signed with your login and recorded in the audit log.", className="ev-intro")
    else:
        fields.append(_field("Your name", dcc.Input(id=AUTHOR, type="text", maxLength=200, className="ev-input",
                                                    placeholder="required: recorded in the audit log",
                                                    persistence=True, persistence_type="local")))
        who = html.P("This dashboard has no accounts: the export is recorded with your name and address.",
                     className="ev-intro")
    fields += [
        dcc.Checklist(id=REVEAL, value=[], className="ev-check",
                      options=[{"label": " Reveal personal names (default: pseudonyms)", "value": "reveal"}]),
        _field("Reason for revealing names",
               dcc.Input(id=REASON, type="text", maxLength=500, className="ev-input",
                         placeholder="required when names are revealed"), "ev-field--wide"),
        html.Button("Export evidence pack", id=EXPORT, type="button", n_clicks=0, className="ev-button"),
    ]
    return html.Section(id="evidence-export-form", className="ev-section ev-export", children=[
        html.H2("Export evidence pack", className="ev-section-title"),
        html.P("A signed zip of the period's records, compliance, alert history, thresholds and audit-log segment "
               "(check it with: facwatch evidence verify pack.zip).", className="ev-intro"),
        who,
        html.Div(fields, className="ev-controls"),
        dcc.Loading(type="circle", overlay_style={"visibility": "visible", "opacity": 0.5},
                    children=[html.Div(id=EXPORT_MESSAGE, className="ev-message"), dcc.Download(id=DOWNLOAD)]),
    ])


def shard_picker(ctx: PageContext) -> Component:
    """The shard dropdown on a sharded site; hidden (and empty) otherwise, so the callbacks always find it."""
    plan = shard_plan(ctx)
    if plan is None:
        return html.Div(dcc.Dropdown(id=SHARD, options=[], value=None), className="ev-hidden")
    chain = {group.shard(plan.count) for group in plan.groups if POWER_CHAIN in group.rules}
    options = [{"label": f"shard {index}/{plan.count}" + (" (power chain)" if index in chain else ""),
                "value": index} for index in range(1, plan.count + 1)]
    return _field("Shard (each keeps its own records and audit log)", dcc.Dropdown(
        id=SHARD, options=options, value=plan.trap_shard, clearable=False, className="ev-shard"))


def layout(ctx: PageContext, _query: dict[str, str]) -> Component:
    """Period picker, audit-log status, the export form and the sections (filled by the period callback)."""
    now = ctx.sources.clock()
    current = month_of(now)
    months = [{"label": label, "value": value} for label, value in month_options(now)]
    return html.Div(id="evidence-page", className="ev-page", children=[
        html.H1("Evidence", className="ev-title"),
        html.P("For auditors: the period's generator tests, UPS self-tests, power events, envelope compliance and "
               "thresholds in force, read from the site's records. Times are UTC; periods are whole UTC days.",
               className="ev-intro"),
        html.Div(className="ev-controls ev-period", children=[
            _field("Month", dcc.Dropdown(id=MONTH, options=months, value=months[0]["value"], clearable=False,
                                         className="ev-month")),
            _field("From – to (UTC, both days included)", dcc.DatePickerRange(
                id=DATES, start_date=current.first_day.isoformat(), end_date=current.last_day.isoformat(),
                display_format="YYYY-MM-DD", minimum_nights=0, className="ev-dates")),
            shard_picker(ctx),
            html.Button("Refresh", id=REFRESH, type="button", n_clicks=0, className="ev-button ev-button--quiet"),
            html.Span("", id=PERIOD, className="ev-period-label"),
        ]),
        html.Div(className="ev-columns", children=[
            html.Section(id="evidence-audit-log", className="ev-section ev-audit", children=[
                html.H2("Audit log", className="ev-section-title"),
                html.Div(id=AUDIT, children=html.P("verifying…", className="ev-empty")),
            ]),
            export_form(ctx),
        ]),
        dcc.Loading(type="default", children=html.Div(id=BODY, className="ev-body",
                                                      children=html.P("loading…", className="ev-empty"))),
    ])


def register(app: dash.Dash, ctx: PageContext) -> EvidencePage:
    """Wire the Evidence callbacks."""
    page = EvidencePage(ctx)
    app.callback(Output(DATES, "start_date"), Output(DATES, "end_date"), Input(MONTH, "value"),
                 prevent_initial_call=True)(page.pick_month)
    app.callback(Output(BODY, "children"), Output(PERIOD, "children"),
                 Input(DATES, "start_date"), Input(DATES, "end_date"), Input(REFRESH, "n_clicks"),
                 Input(SHARD, "value"))(page.body)
    app.callback(Output(AUDIT, "children"), Input(ids.TICK, "n_intervals"), Input(SHARD, "value"))(page.audit)
    app.callback(Output(EXPORT_MESSAGE, "children"), Output(DOWNLOAD, "data"),
                 Input(EXPORT, "n_clicks"), State(DATES, "start_date"), State(DATES, "end_date"), State(KIND, "value"),
                 State(AUTHOR, "value"), State(REVEAL, "value"), State(REASON, "value"), State(SHARD, "value"),
                 prevent_initial_call=True)(page.export)
    return page


PAGE = Page(name=NAME, path="/evidence", title="Evidence", layout=layout, register=register, order=80)
