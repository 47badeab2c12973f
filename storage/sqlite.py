"""Embedded SQLite store, the default WriteStore and ReadStore (DESIGN.md §3.3).

One file in WAL mode: the collector writes batches through one writer connection while the dashboard's
threads read through their own connections and never block it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from collectors.model import Event, Quality, Reading, Severity
from storage.base import Bucket, SeriesKey

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5_000
_MS_PER_DAY = 86_400_000

# Part of the file format: never renumber, only append.
_QUALITY_CODE = {Quality.GOOD: 0, Quality.MISSING: 1, Quality.INVALID: 2}
_QUALITY_OF = {code: quality for quality, code in _QUALITY_CODE.items()}
_GOOD = _QUALITY_CODE[Quality.GOOD]
_MISSING = _QUALITY_CODE[Quality.MISSING]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS series (
        id INTEGER PRIMARY KEY, device TEXT NOT NULL, point TEXT NOT NULL, UNIQUE (device, point))""",
    # WITHOUT ROWID: the primary key IS the table, so a range of one series is one contiguous b-tree scan.
    """CREATE TABLE IF NOT EXISTS samples (
        series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
        text TEXT, scenario TEXT, PRIMARY KEY (series_id, ts_ms)) WITHOUT ROWID""",
    # The dashboard's "current values" read this small table, never samples.
    """CREATE TABLE IF NOT EXISTS latest (
        series_id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
        text TEXT, scenario TEXT)""",
)

# Tables added after version 1, by the version that added them: a file of an older version gets them
# on open, and its existing tables and rows are left as they are.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # id keeps the order events were written in, for events of the same millisecond
        """CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, device TEXT, kind TEXT NOT NULL,
            name TEXT NOT NULL, severity TEXT NOT NULL, scenario TEXT, payload TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS events_by_time ON events (ts_ms, id)",
        "CREATE INDEX IF NOT EXISTS events_by_device ON events (device, ts_ms, id)",
    ),
}

_INSERT_SAMPLE = "INSERT OR IGNORE INTO samples VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
_OVERWRITE_SAMPLE = """
    UPDATE samples SET value = ?3, quality = ?4, text = ?5, scenario = ?6
    WHERE series_id = ?1 AND ts_ms = ?2"""
# `>=` so that a same-instant correction reaches latest as it reaches samples; older readings never do.
_UPSERT_LATEST = """
    INSERT INTO latest VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (series_id) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value,
        quality = excluded.quality, text = excluded.text, scenario = excluded.scenario
    WHERE excluded.ts_ms >= latest.ts_ms"""
_SELECT_LATEST = """
    SELECT s.device, s.point, l.ts_ms, l.value, l.quality, l.text, l.scenario
    FROM latest AS l JOIN series AS s ON s.id = l.series_id"""
_SELECT_SERIES = """
    SELECT device, point FROM series AS s
    WHERE EXISTS (SELECT 1 FROM samples WHERE series_id = s.id) ORDER BY device, point"""
# Integer division of (ts - start) by the width numbers the bucket; only non-GOOD samples have NULL values
# (or text-only GOOD ones), so MIN/MAX/AVG/COUNT(value) see exactly the GOOD numeric samples.
_QUERY_BUCKETS = """
    SELECT (ts_ms - :start) / :width AS bucket, MIN(value), MAX(value), AVG(value), COUNT(value),
        SUM(quality != 0)
    FROM samples
    WHERE series_id = (SELECT id FROM series WHERE device = :device AND point = :point)
        AND ts_ms >= :start AND ts_ms < :end
    GROUP BY bucket ORDER BY bucket"""
_SERIES_WITH_OLD = """
    SELECT id FROM series AS s WHERE EXISTS (SELECT 1 FROM samples WHERE series_id = s.id AND ts_ms < ?)"""
_INSERT_EVENT = """
    INSERT INTO events (ts_ms, device, kind, name, severity, scenario, payload) VALUES (?, ?, ?, ?, ?, ?, ?)"""
_SELECT_EVENTS = """
    SELECT ts_ms, device, kind, name, severity, scenario, payload FROM events
    WHERE ts_ms >= :start AND ts_ms < :end{device_filter}
    ORDER BY ts_ms DESC, id DESC LIMIT :limit"""
# A separate statement per case (not `:device IS NULL OR ...`) so SQLite can use events_by_device.
_SELECT_ALL_EVENTS = _SELECT_EVENTS.format(device_filter="")
_SELECT_DEVICE_EVENTS = _SELECT_EVENTS.format(device_filter=" AND device = :device")
_PRUNE_CHUNK = """
    DELETE FROM samples WHERE series_id = ?1 AND ts_ms IN (
        SELECT ts_ms FROM samples WHERE series_id = ?1 AND ts_ms < ?2 ORDER BY ts_ms LIMIT ?3)"""

_PRUNE_EVENTS = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)"

Row = tuple[int, int, float | None, int, str | None, str | None]


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced, so a finished thread's reader is freed with it."""


class SqliteStore:
    """Readings in one SQLite file: ``write`` from any thread, read from many threads at once.

    Example: ``store = SqliteStore("var/facwatch.db"); store.write(readings); store.latest(["dh1-ups-a"])``.
    Writes are serialised on one writer connection; every reading thread gets its own read-only
    connection, so dashboard threads never wait for the collector (WAL readers see the last commit).
    """

    retention_chunk = 10_000  # rows per delete transaction: keeps the write lock short for the collector

    def __init__(self, path: str | Path, retention_days: float = 400.0, *, synchronous: str = "FULL"):
        if retention_days <= 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.retention_days = retention_days
        self._synchronous = synchronous
        self._write_lock = threading.Lock()
        self._local = threading.local()
        # Weak: when a reading thread ends, its thread-local connection is freed (and closed) with it.
        self._readers: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._readers_lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._closed = False
        self._writer = self._connect()
        try:
            self._enable_wal()
            self._ensure_schema()
        except BaseException:
            self._writer.close()
            raise

    # --- WriteStore -------------------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> int:
        """Store a batch in one transaction, idempotently (last write wins); return how many were new."""
        if not readings:
            return 0
        with self._transaction() as conn:
            rows = self._rows(conn, readings)
            before = conn.total_changes
            conn.executemany(_INSERT_SAMPLE, rows)
            inserted = conn.total_changes - before
            if inserted < len(rows):  # a replay or a correction: overwrite, as WriteStore promises
                conn.executemany(_OVERWRITE_SAMPLE, rows)
            conn.executemany(_UPSERT_LATEST, _newest_per_series(rows))
        return inserted

    def write_events(self, events: Sequence[Event]) -> None:
        """Store events in one transaction, in the order given (duplicates are kept: events are not sampled)."""
        if not events:
            return
        rows = [_event_row(event) for event in events]  # serialise before taking the write lock
        with self._transaction() as conn:
            conn.executemany(_INSERT_EVENT, rows)

    def apply_retention(self, now: float, days: float | None = None) -> int:
        """Delete samples older than ``now`` minus ``days`` (default: the store's), in short transactions."""
        cutoff_ms = round(now * 1000) - round((self.retention_days if days is None else days) * _MS_PER_DAY)
        series_ids = [sid for (sid,) in self._reader().execute(_SERIES_WITH_OLD, (cutoff_ms,))]
        return sum(self._prune_series(sid, cutoff_ms) for sid in series_ids)

    def has_old(self, kind: str, cutoff: float) -> bool:
        """True when ``readings`` (samples) or ``events`` hold anything stamped before ``cutoff`` (epoch s)."""
        sql = {"readings": "SELECT 1 FROM samples WHERE ts_ms < ? LIMIT 1",
               "events": "SELECT 1 FROM events WHERE ts_ms < ? LIMIT 1"}[kind]
        return self._reader().execute(sql, (round(cutoff * 1000),)).fetchone() is not None

    def prune_events(self, cutoff: float) -> int:
        """Delete events stamped before ``cutoff`` (epoch s), one chunk per transaction; return the count."""
        deleted = 0
        while True:
            with self._transaction() as conn:
                count = conn.execute(_PRUNE_EVENTS, (round(cutoff * 1000), self.retention_chunk)).rowcount
            deleted += count
            if count < self.retention_chunk:
                return deleted

    def close(self) -> None:
        """Close every connection; the last close checkpoints the WAL back into the main file."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                readers = list(self._readers)
            for conn in readers:
                conn.close()
            self._writer.close()

    # --- ReadStore --------------------------------------------------------------------------------

    def series(self) -> list[SeriesKey]:
        """Every series that has at least one sample."""
        return [SeriesKey(device, point) for device, point in self._reader().execute(_SELECT_SERIES)]

    def latest(self, devices: Iterable[str] | None = None) -> list[Reading]:
        """The newest reading of every series, optionally only for some devices."""
        order = " ORDER BY s.device, s.point"
        if devices is None:
            cursor = self._reader().execute(_SELECT_LATEST + order)
        else:
            if isinstance(devices, str):
                raise TypeError("devices must be an iterable of device names, not one string")
            where = " WHERE s.device IN (SELECT value FROM json_each(?))"
            cursor = self._reader().execute(_SELECT_LATEST + where + order, (json.dumps(list(devices)),))
        return [_reading(row) for row in cursor]

    def query(self, device: str, point: str, start: float, end: float, max_points: int) -> list[Bucket]:
        """Samples in [start, end) downsampled in SQL to at most ``max_points`` buckets; empty ones absent."""
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        start_ms, end_ms = round(start * 1000), round(end * 1000)
        if end_ms <= start_ms:
            return []
        width = max(1, -(-(end_ms - start_ms) // max_points))
        params = {"device": device, "point": point, "start": start_ms, "end": end_ms, "width": width}
        return [_bucket(row, start_ms, width) for row in self._reader().execute(_QUERY_BUCKETS, params)]

    def events(self, start: float, end: float, device: str | None = None, limit: int = 1000) -> list[Event]:
        """Events in [start, end), newest first (the later written first on equal times), optionally of one device."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        params = {"start": round(start * 1000), "end": round(end * 1000), "device": device, "limit": limit}
        query = _SELECT_ALL_EVENTS if device is None else _SELECT_DEVICE_EVENTS
        return [_event(row) for row in self._reader().execute(query, params)]

    # --- context manager --------------------------------------------------------------------------

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()

    # --- internals --------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Open a connection in autocommit mode with the pragmas every connection needs."""
        # check_same_thread=False only so close() can close the connections of other threads; each one is
        # still used by one thread at a time (the writer under _write_lock, the readers thread-local).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, factory=_Connection)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # In WAL mode NORMAL syncs only at checkpoints: a commit is in the WAL (OS page cache) when
        # COMMIT returns, so it survives a crash of this process; only an OS crash or power loss can lose
        # the last commits, and never corrupts the file. FULL (an fsync per commit) closes that gap.
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _enable_wal(self) -> None:
        """Switch the file to WAL (persistent), refusing to run without it."""
        mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); a network share?")

    def _ensure_schema(self) -> None:
        """Create the tables if absent; refuse a file written by a newer schema."""
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}")
            for ddl in _SCHEMA:
                conn.execute(ddl)
            for added_in, ddls in _MIGRATIONS.items():
                if version < added_in:
                    for ddl in ddls:
                        conn.execute(ddl)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock and an IMMEDIATE transaction; on error roll back and forget new series ids."""
        with self._write_lock:
            self._check_open()
            conn = self._writer
            # IMMEDIATE takes the write lock up front, so another process's writer makes us wait
            # (busy_timeout) instead of failing half way through the batch.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._ids.clear()  # ids of series inserted in this transaction no longer exist
                raise

    def _reader(self) -> sqlite3.Connection:
        """The calling thread's read-only connection, opened on first use."""
        self._check_open()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")  # a dashboard thread can never write by mistake
            with self._readers_lock:
                self._readers.add(conn)
            self._local.conn = conn
        return conn

    def _check_open(self) -> None:
        """Refuse to work on a closed store rather than reopen it behind the caller's back."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"{self.path}: store is closed")

    def _rows(self, conn: sqlite3.Connection, readings: Sequence[Reading]) -> list[Row]:
        """The sample rows of a batch, creating series that are new."""
        ids = self._ids
        rows = []
        for reading in readings:
            sid = ids.get((reading.device, reading.point))
            if sid is None:
                sid = self._series_id(conn, reading.device, reading.point)
            rows.append(_sample_row(sid, reading))
        return rows

    def _series_id(self, conn: sqlite3.Connection, device: str, point: str) -> int:
        """The id of a series, inserting it if needed (another process may have inserted it first)."""
        conn.execute("INSERT OR IGNORE INTO series (device, point) VALUES (?, ?)", (device, point))
        query = "SELECT id FROM series WHERE device = ? AND point = ?"
        (sid,) = conn.execute(query, (device, point)).fetchone()
        self._ids[(device, point)] = sid
        return sid

    def _prune_series(self, sid: int, cutoff_ms: int) -> int:
        """Delete one series' samples before the cutoff, one chunk per transaction."""
        deleted = 0
        while True:
            with self._transaction() as conn:
                count = conn.execute(_PRUNE_CHUNK, (sid, cutoff_ms, self.retention_chunk)).rowcount
            deleted += count
            if count < self.retention_chunk:
                return deleted


def _sample_row(sid: int, reading: Reading) -> Row:
    """The stored form of a reading: epoch milliseconds, a quality code, a value only when GOOD."""
    value, quality = _clean(reading.value, _QUALITY_CODE[reading.quality], reading.text)
    return (sid, round(reading.ts * 1000), value, quality, reading.text, reading.scenario)


def _clean(value: float | None, quality: int, text: str | None) -> tuple[float | None, int]:
    """The value and quality to store: only GOOD samples carry a value, and only a finite one."""
    if quality != _GOOD:
        return None, quality
    if value is None:
        # A text point (firmware, model) is GOOD with text only; a GOOD reading with nothing is not GOOD.
        return None, (_GOOD if text is not None else _MISSING)
    value = float(value)
    # SQLite stores a NaN as NULL (a GOOD sample without a value) and an inf makes the MIN/MAX/AVG of its
    # whole bucket infinite or NaN, so one bad decode would wreck a chart: it is a missing value instead.
    if not math.isfinite(value):
        return None, _MISSING
    return value, quality


def _newest_per_series(rows: list[Row]) -> list[Row]:
    """The newest row of each series in a batch (the last one on equal timestamps)."""
    newest: dict[int, Row] = {}
    for row in rows:
        current = newest.get(row[0])
        if current is None or row[1] >= current[1]:
            newest[row[0]] = row
    return list(newest.values())


def _reading(row: tuple) -> Reading:
    """A Reading from a latest row joined with its series."""
    device, point, ts_ms, value, quality, text, scenario = row
    return Reading(device, point, ts_ms / 1000, value, _QUALITY_OF[quality], text, scenario)


def _event_row(event: Event) -> tuple:
    """The stored form of an event; a payload value JSON cannot carry is kept as its text, not refused."""
    payload = json.dumps(dict(event.payload), default=str, separators=(",", ":"))
    return (round(event.ts * 1000), event.device, event.kind, event.name, Severity(event.severity).value,
            event.scenario, payload)


def _event(row: tuple) -> Event:
    """An Event from one row of the events table."""
    ts_ms, device, kind, name, severity, scenario, payload = row
    known = severity in Severity._value2member_map_
    return Event(ts_ms / 1000, device, kind, name, Severity(severity) if known else Severity.UNKNOWN,
                 json.loads(payload), scenario)


def _bucket(row: tuple, start_ms: int, width: int) -> Bucket:
    """A Bucket from one row of the downsampling query."""
    index, minimum, maximum, mean, count, missing = row
    return Bucket((start_ms + index * width) / 1000, minimum, maximum, mean, count, missing)
