"""Schedule rules: overdue generator tests and UPS self-tests, with their clock persisted across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.model import AlertState
from alerts.rules import Rule, load_rules
from alerts.state import AlertStateStore, ScheduleMark
from collectors.model import Quality, Reading
from config.load import Site, load_site
from tests.conftest import DEMO_CONFIG

GEN = "gen-1"
DAY, MIN = 86400.0, 60.0
# codes from the profiles: genset/dse_gencomm engine.state, ups/ietf_rfc1628 ups.test.result
STOPPED, RUNNING = 0.0, 3.0
DONE_PASS, DONE_WARNING, IN_PROGRESS = 1.0, 2.0, 5.0


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(DEMO_CONFIG)


@pytest.fixture(scope="module")
def shipped() -> dict[str, Rule]:
    return {rule.name: rule for rule in load_rules()}


def engine_for(site: Site, rules: list[Rule], path: str | Path = ":memory:") -> AlertEngine:
    return AlertEngine(site, rules, AlertStateStore(path), clock=lambda: 0.0)


def gen(ts: float, state: float | None, load: float | None, scenario: str | None = None) -> list[Reading]:
    return [Reading(GEN, point, ts, value, Quality.GOOD if value is not None else Quality.MISSING, scenario=scenario)
            for point, value in (("engine.state", state), ("genset.load", load))]


def run(engine: AlertEngine, start: float, minutes: int, load: float, scenario: str | None = None) -> None:
    """The set running at ``load`` % from ``start``, one poll every 2 s (the demo's poll interval)."""
    for k in range(minutes * 30 + 1):
        engine.observe(gen(start + 2 * k, RUNNING, load, scenario))
    engine.observe(gen(start + minutes * MIN + 2, STOPPED, 0.0, scenario))


def overdue(engine: AlertEngine, rule: str = "generator_test_overdue") -> list[dict]:
    return [dict(a.labels) | dict(a.annotations) for a in engine.alerts()
            if a.rule == rule and a.state is AlertState.FIRING]


def test_no_page_on_day_one_then_overdue_31_days_after_first_watch(site, shipped):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    engine.observe(gen(0, STOPPED, 0.0))
    assert engine.tick(0) == [] and engine.tick(31 * DAY) == []
    (alert,) = engine.tick(31 * DAY + 1)
    assert alert.state is AlertState.FIRING and alert.labels["device"] == GEN and "point" not in alert.labels
    assert alert.annotations["last_qualifying_test"].startswith("none seen since facwatch began watching gen-1")
    assert alert.value == pytest.approx(31, abs=0.01)


def test_a_qualifying_run_resolves_the_alert_on_the_reading_and_restarts_the_clock(site, shipped):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    engine.observe(gen(0, STOPPED, 0.0))
    engine.tick(32 * DAY)
    assert overdue(engine)
    run(engine, 32 * DAY, 31, 40.0)
    assert overdue(engine) == []  # resolved by the reading that completed 30 min, before any tick
    assert engine.schedules[("generator_test_overdue", GEN)].last_qualified == 32 * DAY + 30 * MIN
    assert engine.tick(63 * DAY + 30 * MIN) == []
    assert overdue(engine) == [] and engine.tick(63 * DAY + 31 * MIN)


@pytest.mark.parametrize(("minutes", "load"), [(20, 40.0), (40, 25.0), (40, 29.9)])
def test_a_short_or_light_run_does_not_qualify(site, shipped, minutes, load):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    run(engine, 0, minutes, load)
    assert engine.schedules[("generator_test_overdue", GEN)].last_qualified is None


def test_exactly_30_percent_for_30_minutes_qualifies(site, shipped):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    run(engine, 0, 30, 30.0)
    assert engine.schedules[("generator_test_overdue", GEN)].last_qualified == 30 * MIN


def test_missing_load_is_unknown_and_never_qualifies(site, shipped):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    for k in range(31 * 30):
        engine.observe(gen(2 * k, RUNNING, None))
    assert engine.schedules[("generator_test_overdue", GEN)].last_qualified is None


def test_a_gap_in_the_data_restarts_the_run(site, shipped):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    run(engine, 0, 20, 40.0)
    run(engine, 20 * MIN + 4, 15, 40.0)  # 35 min running, but the stop reading between splits it
    assert engine.schedules[("generator_test_overdue", GEN)].last_qualified is None
    for k in range(10 * 30):  # 10 min, then 20 s without any reading, then 25 min
        engine.observe(gen(DAY + 2 * k, RUNNING, 40.0))
    for k in range(25 * 30):
        engine.observe(gen(DAY + 10 * MIN + 20 + 2 * k, RUNNING, 40.0))
    assert engine.schedules[("generator_test_overdue", GEN)].last_qualified is None


def test_scenario_readings_neither_qualify_nor_start_the_clock(site, shipped):
    engine = engine_for(site, [shipped["generator_test_overdue"]])
    run(engine, 0, 40, 80.0, scenario="generator_test")
    assert engine.schedules == {} and engine.tick(40 * DAY) == []
    engine.observe(gen(DAY, STOPPED, 0.0))
    run(engine, 2 * DAY, 40, 80.0, scenario="generator_test")
    assert engine.schedules[("generator_test_overdue", GEN)] == ScheduleMark(DAY, None)


def test_restart_neither_forgets_a_test_nor_resets_the_clock(site, shipped, tmp_path):
    rules = [shipped["generator_test_overdue"], shipped["ups_self_test_overdue"]]
    path = tmp_path / "alerts.db"
    first = engine_for(site, rules, path)
    first.observe([Reading("ups-a", "ups.test.result", 0, DONE_PASS)])
    run(first, DAY, 31, 40.0)
    first.store.close()
    second = engine_for(site, rules, path)  # the same SQLite file, a new process
    second.observe([*gen(20 * DAY, STOPPED, 0.0), Reading("ups-a", "ups.test.result", 20 * DAY, DONE_PASS)])
    assert second.tick(31 * DAY) == []
    (ups,) = second.tick(31 * DAY + 1)  # counted from the first watch at 0, not from the restart at 20 d
    assert ups.rule == "ups_self_test_overdue" and ups.labels["device"] == "ups-a"
    (genset,) = second.tick(DAY + 30 * MIN + 31 * DAY + 1)  # counted from the test before the restart
    assert genset.annotations["last_qualifying_test"] == "1970-01-02 00:30 UTC"
    third = engine_for(site, rules, path)
    assert third.schedules == second.schedules  # the overdue alerts themselves are in alert_state as ever
    assert {a.rule for a in third.alerts()} == {"generator_test_overdue", "ups_self_test_overdue"}


def test_an_old_result_after_a_restart_is_not_a_new_test(site, shipped, tmp_path):
    path = tmp_path / "alerts.db"
    engine = engine_for(site, [shipped["ups_self_test_overdue"]], path)
    engine.observe([Reading("ups-a", "ups.test.result", 0, DONE_PASS)])
    engine.observe([Reading("ups-a", "ups.test.result", 60, DONE_WARNING)])  # a new result: counts
    assert engine.schedules[("ups_self_test_overdue", "ups-a")].last_qualified == 60
    engine.store.close()
    again = engine_for(site, [shipped["ups_self_test_overdue"]], path)
    again.observe([Reading("ups-a", "ups.test.result", 120, DONE_PASS)])  # unknown before: not a change
    assert again.schedules[("ups_self_test_overdue", "ups-a")].last_qualified == 60
    again.observe([Reading("ups-a", "ups.test.result", 180, IN_PROGRESS)])
    assert again.schedules[("ups_self_test_overdue", "ups-a")].last_qualified == 180


def test_the_clock_never_moves_backwards(tmp_path):
    store = AlertStateStore(tmp_path / "alerts.db")
    assert store.start_schedule("r", "d", 100) == ScheduleMark(100, None)
    assert store.start_schedule("r", "d", 200) == ScheduleMark(100, None)
    assert store.record_qualified("r", "d", 500) == ScheduleMark(100, 500)
    assert store.record_qualified("r", "d", 300) == ScheduleMark(100, 500)
    assert store.record_qualified("r", "e", 50) == ScheduleMark(50, 50)
    assert set(store.schedule_marks()) == {("r", "d"), ("r", "e")}


def test_a_quiet_tick_writes_nothing(site, shipped, tmp_path):
    engine = engine_for(site, [shipped["generator_test_overdue"]], tmp_path / "alerts.db")
    engine.observe(gen(0, STOPPED, 0.0))
    engine.tick(32 * DAY)
    logged = len(engine.store.transitions())
    for k in range(100):
        assert engine.tick(32 * DAY + 2 * k) == []
    assert len(engine.store.transitions()) == logged
