"""Readings of a healthy plant for any site: every state point in its first OK state, gauges at sane values.

Shared by the dashboard's unit tests, browser tests and bench/bench_dashboard.py.
"""

from __future__ import annotations

from collectors.model import REACHABLE_POINT, Kind, Reading, Severity
from config.load import Site

# Typical values of the gauges the wall pages show; anything else gets a small plausible number.
GAUGES = {
    "ups.load": 52.0, "battery.charge": 100.0, "battery.runtime": 46.0, "input.voltage": 230.0,
    "output.voltage": 230.0, "output.realpower": 41_600.0, "output.frequency": 50.0, "input.frequency": 50.0,
    "battery.voltage": 54.6, "battery.temperature": 24.0, "battery.time_on_battery": 0.0,
    "fuel.level": 85.0, "genset.power": 0.0, "genset.load": 0.0, "engine.battery_voltage": 27.4, "engine.speed": 0.0,
    "ats.mains.voltage": 231.0, "ats.generator.voltage": 0.0, "ats.mains.frequency": 50.0,
    "ats.generator.frequency": 0.0, "supply_air.temperature": 18.1, "return_air.temperature": 27.6,
    "return_air.humidity": 41.0, "supply_air.humidity": 55.0, "cooling.capacity": 58.0, "fan.speed": 70.0,
    "preaction.air_pressure": 2.4, "gas.cylinder_pressure": 42.0, "gas.countdown": 0.0,
    "vesda.smoke_relative": 2.0, "vesda.flow_deviation": 1.0,
}


def healthy_readings(site: Site, now: float) -> list[Reading]:
    """One reading per point of every device: OK states, typical gauges, the inlet values of the simulation."""
    readings = []
    for device in site.devices:
        profile = site.profile(device)
        inlet = {"ambient.temperature": device.simulation.temperature_c,
                 "ambient.humidity": device.simulation.humidity_pct}
        for spec in profile.points:
            if spec.kind is Kind.STATE:
                code = next((c for c, s in spec.enum.items() if s.severity is Severity.OK), None)
                if code is not None:
                    readings.append(Reading(device.id, spec.name, now, float(code)))
            elif spec.kind is Kind.GAUGE:
                value = inlet.get(spec.name, GAUGES.get(spec.name, 1.0))
                readings.append(Reading(device.id, spec.name, now, value))
        readings.append(Reading(device.id, REACHABLE_POINT, now, 1.0))
    return readings
