"""The data model every part of facwatch shares: points, readings and their quality."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """What a point measures, which decides how it is stored, shown and alerted on."""

    GAUGE = "gauge"      # an analog value with a unit
    COUNTER = "counter"  # monotonic, may wrap or reset
    STATE = "state"      # an enum code or bit field with a state name and a severity
    TEXT = "text"        # identity strings: model, firmware, serial


class Quality(StrEnum):
    """Whether a reading may be trusted; only GOOD readings carry a value."""

    GOOD = "good"
    MISSING = "missing"  # the device said "no value" (sentinel, noSuchObject, NaN) or did not answer
    INVALID = "invalid"  # a value came back but is physically impossible (outside the point's valid range)


class Severity(StrEnum):
    """A vendor state mapped to a generic severity, as LibreNMS state translations do."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Worse is higher: ok < info < unknown < warning < critical (an unknown state may hide a fault)."""
        return _SEVERITY_RANKS[self]


_SEVERITY_RANKS = {Severity.OK: 0, Severity.INFO: 1, Severity.UNKNOWN: 2, Severity.WARNING: 3, Severity.CRITICAL: 4}


class Table(StrEnum):
    """Modbus data tables, with the read function code for each."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def read_function(self) -> int:
        """The Modbus function code that reads this table."""
        return {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[self.value]

    @property
    def is_bits(self) -> bool:
        """Coils and discrete inputs hold bits; the others hold 16-bit registers."""
        return self in (Table.COIL, Table.DISCRETE)


@dataclass(frozen=True, slots=True)
class EnumState:
    """One enum code of a state point: its vendor name and generic severity."""

    name: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    """Where a point lives on a Modbus device (0-based PDU address)."""

    table: Table
    address: int
    word_order: str = "big"  # "big" = high word first (GenComm, Uniflair, pymodbus default)


@dataclass(frozen=True, slots=True)
class PointSpec:
    """A compiled profile point: how to read, decode, encode and label one value.

    Example: ``PointSpec(name="battery.voltage", kind=Kind.GAUGE, datatype="integer", unit="V",
    scale=0.1, oid="1.3.6.1.2.1.33.1.2.5.0")`` decodes raw 2301 to 230.1 V.
    """

    name: str
    kind: Kind
    datatype: str
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    description: str = ""
    enum: Mapping[int, EnumState] = field(default_factory=dict)
    sentinels: frozenset[int] = frozenset()
    valid_range: tuple[float, float] | None = None
    bits: tuple[int, int] | None = None  # (lowest bit, width) of a bit field inside the raw value
    oid: str | None = None
    modbus: ModbusAddress | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One point of one device at one instant.

    ``value`` is the engineering value (scaled) for gauges and counters and the raw code for states;
    ``text`` is the state name or the identity string. A reading that is not GOOD has ``value=None``.
    ``scenario`` tags readings produced while a simulated scenario or drill ran, so they can be kept
    out of real evidence.
    """

    device: str
    point: str
    ts: float  # acquisition time, seconds since the epoch (UTC)
    value: float | None
    quality: Quality = Quality.GOOD
    text: str | None = None
    scenario: str | None = None



@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll got: decoded readings, an error text, and the requests it sent.

    A device that did not answer at all has ``error`` set and no readings; a device that answered
    but refused some points (SNMP errStat, Modbus exception) has both readings and ``error``.
    """

    readings: list[Reading]
    error: str | None = None
    requests: int = 0

    @property
    def answered(self) -> bool:
        """True when the device answered at least part of the poll."""
        return self.error is None or bool(self.readings)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at an instant rather than a sampled value: a trap, a scenario marker.

    Example: ``Event(ts, "dh1-ups-a", "trap", "upsTrapOnBattery", Severity.WARNING,
    {"oid": "1.3.6.1.2.1.33.2.1", "source": "127.0.0.1:16161", "varbinds": [[oid, type, value], ...]})``.
    ``payload`` keeps the raw facts (OIDs, varbinds) as JSON-serialisable data, so nothing a device
    said is lost even when facwatch does not understand it.
    """

    ts: float
    device: str | None  # None when the sender could not be matched to a configured device
    kind: str  # "trap", "scenario"
    name: str
    severity: Severity
    payload: Mapping[str, object] = field(default_factory=dict)
    scenario: str | None = None


# Points every poll records about the device itself, whatever its profile.
REACHABLE_POINT = "device.reachable"
POLL_DURATION_POINT = "device.poll_duration"

HEALTH_POINTS: tuple[PointSpec, ...] = (
    PointSpec(
        name=REACHABLE_POINT, kind=Kind.STATE, datatype="integer",
        description="1 when the last poll got an answer, 0 when it did not",
        enum={1: EnumState("reachable", Severity.OK), 0: EnumState("unreachable", Severity.CRITICAL)},
    ),
    PointSpec(
        name=POLL_DURATION_POINT, kind=Kind.GAUGE, datatype="float", unit="s",
        description="wall time of the last poll, including retries",
    ),
)
