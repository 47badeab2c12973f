"""View-models of the Trends page: series choices, envelope levels, alert and scenario marks, CSV (no Dash here).

Everything the browser sends is untrusted: a series is only drawn when it is one the page offered
(a configured device and a numeric point of its profile), a range only when it is one of ``RANGES``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from alerts.model import Alert
from alerts.rules import Rule, matches
from collectors.model import Event, PointSpec, Severity
from config.load import Site
from config.schema import Device
from dashboard.data import Option, numeric_points, unit_symbol
from storage.base import Bucket

RANGES: tuple[tuple[str, int], ...] = (
    ("1 h", 3600), ("6 h", 6 * 3600), ("24 h", 86_400), ("7 d", 7 * 86_400), ("30 d", 30 * 86_400),
    ("1 year", 365 * 86_400))
DEFAULT_RANGE_S = 3600
MAX_POINTS = 600  # buckets per series: about one per 2–3 px of a full-HD graph, whatever the range
MAX_SERIES = 6  # more lines than this on one graph cannot be told apart
SEPARATOR = "|"  # device ids are slugs and point names are dotted words: neither holds a "|"
SCENARIO_LIMIT = 500  # scenario markers in one window; a year of demos stays far below this
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ALERT_STATES = ("firing", "resolved")  # the transitions worth a mark; pending churn would only add noise


@dataclass(frozen=True, slots=True)
class SeriesChoice:
    """One validated series: a configured device and a numeric point of its profile."""

    device: Device
    spec: PointSpec

    @property
    def key(self) -> str:
        """The dropdown value of this series."""
        return series_key(self.device.id, self.spec.name)

    @property
    def unit(self) -> str:
        """The point's unit symbol (may be empty)."""
        return unit_symbol(self.spec.unit)

    @property
    def label(self) -> str:
        """Device name and point as operators read them."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.device.label} — {self.spec.name}{unit}"


@dataclass(frozen=True, slots=True)
class EnvelopeLine:
    """One level of an alert rule's envelope: a breach is above (or below) ``value``."""

    rule: str
    severity: Severity
    bound: str  # "above" or "below"
    value: float


@dataclass(frozen=True, slots=True)
class AlertMark:
    """An alert of a shown device that started firing or resolved inside the window."""

    at: float
    rule: str
    device: str
    state: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class ScenarioPeriod:
    """A simulated scenario or drill that ran (partly) inside the window; ``end`` None = still running."""

    name: str
    start: float
    end: float | None


def series_key(device_id: str, point: str) -> str:
    """The value that names one series in the page's dropdown and URL."""
    return f"{device_id}{SEPARATOR}{point}"


def series_options(site: Site) -> list[Option]:
    """Every drawable series of the site, device by device in config order."""
    options = []
    for device in site.devices:
        for spec in numeric_points(site.profile(device)):
            options.append(Option(SeriesChoice(device, spec).label, series_key(device.id, spec.name)))
    return options


def default_series(site: Site, device_id: str | None = None) -> list[str]:
    """The first point of the given (or first) device, as the page opens."""
    devices = [d for d in site.devices if device_id in (None, d.id)] or site.devices
    for device in devices:
        points = numeric_points(site.profile(device))
        if points:
            return [series_key(device.id, points[0].name)]
    return []


def parse_series(site: Site, values: Any) -> list[SeriesChoice]:
    """The chosen series that the page offered, in order, without duplicates, at most ``MAX_SERIES``."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        return []
    chosen: dict[str, SeriesChoice] = {}
    for value in values:
        choice = _choice(site, value)
        if choice is not None and choice.key not in chosen:
            chosen[choice.key] = choice
    return list(chosen.values())[:MAX_SERIES]


def _choice(site: Site, value: Any) -> SeriesChoice | None:
    if not isinstance(value, str) or value.count(SEPARATOR) != 1:
        return None
    device_id, point = value.split(SEPARATOR)
    try:
        device = site.device(device_id)
    except KeyError:
        return None
    spec = next((s for s in numeric_points(site.profile(device)) if s.name == point), None)
    return SeriesChoice(device, spec) if spec is not None else None


def parse_range(range_s: Any) -> int | None:
    """The range in seconds when it is one the page offered."""
    if isinstance(range_s, bool) or not isinstance(range_s, int | float):
        return None
    return int(range_s) if int(range_s) in {seconds for _, seconds in RANGES} else None


def range_label(range_s: int) -> str:
    """``3600`` → ``1 h``."""
    return next((label for label, seconds in RANGES if seconds == range_s), f"{range_s} s")


def bucket_width(start: float, end: float, max_points: int = MAX_POINTS) -> float:
    """The bucket width the store uses for this window (it rounds up to whole milliseconds)."""
    span_ms = round(end * 1000) - round(start * 1000)
    return max(1, -(-span_ms // max_points)) / 1000


def refresh_period(range_s: int, refresh_s: float) -> float:
    """How often the whole figure is recomputed: a bucket's width, between one tick and five minutes.

    In between, the page only appends the newest readings to the lines (``extendData``).
    """
    return min(max(range_s / MAX_POINTS, refresh_s), 300.0)


# --- envelopes -------------------------------------------------------------------------------------

def envelope_lines(rules: Iterable[Rule], site: Site, choice: SeriesChoice) -> list[EnvelopeLine]:
    """The threshold levels the loaded rules apply to this series (derived values excluded), worst first."""
    device = choice.device
    lines = []
    for rule in rules:
        if rule.kind != "threshold" or rule.derived is not None:
            continue
        if not matches(rule, device.device_class, device.room, device.id, choice.spec.name):
            continue
        for severity, level in rule.levels():
            if level.above is not None:
                lines.append(EnvelopeLine(rule.name, severity, "above", level.above))
            if level.below is not None:
                lines.append(EnvelopeLine(rule.name, severity, "below", level.below))
    return lines


# --- alert and scenario marks ----------------------------------------------------------------------

def alert_marks(alerts: Mapping[str, Alert], transitions: Callable[[str], Sequence[tuple]],
                devices: Iterable[str], start: float, end: float) -> list[AlertMark]:
    """Firing and resolved transitions of the shown devices' alerts in [start, end), oldest first."""
    wanted = set(devices)
    marks = []
    for fp, alert in alerts.items():
        device = alert.labels.get("device")
        if device not in wanted:
            continue
        for _from, to, at in transitions(fp):
            if to in ALERT_STATES and at is not None and start <= at < end:
                marks.append(AlertMark(at, alert.rule, device, to, alert.severity))
    return sorted(marks, key=lambda m: m.at)


def scenario_periods(events: Iterable[Event], start: float, end: float) -> list[ScenarioPeriod]:
    """Scenario runs from their start/finish/stop markers, oldest first, clipped to the window."""
    open_runs: dict[str, float] = {}
    periods = []
    for event in sorted((e for e in events if e.kind == "scenario"), key=lambda e: e.ts):
        name = str(event.payload.get("scenario") or event.name.split(" ")[0])
        state = event.payload.get("state")
        if state == "started":
            open_runs[name] = event.ts
        elif state in ("finished", "stopped"):
            periods.append(ScenarioPeriod(name, open_runs.pop(name, start), event.ts))
    periods += [ScenarioPeriod(name, began, None) for name, began in open_runs.items()]
    return sorted((p for p in periods if p.start < end and (p.end is None or p.end >= start)),
                  key=lambda p: p.start)


def safe_name(name: str) -> str:
    """A scenario or rule name fit for a plotly annotation (which renders some HTML): slugs only."""
    return name if _SLUG.match(name) else "scenario"


# --- CSV -------------------------------------------------------------------------------------------

CSV_HEADER = ("time", "device", "point", "unit", "mean", "min", "max", "samples", "missing")


def csv_text(shown: Sequence[tuple[SeriesChoice, Sequence[Bucket]]], tz: tzinfo | None = None) -> str:
    """What the graph shows, one row per bucket and series, times in ISO 8601 with the zone offset."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for choice, buckets in shown:
        for bucket in sorted(buckets, key=lambda b: b.start):
            writer.writerow((_iso(bucket.start, tz), choice.device.id, choice.spec.name, choice.spec.unit or "",
                             _cell(bucket.mean), _cell(bucket.minimum), _cell(bucket.maximum), bucket.count,
                             bucket.missing))
    return out.getvalue()


def csv_filename(shown: Sequence[SeriesChoice], range_s: int, now: float) -> str:
    """``facwatch-dh1-ups-a-ups.load-1h-20261122T2130Z.csv`` (ids are slugs, safe in a file name)."""
    parts = "+".join(f"{c.device.id}-{c.spec.name}" for c in shown[:2]) + ("+more" if len(shown) > 2 else "")
    stamp = datetime.fromtimestamp(now).astimezone().strftime("%Y%m%dT%H%M%S")
    return f"facwatch-{parts}-{range_label(range_s).replace(' ', '')}-{stamp}.csv"


def _cell(value: float | None) -> str:
    return "" if value is None else repr(round(value, 6))


def _iso(ts: float, tz: tzinfo | None) -> str:
    moment = datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()
    return moment.isoformat(timespec="seconds")
