from dataclasses import replace

from dashboard.fire_safety import fire_view
from tests.unit.dashboard.plant_readings import healthy_readings
from tests.unit.dashboard.snapshots import T0, snapshot


def view(site, rules, **overrides):
    return fire_view(snapshot(site, rules, overrides=overrides))


def system(fire, device):
    return next(s for s in fire.systems if s.device_id == device)


def test_every_fire_system_is_listed_panels_first_and_all_normal(plant_site, default_rules):
    fire = view(plant_site, default_rules)
    assert [s.device_id for s in fire.systems] == ["fire-panel", "dh1-preaction", "dh2-gas", "dh1-vesda"]
    assert (fire.state, fire.status_text) == ("ok", "NORMAL")
    panel = system(fire, "fire-panel")
    assert [z.number for z in panel.zones] == list(range(1, 9))
    assert {z.status_text for z in panel.zones} == {"NORMAL"}


def test_zone_shows_its_worst_condition_and_event(plant_site, default_rules):
    fire = fire_view(snapshot(plant_site, default_rules, overrides={
        ("fire-panel", "zone.3.alarm"): 1, ("fire-panel", "zone.3.event"): 0x10,
        ("fire-panel", "zone.5.disabled"): 1, ("fire-panel", "zone.6.trouble"): 1}))
    zones = {z.number: z for z in system(fire, "fire-panel").zones}
    assert (zones[3].status_text, zones[3].state, zones[3].event) == ("ALARM", "critical", "fire_alarm")
    assert (zones[5].status_text, zones[6].status_text) == ("DISABLED", "TROUBLE")
    assert (fire.state, fire.status_text) == ("critical", "FIRE / RELEASE ALARM")


def test_systems_show_their_points_as_words_and_vesda_smoke_as_a_fraction(plant_site, default_rules):
    fire = fire_view(snapshot(plant_site, default_rules, overrides={("dh1-vesda", "vesda.smoke_relative"): 5,
                                                                   ("dh1-preaction", "preaction.waterflow"): 0}))
    preaction = {f.label: f.text for f in system(fire, "dh1-preaction").facts}
    assert preaction["armed"] == "armed" and preaction["waterflow"] == "no flow"
    assert "zone.1.alarm" not in {f.label for f in system(fire, "fire-panel").facts}
    assert system(fire, "dh1-vesda").smoke_fraction == 0.25


def test_a_silent_fire_system_is_not_normal(plant_site, default_rules):
    readings = [replace(r, ts=T0 - 300) if r.device == "dh2-gas" else r for r in healthy_readings(plant_site, T0 - 1)]
    fire = fire_view(snapshot(plant_site, default_rules, readings))
    assert fire.state == "stale" and "NOT REPORTING" in fire.status_text
    assert system(fire, "dh2-gas").status_text == "STALE"
