"""One way to open facwatch's SQLite file: WAL, a busy wait, and the durability each table needs.

The collector's readings writer, the alert engine, the outbox, the audit log, the auth tables and the
dashboard all share one file, each on a connection of its own: WAL lets readers run beside the one writer,
and the busy wait makes a second writer queue instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

BUSY_TIMEOUT_MS = 10_000  # longer than any write transaction facwatch makes, short enough to surface a hang
Synchronous = Literal["NORMAL", "FULL"]


def open_connection(path: str | Path, *, autocommit: bool = True, synchronous: Synchronous | None = None,
                    **options) -> sqlite3.Connection:
    """A connection in WAL mode with the busy wait; ``synchronous="FULL"`` where a commit must survive power loss.

    ``autocommit=False`` keeps sqlite3's implicit transactions (``with conn:`` commits). The connection may be
    handed between threads (one at a time). ``options`` go to ``sqlite3.connect`` (e.g. ``factory``).
    Raises RuntimeError if SQLite refuses WAL (a network share), rather than running without it.
    """
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                           isolation_level=None if autocommit else "", **options)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if str(path) != ":memory:":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r}); a network share?")
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn
