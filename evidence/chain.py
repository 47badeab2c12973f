"""The audit chain's canonical encodings: record hashes, actor commitments and signed checkpoints.

Pure functions shared by the writer (``auditlog``) and the verifier (``verify``); nothing here touches a
database, so an auditor's tool can re-implement it from this page alone:

- a record's hash is ``SHA-256(canonical([VERSION, seq, time, actor_commit, action, subject, details,
  source, prev_hash]))`` where ``canonical`` is compact JSON (UTF-8, no spaces, no NaN) and ``details`` is the
  stored JSON *text*, hashed as a string so no verifier ever has to re-serialise floats;
- the actor enters the hash only as ``actor_commit = SHA-256(salt ‖ "actor" ‖ 0x00 ‖ actor)`` with a random
  per-record salt, so a pack can replace names with pseudonyms (dropping the salt) and still verify, while
  nobody can test guessed names against the commitment;
- a checkpoint signs ``canonical([CHECKPOINT_VERSION, seq, hash, time, key_id])`` with Ed25519.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

VERSION = "facwatch-audit-v1"
CHECKPOINT_VERSION = "facwatch-checkpoint-v1"
GENESIS = "0" * 64  # the "previous hash" of record 1


def canonical(value: object) -> bytes:
    """Compact, key-sorted JSON in UTF-8; NaN and infinities are refused."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("utf-8")


def details_text(details: Mapping[str, object] | None) -> str:
    """The stored text of a record's details (before/after values and context)."""
    return canonical(dict(details or {})).decode("utf-8")


def actor_commit(salt_hex: str, actor: str) -> str:
    """The commitment to an actor that enters the record hash in the actor's place."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + b"actor\x00" + actor.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """One audit record as it is chained: every field the hash covers, plus its hash.

    Example: ``ChainRecord(1, "2026-11-22T21:00:00.000000Z", commit, "alert.ack", "fp=3f2a", "{}", "10.0.0.7",
    GENESIS, hash)``.
    """

    seq: int
    time: str
    actor_commit: str
    action: str
    subject: str
    details: str
    source: str | None
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        """The hash this record must carry, recomputed from its fields."""
        return record_hash(self.seq, self.time, self.actor_commit, self.action, self.subject, self.details,
                           self.source, self.prev_hash)


def record_hash(seq: int, time: str, commit: str, action: str, subject: str, details: str, source: str | None,
                prev_hash: str) -> str:
    """SHA-256 (hex) over the canonical encoding of a record's fields and its predecessor's hash."""
    encoded = canonical([VERSION, seq, time, commit, action, subject, details, source, prev_hash])
    return hashlib.sha256(encoded).hexdigest()


def checkpoint_payload(seq: int, hash_hex: str, time: str, key_id: str) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return canonical([CHECKPOINT_VERSION, seq, hash_hex, time, key_id])
