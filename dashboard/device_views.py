"""View-models of the Device page: every point of one device, its poll health and error history (no Dash here)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from collectors.model import HEALTH_POINTS, POLL_DURATION_POINT, REACHABLE_POINT, Event, Kind, Quality, Reading
from config.load import Site
from config.schema import Device
from dashboard.data import (
    MISSING_TEXT,
    format_age,
    format_number,
    point_label,
    stale_after,
    state_of,
    unit_symbol,
    value_view,
)
from storage.base import Bucket

HISTORY_S = 86_400  # the error history looks back one day ...
HISTORY_BUCKETS = 96  # ... in 15 min steps
EVENTS_S = 7 * 86_400
EVENT_LIMIT = 100
PAYLOAD_CHARS = 200


@dataclass(frozen=True, slots=True)
class PointRow:
    """One point of the device as the table shows it."""

    point: str
    label: str
    kind: str
    value: str  # the number, the state name or the text; "—" when there is none
    unit: str
    quality: str  # good, missing, invalid, stale or "no data"
    age: str
    severity: str  # state points: the profile's severity of the state; "" otherwise
    description: str
    numeric: bool = False  # a gauge or counter: it can be drawn on the Trends page


@dataclass(frozen=True, slots=True)
class HealthView:
    """How polling this device goes."""

    reachable: str  # "reachable", "unreachable" or "no data"
    state: str  # ok, critical, stale, nodata (for the badge)
    poll_duration: str  # "0.12 s" or "—"
    last_poll: str  # "4 s ago" or "never"
    poll_interval: str


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of time, e.g. when the device did not answer."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class MissingRow:
    """Readings of a point that were missing or invalid in one interval."""

    start: float
    point: str
    missing: int
    good: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """A trap or other event of the device."""

    ts: float
    kind: str
    name: str
    severity: str
    detail: str


def device_options(site: Site) -> list[dict[str, str]]:
    """Dropdown choices: every configured device, labelled with its name and id."""
    return [{"label": f"{d.label} ({d.id})" if d.name else d.id, "value": d.id} for d in site.devices]


def find_device(site: Site, device_id: object) -> Device | None:
    """The configured device with this id (anything else from the browser: None)."""
    if not isinstance(device_id, str):
        return None
    try:
        return site.device(device_id)
    except KeyError:
        return None


def point_rows(site: Site, device: Device, readings: Iterable[Reading], now: float) -> list[PointRow]:
    """Every point of the device's profile, then the health points, with the newest reading of each."""
    profile = site.profile(device)
    by_point = {r.point: r for r in readings if r.device == device.id}
    limit = stale_after(device, site.config.dashboard.refresh_s)
    rows = []
    for spec in (*profile.points, *HEALTH_POINTS):
        reading = by_point.get(spec.name)
        view = value_view(spec, reading, now, limit)
        severity = ""
        if spec.kind is Kind.STATE and reading is not None and reading.quality == Quality.GOOD:
            severity = state_of(spec, reading)[1].value
        quality = "no data" if reading is None else ("stale" if view.status == "stale" else str(reading.quality))
        unit = unit_symbol(spec.unit) if spec.kind in (Kind.GAUGE, Kind.COUNTER) else ""
        rows.append(PointRow(spec.name, point_label(spec.name), str(spec.kind), view.text, unit, quality,
                             format_age(now - reading.ts) if reading else "", severity, spec.description,
                             spec.kind in (Kind.GAUGE, Kind.COUNTER)))
    return rows


def health_view(site: Site, device: Device, readings: Iterable[Reading], now: float) -> HealthView:
    """Reachability, last poll duration and age of the newest poll."""
    by_point = {r.point: r for r in readings if r.device == device.id}
    reach = by_point.get(REACHABLE_POINT)
    duration = by_point.get(POLL_DURATION_POINT)
    newest = max((r.ts for r in by_point.values()), default=None)
    interval = f"every {device.poll_interval_s:g} s"
    if reach is None or newest is None:
        return HealthView("no data", "nodata", MISSING_TEXT, "never", interval)
    spec = next(s for s in HEALTH_POINTS if s.name == REACHABLE_POINT)
    text, severity = state_of(spec, reach)
    stale = now - newest > stale_after(device, site.config.dashboard.refresh_s)
    duration_text = (f"{format_number(duration.value)} s" if duration is not None and duration.value is not None
                     and duration.quality == Quality.GOOD else MISSING_TEXT)
    return HealthView(text, "stale" if stale else severity.value, duration_text, format_age(now - newest), interval)


def unreachable_periods(buckets: Sequence[Bucket], bucket_s: float) -> list[Period]:
    """Merged intervals in which at least one poll found the device unreachable (reachable minimum 0), newest first.

    Resolution is one bucket: a period says "within these 15 minutes the device did not answer at least once".
    """
    periods: list[Period] = []
    for bucket in sorted(buckets, key=lambda b: b.start):
        if bucket.minimum is None or bucket.minimum >= 1:
            continue
        end = bucket.start + bucket_s
        if periods and bucket.start - periods[-1].end < bucket_s / 2:
            periods[-1] = Period(periods[-1].start, end)
        else:
            periods.append(Period(bucket.start, end))
    return list(reversed(periods))


def missing_rows(per_point: Mapping[str, Sequence[Bucket]]) -> list[MissingRow]:
    """Intervals in which a point had missing or invalid readings, newest first."""
    rows = [MissingRow(b.start, point, b.missing, b.count) for point, buckets in per_point.items()
            for b in buckets if b.missing]
    return sorted(rows, key=lambda r: (-r.start, r.point))


def event_rows(events: Iterable[Event]) -> list[EventRow]:
    """The device's events newest first, the raw payload shortened to one line of text."""
    rows = []
    for event in sorted(events, key=lambda e: -e.ts):
        detail = json.dumps(dict(event.payload), sort_keys=True, default=str)
        if len(detail) > PAYLOAD_CHARS:
            detail = detail[:PAYLOAD_CHARS - 1] + "…"
        rows.append(EventRow(event.ts, event.kind, event.name, str(event.severity), detail))
    return rows
