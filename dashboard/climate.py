"""Rooms as a view-model: each rack inlet on a floor grid coloured by the rules' envelopes, and the CRACs."""

from __future__ import annotations

from dataclasses import dataclass

from collectors.model import Severity
from config.schema import Device
from dashboard.data import MISSING_TEXT, SEVERITY_RANK, format_number, worst
from dashboard.envelope import Envelope, dew_point_or_none, envelope
from dashboard.live import Fact, Snapshot, fact, present

TEMPERATURE, HUMIDITY = "ambient.temperature", "ambient.humidity"
CRAC_STATE_POINTS = ("crac.system", "crac.unit_on")


@dataclass(frozen=True, slots=True)
class RackCell:
    """One rack inlet sensor on the floor grid."""

    device_id: str
    label: str
    state: str  # worst envelope/state severity, or stale / nodata
    status_text: str
    temperature: Fact
    humidity: Fact
    dew_point: Fact
    age_text: str


@dataclass(frozen=True, slots=True)
class CracCard:
    """One cooling unit: its run state, supply/return air and alarm."""

    device_id: str
    label: str
    state: str
    status_text: str
    facts: tuple[Fact, ...]
    age_text: str


@dataclass(frozen=True, slots=True)
class RoomView:
    """A room: its rack grid, its CRACs, the envelopes the colours mean, and the hottest inlet."""

    room_id: str
    name: str
    state: str
    racks: tuple[RackCell, ...]
    cracs: tuple[CracCard, ...]
    legend: tuple[str, ...]
    hottest: str  # e.g. "23.4 °C at Rack A04 inlet", or "—"
    cracs_running: str  # e.g. "2 of 2 running"


def _enveloped(value: Fact | None, number: float | None, found: Envelope | None, label: str) -> Fact:
    if value is None:
        return Fact(label, MISSING_TEXT, "", "nodata")
    if number is None or found is None or value.state:
        return Fact(label, value.text, value.unit, value.state, value.note)
    return Fact(label, value.text, value.unit, found.severity(number).value)


def rack_cell(snapshot: Snapshot, device: Device) -> RackCell:
    """A rack inlet coloured by the worst of its temperature, humidity and dew-point envelopes."""
    rules = snapshot.rules
    t = snapshot.number(device, TEMPERATURE)
    rh = snapshot.number(device, HUMIDITY)
    temperature = _enveloped(fact(snapshot, device, TEMPERATURE), t, envelope(rules, device, TEMPERATURE),
                             "temperature")
    humidity = _enveloped(fact(snapshot, device, HUMIDITY), rh, envelope(rules, device, HUMIDITY), "humidity")
    dp = dew_point_or_none(t, rh)
    dew_envelope = envelope(rules, device, derived="dew_point")
    if dp is None:
        dew = Fact("dew point", MISSING_TEXT, "", "missing")
    else:
        dew = Fact("dew point", format_number(dp), "°C",
                   dew_envelope.severity(dp).value if dew_envelope else "", "Magnus (REFERENCE.md §6)")
    tile = snapshot.tile(device)
    if tile.state in ("stale", "nodata"):
        state, status = tile.state, tile.status_text
    else:
        found = [Severity(tile.state)] + [Severity(f.state) for f in (temperature, humidity, dew)
                                          if f.state in {s.value for s in Severity}]
        state = worst(found).value
        status = state.upper()
    return RackCell(device.id, device.label, state, status, temperature, humidity, dew, tile.age_text)


def crac_card(snapshot: Snapshot, device: Device) -> CracCard:
    """A CRAC's state word and its air temperatures, humidity, capacity and alarm."""
    points = {spec.name for spec in snapshot.site.profile(device).points}
    state_point = next((p for p in CRAC_STATE_POINTS if p in points), None)
    running = snapshot.state(device, state_point) if state_point else None
    facts = present([fact(snapshot, device, "supply_air.temperature", "supply"),
                     fact(snapshot, device, "return_air.temperature", "return"),
                     fact(snapshot, device, "return_air.humidity", "return RH"),
                     fact(snapshot, device, "cooling.capacity", "cooling"),
                     fact(snapshot, device, "crac.general_alarm", "alarm")])
    tile = snapshot.tile(device)
    fresh = tile.state not in ("stale", "nodata")
    status = (running or "").upper() if fresh and running else tile.status_text
    return CracCard(device.id, device.label, tile.state, status, facts, tile.age_text)


def _is_running(card: CracCard) -> bool:
    return card.state not in ("stale", "nodata") and card.status_text in ("ON", "RUNNING")


def room_views(snapshot: Snapshot) -> list[RoomView]:
    """Every room with rack sensors or CRACs, in config order."""
    views = []
    for room in snapshot.site.config.rooms:
        racks = tuple(rack_cell(snapshot, d) for d in snapshot.devices("thsensor", room.id))
        cracs = tuple(crac_card(snapshot, d) for d in snapshot.devices("crac", room.id))
        if not racks and not cracs:
            continue
        states = [c.state for c in (*racks, *cracs)]
        rank = {**{s.value: SEVERITY_RANK[s] for s in Severity}, "stale": 2, "nodata": 2}
        state = max(states, key=lambda s: rank.get(s, 0))
        views.append(RoomView(room.id, room.name, state, racks, cracs, _legend(snapshot, room.id),
                              _hottest(snapshot, room.id), f"{sum(map(_is_running, cracs))} of {len(cracs)} running"))
    return views


def _hottest(snapshot: Snapshot, room_id: str) -> str:
    temps = [(t, d.label) for d in snapshot.devices("thsensor", room_id)
             if (t := snapshot.number(d, TEMPERATURE)) is not None]
    if not temps:
        return MISSING_TEXT
    t, label = max(temps)
    return f"{format_number(t)} °C at {label}"


def _legend(snapshot: Snapshot, room_id: str) -> tuple[str, ...]:
    """What the colours mean in this room, from the rules of its first rack sensor."""
    sensors = snapshot.devices("thsensor", room_id)
    if not sensors:
        return ()
    device = sensors[0]
    found = [("inlet temperature", envelope(snapshot.rules, device, TEMPERATURE), "°C"),
             ("inlet humidity", envelope(snapshot.rules, device, HUMIDITY), "%RH"),
             ("dew point", envelope(snapshot.rules, device, derived="dew_point"), "°C")]
    return tuple(f"{name}: {env.text(unit)}" for name, env, unit in found if env is not None)
