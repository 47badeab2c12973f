"""`facwatch alerts test`: the shipped rule tests pass, cover every shipped rule, and failures are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.rules import load_rules
from alerts.ruletest import _expand, run_rule_tests
from config.yamlfile import load_yaml
from tests.conftest import DEMO_CONFIG, ROOT

RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.yaml"))


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_shipped_rule_tests_pass(path):
    ok, text = run_rule_tests(path)
    assert ok, text


def test_every_shipped_rule_has_a_rule_test():
    tested = {check["alertname"] for path in RULE_TESTS for case in load_yaml(path).data["tests"]
              for check in case["alert_rule_test"] if check.get("exp_alerts")}
    assert {rule.name for rule in load_rules()} - tested == set()


def test_value_notation_follows_promtool():
    assert _expand("1x2 _ 5+1x2 onBatteryx1 missing") == ["1", "1", "1", "_", "5.0", "6.0", "7.0",
                                                          "onBattery", "onBattery", "missing"]


def write_test(tmp_path: Path, body: str) -> Path:
    rules = ROOT / "config" / "rules" / "default.yaml"
    path = tmp_path / "t.yaml"
    path.write_text(f"site: {DEMO_CONFIG}\nrule_files: [{rules}]\ntests:\n{body}", encoding="utf-8")
    return path


def test_a_wrong_expectation_fails_with_exp_and_got(tmp_path):
    path = write_test(tmp_path, """
  - name: expects a page that never comes
    interval: 10s
    input_series: [{device: ups-a, point: output.source, values: "normalx3"}]
    alert_rule_test:
      - eval_time: 20s
        alertname: ups_on_battery
        exp_alerts: [{labels: {device: ups-a}}]
""")
    ok, text = run_rule_tests(path)
    assert not ok
    assert "FAILED: expects a page that never comes" in text and "got: []" in text and "0 passed, 1 failed" in text


def test_an_unknown_state_name_fails_the_test(tmp_path):
    path = write_test(tmp_path, """
  - name: typo
    input_series: [{device: ups-a, point: output.source, values: "batery"}]
    alert_rule_test: [{eval_time: 0s, alertname: ups_on_battery}]
""")
    ok, text = run_rule_tests(path)
    assert not ok and "'batery' is neither a number nor a state" in text


def test_a_bad_test_file_is_reported_like_a_bad_config(tmp_path):
    path = write_test(tmp_path, "  - name: x\n    input_series: []\n    alert_rule_test: []\n    extra: 1\n")
    ok, text = run_rule_tests(path)
    assert not ok and "t.yaml:7: tests[0].extra: unknown key" in text


def test_durations_in_the_value_notation_count_samples_per_interval():
    assert _expand("runningx1m _x2m", 30) == ["running"] * 3 + ["_"] * 5
    assert _expand("onx1m") == ["onx1m"]  # without an interval it is a token like any other


def test_series_can_start_late_and_month_long_tests_tick_sparsely(tmp_path):
    path = write_test(tmp_path, """
  - name: a UPS on battery 40 days in
    interval: 1m
    tick_every: 1d
    input_series:
      - {device: ups-a, point: output.source, values: "normal"}
      - {device: ups-a, point: output.source, start: 40d, interval: 10s, values: "batteryx1m"}
    alert_rule_test:
      - {eval_time: 39d, alertname: ups_on_battery}
      - eval_time: 40d30s
        alertname: ups_on_battery
        exp_alerts: [{labels: {device: ups-a}, severity: warning}]
""")
    ok, text = run_rule_tests(path)
    assert ok, text
