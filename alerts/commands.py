"""Operator actions — acknowledge, silence, maintenance window, expire — as commands in the store.

The dashboard and the CLI never call into the engine (DESIGN.md §2): they append a command row, and the
alerting loop in the collector process applies pending commands on its next tick and records the
outcome. The command table is therefore also the record of who asked for what, when and from where.
Silences live in their own table (written only by the applier) so they survive restarts; components
write heartbeats here so the dashboard can tell "no data" from "facwatch itself is down".
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from alerts.model import Alert, AlertState

if TYPE_CHECKING:
    from alerts.engine import AlertEngine
    from alerts.pipeline import NotificationPipeline
    from evidence.auditlog import AuditLog

LOGGER = logging.getLogger("facwatch.commands")

CommandKind = Literal["ack", "silence", "expire_silence"]
SilenceKind = Literal["silence", "maintenance"]
MAX_SILENCE_S = 31 * 86_400  # a mute longer than a month is a forgotten mute
MAX_TEXT = 2000  # notes and reasons are free text from a browser: bounded
SEVERITIES = ("critical", "warning", "info")  # what a silence may be limited to

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_command (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL, author TEXT NOT NULL,
    source TEXT NOT NULL, requested_at REAL NOT NULL, applied_at REAL, outcome TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS operator_command_pending ON operator_command (applied_at, id);
CREATE TABLE IF NOT EXISTS silence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, matchers TEXT NOT NULL, severities TEXT,
    reason TEXT NOT NULL, author TEXT NOT NULL, starts_at REAL NOT NULL, ends_at REAL NOT NULL,
    created_at REAL NOT NULL, expired_at REAL, expired_by TEXT, command_id INTEGER);
CREATE TABLE IF NOT EXISTS heartbeat (
    component TEXT PRIMARY KEY, at REAL NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Command:
    """One requested operator action and, once applied, its outcome (``applied`` or ``refused``)."""

    id: int
    kind: CommandKind
    payload: Mapping[str, object]
    author: str
    source: str
    requested_at: float
    applied_at: float | None = None
    outcome: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """A stored silence or maintenance window: label matchers (all must be equal), reason, author, expiry."""

    id: int
    kind: SilenceKind
    matchers: Mapping[str, str]
    severities: tuple[str, ...] | None
    reason: str
    author: str
    starts_at: float
    ends_at: float
    created_at: float
    expired_at: float | None = None
    expired_by: str | None = None

    @property
    def ended_at(self) -> float:
        """When it stops muting: its end, or earlier if someone expired it."""
        return self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)

    def active(self, now: float) -> bool:
        """True from its start until its end or until someone expired it."""
        return self.starts_at <= now < self.ended_at

    def mutes(self, alert: Alert, now: float) -> bool:
        """True while active, every matcher equal (``alertname`` = the rule) and the severity accepted."""
        if not self.active(now) or (self.severities and str(alert.severity) not in self.severities):
            return False
        return all(alert.labels.get(k) == v or (k == "alertname" and alert.rule == v)
                   for k, v in self.matchers.items())


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last sign of life of a facwatch component (``collector``, ``alerting``)."""

    component: str
    at: float
    pid: int
    host: str


class ActionStore:
    """Commands, silences and heartbeats in the shared SQLite file (its own connection, WAL).

    Example: the dashboard calls ``actions.request_ack(fp, "j.smith", "on it", source="10.0.0.7")``; the
    alerting loop calls ``actions.pending()``, applies each, then ``actions.finish(id, "applied")``.
    """

    def __init__(self, path: str | Path, clock=time.time):
        self.conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        if str(path) != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.executescript(_SCHEMA)
        self.clock = clock

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    # -- requests (dashboard, CLI) -----------------------------------------------------------------------

    def request_ack(self, fingerprint: str, author: str, note: str = "", source: str = "cli") -> int:
        """Ask for an alert to be acknowledged; returns the command id."""
        _require_text("fingerprint", fingerprint, 64)
        return self._request("ack", {"fingerprint": fingerprint, "note": _bounded("note", note)}, author, source)

    def request_silence(self, matchers: Mapping[str, str], ends_at: float, reason: str, author: str, *,
                        kind: SilenceKind = "silence", starts_at: float | None = None,
                        severities: tuple[str, ...] | None = None, source: str = "cli") -> int:
        """Ask for a silence or maintenance window; reason and expiry are required, at most 31 days long."""
        now = self.clock()
        starts = now if starts_at is None else starts_at
        _check_silence(matchers, starts, ends_at, reason, kind)
        if severities and not set(severities) <= set(SEVERITIES):
            raise ValueError(f"severities must be among {', '.join(SEVERITIES)}")
        payload = {"kind": kind, "matchers": dict(matchers), "starts_at": starts, "ends_at": ends_at,
                   "reason": reason.strip(), "severities": list(severities) if severities else None}
        return self._request("silence", payload, author, source)

    def request_expire(self, silence_id: int, author: str, source: str = "cli") -> int:
        """Ask for a silence to end now."""
        return self._request("expire_silence", {"silence_id": int(silence_id)}, author, source)

    def _request(self, kind: CommandKind, payload: dict, author: str, source: str) -> int:
        _require_text("author", author, 200)
        cursor = self.conn.execute(
            "INSERT INTO operator_command (kind, payload, author, source, requested_at) VALUES (?, ?, ?, ?, ?)",
            (kind, json.dumps(payload), author.strip(), source or "unknown", self.clock()))
        return int(cursor.lastrowid or 0)

    # -- the applier's side (alerting loop) ---------------------------------------------------------------

    def pending(self) -> list[Command]:
        """Commands not yet applied, oldest first."""
        return self._commands("WHERE applied_at IS NULL ORDER BY id")

    def finish(self, command_id: int, outcome: Literal["applied", "refused"], detail: str = "") -> None:
        """Record a command's outcome."""
        self.conn.execute("UPDATE operator_command SET applied_at=?, outcome=?, detail=? WHERE id=?",
                          (self.clock(), outcome, detail, command_id))

    def add_silence(self, command: Command) -> int:
        """Store the silence a ``silence`` command asked for; returns its id (the same id if asked again).

        Idempotent per command, so a command applied but not marked finished (the database busy at that
        moment) is not turned into a second silence when the applier retries it.
        """
        row = self.conn.execute("SELECT id FROM silence WHERE command_id=?", (command.id,)).fetchone()
        if row is not None:
            return int(row[0])
        p = command.payload
        cursor = self.conn.execute(
            "INSERT INTO silence (kind, matchers, severities, reason, author, starts_at, ends_at, created_at, "
            "command_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p["kind"], json.dumps(p["matchers"], sort_keys=True), json.dumps(p.get("severities")), p["reason"],
             command.author, p["starts_at"], p["ends_at"], self.clock(), command.id))
        return int(cursor.lastrowid or 0)

    def expire_silence(self, silence_id: int, author: str) -> bool:
        """End a silence now; False when it does not exist or has already ended."""
        now = self.clock()
        cursor = self.conn.execute(
            "UPDATE silence SET expired_at=?, expired_by=? WHERE id=? AND expired_at IS NULL AND ends_at > ?",
            (now, author, silence_id, now))
        return cursor.rowcount == 1

    # -- reads (dashboard, pipeline) ----------------------------------------------------------------------

    def silence(self, silence_id: int) -> SilenceRecord | None:
        """One stored silence or maintenance window, ended or not."""
        row = self.conn.execute(
            "SELECT id, kind, matchers, severities, reason, author, starts_at, ends_at, created_at, expired_at, "
            "expired_by FROM silence WHERE id=?", (silence_id,)).fetchone()
        return None if row is None else _silence(row)

    def silences(self, include_ended: bool = False, now: float | None = None) -> list[SilenceRecord]:
        """Silences and maintenance windows, newest first; by default only those not yet ended."""
        rows = self.conn.execute(
            "SELECT id, kind, matchers, severities, reason, author, starts_at, ends_at, created_at, expired_at, "
            "expired_by FROM silence ORDER BY id DESC").fetchall()
        records = [_silence(row) for row in rows]
        now = self.clock() if now is None else now
        return records if include_ended else [r for r in records if r.active(now) or r.starts_at > now]

    def history(self, limit: int = 200) -> list[Command]:
        """The latest commands, newest first: who asked for what, when, from where, and what came of it."""
        return self._commands("ORDER BY id DESC LIMIT ?", (limit,))

    def _commands(self, where: str, args: tuple = ()) -> list[Command]:
        rows = self.conn.execute(
            "SELECT id, kind, payload, author, source, requested_at, applied_at, outcome, detail "
            f"FROM operator_command {where}", args).fetchall()
        return [Command(r[0], r[1], json.loads(r[2]), *r[3:]) for r in rows]

    # -- heartbeats ---------------------------------------------------------------------------------------

    def beat(self, component: str, at: float | None = None) -> None:
        """Record that ``component`` is alive now."""
        self.conn.execute("INSERT OR REPLACE INTO heartbeat VALUES (?, ?, ?, ?)",
                          (component, self.clock() if at is None else at, os.getpid(), socket.gethostname()))

    def heartbeats(self) -> dict[str, Heartbeat]:
        """The last heartbeat of every component that ever wrote one."""
        rows = self.conn.execute("SELECT component, at, pid, host FROM heartbeat").fetchall()
        return {row[0]: Heartbeat(*row) for row in rows}


def _silence(row: tuple) -> SilenceRecord:
    severities = json.loads(row[3]) if row[3] else None
    return SilenceRecord(row[0], row[1], json.loads(row[2]), tuple(severities) if severities else None, *row[4:])


def _require_text(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is required")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")


def _bounded(name: str, value: str | None) -> str:
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _check_silence(matchers: Mapping[str, str], starts: float, ends: float, reason: str, kind: str) -> None:
    if kind not in ("silence", "maintenance"):
        raise ValueError("kind must be silence or maintenance")
    if not matchers or not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in matchers.items()):
        raise ValueError("a silence needs at least one label matcher (e.g. device=dh1-ups-a); muting everything "
                         "is not allowed")
    _require_text("reason", reason, MAX_TEXT)
    if ends <= starts:
        raise ValueError("a silence must end after it starts")
    if ends - starts > MAX_SILENCE_S:
        raise ValueError("a silence may last at most 31 days")


_ACKABLE = (AlertState.PENDING, AlertState.FIRING)


class CommandRefused(Exception):
    """A command that cannot be applied; its message is the detail recorded for the operator."""


class CommandApplier:
    """Applies pending operator commands in order on the alerting loop, recording every outcome.

    ``changed`` receives the alerts an ack changed (a latched alert that may now resolve); the pipeline,
    when there is one, learns of acks (so escalation stops) and of new or expired silences at once. A
    command that fails for any other reason is refused with the error: it never blocks the queue.

    With an ``audit`` log (the runtime always passes one) every action is fail-closed: its audit record
    (who = the author, from where = the command's source, before/after, the command id and request time)
    is written *before* it is applied, and when that write fails the command is refused and not applied.
    A refusal found before anything changes (no such alert, silence already ended) is not audited: the
    command table records it.

    Example: ``CommandApplier(ActionStore(db), engine, alerting.changed, pipeline, audit).apply_pending()``
    once per tick of the alerting loop.
    """

    def __init__(self, actions: ActionStore, engine: AlertEngine,
                 changed: Callable[[list[Alert]], None] = lambda alerts: None,
                 pipeline: NotificationPipeline | None = None, audit: AuditLog | None = None):
        self.actions, self.engine, self.changed, self.pipeline = actions, engine, changed, pipeline
        self.audit = audit
        self._handlers: dict[str, Callable[[Command], str]] = {
            "ack": self._ack, "silence": self._silence, "expire_silence": self._expire}

    def apply_pending(self) -> list[Command]:
        """Apply every pending command, oldest first; returns them with their outcomes."""
        done = []
        for command in self.actions.pending():
            outcome, detail = self._apply(command)
            self.actions.finish(command.id, outcome, detail)  # type: ignore[arg-type]
            LOGGER.info("operator command #%d %s by %s: %s (%s)", command.id, command.kind, command.author,
                        outcome, detail)
            done.append(Command(command.id, command.kind, command.payload, command.author, command.source,
                                command.requested_at, self.actions.clock(), outcome, detail))
        return done

    def _apply(self, command: Command) -> tuple[str, str]:
        handler = self._handlers.get(command.kind)
        if handler is None:
            return "refused", f"unknown command kind {command.kind!r}"
        try:
            return "applied", handler(command)
        except CommandRefused as exc:
            return "refused", str(exc)
        except Exception as exc:  # a bug must not block the queue or stop the alerting loop
            LOGGER.exception("operator command #%d (%s) failed", command.id, command.kind)
            return "refused", f"internal error, not applied: {type(exc).__name__}: {exc}"

    def _ack(self, command: Command) -> str:
        fp = str(command.payload["fingerprint"])
        current = {a.fingerprint: a for a in self.engine.alerts()}.get(fp)
        if current is None:
            stored = self.engine.store.get(fp)
            if stored is None:
                raise CommandRefused(f"no alert with fingerprint {fp}")
            raise CommandRefused(f"alert {stored.rule} {fp} is {stored.state.value}, not pending or firing: "
                                 "nothing to acknowledge")
        previous = current.acknowledged_by
        note = str(command.payload.get("note") or "") or None
        before = {"state": current.state.value, "acknowledged_by": previous}
        with self._audited(command, "alert.ack", f"alert {current.rule} {fp}", before,
                           {"acknowledged_by": command.author, "note": note}):
            changed = self.engine.acknowledge(fp, command.author, note, self.actions.clock())
        acked = {a.fingerprint: a for a in self.engine.alerts()}.get(fp) or self.engine.store.get(fp)
        if self.pipeline is not None and acked is not None:
            self.pipeline.acknowledge(acked)
        if changed:
            self.changed(changed)
        detail = f"acknowledged {current.rule} on {current.labels.get('device', current.labels.get('site', '?'))}"
        return detail + (f" (taking over from {previous})" if previous and previous != command.author else "")

    def _silence(self, command: Command) -> str:
        payload = command.payload
        ends_at = float(payload["ends_at"])  # type: ignore[arg-type]
        if ends_at <= self.actions.clock():
            raise CommandRefused("the silence had already ended when it was applied")
        matchers = ", ".join(f"{k}={v}" for k, v in dict(payload["matchers"]).items())  # type: ignore[call-overload]
        action = "maintenance" if payload.get("kind") == "maintenance" else "silence"
        with self._audited(command, action, f"{payload['kind']} {matchers}", None, dict(payload)):
            silence_id = self.actions.add_silence(command)
        self._silences_changed()
        return f"{payload['kind']} #{silence_id} created for {matchers}"

    def _expire(self, command: Command) -> str:
        silence_id = int(command.payload["silence_id"])  # type: ignore[call-overload]
        record = self.actions.silence(silence_id)
        if record is None or record.ended_at <= self.actions.clock():
            raise CommandRefused(f"no active silence #{silence_id} (unknown, or already ended)")
        before = {k: v for k, v in asdict(record).items() if k != "id"}
        with self._audited(command, record.kind, f"{record.kind} #{silence_id}", before,
                           {"expired_by": command.author, "operation": "expire"}):
            if not self.actions.expire_silence(silence_id, command.author):
                raise CommandRefused(f"no active silence #{silence_id} (unknown, or already ended)")
        self._silences_changed()
        return f"silence #{silence_id} expired"

    def _silences_changed(self) -> None:
        if self.pipeline is not None:
            self.pipeline.reload_silences()

    @contextmanager
    def _audited(self, command: Command, action: str, subject: str, before: object,
                 after: object) -> Iterator[None]:
        """Audit the command first; if the record cannot be written, refuse it (the body never runs)."""
        if self.audit is None:
            yield
            return
        from evidence.auditlog import AuditWriteError

        details = {"command_id": command.id, "command": command.kind, "requested_at": command.requested_at}
        try:
            entry = self.audit.append(action, command.author, subject, before=before, after=after,
                                      details=details, source=command.source)
        except AuditWriteError as exc:
            LOGGER.error("operator command #%d refused: the audit log cannot record it: %s", command.id, exc)
            raise CommandRefused(f"not applied: the audit log cannot record it ({exc})") from exc
        try:
            yield
        except BaseException as exc:  # recorded as not completed (as ``evidence.auditlog.audited`` does)
            failure = {"outcome": "failed", "of_seq": entry.seq, "error": type(exc).__name__,
                       "command_id": command.id}
            try:
                self.audit.append(action, command.author, subject, details=failure, source=command.source)
            except AuditWriteError as write_error:
                exc.add_note(f"and its failure could not be audited: {write_error}")
            raise
