"""Power chain physics: utility, generator, ATS and the UPSs behind them."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device
from simulators.devices.ups import UpsModel

if TYPE_CHECKING:
    from simulators.plant import Plant


class PowerChain:
    """Utility → UPSs (the generator and ATS come with their own models)."""

    def __init__(self, site: Site):
        self.site = site
        self.utility_available = True
        self.ups: dict[str, UpsModel] = {}

    @property
    def essential_bus_live(self) -> bool:
        """True while the bus that feeds cooling (utility or generator through the ATS) has voltage."""
        return self.utility_available

    def it_load_kw(self, room_id: str) -> float:
        """IT load dissipated in a room: the UPS output shared among the rooms."""
        rooms = [room.id for room in self.site.config.rooms]
        total_kw = sum(ups.output_power_w() for ups in self.ups.values()) / 1000.0
        return total_kw / len(rooms) if room_id in rooms else 0.0

    def set_utility(self, available: bool) -> None:
        """A utility failure (False) or its return (True)."""
        self.utility_available = available

    def step(self, dt_s: float, plant: Plant) -> None:
        """UPS rectifiers see the utility; batteries drain or charge."""
        for ups in self.ups.values():
            ups.mains_available = self.essential_bus_live
            ups.step(dt_s)

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> UpsModel | None:
        """UPS views for UPS devices."""
        if profile.device_class != "ups":
            return None
        model = self.ups[device.id] = UpsModel(device.simulation, rng)
        return model
