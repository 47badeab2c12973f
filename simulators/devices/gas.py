"""Clean-agent (gas) extinguishing release panel (gas/clean_agent, REFERENCE.md §5.4).

Cross-zoned counting release: the first zone of the pair in alarm → stage 1; both → stage 2 and the
pre-discharge countdown; when it runs out → release, the cylinder empties and the discharge pressure
switch confirms it. The abort switch holds the countdown while pressed and it resumes on release
(the UFGS "inhibit" mode); a lock-off makes the system inoperative and, operated during the sequence,
aborts it. The sequence latches until the panel is reset.
"""

from __future__ import annotations

import math

from simulators.devices.firepanel import ZoneBoard

RELEASE_DELAY_S = 30.0  # REFERENCE.md §5.4: adjustable 0–60 s, typically 30 s (FenwalNET 6000)
FILL_BAR = 42.0  # ⚠ superpressurised halocarbon cylinders (FM-200, Novec 1230): 42 bar at 21 °C
DISCHARGE_TAU_S = 3.0  # NFPA 2001: a halocarbon agent is out within 10 s
CYLINDER_LOW_FRACTION = 0.9  # REFERENCE.md §5.4: a loss above 10 % of fill pressure is impaired


class GasSystem:
    """Stages, countdown, abort, lock-off, release and the agent cylinder of one protected room."""

    def __init__(self, device_id: str, zones: list[int]):
        self.device_id = device_id
        self.zones = tuple(zones[:2])
        self.reset()

    def reset(self) -> None:
        """Panel reset and cylinder recharged: normal, armed, full."""
        self.stage1 = False
        self.stage2 = False
        self.countdown_s: float | None = None
        self.released = False
        self.aborted = False
        self.abort_held = False
        self.lockoff = False
        self.cylinder_bar = FILL_BAR

    # --- state ---------------------------------------------------------------------------------

    @property
    def counting(self) -> bool:
        """The pre-discharge timer is running (not held)."""
        return self.countdown_s is not None and not self.abort_held

    @property
    def seconds_left(self) -> float:
        """What the panel shows: the time left, 0 once released, the full delay when idle."""
        if self.countdown_s is not None:
            return float(math.ceil(self.countdown_s))
        return 0.0 if self.released else RELEASE_DELAY_S

    @property
    def cylinder_low(self) -> bool:
        """Cylinder pressure switch: more than 10 % of the fill lost."""
        return self.cylinder_bar < CYLINDER_LOW_FRACTION * FILL_BAR

    @property
    def discharge_confirmed(self) -> bool:
        """Discharge pressure switch: agent has left the cylinder after a release."""
        return self.released and self.cylinder_low

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float, board: ZoneBoard) -> None:
        """Detection → stages → countdown → release → cylinder."""
        alarms = [board.in_alarm(zone) for zone in self.zones]
        if any(alarms):
            self.stage1 = True
        if len(alarms) == 2 and all(alarms) and not self.stage2:
            self.stage2 = True
            self._start_countdown()
        self._count(dt_s)
        if self.released:
            self.cylinder_bar *= math.exp(-dt_s / DISCHARGE_TAU_S)

    def _start_countdown(self) -> None:
        if self.lockoff:
            self.aborted = True  # inoperative: stage 2 alarms, nothing counts down
        elif not self.released:
            self.countdown_s = RELEASE_DELAY_S

    def _count(self, dt_s: float) -> None:
        if self.countdown_s is None:
            return
        if self.lockoff:
            self.countdown_s, self.aborted = None, True  # lock-off during the sequence aborts it
            return
        if self.abort_held:
            return  # held at the time left, resumes when the switch is let go
        self.countdown_s -= dt_s
        if self.countdown_s <= 1e-9:
            self.countdown_s, self.released = None, True


def _flag(on: bool, active: str = "active") -> str:
    return active if on else "normal"


class GasView:
    """Status word, countdown and cylinder pressure of one release panel."""

    def __init__(self, system: GasSystem):
        self.system = system

    def values(self) -> dict[str, float | str]:
        """Engineering values and state names for every point of gas/clean_agent."""
        system = self.system
        return {
            "gas.stage1": _flag(system.stage1),
            "gas.stage2": _flag(system.stage2),
            "gas.countdown.running": _flag(system.counting),
            "gas.released": _flag(system.released, "released"),
            "gas.abort": _flag(system.abort_held),
            "gas.manual_release": "normal",
            "gas.lockoff": _flag(system.lockoff),
            "gas.cylinder_low": _flag(system.cylinder_low),
            "gas.circuit_fault": "normal",
            "gas.discharge_confirmed": _flag(system.discharge_confirmed, "discharged"),
            "gas.countdown": system.seconds_left,
            "gas.cylinder_pressure": system.cylinder_bar,
        }
