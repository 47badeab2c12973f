"""Thresholds in force: which version of every alert rule and envelope applied when, who changed it and why.

At start-up the runtime compares the loaded rules (one hash per rule, ``evidence.compliance.rule_hash``,
the same version compliance rows carry) with the versions recorded in the ``rule_version`` table. A rule
that is new, changed or gone closes its open version (``valid_to``) and, unless gone, opens a new one with
its whole definition as JSON; every change is first written to the audit log as ``config.change`` (fail
closed: when the audit record cannot be written nothing is recorded and start-up stops).

Who and why: ``changed_by`` / ``reason`` come from the caller (``facwatch run --change-by/--change-reason``)
or the environment (``FACWATCH_CHANGE_BY`` / ``FACWATCH_CHANGE_REASON``); without them they are recorded
as ``unknown (not given)`` — the change itself is never lost for want of a name.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time as _time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evidence.providers import iso, read_only
from storage.connection import open_connection

if TYPE_CHECKING:
    from alerts.rules import Rule
    from evidence.auditlog import AuditLog

NOT_GIVEN = "unknown (not given)"
ENV_BY, ENV_REASON = "FACWATCH_CHANGE_BY", "FACWATCH_CHANGE_REASON"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rule_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, hash TEXT NOT NULL, definition TEXT NOT NULL,
    valid_from REAL NOT NULL, valid_to REAL, changed_by TEXT NOT NULL, reason TEXT NOT NULL,
    closed_by TEXT, close_reason TEXT, audit_seq INTEGER);
CREATE INDEX IF NOT EXISTS rule_version_rule ON rule_version (rule, valid_from);
"""
_COLUMNS = ("id", "rule", "hash", "definition", "valid_from", "valid_to", "changed_by", "reason", "closed_by",
            "close_reason", "audit_seq")


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One difference between the loaded rules and the recorded ones: ``added``, ``changed`` or ``removed``."""

    rule: str
    change: str
    old_hash: str | None
    new_hash: str | None


def change_author(changed_by: str | None = None, reason: str | None = None,
                  environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(who, why) of a configuration change: the arguments, else the environment, else ``unknown (not given)``."""
    who = (changed_by or environ.get(ENV_BY) or "").strip() or NOT_GIVEN
    why = (reason or environ.get(ENV_REASON) or "").strip() or NOT_GIVEN
    return who, why


def rule_definitions(rules: Iterable[Rule]) -> dict[str, tuple[str, str]]:
    """Rule name → (hash, definition as canonical JSON)."""
    from evidence.compliance import rule_hash

    return {rule.name: (rule_hash(rule), json.dumps(rule.model_dump(mode="json", by_alias=True), sort_keys=True,
                                                    separators=(",", ":"))) for rule in rules}


class RuleVersionStore:
    """The ``rule_version`` table in the shared SQLite file.

    Example: ``RuleVersionStore(db).record(load_rules(), audit, "j.smith", "CHG-1234 inlet 27 °C")`` at
    start-up; ``in_force(db, at)`` answers "which thresholds applied at that moment?".
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = _time.time):
        self.conn = open_connection(path)
        self.conn.executescript(_SCHEMA)
        self.clock = clock

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def current(self) -> dict[str, str]:
        """Rule → hash of every open version."""
        return dict(self.conn.execute("SELECT rule, hash FROM rule_version WHERE valid_to IS NULL").fetchall())

    def diff(self, rules: Iterable[Rule]) -> list[RuleChange]:
        """What changed between the recorded versions and ``rules``, by rule name."""
        loaded = {name: digest for name, (digest, _) in rule_definitions(rules).items()}
        recorded = self.current()
        changes = [RuleChange(name, "added" if name not in recorded else "changed", recorded.get(name), digest)
                   for name, digest in sorted(loaded.items()) if recorded.get(name) != digest]
        changes += [RuleChange(name, "removed", digest, None) for name, digest in sorted(recorded.items())
                    if name not in loaded]
        return changes

    def record(self, rules: Iterable[Rule], audit: AuditLog | None, changed_by: str | None = None,
               reason: str | None = None) -> list[RuleChange]:
        """Record every change (audit first, then the table); returns the changes, empty when none."""
        rules = list(rules)
        definitions = rule_definitions(rules)
        who, why = change_author(changed_by, reason)
        changes = self.diff(rules)
        for change in changes:
            seq = self._audit(audit, change, definitions, who, why)
            self._apply(change, definitions, who, why, seq)
        return changes

    def history(self, rule: str | None = None) -> list[dict]:
        """Every recorded version (of one rule, or all), oldest first."""
        where, args = ("WHERE rule = ?", (rule,)) if rule else ("", ())
        rows = self.conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM rule_version {where} "
                                 "ORDER BY valid_from, id", args).fetchall()
        return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]

    def _audit(self, audit: AuditLog | None, change: RuleChange, definitions: Mapping[str, tuple[str, str]],
               who: str, why: str) -> int | None:
        if audit is None:
            return None
        after = json.loads(definitions[change.rule][1]) if change.new_hash else None
        entry = audit.append("config.change", who, f"rule {change.rule}",
                             before={"hash": change.old_hash} if change.old_hash else None,
                             after={"hash": change.new_hash, "definition": after} if after else None,
                             details={"change": change.change, "reason": why}, source="startup")
        return entry.seq

    def _apply(self, change: RuleChange, definitions: Mapping[str, tuple[str, str]], who: str, why: str,
               seq: int | None) -> None:
        now = self.clock()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("UPDATE rule_version SET valid_to=?, closed_by=?, close_reason=? "
                              "WHERE rule=? AND valid_to IS NULL", (now, who, why, change.rule))
            if change.new_hash is not None:
                self.conn.execute(
                    "INSERT INTO rule_version (rule, hash, definition, valid_from, changed_by, reason, audit_seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (change.rule, change.new_hash, definitions[change.rule][1], now, who, why, seq))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise


def in_force(db_path: Path, at: float) -> list[dict]:
    """The rule versions that applied at ``at`` (epoch seconds), one per rule."""
    return _query(db_path, "SELECT {} FROM rule_version WHERE valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) "
                           "ORDER BY rule", (at, at))


def rule_versions(db_path: Path, start: float, end: float) -> list[dict]:
    """Pack provider: every rule version in force at any time in [start, end), with who, when and why."""
    rows = _query(db_path, "SELECT {} FROM rule_version WHERE valid_from < ? AND (valid_to IS NULL OR valid_to >= ?) "
                           "ORDER BY rule, valid_from, id", (end, start))
    return [{**row, "valid_from": iso(row["valid_from"]), "valid_to": iso(row["valid_to"])} for row in rows]


def _query(db_path: Path, sql: str, args: tuple) -> list[dict]:
    with read_only(db_path) as conn:
        try:
            rows = conn.execute(sql.format(", ".join(_COLUMNS)), args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # no runtime ever started against this file
            raise
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
