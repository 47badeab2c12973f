from dataclasses import replace

import pytest

from alerts.derived import dew_point
from alerts.rules import Level
from dashboard.climate import rack_cell, room_views
from dashboard.envelope import Envelope, envelope
from tests.unit.dashboard.plant_readings import healthy_readings
from tests.unit.dashboard.snapshots import T0, snapshot

A01 = "dh1-rack-a01-inlet"


def cell(site, rules, **overrides):
    snap = snapshot(site, rules, overrides={(A01, k.replace("_", ".")): v for k, v in overrides.items()})
    return rack_cell(snap, site.device(A01))


def test_rack_shows_temperature_humidity_and_computed_dew_point(plant_site, default_rules):
    rack = cell(plant_site, default_rules)
    assert (rack.temperature.text, rack.temperature.unit, rack.temperature.state) == ("21.5", "°C", "ok")
    assert (rack.humidity.text, rack.humidity.unit) == ("45.0", "%RH")
    assert rack.dew_point.text == f"{dew_point(21.5, 45.0):.1f}" and rack.dew_point.state == "ok"
    assert (rack.state, rack.status_text, rack.age_text) == ("ok", "OK", "1 s ago")


@pytest.mark.parametrize(("temperature", "state"), [(23.4, "warning"), (18.5, "warning"), (33.0, "critical"),
                                                    (22.9, "ok")])
def test_rack_colour_follows_the_temperature_envelope_of_the_rules(plant_site, default_rules, temperature, state):
    rack = cell(plant_site, default_rules, ambient_temperature=temperature)
    assert rack.temperature.state == state and rack.state == state


def test_envelope_levels_come_from_the_loaded_rules_not_the_code(plant_site, default_rules):
    strict = [r.model_copy(update={"warning": Level(above=22.0, below=20.0)})
              if r.name == "inlet_temperature_out_of_envelope" else r for r in default_rules]
    assert cell(plant_site, default_rules, ambient_temperature=22.5).state == "ok"
    assert cell(plant_site, strict, ambient_temperature=22.5).state == "warning"


def test_humid_air_breaks_the_dew_point_envelope(plant_site, default_rules):
    rack = cell(plant_site, default_rules, ambient_temperature=27.0, ambient_humidity=69.0)
    assert rack.humidity.state == "ok" and rack.dew_point.state == "critical"  # DP ≈ 20.8 °C > 17
    assert rack.state == "critical"


def test_missing_humidity_means_no_dew_point_and_a_stale_sensor_is_stale(plant_site, default_rules):
    rack = cell(plant_site, default_rules, ambient_humidity=None)
    assert rack.dew_point.text == "—" and rack.humidity.text == "—"
    readings = [replace(r, ts=T0 - 120) if r.device == A01 else r for r in healthy_readings(plant_site, T0 - 1)]
    stale = rack_cell(snapshot(plant_site, default_rules, readings), plant_site.device(A01))
    assert (stale.state, stale.status_text, stale.temperature.state) == ("stale", "STALE", "stale")


def test_rooms_list_racks_and_cracs_with_the_hottest_inlet(plant_site, default_rules):
    rooms = room_views(snapshot(plant_site, default_rules, overrides={("dh2-crac-1", "crac.unit_on"): 0}))
    assert [r.room_id for r in rooms] == ["dh1", "dh2"]  # the plant room has no racks or CRACs
    dh1, dh2 = rooms
    assert [c.device_id for c in dh1.racks][:2] == [A01, "dh1-rack-a02-inlet"] and len(dh1.racks) == 6
    assert dh1.hottest == "22.9 °C at Rack A04 inlet"
    assert dh1.cracs_running == "2 of 2 running" and dh2.cracs_running == "1 of 2 running"
    crac = dh1.cracs[0]
    assert crac.status_text == "ON"
    assert [(f.label, f.text) for f in crac.facts][:2] == [("supply", "18.1"), ("return", "27.6")]
    assert any("warning 19–23 °C" in line for line in dh1.legend)


def test_envelope_text_without_an_annotation():
    found = Envelope("r", Level(above=23, below=19), Level(below=15))
    assert found.text("°C") == "warning 19–23 °C, critical ≥ 15 °C"


def test_no_rule_no_envelope(plant_site):
    assert envelope((), plant_site.device(A01), "ambient.temperature") is None
    rack = rack_cell(snapshot(plant_site, ()), plant_site.device(A01))
    assert rack.temperature.state == "" and rack.dew_point.state == ""
