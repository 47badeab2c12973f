from __future__ import annotations

import base64
import itertools
import multiprocessing
import os
import sqlite3
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.secret import Secret
from evidence.auditlog import AuditAction, AuditLog, AuditWriteError, audited, utc_text
from evidence.chain import GENESIS, ChainRecord, actor_commit, checkpoint_payload
from evidence.keys import (
    ENV_KEY,
    KEY_FILE_NAME,
    SigningKey,
    SigningKeyError,
    key_from_secret,
    load_signing_key,
    read_key_file,
    signature_valid,
)
from evidence.verify import verify_log

T0 = 1_795_000_000.0  # 2026-11-18, a fixed point for the fake clock


class FakeClock:
    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def auditlog_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


@pytest.fixture
def auditlog_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auditlog(tmp_path, auditlog_key, auditlog_clock):
    log = AuditLog(tmp_path / "facwatch.db", auditlog_key, clock=auditlog_clock, checkpoint_every=3)
    yield log
    log.close()


def _fill(log: AuditLog, clock: FakeClock, count: int) -> None:
    for i in range(count):
        log.append(AuditAction.CONFIG_CHANGE, "j.smith", f"rule inlet_temperature_high #{i}",
                   before={"threshold": 27.0}, after={"threshold": 27.0 + i}, source="10.0.0.7")
        clock.advance(1)


def test_records_are_numbered_without_gaps_and_chained(auditlog, auditlog_clock):
    _fill(auditlog, auditlog_clock, 5)
    entries = auditlog.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    assert all(e.chain_record().expected_hash() == e.hash for e in entries)
    assert auditlog.head() == (5, entries[-1].hash)


def test_record_holds_who_what_when_where_and_before_after(auditlog):
    entry = auditlog.append(AuditAction.SILENCE, "j.smith", "device=dh1-ups-a", before=None,
                            after={"ends_at": "2026-11-18T12:00:00Z"}, details={"reason": "battery swap"},
                            source="10.0.0.7")
    assert (entry.actor, entry.action, entry.subject, entry.source) == ("j.smith", "silence", "device=dh1-ups-a",
                                                                        "10.0.0.7")
    assert entry.time == utc_text(T0) and entry.time.endswith("Z")
    assert entry.details == '{"after":{"ends_at":"2026-11-18T12:00:00Z"},"reason":"battery swap"}'
    assert entry.actor_commit == actor_commit(entry.actor_salt, "j.smith")


@pytest.mark.parametrize("field", ["seq", "time", "actor_commit", "action", "subject", "details", "source",
                                   "prev_hash"])
def test_record_hash_covers_every_field(auditlog, field):
    record = auditlog.append(AuditAction.ACKNOWLEDGEMENT, "j.smith", "fp=3f2a", source="10.0.0.7").chain_record()
    changed = {"seq": 2, "time": "2026-01-01T00:00:00.000000Z", "actor_commit": "0" * 64, "action": "login",
               "subject": "fp=other", "details": '{"x":1}', "source": "10.0.0.8", "prev_hash": "1" * 64}
    forged = ChainRecord(**{**{f: getattr(record, f) for f in ChainRecord.__slots__}, field: changed[field]})
    assert forged.expected_hash() != record.hash


def test_checkpoints_are_signed_every_n_records(auditlog, auditlog_clock, auditlog_key):
    _fill(auditlog, auditlog_clock, 7)
    checkpoints = auditlog.checkpoints()
    assert [c.seq for c in checkpoints] == [3, 6]
    entries = {e.seq: e for e in auditlog.entries()}
    for cp in checkpoints:
        assert cp.hash == entries[cp.seq].hash and cp.key_id == auditlog_key.key_id
        assert signature_valid(auditlog_key.public_key(), cp.signature,
                               checkpoint_payload(cp.seq, cp.hash, cp.time, cp.key_id))


def test_checkpoint_is_signed_when_the_interval_has_passed(tmp_path, auditlog_key, auditlog_clock):
    with AuditLog(tmp_path / "a.db", auditlog_key, clock=auditlog_clock, checkpoint_every=1000,
                  checkpoint_interval_s=60) as log:
        log.append(AuditAction.LOGIN, "j.smith", "dashboard")
        log.checkpoint()
        log.append(AuditAction.LOGIN, "j.smith", "dashboard")
        auditlog_clock.advance(61)
        log.append(AuditAction.LOGIN, "j.smith", "dashboard")
        assert [c.seq for c in log.checkpoints()] == [1, 3]


def test_forced_checkpoint_signs_the_head_once(auditlog, auditlog_clock):
    assert auditlog.checkpoint() is None  # nothing to sign yet
    _fill(auditlog, auditlog_clock, 2)
    first = auditlog.checkpoint()
    assert first is not None and first.seq == 2
    assert auditlog.checkpoint() == first
    assert len(auditlog.checkpoints()) == 1


def test_append_fails_closed_when_the_database_refuses_writes(auditlog):
    auditlog.conn.execute("PRAGMA query_only = ON")  # stands in for a full disk or a read-only volume
    with pytest.raises(AuditWriteError, match="not"):
        auditlog.append(AuditAction.SILENCE, "j.smith", "device=dh1-ups-a")


def test_audited_refuses_the_action_when_the_log_cannot_write(auditlog):
    auditlog.conn.execute("PRAGMA query_only = ON")
    done = []
    with pytest.raises(AuditWriteError), audited(auditlog, AuditAction.SILENCE, "j.smith", "device=dh1-ups-a"):
        done.append("silenced")
    assert done == []


def test_audited_records_before_the_action_and_a_failure_after_it(auditlog):
    with audited(auditlog, AuditAction.CONFIG_CHANGE, "j.smith", "rule x", before={"a": 1}, after={"a": 2}) as e:
        assert auditlog.head()[0] == e.seq  # on disk before the body runs
    with pytest.raises(RuntimeError), audited(auditlog, AuditAction.CONFIG_CHANGE, "j.smith", "rule y"):
        raise RuntimeError("config reload failed")
    last = auditlog.entries()[-1]
    assert last.details == '{"error":"RuntimeError","of_seq":2,"outcome":"failed"}'


def test_the_log_refuses_updates_and_deletes(auditlog, auditlog_clock):
    _fill(auditlog, auditlog_clock, 3)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        auditlog.conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        auditlog.conn.execute("DELETE FROM audit_log WHERE seq = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        auditlog.conn.execute("DELETE FROM audit_checkpoint")


@pytest.mark.parametrize(("args", "message"), [
    (("deleted.everything", "j.smith", "x"), "deleted.everything"),
    ((AuditAction.LOGIN, " ", "x"), "actor is required"),
    ((AuditAction.LOGIN, "j.smith", ""), "subject is required"),
])
def test_bad_records_are_refused(auditlog, args, message):
    with pytest.raises(ValueError, match=message):
        auditlog.append(*args)


def test_details_must_be_plain_json(auditlog):
    with pytest.raises(ValueError, match="plain JSON"):
        auditlog.append(AuditAction.CONFIG_CHANGE, "j.smith", "rule", after={"threshold": float("nan")})
    assert auditlog.head()[0] == 0


def test_segment_is_taken_by_sequence_so_a_clock_step_back_stays_inside(auditlog, auditlog_clock):
    _fill(auditlog, auditlog_clock, 2)  # seq 1, 2 at T0, T0+1
    auditlog_clock.advance(100)
    auditlog.append(AuditAction.LOGIN, "j.smith", "a")  # seq 3 at T0+102
    auditlog_clock.advance(-50)
    auditlog.append(AuditAction.LOGIN, "j.smith", "b")  # seq 4 stamped earlier than seq 3
    auditlog_clock.advance(100)
    auditlog.append(AuditAction.LOGIN, "j.smith", "c")  # seq 5
    segment = auditlog.segment(T0 + 1, T0 + 160)
    assert [e.seq for e in segment.entries] == [2, 3, 4, 5]
    assert segment.anchor == auditlog.entries()[0].hash
    assert [c.seq for c in segment.checkpoints] == [3]
    report = verify_log(auditlog.path)
    assert report.ok and any("clock stepped back" in w for w in report.warnings)


def test_empty_segment_is_anchored_on_the_record_before_it(auditlog, auditlog_clock):
    _fill(auditlog, auditlog_clock, 2)
    segment = auditlog.segment(T0 + 500, T0 + 600)
    assert segment.entries == [] and segment.anchor == auditlog.head()[1]


def _append_from_process(db_path: str, key_path: str, worker: int, count: int) -> None:
    log = AuditLog(db_path, read_key_file(key_path), checkpoint_every=10)
    for i in range(count):
        log.append(AuditAction.ALERT_TRANSITION, f"worker-{worker}", f"alert {i}", after={"to": "firing"})
    log.close()


def test_concurrent_processes_keep_sequence_and_chain_consistent(tmp_path):
    key_path = tmp_path / KEY_FILE_NAME
    load_signing_key(tmp_path, env={})  # generates the shared key file
    db_path = tmp_path / "facwatch.db"
    AuditLog(db_path, read_key_file(key_path)).close()  # schema first, as the runtime does
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_from_process, args=(str(db_path), str(key_path), n, 40))
               for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    report = verify_log(db_path)
    assert report.ok, report.text()
    assert report.facts["audit records"] == 120 and report.facts["last seq"] == 120


# -- keys ------------------------------------------------------------------------------------------------------


def test_key_is_generated_once_with_mode_0600_and_reused(tmp_path):
    first = load_signing_key(tmp_path, env={})
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(tmp_path, env={}).key_id == first.key_id


def test_a_key_file_others_can_read_is_refused(tmp_path):
    load_signing_key(tmp_path, env={})
    os.chmod(tmp_path / KEY_FILE_NAME, 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_signing_key(tmp_path, env={})


def test_key_from_the_environment_wins_and_never_prints(tmp_path, caplog):
    private = Ed25519PrivateKey.generate()
    seed = base64.b64encode(private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                  serialization.NoEncryption())).decode()
    key = load_signing_key(tmp_path, env={ENV_KEY: seed})
    assert key.key_id == SigningKey(private).key_id
    assert not (tmp_path / KEY_FILE_NAME).exists()
    assert seed not in repr(key) and seed not in str(key) and f"{key}" == repr(key)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_a_bad_key_is_reported_without_its_value():
    canary = "bm90LWEta2V5LWNhbmFyeQ=="
    with pytest.raises(SigningKeyError) as info:
        key_from_secret(Secret(canary))
    assert canary not in str(info.value)
