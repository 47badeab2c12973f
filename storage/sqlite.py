"""Embedded SQLite store, the default WriteStore and ReadStore (DESIGN.md §3.3).

One file in WAL mode: the collector writes batches through one writer connection while the dashboard's
threads read through their own connections and never block it.

Rollups: every series is also summarised in 1-minute, 15-minute and 1-hour cells (epoch-aligned; min,
max, sum, count of GOOD values, missing count, row count), so a long range reads a few cells per bucket
instead of every sample. A cell is always recomputed from what is below it (samples, or the finer cells)
in the transaction that wrote the samples, never incremented, so replays, corrections and late or
out-of-order readings cannot double-count. ``query`` splits each bucket into whole cells of the coarsest
level that fits plus finer cells and raw samples at the ragged edges, which makes its answer the same as
a scan of the raw samples (the mean up to float rounding) for any start, end and width. Like the raw
scan, rollups include scenario-tagged (drill) readings: ``query`` never filtered on ``scenario``.

Retention: raw samples go after ``retention_days``; the fine cells (1 min, 15 min) go with them, since
they only speed up reads of raw data; the 1-hour cells stay for ``rollup_retention_days``. Raw deletion
first raises a floor (``store_meta.raw_floor_ms``): cells that start below it are never used by
``query``, whose answer stays exactly "the samples the store holds".
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from collectors.model import Event, Quality, Reading, Severity
from storage.base import Bucket, Sample, SeriesKey

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 5_000
_MS_PER_DAY = 86_400_000
ROLLUP_RETENTION_DAYS = 1826.0  # five years
# Cell widths, finest first; each divides the next, so a coarse cell is exactly a run of finer ones.
ROLLUP_WIDTHS_MS = (60_000, 900_000, 3_600_000)
_FINE_WIDTHS_MS, _COARSE_WIDTH_MS = ROLLUP_WIDTHS_MS[:-1], ROLLUP_WIDTHS_MS[-1]
_BACKFILL_CHUNK_MS = _MS_PER_DAY  # one series-day of samples per backfill transaction
_NO_FLOOR = -(2**62)

log = logging.getLogger("facwatch.storage")

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
    3: (
        *(f"""CREATE TABLE IF NOT EXISTS {_table} (
            series_id INTEGER NOT NULL, cell_ms INTEGER NOT NULL, minimum REAL, maximum REAL, total REAL,
            count INTEGER NOT NULL, missing INTEGER NOT NULL, rows INTEGER NOT NULL,
            PRIMARY KEY (series_id, cell_ms)) WITHOUT ROWID"""
          for _table in (f"rollup_{_w // 1000}s" for _w in ROLLUP_WIDTHS_MS)),
        # raw_floor_ms: samples before it were deleted by retention; rollup_backfill: the migration's cursor
        "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
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
# Raw samples of one series for evidence (compliance), drills left out; both walk the primary key.
_SELECT_SAMPLES = """
    SELECT s.ts_ms, s.value, s.quality FROM samples AS s JOIN series AS r ON r.id = s.series_id
    WHERE r.device = ? AND r.point = ? AND s.ts_ms >= ? AND s.ts_ms < ? AND s.scenario IS NULL
    ORDER BY s.ts_ms"""
_SELECT_SAMPLE_BEFORE = """
    SELECT s.ts_ms, s.value, s.quality FROM samples AS s JOIN series AS r ON r.id = s.series_id
    WHERE r.device = ? AND r.point = ? AND s.ts_ms >= ? AND s.ts_ms < ? AND s.scenario IS NULL
    ORDER BY s.ts_ms DESC LIMIT 1"""
_INSERT_EVENT = """
    INSERT INTO events (ts_ms, device, kind, name, severity, scenario, payload) VALUES (?, ?, ?, ?, ?, ?, ?)"""
_SELECT_EVENTS = """
    SELECT ts_ms, device, kind, name, severity, scenario, payload FROM events
    WHERE ts_ms >= :start AND ts_ms < :end{device_filter}
    ORDER BY ts_ms DESC, id DESC LIMIT :limit"""
# A separate statement per case (not `:device IS NULL OR ...`) so SQLite can use events_by_device.
_SELECT_ALL_EVENTS = _SELECT_EVENTS.format(device_filter="")
_SELECT_DEVICE_EVENTS = _SELECT_EVENTS.format(device_filter=" AND device = :device")
_PRUNE_TABLE_CHUNK = """
    DELETE FROM {table} WHERE series_id = ?1 AND {column} IN (
        SELECT {column} FROM {table} WHERE series_id = ?1 AND {column} < ?2 ORDER BY {column} LIMIT ?3)"""
_PRUNE_CHUNK = _PRUNE_TABLE_CHUNK.format(table="samples", column="ts_ms")

_PRUNE_EVENTS = "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)"

Row = tuple[int, int, float | None, int, str | None, str | None]
Span = tuple[int, int, int]  # (bucket index, from ms, to ms): a half-open range read for one bucket


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection, rolled back on any error.

    IMMEDIATE takes the write lock up front, so another process's writer makes us wait (busy_timeout)
    instead of failing half way through a batch.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _rollup_table(width_ms: int) -> str:
    return f"rollup_{width_ms // 1000}s"


def _rollup_sql(width_ms: int) -> str:
    """Recompute the cells of one level in [?2, ?3) of series ?1 from the level below (or the samples)."""
    finer = [w for w in ROLLUP_WIDTHS_MS if w < width_ms]
    if not finer:
        source, cell, aggregates = "samples", "ts_ms", (
            "MIN(value), MAX(value), SUM(value), COUNT(value), SUM(quality != 0), COUNT(*)")
    else:
        source, cell, aggregates = _rollup_table(finer[-1]), "cell_ms", (
            "MIN(minimum), MAX(maximum), SUM(total), SUM(count), SUM(missing), SUM(rows)")
    return f"""
    INSERT OR REPLACE INTO {_rollup_table(width_ms)}
    SELECT series_id, {cell} - ({cell} % {width_ms} + {width_ms}) % {width_ms}, {aggregates} FROM {source}
    WHERE series_id = ?1 AND {cell} >= ?2 AND {cell} < ?3 GROUP BY 2"""


_RECOMPUTE = {w: _rollup_sql(w) for w in ROLLUP_WIDTHS_MS}
# CROSS JOIN keeps json_each outside, so each span is one range search of the (series_id, time) key.
_SPAN = """FROM json_each(:{name}) AS r CROSS JOIN {table} AS t
        WHERE t.series_id = :sid AND t.{column} >= r.value ->> 1 AND t.{column} < r.value ->> 2"""
# Each span is aggregated on its own (raw samples or cells); the outer query merges the spans per bucket.
_QUERY_HYBRID = """
    WITH parts (k, minimum, maximum, total, count, missing, rows) AS (
        SELECT r.value ->> 0, MIN(t.value), MAX(t.value), SUM(t.value), COUNT(t.value), SUM(t.quality != 0), COUNT(*)
        {raw} GROUP BY r.key
        {cells})
    SELECT k, MIN(minimum), MAX(maximum), SUM(total), SUM(count), SUM(missing), SUM(rows)
    FROM parts GROUP BY k ORDER BY k""".format(
    raw=_SPAN.format(name="raw", table="samples", column="ts_ms"),
    cells="".join(
        f"""
        UNION ALL SELECT r.value ->> 0, MIN(minimum), MAX(maximum), SUM(total), SUM(count), SUM(missing), SUM(rows)
        {_SPAN.format(name=f"w{w}", table=_rollup_table(w), column="cell_ms")} GROUP BY r.key"""
        for w in ROLLUP_WIDTHS_MS))
_SELECT_META = "SELECT key, value FROM store_meta WHERE key IN ('raw_floor_ms', 'rollup_backfill')"
_SET_META = "INSERT OR REPLACE INTO store_meta VALUES (?, ?)"


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced, so a finished thread's reader is freed with it."""


class SqliteStore:
    """Readings in one SQLite file: ``write`` from any thread, read from many threads at once.

    Example: ``store = SqliteStore("var/facwatch.db"); store.write(readings); store.latest(["dh1-ups-a"])``.
    Writes are serialised on one writer connection; every reading thread gets its own read-only
    connection, so dashboard threads never wait for the collector (WAL readers see the last commit).
    A file from before rollups is migrated on open: its cells are built by ``backfill_rollups`` on a
    background thread (``background_backfill=False``: call it yourself), and ``query`` reads raw until then.
    """

    retention_chunk = 10_000  # rows per delete transaction: keeps the write lock short for the collector
    # Buckets at least this wide are read from rollups (narrower ones hold too few whole cells to gain).
    rollup_min_width_ms = 5 * ROLLUP_WIDTHS_MS[0]

    def __init__(self, path: str | Path, retention_days: float = 400.0, *, synchronous: str = "FULL",
                 rollup_retention_days: float = ROLLUP_RETENTION_DAYS, background_backfill: bool = True):
        if retention_days <= 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        if rollup_retention_days <= 0:
            raise ValueError(f"rollup_retention_days must be positive, got {rollup_retention_days}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self._synchronous = synchronous
        self._backfill_thread: threading.Thread | None = None
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
        if background_backfill and _meta(self._writer)[1] is not None:  # not _reader(): no reader for this thread
            self._backfill_thread = threading.Thread(target=self._backfill_in_background,
                                                     name="rollup-backfill", daemon=True)
            self._backfill_thread.start()

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
            _recompute_cells(conn, rows, _meta(conn)[0])
        return inserted

    def write_events(self, events: Sequence[Event]) -> None:
        """Store events in one transaction, in the order given (duplicates are kept: events are not sampled)."""
        if not events:
            return
        rows = [_event_row(event) for event in events]  # serialise before taking the write lock
        with self._transaction() as conn:
            conn.executemany(_INSERT_EVENT, rows)

    def apply_retention(self, now: float, days: float | None = None) -> int:
        """Delete samples older than ``now`` minus ``days`` (default: the store's), in short transactions.

        The 1-minute and 15-minute cells before the cutoff go with them; the 1-hour cells stay. With the
        store's own retention (``days`` omitted) 1-hour cells older than ``rollup_retention_days`` go too;
        the audited per-kind pass (evidence.retention) passes ``days`` and prunes rollups as a kind of their own.
        """
        cutoff_ms = round(now * 1000) - round((self.retention_days if days is None else days) * _MS_PER_DAY)
        with self._transaction() as conn:  # the floor first: from now on no reader uses cells below it
            if cutoff_ms > _meta(conn)[0]:
                conn.execute(_SET_META, ("raw_floor_ms", str(cutoff_ms)))
        series_ids = [sid for (sid,) in self._reader().execute(_SERIES_WITH_OLD, (cutoff_ms,))]
        removed = sum(self._prune_series(sid, cutoff_ms) for sid in series_ids)
        for width in _FINE_WIDTHS_MS:
            self._prune_table(_rollup_table(width), "cell_ms", cutoff_ms)
        if days is None:
            self.prune_rollups(now - self.rollup_retention_days * 86_400)
        return removed

    def prune_rollups(self, cutoff: float) -> int:
        """Delete rollup cells that end at or before ``cutoff`` (epoch s), never above the raw floor."""
        with self._transaction() as conn:
            floor = _meta(conn)[0]
        # Cells at or above the floor stand for samples still held: deleting them would make query() wrong.
        cutoff_ms = min(round(cutoff * 1000), floor)
        return sum(self._prune_table(_rollup_table(w), "cell_ms", cutoff_ms - w + 1) for w in ROLLUP_WIDTHS_MS)

    def has_old(self, kind: str, cutoff: float) -> bool:
        """True when ``readings`` (samples), ``events`` or ``rollups`` hold anything before ``cutoff`` (epoch s)."""
        sql = {"readings": "SELECT 1 FROM samples WHERE ts_ms < ? LIMIT 1",
               "events": "SELECT 1 FROM events WHERE ts_ms < ? LIMIT 1",
               "rollups": f"SELECT 1 FROM {_rollup_table(_COARSE_WIDTH_MS)} WHERE cell_ms < ? - {_COARSE_WIDTH_MS - 1} "
                          "LIMIT 1"}[kind]
        cutoff_ms = round(cutoff * 1000)
        if kind == "rollups":
            cutoff_ms = min(cutoff_ms, _meta(self._reader())[0])  # as prune_rollups: never above the raw floor
        return self._reader().execute(sql, (cutoff_ms,)).fetchone() is not None

    def backfill_pending(self) -> bool:
        """True while the rollups of a file written before schema 3 are still being built."""
        return _meta(self._reader())[1] is not None

    def backfill_rollups(self, max_chunks: int | None = None, pause_s: float = 0.0) -> bool:
        """Build rollups from existing samples, one series-day per transaction; True once complete."""
        done = 0
        while max_chunks is None or done < max_chunks:
            with self._transaction() as conn:
                finished = _backfill_chunk(conn)
            if finished:
                log.info("%s: rollup backfill complete", self.path)
                return True
            done += 1
            time.sleep(pause_s)  # lets a waiting writer take the lock (threading.Lock is not fair)
            if done % 500 == 0:
                sid, ts_ms = _meta(self._reader())[1] or (0, 0)
                log.info("%s: rollup backfill at series id %d, %s UTC", self.path, sid,
                         time.strftime("%Y-%m-%d", time.gmtime(max(ts_ms, 0) / 1000)))
        return False

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
        if self._backfill_thread is not None and self._backfill_thread is not threading.current_thread():
            self._backfill_thread.join()

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
        """Samples in [start, end) downsampled in SQL to at most ``max_points`` buckets; empty ones absent.

        Wide buckets (``rollup_min_width_ms`` or more, or whole aligned minutes) are read from rollup cells
        plus the raw samples at their edges, with the same result as the raw scan.
        """
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        start_ms, end_ms = round(start * 1000), round(end * 1000)
        if end_ms <= start_ms:
            return []
        width = max(1, -(-(end_ms - start_ms) // max_points))
        minute = ROLLUP_WIDTHS_MS[0]
        if width >= self.rollup_min_width_ms or (width % minute == 0 and start_ms % minute == 0):
            return self._query_rollups(device, point, start_ms, end_ms, width)
        return self._query_raw(device, point, start_ms, end_ms, width)

    def events(self, start: float, end: float, device: str | None = None, limit: int = 1000) -> list[Event]:
        """Events in [start, end), newest first (the later written first on equal times), optionally of one device."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        params = {"start": round(start * 1000), "end": round(end * 1000), "device": device, "limit": limit}
        query = _SELECT_ALL_EVENTS if device is None else _SELECT_DEVICE_EVENTS
        return [_event(row) for row in self._reader().execute(query, params)]

    def samples(self, device: str, point: str, start: float, end: float) -> Iterator[Sample]:
        """The raw samples in [start, end), oldest first, streamed from one cursor; drill samples left out."""
        cursor = self._reader().execute(_SELECT_SAMPLES, (device, point, round(start * 1000), round(end * 1000)))
        return (_sample(row) for row in cursor)

    def sample_before(self, device: str, point: str, start: float, look_back: float) -> Sample | None:
        """The newest raw sample in [start - look_back, start), drill samples left out."""
        start_ms = round(start * 1000)
        row = self._reader().execute(_SELECT_SAMPLE_BEFORE, (device, point, start_ms - round(look_back * 1000),
                                                             start_ms)).fetchone()
        return None if row is None else _sample(row)

    def _query_raw(self, device: str, point: str, start_ms: int, end_ms: int, width: int) -> list[Bucket]:
        """Buckets by a scan of the raw samples (the reference the rollup path must equal)."""
        params = {"device": device, "point": point, "start": start_ms, "end": end_ms, "width": width}
        return [_bucket(row, start_ms, width) for row in self._reader().execute(_QUERY_BUCKETS, params)]

    def _query_rollups(self, device: str, point: str, start_ms: int, end_ms: int, width: int) -> list[Bucket]:
        """Buckets from whole rollup cells plus raw edges, read in one snapshot; raw while backfilling."""
        conn = self._reader()
        conn.execute("BEGIN")  # the floor and the cells from the same snapshot
        try:
            rows = _hybrid_rows(conn, device, point, start_ms, end_ms, width)
        finally:
            conn.execute("COMMIT")
        if rows is None:
            return self._query_raw(device, point, start_ms, end_ms, width)
        return [_merged_bucket(r, start_ms, width) for r in rows]

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
            if version < 3 and conn.execute("SELECT 1 FROM samples LIMIT 1").fetchone() is not None:
                log.info("%s: schema %d -> %d, rollups will be built from the existing samples", self.path,
                         version, SCHEMA_VERSION)
                conn.execute(_SET_META, ("rollup_backfill", json.dumps([0, _NO_FLOOR])))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock and an IMMEDIATE transaction; on error roll back and forget new series ids."""
        with self._write_lock:
            self._check_open()
            try:
                with immediate_transaction(self._writer) as conn:
                    yield conn
            except BaseException:
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

    def _prune_series(self, sid: int, cutoff_ms: int, sql: str = _PRUNE_CHUNK) -> int:
        """Delete one series' rows before the cutoff, one chunk per transaction."""
        deleted = 0
        while True:
            with self._transaction() as conn:
                count = conn.execute(sql, (sid, cutoff_ms, self.retention_chunk)).rowcount
            deleted += count
            if count < self.retention_chunk:
                return deleted

    def _prune_table(self, table: str, column: str, cutoff_ms: int) -> int:
        """Delete every series' rows of a per-series table before the cutoff, in chunks."""
        sql = _PRUNE_TABLE_CHUNK.format(table=table, column=column)
        series_ids = [sid for (sid,) in self._reader().execute(
            f"SELECT id FROM series AS s WHERE EXISTS (SELECT 1 FROM {table} WHERE series_id = s.id AND {column} < ?)",
            (cutoff_ms,))]
        return sum(self._prune_series(sid, cutoff_ms, sql) for sid in series_ids)

    def _backfill_in_background(self) -> None:
        """Run the backfill on its own thread until done or the store closes (each chunk is short)."""
        try:
            self.backfill_rollups(pause_s=0.001)
        except sqlite3.ProgrammingError:
            log.info("%s: store closed during the rollup backfill; it resumes on the next open", self.path)
        except Exception:
            log.exception("%s: rollup backfill failed; query() keeps reading raw samples", self.path)


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


def _meta(conn: sqlite3.Connection) -> tuple[int, list[int] | None]:
    """The raw floor (ms) and the backfill cursor ([series id, ms]) or None when rollups are complete."""
    meta = dict(conn.execute(_SELECT_META).fetchall())
    backfill = meta.get("rollup_backfill")
    return int(meta.get("raw_floor_ms", _NO_FLOOR)), (None if backfill is None else json.loads(backfill))


def _hybrid_rows(conn: sqlite3.Connection, device: str, point: str, start_ms: int, end_ms: int,
                 width: int) -> list[tuple] | None:
    """The merged rows per bucket of the rollup query; None while the backfill runs (cells incomplete)."""
    floor, backfill = _meta(conn)
    if backfill is not None:
        return None
    row = conn.execute("SELECT id FROM series WHERE device = ? AND point = ?", (device, point)).fetchone()
    if row is None:
        return []
    plan = _plan(start_ms, end_ms, width, floor)
    params = {"sid": row[0], "raw": json.dumps(plan[0]), **{f"w{w}": json.dumps(plan[w]) for w in ROLLUP_WIDTHS_MS}}
    return conn.execute(_QUERY_HYBRID, params).fetchall()


def _recompute_cells(conn: sqlite3.Connection, rows: list[Row], floor: int) -> None:
    """Recompute every cell a batch touched, level by level (cells below the raw floor are left alone)."""
    touched: dict[int, set[int]] = {}
    for sid, ts_ms, *_ in rows:
        touched.setdefault(sid, set()).add(ts_ms)
    for width in ROLLUP_WIDTHS_MS:
        touched = {sid: cells for sid, stamps in touched.items()
                   if (cells := {t - t % width for t in stamps if t - t % width >= floor})}
        conn.executemany(_RECOMPUTE[width], [(sid, lo, hi) for sid, cells in touched.items()
                                             for lo, hi in _runs(cells, width)])


def _runs(cells: set[int], width: int) -> list[tuple[int, int]]:
    """Sorted cell starts merged into half-open ranges of adjacent cells."""
    runs: list[tuple[int, int]] = []
    for cell in sorted(cells):
        if runs and runs[-1][1] == cell:
            runs[-1] = (runs[-1][0], cell + width)
        else:
            runs.append((cell, cell + width))
    return runs


def _backfill_chunk(conn: sqlite3.Connection) -> bool:
    """Build the cells of the next series-day with samples; True when there is nothing left."""
    floor, cursor = _meta(conn)
    if cursor is None:
        return True
    sid, from_ms = cursor
    first = conn.execute("SELECT MIN(ts_ms) FROM samples WHERE series_id = ? AND ts_ms >= ?",
                         (sid, max(from_ms, floor))).fetchone()[0]
    if first is None:  # this series is done: on to the next one, or finished
        (next_sid,) = conn.execute("SELECT MIN(id) FROM series WHERE id > ?", (sid,)).fetchone()
        if next_sid is None:
            conn.execute("DELETE FROM store_meta WHERE key = 'rollup_backfill'")
            return True
        conn.execute(_SET_META, ("rollup_backfill", json.dumps([next_sid, _NO_FLOOR])))
        return False
    lo = first - first % _COARSE_WIDTH_MS
    hi = lo + _BACKFILL_CHUNK_MS
    for width in ROLLUP_WIDTHS_MS:  # only cells that start at or above the floor, as writes maintain them
        conn.execute(_RECOMPUTE[width], (sid, max(lo, -(-floor // width) * width), hi))
    conn.execute(_SET_META, ("rollup_backfill", json.dumps([sid, hi])))
    return False


def _plan(start_ms: int, end_ms: int, width: int, floor: int) -> dict[int, list[Span]]:
    """Per level (0 = raw samples) the spans to read: per bucket the coarsest whole cells, finer at the edges."""
    plan: dict[int, list[Span]] = {0: [], **{w: [] for w in ROLLUP_WIDTHS_MS}}
    levels = tuple(reversed(ROLLUP_WIDTHS_MS))
    for k in range(-(-(end_ms - start_ms) // width)):
        lo = start_ms + k * width
        _split(plan, k, lo, min(lo + width, end_ms), floor, levels)
    return plan


def _split(plan: dict[int, list[Span]], k: int, lo: int, hi: int, floor: int, levels: tuple[int, ...]) -> None:
    """Cover [lo, hi) of bucket k with whole cells of levels[0] starting at or above the floor, finer elsewhere."""
    if lo >= hi:
        return
    if not levels:
        plan[0].append((k, lo, hi))
        return
    width, finer = levels[0], levels[1:]
    first = -(-max(lo, floor) // width) * width
    last = hi - hi % width
    if first >= last:
        _split(plan, k, lo, hi, floor, finer)
        return
    plan[width].append((k, first, last))
    _split(plan, k, lo, first, floor, finer)
    _split(plan, k, last, hi, floor, finer)


def _reading(row: tuple) -> Reading:
    """A Reading from a latest row joined with its series."""
    device, point, ts_ms, value, quality, text, scenario = row
    return Reading(device, point, ts_ms / 1000, value, _QUALITY_OF[quality], text, scenario)


def _sample(row: tuple) -> Sample:
    """A Sample from a (ts_ms, value, quality) row; an unknown quality code reads as INVALID."""
    ts_ms, value, code = row
    quality = _QUALITY_OF.get(code, Quality.INVALID)
    return Sample(ts_ms / 1000, value if quality is Quality.GOOD else None, quality)


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


def _merged_bucket(row: tuple, start_ms: int, width: int) -> Bucket:
    """A Bucket from one row of the rollup query (sums and counts merged, the mean from them)."""
    index, minimum, maximum, total, count, missing, _rows = row
    mean = total / count if count else None
    return Bucket((start_ms + index * width) / 1000, minimum, maximum, mean, count, missing)


def _bucket(row: tuple, start_ms: int, width: int) -> Bucket:
    """A Bucket from one row of the downsampling query."""
    index, minimum, maximum, mean, count, missing = row
    return Bucket((start_ms + index * width) / 1000, minimum, maximum, mean, count, missing)
