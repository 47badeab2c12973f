"""Request planning: merge a profile's points into as few protocol requests as the device allows.

Pure functions over compiled profiles; no I/O. Plans are computed once per device when its poller is
built, then reused on every poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collectors.codec import registers_for
from collectors.model import PointSpec, Table
from collectors.profile import ModbusOptions


class PlanError(ValueError):
    """A profile that cannot be read within the device's request limits."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read: ``count`` registers (or bits) of ``table`` from ``start``, covering ``points``."""

    table: Table
    start: int
    count: int
    points: tuple[PointSpec, ...]

    def offset(self, spec: PointSpec) -> slice:
        """Where a point's words (or bit) sit in this block's response."""
        first = spec.modbus.address - self.start  # type: ignore[union-attr]
        return slice(first, first + span(spec))


def span(spec: PointSpec) -> int:
    """Registers (or bits) one Modbus point occupies: 32-bit types span two, bits and 16-bit types one."""
    return max(1, registers_for(spec))


def plan_modbus(points: Iterable[PointSpec], options: ModbusOptions) -> list[ReadBlock]:
    """Merge Modbus points into the fewest block reads: per table, by address, within gap and size limits."""
    by_table: dict[Table, list[PointSpec]] = {}
    for spec in points:
        if spec.modbus is None:
            raise PlanError(f"{spec.name}: not a Modbus point (no table/address)")
        by_table.setdefault(spec.modbus.table, []).append(spec)
    blocks: list[ReadBlock] = []
    for table in sorted(by_table, key=lambda t: t.read_function):
        limit = options.max_bits_per_read if table.is_bits else options.max_registers_per_read
        blocks += _merge(table, by_table[table], limit, options.max_gap)
    return blocks


def _merge(table: Table, specs: list[PointSpec], limit: int, max_gap: int) -> list[ReadBlock]:
    """Greedy left-to-right merge of one table's points (sorted by address)."""
    ordered = sorted(specs, key=lambda s: (s.modbus.address, span(s)))  # type: ignore[union-attr]
    blocks: list[ReadBlock] = []
    start = end = 0
    members: list[PointSpec] = []
    for spec in ordered:
        low = spec.modbus.address  # type: ignore[union-attr]
        high = low + span(spec)
        if span(spec) > limit:
            raise PlanError(f"{spec.name}: spans {span(spec)} registers but a read may fetch only {limit}")
        if members and low - end <= max_gap and max(end, high) - start <= limit:
            end = max(end, high)
            members.append(spec)
            continue
        if members:
            blocks.append(ReadBlock(table, start, end - start, tuple(members)))
        start, end, members = low, high, [spec]
    if members:
        blocks.append(ReadBlock(table, start, end - start, tuple(members)))
    return blocks


def plan_snmp(points: Iterable[PointSpec], max_oids_per_request: int) -> list[tuple[PointSpec, ...]]:
    """Split SNMP points into GET batches of at most ``max_oids_per_request`` OIDs, in profile order."""
    if max_oids_per_request < 1:
        raise PlanError("max_oids_per_request must be at least 1")
    specs = list(points)
    missing = [s.name for s in specs if s.oid is None]
    if missing:
        raise PlanError(f"not SNMP points (no oid): {', '.join(missing)}")
    return chunk(specs, max_oids_per_request)


def chunk(items: Sequence[PointSpec], size: int) -> list[tuple[PointSpec, ...]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]
