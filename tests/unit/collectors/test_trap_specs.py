"""The `traps:` section of a profile: compiled TrapSpecs, lookup by OID, and the load-time checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.model import Kind, PointSpec, Severity
from collectors.profile import DeviceProfile, TrapSpec, load_profile, load_profiles
from config.yamlfile import ConfigError

PROFILES = load_profiles()
RFC1628 = PROFILES["ups/ietf_rfc1628"]
APC = PROFILES["ups/apc_powernet"]

PROFILE = """\
class: ups
protocol: {protocol}
vendor: test
model: test
source: test
points:
  - {{name: battery.runtime, {where}, datatype: {datatype}, kind: gauge, unit: min}}
  - {{name: battery.charge, {where2}, datatype: {datatype}, kind: gauge, unit: '%'}}
traps:
{traps}
"""
SNMP = {"protocol": "snmp", "where": "oid: 1.3.6.1.4.1.9.1.0", "where2": "oid: 1.3.6.1.4.1.9.2.0",
        "datatype": "integer"}
MODBUS = {"protocol": "modbus", "where": "table: holding, address: 0", "where2": "table: holding, address: 1",
          "datatype": "uint16"}
GOOD_TRAP = "  - {name: onBattery, oid: 1.3.6.1.4.1.9.0.1, severity: warning, varbinds: [battery.runtime]}"


def write_profile(tmp_path: Path, traps: str, kind: dict = SNMP) -> Path:
    path = tmp_path / "ups" / "test_ups.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PROFILE.format(traps=traps, **kind))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_profile(path, "ups/test_ups")
    return str(caught.value)


# --- the shipped UPS profiles ------------------------------------------------------------------------

def test_rfc1628_traps_follow_the_mib():
    by_name = {trap.name: trap for trap in RFC1628.traps}
    assert {name: trap.oid for name, trap in by_name.items()} == {
        "upsTrapOnBattery": "1.3.6.1.2.1.33.2.1",
        "upsTrapTestCompleted": "1.3.6.1.2.1.33.2.2",
        "upsTrapAlarmEntryAdded": "1.3.6.1.2.1.33.2.3",
        "upsTrapAlarmEntryRemoved": "1.3.6.1.2.1.33.2.4",
    }
    # OBJECTS upsEstimatedMinutesRemaining, upsSecondsOnBattery, upsConfigLowBattTime, in MIB order
    assert by_name["upsTrapOnBattery"].varbinds == ("battery.runtime", "battery.time_on_battery",
                                                    "battery.runtime.low")
    assert [RFC1628.point(name).oid for name in by_name["upsTrapOnBattery"].varbinds] == [
        "1.3.6.1.2.1.33.1.2.3.0", "1.3.6.1.2.1.33.1.2.2.0", "1.3.6.1.2.1.33.1.9.7.0"]
    assert "ups.test.result" in by_name["upsTrapTestCompleted"].varbinds
    assert by_name["upsTrapOnBattery"].severity is Severity.WARNING


def test_apc_traps_are_enterprise_0_specific_with_the_mib_severities():
    assert {trap.name: (trap.oid, trap.severity) for trap in APC.traps} == {
        "upsOnBattery": ("1.3.6.1.4.1.318.0.5", Severity.WARNING),
        "powerRestored": ("1.3.6.1.4.1.318.0.9", Severity.INFO),
        "lowBattery": ("1.3.6.1.4.1.318.0.7", Severity.CRITICAL),
        "returnFromLowBattery": ("1.3.6.1.4.1.318.0.11", Severity.INFO),
        "upsDiagnosticsPassed": ("1.3.6.1.4.1.318.0.10", Severity.INFO),
        "upsDiagnosticsFailed": ("1.3.6.1.4.1.318.0.3", Severity.CRITICAL),
    }
    assert all(trap.varbinds == () for trap in APC.traps)  # mtrapargsString is not a point


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_every_shipped_trap_carries_only_snmp_points_of_its_profile(profile_id: str):
    profile = PROFILES[profile_id]
    for trap in profile.traps:
        assert profile.protocol == "snmp"
        for name in trap.varbinds:
            assert profile.point(name).oid is not None


def test_lookup_by_oid_and_by_name():
    assert RFC1628.trap_by_oid("1.3.6.1.2.1.33.2.1") is RFC1628.trap("upsTrapOnBattery")
    assert RFC1628.trap_by_oid("1.3.6.1.4.1.318.0.5") is None
    with pytest.raises(KeyError, match="no trap 'upsOnBattery'"):
        RFC1628.trap("upsOnBattery")


def test_profiles_built_without_traps_still_work():
    profile = DeviceProfile(id="ups/x", device_class="ups", protocol="snmp", vendor="v", model="m",
                            description="", source="s", sys_object_id=None, summary=(),
                            points=(PointSpec("battery.charge", Kind.GAUGE, "integer", oid="1.3.6.1.4.1.9.1.0"),),
                            modbus=None)
    assert profile.traps == ()
    assert profile.trap_by_oid("1.3.6.1.4.1.9.0.1") is None


def test_with_indexes_keeps_the_traps():
    netbotz = PROFILES["thsensor/apc_netbotz"]
    assert netbotz.with_indexes({"sensor": 7}).traps == netbotz.traps


# --- load-time checks ----------------------------------------------------------------------------------

def test_a_good_trap_compiles(tmp_path):
    profile = load_profile(write_profile(tmp_path, GOOD_TRAP), "ups/test_ups")
    assert profile.traps == (TrapSpec("onBattery", "1.3.6.1.4.1.9.0.1", Severity.WARNING, ("battery.runtime",)),)


def test_varbind_that_is_no_point_is_an_error_with_its_line(tmp_path):
    traps = "  - name: onBattery\n    oid: 1.3.6.1.4.1.9.0.1\n    severity: warning\n" \
            "    varbinds: [battery.runtime, battery.runtimee]"
    message = load_error(write_profile(tmp_path, traps))
    assert "test_ups.yaml:13: traps[0].varbinds[1]: no point named 'battery.runtimee'" in message


def test_duplicate_names_and_oids_are_errors(tmp_path):
    traps = "\n".join([GOOD_TRAP, GOOD_TRAP.replace("onBattery", "other"),
                       GOOD_TRAP.replace("9.0.1", "9.0.2")])
    message = load_error(write_profile(tmp_path, traps))
    assert "traps[1].oid: trap OID already used by 'onBattery'" in message
    assert "traps[2].name: duplicate trap name 'onBattery'" in message


@pytest.mark.parametrize(("trap", "expected"), [
    ("{name: t, oid: 'enterprises.318.0.5', severity: info}", "trap OIDs are written numerically"),
    ("{name: t, oid: '.1.3.6.1.4.1.318.0.5', severity: info}", "trap OIDs are written numerically"),
    ("{name: t, oid: '1.3.6.1.4.1.{index}.0.5', severity: info}", "trap OIDs are written numerically"),
    ("{name: t, oid: 1.3.6.1.4.1.9.0.1, severity: severe}", "traps[0].severity"),
    ("{name: 'on battery', oid: 1.3.6.1.4.1.9.0.1, severity: info}", "trap names are the MIB's names"),
    ("{name: t, oid: 1.3.6.1.4.1.9.0.1}", "traps[0].severity"),
    ("{name: t, oid: 1.3.6.1.4.1.9.0.1, severity: info, enterprise: 318}", "traps[0].enterprise"),
])
def test_malformed_traps_are_refused(tmp_path, trap: str, expected: str):
    assert expected in load_error(write_profile(tmp_path, f"  - {trap}"))


def test_modbus_profiles_have_no_traps(tmp_path):
    message = load_error(write_profile(tmp_path, "  - {name: t, oid: 1.3.6.1.4.1.9.0.1, severity: info}", MODBUS))
    assert "traps: only SNMP profiles have traps" in message
