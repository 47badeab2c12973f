"""Automatic transfer switch: mains / generator transfer logic and its view (ats/facwatch_ats).

The switch follows NFPA 110 practice (REFERENCE.md §7.1): on a utility failure the load drops
(open) until the generator is within voltage and frequency tolerance for ``transfer_delay_s``; once
the utility is back and stable for ``retransfer_delay_s`` it returns to mains. A generator test on
load moves the load to the generator while the utility is healthy. Transfers are open transition:
the contacts take ``OPERATION_S`` to move, and the load is without power meanwhile.

Events are timed exactly inside a step (a transfer due 0.3 s into a 1 s step is recorded at that
instant), so ``ats.last_transfer.duration`` is the NFPA 110 Type 10 figure, not the step size, and
``dead_in_step_s`` tells the UPSs how much of the step the load was without power. State is read at
step ends: contacts still moving at the end of a step are reported home (a 0.1 s operation seen as
"transferring" by every poll that lands on a step boundary would be a step-size artefact).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from config.schema import DeviceSimulation

NOMINAL_VOLTAGE_V = 230.0
NOMINAL_FREQUENCY_HZ = 50.0
# The emergency-source sensing of a typical ATS controller accepts a source at ±10 % voltage and
# ±2 % frequency of nominal (the brief's tolerance; NFPA 110 leaves the bands to the manufacturer).
VOLTAGE_TOLERANCE = 0.10
FREQUENCY_TOLERANCE = 0.02
OPERATION_S = 0.1  # open-transition contacts move in about 6 cycles
MAX_DURATION_S = 6553.4  # ats.last_transfer.duration is u16 in 0.1 s and 0xFFFF means "not measured"
DAY_S = 86_400.0
# Two transfers per monthly on-load test over two years of service, the last three weeks ago.
PREVIOUS_TRANSFERS = 48
PREVIOUS_TRANSFER_AGE_S = 21 * DAY_S


def within_tolerance(voltage_v: float, frequency_hz: float) -> bool:
    """True when a source is good enough to carry the load (±10 % V, ±2 % Hz)."""
    return (abs(voltage_v - NOMINAL_VOLTAGE_V) <= VOLTAGE_TOLERANCE * NOMINAL_VOLTAGE_V
            and abs(frequency_hz - NOMINAL_FREQUENCY_HZ) <= FREQUENCY_TOLERANCE * NOMINAL_FREQUENCY_HZ)


class Source(Protocol):
    """A supply the switch senses: its voltage and frequency (0 when dead)."""

    @property
    def voltage_v(self) -> float:
        """L1-N voltage."""

    @property
    def frequency_hz(self) -> float:
        """Frequency."""


class Position(StrEnum):
    """Where the load is (the ats.position state names)."""

    MAINS = "mains"
    GENERATOR = "generator"
    OPEN = "open"
    TRANSFERRING = "transferring"


@dataclass(frozen=True, slots=True)
class Sources:
    """What the switch senses at the end of a step.

    ``mains_for_s``: seconds the utility has been in its present state (available or not);
    ``generator_ready_s``: seconds the generator has been within tolerance, None when it is not.
    """

    mains_ok: bool
    mains_for_s: float
    generator_ready_s: float | None
    want_generator: bool = False  # a generator test on load asks for the load


@dataclass(frozen=True, slots=True)
class _Operation:
    target: Position
    done_at_s: float
    dead_from_s: float  # when the load lost power (the start of the gap this operation ends)


class TransferSwitch:
    """The ATS state machine; times are simulated seconds since the plant started."""

    def __init__(self, params: DeviceSimulation, epoch_at_start: float):
        self.params = params
        self.epoch_at_start = epoch_at_start
        self.position = Position.MAINS
        self.test_requested = False
        self.transfers = PREVIOUS_TRANSFERS
        self.last_transfer_epoch_s = epoch_at_start - PREVIOUS_TRANSFER_AGE_S
        self.last_transfer_duration_s = OPERATION_S
        self._operation: _Operation | None = None
        self._dead_since_s: float | None = None  # when the load lost power, None while it has power
        self._step_start_s = 0.0
        self._dead_carry_s = 0.0  # the part of a gap that fell after the end of the step it closed in
        self.dead_in_step_s = 0.0  # seconds of the last step the load was without power

    def step(self, now_s: float, dt_s: float, sources: Sources) -> None:
        """Finish a moving transfer, then act on the sources as they are at ``now_s``."""
        self.test_requested = sources.want_generator
        self._step_start_s = now_s - dt_s
        self.dead_in_step_s, self._dead_carry_s = min(self._dead_carry_s, dt_s), 0.0
        self._finish(now_s, sources)
        for _ in range(2):  # one step can lose a source and take the other
            if self._operation is None:
                self._decide(now_s, dt_s, sources)
                self._finish(now_s, sources)
        if self._dead_since_s is not None:
            self.dead_in_step_s += now_s - max(self._dead_since_s, self._step_start_s)

    def _decide(self, now_s: float, dt_s: float, sources: Sources) -> None:
        step_start = now_s - dt_s
        if self.position is Position.MAINS:
            if not sources.mains_ok:
                self._open(now_s - min(sources.mains_for_s, dt_s))  # the load dropped when the utility did
            elif sources.want_generator and self._generator_due(sources):
                self._begin(Position.GENERATOR, max(self._generator_due_at(now_s, sources), step_start))
        elif self.position is Position.OPEN:
            if sources.mains_ok:  # no retransfer delay with the load dead
                self._begin(Position.MAINS, now_s - min(sources.mains_for_s, dt_s))
            elif self._generator_due(sources):
                dead_since = self._dead_since_s if self._dead_since_s is not None else step_start
                self._begin(Position.GENERATOR, max(self._generator_due_at(now_s, sources), step_start, dead_since))
        elif self.position is Position.GENERATOR:
            self._decide_on_generator(now_s, step_start, sources)

    def _decide_on_generator(self, now_s: float, step_start: float, sources: Sources) -> None:
        if sources.generator_ready_s is None:  # the set tripped or ran dry: take mains at once, or drop
            if sources.mains_ok:
                self._begin(Position.MAINS, now_s)
            else:
                self._open(now_s)
        elif (sources.mains_ok and not sources.want_generator
              and sources.mains_for_s >= self.params.retransfer_delay_s):
            stable_since = now_s - (sources.mains_for_s - self.params.retransfer_delay_s)
            self._begin(Position.MAINS, max(stable_since, step_start))

    def _generator_due(self, sources: Sources) -> bool:
        ready = sources.generator_ready_s
        return ready is not None and ready >= self.params.transfer_delay_s

    def _generator_due_at(self, now_s: float, sources: Sources) -> float:
        return now_s - (sources.generator_ready_s - self.params.transfer_delay_s)  # type: ignore[operator]

    def _open(self, since_s: float) -> None:
        self.position = Position.OPEN
        self._lose_power(since_s)

    def _lose_power(self, at_s: float) -> None:
        if self._dead_since_s is None:
            self._dead_since_s = at_s

    def _begin(self, target: Position, at_s: float) -> None:
        """Start moving the contacts; an open-transition transfer drops the load until they close."""
        self._lose_power(at_s)
        self.position = Position.TRANSFERRING
        self._operation = _Operation(target, at_s + OPERATION_S, self._dead_since_s)  # type: ignore[arg-type]

    def _finish(self, now_s: float, sources: Sources) -> None:
        operation = self._operation
        if operation is None or operation.done_at_s > now_s + OPERATION_S:
            return
        self._operation = None
        live = sources.mains_ok if operation.target is Position.MAINS else sources.generator_ready_s is not None
        if not live:  # the source went away while the contacts moved
            self.position = Position.OPEN
            return
        self.position = operation.target
        self.transfers += 1
        self.last_transfer_epoch_s = self.epoch_at_start + operation.done_at_s
        self.last_transfer_duration_s = operation.done_at_s - operation.dead_from_s
        self.dead_in_step_s += min(operation.done_at_s, now_s) - max(operation.dead_from_s, self._step_start_s)
        self._dead_carry_s = max(operation.done_at_s - now_s, 0.0)
        self._dead_since_s = None


class AtsModel:
    """The facwatch_ats Modbus map of a transfer switch and the two sources it senses."""

    def __init__(self, switch: TransferSwitch, mains: Source, emergency: Source):
        self.switch = switch
        self.mains = mains
        self.emergency = emergency

    def values(self) -> dict[str, float | str]:
        """Engineering values (state names for enums) for every point of ats/facwatch_ats."""
        switch, mains, emergency = self.switch, self.mains, self.emergency
        return {
            "ats.position": switch.position.value,
            "ats.mains_available": self._availability(mains),
            "ats.generator_available": self._availability(emergency),
            "ats.mode": "test" if switch.test_requested else "auto",
            "ats.transfers": float(switch.transfers),
            "ats.last_transfer": float(int(switch.last_transfer_epoch_s)),
            "ats.last_transfer.duration": min(switch.last_transfer_duration_s, MAX_DURATION_S),
            "ats.mains.voltage": mains.voltage_v,
            "ats.generator.voltage": emergency.voltage_v,
            "ats.mains.frequency": mains.frequency_hz,
            "ats.generator.frequency": emergency.frequency_hz,
        }

    @staticmethod
    def _availability(source: Source) -> str:
        return "available" if within_tolerance(source.voltage_v, source.frequency_hz) else "unavailable"
