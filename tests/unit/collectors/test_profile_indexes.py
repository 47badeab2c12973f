"""OID placeholders: `{name}` in a point OID, default values under `indexes`, per-device overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.profile import DeviceProfile, load_profile, load_profiles
from config.yamlfile import ConfigError

NETBOTZ = load_profiles()["thsensor/apc_netbotz"]
TEMP_OID = "1.3.6.1.4.1.5528.100.4.1.1.1.2"

PROFILE = """\
class: thsensor
protocol: snmp
vendor: test
model: test
source: test
{indexes}
points:
  - {{name: ambient.temperature, oid: '{oid}', datatype: integer, kind: gauge, unit: degC, scale: 0.1}}
  - {{name: ambient.humidity, oid: 1.3.6.1.4.1.9.2.0, datatype: integer, kind: gauge, unit: '%RH'}}
"""


def write_profile(tmp_path: Path, oid: str, indexes: str = "") -> Path:
    path = tmp_path / "thsensor" / "test_probe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PROFILE.format(oid=oid, indexes=indexes))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "thsensor/test_probe")
    return str(caught.value)


def test_placeholders_are_filled_with_the_default_indexes_at_load():
    assert NETBOTZ.point("ambient.temperature").oid == f"{TEMP_OID}.1"
    assert dict(NETBOTZ.indexes) == {"sensor": 1, "humidity_sensor": 1, "dew_point_sensor": 1, "door_sensor": 1}


def test_no_shipped_profile_keeps_a_placeholder_in_a_compiled_oid():
    left = [(pid, spec.name) for pid, profile in load_profiles().items() for spec in profile.points
            if spec.oid is not None and "{" in spec.oid]
    assert left == []


def test_with_indexes_rebuilds_only_the_points_using_that_index():
    probe = NETBOTZ.with_indexes({"sensor": 1095346743})
    assert probe.point("ambient.temperature").oid == f"{TEMP_OID}.1095346743"
    assert probe.point("sensor.label").oid == "1.3.6.1.4.1.5528.100.4.1.1.1.4.1095346743"
    assert probe.point("ambient.humidity").oid == NETBOTZ.point("ambient.humidity").oid
    assert probe.indexes["sensor"] == 1095346743 and probe.indexes["door_sensor"] == 1
    # everything but the OIDs is the same point
    before, after = NETBOTZ.point("sensor.status"), probe.point("sensor.status")
    assert (after.enum, after.kind, after.datatype) == (before.enum, before.kind, before.datatype)


def test_with_indexes_leaves_the_original_profile_alone():
    NETBOTZ.with_indexes({"sensor": 7, "door_sensor": 8})
    assert NETBOTZ.point("ambient.temperature").oid == f"{TEMP_OID}.1"
    assert NETBOTZ.indexes["sensor"] == 1


def test_with_indexes_copies_can_be_rebased_again():
    twice = NETBOTZ.with_indexes({"sensor": 7}).with_indexes({"sensor": 9})
    assert twice.point("ambient.temperature").oid == f"{TEMP_OID}.9"


def test_with_no_overrides_gives_an_equal_profile():
    assert NETBOTZ.with_indexes({}) == NETBOTZ


def test_an_index_the_profile_does_not_declare_is_refused():
    with pytest.raises(ValueError, match="has no index sensr"):
        NETBOTZ.with_indexes({"sensr": 5})


@pytest.mark.parametrize("value", [-1, 2**32, True, 1.5, "5"])
def test_an_index_value_that_is_not_an_oid_arc_is_refused(value):
    with pytest.raises(ValueError, match="must be an integer"):
        NETBOTZ.with_indexes({"sensor": value})


def test_a_profile_without_placeholders_has_no_indexes():
    ups = load_profiles()["ups/ietf_rfc1628"]
    assert dict(ups.indexes) == {} and dict(ups.oid_templates) == {}
    with pytest.raises(ValueError, match="declared: none"):
        ups.with_indexes({"line": 2})


def test_a_profile_built_in_code_still_works_without_index_fields():
    built = DeviceProfile("t/t", "t", "snmp", "v", "m", "", "", None, (), NETBOTZ.points, None)
    assert dict(built.indexes) == {} and built.with_indexes({}) == built


def test_a_placeholder_without_a_value_is_a_profile_error(tmp_path):
    path = write_profile(tmp_path, f"{TEMP_OID}.{{sensor}}")
    message = load_error(path)
    assert "placeholder {sensor} has no value under indexes" in message
    assert f"{path}:8: points[0].oid" in message


def test_an_index_no_oid_uses_is_a_profile_error(tmp_path):
    path = write_profile(tmp_path, f"{TEMP_OID}.{{sensor}}", "indexes: {sensor: 1, probe: 2}")
    assert "index 'probe' is used by no point OID" in load_error(path)


def test_a_profile_with_its_index_declared_loads(tmp_path):
    path = write_profile(tmp_path, f"{TEMP_OID}.{{sensor}}", "indexes: {sensor: 42}")
    profile = load_profile(path, "thsensor/test_probe")
    assert profile.point("ambient.temperature").oid == f"{TEMP_OID}.42"
    assert profile.with_indexes({"sensor": 43}).point("ambient.temperature").oid == f"{TEMP_OID}.43"


@pytest.mark.parametrize("indexes", ["indexes: {sensor: -1}", "indexes: {sensor: 4294967296}",
                                     "indexes: {sensor: '1'}", "indexes: {sensor: true}",
                                     "indexes: {Sensor: 1}"])
def test_index_values_and_names_are_validated(tmp_path, indexes):
    path = write_profile(tmp_path, f"{TEMP_OID}.{{sensor}}", indexes)
    assert "indexes" in load_error(path)


@pytest.mark.parametrize("oid", [f"{TEMP_OID}.{{}}", f"{TEMP_OID}.{{Sensor}}", f"{TEMP_OID}.x{{sensor}}",
                                 f"{TEMP_OID}.{{sensor"])
def test_malformed_placeholders_are_refused(tmp_path, oid):
    path = write_profile(tmp_path, oid, "indexes: {sensor: 1}")
    assert "OIDs are written numerically" in load_error(path)
