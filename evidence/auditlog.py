"""The append-only, hash-chained audit log in the shared SQLite file, with signed checkpoints.

Every record carries a sequence number (1, 2, 3 … no gaps), the UTC time, who (actor), what (action),
on what (subject), the before/after values (details), from where (source) and the hash of the previous
record; its own hash covers all of that (see ``evidence.chain``). Every ``checkpoint_every`` records, or
when ``checkpoint_interval_s`` has passed, the head (seq, hash) is signed with Ed25519, so a rewrite of
the past needs the key and a truncation shows up as a checkpoint pointing past the end.

It fails closed: ``append`` raises ``AuditWriteError`` when the record is not durably stored, and
``audited(...)`` writes the record *before* the action runs, so an action the log cannot record never
happens. Several processes may append to one file: each append is one ``BEGIN IMMEDIATE`` transaction
that reads the head and writes the next record, so sequence and chain stay consistent.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time as _time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from evidence.chain import GENESIS, ChainRecord, actor_commit, checkpoint_payload, details_text, record_hash
from evidence.keys import SigningKey, load_signing_key
from storage.connection import open_connection

MAX_ACTOR = 200
MAX_SUBJECT = 500
MAX_DETAILS = 64_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, actor_salt TEXT NOT NULL,
    actor_commit TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, details TEXT NOT NULL, source TEXT,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_key (key_id TEXT PRIMARY KEY, public_pem TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;
"""
_ENTRY_COLUMNS = "seq, time, actor, actor_salt, actor_commit, action, subject, details, source, prev_hash, hash"


class AuditAction(StrEnum):
    """What an audit record is about."""

    ALERT_TRANSITION = "alert.transition"
    ACKNOWLEDGEMENT = "alert.ack"
    SILENCE = "silence"
    MAINTENANCE = "maintenance"
    CONFIG_CHANGE = "config.change"
    EXPORT = "evidence.export"
    RETENTION_DELETION = "retention.deletion"
    LOGIN = "login"
    LOGIN_FAILED = "login.failed"
    LOGOUT = "logout"
    USER_ADD = "user.add"
    USER_PASSWORD = "user.password"
    USER_DISABLE = "user.disable"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    AUTHZ_REFUSED = "authz.refused"
    KIOSK_REFUSED = "kiosk.refused"


class AuditWriteError(RuntimeError):
    """The audit record could not be stored: the action it describes must be refused."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored audit record (the actor in clear, with the salt of its commitment).

    Example: ``AuditEntry(seq=7, time="2026-11-22T21:00:00.000000Z", actor="j.smith", action="silence",
    subject="device=dh1-ups-a", details='{"after":{...}}', source="10.0.0.7", ...)``.
    """

    seq: int
    time: str
    actor: str
    actor_salt: str
    actor_commit: str
    action: str
    subject: str
    details: str
    source: str | None
    prev_hash: str
    hash: str

    def chain_record(self) -> ChainRecord:
        """The fields the hash covers."""
        return ChainRecord(self.seq, self.time, self.actor_commit, self.action, self.subject, self.details,
                           self.source, self.prev_hash, self.hash)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "record ``seq`` has hash ``hash``" by the key ``key_id``."""

    seq: int
    hash: str
    time: str
    key_id: str
    signature: str

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return checkpoint_payload(self.seq, self.hash, self.time, self.key_id)


@dataclass(frozen=True, slots=True)
class Segment:
    """The records of a period, the hash before the first of them (anchor) and the checkpoints among them."""

    anchor: str
    entries: list[AuditEntry]
    checkpoints: list[Checkpoint]


def utc_text(epoch: float) -> str:
    """The audit log's time format: ISO 8601 UTC with microseconds and a Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    """Append-only audit records in the shared SQLite file (its own connection, WAL, synchronous=FULL).

    Example: ``log = AuditLog.open(db_path)``; ``with audited(log, AuditAction.SILENCE, "j.smith",
    "device=dh1-ups-a", after=payload, source="10.0.0.7"): actions.request_silence(...)``.
    """

    def __init__(self, path: str | Path, key: SigningKey, *, clock: Callable[[], float] = _time.time,
                 checkpoint_every: int = 100, checkpoint_interval_s: float = 900.0):
        if checkpoint_every < 1 or checkpoint_interval_s <= 0:
            raise ValueError("checkpoints need a positive record count and interval")
        self.path = Path(path)
        self.key = key
        self.clock = clock
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self._lock = threading.Lock()
        try:
            self.conn = _connect(self.path)
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO audit_key VALUES (?, ?, ?)",
                              (key.key_id, key.public_pem().decode("ascii"), utc_text(clock())))
        except sqlite3.Error as exc:
            raise AuditWriteError(f"cannot open the audit log in {self.path}: {exc}") from exc

    @classmethod
    def open(cls, path: str | Path, *, data_dir: str | Path | None = None, key_file: str | Path | None = None,
             **options) -> AuditLog:
        """The audit log of a database file, signing with the configured key (or one generated beside it)."""
        key = load_signing_key(Path(path).parent if data_dir is None else data_dir, key_file=key_file)
        return cls(path, key, **options)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def append(self, action: AuditAction | str, actor: str, subject: str, *,
               before: object = None, after: object = None, details: Mapping[str, object] | None = None,
               source: str | None = None) -> AuditEntry:
        """Store one record durably and return it; raise ``AuditWriteError`` if it could not be stored."""
        action = AuditAction(action)
        text = _details(before, after, details)
        _check_text("actor", actor, MAX_ACTOR)
        _check_text("subject", subject, MAX_SUBJECT)
        with self._lock:
            return self._write(lambda conn: self._insert(conn, action, actor.strip(), subject, text, source))

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (None for an empty log); a head already signed is not signed twice."""
        with self._lock:
            return self._write(self._checkpoint_head)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, GENESIS) for an empty log."""
        with self._lock:
            return _head(self.conn)

    def entries(self, first_seq: int = 1, last_seq: int | None = None) -> list[AuditEntry]:
        """Records from ``first_seq`` to ``last_seq`` (inclusive), in sequence order."""
        last = last_seq if last_seq is not None else 2**62
        with self._lock:
            rows = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM audit_log WHERE seq BETWEEN ? AND ? "
                                     "ORDER BY seq", (first_seq, last)).fetchall()
        return [AuditEntry(*row) for row in rows]

    def checkpoints(self, first_seq: int = 1, last_seq: int | None = None) -> list[Checkpoint]:
        """Checkpoints whose seq lies in the range, in order."""
        last = last_seq if last_seq is not None else 2**62
        with self._lock:
            rows = self.conn.execute("SELECT seq, hash, time, key_id, signature FROM audit_checkpoint "
                                     "WHERE seq BETWEEN ? AND ? ORDER BY seq", (first_seq, last)).fetchall()
        return [Checkpoint(*row) for row in rows]

    def public_keys(self) -> dict[str, str]:
        """Every key that ever signed here: key id → public key PEM (keys are rotated, never forgotten)."""
        with self._lock:
            return dict(self.conn.execute("SELECT key_id, public_pem FROM audit_key ORDER BY added_at").fetchall())

    def segment(self, start: float, end: float) -> Segment:
        """Every record from the first stamped at/after ``start`` to the last stamped before ``end``.

        The range is taken by sequence, so a record whose clock stepped backwards inside it is kept.
        """
        with self._lock:
            first, last = self.conn.execute("SELECT MIN(seq), MAX(seq) FROM audit_log WHERE time >= ? AND time < ?",
                                            (utc_text(start), utc_text(end))).fetchone()
            before = self.conn.execute("SELECT hash FROM audit_log WHERE time < ? ORDER BY seq DESC LIMIT 1",
                                       (utc_text(start),)).fetchone()
        if first is None:
            return Segment(before[0] if before else GENESIS, [], [])
        entries = self.entries(first, last)
        return Segment(entries[0].prev_hash, entries, self.checkpoints(first, last))

    # -- writing ------------------------------------------------------------------------------------------

    def _write(self, body: Callable[[sqlite3.Connection], object]):
        try:
            self.conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading the head
        except sqlite3.Error as exc:
            raise AuditWriteError(f"audit log not writable: {exc}") from exc
        try:
            result = body(self.conn)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(self.conn)
            if isinstance(exc, sqlite3.Error | OSError):
                raise AuditWriteError(f"audit record not stored: {exc}") from exc
            raise
        return result

    def _insert(self, conn: sqlite3.Connection, action: str, actor: str, subject: str, text: str,
                source: str | None) -> AuditEntry:
        seq, prev = _head(conn)
        seq += 1
        now = utc_text(self.clock())
        salt = secrets.token_hex(16)
        commit = actor_commit(salt, actor)
        digest = record_hash(seq, now, commit, action, subject, text, source, prev)
        entry = AuditEntry(seq, now, actor, salt, commit, action, subject, text, source, prev, digest)
        conn.execute(f"INSERT INTO audit_log ({_ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     (seq, now, actor, salt, commit, action, subject, text, source, prev, digest))
        if self._checkpoint_due(conn, seq):
            self._sign(conn, seq, digest)
        return entry

    def _checkpoint_due(self, conn: sqlite3.Connection, seq: int) -> bool:
        row = conn.execute("SELECT seq, time FROM audit_checkpoint ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return seq >= self.checkpoint_every
        last_seq, last_time = row
        age = self.clock() - datetime.strptime(last_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        return seq - last_seq >= self.checkpoint_every or age >= self.checkpoint_interval_s

    def _checkpoint_head(self, conn: sqlite3.Connection) -> Checkpoint | None:
        seq, digest = _head(conn)
        if seq == 0:
            return None
        existing = conn.execute("SELECT seq, hash, time, key_id, signature FROM audit_checkpoint WHERE seq = ?",
                                (seq,)).fetchone()
        return Checkpoint(*existing) if existing else self._sign(conn, seq, digest)

    def _sign(self, conn: sqlite3.Connection, seq: int, digest: str) -> Checkpoint:
        now = utc_text(self.clock())
        signature = self.key.sign(checkpoint_payload(seq, digest, now, self.key.key_id))
        checkpoint = Checkpoint(seq, digest, now, self.key.key_id, signature)
        conn.execute("INSERT INTO audit_checkpoint VALUES (?, ?, ?, ?, ?)",
                     (seq, digest, now, self.key.key_id, signature))
        return checkpoint


@contextmanager
def audited(log: AuditLog, action: AuditAction | str, actor: str, subject: str, *, before: object = None,
            after: object = None, details: Mapping[str, object] | None = None,
            source: str | None = None) -> Iterator[AuditEntry]:
    """Record an action, then run the ``with`` body; if the record cannot be written the body never runs.

    If the body raises, a second record (same action, ``outcome: failed``, ``of_seq``) says the action did
    not complete, and the exception propagates.
    """
    entry = log.append(action, actor, subject, before=before, after=after, details=details, source=source)
    try:
        yield entry
    except BaseException as exc:
        failure = {"outcome": "failed", "of_seq": entry.seq, "error": type(exc).__name__}
        try:
            log.append(action, actor, subject, details=failure, source=source)
        except AuditWriteError as write_error:
            exc.add_note(f"and its failure could not be audited: {write_error}")
        raise


def _connect(path: Path) -> sqlite3.Connection:
    return open_connection(path, synchronous="FULL")  # an audit record is on disk before the action runs


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def _rollback(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):  # nothing was started, or SQLite already rolled it back
        conn.execute("ROLLBACK")


def _details(before: object, after: object, details: Mapping[str, object] | None) -> str:
    merged: dict[str, object] = dict(details or {})
    if before is not None:
        merged["before"] = before
    if after is not None:
        merged["after"] = after
    try:
        text = details_text(merged)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit details must be plain JSON (no NaN): {exc}") from None
    if len(text) > MAX_DETAILS:
        raise ValueError(f"audit details are longer than {MAX_DETAILS} characters")
    return text


def _check_text(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"audit {name} is required")
    if len(value) > limit:
        raise ValueError(f"audit {name} is longer than {limit} characters")
