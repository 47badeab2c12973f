"""View-models of the dashboard: readings + site config in, plain frozen dataclasses out (no Dash here).

Everything that decides what an operator sees — severity, staleness, "—" for missing data, number
formatting, units, ages — lives here as pure functions, so it is tested without a browser.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from alerts.commands import ActionStore
from alerts.rules import Rule
from alerts.sharded import ShardedActions, ShardedAlertState
from alerts.state import AlertStateStore
from auth.service import AuthService
from collectors.codec import DATATYPES
from collectors.model import HEALTH_POINTS, Kind, PointSpec, Quality, Reading, Severity
from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device
from storage.base import ReadStore

T = TypeVar("T")

STALE_FACTOR = 3  # a device is stale when its newest reading has missed 3 poll intervals ...
STALE_GRACE_S = 2.0  # ... plus the pipeline's own delay: poll duration, the writer's ~1 s batching
MISSING_TEXT = "—"
MAX_REASONS = 3

# Worst first when sorted by rank descending. UNKNOWN ranks above INFO/OK: a state we cannot read
# is not fine, but a known warning or critical outranks it.
SEVERITY_RANK = {severity: severity.rank for severity in Severity}  # also by value: alert rows carry text

# Profiles write units as plain ASCII (UCUM-like); operators read symbols.
UNIT_SYMBOLS = {"degC": "°C", "degF": "°F", "degK": "K"}

TREND_RANGES: tuple[tuple[str, int], ...] = (
    ("15 min", 15 * 60), ("1 h", 3600), ("6 h", 6 * 3600), ("24 h", 24 * 3600), ("7 d", 7 * 24 * 3600))
DEFAULT_TREND_RANGE_S = 3600
TREND_MAX_POINTS = 600  # about one bucket per 2-3 px of a full-HD graph


@dataclass(frozen=True)
class DashboardSources:
    """What the dashboard reads: the validated site, a ReadStore and a clock (injectable for tests).

    ``alerts`` is the alert state (read-only here), ``actions`` the operator command queue, silences and
    component heartbeats; ``scenario_url`` is the simulator's control endpoint, set only in demo mode.
    ``rules`` are the alert rules the engine runs (envelopes, Peukert exponent, tank figures); None means
    the default rule files, loaded by ``create_app``.
    """

    site: Site
    store: ReadStore
    clock: Callable[[], float] = time.time
    alerts: AlertStateStore | ShardedAlertState | None = None  # sharded: every collector shard's file
    actions: ActionStore | ShardedActions | None = None
    scenario_url: str | None = None
    rules: tuple[Rule, ...] | None = None
    auth: AuthService | None = None  # accounts and kiosk tokens; None = open dashboard (loopback demo)


# --- view-models -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ValueView:
    """One summary point of a tile, ready to print.

    ``status`` is ``good``, ``stale`` (value shown but old), ``missing``, ``invalid`` or ``nodata``;
    only ``good`` and ``stale`` carry a number, the others show ``—`` and a ``marker`` word.
    """

    point: str
    label: str
    text: str
    unit: str
    status: str
    marker: str = ""
    severity: Severity | None = None  # state points only

    @property
    def display(self) -> str:
        """Value and unit as one string, e.g. ``21.4 °C``."""
        return f"{self.text} {self.unit}" if self.unit and self.text != MISSING_TEXT else self.text


@dataclass(frozen=True, slots=True)
class TileView:
    """Everything one device tile shows."""

    device_id: str
    label: str
    device_class: str
    room: str
    state: str  # a Severity value, or "stale" / "nodata"
    status_text: str  # the state in words, so colour is never the only signal
    age_text: str
    values: tuple[ValueView, ...]
    reasons: tuple[str, ...] = ()
    last_ts: float | None = None


@dataclass(frozen=True, slots=True)
class HeaderView:
    """The page header's live part."""

    clock_text: str
    updated_text: str
    state: str  # "fresh", "stale", "nodata" or "error"


@dataclass(frozen=True, slots=True)
class DeviceCard:
    """The static part of a tile (what the layout knows without any reading)."""

    device_id: str
    label: str
    device_class: str
    room: str


@dataclass(frozen=True, slots=True)
class RoomGroup:
    """A room and the devices shown under it."""

    room_id: str
    name: str
    devices: tuple[DeviceCard, ...]


@dataclass(frozen=True, slots=True)
class Option:
    """A dropdown entry."""

    label: str
    value: Any


@dataclass(frozen=True, slots=True)
class PageModel:
    """The static page: site name, rooms with their devices, trend choices and the refresh period."""

    title: str
    site_name: str
    rooms: tuple[RoomGroup, ...]
    refresh_ms: int
    device_options: tuple[Option, ...]
    range_options: tuple[Option, ...]
    default_device: str | None
    default_point: str | None
    default_range_s: int
    point_options: tuple[Option, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class TrendRequest:
    """A validated trend query."""

    device: Device
    spec: PointSpec
    start: float
    end: float
    max_points: int = TREND_MAX_POINTS

    @property
    def bucket_s(self) -> float:
        """The bucket width the store uses for this window (it rounds up to whole milliseconds)."""
        span_ms = round(self.end * 1000) - round(self.start * 1000)
        return max(1, -(-span_ms // self.max_points)) / 1000


# --- formatting ------------------------------------------------------------------------------------

def unit_symbol(unit: str | None) -> str:
    """The unit as operators write it (``degC`` → ``°C``); empty for unitless points."""
    return UNIT_SYMBOLS.get(unit, unit) if unit else ""


def point_label(name: str) -> str:
    """A point name as words: ``ambient.temperature`` → ``ambient temperature``."""
    return name.replace(".", " ").replace("_", " ")


def format_number(value: float, spec: PointSpec | None = None) -> str:
    """Decimals by magnitude (230, 21.4, 4.2, 0.35), never finer than the device's resolution."""
    magnitude = abs(value)
    if magnitude >= 100 or magnitude == 0:
        decimals = 0
    elif magnitude >= 1:
        decimals = 1
    else:
        decimals = 2
    resolution = _resolution_decimals(spec)
    if resolution is not None:
        decimals = min(decimals, resolution)
    text = f"{value:,.{decimals}f}" if magnitude >= 10_000 else f"{value:.{decimals}f}"
    text = text.replace(",", "\u202f")  # narrow no-break space groups thousands (SI style, no comma/point clash)
    if text.startswith("-") and float(text.replace("\u202f", "")) == 0:
        text = text[1:]  # "-0.0" means 0 to an operator
    return text


def _resolution_decimals(spec: PointSpec | None) -> int | None:
    """Decimals an integer-coded point really carries (scale 0.1 → 1); None when unknown (floats)."""
    if spec is None:
        return None
    if spec.kind is Kind.COUNTER:
        return 0
    datatype = DATATYPES.get(spec.datatype)
    if datatype is None or datatype.is_float:
        return None
    if spec.scale >= 1:
        return 0
    return math.ceil(-math.log10(spec.scale) - 1e-9)


def format_age(seconds: float) -> str:
    """How old data is: ``4 s ago``, ``3 min ago``, ``2 h ago``, ``5 d ago``."""
    seconds = max(0.0, seconds)  # a collector clock slightly ahead of ours is not "in the future"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86_400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} d ago"


def format_clock(now: float, tz: tzinfo | None = None) -> str:
    """The wall-clock time of the dashboard server, with its zone."""
    moment = datetime.fromtimestamp(now, tz) if tz is not None else datetime.fromtimestamp(now).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


# --- severity --------------------------------------------------------------------------------------

def worst(severities: Iterable[Severity]) -> Severity:
    """The worst of some severities (OK when there are none)."""
    return max(severities, key=SEVERITY_RANK.__getitem__, default=Severity.OK)


def state_of(spec: PointSpec, reading: Reading) -> tuple[str, Severity]:
    """A state reading's name and severity; an unreadable or unlisted code is UNKNOWN."""
    if reading.quality != Quality.GOOD or not _finite(reading.value):
        return MISSING_TEXT, Severity.UNKNOWN
    code = int(reading.value)
    state = spec.enum.get(code)
    if state is None:
        return reading.text or f"code {code}", Severity.UNKNOWN
    return state.name, state.severity


# --- tiles -----------------------------------------------------------------------------------------

def stale_after(device: Device, refresh_s: float) -> float:
    """Seconds after which a device's newest reading means "we cannot see it any more".

    Three missed polls, plus what this dashboard adds itself (a reading fetched at the start of a
    refresh tick is shown until the next one) and a grace for the collector's write batching, so a
    healthy 2 s device never flickers to stale on a 2 s refresh.
    """
    return STALE_FACTOR * device.poll_interval_s + refresh_s + STALE_GRACE_S


def spec_for(profile: DeviceProfile, point: str) -> PointSpec | None:
    """The spec of a profile point or of a health point every device has; None if unknown."""
    for spec in (*profile.points, *HEALTH_POINTS):
        if spec.name == point:
            return spec
    return None


def value_view(spec: PointSpec, reading: Reading | None, now: float, limit: float) -> ValueView:
    """One summary point of a tile: its value with unit, or ``—`` and why."""
    unit = unit_symbol(spec.unit) if spec.kind in (Kind.GAUGE, Kind.COUNTER) else ""
    base = {"point": spec.name, "label": point_label(spec.name), "unit": unit}
    if reading is None:
        return ValueView(text=MISSING_TEXT, status="nodata", marker="no data", **base)
    if reading.quality != Quality.GOOD:
        quality = str(reading.quality)  # a StrEnum, or its plain value from a less careful store
        return ValueView(text=MISSING_TEXT, status=quality, marker=quality, **base)
    if spec.kind is Kind.TEXT:
        text, severity = reading.text, None
    elif not _finite(reading.value):  # GOOD yet no usable number: a store or decoder bug, never print it
        text, severity = None, None
    elif spec.kind is Kind.STATE:
        text, severity = state_of(spec, reading)
    else:
        text, severity = format_number(reading.value, spec), None
    if not text:
        return ValueView(text=MISSING_TEXT, status="missing", marker="missing", **base)
    old = now - reading.ts > limit
    return ValueView(text=text, status="stale" if old else "good", marker="old" if old else "",
                     severity=severity, **base)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def tile_view(site: Site, device: Device, readings: Sequence[Reading], now: float) -> TileView:
    """The tile of one device from its latest readings (any order, other devices ignored)."""
    profile = site.profile(device)
    by_point = {r.point: r for r in readings if r.device == device.id}
    limit = stale_after(device, site.config.dashboard.refresh_s)
    values = tuple(value_view(profile.point(name), by_point.get(name), now, limit) for name in profile.summary)
    severity, reasons = _tile_severity(profile, by_point, values)
    last_ts = max((r.ts for r in by_point.values()), default=None)
    base = {"device_id": device.id, "label": device.label, "device_class": device.device_class,
            "room": _room_name(site, device.room), "values": values, "last_ts": last_ts}
    if last_ts is None:
        return TileView(state="nodata", status_text="NO DATA", age_text="no data", **base)
    age_text = format_age(now - last_ts)
    if now - last_ts > limit:
        last = (f"last state {severity.value}",) if SEVERITY_RANK[severity] >= SEVERITY_RANK[Severity.WARNING] else ()
        # The whole tile says STALE; an "old" marker on every value would only add noise.
        base["values"] = tuple(replace(v, marker="") if v.status == "stale" else v for v in values)
        return TileView(state="stale", status_text="STALE", age_text=age_text, reasons=(*last, *reasons), **base)
    return TileView(state=severity.value, status_text=severity.value.upper(), age_text=age_text,
                    reasons=reasons, **base)


def _tile_severity(profile: DeviceProfile, by_point: dict[str, Reading],
                   values: Sequence[ValueView]) -> tuple[Severity, tuple[str, ...]]:
    """Worst severity of the device's state points (incl. reachability) and short reasons, worst first."""
    found: list[tuple[Severity, str]] = []
    for reading in by_point.values():
        spec = spec_for(profile, reading.point)
        if spec is None or spec.kind is not Kind.STATE:
            continue
        name, severity = state_of(spec, reading)
        # INFO states ("no tests initiated", "on boost") are facts, not problems: a healthy device
        # must look healthy from across the room, so they never colour the tile.
        found.append((Severity.OK if severity is Severity.INFO else severity, f"{point_label(spec.name)}: {name}"))
    # A summary value we cannot show is not OK either ("stale is not OK", DESIGN.md §3.7).
    found += [(Severity.UNKNOWN, f"{v.label}: {v.marker}") for v in values if v.status in ("missing", "invalid")]
    severity = worst(s for s, _ in found)
    # Every non-OK state is listed (worst first), so a coloured tile always says why.
    notable = sorted((item for item in found if item[0] is not Severity.OK), key=lambda item: -SEVERITY_RANK[item[0]])
    return severity, tuple(text for _, text in notable[:MAX_REASONS])


def _room_name(site: Site, room_id: str) -> str:
    return next((room.name for room in site.config.rooms if room.id == room_id), room_id)


def tile_views(site: Site, readings: Sequence[Reading], now: float) -> list[TileView]:
    """Tiles of every configured device, in config order."""
    by_device: dict[str, list[Reading]] = {}
    for reading in readings:
        by_device.setdefault(reading.device, []).append(reading)
    return [tile_view(site, device, by_device.get(device.id, ()), now) for device in site.devices]


def header_view(site: Site, readings: Sequence[Reading] | None, now: float, tz: tzinfo | None = None) -> HeaderView:
    """Clock and "updated N s ago"; DATA STALE when even the freshest reading is too old."""
    clock = format_clock(now, tz)
    if readings is None:
        return HeaderView(clock, "STORE UNAVAILABLE", "error")
    newest = max((r.ts for r in readings), default=None)
    if newest is None:
        return HeaderView(clock, "NO DATA", "nodata")
    limit = max((stale_after(d, site.config.dashboard.refresh_s) for d in site.devices), default=0.0)
    age = now - newest
    if age > limit:
        return HeaderView(clock, f"DATA STALE · updated {format_age(age)}", "stale")
    return HeaderView(clock, f"updated {format_age(age)}", "fresh")


# --- static page and trend choices -----------------------------------------------------------------

def room_groups(site: Site) -> tuple[RoomGroup, ...]:
    """Rooms in config order with their devices in config order; rooms without devices left out."""
    groups = []
    for room in site.config.rooms:
        cards = tuple(DeviceCard(d.id, d.label, d.device_class, room.name) for d in site.devices if d.room == room.id)
        if cards:
            groups.append(RoomGroup(room.id, room.name, cards))
    return tuple(groups)


def numeric_points(profile: DeviceProfile) -> list[PointSpec]:
    """Points that can be drawn as a line: gauges and counters, summary points first, then the rest."""
    numeric = [s for s in (*profile.points, *HEALTH_POINTS) if s.kind in (Kind.GAUGE, Kind.COUNTER)]
    order = {name: i for i, name in enumerate(profile.summary)}
    return sorted(numeric, key=lambda s: order.get(s.name, len(order)))


def point_options(site: Site, device_id: str | None) -> list[Option]:
    """Trend point choices of a device, labelled with their unit; empty for an unknown device."""
    device = _device_or_none(site, device_id)
    if device is None:
        return []
    return [Option(_point_option_label(spec), spec.name) for spec in numeric_points(site.profile(device))]


def _point_option_label(spec: PointSpec) -> str:
    unit = unit_symbol(spec.unit)
    return f"{spec.name} ({unit})" if unit else spec.name


def _device_or_none(site: Site, device_id: Any) -> Device | None:
    if not isinstance(device_id, str):
        return None
    try:
        return site.device(device_id)
    except KeyError:
        return None


def page_model(site: Site) -> PageModel:
    """The static page of a site (no readings needed)."""
    devices = site.devices
    default_device = devices[0].id if devices else None
    points = point_options(site, default_device)
    name = site.config.site.name
    return PageModel(
        title=f"facwatch — {name}", site_name=name, rooms=room_groups(site),
        refresh_ms=round(site.config.dashboard.refresh_s * 1000),
        device_options=tuple(Option(f"{d.label} ({d.id})" if d.name else d.id, d.id) for d in devices),
        range_options=tuple(Option(label, seconds) for label, seconds in TREND_RANGES),
        default_device=default_device, default_point=points[0].value if points else None,
        default_range_s=DEFAULT_TREND_RANGE_S, point_options=tuple(points),
    )


def trend_request(site: Site, device_id: Any, point: Any, range_s: Any, now: float) -> TrendRequest | None:
    """A trend query from the browser's (untrusted) choices; None unless every choice is one we offered."""
    device = _device_or_none(site, device_id)
    if device is None or range_s not in {seconds for _, seconds in TREND_RANGES} or isinstance(range_s, bool):
        return None
    spec = next((s for s in numeric_points(site.profile(device)) if s.name == point), None)
    if spec is None:
        return None
    return TrendRequest(device, spec, now - range_s, now)


# --- per-tick cache --------------------------------------------------------------------------------

class _Slot:
    __slots__ = ("done", "lock", "tick", "value")

    def __init__(self, tick: int) -> None:
        self.lock = threading.Lock()
        self.tick = tick
        self.done = False
        self.value: Any = None


class TickCache:
    """Results computed at most once per refresh tick and shared by every browser.

    Example: ``cache.get("latest", store.latest)`` — ten wall screens polling every ``refresh_s`` cost one
    query per tick. Concurrent callers of the same key wait for the first one instead of querying too.
    A key may use a longer ``period`` (a week-long trend need not be recomputed every 2 s); the least
    recently used keys beyond ``max_keys`` are dropped, so browsing many series cannot grow memory.
    """

    def __init__(self, refresh_s: float, clock: Callable[[], float], max_keys: int = 64):
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s}")
        self._refresh_s = refresh_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], T], period: float | None = None) -> T:
        """The cached value of ``key`` for the current tick (of ``period``, default refresh_s), computed once."""
        tick = int(self._clock() // max(period or 0.0, self._refresh_s))
        with self._lock:
            slot = self._slots.get(key)
            if slot is None or slot.tick != tick:
                slot = self._slots[key] = _Slot(tick)
            self._slots.move_to_end(key)
            while len(self._slots) > self._max_keys:
                self._slots.popitem(last=False)
        with slot.lock:
            if not slot.done:
                slot.value = compute()  # an exception leaves the slot empty, so the next caller retries
                slot.done = True
            return slot.value
