"""Trends: any numeric points over 1 h … 1 year, downsampled in the store, with envelopes, alerts and drills.

The whole figure is recomputed at most once per bucket width (cached for every browser); between two
recomputations each tick only appends the newest readings to the lines (``extendData``). A new figure
for the series already shown goes out as a ``Patch`` of data and marks, so the operator's zoom stays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, Patch, State, dcc, html, no_update

from alerts.rules import Rule
from collectors.model import Quality, Reading
from dashboard.data import DashboardSources
from dashboard.figures import TrendSeries, compare_figure, empty_figure, plot_time
from dashboard.operator_ui import format_time, page_frame, rules_of, stored_alerts, table, transitions_of
from dashboard.pages import Page, PageContext
from dashboard.trend_data import (
    DEFAULT_RANGE_S,
    MAX_POINTS,
    MAX_SERIES,
    RANGES,
    SCENARIO_LIMIT,
    AlertMark,
    ScenarioPeriod,
    SeriesChoice,
    alert_marks,
    csv_filename,
    csv_text,
    default_series,
    envelope_lines,
    parse_range,
    parse_series,
    range_label,
    refresh_period,
    scenario_periods,
    series_options,
)
from storage.base import Bucket

log = logging.getLogger(__name__)

NAME = "trends"
SERIES = "trends-series"
RANGE = "trends-range"
CSV_BUTTON = "trends-csv"
DOWNLOAD = "trends-download"
TITLE = "trends-title"
GRAPH = "trends-graph"
DETAILS = "trends-details"
SHOWN = "trends-shown"  # what the browser's graph holds: revision, build time, trace of each series, last ts
TICK = "trends-tick"
STORE_UNAVAILABLE = "store unavailable"


@dataclass(frozen=True)
class TrendView:
    """One computed trend: the figure and what it was built from."""

    choices: tuple[SeriesChoice, ...]
    range_s: int
    start: float
    end: float
    buckets: tuple[tuple[Bucket, ...], ...]
    marks: tuple[AlertMark, ...]
    periods: tuple[ScenarioPeriod, ...]
    figure: go.Figure
    revision: str
    failed: bool = False

    def trace_of(self) -> dict[str, int]:
        """Index in ``figure.data`` of each series' mean line (by series position)."""
        return {trace.meta.split(":")[1]: i for i, trace in enumerate(self.figure.data)
                if isinstance(trace.meta, str) and trace.meta.startswith("mean:")}


class TrendsPage:
    """The Trends page's callbacks, bound to one context (plain methods: unit tests call them directly)."""

    def __init__(self, ctx: PageContext):
        self.ctx = ctx

    @property
    def sources(self) -> DashboardSources:
        """The dashboard's sources."""
        return self.ctx.sources

    def rules(self) -> Sequence[Rule]:
        """The alert rules the dashboard runs with: the envelopes are their levels, never hard-coded."""
        return rules_of(self.ctx)

    # --- callbacks -----------------------------------------------------------------------------

    def refresh(self, _n: Any, series: Any, range_s: Any, shown: Any) -> tuple:
        """(figure, extendData, title, details, shown): a new figure when due, else only new readings."""
        site = self.sources.site
        choices, range_ok = parse_series(site, series), parse_range(range_s)
        if not choices or range_ok is None:
            return empty_figure("choose one or more series"), no_update, "", [], None
        view = self.view(tuple(choices), range_ok)
        shown = shown if isinstance(shown, dict) else {}
        if shown.get("revision") == view.revision and shown.get("built") == view.end:
            extend, sent = self._extension(view, shown)
            if extend is None:
                return no_update, no_update, no_update, no_update, no_update
            return no_update, extend, no_update, no_update, {**shown, "sent": sent}
        state = {"revision": view.revision, "built": view.end, "traces": view.trace_of(),
                 "sent": {str(i): view.end for i in range(len(choices))}}
        figure: Any = view.figure
        if shown.get("revision") == view.revision:  # same series: new data, keep the browser's layout (zoom)
            figure = Patch()
            figure["data"] = [trace.to_plotly_json() for trace in view.figure.data]
            figure["layout"]["shapes"] = [shape.to_plotly_json() for shape in view.figure.layout.shapes]
            figure["layout"]["annotations"] = [a.to_plotly_json() for a in view.figure.layout.annotations]
        return figure, no_update, self.title(view), self.details(view), state

    def download(self, n_clicks: Any, series: Any, range_s: Any, shown: Any = None) -> Any:
        """The CSV of the buckets the graph shows: the same window as the browser's figure, queried again."""
        choices, range_ok = parse_series(self.sources.site, series), parse_range(range_s)
        if not n_clicks or not choices or range_ok is None:
            return no_update
        revision = f"{'+'.join(c.key for c in choices)}@{range_ok}"
        built = shown.get("built") if isinstance(shown, dict) and shown.get("revision") == revision else None
        end = float(built) if isinstance(built, int | float) and not isinstance(built, bool) else self.sources.clock()
        buckets = [self.sources.store.query(c.device.id, c.spec.name, end - range_ok, end, MAX_POINTS)
                   for c in choices]
        text = csv_text(list(zip(choices, buckets, strict=True)), self.ctx.tz)
        return dcc.send_string(text, csv_filename(choices, range_ok, end), type="text/csv")

    # --- the cached computation ------------------------------------------------------------------

    def view(self, choices: tuple[SeriesChoice, ...], range_s: int) -> TrendView:
        """The trend of these series over the last ``range_s``, computed at most once per refresh period."""
        period = refresh_period(range_s, self.sources.site.config.dashboard.refresh_s)
        key = ("trends", tuple(c.key for c in choices), range_s)
        return self.ctx.cache.get(key, lambda: self._compute(choices, range_s), period=period)

    def _compute(self, choices: tuple[SeriesChoice, ...], range_s: int) -> TrendView:
        end = self.sources.clock()
        start = end - range_s
        failed = False
        buckets: list[tuple[Bucket, ...]] = []
        for choice in choices:
            try:
                buckets.append(tuple(self.sources.store.query(choice.device.id, choice.spec.name, start, end,
                                                              MAX_POINTS)))
            except Exception:
                log.exception("trends: cannot read %s %s", choice.device.id, choice.spec.name)
                failed = True
                buckets.append(())
        marks, periods = self._marks(choices, start, end), self._periods(start, end)
        rules = self.rules()
        series = [TrendSeries(f"{c.device.id} {c.spec.name}", b, c.unit, c.device.poll_interval_s,
                              tuple(envelope_lines(rules, self.sources.site, c))) for c, b in zip(choices, buckets,
                                                                                                    strict=True)]
        revision = f"{'+'.join(c.key for c in choices)}@{range_s}"
        figure = compare_figure(series, start=start, end=end, bucket_s=(end - start) / MAX_POINTS,
                                uirevision=revision, tz=self.ctx.tz, marks=marks, periods=periods,
                                message=STORE_UNAVAILABLE if failed else None)
        return TrendView(choices, range_s, start, end, tuple(buckets), tuple(marks), tuple(periods), figure,
                         revision, failed)

    def _marks(self, choices: tuple[SeriesChoice, ...], start: float, end: float) -> list[AlertMark]:
        try:
            alerts = stored_alerts(self.ctx)
            if alerts is None:
                return []
            return alert_marks(alerts, transitions_of(self.ctx), {c.device.id for c in choices}, start, end)
        except Exception:
            log.exception("trends: cannot read alert transitions")
            return []

    def _periods(self, start: float, end: float) -> list[ScenarioPeriod]:
        try:
            return scenario_periods(self.sources.store.events(start, end, limit=SCENARIO_LIMIT), start, end)
        except Exception:
            log.exception("trends: cannot read scenario events")
            return []

    def _extension(self, view: TrendView, shown: dict) -> tuple[Any, dict]:
        """``extendData`` with the readings newer than those the browser has, or None."""
        devices = sorted({c.device.id for c in view.choices})
        try:
            latest = self.ctx.cache.get(("trends-latest", tuple(devices)), lambda: self.sources.store.latest(devices))
        except Exception:
            log.exception("trends: latest readings unavailable; the live extension waits for the store")
            return None, shown.get("sent", {})
        by_key: dict[tuple[str, str], Reading] = {(r.device, r.point): r for r in latest}
        sent = dict(shown.get("sent") or {})
        traces = shown.get("traces") or {}
        xs, ys, indices = [], [], []
        for position, choice in enumerate(view.choices):
            reading = by_key.get((choice.device.id, choice.spec.name))
            index = traces.get(str(position))
            last = sent.get(str(position), view.end)
            if reading is None or index is None or reading.ts <= last or reading.quality != Quality.GOOD \
                    or reading.value is None:
                continue
            xs.append([plot_time(reading.ts, self.ctx.tz)])
            ys.append([reading.value])
            indices.append(index)
            sent[str(position)] = reading.ts
        if not indices:
            return None, sent
        return [{"x": xs, "y": ys}, indices], sent

    # --- text around the graph ---------------------------------------------------------------------

    def title(self, view: TrendView) -> str:
        """Series names and the range, as text above the graph."""
        names = "; ".join(choice.label for choice in view.choices)
        return f"{names} — last {range_label(view.range_s)}"

    def details(self, view: TrendView) -> list:
        """Envelopes, alert marks and drill periods as tables (names as text, never in the figure)."""
        rules = self.rules()
        envelope_rows = []
        for choice in view.choices:
            levels: dict[str, dict[str, list[str]]] = {}
            for line in envelope_lines(rules, self.sources.site, choice):
                sign = ">" if line.bound == "above" else "<"
                levels.setdefault(line.rule, {}).setdefault(line.severity.value, []).append(f"{sign} {line.value:g}")
            for rule, by_severity in levels.items():
                envelope_rows.append((choice.label, ", ".join(by_severity.get("warning", [])) or "—",
                                      ", ".join(by_severity.get("critical", [])) or "—", rule))
        labels = {c.device.id: c.device.label for c in view.choices}
        alert_rows = [(format_time(m.at, self.ctx.tz), labels.get(m.device, m.device), m.rule, m.state,
                       m.severity.value) for m in reversed(view.marks)]
        period_rows = [(p.name, format_time(p.start, self.ctx.tz),
                        format_time(p.end, self.ctx.tz) if p.end is not None else "running") for p in view.periods]
        return [
            html.Div(className="op-columns", children=[
                html.Div([html.H3("Envelopes (from the alert rules)"),
                          table(("series", "warning", "critical", "rule"), envelope_rows,
                                "no envelope for these points")]),
                html.Div([html.H3("Alerts in this range"),
                          table(("time", "device", "rule", "state", "severity"), alert_rows[:50],
                                "no alert fired or resolved in this range", ())]),
                html.Div([html.H3("Scenarios and drills"),
                          table(("scenario", "from", "to"), period_rows, "no scenario ran in this range")]),
            ]),
        ]


def layout(ctx: PageContext, query: dict[str, str]) -> html.Div:
    """Series and range pickers, the CSV button, the graph and the tables of marks under it."""
    site = ctx.sources.site
    options = [{"label": o.label, "value": o.value} for o in series_options(site)]
    wanted = query.get("series", "").split(",") if query.get("series") else []
    chosen = [c.key for c in parse_series(site, wanted)] or default_series(site, query.get("device"))
    range_s = parse_range(_int(query.get("range"))) or DEFAULT_RANGE_S
    return page_frame(NAME, "Trends", intro=f"Compare up to {MAX_SERIES} series; long ranges are downsampled "
                      "in the store. Shaded: warning envelope; dashed/dotted: warning/critical levels; "
                      "▲ alert fired, ▼ resolved; violet: scenario or drill.", children=[
        html.Div(className="op-controls", children=[
            html.Label(className="op-field op-field--wide", children=[
                html.Span("Series", className="op-label"),
                dcc.Dropdown(id=SERIES, options=options, value=chosen, multi=True, clearable=True, searchable=True,
                             maxHeight=400)]),
            html.Label(className="op-field", children=[
                html.Span("Range", className="op-label"),
                dcc.Dropdown(id=RANGE, options=[{"label": label, "value": s} for label, s in RANGES], value=range_s,
                             clearable=False, searchable=False)]),
            html.Button("Download CSV", id=CSV_BUTTON, className="op-button", n_clicks=0),
        ]),
        html.H2("", id=TITLE, className="op-trend-title"),
        dcc.Graph(id=GRAPH, className="op-graph", responsive=True, style={"height": "520px"},
                  config={"displaylogo": False}, figure=empty_figure("loading…")),
        html.Div(id=DETAILS, className="op-details"),
        dcc.Store(id=SHOWN, storage_type="memory"),
        dcc.Download(id=DOWNLOAD),
        dcc.Interval(id=TICK, interval=round(site.config.dashboard.refresh_s * 1000), n_intervals=0),
    ])


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def register(app: dash.Dash, ctx: PageContext) -> TrendsPage:
    """Wire the Trends callbacks."""
    page = TrendsPage(ctx)
    app.callback(
        Output(GRAPH, "figure"), Output(GRAPH, "extendData"), Output(TITLE, "children"), Output(DETAILS, "children"),
        Output(SHOWN, "data"),
        Input(TICK, "n_intervals"), Input(SERIES, "value"), Input(RANGE, "value"), State(SHOWN, "data"),
    )(page.refresh)
    app.callback(
        Output(DOWNLOAD, "data"),
        Input(CSV_BUTTON, "n_clicks"), State(SERIES, "value"), State(RANGE, "value"), State(SHOWN, "data"),
        prevent_initial_call=True,
    )(page.download)
    return page


PAGE = Page(name=NAME, path="/trends", title="Trends", layout=layout, register=register, order=40)
