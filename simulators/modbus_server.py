"""A Modbus TCP server standing in for one gateway: one host:port, one SimDevice per unit id.

pymodbus 3.16 (LIBRARIES.md §2): the datastore is the ``pymodbus.simulator`` SimDevice/SimData model
and the ONLY way to change what clients read is ``server.async_setValues(device_id, fc, address,
registers)``. Register words come from ``collectors.codec`` (encode → raw_to_registers, bit fields
packed with insert_bits) driven by the SAME profile the collector decodes with.

Each table holds exactly the profile's addresses (plus holes up to the profile's ``max_gap``), so
anything else answers exception 02 (illegal data address) like a real transmitter. Client writes
are refused with exception 01: the simulator, like facwatch, is read-only. A unit id nobody
configured answers 0x0B (gateway target failed to respond), which is what an RTU-to-TCP gateway
says when nothing on its bus replies.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Iterable, Mapping
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.simulator import DataType, SimData, SimDevice

from collectors import codec
from collectors.model import PointSpec, Table
from collectors.profile import DeviceProfile

log = logging.getLogger(__name__)

TABLE_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)  # SimDevice tuple order
FUNCTION_TABLES = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE,
                   3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING, 23: Table.HOLDING,
                   4: Table.INPUT}
CATCH_ALL_UNIT = 0  # pymodbus routes unknown unit ids to device 0
MAX_ADDRESS = 65535

RegisterImage = dict[Table, dict[int, int]]


def modbus_points(profile: DeviceProfile) -> list[PointSpec]:
    """The profile's points that have a Modbus address."""
    return [spec for spec in profile.points if spec.modbus is not None]


def used_addresses(profile: DeviceProfile) -> dict[Table, set[int]]:
    """Every register (or bit) address the profile claims, per table."""
    used: dict[Table, set[int]] = {}
    for spec in modbus_points(profile):
        width = max(1, codec.registers_for(spec))
        used.setdefault(spec.modbus.table, set()).update(  # type: ignore[union-attr]
            range(spec.modbus.address, spec.modbus.address + width))  # type: ignore[union-attr]
    return used


def contiguous_runs(addresses: Iterable[int], max_gap: int = 0) -> list[tuple[int, int]]:
    """Sorted addresses → [(start, count)] runs, bridging holes of at most max_gap addresses."""
    runs: list[tuple[int, int]] = []
    for address in sorted(set(addresses)):
        if runs and address - (runs[-1][0] + runs[-1][1]) <= max_gap:
            runs[-1] = (runs[-1][0], address - runs[-1][0] + 1)
        else:
            runs.append((address, 1))
    return runs


def served_cells(profile: DeviceProfile) -> dict[Table, list[tuple[int, int]]]:
    """Address runs each table serves: the profile's addresses plus holes up to the profile's max_gap.

    A profile's ``max_gap`` says the device tolerates reads across that many unused registers (the
    collector merges such reads), so the simulator answers them (with 0) instead of exception 02.
    """
    max_gap = profile.modbus.max_gap if profile.modbus else 0
    return {table: contiguous_runs(addresses, 0 if table.is_bits else max_gap)
            for table, addresses in used_addresses(profile).items()}


def fit_raw(spec: PointSpec, raw: codec.RawValue) -> int | float:
    """A raw value as the point's struct type accepts it (0xFF33 for an int16 becomes -205)."""
    datatype = codec.DATATYPES[spec.datatype]
    if datatype.is_float or isinstance(raw, str):
        return float(raw)
    pattern = codec.bit_pattern(spec.datatype, int(raw))
    if datatype.minimum < 0 and pattern >= 1 << (datatype.width_bits - 1):
        pattern -= 1 << datatype.width_bits
    return pattern


def register_image(profile: DeviceProfile, raw_values: Mapping[str, codec.RawValue]) -> RegisterImage:
    """Register words (or bits as 0/1) per table for the points that have a raw value."""
    image: RegisterImage = {}
    packed: dict[tuple[Table, int], int] = {}  # status words shared by several bit fields
    for spec in modbus_points(profile):
        raw = raw_values.get(spec.name)
        if raw is None:
            continue
        where = spec.modbus
        if spec.bits is not None:
            key = (where.table, where.address)  # type: ignore[union-attr]
            raw = packed[key] = codec.insert_bits(spec, packed.get(key, 0), int(raw))
        words = codec.raw_to_registers(spec, fit_raw(spec, raw))
        table = image.setdefault(where.table, {})  # type: ignore[union-attr]
        for offset, word in enumerate(words):
            table[where.address + offset] = word  # type: ignore[union-attr]
    return image


def _table_blocks(table: Table, runs: list[tuple[int, int]]) -> list[SimData]:
    if table.is_bits:
        return [SimData(start, values=[False] * count, datatype=DataType.BITS) for start, count in runs]
    return [SimData(start, count=count, values=0, datatype=DataType.REGISTERS) for start, count in runs]


class ModbusGateway:
    """One Modbus TCP endpoint serving several unit ids (devices sharing host:port)."""

    def __init__(self, host: str, port: int, units: Mapping[int, DeviceProfile], *,
                 latency_ms: tuple[float, float] | None = None, rng: random.Random | None = None,
                 sslctx: ssl.SSLContext | None = None):
        if not host:
            raise ValueError("bind to an explicit host; '' would listen on every interface")
        if not units:
            raise ValueError(f"{host}:{port}: a gateway needs at least one unit")
        self.host = host
        self.port = port
        self.units = dict(units)
        self._server: ModbusTcpServer | None = None
        self._pushing = False
        self._last: dict[int, RegisterImage] = {}
        self.silent_units: set[int] = set()  # devices that "vanished" behind the gateway
        # answer each client request after a delay drawn from [low, high] ms (a real gateway polls its RTU bus)
        self.latency_ms = latency_ms
        self._rng = rng or random.Random()
        # Modbus/TCP Security: a server context that requires a client certificate (collectors.modbus_tls)
        self.sslctx = sslctx

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._server is not None

    async def start(self) -> None:
        """Listen on host:port (inside the running loop)."""
        if self._server is not None:
            return
        devices = [self._sim_device(unit, profile) for unit, profile in self.units.items()]
        if CATCH_ALL_UNIT not in self.units:
            devices.append(self._catch_all())
        if self.sslctx is not None:
            server: ModbusTcpServer = ModbusTlsServer(devices, address=(self.host, self.port), sslctx=self.sslctx)
        else:
            server = ModbusTcpServer(devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus hides the OSError; say which address failed
            await server.shutdown()
            raise OSError(f"cannot listen on {self.host}:{self.port} (port in use?)") from exc
        self._server = server
        self._last = {}

    async def stop(self) -> None:
        """Close the listener and every client connection."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.shutdown()
        if ModbusTcpServer.active_server is server:
            ModbusTcpServer.active_server = None  # pymodbus keeps a class-level reference

    async def update(self, unit_id: int, raw_values: Mapping[str, codec.RawValue]) -> None:
        """Push the registers of one unit; a failure is logged and never stops later updates."""
        if self._server is None:
            return
        try:
            image = register_image(self.units[unit_id], raw_values)
            await self._push(unit_id, image)
        except Exception:
            log.exception("modbus %s:%s unit %s: update failed", self.host, self.port, unit_id)

    async def _push(self, unit_id: int, image: RegisterImage) -> None:
        last = self._last.setdefault(unit_id, {})
        for table, words in image.items():
            if last.get(table) == words:
                continue  # unchanged: no work for the server
            for start, count in contiguous_runs(words):
                values = [words[a] for a in range(start, start + count)]
                await self._set(unit_id, table, start, [bool(v) for v in values] if table.is_bits else values)
            last[table] = dict(words)

    async def _set(self, unit_id: int, table: Table, address: int, values: list) -> None:
        self._pushing = True
        try:
            await self._server.async_setValues(unit_id, table.read_function, address, values)  # type: ignore[union-attr]
        finally:
            self._pushing = False

    def _sim_device(self, unit_id: int, profile: DeviceProfile) -> SimDevice:
        served = served_cells(profile)
        # pymodbus wants all four tables non-empty: a table the profile lacks gets a stand-in the guard refuses
        blocks = tuple(_table_blocks(table, served.get(table, [(0, 1)])) for table in TABLE_ORDER)
        cells = {table: frozenset(a for start, count in runs for a in range(start, start + count))
                  for table, runs in served.items()}
        return SimDevice(id=unit_id, simdata=blocks, action=partial(self._guard, unit_id, cells))

    def _catch_all(self) -> SimDevice:
        every = [SimData(0, count=MAX_ADDRESS + 1, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(id=CATCH_ALL_UNIT, simdata=every, action=self._no_such_unit)

    async def _guard(self, unit_id: int, served: Mapping[Table, frozenset[int]], function_code: int,
                     start_address: int, address: int, count: int, current_registers: list[int],
                     set_values) -> ExcCodes | None:
        """Refuse client writes, tables the profile lacks, and bit reads starting outside the profile.

        pymodbus pads bit tables to whole 16-bit words and hands this hook the count in words, so a
        read that starts on a profile bit may still run into the padding (it reads 0).
        """
        if set_values is not None and not self._pushing:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is None and self.latency_ms is not None and not self._pushing:
            await asyncio.sleep(self._rng.uniform(*self.latency_ms) / 1000)
        if unit_id in self.silent_units:  # a real RTU gateway answers 0x0B when the device behind it is gone
            return ExcCodes.GATEWAY_NO_RESPONSE
        if address not in served.get(FUNCTION_TABLES.get(function_code), frozenset()):  # type: ignore[arg-type]
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    async def _no_such_unit(self, *args) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE
