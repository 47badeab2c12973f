"""Fire detection and suppression: zones, aspirating detection, pre-action sprinklers, clean agent.

Every step: VESDA smoke moves and raises its zones (Alert/Action → prealarm, Fire 1+ → alarm); then
each suppression system reads the zones of its cross-zoned pair (``simulation.zones`` of the device,
e.g. a pre-action system on [1, 2], a gas system on [3, 4], a VESDA on [5]) and runs its release logic
(REFERENCE.md §5). The knobs are what a scenario or drill does to the building; facwatch itself never
writes to a fire panel — ``reset()`` is the simulator's own end of scenario.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device
from simulators.devices.firepanel import FIRE_RANK, FirePanelView, ZoneBoard, ZoneState, ZoneStatus
from simulators.devices.gas import GasSystem, GasView
from simulators.devices.preaction import PreactionSystem, PreactionView
from simulators.devices.vesda import VesdaDetector, VesdaView

if TYPE_CHECKING:
    from simulators.plant import DeviceModel, Plant

System = TypeVar("System", VesdaDetector, PreactionSystem, GasSystem)


def _pick(systems: dict[str, System], device_id: str | None, kind: str) -> Iterable[System]:
    """All systems of a kind, or the one named; KeyError for an unknown name."""
    if device_id is None:
        return systems.values()
    if device_id not in systems:
        raise KeyError(f"no {kind} {device_id!r} (configured: {', '.join(systems) or 'none'})")
    return (systems[device_id],)


class FireSystem:
    """Detection zones and the suppression systems they release."""

    def __init__(self, site: Site):
        self.site = site
        self.zones = ZoneBoard()
        self.vesdas: dict[str, VesdaDetector] = {}
        self.preactions: dict[str, PreactionSystem] = {}
        self.gases: dict[str, GasSystem] = {}
        self._rng: random.Random | None = None
        builders = {"vesda": (self.vesdas, VesdaDetector), "preaction": (self.preactions, PreactionSystem),
                    "gas": (self.gases, GasSystem)}
        for device in site.devices:
            if device.device_class in builders:
                systems, build = builders[device.device_class]
                systems[device.id] = build(device.id, list(device.simulation.zones))

    # --- knobs ---------------------------------------------------------------------------------

    def set_zone(self, zone: int, state: str) -> None:
        """What a zone's detectors say: normal, prealarm, alarm, trouble or disabled."""
        self.zones.set(zone, state)

    def set_vesda_smoke(self, relative: float, ramp_s: float = 60.0, *, device_id: str | None = None) -> None:
        """Ramp VESDA smoke to ``relative`` on the 0–20 scale (20 = Fire 1; more reaches Fire 2)."""
        for detector in _pick(self.vesdas, device_id, "VESDA"):
            detector.set_smoke(relative, ramp_s)

    def set_preaction_leak(self, bar_per_min: float, *, device_id: str | None = None) -> None:
        """A leak in the pre-action piping, on top of the natural one."""
        for system in _pick(self.preactions, device_id, "pre-action system"):
            system.set_leak(bar_per_min)

    def set_compressor_failed(self, failed: bool, *, device_id: str | None = None) -> None:
        """The pre-action air compressor fails (True) or is repaired (False)."""
        for system in _pick(self.preactions, device_id, "pre-action system"):
            system.compressor_failed = bool(failed)

    def open_sprinkler_head(self, *, device_id: str | None = None) -> None:
        """A sprinkler head of the pre-action piping opens: the air vents within seconds."""
        for system in _pick(self.preactions, device_id, "pre-action system"):
            system.open_head()

    def set_gas_abort(self, held: bool, *, device_id: str | None = None) -> None:
        """Hold (True) or let go (False) the gas abort switch."""
        for system in _pick(self.gases, device_id, "gas system"):
            system.abort_held = bool(held)

    def set_gas_lockoff(self, on: bool, *, device_id: str | None = None) -> None:
        """Close (True) or open (False) the gas lock-off valve."""
        for system in _pick(self.gases, device_id, "gas system"):
            system.lockoff = bool(on)

    def reset(self) -> None:
        """End of scenario: zones normal, clean air, systems reset, air and agent restored."""
        self.zones.clear()
        for system in (*self.vesdas.values(), *self.preactions.values(), *self.gases.values()):
            system.reset()

    # --- read-only state -----------------------------------------------------------------------

    def zone(self, zone: int) -> ZoneStatus:
        """A zone as the fire panel reports it."""
        return self.zones.status(zone)

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float, plant: Plant) -> None:
        """Smoke, then zones, then release logic."""
        if dt_s <= 0:
            return
        if self._rng is None:
            self._rng = plant.rng("fire")
        for detector in self.vesdas.values():
            detector.step(dt_s, self._rng)
        self.zones.detect(self._detections())
        for system in (*self.preactions.values(), *self.gases.values()):
            system.step(dt_s, self.zones)

    def _detections(self) -> dict[int, ZoneState]:
        """The highest state any aspirating detector raises on each zone."""
        merged: dict[int, ZoneState] = {}
        for detector in self.vesdas.values():
            for zone, state in detector.detections().items():
                if FIRE_RANK[state] > FIRE_RANK[merged.get(zone, ZoneState.NORMAL)]:
                    merged[zone] = state
        return merged

    # --- device views --------------------------------------------------------------------------

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> DeviceModel | None:
        """Fire panel, VESDA, pre-action and gas views; None for other classes."""
        kind = profile.device_class
        if kind == "firepanel":
            return FirePanelView(self.zones, device)
        if kind == "vesda":
            return VesdaView(self.vesdas[device.id])
        if kind == "preaction":
            return PreactionView(self.preactions[device.id])
        if kind == "gas":
            return GasView(self.gases[device.id])
        return None
