"""Plotly figures from downsampled buckets (no Dash here).

No device- or user-supplied string goes into a figure: plotly renders a subset of HTML (including
links) in titles and annotations, so names are shown by the page around the graph instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

import plotly.graph_objects as go

from collectors.model import Severity
from dashboard.trend_data import AlertMark, EnvelopeLine, ScenarioPeriod, safe_name
from storage.base import Bucket

# Colours match dashboard/assets/facwatch.css.
BACKGROUND = "#10161d"
GRID = "#2a3440"
TEXT = "#e8edf2"
MUTED = "#9fb0c0"
LINE = "#4fc3f7"
BAND = "rgba(79, 195, 247, 0.22)"
FONT_SIZE = 16
# One colour per compared series (the first is the single-series colour); distinct on the dark background.
PALETTE = ("#4fc3f7", "#ffb74d", "#ce93d8", "#a5d6a7", "#f48fb1", "#fff59d")
SEVERITY_COLOURS = {Severity.CRITICAL: "#ff3b4f", Severity.WARNING: "#f2b705", Severity.INFO: "#3d8fe0",
                    Severity.OK: "#2fbf55", Severity.UNKNOWN: "#b58cff"}
ENVELOPE_FILL = "rgba(47, 191, 85, 0.07)"
SCENARIO_FILL = "rgba(181, 140, 255, 0.14)"
MIN_LABELLED = 0.03  # a drill narrower than this share of the window is shaded but not named (labels collide)
MAX_ALERT_MARKS = 100  # a flapping alert must not bury the graph under lines


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of buckets with no gap inside: x as epoch seconds, and mean/min/max per bucket."""

    x: tuple[float, ...]
    mean: tuple[float, ...]
    minimum: tuple[float, ...]
    maximum: tuple[float, ...]


def segments(buckets: Sequence[Bucket], max_gap_s: float) -> list[Segment]:
    """Split buckets where data is missing: an all-missing bucket, or more than ``max_gap_s`` between buckets."""
    runs: list[list[Bucket]] = []
    previous: Bucket | None = None
    for bucket in sorted(buckets, key=lambda b: b.start):
        if bucket.count == 0 or bucket.mean is None:
            previous = None  # a bucket of only MISSING/INVALID samples: the line must break here
            continue
        if previous is None or bucket.start - previous.start > max_gap_s:
            runs.append([])
        runs[-1].append(bucket)
        previous = bucket
    return [_segment(run) for run in runs]


def _segment(run: Sequence[Bucket]) -> Segment:
    return Segment(
        x=tuple(b.start for b in run), mean=tuple(b.mean for b in run),
        minimum=tuple(b.minimum if b.minimum is not None else b.mean for b in run),
        maximum=tuple(b.maximum if b.maximum is not None else b.mean for b in run),
    )


def max_gap(bucket_s: float, poll_interval_s: float) -> float:
    """Largest distance between bucket starts that is still one unbroken line.

    Polls land in buckets up to one bucket width apart from their true spacing, and one lost poll is
    not yet a gap worth showing; a collector that was down for longer is.
    """
    return bucket_s + 2 * poll_interval_s


def trend_figure(buckets: Sequence[Bucket], *, start: float, end: float, bucket_s: float,
                 poll_interval_s: float, unit: str, uirevision: str, tz: tzinfo | None = None,
                 message: str | None = None) -> go.Figure:
    """Mean as a line over a min–max band, broken (not joined) where data is missing."""
    runs = segments(buckets, max_gap(bucket_s, poll_interval_s))
    figure = go.Figure(data=_band(runs, tz) + _mean(runs, tz))
    figure.update_layout(**_layout(unit, uirevision))
    if not runs:
        # Without data autorange has nothing to fit; show the requested window and say why it is empty.
        figure.update_xaxes(range=[_time(start, tz), _time(end, tz)])
        figure.update_yaxes(visible=False)
        figure.add_annotation(text=message or "no data in this range", showarrow=False, xref="paper",
                              yref="paper", x=0.5, y=0.5, font={"size": FONT_SIZE + 4, "color": MUTED})
    return figure


def empty_figure(message: str, uirevision: str = "empty") -> go.Figure:
    """A blank dark graph with a message (nothing chosen, store unavailable)."""
    figure = go.Figure()
    figure.update_layout(**_layout("", uirevision))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                          font={"size": FONT_SIZE + 4, "color": MUTED})
    return figure


def _band(runs: Sequence[Segment], tz: tzinfo | None) -> list[go.Scatter]:
    """One closed polygon per segment in a single trace (``fill="toself"`` closes each gap-separated part)."""
    xs: list = []
    ys: list = []
    for run in runs:
        if len(run.x) < 2:
            continue
        times = [_time(t, tz) for t in run.x]
        xs += [*times, *reversed(times), None]
        ys += [*run.maximum, *reversed(run.minimum), None]
    if not xs:
        return []
    return [go.Scatter(x=xs, y=ys, name="min–max", mode="lines", fill="toself", fillcolor=BAND,
                       line={"width": 0}, hoverinfo="skip", connectgaps=False, showlegend=False)]


def _mean(runs: Sequence[Segment], tz: tzinfo | None) -> list[go.Scatter]:
    """The mean line with None between segments; lone buckets get a marker or they would be invisible."""
    xs: list = []
    ys: list = []
    lone_x: list = []
    lone_y: list = []
    for run in runs:
        times = [_time(t, tz) for t in run.x]
        if len(times) == 1:
            lone_x += times
            lone_y += run.mean
            continue
        xs += [*times, None]
        ys += [*run.mean, None]
    traces = []
    if xs:
        traces.append(go.Scatter(x=xs, y=ys, name="mean", mode="lines", line={"color": LINE, "width": 3},
                                 connectgaps=False, showlegend=False))
    if lone_x:
        traces.append(go.Scatter(x=lone_x, y=lone_y, name="mean", mode="markers",
                                 marker={"color": LINE, "size": 7}, showlegend=False))
    return traces


def _layout(unit: str, uirevision: str) -> dict:
    axis = {"gridcolor": GRID, "zerolinecolor": GRID, "linecolor": GRID, "color": MUTED,
            "tickfont": {"size": FONT_SIZE}}
    return {
        # Same uirevision = plotly keeps the operator's zoom and pan across the periodic refresh.
        "uirevision": uirevision,
        "paper_bgcolor": BACKGROUND, "plot_bgcolor": BACKGROUND,
        "font": {"color": TEXT, "size": FONT_SIZE},
        "margin": {"l": 70, "r": 20, "t": 10, "b": 50},
        "hovermode": "x unified",
        "xaxis": {**axis, "type": "date"},
        "yaxis": {**axis, "title": {"text": unit, "font": {"size": FONT_SIZE}}},
    }


def _time(ts: float, tz: tzinfo | None) -> datetime:
    """Epoch seconds as a naive wall-clock time in the dashboard's zone (plotly draws naive times as-is)."""
    moment = datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts)
    return moment.replace(tzinfo=None)


# --- the Trends page: several series, envelopes, alert and scenario marks ---------------------------

@dataclass(frozen=True, slots=True)
class TrendSeries:
    """One series for ``compare_figure``: its buckets, unit, poll interval and envelope levels.

    ``name`` must be a slug-like identifier (``device-id point.name``): it is drawn in the legend.
    """

    name: str
    buckets: Sequence[Bucket]
    unit: str
    poll_interval_s: float
    envelope: Sequence[EnvelopeLine] = field(default_factory=tuple)


def axis_units(series: Sequence[TrendSeries]) -> list[str]:
    """The units of the two y axes: the first unit left, every other unit right."""
    units = list(dict.fromkeys(s.unit for s in series))
    return [units[0], ", ".join(u for u in units[1:] if u) or "value"] if len(units) > 1 else units[:1]


def compare_figure(series: Sequence[TrendSeries], *, start: float, end: float, bucket_s: float, uirevision: str,
                   tz: tzinfo | None = None, marks: Sequence[AlertMark] = (),
                   periods: Sequence[ScenarioPeriod] = (), message: str | None = None) -> go.Figure:
    """Each series as a mean line over its min–max band, envelopes as lines, alerts and drills as marks.

    ``meta`` of each series' mean-line trace is ``"mean:<i>"``, so the page can append live readings to it.
    """
    units = axis_units(series)
    figure = go.Figure()
    shapes: list[dict] = []
    annotations: list[dict] = []
    drawn = False
    for index, item in enumerate(series):
        runs = segments(item.buckets, max_gap(bucket_s, item.poll_interval_s))
        drawn = drawn or bool(runs)
        axis = "y" if not units or item.unit == units[0] else "y2"
        colour = PALETTE[index % len(PALETTE)]
        for trace in _series_traces(runs, tz, item.name, colour, index, multiple=len(series) > 1):
            trace.update(yaxis=axis)
            figure.add_trace(trace)
        shapes += _envelope_shapes(item.envelope, axis)
    figure.update_layout(**_layout(units[0] if units else "", uirevision))
    figure.update_layout(showlegend=len(series) > 1, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom",
                                                             "x": 0, "font": {"size": FONT_SIZE - 2}})
    if len(units) > 1:
        figure.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": {"text": units[1]},
                                     "gridcolor": GRID, "color": MUTED, "showgrid": False,
                                     "tickfont": {"size": FONT_SIZE}})
        figure.update_layout(margin={"r": 70})
    for period in periods:
        shapes.append(_period_shape(period, end, tz))
        if ((period.end if period.end is not None else end) - period.start) >= MIN_LABELLED * (end - start):
            annotations.append(_period_label(period, tz))  # short runs: shaded only, named in the table
    for mark in marks[-MAX_ALERT_MARKS:]:
        shapes.append(_mark_shape(mark, tz))
        annotations.append(_mark_label(mark, tz))
    if not drawn:
        figure.update_xaxes(range=[_time(start, tz), _time(end, tz)])
        figure.update_yaxes(visible=False)
        annotations.append({"text": message or "no data in this range", "showarrow": False, "xref": "paper",
                            "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": FONT_SIZE + 4, "color": MUTED}})
    # Set once: adding shapes one by one re-validates the whole list each time (quadratic in plotly).
    figure.update_layout(shapes=shapes, annotations=annotations)
    return figure


def _series_traces(runs: Sequence[Segment], tz: tzinfo | None, name: str, colour: str, index: int,
                   multiple: bool) -> list[go.Scatter]:
    band = _band(runs, tz)
    for trace in band:
        trace.update(fillcolor=_translucent(colour), name=f"{name} min–max")
    mean = _mean(runs, tz)
    for trace in mean:
        trace.update(name=name, line={"color": colour, "width": 3}, marker={"color": colour, "size": 7},
                     showlegend=multiple and trace.mode == "lines", legendgroup=str(index))
    lines = [t for t in mean if t.mode == "lines"]
    if lines:
        # No break after the newest segment: live readings appended by the page continue the line.
        lines[0].update(meta=f"mean:{index}", x=list(lines[0].x)[:-1], y=list(lines[0].y)[:-1])
    else:  # nothing to append to yet: an empty line that live readings can extend
        mean.append(go.Scatter(x=[], y=[], name=name, mode="lines", line={"color": colour, "width": 3},
                               meta=f"mean:{index}", showlegend=False, connectgaps=False))
    return band + mean


def _translucent(colour: str, alpha: float = 0.2) -> str:
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def _envelope_shapes(lines: Sequence[EnvelopeLine], axis: str) -> list[dict]:
    """A dashed line per level, and the warning envelope's inside as a faint green band."""
    shapes = []
    for line in lines:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": axis, "y0": line.value,
                       "y1": line.value, "layer": "below",
                       "line": {"color": SEVERITY_COLOURS[line.severity], "width": 2,
                                "dash": "dash" if line.severity is Severity.WARNING else "dot"}})
    by_rule: dict[tuple[str, Severity], dict[str, float]] = {}
    for line in lines:
        by_rule.setdefault((line.rule, line.severity), {})[line.bound] = line.value
    for (_rule, severity), bounds in by_rule.items():
        if severity is Severity.WARNING and {"above", "below"} <= bounds.keys():
            shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": axis,
                           "y0": bounds["below"], "y1": bounds["above"], "fillcolor": ENVELOPE_FILL,
                           "line": {"width": 0}, "layer": "below"})
    return shapes


def _period_shape(period: ScenarioPeriod, end: float, tz: tzinfo | None) -> dict:
    stop = period.end if period.end is not None else end
    return {"type": "rect", "xref": "x", "yref": "paper", "x0": _time(period.start, tz), "x1": _time(stop, tz),
            "y0": 0, "y1": 1, "fillcolor": SCENARIO_FILL, "line": {"width": 0}, "layer": "below"}


def _period_label(period: ScenarioPeriod, tz: tzinfo | None) -> dict:
    return {"x": _time(period.start, tz), "xref": "x", "yref": "paper", "y": 1, "yanchor": "top", "xanchor": "left",
            "showarrow": False, "text": f"drill: {safe_name(period.name)}",
            "font": {"size": FONT_SIZE - 2, "color": SEVERITY_COLOURS[Severity.UNKNOWN]}}


def _mark_colour(mark: AlertMark) -> str:
    return SEVERITY_COLOURS[Severity.OK if mark.state == "resolved" else mark.severity]


def _mark_shape(mark: AlertMark, tz: tzinfo | None) -> dict:
    when = _time(mark.at, tz)
    return {"type": "line", "xref": "x", "yref": "paper", "x0": when, "x1": when, "y0": 0, "y1": 1, "layer": "below",
            "line": {"color": _mark_colour(mark), "width": 1.5, "dash": "dot"}}


def _mark_label(mark: AlertMark, tz: tzinfo | None) -> dict:
    # names are checked to be slugs: plotly renders a subset of HTML in annotations
    return {"x": _time(mark.at, tz), "xref": "x", "yref": "paper", "y": 0, "yanchor": "bottom", "showarrow": False,
            "text": "▲" if mark.state == "firing" else "▼", "font": {"color": _mark_colour(mark), "size": 14},
            "hovertext": f"{safe_name(mark.rule)} {mark.state} · {safe_name(mark.device)}"}


def plot_time(ts: float, tz: tzinfo | None = None) -> datetime:
    """Epoch seconds as the naive wall-clock time the figures use (for ``extendData``)."""
    return _time(ts, tz)
