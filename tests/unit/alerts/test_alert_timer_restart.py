"""Timers across a restart (real SQLite file, fake clock): a clear delay or `for` under way resumes with the
time it had run, the downtime never counts, and a qualifying test run under way survives a short gap."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import TIMER_SAVE_S, AlertEngine
from alerts.model import AlertState
from alerts.rules import Level, Match, Rule, load_rules
from alerts.state import AlertStateStore, RunMark, Timer
from collectors.model import Quality, Reading
from config.load import Site, load_site
from tests.conftest import DEMO_CONFIG

SENSOR, TEMP = "dh1-rack-a01-inlet", "ambient.temperature"  # polled every 2 s in the demo site
GEN = "gen-1"
MIN, HOUR = 60.0, 3600.0
STOPPED, RUNNING = 0.0, 3.0  # genset/dse_gencomm engine.state codes


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(DEMO_CONFIG)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "facwatch.db"


def temp_rule(**kwargs) -> Rule:
    return Rule.model_validate({"name": "inlet_hot", "kind": "threshold", "warning": Level(above=23),
                                "match": Match(device_class=("thsensor",), point=(TEMP,)), **kwargs})


def start(site: Site, rules: list[Rule], db: Path) -> AlertEngine:
    """A new process on the same SQLite file."""
    return AlertEngine(site, rules, AlertStateStore(db), clock=lambda: 0.0)


def restart(engine: AlertEngine, site: Site, rules: list[Rule], db: Path) -> AlertEngine:
    engine.store.close()
    return start(site, rules, db)


def poll(engine: AlertEngine, start_ts: float, end_ts: float, value: float | None) -> list:
    """One reading every 2 s from start_ts to end_ts inclusive (None: the sensor does not answer)."""
    changes = []
    ts = start_ts
    while ts <= end_ts:
        quality = Quality.GOOD if value is not None else Quality.MISSING
        changes += engine.observe([Reading(SENSOR, TEMP, ts, value, quality)])
        changes += engine.tick(ts + 1)
        ts += 2
    return changes


def first_resolve(changes: list) -> float | None:
    return next((a.resolved_at for a in changes if a.state is AlertState.RESOLVED), None)


# -- clear delay ------------------------------------------------------------------------------------------

def test_a_clear_delay_resumes_with_the_time_cleared_before_the_restart(site, db):
    rules = [temp_rule(clear_for=300)]
    engine = start(site, rules, db)
    poll(engine, 0, 8, 24.0)
    assert poll(engine, 10, 250, 21.0) == []  # clear for 4 of the 5 minutes, then facwatch stops
    engine = restart(engine, site, rules, db)
    back = 250 + HOUR  # an hour down: were the downtime counted, the first reading would resolve
    resolved = first_resolve(poll(engine, back, back + 300, 21.0))
    assert resolved is not None and back + 60 - TIMER_SAVE_S <= resolved <= back + 60
    assert engine.store.timers() == {}  # the timer ended with the alert


def test_the_downtime_is_not_a_clear_and_missing_data_after_it_holds(site, db):
    rules = [temp_rule(clear_for=300)]
    engine = start(site, rules, db)
    poll(engine, 0, 8, 24.0)
    poll(engine, 10, 30, 21.0)  # 20 s clear, then down for two hours
    engine = restart(engine, site, rules, db)
    back = 30 + 2 * HOUR
    assert poll(engine, back, back + 600, None) == []  # the sensor silent after the restart: hold
    changes = poll(engine, back + 602, back + 1000, 21.0)
    assert first_resolve(changes) == pytest.approx(back + 602 + 280, abs=TIMER_SAVE_S)


def test_a_condition_back_at_the_restart_ends_the_clear_delay(site, db):
    rules = [temp_rule(clear_for=300)]
    engine = start(site, rules, db)
    poll(engine, 0, 8, 24.0)
    poll(engine, 10, 250, 21.0)
    engine = restart(engine, site, rules, db)
    poll(engine, 1000, 1004, 24.0)  # hot again: the 4 minutes are gone
    assert engine.store.timers() == {}
    assert first_resolve(poll(engine, 1006, 1400, 21.0)) == 1006 + 300


def test_two_restarts_add_up_only_the_clear_time_seen(site, db):
    rules = [temp_rule(clear_for=300)]
    engine = start(site, rules, db)
    poll(engine, 0, 8, 24.0)
    poll(engine, 10, 130, 21.0)  # 120 s
    engine = restart(engine, site, rules, db)
    assert poll(engine, 1000, 1100, 21.0) == []  # + 100 s
    (timer,) = restart(engine, site, rules, db).store.timers().values()
    assert timer.kind == "clearing" and timer.held == pytest.approx(220, abs=TIMER_SAVE_S)
    engine = start(site, rules, db)
    assert first_resolve(poll(engine, 5000, 5200, 21.0)) == pytest.approx(5080, abs=TIMER_SAVE_S)


def test_a_latched_alert_never_starts_a_clear_timer(site, db):
    rules = [temp_rule(clear_for=60, latch=True)]
    engine = start(site, rules, db)
    poll(engine, 0, 8, 24.0)
    poll(engine, 10, 100, 21.0)
    assert engine.store.timers() == {}
    engine = restart(engine, site, rules, db)
    assert poll(engine, 1000, 1200, 21.0) == [] and [a.state for a in engine.alerts()] == [AlertState.FIRING]


# -- `for` ------------------------------------------------------------------------------------------------

def test_a_pending_for_resumes_without_counting_the_downtime(site, db):
    rules = [temp_rule(**{"for": 300})]
    engine = start(site, rules, db)
    poll(engine, 0, 200, 24.0)  # pending for 200 of 300 s
    assert engine.store.timers()[engine.alerts()[0].fingerprint] == Timer("pending", 0, 200)
    engine = restart(engine, site, rules, db)
    back = 200 + HOUR
    assert poll(engine, back, back + 90, 24.0) == []  # the old code fired at once: 3800 s since active_since
    fired = [a for a in poll(engine, back + 92, back + 200, 24.0) if a.state is AlertState.FIRING]
    assert fired[0].fired_at == back + 100 and fired[0].active_since == 0  # the real start is still shown


def test_a_pending_alert_clear_at_the_restart_goes_inactive(site, db):
    rules = [temp_rule(**{"for": 300})]
    engine = start(site, rules, db)
    poll(engine, 0, 200, 24.0)
    engine = restart(engine, site, rules, db)
    (change,) = poll(engine, 1000, 1000, 21.0)
    assert change.state is AlertState.INACTIVE and engine.store.timers() == {}
    assert poll(engine, 1002, 1290, 24.0)[0].state is AlertState.PENDING  # a new episode counts from 0
    assert [a.fired_at for a in poll(engine, 1292, 1310, 24.0)] == [1302]


def test_a_pending_alert_without_a_saved_timer_starts_its_for_over(site, db):
    rules = [temp_rule(**{"for": 300})]
    engine = start(site, rules, db)
    poll(engine, 0, 200, 24.0)
    with engine.store.conn:
        engine.store.conn.execute("DELETE FROM alert_timer")  # a file written before timers were stored
    engine = restart(engine, site, rules, db)
    assert poll(engine, 1000, 1298, 24.0) == []
    assert [a.fired_at for a in poll(engine, 1300, 1300, 24.0)] == [1300]


def test_a_timer_that_ends_within_timer_save_s_is_never_written(site, db):
    engine = start(site, [temp_rule(clear_for=60, **{"for": 60})], db)
    writes = []
    engine.store.conn.set_trace_callback(lambda sql: writes.append(sql) if "alert_timer" in sql else None)
    for k in range(50):  # a flickering sensor: pending for 4 s, then clear
        poll(engine, 10 * k, 10 * k + 4, 24.0)
        poll(engine, 10 * k + 6, 10 * k + 8, 21.0)
    assert writes == [] and engine.store.timers() == {}


def test_a_running_timer_is_saved_at_most_every_timer_save_s(site, db):
    engine = start(site, [temp_rule(clear_for=3600)], db)
    poll(engine, 0, 8, 24.0)
    writes = []
    engine.store.conn.set_trace_callback(lambda sql: writes.append(sql) if "alert_timer" in sql else None)
    poll(engine, 10, 10 + 600, 21.0)  # 301 readings and ticks
    assert len(writes) <= 600 / TIMER_SAVE_S + 2


# -- qualifying runs of schedule rules --------------------------------------------------------------------

@pytest.fixture(scope="module")
def gen_rule() -> Rule:
    return next(rule for rule in load_rules() if rule.name == "generator_test_overdue")


def genset(engine: AlertEngine, start_ts: float, end_ts: float, state: float, load: float) -> None:
    ts = start_ts
    while ts <= end_ts:
        engine.observe([Reading(GEN, "engine.state", ts, state), Reading(GEN, "genset.load", ts, load)])
        ts += 2


def last_test(engine: AlertEngine, rule: Rule) -> float | None:
    return engine.schedules[(rule.name, GEN)].last_qualified


def test_a_test_run_survives_a_restart_within_the_stale_limit(site, db, gen_rule):
    engine = start(site, [gen_rule], db)
    genset(engine, 0, 20 * MIN, RUNNING, 40.0)  # 20 minutes into the monthly test
    assert engine.store.schedule_runs() == {(gen_rule.name, GEN): RunMark(0, 20 * MIN)}
    engine = restart(engine, site, [gen_rule], db)
    genset(engine, 20 * MIN + 4, 31 * MIN, RUNNING, 40.0)  # back 4 s later (limit: 3 polls of 2 s)
    assert last_test(engine, gen_rule) == 30 * MIN
    genset(engine, 31 * MIN + 2, 31 * MIN + 2, STOPPED, 0.0)
    assert engine.store.schedule_runs() == {}  # the run ended


@pytest.mark.parametrize("gap", [8.0, HOUR])
def test_a_test_run_starts_over_after_a_longer_gap(site, db, gen_rule, gap):
    engine = start(site, [gen_rule], db)
    genset(engine, 0, 20 * MIN, RUNNING, 40.0)
    engine = restart(engine, site, [gen_rule], db)
    back = 20 * MIN + gap  # nobody saw the set in between: it may have stopped
    genset(engine, back, back + 29 * MIN, RUNNING, 40.0)
    assert last_test(engine, gen_rule) is None
    genset(engine, back + 29 * MIN + 2, back + 31 * MIN, RUNNING, 40.0)
    assert last_test(engine, gen_rule) == back + 30 * MIN


def test_a_test_run_starts_over_when_the_set_stopped_at_the_restart(site, db, gen_rule):
    engine = start(site, [gen_rule], db)
    genset(engine, 0, 20 * MIN, RUNNING, 40.0)
    engine = restart(engine, site, [gen_rule], db)
    genset(engine, 20 * MIN + 2, 20 * MIN + 2, STOPPED, 0.0)
    genset(engine, 20 * MIN + 4, 40 * MIN, RUNNING, 40.0)
    assert last_test(engine, gen_rule) is None


def test_the_rules_stale_after_sets_how_long_a_restart_may_take(site, db, gen_rule):
    tolerant = gen_rule.model_copy(update={"stale_after": 60.0})  # 60 polls of 2 s
    engine = start(site, [tolerant], db)
    genset(engine, 0, 20 * MIN, RUNNING, 40.0)
    engine = restart(engine, site, [tolerant], db)
    genset(engine, 21 * MIN, 31 * MIN, RUNNING, 40.0)  # a one-minute restart
    assert last_test(engine, tolerant) == 30 * MIN


def test_a_credited_run_is_not_credited_again_after_a_restart(site, db, gen_rule):
    engine = start(site, [gen_rule], db)
    genset(engine, 0, 35 * MIN, RUNNING, 40.0)
    assert last_test(engine, gen_rule) == 30 * MIN
    engine = restart(engine, site, [gen_rule], db)
    genset(engine, 35 * MIN + 2, 70 * MIN, RUNNING, 40.0)  # the same run goes on
    assert last_test(engine, gen_rule) == 30 * MIN
