from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth.audit import AuditLogSink, AuthAction, SqliteAuditSink
from auth.db import Database
from auth.passwords import Hasher
from auth.service import AuthService
from evidence.auditlog import AuditAction, AuditLog
from evidence.keys import SigningKey
from tests.unit.auth.conftest import PASSWORD, FakeClock


def test_sqlite_fallback_keeps_who_what_where(tmp_path: Path, clock: FakeClock) -> None:
    db = Database(tmp_path / "facwatch.db")
    sink = SqliteAuditSink(db, clock=clock)
    service = AuthService(db, sink, clock=clock, hasher=Hasher(time_cost=1, memory_cost=1024, parallelism=1))
    service.add_user("otto", "operator", PASSWORD, actor="ada", source="cli ada@host")
    [event] = sink.events()
    assert event == {"time": clock.now, "actor": "ada", "action": "user.add", "subject": "otto",
                     "details": {"role": "operator"}, "source": "cli ada@host"}
    assert PASSWORD.encode() not in (tmp_path / "facwatch.db").read_bytes()


def test_the_hash_chained_audit_log_takes_auth_events(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "facwatch.db"
    log = AuditLog(path, SigningKey(Ed25519PrivateKey.generate()), clock=clock)
    service = AuthService(Database(path), AuditLogSink(log), clock=clock,
                          hasher=Hasher(time_cost=1, memory_cost=1024, parallelism=1))
    with service.db.write() as conn:  # the user row directly, so the login is the only audit entry
        conn.execute("INSERT INTO auth_user VALUES ('otto', 'operator', ?, 1, 0, 0, NULL)",
                     (service.hasher.hash(PASSWORD),))
    service.login("otto", PASSWORD, "10.0.0.5")
    [entry] = log.entries()
    assert (entry.action, entry.actor, entry.source) == ("login", "otto", "10.0.0.5")
    log.close()


def test_every_auth_action_is_an_audit_action_and_unknown_ones_fail_closed(tmp_path: Path, clock: FakeClock) -> None:
    assert {a.value for a in AuthAction} <= {a.value for a in AuditAction}
    log = AuditLog(tmp_path / "facwatch.db", SigningKey(Ed25519PrivateKey.generate()), clock=clock)
    with pytest.raises(ValueError):
        AuditLogSink(log).record("ada", "user.teleport", "x", None, "cli")  # not an action the log knows
    assert log.entries() == []
    log.close()
