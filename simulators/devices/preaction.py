"""Double-interlock pre-action sprinkler system (preaction/double_interlock, REFERENCE.md §5.3).

Two things must both happen, in either order, before water enters the piping: the releasing panel
energises the solenoid (both zones of the cross-zoned pair in alarm) AND the piping loses its
supervisory air (a head has opened, the dry-pilot actuator vents). Either one alone only alarms: a
knocked-off head gives low air, a detection gives a release with no water. The solenoid and the
tripped valve latch until the system is reset.

Supervisory air: a compressor holds the piping between its cut-in and cut-out pressures against the
piping's natural leak; a failed compressor or a larger leak lets the pressure fall through the
low-air switch.
"""

from __future__ import annotations

import math

from simulators.devices.firepanel import ZoneBoard

NOMINAL_AIR_BAR = 0.69  # REFERENCE.md §5.3: 10 psi
COMPRESSOR_CUT_IN_BAR = 0.62
COMPRESSOR_CUT_OUT_BAR = 0.69
LOW_AIR_BAR = 0.42  # REFERENCE.md §5.3: low-pressure supervisory switch, about 6 psi falling
HIGH_AIR_BAR = 0.90  # above the regulator band: water would be delayed
COMPRESSOR_FILL_BAR_PER_MIN = 0.035  # empty → 0.69 bar in 20 min, inside the 30 min NFPA asks (§5.3)
NATURAL_LEAK_BAR_PER_MIN = 0.1 / (24 * 60)  # ⚠ recalled NFPA 13 air test: ≤ 1.5 psi (0.1 bar) lost in 24 h
HEAD_VENT_TAU_S = 10.0  # an open head vents the piping's air within tens of seconds
VALVE_TRIP_BAR = 0.25  # ⚠ the dry-pilot actuator lets the clapper open well below the low-air switch


class PreactionSystem:
    """Releasing panel, solenoid, valve, piping air and its compressor."""

    def __init__(self, device_id: str, zones: list[int]):
        self.device_id = device_id
        self.zones = tuple(zones[:2])
        self.reset()

    def reset(self) -> None:
        """Back to normal: valve set, solenoid off, piping at nominal air, compressor healthy."""
        self.air_bar = NOMINAL_AIR_BAR
        self.compressor_running = False
        self.compressor_failed = False
        self.extra_leak_bar_per_min = 0.0
        self.head_open = False
        self.solenoid = False
        self.valve_open = False
        self.detection = (False, False)

    # --- knobs ---------------------------------------------------------------------------------

    def set_leak(self, bar_per_min: float) -> None:
        """An extra leak in the piping on top of the natural one."""
        self.extra_leak_bar_per_min = max(float(bar_per_min), 0.0)

    def open_head(self) -> None:
        """A sprinkler head operates (heat, or a knock): the piping vents."""
        self.head_open = True

    # --- state ---------------------------------------------------------------------------------

    @property
    def low_air(self) -> bool:
        """Low-air supervisory switch operated."""
        return self.air_bar < LOW_AIR_BAR

    @property
    def waterflow(self) -> bool:
        """Waterflow switch: water goes into the piping once the valve has tripped."""
        return self.valve_open

    @property
    def compressor_state(self) -> str:
        """Compressor state name: off, running or failed."""
        if self.compressor_failed:
            return "failed"
        return "running" if self.compressor_running else "off"

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float, board: ZoneBoard) -> None:
        """Detection, piping air, then the interlock."""
        alarms = [board.in_alarm(zone) for zone in self.zones]
        self.detection = (len(alarms) > 0 and alarms[0], len(alarms) > 1 and alarms[1])
        if all(self.detection):
            self.solenoid = True  # the releasing panel latches its output until reset
        self._air(dt_s)
        if self.solenoid and self.air_bar < VALVE_TRIP_BAR:
            self.valve_open = True  # both interlocks made: the clapper opens and stays open

    def _air(self, dt_s: float) -> None:
        self._switch_compressor()
        fill = COMPRESSOR_FILL_BAR_PER_MIN * dt_s / 60.0 if self.compressor_running else 0.0
        leak = (NATURAL_LEAK_BAR_PER_MIN + self.extra_leak_bar_per_min) * dt_s / 60.0
        pressure = self.air_bar + fill - leak
        if self.head_open:
            pressure *= math.exp(-dt_s / HEAD_VENT_TAU_S)
        if self.compressor_running:
            pressure = min(pressure, COMPRESSOR_CUT_OUT_BAR)
        self.air_bar = max(pressure, 0.0)

    def _switch_compressor(self) -> None:
        """Pressure switch with hysteresis: start below cut-in, stop at cut-out."""
        if self.compressor_failed:
            self.compressor_running = False
        elif self.air_bar < COMPRESSOR_CUT_IN_BAR:
            self.compressor_running = True
        elif self.air_bar >= COMPRESSOR_CUT_OUT_BAR:
            self.compressor_running = False


def _flag(on: bool, active: str, normal: str = "normal") -> str:
    return active if on else normal


class PreactionView:
    """Status word and air registers of one pre-action system."""

    def __init__(self, system: PreactionSystem):
        self.system = system

    def values(self) -> dict[str, float | str]:
        """Engineering values and state names for every point of preaction/double_interlock."""
        system = self.system
        return {
            "preaction.detection_a": _flag(system.detection[0], "alarm"),
            "preaction.detection_b": _flag(system.detection[1], "alarm"),
            "preaction.solenoid": _flag(system.solenoid, "energised", "de_energised"),
            "preaction.valve_open": _flag(system.valve_open, "open", "closed"),
            "preaction.waterflow": _flag(system.waterflow, "flow", "no_flow"),
            "preaction.low_air": _flag(system.low_air, "active"),
            "preaction.high_air": _flag(system.air_bar > HIGH_AIR_BAR, "active"),
            "preaction.valve_supervisory": "normal",
            "preaction.release_circuit_fault": "normal",
            "preaction.manual_release": "normal",
            "preaction.armed": "armed",
            "preaction.air_pressure": system.air_bar,
            "preaction.air_low_setpoint": LOW_AIR_BAR,
            "preaction.compressor": system.compressor_state,
        }
