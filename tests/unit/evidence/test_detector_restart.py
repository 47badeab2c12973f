"""Evidence detectors across a restart of facwatch: runs, self-tests and incidents continue from the SQLite file.

Each sequence is fed with facwatch down during [down, up): those polls are lost, and at ``up`` a new
EvidenceRecorder opens the same file (its clock at ``up``). The same sequence with the same polls lost but
no restart (a data gap, with a tick at ``up``) is the reference: a restart must be handled as a data gap,
except that the gap is never credited as time on load, and the record says facwatch restarted.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from config.load import Site, load_site
from evidence.detectors import EvidenceRecorder
from evidence.records import STATE_TABLE
from tests.unit.evidence.test_detectors import SITE, Feed, T, mains_failure, run_test

STALE_S = 900.0  # GeneratorCriteria().stale_after_s
IGNORED = {"id", "notes"}  # what a restart may change in a record (besides time on load, checked apart)


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE)


def open_recorder(site: Site, path: Path, at: float) -> EvidenceRecorder:
    return EvidenceRecorder(site, path, clock=lambda: T + at)


class GapFeed(Feed):
    """Loses every poll in [down, up); at ``up`` facwatch restarts on the same file (or, restart=False, ticks)."""

    def __init__(self, site: Site, path: Path, down: float, up: float, *, restart: bool = True):
        super().__init__(site, open_recorder(site, path, 0.0))
        self.path, self.down, self.up, self.restart, self.resumed = path, down, up, restart, False

    def poll(self, device: str, t: float, points, scenario: str | None = None):
        if self.down <= t < self.up:
            return []
        if t >= self.up:
            self.resume()
        return super().poll(device, t, points, scenario)

    def resume(self) -> None:
        """facwatch is back (or, without a restart, the clock ticks after the data gap)."""
        if self.resumed:
            return
        self.resumed = True
        if self.restart:
            self.recorder.close()
            self.recorder = open_recorder(self.site, self.path, self.up)
        else:
            self.recorder.tick(T + self.up)

    def rows(self, kind: str) -> list[dict]:
        """The stored records of one kind (real events, not drills)."""
        return getattr(self.recorder.store, kind)(T - 1, T + 100_000)


def states(path: Path) -> dict[str, dict]:
    with sqlite3.connect(path) as conn:
        return {name: json.loads(state) for name, state in conn.execute(f"SELECT detector, state FROM {STATE_TABLE}")}


def same_but_notes(a: dict, b: dict, *also: str) -> bool:
    ignored = IGNORED | set(also)
    return {k: v for k, v in a.items() if k not in ignored} == {k: v for k, v in b.items() if k not in ignored}


def restart_note(at: float) -> str:
    return f"facwatch restarted at {_utc(T + at)} during"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


# --- generator runs -------------------------------------------------------------------------------

def test_monthly_test_across_a_short_restart_is_one_passing_record_with_a_note(site, tmp_path):
    whole = Feed(site, open_recorder(site, tmp_path / "whole.db", 0.0))
    (uninterrupted,) = run_test(whole, minutes=40, load_pct=60.0)
    gap = GapFeed(site, tmp_path / "gap.db", 1200, 1230, restart=False)
    run_test(gap, minutes=40, load_pct=60.0)
    feed = GapFeed(site, tmp_path / "restart.db", 1200, 1230)  # 20 min into the test, 30 s down
    run_test(feed, minutes=40, load_pct=60.0)

    (run,) = feed.rows("generator_runs")
    assert run["kind"] == uninterrupted.kind == "test_on_load"
    assert run["passed"] is uninterrupted.passed is True and run["reasons"] == []
    assert len(run["notes"]) == 1 and run["notes"][0].startswith(restart_note(1230) + " the run")
    # the 40 s between the last poll before (1190) and the first after (1230) are not time on load;
    # the data gap holds the last load over them (at most max_hold_s), as before
    (gapped,) = gap.rows("generator_runs")
    assert run["time_on_load_s"] == pytest.approx(gapped["time_on_load_s"] - 40)
    assert run["longest_at_min_load_s"] == pytest.approx(gapped["longest_at_min_load_s"] - 40)
    assert same_but_notes(run, gapped, "time_on_load_s", "time_at_min_load_s", "longest_at_min_load_s",
                          "load_pct_mean", "load_kw_mean")
    assert gapped["notes"] == []


def test_restarted_run_is_not_ended_by_the_first_polls_before_the_ats_reports(site, tmp_path):
    feed = GapFeed(site, tmp_path / "restart.db", 1200, 1230)
    run_test(feed, minutes=40, load_pct=60.0)
    (run,) = feed.rows("generator_runs")
    # the genset polls at 1230 before the ATS (1232): an empty view must not take the load off the generator
    assert run["unloaded_at"] is not None and run["unloaded_at"] > T + 2400
    assert run["longest_at_min_load_s"] >= 30 * 60


def test_restart_longer_than_stale_after_closes_the_run_as_a_data_gap_does(site, tmp_path):
    down, up = 1200.0, 1200.0 + STALE_S + 100
    gap = GapFeed(site, tmp_path / "gap.db", down, up, restart=False)
    run_test(gap, minutes=40, load_pct=60.0)
    feed = GapFeed(site, tmp_path / "restart.db", down, up)
    run_test(feed, minutes=40, load_pct=60.0)

    runs, gapped = feed.rows("generator_runs"), gap.rows("generator_runs")
    assert len(runs) == len(gapped) == 2  # closed at the last data, then a new run from the first poll after
    first = runs[0]
    assert first["end"] == T + 1190 and first["passed"] is False
    assert first["reasons"][0] == f"no data after {_utc(T + 1190)}: run end not seen"
    assert first["notes"] == [f"{restart_note(up)} the run"]
    assert same_but_notes(first, gapped[0])
    # the second run starts after the gap; the data gap's view still holds the ATS poll of 1192, the restarted
    # one waits for the ATS's next poll: 10 s less time on load, the same verdict
    def verdict(rows):
        return [(r["kind"], r["start"], r["passed"]) for r in rows]
    assert verdict(runs) == verdict(gapped)
    assert runs[1]["notes"] == []


def test_run_state_is_saved_while_running_and_gone_with_its_record(site, tmp_path):
    path = tmp_path / "facwatch.db"
    feed = Feed(site, open_recorder(site, path, 0.0))
    feed.genset(0, "stopped")
    feed.genset(10, "running", mode="manual", rated=True)
    assert list(states(path)["generator_run"]["runs"]) == ["gen-1"]
    feed.genset(20, "running", mode="manual", rated=True)
    assert states(path)["generator_run"]["runs"]["gen-1"]["last_poll"] == T + 20
    (record,) = feed.poll("gen-1", 30, {"engine.state": "stopped"})
    assert record.end == T + 30
    assert states(path)["generator_run"]["runs"] == {}  # stored in the transaction that stored the record
    assert len(feed.recorder.store.generator_runs(T, T + 100)) == 1


def test_a_failed_state_write_stores_no_record_either(site, tmp_path):
    path = tmp_path / "facwatch.db"
    feed = Feed(site, open_recorder(site, path, 0.0))
    feed.genset(0, "stopped")
    feed.genset(10, "running", mode="manual", rated=True)
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TRIGGER full BEFORE INSERT ON {STATE_TABLE} BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(sqlite3.Error, match="disk full"):
        feed.poll("gen-1", 30, {"engine.state": "stopped"})
    assert feed.recorder.store.generator_runs(T, T + 100) == []  # one transaction: neither was written
    assert list(states(path)["generator_run"]["runs"]) == ["gen-1"]
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER full")
    feed.genset(40, "stopped")  # the next transaction carries the record that could not be stored
    assert len(feed.recorder.store.generator_runs(T, T + 100)) == 1
    assert states(path)["generator_run"]["runs"] == {}


def test_at_rest_figures_wait_for_a_tick(site, tmp_path):
    path = tmp_path / "facwatch.db"
    feed = Feed(site, open_recorder(site, path, 0.0))
    feed.genset(0, "stopped", fuel=85.0)
    assert "generator_run" not in states(path)  # a stopped engine's poll is no reason to write
    feed.recorder.tick(T + 60)
    assert states(path)["generator_run"] == {"runs": {}, "last_stopped": {"gen-1": T}, "fuel_at_rest": {"gen-1": 85.0}}
    again = open_recorder(site, path, 120)
    assert again.generators.last_stopped == {"gen-1": T} and again.generators.fuel_at_rest == {"gen-1": 85.0}


# --- UPS self-tests -------------------------------------------------------------------------------

def self_test(feed: Feed) -> None:
    """Running from 10 to 60 (polls every 10 s, lowest volts at 50), donePass at 70."""
    feed.ups(0)
    for t, volts in ((10, 505.0), (20, 500.0), (30, 498.0), (40, 497.0), (50, 495.0), (60, 496.0)):
        feed.ups(t, "battery", test="inProgress", volts=volts, runtime=47.0 - t / 50, charge=99.5)
    feed.ups(70, "normal", test="donePass", volts=541.0)
    feed.ups(80, "normal", test="donePass")


def test_self_test_across_a_short_restart_is_one_record_with_a_note(site, tmp_path):
    whole = Feed(site, open_recorder(site, tmp_path / "whole.db", 0.0))
    self_test(whole)
    (uninterrupted,) = whole.recorder.store.ups_self_tests(T - 1, T + 1000)
    feed = GapFeed(site, tmp_path / "restart.db", 25, 45)
    self_test(feed)
    (test,) = feed.rows("ups_self_tests")
    assert same_but_notes(test, uninterrupted)
    assert (test["start"], test["end"], test["result"]) == (T + 10, T + 70, "pass")
    assert test["notes"] == [f"{restart_note(45)} the test"] and uninterrupted["notes"] == []
    assert "ups-a" not in states(tmp_path / "restart.db")["ups_self_test"]["tests"]


def test_self_test_after_a_long_restart_ends_at_the_last_data_with_its_result(site, tmp_path):
    down, up = 25.0, 25.0 + STALE_S + 100
    gap = GapFeed(site, tmp_path / "gap.db", down, up, restart=False)
    gap_test(gap, up)
    feed = GapFeed(site, tmp_path / "restart.db", down, up)
    gap_test(feed, up)
    (test,) = feed.rows("ups_self_tests")
    (gapped,) = gap.rows("ups_self_tests")
    assert same_but_notes(test, gapped)
    assert (test["start"], test["end"], test["result"], test["vendor_result"]) == (T + 10, T + 20, "pass", "donePass")
    assert test["notes"] == [f"{restart_note(up)} the test", f"no data after {_utc(T + 20)}: test end not seen"]
    assert gapped["notes"] == [f"no data after {_utc(T + 20)}: test end not seen"]


def gap_test(feed: Feed, up: float) -> None:
    feed.ups(0)
    feed.ups(10, "battery", test="inProgress", volts=500.0)
    feed.ups(20, "battery", test="inProgress", volts=495.0)
    feed.ups(up, "normal", test="donePass")
    feed.ups(up + 10, "normal", test="donePass")


# --- power events ---------------------------------------------------------------------------------

def test_mains_failure_across_a_short_restart_is_one_event_with_its_kpis(site, tmp_path):
    whole = Feed(site, open_recorder(site, tmp_path / "whole.db", 0.0))
    mains_failure(whole)
    (uninterrupted,) = whole.recorder.store.power_events(T - 1, T + 10_000)
    (outage_run,) = whole.recorder.store.generator_runs(T - 1, T + 10_000)
    feed = GapFeed(site, tmp_path / "restart.db", 300, 330)  # mains out 101-701
    mains_failure(feed)
    (event,) = feed.rows("power_events")
    assert same_but_notes(event, uninterrupted)
    assert event["notes"] == [f"{restart_note(330)} the incident"] and uninterrupted["notes"] == []
    (run,) = feed.rows("generator_runs")
    assert run["kind"] == "outage" and run["passed"] is outage_run["passed"] is True
    assert run["notes"] == [f"{restart_note(330)} the run"]
    assert "power_event" not in states(tmp_path / "restart.db")  # the incident's state left with its record


def test_mains_failure_after_a_long_restart_is_closed_as_a_data_gap(site, tmp_path):
    down, up = 300.0, 300.0 + STALE_S + 100
    gap = GapFeed(site, tmp_path / "gap.db", down, up, restart=False)
    mains_failure(gap)
    gap.resume()
    feed = GapFeed(site, tmp_path / "restart.db", down, up)
    mains_failure(feed)
    feed.resume()
    (event,) = feed.rows("power_events")
    (gapped,) = gap.rows("power_events")
    assert same_but_notes(event, gapped)
    last = _utc(T + 245)  # the UPS poll of 240 + 5
    assert gapped["notes"] == [f"no data after {last}: end not seen"]
    assert event["notes"] == [f"{restart_note(up)} the incident", f"no data after {last}: end not seen"]
    assert "power_event" not in states(tmp_path / "restart.db")


# --- state that does not fit ------------------------------------------------------------------------

def started_run(site: Site, path: Path) -> None:
    feed = Feed(site, open_recorder(site, path, 0.0))
    feed.genset(0, "stopped")
    feed.genset(10, "running", mode="manual", rated=True)
    feed.recorder.close()


def write_state(path: Path, detector: str, state: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE {STATE_TABLE} SET state = ? WHERE detector = ?", (state, detector))


@pytest.mark.parametrize("corrupt", ["{not json", "[1, 2]", '{"runs": {"gen-1": {"start": "yesterday"}}}',
                                     '{"runs": {"gen-1": {"start": 1.0}}}', '{"runs": [], "last_stopped": {}}',
                                     '{"runs": {"gen-1": {"start": 1, "before": null, "mode": null, '
                                     '"fuel_before": null, "scenario": null, "last_poll": 1, "alarms": [{}]}}}'])
def test_corrupt_state_is_logged_and_the_detector_starts_fresh(site, tmp_path, caplog, corrupt):
    path = tmp_path / "facwatch.db"
    started_run(site, path)
    write_state(path, "generator_run", corrupt)
    with caplog.at_level(logging.WARNING, logger="evidence.detectors"):
        recorder = open_recorder(site, path, 20)
    assert "saved generator_run state" in caplog.text and "starting fresh" in caplog.text
    assert recorder.generators.runs == {} and recorder.generators.last_stopped == {}
    assert "generator_run" not in states(path)  # the bad row is gone at the first save (the start-up tick)
    feed = Feed(site, recorder)
    feed.genset(30, "running", mode="manual", rated=True)
    assert list(recorder.generators.runs) == ["gen-1"]  # a fresh run, from the first poll


def test_state_of_a_device_the_site_no_longer_has_is_dropped_with_a_log_line(site, tmp_path, caplog):
    path = tmp_path / "facwatch.db"
    started_run(site, path)
    saved = states(path)["generator_run"]
    saved["runs"]["gen-9"] = saved["runs"].pop("gen-1")
    saved["last_stopped"]["gen-9"] = saved["last_stopped"].pop("gen-1")
    write_state(path, "generator_run", json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="evidence.detector_state"):
        recorder = open_recorder(site, path, 20)
    assert "saved generator run of gen-9 dropped: the site has no such device any more" in caplog.text
    assert recorder.generators.runs == {} and recorder.generators.last_stopped == {}


def test_an_old_file_without_the_state_table_and_notes_columns_opens(site, tmp_path):
    path = tmp_path / "facwatch.db"
    with sqlite3.connect(path) as conn:  # the evidence tables as files made before this change have them
        conn.execute("CREATE TABLE evidence_generator_run (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT, "
                     "kind TEXT, start REAL, \"end\" REAL, scenario TEXT)")
        conn.execute("INSERT INTO evidence_generator_run (device, kind, start, \"end\") VALUES ('gen-1', "
                     f"'test_on_load', {T - 100}, {T - 50})")
    started_run(site, path)
    feed = Feed(site, open_recorder(site, path, 20))
    feed.genset(20, "running", mode="manual", rated=True)
    feed.genset(30, "stopped")
    old, new = feed.recorder.store.generator_runs(T - 1000, T + 1000)
    assert old["notes"] is None and new["notes"] == [f"{restart_note(20)} the run"]
