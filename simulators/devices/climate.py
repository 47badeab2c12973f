"""Room climate physics for temperature/humidity transmitters (thsensor profiles).

Pure and deterministic: no I/O, no wall clock. Time moves only when ``step(dt_s)`` is called, and all
randomness comes from the ``random.Random`` handed in, so a seed replays the same weather.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from config.schema import DeviceSimulation

# With noise = 1 a room sensor wanders about ±0.5 °C and ±2 %RH around its set point (2 σ), which is
# what a well-controlled data hall looks like at a rack inlet. The time constants are those of a
# CRAC control loop: minutes, not seconds.
TEMPERATURE_SIGMA_C = 0.25
HUMIDITY_SIGMA_PCT = 1.0
TEMPERATURE_TAU_S = 600.0
HUMIDITY_TAU_S = 900.0
XYMD02_DEFAULT_BAUD = 9600  # REFERENCE.md §4.4: factory default 9600 Bd, 8N1


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


class RoomClimateModel:
    """Temperature and relative humidity at one sensor, drifting around the configured set points."""

    def __init__(self, params: DeviceSimulation, rng: random.Random, *, unit_id: int = 1):
        self.params = params
        self.unit_id = unit_id
        self._rng = rng
        self.elapsed_s = 0.0
        self._temperature = MeanReverting(params.temperature_c, TEMPERATURE_SIGMA_C * params.noise,
                                          TEMPERATURE_TAU_S, params.temperature_c)
        self._humidity = MeanReverting(params.humidity_pct, HUMIDITY_SIGMA_PCT * params.noise,
                                       HUMIDITY_TAU_S, params.humidity_pct)

    @property
    def temperature_c(self) -> float:
        """Air temperature at the probe, °C."""
        return self._temperature.value

    @property
    def humidity_pct(self) -> float:
        """Relative humidity at the probe, clipped to what a capacitive sensor can report."""
        return min(max(self._humidity.value, 0.0), 100.0)

    def step(self, dt_s: float) -> None:
        """Advance the room by dt_s seconds."""
        self.elapsed_s += max(dt_s, 0.0)
        self._temperature.step(dt_s, self._rng)
        self._humidity.step(dt_s, self._rng)

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
