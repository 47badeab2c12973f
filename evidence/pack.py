"""Export an auditor's evidence pack: records as CSV + JSON, a PDF report, the audit-log segment, signed.

Layout of the zip::

    manifest.json           period, signer, record counts, audit range, SHA-256 + size of every other file
    manifest.sig            base64 Ed25519 signature over the exact bytes of manifest.json
    public_key.pem          the signer's public key (its id is in the manifest and the report)
    report.pdf              summary and tables for reading
    records/<set>.csv|json  one pair per record set (alert transitions, acknowledgements, …, audit_log)
    audit/log.jsonl         the audit records of the period, one JSON object per line, chain fields intact
    audit/chain.json        anchor (hash before the first record), first/last seq, checkpoints, head
    audit/keys.json         public keys of every key that signed those checkpoints (keys rotate)
    README.txt              what the files are and how to verify them

Personal names (actor, author, acknowledged_by, …) are replaced by ``person-<HMAC>`` pseudonyms under a
random key made for this pack and never stored, so one person has one pseudonym within a pack and
different ones across packs; ``reveal_names=True`` keeps them and needs a reason. Rows tagged with a
``scenario`` (drills, simulations) never enter a pack of real evidence; a drills pack (``drills=True``,
``facwatch evidence export --drills``) is the opposite: it holds only drill record sets, kept whole, and
its manifest says ``"kind": "drills"``. Every export is itself an audit record, written
before the pack is built: if it cannot be written, there is no export.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import hmac
import io
import json
import os
import secrets
import socket
import time as _time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from evidence.auditlog import AuditAction, AuditEntry, AuditLog, Checkpoint, Segment, audited
from evidence.keys import SigningKey, load_signing_key
from evidence.providers import Provider, iso
from evidence.report import ReportData, render_report
from evidence.verify import AUDIT_CHAIN, AUDIT_KEYS, AUDIT_LOG, MANIFEST, PUBLIC_KEY, SIGNATURE

FORMAT = "facwatch-evidence-pack/1"
PERSONAL_KEYS = frozenset({"actor", "author", "acknowledged_by", "expired_by", "created_by", "requested_by",
                           "user", "username", "operator"})
MAX_REASON = 500
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PackSummary:
    """What was exported: where, how many rows per set, the audit range, the signer."""

    path: Path
    rows: Mapping[str, int]
    excluded: Mapping[str, int]
    audit_first_seq: int
    audit_last_seq: int
    key_id: str
    export_seq: int


class Pseudonymiser:
    """Stable pseudonyms within one pack: ``person-`` + 10 hex digits of HMAC-SHA256 under a one-off key."""

    def __init__(self, key: bytes | None = None):
        self._key = key or secrets.token_bytes(32)

    def __call__(self, name: object) -> object:
        """The pseudonym of a name; empty values stay empty."""
        if name is None or name == "":
            return name
        digest = hmac.new(self._key, str(name).encode("utf-8"), hashlib.sha256).hexdigest()
        return f"person-{digest[:10]}"

    def __repr__(self) -> str:
        return "Pseudonymiser(<key redacted>)"


def export_pack(db_path: str | Path, start: float | datetime, end: float | datetime, out_zip: str | Path, *,
                providers: Mapping[str, Provider], reveal_names: bool = False, reason: str | None = None,
                actor: str | None = None, source: str | None = None, key: SigningKey | None = None,
                site: str = "facwatch", progress: Progress | None = None,
                clock: Callable[[], float] = _time.time, drills: bool = False) -> PackSummary:
    """Build a signed evidence pack for [start, end) from the database; the export is audit-logged first.

    ``drills=True`` builds a drills pack: rows tagged with a scenario are kept (and nothing else should
    be asked for: pass ``evidence.providers.drill_providers()``).
    """
    db_path, out_zip = Path(db_path), Path(out_zip)
    start, end = (t.timestamp() if isinstance(t, datetime) else float(t) for t in (start, end))
    _check_request(start, end, reveal_names, reason, providers)
    key = key or load_signing_key(db_path.parent)
    actor = actor or _default_actor()
    say = progress or (lambda message: None)
    request = {"from": iso(start), "to": iso(end), "reveal_names": reveal_names, "reason": reason,
               "file": out_zip.name, "record_sets": sorted(providers), "kind": "drills" if drills else "evidence"}
    with AuditLog(db_path, key, clock=clock) as log, audited(
            log, AuditAction.EXPORT, actor, f"evidence pack {iso(start)}..{iso(end)}", details=request,
            source=source or f"cli@{socket.gethostname()}") as entry:
        head = log.checkpoint()  # signs the head, the export record included
        segment = log.segment(start, end)
        signers = {c.key_id for c in [*segment.checkpoints, *([head] if head else [])]}
        keys = {k: pem for k, pem in log.public_keys().items() if k in signers}
        say(f"audit log: {len(segment.entries)} records in the period")
        builder = _PackBuilder(out_zip, key, Pseudonymiser() if not reveal_names else None, say, drills)
        summary = builder.build(db_path, start, end, providers, _Audit(segment, head, keys), entry, site, clock)
    say(f"wrote {out_zip}")
    return summary


def _check_request(start: float, end: float, reveal_names: bool, reason: str | None,
                   providers: Mapping[str, Provider]) -> None:
    if not end > start:
        raise ValueError("the period must end after it starts")
    if reveal_names and not (reason and reason.strip()):
        raise ValueError("revealing personal names needs a reason (it is recorded in the audit log)")
    if reason and len(reason) > MAX_REASON:
        raise ValueError(f"the reason is longer than {MAX_REASON} characters")
    for name in providers:
        if not name.replace("_", "").isalnum() or name == "audit_log":
            raise ValueError(f"record set name {name!r} must be letters, digits and _ (and not audit_log)")


@dataclass(frozen=True, slots=True)
class _Audit:
    segment: Segment
    head: Checkpoint | None
    keys: Mapping[str, str]  # key id → PEM of every key that signed a checkpoint in the pack


class _PackBuilder:
    """Writes the members one by one into a temporary zip, hashing each as it goes, then signs the manifest."""

    def __init__(self, out_zip: Path, key: SigningKey, pseudonym: Pseudonymiser | None, say: Progress,
                 drills: bool = False):
        self.out_zip, self.key, self.pseudonym, self.say = out_zip, key, pseudonym, say
        self.drills = drills
        self.files: dict[str, dict[str, object]] = {}
        self.zip: zipfile.ZipFile | None = None

    def build(self, db_path: Path, start: float, end: float, providers: Mapping[str, Provider], audit: _Audit,
              entry: AuditEntry, site: str, clock: Callable[[], float]) -> PackSummary:
        segment = audit.segment
        tables, excluded = self._tables(db_path, start, end, providers)
        tables["audit_log"] = [self._audit_row(e) for e in segment.entries]
        temp = self.out_zip.with_name(f".{self.out_zip.name}.{os.getpid()}.partial")
        try:
            with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as self.zip:
                self._write_members(tables, audit)
                self.say("rendering report.pdf")
                self._add("report.pdf", render_report(ReportData(
                    site, iso(start), iso(end), iso(clock()), self.key.key_id, self._names_label(), tables,
                    _audit_facts(segment), excluded)))
                manifest = self._manifest(site, start, end, clock, tables, excluded, segment, entry)
                self.zip.writestr(MANIFEST, manifest)
                self.zip.writestr(SIGNATURE, self.key.sign(manifest) + "\n")
            os.replace(temp, self.out_zip)  # no half-written pack under the requested name
        finally:
            temp.unlink(missing_ok=True)
        first, last = _seq_range(segment)
        return PackSummary(self.out_zip, {n: len(r) for n, r in tables.items()}, excluded, first, last,
                           self.key.key_id, entry.seq)

    def _tables(self, db_path: Path, start: float, end: float,
                providers: Mapping[str, Provider]) -> tuple[dict[str, list[dict]], dict[str, int]]:
        tables: dict[str, list[dict]] = {}
        excluded: dict[str, int] = {}
        for number, (name, provider) in enumerate(providers.items(), 1):
            self.say(f"[{number}/{len(providers)}] reading {name}")
            rows = provider(db_path, start, end)
            real = rows if self.drills else [row for row in rows if row.get("scenario") is None]
            excluded[name] = len(rows) - len(real)
            tables[name] = [self._private(row) for row in real]
        return tables, excluded

    def _private(self, row: Mapping[str, object]) -> dict[str, object]:
        if self.pseudonym is None:
            return dict(row)
        return _pseudonymised(row, self.pseudonym)  # type: ignore[return-value]

    def _audit_row(self, entry: AuditEntry) -> dict[str, object]:
        row: dict[str, object] = {"seq": entry.seq, "time": entry.time, "actor": entry.actor,
                                  "actor_commit": entry.actor_commit, "action": entry.action,
                                  "subject": entry.subject, "details": entry.details, "source": entry.source,
                                  "prev_hash": entry.prev_hash, "hash": entry.hash}
        if self.pseudonym is None:
            row["actor_salt"] = entry.actor_salt  # lets the verifier check the names against the chain
        else:
            row["actor"] = self.pseudonym(entry.actor)
        return row

    def _write_members(self, tables: dict[str, list[dict]], audit: _Audit) -> None:
        self._add(PUBLIC_KEY, self.key.public_pem())
        for name, rows in tables.items():
            self.say(f"writing records/{name} ({len(rows)} rows)")
            self._add(f"records/{name}.csv", _csv(rows))
            self._add(f"records/{name}.json", _json(rows))
        lines = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in tables["audit_log"])
        self._add(AUDIT_LOG, lines.encode("utf-8"))
        first, last = _seq_range(audit.segment)
        chain = {"anchor": audit.segment.anchor, "first_seq": first, "last_seq": last,
                 "checkpoints": [_checkpoint(c) for c in audit.segment.checkpoints],
                 "head": _checkpoint(audit.head) if audit.head else None}
        self._add(AUDIT_CHAIN, _json(chain))
        self._add(AUDIT_KEYS, _json(dict(audit.keys)))
        self._add("README.txt", _README.encode("utf-8"))

    def _add(self, name: str, data: bytes) -> None:
        assert self.zip is not None
        self.zip.writestr(name, data)
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def _manifest(self, site: str, start: float, end: float, clock: Callable[[], float],
                  tables: Mapping[str, list], excluded: Mapping[str, int], segment: Segment,
                  entry: AuditEntry) -> bytes:
        first, last = _seq_range(segment)
        manifest = {"format": FORMAT, "site": site, "from": iso(start), "to": iso(end),
                    "created_at": iso(clock()), "key_id": self.key.key_id, "reveal_names": self.pseudonym is None,
                    "exported_by": entry.actor if self.pseudonym is None else self.pseudonym(entry.actor),
                    "export_audit_seq": entry.seq, "rows": {n: len(r) for n, r in tables.items()},
                    "drill_rows_excluded": dict(excluded), "kind": "drills" if self.drills else "evidence",
                    "audit": {"anchor": segment.anchor, "first_seq": first, "last_seq": last},
                    "files": dict(sorted(self.files.items()))}
        return _json(manifest)

    def _names_label(self) -> str:
        return "revealed (reason recorded in the audit log)" if self.pseudonym is None else \
            "pseudonymised (HMAC, key not in the pack)"


def _audit_facts(segment: Segment) -> dict[str, object]:
    first, last = _seq_range(segment)
    return {"records": f"{len(segment.entries)} (seq {first}-{last})" if segment.entries else "none in period",
            "anchor": segment.anchor, "signed checkpoints": len(segment.checkpoints)}


def _seq_range(segment: Segment) -> tuple[int, int]:
    if not segment.entries:
        return 0, -1
    return segment.entries[0].seq, segment.entries[-1].seq


def _checkpoint(checkpoint: Checkpoint) -> dict[str, object]:
    return {"seq": checkpoint.seq, "hash": checkpoint.hash, "time": checkpoint.time, "key_id": checkpoint.key_id,
            "signature": checkpoint.signature}


def _csv(rows: list[dict]) -> bytes:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return out.getvalue().encode("utf-8")


def _csv_value(value: object) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # no formula injection when an auditor opens the CSV in a spreadsheet
    return value


def _json(value: object) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")



def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_README = """facwatch evidence pack

manifest.json         what the pack covers; SHA-256 and size of every other file
manifest.sig          Ed25519 signature (base64) over the exact bytes of manifest.json
public_key.pem        the signer's public key; compare its id (manifest key_id) with the published one
report.pdf            summary and tables for reading; the CSV/JSON files are the evidence
records/*.csv|json    one pair per record set; audit_log is the audit trail of the period
audit/log.jsonl       the audit records with every hashed field, one JSON object per line
audit/chain.json      anchor (hash before the first record), first/last seq, signed checkpoints
audit/keys.json       public keys (id -> PEM) of every key that signed a checkpoint here (keys rotate)

Verify:  facwatch evidence verify pack.zip   (exit 0 intact, 1 tampered)

Record hash = SHA-256 of the compact JSON array
  ["facwatch-audit-v1", seq, time, actor_commit, action, subject, details, source, prev_hash]
(details is hashed as the string stored). actor_commit = SHA-256(salt || "actor" || 0x00 || actor); the
salt is only in packs with revealed names. A checkpoint signs the compact JSON array
  ["facwatch-checkpoint-v1", seq, hash, time, key_id]
Personal names are pseudonymised (person-...) unless the manifest says reveal_names: true.
"""


def _pseudonymised(value: object, pseudonym: Callable[[str], str], key: str | None = None) -> object:
    """``value`` with every personal field replaced, at any depth (compliance rows nest acks in excursions)."""
    if isinstance(value, Mapping):
        return {k: _pseudonymised(v, pseudonym, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_pseudonymised(v, pseudonym, key) for v in value]
    if key in PERSONAL_KEYS and isinstance(value, str):
        return pseudonym(value)
    return value
