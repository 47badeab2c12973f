"""A durable outbox in front of a remote store: lines are on disk before ``write`` returns (DESIGN.md §3.4).

The InfluxDB client buffers in memory and drops a batch after its retry budget (LIBRARIES.md §3: a
12 s outage with a 6 s budget lost every point; a crash loses the whole buffer). So readings are first
appended to this SQLite file (WAL, ``synchronous=FULL``: an fsync per commit) and leave it only when the
server acknowledged the batch that carried them. Three tables:

- ``outbox``: one line-protocol line per row, in arrival order (AUTOINCREMENT ids are never reused, so
  a sender's "sent up to id N" cursor stays valid after the table empties);
- ``dead_letters``: lines of batches the server rejected as malformed (HTTP 4xx), kept for an operator
  instead of blocking the queue behind them (``requeue_dead_letters`` puts them back);
- ``meta``: counters that survive restarts (lines dropped because the spool was full).

The spool holds at most ``max_lines``. Past ``warn_fraction`` of it a WARNING is logged (once per
crossing); at the limit the OLDEST lines are dropped to make room — during an outage longer than the
spool covers, the newest readings are the ones operators need — and an ERROR says how many, at least
once a minute while it lasts.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from storage.sqlite import immediate_transaction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5_000
DROP_LOG_INTERVAL_S = 60.0
REARM_MARGIN = 0.1  # the "near full" warning re-arms once the spool is 10 % of the limit below the mark

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY, failed_at_ms INTEGER NOT NULL, status INTEGER, error TEXT NOT NULL,
        line TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


class SpoolLevel(StrEnum):
    """How full the spool is, for logs and /metrics."""

    OK = "ok"
    NEAR_FULL = "near_full"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """Consecutive outbox rows handed to a sender: their ids (ascending) and lines."""

    ids: tuple[int, ...]
    lines: tuple[str, ...]

    @property
    def first(self) -> int:
        """The smallest id of the batch."""
        return self.ids[0]

    @property
    def last(self) -> int:
        """The largest id of the batch."""
        return self.ids[-1]

    def halves(self) -> tuple[SpoolBatch, SpoolBatch]:
        """The batch split in two, to find the line a server rejects (a batch of one does not split)."""
        half = len(self.ids) // 2
        return (SpoolBatch(self.ids[:half], self.lines[:half]), SpoolBatch(self.ids[half:], self.lines[half:]))


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What the spool holds now and what it had to drop since it was created."""

    pending: int
    limit: int
    dead_letters: int
    dropped: int
    level: SpoolLevel


class Spool:
    """Durable FIFO of line-protocol lines: ``append`` fsyncs, ``ack`` removes what the server stored.

    Example: ``spool = Spool("var/influx-spool.db", max_lines=1_000_000); spool.append(lines);
    batch = spool.read(after=0, limit=5000); ...; spool.ack(batch)``. Thread-safe (one connection, a lock).
    """

    def __init__(self, path: str | Path, max_lines: int, *, warn_fraction: float = 0.8,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        if max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {max_lines}")
        if not 0 < warn_fraction <= 1:
            raise ValueError(f"warn_fraction must be in (0, 1], got {warn_fraction}")
        self.path = Path(path)
        self.max_lines = max_lines
        self.warn_at = max(1, int(max_lines * warn_fraction))
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise
        self._pending = self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._warned = False
        self._last_drop_log: float | None = None
        self._unlogged_drops = 0
        self._closed = False

    # --- writing side ------------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> int:
        """Append lines durably (one fsynced transaction), dropping the oldest past the limit; return len."""
        if not lines:
            return 0
        with self._transaction() as conn:
            overflow = self._pending + len(lines) - self.max_lines
            conn.executemany("INSERT INTO outbox (line) VALUES (?)", ((line,) for line in lines))
            dropped = self._drop_oldest(conn, overflow) if overflow > 0 else 0
            self._pending += len(lines) - dropped
        self._report_level(dropped)
        return len(lines)

    # --- sending side ------------------------------------------------------------------------------

    def read(self, after: int, limit: int) -> SpoolBatch | None:
        """Up to ``limit`` pending lines with ids above ``after``, oldest first; None when there are none."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT id, line FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                                      (after, limit)).fetchall()
        if not rows:
            return None
        return SpoolBatch(tuple(row[0] for row in rows), tuple(row[1] for row in rows))

    def ack(self, batch: SpoolBatch) -> None:
        """The server stored the batch: remove its lines (those dropped meanwhile are already gone)."""
        # Every row between first and last belonged to the batch: later appends get larger ids.
        with self._transaction() as conn:
            removed = conn.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (batch.first, batch.last)).rowcount
            self._pending -= removed
        self._report_level(0)

    def dead_letter(self, batch: SpoolBatch, status: int | None, error: str) -> int:
        """Move a rejected batch's lines to ``dead_letters`` so the queue moves on; return how many."""
        with self._transaction() as conn:
            conn.execute(
                """INSERT INTO dead_letters (failed_at_ms, status, error, line)
                   SELECT ?, ?, ?, line FROM outbox WHERE id BETWEEN ? AND ? ORDER BY id""",
                (round(self._wall_clock() * 1000), status, error[:2000], batch.first, batch.last))
            moved = conn.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (batch.first, batch.last)).rowcount
            self._pending -= moved
        return moved

    def dead_letters(self, limit: int = 100) -> list[tuple[int | None, str, str]]:
        """The oldest dead letters as (HTTP status, error, line), for an operator to inspect."""
        with self._lock:
            self._check_open()
            query = "SELECT status, error, line FROM dead_letters ORDER BY id LIMIT ?"
            return [tuple(row) for row in self._conn.execute(query, (limit,))]

    def requeue_dead_letters(self) -> int:
        """Put every dead letter back at the end of the outbox (after fixing the cause); return how many."""
        with self._transaction() as conn:
            moved = conn.execute("INSERT INTO outbox (line) SELECT line FROM dead_letters ORDER BY id").rowcount
            conn.execute("DELETE FROM dead_letters")
            self._pending += moved
        self._report_level(0)
        return moved

    # --- state -------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Lines waiting for the server's acknowledgement."""
        return self._pending

    def stats(self) -> SpoolStats:
        """Pending, limit, dead letters and dropped lines, for logs and /metrics."""
        with self._lock:
            self._check_open()
            dead = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            dropped = self._dropped(self._conn)
        return SpoolStats(self._pending, self.max_lines, dead, dropped, self.level)

    @property
    def level(self) -> SpoolLevel:
        """OK, NEAR_FULL (past the warning mark) or FULL (at the limit: the oldest lines are being dropped)."""
        if self._pending >= self.max_lines:
            return SpoolLevel.FULL
        return SpoolLevel.NEAR_FULL if self._pending >= self.warn_at else SpoolLevel.OK

    def close(self) -> None:
        """Close the file; pending lines stay in it for the next start."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()

    # --- internals ---------------------------------------------------------------------------------

    def _open(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); a network share?")
        # FULL: a line whose append returned survives a power cut, not only a crash of this process.
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: spool schema {version} is newer than {SCHEMA_VERSION}")
        for ddl in _SCHEMA:
            conn.execute(ddl)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and an IMMEDIATE transaction; on error roll back and recount what is pending."""
        with self._lock:
            self._check_open()
            try:
                with immediate_transaction(self._conn) as conn:
                    yield conn
            except BaseException:
                self._pending = self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError(f"{self.path}: spool is closed")

    def _drop_oldest(self, conn: sqlite3.Connection, count: int) -> int:
        dropped = conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (count,)).rowcount
        conn.execute("INSERT INTO meta VALUES ('dropped', ?) ON CONFLICT (key) DO UPDATE SET value = value + ?",
                     (dropped, dropped))
        return dropped

    @staticmethod
    def _dropped(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return row[0] if row else 0

    def _report_level(self, dropped: int) -> None:
        """Log loudly on the way to full and while full; quietly re-arm once the spool drains."""
        pending = self._pending
        if dropped:
            self._unlogged_drops += dropped
            now = self._clock()
            if self._last_drop_log is None or now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
                log.error("spool %s is FULL (%d lines): dropped the %d oldest readings; the store has not "
                          "acknowledged writes for too long", self.path, self.max_lines, self._unlogged_drops)
                self._last_drop_log = now
                self._unlogged_drops = 0
        if not self._warned and pending >= self.warn_at:
            self._warned = True
            log.warning("spool %s is %d%% full (%d of %d lines): the store is not keeping up or is down",
                        self.path, 100 * pending // self.max_lines, pending, self.max_lines)
        elif self._warned and pending < self.warn_at - REARM_MARGIN * self.max_lines:
            self._warned = False
            self._last_drop_log = None
            log.info("spool %s is draining: %d of %d lines", self.path, pending, self.max_lines)
