"""Plotly figures from downsampled buckets (no Dash here).

No device- or user-supplied string goes into a figure: plotly renders a subset of HTML (including
links) in titles and annotations, so names are shown by the page around the graph instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

import plotly.graph_objects as go

from storage.base import Bucket

# Colours match dashboard/assets/facwatch.css.
BACKGROUND = "#10161d"
GRID = "#2a3440"
TEXT = "#e8edf2"
MUTED = "#9fb0c0"
LINE = "#4fc3f7"
BAND = "rgba(79, 195, 247, 0.22)"
FONT_SIZE = 16


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
