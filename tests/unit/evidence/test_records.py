"""Evidence records round-trip through the shared SQLite file; drills are kept apart."""

from __future__ import annotations

import sqlite3

from evidence.records import EvidenceStore, GeneratorRun, PowerEvent, UpsSelfTest
from storage.sqlite import SqliteStore

T = 1_790_000_000.0


def run(start: float, scenario: str | None = None, **kwargs) -> GeneratorRun:
    return GeneratorRun(device="gen-1", kind="test_on_load", start=start, end=start + 2700, scenario=scenario,
                        **kwargs)


def test_generator_run_round_trips_with_its_lists_and_verdict(tmp_path):
    store = EvidenceStore(tmp_path / "facwatch.db")
    record = run(T, passed=False, reasons=["too short"], alarms=[{"point": "alarm.fail_to_start", "ts": T}],
                 criteria={"min_load_pct": 30.0, "fail_on": ["critical"]}, load_pct_mean=25.2)
    assert store.add(record) == 1
    (row,) = store.generator_runs(T, T + 1)
    assert row["id"] == 1 and row["device"] == "gen-1" and row["passed"] is False
    assert row["reasons"] == ["too short"] and row["alarms"] == [{"point": "alarm.fail_to_start", "ts": T}]
    assert row["criteria"] == {"min_load_pct": 30.0, "fail_on": ["critical"]}
    assert row["load_pct_mean"] == 25.2 and row["start_s"] is None and row["scenario"] is None


def test_every_record_type_has_its_table(tmp_path):
    store = EvidenceStore(tmp_path / "facwatch.db")
    store.add(UpsSelfTest(device="ups-a", start=T, end=T + 10, result="pass", vendor_result="donePass",
                          voltage_dip_v=44.6))
    store.add(PowerEvent(start=T, end=T + 600, ups={"ups-a": {"on_battery_s": 9.5}}, notes=["x"]))
    (test,) = store.ups_self_tests(T, T + 1)
    assert test["result"] == "pass" and test["seen_running"] is True and test["voltage_dip_v"] == 44.6
    (event,) = store.power_events(T, T + 1)
    assert event["ups"] == {"ups-a": {"on_battery_s": 9.5}} and event["notes"] == ["x"]
    assert event["mains_lost"] is True and event["load_lost"] is False


def test_reads_select_by_start_and_keep_drills_apart(tmp_path):
    store = EvidenceStore(tmp_path / "facwatch.db")
    for record in (run(T - 1), run(T), run(T + 50, scenario="generator_monthly_test"), run(T + 100)):
        store.add(record)
    assert [r["start"] for r in store.generator_runs(T, T + 100)] == [T]
    assert [r["start"] for r in store.generator_runs(T, T + 101)] == [T, T + 100]
    drills = store.generator_runs(T, T + 101, drills=True)
    assert [(r["start"], r["scenario"]) for r in drills] == [(T + 50, "generator_monthly_test")]


def test_tables_live_beside_the_readings_and_survive_reopening(tmp_path):
    path = tmp_path / "facwatch.db"
    readings = SqliteStore(path)
    EvidenceStore(path).add(run(T))
    again = EvidenceStore(path)  # CREATE ... IF NOT EXISTS: reopening keeps the rows
    assert len(again.generator_runs(T, T + 1)) == 1
    readings.close()
    tables = {name for (name,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"samples", "evidence_generator_run", "evidence_ups_self_test", "evidence_power_event"} <= tables
