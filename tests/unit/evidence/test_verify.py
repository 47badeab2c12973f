"""Every attack on a pack and on the live audit log is detected, each with a message that names it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.auditlog import AuditAction, AuditLog, utc_text
from evidence.chain import checkpoint_payload, record_hash
from evidence.keys import SigningKey
from evidence.pack import export_pack
from evidence.verify import verify_log, verify_pack

T0 = 1_795_000_000.0
FILE_MODIFIED = "audit/log.jsonl: SHA-256 does not match the manifest (file modified)"
Members = dict[str, bytes]


class StepClock:
    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture(scope="module")
def verify_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def built_packs(tmp_path_factory, verify_key) -> dict[bool, bytes]:
    """One pseudonymised and one revealed pack per module; each test tampers with its own copy."""
    return {reveal: _build_pack(tmp_path_factory.mktemp("pack"), verify_key, reveal) for reveal in (False, True)}


def _db(tmp_path: Path, key: SigningKey, records: int = 10) -> Path:
    """An audit log of ``records`` records with checkpoints at seq 3, 6, 9."""
    db = tmp_path / "facwatch.db"
    with AuditLog(db, key, clock=StepClock(), checkpoint_every=3) as log:
        for i in range(records):
            log.append(AuditAction.CONFIG_CHANGE, "j.smith" if i % 2 else "a.jones", f"rule r{i}",
                       before={"threshold": i}, after={"threshold": i + 1}, source="10.0.0.7")
    return db


def _readings(db, start, end):
    return [{"device": "dh1-ups-a", "point": "battery.charge", "value": 100 - n} for n in range(5)]


def _build_pack(tmp_path: Path, key: SigningKey, reveal: bool) -> bytes:
    """A pack of seq 1–11 (10 records + the export itself), checkpoints 3, 6, 9 and the head 11."""
    db = _db(tmp_path, key)
    out = tmp_path / "pack.zip"
    export_pack(db, T0 - 3600, T0 + 3600, out, providers={"readings": _readings}, key=key, actor="k.exporter",
                reveal_names=reveal, reason="audit" if reveal else None, clock=StepClock(T0 + 100))
    return out.read_bytes()


@pytest.fixture
def pack_copy(tmp_path, built_packs) -> Callable[..., Path]:
    def copy(reveal: bool = False) -> Path:
        path = tmp_path / "pack.zip"
        path.write_bytes(built_packs[reveal])
        return path

    return copy


def _read(path: Path) -> Members:
    with zipfile.ZipFile(path) as pack:
        return {name: pack.read(name) for name in pack.namelist()}


def _write(path: Path, members: Members) -> Path:
    with zipfile.ZipFile(path, "w") as pack:
        for name, data in members.items():
            pack.writestr(name, data)
    return path


def _resign(members: Members, key: SigningKey) -> Members:
    """What an insider holding the signing key can do: fix up the manifest hashes and sign it again."""
    manifest = json.loads(members["manifest.json"])
    manifest["files"] = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                         for name, data in members.items() if name not in ("manifest.json", "manifest.sig")}
    members["manifest.json"] = json.dumps(manifest).encode()
    members["manifest.sig"] = key.sign(members["manifest.json"]).encode()
    return members


def _errors(path: Path, **options) -> str:
    report = verify_pack(path, **options)
    assert not report.ok
    return "\n".join(report.errors)


def test_an_untouched_pack_verifies_and_member_order_does_not_matter(tmp_path, verify_key, pack_copy):
    pack = pack_copy()
    report = verify_pack(pack, trusted_key_ids=[verify_key.key_id])
    assert report.ok, report.text()
    assert report.facts["checkpoints"] == "4 of 4 verified"
    assert report.facts["signing key"] == verify_key.key_id
    reordered = _write(tmp_path / "reordered.zip", dict(reversed(list(_read(pack).items()))))
    assert verify_pack(reordered).ok


# -- attacks on the pack's files (no key) ------------------------------------------------------------------------


def _modify_csv(m: Members) -> None:
    m["records/readings.csv"] = m["records/readings.csv"].replace(b"dh1-ups-a,battery.charge,100",
                                                                  b"dh1-ups-a,battery.charge,99")


def _reorder_csv(m: Members) -> None:
    header, *rows = m["records/readings.csv"].split(b"\r\n")
    m["records/readings.csv"] = b"\r\n".join([header, *reversed(rows[:-1]), b""])


def _truncate_csv(m: Members) -> None:
    m["records/readings.csv"] = m["records/readings.csv"][:40]


def _delete_pdf(m: Members) -> None:
    del m["report.pdf"]


def _insert_file(m: Members) -> None:
    m["records/extra.csv"] = b"device,value\r\ndh1-ups-a,1\r\n"


def _modify_manifest(m: Members) -> None:
    m["manifest.json"] = m["manifest.json"].replace(b'"reveal_names": false', b'"reveal_names": true')


def _delete_signature(m: Members) -> None:
    del m["manifest.sig"]


@pytest.mark.parametrize(("attack", "message"), [
    (_modify_csv, "records/readings.csv: SHA-256 does not match the manifest (file modified)"),
    (_reorder_csv, "records/readings.csv: SHA-256 does not match the manifest (file modified)"),
    (_truncate_csv, "records/readings.csv: SHA-256 does not match the manifest (file modified)"),
    (_delete_pdf, "report.pdf is listed in the manifest but missing from the pack (file deleted)"),
    (_insert_file, "records/extra.csv is in the pack but not in the manifest (file inserted)"),
    (_modify_manifest, "manifest.json: the signature does not verify with the pack's public key"),
    (_delete_signature, "manifest.sig is missing from the pack (file deleted)"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else "")
def test_attacks_on_pack_files_are_detected(tmp_path, pack_copy, attack: Callable[[Members], None], message):
    members = _read(pack_copy())
    attack(members)
    assert message in _errors(_write(tmp_path / "tampered.zip", members))


def test_a_truncated_zip_is_detected(tmp_path, verify_key, pack_copy):
    data = pack_copy().read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    assert "not a readable zip file" in _errors(cut)


def test_a_member_added_twice_is_detected(tmp_path, verify_key, pack_copy):
    pack = pack_copy()
    with pytest.warns(UserWarning), zipfile.ZipFile(pack, "a") as z:
        z.writestr("records/readings.csv", b"device\r\nforged\r\n")
    assert "records/readings.csv appears twice in the zip (file inserted)" in _errors(pack)


def test_a_pack_re_signed_with_another_key_fails_against_the_trusted_key(tmp_path, verify_key, pack_copy):
    members = _read(pack_copy())
    _modify_csv(members)
    mallory = SigningKey(Ed25519PrivateKey.generate())
    members["public_key.pem"] = mallory.public_pem()
    _resign(members, mallory)
    forged = _write(tmp_path / "forged.zip", members)
    assert verify_pack(forged).facts["signing key"] == mallory.key_id  # what an auditor compares
    assert f"signed by key {mallory.key_id}, which is not one of the trusted keys" in _errors(
        forged, trusted_key_ids=[verify_key.key_id])


# -- attacks on the audit segment: without the key the file hash catches them; with it, the chain does ----------


def _lines(m: Members) -> list[bytes]:
    return m["audit/log.jsonl"].splitlines()


def _set_lines(m: Members, lines: list[bytes]) -> None:
    m["audit/log.jsonl"] = b"".join(line + b"\n" for line in lines)


def _edit_record(m: Members, seq: int, **changes) -> None:
    lines = _lines(m)
    record = json.loads(lines[seq - 1])
    record.update(changes)
    lines[seq - 1] = json.dumps(record).encode()
    _set_lines(m, lines)


def _segment_modify(m: Members) -> None:
    _edit_record(m, 5, subject="rule nothing-to-see")


def _segment_delete(m: Members) -> None:
    lines = _lines(m)
    del lines[4]
    _set_lines(m, lines)


def _segment_insert(m: Members) -> None:
    lines = _lines(m)
    lines.insert(5, lines[4])
    _set_lines(m, lines)


def _segment_reorder(m: Members) -> None:
    lines = _lines(m)
    lines[4], lines[5] = lines[5], lines[4]
    _set_lines(m, lines)


def _segment_truncate(m: Members) -> None:
    _set_lines(m, _lines(m)[:8])


def _segment_rechain(m: Members) -> None:
    """Rewrite record 5 and recompute every hash after it, as someone without the key would."""
    records = [json.loads(line) for line in _lines(m)]
    records[4]["details"] = '{"after":{"threshold":99},"before":{"threshold":4}}'
    for index in range(4, len(records)):
        r = records[index]
        r["prev_hash"] = records[index - 1]["hash"]
        r["hash"] = record_hash(r["seq"], r["time"], r["actor_commit"], r["action"], r["subject"], r["details"],
                                r["source"], r["prev_hash"])
    _set_lines(m, [json.dumps(r).encode() for r in records])


def _segment_anchor(m: Members) -> None:
    chain = json.loads(m["audit/chain.json"])
    chain["anchor"] = "f" * 64
    m["audit/chain.json"] = json.dumps(chain).encode()


def _segment_checkpoint(m: Members) -> None:
    chain = json.loads(m["audit/chain.json"])
    chain["checkpoints"][0]["hash"] = "e" * 64
    m["audit/chain.json"] = json.dumps(chain).encode()


SEGMENT_ATTACKS = [
    (_segment_modify, ["audit record seq 5: its hash does not match its contents (record modified)"]),
    (_segment_delete, ["audit log has a gap: seq 5 missing before seq 6 (records deleted)",
                       "audit record seq 6: its previous-hash link does not match"]),
    (_segment_insert, ["audit record seq 5 appears after seq 5: records were reordered or a record was inserted"]),
    (_segment_reorder, ["audit log has a gap: seq 5 missing before seq 6 (records deleted)",
                        "audit record seq 5 appears after seq 6: records were reordered or a record was inserted"]),
    (_segment_truncate, ["the audit segment ends at seq 8 but the pack declares seq 11: the segment was truncated",
                         "checkpoint at seq 9 is beyond the last record (seq 8): the audit log was truncated"]),
    (_segment_rechain, ["checkpoint at seq 6 signs hash", "but the log has", "the log was rewritten"]),
    (_segment_anchor, ["audit record seq 1: its previous-hash link does not match the record before it"]),
    (_segment_checkpoint, ["checkpoint at seq 3: signature does not verify (checkpoint forged or altered)"]),
]
_ids = [attack.__name__.removeprefix("_segment_") for attack, _ in SEGMENT_ATTACKS]


@pytest.mark.parametrize(("attack", "messages"), SEGMENT_ATTACKS, ids=_ids)
def test_attacks_on_the_audit_segment_break_the_file_hash(tmp_path, verify_key, pack_copy, attack, messages):
    members = _read(pack_copy())
    attack(members)
    errors = _errors(_write(tmp_path / "tampered.zip", members))
    assert "SHA-256 does not match the manifest (file modified)" in errors


@pytest.mark.parametrize(("attack", "messages"), SEGMENT_ATTACKS, ids=_ids)
def test_attacks_on_the_audit_segment_break_the_chain_even_with_a_re_signed_manifest(tmp_path, verify_key, pack_copy,
                                                                                   attack, messages):
    members = _read(pack_copy())
    attack(members)
    errors = _errors(_write(tmp_path / "tampered.zip", _resign(members, verify_key)))
    assert "SHA-256" not in errors  # the manifest is consistent: only the chain checks can see it
    for message in messages:
        assert message in errors


def test_a_changed_name_in_a_revealed_pack_breaks_its_commitment(tmp_path, verify_key, pack_copy):
    members = _read(pack_copy(reveal=True))
    _edit_record(members, 2, actor="somebody.else")
    errors = _errors(_write(tmp_path / "tampered.zip", _resign(members, verify_key)))
    assert "audit record seq 2: the actor does not match its commitment (actor altered)" in errors


def test_a_swapped_actor_commitment_in_a_pseudonymised_pack_breaks_the_hash(tmp_path, verify_key, pack_copy):
    members = _read(pack_copy())
    first = json.loads(_lines(members)[0])
    _edit_record(members, 2, actor=first["actor"], actor_commit=first["actor_commit"])  # blame someone else
    errors = _errors(_write(tmp_path / "tampered.zip", _resign(members, verify_key)))
    assert "audit record seq 2: its hash does not match its contents (record modified)" in errors


# -- attacks on the live database ---------------------------------------------------------------------------------


def _tamper(db: Path, *statements: str, params: tuple = ()) -> None:
    """An attacker with write access to the file: drop the append-only triggers, then edit."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; "
                       "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete;")
    for statement in statements:
        conn.execute(statement, params if "?" in statement else ())
    conn.close()


def _db_errors(db: Path, **options) -> str:
    report = verify_log(db, **options)
    assert not report.ok
    return "\n".join(report.errors)


def test_an_untouched_log_verifies(tmp_path, verify_key):
    report = verify_log(_db(tmp_path, verify_key))
    assert report.ok, report.text()
    assert report.facts["audit records"] == 10 and report.facts["checkpoints"] == "3 of 3 verified"
    assert report.warnings == []


def test_db_modified_record_is_detected(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    _tamper(db, "UPDATE audit_log SET details = '{\"after\":{\"threshold\":99}}' WHERE seq = 4")
    errors = _db_errors(db)
    assert "audit record seq 4: its hash does not match its contents (record modified)" in errors
    assert "append-only triggers" in "\n".join(verify_log(db).warnings)


def test_db_modified_actor_is_detected(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    _tamper(db, "UPDATE audit_log SET actor = 'somebody.else' WHERE seq = 2")
    assert "audit record seq 2: the actor does not match its commitment (actor altered)" in _db_errors(db)


def test_db_deleted_record_is_detected(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    _tamper(db, "DELETE FROM audit_log WHERE seq = 5")
    errors = _db_errors(db)
    assert "audit log has a gap: seq 5 missing before seq 6 (records deleted)" in errors


def test_db_deleted_first_records_are_detected(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    _tamper(db, "DELETE FROM audit_log WHERE seq <= 2")
    assert "audit log has a gap: seq 1–2 missing before seq 3 (records deleted)" in _db_errors(db)


def test_db_inserted_and_rechained_record_is_detected_by_the_checkpoints(tmp_path, verify_key):
    """Insert a forged record at seq 5, renumber the rest, recompute every hash — all without the key."""
    db = _db(tmp_path, verify_key)
    conn = sqlite3.connect(db, isolation_level=None)
    rows = conn.execute("SELECT seq, time, actor, actor_salt, actor_commit, action, subject, details, source, "
                        "prev_hash, hash FROM audit_log ORDER BY seq").fetchall()
    forged = (5, rows[3][1], "a.jones", rows[3][3], rows[3][4], "config.change", "rule forged", "{}", "10.0.0.7")
    rebuilt = [list(r) for r in rows[:4]] + [[*forged, "", ""]] + [[r[0] + 1, *r[1:]] for r in rows[4:]]
    for index in range(4, len(rebuilt)):
        r = rebuilt[index]
        r[9] = rebuilt[index - 1][10]
        r[10] = record_hash(r[0], r[1], r[4], r[5], r[6], r[7], r[8], r[9])
    conn.close()
    _tamper(db, "DELETE FROM audit_log WHERE seq >= 5")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executemany("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)", [tuple(r) for r in rebuilt[4:]])
    conn.close()
    errors = _db_errors(db)
    assert "checkpoint at seq 6 signs hash" in errors and "the log was rewritten" in errors


def test_db_reordered_records_are_detected(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    columns = "time, actor, actor_salt, actor_commit, action, subject, details, source, prev_hash, hash"
    _tamper(db, "CREATE TEMP TABLE swap AS SELECT * FROM audit_log WHERE seq IN (4, 5)",
            f"UPDATE audit_log SET ({columns}) = (SELECT {columns} FROM swap WHERE swap.seq = 9 - audit_log.seq) "
            "WHERE seq IN (4, 5)")
    errors = _db_errors(db)
    assert "audit record seq 4: its hash does not match its contents (record modified)" in errors
    assert "audit record seq 4: its previous-hash link does not match the record before it" in errors


def test_db_truncated_log_is_detected_up_to_the_last_checkpoint(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    _tamper(db, "DELETE FROM audit_log WHERE seq >= 8")
    assert "checkpoint at seq 9 is beyond the last record (seq 7): the audit log was truncated" in _db_errors(db)


def test_db_truncation_past_the_last_checkpoint_is_not_detectable(tmp_path, verify_key):
    """The documented limit: records after the newest checkpoint are protected only by the next one."""
    db = _db(tmp_path, verify_key)
    _tamper(db, "DELETE FROM audit_log WHERE seq = 10")
    assert verify_log(db).ok


def test_db_checkpoint_forged_with_another_key_is_detected(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    mallory = SigningKey(Ed25519PrivateKey.generate())
    seq, digest = sqlite3.connect(db).execute("SELECT seq, hash FROM audit_log WHERE seq = 10").fetchone()
    when = utc_text(T0)
    signature = mallory.sign(checkpoint_payload(seq, digest, when, mallory.key_id))
    _tamper(db, "INSERT INTO audit_checkpoint VALUES (?, ?, ?, ?, ?)",
            params=(seq, digest, when, mallory.key_id, signature))
    assert f"checkpoint at seq 10 is signed by unknown key {mallory.key_id} (forged checkpoint)" in _db_errors(db)
    # and registering the forged key in the database does not help against a pinned key
    _tamper(db, "INSERT INTO audit_key VALUES (?, ?, ?)",
            params=(mallory.key_id, mallory.public_pem().decode(), when))
    assert verify_log(db).ok  # the database's own key list now vouches for it …
    errors = _db_errors(db, trusted_keys={verify_key.key_id: verify_key.public_key()})
    assert f"signed by unknown key {mallory.key_id}" in errors  # … the auditor's pinned key does not


def test_db_clock_rolled_back_is_a_warning_not_a_break(tmp_path, verify_key):
    db = tmp_path / "facwatch.db"
    clock = StepClock()
    with AuditLog(db, verify_key, clock=clock) as log:
        log.append(AuditAction.LOGIN, "j.smith", "dashboard")
        clock.now -= 3600
        second = log.append(AuditAction.LOGIN, "j.smith", "dashboard")
    report = verify_log(db)
    assert report.ok
    assert report.warnings == [f"audit record seq 2: time {second.time} is earlier than the record "
                               "before it (clock stepped back; order is by sequence number)",
                               "no checkpoint yet: truncation of the log cannot be detected"]


def test_a_file_without_an_audit_log_fails(tmp_path):
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE x (a)").connection.close()
    assert "the database has no audit log" in _db_errors(db)


@pytest.mark.parametrize("line", [
    b"[1, 2, 3]",
    b"NaN",
    b"[" * 100_000,
    b'{"seq": true, "time": "t", "actor_commit": "c", "action": "a", "subject": "s", "details": "{}", '
    b'"source": null, "prev_hash": "p", "hash": "h"}',
    b'{"seq": 5, "time": 12, "actor_commit": "c", "action": "a", "subject": "s", "details": {"x": NaN}, '
    b'"source": 7, "prev_hash": "p", "hash": "h"}',
], ids=["list", "nan", "deep", "bool-seq", "wrong-types"])
def test_the_verifier_reports_hostile_segment_lines_instead_of_crashing(tmp_path, verify_key, pack_copy, line):
    members = _read(pack_copy())
    lines = _lines(members)
    lines[4] = line
    _set_lines(members, lines)
    errors = _errors(_write(tmp_path / "tampered.zip", _resign(members, verify_key)))
    assert "audit/log.jsonl line 5 is not a valid audit record (record modified)" in errors


def test_the_verifier_reports_a_hostile_chain_file_instead_of_crashing(tmp_path, verify_key, pack_copy):
    members = _read(pack_copy())
    members["audit/chain.json"] = b'{"anchor": 1, "first_seq": "x", "last_seq": [], "checkpoints": 5}'
    errors = _errors(_write(tmp_path / "tampered.zip", _resign(members, verify_key)))
    assert "audit/chain.json lacks anchor, first_seq, last_seq or checkpoints" in errors


def test_db_truncation_past_the_last_checkpoint_is_caught_by_a_known_head(tmp_path, verify_key):
    db = _db(tmp_path, verify_key)
    head = sqlite3.connect(db).execute("SELECT seq, hash FROM audit_log WHERE seq = 10").fetchone()
    assert verify_log(db, known_heads=[head]).ok
    _tamper(db, "DELETE FROM audit_log WHERE seq = 10")
    assert ("record seq 10 of a known earlier head is missing: the log was truncated or rewritten since that head "
            "was exported") in _db_errors(db, known_heads=[head])


def test_db_rewrite_with_the_key_is_caught_by_a_known_head(tmp_path, verify_key):
    """An insider with the key rewrites record 4 and re-signs everything: only an outside copy of a head helps."""
    db = _db(tmp_path, verify_key)
    head = sqlite3.connect(db).execute("SELECT seq, hash FROM audit_log WHERE seq = 10").fetchone()
    _tamper(db, "DELETE FROM audit_log WHERE seq >= 4", "DELETE FROM audit_checkpoint WHERE seq >= 4")
    with AuditLog(db, verify_key, clock=StepClock(), checkpoint_every=3) as log:
        for i in range(3, 10):
            log.append(AuditAction.CONFIG_CHANGE, "a.jones", f"rule r{i} (rewritten)")
    assert verify_log(db).ok  # self-consistent …
    assert "record seq 10 of a known earlier head has a different hash" in _db_errors(db, known_heads=[head])
