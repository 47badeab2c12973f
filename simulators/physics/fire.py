"""Fire detection and suppression physics: zones, aspirating detection, pre-action, clean agent."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device

if TYPE_CHECKING:
    from simulators.plant import DeviceModel, Plant


class FireSystem:
    """Detection zones and the suppression systems they release."""

    def __init__(self, site: Site):
        self.site = site

    def step(self, dt_s: float, plant: Plant) -> None:
        """Nothing moves yet."""

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> DeviceModel | None:
        """No fire devices are simulated yet."""
        return None
