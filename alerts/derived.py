"""Values computed from readings: dew point, rate of change, UPS and fuel autonomy at full load."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# Magnus coefficients over water, REFERENCE.md §6 (a = 17.62, b = 243.12 °C)
MAGNUS_A = 17.62
MAGNUS_B = 243.12
HOURS_PER_DAY = 24.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A derived value with the method that produced it, shown next to the value (it is an estimate)."""

    value: float
    method: str


def dew_point(temperature_c: float, humidity_pct: float) -> float:
    """Dew point in °C from dry-bulb temperature and relative humidity (Magnus, REFERENCE.md §6)."""
    if humidity_pct <= 0:
        raise ValueError("relative humidity must be above 0 %")
    gamma = math.log(humidity_pct / 100.0) + MAGNUS_A * temperature_c / (MAGNUS_B + temperature_c)
    return MAGNUS_B * gamma / (MAGNUS_A - gamma)


def ups_autonomy_full_load(runtime_min: float, load_pct: float, peukert_exponent: float) -> Estimate:
    """Runtime projected to 100 % load: t₂ = t₁ × (P₁/P₂)^k (Peukert, REFERENCE.md §7.4)."""
    if load_pct <= 0:
        raise ValueError("load must be above 0 % to project the runtime")
    value = runtime_min * (load_pct / 100.0) ** peukert_exponent
    method = f"Peukert k={peukert_exponent:g} from {runtime_min:g} min at {load_pct:g} % load"
    return Estimate(value, method)


def fuel_days_full_load(level_pct: float, tank_litres: float, rated_kw: float, sfc_l_per_kwh: float,
                        usable_fraction: float = 1.0) -> Estimate:
    """Days of fuel at rated load: usable litres ÷ (rated kW × SFC) ÷ 24 (REFERENCE.md §7.2)."""
    litres = level_pct / 100.0 * tank_litres * usable_fraction
    value = litres / (rated_kw * sfc_l_per_kwh) / HOURS_PER_DAY
    method = (f"{litres:.0f} L usable ÷ ({rated_kw:g} kW × {sfc_l_per_kwh:g} L/kWh) at full load")
    return Estimate(value, method)


class RateWindow:
    """Recent samples of one point, giving its change per window (e.g. °C per 15 min or per hour)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, ts: float, value: float) -> float | None:
        """Record a sample; the change per window, or None until a window of history exists."""
        self.samples.append((ts, value))
        # keep exactly one sample at or before the window start, to measure across the whole window
        while len(self.samples) > 1 and self.samples[1][0] <= ts - self.window_s:
            self.samples.popleft()
        then_ts, then_value = self.samples[0]
        if then_ts > ts - self.window_s or ts <= then_ts:
            return None
        return (value - then_value) / (ts - then_ts) * self.window_s
