"""Envelope compliance from stored readings equals a hand-computed fixture exactly, gaps included."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from alerts.model import Alert, AlertState
from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.model import Quality, Reading, Severity
from config.load import load_site
from evidence.compliance import envelope_compliance, envelopes, months, rule_hash
from storage.sqlite import SqliteStore
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "data" / "evidence_compliance.yaml"
SITE = ROOT / "tests" / "data" / "sites" / "evidence_rooms.yaml"
SENSOR, TEMP, HUMIDITY = "dh1-inlet-1", "ambient.temperature", "ambient.humidity"
TEMP_RULE, HUMIDITY_RULE = "inlet_temperature_out_of_envelope", "inlet_humidity_out_of_envelope"


@pytest.fixture(scope="module")
def fixture() -> dict:
    return YAML(typ="safe").load(FIXTURE)


@pytest.fixture(scope="module")
def t0(fixture) -> float:
    text = fixture["t0"].rstrip("Z")
    date, clock = text.split("T")
    return float(calendar.timegm((*map(int, date.split("-")), *map(int, clock.split(":")))))


def build_store(path: Path, fixture: dict, t0: float) -> None:
    store = SqliteStore(path)
    quality = {"good": Quality.GOOD, "missing": Quality.MISSING, "invalid": Quality.INVALID}
    store.write([Reading(SENSOR, TEMP, t0 + offset, value, quality[q], scenario=scenario)
                 for offset, value, q, scenario in fixture["samples"]])
    store.close()
    alerts = AlertStateStore(path)
    labels = {"site": "evidence", "device": SENSOR, "room": "dh1", "device_class": "thsensor", "point": TEMP}
    for spec in fixture["alerts"]:
        if spec["scenario"]:
            labels = {**labels, "scenario": spec["scenario"]}
        previous = AlertState.INACTIVE
        since = t0 + spec["transitions"][0][1]
        for state, at in spec["transitions"]:
            alert = Alert(TEMP_RULE, labels, Severity.CRITICAL, AlertState(state), active_since=since,
                          updated_at=t0 + at, scenario=spec["scenario"])
            alerts.save(alert, previous)
            previous = alert.state
        if spec["ack"]:
            ack = spec["ack"]
            alerts.acknowledge(alert.fingerprint, ack["by"], ack["note"], t0 + ack["at"])
    alerts.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory, fixture, t0) -> list[dict]:
    path = tmp_path_factory.mktemp("compliance") / "facwatch.db"
    build_store(path, fixture, t0)
    start, end = fixture["period"]
    return envelope_compliance(path, load_site(SITE), t0 + start, t0 + end)


def absolute(excursion: dict, t0: float) -> dict:
    out = {**excursion, "start": t0 + excursion["start"], "end": t0 + excursion["end"]}
    if excursion["alert"]:
        alert = excursion["alert"]
        out["alert"] = {**alert, "from": t0 + alert["from"], "to": t0 + alert["to"],
                        "acknowledged_at": t0 + alert["acknowledged_at"]}
    return out


def row(report: list[dict], month: str, point: str, level: str) -> dict:
    (found,) = [r for r in report if r["month"] == month and r["point"] == point and r["level"] == level]
    return found


@pytest.mark.parametrize("month", ["2026-10", "2026-11"])
@pytest.mark.parametrize("level", ["warning", "critical"])
def test_temperature_figures_equal_the_hand_computed_fixture(report, fixture, t0, month, level):
    expected = fixture["expected"][month][level]
    got = row(report, month, TEMP, level)
    for key in ("inside_s", "outside_s", "gap_s", "inside_pct", "outside_pct", "gap_pct", "gap_count",
                "longest_gap_s"):
        assert got[key] == expected[key], key
    assert got["period_s"] == 1800
    assert got["inside_s"] + got["outside_s"] + got["gap_s"] == got["period_s"]
    keys = ("from", "to", "fired", "acknowledged_by", "acknowledged_at", "ack_note")
    excursions = [{**e, "alert": {k: e["alert"][k] for k in keys} if e["alert"] else None}
                  for e in got["excursions"]]
    assert excursions == [absolute(e, t0) for e in expected["excursions"]]


def test_a_point_never_stored_is_all_gap_never_compliant(report):
    for month in ("2026-10", "2026-11"):
        for level in ("warning", "critical"):
            got = row(report, month, HUMIDITY, level)
            assert (got["inside_s"], got["outside_s"], got["gap_s"], got["gap_pct"]) == (0, 0, 1800, 100.0)
            assert got["excursions"] == []


def test_rows_name_the_room_rule_and_its_version(report):
    rules = {rule.name: rule for rule in load_rules()}
    for got in report:
        assert got["room"] == "dh1" and got["device"] == SENSOR
        assert got["rule"] == (TEMP_RULE if got["point"] == TEMP else HUMIDITY_RULE)
        assert got["rule_hash"] == rule_hash(rules[got["rule"]])
    assert row(report, "2026-10", TEMP, "warning")["limits"] == {"below": 19.0, "above": 23.0}
    assert len(report) == 2 * 2 * 2  # months × points × levels


def test_rule_hash_changes_with_the_envelope():
    rule = next(r for r in load_rules() if r.name == TEMP_RULE)
    changed = rule.model_copy(update={"warning": rule.warning.model_copy(update={"above": 24})})
    assert rule_hash(rule) != rule_hash(changed)
    assert rule_hash(rule) == rule_hash(rule.model_copy())


def test_envelopes_are_the_levels_of_the_plain_threshold_rules():
    found = {rule.name: [e.level for e in levels] for rule, levels in envelopes(load_rules())}
    assert found == {TEMP_RULE: ["warning", "critical"], HUMIDITY_RULE: ["warning", "critical"]}


def test_months_cut_at_utc_month_boundaries():
    start = calendar.timegm((2026, 12, 31, 12, 0, 0))
    end = calendar.timegm((2027, 2, 2, 0, 0, 0))
    cuts = list(months(start, end))
    assert [(a, b) for a, b in cuts] == [
        (start, calendar.timegm((2027, 1, 1, 0, 0, 0))),
        (calendar.timegm((2027, 1, 1, 0, 0, 0)), calendar.timegm((2027, 2, 1, 0, 0, 0))),
        (calendar.timegm((2027, 2, 1, 0, 0, 0)), end)]
