"""Fire physics: zones and the panel's status words, VESDA levels, pre-action double interlock, clean agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors import codec
from collectors.model import Quality, Table
from collectors.profile import load_profiles
from config.load import load_site
from simulators.devices.gas import FILL_BAR, RELEASE_DELAY_S
from simulators.devices.preaction import COMPRESSOR_CUT_IN_BAR, LOW_AIR_BAR, NOMINAL_AIR_BAR
from simulators.modbus_server import register_image
from simulators.plant import Plant
from simulators.site import build_device

PROFILES = load_profiles()
SITE = """
site: {{id: test, name: Test site}}
rooms: [{{id: dh1, name: Data hall 1}}]
devices:
  - {{id: panel, class: firepanel, profile: firepanel/notifier_modbusgw, room: dh1, host: 127.0.0.1, port: 15050,
     simulation: {{zones: [1, 2, 3, 4, 5, 6]}}}}
  - {{id: sprinklers, class: preaction, profile: preaction/double_interlock, room: dh1, host: 127.0.0.1,
     port: 15051, simulation: {{zones: [1, 2]}}}}
  - {{id: agent, class: gas, profile: gas/clean_agent, room: dh1, host: 127.0.0.1, port: 15052,
     simulation: {{zones: [3, 4]}}}}
  - {{id: vesda, class: vesda, profile: vesda/xtralis_hli, room: dh1, host: 127.0.0.1, port: 15053,
     simulation: {{zones: [{vesda_zone}]}}}}
"""


class NoPower:
    """A power chain that does nothing: these tests need no UPS or rooms."""

    essential_bus_live = True

    def it_load_kw(self, room_id: str) -> float:
        return 0.0

    def step(self, dt_s, plant):
        pass

    def model_for(self, device, profile, unit_id, rng):
        return None


class Building:
    """A plant with the four fire devices."""

    def __init__(self, tmp_path: Path, vesda_zone: int = 5):
        (tmp_path / "site.yaml").write_text(SITE.format(vesda_zone=vesda_zone))
        self.site = load_site(tmp_path / "site.yaml", PROFILES)
        self.plant = Plant(self.site, seed=1)
        self.plant.power = NoPower()
        self.plant.subsystems = (self.plant.power, self.plant.rooms, self.plant.fire)
        self.fire = self.plant.fire
        self.devices = {device.id: build_device(device, self.site.profile(device), self.plant)
                        for device in self.site.devices}

    def run(self, seconds: float) -> None:
        self.plant.step(seconds)

    def value(self, device_id: str, point: str):
        return self.devices[device_id].model.values()[point]

    def status_word(self, zone: int) -> int:
        device = self.devices["panel"]
        return register_image(device.profile, device.raw_values())[Table.HOLDING][1000 + zone - 1]


@pytest.fixture
def building(tmp_path) -> Building:
    return Building(tmp_path)


# --- fire panel --------------------------------------------------------------------------------

def test_a_quiet_panel_reports_programmed_zones_normal_and_the_rest_not_present(building):
    building.run(1)
    assert [building.status_word(zone) for zone in range(1, 7)] == [0] * 6
    assert building.status_word(7) == building.status_word(8) == 0x00FF  # REFERENCE.md §5.2: not programmed
    assert building.value("panel", "zone.8.event") == "not_present"


@pytest.mark.parametrize(("state", "word"), [
    ("alarm", 0x0800 | 0x10),  # Active bit 11 + event 0x10 fire alarm
    ("prealarm", 0x4000),  # Prealarm bit 14
    ("trouble", 0x2000),  # Trouble bit 13
    ("disabled", 0x0200 | 0x52),  # Disable bit 9 + event 0x52 disabled
    ("normal", 0x0000),
])
def test_zone_states_pack_into_the_modbus_gw_status_word(building, state, word):
    building.fire.set_zone(2, state)
    building.run(1)
    assert building.status_word(2) == word


def test_first_detector_alarms_its_zone_and_starts_gas_stage_1_only(building):
    building.fire.set_zone(3, "alarm")
    building.run(1)
    assert building.value("panel", "zone.3.alarm") == "active"
    assert building.value("panel", "zone.3.event") == "fire_alarm"
    assert building.value("agent", "gas.stage1") == "active"
    assert building.value("agent", "gas.stage2") == "normal"
    assert building.value("agent", "gas.countdown.running") == "normal"
    building.run(120)
    assert building.value("agent", "gas.released") == "normal"
    assert building.value("sprinklers", "preaction.solenoid") == "de_energised"


def test_bad_zone_or_state_is_refused(building):
    with pytest.raises(ValueError, match="zone state 'smoky'"):
        building.fire.set_zone(1, "smoky")
    with pytest.raises(ValueError, match="zone 0"):
        building.fire.set_zone(0, "alarm")


# --- clean agent -------------------------------------------------------------------------------

def start_stage_2(building: Building) -> None:
    building.fire.set_zone(3, "alarm")
    building.run(5)
    building.fire.set_zone(4, "alarm")
    building.run(1)


def test_second_zone_starts_stage_2_and_releases_after_30_s(building):
    start_stage_2(building)
    assert building.value("agent", "gas.stage2") == "active"
    assert building.value("agent", "gas.countdown.running") == "active"
    assert building.value("agent", "gas.countdown") == RELEASE_DELAY_S - 1
    building.run(RELEASE_DELAY_S - 2)
    assert building.value("agent", "gas.released") == "normal"
    assert building.value("agent", "gas.countdown") == 1
    building.run(1)
    assert building.value("agent", "gas.released") == "released"
    assert building.value("agent", "gas.countdown") == 0
    building.run(1)
    assert building.value("agent", "gas.discharge_confirmed") == "discharged"
    building.run(15)
    assert building.value("agent", "gas.cylinder_pressure") < 0.05 * FILL_BAR
    assert building.value("agent", "gas.cylinder_low") == "active"


def test_abort_held_pauses_the_countdown_and_it_resumes_on_release(building):
    start_stage_2(building)
    building.run(9)  # 20 s left
    building.fire.set_gas_abort(True)
    building.run(120)
    assert building.value("agent", "gas.abort") == "active"
    assert building.value("agent", "gas.countdown") == 20
    assert building.value("agent", "gas.countdown.running") == "normal"
    assert building.value("agent", "gas.released") == "normal"
    building.fire.set_gas_abort(False)
    building.run(19)
    assert building.value("agent", "gas.released") == "normal"
    building.run(1)
    assert building.value("agent", "gas.released") == "released"


def test_lockoff_prevents_the_release_and_shows_impaired(building):
    building.fire.set_gas_lockoff(True)
    start_stage_2(building)
    building.run(120)
    assert building.value("agent", "gas.stage2") == "active"  # the alarms still sound
    assert building.value("agent", "gas.lockoff") == "active"
    assert building.value("agent", "gas.released") == "normal"
    assert building.value("agent", "gas.cylinder_pressure") == pytest.approx(FILL_BAR)


def test_lockoff_during_the_countdown_aborts_the_sequence(building):
    start_stage_2(building)
    building.run(10)
    building.fire.set_gas_lockoff(True)
    building.run(5)
    building.fire.set_gas_lockoff(False)
    building.run(120)
    assert building.value("agent", "gas.countdown.running") == "normal"
    assert building.value("agent", "gas.released") == "normal"


# --- pre-action --------------------------------------------------------------------------------

def test_solenoid_energises_only_with_both_cross_zones(building):
    building.fire.set_zone(1, "alarm")
    building.run(10)
    assert building.value("sprinklers", "preaction.detection_a") == "alarm"
    assert building.value("sprinklers", "preaction.detection_b") == "normal"
    assert building.value("sprinklers", "preaction.solenoid") == "de_energised"
    building.fire.set_zone(2, "alarm")
    building.run(1)
    assert building.value("sprinklers", "preaction.solenoid") == "energised"
    building.run(600)  # the piping still holds its air: double interlock, no water
    assert building.value("sprinklers", "preaction.valve_open") == "closed"
    assert building.value("sprinklers", "preaction.waterflow") == "no_flow"
    assert building.value("sprinklers", "preaction.air_pressure") >= COMPRESSOR_CUT_IN_BAR


def test_water_flows_once_a_head_opens_with_the_solenoid_energised(building):
    for zone in (1, 2):
        building.fire.set_zone(zone, "alarm")
    building.run(5)
    building.fire.open_sprinkler_head()
    building.run(10)
    assert building.value("sprinklers", "preaction.low_air") == "active"
    building.run(10)
    assert building.value("sprinklers", "preaction.valve_open") == "open"
    assert building.value("sprinklers", "preaction.waterflow") == "flow"


def test_an_open_head_alone_gives_low_air_but_no_water(building):
    building.fire.open_sprinkler_head()
    building.run(60)
    assert building.value("sprinklers", "preaction.air_pressure") < LOW_AIR_BAR
    assert building.value("sprinklers", "preaction.low_air") == "active"
    assert building.value("sprinklers", "preaction.valve_open") == "closed"
    assert building.value("sprinklers", "preaction.waterflow") == "no_flow"
    for zone in (1, 2):  # the other interlock, later: now the valve trips (REFERENCE.md §5.3, either order)
        building.fire.set_zone(zone, "alarm")
    building.run(1)
    assert building.value("sprinklers", "preaction.waterflow") == "flow"


def test_the_compressor_holds_the_air_against_a_small_leak(building):
    building.fire.set_preaction_leak(0.02)
    pressures, running = [], set()
    for _ in range(60):
        building.run(60)
        pressures.append(building.value("sprinklers", "preaction.air_pressure"))
        running.add(building.value("sprinklers", "preaction.compressor"))
    assert min(pressures) >= COMPRESSOR_CUT_IN_BAR - 0.01
    assert max(pressures) <= NOMINAL_AIR_BAR + 1e-9
    assert running == {"off", "running"}  # it cycles
    assert building.value("sprinklers", "preaction.low_air") == "normal"


def test_failed_compressor_and_a_leak_give_low_air_and_repair_restores_it_within_30_min(building):
    building.fire.set_compressor_failed(True)
    building.fire.set_preaction_leak(0.05)
    building.run(5 * 60)
    assert building.value("sprinklers", "preaction.low_air") == "normal"  # 0.69 - 5 × 0.05 = 0.44 bar
    building.run(30)
    assert building.value("sprinklers", "preaction.low_air") == "active"
    assert building.value("sprinklers", "preaction.compressor") == "failed"
    building.run(20 * 60)
    assert building.value("sprinklers", "preaction.air_pressure") == 0
    building.fire.set_preaction_leak(0.0)
    building.fire.set_compressor_failed(False)
    building.run(30 * 60)  # NFPA: the air supply restores normal pressure within 30 min (REFERENCE.md §5.3)
    assert building.value("sprinklers", "preaction.air_pressure") >= COMPRESSOR_CUT_IN_BAR
    assert building.value("sprinklers", "preaction.low_air") == "normal"


# --- VESDA -------------------------------------------------------------------------------------

def test_vesda_rising_crosses_alert_action_fire1_and_its_zone_follows(building):
    building.fire.set_vesda_smoke(25, ramp_s=250)  # 0.1 per second on the relative scale
    seen = []
    for _ in range(300):
        building.run(1)
        step = (building.value("vesda", "vesda.level"), building.fire.zone(5).prealarm, building.fire.zone(5).alarm)
        if not seen or seen[-1] != step:
            seen.append(step)
    assert seen == [("normal", False, False), ("alert", True, False), ("action", True, False),
                    ("fire1", False, True)]
    assert building.value("vesda", "vesda.smoke_relative") == 20  # the HLI's full scale is Fire 1
    assert building.value("panel", "zone.5.event") == "fire_alarm"


def test_vesda_fire_1_counts_as_a_detector_for_the_release(tmp_path):
    building = Building(tmp_path, vesda_zone=4)
    building.fire.set_zone(3, "alarm")
    building.fire.set_vesda_smoke(21, ramp_s=0)
    building.run(1)
    assert building.value("agent", "gas.stage2") == "active"


def test_a_disabled_zone_cannot_complete_a_cross_zoned_release(building):
    building.fire.set_zone(3, "alarm")
    building.fire.set_zone(4, "disabled")
    building.run(60)
    assert building.value("agent", "gas.stage2") == "normal"
    assert building.value("panel", "zone.4.disabled") == "disabled"


# --- reset and views ---------------------------------------------------------------------------

def test_reset_brings_everything_back_to_normal(building):
    start_stage_2(building)
    for zone in (1, 2):
        building.fire.set_zone(zone, "alarm")
    building.fire.open_sprinkler_head()
    building.fire.set_compressor_failed(True)
    building.fire.set_vesda_smoke(30, ramp_s=0)
    building.run(60)
    building.fire.reset()
    building.run(1)
    for zone in range(1, 7):
        assert building.status_word(zone) == 0
    assert building.value("agent", "gas.released") == "normal"
    assert building.value("agent", "gas.cylinder_pressure") == pytest.approx(FILL_BAR)
    assert building.value("sprinklers", "preaction.waterflow") == "no_flow"
    assert building.value("sprinklers", "preaction.compressor") != "failed"
    assert building.value("sprinklers", "preaction.air_pressure") == pytest.approx(NOMINAL_AIR_BAR, abs=0.01)
    assert building.value("vesda", "vesda.level") == "normal"


def test_a_knob_naming_an_unknown_system_is_refused(building):
    with pytest.raises(KeyError, match="no gas system 'nope'"):
        building.fire.set_gas_abort(True, device_id="nope")
    building.fire.set_gas_abort(True, device_id="agent")
    assert building.value("agent", "gas.abort") == "active"


@pytest.mark.parametrize("device_id", ["panel", "sprinklers", "agent", "vesda"])
@pytest.mark.parametrize("scene", ["quiet", "released"])
def test_every_view_serves_every_point_of_its_profile(building, device_id, scene):
    if scene == "released":
        start_stage_2(building)
        for zone in (1, 2):
            building.fire.set_zone(zone, "alarm")
        building.fire.open_sprinkler_head()
        building.fire.set_vesda_smoke(100, ramp_s=0)
        building.run(60)
    device = building.devices[device_id]
    values = device.model.values()
    assert set(values) == {spec.name for spec in device.profile.points}
    for spec in device.profile.points:
        raw = codec.encode(spec, values[spec.name])
        if spec.bits is not None:
            raw = codec.insert_bits(spec, 0, raw)  # a bit field is read out of its status word
        _, quality, text = codec.decode(spec, raw)
        assert quality is Quality.GOOD, spec.name
        if isinstance(values[spec.name], str):
            assert text == values[spec.name], spec.name
