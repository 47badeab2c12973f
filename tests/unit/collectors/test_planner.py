"""Request planning: Modbus block merging and SNMP GET batching."""

from __future__ import annotations

import pytest

from collectors.model import Kind, ModbusAddress, PointSpec, Table
from collectors.planner import PlanError, ReadBlock, plan_modbus, plan_snmp
from collectors.profile import PROFILE_DIR, ModbusOptions, load_profile

UPS = load_profile(PROFILE_DIR / "ups/ietf_rfc1628.yaml", "ups/ietf_rfc1628")


def point(name: str, address: int, datatype: str = "uint16", table: Table = Table.HOLDING) -> PointSpec:
    return PointSpec(name=name, kind=Kind.GAUGE, datatype=datatype, modbus=ModbusAddress(table, address))


def bit(name: str, address: int, table: Table = Table.COIL) -> PointSpec:
    return point(name, address, "bool", table)


def spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int]]:
    return [(b.table.value, b.start, b.count) for b in blocks]


def test_adjacent_registers_merge_into_one_block():
    blocks = plan_modbus([point("a", 0), point("b", 1), point("c", 2)], ModbusOptions())
    assert spans(blocks) == [("holding", 0, 3)]
    assert [p.name for p in blocks[0].points] == ["a", "b", "c"]


def test_points_are_sorted_by_address_before_merging():
    blocks = plan_modbus([point("c", 2), point("a", 0), point("b", 1)], ModbusOptions())
    assert [p.name for p in blocks[0].points] == ["a", "b", "c"]


def test_gap_up_to_max_gap_is_read_through():
    blocks = plan_modbus([point("a", 0), point("b", 9)], ModbusOptions(max_gap=8))
    assert spans(blocks) == [("holding", 0, 10)]


def test_gap_beyond_max_gap_starts_a_new_block():
    blocks = plan_modbus([point("a", 0), point("b", 10)], ModbusOptions(max_gap=8))
    assert spans(blocks) == [("holding", 0, 1), ("holding", 10, 1)]


def test_zero_max_gap_merges_only_contiguous_points():
    blocks = plan_modbus([point("a", 0), point("b", 1), point("c", 3)], ModbusOptions(max_gap=0))
    assert spans(blocks) == [("holding", 0, 2), ("holding", 3, 1)]


def test_block_length_never_exceeds_max_registers_per_read():
    points = [point(f"p{i}", i) for i in range(10)]
    blocks = plan_modbus(points, ModbusOptions(max_registers_per_read=4))
    assert spans(blocks) == [("holding", 0, 4), ("holding", 4, 4), ("holding", 8, 2)]


def test_32_bit_point_is_never_split_across_blocks():
    # a(0) b(1) c(2..3): with 3 registers per read, c must move whole into the next block
    points = [point("a", 0), point("b", 1), point("c", 2, "float32")]
    blocks = plan_modbus(points, ModbusOptions(max_registers_per_read=3))
    assert spans(blocks) == [("holding", 0, 2), ("holding", 2, 2)]
    assert blocks[1].offset(points[2]) == slice(0, 2)


def test_32_bit_point_extends_block_end_by_two_registers():
    blocks = plan_modbus([point("a", 0, "int32"), point("b", 2, "uint32")], ModbusOptions())
    assert spans(blocks) == [("holding", 0, 4)]


def test_point_wider_than_the_read_limit_is_refused():
    with pytest.raises(PlanError, match="spans 2 registers"):
        plan_modbus([point("a", 0, "float32")], ModbusOptions(max_registers_per_read=1))


def test_tables_are_planned_separately():
    points = [point("h", 0), point("i", 0, table=Table.INPUT), bit("c", 0), bit("d", 0, Table.DISCRETE)]
    blocks = plan_modbus(points, ModbusOptions())
    assert spans(blocks) == [("coil", 0, 1), ("discrete", 0, 1), ("holding", 0, 1), ("input", 0, 1)]


def test_bit_tables_use_max_bits_per_read():
    bits = [bit(f"b{i}", i) for i in range(20)]
    blocks = plan_modbus(bits, ModbusOptions(max_registers_per_read=2, max_bits_per_read=16))
    assert spans(blocks) == [("coil", 0, 16), ("coil", 16, 4)]


def test_bit_fields_sharing_one_register_share_the_block():
    low = PointSpec(name="s.low", kind=Kind.STATE, datatype="uint16", bits=(0, 4),
                    modbus=ModbusAddress(Table.HOLDING, 5))
    high = PointSpec(name="s.high", kind=Kind.STATE, datatype="uint16", bits=(4, 4),
                     modbus=ModbusAddress(Table.HOLDING, 5))
    blocks = plan_modbus([low, high], ModbusOptions())
    assert spans(blocks) == [("holding", 5, 1)]
    assert blocks[0].offset(low) == blocks[0].offset(high) == slice(0, 1)


def test_offsets_locate_each_point_in_the_block():
    points = [point("a", 10), point("b", 13, "int32")]
    block = plan_modbus(points, ModbusOptions())[0]
    assert (block.start, block.count) == (10, 5)
    assert block.offset(points[1]) == slice(3, 5)


def test_real_thsensor_profile_plans_two_reads():
    profile = load_profile(PROFILE_DIR / "thsensor/generic_xymd02.yaml", "thsensor/generic_xymd02")
    blocks = plan_modbus(profile.points, profile.modbus)
    assert spans(blocks) == [("holding", 257, 4), ("input", 1, 2)]


def test_snmp_oids_are_split_into_pdus_of_at_most_max():
    profile = UPS
    batches = plan_snmp(profile.points, 8)
    assert [len(b) for b in batches] == [8, 8, 8, len(profile.points) - 24]
    assert [p for b in batches for p in b] == list(profile.points)


def test_snmp_points_fit_one_pdu_when_allowed():
    profile = UPS
    assert len(plan_snmp(profile.points, 128)) == 1


def test_snmp_point_without_oid_is_refused():
    with pytest.raises(PlanError, match="no oid"):
        plan_snmp([point("a", 0)], 4)
