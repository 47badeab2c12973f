"""Independent verification of an evidence pack (no database needed) and of the live audit log.

``verify_pack`` checks, in order: the zip itself, the manifest's Ed25519 signature, every file's SHA-256,
no missing or extra files, then the audit segment: each record's hash, the actor commitments, the chain
from its anchor, contiguous sequence numbers, and every checkpoint's signature and hash. ``verify_log``
runs the same chain checks over the whole log in a SQLite file. Each problem is one plain sentence that
says what is wrong and what attack it points to.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.chain import GENESIS, ChainRecord, actor_commit, checkpoint_payload
from evidence.keys import public_key_from_pem, public_key_id, signature_valid

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
AUDIT_LOG = "audit/log.jsonl"
AUDIT_CHAIN = "audit/chain.json"
AUDIT_KEYS = "audit/keys.json"
MAX_PACK_BYTES = 4 * 1024**3  # uncompressed; a bigger "pack" is a zip bomb, not evidence
MAX_PROBLEMS = 100
_RECORD_FIELDS = ("seq", "time", "actor_commit", "action", "subject", "details", "source", "prev_hash", "hash")


@dataclass
class VerifyReport:
    """The outcome: ``ok`` when no errors; errors are tampering or damage, warnings are worth a look."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.errors

    def error(self, message: str) -> None:
        """Add a problem (the first MAX_PROBLEMS are kept, then a count)."""
        if len(self.errors) < MAX_PROBLEMS:
            self.errors.append(message)
        elif len(self.errors) == MAX_PROBLEMS:
            self.errors.append("… more problems not listed")

    def text(self) -> str:
        """A human-readable summary, one line per fact and problem."""
        lines = [f"{key}: {value}" for key, value in self.facts.items()]
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines += [f"FAIL: {e}" for e in self.errors]
        verdict = "OK — intact" if self.ok else f"TAMPERED OR DAMAGED — {len(self.errors)} problem(s)"
        lines.append(f"RESULT: {verdict}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A checkpoint as read from a pack or the database."""

    seq: int
    hash: str
    time: str
    key_id: str
    signature: str


class ChainChecker:
    """Feed records in stored order; it reports modified, missing, duplicated and reordered records."""

    def __init__(self, report: VerifyReport, anchor: str, first_seq: int, watch: Iterable[int] = ()):
        self.report = report
        self.prev_hash = anchor
        self.expected_seq = first_seq
        self.first_seq = first_seq
        self.last_time = ""
        self.count = 0
        self.last_seq = first_seq - 1
        self.seen_hashes: dict[int, str] = {}
        self._watch = set(watch)

    def feed(self, record: ChainRecord) -> None:
        """Check one record against its predecessor."""
        report, seq = self.report, record.seq
        if seq < self.expected_seq:
            report.error(f"audit record seq {seq} appears after seq {self.expected_seq - 1}: records were "
                         "reordered or a record was inserted")
        elif seq > self.expected_seq:
            missing = f"seq {self.expected_seq}" if seq == self.expected_seq + 1 else \
                f"seq {self.expected_seq}–{seq - 1}"
            report.error(f"audit log has a gap: {missing} missing before seq {seq} (records deleted)")
        if record.expected_hash() != record.hash:
            report.error(f"audit record seq {seq}: its hash does not match its contents (record modified)")
        if record.prev_hash != self.prev_hash:
            report.error(f"audit record seq {seq}: its previous-hash link does not match the record before it "
                         "(chain broken: a record was deleted, inserted, reordered or modified)")
        if record.time < self.last_time:
            report.warnings.append(f"audit record seq {seq}: time {record.time} is earlier than the record before "
                                   "it (clock stepped back; order is by sequence number)")
        self.last_time = max(self.last_time, record.time)
        if seq in self._watch:
            self.seen_hashes[seq] = record.hash
        self.prev_hash, self.expected_seq, self.last_seq = record.hash, max(seq, self.expected_seq - 1) + 1, seq
        self.count += 1

    def check_checkpoints(self, checkpoints: Iterable[CheckpointRow], keys: Mapping[str, Ed25519PublicKey]) -> int:
        """Check each checkpoint's signature and that it matches the chain; returns how many were good."""
        good, previous = 0, 0
        for cp in checkpoints:
            where = f"checkpoint at seq {cp.seq}"
            if cp.seq <= previous:
                self.report.error(f"{where} is out of order or duplicated (checkpoints reordered or inserted)")
            previous = max(previous, cp.seq)
            key = keys.get(cp.key_id)
            if key is None:
                self.report.error(f"{where} is signed by unknown key {cp.key_id} (forged checkpoint)")
                continue
            if not signature_valid(key, cp.signature, checkpoint_payload(cp.seq, cp.hash, cp.time, cp.key_id)):
                self.report.error(f"{where}: signature does not verify (checkpoint forged or altered)")
                continue
            if cp.seq > self.last_seq:
                self.report.error(f"{where} is beyond the last record (seq {self.last_seq}): the audit log was "
                                  "truncated")
            elif cp.seq < self.first_seq:
                self.report.error(f"{where} lies before the first record (seq {self.first_seq}): it does not "
                                  "belong to this log segment")
            elif self.seen_hashes.get(cp.seq) != cp.hash:
                self.report.error(f"{where} signs hash {cp.hash[:16]}… but the log has "
                                  f"{(self.seen_hashes.get(cp.seq) or 'no such record')[:16]}… there: the log "
                                  "was rewritten")
            else:
                good += 1
        return good


# -- packs --------------------------------------------------------------------------------------------------


def verify_pack(zip_path: str | Path, *, trusted_key_ids: Iterable[str] | None = None) -> VerifyReport:
    """Verify an evidence pack on its own; ``trusted_key_ids`` pins the signer (else its key id is reported)."""
    report = VerifyReport()
    report.facts["pack"] = str(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as pack:
            _verify_open_pack(pack, report, set(trusted_key_ids) if trusted_key_ids is not None else None)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        report.error(f"not a readable zip file: {exc} (pack truncated or damaged)")
    except Exception as exc:  # a hostile pack must end in a verdict, never in a traceback
        report.error(f"the pack could not be checked ({type(exc).__name__}: {exc}); treat it as damaged")
    return report


def _verify_open_pack(pack: zipfile.ZipFile, report: VerifyReport, trusted: set[str] | None) -> None:
    names = _member_names(pack, report)
    if names is None:
        return
    for required in (MANIFEST, SIGNATURE, PUBLIC_KEY):
        if required not in names:
            report.error(f"{required} is missing from the pack (file deleted)")
    if not report.ok:
        return
    key = _pack_key(pack, report, trusted)
    if key is None:
        return
    manifest_bytes = pack.read(MANIFEST)
    if not signature_valid(key, pack.read(SIGNATURE).decode("ascii", "replace").strip(), manifest_bytes):
        report.error("manifest.json: the signature does not verify with the pack's public key (manifest altered "
                     "or re-signed by someone else)")
        return
    manifest = _json(manifest_bytes, MANIFEST, report)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        report.error("manifest.json has no file list")
        return
    report.facts.update({"period": f"{manifest.get('from')} → {manifest.get('to')}",
                         "names": "revealed" if manifest.get("reveal_names") else "pseudonymised"})
    if manifest.get("key_id") != public_key_id(key):
        report.error("manifest.json names a different signing key than public_key.pem")
    _check_files(pack, names, manifest["files"], report)
    if AUDIT_LOG in names and AUDIT_CHAIN in names:
        _check_segment(pack, key, report)
    else:
        report.error("the audit log segment (audit/log.jsonl, audit/chain.json) is missing from the pack")


def _member_names(pack: zipfile.ZipFile, report: VerifyReport) -> set[str] | None:
    infos = pack.infolist()
    names: set[str] = set()
    total = 0
    for info in infos:
        path = PurePosixPath(info.filename)
        if info.filename in names:
            report.error(f"{info.filename} appears twice in the zip (file inserted)")
        if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
            report.error(f"{info.filename}: unsafe path in the zip")
        names.add(info.filename)
        total += info.file_size
    if total > MAX_PACK_BYTES:
        report.error(f"the pack unpacks to {total} bytes, more than {MAX_PACK_BYTES}: refused")
        return None
    return names if report.ok else None


def _pack_key(pack: zipfile.ZipFile, report: VerifyReport, trusted: set[str] | None) -> Ed25519PublicKey | None:
    try:
        key = public_key_from_pem(pack.read(PUBLIC_KEY))
    except ValueError:
        report.error("public_key.pem is not an Ed25519 public key")
        return None
    report.facts["signing key"] = public_key_id(key)
    if trusted is not None and public_key_id(key) not in trusted:
        report.error(f"the pack is signed by key {public_key_id(key)}, which is not one of the trusted keys "
                     f"({', '.join(sorted(trusted)) or 'none'})")
        return None
    return key


def _check_files(pack: zipfile.ZipFile, names: set[str], listed: dict, report: VerifyReport) -> None:
    for name in sorted(listed):
        if name not in names:
            report.error(f"{name} is listed in the manifest but missing from the pack (file deleted)")
            continue
        entry = listed[name]
        digest, size = _digest(pack, name)
        if not isinstance(entry, dict) or entry.get("sha256") != digest:
            report.error(f"{name}: SHA-256 does not match the manifest (file modified)")
        elif entry.get("size") != size:
            report.error(f"{name}: size does not match the manifest (file modified)")
    for name in sorted(names - set(listed) - {MANIFEST, SIGNATURE}):
        report.error(f"{name} is in the pack but not in the manifest (file inserted)")
    report.facts["files"] = len(listed)


def _digest(pack: zipfile.ZipFile, name: str) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with pack.open(name) as member:
        while chunk := member.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _check_segment(pack: zipfile.ZipFile, key: Ed25519PublicKey, report: VerifyReport) -> None:
    chain = _json(pack.read(AUDIT_CHAIN), AUDIT_CHAIN, report)
    if not isinstance(chain, dict):
        return
    try:
        anchor, first, last = str(chain["anchor"]), int(chain["first_seq"]), int(chain["last_seq"])
        checkpoints = [CheckpointRow(int(c["seq"]), str(c["hash"]), str(c["time"]), str(c["key_id"]),
                                     str(c["signature"])) for c in chain["checkpoints"]]
    except (KeyError, TypeError, ValueError):
        report.error("audit/chain.json lacks anchor, first_seq, last_seq or checkpoints")
        return
    checker = ChainChecker(report, anchor, first, watch=(c.seq for c in checkpoints))
    for record in _segment_records(pack, report):
        checker.feed(record)
    if checker.count and checker.last_seq < last:
        report.error(f"the audit segment ends at seq {checker.last_seq} but the pack declares seq {last}: the "
                     "segment was truncated")
    elif checker.count == 0 and last >= first:
        report.error(f"the audit segment is empty but the pack declares seq {first}–{last}: records deleted")
    good = checker.check_checkpoints(checkpoints, _checkpoint_keys(pack, key, report))
    report.facts.update({"audit records": f"{checker.count} (seq {first}–{last}), anchor {anchor[:16]}…",
                         "checkpoints": f"{good} of {len(checkpoints)} verified"})


def _checkpoint_keys(pack: zipfile.ZipFile, key: Ed25519PublicKey, report: VerifyReport) -> dict:
    """The pack's signer plus the earlier keys it vouches for in audit/keys.json (covered by the manifest)."""
    keys = {public_key_id(key): key}
    listed = _json(pack.read(AUDIT_KEYS), AUDIT_KEYS, report) if AUDIT_KEYS in pack.namelist() else {}
    for key_id, pem in (listed.items() if isinstance(listed, dict) else []):
        try:
            older = public_key_from_pem(str(pem).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            report.error(f"audit/keys.json: key {key_id} is not an Ed25519 public key")
            continue
        if public_key_id(older) != key_id:
            report.error(f"audit/keys.json: key {key_id} does not match its public key (key list altered)")
            continue
        keys[key_id] = older
    if len(keys) > 1:
        report.facts["checkpoint keys"] = ", ".join(sorted(keys))
    return keys


def _segment_records(pack: zipfile.ZipFile, report: VerifyReport) -> Iterator[ChainRecord]:
    with pack.open(AUDIT_LOG) as lines:
        for number, line in enumerate(lines, 1):
            record = _segment_record(line, number, report)
            if record is not None:
                yield record


def _segment_record(line: bytes, number: int, report: VerifyReport) -> ChainRecord | None:
    try:
        row = json.loads(line)
        record = ChainRecord(*(row[name] for name in _RECORD_FIELDS))
        _check_types(record)
    except (ValueError, KeyError, TypeError, RecursionError):
        report.error(f"audit/log.jsonl line {number} is not a valid audit record (record modified)")
        return None
    salt = row.get("actor_salt")
    if salt is not None and _commit_or_none(salt, row.get("actor")) != record.actor_commit:
        report.error(f"audit record seq {record.seq}: the actor does not match its commitment (actor altered)")
    return record


def _check_types(record: ChainRecord) -> None:
    if not isinstance(record.seq, int) or isinstance(record.seq, bool):
        raise TypeError("seq")
    texts = (record.time, record.actor_commit, record.action, record.subject, record.details, record.prev_hash,
             record.hash)
    if not all(isinstance(text, str) for text in texts) or not isinstance(record.source, str | None):
        raise TypeError("field types")


def _commit_or_none(salt: object, actor: object) -> str | None:
    try:
        return actor_commit(str(salt), str(actor))
    except ValueError:
        return None


def _json(data: bytes, name: str, report: VerifyReport) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        report.error(f"{name} is not valid JSON (file modified)")
        return None


# -- the live database ----------------------------------------------------------------------------------------


def verify_log(db_path: str | Path, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
               known_heads: Iterable[tuple[int, str]] = ()) -> VerifyReport:
    """Verify the whole audit log in a SQLite file, from record 1.

    ``trusted_keys`` pins the signers; ``known_heads`` are (seq, hash) pairs kept outside the database (the
    ``head`` of earlier packs' audit/chain.json): the log must still contain each of them, which catches a
    truncation or a rewrite with the key back to the newest of them.
    """
    report = VerifyReport()
    report.facts["database"] = str(db_path)
    try:
        conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.error(f"cannot open {db_path}: {exc}")
        return report
    try:
        _verify_db(conn, report, trusted_keys, list(known_heads))
    except sqlite3.Error as exc:
        report.error(f"cannot read the audit log: {exc} (tables altered or the file is damaged)")
    finally:
        conn.close()
    return report


def _verify_db(conn: sqlite3.Connection, report: VerifyReport, trusted_keys: Mapping[str, Ed25519PublicKey] | None,
               known_heads: list[tuple[int, str]]) -> None:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    if "audit_log" not in tables:
        report.error("the database has no audit log (table audit_log missing)")
        return
    missing = {"audit_log_no_update", "audit_log_no_delete"} - tables
    if missing:
        report.warnings.append(f"the append-only triggers {', '.join(sorted(missing))} were removed")
    keys = dict(trusted_keys) if trusted_keys is not None else _db_keys(conn, report)
    checkpoints = [CheckpointRow(*row) for row in conn.execute(
        "SELECT seq, hash, time, key_id, signature FROM audit_checkpoint ORDER BY rowid")]
    checker = ChainChecker(report, GENESIS, 1, watch=[c.seq for c in checkpoints] + [seq for seq, _ in known_heads])
    rows = conn.execute("SELECT seq, time, actor, actor_salt, actor_commit, action, subject, details, source, "
                        "prev_hash, hash FROM audit_log ORDER BY rowid")
    for seq, time, actor, salt, commit, action, subject, details, source, prev, digest in rows:
        if _commit_or_none(salt, actor) != commit:
            report.error(f"audit record seq {seq}: the actor does not match its commitment (actor altered)")
        checker.feed(ChainRecord(seq, time, commit, action, subject, details, source, prev, digest))
    good = checker.check_checkpoints(checkpoints, keys)
    for seq, digest in known_heads:
        if checker.seen_hashes.get(seq) != digest:
            state = "is missing" if seq not in checker.seen_hashes else "has a different hash"
            report.error(f"record seq {seq} of a known earlier head {state}: the log was truncated or rewritten "
                         "since that head was exported")
    report.facts.update({"audit records": checker.count, "last seq": checker.last_seq,
                         "checkpoints": f"{good} of {len(checkpoints)} verified",
                         "signing keys": ", ".join(sorted(keys)) or "none"})
    if checker.count and not checkpoints:
        report.warnings.append("no checkpoint yet: truncation of the log cannot be detected")


def _db_keys(conn: sqlite3.Connection, report: VerifyReport) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, pem in conn.execute("SELECT key_id, public_pem FROM audit_key"):
        try:
            key = public_key_from_pem(pem.encode("ascii"))
        except ValueError:
            report.error(f"audit key {key_id} is not an Ed25519 public key")
            continue
        if public_key_id(key) != key_id:
            report.error(f"audit key {key_id} does not match its stored public key (key table altered)")
            continue
        keys[key_id] = key
    return keys
