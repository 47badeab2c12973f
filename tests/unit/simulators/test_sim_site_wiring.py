"""Site wiring without sockets: models per device, overrides, endpoints, register images, SMI types."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pysnmp.proto import rfc1902

from collectors import codec
from collectors.model import EnumState, Kind, ModbusAddress, PointSpec, Severity, Table
from collectors.profile import load_profiles
from config.load import load_site
from config.schema import DeviceSimulation
from simulators.devices.climate import RoomClimateModel
from simulators.devices.ups import UpsModel
from simulators.modbus_server import contiguous_runs, fit_raw, register_image, served_cells, used_addresses
from simulators.plant import Plant
from simulators.site import SiteSimulator, build_device
from simulators.snmp_agent import AUTH_PROTOCOLS, PRIV_PROTOCOLS, SMI_TYPES, parse_oid, smi_value

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "tests" / "data" / "sites" / "skeleton.yaml"
PROFILES = load_profiles()
THSENSOR = PROFILES["thsensor/generic_xymd02"]


@pytest.fixture(scope="module")
def demo_site():
    return load_site(DEMO_CONFIG)


def test_every_demo_device_gets_its_model(demo_site):
    sim = SiteSimulator(demo_site, seed=1)
    assert isinstance(sim.model("dh1-ups-a"), UpsModel)
    assert isinstance(sim.model("dh1-rack-a01-inlet"), RoomClimateModel)
    assert sim.model("dh1-rack-a02-inlet").values()["config.address"] == 2


def test_endpoints_say_where_each_device_is_served_and_never_leak_secrets(demo_site):
    rows = SiteSimulator(demo_site).endpoints()
    assert rows == [
        {"device": "dh1-ups-a", "protocol": "snmp", "host": "127.0.0.1", "port": 16161,
         "profile": "ups/ietf_rfc1628", "snmp_credentials": ["demo-v3", "demo-public"]},
        {"device": "dh1-rack-a01-inlet", "protocol": "modbus", "host": "127.0.0.1", "port": 15020,
         "profile": "thsensor/generic_xymd02", "unit_id": 1},
        {"device": "dh1-rack-a02-inlet", "protocol": "modbus", "host": "127.0.0.1", "port": 15020,
         "profile": "thsensor/generic_xymd02", "unit_id": 2},
    ]
    served = {value for row in json.loads(json.dumps(rows)) for value in row.values() if isinstance(value, str)}
    served |= {name for row in rows for name in row.get("snmp_credentials", [])}
    for credential in demo_site.credentials.values():
        for secret in ("community", "auth_key", "priv_key"):
            if hasattr(credential, secret):
                assert getattr(credential, secret).reveal() not in served


def test_a_seed_replays_the_same_site(demo_site):
    first, again = SiteSimulator(demo_site, seed=42), SiteSimulator(demo_site, seed=42)
    for sim in (first, again):
        sim.step(600)
    for device_id in first.devices:
        assert first.devices[device_id].raw_values() == again.devices[device_id].raw_values()
    # devices draw from their own generators: two sensors with one seed still differ
    a01 = first.model("dh1-rack-a01-inlet").temperature_c - 21.5
    a02 = first.model("dh1-rack-a02-inlet").temperature_c - 22.4
    assert a01 != pytest.approx(a02)


def test_engineering_override_is_encoded_and_raw_override_is_put_as_is(demo_site):
    sim = SiteSimulator(demo_site, seed=1)
    sim.set_override("dh1-rack-a01-inlet", "ambient.temperature", -20.5)
    sim.set_override("dh1-rack-a01-inlet", "ambient.humidity", 0xFFFF, raw=True)
    sim.set_override("dh1-ups-a", "output.source", "battery")
    raw = sim.devices["dh1-rack-a01-inlet"].raw_values()
    assert raw["ambient.temperature"] == -205
    assert raw["ambient.humidity"] == 0xFFFF
    assert sim.devices["dh1-ups-a"].raw_values()["output.source"] == 5
    sim.clear_override("dh1-rack-a01-inlet", "ambient.temperature")
    assert sim.devices["dh1-rack-a01-inlet"].raw_values()["ambient.temperature"] != -205
    sim.clear_override("dh1-rack-a01-inlet")
    assert sim.devices["dh1-rack-a01-inlet"].overrides == {}


def test_bad_overrides_are_refused_at_once(demo_site):
    sim = SiteSimulator(demo_site)
    with pytest.raises(KeyError):
        sim.set_override("dh1-ups-a", "no.such.point", 1)
    with pytest.raises(KeyError):
        sim.set_override("no-such-device", "battery.charge", 1)
    with pytest.raises(codec.CodecError):
        sim.set_override("dh1-ups-a", "battery.status", "onFire")
    with pytest.raises(ValueError, match="does not fit"):
        sim.set_override("dh1-ups-a", "battery.charge", 1 << 40, raw=True)
    with pytest.raises(ValueError, match="does not fit"):
        sim.set_override("dh1-rack-a01-inlet", "ambient.temperature", 0x10000, raw=True)


class _ClimateForEverything:
    """A plant that serves every device with a climate model."""

    def model_for(self, device, profile, unit_id):
        return RoomClimateModel(device.simulation, random.Random(1))


def test_a_model_that_misses_profile_points_is_refused(demo_site):
    # a UPS profile served by a climate model would leave most OIDs without a value
    with pytest.raises(ValueError, match="has no value for ups/ietf_rfc1628 points"):
        build_device(demo_site.device("dh1-ups-a"), PROFILES["ups/ietf_rfc1628"], _ClimateForEverything())


def test_negative_temperature_is_twos_complement_on_the_wire():
    spec = THSENSOR.point("ambient.temperature")
    image = register_image(THSENSOR, {"ambient.temperature": codec.encode(spec, -20.5)})
    assert image == {Table.INPUT: {1: 0xFF33}}  # REFERENCE.md §4.4: 0xFF33 = -20.5 °C


def test_raw_sentinels_go_on_the_wire_unchanged():
    image = register_image(THSENSOR, {"ambient.temperature": 0x8000, "ambient.humidity": 0xFFFF})
    assert image[Table.INPUT] == {1: 0x8000, 2: 0xFFFF}
    assert fit_raw(THSENSOR.point("ambient.temperature"), 0x7FFF) == 0x7FFF
    assert fit_raw(THSENSOR.point("ambient.temperature"), 0xFF33) == -205


def test_tables_cover_exactly_the_profile_addresses():
    assert used_addresses(THSENSOR) == {Table.INPUT: {1, 2}, Table.HOLDING: {257, 258, 259, 260}}
    assert served_cells(THSENSOR) == {Table.INPUT: [(1, 2)], Table.HOLDING: [(257, 4)]}
    assert contiguous_runs([260, 1, 2, 257, 258, 259, 7]) == [(1, 2), (7, 1), (257, 4)]


def test_holes_up_to_max_gap_are_served_because_collectors_read_across_them():
    assert contiguous_runs([1, 2, 5, 20], max_gap=2) == [(1, 5), (20, 1)]
    assert contiguous_runs([1, 2, 5, 20], max_gap=1) == [(1, 2), (5, 1), (20, 1)]


class _Profile:
    """The slice of a DeviceProfile register_image reads."""

    def __init__(self, *points: PointSpec):
        self.points = points


def test_bit_fields_share_one_status_word():
    on = {0: EnumState("off", Severity.OK), 1: EnumState("on", Severity.WARNING)}
    alarm = PointSpec("gen.alarm", Kind.STATE, "uint16", enum=on, bits=(0, 1),
                      modbus=ModbusAddress(Table.HOLDING, 10))
    mode = PointSpec("gen.mode", Kind.STATE, "uint16", bits=(4, 3), modbus=ModbusAddress(Table.HOLDING, 10))
    image = register_image(_Profile(alarm, mode), {"gen.alarm": 1, "gen.mode": 5})
    assert image == {Table.HOLDING: {10: 0b101_0001}}


def test_32_bit_values_follow_the_word_order():
    big = PointSpec("e.big", Kind.COUNTER, "uint32", modbus=ModbusAddress(Table.HOLDING, 0))
    little = PointSpec("e.little", Kind.COUNTER, "uint32", modbus=ModbusAddress(Table.HOLDING, 2, "little"))
    image = register_image(_Profile(big, little), {"e.big": 0x12345678, "e.little": 0x12345678})
    assert image[Table.HOLDING] == {0: 0x1234, 1: 0x5678, 2: 0x5678, 3: 0x1234}


@pytest.mark.parametrize(("datatype", "smi"), [
    ("integer", rfc1902.Integer32), ("gauge32", rfc1902.Gauge32), ("counter32", rfc1902.Counter32),
    ("counter64", rfc1902.Counter64), ("timeticks", rfc1902.TimeTicks), ("unsigned32", rfc1902.Unsigned32),
    ("octet_string", rfc1902.OctetString), ("object_identifier", rfc1902.ObjectIdentifier),
])
def test_every_snmp_datatype_has_its_smi_type(datatype, smi):
    assert SMI_TYPES[datatype] is smi
    assert isinstance(smi_value(datatype, "1.3.6" if datatype == "object_identifier" else 1), smi)


def test_snmp_datatypes_of_the_codec_are_all_mapped():
    assert {name for name, dt in codec.DATATYPES.items() if dt.protocol == "snmp"} == set(SMI_TYPES)


def test_every_configurable_protocol_has_a_pysnmp_constant():
    from typing import get_args

    from config.schema import SnmpV3Credential
    assert set(AUTH_PROTOCOLS) == set(get_args(SnmpV3Credential.model_fields["auth_protocol"].annotation))
    assert set(PRIV_PROTOCOLS) == set(get_args(SnmpV3Credential.model_fields["priv_protocol"].annotation))


def test_parse_oid():
    assert parse_oid("1.3.6.1.2.1.33.1.2.1.0") == (1, 3, 6, 1, 2, 1, 33, 1, 2, 1, 0)
    assert parse_oid(".1.3.6") == (1, 3, 6)


def test_stepping_before_start_needs_no_loop(demo_site):
    sim = SiteSimulator(demo_site, seed=3)
    sim.plant.power.set_utility(False)
    sim.step(120)
    raw = sim.devices["dh1-ups-a"].raw_values()
    assert raw["output.source"] == 5
    assert raw["battery.time_on_battery"] == 120


def test_tick_must_be_positive(demo_site):
    with pytest.raises(ValueError):
        SiteSimulator(demo_site, tick_s=0)


def test_unknown_device_class_is_refused(demo_site):
    device = demo_site.device("dh1-ups-a").model_copy(update={"device_class": "generator"})
    fake = type("P", (), {"device_class": "generator", "protocol": "snmp", "points": (), "id": "x"})()
    with pytest.raises(ValueError, match="no simulator for class 'generator'"):
        build_device(device, fake, Plant(demo_site, seed=1))


def test_climate_params_come_from_the_site():
    params = DeviceSimulation(temperature_c=30.0, noise=0.0)
    assert RoomClimateModel(params, random.Random(1)).values()["ambient.temperature"] == 30.0
