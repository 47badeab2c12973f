"""Precision cooling units (CRAC/CRAH): one unit's control and state, and its Liebert and Uniflair views.

The room (``simulators.physics.rooms``) owns the heat balance; a unit answers how much heat it removes
from return air at a given temperature, and keeps what its controller would show: supply and return
air, capacities, stages, alarms and run hours.

Control: the unit's controller is proportional on return air — it removes G × (return − set point),
G being its airflow (kW/K), up to its sensible capacity — so with spare capacity its supply air sits at
``setpoint_c`` and the cold aisle with it. EC fans follow the room's demand between a minimum speed and
100 %, which keeps the coil ΔT near its design value at any load, and speed up when the cold aisle
is above its set point, so a unit catching up after a stop delivers its full capacity.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field

from config.schema import DeviceSimulation
from simulators.devices.climate import MeanReverting, RoomAir, relative_humidity_pct

COIL_DESIGN_DELTA_T_K = 12.0  # air ΔT across a DX/CW coil at full capacity; 10–12 K is the usual design
FAN_MIN_FRACTION = 0.3  # EC fans are not run below about 30 % speed (motor cooling, coil icing)
# EC fans also speed up on the rack-inlet (cold-aisle) error: full speed this far above the set point
# (iCOM-style fan control on remote rack sensors), so a hot room gets the whole capacity back
FAN_PROPORTIONAL_BAND_K = 2.0
COMPRESSOR_RESTART_DELAY_S = 30.0  # anti-short-cycle / staggered restart after a stop; fans start at once
PROBE_TAU_S = 30.0  # the supply probe follows the coil; with no airflow it settles to the return air
PROBE_NOISE_SIGMA_C = 0.1  # what the controller's thermistors add: turbulence and 0.1 K resolution
PROBE_NOISE_TAU_S = 120.0
SECOND_STAGE_FRACTION = 0.5  # two compressor stages: the second cuts in above half capacity
# Alarm limits on return air (the controller's own alarm set points, REFERENCE.md §4.1 columns 51/52)
RETURN_HIGH_ABOVE_SETPOINT_K = 17.0  # 35 °C at an 18 °C supply set point: well past the design return
RETURN_LOW_BELOW_SETPOINT_K = 3.0
HUMIDITY_HIGH_PCT = 70.0  # REFERENCE.md §6: the ASHRAE recommended ceiling
HUMIDITY_LOW_PCT = 20.0
HUMIDITY_DEADBAND_PCT = 10.0  # humidifier / dehumidifier call outside set point ± this
UNIFLAIR_COMPRESSORS = 2  # coils 2–3 fitted; coils 4–5 (compressors 3–4) stay off


@dataclass(frozen=True, slots=True)
class Controller:
    """A unit's proportional cooling control: gain kW/K on return air above the set point, capped."""

    gain_kw_per_k: float
    setpoint_c: float
    limit_kw: float

    def output_kw(self, return_c: float) -> float:
        """Cooling delivered at this return-air temperature."""
        return min(max(self.gain_kw_per_k * (return_c - self.setpoint_c), 0.0), self.limit_kw)


def _probe_noise() -> MeanReverting:
    return MeanReverting(0.0, PROBE_NOISE_SIGMA_C, PROBE_NOISE_TAU_S, 0.0)


def _initial_hours(device_id: str, base: float, spread: float) -> float:
    """Run hours a unit has at start-up: stable per device id, different between units."""
    return base + zlib.crc32(device_id.encode()) % int(spread)


@dataclass
class CracUnit:
    """One cooling unit: power, failure, restart delay, fans, delivered cooling, probes and counters."""

    device_id: str
    room: RoomAir
    capacity_kw: float
    setpoint_c: float
    failed: bool = False
    powered: bool = True
    restart_left_s: float = 0.0
    fan_fraction: float = FAN_MIN_FRACTION
    cooling_kw: float = 0.0
    return_c: float = 0.0
    supply_c: float = 0.0
    hours: dict[str, float] = field(default_factory=dict)
    return_noise: MeanReverting = field(default_factory=_probe_noise)
    supply_noise: MeanReverting = field(default_factory=_probe_noise)

    @classmethod
    def build(cls, unit_id: str, room: RoomAir, params: DeviceSimulation) -> CracUnit:
        """A unit with this capacity and set point, at its set point, counters part-way through life."""
        hours = {"fan": _initial_hours(unit_id, 20_000, 10_000),
                 "compressor.1": _initial_hours(unit_id + "c1", 12_000, 6_000),
                 "compressor.2": _initial_hours(unit_id + "c2", 6_000, 4_000),
                 "humidifier": _initial_hours(unit_id + "h", 500, 500), "heater.1": 150.0}
        return cls(unit_id, room, params.cooling_kw, params.setpoint_c,
                   return_c=params.setpoint_c, supply_c=params.setpoint_c, hours=hours)

    # --- state ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Fans turning: powered and not tripped."""
        return self.powered and not self.failed

    @property
    def compressors_ready(self) -> bool:
        """Running and past the restart delay."""
        return self.running and self.restart_left_s <= 0.0

    @property
    def cooling_fraction(self) -> float:
        """Delivered sensible cooling as a fraction of capacity."""
        return self.cooling_kw / self.capacity_kw

    @property
    def airflow_kw_per_k(self) -> float:
        """Heat the unit's airflow carries per kelvin (0 with the fans stopped)."""
        if not self.running:
            return 0.0
        return self.fan_fraction * self.capacity_kw / COIL_DESIGN_DELTA_T_K

    @property
    def return_reading_c(self) -> float:
        """Return air as the unit's probe reads it."""
        return self.return_c + self.return_noise.value

    @property
    def supply_reading_c(self) -> float:
        """Supply air as the unit's probe reads it."""
        return self.supply_c + self.supply_noise.value

    @property
    def return_high_c(self) -> float:
        """High return-air alarm limit."""
        return self.setpoint_c + RETURN_HIGH_ABOVE_SETPOINT_K

    @property
    def return_low_c(self) -> float:
        """Low return-air alarm limit."""
        return self.setpoint_c - RETURN_LOW_BELOW_SETPOINT_K

    @property
    def return_rh_pct(self) -> float:
        """Return-air relative humidity at the room's dew point."""
        return min(relative_humidity_pct(self.return_reading_c, self.room.dew_point_c), 100.0)

    @property
    def supply_rh_pct(self) -> float:
        """Supply-air relative humidity (saturated at most: the coil condenses the rest)."""
        return min(relative_humidity_pct(self.supply_reading_c, self.room.dew_point_c), 100.0)

    @property
    def humidity_setpoint_pct(self) -> float:
        """The RH design return air has at the room's normal dew point: in normal operation, no call."""
        design_return_c = self.setpoint_c + COIL_DESIGN_DELTA_T_K
        return float(round(relative_humidity_pct(design_return_c, self.room.normal_dew_point_c)))

    @property
    def humidifying(self) -> bool:
        """Humidifier called (latent effect not modelled: minutes of steam do not move a room's dew point)."""
        return self.running and self.return_rh_pct < self.humidity_setpoint_pct - HUMIDITY_DEADBAND_PCT

    @property
    def dehumidifying(self) -> bool:
        """Dehumidification called."""
        return self.running and self.return_rh_pct > self.humidity_setpoint_pct + HUMIDITY_DEADBAND_PCT

    def conditions(self) -> frozenset[str]:
        """Alarm conditions active now, named as the Uniflair alarm bits (the Liebert view counts them)."""
        checks = {
            "power_failure": not self.powered,
            "airflow_loss": self.failed,  # a tripped unit is a fan/airflow trip: it stops and alarms
            "high_temperature": self.return_reading_c > self.return_high_c,
            "low_temperature": self.return_reading_c < self.return_low_c,
            "high_humidity": self.return_rh_pct > HUMIDITY_HIGH_PCT,
            "low_humidity": self.return_rh_pct < HUMIDITY_LOW_PCT,
        }
        return frozenset(name for name, active in checks.items() if active)

    # --- time ----------------------------------------------------------------------------------

    def set_fan_speed(self, load_share: float, cold_aisle_c: float) -> None:
        """EC fan speed: the unit's share of the load, or more while the cold aisle is above set point."""
        inlet_call = (cold_aisle_c - self.setpoint_c) / FAN_PROPORTIONAL_BAND_K
        self.fan_fraction = min(max(load_share, inlet_call, FAN_MIN_FRACTION), 1.0)

    def update_power(self, dt_s: float, bus_live: bool) -> None:
        """Follow the essential bus; compressors wait out the restart delay after any stop."""
        was_running = self.running
        self.powered = bus_live
        if self.running and not was_running:
            self.restart_left_s = COMPRESSOR_RESTART_DELAY_S
        elif self.running:
            self.restart_left_s = max(0.0, self.restart_left_s - dt_s)

    def controller(self) -> Controller:
        """The control law now: cooling = gain × (return − set point), between 0 and the limit."""
        if not self.compressors_ready:
            return Controller(0.0, self.setpoint_c, 0.0)
        return Controller(self.airflow_kw_per_k, self.setpoint_c, self.capacity_kw)

    def demand_kw(self, return_c: float) -> float:
        """Heat the controller removes from return air at this temperature (proportional, capped)."""
        return self.controller().output_kw(return_c)

    def settle(self, dt_s: float, return_c: float, rng: random.Random) -> None:
        """Take the room's return air for this step: cooling, supply air, probes and run hours follow."""
        self.return_c = return_c
        self.cooling_kw = self.demand_kw(return_c)
        airflow = self.airflow_kw_per_k
        target = return_c - self.cooling_kw / airflow if airflow > 0 else return_c
        self.supply_c = target + (self.supply_c - target) * math.exp(-dt_s / PROBE_TAU_S)
        self.return_noise.step(dt_s, rng)
        self.supply_noise.step(dt_s, rng)
        self._count_hours(dt_s)

    def _count_hours(self, dt_s: float) -> None:
        hours = dt_s / 3600.0
        running = {"fan": self.running, "compressor.1": self.cooling_kw > 0,
                   "compressor.2": self.cooling_fraction > SECOND_STAGE_FRACTION,
                   "humidifier": self.humidifying, "heater.1": False}
        for name, on in running.items():
            if on:
                self.hours[name] += hours

    def run_hours(self, name: str) -> float:
        """Whole hours a part has run (the controllers count whole hours)."""
        return float(math.floor(self.hours[name]))


def _on_off(on: bool) -> str:
    return "on" if on else "off"


def _percent(fraction: float) -> float:
    return max(0.0, min(100.0, 100.0 * fraction))


class LiebertCracView:
    """LIEBERT-GP-ENVIRONMENTAL-MIB view of a unit (crac/liebert_gp_env, REFERENCE.md §4.1)."""

    def __init__(self, unit: CracUnit):
        self.unit = unit

    def values(self) -> dict[str, float | str]:
        """Engineering values and state names for every point of the profile."""
        unit = self.unit
        conditions = unit.conditions()
        return {
            **self._temperatures(),
            "return_air.humidity": unit.return_rh_pct,
            "supply_air.humidity": unit.supply_rh_pct,
            "humidity.setpoint": unit.humidity_setpoint_pct,
            "crac.system": _on_off(unit.running),
            "cooling.state": _on_off(unit.cooling_kw > 0),
            "heating.state": "off",
            "humidifier.state": _on_off(unit.humidifying),
            "dehumidifier.state": _on_off(unit.dehumidifying),
            "fan.state": _on_off(unit.running),
            "crac.general_alarm": _on_off(bool(conditions)),
            "crac.audible_alarm": _on_off(bool(conditions)),
            "crac.operating_mode": "auto",
            "cooling.capacity": _percent(unit.cooling_fraction),
            "heating.capacity": 0.0,
            "fan.capacity": _percent(unit.fan_fraction) if unit.running else 0.0,
            "crac.conditions": float(len(conditions)),
            **self._run_hours(),
        }

    def _temperatures(self) -> dict[str, float]:
        unit = self.unit
        return {
            "return_air.temperature": unit.return_reading_c,
            "supply_air.temperature": unit.supply_reading_c,
            "control.temperature": unit.return_reading_c,  # iCOM controls on return air unless set otherwise
            "return_air.temperature.high": unit.return_high_c,
            "return_air.temperature.low": unit.return_low_c,
            "supply_air.temperature.setpoint": unit.setpoint_c,
            "temperature.setpoint": float(round(unit.setpoint_c)),  # lgpEnvTemperatureSettingDegC: whole °C
        }

    def _run_hours(self) -> dict[str, float]:
        unit = self.unit
        return {f"{name}.run_hours": unit.run_hours(name)
                for name in ("compressor.1", "compressor.2", "fan", "humidifier", "heater.1")}


class UniflairCracView:
    """Uniflair LE/SP Modbus view of a unit (crac/uniflair_modbus, REFERENCE.md §4.3)."""

    ALARM_BITS = ("high_temperature", "low_temperature", "high_humidity", "low_humidity", "airflow_loss",
                  "high_head_pressure", "low_suction_pressure", "water_leak", "filter_clogged", "smoke",
                  "power_failure", "sensor_fault")

    def __init__(self, unit: CracUnit):
        self.unit = unit

    def values(self) -> dict[str, float | str]:
        """Engineering values and state names for every point of the profile."""
        unit = self.unit
        conditions = unit.conditions()
        return {
            "fan.state": _on_off(unit.running),
            **self._compressors(),
            "heater.1.state": "off",
            "heater.2.state": "off",
            "crac.unit_on": _on_off(unit.running),
            "return_air.temperature": unit.return_reading_c,
            "return_air.humidity": unit.return_rh_pct,
            "supply_air.temperature": unit.supply_reading_c,
            "supply_air.temperature.setpoint": unit.setpoint_c,
            "humidity.setpoint": unit.humidity_setpoint_pct,
            "cooling.capacity": _percent(unit.cooling_fraction),
            "fan.speed": _percent(unit.fan_fraction) if unit.running else 0.0,
            "crac.general_alarm": "active" if conditions else "normal",
            **{f"alarm.{name}": "active" if name in conditions else "normal" for name in self.ALARM_BITS},
            "compressor.1.run_hours": unit.run_hours("compressor.1"),
        }

    def _compressors(self) -> dict[str, str]:
        stages = (self.unit.cooling_kw > 0, self.unit.cooling_fraction > SECOND_STAGE_FRACTION)
        return {f"compressor.{n}.state": _on_off(n <= UNIFLAIR_COMPRESSORS and stages[n - 1])
                for n in range(1, 5)}
