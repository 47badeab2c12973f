"""Modbus TCP poller: planned block reads with pymodbus 3.16, decoded through the shared codec.

One of the two modules allowed to import pymodbus. Pattern and pitfalls: LIBRARIES.md §2 —
``device_id=`` and keyword-only ``count``, errors are returned (not raised), one client is one TCP
connection serialised by a lock, coil/discrete bits come back padded to a multiple of 8.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from collectors.codec import CodecError, decode, registers_to_raw
from collectors.modbus_tls import ModbusTlsFiles, VerifyingClientContext, client_context, describe_tls_error
from collectors.model import PointSpec, PollResult, Quality, Reading, Table
from collectors.planner import ReadBlock, plan_modbus
from collectors.profile import DeviceProfile, ModbusOptions
from config.schema import Device
from config.schema import ModbusOptions as DeviceModbusOptions

BUSY = 6  # Server Device Busy: the only exception worth asking again for within one poll
BUSY_RETRIES = 2
BUSY_WAIT_S = 0.1
# Gateway path unavailable / target failed to respond: the gateway answered, the device behind it did not.
GATEWAY_NO_ANSWER = frozenset({10, 11})

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
    5: "acknowledge", 6: "server device busy", 8: "memory parity error",
    10: "gateway path unavailable", 11: "gateway target device failed to respond",
}

READERS = {
    Table.COIL: "read_coils",
    Table.DISCRETE: "read_discrete_inputs",
    Table.HOLDING: "read_holding_registers",
    Table.INPUT: "read_input_registers",
}

ClientFactory = Callable[..., Any]


@dataclass(slots=True)
class _Connection:
    """A pooled client, the devices using it, and a lock so only one of them connects at a time."""

    client: Any
    users: int = 0
    connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tls: VerifyingClientContext | None = None  # Modbus/TCP Security: remembers why a handshake failed

    def drop_if_unshared(self) -> None:
        """Close after a failed request so a late reply or torn frame cannot meet the next request.

        A gateway connection other devices share stays open: they may be queued on it right now,
        and pymodbus matches transaction ids, so a late reply is dropped rather than mis-assigned.
        """
        if self.users <= 1:
            self.client.close()

    async def ensure_connected(self) -> bool:
        """Connect if not connected; False if the peer refused or did not accept in time."""
        async with self.connect_lock:
            if self.client.connected:
                return True
            if self.tls is not None:
                self.tls.reset()
            return bool(await self.client.connect())

    def connect_failure(self) -> str:
        """Why the last connect failed, as far as we know (TLS says more than pymodbus's False)."""
        if self.tls is None:
            return "cannot connect"
        if self.tls.last_failure is not None:
            return f"TLS: {self.tls.last_failure}"
        if self.tls.handshakes:
            return ("TLS: the handshake did not complete in time "
                    "(is the device serving Modbus/TCP Security on this port?)")
        return "cannot connect (TLS)"

    def tls_failure(self) -> str | None:
        """A TLS alert or record error seen since connecting (e.g. the device refused our certificate)."""
        if self.tls is None:
            return None
        if self.tls.last_failure:
            return f"TLS: {self.tls.last_failure}"
        if not self.tls.answered and not self.client.connected:
            # With TLS 1.3 the server checks our certificate after the client's handshake is done;
            # asyncio servers then drop the connection without an alert, so this is all we see.
            return ("TLS: the device closed the connection after the handshake without answering "
                    "(did it refuse facwatch's client certificate?)")
        return None


class ModbusClientPool:
    """One client per host:port (and TLS identity), shared by every device behind it, reference-counted.

    Devices behind one RTU gateway share its single TCP connection; the client's lock serialises
    their requests, which is what the serial bus behind the gateway needs anyway. A TLS device never
    shares a plain client: the TLS settings are part of the key, so there is no plain-TCP fallback.
    """

    def __init__(self, client_factory: ClientFactory = AsyncModbusTcpClient,
                 tls_client_factory: ClientFactory = AsyncModbusTlsClient):
        self._factory = client_factory
        self._tls_factory = tls_client_factory
        self._connections: dict[tuple[str, int, ModbusTlsFiles | None], _Connection] = {}

    def acquire(self, host: str, port: int, *, timeout: float, retries: int,
                tls: ModbusTlsFiles | None = None) -> _Connection:
        """The connection to host:port (created on first use; the first user's timeout/retries apply).

        Raises ssl.SSLError / OSError if the TLS files cannot be loaded (``facwatch check`` tried them).
        """
        key = (host, port, tls)
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = self._connect(host, port, timeout, retries, tls)
        connection.users += 1
        return connection

    def _connect(self, host: str, port: int, timeout: float, retries: int, tls: ModbusTlsFiles | None) -> _Connection:
        # reconnect_delay=0: no background reconnect loop; the scheduler decides when to try again.
        if tls is None:
            return _Connection(self._factory(host, port=port, timeout=timeout, retries=retries, reconnect_delay=0))
        context = client_context(tls)
        client = self._tls_factory(host, port=port, sslctx=context, timeout=timeout, retries=retries,
                                   reconnect_delay=0)
        return _Connection(client, tls=context)

    def release(self, host: str, port: int, tls: ModbusTlsFiles | None = None) -> None:
        """Drop one user; the last one closes the TCP connection."""
        key = (host, port, tls)
        connection = self._connections.get(key)
        if connection is None:
            return
        connection.users -= 1
        if connection.users <= 0:
            del self._connections[key]
            connection.client.close()

    def users(self, host: str, port: int, tls: ModbusTlsFiles | None = None) -> int:
        """How many pollers share the connection to host:port."""
        connection = self._connections.get((host, port, tls))
        return connection.users if connection else 0


SHARED_POOL = ModbusClientPool()


@dataclass(slots=True)
class _Outcome:
    readings: list[Reading] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    failure: str | None = None


class ModbusPoller:
    """Polls one Modbus TCP device (one unit id) with the profile's planned block reads.

    With ``tls`` (the device's resolved ``modbus.tls``) it speaks Modbus/TCP Security only: a failed
    handshake is this device's error, never a reason to try plain TCP.
    """

    def __init__(self, device: Device, profile: DeviceProfile, *, pool: ModbusClientPool | None = None,
                 clock: Callable[[], float] = time.time, busy_retries: int = BUSY_RETRIES,
                 busy_wait_s: float = BUSY_WAIT_S, tls: ModbusTlsFiles | None = None):
        self._device = device
        self._tls = tls
        self._options = device.modbus or DeviceModbusOptions()
        if self._options.tls is not None and tls is None:  # never fall back to plain TCP, not even by a wiring slip
            raise ValueError(f"{device.id}: modbus.tls is configured but no resolved TLS files were given")
        profile_options = profile.modbus or ModbusOptions()
        unit = self._options.unit_id
        self._unit = unit if unit is not None else profile_options.default_unit_id
        self._blocks = plan_modbus(profile.points, profile_options)
        # where each point sits in its block's response, worked out once rather than on every poll
        self._slices = {(b.start, b.table): tuple(b.offset(spec) for spec in b.points) for b in self._blocks}
        self._pool = pool or SHARED_POOL
        self._connection: _Connection | None = None
        self._clock = clock
        self._busy_retries = busy_retries
        self._busy_wait_s = busy_wait_s
        self._where = f"{device.host}:{device.port}{' (TLS)' if tls else ''} unit {self._unit}"

    @property
    def blocks(self) -> list[ReadBlock]:
        """The planned block reads."""
        return list(self._blocks)

    async def poll(self) -> PollResult:
        """Read every planned block; a device that does not answer gives an error and no readings."""
        ts = self._clock()
        try:
            connection = self._acquire()
        except (ssl.SSLError, OSError) as exc:  # files changed since `facwatch check`; the password is never in it
            return PollResult([], f"{self._where}: TLS: cannot load certificates: {describe_tls_error(exc)}", 0)
        if not await connection.ensure_connected():
            return PollResult([], f"{self._where}: {connection.connect_failure()}", 0)
        total = _Outcome()
        for index, block in enumerate(self._blocks):
            outcome = await self._read_block(connection, block, ts)
            total.readings += outcome.readings
            total.errors += outcome.errors
            total.requests += outcome.requests
            if outcome.failure is not None:
                return self._cut_short(total, outcome.failure, self._blocks[index:], ts)
        return PollResult(total.readings, "; ".join(total.errors) or None, total.requests)

    async def close(self) -> None:
        """Give the shared connection back to the pool."""
        if self._connection is not None:
            self._pool.release(self._device.host, self._device.port, self._tls)
            self._connection = None

    def _acquire(self) -> _Connection:
        if self._connection is None:
            self._connection = self._pool.acquire(self._device.host, self._device.port,
                                                  timeout=self._options.timeout_s, retries=self._options.retries,
                                                  tls=self._tls)
        return self._connection

    def _cut_short(self, total: _Outcome, failure: str, unread: Sequence[ReadBlock], ts: float) -> PollResult:
        """The device stopped answering: unreachable if nothing came back, else the rest MISSING."""
        if not total.readings:
            return PollResult([], failure, total.requests)
        missing = [self._missing(spec, ts) for block in unread for spec in block.points]
        return PollResult(total.readings + missing, "; ".join([*total.errors, failure]), total.requests)

    async def _read_block(self, connection: _Connection, block: ReadBlock, ts: float) -> _Outcome:
        """One block read; busy is asked again a bounded number of times, other exceptions once."""
        read = getattr(connection.client, READERS[block.table])
        for attempt in range(self._busy_retries + 1):
            try:
                response = await read(block.start, count=block.count, device_id=self._unit)
            except (ModbusException, OSError) as exc:  # timeout, lost connection, undecodable frame
                connection.drop_if_unshared()
                why = connection.tls_failure() or _message(exc)  # e.g. the device refused our certificate
                return _Outcome(requests=attempt + 1, failure=f"{self._where}: {_what(block)}: {why}")
            if not response.isError():
                return self._decode_block(block, response, ts, attempt + 1)
            code = getattr(response, "exception_code", None)
            if code == BUSY and attempt < self._busy_retries:
                await asyncio.sleep(self._busy_wait_s)
                continue
            text = f"{self._where}: {_what(block)}: exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
            if code in GATEWAY_NO_ANSWER:
                return _Outcome(requests=attempt + 1, failure=text)
            return _Outcome([self._missing(spec, ts) for spec in block.points], [text], attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _decode_block(self, block: ReadBlock, response: Any, ts: float, requests: int) -> _Outcome:
        """Decode a block; a response of the wrong length is MISSING, never shifted onto other points."""
        values = _values(block, response)
        if values is None:
            got = len(getattr(response, "bits" if block.table.is_bits else "registers", None) or [])
            text = f"{self._where}: {block.table.value} {block.start}+{block.count}: response carried {got} values"
            return _Outcome([self._missing(spec, ts) for spec in block.points], [text], requests)
        slices = self._slices[block.start, block.table]
        pairs = zip(block.points, slices, strict=True)
        return _Outcome([self._reading(spec, values[where], ts) for spec, where in pairs], [], requests)

    def _reading(self, spec: PointSpec, words: Sequence[int], ts: float) -> Reading:
        try:
            raw = registers_to_raw(spec, words)
        except CodecError as exc:
            return Reading(self._device.id, spec.name, ts, None, Quality.INVALID, str(exc))
        value, quality, text = decode(spec, raw)
        return Reading(self._device.id, spec.name, ts, value, quality, text)

    def _missing(self, spec: PointSpec, ts: float) -> Reading:
        return Reading(self._device.id, spec.name, ts, None, Quality.MISSING)


def _what(block: ReadBlock) -> str:
    """A block as error texts name it: ``holding 1024+42``."""
    return f"{block.table.value} {block.start}+{block.count}"


def _values(block: ReadBlock, response: Any) -> list[int] | None:
    """The block's registers, or its bits cut to ``count`` (pymodbus pads them to a byte); None if short."""
    if block.table.is_bits:
        bits = list(getattr(response, "bits", None) or [])
        return [int(bit) for bit in bits[: block.count]] if len(bits) >= block.count else None
    registers = list(getattr(response, "registers", None) or [])
    return registers if len(registers) == block.count else None


def _message(exc: Exception) -> str:
    """The text of a pymodbus exception without its "Modbus Error: [...]" prefix."""
    text = str(exc)
    return text.split("] ", 1)[1] if text.startswith("Modbus Error: [") and "] " in text else text
