"""Values computed from readings: dew point, rate of change, autonomy, ring redundancy, qualifying runs."""

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


def ring_redundancy(rings: list[tuple[str, float, float]]) -> Estimate:
    """Combined load of all rings as % of the capacity left after losing the largest ring.

    ``rings`` holds (name, load % of its own capacity, capacity) per ring; for 2N (two rings) the capacity
    left is the smaller ring's, so above 100 % a ring failure would overload the other.
    """
    if len(rings) < 2:
        raise ValueError("redundancy needs at least two rings")
    capacities = [capacity for _, _, capacity in rings]
    left = sum(capacities) - max(capacities)
    if left <= 0:
        raise ValueError("ring capacities must be above 0")
    combined = sum(load / 100.0 * capacity for _, load, capacity in rings)
    parts = " + ".join(f"{name} {load:g} % of {capacity:g}" for name, load, capacity in rings)
    return Estimate(100.0 * combined / left, f"({parts}) = {combined:.4g} on {left:g} left if the largest ring fails")


class QualifyingRun:
    """A condition that must hold (known true) continuously for ``hold_s`` to count, e.g. a 30 min test run.

    Unknown evaluations never count; a gap of more than ``max_gap_s`` between true ones restarts the run,
    so missing data cannot stretch two short runs into one long one.
    """

    def __init__(self, hold_s: float, max_gap_s: float):
        self.hold_s = hold_s
        self.max_gap_s = max_gap_s
        self.since: float | None = None
        self.last_true: float | None = None
        self.credited = False

    def update(self, ts: float, truth: bool | None) -> bool:
        """Feed one evaluation; True exactly once per run, at the first evaluation after it has held long enough."""
        if truth is None:
            return False
        if truth is False:
            self.since = None
            return False
        if self.since is None or self.last_true is None or ts - self.last_true > self.max_gap_s:
            self.since, self.credited = ts, False
        self.last_true = ts
        if self.credited or ts - self.since < self.hold_s:
            return False
        self.credited = True
        return True


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
