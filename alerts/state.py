"""Alert states persisted in SQLite, so a restart neither loses a firing alert nor pages twice.

Also stored: the timers under way (a pending `for`, a clear delay), schedule clocks and the qualifying runs
in progress, so a restart does not restart them (how they resume: alerts/engine.py, alerts/schedule.py).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

from alerts.model import Alert, AlertState
from collectors.model import Severity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    fingerprint TEXT PRIMARY KEY, rule TEXT NOT NULL, labels TEXT NOT NULL, severity TEXT NOT NULL,
    state TEXT NOT NULL, value REAL, summary TEXT NOT NULL, annotations TEXT NOT NULL,
    active_since REAL, fired_at REAL, resolved_at REAL, updated_at REAL,
    acknowledged_by TEXT, acknowledged_at REAL, ack_note TEXT, scenario TEXT
);
CREATE TABLE IF NOT EXISTS alert_transition (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, rule TEXT NOT NULL, labels TEXT NOT NULL,
    from_state TEXT, to_state TEXT NOT NULL, severity TEXT NOT NULL, value REAL, at REAL, scenario TEXT
);
CREATE INDEX IF NOT EXISTS alert_transition_fp ON alert_transition (fingerprint, at);
CREATE TABLE IF NOT EXISTS alert_schedule (
    rule TEXT NOT NULL, device TEXT NOT NULL, baseline REAL NOT NULL, last_qualified REAL,
    PRIMARY KEY (rule, device)
);
CREATE TABLE IF NOT EXISTS alert_timer (
    fingerprint TEXT PRIMARY KEY, kind TEXT NOT NULL, started REAL NOT NULL, seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_schedule_run (
    rule TEXT NOT NULL, device TEXT NOT NULL, since REAL NOT NULL, last_true REAL NOT NULL,
    credited INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (rule, device)
);
"""
_COLUMNS = ("fingerprint", "rule", "labels", "severity", "state", "value", "summary", "annotations",
            "active_since", "fired_at", "resolved_at", "updated_at", "acknowledged_by", "acknowledged_at",
            "ack_note", "scenario")


@dataclass(frozen=True, slots=True)
class ScheduleMark:
    """Clock of one schedule rule on one device: when facwatch first watched it, and the last qualifying test."""

    baseline: float
    last_qualified: float | None = None

    @property
    def reference(self) -> float:
        """The time the schedule counts from: the last qualifying test, else the baseline."""
        return self.baseline if self.last_qualified is None else self.last_qualified


@dataclass(frozen=True, slots=True)
class Timer:
    """An alert's timer under way: ``pending`` (its ``for``) or ``clearing`` (its clear delay).

    ``started`` is when the timer began counting and ``seen_at`` the last evaluation that saw it still
    running, so ``held`` is the time it has provably run; the time after ``seen_at`` is unknown.
    """

    kind: str
    started: float
    seen_at: float

    @property
    def held(self) -> float:
        """Seconds the timer had run by its last evaluation."""
        return max(0.0, self.seen_at - self.started)


@dataclass(frozen=True, slots=True)
class RunMark:
    """A schedule rule's qualifying run under way on one device: since when, last seen true, credited yet."""

    since: float
    last_true: float
    credited: bool = False


class AlertStateStore:
    """Current alert states keyed by fingerprint, plus an append-only log of transitions."""

    def __init__(self, path: str | Path):
        # one writer (the engine) that the runtime may call from a worker thread
        self.conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
        if str(path) != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")  # the readings writer shares the file
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def save(self, alert: Alert, previous: AlertState | None) -> None:
        """Store an alert's current state; log a transition when its state or severity changed."""
        with self.conn:
            self.conn.execute(f"INSERT OR REPLACE INTO alert_state VALUES ({','.join('?' * len(_COLUMNS))})",
                              _row(alert))
            self.conn.execute(
                "INSERT INTO alert_transition (fingerprint, rule, labels, from_state, to_state, severity, value, at,"
                " scenario) VALUES (?,?,?,?,?,?,?,?,?)",
                (alert.fingerprint, alert.rule, _labels(alert), previous, alert.state, alert.severity, alert.value,
                 alert.updated_at, alert.scenario))

    def load(self) -> dict[str, Alert]:
        """Every stored alert by fingerprint (the engine keeps pending, firing and resolved ones)."""
        rows = self.conn.execute(f"SELECT {','.join(_COLUMNS)} FROM alert_state").fetchall()
        return {row[0]: _alert(row) for row in rows}

    def get(self, fingerprint: str) -> Alert | None:
        """One stored alert, or None."""
        row = self.conn.execute(f"SELECT {','.join(_COLUMNS)} FROM alert_state WHERE fingerprint = ?",
                                (fingerprint,)).fetchone()
        return _alert(row) if row else None

    def acknowledge(self, fingerprint: str, who: str, note: str | None, at: float) -> Alert | None:
        """Flag an alert as acknowledged (who, when, note); its state does not change."""
        alert = self.get(fingerprint)
        if alert is None:
            return None
        acked = replace(alert, acknowledged_by=who, acknowledged_at=at, ack_note=note)
        with self.conn:
            self.conn.execute("UPDATE alert_state SET acknowledged_by=?, acknowledged_at=?, ack_note=? "
                              "WHERE fingerprint=?", (who, at, note, fingerprint))
        return acked

    def schedule_marks(self) -> dict[tuple[str, str], ScheduleMark]:
        """Every schedule clock by (rule, device)."""
        rows = self.conn.execute("SELECT rule, device, baseline, last_qualified FROM alert_schedule").fetchall()
        return {(rule, device): ScheduleMark(baseline, last) for rule, device, baseline, last in rows}

    def start_schedule(self, rule: str, device: str, at: float) -> ScheduleMark:
        """Set the baseline of a schedule clock unless it has one (the first time facwatch watched the device)."""
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO alert_schedule (rule, device, baseline) VALUES (?,?,?)",
                              (rule, device, at))
        return self._schedule_mark(rule, device)

    def record_qualified(self, rule: str, device: str, at: float) -> ScheduleMark:
        """Record a qualifying test at ``at``; the clock never moves backwards."""
        with self.conn:
            self.conn.execute(
                "INSERT INTO alert_schedule (rule, device, baseline, last_qualified) VALUES (?,?,?,?) "
                "ON CONFLICT (rule, device) DO UPDATE SET last_qualified = "
                "MAX(COALESCE(last_qualified, excluded.last_qualified), excluded.last_qualified)",
                (rule, device, at, at))
        return self._schedule_mark(rule, device)

    def _schedule_mark(self, rule: str, device: str) -> ScheduleMark:
        baseline, last = self.conn.execute("SELECT baseline, last_qualified FROM alert_schedule WHERE rule = ? "
                                           "AND device = ?", (rule, device)).fetchone()
        return ScheduleMark(baseline, last)

    def timers(self) -> dict[str, Timer]:
        """Every alert timer under way, by fingerprint."""
        rows = self.conn.execute("SELECT fingerprint, kind, started, seen_at FROM alert_timer").fetchall()
        return {fp: Timer(kind, started, seen) for fp, kind, started, seen in rows}

    def schedule_runs(self) -> dict[tuple[str, str], RunMark]:
        """Every qualifying run under way, by (rule, device)."""
        rows = self.conn.execute("SELECT rule, device, since, last_true, credited FROM alert_schedule_run").fetchall()
        return {(rule, device): RunMark(since, last, bool(credited)) for rule, device, since, last, credited in rows}

    def save_progress(self, timers: dict[str, Timer | None], runs: dict[tuple[str, str], RunMark | None]) -> None:
        """Store (or, for None, forget) timers and qualifying runs, in one transaction."""
        if not timers and not runs:
            return
        with self.conn:
            for fp, timer in timers.items():
                if timer is None:
                    self.conn.execute("DELETE FROM alert_timer WHERE fingerprint = ?", (fp,))
                else:
                    self.conn.execute("INSERT OR REPLACE INTO alert_timer VALUES (?,?,?,?)",
                                      (fp, timer.kind, timer.started, timer.seen_at))
            for (rule, device), run in runs.items():
                if run is None:
                    self.conn.execute("DELETE FROM alert_schedule_run WHERE rule = ? AND device = ?", (rule, device))
                else:
                    self.conn.execute("INSERT OR REPLACE INTO alert_schedule_run VALUES (?,?,?,?,?)",
                                      (rule, device, run.since, run.last_true, int(run.credited)))

    def transitions(self, fingerprint: str | None = None) -> list[tuple[str | None, str, float | None]]:
        """(from, to, at) of the logged transitions, oldest first; all alerts or one."""
        sql = "SELECT from_state, to_state, at FROM alert_transition"
        args: tuple = ()
        if fingerprint:
            sql, args = sql + " WHERE fingerprint = ?", (fingerprint,)
        return self.conn.execute(sql + " ORDER BY id", args).fetchall()


def _labels(alert: Alert) -> str:
    return json.dumps(dict(sorted(alert.labels.items())))


def _row(alert: Alert) -> tuple:
    return (alert.fingerprint, alert.rule, _labels(alert), alert.severity, alert.state, alert.value, alert.summary,
            json.dumps(dict(alert.annotations)), alert.active_since, alert.fired_at, alert.resolved_at,
            alert.updated_at, alert.acknowledged_by, alert.acknowledged_at, alert.ack_note, alert.scenario)


def _alert(row: tuple) -> Alert:
    (_, rule, labels, severity, state, value, summary, annotations, active_since, fired_at, resolved_at, updated_at,
     by, at, note, scenario) = row
    return Alert(rule, json.loads(labels), Severity(severity), AlertState(state), value, summary,
                 json.loads(annotations), active_since, fired_at, resolved_at, updated_at, by, at, note, scenario)
