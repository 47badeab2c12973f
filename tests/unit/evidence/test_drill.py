"""Drill reports: times to alert, notification and ack from what the drill saw; expect sections; the drills
pack's record sets. No simulators here (tests/integration/test_drill.py runs a whole drill)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from alerts.model import Alert, AlertState, Severity
from config.yamlfile import ConfigError
from evidence.drill import (
    DrillClock,
    DrillOptions,
    _settled,
    build_report,
    drill_runs,
    drill_timings,
    record_drill,
    report_text,
    write_report,
)
from simulators.scenario import Expectation, Scenario, Step, load_scenario, load_scenarios

T0 = 1_800_000_000.0


class Plant:
    clock_s = 1000.0


def scenario(*expect: Expectation) -> Scenario:
    return Scenario("mains_failure", "utility fails", 600.0,
                    (Step(30.0, "utility", {"available": False}), Step(300.0, "utility", {"available": True})), expect)


def mains(state: AlertState = AlertState.FIRING, **labels) -> Alert:
    return Alert("mains_failure", {"site": "demo", **labels}, Severity.CRITICAL, state)


@pytest.fixture
def drill_dir(tmp_path: Path) -> Path:
    path = tmp_path / "drills" / "mains_failure-1"
    path.mkdir(parents=True)
    with sqlite3.connect(path / "facwatch.db") as conn:
        conn.executescript("""
            CREATE TABLE notify_outbox (id INTEGER PRIMARY KEY, receiver TEXT, group_key TEXT, batch TEXT,
                state TEXT, attempts INTEGER, next_attempt_at REAL, last_error TEXT, created_at REAL,
                delivered_at REAL);
            CREATE TABLE alert_state (fingerprint TEXT PRIMARY KEY, acknowledged_at REAL, acknowledged_by TEXT);
        """)
    return path


def seen(monkeypatch, fire_at: float, *, plant_at: float = 1100.0) -> DrillClock:
    """A drill clock that started at T0, saw the utility fail at T0 + 0.5 and the alert fire at ``fire_at``."""
    sim = SimpleNamespace(plant=Plant())
    clock = DrillClock(sim)
    monkeypatch.setattr("evidence.drill.time.time", lambda: T0)
    clock.start()
    monkeypatch.setattr("evidence.drill.time.time", lambda: T0 + 0.5)
    clock.step("mains_failure", Step(30.0, "utility", {"available": False}), 1030.0)
    sim.plant.clock_s = plant_at
    monkeypatch.setattr("evidence.drill.time.time", lambda: fire_at)
    clock.changed([mains(), Alert("ups_on_battery", {"device": "ups-a"}, Severity.WARNING, AlertState.PENDING)])
    clock.changed([mains()])  # still firing: the first firing counts
    return clock


def deliver(drill_dir: Path, alert: Alert, at: float, receiver: str = "pager") -> None:
    from alerts.notifiers import alert_to_dict

    batch = {"receiver": receiver, "group_key": "g", "status": "firing", "group_labels": {},
             "alerts": [alert_to_dict(alert)]}
    with sqlite3.connect(drill_dir / "facwatch.db") as conn:
        conn.execute("INSERT INTO notify_outbox (receiver, batch, state, created_at, delivered_at) "
                     "VALUES (?, ?, 'delivered', ?, ?)", (receiver, json.dumps(batch), at, at))


def ack(drill_dir: Path, alert: Alert, at: float, by: str) -> None:
    with sqlite3.connect(drill_dir / "facwatch.db") as conn:
        conn.execute("INSERT INTO alert_state VALUES (?, ?, ?)", (alert.fingerprint, at, by))


def site() -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(site=SimpleNamespace(id="demo")))


def test_report_measures_alert_notification_and_ack_from_the_scenario_start(monkeypatch, drill_dir):
    clock = seen(monkeypatch, T0 + 3.0)
    deliver(drill_dir, mains(), T0 + 4.5)
    ack(drill_dir, mains(), T0 + 9.0, "j.smith")
    expectation = Expectation("mains_failure", {}, 30.0, 60.0)
    report = build_report(site(), scenario(expectation), DrillOptions("mains_failure", notify=Path("n.yaml")),
                          drill_dir, clock, 60.0)
    [row] = report["expected"]
    assert (report["result"], row["result"]) == ("pass", "pass")
    assert (row["to_alert_s"], row["from_cause_s"], row["to_alert_plant_s"]) == (3.0, 2.5, 100.0)
    assert (row["to_notification_s"], row["notified_receiver"]) == (4.5, "pager")
    assert (row["to_ack_s"], row["acknowledged_by"], row["ack_after_alert_s"]) == (9.0, "j.smith", 6.0)
    assert report["steps"][0]["wall_s"] == 0.5 and report["other_alerts"] == []
    text = report_text(report)
    assert "mains_failure                PASS  alert 3.0 s (2.5 s after its cause, budget 60 s" in text
    assert "notification 4.5 s via pager; acknowledgement 9.0 s by j.smith" in text


def test_an_alert_over_budget_or_never_fired_fails_the_drill(monkeypatch, drill_dir):
    clock = seen(monkeypatch, T0 + 80.0)
    report = build_report(site(), scenario(Expectation("mains_failure", {}, 30.0, 60.0),
                                           Expectation("generator_alarm", {}, 30.0, 60.0)),
                          DrillOptions("mains_failure"), drill_dir, clock, 60.0)
    late, never = report["expected"]
    assert report["result"] == "fail"
    assert (late["result"], late["why"]) == ("fail", "fired 79.5 s after its cause, budget 60 s")
    assert (never["fired"], never["why"]) == (False, "the alert never fired")
    assert late["notified_at"] is None and late["acknowledged_at"] is None
    assert "generator_alarm              FAIL  never fired" in report_text(report)


def test_labels_narrow_an_expectation_and_unmatched_alerts_are_listed(monkeypatch, drill_dir):
    clock = seen(monkeypatch, T0 + 3.0)
    report = build_report(site(), scenario(Expectation("mains_failure", {"site": "other"}, 30.0, 60.0)),
                          DrillOptions("mains_failure"), drill_dir, clock, 60.0)
    assert report["expected"][0]["fired"] is False
    assert [a["alert"] for a in report["other_alerts"]] == ["mains_failure"]


def test_settled_waits_for_notification_and_unattended_ack(monkeypatch, drill_dir):
    clock = seen(monkeypatch, T0 + 3.0)
    plan = scenario(Expectation("mains_failure", {}, 30.0, 60.0))
    options = DrillOptions("mains_failure", notify=Path("n.yaml"), ack_after=2.0)
    db = drill_dir / "facwatch.db"
    assert not _settled(options, db, clock, plan)
    deliver(drill_dir, mains(), T0 + 4.0)
    assert not _settled(options, db, clock, plan)
    ack(drill_dir, mains(), T0 + 5.0, "drill (unattended)")
    assert _settled(options, db, clock, plan)


def test_reports_are_written_as_json_and_text_and_kept_for_the_drills_pack(monkeypatch, drill_dir, tmp_path):
    clock = seen(monkeypatch, T0 + 3.0)
    report = build_report(site(), scenario(Expectation("mains_failure", {}, 30.0, 60.0)),
                          DrillOptions("mains_failure"), drill_dir, clock, 60.0)
    report["started_at"], report["ended_at"] = "2027-01-15T08:00:00Z", "2027-01-15T08:10:00Z"
    json_path, text_path = write_report(report, tmp_path / "out" / "report.json")
    assert json.loads(json_path.read_text())["format"] == "facwatch-drill-report/1"
    assert text_path.name == "report.txt" and "PASS" in text_path.read_text()
    main = tmp_path / "facwatch.db"
    assert record_drill(main, report) == 1
    [run] = drill_runs(main, T0 - 60, T0 + 60)
    assert (run["scenario"], run["result"], run["started_at"]) == ("mains_failure", "pass", "2027-01-15T08:00:00Z")
    [timing] = drill_timings(main, T0 - 60, T0 + 60)
    assert (timing["drill_id"], timing["alert"], timing["to_alert_s"]) == (1, "mains_failure", 3.0)
    assert drill_runs(main, T0 + 60, T0 + 120) == []


def test_shipped_scenarios_with_expectations_include_mains_failure():
    expect = load_scenarios()["mains_failure"].expect
    assert expect == (Expectation("mains_failure", {}, 30.0, 60.0),)


@pytest.mark.parametrize(("expect", "message"), [
    ("{alert: mains_failure, after: 45s, within: 1m}", "bad.yaml:7: expect[0].after: after 45 s is not the time of a "
                                                       "step (0, 30)"),
    ("{alert: mains_failure, within: 0s}", "expect[0].within: must be more than 0"),
    ("{alert: mains_failure, after: 30s}", "expect[0].within: required key is missing"),
])
def test_an_expectation_must_point_at_a_step_and_have_a_budget(tmp_path, expect, message):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndescription: x\nduration: 5m\nsteps:\n  - {at: 30s, do: utility, available: false}\n"
                    f"expect:\n  - {expect}\n")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert message in str(caught.value)
