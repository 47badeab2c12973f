"""Fire detection and suppression as a view-model: panel zones, pre-action, gas, VESDA. Display only.

facwatch never acknowledges, resets or silences a life-safety panel (DESIGN.md §3.6): nothing here
offers a control, it only says what the panels report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collectors.model import Kind, Severity
from config.schema import Device
from dashboard.data import SEVERITY_RANK, worst
from dashboard.live import Fact, Snapshot, fact

FIRE_CLASSES = ("firepanel", "preaction", "gas", "vesda")
ZONE_POINT = re.compile(r"^zone\.(\d+)\.(\w+)$")
# a zone's condition, most serious first: the first of these points that is not normal names the zone
ZONE_CONDITIONS = (("alarm", "ALARM"), ("prealarm", "PREALARM"), ("trouble", "TROUBLE"), ("disabled", "DISABLED"))
SMOKE_POINT, SMOKE_FULL_SCALE = "vesda.smoke_relative", 20.0  # 20 = the Fire 1 threshold (profile)


@dataclass(frozen=True, slots=True)
class ZoneCell:
    """One detection zone of a fire panel."""

    number: int
    state: str
    status_text: str
    event: str  # the panel's event type name, "" when none


@dataclass(frozen=True, slots=True)
class FireSystem:
    """A fire panel, pre-action valve, gas system or VESDA detector with everything it reports."""

    device_id: str
    label: str
    device_class: str
    room: str
    state: str
    status_text: str
    age_text: str
    zones: tuple[ZoneCell, ...] = ()
    facts: tuple[Fact, ...] = ()
    smoke_fraction: float | None = None  # VESDA smoke relative to Fire 1, 0..1


@dataclass(frozen=True, slots=True)
class FireView:
    """Every fire system of the site and the site's fire status in one word."""

    systems: tuple[FireSystem, ...]
    state: str
    status_text: str


def zones(snapshot: Snapshot, device: Device) -> tuple[ZoneCell, ...]:
    """The panel's zones, numbered as in its profile."""
    numbers = sorted({int(m.group(1)) for spec in snapshot.site.profile(device).points
                      if (m := ZONE_POINT.match(spec.name))})
    cells = []
    for number in numbers:
        cell = ZoneCell(number, "ok", "NORMAL", "")
        known = False
        for condition, text in ZONE_CONDITIONS:
            state = snapshot.state(device, f"zone.{number}.{condition}")
            known = known or state is not None
            severity = _severity(snapshot, device, f"zone.{number}.{condition}")
            if state is not None and severity not in (None, Severity.OK, Severity.INFO):
                cell = ZoneCell(number, severity.value, text, "")
                break
        event = snapshot.state(device, f"zone.{number}.event")
        if not known:
            cell = ZoneCell(number, "unknown", "NO DATA", "")
        cells.append(ZoneCell(cell.number, cell.state, cell.status_text, "" if event in (None, "none") else event))
    return tuple(cells)


def _severity(snapshot: Snapshot, device: Device, point: str) -> Severity | None:
    view = snapshot.value(device, point)
    return view.severity if view is not None and view.status == "good" else None


def _facts(snapshot: Snapshot, device: Device) -> tuple[Fact, ...]:
    """Summary points first, then every other state and gauge point (zone points are shown as cells)."""
    profile = snapshot.site.profile(device)
    names = list(profile.summary) + [s.name for s in profile.points if s.name not in profile.summary
                                     and s.kind in (Kind.STATE, Kind.GAUGE)]
    found = []
    for name in names:
        if ZONE_POINT.match(name):
            continue
        item = fact(snapshot, device, name, _short(device, name))
        if item is not None:
            found.append(item)
    return tuple(found)


def _short(device: Device, point: str) -> str:
    """A point name without its class prefix: ``preaction.low_air`` → ``low air``."""
    prefix = f"{device.device_class}."
    name = point[len(prefix):] if point.startswith(prefix) else point
    return name.replace(".", " ").replace("_", " ")


def fire_system(snapshot: Snapshot, device: Device) -> FireSystem:
    """One fire system's state, zones (panels), facts and smoke bar (VESDA)."""
    tile = snapshot.tile(device)
    smoke = snapshot.number(device, SMOKE_POINT) if device.device_class == "vesda" else None
    fraction = None if smoke is None else max(0.0, min(1.0, smoke / SMOKE_FULL_SCALE))
    return FireSystem(device.id, device.label, device.device_class, _room(snapshot, device.room), tile.state,
                      tile.status_text, tile.age_text,
                      zones(snapshot, device) if device.device_class == "firepanel" else (),
                      _facts(snapshot, device), fraction)


def _room(snapshot: Snapshot, room_id: str) -> str:
    return next((r.name for r in snapshot.site.config.rooms if r.id == room_id), room_id)


def fire_view(snapshot: Snapshot) -> FireView:
    """Every fire-related device of the site, panels first, and the worst state among them."""
    systems = tuple(fire_system(snapshot, d) for cls in FIRE_CLASSES for d in snapshot.devices(cls))
    severities = [Severity(s.state) for s in systems if s.state in {v.value for v in Severity}]
    silent = [s for s in systems if s.state in ("stale", "nodata")]
    state = worst(severities)
    if silent and SEVERITY_RANK[state] < SEVERITY_RANK[Severity.WARNING]:
        return FireView(systems, "stale", f"{len(silent)} FIRE SYSTEM(S) NOT REPORTING")
    if not systems:
        return FireView(systems, "nodata", "NO FIRE SYSTEMS CONFIGURED")
    text = {"critical": "FIRE / RELEASE ALARM", "warning": "FIRE SYSTEM WARNING"}.get(state.value, "NORMAL")
    return FireView(systems, state.value, text)
