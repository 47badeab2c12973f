"""Room physics: heat balance against CRAC cooling, humidity at constant dew point, CRAC and probe views."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from collectors import codec
from collectors.model import Quality
from collectors.profile import load_profiles
from config.load import load_site
from simulators.devices.climate import dew_point_c, relative_humidity_pct
from simulators.devices.crac import COMPRESSOR_RESTART_DELAY_S, Controller
from simulators.physics.rooms import ROOM_HEAT_CAPACITY_KJ_PER_K, implicit_step
from simulators.plant import Plant
from simulators.site import unit_id_of

PROFILES = load_profiles()
LOAD_KW = 30.0  # two 40 kW units: either one alone carries the room (N+1)
SETPOINT_C = 18.0
# all cooling lost: C · dT/dt = Q_IT → 30 kW / 2000 kJ/K = 0.9 °C per minute
EXPECTED_RISE_C_PER_MIN = LOAD_KW / ROOM_HEAT_CAPACITY_KJ_PER_K * 60

SITE = """
site: {{id: test, name: Test site}}
rooms: [{{id: dh1, name: Data hall 1}}]
credentials:
  lab: {{type: snmp_community, community: {{file: community}}, insecure: true}}
devices:
  - {{id: a01, class: thsensor, profile: thsensor/generic_xymd02, room: dh1, host: 127.0.0.1, port: 15020,
     modbus: {{unit_id: 1}}, simulation: {{temperature_c: 21.5, humidity_pct: 45, noise: {noise}}}}}
  - {{id: a02, class: thsensor, profile: thsensor/generic_xymd02, room: dh1, host: 127.0.0.1, port: 15020,
     modbus: {{unit_id: 2}}, simulation: {{temperature_c: 22.4, humidity_pct: 48, noise: {noise}}}}}
  - {{id: nb1, class: thsensor, profile: thsensor/apc_netbotz, room: dh1, host: 127.0.0.1, port: 16201,
     credential: lab, snmp: {{version: "2c"}}, simulation: {{temperature_c: 21.6, humidity_pct: 45, noise: {noise}}}}}
  - {{id: crac-1, name: CRAC 1, class: crac, profile: crac/liebert_gp_env, room: dh1, host: 127.0.0.1,
     port: 16181, credential: lab, snmp: {{version: "2c"}}, simulation: {{cooling_kw: 40, setpoint_c: 18}}}}
  - {{id: crac-2, class: crac, profile: crac/uniflair_modbus, room: dh1, host: 127.0.0.1, port: 15040,
     simulation: {{cooling_kw: 40, setpoint_c: 18}}}}
"""


class FakePower:
    """The two things rooms read from the power chain."""

    def __init__(self, load_kw: float):
        self.essential_bus_live = True
        self.load_kw = load_kw

    def it_load_kw(self, room_id: str) -> float:
        return self.load_kw

    def step(self, dt_s, plant):
        pass

    def model_for(self, device, profile, unit_id, rng):
        return None


class Hall:
    """A plant on a fake power chain with a view of every device."""

    def __init__(self, tmp_path: Path, noise: float = 1.0, load_kw: float = LOAD_KW):
        (tmp_path / "community").write_text("public\n")
        (tmp_path / "site.yaml").write_text(SITE.format(noise=noise))
        self.site = load_site(tmp_path / "site.yaml", PROFILES)
        self.plant = Plant(self.site, seed=1)
        self.power = self.plant.power = FakePower(load_kw)
        self.plant.subsystems = (self.power, self.plant.rooms, self.plant.fire)
        self.views = {device.id: self.plant.model_for(device, self.site.profile(device),
                                                      unit_id_of(device, self.site.profile(device)))
                      for device in self.site.devices}

    def run(self, minutes: float) -> None:
        self.plant.step(minutes * 60)

    def value(self, device_id: str, point: str):
        return self.views[device_id].values()[point]

    @property
    def air_c(self) -> float:
        return self.plant.rooms.room("dh1").air_c

    def settled(self) -> Hall:
        self.run(10)  # the hall starts in balance; this lets the probes' noise wander off its start
        return self


@pytest.fixture
def hall(tmp_path) -> Hall:
    return Hall(tmp_path).settled()


def sample(hall: Hall, minutes: int, device_ids: tuple[str, ...],
           points: tuple[str, ...]) -> dict[str, dict[str, list[float]]]:
    """One reading a minute of each point of each device."""
    readings: dict[str, dict[str, list[float]]] = {d: {p: [] for p in points} for d in device_ids}
    for _ in range(minutes):
        hall.run(1)
        for device_id in device_ids:
            for point in points:
                readings[device_id][point].append(hall.value(device_id, point))
    return readings


def test_normal_operation_reproduces_the_demo_sensor_values(hall):
    readings = sample(hall, 240, ("a01", "a02"), ("ambient.temperature", "ambient.humidity"))
    (a01_t, a01_rh), (a02_t, a02_rh) = readings["a01"].values(), readings["a02"].values()
    assert statistics.mean(a01_t) == pytest.approx(21.5, abs=0.3)
    assert statistics.mean(a02_t) == pytest.approx(22.4, abs=0.3)
    assert statistics.mean(a01_rh) == pytest.approx(45, abs=2)
    assert statistics.mean(a02_rh) == pytest.approx(48, abs=2)
    assert 20.5 < min(a01_t) <= max(a01_t) < 22.5  # it still wanders like a real inlet
    assert statistics.pstdev(a01_t) > 0.05


def test_with_spare_capacity_the_cold_aisle_sits_at_the_set_point(hall):
    room = hall.plant.rooms.room("dh1")
    assert room.air_c == pytest.approx(SETPOINT_C, abs=0.01)
    assert room.cooling_kw == pytest.approx(LOAD_KW, rel=0.01)
    assert hall.value("crac-1", "supply_air.temperature") == pytest.approx(SETPOINT_C, abs=0.4)  # probe noise
    assert hall.value("crac-1", "cooling.capacity") == pytest.approx(100 * LOAD_KW / 80, abs=1)
    # return = supply + the IT heat carried by the running fans: the design coil ΔT (12 K) at this load
    assert hall.value("crac-2", "return_air.temperature") == pytest.approx(SETPOINT_C + 12, abs=0.4)
    assert hall.value("crac-1", "crac.general_alarm") == "off"
    assert hall.value("crac-1", "crac.conditions") == 0
    assert hall.value("crac-2", "crac.general_alarm") == "normal"


def test_one_failed_crac_with_spare_capacity_holds_the_room_within_1c(hall):
    before = hall.value("a01", "ambient.temperature")
    hall.plant.rooms.set_crac_failed("crac-1", True)
    inlets, cold_aisle = [], []
    for _ in range(30):
        hall.run(1)
        inlets.append(hall.value("a01", "ambient.temperature"))
        cold_aisle.append(hall.air_c)
    assert max(abs(t - SETPOINT_C) for t in cold_aisle) < 1.0
    assert max(abs(t - before) for t in inlets) < 1.0
    assert hall.value("crac-2", "cooling.capacity") == pytest.approx(100 * LOAD_KW / 40, abs=1)


def test_a_failed_liebert_shows_it(hall):
    hall.plant.rooms.set_crac_failed("crac-1", True)
    hall.run(5)
    values = hall.views["crac-1"].values()
    assert values["crac.system"] == "off"
    assert values["fan.state"] == "off"
    assert values["cooling.state"] == "off"
    assert values["crac.general_alarm"] == "on"
    assert values["crac.conditions"] >= 1
    # no airflow: the supply probe sits in return air
    assert values["supply_air.temperature"] == pytest.approx(values["return_air.temperature"], abs=0.6)


def test_a_failed_uniflair_shows_it(hall):
    hall.plant.rooms.set_crac_failed("crac-2", True)
    hall.run(5)
    values = hall.views["crac-2"].values()
    assert values["crac.unit_on"] == "off"
    assert values["fan.state"] == "off"
    assert values["compressor.1.state"] == "off"
    assert values["crac.general_alarm"] == "active"
    assert values["alarm.airflow_loss"] == "active"
    assert values["supply_air.temperature"] == pytest.approx(values["return_air.temperature"], abs=0.6)


def rise_per_minute(hall: Hall, minutes: int) -> float:
    start = hall.air_c
    hall.run(minutes)
    return (hall.air_c - start) / minutes


def test_losing_both_cracs_warms_the_cold_aisle_at_load_over_heat_capacity(hall):
    for crac in ("crac-1", "crac-2"):
        hall.plant.rooms.set_crac_failed(crac, True)
    assert rise_per_minute(hall, 5) == pytest.approx(EXPECTED_RISE_C_PER_MIN, rel=0.02)
    assert 0.5 <= EXPECTED_RISE_C_PER_MIN <= 2.0
    hall.run(2)
    assert hall.value("crac-1", "crac.conditions") >= 2  # airflow loss, then high return air


def test_a_dead_essential_bus_stops_cooling_and_the_room_recovers_when_it_returns(hall):
    a01_before = hall.value("a01", "ambient.temperature")
    hall.power.essential_bus_live = False
    assert rise_per_minute(hall, 4) == pytest.approx(EXPECTED_RISE_C_PER_MIN, rel=0.02)
    assert hall.value("a01", "ambient.temperature") > a01_before + 3
    assert hall.value("crac-2", "alarm.power_failure") == "active"
    assert hall.value("crac-1", "crac.system") == "off"
    hall.power.essential_bus_live = True
    hall.plant.step(COMPRESSOR_RESTART_DELAY_S - 1)  # fans turn, compressors wait out the restart delay
    assert hall.value("crac-1", "fan.state") == "on"
    assert hall.value("crac-1", "cooling.state") == "off"
    hall.plant.step(2)
    assert hall.value("crac-1", "cooling.state") == "on"
    assert hall.value("crac-1", "fan.capacity") == 100  # catching up: the warm cold aisle calls full airflow
    hall.run(40)  # the room's heat capacity gives back its heat over C/G ≈ 7 min
    assert hall.air_c == pytest.approx(SETPOINT_C, abs=0.2)
    assert hall.value("a01", "ambient.temperature") == pytest.approx(a01_before, abs=1.0)


def test_a_restored_crac_brings_the_room_back(hall):
    for crac in ("crac-1", "crac-2"):
        hall.plant.rooms.set_crac_failed(crac, True)
    hall.run(5)
    assert hall.air_c > SETPOINT_C + 4
    hall.plant.rooms.set_crac_failed("crac-2", False)
    hall.run(5)
    assert hall.value("crac-2", "cooling.capacity") == 100
    hall.run(40)
    assert hall.air_c == pytest.approx(SETPOINT_C, abs=0.2)
    assert hall.value("crac-2", "crac.general_alarm") == "normal"


def test_rh_falls_as_the_room_warms_at_constant_dew_point(tmp_path):
    hall = Hall(tmp_path, noise=0.0).settled()
    before = hall.views["nb1"].values()
    dew_point = hall.plant.rooms.room("dh1").dew_point_c
    for crac in ("crac-1", "crac-2"):
        hall.plant.rooms.set_crac_failed(crac, True)
    hall.run(8)
    after = hall.views["nb1"].values()
    assert after["ambient.temperature"] > before["ambient.temperature"] + 6
    assert after["ambient.humidity"] < before["ambient.humidity"] - 10
    assert hall.plant.rooms.room("dh1").dew_point_c == pytest.approx(dew_point, abs=0.3)
    # the probe's RH is its temperature at its dew point, by Magnus (REFERENCE.md §6)
    assert after["ambient.dew_point"] == pytest.approx(before["ambient.dew_point"], abs=0.3)
    assert after["ambient.humidity"] == pytest.approx(
        relative_humidity_pct(after["ambient.temperature"], after["ambient.dew_point"]), abs=1e-6)
    assert after["ambient.dew_point"] == pytest.approx(
        dew_point_c(after["ambient.temperature"], after["ambient.humidity"]), abs=1e-6)


def test_room_rh_and_the_crac_return_rh_follow_magnus(hall):
    room = hall.plant.rooms.room("dh1")
    assert room.humidity_pct == pytest.approx(relative_humidity_pct(room.air_c, room.dew_point_c))
    values = hall.views["crac-1"].values()
    assert values["return_air.humidity"] == pytest.approx(
        relative_humidity_pct(values["return_air.temperature"], room.dew_point_c))
    assert values["return_air.humidity"] < values["supply_air.humidity"]  # warmer air, same moisture


def test_run_hours_grow_while_running_and_stop_when_failed(hall):
    fan = hall.value("crac-1", "fan.run_hours")
    compressor = hall.value("crac-2", "compressor.1.run_hours")
    hall.run(125)
    assert hall.value("crac-1", "fan.run_hours") == fan + 2
    assert hall.value("crac-2", "compressor.1.run_hours") == compressor + 2
    hall.plant.rooms.set_crac_failed("crac-1", True)
    fan = hall.value("crac-1", "fan.run_hours")
    hall.run(125)
    assert hall.value("crac-1", "fan.run_hours") == fan


def test_netbotz_reports_a_closed_door_and_normal_probes(hall):
    values = hall.views["nb1"].values()
    assert values["sensor.status"] == "normal"
    assert values["sensor.humidity.status"] == "normal"
    assert values["door.state"] == "closed"
    assert values["sensor.label"] == "nb1"
    assert values["ambient.temperature"] == pytest.approx(21.6, abs=1.0)


@pytest.mark.parametrize("air_c", [5.0, 18.0, 24.0, 60.0])
@pytest.mark.parametrize("dt_s", [0.5, 1.0, 600.0])
def test_the_backward_euler_step_balances_the_heat_exactly(air_c, dt_s):
    # one unit modulating, one saturating early, one stopped: every segment of the piecewise-linear cooling
    controllers = [Controller(2.0, 18.0, 40.0), Controller(5.0, 20.0, 10.0), Controller(0.0, 18.0, 0.0)]
    rise = 6.0
    after = implicit_step(air_c, dt_s, 30.0, rise, controllers)
    stored_kw = ROOM_HEAT_CAPACITY_KJ_PER_K * (after - air_c) / dt_s
    assert stored_kw == pytest.approx(30.0 - sum(c.output_kw(after + rise) for c in controllers), abs=1e-6)


def test_without_cooling_the_step_is_the_heat_over_the_capacity():
    assert implicit_step(20.0, 60.0, 30.0, 12.0, []) == pytest.approx(20.0 + 30.0 * 60 / ROOM_HEAT_CAPACITY_KJ_PER_K)


def test_unknown_crac_and_room_are_refused(hall):
    with pytest.raises(KeyError, match="no CRAC 'crac-9'"):
        hall.plant.rooms.set_crac_failed("crac-9", True)
    with pytest.raises(KeyError, match="no room 'dh9'"):
        hall.plant.rooms.room("dh9")


def test_a_room_without_cracs_is_held_by_unmonitored_cooling_on_the_essential_bus(tmp_path):
    (tmp_path / "site.yaml").write_text(
        "site: {id: bare, name: Bare}\nrooms: [{id: dh1, name: Hall}]\ndevices:\n"
        "  - {id: a01, class: thsensor, profile: thsensor/generic_xymd02, room: dh1, host: 127.0.0.1,"
        " port: 15020, simulation: {temperature_c: 21.5, humidity_pct: 45, noise: 0}}\n")
    site = load_site(tmp_path / "site.yaml", PROFILES)
    plant = Plant(site, seed=1)
    plant.power = power = FakePower(18.0)
    plant.subsystems = (power, plant.rooms, plant.fire)
    probe = plant.model_for(site.device("a01"), PROFILES["thsensor/generic_xymd02"], 1)
    plant.step(3600)
    assert probe.values()["ambient.temperature"] == pytest.approx(21.5, abs=0.01)
    power.essential_bus_live = False
    plant.step(120)
    assert probe.values()["ambient.temperature"] == pytest.approx(21.5 + 2 * 18 / 2000 * 60, abs=0.05)


@pytest.mark.parametrize("device_id", ["a01", "a02", "nb1", "crac-1", "crac-2"])
@pytest.mark.parametrize("scene", ["normal", "failed"])
def test_every_view_serves_every_point_of_its_profile(hall, device_id, scene):
    if scene == "failed":
        hall.power.essential_bus_live = False
        hall.run(10)
    profile = hall.site.profile(hall.site.device(device_id))
    values = hall.views[device_id].values()
    assert set(values) == {spec.name for spec in profile.points}
    for spec in profile.points:
        raw = codec.encode(spec, values[spec.name])
        if spec.bits is not None:
            raw = codec.insert_bits(spec, 0, raw)  # a bit field is read out of its status word
        _, quality, text = codec.decode(spec, raw)
        assert quality is Quality.GOOD, spec.name
        if isinstance(values[spec.name], str) and spec.enum:
            assert text == values[spec.name]
