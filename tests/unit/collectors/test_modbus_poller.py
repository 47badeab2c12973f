"""ModbusPoller against a fake pymodbus client: decoding, exception codes, busy retry, pooling, bad frames."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from collectors.modbus import ModbusClientPool, ModbusPoller
from collectors.model import Kind, ModbusAddress, PointSpec, Quality, Table
from collectors.profile import PROFILE_DIR, DeviceProfile, ModbusOptions, load_profile
from config.schema import Device
from config.schema import ModbusOptions as DeviceModbusOptions

THSENSOR = load_profile(PROFILE_DIR / "thsensor/generic_xymd02.yaml", "thsensor/generic_xymd02")
RESPONSES = {
    Table.COIL: (1, lambda values: ReadCoilsResponse(bits=values)),
    Table.DISCRETE: (2, lambda values: ReadDiscreteInputsResponse(bits=values)),
    Table.HOLDING: (3, lambda values: ReadHoldingRegistersResponse(registers=values)),
    Table.INPUT: (4, lambda values: ReadInputRegistersResponse(registers=values)),
}


class FakeClient:
    """Serves reads from a dict memory; ``faults[(table, start)]`` lists what to answer first, in order."""

    def __init__(self, host, *, port, timeout, retries, reconnect_delay, memory=None, faults=None):
        self.kwargs = {"host": host, "port": port, "timeout": timeout, "retries": retries,
                       "reconnect_delay": reconnect_delay}
        self.memory = memory if memory is not None else {}
        self.faults = faults if faults is not None else {}
        self.accept = True
        self.connected = False
        self.connects = 0
        self.closes = 0
        self.requests: list[tuple[str, int, int, int]] = []

    async def connect(self) -> bool:
        self.connects += 1
        self.connected = self.accept
        return self.accept

    def close(self) -> None:
        self.closes += 1
        self.connected = False

    async def _read(self, table: Table, address: int, count: int, device_id: int):
        self.requests.append((table.value, address, count, device_id))
        pending = self.faults.get((table, address))
        if pending:
            fault = pending.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        words = [self.memory.get((table, address + i), 0) for i in range(count)]
        if table.is_bits:
            words = [bool(w) for w in words] + [False] * (-count % 8)  # pymodbus pads bits to a byte
        return RESPONSES[table][1](words)

    async def read_coils(self, address, *, count, device_id):
        return await self._read(Table.COIL, address, count, device_id)

    async def read_discrete_inputs(self, address, *, count, device_id):
        return await self._read(Table.DISCRETE, address, count, device_id)

    async def read_holding_registers(self, address, *, count, device_id):
        return await self._read(Table.HOLDING, address, count, device_id)

    async def read_input_registers(self, address, *, count, device_id):
        return await self._read(Table.INPUT, address, count, device_id)


def exception(table: Table, code: int) -> ExceptionResponse:
    return ExceptionResponse(RESPONSES[table][0] | 0x80, code)


class Rig:
    """A pool whose clients are FakeClients sharing one memory and fault list."""

    def __init__(self):
        self.memory: dict[tuple[Table, int], int] = {
            (Table.INPUT, 1): 0xFF33,  # -20.5 degC, two's complement
            (Table.INPUT, 2): 455,  # 45.5 %RH
            (Table.HOLDING, 257): 1, (Table.HOLDING, 258): 9600,
            (Table.HOLDING, 259): 0xFFFB, (Table.HOLDING, 260): 3,
        }
        self.faults: dict[tuple[Table, int], list] = {}
        self.clients: list[FakeClient] = []
        self.pool = ModbusClientPool(client_factory=self._make)

    def _make(self, host, **kwargs) -> FakeClient:
        client = FakeClient(host, memory=self.memory, faults=self.faults, **kwargs)
        self.clients.append(client)
        return client

    def poller(self, profile: DeviceProfile = THSENSOR, unit_id: int | None = 7, port: int = 22502,
               device_id: str = "inlet", busy_retries: int = 2) -> ModbusPoller:
        device = Device(id=device_id, device_class=profile.device_class, profile=profile.id, room="r1",
                        host="127.0.0.1", port=port, modbus=DeviceModbusOptions(unit_id=unit_id, timeout_s=0.3,
                                                                                retries=1))
        return ModbusPoller(device, profile, pool=self.pool, clock=lambda: 42.0, busy_retries=busy_retries,
                            busy_wait_s=0.0)


def poll(poller: ModbusPoller):
    return asyncio.run(poller.poll())


def by_point(result):
    return {r.point: r for r in result.readings}


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_negative_temperature_and_humidity_are_decoded(rig):
    result = poll(rig.poller())
    readings = by_point(result)
    assert result.error is None
    assert readings["ambient.temperature"].value == -20.5
    assert readings["ambient.humidity"].value == 45.5
    assert readings["config.temperature_offset"].value == -0.5
    assert {r.ts for r in result.readings} == {42.0}


def test_sentinel_is_missing_not_a_number(rig):
    rig.memory[(Table.INPUT, 1)] = 0x7FFF
    reading = by_point(poll(rig.poller()))["ambient.temperature"]
    assert (reading.quality, reading.value) == (Quality.MISSING, None)


def test_reads_follow_the_plan_with_the_device_unit_id(rig):
    result = poll(rig.poller(unit_id=7))
    assert rig.clients[0].requests == [("holding", 257, 4, 7), ("input", 1, 2, 7)]
    assert result.requests == 2


def test_unit_id_defaults_to_the_profile(rig):
    poll(rig.poller(unit_id=None))
    assert {r[3] for r in rig.clients[0].requests} == {THSENSOR.modbus.default_unit_id}


@pytest.mark.parametrize("code", [1, 2, 3, 4])
def test_illegal_request_exceptions_cost_exactly_one_request_and_no_values(rig, code):
    rig.faults[(Table.INPUT, 1)] = [exception(Table.INPUT, code)] * 5
    result = poll(rig.poller())
    readings = by_point(result)
    assert sum(1 for r in rig.clients[0].requests if r[0] == "input") == 1
    assert all(readings[n].quality is Quality.MISSING and readings[n].value is None
               for n in ("ambient.temperature", "ambient.humidity"))
    assert f"exception {code}" in result.error and "input 1+2" in result.error
    assert readings["config.baud"].value == 9600  # the other block is unaffected
    assert result.answered


def test_busy_is_retried_and_then_succeeds(rig):
    rig.faults[(Table.INPUT, 1)] = [exception(Table.INPUT, 6), exception(Table.INPUT, 6)]
    result = poll(rig.poller(busy_retries=2))
    assert result.error is None
    assert by_point(result)["ambient.temperature"].value == -20.5
    assert result.requests == 4  # holding once, input three times


def test_busy_retries_are_bounded(rig):
    rig.faults[(Table.INPUT, 1)] = [exception(Table.INPUT, 6)] * 10
    result = poll(rig.poller(busy_retries=2))
    assert sum(1 for r in rig.clients[0].requests if r[0] == "input") == 3
    assert "exception 6 (server device busy)" in result.error
    assert by_point(result)["ambient.temperature"].quality is Quality.MISSING


def test_gateway_target_not_responding_means_unreachable(rig):
    rig.faults[(Table.HOLDING, 257)] = [exception(Table.HOLDING, 11)] * 3
    result = poll(rig.poller())
    assert result.readings == [] and "exception 11" in result.error
    assert result.requests == 1 and not result.answered


def test_refused_connection_means_unreachable_without_requests(rig):
    poller = rig.poller()
    rig.pool.acquire("127.0.0.1", 22502, timeout=1, retries=0).client.accept = False
    result = poll(poller)
    assert (result.readings, result.requests) == ([], 0)
    assert result.error == "127.0.0.1:22502 unit 7: cannot connect"


def test_timeout_means_unreachable_and_drops_the_connection(rig):
    rig.faults[(Table.HOLDING, 257)] = [ModbusIOException("No response received after 1 retries")]
    result = poll(rig.poller())
    assert result.readings == []
    assert result.error == "127.0.0.1:22502 unit 7: holding 257+4: No response received after 1 retries"
    assert rig.clients[0].closes == 1  # a late reply cannot land in the next request


def test_connection_lost_mid_poll_keeps_the_first_block(rig):
    rig.faults[(Table.INPUT, 1)] = [ConnectionException("Not connected")]
    result = poll(rig.poller())
    readings = by_point(result)
    assert readings["config.baud"].value == 9600
    assert readings["ambient.temperature"].quality is Quality.MISSING
    assert "Not connected" in result.error and result.answered


def test_reconnects_on_the_next_poll(rig):
    poller = rig.poller()
    rig.faults[(Table.HOLDING, 257)] = [ModbusIOException("timeout")]
    assert poll(poller).readings == []
    assert poll(poller).error is None
    assert rig.clients[0].connects == 2


def test_wrong_register_count_is_missing_never_shifted(rig):
    rig.faults[(Table.INPUT, 1)] = [ReadInputRegistersResponse(registers=[0xFF33])]  # asked for 2
    result = poll(rig.poller())
    readings = by_point(result)
    assert readings["ambient.temperature"].quality is Quality.MISSING
    assert readings["ambient.humidity"].quality is Quality.MISSING
    assert "response carried 1 values" in result.error


def mixed_profile() -> DeviceProfile:
    def spec(name, table, address, datatype, kind=Kind.GAUGE, word_order="big"):
        return PointSpec(name=name, kind=kind, datatype=datatype, modbus=ModbusAddress(table, address, word_order))

    points = (
        spec("alarm.a", Table.COIL, 0, "bool", Kind.STATE),
        spec("alarm.b", Table.COIL, 2, "bool", Kind.STATE),
        spec("door.open", Table.DISCRETE, 5, "bool", Kind.STATE),
        spec("power.total", Table.HOLDING, 10, "float32", word_order="little"),
        spec("energy.total", Table.HOLDING, 12, "int32"),
    )
    return DeviceProfile(id="pdu/test", device_class="pdu", protocol="modbus", vendor="t", model="t",
                         description="", source="test", sys_object_id=None, summary=(), points=points,
                         modbus=ModbusOptions(default_unit_id=1))


def test_bits_are_sliced_to_the_requested_count(rig):
    rig.memory.update({(Table.COIL, 0): 1, (Table.COIL, 2): 1, (Table.COIL, 3): 1, (Table.DISCRETE, 5): 1})
    result = poll(rig.poller(mixed_profile()))
    readings = by_point(result)
    assert ("coil", 0, 3, 7) in rig.clients[0].requests
    assert (readings["alarm.a"].value, readings["alarm.b"].value, readings["door.open"].value) == (1.0, 1.0, 1.0)


def test_32_bit_values_honour_word_order(rig):
    high, low = struct.unpack(">HH", struct.pack(">f", 1234.5))
    rig.memory.update({(Table.HOLDING, 10): low, (Table.HOLDING, 11): high})  # little = low word first
    rig.memory.update({(Table.HOLDING, 12): 0xFFFF, (Table.HOLDING, 13): 0xFFFE})  # int32 -2
    readings = by_point(poll(rig.poller(mixed_profile())))
    assert readings["power.total"].value == 1234.5
    assert readings["energy.total"].value == -2.0


def test_devices_behind_one_gateway_share_one_client(rig):
    first = rig.poller(unit_id=1, device_id="a")
    second = rig.poller(unit_id=2, device_id="b")
    other = rig.poller(unit_id=1, device_id="c", port=22503)

    async def main():
        await asyncio.gather(first.poll(), second.poll(), other.poll())
        assert rig.pool.users("127.0.0.1", 22502) == 2
        await first.close()
        assert rig.clients[0].closes == 0  # still used by the second device
        await second.close()
        await other.close()

    asyncio.run(main())
    assert len(rig.clients) == 2
    assert {r[3] for r in rig.clients[0].requests} == {1, 2}
    assert [c.closes for c in rig.clients] == [1, 1]
    assert rig.pool.users("127.0.0.1", 22502) == 0


def test_pool_disables_the_client_reconnect_loop_and_passes_timeouts(rig):
    poll(rig.poller())
    assert rig.clients[0].kwargs == {"host": "127.0.0.1", "port": 22502, "timeout": 0.3, "retries": 1,
                                     "reconnect_delay": 0}


def test_undecodable_frame_drops_the_connection_and_recovers_next_poll(rig):
    poller = rig.poller()
    rig.faults[(Table.HOLDING, 257)] = [ModbusException("Unable to decode frame")]
    first = poll(poller)
    assert first.readings == [] and "Unable to decode frame" in first.error
    assert rig.clients[0].closes == 1
    assert poll(poller).error is None


def test_timeout_on_a_shared_gateway_connection_keeps_it_open_for_the_others(rig):
    dead_unit = rig.poller(unit_id=1, device_id="a")
    sibling = rig.poller(unit_id=2, device_id="b")

    async def main():
        await sibling.poll()
        rig.faults[(Table.HOLDING, 257)] = [ModbusIOException("No response received after 1 retries")]
        failed = await dead_unit.poll()
        return failed, await sibling.poll()

    failed, sibling_result = asyncio.run(main())
    assert failed.readings == [] and sibling_result.error is None
    assert rig.clients[0].closes == 0 and rig.clients[0].connects == 1
