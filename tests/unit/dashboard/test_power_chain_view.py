from dataclasses import replace

import pytest

from alerts.derived import fuel_days_full_load, ups_autonomy_full_load
from dashboard.power_chain import DEAD, LIVE, UNKNOWN, power_chain_view, ups_mode
from tests.unit.dashboard.plant_readings import healthy_readings
from tests.unit.dashboard.snapshots import T0, snapshot


def view(site, rules, **overrides):
    return power_chain_view(snapshot(site, rules, overrides={tuple(k.split(":")): v for k, v in overrides.items()}))


def branch(chain, ups_id):
    return next(b for b in chain.branches if b.ups.key == ups_id)


def fact(node, label):
    return next(f for f in node.facts if f.label == label)


def test_on_mains_the_mains_line_bus_and_ups_outputs_are_live(plant_site, default_rules):
    chain = view(plant_site, default_rules)
    assert chain.source == "mains" and chain.summary == "Load on utility mains"
    assert chain.mains.status_text == "AVAILABLE" and chain.mains_line == LIVE
    assert [(g.key, line) for g, line in chain.generators] == [("gen-1", DEAD)]
    assert chain.ats.status_text == "ON MAINS"
    for item in chain.branches:
        assert (item.feed, item.mode, item.output, item.load.status_text) == (LIVE, "normal", LIVE, "POWERED")
        assert item.ups.status_text == "INVERTER"


def test_on_generator_the_generator_line_carries_the_load(plant_site, default_rules):
    chain = view(plant_site, default_rules, **{"ats-1:ats.position": 2, "ats-1:ats.mains_available": 0,
                                               "gen-1:engine.state": 3})
    assert chain.source == "generator" and chain.mains_line == DEAD and chain.mains.status_text == "FAILED"
    assert chain.generators[0][1] == LIVE and chain.generators[0][0].status_text == "RUNNING"


def test_ups_on_battery_takes_nothing_from_its_feed_but_still_powers_its_load(plant_site, default_rules):
    chain = view(plant_site, default_rules, **{"ups-a:output.source": 5})
    item = branch(chain, "ups-a")
    assert (item.mode, item.feed, item.output) == ("battery", DEAD, LIVE)
    assert item.ups.status_text == "ON BATTERY"
    assert chain.summary == "Load on utility mains (1 UPS on battery)"


def test_ups_on_bypass_is_fed_but_unprotected_and_output_off_is_no_power(plant_site, default_rules):
    chain = view(plant_site, default_rules, **{"ups-a:output.source": 4, "ups-b:output.status": 7})
    assert (branch(chain, "ups-a").mode, branch(chain, "ups-a").feed) == ("bypass", LIVE)
    assert "load unprotected" in chain.summary
    off = branch(chain, "ups-b")
    assert (off.mode, off.output, off.load.status_text, off.load.state) == ("off", DEAD, "NO POWER", "critical")


def test_all_ups_on_battery_with_the_ats_open(plant_site, default_rules):
    chain = view(plant_site, default_rules, **{"ats-1:ats.position": 0, "ups-a:output.source": 5,
                                               "ups-b:output.status": 3})
    assert chain.source == "battery" and chain.summary == "Load on UPS batteries"


def test_a_stale_ats_makes_its_lines_unknown_never_live(plant_site, default_rules):
    readings = [replace(r, ts=T0 - 100) if r.device == "ats-1" else r for r in healthy_readings(plant_site, T0 - 1)]
    chain = power_chain_view(snapshot(plant_site, default_rules, readings))
    assert chain.mains_line == UNKNOWN and chain.source is None
    assert chain.ats.state == "stale" and chain.ats.status_text == "STALE"
    assert "unknown" in chain.summary


def test_runtime_at_full_load_uses_the_rules_peukert_exponent(plant_site, default_rules):
    rules = [r if r.derived != "ups_autonomy_full_load" else r.model_copy(update={"params": {"peukert_exponent": 1.1}})
             for r in default_rules]
    ups = branch(view(plant_site, rules), "ups-a").ups
    expected = ups_autonomy_full_load(46.0, 52.0, 1.1)
    projected = fact(ups, "runtime at full load")
    assert projected.text == f"{expected.value:.1f}" and projected.unit == "min"
    assert projected.note == expected.method
    assert projected.state == "ok"  # ≥ 20 min: inside the rule's envelope
    assert fact(ups, "runtime now").text == "46"


def test_runtime_below_the_rules_level_is_critical(plant_site, default_rules):
    ups = branch(view(plant_site, default_rules, **{"ups-a:battery.runtime": 30}), "ups-a").ups
    assert fact(ups, "runtime at full load").state == "critical"


def test_without_a_rule_the_projection_is_not_computed(plant_site, default_rules):
    rules = [r for r in default_rules if r.derived != "ups_autonomy_full_load"]
    projected = fact(branch(view(plant_site, rules), "ups-a").ups, "runtime at full load")
    assert (projected.text, projected.state) == ("—", "missing")


def test_fuel_days_use_the_rules_per_device_tank(plant_site, default_rules):
    rules = [r if r.derived != "fuel_days_full_load" else r.model_copy(update={
        "per_device": {"gen-1": {"tank_litres": 6000}}}) for r in default_rules]
    generator = view(plant_site, rules).generators[0][0]
    expected = fuel_days_full_load(85.0, 6000, 200, 0.27)
    days = fact(generator, "fuel at full load")
    assert days.text == f"{expected.value:.1f}" and days.unit == "days"
    assert days.state == "critical"  # half the tank: below 7 days


@pytest.mark.parametrize(("state", "mode"), [("normal", "normal"), ("onLine", "normal"), ("onBattery", "battery"),
                                             ("battery", "battery"), ("switchedBypass", "bypass"), ("off", "off"),
                                             ("other", None), (None, None)])
def test_ups_modes_of_both_profiles(state, mode):
    assert ups_mode(state) == mode


