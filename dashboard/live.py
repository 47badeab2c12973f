"""One consistent picture of the site per refresh tick, shared by every page and every screen.

``LiveCache.snapshot()`` reads the latest readings, the active alerts and the component heartbeats
once per tick (however many wall screens ask) and hands out a frozen ``Snapshot``; the pages' view-models
are pure functions of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, TypeVar

from alerts.commands import Heartbeat
from alerts.model import Alert, AlertState
from alerts.rules import Rule
from collectors.model import Reading
from config.load import Site
from config.schema import Device
from dashboard.data import (
    DashboardSources,
    TickCache,
    TileView,
    ValueView,
    spec_for,
    stale_after,
    tile_view,
    value_view,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

ACTIVE_STATES = (AlertState.PENDING, AlertState.FIRING)


@dataclass(frozen=True)
class Snapshot:
    """The site at one instant: newest reading per point, active alerts, heartbeats, and what failed.

    ``readings`` is None when the store could not be read; ``alerts``/``heartbeats`` are None when the
    dashboard has no such source or it failed (``alerts_error``/``heartbeats_error`` tell which).
    """

    site: Site
    now: float
    rules: tuple[Rule, ...]
    readings: Mapping[str, Mapping[str, Reading]] | None
    alerts: tuple[Alert, ...] | None = None
    heartbeats: Mapping[str, Heartbeat] | None = None
    alerts_error: bool = False
    heartbeats_error: bool = False
    tz: tzinfo | None = None
    unavailable_shards: tuple[str, ...] = ()  # "2/2": collector shards whose file could not be read
    # memos: a snapshot is read by many view-models in one tick; each value is worked out once
    _tiles: dict[str, TileView] = field(default_factory=dict, repr=False, compare=False)
    _values: dict[tuple[str, str], ValueView | None] = field(default_factory=dict, repr=False, compare=False)
    _classes: dict[tuple[str, str | None], list[Device]] = field(default_factory=dict, repr=False, compare=False)
    _views: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def refresh_s(self) -> float:
        """The configured refresh period."""
        return float(self.site.config.dashboard.refresh_s)

    def reading(self, device_id: str, point: str) -> Reading | None:
        """The newest reading of a point, or None."""
        if self.readings is None:
            return None
        return self.readings.get(device_id, {}).get(point)

    def tile(self, device: Device) -> TileView:
        """The device's overall state (worst state point, stale, no data) with its data age."""
        view = self._tiles.get(device.id)
        if view is None:
            readings = list(self.readings.get(device.id, {}).values()) if self.readings else []
            view = tile_view(self.site, device, readings, self.now)
            self._tiles[device.id] = view
        return view

    def value(self, device: Device, point: str) -> ValueView | None:
        """A point ready to print (value, unit, status); None when the device's profile has no such point."""
        key = (device.id, point)
        if key not in self._values:
            spec = spec_for(self.site.profile(device), point)
            self._values[key] = None if spec is None else value_view(
                spec, self.reading(device.id, point), self.now, stale_after(device, self.refresh_s))
        return self._values[key]

    def number(self, device: Device, point: str) -> float | None:
        """A gauge's current value when it is good and fresh; None otherwise (never compute from old data)."""
        view = self.value(device, point)
        reading = self.reading(device.id, point)
        if view is None or reading is None or view.status != "good":
            return None
        return reading.value

    def state(self, device: Device, point: str) -> str | None:
        """A state point's current state name when good and fresh; None otherwise."""
        view = self.value(device, point)
        if view is None or view.status != "good" or view.severity is None:
            return None
        return view.text

    def view(self, name: str, build: Callable[[Snapshot], T]) -> T:
        """A view-model of this snapshot built once (the wall and the rooms page share the rooms' view)."""
        if name not in self._views:
            self._views[name] = build(self)
        return self._views[name]

    def devices(self, device_class: str, room: str | None = None) -> list[Device]:
        """Configured devices of a class (in one room), in config order."""
        key = (device_class, room)
        if key not in self._classes:
            self._classes[key] = [d for d in self.site.devices
                                  if d.device_class == device_class and (room is None or d.room == room)]
        return list(self._classes[key])

    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (empty without alert state)."""
        return [a for a in self.alerts or () if a.state in ACTIVE_STATES]


class LiveCache(TickCache):
    """The per-tick cache of a dashboard app, plus the one ``Snapshot`` per tick that all pages share.

    Example: ``ctx.cache.snapshot().tile(device)``. Failures of a source are logged once on the way down
    and once on recovery, not every tick of every screen.
    """

    def __init__(self, sources: DashboardSources, rules: Sequence[Rule], tz: tzinfo | None = None):
        super().__init__(sources.site.config.dashboard.refresh_s, sources.clock)
        self.sources = sources
        self.rules = tuple(rules)
        self.tz = tz
        self._device_ids = [device.id for device in sources.site.devices]
        self._db_lock = threading.Lock()  # alert state and actions share one sqlite connection each
        self._health: dict[str, bool] = {}
        self._health_lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The current tick's snapshot (computed once per tick for all screens)."""
        return self.get("snapshot", self._snapshot)

    def latest(self) -> list[Reading] | None:
        """The current tick's latest readings of the configured devices; None when the store fails."""
        return self.get("latest", lambda: self._guarded("store", lambda: self.sources.store.latest(self._device_ids)))

    def _snapshot(self) -> Snapshot:
        now = self.sources.clock()
        latest = self.latest()
        readings = None
        if latest is not None:
            readings = {}
            for reading in latest:
                readings.setdefault(reading.device, {})[reading.point] = reading
        alerts = heartbeats = None
        alerts_error = heartbeats_error = False
        if self.sources.alerts is not None:
            loaded = self._guarded("alert state", lambda: self._locked(self.sources.alerts.load))
            alerts_error = loaded is None
            alerts = tuple(loaded.values()) if loaded is not None else None
        if self.sources.actions is not None:
            heartbeats = self._guarded("heartbeats", lambda: self._locked(self.sources.actions.heartbeats))
            heartbeats_error = heartbeats is None
        return Snapshot(self.sources.site, now, self.rules, readings, alerts, heartbeats, alerts_error,
                        heartbeats_error, self.tz, self._unavailable_shards())

    def _unavailable_shards(self) -> tuple[str, ...]:
        """The collector shards whose SQLite file failed this tick (a sharded site's sources only)."""
        down: set[str] = set()
        for source in (self.sources.alerts, self.sources.actions):
            down.update(getattr(source, "unavailable_shards", lambda: ())())
        return tuple(sorted(down, key=lambda name: int(name.split("/")[0])))

    def _locked(self, read: Callable[[], T]) -> T:
        with self._db_lock:
            return read()

    def _guarded(self, name: str, read: Callable[[], T]) -> T | None:
        try:
            value = read()
        except Exception:
            if self._flip(name, False):
                log.exception("dashboard cannot read the %s; shown as unavailable until it answers", name)
            return None
        if self._flip(name, True):
            log.warning("dashboard reads the %s again", name)
        return value

    def _flip(self, name: str, ok: bool) -> bool:
        """Record a source's health; True when it changed (a first success is no change worth a log)."""
        with self._health_lock:
            was: Any = self._health.get(name, True)
            self._health[name] = ok
        return was != ok


@dataclass(frozen=True, slots=True)
class Fact:
    """One labelled value of a diagram box or card, ready to print.

    ``state`` names its colour: a Severity value (``ok``, ``warning``...), ``stale``/``missing``/``nodata``
    for data we cannot trust, or ``""`` for a plain number. ``note`` says how an estimate was made.
    """

    label: str
    text: str
    unit: str = ""
    state: str = ""
    note: str = ""


def fact(snapshot: Snapshot, device: Device, point: str, label: str | None = None) -> Fact | None:
    """A point of a device as a Fact (state points carry their severity); None when the profile lacks it."""
    view = snapshot.value(device, point)
    if view is None:
        return None
    state = view.status if view.status != "good" else (view.severity.value if view.severity is not None else "")
    text = view.text.replace("_", " ") if view.severity is not None else view.text  # no_flow → no flow
    return Fact(label or view.label, text, view.unit if view.status in ("good", "stale") else "", state,
                view.marker)


def present(facts: Sequence[Fact | None]) -> tuple[Fact, ...]:
    """The facts that exist (a profile without a point gives None)."""
    return tuple(f for f in facts if f is not None)


def live_cache(ctx: Any) -> LiveCache:
    """The LiveCache of a page context (``create_app`` always builds one)."""
    cache = ctx.cache
    if not isinstance(cache, LiveCache):
        raise TypeError("the page context's cache is not a LiveCache; build the app with create_app")
    return cache
