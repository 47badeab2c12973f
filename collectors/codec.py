"""ONE table of data types, and the decode/encode both the collectors and the simulators use.

Raw values are what the wire carries (a register pattern, an SNMP INTEGER); engineering values are
raw × scale + offset. Keeping both directions here is what stops a simulator and a collector from
drifting apart: they are two ends of the same function.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from collectors.model import Kind, PointSpec, Quality


@dataclass(frozen=True, slots=True)
class DataType:
    """How a raw value of one type is carried, and its legal raw range."""

    name: str
    protocol: str  # "modbus" or "snmp"
    registers: int = 0  # 16-bit Modbus registers it spans (0 = a single bit or an SNMP value)
    struct_code: str = ""  # big-endian struct format for the register bytes
    minimum: float = -math.inf
    maximum: float = math.inf
    width_bits: int = 32  # bit pattern width, for sentinels and bit fields
    is_float: bool = False
    is_text: bool = False


def _int_type(name: str, protocol: str, bits: int, signed: bool, code: str = "") -> DataType:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return DataType(name, protocol, bits // 16 if code else 0, code, low, high, bits)


DATATYPES: dict[str, DataType] = {
    dt.name: dt
    for dt in (
        # Modbus (register tables hold 16-bit words; 32-bit values span two, word order per point)
        DataType("bool", "modbus", 0, "", 0, 1, 1),
        _int_type("uint16", "modbus", 16, False, ">H"),
        _int_type("int16", "modbus", 16, True, ">h"),
        _int_type("uint32", "modbus", 32, False, ">I"),
        _int_type("int32", "modbus", 32, True, ">i"),
        DataType("float32", "modbus", 2, ">f", -3.4e38, 3.4e38, 32, is_float=True),
        # SNMP (SMI types; the agent and the poller map them to pysnmp classes)
        _int_type("integer", "snmp", 32, True),  # INTEGER / Integer32
        _int_type("unsigned32", "snmp", 32, False),
        _int_type("gauge32", "snmp", 32, False),
        _int_type("counter32", "snmp", 32, False),
        _int_type("counter64", "snmp", 64, False),
        _int_type("timeticks", "snmp", 32, False),  # hundredths of a second
        DataType("octet_string", "snmp", is_text=True),
        DataType("object_identifier", "snmp", is_text=True),
        # computed by facwatch itself (poll duration)
        DataType("float", "internal", is_float=True),
    )
}

RawValue = int | float | str


class CodecError(ValueError):
    """Registers or values that cannot be decoded or encoded as the profile says."""


def registers_for(spec: PointSpec) -> int:
    """Number of 16-bit registers a Modbus point spans (0 for a bit)."""
    return DATATYPES[spec.datatype].registers


def registers_to_raw(spec: PointSpec, words: Sequence[int]) -> int | float:
    """Join register words into the raw value of the point's data type."""
    dt = DATATYPES[spec.datatype]
    if dt.registers == 0:
        return int(bool(words[0]))
    if dt.registers == 1 and len(words) == 1:  # the common case, without struct (hot path of every poll)
        word = words[0] & 0xFFFF
        return word - 0x10000 if dt.minimum < 0 and word & 0x8000 else word
    if len(words) != dt.registers:
        raise CodecError(f"{spec.name}: {dt.name} needs {dt.registers} registers, got {len(words)}")
    ordered = list(words) if _high_word_first(spec) else list(reversed(words))
    payload = b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in ordered)
    return struct.unpack(dt.struct_code, payload)[0]


def raw_to_registers(spec: PointSpec, raw: int | float) -> list[int]:
    """Split a raw value into register words (or one 0/1 for a bit)."""
    dt = DATATYPES[spec.datatype]
    if dt.registers == 0:
        return [1 if raw else 0]
    payload = struct.pack(dt.struct_code, raw)
    words = [int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload), 2)]
    return words if _high_word_first(spec) else list(reversed(words))


def _high_word_first(spec: PointSpec) -> bool:
    return spec.modbus is None or spec.modbus.word_order == "big"


def bit_pattern(datatype: str, raw: int) -> int:
    """The unsigned bit pattern of a raw integer (so 0x7FFF and 0xFFFF sentinels match signed types)."""
    return int(raw) & ((1 << DATATYPES[datatype].width_bits) - 1)


def decode(spec: PointSpec, raw: RawValue | None) -> tuple[float | None, Quality, str | None]:
    """Raw wire value → (engineering value, quality, text) for one point."""
    if raw is None:
        return None, Quality.MISSING, None
    if spec.kind is Kind.TEXT or isinstance(raw, str):
        return None, Quality.GOOD, str(raw)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, Quality.MISSING, None
    if _is_sentinel(spec, raw):
        return None, Quality.MISSING, None
    if spec.bits is not None:
        raw = _extract_bits(spec, int(raw))
    if spec.kind is Kind.STATE:
        return _decode_state(spec, int(raw))
    value = raw * spec.scale + spec.offset
    if spec.valid_range is not None and not spec.valid_range[0] <= value <= spec.valid_range[1]:
        return None, Quality.INVALID, None
    return _tidy(value, spec.scale), Quality.GOOD, None


def _is_sentinel(spec: PointSpec, raw: int | float) -> bool:
    if not spec.sentinels or isinstance(raw, float):
        return False
    return int(raw) in spec.sentinels or bit_pattern(spec.datatype, int(raw)) in spec.sentinels


def _extract_bits(spec: PointSpec, raw: int) -> int:
    low, width = spec.bits  # type: ignore[misc]
    return (bit_pattern(spec.datatype, raw) >> low) & ((1 << width) - 1)


def _decode_state(spec: PointSpec, code: int) -> tuple[float | None, Quality, str | None]:
    if not spec.enum:
        return float(code), Quality.GOOD, None
    state = spec.enum.get(code)
    if state is None:  # a code the MIB/register map does not define: device garbage, not a state
        return None, Quality.INVALID, f"undefined({code})"
    return float(code), Quality.GOOD, state.name


def _tidy(value: float, scale: float) -> float:
    """Round away binary noise from scaling (2301 × 0.1 = 230.10000000000002)."""
    if scale == 1:
        return float(value)
    return round(value, _decimals(scale))


@functools.cache
def _decimals(scale: float) -> int:
    """Decimals worth keeping for a scale: its own resolution plus three guard digits."""
    return max(0, -math.floor(math.log10(abs(scale)))) + 3


def encode(spec: PointSpec, value: RawValue) -> RawValue:
    """Engineering value (or state name) → the raw wire value, saturated to the type's range."""
    dt = DATATYPES[spec.datatype]
    if dt.is_text:
        return str(value)
    if isinstance(value, str):
        return _state_code(spec, value)
    if spec.kind is Kind.STATE:
        return int(value)
    raw = (float(value) - spec.offset) / spec.scale
    if dt.is_float:
        return raw
    return int(min(max(round(raw), dt.minimum), dt.maximum))


def _state_code(spec: PointSpec, name: str) -> int:
    for code, state in spec.enum.items():
        if state.name == name:
            return code
    raise CodecError(f"{spec.name}: no enum state named {name!r}")


def insert_bits(spec: PointSpec, word: int, field_raw: int) -> int:
    """Write a bit field's raw value into the word that holds it (simulators packing status words)."""
    if spec.bits is None:
        return int(field_raw)
    low, width = spec.bits
    mask = ((1 << width) - 1) << low
    return (int(word) & ~mask) | ((int(field_raw) << low) & mask)
