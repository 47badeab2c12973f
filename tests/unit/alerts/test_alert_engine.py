"""The alert state machine on a fake clock: hold, hysteresis, clear delay, latch, missing data, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertState
from alerts.rules import Level, Match, Rule
from alerts.state import AlertStateStore
from collectors.model import REACHABLE_POINT, Quality, Reading, Severity
from config.load import Site, load_site
from tests.conftest import DEMO_CONFIG

SENSOR = "dh1-rack-a01-inlet"
TEMP = "ambient.temperature"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(DEMO_CONFIG)


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def temp_rule(**kwargs) -> Rule:
    fields = {"name": "inlet_hot", "kind": "threshold", "match": Match(device_class=("thsensor",), point=(TEMP,)),
              "warning": Level(above=23), "critical": Level(above=32), "for": 300, **kwargs}
    return Rule.model_validate(fields)


def temp(ts: float, value: float | None, scenario: str | None = None) -> Reading:
    quality = Quality.GOOD if value is not None else Quality.MISSING
    return Reading(SENSOR, TEMP, ts, value, quality, scenario=scenario)


def engine_for(site: Site, rules: list[Rule], path: str | Path = ":memory:") -> AlertEngine:
    return AlertEngine(site, rules, AlertStateStore(path), clock=FakeClock())


def states(changes) -> list[tuple[str, str]]:
    return [(a.state.value, a.severity.value) for a in changes]


def test_pending_becomes_firing_after_hold(site):
    engine = engine_for(site, [temp_rule()])
    assert states(engine.observe([temp(0, 24)])) == [("pending", "warning")]
    assert engine.observe([temp(299, 24)]) == []
    fired = engine.observe([temp(300, 24)])
    assert states(fired) == [("firing", "warning")]
    assert fired[0].active_since == 0 and fired[0].fired_at == 300


def test_pending_fires_on_tick_while_data_is_fresh(site):
    engine = engine_for(site, [temp_rule(**{"for": 4})])
    engine.observe([temp(0, 24)])
    engine.observe([temp(2, 24)])
    assert states(engine.tick(4)) == [("firing", "warning")]


def test_pending_that_clears_goes_inactive(site):
    engine = engine_for(site, [temp_rule()])
    engine.observe([temp(0, 24)])
    assert states(engine.observe([temp(60, 22)])) == [("inactive", "warning")]
    assert engine.alerts() == []


def test_hysteresis_keeps_firing_until_past_clear_level(site):
    engine = engine_for(site, [temp_rule(hysteresis=0.5, **{"for": 0})])
    assert states(engine.observe([temp(0, 23.2)])) == [("firing", "warning")]
    assert engine.observe([temp(10, 22.8)]) == []  # inside 23 but not below 22.5
    assert states(engine.observe([temp(20, 22.4)])) == [("resolved", "warning")]


def test_severity_escalates_and_de_escalates_while_firing(site):
    engine = engine_for(site, [temp_rule(hysteresis=0.5, **{"for": 0})])
    engine.observe([temp(0, 24)])
    assert states(engine.observe([temp(10, 33)])) == [("firing", "critical")]
    assert engine.observe([temp(20, 31.8)]) == []  # critical holds within the hysteresis
    assert states(engine.observe([temp(30, 31.4)])) == [("firing", "warning")]


def test_clear_delay_holds_firing_until_it_expires(site):
    engine = engine_for(site, [temp_rule(clear_for=60, **{"for": 0})])
    engine.observe([temp(0, 24)])
    assert engine.observe([temp(10, 21)]) == []
    assert engine.tick(69) == []
    engine.observe([temp(68, 21)])
    assert states(engine.tick(70)) == [("resolved", "warning")]


def test_condition_returning_during_clear_delay_keeps_firing(site):
    engine = engine_for(site, [temp_rule(clear_for=60, **{"for": 0})])
    engine.observe([temp(0, 24)])
    engine.observe([temp(10, 21)])
    assert engine.observe([temp(20, 24)]) == []
    engine.observe([temp(30, 21)])
    assert engine.observe([temp(80, 21)]) == []  # the delay restarted at 30 s
    assert states(engine.observe([temp(90, 21)])) == [("resolved", "warning")]


def test_latched_alert_needs_an_ack_to_resolve(site):
    engine = engine_for(site, [temp_rule(latch=True, **{"for": 0})])
    fired = engine.observe([temp(0, 24)])
    assert engine.observe([temp(10, 21)]) == []
    assert engine.tick(600) == []
    assert [a.state for a in engine.alerts()] == [AlertState.FIRING]
    resolved = engine.acknowledge(fired[0].fingerprint, "noc-alice", "checked the rack", at=700)
    assert states(resolved) == [("resolved", "warning")]
    assert resolved[0].acknowledged_by == "noc-alice" and resolved[0].ack_note == "checked the rack"


def test_ack_is_a_flag_not_a_state(site):
    engine = engine_for(site, [temp_rule(**{"for": 0})])
    fired = engine.observe([temp(0, 24)])
    assert engine.acknowledge(fired[0].fingerprint, "bob", None, at=5) == []
    (alert,) = engine.alerts()
    assert alert.state is AlertState.FIRING and alert.acknowledged_by == "bob" and alert.acknowledged_at == 5


def test_missing_data_never_resolves_a_firing_alert(site):
    missing_rule = Rule.model_validate({"name": "point_data_missing", "kind": "missing", "severity": "warning"})
    engine = engine_for(site, [temp_rule(**{"for": 0}), missing_rule])
    engine.observe([temp(0, 24)])
    changes = engine.observe([temp(2, None), temp(4, None)])
    assert [(a.rule, a.state.value) for a in changes] == [("point_data_missing", "firing")]
    assert engine.tick(1000) == []
    firing = {a.rule: a.state for a in engine.alerts()}
    assert firing == {"inlet_hot": AlertState.FIRING, "point_data_missing": AlertState.FIRING}


def test_missing_data_is_not_inside_the_envelope_for_a_pending_alert(site):
    engine = engine_for(site, [temp_rule(**{"for": 10})])
    engine.observe([temp(0, 24)])
    assert engine.observe([temp(2, None)]) == []
    assert [a.state for a in engine.alerts()] == [AlertState.PENDING]


def test_unreachable_device_alert_covers_its_points(site):
    rules = [Rule.model_validate({"name": "device_unreachable", "kind": "missing", "scope": "device",
                                  "match": {"device": SENSOR}}),
             Rule.model_validate({"name": "point_data_missing", "kind": "missing", "match": {"device": SENSOR}})]
    engine = engine_for(site, rules)
    engine.observe([temp(0, 21)])
    changes = engine.observe([Reading(SENSOR, REACHABLE_POINT, 2, 0.0)])
    assert [(a.rule, a.severity) for a in changes] == [("device_unreachable", Severity.CRITICAL)]
    assert [a.rule for a in engine.tick(60)] == []


def test_restart_restores_state_and_does_not_refire(site, tmp_path):
    db = tmp_path / "alerts.db"
    first = engine_for(site, [temp_rule(**{"for": 0})], db)
    fired = first.observe([temp(0, 24)])
    first.store.close()
    second = engine_for(site, [temp_rule(**{"for": 0})], db)
    assert [(a.fingerprint, a.state) for a in second.alerts()] == [(fired[0].fingerprint, AlertState.FIRING)]
    assert second.observe([temp(10, 24)]) == []
    assert second.tick(20) == []
    assert states(second.observe([temp(30, 21)])) == [("resolved", "warning")]


def test_restart_keeps_the_acknowledgement(site, tmp_path):
    db = tmp_path / "alerts.db"
    first = engine_for(site, [temp_rule(**{"for": 0})], db)
    fired = first.observe([temp(0, 24)])
    first.acknowledge(fired[0].fingerprint, "carol", "on it", at=3)
    first.store.close()
    (alert,) = engine_for(site, [temp_rule(**{"for": 0})], db).alerts()
    assert (alert.acknowledged_by, alert.acknowledged_at, alert.ack_note) == ("carol", 3, "on it")


def test_transitions_are_logged_append_only(site):
    engine = engine_for(site, [temp_rule(**{"for": 60})])
    engine.observe([temp(0, 24)])
    fired = engine.observe([temp(60, 24)])
    engine.observe([temp(70, 20)])
    assert engine.store.transitions(fired[0].fingerprint) == [
        ("inactive", "pending", 0), ("pending", "firing", 60), ("firing", "resolved", 70)]


def test_scenario_readings_produce_alerts_tagged_with_the_scenario(site):
    engine = engine_for(site, [temp_rule(**{"for": 0})])
    real = engine.observe([temp(0, 24)])
    drill = engine.observe([temp(1, 33, scenario="crac-failure")])
    assert drill[0].scenario == "crac-failure" and drill[0].labels["scenario"] == "crac-failure"
    assert drill[0].fingerprint != real[0].fingerprint
    engine.observe([temp(2, 20, scenario="crac-failure")])  # the drill ends: only its own alert resolves
    assert [(a.scenario, a.state) for a in engine.alerts()] == [(None, AlertState.FIRING)]


def test_derived_value_alert_carries_its_method(site):
    rule = Rule.model_validate({"name": "ups_autonomy_full_load_low", "kind": "threshold",
                                "derived": "ups_autonomy_full_load", "match": {"device_class": "ups"},
                                "critical": {"below": 20}, "params": {"peukert_exponent": 1.2}})
    engine = engine_for(site, [rule])
    assert engine.observe([Reading("ups-a", "battery.runtime", 0, 30.0)]) == []  # load unknown yet
    (alert,) = engine.observe([Reading("ups-a", "ups.load", 1, 50.0)])
    assert alert.value == pytest.approx(13.06, abs=0.01)
    assert alert.annotations["method"] == "estimate: Peukert k=1.2 from 30 min at 50 % load"


def test_unknown_devices_are_ignored(site):
    engine = engine_for(site, [temp_rule(**{"for": 0})])
    assert engine.observe([Reading("not-in-site", TEMP, 0, 40.0)]) == []


def ring_rule(**kwargs) -> Rule:
    return Rule.model_validate({"name": "ring_redundancy", "kind": "threshold", "derived": "ring_redundancy",
                                "scope": "site", "match": {"device_class": "ups"}, "warning": {"above": 90},
                                "critical": {"above": 100}, **kwargs})


def loads(ts: float, a: float | None, b: float | None, scenario: str | None = None) -> list[Reading]:
    return [Reading(dev, "ups.load", ts, v, Quality.GOOD if v is not None else Quality.MISSING, scenario=scenario)
            for dev, v in (("ups-a", a), ("ups-b", b))]


def test_ring_redundancy_is_one_site_alert(site):
    engine = engine_for(site, [ring_rule()])
    assert engine.observe(loads(0, 45, 40)) == []
    alert = engine.observe(loads(2, 55, 50))[-1]  # 55 + 40 warns first, then 55 + 50 is critical
    assert dict(alert.labels) == {"site": "demo"} and alert.severity is Severity.CRITICAL
    assert alert.value == pytest.approx(105) and alert.annotations["method"].startswith("estimate: (ups-a 55 %")


def test_ring_redundancy_uses_per_ring_capacity(site):
    # ring A 120 kW at 50 % = 60 kW, ring B 80 kW at 30 % = 24 kW: 84 kW on the 80 kW ring
    engine = engine_for(site, [ring_rule(per_device={"ups-a": {"capacity_kw": 120}, "ups-b": {"capacity_kw": 80}})])
    (alert,) = engine.observe(loads(0, 50, 30))
    assert alert.value == pytest.approx(105)


def test_ring_redundancy_holds_while_a_ring_is_missing_or_stale(site):
    engine = engine_for(site, [ring_rule()])
    engine.observe(loads(0, 55, 50))
    assert engine.observe(loads(2, None, None)) == []
    assert engine.observe(loads(4, 30, None)) == []  # B missing: 30 % + ? never resolves
    assert engine.observe([Reading("ups-a", "ups.load", 60, 30.0)]) == []  # B's 50 % is a minute old: stale
    assert [a.state for a in engine.alerts()] == [AlertState.FIRING]
    (resolved,) = engine.observe(loads(62, 30, 30))
    assert resolved.state is AlertState.RESOLVED
    engine2 = engine_for(site, [ring_rule()])
    assert engine2.observe(loads(0, 95, None)) == []  # nor raise on missing data


def test_ring_redundancy_of_a_drill_is_its_own_alert(site):
    engine = engine_for(site, [ring_rule()])
    engine.observe(loads(0, 45, 40))
    (drill,) = engine.observe([Reading("ups-a", "ups.load", 2, 70.0, scenario="ups_overload")])
    assert drill.labels == {"site": "demo", "scenario": "ups_overload"} and drill.value == pytest.approx(110)


def test_good_text_points_are_not_data_missing(site):
    rule = Rule.model_validate({"name": "point_data_missing", "kind": "missing", "scope": "point",
                                "severity": "warning", "stale_after": 3, "match": Match(device_class=("ups",))})
    engine = engine_for(site, [rule])
    ups = next(d for d in site.devices if d.device_class == "ups")
    changes = []
    for ts in range(0, 120, int(ups.poll_interval_s) or 1):  # a good text reading every poll: it is fresh data
        changes += engine.observe([Reading(ups.id, "ups.mfr", ts, None, Quality.GOOD, text="ACME")])
        changes += engine.tick(ts + 0.5)
    assert changes == []


def test_a_drill_alert_ends_with_its_scenario(site):
    engine = engine_for(site, [temp_rule(**{"for": 0})])
    fired = engine.observe([temp(0, 25.0, scenario="crac_failure")])
    assert states(fired) == [("firing", "warning")]
    ended = engine.end_scenario("crac_failure", 60)
    assert [(a.state.value, a.annotations["ended"]) for a in ended] == [("resolved", "scenario crac_failure ended")]
    assert engine.end_scenario("crac_failure", 61) == []  # nothing left to end
    assert states(engine.observe([temp(62, 25.0)])) == [("firing", "warning")]  # a real alert is its own
