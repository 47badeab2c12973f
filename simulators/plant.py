"""The site as one physical system that every simulated device reads from.

Utility power → ATS ← generator → UPS rings → IT load → heat in each room ← CRACs; fire detection
and suppression beside it. Subsystems are stepped in that order each tick, so a utility failure
reaches the UPS, the ATS, the generator and (through the cooling that loses power) the rooms in the
same step. Device models are thin views: they turn subsystem state into the points of a profile.

Time is simulated seconds; ``SiteSimulator`` advances it by wall time × ``time_scale``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Protocol

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device
from simulators.physics.fire import FireSystem
from simulators.physics.power import PowerChain
from simulators.physics.rooms import RoomsModel

MAX_SUBSTEP_S = 1.0  # physics is integrated in steps of at most 1 simulated second, however fast time runs


class DeviceModel(Protocol):
    """What a simulated device offers: current point values (state names for enums)."""

    def values(self) -> Mapping[str, float | str]:
        """Engineering values (state names for enums) keyed by point name."""


class Subsystem(Protocol):
    """One part of the plant: it advances its own state and builds the device views it owns."""

    def step(self, dt_s: float, plant: Plant) -> None:
        """Advance dt_s simulated seconds, reading other subsystems through ``plant``."""

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> DeviceModel | None:
        """The device view for a device of a class this subsystem owns, else None."""


class Plant:
    """Power chain, rooms and fire system of one site, stepped together."""

    def __init__(self, site: Site, seed: int | None = None, epoch_at_start: float | None = None):
        self.site = site
        self.seed = seed
        self.clock_s = 0.0
        # wall-clock time the simulation started at: dates a device reports (last transfer, last test)
        self.power = PowerChain(site, epoch_at_start=epoch_at_start)
        self.rooms = RoomsModel(site)
        self.fire = FireSystem(site)
        self.subsystems: tuple[Subsystem, ...] = (self.power, self.rooms, self.fire)

    def rng(self, name: str) -> random.Random:
        """A generator per device or subsystem: reproducible with a seed, independent of the others."""
        return random.Random() if self.seed is None else random.Random(f"{self.seed}:{name}")

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None) -> DeviceModel:
        """The view that serves one configured device; ValueError if no subsystem simulates its class."""
        for subsystem in self.subsystems:
            model = subsystem.model_for(device, profile, unit_id, self.rng(device.id))
            if model is not None:
                return model
        raise ValueError(f"{device.id}: no simulator for class {profile.device_class!r} ({profile.id})")

    def step(self, dt_s: float) -> None:
        """Advance the whole plant by dt_s simulated seconds, in sub-steps of at most MAX_SUBSTEP_S."""
        while dt_s > 1e-9:
            sub = min(dt_s, MAX_SUBSTEP_S)
            self.clock_s += sub
            for subsystem in self.subsystems:
                subsystem.step(sub, self)
            dt_s -= sub
