"""The APC PowerNet-MIB view (ups/apc_powernet) of a UPS core (REFERENCE.md §2).

Same battery and inverter physics as the RFC 1628 view; only the names, enums and units differ.
Dates (upsAdvTestLastDiagnosticsDate, upsBasicBatteryLastReplaceDate) are mm/dd/yy, taken from the
epoch the power chain started at plus simulated time, never from the wall clock.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

from simulators.devices.ups import (
    BATTERY_CELLS,
    CONVERSION_EFFICIENCY,
    NOMINAL_V_PER_CELL,
    NOMINAL_VOLTAGE_V,
    BatteryState,
    FailCause,
    UpsCore,
    UpsView,
)

DAY_S = 86_400.0
# An NMC always reports its last scheduled self-test: with the biweekly schedule served here the
# last one ran at most two weeks before the simulation started.
PREVIOUS_TEST_AGE_S = 7 * DAY_S
BATTERY_AGE_S = 540 * DAY_S  # VRLA blocks replaced 18 months ago
LOW_LOAD_PERCENT = 5.0  # below this the NMC reports efficiency "load too low" (-2)
# upsHighPrecOutputEfficiency negative codes, in the profile's 0.1 % units: -2, -3 and -4 on the wire
EFFICIENCY_LOAD_TOO_LOW, EFFICIENCY_OUTPUT_OFF, EFFICIENCY_ON_BATTERY = -0.2, -0.3, -0.4
FLAG_COUNT = 64  # upsBasicStateOutputState: 64 '0'/'1' flags, flag 1 leftmost
FLAG_ABNORMAL, FLAG_ON_BATTERY, FLAG_LOW_BATTERY, FLAG_ON_LINE, FLAG_REPLACE_BATTERY = 1, 2, 3, 4, 5
FLAG_DISCHARGED, FLAG_ON, FLAG_SELF_TEST = 11, 19, 29

TEST_RESULT = {"none": "ok", "in_progress": "testInProgress", "pass": "ok", "warning": "ok",
               "fail": "failed", "invalid": "invalidTest"}
BATTERY_CONDITION = {"warning": "weak", "fail": "poor"}
FAIL_CAUSE = {FailCause.NONE: "noTransfer", FailCause.BLACKOUT: "blackout", FailCause.SELF_TEST: "selfTest"}


def mmddyy(epoch_s: float) -> str:
    """An APC date string (mm/dd/yy, UTC)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%m/%d/%y")


def state_flags(on: set[int]) -> str:
    """The upsBasicStateOutputState text: flag N is character N (1-based) from the left."""
    return "".join("1" if flag in on else "0" for flag in range(1, FLAG_COUNT + 1))


class ApcUpsModel(UpsView):
    """A Smart-UPS / Symmetra behind a Network Management Card, as PowerNet-MIB shows it."""

    def __init__(self, core: UpsCore, *, name: str, epoch_at_start: float):
        super().__init__(core)
        self.name = name
        self.epoch_at_start = epoch_at_start

    def values(self) -> dict[str, float | str]:
        """Engineering values (state names for enums) for every point of ups/apc_powernet."""
        return {**self._ident(), **self._battery(), **self._input(), **self._output(), **self._tests(),
                **self._state(), "output.voltage.nominal": NOMINAL_VOLTAGE_V,
                "battery.runtime.low": self.core.low_battery_min}

    # --- derived --------------------------------------------------------------------------------

    @property
    def needs_new_battery(self) -> bool:
        """A failed self-test sets upsAdvBatteryReplaceIndicator."""
        return self.core.self_test.result == "fail"

    @property
    def output_status(self) -> str:
        """The upsBasicOutputStatus state name."""
        core = self.core
        if not core.output_on:
            return "off"
        if core.self_test.running:
            return "onBatteryTest"
        return "onBattery" if core.on_battery else "onLine"

    def _charger_status(self) -> str:
        core = self.core
        if core.self_test.running:
            return "testInProgress"
        if core.on_battery or not core.mains_available:
            return "notCharging"
        return "floatCharging" if core.charge_fraction >= 1.0 else "boostCharging"

    def _efficiency(self) -> float:
        core = self.core
        if not core.output_on:
            return EFFICIENCY_OUTPUT_OFF
        if core.on_battery:
            return EFFICIENCY_ON_BATTERY
        return EFFICIENCY_LOAD_TOO_LOW if core.load_percent < LOW_LOAD_PERCENT else CONVERSION_EFFICIENCY * 100

    # --- point groups ---------------------------------------------------------------------------

    def _ident(self) -> dict[str, str]:
        kva = self.core.params.rated_power_w / 1000.0
        serial = zlib.crc32(self.name.encode()) % 10**9
        return {"ups.model": f"Smart-UPS SIM {kva:g}kVA", "ups.id": self.name[:32],
                "ups.firmware": "facwatch-sim 1.0", "ups.serial": f"SIM{serial:09d}"}

    def _battery(self) -> dict[str, float | str]:
        core = self.core
        temperature = core.battery_temperature_c
        return {
            # PowerNet has no "depleted": an exhausted battery is still batteryLow (flag 11 says discharged)
            "battery.status": "batteryNormal" if core.battery_state is BatteryState.NORMAL else "batteryLow",
            "battery.time_on_battery": self.seconds_on_battery,
            "battery.date": mmddyy(self.epoch_at_start - BATTERY_AGE_S),
            "battery.charge": core.charge_fraction * 100.0,
            "battery.temperature": max(temperature, 0.0),  # a Gauge: never below 0 (REFERENCE.md §2)
            "battery.temperature.extended": temperature,
            "battery.voltage": core.battery_voltage_v,
            "battery.current": core.battery_current_a,
            "battery.voltage.nominal": BATTERY_CELLS * NOMINAL_V_PER_CELL,
            "battery.runtime": core.runtime_min if core.output_on else 0.0,
            "battery.replace": "batteryNeedsReplacing" if self.needs_new_battery else "noBatteryNeedsReplacing",
            "battery.charger.status": self._charger_status(),
            "battery.condition": BATTERY_CONDITION.get(core.self_test.result, "ok"),
        }

    def _input(self) -> dict[str, float | str]:
        core = self.core
        low, high = core.input_voltage_extremes()
        return {"input.voltage": core.supply_v, "input.voltage.maximum": high, "input.voltage.minimum": low,
                "input.frequency": core.supply_hz, "input.fail_cause": FAIL_CAUSE[core.fail_cause]}

    def _output(self) -> dict[str, float | str]:
        core = self.core
        return {"output.status": self.output_status, "output.voltage": core.output_voltage_v,
                "output.frequency": core.output_frequency_hz, "ups.load": core.load_percent,
                "output.current": core.output_current_a, "output.realpower": core.output_power_w,
                "output.efficiency": self._efficiency(), "output.energy": core.energy_out_kwh}

    def _tests(self) -> dict[str, str]:
        test = self.core.self_test
        started = test.started_epoch_s
        last = started if started is not None else self.epoch_at_start - PREVIOUS_TEST_AGE_S
        return {"ups.test.schedule": "biweekly", "ups.test.result": TEST_RESULT[test.result],
                "ups.test.date": mmddyy(last), "ups.calibration.result": "ok"}

    def _state(self) -> dict[str, str]:
        return {"ups.state_flags": state_flags(self._flags()), "ups.alarm_status": self._alarm_status()}

    def _flags(self) -> set[int]:
        core = self.core
        battery = core.battery_state
        conditions = {
            FLAG_ON: core.output_on,
            FLAG_ON_LINE: core.output_on and not core.on_battery,
            FLAG_ON_BATTERY: core.on_battery,
            FLAG_LOW_BATTERY: battery is not BatteryState.NORMAL,
            FLAG_DISCHARGED: battery is BatteryState.DEPLETED,
            FLAG_REPLACE_BATTERY: self.needs_new_battery,
            FLAG_SELF_TEST: core.self_test.running,
            FLAG_ABNORMAL: self._alarm_status() in ("warningAlarm", "criticalAlarm"),
        }
        return {flag for flag, on in conditions.items() if on}

    def _alarm_status(self) -> str:
        """The upsBasicStateAlarmStatus state name: the worst active alarm."""
        core = self.core
        if not core.output_on or core.battery_state is not BatteryState.NORMAL:
            return "criticalAlarm"
        if (core.on_battery and not core.self_test.running) or self.needs_new_battery:
            return "warningAlarm"
        return "infoAlarm" if core.self_test.running else "noAlarms"
