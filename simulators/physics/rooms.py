"""Room physics: IT heat, cooling, temperature and humidity at the rack inlets."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device
from simulators.devices.climate import RoomClimateModel

if TYPE_CHECKING:
    from simulators.plant import Plant


class RoomsModel:
    """Rooms of the site and the sensors in them."""

    def __init__(self, site: Site):
        self.site = site
        self.sensors: dict[str, RoomClimateModel] = {}

    def step(self, dt_s: float, plant: Plant) -> None:
        """Each sensor drifts around its set point."""
        for sensor in self.sensors.values():
            sensor.step(dt_s)

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> RoomClimateModel | None:
        """Sensor views for temperature/humidity transmitters."""
        if profile.device_class != "thsensor":
            return None
        model = self.sensors[device.id] = RoomClimateModel(device.simulation, rng, unit_id=unit_id or 1)
        return model
