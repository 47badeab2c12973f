"""Durable notification outbox and notification log (SQLite, WAL), and the delivery loop that drains it.

Enqueue commits before it returns, together with the notification-log entry that dedup reads, so a
crash can neither lose a notification nor page twice for it (Alertmanager nflog). Delivery is
at-least-once: a row stays pending until its notifier succeeds or refuses it for good.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.model import Alert, AlertState
from alerts.notifiers import DeliveryError, NotificationBatch, Notifier, batch_from_dict, batch_to_dict
from collectors.model import Severity
from storage.connection import open_connection

LOGGER = logging.getLogger("facwatch.outbox")
MAX_RETRY_AFTER = 3600.0  # a server asking for more than an hour is not trusted with a page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL, group_key TEXT NOT NULL,
    batch TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
    delivered_at REAL);
CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS notify_log (
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, firing TEXT NOT NULL, resolved TEXT NOT NULL,
    sent_at REAL NOT NULL, PRIMARY KEY (receiver, group_key));
CREATE TABLE IF NOT EXISTS notify_log_alert (
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, fingerprint TEXT NOT NULL, first_sent_at REAL NOT NULL,
    PRIMARY KEY (receiver, group_key, fingerprint));
"""
ESCALATION_PREFIX = "escalation/"  # group keys of escalations: escalation/<index>:<receiver>


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What was last notified for one group and receiver."""

    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: float


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued notification."""

    id: int
    batch: NotificationBatch
    attempts: int
    created_at: float


class Outbox:
    """The outbox and notification log tables in one SQLite file, on a connection of their own."""

    def __init__(self, path: str | Path):
        # FULL: a page acknowledged to the pipeline survives power loss
        self.conn = open_connection(path, synchronous="FULL")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def enqueue(self, batch: NotificationBatch, now: float, log: LogEntry | None = None) -> int:
        """Store a batch (and its log entry) durably; returns the row id."""
        with self._transaction():
            cursor = self.conn.execute(
                "INSERT INTO notify_outbox (receiver, group_key, batch, created_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?, ?)", (batch.receiver, batch.group_key, json.dumps(batch_to_dict(batch)), now, now))
            if log is not None:
                self.conn.execute("INSERT OR REPLACE INTO notify_log VALUES (?, ?, ?, ?, ?)",
                                  (batch.receiver, batch.group_key, json.dumps(sorted(log.firing)),
                                   json.dumps(sorted(log.resolved)), log.sent_at))
                self._log_alerts(batch.receiver, batch.group_key, log)
        return int(cursor.lastrowid or 0)

    def _log_alerts(self, receiver: str, group_key: str, log: LogEntry) -> None:
        """Since when each alert of the entry has been notified as firing (kept while it stays firing)."""
        key = (receiver, group_key)
        known = {row[0] for row in self.conn.execute(
            "SELECT fingerprint FROM notify_log_alert WHERE receiver=? AND group_key=?", key)}
        self.conn.executemany("DELETE FROM notify_log_alert WHERE receiver=? AND group_key=? AND fingerprint=?",
                              [(*key, fp) for fp in known - log.firing])
        self.conn.executemany("INSERT INTO notify_log_alert VALUES (?, ?, ?, ?)",
                              [(*key, fp, log.sent_at) for fp in sorted(log.firing - known)])

    def escalations(self) -> dict[str, tuple[str, float]]:
        """Alerts escalated and not yet resolved or acknowledged: fingerprint → (receiver, escalated at).

        Read from the notification log, so any process with the SQLite file (the dashboard) can call it.
        An alert escalated by more than one rule shows its first escalation.
        """
        rows = self.conn.execute(
            "SELECT l.receiver, l.group_key, l.firing, l.sent_at, a.fingerprint, a.first_sent_at FROM notify_log l "
            "LEFT JOIN notify_log_alert a ON a.receiver = l.receiver AND a.group_key = l.group_key "
            "WHERE l.group_key LIKE ? ORDER BY l.group_key", (ESCALATION_PREFIX + "%",)).fetchall()
        first: dict[tuple[str, str, str], float] = {}
        firing: dict[tuple[str, str], tuple[list[str], float]] = {}
        for receiver, group_key, fps, sent_at, fp, first_sent_at in rows:
            firing[(receiver, group_key)] = (json.loads(fps), sent_at)
            if fp is not None:
                first[(receiver, group_key, fp)] = first_sent_at
        out: dict[str, tuple[str, float]] = {}
        for (receiver, group_key), (fps, sent_at) in firing.items():
            for fp in fps:
                at = first.get((receiver, group_key, fp), sent_at)  # logs written before this table: last send
                if fp not in out or at < out[fp][1]:
                    out[fp] = (receiver, at)
        return out

    def open_logs(self, prefix: str) -> list[tuple[str, str, LogEntry]]:
        """(receiver, group key, entry) of every log entry under a group-key prefix that still lists firing alerts."""
        rows = self.conn.execute("SELECT receiver, group_key, firing, resolved, sent_at FROM notify_log "
                                 "WHERE group_key LIKE ? AND firing != '[]' ORDER BY receiver, group_key",
                                 (prefix + "%",)).fetchall()
        return [(receiver, key, LogEntry(frozenset(json.loads(firing)), frozenset(json.loads(resolved)), sent_at))
                for receiver, key, firing, resolved, sent_at in rows]

    def last_batch(self, receiver: str, group_key: str) -> NotificationBatch | None:
        """The newest batch enqueued for this receiver and group (the one its log entry describes), or None."""
        row = self.conn.execute("SELECT batch FROM notify_outbox WHERE receiver=? AND group_key=? ORDER BY id DESC "
                                "LIMIT 1", (receiver, group_key)).fetchone()
        return None if row is None else batch_from_dict(json.loads(row[0]))

    def last_notified(self, receiver: str, group_key: str) -> LogEntry | None:
        """The log entry of a group, or None if it was never notified."""
        row = self.conn.execute("SELECT firing, resolved, sent_at FROM notify_log WHERE receiver=? AND group_key=?",
                                (receiver, group_key)).fetchone()
        if row is None:
            return None
        return LogEntry(frozenset(json.loads(row[0])), frozenset(json.loads(row[1])), row[2])

    def due(self, now: float, limit: int = 100) -> list[OutboxRow]:
        """Pending rows whose next attempt is due, oldest first."""
        rows = self.conn.execute(
            "SELECT id, batch, attempts, created_at FROM notify_outbox WHERE state='pending' AND next_attempt_at<=? "
            "ORDER BY id LIMIT ?", (now, limit)).fetchall()
        return [OutboxRow(r[0], batch_from_dict(json.loads(r[1])), r[2], r[3]) for r in rows]

    def next_due_at(self) -> float | None:
        """When the earliest pending row is due."""
        return self.conn.execute("SELECT MIN(next_attempt_at) FROM notify_outbox WHERE state='pending'").fetchone()[0]

    def mark_delivered(self, row_id: int, now: float) -> None:
        """The notifier accepted the row."""
        self._update(row_id, "state='delivered', delivered_at=?, attempts=attempts+1", now)

    def mark_retry(self, row_id: int, next_attempt_at: float, reason: str) -> None:
        """A retryable failure: try again later."""
        self._update(row_id, "attempts=attempts+1, next_attempt_at=?, last_error=?", next_attempt_at, reason)

    def mark_dead(self, row_id: int, reason: str) -> None:
        """A permanent failure (a 4xx): kept with the reason, never retried."""
        self._update(row_id, "state='dead', attempts=attempts+1, last_error=?", reason)

    def rows(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every row (for tests, status pages and the evidence pack)."""
        query = ("SELECT id, receiver, group_key, state, attempts, last_error, created_at, delivered_at "
                 "FROM notify_outbox")
        params: tuple = ()
        if state is not None:
            query, params = query + " WHERE state=?", (state,)
        names = ("id", "receiver", "group_key", "state", "attempts", "last_error", "created_at", "delivered_at")
        return [dict(zip(names, r, strict=True)) for r in self.conn.execute(query + " ORDER BY id", params)]

    def _update(self, row_id: int, assignments: str, *values: Any) -> None:
        with self._transaction():
            self.conn.execute(f"UPDATE notify_outbox SET {assignments} WHERE id=?", (*values, row_id))

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if kind else "COMMIT")


def meta_alert(receiver: str, since: float, state: AlertState, now: float) -> Alert:
    """The "notifications to X are failing" alert."""
    return Alert("notification_failing", {"receiver": receiver, "device": "facwatch"}, Severity.CRITICAL, state,
                 summary=f"notifications to receiver {receiver} failing since {since:.0f}", fired_at=since,
                 resolved_at=now if state == AlertState.RESOLVED else None, updated_at=now)


class Deliverer:
    """Drains the outbox through the notifiers with exponential backoff; raises meta-alerts on long failures."""

    def __init__(self, outbox: Outbox, notifiers: Mapping[str, Notifier], *, initial_backoff: float = 2.0,
                 max_backoff: float = 60.0, failing_after: float = 300.0, meta_receivers: tuple[str, ...] = ()):
        self.outbox = outbox
        self.notifiers = notifiers
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.failing_after = failing_after
        self.meta_receivers = meta_receivers
        self.failing_since: dict[str, float] = {}
        self.meta_raised: set[str] = set()
        self.attempts: list[tuple[float, str, str]] = []  # (time, receiver, outcome): backoff spacing, for tests

    async def deliver_due(self, now: float) -> int:
        """Try every due row once; returns how many were delivered."""
        self._raise_meta_alerts(now)  # first, so the meta-alert goes out in this same pass
        delivered = 0
        for row in self.outbox.due(now):
            delivered += await self._attempt(row, now)
        return delivered

    async def _attempt(self, row: OutboxRow, now: float) -> int:
        receiver = row.batch.receiver
        notifier = self.notifiers.get(receiver)
        if notifier is None:
            self.outbox.mark_dead(row.id, f"no notifier for receiver {receiver}")
            return 0
        try:
            await notifier.send(row.batch)
        except DeliveryError as exc:
            self._failed(row, receiver, exc, now)
            return 0
        self.attempts.append((now, receiver, "ok"))
        self.outbox.mark_delivered(row.id, now)
        self._recovered(receiver, now)
        return 1

    def _failed(self, row: OutboxRow, receiver: str, exc: DeliveryError, now: float) -> None:
        self.attempts.append((now, receiver, exc.reason))
        if not exc.retryable:
            LOGGER.error("notification to %s refused, not retried: %s", receiver, exc.reason)
            self.outbox.mark_dead(row.id, exc.reason)
            return
        if receiver not in self.failing_since:
            LOGGER.warning("notifications to %s failing: %s", receiver, exc.reason)  # once on the way down
        self.failing_since.setdefault(receiver, now)
        delay = min(self.max_backoff, self.initial_backoff * 2 ** row.attempts)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
        self.outbox.mark_retry(row.id, now + delay, exc.reason)

    def _recovered(self, receiver: str, now: float) -> None:
        since = self.failing_since.pop(receiver, None)
        if since is None:
            return
        LOGGER.warning("notifications to %s recovered after %.0f s", receiver, now - since)
        if receiver in self.meta_raised:
            self.meta_raised.discard(receiver)
            self._enqueue_meta(receiver, since, AlertState.RESOLVED, now)

    def _raise_meta_alerts(self, now: float) -> None:
        for receiver, since in self.failing_since.items():
            if receiver not in self.meta_raised and now - since >= self.failing_after:
                self.meta_raised.add(receiver)
                self._enqueue_meta(receiver, since, AlertState.FIRING, now)

    def _enqueue_meta(self, receiver: str, since: float, state: AlertState, now: float) -> None:
        channel = next((r for r in self.meta_receivers if r != receiver and r not in self.failing_since), None)
        if channel is None:
            LOGGER.error("notifications to %s failing and no other receiver to say so", receiver)
            return
        alert = meta_alert(receiver, since, state, now)
        status = "firing" if state == AlertState.FIRING else "resolved"
        self.outbox.enqueue(NotificationBatch(channel, f"meta/{receiver}", [alert], status), now)
