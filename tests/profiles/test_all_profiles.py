"""One test over every shipped profile: recordings decode as expected; encode → decode round-trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from collectors.codec import DATATYPES, decode, encode, raw_to_registers, registers_for, registers_to_raw
from collectors.model import Kind, PointSpec, Quality
from collectors.profile import DeviceProfile, load_profiles

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recordings"
PROFILES = load_profiles()


def _recording(profile_id: str) -> dict:
    return YAML(typ="safe").load((RECORDINGS / f"{profile_id.replace('/', '__')}.yaml").read_text())


def _raw_for(profile: DeviceProfile, spec: PointSpec, raw: dict):
    if spec.oid is not None:
        return raw.get(spec.oid)
    words = [raw.get(f"{spec.modbus.table.value}:{spec.modbus.address + i}")
             for i in range(max(1, registers_for(spec)))]
    return None if None in words else registers_to_raw(spec, words)


def test_every_profile_has_a_recording():
    missing = [pid for pid in PROFILES if not (RECORDINGS / f"{pid.replace('/', '__')}.yaml").exists()]
    assert missing == []


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_recording_decodes_to_expected_readings(profile_id: str):
    profile = PROFILES[profile_id]
    recording = _recording(profile_id)
    for name, want in recording["expected"].items():
        value, quality, text = decode(profile.point(name), _raw_for(profile, profile.point(name), recording["raw"]))
        assert quality == Quality(want.get("quality", "good")), name
        assert text == want.get("text"), name
        if "value" in want:
            assert value == pytest.approx(want["value"]), name


def _sample_value(spec: PointSpec):
    """A legal engineering value for a point: an enum state name, a mid-range number or a text."""
    if spec.kind is Kind.TEXT:
        # identity numbers in registers (GenComm model/serial) are integers on the wire, text once decoded
        return "sample text" if DATATYPES[spec.datatype].is_text else 42
    if spec.enum:
        return next(iter(spec.enum.values())).name
    low, high = spec.valid_range or (0, 100)
    dt = DATATYPES[spec.datatype]
    middle = (low + high) / 2 if math.isfinite(high - low) and high - low < 1e6 else 42
    raw_limit = max(abs(dt.minimum), abs(dt.maximum)) * abs(spec.scale)
    return round(min(middle, raw_limit / 2), 1)


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_encode_then_decode_gives_the_value_back(profile_id: str):
    for spec in PROFILES[profile_id].points:
        value = _sample_value(spec)
        raw = encode(spec, value)
        if spec.modbus is not None:
            raw = registers_to_raw(spec, raw_to_registers(spec, raw))
        decoded, quality, text = decode(spec, raw)
        assert quality is Quality.GOOD, spec.name
        if isinstance(value, str) or spec.kind is Kind.TEXT:
            assert text == str(value), spec.name
        else:
            assert decoded == pytest.approx(value, abs=abs(spec.scale)), spec.name


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_profile_points_follow_naming_and_carry_units(profile_id: str):
    for spec in PROFILES[profile_id].points:
        assert spec.name == spec.name.lower() or "." in spec.name
        if spec.kind is Kind.GAUGE and not spec.name.startswith(("config.", "ups.alarms")):
            assert spec.unit, f"{profile_id} {spec.name} is a gauge without a unit"
