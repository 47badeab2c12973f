"""Rule files: loading, file:line errors like a bad config, and matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.rules import DEFAULT_RULES_DIR, load_rules, matches, parse_duration
from config.yamlfile import ConfigError


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_rules_load():
    names = [rule.name for rule in load_rules()]
    assert "inlet_temperature_out_of_envelope" in names and len(names) == len(set(names))
    assert DEFAULT_RULES_DIR.name == "rules"


@pytest.mark.parametrize(("raw", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), (12, 12)])
def test_parse_duration(raw, seconds):
    assert parse_duration(raw) == seconds


def test_unknown_key_is_reported_with_file_and_line(tmp_path):
    path = write(tmp_path, "rules:\n  - name: x\n    kind: state\n    colour: red\n")
    with pytest.raises(ConfigError) as exc:
        load_rules([path])
    assert f"{path}:4: rules[0].colour: unknown key" in str(exc.value)


def test_threshold_without_levels_is_refused(tmp_path):
    path = write(tmp_path, "rules:\n  - name: x\n    kind: threshold\n")
    with pytest.raises(ConfigError, match=r":3: rules\[0\]\.kind: a threshold rule needs a warning or a critical"):
        load_rules([path])


def test_fuel_rule_needs_its_parameters(tmp_path):
    path = write(tmp_path, "rules:\n  - name: x\n    kind: threshold\n    derived: fuel_days_full_load\n"
                           "    critical: {below: 7}\n    params: {rated_kw: 500}\n")
    with pytest.raises(ConfigError, match="needs tank_litres, sfc_l_per_kwh"):
        load_rules([path])


def test_bad_duration_and_duplicate_names_across_files(tmp_path):
    write(tmp_path, "rules:\n  - name: x\n    kind: state\n    for: soon\n", "a.yaml")
    write(tmp_path, "rules:\n  - name: y\n    kind: state\n", "b.yaml")
    write(tmp_path, "rules:\n  - name: y\n    kind: state\n", "c.yaml")
    with pytest.raises(ConfigError) as exc:
        load_rules([tmp_path])
    text = str(exc.value)
    assert "a.yaml:4: rules[0].for" in text and "c.yaml:2: rules[0].name: rule name already used" in text


def test_match_uses_globs_per_key(tmp_path):
    path = write(tmp_path, "rules:\n  - name: x\n    kind: state\n"
                           "    match: {device_class: genset, point: ['alarm.*', engine.state]}\n")
    (rule,) = load_rules([path])
    assert matches(rule, "genset", "plant", "gen-1", "alarm.fail_to_start")
    assert matches(rule, "genset", "plant", "gen-1")
    assert not matches(rule, "genset", "plant", "gen-1", "fuel.level")
    assert not matches(rule, "ups", "plant", "ups-a", "alarm.fail_to_start")


SCHEDULE = ("rules:\n  - name: gen_test_overdue\n    kind: schedule\n    every: 31d\n    qualifying:\n"
            "      when: {all: [{point: engine.state, state: running}, {point: genset.load, at_least: 30}]}\n"
            "      for: 30m\n")


def test_schedule_rule_loads_with_numeric_terms(tmp_path):
    (rule,) = load_rules([write(tmp_path, SCHEDULE)])
    assert rule.every == 31 * 86400 and rule.qualifying.for_ == 1800
    load = rule.qualifying.when.all_terms[1]
    assert load.numeric() and load.admits(30) and not load.admits(29.9)


@pytest.mark.parametrize(("text", "line", "where", "message"), [
    (SCHEDULE.replace("    every: 31d\n", ""), 3, "rules[0].kind", "a schedule rule needs every"),
    (SCHEDULE.replace("every: 31d", "every: monthly"), 4, "rules[0].every", "must be a duration"),
    (SCHEDULE.replace("every: 31d", "every: 0s"), 4, "rules[0].every", "every must be longer than 0"),
    (SCHEDULE.replace("      for: 30m\n", "      for: 30m\n      hold: 1h\n"), 8, "rules[0].qualifying.hold",
     "unknown key"),
    (SCHEDULE.replace("for: 30m", "for: half an hour"), 7, "rules[0].qualifying.for", "must be a duration"),
    (SCHEDULE.replace("    qualifying:\n", "    qualifying_when:\n"), 5, "rules[0].qualifying_when", "unknown key"),
    (SCHEDULE.replace("at_least: 30", "at_least: 30, state: on"), 6, "rules[0].qualifying.when",
     "needs a state, or else becomes or bounds"),
    (SCHEDULE.replace("kind: schedule", "kind: state"), 4, "rules[0].every", "only schedule rules take every"),
    (SCHEDULE + "    scope: site\n", 8, "rules[0].scope", "a schedule rule is per device"),
])
def test_bad_schedule_rules_are_reported_with_file_and_line(tmp_path, text, line, where, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_rules([path])
    assert f"{path}:{line}: {where}" in str(exc.value) and message in str(exc.value)


def test_ring_redundancy_is_a_site_value(tmp_path):
    rule = "rules:\n  - name: x\n    kind: threshold\n    derived: ring_redundancy\n    critical: {above: 100}\n"
    with pytest.raises(ConfigError, match=r":4: rules\[0\]\.derived: ring_redundancy is a site value"):
        load_rules([write(tmp_path, rule)])
    (loaded,) = load_rules([write(tmp_path, rule + "    scope: site\n")])
    assert loaded.derived == "ring_redundancy"
    other = "rules:\n  - name: x\n    kind: threshold\n    scope: site\n    critical: {above: 100}\n"
    with pytest.raises(ConfigError, match=r":4: rules\[0\]\.scope: only a ring_redundancy"):
        load_rules([write(tmp_path, other)])
