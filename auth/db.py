"""The auth tables in the shared SQLite file (``CREATE … IF NOT EXISTS``: other parts own other tables).

A connection per operation: the web guard runs on waitress's worker threads and the CLI in its own
process; WAL lets them all read while one writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from storage.connection import open_connection

SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_user (
    name TEXT PRIMARY KEY COLLATE NOCASE, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, password_changed_at REAL NOT NULL,
    disabled_at REAL);
CREATE TABLE IF NOT EXISTS auth_session (
    id_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL COLLATE NOCASE, csrf TEXT NOT NULL,
    kind TEXT NOT NULL, source TEXT, created_at REAL NOT NULL, last_seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS auth_session_user ON auth_session (user_name);
CREATE TABLE IF NOT EXISTS auth_kiosk_token (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE, token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL, created_by TEXT NOT NULL, expires_at REAL, network TEXT, revoked_at REAL,
    revoked_by TEXT, last_used REAL, last_source TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS auth_kiosk_token_active ON auth_kiosk_token (name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS auth_login_failure (
    scope TEXT NOT NULL, key TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS auth_login_failure_key ON auth_login_failure (scope, key, time);
CREATE TABLE IF NOT EXISTS auth_audit (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, details TEXT NOT NULL, source TEXT);
"""


class Database:
    """Opens the shared SQLite file with the auth tables in place."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.read() as conn:
            conn.executescript(SCHEMA)  # executescript commits on its own

    def _connect(self) -> sqlite3.Connection:
        return open_connection(self.path)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading."""
        with closing(self._connect()) as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one ``BEGIN IMMEDIATE`` transaction, committed on success."""
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
