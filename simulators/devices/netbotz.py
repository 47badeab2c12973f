"""APC NetBotz sensor pod (thsensor/apc_netbotz): temperature, humidity, dew point and a door switch.

The pod computes its dew point from its own temperature and humidity (REFERENCE.md §4.5, §6), so the
three values always agree by Magnus; the door of the rack it sits in stays closed.
"""

from __future__ import annotations

from simulators.devices.climate import RoomClimateModel


class NetBotzModel:
    """NETBOTZV2-MIB view of one probe."""

    def __init__(self, probe: RoomClimateModel, label: str):
        self.probe = probe
        self.label = label

    def values(self) -> dict[str, float | str]:
        """Engineering values (ErrorStatus and door names) for every point of thsensor/apc_netbotz."""
        return {
            "ambient.temperature": self.probe.temperature_c,
            "sensor.status": "normal",
            "sensor.label": self.label,
            "ambient.humidity": self.probe.humidity_pct,
            "sensor.humidity.status": "normal",
            "ambient.dew_point": self.probe.dew_point_c,
            "door.state": "closed",
        }
