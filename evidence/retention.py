"""Retention per data kind, with every automatic deletion recorded in the audit log first.

=============  =========================================================  ==============================
kind           what                                                       default
=============  =========================================================  ==============================
readings       raw samples (``samples``)                                  ``storage.retention_days`` (400)
events         traps and scenario markers (``events``)                    the same as readings
rollups        1-hour rollup cells (``rollup_3600s``); 1- and 15-minute    1826 days (5 years); never
               cells go with the raw samples (InfluxDB: its own policy)   less than the raw samples
evidence       generator runs, UPS self-tests, power events               2557 days (7 years)
alert_history  alert transitions, applied operator commands, ended        2557 days
               silences, delivered or dead notifications
drills         drill reports (``drill_run``)                              2557 days
audit          the hash-chained audit log and its checkpoints             forever (not configurable)
=============  =========================================================  ==============================

The audit log is kept forever: its table refuses UPDATE and DELETE (triggers) and a verifier treats a
missing prefix as an attack, so retention never touches it; archive it by exporting signed packs.
``RetentionPolicy(audit_days=...)`` is refused for that reason.

Fail closed: for every kind that holds something older than its cutoff, a ``retention.deletion`` record
(kind, cutoff, tables) is appended BEFORE anything is deleted; if the audit log cannot take it nothing
of that kind is deleted (and the pass is retried next time). A second record gives the rows removed.
"""

from __future__ import annotations

import logging
import sqlite3
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from evidence.auditlog import AuditLog, AuditWriteError, audited, utc_text
from storage.connection import open_connection

if TYPE_CHECKING:
    from config.load import Site
    from storage.sqlite import SqliteStore

log = logging.getLogger("facwatch.retention")
DAY_S = 86_400.0
SEVEN_YEARS_DAYS = 2557.0
FIVE_YEARS_DAYS = 1826.0
ACTOR = "facwatch retention"

# kind → (table, time column, extra condition) of the plain SQL kinds; readings/events go through the store
_TABLES: Mapping[str, tuple[tuple[str, str, str], ...]] = {
    "evidence": (("evidence_generator_run", "start", ""), ("evidence_ups_self_test", "start", ""),
                 ("evidence_power_event", "start", "")),
    "alert_history": (("alert_transition", "at", ""),
                      ("operator_command", "requested_at", "AND applied_at IS NOT NULL"),
                      ("silence", "COALESCE(expired_at, ends_at)", ""),
                      ("notify_outbox", "created_at", "AND state IN ('delivered', 'dead')")),
    "drills": (("drill_run", "started_at", ""),),
}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep per kind (None = forever). Schema keys to come: ``storage.retention.<kind>_days``.

    Example: ``RetentionPolicy(readings_days=400, evidence_days=2557)``.
    """

    readings_days: float | None = 400.0
    events_days: float | None = 400.0
    evidence_days: float | None = SEVEN_YEARS_DAYS
    alert_history_days: float | None = SEVEN_YEARS_DAYS
    drills_days: float | None = SEVEN_YEARS_DAYS
    audit_days: float | None = field(default=None)
    # Not in days(): a kind of its own, pruned after readings; the store never prunes cells it still needs.
    rollups_days: float | None = FIVE_YEARS_DAYS

    def __post_init__(self) -> None:
        if self.audit_days is not None:
            raise ValueError("the audit log is kept forever (append-only, hash-chained): audit retention "
                             "cannot be set; archive it by exporting signed evidence packs")
        for kind, days in {**self.days(), "rollups": self.rollups_days}.items():
            if days is not None and days <= 0:
                raise ValueError(f"{kind} retention must be a positive number of days (or forever)")

    def days(self) -> dict[str, float | None]:
        """Kind → days, in the order a pass handles them."""
        return {"readings": self.readings_days, "events": self.events_days, "evidence": self.evidence_days,
                "alert_history": self.alert_history_days, "drills": self.drills_days}

    @classmethod
    def for_site(cls, site: Site) -> RetentionPolicy:
        """The site's policy: raw readings and events from ``storage.retention_days``, the rest defaults."""
        days = float(site.config.storage.retention_days)
        return cls(readings_days=days, events_days=days)


class Retention:
    """One retention pass over the shared SQLite file per call (the reading writer calls it hourly).

    Example: ``Retention(RetentionPolicy.for_site(site), store, AuditLog.open(db))(time.time())``.
    """

    def __init__(self, policy: RetentionPolicy, store: SqliteStore, audit: AuditLog,
                 clock: Callable[[], float] = _time.time):
        self.policy, self.store, self.audit, self.clock = policy, store, audit, clock

    def __call__(self, now: float | None = None) -> int:
        """Delete what is past its retention, kind by kind; return the rows removed."""
        now = self.clock() if now is None else now
        removed = 0
        for kind, days in {**self.policy.days(), "rollups": self.policy.rollups_days}.items():
            if days is None:
                continue
            try:
                removed += self.apply(kind, now - days * DAY_S)
            except AuditWriteError as exc:
                log.error("retention of %s skipped: the audit log cannot record the deletion (%s)", kind, exc)
        return removed

    def apply(self, kind: str, cutoff: float) -> int:
        """Delete ``kind`` older than ``cutoff`` (epoch s), audited first; 0 when nothing is that old."""
        tables = self._tables_with_old(kind, cutoff)
        if not tables:
            return 0
        details = {"kind": kind, "cutoff": utc_text(cutoff), "tables": tables}
        with audited(self.audit, "retention.deletion", ACTOR, f"retention {kind}", details=details,
                     source="retention") as entry:
            removed = self._delete(kind, cutoff)
        self.audit.append("retention.deletion", ACTOR, f"retention {kind}", source="retention",
                          details={"outcome": "done", "of_seq": entry.seq, "rows": removed})
        log.info("retention removed %d %s rows older than %s", removed, kind, utc_text(cutoff))
        return removed

    def _tables_with_old(self, kind: str, cutoff: float) -> list[str]:
        if kind in ("readings", "events", "rollups"):
            table = {"readings": "samples", "events": "events", "rollups": "rollup_3600s"}[kind]
            return [table] if self.store.has_old(kind, cutoff) else []
        return [table for table, column, extra in _TABLES[kind] if _exists_old(self.store.path, table, column,
                                                                               extra, cutoff)]

    def _delete(self, kind: str, cutoff: float) -> int:
        if kind == "readings":
            return self.store.apply_retention(cutoff, days=0.0)
        if kind == "events":
            return self.store.prune_events(cutoff)
        if kind == "rollups":
            return self.store.prune_rollups(cutoff)
        conn = _connect(self.store.path)
        try:
            total = 0
            for table, column, extra in _TABLES[kind]:
                try:
                    total += conn.execute(f"DELETE FROM {table} WHERE {column} < ? {extra}", (cutoff,)).rowcount
                except sqlite3.OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
            return total
        finally:
            conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    return open_connection(path)


def _exists_old(path: Path, table: str, column: str, extra: str, cutoff: float) -> bool:
    conn = _connect(path)
    try:
        return conn.execute(f"SELECT 1 FROM {table} WHERE {column} < ? {extra} LIMIT 1", (cutoff,)).fetchone() \
            is not None
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False
        raise
    finally:
        conn.close()
