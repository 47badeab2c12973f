"""Double-conversion UPS physics behind the RFC 1628 UPS-MIB profile (ups/ietf_rfc1628).

Pure and deterministic: no I/O, no wall clock. ``step(dt_s)`` advances time; ``mains_available``
is the one switch a scenario flips. Runtime follows Peukert (REFERENCE.md §7.4):
``runtime = runtime_full_load × (1 / load)^k × charge``, and on battery the charge falls at
``load^k / runtime_full_load`` per minute, so the estimate and the charge always agree.
"""

from __future__ import annotations

import random

from config.schema import DeviceSimulation
from simulators.devices.climate import MeanReverting

NOMINAL_VOLTAGE_V = 230.0
NOMINAL_FREQUENCY_HZ = 50.0
# Modern double-conversion UPSs are rated at unity power factor (kW = kVA); IT loads behind server
# PSUs with active PFC run near 0.98. upsOutputPercentLoad is "the greater of W% and VA%" (RFC 1628).
LOAD_POWER_FACTOR = 0.98
INPUT_POWER_FACTOR = 0.99  # PFC rectifier
CONVERSION_EFFICIENCY = 0.95
BATTERY_CELLS = 240  # 40 × 12 V VRLA blocks
FLOAT_V_PER_CELL = 2.25  # VRLA float charge
END_OF_DISCHARGE_V_PER_CELL = 1.75
BATTERY_TEMPERATURE_C = 25.0
DEFAULT_LOW_BATTERY_MIN = 5.0
DEFAULT_RECHARGE_HOURS = 6.0  # 0 → 100 %; VRLA recharge takes hours (REFERENCE.md §7.4)
MIN_LOAD_FRACTION = 0.01  # below this the Peukert estimate runs away; real UPSs cap it too
FLOAT_CURRENT_FRACTION = 0.002  # trickle current at float, as a fraction of the recharge current


class UpsModel:
    """One UPS: mains or battery, an IT load that wanders, a battery that drains and recharges."""

    def __init__(self, params: DeviceSimulation, rng: random.Random, *,
                 low_battery_min: float = DEFAULT_LOW_BATTERY_MIN,
                 recharge_hours: float = DEFAULT_RECHARGE_HOURS):
        self.params = params
        self.low_battery_min = low_battery_min
        self.recharge_hours = recharge_hours
        self._rng = rng
        self.elapsed_s = 0.0
        self.charge_fraction = 1.0
        self.seconds_on_battery = 0.0
        self.line_bads = 0
        self._mains = True
        noise = params.noise
        self._load = MeanReverting(params.load_fraction, 0.03 * params.load_fraction * noise, 300.0,
                                   params.load_fraction)
        self._input_v = MeanReverting(NOMINAL_VOLTAGE_V, 1.5 * noise, 120.0, NOMINAL_VOLTAGE_V)
        self._input_hz = MeanReverting(NOMINAL_FREQUENCY_HZ, 0.02 * noise, 60.0, NOMINAL_FREQUENCY_HZ)
        self._output_v = MeanReverting(NOMINAL_VOLTAGE_V, 0.3 * noise, 60.0, NOMINAL_VOLTAGE_V)
        self._battery_c = MeanReverting(BATTERY_TEMPERATURE_C, 0.5 * noise, 3600.0, BATTERY_TEMPERATURE_C)

    # --- the switch a scenario flips ---------------------------------------------------------

    @property
    def mains_available(self) -> bool:
        """True while the rectifier has utility power."""
        return self._mains

    @mains_available.setter
    def mains_available(self, available: bool) -> None:
        if self._mains and not available:
            self.line_bads += 1  # upsInputLineBads counts transitions INTO out-of-tolerance
        if available:
            self.seconds_on_battery = 0.0
        self._mains = bool(available)

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the UPS by dt_s seconds."""
        dt_s = max(dt_s, 0.0)
        self.elapsed_s += dt_s
        for process in (self._load, self._input_v, self._input_hz, self._output_v, self._battery_c):
            process.step(dt_s, self._rng)
        if self._mains:
            self.charge_fraction = min(1.0, self.charge_fraction + dt_s / (self.recharge_hours * 3600.0))
        else:
            self.seconds_on_battery += dt_s
            drain = (dt_s / 60.0) * self.load_fraction ** self.params.peukert_exponent
            self.charge_fraction = max(0.0, self.charge_fraction - drain / self.params.runtime_full_load_min)

    # --- derived state ---------------------------------------------------------------------------

    @property
    def load_fraction(self) -> float:
        """IT load as a fraction of the rated real power."""
        return max(self._load.value, 0.0)

    @property
    def output_on(self) -> bool:
        """False once the battery is exhausted with no mains: the inverter has shut down."""
        return self._mains or self.charge_fraction > 0.0

    @property
    def output_power_w(self) -> float:
        """Real power delivered to the load."""
        return self.load_fraction * self.params.rated_power_w if self.output_on else 0.0

    def runtime_at(self, load_fraction: float, charge_fraction: float = 1.0) -> float:
        """Peukert runtime in minutes at a load fraction and state of charge (REFERENCE.md §7.4)."""
        load = max(load_fraction, MIN_LOAD_FRACTION)
        return self.params.runtime_full_load_min * (1.0 / load) ** self.params.peukert_exponent * charge_fraction

    @property
    def runtime_min(self) -> float:
        """Minutes of runtime left at the present load (upsEstimatedMinutesRemaining)."""
        return self.runtime_at(self.load_fraction, self.charge_fraction)

    @property
    def battery_status(self) -> str:
        """State name of upsBatteryStatus; batteryLow means runtime ≤ upsConfigLowBattTime (RFC 1628)."""
        if self.charge_fraction <= 0.0:
            return "batteryDepleted"
        return "batteryLow" if self.runtime_min <= self.low_battery_min else "batteryNormal"

    @property
    def output_source(self) -> str:
        """State name of upsOutputSource."""
        if not self.output_on:
            return "none"
        return "normal" if self._mains else "battery"

    @property
    def battery_voltage_v(self) -> float:
        """DC string voltage: float charge on mains, sagging with charge and load on battery."""
        if self._mains:
            per_cell = FLOAT_V_PER_CELL + 0.08 * (1.0 - self.charge_fraction)  # absorption while recharging
        else:
            per_cell = 1.93 + 0.2 * self.charge_fraction - 0.12 * self.load_fraction * self.output_on
            per_cell = max(per_cell, END_OF_DISCHARGE_V_PER_CELL - 0.1)
        return per_cell * BATTERY_CELLS

    @property
    def battery_current_a(self) -> float:
        """DC battery current; + charging, - discharging (RFC 1628 leaves the sign convention open)."""
        if not self._mains:
            return -self.output_power_w / CONVERSION_EFFICIENCY / self.battery_voltage_v
        return self._charging_power_w() / self.battery_voltage_v

    def _charging_power_w(self) -> float:
        """Power the rectifier puts into the battery (full rate below 100 %, a trickle at float)."""
        energy_wh = self.params.rated_power_w * self.params.runtime_full_load_min / 60.0
        rate_w = energy_wh / self.recharge_hours
        return rate_w if self.charge_fraction < 1.0 else rate_w * FLOAT_CURRENT_FRACTION

    def alarms(self) -> list[str]:
        """Well-known alarms present (RFC 1628 upsWellKnownAlarms, §1.2 of REFERENCE.md)."""
        present = [] if self._mains else ["upsAlarmOnBattery", "upsAlarmInputBad"]
        status = self.battery_status
        if status == "batteryLow":
            present.append("upsAlarmLowBattery")
        elif status == "batteryDepleted":
            present += ["upsAlarmDepletedBattery", "upsAlarmUpsOutputOff"]
        return present

    # --- what the agent serves -------------------------------------------------------------------

    def values(self) -> dict[str, float | str]:
        """Engineering values (state names for enums) for every point of ups/ietf_rfc1628."""
        return {**self._ident(), **self._battery(), **self._input(), **self._output(), **self._config(),
                "ups.alarms": float(len(self.alarms())), "ups.test.result": "noTestsInitiated"}

    def _ident(self) -> dict[str, str]:
        kva = self.params.rated_power_w / 1000.0
        return {"ups.mfr": "facwatch-sim", "ups.model": f"SIM-RFC1628 {kva:g} kVA",
                "ups.firmware": "1.0.0", "ups.firmware.aux": "facwatch-sim agent 1.0"}

    def _battery(self) -> dict[str, float | str]:
        return {
            "battery.status": self.battery_status,
            "battery.time_on_battery": self.seconds_on_battery,
            # upsEstimatedMinutesRemaining is a PositiveInteger (1..2^31-1): never report 0
            "battery.runtime": max(self.runtime_min, 1.0),
            "battery.charge": self.charge_fraction * 100.0,
            "battery.voltage": self.battery_voltage_v,
            "battery.current": self.battery_current_a,
            "battery.temperature": self._battery_c.value,
        }

    def _input(self) -> dict[str, float]:
        if not self._mains:
            return {"input.line_bads": float(self.line_bads), "input.frequency": 0.0, "input.voltage": 0.0,
                    "input.current": 0.0, "input.realpower": 0.0}
        power_w = self.output_power_w / CONVERSION_EFFICIENCY + self._charging_power_w()
        voltage = self._input_v.value
        return {"input.line_bads": float(self.line_bads), "input.frequency": self._input_hz.value,
                "input.voltage": voltage, "input.current": power_w / INPUT_POWER_FACTOR / voltage,
                "input.realpower": power_w}

    def _output(self) -> dict[str, float | str]:
        voltage = self._output_v.value if self.output_on else 0.0
        va = self.output_power_w / LOAD_POWER_FACTOR
        rated = self.params.rated_power_w
        return {
            "output.source": self.output_source,
            # on mains the inverter tracks the bypass frequency; on battery it free-runs at nominal
            "output.frequency": (self._input_hz.value if self._mains else NOMINAL_FREQUENCY_HZ) * self.output_on,
            "output.voltage": voltage,
            "output.current": va / voltage if voltage else 0.0,
            "output.realpower": self.output_power_w,
            "ups.load": 100.0 * max(self.output_power_w / rated, va / rated),
        }

    def _config(self) -> dict[str, float]:
        return {"input.voltage.nominal": NOMINAL_VOLTAGE_V, "output.frequency.nominal": NOMINAL_FREQUENCY_HZ,
                "ups.power.nominal": self.params.rated_power_w, "ups.realpower.nominal": self.params.rated_power_w,
                "battery.runtime.low": self.low_battery_min}
