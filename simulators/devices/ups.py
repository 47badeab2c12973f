"""Double-conversion UPS: one battery/inverter core, and its RFC 1628 view (ups/ietf_rfc1628).

The core is pure and deterministic: no I/O, no wall clock. ``step(dt_s)`` advances time and
``feed(voltage_v, frequency_hz)`` is what the power chain puts on the rectifier (0 V: the essential
bus is dead). Runtime follows Peukert (REFERENCE.md §7.4):
``runtime = runtime_full_load × (1 / load)^k × charge``, and on battery the charge falls at
``load^k / runtime_full_load`` per minute, so the estimate and the charge always agree.
The APC PowerNet view of the same core is ``simulators.devices.ups_apc``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

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
NOMINAL_V_PER_CELL = 2.0
FLOAT_V_PER_CELL = 2.25  # VRLA float charge
END_OF_DISCHARGE_V_PER_CELL = 1.75
BATTERY_TEMPERATURE_C = 25.0
DEFAULT_LOW_BATTERY_MIN = 5.0
DEFAULT_RECHARGE_HOURS = 6.0  # 0 → 100 %; VRLA recharge takes hours (REFERENCE.md §7.4)
MIN_LOAD_FRACTION = 0.01  # below this the Peukert estimate runs away; real UPSs cap it too
FLOAT_CURRENT_FRACTION = 0.002  # trickle current at float, as a fraction of the recharge current
SELF_TEST_S = 10.0  # a quick battery test (RFC 1628 upsTestQuickBatteryTest; APC self-test ≈ 8–10 s)
INPUT_WINDOW_S = 60.0  # APC upsAdvInputMax/MinLineVoltage cover the last minute
SELF_TEST_OUTCOMES = ("pass", "warning", "fail")


class BatteryState(StrEnum):
    """Profile-neutral battery state; each view maps it to its MIB's enum."""

    NORMAL = "normal"
    LOW = "low"
    DEPLETED = "depleted"


class FailCause(StrEnum):
    """Why the UPS last went to battery (APC upsAdvInputLineFailCause keeps it after mains returns)."""

    NONE = "none"
    BLACKOUT = "blackout"
    SELF_TEST = "self_test"


@dataclass(slots=True)
class SelfTest:
    """The last (or running) battery self-test.

    ``result`` is ``none`` (never run), ``in_progress``, ``pass``, ``warning``, ``fail`` or ``invalid``
    (refused or aborted: no mains to return to); ``outcome`` is what a running test will end with.
    """

    result: str = "none"
    outcome: str = "pass"
    remaining_s: float = 0.0
    started_epoch_s: float | None = None

    @property
    def running(self) -> bool:
        """True while the test holds the UPS on battery."""
        return self.result == "in_progress"


class UpsCore:
    """One UPS: rectifier fed or not, an IT load that wanders, a battery that drains and recharges."""

    def __init__(self, params: DeviceSimulation, rng: random.Random, *,
                 low_battery_min: float = DEFAULT_LOW_BATTERY_MIN,
                 recharge_hours: float = DEFAULT_RECHARGE_HOURS):
        self.params = params
        self.low_battery_min = low_battery_min
        self.recharge_hours = recharge_hours
        self.rng = rng
        self.elapsed_s = 0.0
        self.charge_fraction = 1.0
        self.seconds_on_battery = 0.0
        self.line_bads = 0
        self.fail_cause = FailCause.NONE
        self.energy_out_kwh = 0.0
        self.self_test = SelfTest()
        self.supply_v = NOMINAL_VOLTAGE_V
        self.supply_hz = NOMINAL_FREQUENCY_HZ
        self._input_samples: deque[tuple[float, float]] = deque([(0.0, NOMINAL_VOLTAGE_V)])
        noise = params.noise
        self._load = MeanReverting(params.load_fraction, 0.03 * params.load_fraction * noise, 300.0,
                                   params.load_fraction)
        self._output_v = MeanReverting(NOMINAL_VOLTAGE_V, 0.3 * noise, 60.0, NOMINAL_VOLTAGE_V)
        self._battery_c = MeanReverting(BATTERY_TEMPERATURE_C, 0.5 * noise, 3600.0, BATTERY_TEMPERATURE_C)

    # --- what the power chain (or a test) puts on the rectifier -----------------------------------

    @property
    def mains_available(self) -> bool:
        """True while the rectifier has input power."""
        return self.supply_v > 0.0

    @mains_available.setter
    def mains_available(self, available: bool) -> None:
        voltage_v, frequency_hz = (NOMINAL_VOLTAGE_V, NOMINAL_FREQUENCY_HZ) if available else (0.0, 0.0)
        self.feed(voltage_v, frequency_hz)

    def feed(self, voltage_v: float, frequency_hz: float) -> None:
        """The rectifier's supply now: the essential bus voltage and frequency (0 V: dead)."""
        if self.mains_available and voltage_v <= 0.0:
            self._went_to_battery(FailCause.BLACKOUT)
            if self.self_test.running:
                self.self_test.result = "invalid"  # RFC 1628 aborted: nothing to return to
        self.supply_v, self.supply_hz = max(voltage_v, 0.0), max(frequency_hz, 0.0)
        if not self.on_battery:
            self.seconds_on_battery = 0.0

    def _went_to_battery(self, cause: FailCause) -> None:
        self.line_bads += 1  # upsInputLineBads counts transitions INTO out-of-tolerance
        self.fail_cause = cause

    def start_self_test(self, outcome: str, epoch_s: float) -> None:
        """Begin a 10 s battery test that ends with ``outcome``; refused (invalid) without mains."""
        if outcome not in SELF_TEST_OUTCOMES:
            raise ValueError(f"self-test result must be one of {SELF_TEST_OUTCOMES}, not {outcome!r}")
        if self.self_test.running:
            return
        if not self.mains_available:
            self.self_test = SelfTest("invalid", outcome, 0.0, epoch_s)
            return
        self.self_test = SelfTest("in_progress", outcome, SELF_TEST_S, epoch_s)
        self.fail_cause = FailCause.SELF_TEST

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the UPS by dt_s seconds."""
        dt_s = max(dt_s, 0.0)
        self.elapsed_s += dt_s
        for process in (self._load, self._output_v, self._battery_c):
            process.step(dt_s, self.rng)
        if self.on_battery:
            self.seconds_on_battery += dt_s
            drain = (dt_s / 60.0) * self.load_fraction ** self.params.peukert_exponent
            self.charge_fraction = max(0.0, self.charge_fraction - drain / self.params.runtime_full_load_min)
        elif self.mains_available:
            self.charge_fraction = min(1.0, self.charge_fraction + dt_s / (self.recharge_hours * 3600.0))
        self.energy_out_kwh += self.output_power_w * dt_s / 3.6e6
        self._advance_self_test(dt_s)
        self._sample_input()

    def _advance_self_test(self, dt_s: float) -> None:
        test = self.self_test
        if not test.running:
            return
        test.remaining_s -= dt_s
        if test.remaining_s <= 1e-9:
            test.result, test.remaining_s = test.outcome, 0.0
            self.seconds_on_battery = 0.0

    def _sample_input(self) -> None:
        samples = self._input_samples
        samples.append((self.elapsed_s, self.supply_v))
        while samples and samples[0][0] < self.elapsed_s - INPUT_WINDOW_S:
            samples.popleft()

    # --- derived state ---------------------------------------------------------------------------

    @property
    def load_fraction(self) -> float:
        """IT load as a fraction of the rated real power."""
        return max(self._load.value, 0.0)

    @property
    def output_on(self) -> bool:
        """False once the battery is exhausted with no mains: the inverter has shut down."""
        return self.mains_available or self.charge_fraction > 0.0

    @property
    def on_battery(self) -> bool:
        """True while the inverter runs from the battery (mains lost, or a self-test)."""
        return self.output_on and (not self.mains_available or self.self_test.running)

    @property
    def output_power_w(self) -> float:
        """Real power delivered to the load."""
        return self.load_fraction * self.params.rated_power_w if self.output_on else 0.0

    @property
    def output_voltage_v(self) -> float:
        """Inverter output voltage (0 when off)."""
        return self._output_v.value if self.output_on else 0.0

    @property
    def output_frequency_hz(self) -> float:
        """On mains the inverter tracks the bypass (input) frequency; on battery it free-runs at nominal."""
        if not self.output_on:
            return 0.0
        return NOMINAL_FREQUENCY_HZ if self.on_battery else self.supply_hz

    @property
    def battery_temperature_c(self) -> float:
        """Battery temperature, °C."""
        return self._battery_c.value

    def runtime_at(self, load_fraction: float, charge_fraction: float = 1.0) -> float:
        """Peukert runtime in minutes at a load fraction and state of charge (REFERENCE.md §7.4)."""
        load = max(load_fraction, MIN_LOAD_FRACTION)
        return self.params.runtime_full_load_min * (1.0 / load) ** self.params.peukert_exponent * charge_fraction

    @property
    def runtime_min(self) -> float:
        """Minutes of runtime left at the present load (upsEstimatedMinutesRemaining)."""
        return self.runtime_at(self.load_fraction, self.charge_fraction)

    @property
    def battery_state(self) -> BatteryState:
        """Low means runtime ≤ the low-battery time (RFC 1628 upsConfigLowBattTime)."""
        if self.charge_fraction <= 0.0:
            return BatteryState.DEPLETED
        return BatteryState.LOW if self.runtime_min <= self.low_battery_min else BatteryState.NORMAL

    @property
    def battery_voltage_v(self) -> float:
        """DC string voltage: float charge on mains, sagging with charge and load on battery."""
        if not self.on_battery and self.mains_available:
            per_cell = FLOAT_V_PER_CELL + 0.08 * (1.0 - self.charge_fraction)  # absorption while recharging
        else:
            per_cell = 1.93 + 0.2 * self.charge_fraction - 0.12 * self.load_fraction * self.output_on
            per_cell = max(per_cell, END_OF_DISCHARGE_V_PER_CELL - 0.1)
        return per_cell * BATTERY_CELLS

    @property
    def battery_current_a(self) -> float:
        """DC battery current; + charging, - discharging (RFC 1628 leaves the sign convention open)."""
        if self.on_battery or not self.mains_available:
            return -self.output_power_w / CONVERSION_EFFICIENCY / self.battery_voltage_v
        return self.charging_power_w / self.battery_voltage_v

    @property
    def charging_power_w(self) -> float:
        """Power the rectifier puts into the battery (full rate below 100 %, a trickle at float)."""
        if self.on_battery or not self.mains_available:
            return 0.0
        energy_wh = self.params.rated_power_w * self.params.runtime_full_load_min / 60.0
        rate_w = energy_wh / self.recharge_hours
        return rate_w if self.charge_fraction < 1.0 else rate_w * FLOAT_CURRENT_FRACTION

    @property
    def input_power_w(self) -> float:
        """Real power drawn from the essential bus: the load through the converter plus recharge."""
        if self.on_battery or not self.mains_available:
            return 0.0
        return self.output_power_w / CONVERSION_EFFICIENCY + self.charging_power_w

    @property
    def input_current_a(self) -> float:
        """Input line current at the present supply voltage."""
        return self.input_power_w / INPUT_POWER_FACTOR / self.supply_v if self.supply_v else 0.0

    @property
    def output_current_a(self) -> float:
        """Output line current (VA over volts)."""
        voltage = self.output_voltage_v
        return self.output_power_w / LOAD_POWER_FACTOR / voltage if voltage else 0.0

    @property
    def load_percent(self) -> float:
        """Output load in % of rating: the greater of W % and VA % (RFC 1628 upsOutputPercentLoad)."""
        rated = self.params.rated_power_w
        return 100.0 * max(self.output_power_w / rated, self.output_power_w / LOAD_POWER_FACTOR / rated)

    def input_voltage_extremes(self) -> tuple[float, float]:
        """Lowest and highest input voltage over the last minute."""
        voltages = [voltage for _, voltage in self._input_samples] + [self.supply_v]
        return min(voltages), max(voltages)


class UpsView:
    """A profile's view of one UPS core (what tests and the site read besides ``values``)."""

    def __init__(self, core: UpsCore):
        self.core = core

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds the core has run."""
        return self.core.elapsed_s

    @property
    def seconds_on_battery(self) -> float:
        """Seconds since the UPS last went to battery (0 when not on battery)."""
        return self.core.seconds_on_battery if self.core.on_battery else 0.0

    @property
    def battery_voltage_v(self) -> float:
        """DC string voltage."""
        return self.core.battery_voltage_v


RFC_BATTERY_STATUS = {BatteryState.NORMAL: "batteryNormal", BatteryState.LOW: "batteryLow",
                      BatteryState.DEPLETED: "batteryDepleted"}
RFC_TEST_RESULT = {"none": "noTestsInitiated", "in_progress": "inProgress", "pass": "donePass",
                   "warning": "doneWarning", "fail": "doneError", "invalid": "aborted"}


class UpsModel(UpsView):
    """The RFC 1628 UPS-MIB view (ups/ietf_rfc1628) of a UPS core."""

    def alarms(self) -> list[str]:
        """Well-known alarms present (RFC 1628 upsWellKnownAlarms, REFERENCE.md §1.2)."""
        core = self.core
        present = ["upsAlarmOnBattery"] if core.on_battery else []
        if not core.mains_available:
            present.append("upsAlarmInputBad")
        state = core.battery_state
        if state is BatteryState.LOW:
            present.append("upsAlarmLowBattery")
        elif state is BatteryState.DEPLETED:
            present += ["upsAlarmDepletedBattery", "upsAlarmUpsOutputOff"]
        if core.self_test.running:
            present.append("upsAlarmTestInProgress")
        if core.self_test.result == "fail":
            present.append("upsAlarmDiagnosticTestFailed")  # stays until a test passes
        return present

    def values(self) -> dict[str, float | str]:
        """Engineering values (state names for enums) for every point of ups/ietf_rfc1628."""
        return {**self._ident(), **self._battery(), **self._input(), **self._output(), **self._config(),
                "ups.alarms": float(len(self.alarms())),
                "ups.test.result": RFC_TEST_RESULT[self.core.self_test.result]}

    def _ident(self) -> dict[str, str]:
        kva = self.core.params.rated_power_w / 1000.0
        return {"ups.mfr": "facwatch-sim", "ups.model": f"SIM-RFC1628 {kva:g} kVA",
                "ups.firmware": "1.0.0", "ups.firmware.aux": "facwatch-sim agent 1.0"}

    def _battery(self) -> dict[str, float | str]:
        core = self.core
        return {
            "battery.status": RFC_BATTERY_STATUS[core.battery_state],
            "battery.time_on_battery": self.seconds_on_battery,
            # upsEstimatedMinutesRemaining is a PositiveInteger (1..2^31-1): never report 0
            "battery.runtime": max(core.runtime_min, 1.0),
            "battery.charge": core.charge_fraction * 100.0,
            "battery.voltage": core.battery_voltage_v,
            "battery.current": core.battery_current_a,
            "battery.temperature": core.battery_temperature_c,
        }

    def _input(self) -> dict[str, float]:
        core = self.core
        return {"input.line_bads": float(core.line_bads), "input.frequency": core.supply_hz,
                "input.voltage": core.supply_v, "input.current": core.input_current_a,
                "input.realpower": core.input_power_w}

    def _output(self) -> dict[str, float | str]:
        core = self.core
        source = "none" if not core.output_on else "battery" if core.on_battery else "normal"
        return {"output.source": source, "output.frequency": core.output_frequency_hz,
                "output.voltage": core.output_voltage_v, "output.current": core.output_current_a,
                "output.realpower": core.output_power_w, "ups.load": core.load_percent}

    def _config(self) -> dict[str, float]:
        rated = self.core.params.rated_power_w
        return {"input.voltage.nominal": NOMINAL_VOLTAGE_V, "output.frequency.nominal": NOMINAL_FREQUENCY_HZ,
                "ups.power.nominal": rated, "ups.realpower.nominal": rated,
                "battery.runtime.low": self.core.low_battery_min}
