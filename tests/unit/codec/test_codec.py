"""The one data-type table: register packing, sentinels, bit fields, enums, scaling, saturation."""

from __future__ import annotations

import math
import struct

import pytest

from collectors.codec import CodecError, decode, encode, insert_bits, raw_to_registers, registers_to_raw
from collectors.model import EnumState, Kind, ModbusAddress, PointSpec, Quality, Severity, Table


def point(datatype: str, **kw) -> PointSpec:
    kw.setdefault("kind", Kind.GAUGE)
    kw.setdefault("modbus", ModbusAddress(Table.HOLDING, 0, kw.pop("word_order", "big")))
    return PointSpec(name="p", datatype=datatype, **kw)


@pytest.mark.parametrize(("datatype", "words", "raw"), [
    ("int16", [0xFF33], -205),
    ("uint16", [0xFF33], 0xFF33),
    ("int32", [0xFFFF, 0xFFFE], -2),
    ("uint32", [0x0001, 0x0000], 65536),
])
def test_registers_join_big_endian_words(datatype, words, raw):
    spec = point(datatype)
    assert registers_to_raw(spec, words) == raw
    assert raw_to_registers(spec, raw) == words


def test_little_word_order_swaps_words_not_bytes():
    big, little = point("float32"), point("float32", word_order="little")
    words = raw_to_registers(big, 25.37)
    assert raw_to_registers(little, 25.37) == list(reversed(words))
    assert registers_to_raw(little, list(reversed(words))) == pytest.approx(25.37, rel=1e-6)


def test_wrong_register_count_is_an_error_not_a_value():
    with pytest.raises(CodecError):
        registers_to_raw(point("uint32"), [1])


def test_scaled_value_has_no_binary_noise():
    assert decode(point("uint16", scale=0.1), 2301) == (230.1, Quality.GOOD, None)


@pytest.mark.parametrize("raw", [0x7FFF, -32768, 0x8000])
def test_sentinels_match_signed_and_unsigned_spellings(raw):
    spec = point("int16", sentinels=frozenset({0x7FFF, 0x8000}))
    assert decode(spec, raw)[1] is Quality.MISSING


def test_nan_float_is_missing_never_a_number():
    spec = point("float32")
    nan = registers_to_raw(spec, [0x7FC0, 0x0000])
    assert math.isnan(nan)
    assert decode(spec, nan) == (None, Quality.MISSING, None)


def test_out_of_range_is_invalid():
    spec = point("int16", scale=0.1, valid_range=(-40, 125))
    assert decode(spec, 0x7FFE)[:2] == (None, Quality.INVALID)  # 3276.6 degC


def test_bit_field_extracts_nibble_and_maps_enum():
    spec = point("uint16", kind=Kind.STATE, bits=(12, 4),
                 enum={1: EnumState("inactive", Severity.OK), 3: EnumState("shutdown", Severity.CRITICAL)})
    assert decode(spec, 0x3000 | 0x0FFF) == (3.0, Quality.GOOD, "shutdown")
    assert insert_bits(spec, 0x0ABC, encode(spec, "inactive")) == 0x1ABC


def test_undefined_enum_code_is_invalid_with_its_code():
    spec = point("uint16", kind=Kind.STATE, enum={1: EnumState("on", Severity.OK)})
    assert decode(spec, 7) == (None, Quality.INVALID, "undefined(7)")


def test_unknown_state_name_cannot_be_encoded():
    spec = point("uint16", kind=Kind.STATE, enum={1: EnumState("on", Severity.OK)})
    with pytest.raises(CodecError):
        encode(spec, "off")


def test_encode_saturates_at_the_type_limits():
    assert encode(point("int16", scale=0.1), 99999) == 32767
    assert encode(point("uint16"), -5) == 0


def test_float32_encodes_exactly_what_struct_would():
    spec = point("float32")
    words = raw_to_registers(spec, encode(spec, 21.5))
    assert struct.unpack(">f", bytes.fromhex(f"{words[0]:04x}{words[1]:04x}"))[0] == 21.5


def test_missing_raw_is_missing():
    assert decode(point("uint16"), None) == (None, Quality.MISSING, None)
