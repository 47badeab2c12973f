"""Air temperature and humidity at one probe (thsensor profiles), and the psychrometrics behind them.

A probe reads its room's cold-aisle air plus its own place in the room: ``temperature_c`` and
``humidity_pct`` of its ``simulation:`` block are what it reads while the room is at its normal
state, and it follows the room's deviations from that state. Humidity is carried as a dew point
(absolute humidity): when the air warms at constant dew point, RH falls, as on a real data floor
(REFERENCE.md §6 — Magnus, a = 17.62, b = 243.12 °C).

Pure and deterministic: no I/O, no wall clock. Time moves only when ``step(dt_s)`` is called, and all
randomness comes from the ``random.Random`` handed in, so a seed replays the same weather.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from config.schema import DeviceSimulation

# With noise = 1 a room sensor wanders about ±0.5 °C and ±2 %RH around its set point (2 σ), which is
# what a well-controlled data hall looks like at a rack inlet. The time constants are those of a
# CRAC control loop: minutes, not seconds. The dew-point wobble (local moisture, probe drift) adds to
# the RH wobble that the temperature wobble causes at constant dew point: ≈ 1 %RH σ together.
TEMPERATURE_SIGMA_C = 0.25
DEW_POINT_SIGMA_C = 0.25
TEMPERATURE_TAU_S = 600.0
DEW_POINT_TAU_S = 900.0
XYMD02_DEFAULT_BAUD = 9600  # REFERENCE.md §4.4: factory default 9600 Bd, 8N1

# REFERENCE.md §6: Magnus coefficients over water (the ones the collector uses for dew point too)
MAGNUS_A = 17.62
MAGNUS_B_C = 243.12
MIN_RH_PCT = 0.01  # ln(0) has no dew point; a capacitive sensor never reads exactly 0 %RH anyway


def _magnus(temperature_c: float) -> float:
    return MAGNUS_A * temperature_c / (MAGNUS_B_C + temperature_c)


def dew_point_c(temperature_c: float, humidity_pct: float) -> float:
    """Dew point of air at this temperature and relative humidity (Magnus)."""
    gamma = math.log(max(humidity_pct, MIN_RH_PCT) / 100.0) + _magnus(temperature_c)
    return MAGNUS_B_C * gamma / (MAGNUS_A - gamma)


def relative_humidity_pct(temperature_c: float, dew_point: float) -> float:
    """Relative humidity of air at this temperature holding this dew point (Magnus; above 100 = fog)."""
    return 100.0 * math.exp(_magnus(dew_point) - _magnus(temperature_c))


@dataclass(slots=True)
class MeanReverting:
    """An Ornstein–Uhlenbeck process stepped exactly, so any dt (1 s or 1 h) keeps the same statistics."""

    mean: float
    sigma: float  # stationary standard deviation
    tau_s: float  # time constant of the pull back to the mean
    value: float

    def step(self, dt_s: float, rng: random.Random) -> float:
        """Advance by dt_s seconds and return the new value."""
        if dt_s <= 0:
            return self.value
        decay = math.exp(-dt_s / self.tau_s)
        spread = self.sigma * math.sqrt(1.0 - decay * decay)
        self.value = self.mean + (self.value - self.mean) * decay + spread * rng.gauss(0.0, 1.0)
        return self.value


class RoomAir(Protocol):
    """The air a probe sits in: where it is now and where it is normally."""

    @property
    def air_c(self) -> float:
        """Cold-aisle air temperature now, °C."""

    @property
    def normal_air_c(self) -> float:
        """Cold-aisle air temperature in normal operation, °C."""

    @property
    def dew_point_c(self) -> float:
        """Dew point of the room air now, °C."""

    @property
    def normal_dew_point_c(self) -> float:
        """Dew point of the room air in normal operation, °C."""


@dataclass(frozen=True, slots=True)
class StillAir:
    """A room that never leaves its normal state: a probe on its own (unit tests, rooms without physics)."""

    air_c: float = 0.0
    normal_air_c: float = 0.0
    dew_point_c: float = 0.0
    normal_dew_point_c: float = 0.0


class RoomClimateModel:
    """Temperature and relative humidity at one probe: its room's air, its own offset, its own noise."""

    def __init__(self, params: DeviceSimulation, rng: random.Random, *, unit_id: int = 1,
                 room: RoomAir | None = None):
        self.params = params
        self.unit_id = unit_id
        self.room: RoomAir = room if room is not None else StillAir()
        self._rng = rng
        self.elapsed_s = 0.0
        # the probe's own dew point in normal operation: its configured T and RH (REFERENCE.md §6)
        self.normal_dew_point_c = dew_point_c(params.temperature_c, params.humidity_pct)
        self._temperature_noise = MeanReverting(0.0, TEMPERATURE_SIGMA_C * params.noise, TEMPERATURE_TAU_S, 0.0)
        self._dew_point_noise = MeanReverting(0.0, DEW_POINT_SIGMA_C * params.noise, DEW_POINT_TAU_S, 0.0)

    @property
    def temperature_c(self) -> float:
        """Air temperature at the probe, °C."""
        room_rise = self.room.air_c - self.room.normal_air_c
        return self.params.temperature_c + room_rise + self._temperature_noise.value

    @property
    def dew_point_c(self) -> float:
        """Dew point at the probe, °C."""
        room_drift = self.room.dew_point_c - self.room.normal_dew_point_c
        return self.normal_dew_point_c + room_drift + self._dew_point_noise.value

    @property
    def humidity_pct(self) -> float:
        """Relative humidity at the probe, clipped to what a capacitive sensor can report."""
        # relative to the configured point, so a probe at its normal state reads exactly humidity_pct
        shift = (_magnus(self.dew_point_c) - _magnus(self.normal_dew_point_c)
                 - _magnus(self.temperature_c) + _magnus(self.params.temperature_c))
        return min(max(self.params.humidity_pct * math.exp(shift), 0.0), 100.0)

    def step(self, dt_s: float) -> None:
        """Advance the probe's own noise by dt_s seconds (the room moves on its own)."""
        self.elapsed_s += max(dt_s, 0.0)
        self._temperature_noise.step(dt_s, self._rng)
        self._dew_point_noise.step(dt_s, self._rng)

    def values(self) -> dict[str, float]:
        """Engineering values for every point of thsensor/generic_xymd02."""
        return {
            "ambient.temperature": self.temperature_c,
            "ambient.humidity": self.humidity_pct,
            # Holding 0x0101..0x0104: the transmitter reports its own configuration
            "config.address": float(self.unit_id),
            "config.baud": float(XYMD02_DEFAULT_BAUD),
            "config.temperature_offset": 0.0,
            "config.humidity_offset": 0.0,
        }
