"""Where privileged actions are recorded: a small sink protocol, a SQLite fallback and an adapter.

The real sink is ``evidence.auditlog.AuditLog`` (hash-chained, signed checkpoints); wrap it with
``AuditLogSink``. ``SqliteAuditSink`` is the fallback table ``auth_audit`` in the shared file, for a
process that runs without the evidence part. Details never hold a secret: callers pass names, roles
and reasons, never passwords or tokens (tests plant canaries to check it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Protocol

from auth.db import Database

log = logging.getLogger(__name__)


class AuthAction(StrEnum):
    """Audit actions written by the auth package."""

    LOGIN = "login"
    LOGIN_FAILED = "login.failed"
    LOGOUT = "logout"
    USER_ADD = "user.add"
    USER_PASSWORD = "user.password"
    USER_DISABLE = "user.disable"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    REFUSED = "authz.refused"
    KIOSK_REFUSED = "kiosk.refused"


class AuditSink(Protocol):
    """Records one privileged action; must raise if it cannot (the action then does not happen)."""

    def record(self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None,
               source: str | None) -> None:
        """Store one event durably."""
        ...


class SqliteAuditSink:
    """The fallback sink: one row per event in ``auth_audit`` (UTC epoch seconds)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time):
        self._db = db
        self._clock = clock

    def record(self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None,
               source: str | None) -> None:
        """Insert one event."""
        text = json.dumps(dict(details or {}), sort_keys=True, default=str)
        with self._db.write() as conn:
            conn.execute("INSERT INTO auth_audit (time, actor, action, subject, details, source) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (self._clock(), actor, str(action), subject, text, source))

    def events(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest events first."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT time, actor, action, subject, details, source FROM auth_audit "
                                "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"time": r[0], "actor": r[1], "action": r[2], "subject": r[3], "details": json.loads(r[4]),
                 "source": r[5]} for r in rows]


class AuditLogSink:
    """Adapts ``evidence.auditlog.AuditLog.append(action, actor, subject, *, details, source)``.

    The audit log accepts only the actions of its ``AuditAction`` enum: every ``AuthAction`` value must
    be in it, or ``record`` raises (fail closed).
    """

    def __init__(self, audit_log: Any):
        self._log = audit_log

    def record(self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None,
               source: str | None) -> None:
        """Append one record to the hash-chained log."""
        self._log.append(str(action), actor, subject, details=dict(details or {}), source=source)


def chained_sink(path: Any) -> AuditLogSink:
    """The hash-chained audit log of the database file at ``path``, as a sink (what facwatch uses)."""
    from evidence.auditlog import AuditLog

    return AuditLogSink(AuditLog.open(path))
