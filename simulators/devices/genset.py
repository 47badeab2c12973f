"""Diesel generator set physics and its DSE GenComm view (genset/dse_gencomm, REFERENCE.md §3.1).

A start goes pre-start (≈2 s) → cranking → run-up, and the set is at rated speed, voltage and
frequency (1500 rpm, 230 V L-N, 50 Hz) exactly ``start_time_s`` after the start signal
(NFPA 110 Type 10: the ATS must have the load within 10 s, REFERENCE.md §7.1). A set told to
fail cranks three times with rests, then latches the fail-to-start shutdown alarm and stays stopped.
Fuel burns at the specific consumption of REFERENCE.md §7.2 for the load carried.
"""

from __future__ import annotations

import itertools
import math
import random
import zlib
from enum import StrEnum

from config.schema import DeviceSimulation
from simulators.devices.ats import Source, within_tolerance
from simulators.devices.climate import MeanReverting

RATED_RPM = 1500.0  # 4-pole alternator at 50 Hz
RATED_VOLTAGE_V = 230.0  # L-N
RATED_FREQUENCY_HZ = 50.0
CRANK_RPM = 200.0  # starter-motor speed
PRE_START_S = 2.0
FIRE_AFTER_S = 1.0  # a healthy, heated engine fires after about a second of cranking
CRANK_ATTEMPT_S = 5.0  # crank and rest timers (DSE defaults are longer; shortened for drills)
CRANK_REST_S = 5.0
CRANK_ATTEMPTS = 3
EXCITATION_FROM = 0.5  # the AVR builds voltage from half speed, full voltage at 95 % speed
RAMP_SLICE_S = 0.05  # run-up is integrated finely so "within tolerance since" is timed to 50 ms
LOAD_POWER_FACTOR = 0.95  # UPS rectifiers (0.99) and cooling motors (≈0.85) together
PHASE_SHARES = (0.34, 0.335, 0.325)  # slightly unbalanced single-phase loads
PHASE_VOLTAGE_OFFSETS_V = (0.0, 0.4, -0.3)
MAINS_VOLTAGE_OFFSETS_V = (0.0, -0.6, 0.5)
SQRT3 = math.sqrt(3.0)

# REFERENCE.md §7.2 (1000 kW chart: 81.8 / 137.8 / 197.2 / 269.1 L/h at 25/50/75/100 % load)
SFC_CURVE = ((0.25, 0.33), (0.50, 0.28), (0.75, 0.26), (1.00, 0.27))
FULL_LOAD_SFC = 0.27
# Below 25 % the fuel flow falls on a straight line (Willans line) to the no-load flow; extending
# the chart's 25–50 % slope to zero load gives ≈ 0.026 L/h per rated kW.
IDLE_FLOW_L_PER_H_PER_KW = 0.026

# Jacket-water heaters keep a standby set warm so it can take load at once (NFPA 110 Level 1 practice).
STANDBY_COOLANT_C = 40.0
RUNNING_COOLANT_C = 78.0  # thermostat-controlled, a few degrees more at full load
COOLANT_TAU_RUNNING_S, COOLANT_TAU_STOPPED_S = 240.0, 1800.0
OIL_OVER_COOLANT_C = 6.0
OIL_TAU_S = 400.0
RATED_OIL_PRESSURE_KPA = 420.0
BATTERY_REST_V, BATTERY_CRANK_V, BATTERY_CHARGING_V = 12.8, 10.4, 13.9  # 12 V starter battery
BATTERY_TAU_UP_S, BATTERY_TAU_DOWN_S = 5.0, 120.0  # charge quickly, surface charge fades slowly
CHARGER_FLOAT_A = 0.2  # the mains-powered battery charger at float

# A set a couple of years into service: monthly tests and the odd outage.
PREVIOUS_RUN_S = 211.5 * 3600
PREVIOUS_STARTS = 137
PREVIOUS_LOAD_FRACTION = 0.4
DSE_MODEL_7320_MK2 = 32841
# Page 154 register 0 counts the named alarms the controller implements (Victron's simulator puts its
# alarm-list length, 61, in the old-system count register 2048); a 7320 MkII has 20 registers of 4.
NAMED_ALARMS = 80

# the named alarms of page 154 the profile reads (7320 MkII order, REFERENCE.md §3.1)
ALARM_POINTS = tuple(f"alarm.{name}" for name in (
    "emergency_stop", "low_oil_pressure", "high_coolant_temperature", "low_coolant_temperature",
    "under_speed", "over_speed", "under_frequency", "over_frequency",
    "low_voltage", "high_voltage", "battery_low_voltage", "battery_high_voltage",
    "charge_alternator_failure", "fail_to_start", "fail_to_stop", "fail_to_close"))

AUTO_MODES = frozenset({"auto", "auto_manual_restore"})
TEST_MODES = frozenset({"test_on_load", "test_off_load"})
STOP_MODES = frozenset({"stop", "off"})


class EnginePhase(StrEnum):
    """Where the engine is in its start/stop sequence."""

    STOPPED = "stopped"
    PRE_START = "pre_start"
    CRANKING = "cranking"
    CRANK_REST = "crank_rest"
    RAMPING = "ramping"
    RUNNING = "running"
    COOLING_DOWN = "cooling_down"


TURNING = frozenset({EnginePhase.RAMPING, EnginePhase.RUNNING, EnginePhase.COOLING_DOWN})
STARTING = frozenset({EnginePhase.PRE_START, EnginePhase.CRANKING, EnginePhase.CRANK_REST, EnginePhase.RAMPING})
# GenComm 5.128 has no cranking state: the whole start sequence reads pre-start, run-up reads warming up
DSE_ENGINE_STATE = {EnginePhase.STOPPED: "stopped", EnginePhase.PRE_START: "pre_start",
                    EnginePhase.CRANKING: "pre_start", EnginePhase.CRANK_REST: "pre_start",
                    EnginePhase.RAMPING: "warming_up", EnginePhase.RUNNING: "running",
                    EnginePhase.COOLING_DOWN: "cooling_down"}


def sfc_l_per_kwh(load_fraction: float, full_load_sfc: float = FULL_LOAD_SFC) -> float:
    """Specific fuel consumption at a load fraction (REFERENCE.md §7.2), scaled to the set's full-load SFC."""
    points = SFC_CURVE
    load = min(max(load_fraction, points[0][0]), points[-1][0])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if load <= x1:
            return (y0 + (y1 - y0) * (load - x0) / (x1 - x0)) * full_load_sfc / FULL_LOAD_SFC
    return points[-1][1] * full_load_sfc / FULL_LOAD_SFC


def fuel_flow_l_per_h(load_kw: float, rated_kw: float, full_load_sfc: float = FULL_LOAD_SFC) -> float:
    """Fuel flow of a running engine: kW × SFC(load) from 25 % load, a straight line to idle below."""
    fraction = max(load_kw, 0.0) / rated_kw
    quarter = SFC_CURVE[0][0]
    if fraction >= quarter:
        return load_kw * sfc_l_per_kwh(fraction, full_load_sfc)
    idle = IDLE_FLOW_L_PER_H_PER_KW * rated_kw * full_load_sfc / FULL_LOAD_SFC
    at_quarter = quarter * rated_kw * sfc_l_per_kwh(quarter, full_load_sfc)
    return idle + (at_quarter - idle) * fraction / quarter


def start_timings(start_time_s: float) -> tuple[float, float, float]:
    """Pre-start, crank-to-fire and run-up seconds; they add up to start_time_s."""
    pre = min(PRE_START_S, 0.25 * start_time_s)
    fire = min(FIRE_AFTER_S, 0.15 * start_time_s)
    return pre, fire, start_time_s - pre - fire


def approach(value: float, target: float, tau_s: float, dt_s: float) -> float:
    """First-order lag of value toward target over dt_s."""
    return target + (value - target) * math.exp(-dt_s / tau_s)


class Generator:
    """One diesel generator set: start sequence, speed, voltage, fuel, temperatures, counters."""

    def __init__(self, params: DeviceSimulation, rng: random.Random):
        self.params = params
        self.rng = rng
        self.mode = "auto"  # GenComm control mode state name
        self.fails_to_start = False
        self.fail_to_start_alarm = False
        self.phase = EnginePhase.STOPPED
        self.phase_s = 0.0
        self.crank_attempts = 0
        self.load_kw = 0.0
        self.fuel_l = params.tank_litres * params.fuel_pct / 100.0
        self.run_s = PREVIOUS_RUN_S
        self.starts = PREVIOUS_STARTS
        self.energy_kwh = PREVIOUS_RUN_S / 3600.0 * PREVIOUS_LOAD_FRACTION * params.rated_kw
        self.coolant_c = STANDBY_COOLANT_C
        self.oil_c = STANDBY_COOLANT_C - 2.0
        self.battery_v = BATTERY_REST_V
        self.ready_for_s: float | None = None  # seconds within the ATS tolerance, None when out of it
        self._pre_s, self._fire_s, self._ramp_s = start_timings(params.start_time_s)
        self._voltage_noise = MeanReverting(0.0, 0.4 * params.noise, 30.0, 0.0)
        self._frequency_noise = MeanReverting(0.0, 0.03 * params.noise, 10.0, 0.0)

    # --- what the chain and the tests read --------------------------------------------------------

    @property
    def engine_state(self) -> str:
        """GenComm engine operating state name (register 1408)."""
        return DSE_ENGINE_STATE[self.phase]

    @property
    def turning(self) -> bool:
        """True while the engine runs on its own (run-up, running, cool-down)."""
        return self.phase in TURNING

    @property
    def available(self) -> bool:
        """True while voltage and frequency are within the ATS tolerance and the set may take load."""
        return self.ready_for_s is not None and self.phase is not EnginePhase.COOLING_DOWN

    @property
    def speed_fraction(self) -> float:
        """Engine speed as a fraction of rated."""
        if self.phase is EnginePhase.CRANKING:
            return CRANK_RPM / RATED_RPM
        if self.phase is EnginePhase.RAMPING:
            x = min(self.phase_s / self._ramp_s, 1.0) if self._ramp_s > 0 else 1.0
            crank = CRANK_RPM / RATED_RPM
            return crank + (1.0 - crank) * (1.0 - (1.0 - x) ** 2)  # governor eases into rated speed
        if self.phase in TURNING:
            return 1.0 + self._frequency_noise.value / RATED_FREQUENCY_HZ
        return 0.0

    @property
    def rpm(self) -> float:
        """Engine speed, rpm."""
        return RATED_RPM * self.speed_fraction

    @property
    def voltage_v(self) -> float:
        """Alternator L1-N voltage."""
        if self.phase is EnginePhase.RAMPING:
            excitation = (self.speed_fraction - EXCITATION_FROM) / (0.95 - EXCITATION_FROM)
            return RATED_VOLTAGE_V * min(max(excitation, 0.0), 1.0)
        if self.phase in TURNING:
            return RATED_VOLTAGE_V + self._voltage_noise.value
        return 0.0

    @property
    def frequency_hz(self) -> float:
        """Alternator frequency (0 until there is voltage to measure it on)."""
        return RATED_FREQUENCY_HZ * self.speed_fraction if self.voltage_v > 0 else 0.0

    @property
    def load_fraction(self) -> float:
        """Load carried as a fraction of the nameplate kW."""
        return self.load_kw / self.params.rated_kw

    @property
    def oil_pressure_kpa(self) -> float:
        """Oil pressure rises with engine speed."""
        return RATED_OIL_PRESSURE_KPA * self.speed_fraction

    @property
    def fuel_flow_l_per_h(self) -> float:
        """Fuel burnt now."""
        if not self.turning:
            return 0.0
        return fuel_flow_l_per_h(self.load_kw, self.params.rated_kw, self.params.sfc_l_per_kwh)

    def wants_to_run(self, remote_start: bool) -> bool:
        """Auto runs on the remote start (mains failure), a test runs regardless; a latched alarm blocks."""
        if self.fail_to_start_alarm or self.fuel_l <= 0.0:
            return False
        return self.mode in TEST_MODES or (self.mode in AUTO_MODES and remote_start)

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float, *, remote_start: bool, load_kw: float) -> None:
        """Advance dt_s seconds carrying load_kw (the chain only loads a set the ATS has connected)."""
        self._respond(self.wants_to_run(remote_start))
        self.load_kw = max(load_kw, 0.0) if self.phase in (EnginePhase.RAMPING, EnginePhase.RUNNING) else 0.0
        remaining = max(dt_s, 0.0)
        while remaining > 1e-12:
            slice_s = RAMP_SLICE_S if self.phase is EnginePhase.RAMPING else math.inf
            used = max(min(remaining, self._phase_left(), slice_s), 0.0)
            self._integrate(used)
            self.phase_s += used
            remaining -= used
            self._track_ready(used)
            while self._phase_left() <= 1e-9:
                self._next_phase()
                self._track_ready(0.0)  # a phase can start in tolerance (no run-up when start_time_s is 0)
        for process in (self._voltage_noise, self._frequency_noise):
            process.step(dt_s, self.rng)

    def _respond(self, wanted: bool) -> None:
        phase = self.phase
        if wanted and phase is EnginePhase.STOPPED:
            self.crank_attempts = 0
            self._enter(EnginePhase.PRE_START)
        elif wanted and phase is EnginePhase.COOLING_DOWN:
            self._enter(EnginePhase.RUNNING)
        elif not wanted and self.mode in STOP_MODES:
            self._enter(EnginePhase.STOPPED)  # the stop button: no cool-down
        elif not wanted and phase is EnginePhase.RUNNING:
            self._enter(EnginePhase.COOLING_DOWN)
        elif not wanted and phase in STARTING:
            self._enter(EnginePhase.STOPPED)  # start signal withdrawn: abandon the start

    def _phase_left(self) -> float:
        limits = {EnginePhase.PRE_START: self._pre_s,
                  EnginePhase.CRANKING: CRANK_ATTEMPT_S if self.fails_to_start else self._fire_s,
                  EnginePhase.CRANK_REST: CRANK_REST_S, EnginePhase.RAMPING: self._ramp_s,
                  EnginePhase.COOLING_DOWN: self.params.cooldown_s}
        return limits.get(self.phase, math.inf) - self.phase_s

    def _next_phase(self) -> None:
        phase = self.phase
        if phase is EnginePhase.PRE_START or phase is EnginePhase.CRANK_REST:
            self.crank_attempts += 1
            self._enter(EnginePhase.CRANKING)
        elif phase is EnginePhase.CRANKING and not self.fails_to_start:
            self.starts += 1  # GenComm 7.16 counts starts: the engine fired
            self._enter(EnginePhase.RAMPING)
        elif phase is EnginePhase.CRANKING and self.crank_attempts < CRANK_ATTEMPTS:
            self._enter(EnginePhase.CRANK_REST)
        elif phase is EnginePhase.CRANKING:
            self.fail_to_start_alarm = True  # latched until reset_alarms()
            self._enter(EnginePhase.STOPPED)
        elif phase is EnginePhase.RAMPING:
            self._enter(EnginePhase.RUNNING)
        else:
            self._enter(EnginePhase.STOPPED)  # cool-down over

    def _enter(self, phase: EnginePhase) -> None:
        self.phase, self.phase_s = phase, 0.0
        if phase not in TURNING:
            self.load_kw = 0.0

    def _integrate(self, dt_s: float) -> None:
        if self.turning:
            self.run_s += dt_s
            self.energy_kwh += self.load_kw * dt_s / 3600.0
            self.fuel_l = max(self.fuel_l - self.fuel_flow_l_per_h * dt_s / 3600.0, 0.0)
            if self.fuel_l <= 0.0:
                self._enter(EnginePhase.STOPPED)  # starved of fuel
        self._warm(dt_s)
        self._charge(dt_s)

    def _warm(self, dt_s: float) -> None:
        if self.turning:
            target, tau = RUNNING_COOLANT_C + 8.0 * self.load_fraction, COOLANT_TAU_RUNNING_S
            self.coolant_c = approach(self.coolant_c, target, tau, dt_s)
            self.oil_c = approach(self.oil_c, self.coolant_c + OIL_OVER_COOLANT_C, OIL_TAU_S, dt_s)
        else:
            self.coolant_c = approach(self.coolant_c, STANDBY_COOLANT_C, COOLANT_TAU_STOPPED_S, dt_s)
            self.oil_c = approach(self.oil_c, self.coolant_c - 2.0, COOLANT_TAU_STOPPED_S, dt_s)

    def _charge(self, dt_s: float) -> None:
        if self.phase is EnginePhase.CRANKING:
            self.battery_v = BATTERY_CRANK_V  # the starter motor pulls hundreds of amps
        elif self.turning:
            self.battery_v = approach(self.battery_v, BATTERY_CHARGING_V, BATTERY_TAU_UP_S, dt_s)
        else:
            tau = BATTERY_TAU_UP_S if self.battery_v < BATTERY_REST_V else BATTERY_TAU_DOWN_S
            self.battery_v = approach(self.battery_v, BATTERY_REST_V, tau, dt_s)

    def _track_ready(self, dt_s: float) -> None:
        if not within_tolerance(self.voltage_v, self.frequency_hz):
            self.ready_for_s = None
        else:
            self.ready_for_s = 0.0 if self.ready_for_s is None else self.ready_for_s + dt_s

    def reset_alarms(self) -> None:
        """The operator resets the controller: a latched fail-to-start clears."""
        self.fail_to_start_alarm = False


class DseGensetModel:
    """The GenComm register map (genset/dse_gencomm) of a generator set and the mains it watches."""

    def __init__(self, generator: Generator, mains: Source, *, name: str):
        self.generator = generator
        self.mains = mains
        self.name = name

    def values(self) -> dict[str, float | str]:
        """Engineering values (state names for enums) for every point of genset/dse_gencomm."""
        return {**self._identity(), **self._engine(), **self._alternator(), **self._mains(),
                **self._counters(), **self._alarms()}

    def _identity(self) -> dict[str, float | str]:
        return {"genset.manufacturer": "dse", "genset.model_number": float(DSE_MODEL_7320_MK2),
                "genset.serial": float(zlib.crc32(self.name.encode()) % 10**8),
                "genset.mode": self.generator.mode, "engine.state": self.generator.engine_state}

    def _engine(self) -> dict[str, float]:
        gen = self.generator
        return {
            "engine.oil_pressure": gen.oil_pressure_kpa,
            "engine.coolant_temperature": gen.coolant_c,
            "engine.oil_temperature": gen.oil_c,
            "fuel.level": 100.0 * gen.fuel_l / gen.params.tank_litres,
            "engine.charge_alternator_voltage": BATTERY_CHARGING_V + 0.1 if gen.turning else 0.0,
            "engine.battery_voltage": gen.battery_v,
            "engine.speed": gen.rpm,
            # the charger runs from the mains and rests while the engine's alternator charges
            "charger.current": CHARGER_FLOAT_A if self.mains.voltage_v > 0 and not gen.turning else 0.0,
        }

    def _alternator(self) -> dict[str, float]:
        gen = self.generator
        voltage = gen.voltage_v
        power_w = gen.load_kw * 1000.0
        values: dict[str, float] = {"genset.frequency": gen.frequency_hz, "genset.power": power_w,
                                    "genset.load": 100.0 * gen.load_fraction}
        phases = [voltage + offset if voltage > 0 else 0.0 for offset in PHASE_VOLTAGE_OFFSETS_V]
        for index, (phase_v, share) in enumerate(zip(phases, PHASE_SHARES, strict=True), start=1):
            phase_w = power_w * share
            values[f"genset.L{index}.voltage"] = phase_v
            values[f"genset.L{index}.power"] = phase_w
            values[f"genset.L{index}.current"] = phase_w / (phase_v * LOAD_POWER_FACTOR) if phase_v else 0.0
        for a, b in ((1, 2), (2, 3), (3, 1)):
            values[f"genset.L{a}-L{b}.voltage"] = (phases[a - 1] + phases[b - 1]) / 2 * SQRT3
        return values

    def _mains(self) -> dict[str, float]:
        voltage = self.mains.voltage_v
        values = {f"mains.L{index}.voltage": voltage + offset if voltage > 0 else 0.0
                  for index, offset in enumerate(MAINS_VOLTAGE_OFFSETS_V, start=1)}
        return {**values, "mains.frequency": self.mains.frequency_hz}

    def _counters(self) -> dict[str, float]:
        gen = self.generator
        return {"engine.run_time": float(int(gen.run_s)), "genset.energy": gen.energy_kwh,
                "engine.starts": float(gen.starts), "alarm.named_count": float(NAMED_ALARMS)}

    def _alarms(self) -> dict[str, str]:
        alarms = dict.fromkeys(ALARM_POINTS, "inactive")
        if self.generator.fail_to_start_alarm:
            alarms["alarm.fail_to_start"] = "shutdown"
        return alarms
