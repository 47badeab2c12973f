"""Compound rules: conditions over the latest values of several points and devices, three-valued on missing data."""

from __future__ import annotations

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertState
from alerts.notify_config import InhibitRule, Match
from alerts.pipeline import InhibitStage
from alerts.rules import Rule, load_rules
from alerts.state import AlertStateStore
from collectors.model import Quality, Reading
from config.load import Site, load_site
from config.yamlfile import ConfigError
from tests.conftest import DEMO_CONFIG

PRE = "dh1-preaction"
# codes from the profiles: preaction/double_interlock, firepanel/notifier_modbusgw, ups/*, ats/facwatch_ats
ON, OFF = 1.0, 0.0


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(DEMO_CONFIG)


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def engine_for(site: Site, rules: list[Rule]) -> AlertEngine:
    return AlertEngine(site, rules, AlertStateStore(":memory:"), clock=FakeClock())


def rd(device: str, point: str, ts: float, value: float | None) -> Reading:
    return Reading(device, point, ts, value, Quality.GOOD if value is not None else Quality.MISSING)


def armed_rule(**kwargs) -> Rule:
    return Rule.model_validate({
        "name": "zone_disabled_while_armed", "kind": "compound", "severity": "warning",
        "match": {"device_class": "preaction"},
        "when": {"all": [{"point": "preaction.armed", "state": "armed"},
                         {"device_class": "firepanel", "point": "zone.[12].disabled", "state": "disabled"}]},
        **kwargs})


def active(engine: AlertEngine, rule: str) -> list[tuple[str, str, dict]]:
    return [(a.state.value, a.severity.value, dict(a.labels)) for a in engine.alerts() if a.rule == rule]


def test_cross_device_condition_fires_per_subject_device(site):
    engine = engine_for(site, [armed_rule()])
    engine.observe([rd(PRE, "preaction.armed", 0, ON), rd("fire-panel", "zone.1.disabled", 0, OFF),
                    rd("fire-panel", "zone.2.disabled", 0, OFF)])
    assert active(engine, "zone_disabled_while_armed") == []
    changed = engine.observe([rd("fire-panel", "zone.2.disabled", 2, ON)])  # a change on the other device
    assert [(a.state, a.labels["device"]) for a in changed] == [(AlertState.FIRING, PRE)]
    assert "point" not in changed[0].labels and changed[0].labels["site"] == "demo"
    changed = engine.observe([rd(PRE, "preaction.armed", 4, OFF)])
    assert [a.state for a in changed] == [AlertState.RESOLVED]


def test_missing_input_holds_unless_it_cannot_change_the_answer(site):
    engine = engine_for(site, [armed_rule()])
    engine.observe([rd(PRE, "preaction.armed", 0, ON), rd("fire-panel", "zone.1.disabled", 0, ON),
                    rd("fire-panel", "zone.2.disabled", 0, OFF)])
    assert [s for s, _, _ in active(engine, "zone_disabled_while_armed")] == ["firing"]
    assert engine.observe([rd(PRE, "preaction.armed", 2, None)]) == []  # armed unknown: hold firing
    assert engine.observe([rd(PRE, "preaction.armed", 3, ON)]) == []
    assert engine.observe([rd("fire-panel", "zone.1.disabled", 4, None)]) == []  # zone 1 unknown: hold
    assert [s for s, _, _ in active(engine, "zone_disabled_while_armed")] == ["firing"]
    # known data decides whatever the unknown input is: armed unknown, but no zone is disabled
    engine.observe([rd(PRE, "preaction.armed", 5, None)])
    changed = engine.observe([rd("fire-panel", "zone.1.disabled", 6, OFF)])
    assert [a.state for a in changed] == [AlertState.RESOLVED]


def test_missing_input_never_raises(site):
    engine = engine_for(site, [armed_rule()])
    # zone 2 never reported: no zone known disabled, so the condition is unknown
    assert engine.observe([rd(PRE, "preaction.armed", 0, ON), rd("fire-panel", "zone.1.disabled", 0, OFF)]) == []
    # one zone known disabled decides it whatever zone 2 is
    changed = engine.observe([rd("fire-panel", "zone.1.disabled", 1, ON)])
    assert [a.state for a in changed] == [AlertState.FIRING]


def test_stale_input_counts_as_missing(site):
    engine = engine_for(site, [armed_rule()])
    engine.observe([rd("fire-panel", "zone.1.disabled", 0, ON), rd("fire-panel", "zone.2.disabled", 0, OFF)])
    assert engine.observe([rd(PRE, "preaction.armed", 600, ON)]) == []  # the zone data is 10 min old


def test_for_delays_firing_and_a_clear_before_it_drops_pending(site):
    engine = engine_for(site, [armed_rule(**{"for": 10})])
    engine.observe([rd(PRE, "preaction.armed", 0, ON), rd("fire-panel", "zone.1.disabled", 0, ON),
                    rd("fire-panel", "zone.2.disabled", 0, OFF)])
    assert [s for s, _, _ in active(engine, "zone_disabled_while_armed")] == ["pending"]
    engine.observe([rd(PRE, "preaction.armed", 2, ON)])
    assert engine.observe([rd(PRE, "preaction.armed", 4, OFF)])[0].state is AlertState.INACTIVE
    for ts in (6, 10, 14):
        engine.observe([rd(PRE, "preaction.armed", ts, ON), rd("fire-panel", "zone.1.disabled", ts, ON),
                        rd("fire-panel", "zone.2.disabled", ts, OFF)])
    assert [a.state for a in engine.tick(15)] == []  # 9 s pending
    fired = engine.tick(16)  # on the clock, while the data is fresh
    assert [a.state for a in fired] == [AlertState.FIRING] and fired[0].active_since == 6


def test_count_at_least_and_unless(site):
    rules = [r for r in load_rules() if r.name == "preaction_unexplained_water"]
    engine = engine_for(site, rules)
    base = [rd(PRE, "preaction.valve_open", 0, ON), rd(PRE, "preaction.waterflow", 0, OFF),
            rd(PRE, "preaction.detection_a", 0, ON), rd(PRE, "preaction.detection_b", 0, ON)]
    assert engine.observe(base) == []  # both cross-zones in alarm: the water is explained
    changed = engine.observe([rd(PRE, "preaction.detection_b", 2, OFF)])
    assert [(a.state, a.severity.value) for a in changed] == [(AlertState.FIRING, "critical")]


def test_site_scope_mains_failure_inhibits_ups_on_battery(site):
    rules = [r for r in load_rules() if r.name in ("mains_failure", "ups_on_battery")]
    engine = engine_for(site, rules)
    engine.observe([rd("ups-a", "output.source", 0, 5.0), rd("ups-b", "output.status", 0, 3.0),
                    rd("ats-1", "ats.position", 0, 2.0), rd("ats-1", "ats.mains_available", 0, 1.0)])
    mains = [a for a in engine.alerts() if a.rule == "mains_failure"]
    assert [dict(a.labels) for a in mains] == [{"site": "demo"}]
    on_battery = [a for a in engine.alerts() if a.rule == "ups_on_battery"]
    assert len(on_battery) == 2 and all(a.labels["site"] == "demo" for a in on_battery)
    inhibit = InhibitRule(source=Match(labels={"alertname": "mains_failure"}),
                          target=Match(labels={"alertname": "ups_on_battery"}), equal=["site"])
    assert InhibitStage([inhibit], engine.alerts).process(on_battery, 0) == []


def test_ups_on_battery_with_ats_on_mains_is_not_a_mains_failure(site):
    rules = [r for r in load_rules() if r.name == "mains_failure"]
    engine = engine_for(site, rules)
    engine.observe([rd("ups-a", "output.source", 0, 5.0), rd("ups-b", "output.status", 0, 2.0),
                    rd("ats-1", "ats.position", 0, 1.0), rd("ats-1", "ats.mains_available", 0, 1.0)])
    assert engine.alerts() == []


def write(tmp_path, text: str):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_compound_without_when_is_refused_with_file_and_line(tmp_path):
    path = write(tmp_path, "rules:\n  - name: x\n    kind: compound\n")
    with pytest.raises(ConfigError, match=r":3: rules\[0\]\.kind: a compound rule needs a when condition"):
        load_rules([path])


def test_malformed_condition_is_refused(tmp_path):
    path = write(tmp_path, "rules:\n  - name: x\n    kind: compound\n    when: {point: a.b}\n")
    with pytest.raises(ConfigError, match="needs a state"):
        load_rules([path])
    path = write(tmp_path, "rules:\n  - name: x\n    kind: state\n    when: {point: a.b, state: on}\n")
    with pytest.raises(ConfigError, match="only compound rules take when"):
        load_rules([path])
