"""Retention per data kind: what goes when, every deletion audited first, the audit log never touched."""

from __future__ import annotations

import json
import sqlite3

import pytest

from collectors.model import Event, Reading, Severity
from evidence.auditlog import AuditLog, AuditWriteError
from evidence.keys import generate_key_file
from evidence.records import EvidenceStore, UpsSelfTest
from evidence.retention import DAY_S, Retention, RetentionPolicy
from storage.sqlite import SqliteStore

NOW = 1_800_000_000.0
OLD, RECENT = NOW - 500 * DAY_S, NOW - 10 * DAY_S


class Clock:
    def __call__(self) -> float:
        return NOW


@pytest.fixture
def db(tmp_path):
    return tmp_path / "facwatch.db"


@pytest.fixture
def store(db):
    with SqliteStore(db) as s:
        s.write([Reading("ups-a", "battery.charge", OLD, 90.0), Reading("ups-a", "battery.charge", RECENT, 95.0)])
        s.write_events([Event(OLD, "ups-a", "trap", "old", Severity.INFO, {}),
                        Event(RECENT, "ups-a", "trap", "new", Severity.INFO, {})])
        yield s


@pytest.fixture
def audit(db):
    with AuditLog(db, generate_key_file(db.parent / "audit.key"), clock=Clock()) as log:
        log.append("alert.ack", "alice", "alert x")  # an old record retention must never remove
        yield log


def count(db, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def test_defaults_keep_raw_data_400_days_evidence_7_years_and_audit_forever():
    policy = RetentionPolicy()
    assert policy.days() == {"readings": 400.0, "events": 400.0, "evidence": 2557.0, "alert_history": 2557.0,
                             "drills": 2557.0}
    assert policy.audit_days is None


def test_audit_retention_cannot_be_configured():
    with pytest.raises(ValueError, match="kept forever"):
        RetentionPolicy(audit_days=3650)
    with pytest.raises(ValueError, match="positive"):
        RetentionPolicy(readings_days=0)


def test_old_readings_and_events_go_recent_ones_stay_and_each_deletion_is_audited(db, store, audit):
    removed = Retention(RetentionPolicy(), store, audit, Clock())()
    assert removed == 2
    assert count(db, "SELECT COUNT(*) FROM samples") == 1 and count(db, "SELECT COUNT(*) FROM events") == 1
    records = [(e.action, e.subject, json.loads(e.details)) for e in audit.entries()[1:]]
    assert [(a, s) for a, s, _ in records] == [("retention.deletion", "retention readings")] * 2 + [
        ("retention.deletion", "retention events")] * 2
    intent, done = records[0][2], records[1][2]
    assert intent["kind"] == "readings" and intent["tables"] == ["samples"]
    assert intent["cutoff"].startswith("2025-12-") and done == {"outcome": "done", "of_seq": 2, "rows": 1}
    assert audit.entries()[0].action == "alert.ack"  # the audit log itself is never pruned


def test_nothing_old_means_no_audit_record(db, store, audit):
    Retention(RetentionPolicy(readings_days=600, events_days=600), store, audit, Clock())()
    assert len(audit.entries()) == 1


def test_evidence_records_follow_their_own_retention(db, store, audit):
    evidence = EvidenceStore(db)
    for start in (NOW - 3000 * DAY_S, OLD):
        evidence.add(UpsSelfTest(device="ups-a", start=start, end=start + 30, result="pass", vendor_result="done"))
    evidence.close()
    Retention(RetentionPolicy(), store, audit, Clock())()
    assert count(db, "SELECT COUNT(*) FROM evidence_ups_self_test") == 1  # 500 days old: within 7 years
    assert "retention evidence" in [e.subject for e in audit.entries()]


def test_a_deletion_the_audit_log_cannot_record_does_not_happen(db, store):
    class Broken:
        def append(self, *args, **kwargs):
            raise AuditWriteError("disk full")

    assert Retention(RetentionPolicy(), store, Broken(), Clock())() == 0
    assert count(db, "SELECT COUNT(*) FROM samples") == 2 and count(db, "SELECT COUNT(*) FROM events") == 2
