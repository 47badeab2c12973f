"""Evidence records in the shared SQLite file: generator runs, UPS self-tests and power events.

The detectors (``evidence.detectors``) write one row per finished run, test or incident; the export
pack and the dashboard read them back for a period as plain dicts. Every record carries ``scenario``:
None for a real event, the scenario's name for a drill. Readers return real events only unless asked
for drills (``drills=True``), so a drill can never pass as evidence of a real test or outage.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from storage.connection import open_connection

_JSON_FIELDS = frozenset({"alarms", "reasons", "criteria", "ups", "notes"})


@dataclass(frozen=True, slots=True)
class GeneratorRun:
    """One generator run from engine start to stop, classified and judged against the test criteria.

    Example: ``GeneratorRun(device="gen-1", kind="test_on_load", start=t, end=t + 2760, start_s=8.0,
    transfer_s=0.1, load_pct_mean=58.9, time_at_min_load_s=2400, run_s=2760, cooldown_s=300,
    fuel_before_pct=85.0, fuel_after_pct=83.1, passed=True, reasons=[])``. Times are epoch seconds,
    durations seconds, loads % of the nameplate kW (``load_basis`` says where the nameplate came from).
    """

    device: str
    kind: str  # test_on_load | test_off_load | outage
    start: float  # first poll that saw the engine starting
    end: float  # first poll that saw it stopped again (or the last data, see reasons)
    mode: str | None = None  # controller mode at the start (auto, test_on_load, manual, ...)
    start_s: float | None = None  # start signal to rated voltage and frequency
    start_resolution_s: float | None = None  # poll spacing around the start: the measurement's grain
    on_load_at: float | None = None  # the ATS put the load on the generator
    time_to_load_s: float | None = None  # start (outage: mains failure) to the load on the generator
    # the ATS's own figure (ats.last_transfer.duration): its load terminals without power for that transfer,
    # in an outage from the mains failure until the generator closed (the NFPA 110 Type 10 figure)
    transfer_s: float | None = None
    unloaded_at: float | None = None
    load_pct_mean: float | None = None  # time-weighted over the time on load
    load_pct_max: float | None = None
    load_kw_mean: float | None = None
    load_basis: str = "controller"  # nameplate from "config", "simulation" or the controller's own %
    rated_kw: float | None = None
    time_on_load_s: float = 0.0
    time_at_min_load_s: float = 0.0  # in total at >= criteria.min_load_pct
    longest_at_min_load_s: float = 0.0  # the longest unbroken stretch at >= criteria.min_load_pct
    run_s: float = 0.0  # start to stop
    cooldown_s: float | None = None  # unloaded (or cooling_down) to stop
    fuel_before_pct: float | None = None
    fuel_after_pct: float | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)  # {point, state, severity, ts}
    passed: bool | None = None
    reasons: list[str] = field(default_factory=list)  # why it failed (empty on a pass)
    criteria: dict[str, Any] = field(default_factory=dict)  # the criteria it was judged against
    scenario: str | None = None
    notes: list[str] = field(default_factory=list)  # what the auditor should know (e.g. facwatch restarted)


@dataclass(frozen=True, slots=True)
class UpsSelfTest:
    """One UPS battery self-test as facwatch saw it (its own clock: cards date tests by their uptime).

    ``result`` is generic (pass, warning, fail, aborted); ``vendor_result`` the MIB's state name.
    """

    device: str
    start: float  # first poll that saw the test running (= end when only the result was seen)
    end: float  # first poll with the result
    result: str
    vendor_result: str
    seen_running: bool = True  # False: the test was shorter than a poll; only the new result was seen
    duration_s: float = 0.0
    voltage_before_v: float | None = None
    voltage_min_v: float | None = None
    voltage_dip_v: float | None = None
    runtime_before_min: float | None = None
    runtime_min_min: float | None = None  # lowest estimate during the test and at its end
    charge_before_pct: float | None = None
    charge_min_pct: float | None = None
    scenario: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. facwatch restarted during the test


@dataclass(frozen=True, slots=True)
class PowerEvent:
    """One incident: mains failure → UPSs on battery → generator → ATS → return, with its KPIs.

    ``ups`` maps each UPS to ``{on_battery_s, lowest_runtime_min, lowest_charge_pct, output_lost}``.
    """

    start: float  # first sign: mains unavailable at the ATS/genset, or a UPS on battery (not a self-test)
    end: float  # everything back to normal: mains available, ATS on mains, no UPS on battery
    mains_lost: bool = True  # False when only UPSs went to battery (the ATS/genset kept seeing mains)
    duration_s: float = 0.0
    mains_restored_at: float | None = None
    mains_out_s: float | None = None
    on_battery_s: float | None = None  # longest time any UPS spent on battery
    lowest_runtime_min: float | None = None  # lowest runtime estimate any UPS reached
    lowest_charge_pct: float | None = None
    generator: str | None = None
    generator_rated_s: float | None = None  # incident start to the generator at rated V and Hz
    time_to_generator_s: float | None = None  # incident start to the ATS on generator
    transfer_s: float | None = None  # the ATS's figure for the transfer to generator (load break)
    retransfer_at: float | None = None
    retransfer_delay_s: float | None = None  # mains restored to the ATS back on mains
    retransfer_s: float | None = None  # the ATS's figure for the retransfer (load break)
    load_lost: bool = False  # some UPS output went off
    ups: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scenario: str | None = None


Record = GeneratorRun | UpsSelfTest | PowerEvent
_TABLES: dict[type, str] = {GeneratorRun: "evidence_generator_run", UpsSelfTest: "evidence_ups_self_test",
                            PowerEvent: "evidence_power_event"}
STATE_TABLE = "evidence_detector_state"  # the detectors' runs, tests and incidents in progress
_STATE_DDL = f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (detector TEXT PRIMARY KEY, state TEXT, saved_at REAL);\n"
_SQL_TYPES = {"float": "REAL", "float | None": "REAL", "bool | None": "INTEGER", "bool": "INTEGER", "str": "TEXT",
              "str | None": "TEXT"}


def _sql_column(f: Field) -> str:
    return f"{f.name} {_SQL_TYPES.get(str(f.type), 'TEXT')}"


def _ddl(kind: type) -> str:
    columns = [_sql_column(f) for f in fields(kind)]
    table = _TABLES[kind]
    return (f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(columns)});\n"
            f"CREATE INDEX IF NOT EXISTS {table}_start ON {table} (start);\n")


class EvidenceStore:
    """The evidence tables (created if absent) in the site's SQLite file; write and read records.

    Example: ``store = EvidenceStore("var/facwatch.db"); store.add(run);
    store.generator_runs(start, end)`` → ``[{"id": 1, "device": "gen-1", "kind": "test_on_load", ...}]``.
    """

    def __init__(self, path: str | Path):
        self.path = path
        # one writer (the recorder) that the runtime may call from a worker thread
        self.conn = open_connection(path, autocommit=False)
        self._lock = threading.Lock()
        self.conn.executescript("".join(_ddl(kind) for kind in _TABLES) + _STATE_DDL)
        self._add_new_columns()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def add(self, record: Record) -> int:
        """Store one record; its row id."""
        with self._lock, self.conn:
            return self._insert(record)

    def commit(self, records: Sequence[Record], states: Mapping[str, str | None], saved_at: float) -> None:
        """Store records and detector states (JSON text; None deletes) in ONE transaction.

        A run that ends becomes its record and leaves the in-progress state together, so a crash can
        never leave both (a record and a run still open) or neither.
        """
        with self._lock, self.conn:
            for record in records:
                self._insert(record)
            for detector, state in states.items():
                if state is None:
                    self.conn.execute(f"DELETE FROM {STATE_TABLE} WHERE detector = ?", (detector,))
                else:
                    self.conn.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} (detector, state, saved_at) "
                                      "VALUES (?, ?, ?)", (detector, state, saved_at))

    def detector_states(self) -> dict[str, tuple[str | None, float | None]]:
        """Every detector's saved state: detector → (JSON text, when saved)."""
        rows = self.conn.execute(f"SELECT detector, state, saved_at FROM {STATE_TABLE}").fetchall()
        return {detector: (state, saved_at) for detector, state, saved_at in rows}

    def _insert(self, record: Record) -> int:
        table = _TABLES[type(record)]
        row = {name: _column(name, value) for name, value in asdict(record).items()}
        sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
        return int(self.conn.execute(sql, tuple(row.values())).lastrowid or 0)

    def _add_new_columns(self) -> None:
        """Files made before a field was added (e.g. ``notes``) get the column; old rows read it as None."""
        with self._lock, self.conn:
            for kind, table in _TABLES.items():
                have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
                for f in fields(kind):
                    if f.name not in have:
                        self._add_column(table, f)

    def _add_column(self, table: str, f: Field) -> None:
        try:
            self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {_sql_column(f)}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process opening the file added it first
                raise

    def generator_runs(self, start: float, end: float, drills: bool = False) -> list[dict[str, Any]]:
        """Generator runs that started in [start, end), oldest first; real ones, or only drills."""
        return self._read(GeneratorRun, start, end, drills)

    def ups_self_tests(self, start: float, end: float, drills: bool = False) -> list[dict[str, Any]]:
        """UPS self-tests that started in [start, end), oldest first; real ones, or only drills."""
        return self._read(UpsSelfTest, start, end, drills)

    def power_events(self, start: float, end: float, drills: bool = False) -> list[dict[str, Any]]:
        """Power events that started in [start, end), oldest first; real ones, or only drills."""
        return self._read(PowerEvent, start, end, drills)

    def _read(self, kind: type, start: float, end: float, drills: bool) -> list[dict[str, Any]]:
        which = "scenario IS NOT NULL" if drills else "scenario IS NULL"
        cursor = self.conn.execute(
            f"SELECT * FROM {_TABLES[kind]} WHERE start >= ? AND start < ? AND {which} ORDER BY start, id",
            (start, end))
        names = [column[0] for column in cursor.description]
        return [_decoded(kind, dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


def _column(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(value, sort_keys=True)
    return int(value) if isinstance(value, bool) else value


def _decoded(kind: type, row: Mapping[str, Any]) -> dict[str, Any]:
    booleans = {f.name for f in fields(kind) if str(f.type).startswith("bool")}
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in _JSON_FIELDS and value is not None:
            value = json.loads(value)
        elif name in booleans and value is not None:
            value = bool(value)
        out[name] = value
    return out
