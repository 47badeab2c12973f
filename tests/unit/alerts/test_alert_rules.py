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
